"""Which files make a project, and what the project is called.

Rules:
- without ``-f``: the first of ``CONFIG_FILE_NAMES`` present in the project directory, else in
  its parents, nearest first (1.29.2 ``find_candidates_in_parent_dirs``); several present →
  the first, with 1.29.2's warning; plus, from the same directory, one override file of
  ``OVERRIDE_FILE_NAMES`` (two or more is 1.29.2's ``DuplicateOverrideFileFound`` error);
- the project name, first found: ``-p``, ``COMPOSE_PROJECT_NAME``, the top-level ``name:``
  (interpolated), the project directory's basename. The first two must already be valid
  names (compose-go ``InvalidProjectNameErr``); the last two are normalized as compose-go's
  ``NormalizeProjectName`` does: lowercased, every character outside ``[a-z0-9_-]``
  removed, leading ``_``/``-`` trimmed.

Pure: the driver lists directories; these functions only choose.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dockyard.compose.loader.errors import ComposeFileError

# The order the issue names: today's names first, then docker-compose's, then fig's.
CONFIG_FILE_NAMES = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "fig.yml",
    "fig.yaml",
)
# docker-compose 1.29.2 DEFAULT_OVERRIDE_FILENAMES.
OVERRIDE_FILE_NAMES = (
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
    "compose.override.yml",
    "compose.override.yaml",
)

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9_-]")


@dataclass(frozen=True)
class Discovered:
    """The files chosen in ``directory`` and the warnings the choice produced."""

    directory: str
    files: tuple[str, ...]
    warnings: tuple[str, ...]


def search_directories(start_directory: str) -> tuple[str, ...]:
    """``start_directory`` and its parents up to ``/``, nearest first."""
    directories = [posixpath.normpath(start_directory)]
    while directories[-1] != posixpath.dirname(directories[-1]):
        directories.append(posixpath.dirname(directories[-1]))
    return tuple(directories)


def choose_files(directory: str, present: Collection[str]) -> Discovered | None:
    """The compose and override files to use in ``directory`` (None: no compose file there)."""
    candidates = [name for name in CONFIG_FILE_NAMES if name in present]
    if not candidates:
        return None
    warnings: list[str] = []
    if len(candidates) > 1:
        warnings.append(
            f"Found multiple config files with supported names: {', '.join(candidates)}\n"
            f"Using {candidates[0]}"
        )
    overrides = [name for name in OVERRIDE_FILE_NAMES if name in present]
    if len(overrides) > 1:
        paths = ", ".join(posixpath.join(directory, name) for name in overrides)
        raise ComposeFileError(
            f"Multiple override files found: {paths}. You may only use a single override file."
        )
    files = [posixpath.join(directory, name) for name in (candidates[0], *overrides)]
    return Discovered(directory, tuple(files), tuple(warnings))


def normalize_project_name(name: str) -> str:
    """compose's ``NormalizeProjectName``: lowercase, only ``[a-z0-9_-]``, no leading ``_-``."""
    return _INVALID_NAME_CHARS.sub("", name.lower()).lstrip("_-")


def _checked(name: str) -> str:
    # compose-go InvalidProjectNameErr, for names the user set imperatively.
    if normalize_project_name(name) != name or not name:
        raise ComposeFileError(
            f'invalid project name "{name}": must consist only of lowercase alphanumeric '
            "characters, hyphens, and underscores as well as start with a letter or number"
        )
    return name


def project_name(
    *,
    explicit: str | None,
    environ: Mapping[str, str],
    file_name: str | None,
    project_directory: str,
) -> str:
    """The project name by compose's precedence (see the module docstring)."""
    if explicit:
        return _checked(explicit)
    if environ.get("COMPOSE_PROJECT_NAME"):
        return _checked(environ["COMPOSE_PROJECT_NAME"])
    # compose-go projectName: the file's name (interpolated) and the directory's basename
    # are normalized, not refused.
    for candidate in (file_name or "", posixpath.basename(project_directory.rstrip("/"))):
        normalized = normalize_project_name(candidate)
        if normalized:
            return normalized
    raise ComposeFileError(
        f'project name must not be empty (no usable name in "{project_directory}"; '
        "use -p or a top-level name:)"
    )
