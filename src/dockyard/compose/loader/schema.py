"""Structural validation of one Compose file against the compose-spec, with 1.29.2's messages.

Role: walk a parsed, interpolated file against the declarative schema in ``schema_spec.py``
(every object, property, JSON type, enum, bound, required key, ``oneOf`` form and
``uniqueItems`` the compose-spec defines) and refuse the first violation with an error that
names the file, the service and the dotted key path (array indices left out, as
docker-compose 1.29.2's ``path_string`` does). Finer rules (port syntax, durations, byte
sizes) belong to the model builder, which parses them anyway.

Messages (docker-compose 1.29.2 ``compose/config/validation.py``, checked against its
output; ``ComposeFileError`` puts the file in front):
- unknown key in a service or an object reached directly: "Unsupported config option for
  services.web.healthcheck: 'foo'" (``get_unsupported_config_msg``, with its "did you mean"
  hints at the service level); in an object chosen by a ``oneOf`` (long-form build, volume,
  port, network, depends_on entry, …): "services.web.build contains unsupported option:
  'foo'" (``_parse_oneof_validator``);
- wrong type: "services.web.ports contains an invalid type, it should be an array"; for an
  array item or a map entry: "services.web.environment.A contains [1], which is an invalid
  type, it should be a string, number, boolean, or a null";
- missing key: "services.web.volumes 'type' is a required property" inside a ``oneOf``,
  "… is invalid, capabilities is required." elsewhere;
- duplicates: "… contains non-unique items, please remove duplicates from [...]" inside a
  ``oneOf``, "… value [...] has non-unique elements" elsewhere;
- bounds: "… value -2000 is less than the minimum of -1000"; patterns: "… value 'x' does
  not match '…'";
- enum: '… must be one of the following: "service_started", …' (compose-go's wording:
  1.29.2 reports an enum inside a ``oneOf`` as an "invalid type", which misleads).

``x-*`` keys are extensions wherever the schema allows them. v1-only keys (``net``,
``log_driver``, ``log_opt``, ``dockerfile``) are accepted only in v1 (and ``containers:``)
files, which keep the older, shallower checks below (``_validate_legacy_service``) and which
the format conversion rewrites.

Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from dockyard.compose.loader import schema_spec as spec
from dockyard.compose.loader.errors import ComposeFileError

# JSON types as the schema names them.
_STRING = spec.STRING
_NUMBER = spec.NUMBER
_INTEGER = spec.INTEGER
_BOOLEAN = spec.BOOLEAN
_ARRAY = spec.ARRAY
_OBJECT = spec.OBJECT
_NULL = spec.NULL

_LIST_OR_DICT = (_OBJECT, _ARRAY)

# compose-spec "service" properties → the JSON types each accepts (derived from the spec).
SERVICE_KEY_TYPES: Mapping[str, tuple[str, ...]] = {
    key: spec.accepted_types(node) for key, node in spec.SERVICE_PROPERTIES.items()
}

# docker-compose 1.29.2 DOCKER_CONFIG_HINTS: docker-run-style names people write by habit.
_CONFIG_HINTS: Mapping[str, str] = {
    "cpu_share": "cpu_shares",
    "add_host": "extra_hosts",
    "hosts": "extra_hosts",
    "extra_host": "extra_hosts",
    "device": "devices",
    "link": "links",
    "memory_swap": "memswap_limit",
    "port": "ports",
    "privilege": "privileged",
    "priviliged": "privileged",
    "privilige": "privileged",
    "volume": "volumes",
    "workdir": "working_dir",
}

# Keys only Compose file format v1 knew (docker-compose 1.29.2 config_schema_v1.json); the
# format conversion rewrites them into their compose-spec equivalents.
V1_SERVICE_KEY_TYPES: Mapping[str, tuple[str, ...]] = {
    "net": (_STRING,),
    "log_driver": (_STRING,),
    "log_opt": (_OBJECT,),
    "dockerfile": (_STRING,),
}

# The legacy (v1/containers) checks, unchanged: element types of arrays whose items have
# one shape, and the values list-or-dict mappings may hold.
_ITEM_TYPES: Mapping[str, tuple[str, ...]] = {
    "cap_add": (_STRING,),
    "cap_drop": (_STRING,),
    "devices": (_STRING, _OBJECT),
    "dns_opt": (_STRING,),
    "expose": (_STRING, _NUMBER),
    "external_links": (_STRING,),
    "group_add": (_STRING, _NUMBER),
    "links": (_STRING,),
    "ports": (_NUMBER, _STRING, _OBJECT),
    "profiles": (_STRING,),
    "security_opt": (_STRING,),
    "volumes": (_STRING, _OBJECT),
    "volumes_from": (_STRING,),
    "configs": (_STRING, _OBJECT),
    "secrets": (_STRING, _OBJECT),
    "env_file": (_STRING, _OBJECT),
    "dns": (_STRING,),
    "dns_search": (_STRING,),
    "tmpfs": (_STRING,),
}

_SCALAR_VALUE = (_STRING, _NUMBER, _BOOLEAN, _NULL)

TOP_LEVEL_KEYS = (
    "version", "name", "include", "services", "networks", "volumes", "configs", "secrets"
)  # fmt: skip


def json_type(value: Any) -> str:
    """The JSON type name of a parsed YAML value (``bool`` before ``int``: it is one)."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int):
        return _INTEGER
    if isinstance(value, float):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    if isinstance(value, list):
        return _ARRAY
    if isinstance(value, dict):
        return _OBJECT
    return type(value).__name__


def _matches(value: Any, allowed: tuple[str, ...]) -> bool:
    return _type_matches(json_type(value), allowed)


def describe_types(allowed: tuple[str, ...]) -> str:
    """docker-compose 1.29.2 ``_parse_valid_types_from_validator``: "a string, or an array"."""

    def article(kind: str) -> str:
        return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"

    if len(allowed) == 1:
        return article(allowed[0])
    middle = ", ".join([article(allowed[0]), *allowed[1:-1]])
    return f"{middle}, or {article(allowed[-1])}"


def _type_error(key: str, allowed: tuple[str, ...], file: str, service: str | None) -> None:
    raise ComposeFileError(
        f"{key} contains an invalid type, it should be {describe_types(allowed)}",
        file=file,
        service=service,
        key=key,
    )


def check_type(
    value: Any, allowed: tuple[str, ...], key: str, file: str, service: str | None = None
) -> None:
    """Raise the 1.29.2-worded type error when ``value`` is none of ``allowed``."""
    if not _matches(value, allowed):
        _type_error(key, allowed, file, service)


def validate_service(name: str, service: Any, file: str, *, legacy_v1: bool) -> None:
    """Check one service (after interpolation, before conversion) against the schema."""
    path = f"services.{name}"
    check_type(service, (_OBJECT,), path, file, name)
    if legacy_v1:
        _validate_legacy_service(name, service, file)
        return
    _walk(spec.SERVICE, service, path, _Where(file, name), via_one_of=False, in_collection=False)


def validate_top_level_entries(section: str, entries: Any, file: str) -> None:
    """``networks``/``volumes``/``configs``/``secrets``: a mapping of name → definition.

    None is accepted: the caller passes None both for an absent section and for an empty
    one (``volumes:``), and cannot tell them apart.
    """
    check_type(entries, (_OBJECT, _NULL), section, file)
    if not entries:
        return
    node, closed_names = spec.SECTIONS[section]
    where = _Where(file, None)
    for key, entry in entries.items():
        name = str(key)
        if not re.search(spec.NAME_PATTERN, name):
            if closed_names:
                _fail(f"Unsupported config option for {section}: '{name}'", where, section)
            continue  # the schema leaves networks' other names unchecked
        _walk(node, entry, f"{section}.{name}", where, via_one_of=False, in_collection=False)


@dataclass(frozen=True)
class _Where:
    """The file and (inside ``services``) the service an error is reported against."""

    file: str
    service: str | None


def _fail(message: str, where: _Where, key: str) -> NoReturn:
    raise ComposeFileError(message, file=where.file, service=where.service, key=key)


def _type_matches(kind: str, allowed: tuple[str, ...]) -> bool:
    # JSON schema: every integer is a number; a boolean is neither (json_type says so).
    return kind in allowed or (kind == _INTEGER and _NUMBER in allowed)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str)


def _walk(
    node: spec.Node,
    value: Any,
    path: str,
    where: _Where,
    *,
    via_one_of: bool,
    in_collection: bool,
) -> None:
    """Check ``value`` at ``path`` against ``node``; raise the first violation.

    ``via_one_of``: the value is (inside) a branch a ``oneOf`` chose, which switches to
    1.29.2's ``_parse_oneof_validator`` wording. ``in_collection``: the value is an array
    item or a pattern-keyed map entry, whose type errors quote the value.
    """
    kind = json_type(value)
    if isinstance(node, spec.OneOf):
        for option in node.options:
            if _type_matches(kind, spec.accepted_types(option)):
                _walk(option, value, path, where, via_one_of=True, in_collection=in_collection)
                return
    allowed = spec.accepted_types(node)
    if not _type_matches(kind, allowed):
        if in_collection:
            _fail(
                f"{path} contains {_as_json(value)}, which is an invalid type, "
                f"it should be {describe_types(allowed)}",
                where,
                path,
            )
        _fail(
            f"{path} contains an invalid type, it should be {describe_types(allowed)}", where, path
        )
    if isinstance(node, spec.Scalar):
        _check_scalar(node, value, path, where)
    elif isinstance(node, spec.Array):
        _check_array(node, value, path, where, via_one_of=via_one_of)
    elif isinstance(node, spec.Object) and value is not None:
        _check_object(node, value, path, where, via_one_of=via_one_of)


def _check_scalar(node: spec.Scalar, value: Any, path: str, where: _Where) -> None:
    if node.enum and value not in node.enum:
        allowed = ", ".join(f'"{item}"' for item in node.enum)
        _fail(f"{path} must be one of the following: {allowed}", where, path)
    if node.pattern is not None and not re.search(node.pattern, value):
        # jsonschema's text after 1.29.2's "{path} value" prefix (handle_generic_error).
        _fail(f"{path} value {value!r} does not match {node.pattern!r}", where, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if node.minimum is not None and value < node.minimum:
        _fail(f"{path} value {value} is less than the minimum of {node.minimum}", where, path)
    if node.maximum is not None and value > node.maximum:
        _fail(f"{path} value {value} is greater than the maximum of {node.maximum}", where, path)


def _check_array(
    node: spec.Array, value: list[Any], path: str, where: _Where, *, via_one_of: bool
) -> None:
    for item in value:
        _walk(node.items, item, path, where, via_one_of=via_one_of, in_collection=True)
    if node.unique and _has_duplicates(value):
        if via_one_of:
            _fail(
                f"{path} contains non-unique items, please remove duplicates from {value}",
                where,
                path,
            )
        _fail(f"{path} value {value} has non-unique elements", where, path)


def _has_duplicates(items: list[Any]) -> bool:
    # jsonschema's uniq: Python equality (1 == 1.0), except that true/false are not 1/0.
    # Scalars hash (linear); objects and arrays fall back to comparing pairs.
    try:
        return len({(isinstance(item, bool), item) for item in items}) != len(items)
    except TypeError:
        return any(
            items[i] == items[j] and isinstance(items[i], bool) == isinstance(items[j], bool)
            for i in range(len(items))
            for j in range(i)
        )


def _check_object(
    node: spec.Object, value: dict[Any, Any], path: str, where: _Where, *, via_one_of: bool
) -> None:
    # 1.29.2 keys_to_str: keys are compared as strings (YAML may give ints or booleans).
    for key, sub in value.items():
        name = str(key)
        sub_path = f"{path}.{name}"
        prop = node.properties.get(name)
        if prop is not None:
            _walk(prop, sub, sub_path, where, via_one_of=via_one_of, in_collection=False)
        elif node.extensions and name.startswith("x-"):
            continue
        elif node.pattern is not None and re.search(node.pattern, name):
            if node.entries is not None:
                _walk(node.entries, sub, sub_path, where, via_one_of=via_one_of, in_collection=True)
        elif node.closed:
            _fail(_unsupported(path, name, where, via_one_of=via_one_of), where, sub_path)
    for required in node.required:
        if required not in value:
            if via_one_of:
                _fail(f"{path} {required!r} is a required property", where, path)
            _fail(f"{path} is invalid, {required} is required.", where, path)


def _unsupported(path: str, name: str, where: _Where, *, via_one_of: bool) -> str:
    if via_one_of:
        return f"{path} contains unsupported option: '{name}'"
    message = f"Unsupported config option for {path}: '{name}'"
    if where.service is not None and path == f"services.{where.service}":
        hint = _CONFIG_HINTS.get(name)
        if hint is not None:
            message += f" (did you mean '{hint}'?)"
    return message


def _validate_legacy_service(name: str, service: dict[str, Any], file: str) -> None:
    """v1/``containers:`` services: known keys and top types only, as before the full walk."""
    path = f"services.{name}"
    for key, value in service.items():
        if not isinstance(key, str):
            raise ComposeFileError(
                f"{path} contains unsupported option: {key!r}", file=file, service=name
            )
        if key.startswith("x-"):
            continue
        allowed = SERVICE_KEY_TYPES.get(key) or V1_SERVICE_KEY_TYPES.get(key)
        if allowed is None:
            raise ComposeFileError(
                f"Unsupported config option for {path}: {key!r}",
                file=file,
                service=name,
                key=f"{path}.{key}",
            )
        check_type(value, allowed, f"{path}.{key}", file, name)
        item_types = _ITEM_TYPES.get(key)
        if item_types is not None and isinstance(value, list):
            for item in value:
                if not _matches(item, item_types):
                    raise ComposeFileError(
                        f"{path}.{key} contains {item!r}, which is an invalid type, "
                        f"it should be {describe_types(item_types)}",
                        file=file,
                        service=name,
                        key=f"{path}.{key}",
                    )
        _validate_nested(key, value, f"{path}.{key}", file, name)


def _validate_nested(key: str, value: Any, path: str, file: str, service: str) -> None:
    if key in ("environment", "labels", "annotations", "sysctls", "extra_hosts"):
        _validate_list_or_dict(value, path, file, service)
    elif key == "build" and isinstance(value, dict):
        for sub, sub_types in (
            ("context", (_STRING,)),
            ("dockerfile", (_STRING,)),
            ("args", _LIST_OR_DICT),
            ("labels", _LIST_OR_DICT),
            ("cache_from", (_ARRAY,)),
            ("target", (_STRING,)),
            ("network", (_STRING,)),
            ("extra_hosts", _LIST_OR_DICT),
        ):
            if sub in value:
                check_type(value[sub], sub_types, f"{path}.{sub}", file, service)
        for sub in ("args", "labels", "extra_hosts"):
            if sub in value:
                _validate_list_or_dict(value[sub], f"{path}.{sub}", file, service)
    elif key == "depends_on":
        if isinstance(value, list):
            for item in value:
                check_type(item, (_STRING,), path, file, service)
        else:
            for target, spec in value.items():
                check_type(spec, (_OBJECT, _NULL), f"{path}.{target}", file, service)
    elif key == "networks" and isinstance(value, dict):
        for network, spec in value.items():
            check_type(spec, (_OBJECT, _NULL), f"{path}.{network}", file, service)
    elif key == "networks":
        for item in value:
            check_type(item, (_STRING,), path, file, service)
    elif key == "extends" and isinstance(value, dict):
        if "service" not in value:
            raise ComposeFileError(
                f"{path} 'service' is a required property", file=file, service=service, key=path
            )
        check_type(value["service"], (_STRING,), f"{path}.service", file, service)
        if "file" in value:
            check_type(value["file"], (_STRING,), f"{path}.file", file, service)
        unknown = sorted(set(value) - {"service", "file"})
        if unknown:
            raise ComposeFileError(
                f"Unsupported config option for {path}: {unknown[0]!r}",
                file=file,
                service=service,
                key=path,
            )
    elif key == "logging" and isinstance(value, dict) and "options" in value:
        check_type(value["options"], (_OBJECT, _NULL), f"{path}.options", file, service)
    elif key == "env_file" and isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and not isinstance(item.get("path"), str):
                raise ComposeFileError(
                    f"{path} 'path' is a required property", file=file, service=service, key=path
                )


def _validate_list_or_dict(value: Any, path: str, file: str, service: str) -> None:
    if isinstance(value, dict):
        for sub, item in value.items():
            if not _matches(item, _SCALAR_VALUE) and not (
                path.endswith("extra_hosts") and isinstance(item, list)
            ):
                raise ComposeFileError(
                    f"{path}.{sub} contains {item!r}, which is an invalid type, "
                    f"it should be {describe_types(_SCALAR_VALUE)}",
                    file=file,
                    service=service,
                    key=f"{path}.{sub}",
                )
    else:
        for item in value:
            check_type(item, (_STRING,), path, file, service)
