"""``extends``: a service built on another one, in the same file or another file.

Rules (docker-compose 1.29.2 ``ServiceExtendsResolver``):

- ``extends: name`` or ``{service: name}`` names a service of the same file;
  ``{file: f, service: name}`` one of file ``f``, relative to the directory that file's
  relative paths resolve against (the project directory for ``-f`` files, the extending
  file's own directory for files reached through ``extends``);
- resolution is recursive; a service met twice on the chain is a cycle, reported with the
  chain in order ("Circular reference:\\n  web in a.yml\\n  extends base in a.yml …");
- the extended service must not have ``links``, ``volumes_from``, ``depends_on``,
  ``net: container:…`` or ``network_mode: service:…``: those name other services of its own
  file, which would not exist in the extending one ("Cannot extend service 'base' in f:
  services with 'links' cannot be extended");
- the result is ``merge_services(extended, extending)``: the extending service is the
  override, with the same per-key rules as multi-file merges; ``extends`` itself is dropped.

Pure: another file comes through a ``load_file`` callable supplied by the core (which raises
``FileNeeded`` when it was not handed that file).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.compose.loader.errors import ComposeFileError
from dockyard.compose.loader.merge import merge_services


@dataclass(frozen=True)
class ServiceFile:
    """The services of one file, resolved paths against ``base_dir``, in canonical shape."""

    file: str
    base_dir: str
    services: Mapping[str, Mapping[str, Any]]
    legacy_v1: bool


LoadFile = Callable[[str], ServiceFile]


def resolve_all_extends(source: ServiceFile, load_file: LoadFile) -> dict[str, dict[str, Any]]:
    """Every service of ``source`` with its ``extends`` chain resolved."""
    return {name: _resolve(source, name, (), load_file) for name in source.services}


def _resolve(
    source: ServiceFile,
    name: str,
    trail: tuple[tuple[str, str], ...],
    load_file: LoadFile,
) -> dict[str, Any]:
    signature = (source.file, name)
    if signature in trail:
        chain = [*trail, signature]
        lines = "\n  extends ".join(f"{service} in {file}" for file, service in chain)
        raise ComposeFileError(
            f"Circular reference:\n  {lines}", file=source.file, service=name, key="extends"
        )
    service = dict(source.services[name])
    extends = service.pop("extends", None)
    if extends is None:
        return service
    target_source = source
    if "file" in extends:
        path = posixpath.normpath(posixpath.join(source.base_dir, extends["file"]))
        if path != source.file:
            target_source = load_file(path)
            if target_source.legacy_v1 != source.legacy_v1:
                raise ComposeFileError(
                    f"Version mismatch: file {source.file} specifies version "
                    f"{'1' if source.legacy_v1 else '2+'} but extension file "
                    f"{target_source.file} uses version "
                    f"{'1' if target_source.legacy_v1 else '2+'}",
                    file=source.file,
                    service=name,
                    key=f"services.{name}.extends",
                )
    target_name = extends["service"]
    if target_name not in target_source.services:
        raise ComposeFileError(
            f"Cannot extend service '{target_name}' in {target_source.file}: Service not found",
            file=source.file,
            service=name,
            key=f"services.{name}.extends",
        )
    extended = _resolve(target_source, target_name, (*trail, signature), load_file)
    _refuse_unextendable(extended, target_source.file, target_name)
    return merge_services(extended, service, legacy_v1=source.legacy_v1)


def _refuse_unextendable(service: Mapping[str, Any], file: str, name: str) -> None:
    prefix = f"Cannot extend service '{name}' in {file}:"
    for key in ("links", "volumes_from", "depends_on"):
        if key in service:
            raise ComposeFileError(
                f"{prefix} services with '{key}' cannot be extended",
                file=file,
                service=name,
                key=f"services.{name}.{key}",
            )
    network_mode = service.get("network_mode")
    if isinstance(network_mode, str) and network_mode.startswith("service:"):
        raise ComposeFileError(
            f"{prefix} services with 'network_mode: service' cannot be extended",
            file=file,
            service=name,
            key=f"services.{name}.network_mode",
        )
