"""Structural validation of one Compose file: known keys and JSON types, per the compose-spec.

This is the part of the compose-spec JSON schema (``compose-spec.json``, which
docker-compose 1.27+ and compose-go both validate against) that needs the *file* to be useful
in an error: which top-level and service keys exist and what JSON type each takes. Finer
rules (port syntax, durations, byte sizes, allowed enum values) belong to the model builder,
which parses them anyway.

Rules:
- a top-level key the format does not know is an error naming the file and the key; ``x-*``
  keys are extensions and never an error;
- a service key the compose-spec does not know is an error naming file, service and key
  (docker-compose 1.29.2: "Unsupported config option for services.web: 'foo'");
- a wrong type is an error with docker-compose 1.29.2's wording: "services.web.ports contains
  an invalid type, it should be an array";
- v1-only keys (``net``, ``log_driver``, ``log_opt``, ``dockerfile``) are accepted only in
  v1 (and ``containers:``) files, which the format conversion rewrites.

Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.compose.loader.errors import ComposeFileError

# JSON types as the schema names them.
_STRING = "string"
_NUMBER = "number"
_INTEGER = "integer"
_BOOLEAN = "boolean"
_ARRAY = "array"
_OBJECT = "object"
_NULL = "null"

_LIST_OR_DICT = (_OBJECT, _ARRAY)
_STRING_OR_LIST = (_STRING, _ARRAY)
_NUMBER_OR_STRING = (_NUMBER, _STRING)
_COMMAND = (_NULL, _STRING, _ARRAY)

# compose-spec "service" properties → allowed JSON types (definitions.service.properties).
SERVICE_KEY_TYPES: Mapping[str, tuple[str, ...]] = {
    "annotations": _LIST_OR_DICT,
    "attach": (_BOOLEAN,),
    "blkio_config": (_OBJECT,),
    "build": (_STRING, _OBJECT),
    "cap_add": (_ARRAY,),
    "cap_drop": (_ARRAY,),
    "cgroup": (_STRING,),
    "cgroup_parent": (_STRING,),
    "command": _COMMAND,
    "configs": (_ARRAY,),
    "container_name": (_STRING,),
    "cpu_count": (_INTEGER, _STRING),
    "cpu_percent": (_INTEGER, _STRING),
    "cpu_period": _NUMBER_OR_STRING,
    "cpu_quota": _NUMBER_OR_STRING,
    "cpu_rt_period": _NUMBER_OR_STRING,
    "cpu_rt_runtime": _NUMBER_OR_STRING,
    "cpu_shares": _NUMBER_OR_STRING,
    "cpus": _NUMBER_OR_STRING,
    "cpuset": (_STRING,),
    "credential_spec": (_OBJECT,),
    "depends_on": _LIST_OR_DICT,
    "deploy": (_OBJECT, _NULL),
    "develop": (_OBJECT, _NULL),
    "device_cgroup_rules": (_ARRAY,),
    "devices": (_ARRAY,),
    "dns": _STRING_OR_LIST,
    "dns_opt": (_ARRAY,),
    "dns_search": _STRING_OR_LIST,
    "domainname": (_STRING,),
    "entrypoint": _COMMAND,
    "env_file": _STRING_OR_LIST,
    "environment": _LIST_OR_DICT,
    "expose": (_ARRAY,),
    "extends": (_STRING, _OBJECT),
    "external_links": (_ARRAY,),
    "extra_hosts": _LIST_OR_DICT,
    "gpus": (_STRING, _ARRAY),
    "group_add": (_ARRAY,),
    "healthcheck": (_OBJECT,),
    "hostname": (_STRING,),
    "image": (_STRING,),
    "init": (_BOOLEAN,),
    "ipc": (_STRING,),
    "isolation": (_STRING,),
    "label_file": _STRING_OR_LIST,
    "labels": _LIST_OR_DICT,
    "links": (_ARRAY,),
    "logging": (_OBJECT,),
    "mac_address": (_STRING,),
    "mem_limit": _NUMBER_OR_STRING,
    "mem_reservation": (_INTEGER, _STRING),
    "mem_swappiness": (_INTEGER, _STRING),
    "memswap_limit": _NUMBER_OR_STRING,
    "network_mode": (_STRING,),
    "networks": _LIST_OR_DICT,
    "oom_kill_disable": (_BOOLEAN,),
    "oom_score_adj": (_INTEGER, _STRING),
    "pid": (_STRING, _NULL),
    "pids_limit": _NUMBER_OR_STRING,
    "platform": (_STRING,),
    "ports": (_ARRAY,),
    "post_start": (_ARRAY,),
    "pre_stop": (_ARRAY,),
    "privileged": (_BOOLEAN,),
    "profiles": (_ARRAY,),
    "pull_policy": (_STRING,),
    "read_only": (_BOOLEAN,),
    "restart": (_STRING,),
    "runtime": (_STRING,),
    "scale": (_INTEGER, _STRING),
    "secrets": (_ARRAY,),
    "security_opt": (_ARRAY,),
    "shm_size": _NUMBER_OR_STRING,
    "stdin_open": (_BOOLEAN,),
    "stop_grace_period": (_STRING,),
    "stop_signal": (_STRING,),
    "storage_opt": (_OBJECT,),
    "sysctls": _LIST_OR_DICT,
    "tmpfs": _STRING_OR_LIST,
    "tty": (_BOOLEAN,),
    "ulimits": (_OBJECT,),
    "user": (_STRING,),
    "userns_mode": (_STRING,),
    "uts": (_STRING,),
    "volume_driver": (_STRING,),
    "volumes": (_ARRAY,),
    "volumes_from": (_ARRAY,),
    "working_dir": (_STRING,),
}

# Keys only Compose file format v1 knew (docker-compose 1.29.2 config_schema_v1.json); the
# format conversion rewrites them into their compose-spec equivalents.
V1_SERVICE_KEY_TYPES: Mapping[str, tuple[str, ...]] = {
    "net": (_STRING,),
    "log_driver": (_STRING,),
    "log_opt": (_OBJECT,),
    "dockerfile": (_STRING,),
}

# Element types of arrays whose items have one shape in the schema.
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

# Values an environment/labels/args/sysctls mapping may hold (compose-spec list_or_dict).
_SCALAR_VALUE = (_STRING, _NUMBER, _BOOLEAN, _NULL)

TOP_LEVEL_KEYS = ("version", "name", "services", "networks", "volumes", "configs", "secrets")


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
    kind = json_type(value)
    return kind in allowed or (kind == _INTEGER and _NUMBER in allowed)


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
    """Check one service's keys and value types (after interpolation, before conversion)."""
    path = f"services.{name}"
    check_type(service, (_OBJECT,), path, file, name)
    for key, value in service.items():
        if not isinstance(key, str):
            raise ComposeFileError(
                f"{path} contains unsupported option: {key!r}", file=file, service=name
            )
        if key.startswith("x-"):
            continue
        allowed = SERVICE_KEY_TYPES.get(key)
        if allowed is None and legacy_v1:
            allowed = V1_SERVICE_KEY_TYPES.get(key)
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


def validate_top_level_entries(section: str, entries: Any, file: str) -> None:
    """``networks``/``volumes``/``configs``/``secrets``: a mapping of name → object or null."""
    check_type(entries, (_OBJECT, _NULL), section, file)
    for name, entry in (entries or {}).items():
        check_type(entry, (_OBJECT, _NULL), f"{section}.{name}", file)
