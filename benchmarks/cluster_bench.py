"""Benchmark a 3-member cluster (etcd 3.4 now, dockyard later) on loopback: throughput and failover.

Rows, for the cluster of ``--kind``:
- PUT/s over 64 connections, all to the leader, and spread over the 3 members (followers
  forward to the leader); distinct keys, 20-byte values; wrk's throughput, p50 and p99.
- quorum GET/s (``?quorum=true``) over 64 connections, the same two ways.
- failover: kill -9 of the leader until the next successful write through a surviving member;
  median of ``--trials`` (20). From the moment of the kill, a new PUT is started every
  ``--probe-interval-ms`` (10) against one survivor (each on its own connection, none waits for
  another), so a proposal lost with the dead leader cannot delay the measurement; the time is
  that of the first 2xx answer. The killed member is restarted with its data and the cluster
  is awaited healthy (every member ``/health`` 200, one agreed leader, equal ``X-Etcd-Index``)
  before the next trial.

Rules:
- Members run on loopback with free ports (what etcd's own numbers assume), each with a fresh
  data dir under ``--data-root`` (a real disk: fsync must cost what it costs).
- A kind is one function returning the argv of member i (`ARGV_HOOKS`); everything else (start,
  kill, restart, health, leader, load) goes through the v2 HTTP API both kinds serve.
- Every process is stopped by its PID in a ``finally``, never by name.
- Each throughput row also records the raft term (``X-Raft-Term``) before and after: a rise
  under load is a false election.

Usage::

    .venv/bin/python benchmarks/cluster_bench.py --kind etcd [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.servers import (  # noqa: E402 - needs the repo root on sys.path
    ETCD_BINARY,
    ServerProcess,
    free_port,
    wait_until_serving,
)

WRK_BINARY = "/usr/bin/wrk"
VALUE = "0123456789abcdefghij"  # 20 bytes
CONNECTIONS = 64
MEMBERS = 3
POLL_INTERVAL_S = 0.02  # polling external processes: there is no event to await
HEALTHY_TIMEOUT_S = 60.0
FAILOVER_TIMEOUT_S = 30.0
ATTEMPT_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 1000


# ---------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class MemberSpec:
    index: int
    name: str
    client_url: str
    peer_url: str
    data_dir: Path


# argv of member i: (that member, the whole cluster, the cluster token) -> argv
ArgvHook = Callable[[MemberSpec, Sequence[MemberSpec], str], list[str]]


def _initial_cluster(cluster: Sequence[MemberSpec]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in cluster)


def _member_flags(member: MemberSpec, cluster: Sequence[MemberSpec], token: str) -> list[str]:
    # The same flags for both kinds (issue 6: `dockyard store serve --initial-cluster ...`).
    return [
        "--name", member.name,
        "--data-dir", str(member.data_dir),
        "--listen-client-urls", member.client_url,
        "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url,
        "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", _initial_cluster(cluster),
        "--initial-cluster-state", "new",
        "--initial-cluster-token", token,
    ]  # fmt: skip


def etcd_argv(member: MemberSpec, cluster: Sequence[MemberSpec], token: str) -> list[str]:
    return [ETCD_BINARY, "--enable-v2=true", *_member_flags(member, cluster, token)]


def dockyard_argv(member: MemberSpec, cluster: Sequence[MemberSpec], token: str) -> list[str]:
    serve = [sys.executable, "-m", "dockyard", "store", "serve"]
    return [*serve, *_member_flags(member, cluster, token)]


ARGV_HOOKS: dict[str, ArgvHook] = {"etcd": etcd_argv, "dockyard": dockyard_argv}


# ---------------------------------------------------------------------- HTTP
@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    body: dict[str, Any]
    headers: dict[str, str]


def http(method: str, url: str, data: bytes | None = None, timeout_s: float = 2.0) -> Answer:
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return Answer(r.status, _json(r.read()), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Answer(e.code, _json(e.read()), dict(e.headers))
    except (OSError, TimeoutError):
        return Answer(0, {}, {})


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------- the cluster
@dataclass
class LoopbackCluster:
    kind: str
    base_dir: Path
    members: list[MemberSpec] = field(default_factory=list)
    servers: dict[int, ServerProcess] = field(default_factory=dict)
    token: str = ""

    def __post_init__(self) -> None:
        self.token = f"bench-{time.time_ns()}"
        for i in range(MEMBERS):
            self.members.append(
                MemberSpec(
                    index=i,
                    name=f"m{i}",
                    client_url=f"http://127.0.0.1:{free_port()}",
                    peer_url=f"http://127.0.0.1:{free_port()}",
                    data_dir=self.base_dir / f"{self.kind}-m{i}",
                )
            )

    def argv(self, i: int) -> list[str]:
        return ARGV_HOOKS[self.kind](self.members[i], self.members, self.token)

    def start(self, i: int, wait: bool = True) -> None:
        m = self.members[i]
        log_path = self.base_dir / f"{self.kind}-m{i}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                self.argv(i), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.servers[i] = ServerProcess(
            self.kind, m.client_url, m.data_dir, process, self.argv(i), log_path
        )
        if wait:
            self.wait_serving(i)

    def wait_serving(self, i: int) -> None:
        server = self.servers[i]
        try:
            wait_until_serving(server.url, server.process, timeout_s=HEALTHY_TIMEOUT_S)
        except Exception as e:
            raise RuntimeError(f"{self.kind} member {i} did not start: {e}\n{server.log()}") from e

    def start_all(self) -> None:
        for i in range(MEMBERS):  # all at once: a new cluster needs a quorum to serve
            self.start(i, wait=False)
        for i in range(MEMBERS):
            self.wait_serving(i)
        self.wait_healthy()

    def kill9(self, i: int) -> None:
        self.servers[i].kill9()  # by PID, reaped

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()

    def leader_index(self, asked: Sequence[int] | None = None) -> int | None:
        """The leader every member of `asked` names, or None if they disagree or have none."""
        seen: set[str | None] = set()
        for i in asked if asked is not None else range(MEMBERS):
            a = http("GET", self.members[i].client_url + "/v2/members/leader")
            seen.add(str(a.body.get("name")) if a.status == 200 else None)
        if len(seen) != 1 or None in seen:
            return None
        name = seen.pop()
        return next((m.index for m in self.members if m.name == name), None)

    def wait_healthy(self) -> int:
        """Every member healthy, one leader, every member at the same index; the leader."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while time.monotonic() < deadline:
            leader = self.leader_index()
            if leader is not None and all(
                http("GET", m.client_url + "/health").status == 200 for m in self.members
            ):
                indexes = {
                    http("GET", m.client_url + "/v2/keys/").headers.get("X-Etcd-Index")
                    for m in self.members
                }
                if len(indexes) == 1 and None not in indexes:
                    return leader
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"{self.kind} cluster not healthy within {HEALTHY_TIMEOUT_S}s")

    def term(self, i: int) -> int | None:
        raw = http("GET", self.members[i].client_url + "/v2/keys/").headers.get("X-Raft-Term")
        return int(raw) if raw is not None else None


# ---------------------------------------------------------------------- throughput (wrk)
_LUA = r"""
local members = {MEMBERS}
local addrs = nil
local counter = 0
function setup(thread)
  if addrs == nil then
    addrs = {}
    for i, hp in ipairs(members) do
      local host, port = hp:match("([^:]+):(%d+)")
      addrs[i] = wrk.lookup(host, port)[1]
    end
  end
  counter = counter + 1
  -- Threads take the members in turn: with -t64 -c64 each connection has its own thread.
  thread.addr = addrs[((counter - 1) % #addrs) + 1]
  thread:set("tid", counter)
end
local mode, target, n = "get", "/", 0
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
local body = "value=VALUE"
function init(args)
  mode = args[1]
  target = args[2]
  if mode == "put" then target = target .. tid .. "-" end
end
function request()
  if mode == "put" then
    n = n + 1
    return wrk.format("PUT", target .. n, headers, body)
  end
  return wrk.format("GET", target)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %.0f, "duration_us": %.0f, ' ..
    '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %.0f, "p90": %.0f, "p99": %.0f, "max": %.0f}}\n',
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
""".replace("VALUE", VALUE)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    mode: str  # "put" or "get"
    spread: bool  # over all members, or all to the leader


ROWS = (
    Row("put_leader", "PUT/s, 64 conns, to the leader", "put", False),
    Row("put_spread", "PUT/s, 64 conns, over 3 members", "put", True),
    Row("qget_leader", "quorum GET/s, 64 conns, to the leader", "get", False),
    Row("qget_spread", "quorum GET/s, 64 conns, over 3 members", "get", True),
)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    cluster: LoopbackCluster, row: Row, leader: int, duration_s: int, run_id: str, workdir: Path
) -> dict[str, Any]:
    targets = cluster.members if row.spread else [cluster.members[leader]]
    hostports = [m.client_url.removeprefix("http://") for m in targets]
    script = workdir / f"{row.key}.lua"
    script.write_text(_LUA.replace("{MEMBERS}", "{" + ",".join(f'"{h}"' for h in hostports) + "}"))
    target = f"/v2/keys/bench/{run_id}-" if row.mode == "put" else "/v2/keys/bench/get?quorum=true"
    threads = CONNECTIONS if row.spread else 1
    argv = [
        WRK_BINARY, f"-t{threads}", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--timeout", "5s",
        "-s", str(script), targets[0].client_url, "--", row.mode, target,
    ]  # fmt: skip
    term_before = cluster.term(leader)
    cpu_before = _children_cpu_s()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    cpu_s = _children_cpu_s() - cpu_before
    match = re.search(r"^BENCH (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    summary: dict[str, Any] = json.loads(match.group(1))
    errors = int(sum(summary["errors"].values()))
    ok = summary["requests"] - summary["errors"]["status"]
    return {
        "argv": argv,
        "summary": summary,
        "ops_per_s": ok / (summary["duration_us"] / 1e6),
        "p50_ms": summary["latency_us"]["p50"] / 1000,
        "p99_ms": summary["latency_us"]["p99"] / 1000,
        "errors": errors,
        "wrk_cpu_pct": 100 * cpu_s / (summary["duration_us"] / 1e6),
        "term_before": term_before,
        "term_after": cluster.term(leader),
    }


# ---------------------------------------------------------------------- failover
async def _first_write(url: str, trial: int, killed_at: float, interval_s: float) -> float:
    """Start a PUT every interval_s until one answers 2xx; seconds from killed_at to it."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=ATTEMPT_TIMEOUT_S) as client:
        won: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def attempt(n: int) -> None:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.put(url, data={"value": f"t{trial}-{n}"})
                if r.status_code in (200, 201) and not won.done():
                    won.set_result(time.monotonic() - killed_at)

        tasks: set[asyncio.Task[None]] = set()
        n = 0
        try:
            while not won.done():
                if time.monotonic() - killed_at > FAILOVER_TIMEOUT_S:
                    raise TimeoutError(f"no write succeeded within {FAILOVER_TIMEOUT_S}s")
                if len(tasks) < MAX_IN_FLIGHT:
                    n += 1
                    task = asyncio.create_task(attempt(n))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(won), interval_s)
            return won.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def failover_trial(cluster: LoopbackCluster, trial: int, interval_s: float) -> dict[str, Any]:
    leader = cluster.wait_healthy()
    survivors = [i for i in range(MEMBERS) if i != leader]
    target = survivors[trial % len(survivors)]
    url = cluster.members[target].client_url + "/v2/keys/bench/failover"
    if http("PUT", url, b"value=warm", timeout_s=5).status not in (200, 201):
        raise RuntimeError(f"the healthy cluster refused a write through member {target}")
    term_before = cluster.term(target)
    killed_at = time.monotonic()
    cluster.kill9(leader)
    seconds = asyncio.run(_first_write(url, trial, killed_at, interval_s))
    new_leader = cluster.leader_index(survivors)
    term_after = cluster.term(target)
    restarted_at = time.monotonic()
    cluster.start(leader)
    cluster.wait_healthy()
    return {
        "trial": trial,
        "killed": leader,
        "write_through": target,
        "failover_s": seconds,
        "new_leader": new_leader,
        "term_before": term_before,
        "term_after": term_after,
        "rejoin_s": time.monotonic() - restarted_at,
    }


# ---------------------------------------------------------------------- main
def _version(kind: str) -> str:
    if kind == "etcd":
        out = subprocess.run([ETCD_BINARY, "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "etcd ?"
    return "dockyard (this checkout)"


@contextlib.contextmanager
def _cluster(kind: str, data_root: Path, keep: bool) -> Iterator[LoopbackCluster]:
    base = Path(tempfile.mkdtemp(prefix=f"cluster-bench-{kind}-", dir=data_root))
    cluster = LoopbackCluster(kind, base)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        if keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=sorted(ARGV_HOOKS), default="etcd")
    p.add_argument("--duration", type=int, default=10, help="seconds per throughput run")
    p.add_argument("--repeats", type=int, default=3, help="runs per throughput row (median)")
    p.add_argument("--trials", type=int, default=20, help="failover trials (median)")
    p.add_argument("--probe-interval-ms", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="2 s runs, 1 repeat, 5 trials")
    p.add_argument("--data-root", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--keep", action="store_true", help="keep data dirs and member logs")
    p.add_argument("--json", type=Path, help="write every sample here")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.trials = 2, 1, 5
    if not Path(WRK_BINARY).exists():
        raise SystemExit(f"{WRK_BINARY} is required (scripts/setup.sh)")

    record: dict[str, Any] = {
        "kind": args.kind,
        "version": _version(args.kind),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "uname": platform.uname()._asdict()},
        "config": {k: str(v) for k, v in vars(args).items()},
        "rows": {},
        "failover": [],
    }
    started = time.monotonic()
    with _cluster(args.kind, args.data_root, args.keep) as cluster:
        leader = cluster.wait_healthy()
        if http("PUT", cluster.members[leader].client_url + "/v2/keys/bench/get",
                f"value={VALUE}".encode()).status not in (200, 201):  # fmt: skip
            raise RuntimeError("could not write the key the GET rows read")
        workdir = cluster.base_dir
        run_wrk(cluster, ROWS[0], leader, 1, "warmup", workdir)  # warm-up, discarded
        for row in ROWS:
            runs = []
            for r in range(args.repeats):
                leader = cluster.wait_healthy()
                runs.append(run_wrk(cluster, row, leader, args.duration, f"{row.key}{r}", workdir))
            record["rows"][row.key] = {"label": row.label, "runs": runs}
            print(f"  {row.label}: {[round(x['ops_per_s']) for x in runs]}", file=sys.stderr)
        for trial in range(args.trials):
            sample = failover_trial(cluster, trial, args.probe_interval_ms / 1000)
            record["failover"].append(sample)
            print(f"  failover {trial}: {sample['failover_s']:.3f} s", file=sys.stderr)
    record["elapsed_s"] = time.monotonic() - started

    print(f"\n{record['version']}, {MEMBERS} members on loopback, {record['date']}")
    print(f"{'row':<42}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'term +':>8}")
    for row in ROWS:
        runs = record["rows"][row.key]["runs"]
        best = sorted(runs, key=lambda x: x["ops_per_s"])[len(runs) // 2]  # the median run
        terms = [
            (x["term_after"] - x["term_before"]) if None not in (x["term_after"], x["term_before"])
            else None
            for x in runs
        ]  # fmt: skip
        term_rise = None if None in terms else sum(t for t in terms if t is not None)
        print(
            f"{row.label:<42}{best['ops_per_s']:>10,.0f}{best['p50_ms']:>9.2f}"
            f"{best['p99_ms']:>9.2f}{sum(x['errors'] for x in runs):>8}"
            f"{_fmt(term_rise, 'd'):>8}"
        )
        record["rows"][row.key]["median"] = best
    times = sorted(s["failover_s"] for s in record["failover"])
    if times:
        q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
        record["failover_summary"] = {
            "median_s": statistics.median(times),
            "p10_s": q[0],
            "p90_s": q[-1],
            "min_s": times[0],
            "max_s": times[-1],
            "n": len(times),
        }
        fs = record["failover_summary"]
        print(
            f"{'failover, kill -9 leader -> next write':<42}"
            f"median {fs['median_s']:.3f} s over {fs['n']} (p10 {fs['p10_s']:.3f}, "
            f"p90 {fs['p90_s']:.3f}, min {fs['min_s']:.3f}, max {fs['max_s']:.3f})"
        )
    print(f"elapsed {record['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
