"""The stats endpoint's driver: read a container's cgroup files, render them each second.

Role: find a running container's cgroup (its bundle's `linux.cgroupsPath` under each
hierarchy of /proc/self/mountinfo, v1 or v2 as the host is), read its files and /proc/stat
in a worker thread, and hand `model/stats.py` the contents. A container that does not run,
or whose cgroup is gone, is sampled as None (dockerd's zeroed object).

Streaming: one object per second, the first with an empty `precpu_stats`; the wait between
samples is on the container's exit, so when it stops the stream sends one zeroed object
(as dockerd does) and ends at once. `stream=0` samples twice, a second apart, so the CPU
percentage has a previous sample; `one-shot=1` samples once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.engine.containers import ContainerRecord
from dockyard.engine.model import stats as sm
from dockyard.engine.runtime.logfile import format_rfc3339nano

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

INTERVAL_S = 1.0  # dockerd's collector interval: the API's sampling period, not a poll


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclass(frozen=True)
class Sampler:
    """Where one container's cgroup files are, and the host facts a sample needs."""

    cgroup_version: int
    files: Mapping[str, str]  # model file name → host path
    host_memory: int

    def sample(self) -> sm.Sample | None:
        contents = {name: _read(path) for name, path in self.files.items()}
        proc_stat = _read("/proc/stat") or ""
        args: dict[str, Any] = {
            "read": format_rfc3339nano(time.time_ns()),
            "proc_stat": proc_stat,
            "clock_ticks": os.sysconf("SC_CLK_TCK"),
            "online_cpus": os.sysconf("SC_NPROCESSORS_ONLN"),
            "host_memory": self.host_memory,
        }
        try:
            if self.cgroup_version == 2:
                return sm.sample_v2(contents, **args)
            return sm.sample_v1(contents, **args)
        except sm.StatsError:
            return None


def _sampler(engine: Engine, record: ContainerRecord) -> Sampler:
    bundle = engine.containers.container_dir(record.id) / "bundle" / "config.json"
    try:
        spec = json.loads(bundle.read_text())
        cgroups_path = str(spec["linux"]["cgroupsPath"])
    except (OSError, ValueError, KeyError, TypeError):
        cgroups_path = f"/dockyard/{record.id}"
    mounts = sm.parse_cgroup_mounts(Path("/proc/self/mountinfo").read_text())
    relative = sm.cgroup_relative_path(cgroups_path)
    version = engine.host.facts.cgroup_version
    files = (
        sm.v2_file_paths(mounts, relative) if version == 2 else sm.v1_file_paths(mounts, relative)
    )
    return Sampler(version, files, engine.host.mem_total_bytes)


def _encode(value: Any) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


async def stats_stream(
    engine: Engine, ref: str, *, stream: bool, one_shot: bool
) -> AsyncIterator[bytes]:
    """The JSON objects of `GET /containers/{id}/stats` (resolve `ref` before streaming)."""
    record = engine.containers.resolve(ref)

    def render(sample: sm.Sample | None, previous: sm.Sample | None) -> bytes:
        return _encode(
            sm.stats_json(
                name=record.name, container_id=record.id, sample=sample, previous=previous
            )
        )

    if not record.state.running:
        yield render(None, None)
        return
    sampler = await asyncio.to_thread(_sampler, engine, record)
    exited = engine.register_wait(record, "not-running")
    try:
        previous = None
        sample = await asyncio.to_thread(sampler.sample)
        if not stream and not one_shot and sample is not None and not exited.done():
            # dockerd primes precpu with a first reading a period earlier.
            await asyncio.wait([exited], timeout=INTERVAL_S)
            previous, sample = sample, await asyncio.to_thread(sampler.sample)
        while True:
            if exited.done():
                sample = None
            yield render(sample, previous)
            if not stream or sample is None:
                return
            await asyncio.wait([exited], timeout=INTERVAL_S)
            previous, sample = sample, await asyncio.to_thread(sampler.sample)
    finally:
        engine.forget_wait(record.id, exited)
