"""``dockyard compose exec``/``run`` with stdin and a TTY, end to end.

The real CLI runs on a real pseudo-terminal (``os.forkpty``: the pty is its controlling
terminal, so a window-size change on the master sends it SIGWINCH as a terminal emulator
would) against a real ``dockyard daemon``. The test types into the master and reads what
the container's shell prints back: the prompt, ``tty`` (a ``/dev/pts/N`` inside), ``stty
size`` (the initial size and a resize reaching the container), exit codes, and that the
local terminal leaves raw mode. Piped stdin (``-T``, or stdin not a terminal) is driven
through plain pipes.

Every CLI process is stopped by PID; the project's containers are removed by the
``project_dir`` fixture whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.compose.conftest import (
    COMPOSE_TIMEOUT_S,
    ComposeRun,
    ProjectDir,
    free_port,
    project_objects,
)
from tests.e2e.engine.test_daemon_cli import DaemonProcess
from tests.support.dockerd import DaemonProcess as ReferenceDaemon
from tests.support.dockerd import start_tls_dockyard_daemon

pytestmark = pytest.mark.e2e

EXPECT_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 60.0
PROMPT = "dy-prompt> "

SERVICES = textwrap.dedent(
    """
    services:
      web:
        image: busybox:latest
        command: ["sleep", "3600"]
        stop_signal: SIGKILL
        environment:
          PS1: "dy-prompt> "
      plain:
        image: busybox:latest
        command: ["sleep", "3600"]
        stop_signal: SIGKILL
        tty: false
    """
)


class PtyProcess:
    """The compose CLI on the slave side of a pty; the test holds the master."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, size: tuple[int, int]):
        self.output = ""
        self.pid, self.master = os.forkpty()
        if self.pid == 0:  # the child: exec at once, never return into pytest
            try:
                os.chdir(cwd)
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.status: int | None = None

    def read_until(self, pattern: str) -> re.Match[str]:
        """Read the master until ``pattern`` (a regex) appears after what was matched
        before; fail with everything read when the deadline passes or the CLI exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + EXPECT_TIMEOUT_S
        while True:
            match = regex.search(self.output)
            if match is not None:
                self.output = self.output[match.end() :]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} in the terminal; it showed:\n{self.output!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError as err:  # EIO: the slave side is closed (the CLI exited)
                if err.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                pytest.fail(f"the CLI ended before {pattern!r}; it showed:\n{self.output!r}")
            self.output += data.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def resize(self, rows: int, columns: int) -> None:
        # on the master, as a terminal emulator does: the kernel sends SIGWINCH to the
        # slave's foreground process group (the CLI)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def attributes(self) -> list[object]:
        # Linux: the master reports the slave's termios (one shared tty_struct)
        return termios.tcgetattr(self.master)

    def wait(self) -> int:
        """The CLI's exit status; the output it printed until then is drained."""
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the CLI did not exit; the terminal showed:\n{self.output!r}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.master, 4096).decode(errors="replace")
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        os.close(self.master)


@contextlib.contextmanager
def compose_on_pty(
    daemon: DaemonProcess, project: ProjectDir, *args: str, size: tuple[int, int] = (40, 120)
) -> Iterator[PtyProcess]:
    argv = [sys.executable, "-m", "dockyard", "compose", "-p", project.name, *args]
    env = {**os.environ, **daemon.env, "TERM": "xterm"}
    process = PtyProcess(argv, env, project.path, size)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def up_project(compose: ComposeRun, project_dir: ProjectDir) -> ProjectDir:
    project_dir.write("compose.yaml", SERVICES)
    compose("-p", project_dir.name, "up", "-d", "web", cwd=project_dir.path)
    return project_dir


def test_exec_gives_an_interactive_shell_on_a_tty_that_follows_resizes(
    compose_daemon: DaemonProcess, up_project: ProjectDir
) -> None:
    with compose_on_pty(compose_daemon, up_project, "exec", "web", "sh") as cli:
        cli.read_until(re.escape(PROMPT))
        cli.type("tty\r")
        cli.read_until(r"/dev/pts/\d+")
        cli.read_until(re.escape(PROMPT))
        # the initial size was sent after the start
        cli.type("stty size\r")
        cli.read_until(r"\b40 120\b")
        cli.read_until(re.escape(PROMPT))
        # the local terminal is raw during the session: no echo, no line discipline here
        lflag = cli.attributes()[3]
        assert isinstance(lflag, int) and not lflag & (termios.ECHO | termios.ICANON)
        cli.resize(33, 91)
        # SIGWINCH is asynchronous: ask until the new size is seen (a condition, no sleep)
        for _ in range(50):
            cli.type("stty size\r")
            match = cli.read_until(r"\b(40 120|33 91)\b")
            cli.read_until(re.escape(PROMPT))
            if match.group(1) == "33 91":
                break
        else:
            pytest.fail("the resize never reached the container")
        # Ctrl-C is a byte for the container's terminal, not a SIGINT for the CLI: it
        # interrupts the shell's `read` and the shell prompts again
        cli.type("echo waiting; read line\r")
        cli.read_until(r"\nwaiting")
        cli.type("\x03")
        cli.read_until(r"\^C")
        cli.read_until(re.escape(PROMPT))
        cli.type("exit 3\r")
        assert cli.wait() == 3
        lflag = cli.attributes()[3]
        assert isinstance(lflag, int) and lflag & termios.ECHO and lflag & termios.ICANON


def test_exec_dash_t_on_a_terminal_has_no_tty_inside(
    compose_daemon: DaemonProcess, up_project: ProjectDir
) -> None:
    script = "test -t 0 && echo in-tty || echo no-tty; test -t 1 && echo out-tty || echo raw-out"
    with compose_on_pty(compose_daemon, up_project, "exec", "-T", "web", "sh", "-c", script) as cli:
        cli.read_until("no-tty")
        cli.read_until("raw-out")
        assert cli.wait() == 0


def test_exec_with_piped_stdin(compose_daemon: DaemonProcess, up_project: ProjectDir) -> None:
    name, cwd = up_project.name, up_project.path
    base = [sys.executable, "-m", "dockyard", "compose", "-p", name]
    env = {**os.environ, **compose_daemon.env}
    piped = subprocess.run(
        [*base, "exec", "-T", "web", "cat"],
        input="hi\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert (piped.returncode, piped.stdout) == (0, "hi\n"), piped
    # without -T, stdin that is no terminal gets no TTY either (no echo, no \r\n)
    script = "test -t 0 && echo tty || echo notty; wc -c"
    piped = subprocess.run(
        [*base, "exec", "web", "sh", "-c", script],
        input="12345",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert (piped.returncode, piped.stdout.split()) == (0, ["notty", "5"]), piped
    # a large input: the bounded stdin queue keeps up and EOF still arrives
    big = subprocess.run(
        [*base, "exec", "-T", "web", "wc", "-c"],
        input=b"x" * (5 << 20),
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert (big.returncode, big.stdout.split()) == (0, [str(5 << 20).encode()]), big
    # -e KEY takes KEY from the CLI's environment, and is left out when unset there
    environment = subprocess.run(
        [*base, "exec", "-T", "-e", "FROM_CLI", "-e", "DY_UNSET_VAR", "-e", "X=1", "web", "env"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "FROM_CLI": "passed"},
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    lines = environment.stdout.splitlines()
    assert "FROM_CLI=passed" in lines and "X=1" in lines, environment
    assert not any(line.startswith("DY_UNSET_VAR") for line in lines), environment
    # the command's exit status, and stderr kept apart from stdout
    failed = subprocess.run(
        [*base, "exec", "-T", "web", "sh", "-c", "echo out; echo err >&2; exit 7"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert (failed.returncode, failed.stdout, failed.stderr) == (7, "out\n", "err\n"), failed


def test_run_rm_gives_an_interactive_shell_and_is_removed(
    compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", SERVICES)
    with compose_on_pty(
        compose_daemon, project_dir, "run", "--rm", "web", "sh", size=(25, 70)
    ) as cli:
        cli.read_until(re.escape(PROMPT))
        cli.type("tty\r")
        cli.read_until(r"/dev/pts/\d+")
        cli.read_until(re.escape(PROMPT))
        cli.type("stty size\r")
        cli.read_until(r"\b25 70\b")
        cli.read_until(re.escape(PROMPT))
        cli.type("exit 5\r")
        assert cli.wait() == 5
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []


def test_run_respects_tty_false_in_the_file(
    compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", SERVICES)
    script = "test -t 0 && echo in-tty || echo no-tty"
    with compose_on_pty(
        compose_daemon, project_dir, "run", "--rm", "plain", "sh", "-c", script
    ) as cli:
        cli.read_until("no-tty")
        assert cli.wait() == 0
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []


def test_run_rm_removes_the_container_when_the_cli_is_terminated(
    compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", SERVICES)
    with compose_on_pty(compose_daemon, project_dir, "run", "--rm", "web", "sh") as cli:
        cli.read_until(re.escape(PROMPT))
        os.kill(cli.pid, signal.SIGTERM)
        assert cli.wait() == 128 + signal.SIGTERM
        lflag = cli.attributes()[3]
        assert isinstance(lflag, int) and lflag & termios.ECHO and lflag & termios.ICANON
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []


def test_run_with_piped_stdin_and_overrides(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", SERVICES)
    project_dir.write("data/f.txt", "from-the-host\n")

    base = [sys.executable, "-m", "dockyard", "compose", "-p", project_dir.name]
    env = {**os.environ, **compose_daemon.env}
    result = subprocess.run(
        [
            *base,
            "run",
            "--rm",
            "-T",
            "-u",
            "1000",
            "-w",
            "/tmp",
            "-v",
            "./data:/data:ro",
            "--entrypoint",
            "sh -c",
            "web",
            "cat; id -u; pwd; cat /data/f.txt; exit 2",
        ],
        input="typed\n",
        capture_output=True,
        text=True,
        cwd=project_dir.path,
        env=env,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stdout.split() == ["typed", "1000", "/tmp", "from-the-host"], result
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []

    port = free_port()
    detached = compose(
        "-p",
        project_dir.name,
        "run",
        "-d",
        "-l",
        "dy.test=yes",
        "-p",
        f"127.0.0.1:{port}:8080",
        "web",
        cwd=project_dir.path,
    )
    name = detached.stdout.strip()
    status, info = compose_daemon.api("GET", f"/containers/{name}/json")
    assert status == 200, info
    assert info["Config"]["Labels"]["dy.test"] == "yes"
    assert info["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    assert info["Config"]["OpenStdin"] is False

    # -d --rm: the engine removes the container when it exits (AutoRemove), not the CLI
    gone = compose("-p", project_dir.name, "run", "-d", "--rm", "web", "true", cwd=project_dir.path)
    name = gone.stdout.strip()
    status, _ = compose_daemon.api("POST", f"/containers/{name}/wait?condition=removed")
    assert status in (200, 404)  # 404: removed before the wait was asked
    assert compose_daemon.api("GET", f"/containers/{name}/json")[0] == 404


def test_run_joins_every_network_with_aliases_only_when_asked(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            """
            services:
              multi:
                image: busybox:latest
                command: ["sleep", "3600"]
                stop_signal: SIGKILL
                networks:
                  front: {}
                  back: {aliases: [backend]}
            networks:
              front: {}
              back: {}
            """
        ),
    )

    def aliases(*flags: str) -> dict[str, set[str]]:
        run = compose("-p", project_dir.name, "run", "-d", *flags, "multi", cwd=project_dir.path)
        status, info = compose_daemon.api("GET", f"/containers/{run.stdout.strip()}/json")
        assert status == 200, info
        networks = info["NetworkSettings"]["Networks"]
        return {net: set(networks[net].get("Aliases") or []) for net in networks}

    front, back = f"{project_dir.name}_front", f"{project_dir.name}_back"
    with_aliases = aliases("--use-aliases")
    assert set(with_aliases) == {front, back}
    assert "multi" in with_aliases[front]
    assert {"multi", "backend"} <= with_aliases[back]
    without = aliases()
    assert set(without) == {front, back}
    assert not ({"multi", "backend"} & (without[front] | without[back]))


def test_exec_and_run_over_mutual_tls(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The hijack on TCP+TLS with the client's certificates: piped stdin reaches EOF (the
    close_notify the docker CLI sends), and a TTY session works."""
    base = tmp_path_factory.mktemp("compose-tls-hijack")
    setup = start_tls_dockyard_daemon(base)
    daemon, port, cert_dir = setup.daemon, setup.port, setup.cert_dir
    project = ProjectDir(base / "proj", "tlshijack")
    project.path.mkdir()
    project.write("compose.yaml", SERVICES)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dockyard", "compose", "-p", project.name, *args],
            cwd=project.path,
            env=env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )

    try:
        up = run("up", "-d", "web")
        assert up.returncode == 0, up.stderr
        piped = run("exec", "-T", "web", "cat", stdin="over tls\n")
        assert (piped.returncode, piped.stdout) == (0, "over tls\n"), piped
        one_off = run("run", "--rm", "-T", "web", "sh", "-c", "cat; exit 6", stdin="once\n")
        assert (one_off.returncode, one_off.stdout) == (6, "once\n"), one_off
        cli = PtyProcess(
            [sys.executable, "-m", "dockyard", "compose", "-p", project.name, "exec", "web", "sh"],
            {**env, "TERM": "xterm"},
            project.path,
            (30, 100),
        )
        try:
            cli.read_until(re.escape(PROMPT))
            cli.type("tty; stty size\r")
            cli.read_until(r"/dev/pts/\d+")
            cli.read_until(r"\b30 100\b")
            cli.type("exit 4\r")
            assert cli.wait() == 4
        finally:
            cli.close()
        down = run("down", "-t", "1")
        assert down.returncode == 0, down.stderr
    finally:
        leaks = daemon.stop()
        log = daemon.log(tail_chars=20_000)
    assert not leaks, f"left behind: {leaks}"
    assert "Traceback" not in log, log


def test_run_whose_start_fails_reports_the_engine_error_and_leaves_nothing(
    compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", SERVICES)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "dockyard", "compose", "-p", project_dir.name),
            *("run", "--rm", "-T", "--entrypoint", "/no/such/binary", "web"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=project_dir.path,
        env={**os.environ, **compose_daemon.env},
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert "/no/such/binary" in result.stderr, result.stderr
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []


def test_the_same_sessions_against_the_real_dockerd(
    dockerd: ReferenceDaemon, tmp_path: Path
) -> None:
    """Differential: moby's own hijack (101 UPGRADED, half-close closes stdin, exec and
    container resize) driven by the same client code."""
    project = ProjectDir(tmp_path, f"dyi{os.getpid()}")
    project.write("compose.yaml", SERVICES)
    env = {**os.environ, **dockerd.env}
    base = [sys.executable, "-m", "dockyard", "compose", "-p", project.name]

    def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*base, *args],
            input=stdin,
            capture_output=True,
            cwd=project.path,
            env=env,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )

    try:
        up = run("up", "-d", "web")
        assert up.returncode == 0, up
        piped = run("exec", "-T", "web", "cat", stdin=b"to moby\n")
        assert (piped.returncode, piped.stdout) == (0, b"to moby\n"), piped
        one_off = run("run", "--rm", "-T", "web", "sh", "-c", "cat; exit 6", stdin=b"once\n")
        assert (one_off.returncode, one_off.stdout) == (6, b"once\n"), one_off
        for args in (("exec", "web", "sh"), ("run", "--rm", "web", "sh")):
            cli = PtyProcess([*base, *args], {**env, "TERM": "xterm"}, project.path, (30, 100))
            try:
                cli.read_until(re.escape(PROMPT))
                cli.type("tty; stty size\r")
                cli.read_until(r"/dev/pts/\d+")
                cli.read_until(r"\b30 100\b")
                cli.type("echo waiting; read line\r")
                cli.read_until(r"\nwaiting")
                cli.type("\x03")
                cli.read_until(r"\^C")
                cli.read_until(re.escape(PROMPT))
                cli.type("exit 4\r")
                assert cli.wait() == 4, args
            finally:
                cli.close()
    finally:
        run("down", "-t", "1")
    assert project_objects(dockerd, project.name)["containers"] == []
