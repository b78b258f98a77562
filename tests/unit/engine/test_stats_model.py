"""`docker stats` rendering (model/stats.py): cgroup v1 and v2 file contents and /proc/stat
in, dockerd 20.10's stats JSON out (shapes from api-surface.md §10 and the captured
`stats-no-stream` traffic), and the CLI's CPU and memory arithmetic on it."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.engine.model import stats as sm

PROC_STAT = "cpu  1000 10 500 80000 20 5 15 7 0 0\ncpu0 500 5 250 40000 10 2 8 3 0 0\nintr 12345\n"
HOST_MEMORY = 25_276_510_208
V1_MEMORY_STAT = """cache 0
rss 53248
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
swap 0
pgpgin 755
pgpgout 742
pgfault 1039
pgmajfault 0
inactive_anon 49152
active_anon 4096
inactive_file 8192
active_file 0
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 0
total_rss 53248
total_shmem 0
total_inactive_file 8192
total_workingset_refault_anon 0
"""
V1_FILES: dict[str, str | None] = {
    "memory/memory.usage_in_bytes": "618496\n",
    "memory/memory.max_usage_in_bytes": "3821568\n",
    "memory/memory.limit_in_bytes": "9223372036854771712\n",
    "memory/memory.failcnt": "0\n",
    "memory/memory.stat": V1_MEMORY_STAT,
    "cpuacct/cpuacct.usage": "30696051\n",
    "cpuacct/cpuacct.usage_percpu": "17307076 13388975 \n",
    "cpuacct/cpuacct.stat": "user 1\nsystem 2\n",
    "cpu/cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\nnr_bursts 0\n",
    "pids/pids.current": "1\n",
    "pids/pids.max": "max\n",
    "blkio/blkio.throttle.io_service_bytes": (
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n"
    ),
    "blkio/blkio.throttle.io_serviced": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
}
V2_FILES: dict[str, str | None] = {
    "memory.current": "1048576\n",
    "memory.max": "67108864\n",
    "memory.stat": "anon 4096\nfile 8192\ninactive_file 4096\n",
    "cpu.stat": (
        "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n"
        "nr_periods 4\nnr_throttled 1\nthrottled_usec 30\n"
    ),
    "pids.current": "3\n",
    "pids.max": "100\n",
    "io.stat": "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n",
}


def v1(files: dict[str, str | None] = V1_FILES, read: str = "2026-11-29T05:40:56Z") -> sm.Sample:
    return sm.sample_v1(
        files,
        read=read,
        proc_stat=PROC_STAT,
        clock_ticks=100,
        online_cpus=2,
        host_memory=HOST_MEMORY,
    )


def test_system_cpu_usage_adds_the_first_seven_fields() -> None:
    ticks = 1000 + 10 + 500 + 80000 + 20 + 5 + 15  # steal and guest are not counted
    assert sm.system_cpu_usage_ns(PROC_STAT, 100) == ticks * 10_000_000
    with pytest.raises(sm.StatsError):
        sm.system_cpu_usage_ns("intr 1\n", 100)


def test_a_v1_sample_in_dockerds_shape() -> None:
    out = sm.stats_json(name="/s1", container_id="c" * 64, sample=v1(), previous=None)
    assert list(out) == [
        "read",
        "preread",
        "pids_stats",
        "blkio_stats",
        "num_procs",
        "storage_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "name",
        "id",
    ]
    assert "networks" not in out  # --network none
    assert (out["read"], out["preread"]) == ("2026-11-29T05:40:56Z", sm.ZERO_TIME)
    assert out["pids_stats"] == {"current": 1}
    cpu = out["cpu_stats"]
    assert cpu["cpu_usage"] == {
        "total_usage": 30696051,
        "percpu_usage": [17307076, 13388975],
        "usage_in_kernelmode": 20_000_000,
        "usage_in_usermode": 10_000_000,
    }
    assert cpu["online_cpus"] == 2
    assert cpu["system_cpu_usage"] == sm.system_cpu_usage_ns(PROC_STAT, 100)
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 2, "throttled_time": 5000}
    memory = out["memory_stats"]
    assert (memory["usage"], memory["max_usage"]) == (618496, 3821568)
    assert memory["limit"] == HOST_MEMORY  # unlimited: the host's memory
    assert memory["stats"]["total_inactive_file"] == 8192
    assert "swap" not in memory["stats"] and "total_workingset_refault_anon" not in memory["stats"]
    assert "failcnt" not in memory
    blkio = out["blkio_stats"]
    assert blkio["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
        {"major": 8, "minor": 0, "op": "Total", "value": 12288},
    ]
    assert blkio["io_serviced_recursive"][1]["value"] == 2
    assert blkio["sectors_recursive"] == []


def test_the_first_streamed_object_has_an_empty_precpu() -> None:
    out = sm.stats_json(name="/s1", container_id="x", sample=v1(), previous=None)
    assert out["precpu_stats"] == {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def test_a_limited_container_reports_its_limit() -> None:
    files = dict(V1_FILES, **{"memory/memory.limit_in_bytes": "67108864\n", "pids/pids.max": "50"})
    out = sm.stats_json(name="/m", container_id="x", sample=v1(files), previous=None)
    assert out["memory_stats"]["limit"] == 67108864
    assert out["pids_stats"] == {"current": 1, "limit": 50}


def cli_cpu_percent(stats: dict[str, Any]) -> float:
    """docker CLI stats_helpers.go calculateCPUPercentUnix."""
    cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def test_cpu_percent_from_two_samples_is_what_the_cli_computes() -> None:
    first = v1()
    busier = dict(V1_FILES, **{"cpuacct/cpuacct.usage": str(30696051 + 500_000_000)})
    second = sm.sample_v1(
        busier,
        read="2026-11-29T05:40:57Z",
        proc_stat="cpu  1100 10 500 80100 20 5 15 0 0 0\n",  # 200 ticks = 2 s of 2 CPUs
        clock_ticks=100,
        online_cpus=2,
        host_memory=HOST_MEMORY,
    )
    out = sm.stats_json(name="/s1", container_id="x", sample=second, previous=first)
    assert out["preread"] == "2026-11-29T05:40:56Z"
    # 0.5 s of CPU time in a second of wall time: 50 % of one CPU.
    assert cli_cpu_percent(out) == pytest.approx(50.0)


def test_a_stopped_container_gets_dockerds_zeroed_object() -> None:
    out = sm.stats_json(name="/c1", container_id="i", sample=None, previous=None)
    assert out == {
        "read": sm.ZERO_TIME,
        "preread": sm.ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": dict.fromkeys(sm.BLKIO_KEYS),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {},
        "name": "/c1",
        "id": "i",
    }


def test_a_container_that_stopped_mid_stream_keeps_its_last_sample_as_precpu() -> None:
    last = v1()
    out = sm.stats_json(name="/s1", container_id="x", sample=None, previous=last)
    assert (out["read"], out["preread"]) == (sm.ZERO_TIME, last.read)
    assert out["precpu_stats"]["cpu_usage"]["total_usage"] == 30696051


def test_a_missing_cgroup_is_no_sample() -> None:
    with pytest.raises(sm.StatsError):
        v1({})
    with pytest.raises(sm.StatsError):
        sm.sample_v2(
            {}, read="t", proc_stat=PROC_STAT, clock_ticks=100, online_cpus=2, host_memory=1
        )


def test_a_v2_sample() -> None:
    sample = sm.sample_v2(
        V2_FILES,
        read="t",
        proc_stat=PROC_STAT,
        clock_ticks=100,
        online_cpus=2,
        host_memory=HOST_MEMORY,
    )
    out = sm.stats_json(name="/v", container_id="x", sample=sample, previous=None)
    assert out["cpu_stats"]["cpu_usage"] == {
        "total_usage": 2_000_000,
        "usage_in_kernelmode": 500_000,
        "usage_in_usermode": 1_500_000,
    }
    assert out["cpu_stats"]["throttling_data"]["throttled_time"] == 30_000
    assert out["memory_stats"] == {
        "usage": 1048576,
        "stats": {"anon": 4096, "file": 8192, "inactive_file": 4096},
        "limit": 67108864,
    }
    assert out["pids_stats"] == {"current": 3, "limit": 100}
    assert out["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 512},
    ]
    assert out["blkio_stats"]["io_serviced_recursive"] is None
    unlimited = dict(V2_FILES, **{"memory.max": "max\n"})
    sample = sm.sample_v2(
        unlimited, read="t", proc_stat=PROC_STAT, clock_ticks=100, online_cpus=2, host_memory=7
    )
    assert sample.memory_limit == 7


MOUNTINFO = """\
25 1 0:23 / / rw,relatime shared:1 - overlay overlay rw
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""


def test_cgroup_files_are_found_under_each_hierarchy() -> None:
    mounts = sm.parse_cgroup_mounts(MOUNTINFO)
    assert mounts.v2 == "/sys/fs/cgroup/unified"
    assert mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    relative = sm.cgroup_relative_path("/dockyard/abc")
    paths = sm.v1_file_paths(mounts, relative)
    assert paths["cpuacct/cpuacct.usage"] == "/sys/fs/cgroup/cpu,cpuacct/dockyard/abc/cpuacct.usage"
    assert paths["memory/memory.stat"] == "/sys/fs/cgroup/memory/dockyard/abc/memory.stat"
    assert "blkio/blkio.throttle.io_serviced" not in paths  # blkio is not mounted here
    v2 = sm.v2_file_paths(mounts, relative)
    assert v2["cpu.stat"] == "/sys/fs/cgroup/unified/dockyard/abc/cpu.stat"
    assert (
        sm.cgroup_relative_path("system.slice:dockyard:abc") == "/system.slice/dockyard-abc.scope"
    )
