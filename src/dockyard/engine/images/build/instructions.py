"""Typed Dockerfile instructions and build stages (buildkit `frontend/dockerfile/instructions`).

Role: turn parser `Node`s into frozen command values with their flags validated, in
Docker's words, and group them into stages (`FROM … AS name`), with the global ARGs that
come before the first FROM. Word expansion happens later, at dispatch, because it depends
on the build state (ENV, ARG, `--build-arg`).

Invariants:
- Every error is an `InstructionError` whose message is Docker 20.10's, prefixed as the
  classic builder reports it: `dockerfile parse error line N: <why>`.
- Flags follow moby's BFlags: `--name=value` only, unknown and duplicate flags refused.
- Stage names are lower-cased; a stage is found by name case-insensitively.

This module is PURE: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.engine.images.build.dockerfile import Node
from dockyard.engine.model.gotime import parse_go_duration

__all__ = [
    "AddCommand",
    "ArgCommand",
    "CmdCommand",
    "Command",
    "CopyCommand",
    "EntrypointCommand",
    "EnvCommand",
    "ExposeCommand",
    "HealthcheckCommand",
    "InstructionError",
    "LabelCommand",
    "MaintainerCommand",
    "OnbuildCommand",
    "RunCommand",
    "ShellCommand",
    "Stage",
    "StopSignalCommand",
    "UserCommand",
    "VolumeCommand",
    "WorkdirCommand",
    "find_stage",
    "parse_command",
    "parse_duration_ns",
    "parse_stages",
]

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-_\.]*$")
MINIMUM_DURATION_NS = 1_000_000  # moby container.MinimumDuration (1ms)


class InstructionError(ValueError):
    """An instruction Docker refuses; `line` is the Dockerfile line (0 when unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Command:
    """What every instruction has: its name and its source text (as `Step n/m : …` shows)."""

    name: str  # lower case
    original: str
    line: int


@dataclass(frozen=True)
class EnvCommand(Command):
    pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LabelCommand(Command):
    pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MaintainerCommand(Command):
    maintainer: str = ""


@dataclass(frozen=True)
class WorkdirCommand(Command):
    path: str = ""


@dataclass(frozen=True)
class UserCommand(Command):
    user: str = ""


@dataclass(frozen=True)
class ExposeCommand(Command):
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeCommand(Command):
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopSignalCommand(Command):
    signal: str = ""


@dataclass(frozen=True)
class ArgCommand(Command):
    args: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class RunCommand(Command):
    """RUN; shell form keeps the one command line (`prepend_shell`), exec form the array."""

    cmd_line: tuple[str, ...] = ()
    prepend_shell: bool = False


@dataclass(frozen=True)
class CmdCommand(Command):
    cmd_line: tuple[str, ...] = ()
    prepend_shell: bool = False


@dataclass(frozen=True)
class EntrypointCommand(Command):
    cmd_line: tuple[str, ...] = ()
    prepend_shell: bool = False


@dataclass(frozen=True)
class ShellCommand(Command):
    shell: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthcheckCommand(Command):
    """`test` is ("NONE",) for HEALTHCHECK NONE, else ("CMD"|"CMD-SHELL", …)."""

    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0


@dataclass(frozen=True)
class CopyCommand(Command):
    sources: tuple[str, ...] = ()
    dest: str = ""
    chown: str = ""
    chmod: str = ""
    from_stage: str = ""


@dataclass(frozen=True)
class AddCommand(Command):
    sources: tuple[str, ...] = ()
    dest: str = ""
    chown: str = ""
    chmod: str = ""


@dataclass(frozen=True)
class OnbuildCommand(Command):
    expression: str = ""


@dataclass(frozen=True)
class Stage:
    """A FROM and the commands up to the next FROM."""

    base_name: str
    name: str  # "" when the stage is not named
    original: str
    line: int
    commands: tuple[Command, ...] = field(default=())
    platform: str = ""


class _Flags:
    """moby BFlags: `--name=value` string flags, each at most once."""

    def __init__(self, raw: Sequence[str], allowed: Sequence[str]) -> None:
        self.values: dict[str, str] = {}
        for arg in raw:
            if not arg.startswith("--"):
                raise InstructionError(f"Arg should start with -- : {arg}")
            name, sep, value = arg[2:].partition("=")
            if name not in allowed:
                raise InstructionError(f"Unknown flag: {name}")
            if name in self.values:
                raise InstructionError(f"Duplicate flag specified: {name}")
            if not sep:
                raise InstructionError(f"Missing a value on flag: {name}")
            self.values[name] = value

    def get(self, name: str) -> str:
        return self.values.get(name, "")


def _strs(args: Sequence[str | None]) -> list[str]:
    return [a for a in args if a is not None]


def _at_least_one(name: str, args: Sequence[object]) -> None:
    if not args:
        raise InstructionError(f"{name.upper()} requires at least one argument")


def _exactly_one(name: str, args: Sequence[object]) -> None:
    if len(args) != 1:
        raise InstructionError(f"{name.upper()} requires exactly one argument")


def _pairs(name: str, args: Sequence[str | None]) -> tuple[tuple[str, str], ...]:
    _at_least_one(name, args)
    out = []
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not key:
            raise InstructionError(f"{name.upper()} names can not be blank")
        out.append((key, value or ""))
    return tuple(out)


def parse_duration_ns(text: str) -> int:
    """Go's `time.ParseDuration` (non-negative values), in nanoseconds."""
    value = None if text.lstrip("+").startswith("-") else parse_go_duration(text)
    if value is None:
        raise InstructionError(f'time: invalid duration "{text}"')
    return value


def _interval(flags: _Flags, name: str) -> int:
    text = flags.get(name)
    if not text:
        return 0
    value_ns = parse_duration_ns(text)
    if value_ns == 0:
        return 0
    if value_ns < MINIMUM_DURATION_NS:
        raise InstructionError(f'Interval "{name}" cannot be less than 1ms')
    return value_ns


def parse_command(node: Node) -> Command | Stage:
    """One parsed line as a command (or a Stage for FROM); errors carry the line."""
    try:
        return _parse(node)
    except InstructionError as e:
        raise InstructionError(str(e), node.start_line) from None


def _parse(node: Node) -> Command | Stage:
    name = node.instruction
    args = node.args
    base: dict[str, Any] = {
        "name": name,
        "original": node.original.strip(),
        "line": node.start_line,
    }
    if name == "from":
        flags = _Flags(node.flags, ["platform"])
        words = _strs(args)
        stage_name = ""
        if len(words) == 3 and words[1].lower() == "as":
            stage_name = words[2].lower()
            if not _STAGE_NAME_RE.match(stage_name):
                raise InstructionError(
                    f'invalid name for build stage: "{words[2]}", '
                    "name can't start with a number or contain symbols"
                )
        elif len(words) != 1:
            raise InstructionError("FROM requires either one or three arguments")
        return Stage(
            base_name=words[0],
            name=stage_name,
            original=base["original"],
            line=node.start_line,
            platform=flags.get("platform"),
        )
    if name in ("copy", "add"):
        allowed = ["chown", "chmod", "from"] if name == "copy" else ["chown", "chmod"]
        words = _strs(args)
        if len(words) < 2:
            raise InstructionError(
                f"{name.upper()} requires at least two arguments, but only one was provided. "
                "Destination could not be determined."
            )
        flags = _Flags(node.flags, allowed)
        if name == "copy":
            return CopyCommand(
                **base,
                sources=tuple(words[:-1]),
                dest=words[-1],
                chown=flags.get("chown"),
                chmod=flags.get("chmod"),
                from_stage=flags.get("from"),
            )
        return AddCommand(
            **base,
            sources=tuple(words[:-1]),
            dest=words[-1],
            chown=flags.get("chown"),
            chmod=flags.get("chmod"),
        )
    if name == "healthcheck":
        return _healthcheck(node, base)
    _Flags(node.flags, [])  # no other classic instruction takes flags
    words = _strs(args)
    if name == "env":
        return EnvCommand(**base, pairs=_pairs(name, args))
    if name == "label":
        return LabelCommand(**base, pairs=_pairs(name, args))
    if name == "maintainer":
        _exactly_one(name, words)
        return MaintainerCommand(**base, maintainer=words[0])
    if name == "workdir":
        _exactly_one(name, words)
        return WorkdirCommand(**base, path=words[0])
    if name == "user":
        _exactly_one(name, words)
        return UserCommand(**base, user=words[0])
    if name == "stopsignal":
        _exactly_one(name, words)
        return StopSignalCommand(**base, signal=words[0])
    if name == "expose":
        _at_least_one(name, words)
        return ExposeCommand(**base, ports=tuple(words))
    if name == "volume":
        _at_least_one(name, words)
        for volume in words:
            if not volume.strip():
                raise InstructionError("VOLUME specified can not be an empty string")
        return VolumeCommand(**base, volumes=tuple(words))
    if name == "arg":
        _at_least_one(name, args)
        pairs = tuple((str(key), value) for key, value in zip(args[::2], args[1::2], strict=True))
        return ArgCommand(**base, args=pairs)
    if name == "run":
        return RunCommand(**base, cmd_line=tuple(words), prepend_shell=not node.json)
    if name == "cmd":
        return CmdCommand(**base, cmd_line=tuple(words), prepend_shell=not node.json)
    if name == "entrypoint":
        return EntrypointCommand(**base, cmd_line=tuple(words), prepend_shell=not node.json)
    if name == "shell":
        if not words:
            raise InstructionError("SHELL requires at least one argument")
        if not node.json:
            raise InstructionError("SHELL requires the arguments to be in JSON form")
        return ShellCommand(**base, shell=tuple(words))
    if name == "onbuild":
        return _onbuild(node, base)
    raise InstructionError(f"unknown instruction: {name.upper()}")


def _healthcheck(node: Node, base: dict[str, Any]) -> HealthcheckCommand:
    words = _strs(node.args)
    if not words:
        raise InstructionError("HEALTHCHECK requires at least one argument")
    kind = words[0].upper()
    rest = words[1:]
    if kind == "NONE":
        if rest:
            raise InstructionError("HEALTHCHECK NONE takes no arguments")
        _Flags(node.flags, [])
        return HealthcheckCommand(**base, test=("NONE",))
    flags = _Flags(node.flags, ["interval", "timeout", "start-period", "retries"])
    if kind != "CMD":
        raise InstructionError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not rest or (not node.json and not rest[0].strip()):
        raise InstructionError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", *rest)
    retries = 0
    if flags.get("retries"):
        try:
            retries = int(flags.get("retries"))
        except ValueError:
            raise InstructionError(
                f'strconv.ParseInt: parsing "{flags.get("retries")}": invalid syntax'
            ) from None
        if retries < 1:
            raise InstructionError(f"--retries must be at least 1 (not {retries})")
    return HealthcheckCommand(
        **base,
        test=test,
        interval_ns=_interval(flags, "interval"),
        timeout_ns=_interval(flags, "timeout"),
        start_period_ns=_interval(flags, "start-period"),
        retries=retries,
    )


_ONBUILD_PREFIX_RE = re.compile(r"(?i)^\s*ONBUILD\s*")


def _onbuild(node: Node, base: dict[str, Any]) -> OnbuildCommand:
    if node.sub is None:
        raise InstructionError("ONBUILD requires at least one argument")
    trigger = node.sub.instruction.upper()
    if trigger == "ONBUILD":
        raise InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise InstructionError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX_RE.sub("", node.original, count=1)
    return OnbuildCommand(**base, expression=expression)


def parse_stages(nodes: Sequence[Node]) -> tuple[list[Stage], list[ArgCommand]]:
    """Group commands into stages; ARGs before the first FROM are the global (meta) ARGs."""
    stages: list[Stage] = []
    commands: list[list[Command]] = []
    meta_args: list[ArgCommand] = []
    for node in nodes:
        parsed = parse_command(node)
        if isinstance(parsed, Stage):
            stages.append(parsed)
            commands.append([])
        elif not stages:
            if not isinstance(parsed, ArgCommand):
                raise InstructionError("no build stage in current context", node.start_line)
            meta_args.append(parsed)
        else:
            commands[-1].append(parsed)
    built = [
        Stage(s.base_name, s.name, s.original, s.line, tuple(c), s.platform)
        for s, c in zip(stages, commands, strict=True)
    ]
    return built, meta_args


def find_stage(stages: Sequence[Stage], name: str) -> int | None:
    """The index of the stage named `name` (case-insensitive), as instructions.HasStage."""
    wanted = name.lower()
    for index, stage in enumerate(stages):
        if stage.name == wanted:
            return index
    return None
