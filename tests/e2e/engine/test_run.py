"""`docker run` in the foreground against `dockyard daemon`: attach, exit codes, --rm, TTY.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, with the same teardown leak checks). TTY runs give the CLI a pseudo-terminal of
their own (`pty.openpty`); the terminal is read until an expected output appears or a
deadline passes, never for a fixed time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import COMMAND_TIMEOUT_S, DOCKER, DaemonProcess

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)


def _gone(daemon: DaemonProcess, name: str) -> bool:
    status, _ = daemon.api("GET", f"/containers/{name}/json")
    return status == 404


def test_run_rm_prints_the_output_and_removes_the_container(daemon: DaemonProcess) -> None:
    result = daemon.docker("run", "--rm", "--name", "rm1", "busybox", "echo", "hello")
    assert (result.stdout, result.stderr, result.returncode) == ("hello\n", "", 0)
    assert _gone(daemon, "rm1")


def test_run_separates_stdout_and_stderr_and_passes_the_exit_code(daemon: DaemonProcess) -> None:
    result = daemon.docker(
        "run", "--name", "x3", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert (result.stdout, result.stderr, result.returncode) == ("out\n", "err\n", 3)
    state = json.loads(daemon.docker("inspect", "x3").stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 3)
    daemon.docker("rm", "x3")


def test_run_interactive_feeds_stdin_and_closes_it_at_eof(daemon: DaemonProcess) -> None:
    data = "data\n" + "x" * 200_000 + "\nend\n"
    result = subprocess.run(
        [DOCKER, "run", "-i", "--rm", "--name", "cat1", "busybox", "cat"],
        input=data,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), daemon.log()
    assert result.stdout == data
    assert _gone(daemon, "cat1")


def test_run_a_missing_command_exits_127_in_dockers_words(daemon: DaemonProcess) -> None:
    result = daemon.docker("run", "--rm", "--name", "nope1", "busybox", "nope", check=False)
    assert result.returncode == 127
    assert "docker: Error response from daemon: failed to create shim task" in result.stderr
    assert 'exec: "nope": executable file not found in $PATH' in result.stderr
    assert _gone(daemon, "nope1"), "--rm removes a container whose start failed"
    not_executable = daemon.docker("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert not_executable.returncode == 126, not_executable.stderr
    assert "permission denied" in not_executable.stderr


class Terminal:
    """The docker CLI on a pseudo-terminal of its own."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.master = master
        self.output = b""
        try:
            self.proc = subprocess.Popen(
                [DOCKER, *args],
                env={**daemon.env, "TERM": "xterm"},
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)

    def read_until(self, expected: bytes, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while expected not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {expected!r} in {self.output!r}"
            readable, _, _ = select.select([self.master], [], [], left)
            if readable:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    data = b""
                assert data, f"terminal closed; no {expected!r} in {self.output!r}"
                self.output += data

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self) -> int:
        return self.proc.wait(COMMAND_TIMEOUT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def test_run_tty_echoes_output_and_passes_the_exit_code(daemon: DaemonProcess) -> None:
    term = Terminal(
        daemon, "run", "-t", "--rm", "--name", "tty1", "busybox", "sh", "-c",
        "stty size; echo in-tty; exit 5",
    )  # fmt: skip
    try:
        # The terminal has the CLI's size (ConsoleSize) from the first instruction on.
        term.read_until(b"24 80\r")
        term.read_until(b"in-tty\r")
        assert term.wait() == 5
    finally:
        term.close()
    assert _gone(daemon, "tty1")


def test_run_it_detaches_on_ctrl_p_ctrl_q_and_the_container_keeps_running(
    daemon: DaemonProcess,
) -> None:
    term = Terminal(daemon, "run", "-it", "--name", "det1", "busybox", "sh")
    try:
        term.write(b"echo ready-$((6*7))\r")
        term.read_until(b"ready-42")
        term.write(b"\x10\x11")
        assert term.wait() == 0
    finally:
        term.close()
    state = json.loads(daemon.docker("inspect", "det1").stdout)[0]["State"]
    assert state["Running"], state
    # The session is gone, the shell is not: a new attach sees it and can end it.
    term = Terminal(daemon, "attach", "det1")
    try:
        term.write(b"\rexit 4\r")
        assert term.wait() == 4
    finally:
        term.close()
    daemon.docker("rm", "det1")


def _read_until(sock: socket.socket, data: bytes, expected: bytes) -> bytes:
    while expected not in data:
        chunk = sock.recv(4096)
        assert chunk, f"stream ended; no {expected!r} in {data!r}"
        data += chunk
    return data


def test_attach_with_logs_replays_and_resize_reaches_the_terminal(daemon: DaemonProcess) -> None:
    # Detached with a TTY: no client resizes it, so only our resize sends SIGWINCH.
    daemon.docker(
        "run", "-d", "-t", "--name", "rs1", "busybox", "sh", "-c",
        "trap 'stty size' WINCH; echo ready; while :; do sleep 1 & wait; done",
    )  # fmt: skip
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(COMMAND_TIMEOUT_S)
        sock.connect(str(daemon.sock))
        sock.sendall(
            b"POST /v1.44/containers/rs1/attach?logs=1&stream=1&stdout=1 HTTP/1.1\r\n"
            b"Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        head = _read_until(sock, b"", b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"Content-Type: application/vnd.docker.raw-stream\r\n" in head
        # "ready" may have been written before the attach: logs=1 replays it.
        data = _read_until(sock, head.partition(b"\r\n\r\n")[2], b"ready")
        status, _ = daemon.api("POST", "/containers/rs1/resize?h=10&w=33")
        assert status == 200
        _read_until(sock, data, b"10 33")
    finally:
        sock.close()
    daemon.docker("rm", "-f", "rs1")
    daemon.docker("create", "--name", "rs2", "-t", "busybox")
    status, body = daemon.api("POST", "/containers/rs2/resize?h=10&w=33")
    assert status == 409 and "is not running" in body["message"]
    daemon.docker("rm", "rs2")
