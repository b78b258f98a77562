"""Shape normalization of services: one canonical form per key, paths made absolute.

What the model builder relies on (and nothing more: ``ports``, ``volumes``, ``command``,
``healthcheck`` … stay as written, short syntax included):

- ``environment``, ``build.args``: mapping str → str | None (list ``KEY=VAL`` → ``VAL``;
  bare ``KEY`` → None, resolved from the environment at the end of loading);
- ``labels``, ``annotations``, ``build.labels``, ``sysctls``: mapping str → str (list
  ``k=v``; ``k`` alone → ``""`` as 1.29.2's ``split_kv``);
- ``extra_hosts``: mapping host → address (list ``host:ip`` or ``host=ip``, split at the
  first separator so IPv6 addresses survive);
- ``depends_on``: mapping service → ``{"condition": "service_started", …}``;
- ``networks``: mapping name → None | mapping;
- ``build``: a mapping with an absolute ``context`` (URLs and git remotes untouched);
- ``env_file``: a list of ``{"path": absolute, "required": bool}``;
- ``dns``, ``dns_search``, ``tmpfs``: lists (1.29.2 ``process_service``: ``to_list``);
- ``extends``: ``{"service": …, "file"?: …}``;
- bind-mount sources starting with ``.`` or ``~`` (short syntax) and relative long-syntax
  bind sources: absolute (1.29.2 ``resolve_volume_paths``; ``~`` from ``HOME``).

Scalars in mappings are rendered as compose does: numbers as written, booleans as
``"true"``/``"false"`` (compose-go's string conversion). Pure: paths are strings joined with
``posixpath``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

# docker-compose 1.29.2 DOCKER_VALID_URL_PREFIXES: build contexts that are not paths.
_REMOTE_CONTEXT_PREFIXES = ("http://", "https://", "git://", "github.com/", "git@")


def scalar_text(value: Any) -> str:
    """A YAML scalar as the string compose puts in an environment or label."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand_path(base_dir: str, path: str, home: str | None) -> str:
    """``path`` made absolute against ``base_dir``, ``~`` against ``home`` (1.29.2
    ``expand_path``: ``abspath(join(working_dir, expanduser(path)))``)."""
    if home is not None and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    return posixpath.normpath(posixpath.join(base_dir, path))


def _env_mapping(value: Any) -> dict[str, str | None]:
    if isinstance(value, dict):
        return {str(k): (None if v is None else scalar_text(v)) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value or []:
        key, sep, val = item.partition("=")
        out[key] = val if sep else None
    return out


def _kv_mapping(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): ("" if v is None else scalar_text(v)) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value or []:
        key, _, val = item.partition("=")
        out[key] = val
    return out


def _extra_hosts(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            str(k): (v if isinstance(v, list) else "" if v is None else scalar_text(v))
            for k, v in value.items()
        }
    out: dict[str, Any] = {}
    for item in value or []:
        # compose-go: "host=ip" when "=" is present, else split at the first ":" so that
        # "host:::1" keeps its IPv6 address.
        separator = "=" if "=" in item else ":"
        host, _, address = item.partition(separator)
        out[host] = address
    return out


def _to_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _is_remote_context(context: str) -> bool:
    return context.startswith(_REMOTE_CONTEXT_PREFIXES)


def _volume(value: Any, base_dir: str, home: str | None) -> Any:
    if isinstance(value, dict):
        source = value.get("source")
        if (
            value.get("type") == "bind"
            and isinstance(source, str)
            and source
            and not source.startswith("/")
        ):
            return {**value, "source": expand_path(base_dir, source, home)}
        return value
    if not isinstance(value, str):
        return value
    source, sep, rest = value.partition(":")
    # Short syntax "SRC:DST[:MODE]": only a source starting with "." or "~" is a relative
    # host path; "data:/x" is a named volume and "/abs:/x" already absolute.
    if sep and source.startswith((".", "~")):
        return f"{expand_path(base_dir, source, home)}:{rest}"
    return value


def normalize_service(
    service: Mapping[str, Any], base_dir: str, home: str | None
) -> dict[str, Any]:
    """One service in canonical shape; relative paths resolved against ``base_dir``."""
    out = dict(service)
    if "environment" in out:
        out["environment"] = _env_mapping(out["environment"])
    for key in ("labels", "annotations", "sysctls"):
        if key in out:
            out[key] = _kv_mapping(out[key])
    if "extra_hosts" in out:
        out["extra_hosts"] = _extra_hosts(out["extra_hosts"])
    if "depends_on" in out:
        depends_on = out["depends_on"]
        if isinstance(depends_on, list):
            out["depends_on"] = {name: {"condition": "service_started"} for name in depends_on}
        else:
            out["depends_on"] = {
                name: {"condition": "service_started", **(spec or {})}
                for name, spec in depends_on.items()
            }
    if "networks" in out:
        networks = out["networks"]
        out["networks"] = dict.fromkeys(networks) if isinstance(networks, list) else dict(networks)
    if "build" in out:
        out["build"] = _build(out["build"], base_dir, home)
    if "env_file" in out:
        out["env_file"] = [_env_file(item, base_dir, home) for item in _to_list(out["env_file"])]
    for key in ("dns", "dns_search", "tmpfs"):
        if key in out:
            out[key] = _to_list(out[key])
    if "extends" in out:
        extends = out["extends"]
        out["extends"] = {"service": extends} if isinstance(extends, str) else dict(extends)
    if "volumes" in out:
        out["volumes"] = [_volume(item, base_dir, home) for item in out["volumes"]]
    return out


def _build(build: Any, base_dir: str, home: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"context": build} if isinstance(build, str) else dict(build)
    context = out.get("context", ".")
    if not _is_remote_context(context):
        context = expand_path(base_dir, context, home)
    out["context"] = context
    if "args" in out:
        out["args"] = _env_mapping(out["args"])
    if "labels" in out:
        out["labels"] = _kv_mapping(out["labels"])
    if "extra_hosts" in out:
        out["extra_hosts"] = _extra_hosts(out["extra_hosts"])
    return out


def _env_file(item: Any, base_dir: str, home: str | None) -> dict[str, Any]:
    if isinstance(item, dict):
        # compose-spec long form: {path, required (default true)}
        return {
            "path": expand_path(base_dir, str(item["path"]), home),
            "required": bool(item.get("required", True)),
        }
    return {"path": expand_path(base_dir, item, home), "required": True}


def normalize_section_entry(
    section: str, entry: Mapping[str, Any], base_dir: str, home: str | None
) -> dict[str, Any]:
    """A top-level entry: ``external: {name}`` → ``external: true`` + ``name``; a
    ``configs``/``secrets`` ``file`` made absolute; labels as a mapping; the rest as written."""
    out = dict(entry)
    external = out.get("external")
    if isinstance(external, dict):
        # Compose file format 2/3.0-3.3 wrote "external: {name: x}"; compose-spec (and
        # 1.29.2's normalization) says "external: true" with a top-level "name: x".
        out["external"] = True
        if "name" in external:
            out["name"] = external["name"]
    if section in ("configs", "secrets") and isinstance(out.get("file"), str):
        out["file"] = expand_path(base_dir, out["file"], home)
    if "labels" in out:
        out["labels"] = _kv_mapping(out["labels"])
    return out
