"""Variable substitution in Compose values, as compose-go's ``template`` package does it.

Grammar (compose-spec "Interpolation"; names match ``[_A-Za-z][_A-Za-z0-9]*``):

- ``$$`` → a literal ``$``; ``$NAME`` and ``${NAME}`` → the value, or ``""`` plus a warning
  ("The "NAME" variable is not set. Defaulting to a blank string.") when unset;
- ``${NAME:-default}`` (unset or empty) and ``${NAME-default}`` (unset) → the default;
- ``${NAME:+alt}`` (set and non-empty) and ``${NAME+alt}`` (set) → the alternative, else the
  value (``""`` when unset, without a warning: the form says the user thought about it);
- ``${NAME:?err}`` (unset or empty) and ``${NAME?err}`` (unset) → an error naming NAME and err;
- the text after an operator is itself interpolated, so defaults nest
  (``${A:-${B:-x}}``); braces are matched by depth to find the end of ``${…}``;
- a ``$`` followed by anything else is kept literally (compose-go's pattern does not match it);
  ``${`` with no closing brace or a bad name is "invalid interpolation format".

Only values are interpolated, never mapping keys. Pure: the environment is a ``Mapping``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.compose.loader.errors import ComposeFileError

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
# Longest operators first so ":-" is not read as ":" followed by "-".
_OPERATORS = (":?", ":-", ":+", "?", "-", "+")


class InterpolationError(Exception):
    """A template the user wrote cannot be substituted; the caller adds file and key."""


class InvalidTemplate(InterpolationError):  # compose-go: InvalidTemplateError
    """``${`` without its closing brace, a bad name or an unknown operator."""


class MissingRequired(InterpolationError):  # compose-go: MissingRequiredError
    """``${NAME:?err}``/``${NAME?err}`` with NAME missing: the message names NAME and err."""


@dataclass(frozen=True)
class Substitution:
    """The result of substituting one string: the value and the unset variables it used."""

    value: str
    unset_names: tuple[str, ...]


def substitute(template: str, environ: Mapping[str, str]) -> Substitution:
    """Substitute every ``$`` form in ``template``; raises ``InterpolationError``."""
    unset: list[str] = []
    value = _substitute(template, environ, unset)
    return Substitution(value, tuple(dict.fromkeys(unset)))


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose ``{`` is at ``start``, or -1."""
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _substitute(template: str, environ: Mapping[str, str], unset: list[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "$" or i + 1 >= len(template):
            out.append(char)
            i += 1
            continue
        following = template[i + 1]
        if following == "$":
            out.append("$")
            i += 2
            continue
        if following == "{":
            end = _closing_brace(template, i + 1)
            if end < 0:
                raise InvalidTemplate(template)
            out.append(_braced(template[i + 2 : end], template, environ, unset))
            i = end + 1
            continue
        name = _NAME.match(template, i + 1)
        if name is None:
            out.append(char)  # a lone "$": literal, as compose-go leaves it
            i += 1
            continue
        out.append(_lookup(name.group(), environ, unset))
        i = name.end()
    return "".join(out)


def _lookup(name: str, environ: Mapping[str, str], unset: list[str]) -> str:
    value = environ.get(name)
    if value is None:
        unset.append(name)
        return ""
    return value


def _braced(body: str, template: str, environ: Mapping[str, str], unset: list[str]) -> str:
    name_match = _NAME.match(body)
    if name_match is None:
        raise InvalidTemplate(template)
    name = name_match.group()
    rest = body[name_match.end() :]
    if not rest:
        return _lookup(name, environ, unset)
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InvalidTemplate(template)
    argument = rest[len(operator) :]
    value = environ.get(name)
    present = value is not None and (not operator.startswith(":") or value != "")
    if operator.endswith("?"):
        if present:
            return value or ""
        reason = _substitute(argument, environ, unset)
        message = f"required variable {name} is missing a value"
        raise MissingRequired(f"{message}: {reason}" if reason else message)
    if operator.endswith("-"):
        return (value or "") if present else _substitute(argument, environ, unset)
    # "+" forms: the alternative when present, else the (possibly empty) value.
    return _substitute(argument, environ, unset) if present else (value or "")


@dataclass(frozen=True)
class Interpolated:
    """A value tree with every string substituted, and the warnings that produced."""

    value: Any
    warnings: tuple[str, ...]


def interpolate_tree(value: Any, environ: Mapping[str, str], file: str) -> Interpolated:
    """Substitute in every string value of a parsed file (keys untouched).

    An error names the file, the key path (``services.web.image``, list indexes as numbers,
    as compose-go's ``error while interpolating`` does) and the service.
    """
    warnings: list[str] = []
    result = _walk(value, environ, file, (), warnings)
    return Interpolated(result, tuple(dict.fromkeys(warnings)))


def _walk(
    value: Any, environ: Mapping[str, str], file: str, path: tuple[str, ...], warnings: list[str]
) -> Any:
    if isinstance(value, str):
        try:
            result = substitute(value, environ)
        except InterpolationError as err:
            key = ".".join(path)
            service = path[1] if len(path) > 1 and path[0] == "services" else None
            if isinstance(err, InvalidTemplate):
                # compose-go: "invalid interpolation format for services.web.image.
                # You may need to escape any $ with another $."
                message = (
                    f"invalid interpolation format for {key}: {value!r}; "
                    "you may need to escape any $ with another $"
                )
            else:
                message = f"error while interpolating {key}: {err}"
            raise ComposeFileError(message, file=file, service=service, key=key) from None
        warnings.extend(
            f'The "{name}" variable is not set. Defaulting to a blank string.'
            for name in result.unset_names
        )
        return result.value
    if isinstance(value, dict):
        return {k: _walk(v, environ, file, (*path, str(k)), warnings) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, environ, file, (*path, str(i)), warnings) for i, v in enumerate(value)]
    return value
