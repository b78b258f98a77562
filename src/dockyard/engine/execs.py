"""`docker exec`: exec instances and the `runc exec` processes behind them.

Role: keep the exec instances of each container (create, start, inspect, resize) and run
each one with `runc exec`, which joins every namespace and the cgroup of the container's
init. The process JSON comes from the container's bundle (model/exec_process.py).

Invariants:
- An instance starts at most once; a start on a container that is not running is a 409.
- Without Detach, the exec's `runc exec` is a child of the daemon, run by a task this
  module owns (not the client's): a client that leaves does not lose the exit code, and
  the output pipes are drained to their end. The exit code is recorded before the client's
  stream is closed, so the CLI's `GET /exec/{id}/json` right after EOF sees it.
- With Detach, `runc exec --detach` returns once the process started; Running is then
  whether its pid is alive, and the exit code is not known (None).
- Instances are dropped with their container, and each container keeps at most
  `MAX_EXECS_PER_CONTAINER` (the oldest finished ones go first).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import struct
import tempfile
import termios
import tty
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.engine.containers import (
    Conflict,
    ContainerRecord,
    EngineError,
    InvalidArgument,
    NotFound,
)
from dockyard.engine.model import exec_process as xp
from dockyard.engine.model.attach import InvalidDetachKeys, parse_detach_keys
from dockyard.engine.runtime.runc import Runc, RuncError

MAX_EXECS_PER_CONTAINER = 256
READ_CHUNK_BYTES = 65536
# How often held output looks for the exec's pid file (see _StartGate).
PID_FILE_POLL_S = 0.005

Sink = Callable[[str, bytes], Awaitable[None]]
# (container ID, action, extra attributes): the engine's container event (events.py).
EmitFn = Callable[[str, str, Mapping[str, str] | None], None]


@dataclass(eq=False)
class ExecInstance:
    id: str
    container_id: str
    config: xp.ExecConfig
    started: bool = False
    running: bool = False
    detached: bool = False
    exit_code: int | None = None
    pid: int = 0
    pid_file: Path | None = None
    master_fd: int = -1  # our pty's master (runc's stdio) while a TTY exec runs
    stdin_fd: int = -1  # our end of the process's stdin pipe, until EOF
    task: asyncio.Task[None] | None = None
    # Set once client input can be written (the stdin pipe or the pty master exists).
    io_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def current_pid(self) -> int:
        if not self.pid and self.pid_file is not None:
            with contextlib.suppress(OSError, ValueError):
                self.pid = int(self.pid_file.read_text().strip())
        return self.pid

    def is_running(self) -> bool:
        if self.detached and self.running:
            self.running = Path(f"/proc/{self.current_pid()}").exists()
        return self.running


@dataclass
class ExecDriver:
    runc: Runc
    bundle_dir: Callable[[str], Path]
    rootfs_dir: Callable[[str], Path]
    new_id: Callable[[], str]
    emit: EmitFn | None = None
    _by_id: dict[str, ExecInstance] = field(default_factory=dict)

    # -- instances ------------------------------------------------------------------------

    def ids_of(self, cid: str) -> list[str]:
        return [i.id for i in self._by_id.values() if i.container_id == cid]

    def running_ids_of(self, cid: str) -> list[str]:
        return [i.id for i in self._by_id.values() if i.container_id == cid and i.is_running()]

    def get(self, exec_id: str) -> ExecInstance:
        inst = self._by_id.get(exec_id)
        if inst is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return inst

    def forget_container(self, cid: str) -> None:
        for inst in [i for i in self._by_id.values() if i.container_id == cid]:
            del self._by_id[inst.id]

    def create(self, ref: str, record: ContainerRecord, body: Mapping[str, Any]) -> ExecInstance:
        if record.state.paused:  # moby daemon/exec.go getActiveContainer: the name as given
            raise Conflict(f"Container {ref} is paused, unpause the container before exec")
        _check_running(record)
        cmd = tuple(str(c) for c in (body.get("Cmd") or ()))
        if not cmd:
            raise InvalidArgument("No exec command specified")
        keys = str(body.get("DetachKeys") or "")
        try:
            parse_detach_keys(keys)
        except InvalidDetachKeys as e:
            raise InvalidArgument(str(e)) from None
        config = xp.ExecConfig(
            cmd=cmd,
            env=tuple(str(e) for e in (body.get("Env") or ())),
            working_dir=str(body.get("WorkingDir") or ""),
            user=str(body.get("User") or ""),
            tty=bool(body.get("Tty")),
            privileged=bool(body.get("Privileged")),
            attach_stdin=bool(body.get("AttachStdin")),
            attach_stdout=bool(body.get("AttachStdout")),
            attach_stderr=bool(body.get("AttachStderr")),
            detach_keys=keys,
        )
        self._trim(record.id)
        inst = ExecInstance(self.new_id(), record.id, config)
        self._by_id[inst.id] = inst
        self._event(inst, "exec_create")
        return inst

    def _event(self, inst: ExecInstance, kind: str, extra: Mapping[str, str] | None = None) -> None:
        # moby daemon/exec.go: the action names the command (`exec_start: sh -c true`).
        if self.emit is not None:
            action = f"{kind}: {inst.config.cmd[0]} {' '.join(inst.config.cmd[1:])}"
            if kind == "exec_die":
                action = kind
            self.emit(inst.container_id, action, {"execID": inst.id, **(extra or {})})

    def _trim(self, cid: str) -> None:
        mine = [i for i in self._by_id.values() if i.container_id == cid]
        for inst in mine[: max(0, len(mine) - MAX_EXECS_PER_CONTAINER + 1)]:
            if not inst.is_running() and inst.started:
                del self._by_id[inst.id]

    def check_startable(self, inst: ExecInstance, record: ContainerRecord) -> None:
        if inst.started:
            raise Conflict(f"Error: Exec command {inst.id} has already run")
        _check_running(record)

    def _process(self, inst: ExecInstance) -> dict[str, Any]:
        spec = json.loads((self.bundle_dir(inst.container_id) / "config.json").read_text())
        etc = self.rootfs_dir(inst.container_id) / "etc"
        texts = []
        for name in ("passwd", "group"):
            try:
                texts.append((etc / name).read_text(errors="replace"))
            except OSError:
                texts.append("")
        mask = xp.parse_cap_bounding(Path("/proc/self/status").read_text())
        try:
            return xp.exec_process(
                spec["process"], inst.config, passwd=texts[0], group=texts[1], bounding_mask=mask
            )
        except xp.ExecUserError as e:
            raise InvalidArgument(str(e)) from None

    def _begin(self, inst: ExecInstance, state_dir: Path) -> dict[str, Any]:
        process = self._process(inst)
        inst.started = inst.running = True
        inst.pid_file = state_dir / "pid"
        self._event(inst, "exec_start")
        return process

    # -- start ----------------------------------------------------------------------------

    async def start_detached(self, inst: ExecInstance) -> None:
        state_dir = Path(tempfile.mkdtemp(prefix="dockyard-exec-"))
        try:
            process = self._begin(inst, state_dir)
            inst.detached = True
            try:
                await self.runc.exec(
                    inst.container_id, process, detach=True, pid_file=inst.pid_file
                )
            except RuncError as e:
                inst.running = False
                inst.exit_code = xp.start_error_exit_code(e.message)
                raise InvalidArgument(xp.docker_exec_error(e.message)) from None
            inst.current_pid()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)

    async def run_attached(
        self, inst: ExecInstance, sink: Sink, client_gone: asyncio.Event
    ) -> None:
        """Run the exec, passing its output to `sink`; return when it ended and its output
        was drained, or as soon as `client_gone` is set (the exec then goes on alone)."""
        state_dir = Path(tempfile.mkdtemp(prefix="dockyard-exec-"))
        try:
            process = self._begin(inst, state_dir)
        except InvalidArgument as e:
            # dockerd resolves the user after the upgrade: the error goes to the stream.
            shutil.rmtree(state_dir, ignore_errors=True)
            inst.started, inst.running = True, False
            inst.exit_code = xp.EXIT_CANNOT_EXECUTE
            inst.io_ready.set()
            await _send(sink, "stdout", (str(e) + "\r\n").encode())
            return
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        output_done = asyncio.Event()
        inst.task = asyncio.create_task(self._run(inst, process, state_dir, sink, output_done))
        waiters = [asyncio.create_task(output_done.wait()), asyncio.create_task(client_gone.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _run(
        self,
        inst: ExecInstance,
        process: dict[str, Any],
        state_dir: Path,
        sink: Sink,
        output_done: asyncio.Event,
    ) -> None:
        gate = _StartGate(inst, sink)
        try:
            if inst.config.tty:
                await self._run_tty(inst, process, gate, sink)
            else:
                await self._run_pipes(inst, process, gate, sink)
        finally:
            gate.close()
            inst.running = False
            if inst.exit_code is None:
                inst.exit_code = xp.EXIT_CANNOT_EXECUTE
            self._event(inst, "exec_die", {"exitCode": str(inst.exit_code)})
            for fd in (inst.master_fd, inst.stdin_fd):
                if fd >= 0:
                    os.close(fd)
            inst.master_fd = inst.stdin_fd = -1
            shutil.rmtree(state_dir, ignore_errors=True)
            inst.io_ready.set()
            output_done.set()

    async def _exec(
        self, inst: ExecInstance, process: dict[str, Any], gate: _StartGate, **kw: Any
    ) -> None:
        """runc exec to the end; the exit code (or the start error, shown to the client)."""
        try:
            inst.exit_code = await self.runc.exec(
                inst.container_id, process, pid_file=inst.pid_file, **kw
            )
        except RuncError as e:
            inst.exit_code = xp.start_error_exit_code(e.message)
            gate.fail()
            raise
        await gate.open()

    async def _run_pipes(
        self, inst: ExecInstance, process: dict[str, Any], gate: _StartGate, sink: Sink
    ) -> None:
        cfg = inst.config
        ours: list[int] = []  # the process's ends, closed once runc has exited
        stdin_r: int | None = None
        if cfg.attach_stdin:
            stdin_r, inst.stdin_fd = os.pipe()
            os.set_blocking(inst.stdin_fd, False)
            ours.append(stdin_r)
        inst.io_ready.set()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours += [out_w, err_w]
        drains = [
            asyncio.create_task(_drain(out_r, "stdout", gate if cfg.attach_stdout else None)),
            asyncio.create_task(_drain(err_r, "stderr", gate if cfg.attach_stderr else None)),
        ]
        error = ""
        try:
            await self._exec(inst, process, gate, stdin=stdin_r, stdout=out_w, stderr=err_w)
        except RuncError as e:
            error = xp.docker_exec_error(e.message)
        finally:
            for fd in ours:
                os.close(fd)
        await asyncio.gather(*drains)
        if error:
            # moby api/server/router/container/exec.go: the error goes to the stream.
            await _send(sink, "stdout", (error + "\r\n").encode())

    async def _run_tty(
        self, inst: ExecInstance, process: dict[str, Any], gate: _StartGate, sink: Sink
    ) -> None:
        # runc allocates the exec's pty only when it stays in the foreground, and then copies
        # between that pty and its own stdio, which must be a terminal for raw mode and
        # resizes: so its stdio is a pty of ours (raw from the start, so nothing is echoed).
        master, slave = os.openpty()
        tty.setraw(slave)
        inst.master_fd = master
        os.set_blocking(master, False)
        inst.io_ready.set()
        wanted = inst.config.attach_stdout or inst.config.attach_stderr
        drain = asyncio.create_task(_drain(os.dup(master), "stdout", gate if wanted else None))
        error = ""
        try:
            await self._exec(inst, process, gate, stdin=slave, stdout=slave, stderr=slave)
        except RuncError as e:
            error = xp.docker_exec_error(e.message)
        finally:
            os.close(slave)
        await drain
        if error:
            await _send(sink, "stdout", (error + "\r\n").encode())

    # -- client input and resize ----------------------------------------------------------

    def input_fd(self, inst: ExecInstance) -> int:
        return inst.master_fd if inst.config.tty else inst.stdin_fd

    def close_stdin(self, inst: ExecInstance) -> None:
        if not inst.config.tty and inst.stdin_fd >= 0:
            os.close(inst.stdin_fd)
            inst.stdin_fd = -1

    def resize(self, exec_id: str, rows: int, cols: int) -> None:
        inst = self.get(exec_id)
        if not inst.config.tty:
            return
        if inst.master_fd < 0:
            raise ExecNotRunning(f"exec {exec_id} is not running")
        size = struct.pack("HHHH", rows, cols, 0, 0)
        # Our pty's size is what runc copies to the exec's pty when it starts; once the
        # process runs, its own terminal (its fd 0) is resized directly.
        fcntl.ioctl(inst.master_fd, termios.TIOCSWINSZ, size)
        pid = inst.current_pid()
        if pid:
            with contextlib.suppress(OSError):
                fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY)
                try:
                    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
                finally:
                    os.close(fd)


def _check_running(record: ContainerRecord) -> None:
    if record.state.restarting:  # moby daemon/exec.go getActiveContainer
        raise Conflict(f"Container {record.id} is restarting, wait until the container is running")
    if not record.state.running:
        raise Conflict(f"Container {record.id} is not running")
    if record.state.paused:
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")


class _StartGate:
    """Holds the exec's output until its process is known to have started.

    runc's stdio is the process's, and a runc that fails to start it (a missing command)
    prints its error there too; dockerd's clients see only dockerd's wording of it. So
    output is passed on once runc wrote the pid file (it does so after the start) or exited
    with the process's status, and dropped if runc failed.
    """

    def __init__(self, inst: ExecInstance, sink: Sink) -> None:
        self._inst = inst
        self._sink = sink
        self._held: list[tuple[str, bytes]] = []
        self._state = "held"  # -> "open" | "failed"
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    async def __call__(self, stream: str, data: bytes) -> None:
        async with self._lock:
            if self._state == "held" and self._inst.current_pid():
                await self._flush()
            if self._state == "open":
                await self._sink(stream, data)
            elif self._state == "held":
                self._held.append((stream, data))
                if self._poller is None:
                    self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        # The pid file has no event to await: look for it while output is held.
        while self._state == "held" and not self._inst.current_pid():
            await asyncio.sleep(PID_FILE_POLL_S)
        async with self._lock:
            if self._state == "held":
                await self._flush()

    async def _flush(self) -> None:
        self._state = "open"
        held, self._held = self._held, []
        for stream, data in held:
            with contextlib.suppress(ConnectionError, OSError):
                await self._sink(stream, data)

    async def open(self) -> None:
        async with self._lock:
            if self._state == "held":
                await self._flush()

    def fail(self) -> None:
        self._state = "failed"
        self._held.clear()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()


class ExecNotRunning(EngineError):
    """A resize of an exec whose process has exited (dockerd answers 500)."""


async def _send(sink: Sink, stream: str, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await sink(stream, data)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


async def _drain(fd: int, stream: str, sink: Sink | None) -> None:
    """Read `fd` to its end (EOF, or EIO from a pty master), passing data to `sink`; closes
    `fd`. A sink that fails (the client left) is dropped, the reading goes on."""
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                data = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                await _readable(fd)
                continue
            except OSError:
                return  # EIO: the pty's slave side is closed
            if not data:
                return
            if sink is not None:
                try:
                    await sink(stream, data)
                except (ConnectionError, OSError):
                    sink = None
    finally:
        os.close(fd)


async def write_all(fd: int, data: bytes) -> None:
    """Write `data` to a non-blocking `fd` (the process's stdin or the pty master)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await _writable(fd)
            continue
        view = view[written:]


__all__ = ["ExecDriver", "ExecInstance", "ExecNotRunning", "write_all"]
