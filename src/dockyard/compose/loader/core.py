"""The pure loader: file contents + environment + options → one canonical project dict.

Order of work (docker-compose 1.29.2 ``config.load``; compose-go agrees where it matters):

1. each ``-f`` file: YAML 1.2 → interpolation (values only; warnings collected) →
   validation and format conversion to compose-spec shape → shape normalization, relative
   paths against the project directory (Compose: "all paths in the files are relative to
   the base Compose file", i.e. the first ``-f`` file's directory unless
   ``--project-directory``);
2. the files merged in order (``merge.py``); a v1 file may not be merged with a v2+ one;
3. ``extends`` resolved on the merged services (files reached that way resolve their paths
   against their own directory);
4. ``env_file`` contents under ``environment`` (``environment`` wins), bare variables taken
   from the environment and dropped when unset; ``build.args`` likewise but kept as None
   (Docker then applies the Dockerfile's default);
5. profiles: a service with ``profiles`` is kept only when one is active (``--profile``, else
   ``COMPOSE_PROFILES``; ``*`` activates all) or when the service is named explicitly;
6. every mapping's keys sorted, so the same input prints the same output.

The project name is settled first (``-p`` > ``COMPOSE_PROJECT_NAME`` > the files' ``name:``,
interpolated on its own > the directory) and offered to interpolation as
``COMPOSE_PROJECT_NAME``, as compose-go does.

Invariants of the result: ``config`` has exactly ``name``, ``services``, ``networks``,
``volumes``, ``configs``, ``secrets``; services are in canonical shape (``normalize.py``)
with no ``extends``, ``env_file`` or ``x-*`` keys.

Pure: files come in ``contents`` (absolute path → text, or None for "does not exist"); a
file not in it raises ``FileNeeded`` for the driver (``files.py``) to read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.compose.loader import discovery
from dockyard.compose.loader.dotenv import parse_dotenv
from dockyard.compose.loader.errors import ComposeFileError, FileNeeded
from dockyard.compose.loader.extends import ServiceFile, resolve_all_extends
from dockyard.compose.loader.formats import SpecFile, to_spec_shape
from dockyard.compose.loader.include import include_chain_error, merge_imported, parse_includes
from dockyard.compose.loader.interpolation import interpolate_tree
from dockyard.compose.loader.merge import merge_section, merge_services
from dockyard.compose.loader.normalize import normalize_section_entry, normalize_service
from dockyard.compose.loader.yaml12 import parse_yaml

SECTIONS = ("networks", "volumes", "configs", "secrets")


@dataclass(frozen=True)
class LoadOptions:
    """What the command line says, and the environment to interpolate with.

    ``environ`` is the process environment over the ``.env`` file (see
    ``project_environment``); ``profiles`` empty means "use ``COMPOSE_PROFILES``".
    """

    project_directory: str
    environ: Mapping[str, str]
    project_name: str | None = None
    profiles: tuple[str, ...] = ()
    explicit_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedProject:
    """The canonical project dict, the warnings met on the way, and where it came from."""

    config: dict[str, Any]
    warnings: tuple[str, ...]
    working_dir: str
    config_files: tuple[str, ...]
    # The interpolation environment (for the runner: `run -e KEY` takes KEY from it); kept
    # out of repr so that printing a project never prints the shell's secrets.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The project name (``-p`` > ``COMPOSE_PROJECT_NAME`` > ``name:`` > directory)."""
        name: str = self.config["name"]
        return name


def project_environment(
    process_environ: Mapping[str, str], env_files: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """The interpolation environment: the ``.env``/``--env-file`` contents (in order, a later
    file winning), with the process environment over them (compose: the shell wins)."""
    merged: dict[str, str] = {}
    for path, text in env_files:
        merged.update(parse_dotenv(text, path, {**merged, **process_environ}))
    merged.update(process_environ)
    return merged


def _text(contents: Mapping[str, str | None], path: str) -> str | None:
    if path not in contents:
        raise FileNeeded(path)
    return contents[path]


class _Loader:
    """One load: the inputs, the warnings collected, and files parsed for ``extends``."""

    def __init__(self, contents: Mapping[str, str | None], options: LoadOptions) -> None:
        self.contents = contents
        self.options = options
        self.environ: Mapping[str, str] = options.environ
        self.home = options.environ.get("HOME")
        self.warnings: list[str] = []
        self._extends_files: dict[str, ServiceFile] = {}

    def parse(self, path: str) -> Any:
        text = _text(self.contents, path)
        if text is None:
            raise ComposeFileError(f"open {path}: no such file or directory", file=path)
        return parse_yaml(text, path)

    def file_project_name(self, path: str, raw: Any) -> str | None:
        """The top-level ``name:`` interpolated alone (compose-go ``projectName``), so that
        the project name is known before the rest is interpolated with it."""
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            return None
        interpolated = interpolate_tree({"name": raw["name"]}, self.environ, path)
        name: str = interpolated.value["name"]
        return name or None

    def spec_file(self, path: str, known_services: Sequence[str] = (), raw: Any = None) -> SpecFile:
        if raw is None:
            raw = self.parse(path)
        interpolated = interpolate_tree(raw, self.environ, path)
        self.warnings.extend(interpolated.warnings)
        return to_spec_shape(interpolated.value, path, known_services)

    def normalized_services(self, spec: SpecFile, base_dir: str) -> dict[str, dict[str, Any]]:
        return {
            name: normalize_service(service, base_dir, self.home)
            for name, service in spec.services.items()
        }

    def extends_file(self, path: str) -> ServiceFile:
        """A file reached through ``extends: {file: …}``: paths against its own directory."""
        cached = self._extends_files.get(path)
        if cached is None:
            spec = self.spec_file(path)
            base_dir = posixpath.dirname(path)
            cached = ServiceFile(
                path, base_dir, self.normalized_services(spec, base_dir), spec.legacy_v1
            )
            self._extends_files[path] = cached
        return cached


def load_config(
    config_files: Sequence[str],
    contents: Mapping[str, str | None],
    options: LoadOptions,
    *,
    include_chain: tuple[str, ...] = (),
) -> LoadedProject:
    """Load and merge ``config_files`` (absolute paths, in ``-f`` order) into one project.
    `include_chain`: the files whose ``include`` led here (for an included application)."""
    if not config_files:
        raise ComposeFileError("no configuration file provided: not found")
    loader = _Loader(contents, options)
    project_dir = options.project_directory
    raws = [(path, loader.parse(path)) for path in config_files]
    file_name: str | None = None
    for path, raw in raws:
        file_name = loader.file_project_name(path, raw) or file_name
    project = discovery.project_name(
        explicit=options.project_name,
        environ=loader.environ,
        file_name=file_name,
        project_directory=project_dir,
    )
    # compose-go sets COMPOSE_PROJECT_NAME for interpolation to the name it settled on.
    loader.environ = {**loader.environ, "COMPOSE_PROJECT_NAME": project}

    specs: list[SpecFile] = []
    known: list[str] = []
    for path, raw in raws:
        spec = loader.spec_file(path, known, raw)
        if specs and spec.legacy_v1 != specs[0].legacy_v1:
            raise ComposeFileError(
                f"Version mismatch: file {specs[0].file} specifies version "
                f"{_version_label(specs[0])} but extension file {spec.file} uses version "
                f"{_version_label(spec)}",
                file=spec.file,
            )
        specs.append(spec)
        known.extend(spec.services)

    services: dict[str, dict[str, Any]] = {}
    sections: dict[str, dict[str, dict[str, Any]]] = {section: {} for section in SECTIONS}
    imported = _load_includes(specs, contents, loader.environ, options, include_chain)
    for spec in specs:
        for name, service in loader.normalized_services(spec, project_dir).items():
            base = services.get(name)
            services[name] = (
                service if base is None else merge_services(base, service, legacy_v1=spec.legacy_v1)
            )
        for section in SECTIONS:
            entries = {
                name: normalize_section_entry(section, entry, project_dir, loader.home)
                for name, entry in spec.sections[section].items()
            }
            sections[section] = merge_section(sections[section], entries)

    main = ServiceFile(config_files[0], project_dir, services, specs[0].legacy_v1)
    resolved = resolve_all_extends(main, loader.extends_file)
    for name, service in resolved.items():
        resolved[name] = _resolve_environment(service, name, contents, loader.environ)
    # The included applications' resources, loaded and resolved on their own; a name this
    # application defines too must have the same definition.
    for file, included in imported:
        merge_imported(resolved, included["services"], "services", file)
        for section in SECTIONS:
            merge_imported(sections[section], included[section], section, file)

    selected = _select_profiles(resolved, options, loader.environ)
    config: dict[str, Any] = {
        "name": project,
        "services": _sorted_tree(selected),
        **{section: _sorted_tree(sections[section]) for section in SECTIONS},
    }
    return LoadedProject(
        config=config,
        warnings=tuple(dict.fromkeys(loader.warnings)),
        working_dir=project_dir,
        config_files=tuple(config_files),
        environ=dict(options.environ),
    )


def _load_includes(
    specs: Sequence[SpecFile],
    contents: Mapping[str, str | None],
    environ: Mapping[str, str],
    options: LoadOptions,
    chain: tuple[str, ...],
) -> list[tuple[str, dict[str, Any]]]:
    """Each ``include`` of the files, loaded as an application of its own (see include.py):
    (the including file, its canonical config), in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for spec in specs:
        for item in parse_includes(spec.include, spec.file, options.project_directory):
            for path in item.paths:
                if path in chain or path == spec.file:
                    raise include_chain_error((*chain, spec.file), path)
            env_files = item.env_files or (posixpath.join(item.project_directory, ".env"),)
            from_files: dict[str, str] = {}
            for env_path in env_files:
                text = _text(contents, env_path)
                if text is None:
                    if item.env_files:  # named explicitly: it must exist
                        raise ComposeFileError(
                            f"Couldn't find env file: {env_path}", file=spec.file, key="include"
                        )
                    continue
                from_files.update(parse_dotenv(text, env_path, {**environ, **from_files}))
            included = load_config(
                item.paths,
                contents,
                LoadOptions(
                    project_directory=item.project_directory,
                    # compose-go: the including environment, the include's env files over it
                    environ={**environ, **from_files},
                    project_name=options.project_name or environ.get("COMPOSE_PROJECT_NAME"),
                    profiles=("*",),  # the including application selects profiles
                ),
                include_chain=(*chain, spec.file),
            )
            out.append((spec.file, included.config))
    return out


def _version_label(spec: SpecFile) -> str:
    return "1" if spec.legacy_v1 else "2+"


def _resolve_environment(
    service: dict[str, Any],
    name: str,
    contents: Mapping[str, str | None],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    out = dict(service)
    env_files = out.pop("env_file", None)
    if env_files is None and "environment" not in out and "build" not in out:
        return out
    if env_files is not None or "environment" in out:
        merged: dict[str, str | None] = {}
        for env_file in env_files or []:
            path = env_file["path"]
            text = _text(contents, path)
            if text is None:
                if env_file["required"]:
                    # docker-compose 1.29.2 env_vars_from_file.
                    raise ComposeFileError(
                        f"Couldn't find env file: {path}",
                        service=name,
                        key=f"services.{name}.env_file",
                    )
                continue
            merged.update(parse_dotenv(text, path, environ))
        merged.update(out.get("environment") or {})
        # compose: a variable named without a value comes from the environment, and is
        # left out of the container's environment when the environment does not have it.
        out["environment"] = {
            key: (environ[key] if value is None else value)
            for key, value in merged.items()
            if value is not None or key in environ
        }
    build = out.get("build")
    if isinstance(build, dict) and "args" in build:
        # 1.29.2 resolve_build_args: from the environment, None when unset.
        out["build"] = {
            **build,
            "args": {
                key: (environ.get(key) if value is None else value)
                for key, value in build["args"].items()
            },
        }
    return out


def _select_profiles(
    services: dict[str, dict[str, Any]], options: LoadOptions, environ: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    for explicit in options.explicit_services:
        if explicit not in services:
            raise ComposeFileError(f"no such service: {explicit}", service=explicit)
    active = set(options.profiles)
    if not active:
        active = {p for p in environ.get("COMPOSE_PROFILES", "").split(",") if p}
    return {
        name: service
        for name, service in services.items()
        if not service.get("profiles")
        or "*" in active
        or active & set(service["profiles"])
        or name in options.explicit_services
    }


def _sorted_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_tree(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_tree(item) for item in value]
    return value
