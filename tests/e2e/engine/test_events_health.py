"""Events, healthchecks, `ps` filters and prune against `dockyard daemon`, with the real CLI.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, with the same teardown leak checks). Each test removes what it created, even when
it fails. Waits are for conditions (an inspect field, a line of `docker events`) with a
deadline, never for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.engine.containers import parse_time_ns
from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import DOCKER, DaemonProcess

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)

DEADLINE_S = 30.0
POLL_S = 0.05


@contextlib.contextmanager
def removed_after(daemon: DaemonProcess, *names: str) -> Iterator[None]:
    try:
        yield
    finally:
        for name in names:
            daemon.api("DELETE", f"/containers/{name}?force=1")


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = DEADLINE_S) -> Any:
    """Poll `check` until it returns something truthy (the daemon has no push for it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def stamp() -> str:
    """Now, in the unix-seconds form `docker events --since/--until` accept."""
    return f"{time.time():.9f}"


def inspect(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    status, body = daemon.api("GET", f"/containers/{name}/json")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def events(daemon: DaemonProcess, since: str, *args: str) -> list[str]:
    result = daemon.docker(
        "events", "--since", since, "--until", stamp(), "--format", "{{json .}}", *args
    )
    return [line for line in result.stdout.splitlines() if line]


def actions(daemon: DaemonProcess, since: str, *args: str) -> list[str]:
    return [json.loads(line)["Action"] for line in events(daemon, since, *args)]


def health(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    return inspect(daemon, name)["State"].get("Health") or {}


# -- events ------------------------------------------------------------------------------------


def test_events_since_until_lists_a_lifecycle_in_order(daemon: DaemonProcess) -> None:
    since = stamp()
    with removed_after(daemon, "ev1", "ev2"):
        daemon.docker("create", "--name", "ev1", "--label", "team=blue", "busybox", "sleep", "60")
        daemon.docker("start", "ev1")
        daemon.docker("pause", "ev1")
        daemon.docker("unpause", "ev1")
        daemon.docker("rename", "ev1", "ev2")
        daemon.docker("stop", "-t", "1", "ev2")  # sleep ignores SIGTERM: SIGKILL follows
        daemon.docker("rm", "ev2")
        lines = [json.loads(x) for x in events(daemon, since, "--filter", "label=team=blue")]
    assert [e["Action"] for e in lines] == [
        "create",
        "start",
        "pause",
        "unpause",
        "rename",
        "kill",
        "kill",
        "die",
        "stop",
        "destroy",
    ]
    first = lines[0]
    assert first["Type"] == "container" and first["scope"] == "local"
    assert first["status"] == "create" and first["id"] == first["Actor"]["ID"]
    assert first["from"] == "busybox"
    assert first["Actor"]["Attributes"] == {"image": "busybox", "name": "ev1", "team": "blue"}
    assert first["time"] == first["timeNano"] // 1_000_000_000
    by_action = {e["Action"]: e["Actor"]["Attributes"] for e in lines}
    assert by_action["rename"]["oldName"] == "/ev1"
    assert by_action["rename"]["name"] == "ev2"
    assert [e["Actor"]["Attributes"]["signal"] for e in lines if e["Action"] == "kill"] == [
        "15",
        "9",
    ]
    assert by_action["die"]["exitCode"] == "137"
    times = [e["timeNano"] for e in lines]
    assert times == sorted(times)
    # The CLI's own rendering of the same events.
    plain = daemon.docker("events", "--since", since, "--until", stamp(), "-f", "event=destroy")
    assert " container destroy " in plain.stdout and "name=ev2" in plain.stdout


def test_events_filter_by_event_and_container(daemon: DaemonProcess) -> None:
    since = stamp()
    with removed_after(daemon, "ev3", "ev4"):
        daemon.docker("run", "--name", "ev3", "busybox", "sh", "-c", "exit 3", check=False)
        daemon.docker("run", "--name", "ev4", "busybox", "true")
        lines = events(daemon, since, "--filter", "event=die", "--filter", "container=ev3")
        assert len(lines) == 1, lines
        die = json.loads(lines[0])
        assert die["Action"] == "die"
        assert die["Actor"]["Attributes"]["name"] == "ev3"
        assert die["Actor"]["Attributes"]["exitCode"] == "3"
        # `docker run` attaches before it starts, as dockerd logs it.
        assert actions(daemon, since, "--filter", "container=ev4") == [
            "create",
            "attach",
            "start",
            "die",
        ]


def test_exec_events(daemon: DaemonProcess) -> None:
    since = stamp()
    with removed_after(daemon, "ev5"):
        daemon.docker("run", "-d", "--name", "ev5", "busybox", "sleep", "60")
        daemon.docker("exec", "ev5", "sh", "-c", "exit 4", check=False)
        lines = [
            json.loads(x)
            for x in events(daemon, since, "-f", "container=ev5", "-f", "type=container")
        ]
    execs = [e for e in lines if e["Action"].startswith("exec_")]
    assert [e["Action"] for e in execs] == [
        "exec_create: sh -c exit 4",
        "exec_start: sh -c exit 4",
        "exec_die",
    ]
    assert len({e["Actor"]["Attributes"]["execID"] for e in execs}) == 1
    assert execs[-1]["Actor"]["Attributes"]["exitCode"] == "4"


def test_a_streaming_reader_sees_a_start_as_it_happens(daemon: DaemonProcess) -> None:
    reader = subprocess.Popen(
        [DOCKER, "events", "--filter", "container=ev6", "--format", "{{.Action}} {{.Actor.ID}}"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with removed_after(daemon, "ev6"):
            # Subscribed once the daemon counts a listener; only then does the start happen.
            wait_for(
                "the events listener",
                lambda: daemon.api("GET", "/info")[1]["NEventsListener"] >= 1,
            )
            cid = daemon.docker("run", "-d", "--name", "ev6", "busybox", "sleep", "60").stdout
            wanted = f"start {cid.strip()}"
            seen = _read_until(reader, wanted, DEADLINE_S)
            assert wanted in seen, f"events output: {seen!r}"
            assert seen.index("create ") < seen.index(wanted)
    finally:
        reader.kill()
        reader.wait()
        assert reader.stdout is not None and reader.stderr is not None
        reader.stdout.close()
        reader.stderr.close()
    # The daemon lets go of a subscriber whose client left.
    wait_for("no listener", lambda: daemon.api("GET", "/info")[1]["NEventsListener"] == 0)


def _read_until(proc: subprocess.Popen[bytes], wanted: str, timeout_s: float) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while wanted.encode() not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_events_rejects_since_after_until(daemon: DaemonProcess) -> None:
    status, body = daemon.api("GET", "/events?since=2000&until=1000")
    assert status == 400
    assert body == {"message": "`since` time (2000) cannot be after `until` time (1000)"}


# -- healthchecks ---------------------------------------------------------------------------------


def test_health_goes_from_starting_to_healthy(daemon: DaemonProcess) -> None:
    since = stamp()
    with removed_after(daemon, "hok"):
        daemon.docker(
            "run", "-d", "--name", "hok",
            "--health-cmd", "echo probing; test -e /etc/passwd",
            "--health-interval", "1s", "--health-retries", "2",
            "busybox", "sleep", "300",
        )  # fmt: skip
        config = inspect(daemon, "hok")["Config"]["Healthcheck"]
        assert config == {
            "Test": ["CMD-SHELL", "echo probing; test -e /etc/passwd"],
            "Interval": 1_000_000_000,
            "Retries": 2,
        }
        first = health(daemon, "hok")
        assert first["Status"] == "starting", first
        status = daemon.docker("ps", "--filter", "name=hok", "--format", "{{.Status}}").stdout
        assert status.strip().endswith("(health: starting)"), status
        wait_for("healthy", lambda: health(daemon, "hok").get("Status") == "healthy")
        h = health(daemon, "hok")
        assert h["FailingStreak"] == 0
        assert h["Log"][-1]["ExitCode"] == 0
        assert h["Log"][-1]["Output"] == "probing\n"
        fmt = daemon.docker("inspect", "--format", "{{.State.Health.Status}}", "hok")
        assert fmt.stdout.strip() == "healthy"
        status = daemon.docker("ps", "--filter", "name=hok", "--format", "{{.Status}}").stdout
        assert status.strip().endswith("(healthy)"), status
        healthy = daemon.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}")
        assert healthy.stdout.split() == ["hok"]
        lines = actions(daemon, since, "-f", "container=hok", "-f", "event=health_status")
        assert lines == ["health_status: healthy"]
        daemon.docker("stop", "-t", "1", "hok")
        assert health(daemon, "hok")["Status"] == "unhealthy"  # moby: no monitor, unhealthy


def test_health_turns_unhealthy_after_the_retries(daemon: DaemonProcess) -> None:
    since = stamp()
    with removed_after(daemon, "hbad", "hslow"):
        daemon.docker(
            "run", "-d", "--name", "hbad",
            "--health-cmd", "echo sick >&2; exit 1",
            "--health-interval", "200ms", "--health-retries", "2",
            "busybox", "sleep", "300",
        )  # fmt: skip
        daemon.docker(
            "run", "-d", "--name", "hslow",
            "--health-cmd", "sleep 10", "--health-timeout", "300ms",
            "--health-interval", "200ms", "--health-retries", "1",
            "busybox", "sleep", "300",
        )  # fmt: skip
        wait_for("unhealthy", lambda: health(daemon, "hbad").get("Status") == "unhealthy")
        h = health(daemon, "hbad")
        assert h["FailingStreak"] >= 2
        assert {e["ExitCode"] for e in h["Log"]} == {1}
        assert h["Log"][-1]["Output"] == "sick\n"
        ps = daemon.docker("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}")
        assert "hbad" in ps.stdout.split()
        lines = actions(daemon, since, "-f", "container=hbad", "-f", "event=health_status")
        assert lines == ["health_status: unhealthy"]

        wait_for("a timed-out probe", lambda: health(daemon, "hslow").get("Status") == "unhealthy")
        log = health(daemon, "hslow")["Log"]
        assert log[0]["ExitCode"] == -1
        assert log[0]["Output"] == "Health check exceeded timeout (300ms)"


def test_no_healthcheck_and_none_filter(daemon: DaemonProcess) -> None:
    with removed_after(daemon, "hnone"):
        daemon.docker(
            "run", "-d", "--name", "hnone", "--no-healthcheck", "busybox", "sleep", "300"
        )  # fmt: skip
        state = inspect(daemon, "hnone")["State"]
        assert "Health" not in state
        assert inspect(daemon, "hnone")["Config"]["Healthcheck"] == {"Test": ["NONE"]}
        listed = daemon.docker("ps", "--filter", "health=none", "--format", "{{.Names}}")
        assert "hnone" in listed.stdout.split()


# -- ps filters and prune ------------------------------------------------------------------------


def test_ps_filters(daemon: DaemonProcess) -> None:
    names = ("pf1", "pf2", "pf3")
    with removed_after(daemon, *names):
        daemon.docker(
            "run",
            "--name",
            "pf1",
            "--label",
            "set=pf",
            "busybox",
            "sh",
            "-c",
            "exit 3",
            check=False,
        )
        daemon.docker("run", "--name", "pf2", "--label", "set=pf", "busybox", "true")
        daemon.docker("run", "-d", "--name", "pf3", "--label", "set=pf", "busybox", "sleep", "60")

        def ps(*args: str) -> list[str]:
            out = daemon.docker("ps", "--format", "{{.Names}}", *args).stdout
            return out.split()

        assert ps("-a", "--filter", "exited=3") == ["pf1"]
        assert ps("-a", "--filter", "exited=0", "--filter", "label=set=pf") == ["pf2"]
        assert ps("--filter", "label=set=pf") == ["pf3"]
        assert ps("-a", "--filter", "ancestor=busybox", "--filter", "label=set") == [
            "pf3",
            "pf2",
            "pf1",
        ]
        assert ps("-a", "--filter", "ancestor=busybox:latest", "-f", "name=pf3") == ["pf3"]
        assert ps("-a", "--filter", "ancestor=nosuchimage") == []
        assert ps("-a", "--filter", "before=pf3", "--filter", "label=set") == ["pf2", "pf1"]
        assert ps("-a", "--filter", "since=pf1", "--filter", "label=set") == ["pf3", "pf2"]
        assert ps("-a", "--filter", "status=exited", "--filter", "name=^pf") == ["pf2", "pf1"]
        assert ps("-a", "-n", "2", "--filter", "label=set=pf") == ["pf3", "pf2"]
        assert ps("-a", "-f", "volume=v", "-f", "label=set") == []
        quiet = daemon.docker("ps", "-q", "--filter", "name=pf3").stdout.split()
        assert len(quiet) == 1 and len(quiet[0]) == 12

        bad = daemon.docker("ps", "--filter", "bogus=1", check=False)
        assert bad.returncode == 1
        assert "Error response from daemon: Invalid filter 'bogus'" in bad.stderr
        bad = daemon.docker("ps", "--filter", "health=great", check=False)
        assert "Unrecognised filter value for health: great" in bad.stderr
        missing = daemon.docker("ps", "--filter", "before=nosuch", check=False)
        assert "No such container: nosuch" in missing.stderr


def test_container_prune(daemon: DaemonProcess) -> None:
    names = ("pr1", "pr2", "pr3", "pr4")
    since = stamp()
    with removed_after(daemon, *names):
        ids = {}
        for name in ("pr1", "pr2"):
            daemon.docker("run", "--name", name, "--label", "prune=yes", "busybox", "true")
        daemon.docker("create", "--name", "pr3", "--label", "prune=no", "busybox", "true")
        daemon.docker(
            "run", "-d", "--name", "pr4", "--label", "prune=yes", "busybox", "sleep", "60"
        )
        for name in names:
            ids[name] = inspect(daemon, name)["Id"]

        pruned = daemon.docker("container", "prune", "-f", "--filter", "label=prune=yes")
        lines = pruned.stdout.splitlines()
        assert lines[0] == "Deleted Containers:"
        assert sorted(lines[1:3]) == sorted([ids["pr1"], ids["pr2"]])
        assert "Total reclaimed space: 0B" in pruned.stdout
        for name, kept in (("pr1", False), ("pr2", False), ("pr3", True), ("pr4", True)):
            status, _ = daemon.api("GET", f"/containers/{name}/json")
            assert (status == 200) == kept, name

        status, body = daemon.api(
            "POST", '/containers/prune?filters={"until":["1h"],"label":["prune"]}'
        )
        assert (status, body) == (200, {"ContainersDeleted": None, "SpaceReclaimed": 0})
        status, body = daemon.api("POST", '/containers/prune?filters={"bogus":["1"]}')
        assert (status, body) == (400, {"message": "Invalid filter 'bogus'"})
        prune_events = [json.loads(x) for x in events(daemon, since, "-f", "event=prune")]
        assert prune_events and prune_events[0]["Actor"]["Attributes"] == {"reclaimed": "0"}
        destroyed = actions(daemon, since, "-f", "event=destroy", "-f", "label=prune=yes")
        assert destroyed == ["destroy", "destroy"]


def test_an_images_healthcheck_is_inherited_and_the_request_completes_it(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    # An image with a HEALTHCHECK: the host's static busybox, imported with --change.
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(shutil.which("busybox") or "/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "sleep", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    change = "HEALTHCHECK --interval=200ms --retries=1 CMD exit 1"
    daemon.docker("import", "--change", change, str(rootfs), "hc-image:1")
    try:
        with removed_after(daemon, "hinherit", "hfix"):
            daemon.docker("run", "-d", "--name", "hinherit", "hc-image:1", "sleep", "300")
            assert inspect(daemon, "hinherit")["Config"]["Healthcheck"] == {
                "Test": ["CMD-SHELL", "exit 1"],
                "Interval": 200_000_000,
                "Retries": 1,
            }
            wait_for("unhealthy", lambda: health(daemon, "hinherit").get("Status") == "unhealthy")
            # The request's command wins; the image's interval still applies.
            daemon.docker(
                "run", "-d", "--name", "hfix", "--health-cmd", "true",
                "hc-image:1", "sleep", "300",
            )  # fmt: skip
            config = inspect(daemon, "hfix")["Config"]["Healthcheck"]
            assert config["Test"] == ["CMD-SHELL", "true"]
            assert config["Interval"] == 200_000_000
            wait_for("healthy", lambda: health(daemon, "hfix").get("Status") == "healthy")
    finally:
        daemon.docker("rmi", "hc-image:1", check=False)


def test_probing_resumes_after_a_daemon_restart(daemon: DaemonProcess) -> None:
    with removed_after(daemon, "hlive"):
        daemon.docker(
            "run", "-d", "--name", "hlive", "--health-cmd", "true",
            "--health-interval", "200ms", "busybox", "sleep", "300",
        )  # fmt: skip
        wait_for("healthy", lambda: health(daemon, "hlive").get("Status") == "healthy")
        try:
            daemon.stop()
        finally:
            daemon.start()
        last_end = parse_time_ns(health(daemon, "hlive")["Log"][-1]["End"])
        wait_for(
            "a probe by the restarted daemon",
            lambda: (
                (h := health(daemon, "hlive"))["Status"] == "healthy"
                and parse_time_ns(h["Log"][-1]["End"]) > last_end
            ),
        )
        assert inspect(daemon, "hlive")["State"]["Running"] is True
