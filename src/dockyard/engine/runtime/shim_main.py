"""The shim process: what `start_shim` launches, one per container (see `shim.py`).

Role: runs `runc create` + `runc start`, copies the container's output into its json-file
log and to attach clients, reaps the init, writes `exit.json`, runs `runc delete` and exits.
The protocol, the state dir contract and the invariants are documented in `shim.py`; this
module is only the process.

Rules (startup cost is part of every `docker run`; the shim is started with `python -I -S`):
- Import nothing heavy: no asyncio, dataclasses, pathlib, argparse, tempfile or typing at
  run time, and nothing of dockyard but the lean `logfile` and `runccli` modules. The
  `dockyard.engine.runtime` package `__init__` imports lazily for the same reason.
- Blocking I/O only: runc runs via `runccli.run_runc` (posix_spawn + waitpid of that pid),
  output and attach clients are served by threads.
"""

from __future__ import annotations

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
import termios
import threading
import time

from dockyard.engine.runtime.logfile import LineSplitter, encode_entry, format_rfc3339nano
from dockyard.engine.runtime.runccli import (
    DEFAULT_BINARY,
    DEFAULT_ROOT_DIR,
    RuncError,
    run_runc,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from dockyard.engine.runtime.logfile import Stream

SHIM_PID_FILE = "shim.pid"
INIT_PID_FILE = "init.pid"
EXIT_FILE = "exit.json"
DEFAULT_LOG_FILE = "container-json.log"
STDIN_FIFO = "stdin"
SHIM_LOG_FILE = "shim.log"
ATTACH_SOCKET = "attach.sock"
RUNC_CREATE_LOG_FILE = "runc-create.log"
ATTACH_STDIN = "i"
ATTACH_OUTPUT = "o"
ATTACH_RESIZE = "r"
STREAM_IDS: dict[Stream, int] = {"stdout": 1, "stderr": 2}

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_READ_CHUNK_BYTES = 32 * 1024
# After the init exits, its pid namespace is gone and the pipes reach EOF at once; the
# bound only matters for a container sharing the host pid namespace.
_DRAIN_TIMEOUT_S = 5.0


class ShimOptions:
    """The shim's command line (written by `ShimConfig.to_argv` plus the launch options)."""

    def __init__(self) -> None:
        self.container_id = ""
        self.bundle = ""
        self.state_dir = ""
        self.runc_root = DEFAULT_ROOT_DIR
        self.runc_binary = DEFAULT_BINARY
        self.log_path = ""
        self.tty = False
        self.stdin = False
        self.stdin_once = False
        self.console_size: tuple[int, int] | None = None
        self.attach_fds: list[tuple[int, str]] = []
        self.report_fd: int | None = None
        self.daemonize = False


def exit_record(
    exit_code: int,
    signal_number: int | None,
    finished_at: str,
    error: str | None = None,
    *,
    oom_killed: bool = False,
) -> dict[str, Any]:
    """The JSON object of `exit.json` (read back by `shim.ExitStatus.from_json`)."""
    return {
        "exit_code": exit_code,
        "signal": signal_number,
        "oom_killed": oom_killed,
        "finished_at": finished_at,
        "error": error,
    }


def exit_record_from_wait(
    status: int, finished_at: str, *, oom_killed: bool = False
) -> dict[str, Any]:
    """Map a `waitpid` status to Docker's exit code convention (128+n after signal n)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return exit_record(128 + sig, sig, finished_at, oom_killed=oom_killed)
    return exit_record(os.waitstatus_to_exitcode(status), None, finished_at, oom_killed=oom_killed)


def memory_cgroup_dir(proc_cgroup: str, *, v1_root: str, v2_root: str | None) -> str | None:
    """The memory cgroup directory of a process, from its /proc/<pid>/cgroup text.

    The v1 memory hierarchy wins on a hybrid host (it holds the limit); otherwise the v2
    path under `v2_root` (None when the host has no unified hierarchy at the root).
    """
    unified: str | None = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return v1_root + path.rstrip("/")
        if hierarchy == "0" and not controllers:
            unified = path
    if unified is not None and v2_root is not None:
        return v2_root + unified.rstrip("/")
    return None


def parse_oom_kill(text: str) -> int | None:
    """The `oom_kill N` counter of memory.oom_control (v1) or memory.events (v2)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def oom_kill_count(cgroup_dir: str | None) -> int | None:
    """The cgroup's OOM kill counter now; None when it cannot be read (no cgroup, old kernel)."""
    if cgroup_dir is None:
        return None
    for name in ("memory.oom_control", "memory.events"):
        try:
            with open(os.path.join(cgroup_dir, name)) as f:
                count = parse_oom_kill(f.read())
        except OSError:
            continue
        if count is not None:
            return count
    return None


def _container_memory_cgroup(init_pid: int) -> str | None:
    try:
        with open(f"/proc/{init_pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    unified = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else None
    return memory_cgroup_dir(text, v1_root="/sys/fs/cgroup/memory", v2_root=unified)


def read_pid_file(path: str | os.PathLike[str]) -> int | None:
    """The pid of a pid file (runc's `<pid>`, or the shim's `<pid> <start time>`)."""
    fields = _pid_file_fields(path)
    return int(fields[0]) if fields else None


def _pid_file_fields(path: str | os.PathLike[str]) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.
    With the pid it names one process for good (a reused pid has a later start). None when
    there is no such process, or only its zombie (it has exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is parenthesized and may hold spaces: split after it.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def pid_file_process_alive(path: str | os.PathLike[str]) -> bool | None:
    """For a `<pid> <start time>` file: whether that very process is alive. None when the
    file has no start time (then the caller must identify the process another way)."""
    fields = _pid_file_fields(path)
    if len(fields) < 2:
        return None
    pid = int(fields[0])
    if process_start_ticks(pid) != int(fields[1]):
        return False
    # An exiting process drops its memory (empty cmdline) before it closes its fds: the
    # shim's notify pipe reads EOF only after this says "gone", never before.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def write_atomic(path: str, data: bytes) -> None:
    """Write `path` via a temp file and a rename: a reader (a restarting daemon) sees the
    old file or the whole new one. Not fsynced: the state dir is runtime state (the exec
    root, /run by default) that does not outlive the machine, and a machine crash ends the
    containers too; an fsync here cost ~10 ms on every start and exit."""
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


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
        raise OSError("runc sent no pty master on the console socket")
    return fds[0]


def _reap_until(init_pid: int) -> int:
    """Reap every child (orphans are reparented to us) until the init exits; its status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == init_pid:
            return status


def _make_console_dir() -> str:
    """A private directory with a short path: sun_path holds 108 bytes, state dirs are long."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"dockyard-console-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free console directory name under {base}")


def _run(opts: ShimOptions) -> int:
    runc_args = (opts.runc_binary, opts.runc_root)
    state_dir = opts.state_dir
    report_fd = opts.report_fd
    pid_file = os.path.join(state_dir, INIT_PID_FILE)
    log_fd = os.open(opts.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    container_fds: list[int] = []  # our copies of the container's ends, closed after create
    outputs: list[tuple[int, Stream]] = []
    stdin_fifo_fd: int | None = None
    stdin_target_fd: int | None = None
    console_dir: str | None = None
    listener: socket.socket | None = None
    console_args: list[str] = []
    create_stdio: tuple[int | None, int | None, int | None] = (None, None, None)

    if opts.stdin:
        fifo = os.path.join(state_dir, STDIN_FIFO)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        os.mkfifo(fifo, 0o600)
        # Non-blocking so the open does not wait for a writer; reads are driven by poll.
        stdin_fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    if opts.tty:
        console_dir = _make_console_dir()
        console_path = os.path.join(console_dir, "sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(console_path)
        listener.listen(1)
        console_args = ["--console-socket", console_path]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        outputs = [(out_r, "stdout"), (err_r, "stderr")]
        container_fds += [out_w, err_w]
        in_r: int | None = None
        if stdin_fifo_fd is not None:
            in_r, in_w = os.pipe()
            container_fds.append(in_r)
            stdin_target_fd = in_w
        create_stdio = (in_r, out_w, err_w)

    def fail(message: str) -> int:
        record = exit_record(-1, None, format_rfc3339nano(time.time_ns()), message)
        write_atomic(os.path.join(state_dir, EXIT_FILE), json.dumps(record).encode())
        _report(report_fd, {"status": "failed", "error": message})
        return 1

    def delete() -> None:
        run_runc(*runc_args, "delete", "--force", opts.container_id)

    try:
        create_log = os.path.join(state_dir, RUNC_CREATE_LOG_FILE)
        try:
            run_runc(
                *runc_args,
                "create", "--bundle", opts.bundle, "--pid-file", pid_file,
                *console_args, opts.container_id,
                stdin=create_stdio[0], stdout=create_stdio[1], stderr=create_stdio[2],
                log_path=create_log,
            )  # fmt: skip
        except RuncError as e:
            # runc printed its error into the container's stderr too; that is not output.
            # runc cleans up after a failed create; the forced delete covers a partial one.
            with contextlib.suppress(RuncError):
                delete()
            return fail(e.message)
        finally:
            for fd in container_fds:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(create_log)
        init_pid = read_pid_file(pid_file)
        if init_pid is None:
            delete()
            return fail("runc create wrote no pid file")
        # Before the start: the container's own code has not run yet, so any OOM kill
        # counted from here on is the container's.
        memory_cgroup = _container_memory_cgroup(init_pid)
        oom_kills_before = oom_kill_count(memory_cgroup)
        resize_fd: int | None = None
        if listener is not None:
            master = _receive_pty_master(listener)
            outputs = [(master, "stdout")]
            resize_fd = os.dup(master)
            if opts.console_size is not None:
                # Docker's ConsoleSize: the terminal has the client's size before the start.
                rows, cols = opts.console_size
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            if stdin_fifo_fd is not None:
                stdin_target_fd = os.dup(master)
        sink = _StdinSink(stdin_target_fd) if stdin_target_fd is not None else None
        attachments = _Attachments(tty=opts.tty, stdin_once=opts.stdin_once, stdin=sink)
        attachments.resize_fd = resize_fd
        # Clients handed over at launch are registered before the first output is read.
        for fd, mode in opts.attach_fds:
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
            run_runc(*runc_args, "start", opts.container_id)
        except RuncError as e:
            delete()
            _reap_until(init_pid)
            attachments.close_all()
            return fail(e.message)
        _report(report_fd, {"status": "running", "init_pid": init_pid, "shim_pid": os.getpid()})
        status = _reap_until(init_pid)
        finished_at = format_rfc3339nano(time.time_ns())
        copier.join(_DRAIN_TIMEOUT_S)
        attachments.close_all()
        # Closing a listening socket does not wake a thread blocked in accept(); shutdown does.
        with contextlib.suppress(OSError):
            attach_listener.shutdown(socket.SHUT_RDWR)
        attach_listener.close()
        oom_kills_after = oom_kill_count(memory_cgroup)  # the cgroup lives until delete()
        oom_killed = (
            oom_kills_before is not None
            and oom_kills_after is not None
            and oom_kills_after > oom_kills_before
        )
        record = exit_record_from_wait(status, finished_at, oom_killed=oom_killed)
        write_atomic(os.path.join(state_dir, EXIT_FILE), json.dumps(record).encode())
        delete()
        return 0
    finally:
        os.close(log_fd)
        if listener is not None:
            listener.close()
        if console_dir is not None:
            for leftover in os.listdir(console_dir):
                os.unlink(os.path.join(console_dir, leftover))
            os.rmdir(console_dir)


def _bind_attach_socket(state_dir: str) -> socket.socket:
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


_USAGE = (
    "usage: python -m dockyard.engine.runtime.shim_main --id ID --bundle DIR --state-dir DIR ..."
)
_FLAGS = {
    "--tty": "tty",
    "--stdin": "stdin",
    "--stdin-once": "stdin_once",
    "--daemonize": "daemonize",
}
_VALUE_OPTIONS = frozenset(
    ("--id", "--bundle", "--state-dir", "--runc-root", "--runc-binary", "--log-path",
     "--console-size", "--attach-fd", "--report-fd")
)  # fmt: skip


class UsageError(Exception):
    pass


def _set_option(opts: ShimOptions, name: str, value: str) -> None:
    if name == "--id":
        opts.container_id = value
    elif name == "--bundle":
        opts.bundle = value
    elif name == "--state-dir":
        opts.state_dir = value
    elif name == "--runc-root":
        opts.runc_root = value
    elif name == "--runc-binary":
        opts.runc_binary = value
    elif name == "--log-path":
        opts.log_path = value
    elif name == "--console-size":
        rows, _, cols = value.partition("x")
        opts.console_size = (int(rows), int(cols))
    elif name == "--attach-fd":
        fd, _, mode = value.partition(":")
        opts.attach_fds.append((int(fd), mode or ATTACH_OUTPUT))
    elif name == "--report-fd":
        opts.report_fd = int(value)


def parse_args(argv: Sequence[str]) -> ShimOptions:
    """`--name value`, `--name=value` and flags; no argparse (its import costs milliseconds)."""
    opts = ShimOptions()
    args = list(argv)
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        i += 1
        if name in _FLAGS and not eq:
            setattr(opts, _FLAGS[name], True)
        elif name in _VALUE_OPTIONS:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"{name} needs a value")
                value = args[i]
                i += 1
            try:
                _set_option(opts, name, value)
            except ValueError:
                raise UsageError(f"bad value for {name}: {value!r}") from None
        else:
            raise UsageError(f"unknown argument {args[i - 1]!r}")
    for name, given in (("--id", opts.container_id), ("--bundle", opts.bundle),
                        ("--state-dir", opts.state_dir)):  # fmt: skip
        if not given:
            raise UsageError(f"{name} is required")
    if not opts.log_path:
        opts.log_path = os.path.join(opts.state_dir, DEFAULT_LOG_FILE)
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{_USAGE}\nerror: {e}", file=sys.stderr)
        return 2
    # Inherited fds stay ours: runc and the container must not hold the notify pipe open.
    for fd in (*(fd for fd, _ in opts.attach_fds), *([opts.report_fd] if opts.report_fd else [])):
        os.set_inheritable(fd, False)
    if opts.daemonize and os.fork() != 0:
        # The intermediate exits at once so the launcher reaps it and the shim is
        # reparented away from the daemon (double fork).
        os._exit(0)
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    os.makedirs(opts.state_dir, exist_ok=True)
    # With its start time: a shim forked by the zygote shares the zygote's command line, so
    # the pid and start time are what identify it later (shim.py `_is_our_shim`).
    pid = os.getpid()
    identity = f"{pid} {process_start_ticks(pid)}\n"
    write_atomic(os.path.join(opts.state_dir, SHIM_PID_FILE), identity.encode())
    try:
        _set_child_subreaper()
        return _run(opts)
    except Exception as e:
        _report(opts.report_fd, {"status": "failed", "error": f"shim: {e}", "shim_error": True})
        raise


if __name__ == "__main__":
    sys.exit(main())
