"""Every Compose file format a user may have, rewritten into compose-spec shape.

Formats (told apart as docker-compose 1.29.2 ``ConfigFile.version`` does, plus the
early proposal):

- ``containers``: the early proposal, services under a top-level ``containers:`` key;
- ``v1``: Compose file format 1 (``fig.yml`` days): no ``version``, no ``services``/
  ``networks``/``volumes`` section, every top-level key a service;
- ``v2``/``v3``: ``version: "2.x"``/``"3.x"`` (a string; ``"1"`` and anything else is refused
  with 1.29.2's messages), same sections as the spec;
- ``spec``: the compose-spec; no ``version`` (or one that is ignored) and ``services:`` etc.

The result of ``to_spec_shape`` always has ``services``, ``networks``, ``volumes``,
``configs``, ``secrets`` (mappings) and ``name`` (str or None), with ``x-*`` keys dropped at the
top level and in services (anchors were resolved by the YAML parser already). v1 service keys
are rewritten as 1.29.2 does in ``finalize_service``/``normalize_v1_service_format``:
``net`` → ``network_mode`` (``container:x`` → ``service:x`` when x is a service),
``log_driver``/``log_opt`` → ``logging``, ``dockerfile`` → ``build.dockerfile``.

Pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from dockyard.compose.loader import schema
from dockyard.compose.loader.errors import ComposeFileError

FileFormat = Literal["containers", "v1", "v2", "v3", "spec"]

_SECTIONS = ("networks", "volumes", "configs", "secrets")
# docker-compose 1.29.2 ConfigFile.version: "^[1-3]+(\.\d+)?$".
_VERSION = re.compile(r"^[1-3]+(\.\d+)?$")
# compose-spec: services' names match "^[a-zA-Z0-9._-]+$" (1.29.2 the same set).
_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


@dataclass(frozen=True)
class SpecFile:
    """One file in compose-spec shape, with the format it was written in."""

    file: str
    file_format: FileFormat
    name: str | None
    services: dict[str, dict[str, Any]]
    sections: dict[str, dict[str, Any]]
    include: Any = None  # the raw `include` list (include.py reads it against a directory)

    @property
    def legacy_v1(self) -> bool:
        """v1 and ``containers:`` files merge ``image``/``build`` as 1.29.2's V1 does."""
        return self.file_format in ("containers", "v1")


def detect_format(raw: dict[str, Any], file: str) -> FileFormat:
    """The format of a parsed file (a mapping), or the 1.29.2-worded version error."""
    if "containers" in raw and isinstance(raw["containers"], dict) and "services" not in raw:
        return "containers"
    version = raw.get("version")
    if not version:
        if any(raw.get(section) for section in ("services", "networks", "volumes")):
            return "spec"
        if "services" in raw or "name" in raw:
            return "spec"
        if isinstance(raw.get("include"), list):
            return "spec"  # a v1 service is a mapping: `include: [...]` is the spec's key
        return "v1"
    if isinstance(version, dict):
        # 1.29.2: "Assuming 'version' is the name of a service": a v1 file.
        return "v1"
    if not isinstance(version, str):
        raise ComposeFileError(
            f'Version in "{file}" is invalid - it should be a string.', file=file, key="version"
        )
    if not _VERSION.match(version):
        raise ComposeFileError(
            f'Version "{version}" in "{file}" is invalid.', file=file, key="version"
        )
    if version.startswith("1"):
        raise ComposeFileError(
            f'Version in "{file}" is invalid. You might be seeing this error because you\'re '
            "using the wrong Compose file version. Either specify a supported version "
            '(e.g "2.2" or "3.3") and place your service definitions under the `services` '
            "key, or omit the `version` key and place your service definitions at the root "
            "of the file to use version 1.",
            file=file,
            key="version",
        )
    return "v2" if version.startswith("2") else "v3"


def to_spec_shape(raw: Any, file: str, known_services: Collection[str] = ()) -> SpecFile:
    """Validate and rewrite one parsed, interpolated file into compose-spec shape.

    ``known_services`` are the services of the files loaded before this one, for v1's
    ``net: container:x`` (a service x becomes ``service:x``).
    """
    if raw is None:
        raise ComposeFileError("empty compose file", file=file)
    if not isinstance(raw, dict):
        raise ComposeFileError(
            f"Top level object in '{file}' needs to be an object not '{type(raw).__name__}'.",
            file=file,
        )
    file_format = detect_format(raw, file)
    for key in raw:
        if not isinstance(key, str):
            raise ComposeFileError(f"Invalid top-level property {key!r}", file=file)
    if file_format == "v1":
        services_raw: Any = {k: v for k, v in raw.items() if not k.startswith("x-")}
        top: dict[str, Any] = {}
    elif file_format == "containers":
        _refuse_unknown_top_level(raw, ("containers",), file)
        services_raw = raw["containers"]
        top = {}
    else:
        _refuse_unknown_top_level(raw, schema.TOP_LEVEL_KEYS, file)
        services_raw = raw.get("services") or {}
        schema.check_type(services_raw, ("object",), "services", file)
        top = raw
    legacy = file_format in ("v1", "containers")
    names = set(known_services) | {str(name) for name in services_raw}
    services: dict[str, dict[str, Any]] = {}
    for name, service in services_raw.items():
        if not isinstance(name, str) or not _SERVICE_NAME.match(name):
            raise ComposeFileError(
                f"Invalid service name '{name}' - only [a-zA-Z0-9\\._\\-] characters are allowed",
                file=file,
                service=str(name),
            )
        schema.validate_service(name, service, file, legacy_v1=legacy)
        plain = {k: v for k, v in service.items() if not k.startswith("x-")}
        services[name] = _convert_v1_keys(plain, names) if legacy else plain
    sections: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        entries = top.get(section)
        schema.validate_top_level_entries(section, entries, file)
        sections[section] = {
            str(k): ({} if v is None else {kk: vv for kk, vv in v.items()})
            for k, v in (entries or {}).items()
            if not str(k).startswith("x-")
        }
    name = top.get("name")
    if name is not None:
        schema.check_type(name, ("string",), "name", file)
    return SpecFile(file, file_format, name, services, sections, top.get("include"))


def _refuse_unknown_top_level(raw: dict[str, Any], allowed: Collection[str], file: str) -> None:
    for key in raw:
        if key.startswith("x-") or key in allowed:
            continue
        # 1.29.2: 'Invalid top-level property "foo". Valid top-level sections for this
        # Compose file are: ..., and extensions starting with "x-".'
        raise ComposeFileError(
            f'Invalid top-level property "{key}". Valid top-level sections for this Compose '
            f'file are: {", ".join(allowed)}, and extensions starting with "x-".',
            file=file,
            key=key,
        )


def _convert_v1_keys(service: dict[str, Any], service_names: Collection[str]) -> dict[str, Any]:
    out = dict(service)
    if "net" in out:
        net = out.pop("net")
        container = net.removeprefix("container:") if net.startswith("container:") else None
        if container is not None and container in service_names:
            out["network_mode"] = f"service:{container}"
        else:
            out["network_mode"] = net
    if "log_driver" in out or "log_opt" in out:
        logging = dict(out.get("logging") or {})
        if "log_driver" in out:
            logging["driver"] = out.pop("log_driver")
        if "log_opt" in out:
            logging["options"] = out.pop("log_opt")
        out["logging"] = logging
    if "dockerfile" in out:
        build = out.get("build", {})
        build = {"context": build} if isinstance(build, str) else dict(build)
        build["dockerfile"] = out.pop("dockerfile")
        out["build"] = build
    return out
