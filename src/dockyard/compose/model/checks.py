"""Type checks shared by the builders, worded as docker-compose 1.29.2's schema errors.

Role: :class:`_Ctx` carries where a builder is (a service, or None at the project's top
level) and checks a value's JSON type, a string list, a mapping, unknown keys; ``_type_error``
words "... contains an invalid type, it should be a string, or a number" as 1.29.2's
``_parse_valid_types_from_validator`` does; ``_is`` is the JSON type test (a bool is not a
number); ``_scalar_text`` is a scalar as the engine takes it in a string map (``true``,
not ``True``); ``_words`` spells the key tables.

Invariants:
- Every error raised through a ``_Ctx`` is a :class:`ComposeModelError` naming the service
  and the service's own top-level key ("logging" for ``logging.driver``), whatever depth
  the bad value sits at.
- Private to the ``model`` package: only its builders import these names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dockyard.compose.model.values import ComposeModelError

_T = TypeVar("_T")


# JSON types as docker-compose 1.29.2's schema names them.
_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _anglicize(json_type: str) -> str:
    return ("an " if json_type[0] in "aeiou" else "a ") + json_type


def _type_error(path: str, *types: type) -> ComposeModelError:
    """1.29.2 ``_parse_valid_types_from_validator``: the first and the last type get an
    article, the ones between do not ("a string, number, or an object")."""
    names = list(dict.fromkeys(_JSON_TYPES[kind] for kind in types))
    if len(names) == 1:
        expected = _anglicize(names[0])
    else:
        head = ", ".join([_anglicize(names[0]), *names[1:-1]])
        expected = f"{head}, or {_anglicize(names[-1])}"
    return ComposeModelError(f"{path} contains an invalid type, it should be {expected}")


def _is(value: object, *types: type) -> bool:
    # bool is an int subclass in Python but not a number in JSON schema terms.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


class _Ctx:
    """Where we are (service and key) so every error names both."""

    def __init__(self, service: str | None) -> None:
        self.service = service

    def path(self, key: str) -> str:
        return f"services.{self.service}.{key}" if self.service is not None else key

    def fail(self, key: str, message: str) -> ComposeModelError:
        return ComposeModelError(message, self.service, key.split(".")[0])

    def check(self, key: str, value: object, *types: type) -> Any:
        if not _is(value, *types):
            err = _type_error(self.path(key), *types)
            raise ComposeModelError(err.message, self.service, key.split(".")[0])
        return value

    def wrap(self, key: str, call: Callable[[], _T]) -> _T:
        """Run a parser that raises bare ComposeModelErrors and tag them with our place."""
        try:
            return call()
        except ComposeModelError as err:
            raise ComposeModelError(err.message, self.service, key.split(".")[0]) from None

    def strings(self, key: str, value: object, *, scalar_ok: bool = False) -> tuple[str, ...]:
        if scalar_ok and isinstance(value, str):
            return (value,)
        items = self.check(key, value, list, str) if scalar_ok else self.check(key, value, list)
        return tuple(self.check(key, item, str) for item in items)

    def mapping(self, key: str, value: object) -> dict[str, str | None]:
        items = self.check(key, value, dict)
        out: dict[str, str | None] = {}
        for name, item in items.items():
            self.check(f"{key}.{name}", item, str, int, float, bool, type(None))
            out[str(name)] = None if item is None else _scalar_text(item)
        return out

    def options(self, key: str, value: object) -> dict[str, str]:
        """Driver options: a mapping whose values the engine takes as strings."""
        return {name: text or "" for name, text in self.mapping(key, value).items()}

    def unknown(self, where: str, keys: Sequence[str], allowed: Sequence[str]) -> None:
        prefix = f"services.{self.service}."
        for key in keys:
            if key not in allowed and not key.startswith("x-"):
                # the key named is the service's own: "logging" for logging.drvier
                owner = (
                    where.removeprefix(prefix).split(".")[0] if where.startswith(prefix) else key
                )
                raise ComposeModelError(
                    f"Unsupported config option for {where}: '{key}'", self.service, owner
                )


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())
