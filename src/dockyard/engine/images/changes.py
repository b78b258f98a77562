"""`--change` instructions of `docker import` (and later `docker commit`), applied to a config.

Role: dockerd builds an imported image's config by running its `changes` through the
Dockerfile parser and dispatcher (moby builder/dockerfile `BuildFromConfig`). This module
does the same for the instructions that may appear there, with dockerd's wording in every
error: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
WORKDIR. dockerd 20.10 refuses STOPSIGNAL (`stopsignal is not a valid change command`);
newer engines and the CLI's documentation accept it, and so do we.

Semantics kept from the Dockerfile (checked against dockerd 20.10):
- The changes are joined with newlines and parsed as one Dockerfile, so each line is one
  instruction; blank lines and `#` comments are skipped; the keyword is case-insensitive.
- CMD/ENTRYPOINT/VOLUME take a JSON array of strings, or else the rest of the line (shell
  form: `["/bin/sh", "-c", rest]`); CMD and ENTRYPOINT are never variable-expanded.
- ENV, LABEL, USER, WORKDIR, EXPOSE, VOLUME, STOPSIGNAL expand `$VAR`, `${VAR}`,
  `${VAR:-word}` and `${VAR:+word}` from the ENV set so far; single quotes keep `$`
  literal, a backslash escapes the next character, quotes are removed.
- ENV `A=1 B=$A` expands B against the environment before this instruction.
- ENTRYPOINT resets CMD unless a CMD came earlier in the same changes.
- A relative WORKDIR is joined to the current one (`/` at first).

PURE: no I/O.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from dockyard.engine.images.model import ContainerConfig, HealthConfig
from dockyard.engine.model.gotime import parse_go_duration

__all__ = ["InvalidChange", "apply_changes", "parse_go_duration_ns"]

# moby builder/dockerfile/builder.go validCommitCommands (plus stopsignal, as newer engines).
VALID_CHANGE_COMMANDS = frozenset(
    {
        "cmd",
        "entrypoint",
        "env",
        "expose",
        "healthcheck",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROTOCOLS = ("tcp", "udp", "sctp")
_MINIMUM_DURATION_NS = 1_000_000  # moby container.MinimumDuration (1ms)


class InvalidChange(ValueError):
    """A change dockerd refuses (HTTP 400); the message is dockerd's own wording."""


@dataclass(frozen=True)
class _State:
    config: ContainerConfig
    cmd_set: bool = False

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.env or ():
            key, _, value = item.partition("=")
            out[key] = value
        return out


def apply_changes(changes: Sequence[str], config: ContainerConfig) -> ContainerConfig:
    """`config` with every change applied in order; raises `InvalidChange`."""
    lines = [line.strip() for line in "\n".join(changes).split("\n")]
    instructions = [line for line in lines if line and not line.startswith("#")]
    parsed: list[tuple[str, str]] = []
    for line in instructions:
        keyword, *tail = line.split(None, 1)
        rest = tail[0] if tail else ""
        command = keyword.lower()
        # dockerd checks every keyword before it applies any.
        if command not in VALID_CHANGE_COMMANDS:
            raise InvalidChange(f"{command} is not a valid change command")
        parsed.append((command, rest.strip()))
    state = _State(config)
    for command, rest in parsed:
        state = _DISPATCH[command](state, rest)
    return state.config


# -- the shell-word lexer (buildkit frontend/dockerfile/shell/lex.go) -------------------------


def expand_word(word: str, env: Mapping[str, str]) -> str:
    """One word with quotes removed, escapes resolved and variables expanded."""
    out: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if ch == "'":
            end = word.find("'", i + 1)
            if end < 0:
                raise InvalidChange("unexpected end of statement while looking for matching '")
            out.append(word[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i = _double_quoted(word, i + 1, env, out)
        elif ch == "\\":
            if i + 1 < len(word):
                out.append(word[i + 1])
            i += 2
        elif ch == "$":
            i = _dollar(word, i + 1, env, out)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _double_quoted(word: str, i: int, env: Mapping[str, str], out: list[str]) -> int:
    while i < len(word):
        ch = word[i]
        if ch == '"':
            return i + 1
        if ch == "\\" and i + 1 < len(word) and word[i + 1] in '"$\\':
            out.append(word[i + 1])
            i += 2
        elif ch == "$":
            i = _dollar(word, i + 1, env, out)
        else:
            out.append(ch)
            i += 1
    raise InvalidChange("unexpected end of statement while looking for matching double-quote")


def _dollar(word: str, i: int, env: Mapping[str, str], out: list[str]) -> int:
    """Expand the variable after a `$` at `i - 1`; return the index after it."""
    if i < len(word) and word[i] == "{":
        end = word.find("}", i)
        if end < 0:
            raise InvalidChange("missing '}'")
        body = word[i + 1 : end]
        match = _NAME_RE.match(body)
        if match is None:
            raise InvalidChange(f"bad substitution: ${{{body}}}")
        name, modifier = match.group(), body[match.end() :]
        value = env.get(name)
        if not modifier:
            out.append(value or "")
        elif modifier.startswith(":-"):
            out.append(value if value else expand_word(modifier[2:], env))
        elif modifier.startswith(":+"):
            out.append(expand_word(modifier[2:], env) if value else "")
        elif modifier.startswith("-"):
            out.append(value if value is not None else expand_word(modifier[1:], env))
        elif modifier.startswith("+"):
            out.append(expand_word(modifier[1:], env) if value is not None else "")
        else:
            raise InvalidChange(f"unsupported modifier ({modifier[:1]}) in substitution")
        return end + 1
    match = _NAME_RE.match(word, i)
    if match is None:
        out.append("$")  # a `$` not followed by a name is itself
        return i
    out.append(env.get(match.group(), ""))
    return match.end()


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (buildkit parser `parseWords`)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t":
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
        i += 1
    if current:
        words.append("".join(current))
    return words


# -- instructions ---------------------------------------------------------------------------


def _json_or_shell(rest: str) -> tuple[str, ...] | None:
    """The exec form (a JSON array of strings), or None for the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise InvalidChange(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return tuple(value)


def _command_line(rest: str) -> tuple[str, ...]:
    exec_form = _json_or_shell(rest)
    if exec_form is not None:
        return exec_form
    return ("/bin/sh", "-c", rest) if rest else ("/bin/sh", "-c")


def _cmd(state: _State, rest: str) -> _State:
    return _State(replace(state.config, cmd=_command_line(rest)), cmd_set=True)


def _entrypoint(state: _State, rest: str) -> _State:
    config = replace(state.config, entrypoint=_command_line(rest))
    if not state.cmd_set:
        config = replace(config, cmd=None)  # moby dispatchEntrypoint
    return replace(state, config=config)


def _pairs(rest: str, keyword: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` or the legacy `k value with spaces` (buildkit `parseNameVal`)."""
    if not rest:
        raise InvalidChange(f"{keyword} requires at least one argument")
    words = split_words(rest)
    if "=" not in words[0]:
        name, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidChange(f"{keyword} must have two arguments")
        return [(name, value.strip())]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidChange(
                f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value'
            )
        key, _, value = word.partition("=")
        pairs.append((key, value))
    return pairs


def _env(state: _State, rest: str) -> _State:
    env = state.env
    # Every pair is expanded against the environment before this instruction.
    expanded = [(expand_word(k, env), expand_word(v, env)) for k, v in _pairs(rest, "ENV")]
    items = list(state.config.env or ())
    for key, value in expanded:
        if not key:
            raise InvalidChange("ENV names can not be blank")
        entry = f"{key}={value}"
        index = next((n for n, item in enumerate(items) if item.partition("=")[0] == key), None)
        if index is None:
            items.append(entry)
        else:
            items[index] = entry
    return replace(state, config=replace(state.config, env=tuple(items)))


def _label(state: _State, rest: str) -> _State:
    env = state.env
    labels = dict(state.config.labels or ())
    for key, value in _pairs(rest, "LABEL"):
        name = expand_word(key, env)
        if not name:
            raise InvalidChange("LABEL names can not be blank")
        labels[name] = expand_word(value, env)
    return replace(state, config=replace(state.config, labels=tuple(labels.items())))


def _single(rest: str, keyword: str, env: Mapping[str, str]) -> str:
    if not rest:
        raise InvalidChange(f"{keyword} requires exactly one argument")
    return expand_word(rest, env)


def _user(state: _State, rest: str) -> _State:
    return replace(state, config=replace(state.config, user=_single(rest, "USER", state.env)))


def _workdir(state: _State, rest: str) -> _State:
    requested = _single(rest, "WORKDIR", state.env)
    current = state.config.working_dir or "/"
    path = posixpath.normpath(posixpath.join(current, requested))
    return replace(state, config=replace(state.config, working_dir=path))


def _volume(state: _State, rest: str) -> _State:
    env = state.env
    exec_form = _json_or_shell(rest)
    raw = exec_form if exec_form is not None else split_words(rest)
    volumes = set(state.config.volumes or ())
    if not raw:
        raise InvalidChange("VOLUME requires at least one argument")
    for word in raw:
        path = expand_word(word, env) if exec_form is None else word
        if not path.strip():
            raise InvalidChange("VOLUME specified can not be an empty string")
        volumes.add(path)
    return replace(state, config=replace(state.config, volumes=tuple(volumes)))


def expose_ports(spec: str) -> list[str]:
    """nat.ParsePortSpec for the container side: `80` → `80/tcp`, ranges expanded."""
    port, _, proto = spec.partition("/")
    proto = proto or "tcp"
    container = port.rsplit(":", 1)[-1]  # `ip:host:container`: only the container side counts
    if proto.lower() not in _PROTOCOLS:
        raise InvalidChange(f"Invalid proto: {proto}")
    start_text, dash, end_text = container.partition("-")
    try:
        start = int(start_text)
        end = int(end_text) if dash else start
    except ValueError:
        raise InvalidChange(f"Invalid containerPort: {container}") from None
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise InvalidChange(f"Invalid containerPort: {container}")
    return [f"{p}/{proto.lower()}" for p in range(start, end + 1)]


def _expose(state: _State, rest: str) -> _State:
    env = state.env
    words = split_words(rest)
    if not words:
        raise InvalidChange("EXPOSE requires at least one argument")
    ports = set(state.config.exposed_ports or ())
    for word in words:
        # EXPOSE alone expands one word into several: `EXPOSE $PORTS`.
        for spec in expand_word(word, env).split():
            ports.update(expose_ports(spec))
    return replace(state, config=replace(state.config, exposed_ports=tuple(ports)))


def _onbuild(state: _State, rest: str) -> _State:
    trigger = rest.split(maxsplit=1)[0].upper() if rest.split() else ""
    if not trigger:
        raise InvalidChange("ONBUILD requires at least one argument")
    if trigger == "ONBUILD":
        raise InvalidChange("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise InvalidChange(f"{trigger} isn't allowed as an ONBUILD trigger")
    on_build = (*(state.config.on_build or ()), rest)
    return replace(state, config=replace(state.config, on_build=on_build))


def valid_signal(text: str) -> bool:
    """moby signal.ParseSignal: a non-zero number, or a name with or without `SIG`."""
    if text.isdigit():
        return int(text) != 0
    name = text.upper().removeprefix("SIG")
    if re.fullmatch(r"RTMIN(\+[0-9]+)?|RTMAX(-[0-9]+)?", name):
        return True
    return name in {s.name.removeprefix("SIG") for s in signal.Signals}


def _stopsignal(state: _State, rest: str) -> _State:
    value = _single(rest, "STOPSIGNAL", state.env)
    if not valid_signal(value):
        raise InvalidChange(f"Invalid signal: {value}")
    return replace(state, config=replace(state.config, stop_signal=value))


def parse_go_duration_ns(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds (`1m30s`, `500ms`, `0`)."""
    value = parse_go_duration(text)
    if value is None:
        raise InvalidChange(f'time: invalid duration "{text}"')
    return value


def _healthcheck(state: _State, rest: str) -> _State:
    words = rest.split()
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, eq, value = words.pop(0)[2:].partition("=")
        if name not in ("interval", "timeout", "start-period", "start-interval", "retries"):
            raise InvalidChange(f"Unknown flag: {name}")
        if not eq:
            raise InvalidChange(f"Missing a value on flag: {name}")
        flags[name] = value
    kind = words[0].upper() if words else ""
    if kind == "NONE":
        if len(words) > 1 or flags:
            raise InvalidChange("HEALTHCHECK NONE takes no arguments")
        health = HealthConfig(test=("NONE",))
        return replace(state, config=replace(state.config, healthcheck=health))
    if kind != "CMD":
        raise InvalidChange(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    command = rest.split(None, len(flags) + 1)[-1] if len(words) > 1 else ""
    if not command:
        raise InvalidChange("Missing command after HEALTHCHECK CMD")
    exec_form = _json_or_shell(command)
    test = ("CMD", *exec_form) if exec_form is not None else ("CMD-SHELL", command)

    def duration(name: str) -> int:
        if name not in flags or flags[name] == "":
            return 0
        value = parse_go_duration_ns(flags[name])
        if value == 0:
            return 0
        if value < _MINIMUM_DURATION_NS:
            raise InvalidChange(f'Interval "{name}" cannot be less than 1ms')
        return value

    retries_text = flags.get("retries", "")
    try:
        retries = int(retries_text) if retries_text else 0
    except ValueError:
        raise InvalidChange(f'strconv.ParseInt: parsing "{retries_text}": invalid syntax') from None
    if retries < 0:
        raise InvalidChange(f"--retries cannot be negative ({retries})")
    health = HealthConfig(
        test=test,
        interval_ns=duration("interval"),
        timeout_ns=duration("timeout"),
        start_period_ns=duration("start-period"),
        start_interval_ns=duration("start-interval"),
        retries=retries,
    )
    return replace(state, config=replace(state.config, healthcheck=health))


_DISPATCH: dict[str, Callable[[_State, str], _State]] = {
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "healthcheck": _healthcheck,
    "label": _label,
    "onbuild": _onbuild,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}
