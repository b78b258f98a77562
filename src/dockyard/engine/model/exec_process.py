"""`docker exec`: the request's values, and the OCI process `runc exec` runs from them.

Role: turn an exec create request (Docker's Cmd, Env, WorkingDir, User, Tty, Privileged)
and the container's own OCI process (from its bundle's config.json) into the process
JSON for `runc exec --process`. Pure: it takes the texts of the container's /etc/passwd
and /etc/group, never reads them.

Rules (moby daemon/exec.go, daemon/exec_linux.go):
- Env is the container's environment with the exec's entries replacing or appended per
  key; a TTY exec gets `TERM=xterm` unless a value is set.
- WorkingDir and User default to the container's (its process cwd and user).
- Capabilities are the container's, or, when Privileged, every capability the daemon
  itself holds in its bounding set (`bounding_mask`): asking for more fails in runc.
- Everything else (rlimits, noNewPrivileges, oomScoreAdj, apparmor) is the container's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.engine.security import capabilities as caps

# moby daemon/exec.go: the exit code of an exec whose process could not be started.
EXIT_CANNOT_EXECUTE = 126


class ExecUserError(ValueError):
    """A `--user` that the container's passwd/group files cannot resolve."""


@dataclass(frozen=True)
class ExecConfig:
    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    tty: bool = False
    privileged: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    detach_keys: str = ""


def start_error_exit_code(message: str) -> int:
    """dockerd 20.10 records 126 for every exec that failed to start, a missing command
    included (checked against it: tests/e2e/engine/test_differential_dockerd.py)."""
    return EXIT_CANNOT_EXECUTE


def docker_exec_error(runc_message: str) -> str:
    """dockerd's wording around runc's error, which the CLI prints."""
    return f"OCI runtime exec failed: {runc_message}: unknown"


def merge_env(base: Sequence[str], overrides: Sequence[str]) -> list[str]:
    merged: dict[str, str] = {}
    for entry in (*base, *overrides):
        merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, passwd: str, group: str) -> tuple[int, int, tuple[int, ...]]:
    """`uid`, `gid` and supplementary gids of `user|uid[:group|gid]` (moby getUser)."""
    name, _, group_name = user.partition(":")
    uid, gid = 0, 0
    user_name = ""
    found = False
    for fields in _entries(passwd):
        if len(fields) < 4:
            continue
        if fields[0] == name or (name.isdigit() and fields[2] == name):
            uid, gid, user_name, found = int(fields[2]), int(fields[3]), fields[0], True
            break
    if not found:
        if not name.isdigit():
            raise ExecUserError(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(name)
    if group_name:
        for fields in _entries(group):
            if len(fields) >= 3 and (fields[0] == group_name or fields[2] == group_name):
                gid = int(fields[2])
                break
        else:
            if not group_name.isdigit():
                raise ExecUserError(
                    f"unable to find group {group_name}: no matching entries in group file"
                )
            gid = int(group_name)
    extra: list[int] = []
    if user_name:
        for fields in _entries(group):
            members = fields[3].split(",") if len(fields) >= 4 else []
            if user_name in members and int(fields[2]) != gid:
                extra.append(int(fields[2]))
    return uid, gid, tuple(extra)


def parse_cap_bounding(status: str) -> int:
    """The `CapBnd:` mask of a /proc/<pid>/status text (all ones when absent)."""
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "CapBnd":
            return int(value.strip(), 16)
    return (1 << 64) - 1


def exec_process(
    base: Mapping[str, Any],
    config: ExecConfig,
    *,
    passwd: str,
    group: str,
    bounding_mask: int = (1 << 64) - 1,
) -> dict[str, Any]:
    """The OCI process for `runc exec`, from the container's process `base`."""
    process = copy.deepcopy(dict(base))
    process["args"] = list(config.cmd)
    env = list(process.get("env") or [])
    if config.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    process["env"] = merge_env(env, config.env)
    process["terminal"] = config.tty
    if config.working_dir:
        process["cwd"] = config.working_dir
    process.setdefault("cwd", "/")
    if config.user:
        uid, gid, extra = resolve_user(config.user, passwd, group)
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": [gid, *extra]}
    if config.privileged:
        # moby daemon/exec_linux.go: all four sets, bounding included.
        every = [c for i, c in enumerate(caps.ALL_CAPABILITIES) if bounding_mask >> i & 1]
        process["capabilities"] = {
            "bounding": every,
            "effective": every,
            "permitted": every,
            "inheritable": every,
        }
        process.pop("apparmorProfile", None)
    process.pop("consoleSize", None)
    return process


__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "ExecConfig",
    "ExecUserError",
    "docker_exec_error",
    "exec_process",
    "merge_env",
    "parse_cap_bounding",
    "resolve_user",
    "start_error_exit_code",
]
