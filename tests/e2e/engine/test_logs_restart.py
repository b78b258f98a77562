"""`docker logs --since/--until` and `docker restart` against `dockyard daemon`.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, with the same teardown leak checks). The time bounds are taken from the log's own
timestamps (`docker logs -t`), so no test waits on the wall clock.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import DaemonProcess

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)
names = test_daemon_cli.names  # container names force-removed after each test


def _stamped_lines(daemon: DaemonProcess, name: str) -> list[tuple[str, str]]:
    out = daemon.docker("logs", "-t", name).stdout
    return [tuple(line.split(" ", 1)) for line in out.splitlines()]  # type: ignore[misc]


def test_logs_since_and_until_bound_the_lines_by_their_timestamps(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("logwin")
    daemon.docker(
        # The pause is the workload's, not the test's: lines the shim reads in one go share
        # a timestamp, and this test needs four distinct ones.
        "run",
        "--name",
        "logwin",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo l$i; usleep 20000; done",
    )
    stamped = _stamped_lines(daemon, "logwin")
    assert [text for _, text in stamped] == ["l1", "l2", "l3", "l4"]
    second, third = stamped[1][0], stamped[2][0]
    assert second < third, "the test needs distinct timestamps"

    since = daemon.docker("logs", "--since", second, "logwin").stdout.splitlines()
    assert since == ["l2", "l3", "l4"]
    until = daemon.docker("logs", "--until", third, "logwin").stdout.splitlines()
    assert until == ["l1", "l2", "l3"]
    both = daemon.docker("logs", "--since", second, "--until", third, "logwin").stdout
    assert both.splitlines() == ["l2", "l3"]
    # As moby's json-file reader: the tail is taken first, then `since` filters it.
    tail = daemon.docker("logs", "--tail", "3", "--since", third, "logwin").stdout
    assert tail.splitlines() == ["l3", "l4"]
    # A bound after every line leaves nothing; --follow with a past --until ends at once.
    assert daemon.docker("logs", "--since", "2999-01-01T00:00:00Z", "logwin").stdout == ""
    follow = daemon.docker("logs", "-f", "--until", second, "logwin").stdout
    assert follow.splitlines() == ["l1", "l2"]


def test_logs_follow_with_a_past_until_returns_for_a_running_container(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("logfollow")
    daemon.docker(
        "run", "-d", "--name", "logfollow", "busybox", "sh", "-c", "echo up; exec sleep 1000"
    )
    # The CLI returns (the daemon ended the stream) although the container still runs.
    result = daemon.docker("logs", "-f", "--until", "2000-01-01T00:00:00Z", "logfollow")
    assert result.stdout == ""


def test_logs_with_a_malformed_since_is_refused_in_mobys_words(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("logbad")
    daemon.docker("create", "--name", "logbad", "busybox", "true")
    status, body = daemon.api("GET", "/containers/logbad/logs?stdout=1&since=abc")
    assert status == 500
    assert body == {"message": 'strconv.ParseInt: parsing "abc": invalid syntax'}


def _inspect(daemon: DaemonProcess, name: str) -> dict[str, object]:
    value = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert isinstance(value, dict)
    return value


def test_restart_stops_and_starts_a_running_container(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("rs1")
    daemon.docker("run", "-d", "--name", "rs1", "busybox", "sleep", "1000")
    before = _inspect(daemon, "rs1")["State"]
    result = daemon.docker("restart", "-t", "1", "rs1")
    assert result.stdout.strip() == "rs1"
    after = _inspect(daemon, "rs1")
    state = after["State"]
    assert isinstance(state, dict) and isinstance(before, dict)
    assert state["Running"] is True
    assert state["Pid"] != before["Pid"]
    assert state["StartedAt"] > before["StartedAt"]
    assert state["ExitCode"] == 0  # a start clears the stop's exit code
    assert after["RestartCount"] == 0  # only policy restarts count (moby)


def test_restart_starts_a_stopped_container_and_names_a_missing_one(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("rs2")
    daemon.docker("run", "--name", "rs2", "busybox", "sh", "-c", "echo ran")
    daemon.docker("restart", "rs2")
    daemon.docker("wait", "rs2")
    assert daemon.docker("logs", "rs2").stdout.splitlines() == ["ran", "ran"]

    missing = daemon.docker("restart", "no-such-rs", check=False)
    assert missing.returncode == 1
    assert "No such container: no-such-rs" in missing.stderr


def test_a_container_starts_again_the_moment_it_has_exited(daemon: DaemonProcess) -> None:
    """docker-compose 1.29.2's `run` starts a container again as soon as it has exited; the
    start must wait for the exit's teardown (network, unmount), not lose its rootfs to it
    (it did: runc 'exec: "sh": executable file not found' in 6 of 10 tries)."""
    status, created = daemon.api(
        "POST", "/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]}
    )
    assert status == 201, created
    cid = created["Id"]
    try:
        for attempt in range(10):
            status, body = daemon.api("POST", f"/containers/{cid}/start")
            assert status == 204, f"start {attempt}: {status} {body!r}"
            status, waited = daemon.api("POST", f"/containers/{cid}/wait")
            assert (status, waited["StatusCode"]) == (200, 3), f"wait {attempt}: {waited}"
    finally:
        daemon.api("DELETE", f"/containers/{cid}?force=1")
