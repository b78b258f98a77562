"""An asyncio driver over the runc CLI.

Role: the daemon's runc driver; its command lines and error parsing come from `runccli.py`
(which the shim process uses directly, without asyncio). Every call runs
`runc --root <root> --log-format json ...` with `asyncio.create_subprocess_exec` and either
returns parsed output or raises `RuncError` carrying runc's own error message.

Invariants:
- Every command carries our `--root` (default `/run/dockyard/runc`), so we never see or
  touch containers of other runc users (containerd keeps its own under `/run/containerd`).
- runc's error text is taken from its JSON log (`--log-format json`): from stderr when we
  capture it, and from a per-call `--log` file for `create`/`exec`, whose stderr belongs
  to the container process (runc hands its own stdio to the container's init).
- The driver holds no state beyond its configuration; it is safe to share between tasks.

It does not reap container processes: whoever runs `create` owns that (see `shim.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal as _signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.engine.runtime.runccli import (
    DEFAULT_BINARY,
    DEFAULT_ROOT_DIR,
    RuncError,
    parse_runc_log,
    runc_argv,
)

__all__ = [
    "DEFAULT_BINARY",
    "DEFAULT_ROOT",
    "Fd",
    "Runc",
    "RuncError",
    "RuncState",
    "parse_runc_log",
]

DEFAULT_ROOT = Path(DEFAULT_ROOT_DIR)


@dataclass(frozen=True)
class RuncState:
    """`runc state <id>` (OCI runtime state, plus runc's extras)."""

    id: str
    pid: int
    status: str  # "creating" | "created" | "running" | "paused" | "stopped"
    bundle: str
    rootfs: str
    created: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RuncState:
        return cls(
            id=str(obj["id"]),
            pid=int(obj.get("pid", 0)),
            status=str(obj["status"]),
            bundle=str(obj.get("bundle", "")),
            rootfs=str(obj.get("rootfs", "")),
            created=str(obj.get("created", "")),
            annotations=dict(obj.get("annotations") or {}),
        )


Fd = int | None


class Runc:
    """runc commands against one state root."""

    def __init__(self, root: Path = DEFAULT_ROOT, binary: str = DEFAULT_BINARY) -> None:
        self.root = Path(root)
        self.binary = binary

    def _argv(self, *args: str, log_path: Path | None = None) -> list[str]:
        log = None if log_path is None else str(log_path)
        return runc_argv(self.binary, str(self.root), *args, log_path=log)

    async def _run(self, *args: str, input_bytes: bytes | None = None) -> bytes:
        """Run a command whose stdout/stderr are ours; raise `RuncError` on failure."""
        argv = self._argv(*args)
        # On a worker thread with subprocess.run, which spawns with vfork: the event loop's
        # own spawn forks the daemon's whole address space for every `runc kill`.
        done = await asyncio.to_thread(
            subprocess.run,
            argv,
            input=input_bytes,
            stdin=subprocess.DEVNULL if input_bytes is None else None,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            text = done.stderr.decode(errors="replace")
            message = parse_runc_log(text) or f"runc exited with status {done.returncode}"
            raise RuncError(argv, done.returncode, message)
        return bytes(done.stdout)

    async def _run_with_stdio(
        self, args: Sequence[str], *, stdin: Fd, stdout: Fd, stderr: Fd
    ) -> int:
        """Run a command whose stdio goes to a container; errors come from a `--log` file."""
        log_fd, log_name = tempfile.mkstemp(prefix="dockyard-runc-", suffix=".json")
        os.close(log_fd)
        log_path = Path(log_name)
        try:
            argv = self._argv(*args, log_path=log_path)
            dn = asyncio.subprocess.DEVNULL
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=dn if stdin is None else stdin,
                stdout=dn if stdout is None else stdout,
                stderr=dn if stderr is None else stderr,
            )
            returncode = await proc.wait()
            message = parse_runc_log(log_path.read_text(errors="replace"))
        finally:
            log_path.unlink(missing_ok=True)
        if message is not None:
            raise RuncError(argv, returncode, message)
        if returncode != 0 and args[0] != "exec":
            raise RuncError(argv, returncode, f"runc exited with status {returncode}")
        return returncode

    async def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path,
        console_socket: Path | None = None,
        stdin: Fd = None,
        stdout: Fd = None,
        stderr: Fd = None,
    ) -> None:
        """`runc create`: the container's init waits on runc's exec fifo until `start`.

        Without a console socket the init inherits `stdin`/`stdout`/`stderr` (None means
        /dev/null); with one, runc sends the pty master over that unix socket.
        """
        args = ["create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        await self._run_with_stdio([*args, container_id], stdin=stdin, stdout=stdout, stderr=stderr)

    async def start(self, container_id: str) -> None:
        await self._run("start", container_id)

    async def state(self, container_id: str) -> RuncState:
        return RuncState.from_json(json.loads(await self._run("state", container_id)))

    async def kill(
        self, container_id: str, signal: int = _signal.SIGTERM, *, all: bool = False
    ) -> None:
        args = ["kill", *(["--all"] if all else []), container_id, str(int(signal))]
        await self._run(*args)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        await self._run("delete", *(["--force"] if force else []), container_id)

    async def pause(self, container_id: str) -> None:
        await self._run("pause", container_id)

    async def resume(self, container_id: str) -> None:
        await self._run("resume", container_id)

    async def ps(self, container_id: str) -> list[int]:
        """Host pids of every process in the container's cgroup."""
        pids = json.loads(await self._run("ps", "--format", "json", container_id))
        return [int(p) for p in pids or []]

    async def namespaces(self) -> frozenset[str]:
        """The namespaces this runc supports (`runc features`, runc >= 1.1)."""
        features = json.loads(await self._run("features"))
        return frozenset(features.get("linux", {}).get("namespaces", ()))

    async def list(self) -> list[RuncState]:
        # runc prints `null` when the root holds no containers.
        items = json.loads(await self._run("list", "--format", "json") or b"null")
        return [RuncState.from_json(item) for item in items or []]

    async def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """`runc update --resources -` with an OCI `LinuxResources` object."""
        data = json.dumps(dict(resources)).encode()
        await self._run("update", "--resources", "-", container_id, input_bytes=data)

    async def exec(
        self,
        container_id: str,
        process: Mapping[str, Any],
        *,
        detach: bool = False,
        pid_file: Path | None = None,
        console_socket: Path | None = None,
        stdin: Fd = None,
        stdout: Fd = None,
        stderr: Fd = None,
    ) -> int:
        """`runc exec --process <OCI process JSON>`.

        Returns the process's exit status (runc exits with it; 128+n for signal n), or 0
        when detached. runc's own failures (e.g. a missing executable) raise `RuncError`.
        """
        fd, name = tempfile.mkstemp(prefix="dockyard-process-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(process), f)
        try:
            args = ["exec", "--process", name]
            if detach:
                args.append("--detach")
            if pid_file is not None:
                args += ["--pid-file", str(pid_file)]
            if console_socket is not None:
                args += ["--console-socket", str(console_socket)]
            return await self._run_with_stdio(
                [*args, container_id], stdin=stdin, stdout=stdout, stderr=stderr
            )
        finally:
            Path(name).unlink(missing_ok=True)
