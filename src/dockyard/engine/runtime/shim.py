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

Not done yet: OOM detection (`oom_killed` is always false), exec through the shim.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.engine.runtime.logfile import LineSplitter, Stream, encode_entry, format_rfc3339nano
from dockyard.engine.runtime.runc import DEFAULT_BINARY, DEFAULT_ROOT, Runc, RuncError

SHIM_PID_FILE = "shim.pid"
INIT_PID_FILE = "init.pid"
EXIT_FILE = "exit.json"
DEFAULT_LOG_FILE = "container-json.log"
STDIN_FIFO = "stdin"
SHIM_LOG_FILE = "shim.log"
ATTACH_SOCKET = "attach.sock"
ATTACH_STDIN = "i"
ATTACH_OUTPUT = "o"
ATTACH_RESIZE = "r"
STREAM_IDS: dict[Stream, int] = {"stdout": 1, "stderr": 2}

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_READ_CHUNK_BYTES = 32 * 1024
_MAX_REPORT_BYTES = 64 * 1024
# After the init exits, its pid namespace is gone and the pipes reach EOF at once; the
# bound only matters for a container sharing the host pid namespace.
_DRAIN_TIMEOUT_S = 5.0


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
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ExitStatus(128 + sig, sig, False, finished_at)
    return ExitStatus(os.waitstatus_to_exitcode(status), None, False, finished_at)


def load_exit_status(state_dir: Path) -> ExitStatus | None:
    try:
        data = json.loads((state_dir / EXIT_FILE).read_text())
    except FileNotFoundError:
        return None
    return ExitStatus.from_json(data)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def _is_our_shim(pid: int, state_dir: Path) -> bool:
    """True if `pid` is alive and is the shim of `state_dir` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return os.fsencode(str(state_dir)) in cmdline


def shim_running(state_dir: Path) -> bool:
    pid = read_pid_file(state_dir / SHIM_PID_FILE)
    return pid is not None and _is_our_shim(pid, state_dir)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- the shim process -----------------------------------------------------------------


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise ShimError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def _report(report_fd: int | None, payload: dict[str, Any]) -> None:
    """Tell the launcher how the start went; a vanished launcher is not an error."""
    if report_fd is None:
        return
    # EPIPE means the daemon died; it reconnects through the state dir.
    with contextlib.suppress(OSError):
        os.write(report_fd, json.dumps(payload).encode() + b"\n")


def attach_socket_path(dir_fd: int) -> str:
    """`attach.sock` of the state dir open as `dir_fd`, by a path that fits in sun_path."""
    return f"/proc/self/fd/{dir_fd}/{ATTACH_SOCKET}"


def frame_output(stream: Stream, data: bytes) -> bytes:
    return bytes((STREAM_IDS[stream], 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class _StdinSink:
    """The container's stdin (pipe or pty master dup), shared by the FIFO and attach clients."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                pass  # the container closed its stdin or exited

    def close(self) -> None:
        # Closing the pipe gives the container EOF; closing our dup of a pty master does not
        # hang up the terminal (the output copier still holds the master).
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Attachments:
    """The attach clients of one container (see the module docstring)."""

    def __init__(self, *, tty: bool, stdin_once: bool, stdin: _StdinSink | None) -> None:
        self._tty = tty
        self._stdin_once = stdin_once
        self._stdin = stdin
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._closed = False
        self.resize_fd: int | None = None

    def add(self, sock: socket.socket, mode: str) -> None:
        """Register `sock` for output now, then serve its input on a thread."""
        if mode not in (ATTACH_STDIN, ATTACH_OUTPUT):
            sock.close()
            return
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._clients.append(sock)
        threading.Thread(target=self._read_input, args=(sock, mode), daemon=True).start()

    def _read_input(self, sock: socket.socket, mode: str) -> None:
        while True:
            try:
                data = sock.recv(_READ_CHUNK_BYTES)
            except OSError:
                return  # shut down by us (drop or exit): not the client's EOF
            if not data:
                break
            if mode == ATTACH_STDIN and self._stdin is not None:
                self._stdin.write(data)
        if mode == ATTACH_STDIN and self._stdin is not None and self._stdin_once and not self._tty:
            self._stdin.close()

    def serve(self, conn: socket.socket) -> None:
        """A connection on attach.sock: read its mode byte, then attach or resize."""
        try:
            conn.settimeout(10.0)
            mode = conn.recv(1).decode("latin-1")
            if mode == ATTACH_RESIZE:
                line = b""
                while not line.endswith(b"\n") and len(line) < 64:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    line += chunk
                rows, cols = (int(v) for v in line.split()[:2])
                self._resize(rows, cols)
                conn.sendall(b"ok\n")
                conn.close()
                return
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()
            return
        self.add(conn, mode)

    def _resize(self, rows: int, cols: int) -> None:
        with self._lock:
            if self.resize_fd is not None and not self._closed:
                fcntl.ioctl(
                    self.resize_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0)
                )

    def accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the container is gone
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def broadcast(self, stream: Stream, data: bytes) -> None:
        framed = frame_output(stream, data)
        with self._lock:
            for sock in list(self._clients):
                try:
                    sock.sendall(framed)
                except OSError:  # EPIPE/ECONNRESET: that client is gone
                    self._clients.remove(sock)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close_all(self) -> None:
        """End every client (EOF after the last output); later clients are refused."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
            if self.resize_fd is not None:
                os.close(self.resize_fd)
                self.resize_fd = None
        for sock in clients:
            # shutdown, not close: the client's input thread may still be in recv on it.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _copy_output(
    sources: Sequence[tuple[int, Stream]],
    log_fd: int,
    on_output: Callable[[Stream, bytes], None] | None = None,
) -> None:
    """Copy container output into the json-file log (and to `on_output`) until every source
    reaches EOF."""
    priority = {fd: i for i, (fd, _) in enumerate(sources)}
    streams = dict(sources)
    splitters = {fd: LineSplitter() for fd, _ in sources}
    poller = select.poll()
    for fd, _ in sources:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_fds = set(streams)
    while open_fds:
        events = sorted(poller.poll(), key=lambda ev: priority[ev[0]])
        for fd, _ in events:
            try:
                data = os.read(fd, _READ_CHUNK_BYTES)
            except OSError:  # EIO: every holder of the pty's slave side is gone.
                data = b""
            now_ns = time.time_ns()
            if data and on_output is not None:
                on_output(streams[fd], data)
            lines = splitters[fd].feed(data) if data else splitters[fd].finish()
            for line in lines:
                os.write(log_fd, encode_entry(line, streams[fd], now_ns))
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                os.close(fd)


def _copy_stdin(fifo_fd: int, sink: _StdinSink) -> None:
    """FIFO -> container stdin; EOF is passed on when the first writer closes the FIFO."""
    poller = select.poll()
    poller.register(fifo_fd, select.POLLIN | select.POLLHUP)
    try:
        while True:
            poller.poll()
            try:
                data = os.read(fifo_fd, _READ_CHUNK_BYTES)
            except BlockingIOError:
                continue
            if not data:
                break
            sink.write(data)
    except OSError:
        pass
    finally:
        os.close(fifo_fd)
        sink.close()


def _receive_pty_master(listener: socket.socket) -> int:
    """Accept runc's connection on the console socket and take the pty master fd."""
    listener.settimeout(10.0)
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise ShimError("runc sent no pty master on the console socket")
    return fds[0]


def _reap_until(init_pid: int) -> int:
    """Reap every child (orphans are reparented to us) until the init exits; its status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == init_pid:
            return status


async def _run(
    cfg: ShimConfig, report_fd: int | None, attach_fds: Sequence[tuple[int, str]] = ()
) -> int:
    runc = Runc(cfg.runc_root, cfg.runc_binary)
    state_dir = cfg.state_dir
    pid_file = state_dir / INIT_PID_FILE
    log_fd = os.open(cfg.json_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    container_fds: list[int] = []  # our copies of the container's ends, closed after create
    outputs: list[tuple[int, Stream]] = []
    stdin_fifo_fd: int | None = None
    stdin_target_fd: int | None = None
    console_dir: str | None = None
    listener: socket.socket | None = None
    create_kw: dict[str, Any] = {}

    if cfg.stdin:
        fifo = state_dir / STDIN_FIFO
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        # Non-blocking so the open does not wait for a writer; reads are driven by poll.
        stdin_fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    if cfg.tty:
        # A short path: sun_path holds 108 bytes and state dirs can be long.
        console_dir = tempfile.mkdtemp(prefix="dockyard-console-")
        console_path = Path(console_dir) / "sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(console_path))
        listener.listen(1)
        create_kw["console_socket"] = console_path
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        outputs = [(out_r, "stdout"), (err_r, "stderr")]
        container_fds += [out_w, err_w]
        create_kw.update(stdout=out_w, stderr=err_w)
        if stdin_fifo_fd is not None:
            in_r, in_w = os.pipe()
            container_fds.append(in_r)
            stdin_target_fd = in_w
            create_kw["stdin"] = in_r

    def fail(message: str) -> int:
        status = ExitStatus(-1, None, False, format_rfc3339nano(time.time_ns()), message)
        _write_atomic(state_dir / EXIT_FILE, json.dumps(status.to_json()).encode())
        _report(report_fd, {"status": "failed", "error": message})
        return 1

    try:
        try:
            await runc.create(cfg.container_id, cfg.bundle, pid_file=pid_file, **create_kw)
        except RuncError as e:
            # runc printed its error into the container's stderr too; that is not output.
            # runc cleans up after a failed create; the forced delete covers a partial one.
            with contextlib.suppress(RuncError):
                await runc.delete(cfg.container_id, force=True)
            return fail(e.message)
        finally:
            for fd in container_fds:
                os.close(fd)
        init_pid = read_pid_file(pid_file)
        if init_pid is None:
            await runc.delete(cfg.container_id, force=True)
            return fail("runc create wrote no pid file")
        resize_fd: int | None = None
        if listener is not None:
            master = _receive_pty_master(listener)
            outputs = [(master, "stdout")]
            resize_fd = os.dup(master)
            if cfg.console_size is not None:
                # Docker's ConsoleSize: the terminal has the client's size before the start.
                rows, cols = cfg.console_size
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            if stdin_fifo_fd is not None:
                stdin_target_fd = os.dup(master)
        sink = _StdinSink(stdin_target_fd) if stdin_target_fd is not None else None
        attachments = _Attachments(tty=cfg.tty, stdin_once=cfg.stdin_once, stdin=sink)
        attachments.resize_fd = resize_fd
        # Clients handed over at launch are registered before the first output is read.
        for fd, mode in attach_fds:
            attachments.add(socket.socket(fileno=fd), mode)
        attach_listener = _bind_attach_socket(state_dir)
        threading.Thread(
            target=attachments.accept_loop, args=(attach_listener,), daemon=True
        ).start()
        copier = threading.Thread(
            target=_copy_output, args=(outputs, log_fd, attachments.broadcast), daemon=True
        )
        copier.start()
        if stdin_fifo_fd is not None and sink is not None:
            threading.Thread(target=_copy_stdin, args=(stdin_fifo_fd, sink), daemon=True).start()
        try:
            await runc.start(cfg.container_id)
        except RuncError as e:
            await runc.delete(cfg.container_id, force=True)
            await asyncio.to_thread(_reap_until, init_pid)
            attachments.close_all()
            return fail(e.message)
        _report(report_fd, {"status": "running", "init_pid": init_pid, "shim_pid": os.getpid()})
        status = await asyncio.to_thread(_reap_until, init_pid)
        finished_at = format_rfc3339nano(time.time_ns())
        copier.join(_DRAIN_TIMEOUT_S)
        attachments.close_all()
        # Closing a listening socket does not wake a thread blocked in accept(); shutdown does.
        with contextlib.suppress(OSError):
            attach_listener.shutdown(socket.SHUT_RDWR)
        attach_listener.close()
        exit_status = exit_status_from_wait(status, finished_at)
        _write_atomic(state_dir / EXIT_FILE, json.dumps(exit_status.to_json()).encode())
        await runc.delete(cfg.container_id, force=True)
        return 0
    finally:
        os.close(log_fd)
        if listener is not None:
            listener.close()
        if console_dir is not None:
            for leftover in Path(console_dir).iterdir():
                leftover.unlink()
            os.rmdir(console_dir)


def _bind_attach_socket(state_dir: Path) -> socket.socket:
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        path = attach_socket_path(dir_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # root's only, like the daemon's socket
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(16)
        return sock
    finally:
        os.close(dir_fd)


def _parse_size(text: str) -> tuple[int, int]:
    rows, _, cols = text.partition("x")
    return int(rows), int(cols)


def _parse_attach_fd(text: str) -> tuple[int, str]:
    fd, _, mode = text.partition(":")
    return int(fd), mode or ATTACH_OUTPUT


def _parse_args(
    argv: Sequence[str],
) -> tuple[ShimConfig, int | None, bool, list[tuple[int, str]]]:
    parser = argparse.ArgumentParser(prog="python -m dockyard.engine.runtime.shim")
    parser.add_argument("--id", required=True)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--runc-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--runc-binary", default=DEFAULT_BINARY)
    parser.add_argument("--log-path", type=Path)
    parser.add_argument("--tty", action="store_true")
    parser.add_argument("--stdin", action="store_true")
    parser.add_argument("--stdin-once", action="store_true")
    parser.add_argument("--console-size")
    parser.add_argument("--attach-fd", action="append", type=_parse_attach_fd, default=[])
    parser.add_argument("--report-fd", type=int)
    parser.add_argument("--daemonize", action="store_true")
    ns = parser.parse_args(argv)
    cfg = ShimConfig(
        container_id=ns.id,
        bundle=ns.bundle,
        state_dir=ns.state_dir,
        runc_root=ns.runc_root,
        runc_binary=ns.runc_binary,
        tty=ns.tty,
        stdin=ns.stdin,
        stdin_once=ns.stdin_once,
        log_path=ns.log_path,
        console_size=_parse_size(ns.console_size) if ns.console_size else None,
    )
    return cfg, ns.report_fd, ns.daemonize, list(ns.attach_fd)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, report_fd, daemonize, attach_fds = _parse_args(sys.argv[1:] if argv is None else argv)
    if daemonize and os.fork() != 0:
        # The intermediate exits at once so the launcher reaps it and the shim is
        # reparented away from the daemon (double fork).
        os._exit(0)
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(cfg.state_dir / SHIM_PID_FILE, f"{os.getpid()}\n".encode())
    try:
        _set_child_subreaper()
        return asyncio.run(_run(cfg, report_fd, attach_fds))
    except Exception as e:
        _report(report_fd, {"status": "failed", "error": f"shim: {e}", "shim_error": True})
        raise


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
        while True:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                await _wait_readable(fd)
                continue
            if not data:
                break
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


async def _read_report(fd: int, timeout_s: float) -> dict[str, Any] | None:
    buf = bytearray()
    async with asyncio.timeout(timeout_s):
        while b"\n" not in buf:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                await _wait_readable(fd)
                continue
            if not data:
                return None
            buf += data
            if len(buf) > _MAX_REPORT_BYTES:
                raise ShimError("shim report too long")
    line = bytes(buf).split(b"\n", 1)[0]
    report: dict[str, Any] = json.loads(line)
    return report


async def start_shim(
    config: ShimConfig,
    *,
    python: str = sys.executable,
    timeout_s: float = 60.0,
    attach_fds: Sequence[tuple[int, str]] = (),
) -> ShimHandle:
    """Spawn a detached shim; return once the container runs, or raise `RuncError`.

    The launcher keeps only the read end of the notify pipe; killing the launcher (even
    with SIGKILL) leaves the shim and the container running. `attach_fds` are (socket fd,
    mode) attach clients the shim inherits; the caller still owns (and closes) its copies.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        with open(config.state_dir / SHIM_LOG_FILE, "ab") as shim_log:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "dockyard.engine.runtime.shim",
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
        os.close(write_fd)
        write_fd = -1
        if await proc.wait() != 0:
            raise ShimError(f"shim launcher exited with {proc.returncode}")
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
