"""The same docker CLI scenarios against dockerd 20.10 and dockyard, compared field by field.

Both daemons run once per module (`tests/support/dockerd.py`) and hold the same busybox layer
(dockyard's bootstrap rootfs, `docker import`ed into dockerd). Each scenario runs its
commands against dockerd first, then dockyard, and compares what a client sees: exit code,
stdout and stderr after normalization (container IDs, times), and the `docker inspect`
fields clients read. Containers use `--network none` on both: the reference dockerd runs
with `--bridge=none` so that it never touches the host's network.

At teardown every container is removed, both daemons are stopped by PID, and the module
fails if anything (a process, runc container, mount, cgroup) had to be removed by force.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.dockerd import (
    DOCKER_CLI,
    DaemonProcess,
    dockerd_and_dockyard,
)

pytestmark = pytest.mark.e2e

Outcome = tuple[int, str, str]
# The `docker inspect` fields clients read (docker-py, compose, CLI templates).
INSPECT_FIELDS = (
    ("Name",),
    ("Path",),
    ("Args",),
    ("State", "Status"),
    ("State", "Running"),
    ("State", "ExitCode"),
    ("Config", "Cmd"),
    ("Config", "Env"),
    ("Config", "Image"),
    ("HostConfig", "Privileged"),
    ("HostConfig", "CapAdd"),
    ("HostConfig", "CapDrop"),
    ("HostConfig", "NetworkMode"),
)
PS_FORMAT = "{{.Names}}|{{.Image}}|{{.Command}}|{{.Status}}"
_ID_RE = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b")
# `docker ps` durations: "Up 2 seconds", "Exited (0) Less than a second ago", "About a minute".
_DURATION_RE = re.compile(
    r"(Less than a second|About an? \w+|\d+ (second|minute|hour|day|week|month|year)s?)"
)


def normalize(text: str) -> str:
    return _DURATION_RE.sub("<duration>", _ID_RE.sub("<id>", text))


def outcome(result: subprocess.CompletedProcess[str]) -> Outcome:
    return result.returncode, normalize(result.stdout), normalize(result.stderr)


def inspect_fields(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    result = daemon.docker("inspect", name)
    assert result.returncode == 0, f"{daemon.kind}: {result.stderr}\n{daemon.log()}"
    state = json.loads(result.stdout)[0]
    fields: dict[str, Any] = {}
    for path in INSPECT_FIELDS:
        value: Any = state
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        # Docker API: an empty list and null are the same to clients (CapAdd, CapDrop, Args).
        fields[".".join(path)] = None if value == [] else value
    return fields


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, ...]]:
    with dockerd_and_dockyard(tmp_path_factory) as started:
        yield started


def run_both(
    daemons: tuple[DaemonProcess, ...], scenario: Callable[[DaemonProcess], list[Any]]
) -> None:
    """Run `scenario` on each daemon and require the same observations from both."""
    reference, *others = daemons
    expected = scenario(reference)
    for daemon in others:
        actual = scenario(daemon)
        for step, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert got == want, (
                f"step {step}: {daemon.kind} differs from {reference.kind}\n"
                f"{reference.kind}: {want!r}\n{daemon.kind}: {got!r}\n--- log ---\n{daemon.log()}"
            )


def test_the_same_busybox_layer(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(daemon: DaemonProcess) -> list[Any]:
        image = json.loads(daemon.docker("image", "inspect", "busybox").stdout)[0]
        return [image["RootFS"], image["Config"]["Cmd"], image["Config"]["Env"], image["RepoTags"]]

    run_both(daemons, scenario)


def test_create_start_wait_logs_inspect_rm(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        steps: list[Any] = [
            outcome(
                d.docker("create", "--name", "x1", "--network", "none", "busybox", "echo", "hi")
            ),
            inspect_fields(d, "x1"),
            outcome(d.docker("start", "x1")),
            outcome(d.docker("wait", "x1")),
            outcome(d.docker("logs", "x1")),
            inspect_fields(d, "x1"),
            outcome(d.docker("ps", "-a", "--filter", "name=x1", "--format", PS_FORMAT)),
            outcome(d.docker("rm", "x1")),
            outcome(d.docker("inspect", "x1")),
        ]
        return steps

    run_both(daemons, scenario)


def test_run_detached_ps_stop_wait(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        run = d.docker("run", "-d", "--name", "s1", "--network", "none", "busybox", "sleep", "1000")
        steps: list[Any] = [
            outcome(run),
            outcome(d.docker("ps", "--filter", "name=s1", "--format", PS_FORMAT)),
            inspect_fields(d, "s1"),
            # sleep as pid 1 ignores SIGTERM: stop kills it after 1 s, exit status 137.
            outcome(d.docker("stop", "-t", "1", "s1")),
            outcome(d.docker("wait", "s1")),
            inspect_fields(d, "s1"),
            outcome(d.docker("ps", "-a", "--filter", "name=s1", "--format", PS_FORMAT)),
            outcome(d.docker("rm", "s1")),
        ]
        return steps

    run_both(daemons, scenario)


def test_errors(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        steps: list[Any] = [outcome(d.docker("start", "nosuch"))]
        d.docker("run", "-d", "--name", "e1", "--network", "none", "busybox", "sleep", "1000")
        steps.append(outcome(d.docker("rm", "e1")))
        steps.append(
            outcome(d.docker("create", "--name", "e1", "--network", "none", "busybox", "true"))
        )
        steps.append(outcome(d.docker("rm", "-f", "e1")))
        # Offline, the pull fails with a daemon-specific message: compare the exit code and
        # that the image is named.
        # A registry on a closed loopback port: the pull after the 404 stays on the machine.
        missing = d.docker("create", "--network", "none", "127.0.0.1:1/busybox-nope")
        steps.append((missing.returncode, "127.0.0.1:1/busybox-nope" in missing.stderr))
        steps.append(outcome(d.docker("inspect", "nosuch")))
        steps.append(outcome(d.docker("ps", "-a", "--format", PS_FORMAT)))
        return steps

    run_both(daemons, scenario)


def test_an_unknown_network_is_refused_by_both(daemons: tuple[DaemonProcess, ...]) -> None:
    # A guard for the scenarios above: both accept the create (networks are resolved at
    # start) and refuse the start with the network's name.
    def scenario(d: DaemonProcess) -> list[Any]:
        created = d.docker("create", "--name", "x-net", "--network", "nosuchnet", "busybox", "true")
        started = d.docker("start", "x-net")
        removed = d.docker("rm", "-f", "x-net")
        # (dockerd, run here with --ip-forward=false, warns at the create of a bridged one.)
        return [created.returncode, outcome(started), outcome(removed)]

    run_both(daemons, scenario)


def test_foreground_run_attaches_and_returns_the_exit_status(
    daemons: tuple[DaemonProcess, ...],
) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        def run(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
            return d.docker("run", "--rm", "--name", name, "--network", "none", "busybox", *argv)

        missing = run("fg-missing", "nosuchcmd")
        return [
            outcome(run("fg-echo", "echo", "hi")),
            outcome(run("fg-exit", "sh", "-c", "echo out; echo err >&2; exit 3")),
            (missing.returncode, 'exec: "nosuchcmd": executable file not found' in missing.stderr),
            # --rm leaves none of them behind
            outcome(d.docker("ps", "-a", "--filter", "name=fg-", "--format", PS_FORMAT)),
        ]

    run_both(daemons, scenario)


def test_exec(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        run = d.docker(
            "run", "-d", "--name", "x-exec", "--network", "none", "busybox", "sleep", "1000"
        )
        missing = d.docker("exec", "x-exec", "nosuchcmd")
        nouser = d.docker("exec", "-u", "nosuchuser", "x-exec", "true")
        steps: list[Any] = [
            outcome(run),
            outcome(d.docker("exec", "x-exec", "echo", "hi")),
            outcome(d.docker("exec", "x-exec", "sh", "-c", "echo out; echo err >&2; exit 3")),
            outcome(
                d.docker("exec", "-e", "X=1", "-w", "/tmp", "x-exec", "sh", "-c", "echo $X; pwd")
            ),
            outcome(d.docker("exec", "-u", "65534:65534", "x-exec", "id")),
            outcome(missing),
            outcome(nouser),
            outcome(d.docker("exec", "-d", "x-exec", "true")),
            outcome(d.docker("exec", "nosuch", "true")),
            outcome(d.docker("stop", "-t", "0", "x-exec")),
            outcome(d.docker("exec", "x-exec", "true")),
            outcome(d.docker("rm", "x-exec")),
        ]
        return steps

    run_both(daemons, scenario)


def test_pause_unpause(daemons: tuple[DaemonProcess, ...]) -> None:
    state_fields = "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}}"

    def scenario(d: DaemonProcess) -> list[Any]:
        run = d.docker(
            "run", "-d", "--name", "x-pause", "--network", "none", "busybox", "sleep", "1000"
        )
        steps: list[Any] = [
            outcome(run),
            outcome(d.docker("unpause", "x-pause")),
            outcome(d.docker("pause", "x-pause")),
            outcome(d.docker("inspect", "--format", state_fields, "x-pause")),
            outcome(d.docker("ps", "--filter", "name=x-pause", "--format", PS_FORMAT)),
            outcome(d.docker("ps", "--filter", "status=paused", "--format", "{{.Names}}")),
            outcome(d.docker("pause", "x-pause")),
            outcome(d.docker("exec", "x-pause", "true")),
            outcome(d.docker("unpause", "x-pause")),
            outcome(d.docker("inspect", "--format", state_fields, "x-pause")),
            outcome(d.docker("pause", "x-pause")),
            # sleep ignores SIGTERM: stop thaws it and kills it after the grace time.
            outcome(d.docker("stop", "-t", "1", "x-pause")),
            outcome(d.docker("inspect", "--format", state_fields, "x-pause")),
            outcome(d.docker("pause", "x-pause")),
            outcome(d.docker("rm", "x-pause")),
        ]
        return steps

    run_both(daemons, scenario)


def _await_inspect(d: DaemonProcess, name: str, template: str, want: str) -> str:
    """Poll `docker inspect -f template` until it prints `want` (or give up and return it)."""
    deadline = time.monotonic() + 30.0
    while True:
        seen = d.docker("inspect", "-f", template, name).stdout.strip()
        if seen == want or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)  # polling inspect is the only signal of a restart


def test_restart_policies(daemons: tuple[DaemonProcess, ...]) -> None:
    fields = "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy}}"

    def scenario(d: DaemonProcess) -> list[Any]:
        def run(name: str, policy: str, *argv: str) -> Outcome:
            flags = ("--name", name, "--network", "none", "--restart", policy)
            return outcome(d.docker("run", "-d", *flags, "busybox", *argv))

        steps: list[Any] = [
            run("x-onfail", "on-failure:2", "sh", "-c", "exit 3"),
            _await_inspect(d, "x-onfail", fields, "2 exited 3 {on-failure 2}"),
            run("x-unless", "unless-stopped", "sleep", "1000"),
            outcome(d.docker("kill", "x-unless")),
            _await_inspect(d, "x-unless", fields, "0 exited 137 {unless-stopped 0}"),
            run("x-always", "always", "sleep", "1000"),
            # SIGKILL cancels restarting, even for `always` (moby ExitOnNext).
            outcome(d.docker("kill", "x-always")),
            _await_inspect(d, "x-always", fields, "0 exited 137 {always 0}"),
            outcome(d.docker("start", "x-always")),
            _await_inspect(d, "x-always", fields, "0 running 0 {always 0}"),
            outcome(d.docker("stop", "-t", "0", "x-always")),
            _await_inspect(d, "x-always", fields, "0 exited 137 {always 0}"),
            outcome(d.docker("create", "--restart", "sometimes", "busybox", "true")),
            outcome(d.docker("rm", "-f", "x-onfail", "x-unless", "x-always")),
        ]
        return steps

    run_both(daemons, scenario)


def test_rename_and_top(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        run = d.docker(
            "run", "-d", "--name", "x-top", "--network", "none", "busybox", "sleep", "1000"
        )
        top = d.docker("top", "x-top")
        rows = [line.split(None, 7) for line in top.stdout.splitlines()]
        steps: list[Any] = [
            outcome(run),
            # Titles and the command; PIDs, times and the uid's name are the host's.
            (top.returncode, rows[0], [row[7] for row in rows[1:]]),
            outcome(d.docker("rename", "x-top", "x-top2")),
            outcome(d.docker("rename", "x-top2", "x-top2")),
            outcome(d.docker("rename", "nosuch", "x-top3")),
            outcome(d.docker("ps", "-a", "--filter", "name=x-top", "--format", PS_FORMAT)),
            outcome(d.docker("stop", "-t", "0", "x-top2")),
            outcome(d.docker("top", "x-top2")),
            outcome(d.docker("rm", "x-top2")),
        ]
        return steps

    run_both(daemons, scenario)


def _event_shapes(d: DaemonProcess, since: str, *filters: str) -> list[Any]:
    """`docker events` between `since` and now: each event's fields, attribute names and
    the values that do not depend on the daemon (IDs and times left out)."""
    until = f"{time.time():.9f}"
    result = d.docker(
        "events", "--since", since, "--until", until, "--format", "{{json .}}", *filters
    )
    assert result.returncode == 0, result.stderr
    shapes = []
    for line in result.stdout.splitlines():
        event = json.loads(line)
        attributes = event["Actor"]["Attributes"]
        shapes.append(
            (
                sorted(event),
                event["Type"],
                event["Action"],
                event.get("status"),
                event.get("from"),
                event["scope"],
                {k: v for k, v in attributes.items() if k not in ("execID",)},
                event["time"] == event["timeNano"] // 1_000_000_000,
            )
        )
    return shapes


def test_events_and_prune(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        since = f"{time.time():.9f}"
        flags = ("--network", "none", "--label", "dy=ev")
        steps: list[Any] = [
            outcome(d.docker("create", "--name", "x-ev", *flags, "busybox", "sh", "-c", "exit 3")),
            outcome(d.docker("start", "x-ev")),
            outcome(d.docker("wait", "x-ev")),
            outcome(d.docker("run", "-d", "--name", "x-ev2", *flags, "busybox", "sleep", "1000")),
            outcome(d.docker("exec", "x-ev2", "true")),
            outcome(d.docker("kill", "-s", "USR1", "x-ev2")),
            outcome(d.docker("stop", "-t", "1", "x-ev2")),
            outcome(
                d.docker(
                    "ps",
                    "-a",
                    "--filter",
                    "label=dy=ev",
                    "--filter",
                    "exited=3",
                    "--format",
                    PS_FORMAT,
                )
            ),
            outcome(
                d.docker(
                    "ps",
                    "-a",
                    "--filter",
                    "before=x-ev2",
                    "--filter",
                    "label=dy",
                    "--format",
                    "{{.Names}}",
                )
            ),
            outcome(d.docker("ps", "--filter", "bogus=1")),
            outcome(d.docker("container", "prune", "-f", "--filter", "label=dy=ev")),
            outcome(d.docker("container", "prune", "-f", "--filter", "label=dy=ev")),
            outcome(d.docker("container", "prune", "-f", "--filter", "bogus=1")),
            _event_shapes(d, since, "--filter", "label=dy=ev"),
            _event_shapes(d, since, "--filter", "event=die", "--filter", "container=x-ev"),
            _event_shapes(d, since, "--filter", "type=container", "--filter", "event=prune"),
        ]
        return steps

    run_both(daemons, scenario)


def test_healthcheck_status_and_events(daemons: tuple[DaemonProcess, ...]) -> None:
    health = "{{.State.Health.Status}} {{.State.Health.FailingStreak}}"
    last = "{{with (index .State.Health.Log 0)}}{{.ExitCode}} {{.Output}}{{end}}"

    def scenario(d: DaemonProcess) -> list[Any]:
        since = f"{time.time():.9f}"

        def run(name: str, cmd: str) -> Outcome:
            flags = ("--name", name, "--network", "none", "--health-interval", "200ms")
            checks = ("--health-cmd", cmd, "--health-retries", "2")
            return outcome(d.docker("run", "-d", *flags, *checks, "busybox", "sleep", "1000"))

        steps: list[Any] = [
            run("x-hok", "echo fine"),
            run("x-hbad", "echo sick; exit 1"),
            _await_inspect(d, "x-hok", health, "healthy 0"),
            _await_inspect(d, "x-hbad", health, "unhealthy 2"),
            outcome(d.docker("inspect", "-f", last, "x-hok")),
            outcome(d.docker("inspect", "-f", last, "x-hbad")),
            outcome(d.docker("ps", "--filter", "name=x-h", "--format", PS_FORMAT)),
            outcome(d.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}")),
            outcome(d.docker("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}")),
            _event_shapes(d, since, "--filter", "event=health_status"),
            outcome(d.docker("stop", "-t", "0", "x-hok")),
            outcome(d.docker("inspect", "-f", health, "x-hok")),
            outcome(d.docker("rm", "-f", "x-hok", "x-hbad")),
        ]
        return steps

    run_both(daemons, scenario)


# --- security and resources (issue 3) ----------------------------------------------------

SECURITY_FLAGS = (
    "--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--device", "/dev/null:/dev/mynull:r",
    "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/run:size=1m",
    "--group-add", "1234", "--sysctl", "net.ipv4.ip_forward=1", "--ulimit", "nofile=100:200",
    "--pid", "host", "--cgroupns", "private", "-m", "64m", "--memory-reservation", "32m",
    "--cpus", "1.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "100",
    "--init", "--stop-signal", "SIGUSR1", "--stop-timeout", "7",
)  # fmt: skip
# HostConfig fields the flags above set (MaskedPaths differ on purpose: dockyard shows the
# newer moby list it applies).
SECURITY_HOST_CONFIG = (
    "CapAdd", "CapDrop", "Devices", "SecurityOpt", "ReadonlyRootfs", "Tmpfs", "GroupAdd",
    "Sysctls", "Ulimits", "PidMode", "IpcMode", "CgroupnsMode", "Memory", "MemorySwap",
    "MemoryReservation", "NanoCpus", "CpuShares", "CpusetCpus", "PidsLimit", "Init",
    "OomKillDisable", "ShmSize", "Privileged",
)  # fmt: skip
STATUS_LINES = ("sh", "-c", "grep -E '^(Cap|Seccomp:|NoNew)' /proc/self/status")
SECURITY_RUNS = (
    ("busybox", *STATUS_LINES),
    ("--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--security-opt", "no-new-privileges",
     "busybox", *STATUS_LINES),
    ("--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:", "/proc/self/status"),
    ("--cap-add=NET_ADMIN", "busybox", "ip", "link", "set", "lo", "down"),
    ("busybox", "ip", "link", "set", "lo", "down"),
    ("--read-only", "--tmpfs", "/run:size=1m", "--sysctl", "net.ipv4.ip_forward=1",
     "--ulimit", "nofile=100:200", "busybox", "sh", "-c",
     "touch /x; grep ' /run ' /proc/mounts; cat /proc/sys/net/ipv4/ip_forward; "
     "ulimit -n; ulimit -Hn"),
    ("-u", "nobody", "--group-add", "1234", "busybox", "id"),
    ("--group-add", "nosuchgroup", "busybox", "id"),
    ("--device", "/dev/nonexist", "busybox", "true"),
)  # fmt: skip
INVALID_CREATE_FLAGS = (
    ("--cap-add", "foo"), ("--cap-drop", "bar"), ("-m", "4m"), ("--memory-reservation", "1m"),
    ("--cpuset-cpus", "64"), ("--cpus", "512"), ("--stop-signal", "FOO"),
    ("-m", "10m", "--memory-swap", "5m"),
)  # fmt: skip


def test_security_and_resource_flags(daemons: tuple[DaemonProcess, ...]) -> None:
    def scenario(d: DaemonProcess) -> list[Any]:
        flags = ("--name", "x-sec", "--network", "none", *SECURITY_FLAGS)
        create = d.docker("create", *flags, "busybox", "true")
        record = json.loads(d.docker("inspect", "x-sec").stdout)[0]
        steps: list[Any] = [
            outcome(create),
            {k: record["HostConfig"].get(k) for k in SECURITY_HOST_CONFIG},
            {k: record["Config"].get(k) for k in ("StopSignal", "StopTimeout")},
            outcome(d.docker("rm", "x-sec")),
        ]
        for argv in SECURITY_RUNS:
            steps.append(outcome(d.docker("run", "--rm", "--network", "none", *argv)))
        for bad in INVALID_CREATE_FLAGS:
            steps.append(outcome(d.docker("create", "--network", "none", *bad, "busybox")))
        steps.append(outcome(d.docker("ps", "-a", "--format", PS_FORMAT)))
        return steps

    run_both(daemons, scenario)


def test_oom_kill_and_update(daemons: tuple[DaemonProcess, ...]) -> None:
    fields = "{{.State.OOMKilled}} {{.State.ExitCode}}"
    limits = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}}"
    run_upd = ("run", "-d", "--name", "x-upd", "--network", "none", "-m", "20m")
    update = ("update", "--memory", "30m", "--memory-swap", "40m", "--pids-limit", "9", "x-upd")

    def scenario(d: DaemonProcess) -> list[Any]:
        oom = d.docker("run", "--name", "x-oom", "--network", "none", "-m", "8m", "busybox",
                       "tail", "/dev/zero")  # fmt: skip
        steps: list[Any] = [
            (oom.returncode, oom.stdout),
            outcome(d.docker("inspect", "-f", fields, "x-oom")),
            outcome(d.docker("rm", "x-oom")),
            outcome(d.docker(*run_upd, "--memory-swap", "20m", "busybox", "sleep", "1000")),
            # dockerd 20.10 prints a networking warning on a successful update: compare codes.
            d.docker(*update).returncode,
            outcome(d.docker("inspect", "-f", limits, "x-upd")),
            outcome(d.docker("update", "--memory", "64m", "x-upd")),
            outcome(d.docker("update", "--memory", "4m", "x-upd")),
            outcome(d.docker("update", "--memory", "32m", "nosuch")),
            outcome(d.docker("rm", "-f", "x-upd")),
        ]
        return steps

    run_both(daemons, scenario)


# -- docker cp, export, port and stats ----------------------------------------------------------

CP_SEED = (
    "mkdir -p /data/sub && echo one > /data/a.txt && echo two > /data/sub/b.txt"
    " && ln -s a.txt /data/link && ln -s / /data/root && ln -s ../../.. /data/up"
    " && touch /seeded"
)
STAT_PATHS = (
    "/data", "/data/", "/data/.", "/data/a.txt", "/data/link", "/data/root", "/data/root/",
    "/data/up", "/data/up/data/a.txt", "/data/root/etc/passwd", "/nonexist", "/data/a.txt/",
)  # fmt: skip


def _cli_bytes(d: DaemonProcess, *args: str, stdin: bytes | None = None) -> Any:
    """The CLI with binary stdin/stdout: (exit code, stdout bytes, normalized stderr)."""
    result = subprocess.run(
        [DOCKER_CLI, *args], env=d.env, input=stdin, capture_output=True, timeout=60, check=False
    )
    return result.returncode, result.stdout, normalize(result.stderr.decode(errors="replace"))


def _tar_listing(data: bytes) -> list[tuple[str, bytes, int, int, str, bytes]]:
    """What a client reads from a tar: names, types, modes, sizes, links and contents."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            extracted = tar.extractfile(m) if m.isreg() else None
            content = extracted.read() if extracted is not None else b""
            out.append((m.name, m.type, m.mode & 0o7777, m.size, m.linkname, content))
    return out


def _archive_call(
    d: DaemonProcess, method: str, name: str, path: str, body: bytes | None = None, query: str = ""
) -> tuple[int, Any]:
    """(status, the path stat without its mtime, or the error message)."""
    conn = d.connect()
    try:
        conn.request(method, f"/v1.41/containers/{name}/archive?path={quote(path)}{query}", body)
        response = conn.getresponse()
        raw = response.read()
        header = response.getheader("X-Docker-Container-Path-Stat")
    finally:
        conn.close()
    if header:
        stat = json.loads(base64.b64decode(header))
        del stat["mtime"]
        return response.status, stat
    message = json.loads(raw)["message"] if raw else ""
    # dockerd names its own host paths in lstat errors: keep the kind of error only.
    return response.status, message.rsplit(": ", 1)[-1] if message.startswith("lstat ") else message


def _put_tar(*members: tuple[str, bytes, str]) -> bytes:
    """(name, type, link target or content) members, as a client builds them."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o644, 1_700_000_000
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data.encode()))
            else:
                info.linkname = data
                tar.addfile(info)
    return out.getvalue()


def _await_file(d: DaemonProcess, name: str, path: str) -> None:
    deadline = time.monotonic() + 30.0
    while d.docker("exec", name, "test", "-e", path).returncode != 0:
        assert time.monotonic() < deadline, f"{d.kind}: {path} never appeared in {name}"
        time.sleep(0.05)  # polling exec is the only signal that the file is there


def test_cp_archive_and_export(daemons: tuple[DaemonProcess, ...], tmp_path: Any) -> None:
    host_file = tmp_path / "host.txt"
    host_file.write_text("from the host\n")
    bad_members = (
        ("../../x", tarfile.REGTYPE, "x"),
        ("sub/../../up1", tarfile.REGTYPE, "x"),
        ("lnup", tarfile.SYMTYPE, "../../.."),
        ("hl", tarfile.LNKTYPE, "../../etc/passwd"),
        ("hl2", tarfile.LNKTYPE, "/etc/passwd"),
    )

    def reads(d: DaemonProcess) -> list[Any]:
        steps: list[Any] = [_archive_call(d, "HEAD", "x-cp", path) for path in STAT_PATHS]
        for path in ("/data/a.txt", "/data", "/data/.", "/data/root/etc/passwd", "/data/up"):
            code, data, err = _cli_bytes(d, "cp", f"x-cp:{path}", "-")
            steps.append((path, code, _tar_listing(data) if code == 0 else err))
        steps.append(_cli_bytes(d, "cp", "x-cp:/nonexist", "-"))
        return steps

    def scenario(d: DaemonProcess) -> list[Any]:
        run = d.docker("run", "-d", "--name", "x-cp", "--network", "none", "-p", "8080:80",
                       "busybox", "sh", "-c", f"{CP_SEED} && exec sleep 1000")  # fmt: skip
        _await_file(d, "x-cp", "/seeded")
        steps: list[Any] = [outcome(run), *reads(d)]
        steps.append(outcome(d.docker("cp", str(host_file), "x-cp:/tmp/")))
        stdin_tar = _put_tar(("in/y.txt", tarfile.REGTYPE, "from stdin\n"))
        steps.append(_cli_bytes(d, "cp", "-", "x-cp:/tmp", stdin=stdin_tar))
        steps.append(outcome(d.docker("exec", "x-cp", "cat", "/tmp/host.txt", "/tmp/in/y.txt")))
        for member in bad_members:
            steps.append(_archive_call(d, "PUT", "x-cp", "/tmp", _put_tar(member)))
        ok = _put_tar(("f", tarfile.REGTYPE, "x"))
        steps.append(_archive_call(d, "PUT", "x-cp", "/data/a.txt", ok))
        steps.append(_archive_call(d, "PUT", "x-cp", "/nonexist", ok))
        steps.append(_archive_call(d, "PUT", "x-cp", "/data", ok[:700]))
        steps.append(_archive_call(d, "PUT", "x-cp", "/data", b"garbage" * 100))
        sub_file = _put_tar(("sub", tarfile.REGTYPE, "x"))
        no_overwrite = "&noOverwriteDirNonDir=true"
        steps.append(_archive_call(d, "PUT", "x-cp", "/data", sub_file, no_overwrite))
        steps.append(outcome(d.docker("port", "x-cp")))
        steps.append(outcome(d.docker("port", "x-cp", "80")))
        steps.append(outcome(d.docker("stop", "-t", "0", "x-cp")))
        # The same on the stopped container.
        steps += reads(d)
        steps.append(outcome(d.docker("cp", str(host_file), "x-cp:/data/sub/")))
        code, data, err = _cli_bytes(d, "export", "x-cp")
        exported = [m for m in _tar_listing(data) if m[0].startswith(("data/", "tmp/"))]
        steps += [code, err, exported]
        steps.append(outcome(d.docker("run", "-d", "--name", "x-ro", "--network", "none",
                                      "--read-only", "busybox", "sleep", "1000")))  # fmt: skip
        steps.append(outcome(d.docker("cp", str(host_file), "x-ro:/tmp/")))
        steps.append(_cli_bytes(d, "export", "nosuch"))
        steps.append(outcome(d.docker("rm", "-f", "x-cp", "x-ro")))
        return steps

    run_both(daemons, scenario)


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("stats", "id")}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_stats_shapes(daemons: tuple[DaemonProcess, ...]) -> None:
    fmt = "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.NetIO}} {{.BlockIO}} {{.PIDs}}"

    def scenario(d: DaemonProcess) -> list[Any]:
        created = d.docker("create", "--name", "x-st0", "--network", "none", "busybox", "true")
        run = d.docker("run", "-d", "--name", "x-st1", "--network", "none", "-m", "64m",
                       "busybox", "sleep", "1000")  # fmt: skip
        _, zero = d.api("GET", "/containers/x-st0/stats?stream=0")
        _, live = d.api("GET", "/containers/x-st1/stats?stream=0")
        _, one_shot = d.api("GET", "/containers/x-st1/stats?stream=0&one-shot=1")
        no_stream = d.docker("stats", "--no-stream", "--format", fmt, "x-st0")
        limit = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", "x-st1")
        steps: list[Any] = [
            outcome(created),
            outcome(run),
            {k: v for k, v in zero.items() if k != "id"},
            _shape(live),
            sorted(live["memory_stats"]["stats"]),
            (live["memory_stats"]["limit"], live["pids_stats"], live["cpu_stats"]["online_cpus"]),
            (one_shot["preread"], one_shot["precpu_stats"]["cpu_usage"]["total_usage"]),
            outcome(no_stream),
            (limit.returncode, limit.stdout.split(" / ")[-1]),
            outcome(d.docker("stats", "--no-stream", "nosuch")),
            outcome(d.docker("rm", "-f", "x-st0", "x-st1")),
        ]
        return steps

    run_both(daemons, scenario)


def test_import_tag_rmi(daemons: tuple[DaemonProcess, ...]) -> None:
    # The same rootfs as busybox: both daemons share its layer, so no layer is deleted.
    from tests.support.dockerd import busybox_rootfs_tar

    tar = busybox_rootfs_tar()
    config_keys = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts")

    def scenario(d: DaemonProcess) -> list[Any]:
        changes = [
            'CMD ["sh", "-c", "echo $A $B"]',
            'ENV A=1 B="x y"',
            "WORKDIR /tmp",
            "LABEL a=b",
            "EXPOSE 80 53/udp",
            "VOLUME /v",
            "USER nobody",
        ]
        flags = [arg for change in changes for arg in ("--change", change)]
        imported = d.docker("import", *flags, "-m", "differential", "-", "dif:one", input_bytes=tar)
        image_id = imported.stdout.strip()
        short = image_id[7:19]
        image = json.loads(d.docker("image", "inspect", "dif:one").stdout)[0]
        run = ("--network", "none")
        tag_format = "{{.Repository}}:{{.Tag}}"
        steps: list[Any] = [
            outcome(imported),
            {key: image["Config"].get(key) for key in (*config_keys, "Volumes")},
            (image["Comment"], image["RepoTags"], image["Os"], image["RootFS"]),
            outcome(d.docker("run", "--rm", *run, "dif:one")),
            outcome(d.docker("tag", "dif:one", "dif:two")),
            outcome(d.docker("images", "--filter", "reference=dif", "--format", tag_format)),
            outcome(d.docker("images", "--filter", "reference=*:two", "--format", tag_format)),
            outcome(d.docker("images", "--filter", "label=a=b", "--format", tag_format)),
            outcome(d.docker("images", "--filter", "bogus=1", "--format", tag_format)),
            outcome(d.docker("rmi", short)),
            outcome(d.docker("run", "-d", "--name", "x-img", *run, "dif:one", "sleep", "1000")),
            outcome(d.docker("rmi", "dif:one")),
            outcome(d.docker("rmi", "dif:two")),
            outcome(d.docker("rmi", short)),
            outcome(d.docker("rmi", "-f", short)),
            outcome(d.docker("rmi", "-f", "dif:two")),
            outcome(d.docker("stop", "-t", "0", "x-img")),
            outcome(d.docker("rmi", short)),
            outcome(d.docker("rm", "x-img")),
            outcome(d.docker("rmi", short)),
            outcome(d.docker("rmi", "dif:one")),
            outcome(d.docker("tag", "nosuch", "dif:three")),
            outcome(d.docker("import", "--change", "RUN true", "-", "dif:bad", input_bytes=tar)),
            outcome(d.docker("import", "--change", "EXPOSE x", "-", "dif:bad", input_bytes=tar)),
            outcome(d.docker("import", "-", "x@sha256:" + "a" * 64, input_bytes=tar)),
            outcome(d.docker("images", "--filter", "reference=dif*", "--format", "{{.ID}}")),
        ]
        prune_label = ("--change", "LABEL dif-prune=1")
        d.docker("import", *prune_label, "-m", "dif prune", "-", input_bytes=tar)
        d.docker("import", *prune_label, "-m", "dif prune tagged", "-", "dif:p", input_bytes=tar)
        history_format = "{{.ID}}|{{.CreatedBy}}|{{.Comment}}"
        steps += [
            outcome(d.docker("history", "--format", history_format, "dif:p")),
            outcome(d.docker("image", "prune", "-f", "--filter", "label=dif-prune=1")),
            outcome(d.docker("image", "prune", "-af", "--filter", "label=dif-prune=1")),
            outcome(d.docker("image", "prune", "-f", "--filter", "bogus=1")),
        ]
        return steps

    run_both(daemons, scenario)
