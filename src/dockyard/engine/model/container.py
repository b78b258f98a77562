"""Container records, pure: identity, names, lifecycle state and its transitions.

Role: the engine's memory of a container as a value. A record holds what Docker keeps in
`config.v2.json`: the ID (64 hex), the name (`/name`), the create request (Config and
HostConfig as sent, in Docker's wire shape, because inspect echoes them), the image, the
resolved command, and the state (created / running / exited, Paused, Pid, ExitCode,
Error, StartedAt, FinishedAt, Health). The state transitions (`started`, `exited`,
`start_failed`, `paused`, `unpaused`), name validation and generation, and Docker's status
text ("Up 2 seconds", "Up 1 second (Paused)", "Exited (0) 3 seconds ago") live here. Time
arrives as `now_ns`, randomness as an `rng`; nothing here does I/O. The records' files on
disk are `engine/containers.py`'s.

Invariants: a transition is only applied from the states the table allows
(`TransitionError` otherwise). Errors form one tree (`EngineError`), mapped to HTTP statuses
only at the API boundary.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from dockyard.engine.model.health import (
    HealthState,
    on_monitor_stopped,
)


class RandomSource(Protocol):
    """What IDs and names need of `random.Random` (passed in; this module stays pure)."""

    def getrandbits(self, k: int, /) -> int: ...

    def choice(self, seq: Any, /) -> Any: ...

    def randint(self, a: int, b: int, /) -> int: ...


Status = Literal["created", "running", "exited"]

# Go's zero time.Time as Docker prints it for StartedAt/FinishedAt that never happened.
ZERO_TIME = "0001-01-01T00:00:00Z"
RECORD_FILE = "config.v2.json"
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # moby daemon/names.go
ID_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_ATTEMPTS_MAX = 64


class EngineError(Exception):
    """Base of the engine's errors; the message is Docker's, shown by the CLI as-is."""


class NotFound(EngineError):
    """HTTP 404."""


class Conflict(EngineError):
    """HTTP 409."""


class InvalidArgument(EngineError):
    """HTTP 400."""


class NotModified(EngineError):
    """HTTP 304 (start when running, stop when stopped): no body."""


class TransitionError(EngineError):
    """A state change the table does not allow (a bug or a race): HTTP 500."""


@dataclass(frozen=True)
class ContainerState:
    status: Status = "created"
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME  # RFC 3339 with nanoseconds, Go's RFC3339Nano
    finished_at: str = ZERO_TIME
    # A paused container still runs (Docker: Running and Paused are both true).
    paused: bool = False
    # Restart policies (model/restart.py): restarts since the last manual start, whether
    # the user stopped or killed it, and whether a restart is pending (the backoff).
    restart_count: int = 0
    manually_stopped: bool = False
    restarting: bool = False
    # State.Health (model/health.py); None for a container without a healthcheck.
    health: HealthState | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def wire_status(self) -> str:
        """Docker's State.Status: `paused` is a running container whose cgroup is frozen."""
        if self.restarting:
            return "restarting"
        return "paused" if self.paused else self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "error": self.error,
            "oom_killed": self.oom_killed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "paused": self.paused,
            "restart_count": self.restart_count,
            "manually_stopped": self.manually_stopped,
            "restarting": self.restarting,
            "health": None if self.health is None else self.health.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ContainerState:
        status = str(obj["status"])
        if status not in ("created", "running", "exited"):
            raise ValueError(f"unknown container status {status!r}")
        return cls(
            status=status,  # type: ignore[arg-type]  # checked just above
            pid=int(obj.get("pid", 0)),
            exit_code=int(obj.get("exit_code", 0)),
            error=str(obj.get("error", "")),
            oom_killed=bool(obj.get("oom_killed", False)),
            started_at=str(obj.get("started_at", ZERO_TIME)),
            finished_at=str(obj.get("finished_at", ZERO_TIME)),
            paused=bool(obj.get("paused", False)),
            restart_count=int(obj.get("restart_count", 0)),
            manually_stopped=bool(obj.get("manually_stopped", False)),
            restarting=bool(obj.get("restarting", False)),
            # Absent in records written before healthchecks existed.
            health=HealthState.from_json(obj["health"]) if obj.get("health") else None,
        )


# Which states each transition may start from (the rest is a TransitionError).
_ALLOWED_FROM: dict[str, frozenset[str]] = {
    "started": frozenset({"created", "exited"}),
    "exited": frozenset({"running"}),
    "start_failed": frozenset({"created", "exited"}),
    "paused": frozenset({"running"}),
    "unpaused": frozenset({"running"}),
}


def _check(transition: str, state: ContainerState) -> None:
    if state.status not in _ALLOWED_FROM[transition]:
        raise TransitionError(f"cannot apply {transition} to a {state.status} container")


def started(state: ContainerState, *, pid: int, started_at: str) -> ContainerState:
    """The init runs: Docker clears the previous run's exit code and error (the restart
    count and the user's stop are the engine's to reset, on a manual start)."""
    _check("started", state)
    return ContainerState(
        status="running",
        pid=pid,
        started_at=started_at,
        finished_at=state.finished_at,
        restart_count=state.restart_count,
        manually_stopped=state.manually_stopped,
        # Kept for its Log; the health driver sets it `starting` (model/health.on_start).
        health=state.health,
    )


def exited(
    state: ContainerState, *, exit_code: int, finished_at: str, oom_killed: bool = False
) -> ContainerState:
    """The init was reaped; `exit_code` is 128+n after signal n (the shim computes it)."""
    _check("exited", state)
    return replace(
        state,
        status="exited",
        paused=False,
        pid=0,
        exit_code=exit_code,
        oom_killed=oom_killed,
        finished_at=finished_at,
        health=on_monitor_stopped(state.health),
    )


def paused(state: ContainerState) -> ContainerState:
    """`runc pause` froze the container's cgroup."""
    _check("paused", state)
    # moby: a paused container is not probed, and its health is then unhealthy.
    return replace(state, paused=True, health=on_monitor_stopped(state.health))


def unpaused(state: ContainerState) -> ContainerState:
    _check("unpaused", state)
    return replace(state, paused=False)


def start_failed(state: ContainerState, *, error: str) -> ContainerState:
    """The runtime refused to start it. As dockerd: the status stays as it was, the error is
    kept, and the exit code says why (moby daemon/start.go translateContainerdStartErr)."""
    _check("start_failed", state)
    return replace(
        state, pid=0, error=error, exit_code=start_error_exit_code(error), restarting=False
    )


def start_error_exit_code(message: str) -> int:
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 128


def docker_start_error(runc_message: str) -> str:
    """dockerd's wording around runc's error, which the CLI matches for its exit code."""
    return f"failed to create shim task: OCI runtime create failed: {runc_message}: unknown"


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    name: str  # with the leading "/"
    created: str  # RFC3339Nano
    image: str  # as the client typed it (Config.Image)
    image_id: str  # sha256:...
    path: str
    args: tuple[str, ...]
    config: Mapping[str, Any]  # Docker's Config, wire shape, as inspect shows it
    host_config: Mapping[str, Any]  # Docker's HostConfig, wire shape, defaults filled
    state: ContainerState = field(default_factory=ContainerState)
    # The container's mounts (volumes/model.py MountPoint JSON), planned at create.
    mount_points: tuple[Mapping[str, Any], ...] = ()
    # The networks it joins and the user's settings for each (EndpointSettings wire shape:
    # IPAMConfig, Aliases, Links, MacAddress...), keyed by network name, as moby keeps
    # NetworkSettings.Networks; addresses are the network driver's, assigned at start.
    endpoints_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def command(self) -> str:
        # moby container/view.go: Path and Args joined with spaces, an argument that
        # contains a space in single quotes (checked against dockerd 20.10).
        args = (f"'{a}'" if " " in a else a for a in self.args)
        return " ".join((self.path, *args)) if self.args else self.path

    def with_state(self, state: ContainerState) -> ContainerRecord:
        return replace(self, state=state)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "image": self.image,
            "image_id": self.image_id,
            "path": self.path,
            "args": list(self.args),
            "config": dict(self.config),
            "host_config": dict(self.host_config),
            "state": self.state.to_json(),
            "mount_points": [dict(m) for m in self.mount_points],
            "endpoints_config": {k: dict(v) for k, v in self.endpoints_config.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ContainerRecord:
        return cls(
            id=str(obj["id"]),
            name=str(obj["name"]),
            created=str(obj["created"]),
            image=str(obj["image"]),
            image_id=str(obj["image_id"]),
            path=str(obj["path"]),
            args=tuple(str(a) for a in obj["args"]),
            config=dict(obj["config"]),
            host_config=dict(obj["host_config"]),
            state=ContainerState.from_json(obj["state"]),
            mount_points=tuple(dict(m) for m in obj.get("mount_points") or ()),
            endpoints_config={
                str(k): dict(v) for k, v in (obj.get("endpoints_config") or {}).items()
            },
        )


def validate_name(name: str) -> str:
    """The name with its leading "/"; raises InvalidArgument with dockerd's message."""
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name if name.startswith("/") else "/" + name


def new_id(rng: RandomSource) -> str:
    return f"{rng.getrandbits(256):064x}"


# A short cut of moby's pkg/namesgenerator: adjective_surname, unique per engine.
_ADJECTIVES = (
    "admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy",
    "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "quirky", "serene",
    "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous",
)  # fmt: skip
_SURNAMES = (
    "albattani", "babbage", "curie", "darwin", "euclid", "feynman", "galileo", "hopper",
    "kepler", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
    "thompson", "turing", "wozniak", "yonath",
)  # fmt: skip


def generate_name(rng: RandomSource, taken: frozenset[str] | set[str]) -> str:
    """`/adjective_surname`, with a number appended when the plain one is taken."""
    for attempt in range(_NAME_ATTEMPTS_MAX):
        name = f"/{rng.choice(_ADJECTIVES)}_{rng.choice(_SURNAMES)}"
        if attempt > 0:
            name += str(rng.randint(0, 9999))
        if name not in taken:
            return name
    raise EngineError("could not generate a unique container name")


def parse_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC3339Nano UTC time (`...Z`); 0 for Go's zero time."""
    if text == ZERO_TIME or not text:
        return 0
    main, _, frac = text.rstrip("Z").partition(".")
    moment = _dt.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return int(moment.timestamp()) * 1_000_000_000 + nanos


def human_duration(seconds: float) -> str:
    """Go's docker/go-units HumanDuration, which `docker ps` Status text is built from."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def status_text(state: ContainerState, now_ns: int) -> str:
    """The `Status` column of `docker ps` (moby container/state.go State.String)."""
    if state.restarting:
        ago = human_duration((now_ns - parse_time_ns(state.finished_at)) / 1e9)
        return f"Restarting ({state.exit_code}) {ago} ago"
    if state.status == "running":
        up = "Up " + human_duration((now_ns - parse_time_ns(state.started_at)) / 1e9)
        if state.paused:
            return up + " (Paused)"
        return f"{up} ({state.health.display})" if state.health is not None else up
    if state.status == "exited":
        ago = human_duration((now_ns - parse_time_ns(state.finished_at)) / 1e9)
        return f"Exited ({state.exit_code}) {ago} ago"
    return "Created"


# --- persistence (I/O) --------------------------------------------------------------------
