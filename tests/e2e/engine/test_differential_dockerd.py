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

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.dockerd import (
    DaemonProcess,
    load_busybox_into,
    start_dockerd,
    start_dockyard_daemon,
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
    started: list[DaemonProcess] = []
    leaks: list[str] = []
    try:
        dockerd = start_dockerd(tmp_path_factory.mktemp("dockerd"))
        started.append(dockerd)
        load_busybox_into(dockerd.docker_host, docker_config=dockerd.run_dir / "dockercfg")
        started.append(start_dockyard_daemon(tmp_path_factory.mktemp("dockyard")))
        yield tuple(started)
    finally:
        logs = {d.kind: d.log_path for d in started}
        for daemon in started:
            leaks += [f"{daemon.kind}: {leak}" for leak in daemon.stop()]
    assert not leaks, f"left behind (now removed): {leaks}"
    dockyard_log = logs["dockyard"].read_text(errors="replace")
    assert "Traceback" not in dockyard_log, dockyard_log[-4000:]


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
        missing = d.docker("create", "--network", "none", "busybox-nope")
        steps.append((missing.returncode, "busybox-nope" in missing.stderr))
        steps.append(outcome(d.docker("inspect", "nosuch")))
        steps.append(outcome(d.docker("ps", "-a", "--format", PS_FORMAT)))
        return steps

    run_both(daemons, scenario)


def test_an_unknown_network_is_refused_by_both(daemons: tuple[DaemonProcess, ...]) -> None:
    # A guard for the scenarios above: a missing network name is an error on both.
    def scenario(d: DaemonProcess) -> list[Any]:
        result = d.docker("create", "--network", "nosuchnet", "busybox", "true")
        return [(result.returncode, "nosuchnet" in result.stderr)]

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
