"""Restart policies: which exited container starts again, and after how long.

Role: the decisions of moby's restartmanager (restartmanager/restartmanager.go) as pure
functions of values. The engine drives them: it persists RestartCount and whether the user
stopped the container, keeps the backoff per container in memory, and sleeps the delay.

Rules (moby 20.10):
- The backoff starts at 100 ms and doubles at each restart, up to 1 minute; a run of 10 s
  or more resets it to 100 ms.
- `always` restarts every exit; `unless-stopped` every exit unless the user stopped the
  container (`docker stop`/`kill`); `on-failure[:N]` a non-zero exit, at most N times
  (0: no limit); `no` never. RestartCount counts the restarts since the last manual start.
- `docker stop`, and `docker kill` with SIGKILL or the stop signal, cancel restarting until
  the next start (moby ExitOnNext; the engine's job: it does not ask). Other signals only
  mark the container as stopped by the user.
- At daemon start, `always` starts a container again even if the user stopped it;
  `unless-stopped` only if the user did not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

POLICIES = ("no", "always", "unless-stopped", "on-failure")
FIRST_BACKOFF_MS = 100
BACKOFF_MULTIPLIER = 2
MAX_BACKOFF_MS = 60_000
RESET_AFTER_RUN_MS = 10_000


class InvalidRestartPolicy(ValueError):
    """A RestartPolicy dockerd refuses at create (HTTP 400); the message is dockerd's."""


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_ms: int
    backoff_ms: int  # the backoff to keep for the next decision


def parse_policy(obj: Mapping[str, Any] | None, *, auto_remove: bool = False) -> RestartPolicy:
    """HostConfig.RestartPolicy, validated as moby daemon/container.go does at create."""
    name = str((obj or {}).get("Name") or "no")
    try:
        retries = int((obj or {}).get("MaximumRetryCount") or 0)
    except (TypeError, ValueError):
        raise InvalidRestartPolicy("invalid MaximumRetryCount") from None
    if name not in POLICIES:
        raise InvalidRestartPolicy(f"invalid restart policy '{name}'")
    if name != "on-failure" and retries != 0:
        raise InvalidRestartPolicy(
            f"maximum retry count cannot be used with restart policy '{name}'"
        )
    if retries < 0:
        raise InvalidRestartPolicy("maximum retry count cannot be negative")
    if auto_remove and name != "no":
        raise InvalidRestartPolicy("can't create 'AutoRemove' container with restart policy")
    return RestartPolicy(name, retries)


def next_backoff_ms(backoff_ms: int, ran_ms: int) -> int:
    if ran_ms >= RESET_AFTER_RUN_MS or backoff_ms <= 0:
        return FIRST_BACKOFF_MS
    return min(backoff_ms * BACKOFF_MULTIPLIER, MAX_BACKOFF_MS)


def _wants_restart(
    policy: RestartPolicy, *, restart_count: int, exit_code: int, manually_stopped: bool
) -> bool:
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def on_exit(
    policy: RestartPolicy,
    *,
    restart_count: int,
    backoff_ms: int,
    exit_code: int,
    manually_stopped: bool,
    ran_ms: int,
) -> RestartDecision:
    """After an exit the user did not `docker stop`: restart, and after how long."""
    if policy.name == "no":
        return RestartDecision(False, 0, backoff_ms)
    backoff = next_backoff_ms(backoff_ms, ran_ms)
    wants = _wants_restart(
        policy, restart_count=restart_count, exit_code=exit_code, manually_stopped=manually_stopped
    )
    return RestartDecision(wants, backoff if wants else 0, backoff)


def at_daemon_start(
    policy: RestartPolicy, *, restart_count: int, exit_code: int, manually_stopped: bool
) -> bool:
    """Whether a container that is not running starts with the daemon (moby restore)."""
    if policy.name == "always":
        return True  # even if the user stopped it
    return _wants_restart(
        policy, restart_count=restart_count, exit_code=exit_code, manually_stopped=manually_stopped
    )


__all__ = [
    "FIRST_BACKOFF_MS",
    "MAX_BACKOFF_MS",
    "POLICIES",
    "RESET_AFTER_RUN_MS",
    "InvalidRestartPolicy",
    "RestartDecision",
    "RestartPolicy",
    "at_daemon_start",
    "next_backoff_ms",
    "on_exit",
    "parse_policy",
]


def start_order(containers: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    """Container IDs in an order that starts every container after those it depends on
    (moby daemon.restore: legacy link targets, `--network container:` and `--volumes-from`
    sources first). Each entry is (id, name, the names or IDs it depends on); unknown
    dependencies are ignored, cycles broken in the given order."""
    by_key: dict[str, str] = {}
    for cid, name, _ in containers:
        by_key[cid] = cid
        by_key[name.lstrip("/")] = cid
    deps = {cid: [by_key[d.lstrip("/")] for d in wants if d.lstrip("/") in by_key]
            for cid, _, wants in containers}  # fmt: skip
    order: list[str] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(cid: str) -> None:
        if cid in placed or cid in visiting:
            return
        visiting.add(cid)
        for dep in deps[cid]:
            place(dep)
        visiting.discard(cid)
        placed.add(cid)
        order.append(cid)

    for cid, _, _ in containers:
        place(cid)
    return order
