"""The classic builder's state per stage and its metadata instructions (moby
`builder/dockerfile/dispatchers.go`, `buildargs.go`), as pure transitions.

Role: given the current run config and an already-expanded metadata instruction (ENV,
LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
ONBUILD, MAINTAINER, ARG), return the new run config and the `#(nop)` comment Docker
commits it with; keep the build args (`--build-arg`, ARG, the proxy built-ins) with
moby's visibility rules; expand each instruction's words as moby's `Expand` does; merge a
`docker commit` config with the container's (`merge_config`). `builder.py` and
`commit.py` do the I/O around these.

Invariants:
- Comments are byte for byte what dockerd 20.10 writes in `created_by` (Go `%q`/`%v`
  formatting of the values included), since they are also the cache key.
- An ENV replaces a variable of the same name in place (keeping its position), else
  appends; ENTRYPOINT clears an inherited CMD unless this stage set one.
- Build args: a stage sees only the ARGs it declares (global ARGs give defaults to those
  declared without a value); `--build-arg` overrides defaults; ENV wins over ARG; the proxy
  built-ins reach RUN without a declaration but stay out of the cache key and history.

This module is PURE: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from dockyard.engine.images.build.instructions import (
    AddCommand,
    ArgCommand,
    CmdCommand,
    Command,
    CopyCommand,
    EntrypointCommand,
    EnvCommand,
    ExposeCommand,
    HealthcheckCommand,
    LabelCommand,
    MaintainerCommand,
    OnbuildCommand,
    ShellCommand,
    StopSignalCommand,
    UserCommand,
    VolumeCommand,
    WorkdirCommand,
)
from dockyard.engine.images.build.shell_lex import ShellLex
from dockyard.engine.images.model import ContainerConfig, HealthConfig

__all__ = [
    "BUILTIN_ARGS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_SHELL",
    "BuildArgs",
    "DispatchError",
    "MetadataStep",
    "apply_metadata",
    "comment_cmd",
    "expand_command",
    "go_duration",
    "go_quote",
    "go_quote_list",
    "merge_config",
    "normalize_dest",
    "normalize_workdir",
    "parse_ports",
    "prepend_env_on_cmd",
    "run_cmd_line",
    "with_default_path",
]

# moby builder/dockerfile/buildargs.go builtinAllowedBuildArgs.
BUILTIN_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
# moby pkg/system DefaultPathEnv("linux").
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
_SIGNALS = frozenset(
    [
        "ABRT",
        "ALRM",
        "BUS",
        "CHLD",
        "CLD",
        "CONT",
        "FPE",
        "HUP",
        "ILL",
        "INT",
        "IO",
        "IOT",
        "KILL",
        "PIPE",
        "POLL",
        "PROF",
        "PWR",
        "QUIT",
        "SEGV",
        "STKFLT",
        "STOP",
        "SYS",
        "TERM",
        "TRAP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "USR1",
        "USR2",
        "VTALRM",
        "WINCH",
        "XCPU",
        "XFSZ",
    ]
)
_RT_SIGNAL_RE = re.compile(r"^RTM(IN|AX)(([+-])(\d+))?$")
_SIGNAL_MAX = 64


class DispatchError(ValueError):
    """A step Docker refuses at dispatch; the message is Docker's."""


class BuildArgs:
    """moby BuildArgs: declared ARGs, global (meta) ARGs and `--build-arg` values.

    Mutable: the builder keeps one for the whole build (`referenced` accumulates) and a
    fresh copy per stage (`for_stage`), as moby's Clone + ResetAllowed.
    """

    def __init__(self, from_options: Mapping[str, str | None]) -> None:
        self.from_options = dict(from_options)
        self.allowed: dict[str, str | None] = {}
        self.meta: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def for_stage(self) -> BuildArgs:
        clone = BuildArgs(self.from_options)
        clone.meta = dict(self.meta)
        clone.referenced = self.referenced  # shared: every stage's ARG counts as used
        return clone

    def add_arg(self, key: str, value: str | None) -> None:
        self.allowed[key] = value
        self.referenced.add(key)

    def add_meta_arg(self, key: str, value: str | None) -> None:
        self.meta[key] = value
        self.referenced.add(key)

    def _value(self, key: str, mapping: Mapping[str, str | None]) -> str | None:
        override = self.from_options.get(key)
        if override is not None and (key in mapping or key in BUILTIN_ARGS):
            return override
        default = mapping.get(key)
        if default is None:
            return self.meta.get(key)
        return default

    def _all(self, mapping: Mapping[str, str | None]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in sorted({*mapping, *BUILTIN_ARGS}):
            value = self._value(key, mapping)
            if value is not None:
                out[key] = value
        return out

    def all_allowed(self) -> dict[str, str]:
        return self._all(self.allowed)

    def all_meta(self) -> dict[str, str]:
        return self._all(self.meta)

    def filter_allowed(self, env: Iterable[str]) -> list[str]:
        """`k=v` for the args in effect that ENV does not shadow (moby FilterAllowed)."""
        env_keys = {entry.partition("=")[0] for entry in env}
        return [f"{k}={v}" for k, v in self.all_allowed().items() if k not in env_keys]

    def is_referenced_or_not_builtin(self, key: str) -> bool:
        return key in self.allowed or key not in BUILTIN_ARGS

    def unused(self) -> list[str]:
        """`--build-arg`s no ARG declared (moby WarnOnUnusedBuildArgs), sorted."""
        return sorted(
            k for k in self.from_options if k not in self.referenced and k not in BUILTIN_ARGS
        )


def with_default_path(config: ContainerConfig) -> ContainerConfig:
    """moby dispatchState.setDefaultPath: add PATH when the base image has none."""
    env = tuple(config.env or ())
    if any(entry.partition("=")[0] == "PATH" for entry in env):
        return config
    return replace(config, env=(*env, f"PATH={DEFAULT_PATH_ENV}"))


def shell_of(config: ContainerConfig) -> tuple[str, ...]:
    return tuple(config.shell) if config.shell else DEFAULT_SHELL


def comment_cmd(config: ContainerConfig, comment: str, *, split: bool = True) -> tuple[str, ...]:
    """The `#(nop)` Cmd of a metadata step: moby withCmdComment (split, as metadata steps
    write it: `#(nop) ` and the comment as two words, hence two spaces in `created_by`)
    or withCmdCommentString (one word, as COPY/ADD write it)."""
    if split:
        return (*shell_of(config), "#(nop) ", comment)
    return (*shell_of(config), "#(nop) " + comment)


def run_cmd_line(
    config: ContainerConfig, cmd_line: Sequence[str], prepend_shell: bool
) -> tuple[str, ...]:
    """moby resolveCmdLine on Linux: the shell form runs under the stage's SHELL."""
    if prepend_shell:
        return (*shell_of(config), *cmd_line)
    return tuple(cmd_line)


def normalize_workdir(current: str, requested: str) -> str:
    """moby normalizeWorkdir: relative to the current directory, cleaned."""
    if not requested:
        raise DispatchError("cannot normalize nothing")
    path = requested if requested.startswith("/") else f"/{current}/{requested}"
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def parse_ports(specs: Sequence[str]) -> list[str]:
    """go-connections nat.ParsePortSpecs for EXPOSE: `port[-port][/proto]` → `port/proto`."""
    ports: list[str] = []
    for spec in specs:
        raw_port, _, proto = spec.partition("/")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise DispatchError(f"invalid proto: {proto}")
        if ":" in raw_port:
            raw_port = raw_port.rsplit(":", 1)[1]
        start_text, _, end_text = raw_port.partition("-")
        if not start_text.isdigit() or (end_text and not end_text.isdigit()):
            raise DispatchError(f"invalid containerPort: {raw_port}")
        start = int(start_text)
        end = int(end_text) if end_text else start
        if end < start or end > 65535:
            raise DispatchError(f"invalid containerPort: {raw_port}")
        ports += [f"{port}/{proto}" for port in range(start, end + 1)]
    return ports


def _valid_signal(text: str) -> bool:
    if text.isdigit():
        return 0 < int(text) <= _SIGNAL_MAX
    name = text.upper().removeprefix("SIG")
    return name in _SIGNALS or _RT_SIGNAL_RE.match(name) is not None


def go_quote(text: str) -> str:
    """Go's strconv.Quote for printable text (`%q` of a string)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote_list(values: Sequence[str] | None) -> str:
    """Go's `%q` of a []string: `["a" "b"]`."""
    return "[" + " ".join(go_quote(v) for v in values or ()) + "]"


def _go_quote_rune(value: int) -> str:
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
    if value in named:
        return f"'{named[value]}'"
    if value in (ord("'"), ord("\\")):
        return f"'\\{chr(value)}'"
    if 0x20 <= value < 0x7F or (value > 0xA0 and chr(value).isprintable()):
        return f"'{chr(value)}'"
    if value < 0x100:
        return f"'\\x{value:02x}'"
    return f"'\\u{value:04x}'"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): `0s`, `1.5s`, `300ms`, `1m30s`, `2h0m0s`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def _health_comment(health: HealthConfig) -> str:
    # Go `%q` of *container.HealthConfig (20.10 fields): &{Test Interval Timeout
    # StartPeriod Retries}, durations through their String(), the int as a rune literal.
    return (
        f"HEALTHCHECK &{{{go_quote_list(health.test)} "
        f'"{go_duration(health.interval_ns)}" "{go_duration(health.timeout_ns)}" '
        f'"{go_duration(health.start_period_ns)}" {_go_quote_rune(health.retries)}}}'
    )


@dataclass(frozen=True)
class MetadataStep:
    """The outcome of a metadata instruction: the new config and the commit comment."""

    config: ContainerConfig
    comment: str
    maintainer: str | None = None  # set by MAINTAINER
    sets_cmd: bool = False  # CMD with arguments: a later ENTRYPOINT keeps it
    note: str = ""  # printed to the build output before the step's result


def apply_metadata(
    command: Command,
    config: ContainerConfig,
    *,
    cmd_set: bool,
    build_args: BuildArgs,
) -> MetadataStep:
    """Apply one (expanded) metadata instruction to the stage's run config."""
    if isinstance(command, EnvCommand):
        env = list(config.env or ())
        parts = ["ENV"]
        for key, value in command.pairs:
            entry = f"{key}={value}"
            parts.append(entry)
            for index, existing in enumerate(env):
                if existing.partition("=")[0] == key:
                    env[index] = entry
                    break
            else:
                env.append(entry)
        return MetadataStep(replace(config, env=tuple(env)), " ".join(parts))
    if isinstance(command, LabelCommand):
        labels = dict(config.labels or ())
        parts = ["LABEL"]
        for key, value in command.pairs:
            labels[key] = value
            parts.append(f"{key}={value}")
        return MetadataStep(replace(config, labels=tuple(labels.items())), " ".join(parts))
    if isinstance(command, MaintainerCommand):
        return MetadataStep(
            config, f"MAINTAINER {command.maintainer}", maintainer=command.maintainer
        )
    if isinstance(command, WorkdirCommand):
        workdir = normalize_workdir(config.working_dir, command.path)
        return MetadataStep(replace(config, working_dir=workdir), f"WORKDIR {workdir}")
    if isinstance(command, UserCommand):
        return MetadataStep(replace(config, user=command.user), f"USER {command.user}")
    if isinstance(command, ExposeCommand):
        ports = parse_ports(command.ports)
        exposed = sorted({*(config.exposed_ports or ()), *ports})
        return MetadataStep(
            replace(config, exposed_ports=tuple(exposed)), "EXPOSE " + " ".join(command.ports)
        )
    if isinstance(command, VolumeCommand):
        volumes = sorted({*(config.volumes or ()), *command.volumes})
        return MetadataStep(
            replace(config, volumes=tuple(volumes)),
            "VOLUME [" + " ".join(command.volumes) + "]",
        )
    if isinstance(command, StopSignalCommand):
        if not _valid_signal(command.signal):
            raise DispatchError(f"Invalid signal: {command.signal}")
        return MetadataStep(
            replace(config, stop_signal=command.signal), f"STOPSIGNAL {command.signal}"
        )
    if isinstance(command, CmdCommand):
        cmd = run_cmd_line(config, command.cmd_line, command.prepend_shell)
        return MetadataStep(
            replace(config, cmd=cmd, args_escaped=False),
            f"CMD {go_quote_list(cmd)}",
            sets_cmd=bool(command.cmd_line),
        )
    if isinstance(command, EntrypointCommand):
        if command.prepend_shell and not command.cmd_line:
            entrypoint: tuple[str, ...] | None = None
        else:
            entrypoint = run_cmd_line(config, command.cmd_line, command.prepend_shell)
        new = replace(config, entrypoint=entrypoint, args_escaped=False)
        if not cmd_set:
            new = replace(new, cmd=None)
        return MetadataStep(new, f"ENTRYPOINT {go_quote_list(entrypoint)}")
    if isinstance(command, ShellCommand):
        return MetadataStep(
            replace(config, shell=command.shell), "SHELL [" + " ".join(command.shell) + "]"
        )
    if isinstance(command, HealthcheckCommand):
        note = ""
        old = config.healthcheck
        if old is not None and old.test and old.test[0] != "NONE":
            note = "Note: overriding previous HEALTHCHECK: [" + " ".join(old.test) + "]\n"
        health = HealthConfig(
            test=command.test,
            interval_ns=command.interval_ns,
            timeout_ns=command.timeout_ns,
            start_period_ns=command.start_period_ns,
            retries=command.retries,
        )
        return MetadataStep(replace(config, healthcheck=health), _health_comment(health), note=note)
    if isinstance(command, OnbuildCommand):
        on_build = (*(config.on_build or ()), command.expression)
        return MetadataStep(replace(config, on_build=on_build), f"ONBUILD {command.expression}")
    if isinstance(command, ArgCommand):
        shown: list[str] = []
        for arg_name, arg_value in command.args:
            shown.append(arg_name if arg_value is None else f"{arg_name}={arg_value}")
            build_args.add_arg(arg_name, arg_value)
        return MetadataStep(config, "ARG " + " ".join(shown))
    raise DispatchError(f"not a metadata instruction: {command.name}")


def prepend_env_on_cmd(
    build_args: BuildArgs, build_env: Sequence[str], cmd: Sequence[str]
) -> tuple[str, ...]:
    """moby prependEnvOnCmd: `|N k=v… cmd`, the RUN's cache key and history entry when
    build args are in effect (undeclared proxy built-ins left out), sorted."""
    shown = sorted(
        entry
        for entry in build_env
        if build_args.is_referenced_or_not_builtin(entry.partition("=")[0])
    )
    return (f"|{len(shown)}", *shown, *cmd)


def expand_command(command: Command, lex: ShellLex, env: Mapping[str, str]) -> Command:
    """moby's `Expand` per instruction: which arguments see `$VAR` expansion.

    RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD are left to the shell; EXPOSE is
    expanded word to words at dispatch (`expand_ports`)."""
    word = lex.process_word
    if isinstance(command, EnvCommand | LabelCommand):
        pairs = tuple((word(k, env), word(v, env)) for k, v in command.pairs)
        return replace(command, pairs=pairs)
    if isinstance(command, WorkdirCommand):
        return replace(command, path=word(command.path, env))
    if isinstance(command, UserCommand):
        return replace(command, user=word(command.user, env))
    if isinstance(command, StopSignalCommand):
        return replace(command, signal=word(command.signal, env))
    if isinstance(command, VolumeCommand):
        return replace(command, volumes=tuple(word(v, env) for v in command.volumes))
    if isinstance(command, ArgCommand):
        args = tuple((k, None if v is None else word(v, env)) for k, v in command.args)
        return replace(command, args=args)
    if isinstance(command, CopyCommand):
        return replace(
            command,
            sources=tuple(word(s, env) for s in command.sources),
            dest=word(command.dest, env),
            chown=word(command.chown, env),
        )
    if isinstance(command, AddCommand):
        return replace(
            command,
            sources=tuple(word(s, env) for s in command.sources),
            dest=word(command.dest, env),
            chown=word(command.chown, env),
        )
    if isinstance(command, ExposeCommand):
        ports = [p for raw in command.ports for p in lex.process_words(raw, env)]
        return replace(command, ports=tuple(ports))
    return command


def normalize_dest(working_dir: str, requested: str) -> str:
    """moby normalizeDest: relative to WORKDIR, keeping a trailing slash."""
    if requested.startswith("/"):
        return requested
    joined = normalize_workdir(working_dir or "/", requested)
    if requested.endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined


def merge_config(user: ContainerConfig, container: ContainerConfig) -> ContainerConfig:
    """moby daemon/commit.go `merge`: fill what the request left empty from the container."""
    env = list(user.env or ())
    if not env:
        env = list(container.env or ())
    else:
        keys = {entry.partition("=")[0] for entry in env}
        env += [e for e in container.env or () if e.partition("=")[0] not in keys]
    labels = dict(container.labels or ())
    labels.update(dict(user.labels or ()))
    ports = (
        set(user.exposed_ports or ()) | set(container.exposed_ports or ())
        if user.exposed_ports or container.exposed_ports
        else None
    )
    volumes = (
        set(user.volumes or ()) | set(container.volumes or ())
        if user.volumes or container.volumes
        else None
    )
    merged = replace(
        user,
        user=user.user or container.user,
        env=tuple(env) if env else None,
        labels=tuple(labels.items()),
        exposed_ports=None if ports is None else tuple(ports),
        volumes=None if volumes is None else tuple(volumes),
        working_dir=user.working_dir or container.working_dir,
        stop_signal=user.stop_signal or container.stop_signal,
        healthcheck=user.healthcheck or container.healthcheck,
    )
    if not user.entrypoint:
        if not user.cmd:
            merged = replace(merged, cmd=container.cmd, args_escaped=container.args_escaped)
        if user.entrypoint is None:
            merged = replace(merged, entrypoint=container.entrypoint)
    return merged
