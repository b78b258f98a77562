"""`docker stats` as values: cgroup file contents in, Docker's stats JSON out.

Role: the pure half of `GET /containers/{id}/stats` (`engine/stats.py` reads the files).
A `Sample` is one reading of a container's cgroup (v1 or v2) and of /proc/stat;
`stats_json` renders a sample, with the previous one as `precpu_stats`, in the shape
dockerd 20.10 sends (api-surface.md §10; moby daemon/stats_unix.go statsV1/statsV2):

- cpu: total, per-CPU (v1 only), kernel and user time in ns; `system_cpu_usage` is the
  host's CPU time from /proc/stat in ns; `online_cpus`; throttling from cpu.stat.
- memory: usage and limit (an unlimited cgroup reports the host's memory, as dockerd
  caps the limit at MemTotal), `max_usage` on v1 only, and memory.stat's counters (on v1
  the keys dockerd passes on, so `total_inactive_file`, which the CLI subtracts, is there).
- pids: current, and the limit when there is one.
- blkio: v1 `blkio.throttle.io_service_bytes`/`io_serviced` per device and op (without
  the Total line); v2 io.stat's rbytes/wbytes as ops `read`/`write`.

A container that does not run gets dockerd's zeroed object (`ZERO_TIME` times, empty
sections, nulls in blkio). `networks` is absent: containers have no interfaces besides
loopback with `--network none`, and dockerd omits it there too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"
NS_PER_S = 1_000_000_000
NS_PER_US = 1_000
BLKIO_KEYS = (
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queue_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "io_time_recursive",
    "sectors_recursive",
)
# The memory.stat keys of cgroup v1 that dockerd 20.10 passes on (containerd's v1 metrics).
V1_MEMORY_KEYS = frozenset(
    {
        "cache",
        "rss",
        "rss_huge",
        "mapped_file",
        "dirty",
        "writeback",
        "pgpgin",
        "pgpgout",
        "pgfault",
        "pgmajfault",
        "inactive_anon",
        "active_anon",
        "inactive_file",
        "active_file",
        "unevictable",
        "hierarchical_memory_limit",
        "hierarchical_memsw_limit",
    }
)

# v1 file names (controller/file) and v2 file names, as `sample_v1`/`sample_v2` expect.
V1_FILES = (
    "memory/memory.usage_in_bytes",
    "memory/memory.max_usage_in_bytes",
    "memory/memory.limit_in_bytes",
    "memory/memory.failcnt",
    "memory/memory.stat",
    "cpuacct/cpuacct.usage",
    "cpuacct/cpuacct.usage_percpu",
    "cpuacct/cpuacct.stat",
    "cpu/cpu.stat",
    "pids/pids.current",
    "pids/pids.max",
    "blkio/blkio.throttle.io_service_bytes",
    "blkio/blkio.throttle.io_serviced",
)
V2_FILES = (
    "memory.current",
    "memory.max",
    "memory.stat",
    "cpu.stat",
    "pids.current",
    "pids.max",
    "io.stat",
)


class StatsError(Exception):
    """Cgroup files that cannot be read as stats (the container is gone or never ran)."""


def parse_int(text: str | None) -> int | None:
    """A single-number cgroup file; None for `max`, missing or malformed content."""
    if text is None:
        return None
    value = text.strip()
    try:
        return int(value)
    except ValueError:
        return None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, cpuacct.stat)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def system_cpu_usage_ns(proc_stat: str, clock_ticks: int) -> int:
    """The host's total CPU time in ns: the first seven fields of /proc/stat's `cpu` line
    (user nice system idle iowait irq softirq), as moby getSystemCPUUsage adds them."""
    for line in proc_stat.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = sum(int(p) for p in parts[1:8])
            return ticks * NS_PER_S // clock_ticks
    raise StatsError("/proc/stat has no cpu line")


@dataclass(frozen=True)
class BlkioEntry:
    major: int
    minor: int
    op: str
    value: int

    def to_json(self) -> dict[str, Any]:
        return {"major": self.major, "minor": self.minor, "op": self.op, "value": self.value}


def parse_blkio_v1(text: str | None) -> tuple[BlkioEntry, ...]:
    """`8:0 Read 4096` lines; the device-less `Total` line is left out, as containerd does."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            out.append(BlkioEntry(int(major), int(minor), parts[1], int(parts[2])))
        except ValueError:
            continue
    return tuple(out)


def parse_io_stat_v2(text: str | None) -> tuple[BlkioEntry, ...]:
    """io.stat `8:0 rbytes=1 wbytes=2 rios=3 ...` as dockerd's statsV2: read and write bytes."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        try:
            out.append(BlkioEntry(int(major), int(minor), "read", int(fields.get("rbytes", 0))))
            out.append(BlkioEntry(int(major), int(minor), "write", int(fields.get("wbytes", 0))))
        except ValueError:
            continue
    return tuple(out)


@dataclass(frozen=True)
class CpuStats:
    total_ns: int = 0
    percpu_ns: tuple[int, ...] = ()
    kernel_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0  # the host's, from /proc/stat; 0 = unknown (omitted)
    online_cpus: int = 0  # 0 = omitted
    periods: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"total_usage": self.total_ns}
        if self.percpu_ns:
            usage["percpu_usage"] = list(self.percpu_ns)
        usage["usage_in_kernelmode"] = self.kernel_ns
        usage["usage_in_usermode"] = self.user_ns
        out: dict[str, Any] = {"cpu_usage": usage}
        if self.system_ns:
            out["system_cpu_usage"] = self.system_ns
        if self.online_cpus:
            out["online_cpus"] = self.online_cpus
        out["throttling_data"] = {
            "periods": self.periods,
            "throttled_periods": self.throttled_periods,
            "throttled_time": self.throttled_ns,
        }
        return out


@dataclass(frozen=True)
class Sample:
    """One reading of a running container's cgroup."""

    read: str  # RFC 3339 time of the reading
    cpu: CpuStats
    memory_usage: int
    memory_limit: int
    memory_max_usage: int | None  # v1 only
    memory_failcnt: int
    memory_stats: Mapping[str, int]
    pids_current: int | None
    pids_limit: int | None
    io_service_bytes: tuple[BlkioEntry, ...] = ()
    io_serviced: tuple[BlkioEntry, ...] | None = ()
    extra_blkio_empty: bool = True  # v1 reports the other blkio lists empty, v2 null


def _cap_limit(limit: int | None, host_memory: int) -> int:
    # moby: "if the container does not set memory limit, use the machineMemory".
    if limit is None or (host_memory > 0 and limit > host_memory):
        return host_memory
    return limit


def sample_v1(
    files: Mapping[str, str | None],
    *,
    read: str,
    proc_stat: str,
    clock_ticks: int,
    online_cpus: int,
    host_memory: int,
) -> Sample:
    """A cgroup v1 reading; `files` maps `V1_FILES` names to their contents (None: absent)."""
    total = parse_int(files.get("cpuacct/cpuacct.usage"))
    if total is None:
        raise StatsError("no cpuacct.usage: the container's cgroup is gone")
    percpu_text = files.get("cpuacct/cpuacct.usage_percpu") or ""
    percpu = tuple(int(v) for v in percpu_text.split() if v.isdigit())
    acct = parse_flat_keyed(files.get("cpuacct/cpuacct.stat"))
    tick_ns = NS_PER_S // clock_ticks
    throttling = parse_flat_keyed(files.get("cpu/cpu.stat"))
    memory_stat = parse_flat_keyed(files.get("memory/memory.stat"))
    kept = {
        k: v
        for k, v in memory_stat.items()
        if k in V1_MEMORY_KEYS or (k.startswith("total_") and k[6:] in V1_MEMORY_KEYS)
    }
    return Sample(
        read=read,
        cpu=CpuStats(
            total_ns=total,
            percpu_ns=percpu,
            kernel_ns=acct.get("system", 0) * tick_ns,
            user_ns=acct.get("user", 0) * tick_ns,
            system_ns=system_cpu_usage_ns(proc_stat, clock_ticks),
            online_cpus=online_cpus,
            periods=throttling.get("nr_periods", 0),
            throttled_periods=throttling.get("nr_throttled", 0),
            throttled_ns=throttling.get("throttled_time", 0),
        ),
        memory_usage=parse_int(files.get("memory/memory.usage_in_bytes")) or 0,
        memory_limit=_cap_limit(parse_int(files.get("memory/memory.limit_in_bytes")), host_memory),
        memory_max_usage=parse_int(files.get("memory/memory.max_usage_in_bytes")) or 0,
        memory_failcnt=parse_int(files.get("memory/memory.failcnt")) or 0,
        memory_stats=dict(sorted(kept.items())),
        pids_current=parse_int(files.get("pids/pids.current")),
        pids_limit=parse_int(files.get("pids/pids.max")),
        io_service_bytes=parse_blkio_v1(files.get("blkio/blkio.throttle.io_service_bytes")),
        io_serviced=parse_blkio_v1(files.get("blkio/blkio.throttle.io_serviced")),
        extra_blkio_empty=True,
    )


def sample_v2(
    files: Mapping[str, str | None],
    *,
    read: str,
    proc_stat: str,
    clock_ticks: int,
    online_cpus: int,
    host_memory: int,
) -> Sample:
    """A cgroup v2 reading; `files` maps `V2_FILES` names to their contents (None: absent)."""
    cpu = parse_flat_keyed(files.get("cpu.stat"))
    if "usage_usec" not in cpu:
        raise StatsError("no cpu.stat: the container's cgroup is gone")
    memory_stat = parse_flat_keyed(files.get("memory.stat"))
    return Sample(
        read=read,
        cpu=CpuStats(
            total_ns=cpu["usage_usec"] * NS_PER_US,
            kernel_ns=cpu.get("system_usec", 0) * NS_PER_US,
            user_ns=cpu.get("user_usec", 0) * NS_PER_US,
            system_ns=system_cpu_usage_ns(proc_stat, clock_ticks),
            online_cpus=online_cpus,
            periods=cpu.get("nr_periods", 0),
            throttled_periods=cpu.get("nr_throttled", 0),
            throttled_ns=cpu.get("throttled_usec", 0) * NS_PER_US,
        ),
        memory_usage=parse_int(files.get("memory.current")) or 0,
        memory_limit=_cap_limit(parse_int(files.get("memory.max")), host_memory),
        memory_max_usage=None,
        memory_failcnt=0,
        memory_stats=dict(sorted(memory_stat.items())),
        pids_current=parse_int(files.get("pids.current")),
        pids_limit=parse_int(files.get("pids.max")),
        io_service_bytes=parse_io_stat_v2(files.get("io.stat")),
        io_serviced=None,
        extra_blkio_empty=False,
    )


def _blkio(sample: Sample | None) -> dict[str, Any]:
    if sample is None:
        return dict.fromkeys(BLKIO_KEYS)
    empty: list[Any] | None = [] if sample.extra_blkio_empty else None
    out: dict[str, Any] = dict.fromkeys(BLKIO_KEYS, empty)
    out["io_service_bytes_recursive"] = [e.to_json() for e in sample.io_service_bytes]
    if sample.io_serviced is not None:
        out["io_serviced_recursive"] = [e.to_json() for e in sample.io_serviced]
    return out


def _memory(sample: Sample | None) -> dict[str, Any]:
    if sample is None:
        return {}
    out: dict[str, Any] = {"usage": sample.memory_usage}
    if sample.memory_max_usage is not None:
        out["max_usage"] = sample.memory_max_usage
    out["stats"] = dict(sample.memory_stats)
    if sample.memory_failcnt:
        out["failcnt"] = sample.memory_failcnt
    out["limit"] = sample.memory_limit
    return out


def _pids(sample: Sample | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sample is not None and sample.pids_current:
        out["current"] = sample.pids_current
    if sample is not None and sample.pids_limit:
        out["limit"] = sample.pids_limit
    return out


def stats_json(
    *, name: str, container_id: str, sample: Sample | None, previous: Sample | None
) -> dict[str, Any]:
    """types.StatsJSON: `sample` (None: not running, zeroed) with `previous` as precpu."""
    return {
        "read": sample.read if sample is not None else ZERO_TIME,
        "preread": previous.read if previous is not None else ZERO_TIME,
        "pids_stats": _pids(sample),
        "blkio_stats": _blkio(sample),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": (sample.cpu if sample is not None else CpuStats()).to_json(),
        "precpu_stats": (previous.cpu if previous is not None else CpuStats()).to_json(),
        "memory_stats": _memory(sample),
        "name": name,
        "id": container_id,
    }


# -- where the files are --------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMounts:
    """The host's cgroup hierarchies: v1 controller → mount point, and the v2 mount."""

    v1: Mapping[str, str]
    v2: str | None


def parse_cgroup_mounts(mountinfo: str) -> CgroupMounts:
    """From /proc/self/mountinfo: `... mount-point ... - cgroup cgroup rw,memory`."""
    v1: dict[str, str] = {}
    v2 = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4]
        if tail[0] == "cgroup2" and v2 is None:
            v2 = point
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                v1.setdefault(option, point)
    return CgroupMounts(v1, v2)


def cgroup_relative_path(cgroups_path: str) -> str:
    """An OCI `linux.cgroupsPath` as a path under each hierarchy: `/dockyard/<id>`, or a
    systemd `slice:prefix:name` as `/<slice>/<prefix>-<name>.scope` (runc's expansion of
    a top-level slice)."""
    if ":" in cgroups_path:
        parent, prefix, name = [*cgroups_path.split(":"), "", ""][:3]
        return f"/{parent}/{prefix}-{name}.scope"
    return "/" + cgroups_path.strip("/")


def v1_file_paths(mounts: CgroupMounts, relative: str) -> dict[str, str]:
    """`V1_FILES` names → host paths; controllers that are not mounted are left out."""
    out = {}
    for name in V1_FILES:
        controller, _, file = name.partition("/")
        point = mounts.v1.get(controller)
        if point is not None:
            out[name] = f"{point}{relative}/{file}"
    return out


def v2_file_paths(mounts: CgroupMounts, relative: str) -> dict[str, str]:
    if mounts.v2 is None:
        return {}
    return {name: f"{mounts.v2}{relative}/{name}" for name in V2_FILES}
