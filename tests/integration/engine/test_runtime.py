"""The runtime layer against real runc: the CLI driver and the per-container shim."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from dockyard.engine.runtime.runc import RuncError
from dockyard.engine.runtime.shim import (
    EXIT_FILE,
    STDIN_FIFO,
    ShimConfig,
    load_exit_status,
    shim_running,
    start_shim,
    wait_exit,
)
from tests.integration.engine.conftest import RuntimeEnv, cgroup_dirs, cgroup_name

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

RFC3339_NANO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"

LAUNCHER = """
import asyncio, json, sys
from pathlib import Path
from dockyard.engine.runtime.shim import ShimConfig, start_shim

async def main() -> None:
    cfg = json.loads(sys.argv[1])
    config = ShimConfig(
        container_id=cfg["id"], bundle=Path(cfg["bundle"]), state_dir=Path(cfg["state_dir"]),
        runc_root=Path(cfg["runc_root"]), runc_binary=cfg["runc_binary"],
    )
    handle = await start_shim(config)
    print(json.dumps({"shim_pid": handle.shim_pid, "init_pid": handle.init_pid}), flush=True)
    sys.stdin.read()  # hold on until killed

asyncio.run(main())
"""


def read_log(config: ShimConfig) -> list[bytes]:
    return config.json_log_path.read_bytes().splitlines()


async def read_until(fd: int, marker: bytes) -> bytes:
    """Read a non-blocking pipe until `marker` arrives (awaited, not slept on)."""
    loop = asyncio.get_running_loop()
    buf = b""
    while marker not in buf:
        ready: asyncio.Future[None] = loop.create_future()

        def on_ready(f: asyncio.Future[None] = ready) -> None:
            if not f.done():
                f.set_result(None)

        loop.add_reader(fd, on_ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        chunk = os.read(fd, 4096)
        assert chunk, f"EOF before {marker!r}; got {buf!r}"
        buf += chunk
    return buf


def assert_gone(runtime: RuntimeEnv, config: ShimConfig) -> None:
    assert runtime.runc_ids() == []
    assert not shim_running(config.state_dir)
    assert cgroup_dirs(config.container_id) == []


async def test_logs_streams_in_order_and_records_exit_code(runtime: RuntimeEnv) -> None:
    config = runtime.shim_config(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    handle = await start_shim(config)
    status = await handle.wait_exit()
    assert (status.exit_code, status.signal, status.error) == (3, None, None)
    assert re.fullmatch(RFC3339_NANO, status.finished_at)
    lines = read_log(config)
    assert len(lines) == 2, lines
    assert re.fullmatch(rb'\{"log":"hello\\n","stream":"stdout","time":"' + RFC3339_NANO.encode()
                        + rb'"\}', lines[0])  # fmt: skip
    assert re.fullmatch(rb'\{"log":"oops\\n","stream":"stderr","time":"' + RFC3339_NANO.encode()
                        + rb'"\}', lines[1])  # fmt: skip
    assert json.loads((config.state_dir / EXIT_FILE).read_text())["exit_code"] == 3
    # The shim deleted its container and exited; nothing of it is left.
    assert_gone(runtime, config)


async def test_container_survives_launcher_sigkill(runtime: RuntimeEnv) -> None:
    config = runtime.shim_config(["sleep", "1000"])
    arg = json.dumps(
        {
            "id": config.container_id,
            "bundle": str(config.bundle),
            "state_dir": str(config.state_dir),
            "runc_root": str(config.runc_root),
            "runc_binary": config.runc_binary,
        }
    )
    launcher = runtime.spawn([sys.executable, "-c", LAUNCHER, arg])
    assert launcher.stdout is not None
    started = json.loads(await asyncio.to_thread(launcher.stdout.readline))

    os.kill(launcher.pid, signal.SIGKILL)
    assert await asyncio.to_thread(launcher.wait) == -signal.SIGKILL

    assert shim_running(config.state_dir)
    state = await runtime.runc.state(config.container_id)
    assert (state.status, state.pid) == ("running", started["init_pid"])
    # The container's init is the shim's child, not runc's or the dead launcher's.
    stat = Path(f"/proc/{state.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == started["shim_pid"]

    await runtime.runc.kill(config.container_id, signal.SIGKILL)
    status = await wait_exit(config.state_dir)  # the reconnect path: no notify pipe
    assert (status.exit_code, status.signal) == (137, 9)
    assert_gone(runtime, config)


async def test_missing_executable_is_a_runc_error(runtime: RuntimeEnv) -> None:
    cid = runtime.new_id()
    bundle = runtime.bundle(cid, ["no-such-binary"])
    with pytest.raises(RuncError, match="executable file not found") as direct:
        await runtime.runc.create(cid, bundle, pid_file=bundle / "init.pid")
    assert "no-such-binary" in direct.value.message

    config = runtime.shim_config(["no-such-binary"])
    with pytest.raises(RuncError, match="executable file not found"):
        await start_shim(config)
    status = load_exit_status(config.state_dir)
    assert status is not None and status.error is not None
    assert "executable file not found" in status.error
    # runc's error went to the container's stderr pipe too; it is not container output.
    assert read_log(config) == []
    status_after = await wait_exit(config.state_dir)
    assert status_after == status
    assert_gone(runtime, config)


async def test_pause_resume_ps_update_exec(runtime: RuntimeEnv) -> None:
    cid = runtime.new_id()
    bundle = runtime.bundle(cid, ["sh", "-c", "sleep 1000 & echo ready; wait"])
    out_r, out_w = os.pipe()
    os.set_blocking(out_r, False)
    try:
        await runtime.runc.create(cid, bundle, pid_file=bundle / "init.pid", stdout=out_w)
        os.close(out_w)
        out_w = -1
        assert (await runtime.runc.state(cid)).status == "created"
        await runtime.runc.start(cid)
        await read_until(out_r, b"ready\n")

        state = await runtime.runc.state(cid)
        assert state.status == "running"
        assert [s.id for s in await runtime.runc.list()] == [cid]
        pids = await runtime.runc.ps(cid)
        assert state.pid in pids and len(pids) == 2, pids

        await runtime.runc.pause(cid)
        assert (await runtime.runc.state(cid)).status == "paused"
        await runtime.runc.resume(cid)
        assert (await runtime.runc.state(cid)).status == "running"

        await runtime.runc.update(cid, {"pids": {"limit": 64}})
        pids_max = Path("/sys/fs/cgroup/pids") / cgroup_name(cid) / "pids.max"
        assert pids_max.read_text().strip() == "64"

        exec_r, exec_w = os.pipe()
        try:
            process = {
                "args": ["echo", "from exec"],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "user": {"uid": 0, "gid": 0},
            }
            assert await runtime.runc.exec(cid, process, stdout=exec_w) == 0
            os.close(exec_w)
            exec_w = -1
            assert os.read(exec_r, 4096) == b"from exec\n"
            with pytest.raises(RuncError, match="executable file not found"):
                await runtime.runc.exec(cid, {**process, "args": ["nope"]})
        finally:
            os.close(exec_r)
            if exec_w >= 0:
                os.close(exec_w)

        await runtime.runc.kill(cid, signal.SIGKILL, all=True)
        await runtime.runc.delete(cid, force=True)
        with pytest.raises(RuncError, match="does not exist"):
            await runtime.runc.state(cid)
        assert await runtime.runc.list() == []
        assert cgroup_dirs(cid) == []
    finally:
        os.close(out_r)
        if out_w >= 0:
            os.close(out_w)


async def test_stdin_fifo_feeds_container_until_writer_closes(runtime: RuntimeEnv) -> None:
    config = runtime.shim_config(["cat"], stdin=True)
    handle = await start_shim(config)
    fifo = config.state_dir / STDIN_FIFO
    await asyncio.to_thread(fifo.write_bytes, b"via stdin\n")
    status = await handle.wait_exit()
    assert status.exit_code == 0
    assert [json.loads(line)["log"] for line in read_log(config)] == ["via stdin\n"]
    assert_gone(runtime, config)


async def test_tty_output_is_logged_as_stdout(runtime: RuntimeEnv) -> None:
    config = runtime.shim_config(["sh", "-c", "tty; echo hi; exit 5"], tty=True)
    handle = await start_shim(config)
    status = await handle.wait_exit()
    assert status.exit_code == 5
    entries = [json.loads(line) for line in read_log(config)]
    assert [e["stream"] for e in entries] == ["stdout", "stdout"]
    assert entries[0]["log"] == "/dev/pts/0\r\n"
    assert entries[1]["log"] == "hi\r\n"
    assert_gone(runtime, config)
