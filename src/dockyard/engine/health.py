"""The healthcheck driver: runs each container's probe while it runs, records the results.

Role: one asyncio task per running container that has a probe (model/health.py decides
which do). Every interval it runs the probe as an exec in the container (through the
exec driver, so it joins the container's namespaces and cgroup and shows up as
`exec_create`/`exec_start`/`exec_die` events, as with dockerd), applies the result to
State.Health, persists the record, and emits `health_status: <status>` when the status
changed (moby daemon/health.go monitor).

Invariants:
- At most one monitor per container; `start` replaces a previous one (a restart).
- The monitor ends when the container exits, is paused or removed, or the daemon closes;
  the exit and pause transitions (containers.py) make the status `unhealthy` themselves.
- A probe that outlives its timeout is killed (SIGKILL to the exec's process) and counts
  as a failure with exit code -1 and dockerd's message.
- Results are applied to the record as it is when they arrive (read and saved without a
  suspension point in between), so other state changes are never overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from dockyard.engine.containers import (
    ContainerRecord,
    ContainerStore,
    EngineError,
    parse_time_ns,
)
from dockyard.engine.execs import ExecDriver
from dockyard.engine.images.model import ContainerConfig as ImageContainerConfig
from dockyard.engine.model import health as hm

logger = logging.getLogger(__name__)

# How long a killed probe may take to be reaped before the monitor moves on.
KILLED_PROBE_WAIT_S = 10.0

EmitFn = Callable[[str, str, Mapping[str, str] | None], None]


def health_config(record: ContainerRecord) -> hm.HealthConfig | None:
    return hm.HealthConfig.from_wire(record.config.get("Healthcheck"))


def healthcheck_entry(
    requested: Mapping[str, Any] | None, image_config: ImageContainerConfig | None
) -> dict[str, Any]:
    """`{"Healthcheck": ...}` for a new container's Config (the request's, completed by the
    image's HEALTHCHECK), or `{}` when neither has one (inspect omits the key then)."""
    image_check = image_config.healthcheck if image_config is not None else None
    merged = hm.merge_config(requested, image_check.to_wire() if image_check is not None else None)
    return {"Healthcheck": merged} if merged else {}


class HealthMonitor:
    def __init__(
        self,
        containers: ContainerStore,
        execs: ExecDriver,
        emit: EmitFn,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._containers = containers
        self._execs = execs
        self._emit = emit
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, cid: str) -> None:
        """The container (re)started: health `starting`, and a new monitor."""
        self.stop(cid)
        record = self._containers.get(cid)
        config = health_config(record)
        if config is None or config.probe_argv() is None:
            return
        health = hm.on_start(record.state.health)
        self._containers.save(record.with_state(replace(record.state, health=health)))
        self._spawn(cid)

    def resume(self, cid: str) -> None:
        """Unpaused: probing again, the status as the pause left it (moby)."""
        record = self._containers.get(cid)
        config = health_config(record)
        if record.state.health is None or config is None or config.probe_argv() is None:
            return
        if cid not in self._tasks:
            self._spawn(cid)

    def stop(self, cid: str) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _spawn(self, cid: str) -> None:
        self._tasks[cid] = asyncio.create_task(self._monitor(cid))

    async def _monitor(self, cid: str) -> None:
        try:
            while True:
                record = self._containers.get(cid)
                config = health_config(record)
                argv = config.probe_argv() if config is not None else None
                if config is None or argv is None:
                    return
                # The probe's period, not a condition to await (moby: a timer).
                await asyncio.sleep(config.interval / 1e9)
                record = self._containers.get(cid)
                if not record.state.running or record.state.paused:
                    return
                result = await self._probe(record, argv, config.timeout)
                self._apply(cid, result, config)
        except KeyError:
            return  # removed
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("container %s: health monitor failed", cid)
        finally:
            if self._tasks.get(cid) is asyncio.current_task():
                del self._tasks[cid]

    def _apply(self, cid: str, result: hm.ProbeResult, config: hm.HealthConfig) -> None:
        record = self._containers.get(cid)
        state = record.state
        if not state.running or state.paused or state.health is None:
            return  # moby: a result that arrives after the monitor stopped is ignored
        started_ns = parse_time_ns(state.started_at)
        health = hm.on_result(state.health, result, config, started_at_ns=started_ns)
        self._containers.save(record.with_state(replace(state, health=health)))
        if health.status != state.health.status:
            self._emit(cid, f"health_status: {health.status}", None)

    async def _probe(
        self, record: ContainerRecord, argv: tuple[str, ...], timeout_ns: int
    ) -> hm.ProbeResult:
        start_ns = self._clock()
        output = bytearray()
        try:
            inst = self._execs.create(
                record.id,
                record,
                {"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True},
            )
        except EngineError as e:
            return hm.ProbeResult(start_ns, self._clock(), -1, str(e))

        async def sink(_stream: str, data: bytes) -> None:
            # Kept to what the truncation needs: one byte past the limit says "dropped".
            room = hm.MAX_OUTPUT_BYTES + 1 - len(output)
            if room > 0:
                output.extend(data[:room])

        gone = asyncio.Event()
        run = asyncio.create_task(self._execs.run_attached(inst, sink, gone))
        try:
            await asyncio.wait_for(asyncio.shield(run), timeout_ns / 1e9)
        except TimeoutError:
            pid = inst.current_pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(run), KILLED_PROBE_WAIT_S)
            if not run.done():
                gone.set()  # leave it to the exec driver; the monitor goes on
            return hm.ProbeResult(start_ns, self._clock(), -1, hm.timeout_message(timeout_ns))
        except asyncio.CancelledError:
            gone.set()
            raise
        except EngineError as e:
            return hm.ProbeResult(start_ns, self._clock(), -1, str(e))
        code = inst.exit_code if inst.exit_code is not None else -1
        return hm.ProbeResult(start_ns, self._clock(), code, hm.truncate_output(bytes(output)))


__all__ = ["HealthMonitor", "health_config", "healthcheck_entry"]
