"""The compose-spec's top-level ``include``: other Compose applications pulled into this one.

Role: read the ``include`` list of one file into :class:`IncludeSpec` values, and merge an
included application's resources into the including one. The loading itself (each include
is loaded as a project of its own, recursively) is ``core.py``'s.

Rules (compose-spec "Include"; compose-go ``loader/include.go``):
- An item is a path, or a mapping ``{path: str | [str], project_directory: str,
  env_file: str | [str]}`` (``path`` required). Relative paths, the project directory and
  the env files resolve against the including project's directory.
- An included application's project directory defaults to its first file's directory; its
  relative paths resolve against that, and its interpolation environment is the including
  one with its env files over it (their values win, as compose-go merges them); without
  ``env_file`` its project directory's ``.env`` is used when there is one.
- Its services, networks, volumes, configs and secrets join the including application's.
  The same name defined on both sides is an error, unless both definitions are the same
  (compose-go: "services.web conflicts with imported resource").
- A file that includes itself, directly or not, is an error naming the chain.

Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.compose.loader.errors import ComposeFileError

__all__ = ["IncludeSpec", "include_chain_error", "merge_imported", "parse_includes"]

_ITEM_KEYS = ("path", "project_directory", "env_file")


@dataclass(frozen=True)
class IncludeSpec:
    """One ``include`` item, resolved: absolute paths."""

    paths: tuple[str, ...]
    project_directory: str
    env_files: tuple[str, ...]  # empty: the project directory's .env, if any


def _strings(value: Any, key: str, file: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ComposeFileError(
        f"{key} contains an invalid type, it should be a string, or an array of strings",
        file=file,
        key=key,
    )


def parse_includes(raw: Any, file: str, base_dir: str) -> tuple[IncludeSpec, ...]:
    """The file's ``include`` list (None: no includes), paths resolved against `base_dir`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ComposeFileError(
            "include contains an invalid type, it should be an array", file=file, key="include"
        )
    out: list[IncludeSpec] = []
    for index, item in enumerate(raw):
        key = f"include[{index}]"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            raise ComposeFileError(
                f"{key} contains an invalid type, it should be a string or an object",
                file=file,
                key=key,
            )
        for name in item:
            if name not in _ITEM_KEYS and not str(name).startswith("x-"):
                raise ComposeFileError(
                    f"{key} contains unsupported option: '{name}'", file=file, key=key
                )
        if "path" not in item:
            raise ComposeFileError(f"{key}.path is required", file=file, key=f"{key}.path")
        paths = tuple(
            posixpath.normpath(posixpath.join(base_dir, p))
            for p in _strings(item["path"], f"{key}.path", file)
        )
        project_directory = posixpath.dirname(paths[0])
        if "project_directory" in item:
            directory = item["project_directory"]
            if not isinstance(directory, str):
                raise ComposeFileError(
                    f"{key}.project_directory contains an invalid type, it should be a string",
                    file=file,
                    key=f"{key}.project_directory",
                )
            project_directory = posixpath.normpath(posixpath.join(base_dir, directory))
        env_files: tuple[str, ...] = ()
        if "env_file" in item:
            env_files = tuple(
                posixpath.normpath(posixpath.join(base_dir, p))
                for p in _strings(item["env_file"], f"{key}.env_file", file)
            )
        out.append(IncludeSpec(paths, project_directory, env_files))
    return tuple(out)


def merge_imported(
    target: dict[str, dict[str, Any]],
    imported: Mapping[str, dict[str, Any]],
    section: str,
    file: str,
) -> None:
    """Add `imported` (one section of an included application) to `target` in place; the
    same name with another definition is an error."""
    for name, definition in imported.items():
        existing = target.get(name)
        if existing is not None and existing != definition:
            raise ComposeFileError(
                f"{section}.{name} conflicts with imported resource",
                file=file,
                service=name if section == "services" else None,
                key=f"{section}.{name}",
            )
        target[name] = definition


def include_chain_error(chain: Sequence[str], path: str) -> ComposeFileError:
    """The error for an include that leads back to a file of its own chain."""
    return ComposeFileError(
        f"include cycle detected: {' -> '.join((*chain, path))}", file=chain[-1] if chain else path
    )
