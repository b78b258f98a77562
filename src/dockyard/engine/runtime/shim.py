"""The per-container shim: parent of the container, owner of its stdio, log and exit status.

Role (after containerd-shim-runc): the daemon spawns one shim per container with
`start_shim`; the shim double-forks away from the daemon, runs `runc create` + `runc start`,
copies the container's output into a Docker json-file log, reaps the container's init,
records its exit status in `<state dir>/exit.json`, runs `runc delete` and exits. Because the
shim, not the daemon, is the container's parent, containers outlive a daemon restart.

State dir contract (what a restarted daemon reads to reconnect):
- `shim.pid`: the shim's pid, written before `runc create`.
- `init.pid`: the container init's host pid (runc's `--pid-file`).
- `container-json.log` (or `--log-path`): the json-file log.
- `exit.json`: written atomically (temp file, fsync, rename) once, after the init is reaped
  or the start failed; the shim exits only after writing it and deleting the container.
- `stdin`: a FIFO when started with stdin; the container's stdin closes when the first
  writer closes it (Docker's StdinOnce).
- `shim.log`: the shim's own stderr.
- `attach.sock`: attach clients (below); bound and reached through `/proc/self/fd/<dir fd>/`
  so a long state dir cannot overflow sun_path (`attach_socket_path`).

Attach (Docker's attach, after containerd's fifos): a client is a stream socket, either
accepted on `attach.sock` or handed over at launch (`--attach-fd FD:MODE`, a socketpair end
the daemon made before the start). A socket client first sends one mode byte (`i`: output and
stdin, `o`: output only, `r`: a resize, followed by `<rows> <cols>\n`). Every client gets each
stdout/stderr chunk read from the moment it is attached, framed as Docker's stdcopy (stream
byte, three zero bytes, big-endian u32 length, data; TTY output is stream 1), and the shim
closes it after the last output, before writing exit.json. Bytes an `i` client sends go to
the container's stdin; its EOF closes that stdin when the container has StdinOnce and no TTY
(moby container/stream/attach.go); otherwise it only ends that client's input.
Nothing is lost for `docker run`: clients that attached before the start are handed over at
launch and registered before the first output is read. Writes to clients block (as dockerd's
attach does): a client that stops reading stalls the container's output; a client that is
gone (EPIPE) is dropped.

Invariants:
- The shim is never the daemon's child (`start_new_session` + a double fork) and holds no
  pipe that the daemon reads except the notify pipe, to which it writes one short report
  line right after start (EPIPE is caught; Python ignores SIGPIPE) and which it otherwise
  only closes, by exiting: EOF on it means "exit.json is written". (Attach clients are
  sockets; a vanished one is dropped.)
- The shim is a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so the container init is
  reparented to it when `runc create` exits, and it reaps with `waitpid(-1)` only after the
  last runc subprocess of the start sequence has been awaited (no stolen exit statuses).
- Output lines are logged in the order read; when stdout and stderr are both readable,
  stdout is drained first, so sequential writes keep their order.

Waiting for exit (`wait_exit`): a daemon that started the shim waits for EOF on the notify
pipe (`ShimHandle.wait_exit`). A daemon that restarted has no pipe: it opens a pidfd on
`shim.pid` (`pidfd_open`, readable when the shim exits) and falls back to polling
`exit.json` at a coarse interval only where pidfds are unavailable.

OOM: `exit.json` says `oom_killed` when the kernel's OOM killer struck in the container's
memory cgroup while it ran: the shim compares the cgroup's `oom_kill` counter (v1
`memory.oom_control`, v2 `memory.events`) after `runc create` and after the init is reaped,
before `runc delete` removes the cgroup. Like dockerd's (containerd's OOM event), any process
of the container killed for memory counts, not only the init.

Not done yet: exec through the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.engine.runtime import shim_main
from dockyard.engine.runtime.runc import DEFAULT_BINARY, DEFAULT_ROOT, RuncError
from dockyard.engine.runtime.shim_main import (
    ATTACH_OUTPUT,
    ATTACH_RESIZE,
    ATTACH_SOCKET,
    ATTACH_STDIN,
    DEFAULT_LOG_FILE,
    EXIT_FILE,
    INIT_PID_FILE,
    SHIM_LOG_FILE,
    SHIM_PID_FILE,
    STDIN_FIFO,
    STREAM_IDS,
    attach_socket_path,
    frame_output,
    main,
    pid_file_process_alive,
    read_pid_file,
)

__all__ = [
    "ATTACH_OUTPUT", "ATTACH_RESIZE", "ATTACH_SOCKET", "ATTACH_STDIN", "DEFAULT_LOG_FILE",
    "EXIT_FILE", "INIT_PID_FILE", "SHIM_LOG_FILE", "SHIM_PID_FILE", "STDIN_FIFO", "STREAM_IDS",
    "ExitStatus", "ShimConfig", "ShimError", "ShimHandle", "ShimZygote", "attach_socket_path",
    "exit_status_from_wait", "frame_output", "load_exit_status", "main", "read_pid_file",
    "shim_running", "start_shim", "wait_exit",
]  # fmt: skip

# The shim runs as `python -I -S -c _SHIM_BOOT <src dir> <args>`: isolated and without site
# (no .pth files, no user site: ~10 ms less per start), so the package's parent directory
# is put on sys.path explicitly. The state dir stays on the command line (`_is_our_shim`).
_SHIM_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from dockyard.engine.runtime.shim_main import main; sys.exit(main())"
)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])
_ZYGOTE_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from dockyard.engine.runtime.shim_zygote import main; sys.exit(main(sys.argv[1:]))"
)

_MAX_REPORT_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


class ShimError(Exception):
    """The shim itself failed (not runc): it died, or its state dir is inconsistent."""


@dataclass(frozen=True)
class ShimConfig:
    """Everything the shim needs; passed on its command line."""

    container_id: str
    bundle: Path
    state_dir: Path
    runc_root: Path = DEFAULT_ROOT
    runc_binary: str = DEFAULT_BINARY
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_path: Path | None = None
    console_size: tuple[int, int] | None = None  # (rows, cols) of a TTY from its start

    @property
    def json_log_path(self) -> Path:
        return self.log_path if self.log_path is not None else self.state_dir / DEFAULT_LOG_FILE

    def to_argv(self) -> list[str]:
        argv = [
            "--id", self.container_id,
            "--bundle", str(self.bundle),
            "--state-dir", str(self.state_dir),
            "--runc-root", str(self.runc_root),
            "--runc-binary", self.runc_binary,
            "--log-path", str(self.json_log_path),
        ]  # fmt: skip
        if self.tty:
            argv.append("--tty")
        if self.stdin:
            argv.append("--stdin")
        if self.stdin_once:
            argv.append("--stdin-once")
        if self.console_size is not None:
            argv += ["--console-size", f"{self.console_size[0]}x{self.console_size[1]}"]
        return argv


@dataclass(frozen=True)
class ExitStatus:
    """How the container ended. `exit_code` is Docker's: 128+n when killed by signal n.

    A failed start has `error` set to runc's message and `exit_code` -1; the engine maps the
    message to Docker's 126/127/128 wording.
    """

    exit_code: int
    signal: int | None
    oom_killed: bool
    finished_at: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "oom_killed": self.oom_killed,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ExitStatus:
        sig = obj.get("signal")
        err = obj.get("error")
        return cls(
            exit_code=int(obj["exit_code"]),
            signal=None if sig is None else int(sig),
            oom_killed=bool(obj.get("oom_killed", False)),
            finished_at=str(obj["finished_at"]),
            error=None if err is None else str(err),
        )


def exit_status_from_wait(status: int, finished_at: str) -> ExitStatus:
    """Map a `waitpid` status to Docker's exit code convention."""
    return ExitStatus.from_json(shim_main.exit_record_from_wait(status, finished_at))


def load_exit_status(state_dir: Path) -> ExitStatus | None:
    try:
        data = json.loads((state_dir / EXIT_FILE).read_text())
        return ExitStatus.from_json(data)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Unsynced runtime state cut short by a machine crash: as if never written.
        logger.warning("unreadable %s in %s", EXIT_FILE, state_dir)
        return None


def _is_our_shim(pid: int, state_dir: Path) -> bool:
    """True if `pid` is alive and is the shim of `state_dir` (guards against pid reuse): by
    the start time in `shim.pid`, or, for a shim that wrote none, by its command line."""
    alive = pid_file_process_alive(state_dir / SHIM_PID_FILE)
    if alive is not None:
        return alive and read_pid_file(state_dir / SHIM_PID_FILE) == pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return os.fsencode(str(state_dir)) in cmdline


def shim_running(state_dir: Path) -> bool:
    pid = read_pid_file(state_dir / SHIM_PID_FILE)
    return pid is not None and _is_our_shim(pid, state_dir)


# --- the daemon's side ----------------------------------------------------------------


async def _wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class ShimHandle:
    """A started shim as seen by the daemon that launched it; owns the notify pipe's read end."""

    def __init__(self, config: ShimConfig, shim_pid: int, init_pid: int, notify_fd: int) -> None:
        self.config = config
        self.shim_pid = shim_pid
        self.init_pid = init_pid
        self._notify_fd: int | None = notify_fd

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    async def wait_exit(self) -> ExitStatus:
        """Await EOF on the notify pipe (the shim exited, exit.json written); the status."""
        fd = self._notify_fd
        if fd is None:
            return await wait_exit(self.state_dir)
        while await _read_when_ready(fd):
            pass  # nothing but EOF is ever written after the report
        self.close()
        status = load_exit_status(self.state_dir)
        if status is None:
            raise ShimError(f"shim {self.shim_pid} exited without writing {EXIT_FILE}")
        return status

    def close(self) -> None:
        """Drop the notify pipe (the shim does not notice); `wait_exit(state_dir)` still works."""
        if self._notify_fd is not None:
            os.close(self._notify_fd)
            self._notify_fd = None


async def _read_when_ready(fd: int) -> bytes:
    """One read from a non-blocking pipe, awaiting readability; b"" at EOF."""
    while True:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            await _wait_readable(fd)


async def _read_report(fd: int, timeout_s: float) -> dict[str, Any] | None:
    buf = bytearray()
    async with asyncio.timeout(timeout_s):
        while b"\n" not in buf:
            data = await _read_when_ready(fd)
            if not data:
                return None
            buf += data
            if len(buf) > _MAX_REPORT_BYTES:
                raise ShimError("shim report too long")
    line = bytes(buf).split(b"\n", 1)[0]
    report: dict[str, Any] = json.loads(line)
    return report


class ShimZygote:
    """The daemon's end of the shim zygote (`shim_zygote.py`): a warm process that forks
    shims, so a container start does not pay for a Python start-up and the shim's imports.

    Started lazily by the first `launch`; requests are serialized (one exchange at a time
    on a SOCK_SEQPACKET socket, fds passed with SCM_RIGHTS). Any failure mid-exchange
    (the zygote died, the caller was cancelled) retires the zygote, since its replies could
    no longer be matched to requests; the next launch starts a fresh one. `start_shim`
    falls back to spawning the shim when the zygote cannot serve.
    """

    def __init__(self, *, python: str = sys.executable) -> None:
        self._python = python
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._sock is not None else None

    async def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self._python,
                "-I",
                "-S",
                "-c",
                _ZYGOTE_BOOT,
                _PACKAGE_PARENT,
                "--control-fd",
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C for the daemon is not for it
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        return ours

    def _retire(self) -> None:
        # EOF on its control socket ends the zygote; its shims are not its children.
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def launch(
        self,
        args: Sequence[str],
        *,
        stderr_fd: int,
        report_fd: int,
        attach_fds: Sequence[tuple[int, str]] = (),
    ) -> int:
        """Fork a launcher running the shim with `args`; the launcher's exit code (0 once
        the shim has double-forked away). Raises ShimError when the zygote cannot serve."""
        async with self._lock:
            if self._closed:
                raise ShimError("the shim zygote is closed")
            sock = self._sock or await self._start()
            request = json.dumps(
                {"args": list(args), "attach_modes": [mode for _, mode in attach_fds]}
            ).encode()
            fds = [stderr_fd, report_fd, *(fd for fd, _ in attach_fds)]
            try:
                socket.send_fds(sock, [request], fds)
                reply = await asyncio.get_running_loop().sock_recv(sock, _MAX_REPORT_BYTES)
                if not reply:
                    raise ShimError("the shim zygote exited")
                answer = json.loads(reply)
            except BaseException as e:
                self._retire()
                if isinstance(e, OSError | ValueError):
                    raise ShimError(f"shim zygote: {e}") from None
                raise
            if "error" in answer:
                raise ShimError(f"shim zygote refused the request: {answer['error']}")
            return int(answer["exit"])

    async def close(self, timeout_s: float = 5.0) -> None:
        async with self._lock:
            self._closed = True
            self._retire()
            if self._proc is not None and self._proc.returncode is None:
                try:
                    await asyncio.wait_for(self._proc.wait(), timeout_s)
                except TimeoutError:
                    self._proc.kill()
                    await self._proc.wait()


async def start_shim(
    config: ShimConfig,
    *,
    python: str = sys.executable,
    timeout_s: float = 60.0,
    attach_fds: Sequence[tuple[int, str]] = (),
    zygote: ShimZygote | None = None,
) -> ShimHandle:
    """Start a detached shim (forked by `zygote` when given and able, else spawned); return
    once the container runs, or raise `RuncError`.

    The launcher keeps only the read end of the notify pipe; killing the launcher (even
    with SIGKILL) leaves the shim and the container running. `attach_fds` are (socket fd,
    mode) attach clients the shim inherits; the caller still owns (and closes) its copies.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        with open(config.state_dir / SHIM_LOG_FILE, "ab") as shim_log:
            exit_code: int | None = None
            if zygote is not None:
                try:
                    exit_code = await zygote.launch(
                        config.to_argv(),
                        stderr_fd=shim_log.fileno(),
                        report_fd=write_fd,
                        attach_fds=attach_fds,
                    )
                except ShimError as e:
                    logger.warning("%s; spawning the shim instead", e)
            if exit_code is None:
                proc = await asyncio.create_subprocess_exec(
                    python,
                    "-I",
                    "-S",
                    "-c",
                    _SHIM_BOOT,
                    _PACKAGE_PARENT,
                    *config.to_argv(),
                    "--report-fd",
                    str(write_fd),
                    *(f"--attach-fd={fd}:{mode}" for fd, mode in attach_fds),
                    "--daemonize",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=shim_log,
                    pass_fds=(write_fd, *(fd for fd, _ in attach_fds)),
                    start_new_session=True,
                )
                exit_code = await proc.wait()
        os.close(write_fd)
        write_fd = -1
        if exit_code != 0:
            raise ShimError(f"shim launcher exited with {exit_code}")
        report = await _read_report(read_fd, timeout_s)
    except BaseException:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        raise
    if report is None or report.get("status") != "running":
        # The shim exits right after a failed start; await that (EOF) so a raise means the
        # shim is gone and its state dir final.
        with contextlib.suppress(ShimError):
            await ShimHandle(config, 0, 0, read_fd).wait_exit()
        if report is None:
            log = (config.state_dir / SHIM_LOG_FILE).read_text(errors="replace")
            raise ShimError(f"shim died before reporting: {log[-2000:]}")
        message = str(report.get("error", "unknown error"))
        if report.get("shim_error"):
            raise ShimError(message)
        raise RuncError(["runc", "create/start", config.container_id], 1, message)
    return ShimHandle(config, int(report["shim_pid"]), int(report["init_pid"]), read_fd)


async def wait_exit(state_dir: Path, *, poll_interval_s: float = 1.0) -> ExitStatus:
    """Await a shim's exit knowing only its state dir (a daemon after restart).

    Returns once the shim process is gone, which is after it wrote exit.json and deleted
    its container. Uses a pidfd on `shim.pid` (readable when the shim exits); polls every
    `poll_interval_s` only where `pidfd_open` is unavailable.
    """
    pid = read_pid_file(state_dir / SHIM_PID_FILE)
    if pid is None:
        raise ShimError(f"no shim pid in {state_dir}")
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    except OSError:  # no pidfd support: the documented coarse polling fallback
        while _is_our_shim(pid, state_dir):
            await asyncio.sleep(poll_interval_s)
        return _exit_after_shim_gone(state_dir)
    if pidfd is not None:
        try:
            # Checked after opening the pidfd so a reused pid cannot be mistaken for the shim.
            if _is_our_shim(pid, state_dir):
                await _wait_readable(pidfd)
        finally:
            os.close(pidfd)
    return _exit_after_shim_gone(state_dir)


def _exit_after_shim_gone(state_dir: Path) -> ExitStatus:
    status = load_exit_status(state_dir)
    if status is None:
        raise ShimError(f"shim of {state_dir} is gone and left no {EXIT_FILE}")
    return status


if __name__ == "__main__":
    sys.exit(main())
