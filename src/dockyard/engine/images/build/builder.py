"""The classic builder's driver: runs a parsed Dockerfile against the engine.

Role: the I/O around the pure parts (`dockerfile`, `instructions`, `shell_lex`, `state`,
`cache`): resolve base images, probe the layer cache, run RUN steps in containers of this
engine, write COPY/ADD/WORKDIR changes into a fresh overlay snapshot, turn the changes into
layers (`diff_tar.write_diff_tar` → `ImageStore.register_layer`) and commit one image per
step (`ImageStore.commit_image(parent=…)`), streaming Docker's progress text.

Invariants (moby builder/dockerfile, 20.10):
- Each step commits an image whose parent is the previous step's; metadata steps add a
  history entry with `empty_layer: true` and no layer; a step that changes nothing (a RUN
  that writes nothing) is an empty layer too, as Docker's `layer.IsEmpty`.
- Image configs carry `container_config` (the step's config with its `#(nop)` or RUN
  Cmd): it is the cache key (`cache.py`), kept byte for byte in the stored config.
- Every container, snapshot and mount a build creates is removed before the build
  answers, on success and on failure alike. (Docker keeps a failed RUN's container unless
  `--force-rm`; dockyard never leaves one.) Intermediate images stay: they are the cache.
- Output is a sequence of `BuildEvent`s; the API layer turns them into Docker's JSON
  messages. A failure raises `BuildError` with Docker's message (and exit code for RUN).
- Blocking work (the store, tar writing, copying) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.engine.containers import EngineError
from dockyard.engine.images.build import BUILD_SNAPSHOT_PREFIX
from dockyard.engine.images.build.cache import CacheCandidate, pick_cached, sources_hash
from dockyard.engine.images.build.context import (
    BuildContext,
    ContextError,
    SourceInfo,
    SourceTree,
    decompressed,
    extract_tar_into,
    resolve_in_scope,
    unpack_context,
)
from dockyard.engine.images.build.dockerfile import ParserError, parse_dockerfile
from dockyard.engine.images.build.instructions import (
    AddCommand,
    Command,
    CopyCommand,
    InstructionError,
    LabelCommand,
    OnbuildCommand,
    RunCommand,
    Stage,
    WorkdirCommand,
    find_stage,
    parse_command,
    parse_stages,
)
from dockyard.engine.images.build.shell_lex import LexError, ShellLex, env_map
from dockyard.engine.images.build.state import (
    BuildArgs,
    DispatchError,
    apply_metadata,
    comment_cmd,
    expand_command,
    normalize_dest,
    prepend_env_on_cmd,
    run_cmd_line,
    with_default_path,
)
from dockyard.engine.images.diff_tar import write_diff_tar
from dockyard.engine.images.model import (
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    InvalidReference,
    RootFS,
    format_time,
    go_json,
    parse_reference,
    short_id,
)
from dockyard.engine.images.snapshotter import SnapshotError, mount, unmount
from dockyard.engine.images.store import (
    ImageNotFound,
    ImageStoreError,
    LayerError,
    LayerRecord,
    host_platform,
    remove_tree,
)

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

__all__ = [
    "BuildError",
    "BuildEvent",
    "BuildInputError",
    "BuildOptions",
    "Builder",
    "prepare_build",
]

# What the runtime mounts over a container's root (moby daemon/initlayer: Docker keeps
# these in a separate init layer, so they never reach a RUN step's layer).
RUN_EXCLUDES = (
    "dev",
    "proc",
    "sys",
    ".dockerenv",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
)
SCRATCH = "scratch"
CHMOD_NEEDS_BUILDKIT = (
    "the --chmod option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
    "to learn how to build images with BuildKit enabled"
)
_CHUNK_BYTES = 1 << 20


class BuildError(Exception):
    """A build that failed once running; Docker's message (and JSONError code, if any)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BuildInputError(ValueError):
    """A request refused before the build starts (HTTP 400 with Docker's message)."""


@dataclass(frozen=True)
class BuildOptions:
    """The `POST /build` query, snake_case."""

    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    no_cache: bool = False
    pull: bool = False
    remove: bool = True
    force_remove: bool = False
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    network_mode: str = ""  # for RUN containers; "" is the engine's default


@dataclass(frozen=True)
class BuildEvent:
    """One message of the build output: text, a stage's image ID, or a pull status."""

    stream: str = ""
    aux_id: str = ""
    status: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PreparedBuild:
    context: BuildContext
    stages: tuple[Stage, ...]
    meta_args: tuple[Command, ...]
    escape_token: str
    warnings: tuple[str, ...]
    tags: tuple[str, ...]  # normalized "name:tag"

    @property
    def total_steps(self) -> int:
        # moby dispatchDockerfileWithCancellation counts the global ARGs as steps too.
        return len(self.meta_args) + sum(1 + len(stage.commands) for stage in self.stages)


def _text(message: str) -> BuildEvent:
    return BuildEvent(stream=message)


async def prepare_build(body: bytes, options: BuildOptions, workdir: Path) -> PreparedBuild:
    """Everything dockerd checks before its first message: the tags, the context, the
    Dockerfile and the target. Raises `BuildInputError`; leaves nothing behind then."""
    tags = []
    for tag in options.tags:
        try:
            ref = parse_reference(tag)
        except InvalidReference as e:
            raise BuildInputError(str(e)) from None
        if ref.digest is not None:
            raise BuildInputError("build tag cannot contain a digest")
        tags.append(ref.familiar())
    try:
        context = await asyncio.to_thread(
            unpack_context, body, workdir / "context", options.dockerfile
        )
    except ContextError as e:
        raise BuildInputError(str(e)) from None
    try:
        return _prepare_stages(context, options, tuple(tags))
    except BaseException:
        context.close()
        raise


def _prepare_stages(
    context: BuildContext, options: BuildOptions, tags: tuple[str, ...]
) -> PreparedBuild:
    try:
        parsed = parse_dockerfile(context.dockerfile_text)
    except ParserError as e:
        raise BuildInputError(str(e)) from None
    try:
        stages, meta_args = parse_stages(parsed.nodes)
    except InstructionError as e:
        # moby instructions.Parse wraps with the line (parseError).
        raise BuildInputError(f"dockerfile parse error line {e.line}: {e}") from None
    if not stages:
        raise BuildInputError("No image was generated. Is your Dockerfile empty?")
    if options.target:
        index = find_stage(stages, options.target)
        if index is None:
            raise BuildInputError(f"failed to reach build target {options.target} in Dockerfile")
        stages = stages[: index + 1]
    if options.labels:
        # moby buildLabelOptions: one LABEL per `--label`, sorted, after the last stage.
        last = stages[-1]
        extra = tuple(
            LabelCommand(
                name="label",
                original=f"LABEL {key}={value}",
                line=0,
                pairs=((key, value),),
            )
            for key, value in sorted(options.labels.items())
        )
        stages[-1] = replace(last, commands=(*last.commands, *extra))
    return PreparedBuild(
        context=context,
        stages=tuple(stages),
        meta_args=tuple(meta_args),
        escape_token=parsed.escape_token,
        warnings=parsed.warnings,
        tags=tags,
    )


@dataclass
class _StageState:
    """moby dispatchState: what a stage has built so far."""

    name: str
    build_args: BuildArgs
    image_id: str = ""  # "" for FROM scratch until the first commit
    image: ImageConfig | None = None
    run_config: ContainerConfig = field(default_factory=ContainerConfig)
    maintainer: str = ""
    cmd_set: bool = False
    cache_busted: bool = False


@dataclass(frozen=True)
class _StageResult:
    name: str
    image_id: str


class Builder:
    """One build: `run()` yields its output; `image_id` is the result once it ends."""

    def __init__(
        self, engine: Engine, prepared: PreparedBuild, options: BuildOptions, workdir: Path
    ) -> None:
        self.engine = engine
        self.store = engine.images
        self.prepared = prepared
        self.options = options
        self.workdir = workdir
        self.lex = ShellLex(prepared.escape_token)
        self.build_args = BuildArgs(options.build_args)
        self.results: list[_StageResult] = []
        self.image_id = ""
        self._step = 0
        self._containers: set[str] = set()

    # -- the build ---------------------------------------------------------------------

    async def run(self) -> AsyncIterator[BuildEvent]:
        try:
            async for event in self._run():
                yield event
        finally:
            await self._remove_containers()

    async def _run(self) -> AsyncIterator[BuildEvent]:
        for command in self.prepared.meta_args:
            yield self._step_line(command.original)
            self._process_meta_arg(command)
        state: _StageState | None = None
        for stage in self.prepared.stages:
            if stage.name and self._stage_image(stage.name) is not None:
                # moby stagesBuildResults.checkStageNameAvailable
                raise BuildError(f"{stage.name} stage name already used")
            state = _StageState(stage.name, self.build_args.for_stage())
            yield self._step_line(stage.original)
            async for event in self._from(state, stage):
                yield event
            yield _text(f" ---> {short_id(state.image_id)}\n")
            for command in stage.commands:
                yield self._step_line(command.original)
                async for event in self._dispatch(state, command):
                    yield event
                yield _text(f" ---> {short_id(state.image_id)}\n")
            if state.image_id:
                yield BuildEvent(aux_id=state.image_id)
            self.results.append(_StageResult(state.name, state.image_id))
        for warning in self.prepared.warnings:
            yield _text(warning + "\n")
        unused = self.build_args.unused()
        if unused:
            yield _text(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"
            )
        if state is None or not state.image_id:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        self.image_id = state.image_id

    def _step_line(self, original: str) -> BuildEvent:
        self._step += 1
        return _text(f"Step {self._step}/{self.prepared.total_steps} : {original}\n")

    def _process_meta_arg(self, command: Command) -> None:
        """moby processMetaArg: a global ARG, expanded with the ones before it."""
        env = env_map(f"{k}={v}" for k, v in self.build_args.all_allowed().items())
        try:
            expanded = expand_command(command, self.lex, env)
        except LexError as e:
            raise BuildError(str(e)) from None
        for key, value in getattr(expanded, "args", ()):
            self.build_args.add_arg(key, value)
            self.build_args.add_meta_arg(key, value)

    # -- FROM -------------------------------------------------------------------------------

    async def _from(self, state: _StageState, stage: Stage) -> AsyncIterator[BuildEvent]:
        meta_env = self.build_args.all_meta()
        try:
            name = self.lex.process_word(stage.base_name, meta_env)
        except LexError as e:
            raise BuildError(str(e)) from None
        if not name:
            raise BuildError(f"base name ({stage.base_name}) should not be blank")
        image_id = self._stage_image(name.lower())
        if image_id is None and name != SCRATCH:
            async for event in self._ensure_image(name):
                yield event
            image_id = await asyncio.to_thread(self._image_id, name)
        if image_id:
            state.image_id = image_id
            state.image = await asyncio.to_thread(lambda: self.store.get(image_id).config)
            base = state.image.config or ContainerConfig()
        else:
            base = ContainerConfig()
        # moby dispatchState.beginStage: the base config, stdin off, PATH defaulted.
        state.run_config = with_default_path(replace(base, open_stdin=False, stdin_once=False))
        triggers = state.run_config.on_build or ()
        if triggers:
            state.run_config = replace(state.run_config, on_build=None)
            plural = "s" if len(triggers) > 1 else ""
            yield _text(f"# Executing {len(triggers)} build trigger{plural}\n")
            for trigger in triggers:
                command = _parse_trigger(trigger)
                async for event in self._dispatch(state, command):
                    yield event

    def _stage_image(self, name: str) -> str | None:
        for result in self.results:
            if result.name and result.name == name:
                return result.image_id
        return None

    def _image_id(self, name: str) -> str:
        try:
            return self.store.get(name).id
        except ImageNotFound:
            raise BuildError(_no_such_image(name)) from None

    async def _ensure_image(self, name: str) -> AsyncIterator[BuildEvent]:
        """The image `name`, pulled if absent (or always with `--pull`)."""
        if not self.options.pull:
            try:
                await asyncio.to_thread(self.store.get, name)
                return
            except ImageNotFound:
                pass
            except InvalidReference as e:
                raise BuildError(str(e)) from None
        async for event in self._pull(name):
            yield event

    async def _pull(self, name: str) -> AsyncIterator[BuildEvent]:
        # Imported here: the registry client is optional for builds that pull nothing.
        from dockyard.engine.images.registry.auth import AuthConfig
        from dockyard.engine.images.registry.client import ClientOptions
        from dockyard.engine.images.registry.distribution import prepare_pull
        from dockyard.engine.images.registry.errors import RegistryError
        from dockyard.engine.images.registry.manifests import Platform

        try:
            ref = parse_reference(name)
        except InvalidReference as e:
            raise BuildError(str(e)) from None
        host_os, host_arch = host_platform()
        try:
            plan = await prepare_pull(
                self.store,
                ref,
                AuthConfig(),
                ClientOptions(insecure_registries=tuple(self.engine.insecure_registries)),
                Platform(host_os, host_arch),
            )
            async for progress in plan.run():
                yield BuildEvent(status=progress.to_wire())
        except RegistryError as e:
            raise BuildError(str(e)) from None

    # -- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, state: _StageState, command: Command) -> AsyncIterator[BuildEvent]:
        env = env_map(
            [
                *(state.run_config.env or ()),
                *state.build_args.filter_allowed(state.run_config.env or ()),
            ]
        )
        try:
            command = expand_command(command, self.lex, env)
        except LexError as e:
            raise BuildError(str(e)) from None
        if isinstance(command, RunCommand):
            async for event in self._run_step(state, command):
                yield event
        elif isinstance(command, CopyCommand | AddCommand):
            async for event in self._copy_step(state, command):
                yield event
        else:
            async for event in self._metadata_step(state, command):
                yield event

    async def _metadata_step(
        self, state: _StageState, command: Command
    ) -> AsyncIterator[BuildEvent]:
        try:
            step = apply_metadata(
                command, state.run_config, cmd_set=state.cmd_set, build_args=state.build_args
            )
        except DispatchError as e:
            raise BuildError(str(e)) from None
        state.run_config = step.config
        if step.maintainer is not None:
            state.maintainer = step.maintainer
        state.cmd_set = state.cmd_set or step.sets_cmd
        if step.note:
            yield _text(step.note)
        # WORKDIR commits through withCmdCommentString (one word: one space in history).
        probe = replace(
            step.config,
            cmd=comment_cmd(
                step.config, step.comment, split=not isinstance(command, WorkdirCommand)
            ),
        )
        if await self._probe(state, probe):
            yield _text(" ---> Using cache\n")
            return
        cid = ""
        if state.image_id:
            # moby probeAndCreate: dockerd creates (never starts) a container for a
            # metadata step and commits that, so the step reads as a RUN does. (Not for
            # FROM scratch: this engine creates containers from images only.)
            cid = self._create_container(state, step.config, probe.cmd or (), ())
            yield _text(f" ---> Running in {short_id(cid)}\n")
        layer = None
        if isinstance(command, WorkdirCommand):
            # moby dispatchWorkdir: the directory is created now (ContainerCreateWorkdir).
            workdir = step.config.working_dir
            layer = await asyncio.to_thread(
                self._layer_from_changes, state, lambda root: _make_workdir(root, workdir)
            )
        await asyncio.to_thread(self._commit, state, probe, layer, cid)
        if cid:
            await self._remove_container(cid)
            if self.options.remove or self.options.force_remove:
                yield _text(f"Removing intermediate container {short_id(cid)}\n")

    def _create_container(
        self,
        state: _StageState,
        config: ContainerConfig,
        cmd: Sequence[str],
        build_env: Sequence[str],
    ) -> str:
        """A build container from the current image (moby builder `create`): no entrypoint,
        no healthcheck, the stage's env with the build args in effect."""
        body = {
            "Image": state.image_id,
            "Cmd": list(cmd),
            "Entrypoint": [],
            "Env": [*(config.env or ()), *build_env],
            "WorkingDir": config.working_dir,
            "User": config.user,
            "Labels": dict(config.labels or ()),
            "AttachStdout": True,
            "AttachStderr": True,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": {"NetworkMode": self.options.network_mode}
            if self.options.network_mode
            else {},
        }
        try:
            record, _ = self.engine.create("", body)
        except (EngineError, ImageStoreError, SnapshotError) as e:
            raise BuildError(str(e)) from None
        self._containers.add(record.id)
        return record.id

    # -- RUN ------------------------------------------------------------------------------

    async def _run_step(self, state: _StageState, command: RunCommand) -> AsyncIterator[BuildEvent]:
        config = state.run_config
        cmd_line = run_cmd_line(config, command.cmd_line, command.prepend_shell)
        build_env = state.build_args.filter_allowed(config.env or ())
        save_cmd = (
            prepend_env_on_cmd(state.build_args, build_env, cmd_line) if build_env else cmd_line
        )
        # moby withEntrypointOverride: the probe (and committed) config has no entrypoint.
        probe = replace(
            config,
            cmd=save_cmd,
            args_escaped=False,
            entrypoint=None if save_cmd else config.entrypoint,
        )
        if await self._probe(state, probe):
            yield _text(" ---> Using cache\n")
            return
        if not state.image_id:
            raise BuildError(
                f"The command '{' '.join(cmd_line)}' cannot run: the stage has no "
                "filesystem (FROM scratch) to run it in"
            )
        cid = self._create_container(state, config, cmd_line, build_env)
        yield _text(f" ---> Running in {short_id(cid)}\n")
        try:
            await self.engine.start(cid)
        except (EngineError, SnapshotError) as e:
            raise BuildError(str(e)) from None
        running = self.engine.containers.get(cid)
        async for _, chunk in self.engine.logs(
            running,
            streams=frozenset({"stdout", "stderr"}),
            follow=True,
            tail=None,
            timestamps=False,
        ):
            yield _text(chunk.decode("utf-8", "replace"))
        exit_code = self.engine.containers.get(cid).state.exit_code
        if exit_code != 0:
            raise BuildError(
                f"The command '{' '.join(cmd_line)}' returned a non-zero code: {exit_code}",
                exit_code,
            )
        layer = await asyncio.to_thread(self._layer_from_container, state, cid)
        await asyncio.to_thread(self._commit, state, probe, layer, cid)
        await self._remove_container(cid)
        if self.options.remove or self.options.force_remove:
            yield _text(f"Removing intermediate container {short_id(cid)}\n")

    async def _remove_container(self, cid: str) -> None:
        self._containers.discard(cid)
        with contextlib.suppress(EngineError, KeyError):
            await self.engine.remove(cid, force=True, remove_volumes=True)

    async def _remove_containers(self) -> None:
        for cid in sorted(self._containers):
            await self._remove_container(cid)

    def _layer_from_container(self, state: _StageState, cid: str) -> LayerRecord | None:
        upper = self.engine.snapshots.upper_dir(cid)
        chain = state.image.chain_ids() if state.image is not None else []
        _drop_runtime_paths(upper, lambda rel: self._lower_stat(chain, rel))
        return self._register_upper(upper, chain[-1] if chain else None)

    def _lower_stat(self, chain: Sequence[str], rel: str) -> os.stat_result | None:
        """The entry `rel` as the image's layers show it (topmost first), if any."""
        for chain_id in reversed(chain):
            path = self.store.layer_diff_path(chain_id) / rel
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # a whiteout: deleted in this layer
            return st
        return None

    # -- COPY / ADD --------------------------------------------------------------------------

    async def _copy_step(
        self, state: _StageState, command: CopyCommand | AddCommand
    ) -> AsyncIterator[BuildEvent]:
        name = command.name.upper()
        if command.chmod:
            raise BuildError(CHMOD_NEEDS_BUILDKIT)
        from_stage = command.from_stage if isinstance(command, CopyCommand) else ""
        async with self._source_tree(from_stage) as tree:
            infos: list[SourceInfo] = []
            for source in command.sources:
                if isinstance(command, AddCommand) and _is_url(source):
                    raise BuildError(
                        f"{name} failed: cannot download {source}: remote sources are not "
                        "supported by this engine (it has no network access)"
                    )
                try:
                    found = await asyncio.to_thread(tree.sources, source)
                except ContextError as e:
                    raise BuildError(f"{name} failed: {e}") from None
                if not found:
                    raise BuildError(f"{name} failed: no source files were specified")
                infos += found
            dest = normalize_dest(state.run_config.working_dir, command.dest)
            if len(infos) > 1 and not dest.endswith("/"):
                raise BuildError(
                    f"When using {name} with more than one source file, the destination "
                    "must be a directory and end with a /"
                )
            # moby performCopy: the comment (and cache key) names the sources' checksum.
            chown_comment = f"--chown={command.chown}" if command.chown else ""
            source_hash = sources_hash([info.checksum for info in infos])
            # moby performCopy names the destination as written (`in ./`), not resolved.
            comment = f"{name} {chown_comment}{source_hash} in {command.dest} "
            probe = replace(
                state.run_config, cmd=comment_cmd(state.run_config, comment, split=False)
            )
            if await self._probe(state, probe):
                yield _text(" ---> Using cache\n")
                return
            decompress = isinstance(command, AddCommand)
            chown = command.chown

            def write(root: Path) -> None:
                uid, gid = _resolve_chown(root, chown) if chown else (0, 0)
                for info in infos:
                    _copy_into(root, info, dest, uid, gid, decompress=decompress)

            layer = await asyncio.to_thread(self._layer_from_changes, state, write)
            await asyncio.to_thread(self._commit, state, probe, layer, "")

    @contextlib.asynccontextmanager
    async def _source_tree(self, from_stage: str) -> AsyncIterator[SourceTree]:
        """The tree COPY reads: the context, or a stage's or image's root (mounted
        read-only for the step)."""
        if not from_stage:
            yield self.prepared.context
            return
        image_id = self._from_flag_image(from_stage)
        if image_id is None:
            try:
                async for _ in self._ensure_image(from_stage):
                    pass
                image_id = await asyncio.to_thread(self._image_id, from_stage)
            except BuildError as e:
                raise BuildError(f"invalid from flag value {from_stage}: {e}") from None
        chain = (
            await asyncio.to_thread(lambda: self.store.get(image_id).chain_ids) if image_id else ()
        )
        target = self.workdir / f"from-{uuid.uuid4().hex}"
        target.mkdir()
        mounted = False
        try:
            if chain:
                mounts = self.engine.snapshots.view(list(chain))
                await asyncio.to_thread(mount, mounts, target)
                mounted = True
            yield SourceTree(target)
        finally:
            if mounted:
                await asyncio.to_thread(unmount, target)
            with contextlib.suppress(OSError):
                target.rmdir()

    def _from_flag_image(self, value: str) -> str | None:
        """moby stagesBuildResults.get: a stage name, else a stage index, else None."""
        found = self._stage_image(value.lower())
        if found is not None:
            return found
        try:
            index = int(value)
        except ValueError:
            return None
        if index == len(self.results):
            raise BuildError(f"invalid from flag value {value}: refers to current build stage")
        if index > len(self.results) or index < 0:
            raise BuildError(f"invalid from flag value {value}: refers to a nonexistent stage")
        return self.results[index].image_id

    # -- layers and commits -----------------------------------------------------------------

    def _layer_from_changes(
        self, state: _StageState, write: Callable[[Path], None]
    ) -> LayerRecord | None:
        """Apply `write` to the stage's root in a fresh overlay snapshot; its upper
        directory becomes the layer (no container needed)."""
        snapshot = f"{BUILD_SNAPSHOT_PREFIX}{uuid.uuid4().hex}"
        chain = state.image.chain_ids() if state.image is not None else []
        target = self.workdir / snapshot
        target.mkdir()
        try:
            mounts = self.engine.snapshots.prepare(snapshot, chain)
            mount(mounts, target)
            try:
                write(target)
            finally:
                unmount(target)
            upper = self.engine.snapshots.upper_dir(snapshot)
            return self._register_upper(upper, chain[-1] if chain else None)
        finally:
            with contextlib.suppress(SnapshotError):
                self.engine.snapshots.remove(snapshot)
            with contextlib.suppress(OSError):
                target.rmdir()

    def _register_upper(self, upper: Path, parent: str | None) -> LayerRecord | None:
        with os.scandir(upper) as entries:
            if next(entries, None) is None:
                return None
        staged = self.workdir / f"layer-{uuid.uuid4().hex}.tar"
        try:
            with open(staged, "w+b") as out:
                write_diff_tar(upper, out)
                out.seek(0)
                try:
                    return self.store.register_layer(out, parent)
                except LayerError as e:
                    raise BuildError(f"failed to register layer: {e}") from None
        finally:
            staged.unlink(missing_ok=True)

    def _commit(
        self,
        state: _StageState,
        container_config: ContainerConfig,
        layer: LayerRecord | None,
        container_id: str,
    ) -> None:
        """moby NewChildImage + CreateImage: the step's image, child of the current one."""
        now = format_time(datetime.now(UTC))
        base = state.image
        host_os, host_arch = host_platform()
        diff_ids = tuple(base.rootfs.diff_ids) if base is not None else ()
        if layer is not None:
            diff_ids = (*diff_ids, layer.diff_id)
        # moby dispatchState.updateRunConfig: Image names the image the step started from.
        run_config = replace(state.run_config, image=state.image_id)
        step_config = replace(container_config, image=state.image_id)
        history = (
            *(base.history if base is not None else ()),
            HistoryEntry(
                created=now,
                author=state.maintainer,
                created_by=" ".join(step_config.cmd or ()),
                empty_layer=layer is None,
            ),
        )
        image = ImageConfig(
            architecture=base.architecture if base is not None else host_arch,
            os=(base.os if base is not None else "") or host_os,
            rootfs=RootFS(diff_ids=diff_ids),
            config=run_config,
            history=history,
            created=now,
            author=state.maintainer,
            variant=base.variant if base is not None else "",
            os_version=base.os_version if base is not None else "",
            os_features=base.os_features if base is not None else (),
        )
        wire = image.to_wire()
        wire["container_config"] = step_config.to_wire()
        if container_id:
            wire["container"] = container_id
        raw = go_json(dict(sorted(wire.items())))
        try:
            image_id = self.store.commit_image(raw, parent=state.image_id or None)
        except ImageStoreError as e:
            raise BuildError(f"failed to commit the build step: {e}") from None
        state.image_id = image_id
        state.image = image

    async def _probe(self, state: _StageState, probe: ContainerConfig) -> bool:
        """moby imageProber.Probe: reuse a child image with the same config, if any."""
        if self.options.no_cache or state.cache_busted:
            return False
        hit = await asyncio.to_thread(self._find_cached, state.image_id, probe)
        if hit is None:
            state.cache_busted = True
            return False
        state.image_id = hit
        state.image = await asyncio.to_thread(lambda: self.store.get(hit).config)
        return True

    def _find_cached(self, parent: str, probe: ContainerConfig) -> str | None:
        if parent:
            records = self.store.children(parent)
        else:
            # FROM scratch: moby looks among the images that have no parent.
            records = [r for r in self.store.list() if r.parent is None]
        candidates = []
        for record in records:
            try:
                wire = json.loads(self.store.get_blob(record.id))
            except (ImageStoreError, ValueError):
                continue
            step = wire.get("container_config") if isinstance(wire, dict) else None
            candidates.append(
                CacheCandidate(
                    record.id,
                    record.config.created or "",
                    ContainerConfig.from_wire(step) if isinstance(step, dict) else None,
                )
            )
        return pick_cached(candidates, probe)


# -- helpers (blocking, run in worker threads) --------------------------------------------


def _no_such_image(name: str) -> str:
    try:
        shown = parse_reference(name).familiar()
    except InvalidReference:
        shown = name
    return f"No such image: {shown}"


def _parse_trigger(trigger: str) -> Command:
    """moby dispatchTriggeredOnBuild: each trigger is one Dockerfile line."""
    try:
        nodes = parse_dockerfile(trigger).nodes
        if len(nodes) != 1:
            raise BuildError("onbuild trigger should be a single expression")
        parsed = parse_command(nodes[0])
    except (ParserError, InstructionError) as e:
        raise BuildError(str(e)) from None
    if isinstance(parsed, Stage | OnbuildCommand):
        raise BuildError(
            f"{parsed.original.split()[0].upper()} isn't allowed as an ONBUILD trigger"
        )
    return parsed


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _drop_runtime_paths(upper: Path, lower_stat: Callable[[str], os.stat_result | None]) -> None:
    """Remove the runtime's mountpoints from a RUN container's upper directory, then the
    directories overlayfs copied up only to hold them (empty, not opaque, and as the
    image has them), so that they do not make a layer of their own."""
    for rel in RUN_EXCLUDES:
        path = upper / rel
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)
            else:
                path.unlink()
    parents = sorted({posixpath.dirname(rel) for rel in RUN_EXCLUDES if "/" in rel}, reverse=True)
    for rel in parents:
        path = upper / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        with os.scandir(path) as entries:
            if next(entries, None) is not None:
                continue
        with contextlib.suppress(OSError):
            if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                continue
        lower = lower_stat(rel)
        if (
            lower is not None
            and stat.S_ISDIR(lower.st_mode)
            and stat.S_IMODE(lower.st_mode) == stat.S_IMODE(st.st_mode)
            and (lower.st_uid, lower.st_gid) == (st.st_uid, st.st_gid)
        ):
            path.rmdir()


def _lookup_id(path: Path, name: str, what: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise BuildError(
        "unable to convert uid/gid chown string to host mapping: "
        f"can't find {'uid' if what == 'user' else 'gid'} for {what} {name}: "
        f"no such {what}: {name}"
    )


def _resolve_chown(root: Path, chown: str) -> tuple[int, int]:
    """moby parseChownFlag: `user[:group]`, names looked up in the image's files."""
    parts = chown.split(":")
    if len(parts) > 2:
        raise BuildError(f"invalid chown string format: {chown}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    uid = _lookup_id(resolve_in_scope(root, "etc/passwd"), user, "user")
    gid = _lookup_id(resolve_in_scope(root, "etc/group"), group, "group")
    return uid, gid


def _mkdir_all(root: Path, rel: str, uid: int, gid: int) -> Path:
    """MkdirAllAndChownNew inside root: missing directories get 0755 and uid:gid."""
    path = root
    done: list[str] = []
    for part in [p for p in rel.split("/") if p]:
        done.append(part)
        path = resolve_in_scope(root, "/".join(done))
        if not os.path.lexists(path):
            os.mkdir(path, 0o755)
            os.chown(path, uid, gid)
        elif not path.is_dir():
            raise BuildError(f"cannot create directory {'/'.join(done)}: not a directory")
    return path


def _make_workdir(root: Path, workdir: str) -> None:
    _mkdir_all(root, workdir, 0, 0)


def _copy_file(source: Path, dest: Path, uid: int, gid: int) -> None:
    st = os.stat(source)
    remove_tree(dest)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, _CHUNK_BYTES)
    os.chown(dest, uid, gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    os.utime(dest, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _copy_tree(source: Path, dest: Path, uid: int, gid: int, *, own_root: bool) -> None:
    """Copy the contents of `source` into the directory `dest` (moby copyDirectory:
    modes and mtimes kept, everything owned by uid:gid except an existing `dest`)."""
    src_st = os.stat(source)
    if own_root:
        os.chown(dest, uid, gid)
        os.chmod(dest, stat.S_IMODE(src_st.st_mode))
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        target = dest / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            try:
                existing_is_dir = stat.S_ISDIR(os.lstat(target).st_mode)
            except FileNotFoundError:
                existing_is_dir = False
            if not existing_is_dir:
                remove_tree(target)
                os.mkdir(target, 0o755)
            _copy_tree(Path(entry.path), target, uid, gid, own_root=True)
        elif stat.S_ISLNK(st.st_mode):
            remove_tree(target)
            os.symlink(os.readlink(entry.path), target)
            os.chown(target, uid, gid, follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(Path(entry.path), target, uid, gid)
    if own_root:
        os.utime(dest, ns=(src_st.st_mtime_ns, src_st.st_mtime_ns))


def _is_archive(path: Path) -> bool:
    """moby isArchivePath: a (possibly compressed) tar whose first header reads."""
    try:
        with open(path, "rb") as raw:
            stream: Any = decompressed(raw)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False


def _copy_into(
    root: Path, info: SourceInfo, dest: str, uid: int, gid: int, *, decompress: bool
) -> None:
    """moby performCopyForInfo for one source into the mounted root."""
    if info.is_dir:
        existed = resolve_in_scope(root, dest).is_dir()
        target = _mkdir_all(root, dest, uid, gid)
        _copy_tree(info.full_path, target, uid, gid, own_root=not existed)
        return
    if decompress and _is_archive(info.full_path):
        target = _mkdir_all(root, dest, uid, gid)
        with open(info.full_path, "rb") as raw:
            stream: Any = decompressed(raw)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                extract_tar_into(tar, target)
        return
    resolved = resolve_in_scope(root, dest)
    rel = dest
    if dest.endswith("/") or resolved.is_dir():
        rel = posixpath.join(dest, posixpath.basename(info.path.rstrip("/")))
    parent = posixpath.dirname(rel.rstrip("/")) or "/"
    _mkdir_all(root, parent, uid, gid)
    _copy_file(info.full_path, resolve_in_scope(root, rel), uid, gid)
