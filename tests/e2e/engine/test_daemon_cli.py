"""`dockyard daemon` driven by the real docker CLI over a unix socket.

One daemon per module (`python -m dockyard daemon`, a real subprocess) on a private data
root, exec root and socket under a temp dir, with busybox bootstrapped offline. At teardown
every container is force-removed through the API, the daemon is stopped by PID, and the
module fails if a shim, a runc container, a mount under the temp dir or the daemon itself
is left behind (after removing them, so nothing outlives the run).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dockyard.engine.runtime.shim import SHIM_PID_FILE, read_pid_file, shim_running
from tests.support.dockerd import remove_runc_containers

pytestmark = pytest.mark.e2e

DOCKER = "/usr/local/bin/docker"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
COMMAND_TIMEOUT_S = 60.0
DOCKYARD_CLI = (sys.executable, "-m", "dockyard")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PING_RETRY_S = 0.05


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=COMMAND_TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(COMMAND_TIMEOUT_S)
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DaemonProcess:
    """A `dockyard daemon` subprocess and the docker CLI pointed at it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "d.sock"
        self.data_root = base / "root"
        self.exec_root = base / "run"
        self.log_path = base / "daemon.log"
        self.bridge = f"dyt{secrets.token_hex(3)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base),
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_CONFIG": str(base / "dockercfg"),
        }

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dockyard",
                    "daemon",
                    "-H",
                    f"unix://{self.sock}",
                    "--data-root",
                    str(self.data_root),
                    "--exec-root",
                    str(self.exec_root),
                    "--label",
                    "purpose=e2e",
                    # Its own default bridge (and so its own iptables chains): test daemons
                    # may run side by side.
                    "--bridge",
                    self.bridge,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ping():
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"daemon did not answer /_ping in {START_TIMEOUT_S}s:\n{self.log()}")
            time.sleep(PING_RETRY_S)  # polling the socket is the readiness condition

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"daemon ignored SIGTERM:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def ping(self) -> bool:
        try:
            status, _ = self.api("GET", "/_ping")
        except OSError:
            return False
        return status == 200

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.sock)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type") or ""
            return response.status, json.loads(raw) if "json" in kind and raw else raw
        finally:
            conn.close()

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n--- daemon ---\n{self.log()}"
            )
        return result

    # -- cleanup and leak checks ---------------------------------------------------------

    def remove_all_containers(self) -> None:
        if self.proc is None or not self.ping():
            return
        status, items = self.api("GET", "/containers/json?all=1")
        if status == 200:
            for item in items:
                self.api("DELETE", f"/containers/{item['Id']}?force=1")

    def leaks(self) -> list[str]:
        """Whatever is left under `base`; each leak is removed as it is found."""
        found: list[str] = []
        shims = self.exec_root / "shims"
        for state_dir in sorted(shims.iterdir()) if shims.exists() else []:
            pid = read_pid_file(state_dir / SHIM_PID_FILE)
            if pid is not None and shim_running(state_dir):
                found.append(f"shim {pid} ({state_dir.name})")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        found += remove_runc_containers(self.exec_root / "runc")
        for mount_point in self.mounts():
            found.append(f"mount {mount_point}")
            subprocess.run(["umount", "-R", mount_point], capture_output=True, check=False)
        return found

    def mounts(self) -> list[str]:
        prefix = str(self.base.resolve()) + "/"
        with open("/proc/self/mountinfo") as info:
            points = [line.split()[4] for line in info]
        return [p for p in points if p.startswith(prefix)]


D = TypeVar("D", bound=DaemonProcess)


@contextlib.contextmanager
def running_daemon(
    prefix: str, factory: Callable[[Path], D], *, prune: bool = False
) -> Iterator[D]:
    """A daemon with busybox bootstrapped, on a temp base named `prefix`; at the end its
    containers are force-removed (with `prune`, `docker system prune -a --volumes` too), it
    is stopped by PID, and the run fails if a shim, runc container or mount was left or the
    daemon logged a traceback."""
    # A short path: the socket's path must fit in sun_path (108 bytes).
    base = Path(tempfile.mkdtemp(prefix=prefix))
    d = factory(base)
    try:
        subprocess.run(
            [*DOCKYARD_CLI, "image", "bootstrap", "busybox", "--data-root", str(d.data_root)],
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        d.start()
        yield d
    finally:
        try:
            d.remove_all_containers()
            if prune and d.proc is not None:
                d.docker("system", "prune", "-a", "--volumes", "-f", check=False)
                d.docker("volume", "prune", "-a", "-f", check=False)
        finally:
            d.stop()
            leaks = d.leaks()
            log = d.log_path.read_text(errors="replace") if d.log_path.exists() else ""
            shutil.rmtree(base, ignore_errors=True)
    assert not leaks, f"left behind: {leaks}"
    assert "Traceback" not in log, f"the daemon logged an error:\n{log[-4000:]}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon("dy-e2e-", DaemonProcess) as d:
        yield d


def test_version_info_and_images(daemon: DaemonProcess) -> None:
    mode = daemon.sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)

    version = daemon.docker("version")
    assert "Server: dockyard" in version.stdout
    assert "API version:      1.44 (minimum version 1.24)" in version.stdout

    info = daemon.docker("info", "--format", "{{json .}}")
    fields = json.loads(info.stdout)
    assert fields["DefaultRuntime"] == "runc"
    assert fields["CgroupDriver"] == "cgroupfs"
    assert fields["Driver"] == "overlayfs"
    assert fields["SecurityOptions"] == ["name=seccomp,profile=builtin"]
    assert fields["Labels"] == ["purpose=e2e"]
    assert fields["Images"] == 1
    assert fields["NCPU"] == os.cpu_count()
    assert fields["KernelVersion"] == os.uname().release

    images = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert images.stdout.split() == ["busybox:latest"]
    inspect = json.loads(daemon.docker("image", "inspect", "busybox").stdout)[0]
    assert inspect["RepoTags"] == ["busybox:latest"]
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["RootFS"]["Type"] == "layers"


def test_create_start_wait_logs_inspect_rm(daemon: DaemonProcess) -> None:
    cid = daemon.docker("create", "--name", "c1", "busybox", "echo", "hello").stdout.strip()
    assert len(cid) == 64
    assert daemon.docker("start", "c1").stdout.strip() == "c1"
    assert daemon.docker("wait", "c1").stdout.strip() == "0"
    logs = daemon.docker("logs", "c1")
    assert (logs.stdout, logs.stderr) == ("hello\n", "")

    ps = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    line = next(row for row in ps.stdout.splitlines() if row.startswith("c1 "))
    assert line.startswith("c1 Exited (0) ") and line.endswith(" ago"), line
    assert "c1" not in daemon.docker("ps").stdout, "plain ps lists running containers only"

    state = json.loads(daemon.docker("inspect", "c1").stdout)[0]
    assert state["Id"] == cid and state["Name"] == "/c1"
    assert (state["Path"], state["Args"]) == ("echo", ["hello"])
    assert state["State"]["Status"] == "exited"
    assert state["State"]["ExitCode"] == 0
    assert state["State"]["FinishedAt"] >= state["State"]["StartedAt"] > state["Created"]
    assert state["Config"]["Hostname"] == cid[:12]

    assert daemon.docker("rm", "c1").stdout.strip() == "c1"
    gone = daemon.docker("inspect", "c1", check=False)
    assert gone.returncode == 1 and "No such object: c1" in gone.stderr


def test_run_detached_then_stop_kills_after_the_grace_period(daemon: DaemonProcess) -> None:
    daemon.docker("run", "-d", "--name", "c2", "busybox", "sleep", "1000")
    ps = daemon.docker("ps", "--format", "{{.Names}} {{.Status}}")
    assert any(row.startswith("c2 Up ") for row in ps.stdout.splitlines()), ps.stdout
    assert json.loads(daemon.docker("inspect", "c2").stdout)[0]["State"]["Pid"] > 0

    conflict = daemon.docker("rm", "c2", check=False)
    assert conflict.returncode == 1
    assert "You cannot remove a running container" in conflict.stderr

    # sleep as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: SIGKILL, 137.
    daemon.docker("stop", "-t", "1", "c2")
    assert daemon.docker("wait", "c2").stdout.strip() == "137"
    ps_all = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    assert any(row.startswith("c2 Exited (137) ") for row in ps_all.stdout.splitlines())
    daemon.docker("rm", "c2")


def test_kill_with_a_signal_and_force_remove(daemon: DaemonProcess) -> None:
    daemon.docker(
        "run", "-d", "--name", "k1", "busybox", "sh", "-c", "trap 'exit 7' USR1; sleep 1000 & wait"
    )
    daemon.docker("kill", "--signal", "USR1", "k1")
    assert daemon.docker("wait", "k1").stdout.strip() == "7"
    not_running = daemon.docker("kill", "k1", check=False)
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    daemon.docker("start", "k1")
    daemon.docker("rm", "-f", "k1")
    assert "k1" not in daemon.docker("ps", "-a").stdout


def test_errors_reach_the_cli_in_dockers_words(daemon: DaemonProcess) -> None:
    nosuch = daemon.docker("start", "nosuch", check=False)
    assert nosuch.returncode == 1
    assert "Error response from daemon: No such container: nosuch" in nosuch.stderr

    # A registry on a closed loopback port: the CLI's create, 404, pull, and the dial error,
    # all without leaving the machine.
    nope = "127.0.0.1:1/busybox-nope"
    status, body = daemon.api("POST", "/v1.44/containers/create", {"Image": nope})
    assert (status, body) == (404, {"message": f"No such image: {nope}:latest"})
    missing = daemon.docker("create", nope, check=False)
    assert missing.returncode != 0
    assert f"Unable to find image '{nope}:latest' locally" in missing.stderr
    assert 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused' in (
        missing.stderr
    ), missing.stderr

    status, body = daemon.api("GET", "/v1.99/version")
    assert status == 400
    assert body == {
        "message": "client version 1.99 is too new. Maximum supported API version is 1.44"
    }

    daemon.docker("create", "--name", "c3", "busybox", "nope")
    clash = daemon.docker("create", "--name", "c3", "busybox", "true", check=False)
    assert clash.returncode != 0
    assert 'Conflict. The container name "/c3" is already in use by container' in clash.stderr
    failed = daemon.docker("start", "c3", check=False)
    assert failed.returncode == 1
    assert 'exec: "nope": executable file not found in $PATH' in failed.stderr
    assert "failed to create shim task: OCI runtime create failed" in failed.stderr
    state = json.loads(daemon.docker("inspect", "c3").stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("created", 127)
    assert daemon.ping(), "the daemon is still healthy"
    assert daemon.docker("run", "-d", "--name", "c3ok", "busybox", "echo", "fine").returncode == 0
    assert daemon.docker("wait", "c3ok").stdout.strip() == "0"
    daemon.docker("rm", "c3", "c3ok")
    assert daemon.mounts() == [], "no rootfs stays mounted after an exit or a failed start"


def test_a_restarted_daemon_finds_its_containers(daemon: DaemonProcess) -> None:
    daemon.docker("run", "-d", "--name", "r1", "busybox", "sleep", "1000")
    daemon.docker("run", "-d", "--name", "r2", "busybox", "echo", "before")
    assert daemon.docker("wait", "r2").stdout.strip() == "0"
    daemon.stop()
    daemon.start()
    ps = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert any(row.startswith("r1 Up ") for row in ps), ps
    assert any(row.startswith("r2 Exited (0) ") for row in ps), ps
    assert daemon.docker("logs", "r2").stdout == "before\n"
    daemon.docker("kill", "r1")
    assert daemon.docker("wait", "r1").stdout.strip() == "137"
    daemon.docker("rm", "r1", "r2")


def test_a_non_loopback_tcp_host_is_refused_without_tls(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "daemon",
            "-H",
            "tcp://0.0.0.0:2375",
            "--data-root",
            str(tmp_path / "root"),
            "--exec-root",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to listen on tcp://0.0.0.0:2375 without --tlsverify" in result.stderr
    assert not (tmp_path / "root").exists(), "refused before touching anything"


def test_logs_follow_streams_until_the_container_exits(daemon: DaemonProcess) -> None:
    daemon.docker(
        "run", "-d", "--name", "f1", "busybox", "sh", "-c", "echo one; sleep 1; echo two >&2"
    )
    followed = daemon.docker("logs", "-f", "f1")
    assert (followed.stdout, followed.stderr) == ("one\n", "two\n")
    stamped = daemon.docker("logs", "--timestamps", "--tail", "1", "f1")
    assert stamped.stdout == "" and stamped.stderr.endswith("Z two\n"), stamped
    daemon.docker("rm", "f1")


@pytest.fixture
def running(daemon: DaemonProcess) -> Iterator[str]:
    """A running busybox container for exec tests; force-removed afterwards."""
    name = f"ex-{os.getpid()}-{time.monotonic_ns()}"
    daemon.docker("run", "-d", "--name", name, "--hostname", "exechost", "busybox", "sleep", "1000")
    try:
        yield name
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_runs_commands_in_the_container(daemon: DaemonProcess, running: str) -> None:
    c = running
    assert daemon.docker("exec", c, "echo", "hi").stdout == "hi\n"
    assert daemon.docker("exec", "-e", "X=1", c, "sh", "-c", "echo $X").stdout == "1\n"
    assert daemon.docker("exec", "-w", "/tmp", c, "pwd").stdout == "/tmp\n"
    assert daemon.docker("exec", "-u", "65534", c, "id", "-u").stdout == "65534\n"
    assert daemon.docker("exec", "-u", "nobody", c, "id", "-u").stdout == "65534\n"
    both = daemon.docker("exec", c, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (both.returncode, both.stdout, both.stderr) == (7, "out\n", "err\n")
    # The container's environment, then the exec's.
    env = daemon.docker("exec", "-e", "HOSTNAME=mine", c, "env").stdout.split()
    assert "HOSTNAME=mine" in env and any(e.startswith("PATH=") for e in env)
    piped = subprocess.run(
        [DOCKER, "exec", "-i", c, "cat"],
        input="in\n",
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert (piped.returncode, piped.stdout) == (0, "in\n"), piped.stderr


def test_exec_joins_the_containers_namespaces(daemon: DaemonProcess, running: str) -> None:
    c = running
    assert daemon.docker("exec", c, "hostname").stdout == "exechost\n"
    ps = daemon.docker("exec", c, "ps", "-o", "pid,args").stdout.splitlines()
    assert any(line.split() == ["1", "sleep", "1000"] for line in ps), ps
    init_pid = json.loads(daemon.docker("inspect", c).stdout)[0]["State"]["Pid"]
    cgroup = Path(f"/proc/{init_pid}/cgroup").read_text()
    assert daemon.docker("exec", c, "cat", "/proc/self/cgroup").stdout == cgroup
    # Capabilities are the container's; --privileged gets them all.
    plain = daemon.docker("exec", c, "grep", "CapEff", "/proc/self/status").stdout
    assert plain.split() == ["CapEff:", "00000000a80425fb"], plain
    full = daemon.docker("exec", "--privileged", c, "grep", "CapEff", "/proc/self/status")
    assert full.stdout.split()[1] != "00000000a80425fb"


def test_exec_detached_and_inspect(daemon: DaemonProcess, running: str) -> None:
    c = running
    assert daemon.docker("exec", "-d", c, "touch", "/tmp/x").stdout == ""
    # The detached touch may still be running: wait for its file inside the container.
    waited = daemon.docker(
        "exec", c, "timeout", "20", "sh", "-c", "until [ -e /tmp/x ]; do usleep 10000; done"
    )
    assert waited.returncode == 0
    assert daemon.docker("exec", c, "ls", "/tmp/x").stdout == "/tmp/x\n"

    status, created = daemon.api(
        "POST", f"/containers/{c}/exec", {"Cmd": ["sh", "-c", "exit 3"], "AttachStdout": True}
    )
    assert status == 201, created
    exec_id = created["Id"]
    status, before = daemon.api("GET", f"/exec/{exec_id}/json")
    assert status == 200 and before["Running"] is False and before["ExitCode"] is None
    status, _ = daemon.api("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
    assert status == 200
    status, after = daemon.api("GET", f"/exec/{exec_id}/json")
    assert (after["ExitCode"], after["Running"], after["ContainerID"]) == (
        3,
        False,
        json.loads(daemon.docker("inspect", c).stdout)[0]["Id"],
    )
    assert after["ProcessConfig"] == {
        "tty": False,
        "entrypoint": "sh",
        "arguments": ["-c", "exit 3"],
        "privileged": False,
    }
    status, again = daemon.api("POST", f"/exec/{exec_id}/start", {"Detach": False})
    assert status == 409, again


def test_exec_errors_in_dockers_words(daemon: DaemonProcess, running: str) -> None:
    c = running
    missing = daemon.docker("exec", c, "nosuchcmd", check=False)
    # dockerd 20.10 says 126 for every exec that could not start (test_differential_dockerd).
    assert (missing.returncode, missing.stderr) == (126, ""), missing
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in missing.stdout
    denied = daemon.docker("exec", c, "/etc/passwd", check=False)
    assert denied.returncode == 126, denied
    nouser = daemon.docker("exec", "-u", "nosuchuser", c, "true", check=False)
    assert nouser.returncode == 126
    assert "unable to find user nosuchuser" in nouser.stdout
    nosuch = daemon.docker("exec", "nosuch-container", "true", check=False)
    assert nosuch.returncode == 1 and "No such container: nosuch-container" in nosuch.stderr
    status, body = daemon.api("GET", "/exec/nosuch/json")
    assert (status, body) == (404, {"message": "No such exec instance: nosuch"})

    daemon.docker("stop", "-t", "0", c)
    cid = json.loads(daemon.docker("inspect", c).stdout)[0]["Id"]
    stopped = daemon.docker("exec", c, "true", check=False)
    assert stopped.returncode == 1
    assert f"Container {cid} is not running" in stopped.stderr


def test_exec_with_a_tty(daemon: DaemonProcess, running: str) -> None:
    c = running
    # -t without -i: the CLI needs no terminal of its own; the pty turns \n into \r\n.
    tty = subprocess.run(
        [DOCKER, "exec", "-t", c, "sh", "-c", "tty; echo $TERM; exit 5"],
        env=daemon.env,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert (tty.returncode, tty.stdout) == (5, b"/dev/pts/0\r\nxterm\r\n"), tty
    # `script` gives the CLI a terminal, so -it resizes and forwards input.
    piped = subprocess.run(
        ["script", "-qec", f"{DOCKER} exec -it {c} sh -c 'read x; echo got-$x'", "/dev/null"],
        input="abc\n",
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert piped.returncode == 0 and "got-abc" in piped.stdout, piped


def test_pause_and_unpause(daemon: DaemonProcess, running: str) -> None:
    c = running
    cid = json.loads(daemon.docker("inspect", c).stdout)[0]["Id"]
    daemon.docker("pause", c)
    state = json.loads(daemon.docker("inspect", c).stdout)[0]["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    status = daemon.docker("ps", "--filter", f"name={c}", "--format", "{{.Status}}").stdout
    assert status.endswith("(Paused)\n"), status
    listed = daemon.docker("ps", "-q", "--no-trunc", "--filter", "status=paused").stdout
    assert cid in listed.split()
    # The frozen cgroup: runc says so.
    runc_state = subprocess.run(
        [RUNC, "--root", str(daemon.exec_root / "runc"), "state", cid],
        capture_output=True,
        check=True,
    )
    assert json.loads(runc_state.stdout)["status"] == "paused"
    again = daemon.docker("pause", c, check=False)
    assert again.returncode == 1 and f"Container {cid} is already paused" in again.stderr
    exec_paused = daemon.docker("exec", c, "true", check=False)
    assert exec_paused.returncode == 1 and "is paused, unpause the container" in exec_paused.stderr
    daemon.docker("unpause", c)
    state = json.loads(daemon.docker("inspect", c).stdout)[0]["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    assert daemon.docker("exec", c, "echo", "thawed").stdout == "thawed\n"
    not_paused = daemon.docker("unpause", c, check=False)
    assert not_paused.returncode == 1 and f"Container {cid} is not paused" in not_paused.stderr


def test_stop_and_kill_a_paused_container(daemon: DaemonProcess) -> None:
    names = [f"pz-{os.getpid()}-{i}" for i in range(2)]
    try:
        for name in names:
            daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
            daemon.docker("pause", name)
        # sleep as pid 1 ignores SIGTERM: stop thaws it, then kills it after the grace time.
        daemon.docker("stop", "-t", "1", names[0])
        daemon.docker("kill", names[1])
        for name in names:
            state = json.loads(daemon.docker("inspect", name).stdout)[0]["State"]
            assert (state["Status"], state["Paused"], state["ExitCode"]) == ("exited", False, 137)
    finally:
        for name in names:
            daemon.docker("rm", "-f", name, check=False)


POLL_S = 0.05


def await_state(daemon: DaemonProcess, name: str, want: dict[str, Any]) -> dict[str, Any]:
    """Poll inspect until every `want` field (State fields and RestartCount) matches."""
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while True:
        record = json.loads(daemon.docker("inspect", name).stdout)[0]
        seen = {**record["State"], "RestartCount": record["RestartCount"]}
        if all(seen.get(k) == v for k, v in want.items()):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never reached {want}: {seen}\n{daemon.log()}")
        time.sleep(POLL_S)  # polling the API is the condition's only signal


@pytest.fixture
def names(daemon: DaemonProcess) -> Iterator[list[str]]:
    """Container names for a test, each force-removed afterwards."""
    taken: list[str] = []
    try:
        yield taken
    finally:
        for name in taken:
            daemon.docker("rm", "-f", name, check=False)


def test_on_failure_restarts_until_the_maximum(daemon: DaemonProcess, names: list[str]) -> None:
    names.append("rp-onfail")
    daemon.docker(
        "run", "-d", "--name", "rp-onfail", "--restart", "on-failure:2",
        "busybox", "sh", "-c", "exit 3",
    )  # fmt: skip
    state = await_state(
        daemon, "rp-onfail", {"Status": "exited", "Restarting": False, "RestartCount": 2}
    )
    assert state["ExitCode"] == 3
    # The CLI refuses --rm with --restart itself; the API refuses it too.
    body = {
        "Image": "busybox",
        "Cmd": ["true"],
        "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
    }
    status, reply = daemon.api("POST", "/containers/create", body)
    assert (status, reply) == (
        400,
        {"message": "can't create 'AutoRemove' container with restart policy"},
    )
    body["HostConfig"] = {"RestartPolicy": {"Name": "sometimes"}}
    status, reply = daemon.api("POST", "/containers/create", body)
    assert (status, reply) == (400, {"message": "invalid restart policy 'sometimes'"})


def test_always_restarts_until_stopped_and_start_resets_the_count(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("rp-always")
    daemon.docker(
        "run", "-d", "--name", "rp-always", "--restart", "always", "busybox", "sh", "-c", "exit 0"
    )
    await_state(daemon, "rp-always", {"RestartCount": 3})
    daemon.docker("stop", "-t", "1", "rp-always")
    state = await_state(daemon, "rp-always", {"Status": "exited"})
    assert (state["Restarting"], state["Running"]) == (False, False)
    daemon.docker("rm", "rp-always")

    # `docker kill` (SIGKILL) cancels restarting too, as dockerd 20.10 does; a start resets
    # the count.
    names.append("rp-kill")
    daemon.docker(
        "run", "-d", "--name", "rp-kill", "--restart", "on-failure",
        "busybox", "sh", "-c", "exit 1",
    )  # fmt: skip
    await_state(daemon, "rp-kill", {"RestartCount": 2})
    daemon.docker("stop", "-t", "0", "rp-kill")
    daemon.docker("rm", "rp-kill")
    daemon.docker(
        "run", "-d", "--name", "rp-kill", "--restart", "always", "busybox", "sleep", "1000"
    )
    daemon.docker("kill", "rp-kill")
    state = await_state(daemon, "rp-kill", {"Status": "exited"})
    assert (state["Restarting"], state["RestartCount"]) == (False, 0)
    # And so does it for `unless-stopped`.
    names.append("rp-unless")
    daemon.docker(
        "run",
        "-d",
        "--name",
        "rp-unless",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "1000",
    )
    daemon.docker("kill", "rp-unless")
    state = await_state(daemon, "rp-unless", {"Status": "exited"})
    assert (state["Restarting"], state["ExitCode"]) == (False, 137)


def test_a_daemon_start_restarts_always_but_not_a_stopped_unless_stopped(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names += ["rp-d-always", "rp-d-unless"]
    for name, policy in (("rp-d-always", "always"), ("rp-d-unless", "unless-stopped")):
        daemon.docker("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "1000")
        daemon.docker("stop", "-t", "0", name)
    daemon.stop()
    daemon.start()
    await_state(daemon, "rp-d-always", {"Status": "running"})
    assert daemon.docker("exec", "rp-d-always", "echo", "up").stdout == "up\n"
    state = await_state(daemon, "rp-d-unless", {"Status": "exited"})
    assert state["Restarting"] is False


def test_rename_and_top(daemon: DaemonProcess, running: str, names: list[str]) -> None:
    c = running
    cid = json.loads(daemon.docker("inspect", c).stdout)[0]["Id"]
    init_pid = json.loads(daemon.docker("inspect", c).stdout)[0]["State"]["Pid"]
    top = daemon.docker("top", c).stdout.splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [(row.split()[1], row.split(None, 7)[7]) for row in top[1:]] == [
        (str(init_pid), "sleep 1000")
    ]
    custom = daemon.docker("top", c, "-o", "pid,comm").stdout.split()
    assert custom == ["PID", "COMMAND", str(init_pid), "sleep"]

    new = c + "-renamed"
    names.append(new)
    daemon.docker("rename", c, new)
    assert json.loads(daemon.docker("inspect", new).stdout)[0]["Name"] == "/" + new
    assert daemon.docker("inspect", c, check=False).returncode == 1
    daemon.docker("run", "-d", "--name", c, "busybox", "sleep", "1000")  # the old name is free
    taken = daemon.docker("rename", new, c, check=False)
    assert taken.returncode == 1 and "is already in use by container" in taken.stderr
    same = daemon.docker("rename", new, new, check=False)
    assert "Renaming a container with the same name as its current name" in same.stderr
    daemon.docker("stop", "-t", "0", new)
    stopped = daemon.docker("top", new, check=False)
    assert stopped.returncode == 1 and f"Container {cid} is not running" in stopped.stderr
