"""Benchmark dockyard's engine against the reference dockerd 20.10, on one machine, same image.

One command starts both daemons through ``tests/support/dockerd.py`` (dockerd with no network
changes, dockyard with busybox bootstrapped; the same busybox layer is imported into
dockerd), runs each row against both, alternating runs so that noise falls on both columns,
and prints one table (row, dockerd, dockyard, ratio dockyard/dockerd). ``--json`` records
every sample.

Rows:
- CLI run: median wall time of ``docker run --rm --network none busybox true``. That needs
  attach; when either daemon lacks it (the CLI fails), both columns measure
  ``docker run -d`` + ``docker wait`` + ``docker rm`` instead and the row says so.
- API cycle: median of create -> start -> wait -> delete over one keep-alive unix-socket
  connection (``POST /containers/create``, ``/start``, ``/wait``, ``DELETE``), ``true``.
- 50 concurrent starts: 50 threads, each with its own connection, each create + start of a
  ``sleep 1000`` container at once; wall time until the last start answered 204. Then all
  are force-removed (not timed).
- memory: 100 ``sleep 1000`` containers running (started 10 at a time); VmRSS of the daemon
  process, of its helper (dockerd's containerd), and the sum over the per-container shims,
  with the shim count; then all are removed.

Rules:
- Every process is started and stopped by PID (``DaemonProcess.stop``), also on Ctrl-C, and
  the run fails if anything had to be removed by force.
- No pinning: both daemons spawn runc and shims, which would inherit a pin; the machine
  should be otherwise idle.

Usage::

    .venv/bin/python benchmarks/engine_bench.py [--quick] [--only dockerd|dockyard] [--json F]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.dockerd import (  # noqa: E402 - needs the repo root on sys.path
    DaemonProcess,
    api_request,
    load_busybox_into,
    rss_kib,
    start_dockerd,
    start_dockyard_daemon,
)

API = "/v1.41"
CREATE_TRUE = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}
CREATE_SLEEP = {"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}
MEMORY_START_BATCH = 10


class BenchError(Exception):
    pass


def _check(status: int, body: Any, want: int, what: str) -> None:
    if status != want:
        raise BenchError(f"{what}: HTTP {status} {body!r}")


def create_and_start(daemon: DaemonProcess, body: dict[str, Any]) -> str:
    conn = daemon.connect()
    try:
        status, created = api_request(conn, "POST", f"{API}/containers/create", body)
        _check(status, created, 201, "create")
        cid = str(created["Id"])
        status, answer = api_request(conn, "POST", f"{API}/containers/{cid}/start")
        _check(status, answer, 204, "start")
        return cid
    finally:
        conn.close()


def remove_all(daemon: DaemonProcess) -> None:
    status, items = daemon.api("GET", "/containers/json?all=1")
    _check(status, items, 200, "list")
    for item in items:
        daemon.api("DELETE", f"/containers/{item['Id']}?force=1")


def cli_cycle_s(daemon: DaemonProcess, attach: bool) -> float:
    started = time.perf_counter()
    if attach:
        run = daemon.docker("run", "--rm", "--network", "none", "busybox", "true")
        if run.returncode != 0:
            raise BenchError(f"docker run --rm: {run.stderr}")
    else:
        run = daemon.docker("run", "-d", "--network", "none", "busybox", "true")
        cid = run.stdout.strip()
        wait = daemon.docker("wait", cid)
        rm = daemon.docker("rm", cid)
        if run.returncode or wait.stdout.strip() != "0" or rm.returncode:
            raise BenchError(f"run -d/wait/rm: {run.stderr} {wait.stderr} {rm.stderr}")
    return time.perf_counter() - started


def supports_attach(daemon: DaemonProcess) -> bool:
    run = daemon.docker("run", "--rm", "--network", "none", "busybox", "echo", "attached")
    remove_all(daemon)  # a failed attach may leave the created container behind
    return run.returncode == 0 and run.stdout == "attached\n"


def api_cycle_s(daemon: DaemonProcess, conn: Any) -> float:
    started = time.perf_counter()
    status, created = api_request(conn, "POST", f"{API}/containers/create", CREATE_TRUE)
    _check(status, created, 201, "create")
    cid = created["Id"]
    status, body = api_request(conn, "POST", f"{API}/containers/{cid}/start")
    _check(status, body, 204, "start")
    status, body = api_request(conn, "POST", f"{API}/containers/{cid}/wait")
    _check(status, body, 200, "wait")
    if body.get("StatusCode") != 0:
        raise BenchError(f"wait: {body!r}")
    status, body = api_request(conn, "DELETE", f"{API}/containers/{cid}")
    _check(status, body, 204, "delete")
    return time.perf_counter() - started


def concurrent_starts_s(daemon: DaemonProcess, count: int) -> float:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)

    def one() -> None:
        barrier.wait()
        try:
            create_and_start(daemon, CREATE_SLEEP)
        except BaseException as exc:  # reported below, after every thread is joined
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    try:
        if errors:
            raise BenchError(f"{len(errors)} of {count} starts failed: {errors[0]!r}")
        status, items = daemon.api("GET", "/containers/json")
        _check(status, items, 200, "list")
        if len(items) != count:
            raise BenchError(f"{len(items)} of {count} containers running")
    finally:
        remove_all(daemon)
    return elapsed


def memory_kib(daemon: DaemonProcess, count: int) -> dict[str, int | None]:
    try:
        for first in range(0, count, MEMORY_START_BATCH):
            batch = [
                threading.Thread(target=create_and_start, args=(daemon, CREATE_SLEEP))
                for _ in range(min(MEMORY_START_BATCH, count - first))
            ]
            for thread in batch:
                thread.start()
            for thread in batch:
                thread.join()
        status, items = daemon.api("GET", "/containers/json")
        _check(status, items, 200, "list")
        if len(items) != count:
            raise BenchError(f"{len(items)} of {count} containers running")
        shims = daemon.shim_pids()
        return {
            "daemon_kib": rss_kib(daemon.pid),
            # dockyard has no containerd: its daemon talks to runc through its own shims.
            "helper_kib": sum(rss_kib(p) for p in daemon.helper_pids())
            if daemon.kind == "dockerd"
            else None,
            "shims_kib": sum(rss_kib(p) for p in shims),
            "shims": len(shims),
        }
    finally:
        remove_all(daemon)


def alternate(
    daemons: list[DaemonProcess], reps: int, measure: Callable[[DaemonProcess], float]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {d.kind: [] for d in daemons}
    for _ in range(reps):
        for daemon in daemons:
            samples[daemon.kind].append(measure(daemon))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, about 30 s")
    parser.add_argument("--only", choices=("dockerd", "dockyard"))
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--cli-reps", type=int)
    parser.add_argument("--api-reps", type=int)
    parser.add_argument("--concurrent", type=int)
    parser.add_argument("--concurrent-reps", type=int)
    parser.add_argument("--memory-containers", type=int)
    args = parser.parse_args()
    cli_reps = args.cli_reps or (5 if args.quick else 30)
    api_reps = args.api_reps or (10 if args.quick else 50)
    concurrent = args.concurrent or (10 if args.quick else 50)
    concurrent_reps = args.concurrent_reps or (1 if args.quick else 3)
    memory_count = args.memory_containers or (20 if args.quick else 100)

    base = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    daemons: list[DaemonProcess] = []
    leaks: list[str] = []
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "quick": args.quick,
    }
    try:
        if args.only != "dockyard":
            dockerd = start_dockerd(base)
            daemons.append(dockerd)
            load_busybox_into(dockerd.docker_host, docker_config=dockerd.run_dir / "dockercfg")
        if args.only != "dockerd":
            daemons.append(start_dockyard_daemon(base))
        attach = {d.kind: supports_attach(d) for d in daemons}
        report["attach"] = attach
        use_attach = all(attach.values())
        cli_label = "CLI docker run --rm true (ms)" if use_attach else "CLI run -d + wait + rm (ms)"
        rows: list[tuple[str, dict[str, Any]]] = []
        alternate(daemons, 2, lambda d: cli_cycle_s(d, use_attach))  # warm-up
        cli = alternate(daemons, cli_reps, lambda d: cli_cycle_s(d, use_attach))
        rows.append((cli_label, {k: statistics.median(v) * 1e3 for k, v in cli.items()}))
        if not use_attach and attach.get("dockerd"):
            ref = {
                "dockerd": statistics.median(cli_cycle_s(daemons[0], True) for _ in range(cli_reps))
                * 1e3
            }
            rows.append(("CLI docker run --rm true (ms)", ref))
        conns = {d.kind: d.connect() for d in daemons}
        try:
            api = alternate(daemons, api_reps, lambda d: api_cycle_s(d, conns[d.kind]))
        finally:
            for conn in conns.values():
                conn.close()
        rows.append(
            (
                "API create/start/wait/rm (ms)",
                {k: statistics.median(v) * 1e3 for k, v in api.items()},
            )
        )
        starts = alternate(daemons, concurrent_reps, lambda d: concurrent_starts_s(d, concurrent))
        rows.append(
            (
                f"{concurrent} concurrent create+start (ms)",
                {k: statistics.median(v) * 1e3 for k, v in starts.items()},
            )
        )
        memory = {d.kind: memory_kib(d, memory_count) for d in daemons}
        for key, label in (
            ("daemon_kib", "daemon RSS"),
            ("helper_kib", "containerd RSS"),
            ("shims_kib", "shims RSS, sum"),
        ):
            rows.append(
                (
                    f"{label}, {memory_count} running (MiB)",
                    {k: None if v[key] is None else v[key] / 1024 for k, v in memory.items()},
                )
            )
        rows.append(
            (f"shim processes, {memory_count} running", {k: v["shims"] for k, v in memory.items()})
        )
        report["samples_s"] = {"cli": cli, "api": api, "concurrent": starts}
        report["memory_kib"] = memory
        report["rows"] = rows
        print(f"{'row':44} {'dockerd':>10} {'dockyard':>10} {'ratio':>7}")
        for label, values in rows:
            ref, ours = values.get("dockerd"), values.get("dockyard")
            ratio = f"{ours / ref:.2f}" if ref and ours is not None else "-"
            cells = [f"{v:10.1f}" if v is not None else f"{'n/a':>10}" for v in (ref, ours)]
            print(f"{label:44} {cells[0]} {cells[1]} {ratio:>7}")
        if not use_attach:
            lacking = [k for k, v in attach.items() if not v]
            print(f"note: no attach on {', '.join(lacking)}: the CLI row is run -d + wait + rm")
    finally:
        for daemon in daemons:
            leaks += [f"{daemon.kind}: {leak}" for leak in daemon.stop()]
        report["leaks"] = leaks
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        shutil.rmtree(base, ignore_errors=True)  # the daemon logs; data roots are gone
    if leaks:
        print(f"left behind (now removed): {leaks}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
