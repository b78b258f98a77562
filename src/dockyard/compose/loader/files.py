"""The loader's only I/O: find and read the files, then hand everything to the pure core.

``load_project`` is what ``dockyard compose`` calls. It

1. reads the ``--env-file``s (else ``.env`` in the project directory, when present) and
   builds the interpolation environment (``core.project_environment``: the shell wins);
2. takes the ``-f`` files, else ``COMPOSE_FILE`` (``os.pathsep``-separated, as compose), else
   discovers them from the project directory upwards (``discovery.py``);
3. calls ``core.load_config`` and, each time the core asks for a file it was not given
   (``FileNeeded``: an ``extends`` target, an ``env_file``), reads it and calls again. A file
   that does not exist is passed as None: the core decides whether that is an error.

Files are read as UTF-8 (a BOM allowed, as compose-go). The number of rounds is bounded by
``MAX_FILES``, so a pathological ``extends`` web cannot loop forever.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from dockyard.compose.loader import discovery
from dockyard.compose.loader.core import (
    LoadedProject,
    LoadOptions,
    load_config,
    project_environment,
)
from dockyard.compose.loader.errors import ComposeFileError, FileNeeded

MAX_FILES = 256
STDIN_PATH = "-"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise ComposeFileError(f"read {path}: is a directory", file=path) from None
    except UnicodeDecodeError as err:
        raise ComposeFileError(f"{path} is not UTF-8 text: {err.reason}", file=path) from None
    except OSError as err:
        raise ComposeFileError(f"open {path}: {err.strerror}", file=path) from None


def _discover(start_directory: str) -> discovery.Discovered:
    for directory in discovery.search_directories(start_directory):
        try:
            present = set(os.listdir(directory))
        except OSError:
            continue
        found = discovery.choose_files(
            directory, {name for name in present if os.path.isfile(os.path.join(directory, name))}
        )
        if found is not None:
            return found
    # docker compose v2's wording when nothing is found.
    raise ComposeFileError(
        "no configuration file provided: not found (looked for "
        f"{', '.join(discovery.CONFIG_FILE_NAMES)} in {start_directory} and its parents)"
    )


def load_project(
    paths: Sequence[str] = (),
    project_directory: str | None = None,
    env_files: Sequence[str] = (),
    profiles: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    project_name: str | None = None,
    explicit_services: Sequence[str] = (),
) -> LoadedProject:
    """Load the project the command line describes (``-f``, ``--project-directory``,
    ``--env-file``, ``--profile``, ``-p``); ``environ`` defaults to the process's."""
    process_environ = dict(os.environ if environ is None else environ)
    cwd = os.getcwd()
    start_directory = os.path.abspath(project_directory or cwd)

    env_paths = [os.path.abspath(path) for path in env_files]
    if not env_paths and os.path.isfile(os.path.join(start_directory, ".env")):
        env_paths = [os.path.join(start_directory, ".env")]
    env_texts: list[tuple[str, str]] = []
    for env_path in env_paths:
        text = _read(env_path)
        if text is None:
            raise ComposeFileError(f"Couldn't find env file: {env_path}", file=env_path)
        env_texts.append((env_path, text))
    interpolation_environ = project_environment(process_environ, env_texts)

    warnings: tuple[str, ...] = ()
    from_stdin: dict[str, str] = {}
    if paths:
        config_files = []
        for path in paths:
            if path == STDIN_PATH:
                # `-f -`: the file comes from standard input and the project directory is
                # the current one (docker-compose 1.29.2, docker compose v2); it is named
                # `-` in that directory, so relative paths in it resolve from there.
                path = os.path.join(start_directory, STDIN_PATH)
                if path not in from_stdin:
                    from_stdin[path] = sys.stdin.read()
            config_files.append(os.path.abspath(path))
    elif interpolation_environ.get("COMPOSE_FILE"):
        config_files = [
            os.path.abspath(path)
            for path in interpolation_environ["COMPOSE_FILE"].split(os.pathsep)
            if path
        ]
    else:
        found = _discover(start_directory)
        config_files = list(found.files)
        warnings = found.warnings
    working_dir = (
        os.path.abspath(project_directory)
        if project_directory
        else os.path.dirname(config_files[0])
    )

    options = LoadOptions(
        project_directory=working_dir,
        environ=interpolation_environ,
        project_name=project_name,
        profiles=tuple(profiles),
        explicit_services=tuple(explicit_services),
    )
    contents: dict[str, str | None] = {
        path: from_stdin[path] if path in from_stdin else _read(path) for path in config_files
    }
    for _ in range(MAX_FILES):
        try:
            loaded = load_config(config_files, contents, options)
        except FileNeeded as need:
            contents[need.path] = _read(need.path)
            continue
        if warnings:
            return LoadedProject(
                config=loaded.config,
                warnings=warnings + loaded.warnings,
                working_dir=loaded.working_dir,
                config_files=loaded.config_files,
                environ=loaded.environ,
            )
        return loaded
    raise ComposeFileError(f"more than {MAX_FILES} files reached through extends/env_file")
