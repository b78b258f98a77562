"""Container healthchecks: the configuration, and the state machine of `State.Health`.

Role: what moby `daemon/health.go` decides, without running anything. The driver
(`engine/health.py`) runs each probe and feeds its result here; this module says what the
container's health becomes and whether a `health_status` event is due.

Rules (moby daemon/health.go, container/health.go):
- Config.Healthcheck.Test: `[]`/absent inherits the image's, `["NONE"]` disables,
  `["CMD", argv...]` runs argv, `["CMD-SHELL", cmd]` runs `/bin/sh -c cmd`. Zero durations
  and retries mean the defaults: interval 30s, timeout 30s, start period 0, retries 3. The
  create request's non-zero fields win over the image's, field by field (moby merge).
- A start (or restart) sets Status `starting` and FailingStreak 0; the Log is kept.
- A probe exiting 0 makes it `healthy` and resets the streak. Any other result (a timeout is
  exit -1) increments the streak, except while still `starting` within the start period;
  at `retries` consecutive failures it is `unhealthy`.
- The Log keeps the last 5 results; Output is at most 4096 bytes, then "...".
- When the monitor stops (exit, pause) the status becomes `unhealthy`, with no event.
- An event is due only when the status changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from dockyard.engine.runtime.logfile import format_rfc3339nano

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
NO_HEALTHCHECK = "none"
VALID_HEALTH = frozenset({STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK})

DEFAULT_INTERVAL_NS = 30_000_000_000
DEFAULT_TIMEOUT_NS = 30_000_000_000
DEFAULT_START_PERIOD_NS = 0
DEFAULT_RETRIES = 3
MAX_OUTPUT_BYTES = 4096
MAX_LOG_ENTRIES = 5
# The shell of CMD-SHELL probes (moby getShell, without Config.Shell).
DEFAULT_SHELL = ("/bin/sh", "-c")
_DURATION_KEYS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


@dataclass(frozen=True)
class HealthConfig:
    """A container's effective Config.Healthcheck; durations in nanoseconds (Go's)."""

    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any] | None) -> HealthConfig | None:
        if not wire:
            return None
        return cls(
            test=tuple(str(t) for t in (wire.get("Test") or ())),
            interval_ns=int(wire.get("Interval") or 0),
            timeout_ns=int(wire.get("Timeout") or 0),
            start_period_ns=int(wire.get("StartPeriod") or 0),
            retries=int(wire.get("Retries") or 0),
        )

    def probe_argv(self, shell: tuple[str, ...] = DEFAULT_SHELL) -> tuple[str, ...] | None:
        """The probe's command, or None when there is no probe (NONE, empty, unknown)."""
        if not self.test:
            return None
        kind, args = self.test[0], self.test[1:]
        if kind == "CMD" and args:
            return args
        if kind == "CMD-SHELL" and args:
            return (*shell, *args)
        return None

    @property
    def interval(self) -> int:
        return self.interval_ns or DEFAULT_INTERVAL_NS

    @property
    def timeout(self) -> int:
        return self.timeout_ns or DEFAULT_TIMEOUT_NS

    @property
    def start_period(self) -> int:
        return self.start_period_ns or DEFAULT_START_PERIOD_NS

    @property
    def max_failures(self) -> int:
        return self.retries if self.retries > 0 else DEFAULT_RETRIES


def merge_config(
    user: Mapping[str, Any] | None, image: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Config.Healthcheck of a new container: the request's, completed by the image's."""
    if not user:
        return dict(image) if image else None
    merged = dict(user)
    if image:
        if not merged.get("Test"):
            merged["Test"] = image.get("Test")
        for key in (*_DURATION_KEYS, "Retries"):
            if not merged.get(key) and image.get(key):
                merged[key] = image[key]
    return merged


@dataclass(frozen=True)
class ProbeResult:
    """One probe run, as State.Health.Log shows it."""

    start_ns: int
    end_ns: int
    exit_code: int
    output: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "Start": format_rfc3339nano(self.start_ns),
            "End": format_rfc3339nano(self.end_ns),
            "ExitCode": self.exit_code,
            "Output": self.output,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "exit_code": self.exit_code,
            "output": self.output,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ProbeResult:
        return cls(
            start_ns=int(obj["start_ns"]),
            end_ns=int(obj["end_ns"]),
            exit_code=int(obj["exit_code"]),
            output=str(obj.get("output", "")),
        )


@dataclass(frozen=True)
class HealthState:
    """State.Health."""

    status: str = STARTING
    failing_streak: int = 0
    log: tuple[ProbeResult, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [r.to_wire() for r in self.log],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "failing_streak": self.failing_streak,
            "log": [r.to_json() for r in self.log],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HealthState:
        status = str(obj.get("status", STARTING))
        if status not in (STARTING, HEALTHY, UNHEALTHY):
            raise ValueError(f"unknown health status {status!r}")
        return cls(
            status=status,
            failing_streak=int(obj.get("failing_streak", 0)),
            log=tuple(ProbeResult.from_json(r) for r in obj.get("log", ())),
        )

    @property
    def display(self) -> str:
        """The `docker ps` suffix: `(health: starting)`, `(healthy)`, `(unhealthy)`."""
        return "health: starting" if self.status == STARTING else self.status


def on_start(previous: HealthState | None) -> HealthState:
    """moby initHealthMonitor: starting again, the streak reset, the Log kept."""
    if previous is None:
        return HealthState()
    return replace(previous, status=STARTING, failing_streak=0)


def on_monitor_stopped(health: HealthState | None) -> HealthState | None:
    """moby CloseMonitorChannel: unhealthy once nobody probes (exit, pause)."""
    return None if health is None else replace(health, status=UNHEALTHY)


def on_result(
    health: HealthState, result: ProbeResult, config: HealthConfig, *, started_at_ns: int
) -> HealthState:
    """moby handleProbeResult; the caller emits `health_status: <status>` on a change."""
    log = (*health.log, result)[-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        return HealthState(HEALTHY, 0, log)
    streak = health.failing_streak
    status = health.status
    in_start_period = status == STARTING and result.start_ns - started_at_ns < config.start_period
    if not in_start_period:
        streak += 1
        if streak >= config.max_failures:
            status = UNHEALTHY
    return HealthState(status, streak, log)


def truncate_output(data: bytes) -> str:
    """moby limitedBuffer: the first 4096 bytes, then "..." if anything was dropped."""
    text = data[:MAX_OUTPUT_BYTES].decode(errors="replace")
    return text + "..." if len(data) > MAX_OUTPUT_BYTES else text


def go_duration(ns: int) -> str:
    """Go's time.Duration.String (`30s`, `500ms`, `1m30s`), as dockerd's timeout message."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def timeout_message(timeout_ns: int) -> str:
    return f"Health check exceeded timeout ({go_duration(timeout_ns)})"


__all__ = [
    "HEALTHY",
    "NO_HEALTHCHECK",
    "STARTING",
    "UNHEALTHY",
    "VALID_HEALTH",
    "HealthConfig",
    "HealthState",
    "ProbeResult",
    "go_duration",
    "merge_config",
    "on_monitor_stopped",
    "on_result",
    "on_start",
    "timeout_message",
    "truncate_output",
]
