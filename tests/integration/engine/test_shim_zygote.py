"""The shim zygote: shims forked from a warm process behave as spawned ones.

Real runc containers under a private runc root (the `runtime` fixture of conftest.py, which
removes every container, shim and cgroup a test leaves). Each test starts its own
`ShimZygote` and closes it, so no zygote outlives a test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.engine.runtime.shim import (
    SHIM_PID_FILE,
    ShimZygote,
    read_pid_file,
    shim_running,
    start_shim,
    wait_exit,
)
from dockyard.engine.runtime.shim_main import pid_file_process_alive, process_start_ticks
from tests.integration.engine.conftest import RuntimeEnv

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def zygote() -> AsyncIterator[ShimZygote]:
    z = ShimZygote()
    try:
        yield z
    finally:
        await z.close()


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.asyncio
async def test_a_zygote_forked_shim_runs_and_reports_like_a_spawned_one(
    runtime: RuntimeEnv, zygote: ShimZygote
) -> None:
    config = runtime.shim_config(["sh", "-c", "echo from-zygote; exit 7"])
    handle = await start_shim(config, zygote=zygote)
    assert zygote.pid is not None
    status = await handle.wait_exit()
    assert status.exit_code == 7
    assert b"from-zygote" in config.json_log_path.read_bytes()
    # A second start reuses the same zygote.
    first = zygote.pid
    again = await start_shim(runtime.shim_config(["true"]), zygote=zygote)
    assert (await again.wait_exit()).exit_code == 0
    assert zygote.pid == first


@pytest.mark.asyncio
async def test_the_shim_is_not_the_zygotes_child_and_outlives_it(
    runtime: RuntimeEnv, zygote: ShimZygote
) -> None:
    config = runtime.shim_config(["sleep", "1000"])
    handle = await start_shim(config, zygote=zygote)
    zygote_pid = zygote.pid
    assert zygote_pid is not None
    assert _parent_pid(handle.shim_pid) not in (zygote_pid, os.getpid())
    # The shim is identified by pid and start time (its command line is the zygote's).
    assert read_pid_file(config.state_dir / SHIM_PID_FILE) == handle.shim_pid
    assert pid_file_process_alive(config.state_dir / SHIM_PID_FILE) is True
    await zygote.close()
    assert zygote.pid is None
    assert shim_running(config.state_dir)
    await runtime.runc.kill(config.container_id, signal.SIGKILL)
    status = await wait_exit(config.state_dir)
    assert (status.exit_code, status.signal) == (137, 9)
    assert not shim_running(config.state_dir)


@pytest.mark.asyncio
async def test_a_dead_zygote_is_replaced_or_bypassed(
    runtime: RuntimeEnv, zygote: ShimZygote
) -> None:
    first = await start_shim(runtime.shim_config(["true"]), zygote=zygote)
    await first.wait_exit()
    dead = zygote.pid
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    # The next start notices (EOF), retires the zygote and spawns the shim instead; the one
    # after that gets a fresh zygote.
    for _ in range(2):
        handle = await start_shim(runtime.shim_config(["true"]), zygote=zygote)
        assert (await handle.wait_exit()).exit_code == 0
    assert zygote.pid not in (None, dead)


@pytest.mark.asyncio
async def test_a_malformed_request_is_refused_and_the_zygote_serves_on(
    runtime: RuntimeEnv, zygote: ShimZygote
) -> None:
    warm = await start_shim(runtime.shim_config(["true"]), zygote=zygote)
    await warm.wait_exit()
    sock = zygote._sock  # the control socket: speak to it as a confused client would
    assert sock is not None
    r, w = os.pipe()
    try:
        socket.send_fds(sock, [b'{"args": []}'], [w])  # one fd where two are required
        reply = await asyncio.get_running_loop().sock_recv(sock, 4096)
    finally:
        os.close(r)
        os.close(w)
    assert b'"exit": -1' in reply and b"expected 2 fds" in reply
    handle = await start_shim(runtime.shim_config(["true"]), zygote=zygote)
    assert (await handle.wait_exit()).exit_code == 0


def test_process_identity_by_start_time(tmp_path: Path) -> None:
    me = os.getpid()
    ticks = process_start_ticks(me)
    assert ticks is not None and ticks > 0
    pid_file = tmp_path / "shim.pid"
    pid_file.write_text(f"{me} {ticks}\n")
    assert pid_file_process_alive(pid_file) is True
    pid_file.write_text(f"{me} {ticks + 1}\n")  # a reused pid: another start time
    assert pid_file_process_alive(pid_file) is False
    pid_file.write_text(f"{me}\n")  # runc's format: no start time, no verdict
    assert pid_file_process_alive(pid_file) is None
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        # An exited but unreaped child (a zombie) is not alive.
        while Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            os.sched_yield()
        assert process_start_ticks(child) is None
    finally:
        os.waitpid(child, 0)
