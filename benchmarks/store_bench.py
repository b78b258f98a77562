"""Benchmark dockyard's store against the reference etcd 3.4 on the v2 API, on one machine.

One command starts each server (etcd with ``--enable-v2=true``, then ``dockyard store serve``)
with a fresh data dir on the same disk, pinned to one core (``--server-cpu``, default 0), and
drives it from a load generator pinned to another core (``--client-cpu``, default 1): ``wrk``
for the throughput rows and the memory fill, an asyncio client for the watcher row. It prints
one table (row, etcd, dockyard, ratio dockyard/etcd) and, with ``--json``, records everything.

Rules:
- Every process this script starts is stopped by its PID in a ``finally`` (also on Ctrl-C);
  nothing is ever stopped by name.
- A server is pinned by inheritance: this process pins itself to the server core, spawns the
  server through ``tests/support/servers.py`` and pins itself back to the client core, so the
  server (and every thread it ever creates) runs on the server core only. The pinning is read
  back from ``/proc/<pid>/status`` and recorded.
- Throughput rows count only requests the server acknowledged; wrk's non-2xx, timeout and
  socket errors are recorded next to each row, and a row with errors is marked ``!``.
- The load generator must never be the bottleneck: its CPU use per row is recorded (from
  ``getrusage(RUSAGE_CHILDREN)``) and the run warns when it exceeds ``LOADGEN_BUSY_PCT``.
- If dockyard cannot be started, its column reads ``n/a`` and the reason is recorded; etcd
  still runs.

Usage::

    .venv/bin/python benchmarks/store_bench.py [--quick] [--only etcd|dockyard] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.servers import (  # noqa: E402 - needs the repo root on sys.path
    ETCD_BINARY,
    ServerProcess,
    start_dockyard,
    start_etcd,
)

WRK_BINARY = "/usr/bin/wrk"
TASKSET_BINARY = "/usr/bin/taskset"
VALUE = "0123456789abcdefghij"  # 20 bytes, the value of every PUT
CONNECTIONS = 64
WATCHERS = 100
LOADGEN_BUSY_PCT = 70.0  # above this share of its core, wrk may be what limits a row
FOREIGN_BUSY_PCT = 10.0  # above this much CPU used by other processes, a row is suspect
WATCH_ARM_TIMEOUT_S = 10.0
WATCH_EVENT_TIMEOUT_S = 10.0
FILL_TIMEOUT_S = 600.0

# wrk scripts. Each run's key prefix comes in as a script argument so runs never share keys.
# done() prints one machine-readable line; the numbers are wrk's own (latencies in µs).
_LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %.0f, "p90": %.0f, "p99": %.0f, "max": %.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""

_LUA_PUT_DISTINCT = (
    r"""
local prefix = "/v2/keys/bench/x-"
local n = 0
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
local body = "value=VALUE"
function init(args) prefix = "/v2/keys/" .. args[1] end
function request()
  n = n + 1
  return wrk.format("PUT", prefix .. n, headers, body)
end
""".replace("VALUE", VALUE)
    + _LUA_DONE
)

_LUA_GET = _LUA_DONE  # wrk's default request: GET of the URL given on the command line

# Writes keys <prefix>1..<total>, then cycles over them again (a PUT to an existing key does
# not add one), until <total> PUTs have answered 201 Created: exactly <total> distinct keys
# exist, even if some request failed on the first pass. Then it prints FILLED and stops.
_LUA_FILL = (
    r"""
local prefix = "/v2/keys/mem/k"
local total = 100000
local n = 0
local created = 0
local announced = false
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
local body = "value=VALUE"
function init(args)
  prefix = "/v2/keys/" .. args[1]
  total = tonumber(args[2])
end
function request()
  n = n + 1
  return wrk.format("PUT", prefix .. (((n - 1) % total) + 1), headers, body)
end
function response(status, headers, body)
  if status == 201 then created = created + 1 end
  if created >= total and not announced then
    announced = true
    io.write("FILLED\n")
    io.flush()
    wrk.thread:stop()
  end
end
""".replace("VALUE", VALUE)
    + _LUA_DONE
)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    duration_s: int
    warmup_s: int
    repeats: int
    stat: str  # "median" or "best" of the runs of a throughput row
    watch_reps: int
    watch_warmup_reps: int
    memory_keys: int
    server_cpu: int
    client_cpu: int
    quick: bool


@dataclass(frozen=True)
class RowSpec:
    key: str
    label: str
    unit: str
    higher_is_better: bool


def row_specs(config: BenchConfig) -> list[RowSpec]:
    return [
        RowSpec("seq_put", "sequential PUT/s (1 conn, fsynced)", "req/s", True),
        RowSpec("put_c64", f"PUT/s ({CONNECTIONS} conns, distinct keys)", "req/s", True),
        RowSpec("get_c64", f"GET/s ({CONNECTIONS} conns)", "req/s", True),
        RowSpec("qget_c64", f"quorum GET/s ({CONNECTIONS} conns)", "req/s", True),
        RowSpec("watch_100", f"notify {WATCHERS} watchers, median ms", "ms", False),
        RowSpec("rss_keys", f"RSS after {config.memory_keys:,} keys, MiB", "MiB", False),
    ]


@dataclass
class RowResult:
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


@dataclass
class ServerReport:
    kind: str
    available: bool
    reason: str | None = None
    rows: dict[str, RowResult] = field(default_factory=dict)
    servers: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- machine facts


def _run_text(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (out.stdout or out.stderr).strip()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_mib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return None


def machine_facts(data_root: Path) -> dict[str, Any]:
    fs = " ".join(_run_text(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(data_root)]).split())
    git_rev = _run_text(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "data_root": str(data_root),
        "data_fs": fs,
        "etcd_version": _run_text([ETCD_BINARY, "--version"]).splitlines()[0:1],
        "wrk_version": _run_text([WRK_BINARY, "--version"]).splitlines()[0:1],
        "git_rev": git_rev,
    }


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def _pinned_to(cpu: int) -> Iterator[None]:
    """Run the block with this process pinned to `cpu`; children spawned inside inherit it."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _proc_status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = rest.strip()
    return fields


def _kib(status_value: str | None) -> int | None:
    if not status_value:
        return None
    return int(status_value.split()[0])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    after_comm = raw.rsplit(")", 1)[1].split()
    utime, stime = int(after_comm[11]), int(after_comm[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _core_ticks(cpus: tuple[int, ...]) -> dict[int, tuple[int, int, int]]:
    """Per-CPU (busy, steal, total) jiffies from /proc/stat; busy excludes idle and iowait."""
    ticks: dict[int, tuple[int, int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
        total = user + nice + system + idle + iowait + irq + softirq + steal
        ticks[int(name[3:])] = (user + nice + system + irq + softirq, steal, total)
    return ticks


def _core_load(
    before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]]
) -> dict[int, dict[str, float]]:
    """Busy and steal % per CPU between two /proc/stat samples."""
    load = {}
    for cpu, (busy_1, steal_1, total_1) in after.items():
        busy_0, steal_0, total_0 = before[cpu]
        total = max(total_1 - total_0, 1)
        load[cpu] = {
            "busy_pct": round(100.0 * (busy_1 - busy_0) / total, 1),
            "steal_pct": round(100.0 * (steal_1 - steal_0) / total, 1),
        }
    return load


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_server(kind: str, base_dir: Path, name: str, config: BenchConfig) -> ServerProcess:
    base_dir.mkdir(parents=True, exist_ok=True)
    with _pinned_to(config.server_cpu):
        if kind == "etcd":
            return start_etcd(base_dir, name=name)
        return start_dockyard(base_dir, name=name)


def describe_server(server: ServerProcess) -> dict[str, Any]:
    status = _proc_status(server.pid)
    return {
        "kind": server.kind,
        "pid": server.pid,
        "url": server.url,
        "data_dir": str(server.data_dir),
        "argv": server.argv,
        "cpus_allowed_list": status.get("Cpus_allowed_list"),
        "threads": status.get("Threads"),
        "rss_at_start_kib": _kib(status.get("VmRSS")),
    }


# --------------------------------------------------------------------------- HTTP helpers


def http_put(url: str, key: str, value: str) -> dict[str, Any]:
    data = urllib.parse.urlencode({"value": value}).encode()
    req = urllib.request.Request(
        f"{url}/v2/keys/{key}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def http_get_json(url: str, path: str, timeout_s: float = 60.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}{path}", timeout=timeout_s) as r:
        return dict(json.loads(r.read()))


# --------------------------------------------------------------------------- wrk rows


@dataclass
class WrkRun:
    argv: list[str]
    summary: dict[str, Any]
    loadgen_cpu_pct: float
    server_cpu_pct: float
    foreign_server_core_pct: float
    foreign_cpu_pct: float
    cores: dict[int, dict[str, float]]
    wall_s: float
    stdout: str

    @property
    def requests_per_s(self) -> float:
        return float(self.summary["requests"]) / (float(self.summary["duration_us"]) / 1e6)

    @property
    def error_count(self) -> int:
        return int(sum(self.summary["errors"].values()))


def _wrk_argv(
    config: BenchConfig, script: Path, url: str, connections: int, duration_s: int, args: list[str]
) -> list[str]:
    return [
        TASKSET_BINARY, "-c", str(config.client_cpu),
        WRK_BINARY, "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
        "-s", str(script), url, "--", *args,
    ]  # fmt: skip


def _parse_wrk(stdout: str) -> dict[str, Any]:
    match = re.search(r"^BENCH (\{.*\})$", stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}")
    return dict(json.loads(match.group(1)))


def _run_wrk(
    argv: list[str], server: ServerProcess, stop_on: str | None = None, timeout_s: float = 120.0
) -> WrkRun:
    """Run wrk to completion (or until it prints `stop_on`, then SIGINT it) and measure CPU."""
    cpus = tuple(sorted(os.sched_getaffinity(server.pid) | os.sched_getaffinity(0)))
    cores_0 = _core_ticks(cpus)
    cpu_children_0 = _children_cpu_seconds()
    cpu_server_0 = _cpu_seconds(server.pid)
    t0 = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None  # set by stdout=PIPE
        if stop_on is not None:
            deadline = t0 + timeout_s
            for line in process.stdout:
                lines.append(line)
                if line.strip() == stop_on:
                    # wrk sleeps for its whole -d before joining its threads; SIGINT ends the
                    # sleep, and wrk then prints its summary as usual.
                    process.send_signal(signal.SIGINT)
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"wrk did not print {stop_on!r} within {timeout_s}s")
        rest, _ = process.communicate(timeout=timeout_s)
        lines.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    wall_s = time.monotonic() - t0
    cores = _core_load(cores_0, _core_ticks(cpus))
    cpu_server_s = _cpu_seconds(server.pid) - cpu_server_0
    stdout = "".join(lines)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{stdout[-2000:]}")
    summary = _parse_wrk(stdout)
    busy_s = float(summary["duration_us"]) / 1e6
    loadgen_cpu_pct = 100.0 * (_children_cpu_seconds() - cpu_children_0) / wall_s
    server_cpu_pct = 100.0 * cpu_server_s / wall_s
    # What else ran on each core while wrk ran: the machine may be shared, and CPU taken from
    # the server's core lowers its numbers. (The server runs only on its core, wrk and this
    # process only on theirs, so the rest of each core's busy time belongs to someone else.)
    server_core = min(os.sched_getaffinity(server.pid))
    foreign = {
        cpu: max(
            0.0, load["busy_pct"] - (server_cpu_pct if cpu == server_core else loadgen_cpu_pct)
        )
        for cpu, load in cores.items()
    }
    return WrkRun(
        argv=argv,
        summary=summary,
        loadgen_cpu_pct=loadgen_cpu_pct,
        server_cpu_pct=100.0 * cpu_server_s / max(busy_s, 1e-9),
        foreign_server_core_pct=foreign.get(server_core, 0.0),
        foreign_cpu_pct=sum(foreign.values()),
        cores=cores,
        wall_s=wall_s,
        stdout=stdout,
    )


@dataclass(frozen=True)
class WrkLoad:
    """What one throughput row sends: a wrk script, a path, a connection count, a key prefix."""

    script: str
    path: str
    connections: int
    key_prefix: str | None  # distinct-key PUT rows: every run writes under a new prefix


THROUGHPUT_LOADS: dict[str, WrkLoad] = {
    "seq_put": WrkLoad("put_distinct.lua", "", 1, "seq"),
    "put_c64": WrkLoad("put_distinct.lua", "", CONNECTIONS, "c64"),
    "get_c64": WrkLoad("get.lua", "/v2/keys/bench/get", CONNECTIONS, None),
    "qget_c64": WrkLoad("get.lua", "/v2/keys/bench/get?quorum=true", CONNECTIONS, None),
}

_run_ids = itertools.count(1)


def _load_argv(
    config: BenchConfig, scripts_dir: Path, load: WrkLoad, url: str, duration_s: int
) -> list[str]:
    args = [f"bench/{load.key_prefix}{next(_run_ids)}-"] if load.key_prefix else []
    return _wrk_argv(
        config, scripts_dir / load.script, url + load.path, load.connections, duration_s, args
    )


def _summarize(runs: list[WrkRun], stat: str) -> RowResult:
    """The row is the median (or best) run by req/s; every run is kept in the detail."""
    ranked = sorted(runs, key=lambda r: r.requests_per_s)
    run = ranked[-1] if stat == "best" else ranked[len(ranked) // 2]
    detail = {
        "wrk_argv": run.argv,
        "stat": stat,
        "runs_req_per_s": [round(r.requests_per_s, 1) for r in runs],
        "best_req_per_s": round(ranked[-1].requests_per_s, 1),
        "wrk": run.summary,
        "loadgen_cpu_pct": round(run.loadgen_cpu_pct, 1),
        "server_cpu_pct": round(run.server_cpu_pct, 1),
        "foreign_server_core_pct": round(run.foreign_server_core_pct, 1),
        "foreign_cpu_pct": round(run.foreign_cpu_pct, 1),
        "cores": run.cores,
        "runs": [
            {
                "req_per_s": round(r.requests_per_s, 1),
                "server_cpu_pct": round(r.server_cpu_pct, 1),
                "loadgen_cpu_pct": round(r.loadgen_cpu_pct, 1),
                "foreign_server_core_pct": round(r.foreign_server_core_pct, 1),
                "foreign_cpu_pct": round(r.foreign_cpu_pct, 1),
                "cores": r.cores,
                "errors": r.summary["errors"],
                "latency_us": r.summary["latency_us"],
            }
            for r in runs
        ],
    }
    warnings = []
    errors = sum(r.error_count for r in runs)
    if errors:
        warnings.append(f"{errors} wrk errors (see JSON)")
    foreign = max(r.foreign_server_core_pct for r in runs)
    if foreign > FOREIGN_BUSY_PCT:
        warnings.append(f"other processes took up to {foreign:.0f}% of the server's core")
    steal = max(c["steal_pct"] for r in runs for c in r.cores.values())
    if steal > FOREIGN_BUSY_PCT:
        warnings.append(f"hypervisor steal up to {steal:.0f}%")
    loadgen = max(r.loadgen_cpu_pct for r in runs)
    if loadgen > LOADGEN_BUSY_PCT:
        warnings.append(f"load generator at up to {loadgen:.0f}% of its core")
    return RowResult(run.requests_per_s, detail, "; ".join(warnings) or None)


def throughput_row(
    load: WrkLoad, servers: dict[str, ServerProcess], config: BenchConfig, scripts_dir: Path
) -> dict[str, RowResult]:
    """One row for every server, runs interleaved (etcd, dockyard, etcd, ...) so that noise
    from a shared machine falls on both columns alike. A server whose run fails drops out."""
    failed: dict[str, RowResult] = {}
    runs: dict[str, list[WrkRun]] = {kind: [] for kind in servers}

    def run(kind: str, duration_s: int) -> WrkRun | None:
        if kind in failed:
            return None
        server = servers[kind]
        argv = _load_argv(config, scripts_dir, load, server.url, duration_s)
        try:
            return _run_wrk(argv, server)
        except Exception as e:  # one server's failure must not lose the other's numbers
            failed[kind] = RowResult(None, {"error": repr(e), "wrk_argv": argv}, f"failed: {e}")
            return None

    for kind in servers:
        if config.warmup_s > 0:
            run(kind, config.warmup_s)
    for _ in range(config.repeats):
        for kind in servers:
            result = run(kind, config.duration_s)
            if result is not None:
                runs[kind].append(result)
    return {kind: failed.get(kind) or _summarize(runs[kind], config.stat) for kind in servers}


# --------------------------------------------------------------------------- watcher row


class _HttpResponseReader(asyncio.Protocol):
    """One HTTP/1.1 connection that records when a response's headers and body have arrived.

    Only what the measurement needs: the status line, Content-Length or chunked framing (the
    body is complete at the terminating zero-size chunk, which the event JSON cannot contain).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head_end = -1
        self.status = 0
        self.content_length: int | None = None
        self.headers_at: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.body_at: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> None:
        assert self.transport is not None  # called after connect
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        if self.head_end < 0:
            self.head_end = self.buffer.find(b"\r\n\r\n")
            if self.head_end < 0:
                return
            head = bytes(self.buffer[: self.head_end]).decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.content_length = int(value.strip())
            if not self.headers_at.done():
                self.headers_at.set_result(now)
        body = self.buffer[self.head_end + 4 :]
        complete = (
            len(body) >= self.content_length
            if self.content_length is not None
            else body == b"0\r\n\r\n" or body.endswith(b"\r\n0\r\n\r\n")
        )
        if complete and not self.body_at.done():
            self.body_at.set_result(now)

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"connection closed: {exc}")
        for future in (self.headers_at, self.body_at):
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int) -> _HttpResponseReader:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_HttpResponseReader, host, port)
    return protocol


async def _watch_once(host: str, port: int, key: str, rep: int) -> dict[str, float]:
    watchers = await asyncio.gather(*(_connect(host, port) for _ in range(WATCHERS)))
    writer = await _connect(host, port)
    try:
        watch_request = (
            f"GET /v2/keys/{key}?wait=true HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
        ).encode()
        for w in watchers:
            w.send(watch_request)
        # etcd 3.4 flushes the response headers once the watcher is registered in the store:
        # a watcher whose headers arrived is armed and cannot miss the PUT below.
        await asyncio.wait_for(
            asyncio.gather(*(w.headers_at for w in watchers)), WATCH_ARM_TIMEOUT_S
        )
        statuses = {w.status for w in watchers}
        if statuses != {200}:
            raise RuntimeError(f"watch answered {statuses}, expected 200")
        body = f"value=rep{rep}".encode()
        put_request = (
            f"PUT /v2/keys/{key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        t0 = time.perf_counter()
        writer.send(put_request)
        events = await asyncio.wait_for(
            asyncio.gather(*(w.body_at for w in watchers)), WATCH_EVENT_TIMEOUT_S
        )
        put_acked = await asyncio.wait_for(writer.body_at, WATCH_EVENT_TIMEOUT_S)
        if any(f"rep{rep}".encode() not in w.buffer for w in watchers):
            raise RuntimeError("a watcher received an event without the value just PUT")
        return {
            "last_ms": (max(events) - t0) * 1e3,
            "first_ms": (min(events) - t0) * 1e3,
            "put_ack_ms": (put_acked - t0) * 1e3,
        }
    finally:
        for w in [*watchers, writer]:
            w.close()


async def _watch_all(
    servers: dict[str, ServerProcess], config: BenchConfig
) -> dict[str, list[dict[str, float]] | Exception]:
    """Reps interleaved across servers; the first `watch_warmup_reps` are discarded."""
    results: dict[str, list[dict[str, float]] | Exception] = {kind: [] for kind in servers}
    for rep in range(config.watch_warmup_reps + config.watch_reps):
        for kind, server in servers.items():
            samples = results[kind]
            if isinstance(samples, Exception):
                continue
            parsed = urllib.parse.urlsplit(server.url)
            host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
            try:
                sample = await _watch_once(host, port, "bench/watched", rep)
            except Exception as e:  # one server's failure must not lose the other's numbers
                results[kind] = e
                continue
            if rep >= config.watch_warmup_reps:
                samples.append(sample)
    return results


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def watch_row(servers: dict[str, ServerProcess], config: BenchConfig) -> dict[str, RowResult]:
    for server in servers.values():
        http_put(server.url, "bench/watched", "initial")
    # Other load on the servers' core during the row (the servers' own CPU subtracted).
    cpu_0 = {kind: _cpu_seconds(server.pid) for kind, server in servers.items()}
    ticks_0, t0 = _core_ticks((config.server_cpu,)), time.monotonic()
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        outcomes = runner.run(_watch_all(servers, config))
    busy_pct = _core_load(ticks_0, _core_ticks((config.server_cpu,)))[config.server_cpu]
    servers_pct = sum(
        100.0 * (_cpu_seconds(server.pid) - cpu_0[kind]) / (time.monotonic() - t0)
        for kind, server in servers.items()
    )
    foreign_pct = max(0.0, busy_pct["busy_pct"] - servers_pct)
    warning = (
        f"other processes took {foreign_pct:.0f}% of the server's core"
        if foreign_pct > FOREIGN_BUSY_PCT
        else None
    )
    rows = {}
    for kind, reps in outcomes.items():
        if isinstance(reps, Exception):
            rows[kind] = RowResult(None, {"error": repr(reps)}, f"failed: {reps!r}")
            continue
        last = [r["last_ms"] for r in reps]
        detail = {
            "watchers": WATCHERS,
            "reps": len(reps),
            "last_ms": {"median": statistics.median(last), "min": min(last), "max": max(last)},
            "first_ms_median": statistics.median(r["first_ms"] for r in reps),
            "put_ack_ms_median": statistics.median(r["put_ack_ms"] for r in reps),
            "foreign_server_core_pct": round(foreign_pct, 1),
            "samples": reps,
        }
        rows[kind] = RowResult(statistics.median(last), detail, warning)
    return rows


# --------------------------------------------------------------------------- memory row


def memory_row(server: ServerProcess, config: BenchConfig, scripts_dir: Path) -> RowResult:
    rss_start_kib = _kib(_proc_status(server.pid).get("VmRSS"))
    argv = _wrk_argv(
        config,
        scripts_dir / "fill.lua",
        server.url,
        CONNECTIONS,
        int(FILL_TIMEOUT_S),
        ["mem/k", str(config.memory_keys)],
    )
    run = _run_wrk(argv, server, stop_on="FILLED", timeout_s=FILL_TIMEOUT_S)
    time.sleep(1.0)  # let in-flight work (fsyncs, allocator, GC) settle before reading RSS
    status = _proc_status(server.pid)
    rss_kib = _kib(status.get("VmRSS"))
    if rss_kib is None:
        raise RuntimeError(f"no VmRSS for pid {server.pid}")
    # Read back after RSS: the listing itself allocates in the server.
    listing = http_get_json(server.url, "/v2/keys/mem")
    key_count = len(listing.get("node", {}).get("nodes", []))
    detail = {
        "keys_requested": config.memory_keys,
        "keys_listed": key_count,
        "value_bytes": len(VALUE),
        "rss_start_kib": rss_start_kib,
        "rss_kib": rss_kib,
        "hwm_kib": _kib(status.get("VmHWM")),
        "fill_put_per_s": round(run.requests_per_s, 1),
        "fill_wall_s": round(run.wall_s, 2),
        "fill_wrk": run.summary,
    }
    warning = None
    if key_count != config.memory_keys:
        warning = f"listed {key_count} keys, expected {config.memory_keys}"
    return RowResult(rss_kib / 1024, detail, warning)


# --------------------------------------------------------------------------- driver


def _write_scripts(scripts_dir: Path) -> None:
    scripts_dir.mkdir(parents=True, exist_ok=True)
    (scripts_dir / "put_distinct.lua").write_text(_LUA_PUT_DISTINCT)
    (scripts_dir / "get.lua").write_text(_LUA_GET)
    (scripts_dir / "fill.lua").write_text(_LUA_FILL)


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _record(reports: dict[str, ServerReport], key: str, results: dict[str, RowResult]) -> None:
    for kind, result in results.items():
        reports[kind].rows[key] = result
        _progress(f"{kind}: {key} = {result.value} {result.warning or ''}")


def _failed_row(kinds: list[str], e: Exception) -> dict[str, RowResult]:
    return {kind: RowResult(None, {"error": repr(e)}, f"failed: {e!r}") for kind in kinds}


def _start_or_report(
    report: ServerReport, config: BenchConfig, base_dir: Path, name: str
) -> ServerProcess | None:
    _progress(f"starting {report.kind} ({name})")
    try:
        server = start_server(report.kind, base_dir / f"{report.kind}-{name}", name, config)
    except Exception as e:  # a dockyard that cannot start yet becomes an n/a column
        report.available = False
        text = str(e).strip()
        report.reason = text.splitlines()[0] if text else repr(e)
        report.servers.append({"kind": report.kind, "phase": name, "start_error": text[-3000:]})
        return None
    report.servers.append({"phase": name, **describe_server(server)})
    return server


def bench_all(kinds: list[str], config: BenchConfig, base_dir: Path) -> dict[str, ServerReport]:
    """Rows 1-5 on one fresh server per kind, all started up front and measured interleaved;
    row 6 on a second fresh server per kind (so it holds only the keys it measures)."""
    reports = {kind: ServerReport(kind, available=True) for kind in kinds}
    scripts_dir = base_dir / "scripts"
    _write_scripts(scripts_dir)

    servers: dict[str, ServerProcess] = {}
    try:
        for kind in kinds:
            server = _start_or_report(reports[kind], config, base_dir, "throughput")
            if server is not None:
                servers[kind] = server
        if servers:
            for server in servers.values():
                http_put(server.url, "bench/get", VALUE)
            for key, load in THROUGHPUT_LOADS.items():
                _progress(f"{key}: {', '.join(servers)}")
                _record(reports, key, throughput_row(load, servers, config, scripts_dir))
            _progress(f"watch_100: {', '.join(servers)}")
            try:
                _record(reports, "watch_100", watch_row(servers, config))
            except Exception as e:  # keep the rows measured so far
                _record(reports, "watch_100", _failed_row(list(servers), e))
            for kind, server in servers.items():
                reports[kind].servers[-1]["rss_end_kib"] = _kib(
                    _proc_status(server.pid).get("VmRSS")
                )
    finally:
        for server in servers.values():
            server.stop()

    for kind in list(servers):
        memory_server: ServerProcess | None = None
        try:
            memory_server = _start_or_report(reports[kind], config, base_dir, "memory")
            if memory_server is not None:
                _progress(f"rss_keys: {kind}")
                try:
                    result = memory_row(memory_server, config, scripts_dir)
                except Exception as e:  # keep the rows measured so far
                    result = RowResult(None, {"error": repr(e)}, f"failed: {e!r}")
                _record(reports, "rss_keys", {kind: result})
        finally:
            if memory_server is not None:
                memory_server.stop()
    return reports


# --------------------------------------------------------------------------- output


def _fmt_value(spec: RowSpec, result: RowResult | None) -> str:
    if result is None or result.value is None:
        return "n/a"
    text = f"{result.value:,.0f}" if spec.unit == "req/s" else f"{result.value:,.1f}"
    return text + (" !" if result.warning else "")


def _fmt_ratio(spec: RowSpec, etcd: RowResult | None, dockyard: RowResult | None) -> str:
    if etcd is None or dockyard is None or not etcd.value or dockyard.value is None:
        return "n/a"
    better = "higher" if spec.higher_is_better else "lower"
    return f"{dockyard.value / etcd.value:.2f}x ({better} is better)"


def render_table(config: BenchConfig, reports: dict[str, ServerReport]) -> str:
    header = ("row", "etcd", "dockyard", "ratio dockyard/etcd")
    lines: list[tuple[str, str, str, str]] = []
    for spec in row_specs(config):
        etcd = reports["etcd"].rows.get(spec.key) if "etcd" in reports else None
        dy = reports["dockyard"].rows.get(spec.key) if "dockyard" in reports else None
        lines.append(
            (spec.label, _fmt_value(spec, etcd), _fmt_value(spec, dy), _fmt_ratio(spec, etcd, dy))
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(4)]

    def fmt(r: tuple[str, str, str, str]) -> str:
        return "  ".join(
            [
                r[0].ljust(widths[0]),
                *(c.rjust(w) for c, w in zip(r[1:3], widths[1:3], strict=True)),
                r[3].ljust(widths[3]),
            ]
        ).rstrip()

    out = [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, lines)]
    return "\n".join(out)


def render_notes(config: BenchConfig, reports: dict[str, ServerReport]) -> str:
    notes = []
    for kind, report in reports.items():
        if not report.available:
            notes.append(f"{kind}: n/a - {report.reason}")
        for key, result in report.rows.items():
            if result.warning:
                notes.append(f"{kind} {key}: {result.warning}")
            if "loadgen_cpu_pct" in result.detail:
                d = result.detail
                notes.append(
                    f"{kind} {key}: runs {d['runs_req_per_s']} req/s; server "
                    f"{d['server_cpu_pct']:.0f}% of its core, others "
                    f"{d['foreign_server_core_pct']:.0f}% of it; wrk {d['loadgen_cpu_pct']:.0f}% "
                    f"of its core; p50/p99 {d['wrk']['latency_us']['p50'] / 1000:.2f}/"
                    f"{d['wrk']['latency_us']['p99'] / 1000:.2f} ms"
                )
            elif key == "watch_100" and result.value is not None:
                d = result.detail
                notes.append(
                    f"{kind} {key}: last watcher min/median/max "
                    f"{d['last_ms']['min']:.1f}/{d['last_ms']['median']:.1f}/"
                    f"{d['last_ms']['max']:.1f} ms, first watcher median "
                    f"{d['first_ms_median']:.1f} ms, PUT ack median {d['put_ack_ms_median']:.1f} ms"
                )
            elif key == "rss_keys" and result.value is not None:
                d = result.detail
                notes.append(
                    f"{kind} {key}: RSS {d['rss_start_kib'] / 1024:.1f} MiB empty, "
                    f"{d['rss_kib'] / 1024:.1f} MiB with {d['keys_listed']:,} keys "
                    f"(peak {d['hwm_kib'] / 1024:.1f}); filled at {d['fill_put_per_s']:,.0f} PUT/s"
                )
    return "\n".join(notes)


def render_machine(machine: dict[str, Any], config: BenchConfig) -> str:
    return (
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{(machine['mem_total_mib'] or 0) / 1024:.1f} GiB RAM, kernel {machine['kernel']}, "
        f"data dir {machine['data_root']} on {machine['data_fs']}\n"
        f"servers pinned to CPU {config.server_cpu}, load generator to CPU {config.client_cpu}; "
        f"throughput rows: {config.stat} of {config.repeats} x {config.duration_s}s wrk runs "
        f"(+{config.warmup_s}s warm-up); "
        f"{config.watch_reps} watcher reps; {machine['date_utc']}; git {machine['git_rev']}"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke: ~2 s rows, 10,000 keys")
    p.add_argument("--only", choices=["etcd", "dockyard"], help="run one server only")
    p.add_argument("--json", type=Path, help="write every measurement to this file")
    p.add_argument("--duration", type=int, help="seconds per throughput row (default 10, quick 2)")
    p.add_argument("--repeats", type=int, help="runs per throughput row (default 3, quick 1)")
    p.add_argument(
        "--stat",
        choices=["median", "best"],
        default="median",
        help="which run a throughput row reports; 'best' resists noise on a shared machine",
    )
    p.add_argument("--memory-keys", type=int, help="keys for the RSS row (default 100000)")
    p.add_argument("--watch-reps", type=int, help="measured watcher reps (default 20, quick 5)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument(
        "--data-root",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="parent of the fresh data dirs (default: the temp dir; must be a real disk)",
    )
    p.add_argument("--keep", action="store_true", help="keep data dirs and server logs")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        duration_s=args.duration or (2 if args.quick else 10),
        warmup_s=1,
        repeats=args.repeats or (1 if args.quick else 3),
        stat=args.stat,
        watch_reps=args.watch_reps or (5 if args.quick else 20),
        watch_warmup_reps=2,
        memory_keys=args.memory_keys or (10_000 if args.quick else 100_000),
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        quick=args.quick,
    )


def _check_prerequisites(config: BenchConfig) -> None:
    for tool in (ETCD_BINARY, WRK_BINARY, TASKSET_BINARY):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: run scripts/setup.sh")
    allowed = os.sched_getaffinity(0)
    if (
        config.server_cpu == config.client_cpu
        or not {config.server_cpu, config.client_cpu} <= allowed
    ):
        raise SystemExit(
            f"need two distinct CPUs for server ({config.server_cpu}) and client "
            f"({config.client_cpu}); this process may use {sorted(allowed)}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = make_config(args)
    _check_prerequisites(config)
    os.sched_setaffinity(0, {config.client_cpu})  # this process is (part of) the load generator

    args.data_root.mkdir(parents=True, exist_ok=True)
    base_dir = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.data_root))
    machine = machine_facts(base_dir)
    if "tmpfs" in str(machine["data_fs"]).split()[:1]:
        _progress("warning: data dir is on tmpfs, fsync costs nothing there; use --data-root")
    kinds = [args.only] if args.only else ["etcd", "dockyard"]
    t0 = time.monotonic()
    try:
        reports = bench_all(kinds, config, base_dir)
    except KeyboardInterrupt:
        _progress("interrupted: every process this run started has been stopped")
        return 130
    finally:
        if args.keep:
            _progress(f"kept data dirs and logs in {base_dir}")
        else:
            shutil.rmtree(base_dir, ignore_errors=True)

    print(render_machine(machine, config))
    print()
    print(render_table(config, reports))
    notes = render_notes(config, reports)
    if notes:
        print()
        print(notes)
    print(f"\ntotal {time.monotonic() - t0:.0f}s")

    if args.json:
        payload = {
            "machine": machine,
            "config": config.__dict__,
            "rows": [spec.__dict__ for spec in row_specs(config)],
            "results": {
                kind: {
                    "available": r.available,
                    "reason": r.reason,
                    "servers": r.servers,
                    "rows": {k: v.__dict__ for k, v in r.rows.items()},
                }
                for kind, r in reports.items()
            },
            "table": render_table(config, reports),
            "wall_s": round(time.monotonic() - t0, 1),
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    failed = [k for k, r in reports.items() if not r.available and args.only == k]
    failed += [
        f"{k}.{key}" for k, r in reports.items() for key, v in r.rows.items() if v.value is None
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
