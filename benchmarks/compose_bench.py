"""Benchmark `dockyard compose` against docker-compose 1.29.2 on the same dockyard engine.

One command starts a `dockyard daemon` through ``tests/support/dockerd.py`` (busybox
bootstrapped offline, private socket, data root and bridge), installs docker-compose 1.29.2
if needed (``tests/support/compose_reference.py``, its own venv), and times, for 10 and 30
services, ``up -d`` and then ``down`` of a project of busybox services with each tool.

Method:
- Each service runs ``sh -c "trap 'exit 0' TERM; sleep 3600 & wait"``: a long sleeper that
  exits on SIGTERM, so ``down`` measures the tools and the engine, not a 10 s stop timeout
  (a bare ``sleep`` as PID 1 ignores SIGTERM and would be killed only after it).
- Every service is on the project's default network, as a plain Compose file gets it, so
  both tools create and remove one network per cycle.
- Wall time of the whole command (process start included: that is what a user waits for).
  After each ``up -d`` the engine must list every service's container running; after each
  ``down``, none of the project's containers or networks: a run that does not is an error,
  never a number.
- The tools alternate within each repeat and the one that goes first alternates between
  repeats, so drift and noise fall on both columns; one warm-up cycle per tool and size is
  not counted. Medians are reported, with the ratio dockyard / docker-compose.
- The issue's reference (docker-compose 1.29.2 against dockerd, another machine) is printed
  alongside: up 1.92 s / 5.82 s and down 1.43 s / 3.14 s for 10 / 30 services.

Usage::

    .venv/bin/python benchmarks/compose_bench.py [--quick] [--reps N] [--sizes 10,30]
        [--only docker-compose|dockyard] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.compose_reference import (  # noqa: E402 - needs the repo root on sys.path
    COMPOSE_VERSION,
    compose_env,
    install_docker_compose,
)
from tests.support.dockerd import (  # noqa: E402
    DaemonProcess,
    api_request,
    start_dockyard_daemon,
)

TOOLS = ("docker-compose", "dockyard")
FLOOR = "engine floor"  # the same work sent straight to the API: no client can beat it
API = "/v1.41"
COMMAND_TIMEOUT_S = 600.0
PROJECT_LABEL = "com.docker.compose.project"
SLEEPER = "trap 'exit 0' TERM; sleep 3600 & wait"
# The numbers: docker-compose 1.29.2 against dockerd, seconds, by service count.
REFERENCE_S = {("up", 10): 1.92, ("up", 30): 5.82, ("down", 10): 1.43, ("down", 30): 3.14}


class BenchError(Exception):
    pass


def compose_file(services: int) -> str:
    """A v2.4 file (both tools read it) with `services` busybox sleepers."""
    lines = ['version: "2.4"', "services:"]
    for index in range(1, services + 1):
        lines += [
            f"  s{index:02d}:",
            "    image: busybox:latest",
            f'    command: ["sh", "-c", "{SLEEPER}"]',
        ]
    return "\n".join(lines) + "\n"


def tool_argv(tool: str, exe: Path, project: str, file: Path) -> list[str]:
    if tool == "docker-compose":
        return [str(exe), "-p", project, "-f", str(file)]
    return [sys.executable, "-m", "dockyard", "compose", "-p", project, "-f", str(file)]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return elapsed


def project_state(daemon: DaemonProcess, project: str) -> tuple[int, int, int]:
    """(running containers, all containers, networks) labelled with `project`."""
    query = urllib.parse.quote(json.dumps({"label": [f"{PROJECT_LABEL}={project}"]}))
    status, containers = daemon.api("GET", f"/containers/json?all=1&filters={query}")
    if status != 200:
        raise BenchError(f"list containers: HTTP {status} {containers!r}")
    status, networks = daemon.api("GET", f"/networks?filters={query}")
    if status != 200:
        raise BenchError(f"list networks: HTTP {status} {networks!r}")
    running = sum(1 for c in containers if c["State"] == "running")
    return running, len(containers), len(networks)


def cycle_s(
    daemon: DaemonProcess, tool: str, exe: Path, project: str, file: Path, services: int
) -> tuple[float, float]:
    """One `up -d` then `down` with `tool`; (up seconds, down seconds), both checked."""
    env = compose_env(daemon.docker_host, {"DOCKER_CONFIG": str(daemon.run_dir / "dockercfg")})
    base = tool_argv(tool, exe, project, file)
    up = timed([*base, "up", "-d"], env, file.parent)
    running, total, _ = project_state(daemon, project)
    if (running, total) != (services, services):
        raise BenchError(f"{tool} up -d: {running} of {total} running, {services} expected")
    down = timed([*base, "down"], env, file.parent)
    if project_state(daemon, project) != (0, 0, 0):
        raise BenchError(f"{tool} down left {project_state(daemon, project)}")
    return up, down


def _call(daemon: DaemonProcess, method: str, path: str, body: Any, want: int) -> Any:
    conn = daemon.connect()
    try:
        status, answer = api_request(conn, method, f"{API}{path}", body)
    finally:
        conn.close()
    if status != want:
        raise BenchError(f"{method} {path}: HTTP {status} {answer!r}")
    return answer


def _in_parallel(jobs: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # reported after every thread is joined
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"{len(errors)} of {len(jobs)} calls failed: {errors[0]!r}")


def floor_cycle_s(daemon: DaemonProcess, project: str, services: int) -> tuple[float, float]:
    """What both tools ask of the engine, with no tool: a network, then every container
    created and started at once (docker-compose's parallel limit is 64), then every one
    stopped and removed at once, then the network removed. (up seconds, down seconds)."""
    labels = {PROJECT_LABEL: project}
    network = f"{project}_default"
    names = [f"{project}_s{i:02d}_1" for i in range(1, services + 1)]

    def create_and_start(name: str) -> None:
        body = {
            "Image": "busybox:latest",
            "Cmd": ["sh", "-c", SLEEPER],
            "Labels": labels,
            "HostConfig": {"NetworkMode": network},
        }
        _call(daemon, "POST", f"/containers/create?name={name}", body, 201)
        _call(daemon, "POST", f"/containers/{name}/start", None, 204)

    def stop_and_remove(name: str) -> None:
        _call(daemon, "POST", f"/containers/{name}/stop?t=10", None, 204)
        _call(daemon, "DELETE", f"/containers/{name}", None, 204)

    started = time.perf_counter()
    _call(daemon, "POST", "/networks/create", {"Name": network, "Labels": labels}, 201)
    _in_parallel([functools.partial(create_and_start, n) for n in names])
    up = time.perf_counter() - started
    running, total, _ = project_state(daemon, project)
    if (running, total) != (services, services):
        raise BenchError(f"floor: {running} of {total} running, {services} expected")
    started = time.perf_counter()
    _in_parallel([functools.partial(stop_and_remove, n) for n in names])
    _call(daemon, "DELETE", f"/networks/{network}", None, 204)
    down = time.perf_counter() - started
    if project_state(daemon, project) != (0, 0, 0):
        raise BenchError(f"floor left {project_state(daemon, project)}")
    return up, down


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 services, 1 repeat")
    parser.add_argument("--reps", type=int, help="repeats per tool and size [5; quick 1]")
    parser.add_argument("--sizes", help="comma-separated service counts [10,30; quick 10]")
    parser.add_argument("--only", choices=TOOLS)
    parser.add_argument("--no-floor", action="store_true", help="skip the engine floor column")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    sizes = [int(s) for s in (args.sizes or ("10" if args.quick else "10,30")).split(",")]
    columns = [t for t in TOOLS if args.only in (None, t)]
    if not args.no_floor:
        columns.append(FLOOR)

    base = Path(tempfile.mkdtemp(prefix="compose-bench-"))
    daemon: DaemonProcess | None = None
    leaks: list[str] = []
    samples: dict[str, dict[str, dict[int, list[float]]]] = {
        c: {"up": {n: [] for n in sizes}, "down": {n: [] for n in sizes}} for c in columns
    }
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "docker_compose": COMPOSE_VERSION,
        "reps": reps,
        "samples_s": samples,
    }
    try:
        exe = install_docker_compose() if "docker-compose" in columns else Path()
        daemon = engine = start_dockyard_daemon(base)
        for services in sizes:
            file = base / f"p{services}" / "docker-compose.yml"
            file.parent.mkdir()
            file.write_text(compose_file(services))

            def measure(
                column: str, services: int = services, file: Path = file
            ) -> tuple[float, float]:
                project = f"bench{services}{column[:2]}"
                if column == FLOOR:
                    return floor_cycle_s(engine, project, services)
                return cycle_s(engine, column, exe, project, file, services)

            for column in columns:  # warm-up: page cache, the tools' imports, the image
                measure(column)
            for rep in range(reps):
                for column in columns if rep % 2 == 0 else columns[::-1]:
                    up, down = measure(column)
                    samples[column]["up"][services].append(up)
                    samples[column]["down"][services].append(down)
        report["rows"] = print_table(samples, sizes)
        print(f"medians of {reps} repeat(s); reference: docker-compose against dockerd (issue 7)")
    finally:
        if daemon is not None:
            leaks = daemon.stop()
        report["leaks"] = leaks
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        shutil.rmtree(base, ignore_errors=True)
    if leaks:
        print(f"left behind (now removed): {leaks}", file=sys.stderr)
        return 1
    return 0


def print_table(
    samples: dict[str, dict[str, dict[int, list[float]]]], sizes: list[int]
) -> list[dict[str, Any]]:
    """One row per step and size: reference, each column's median, dockyard/docker-compose,
    and the ratio of the tools' own overheads (their time minus the engine floor's, the
    engine work both must wait for)."""
    headers = ["reference", "docker-compose", "dockyard", FLOOR, "ratio", "overhead ratio"]
    print(f"{'row':24} " + " ".join(f"{h:>14}" for h in headers))
    rows = []
    for step in ("up", "down"):
        for services in sizes:
            medians = {
                c: statistics.median(by_step[step][services])
                for c, by_step in samples.items()
                if by_step[step][services]
            }
            ref, ours = medians.get("docker-compose"), medians.get("dockyard")
            ratio = ours / ref if ref and ours is not None else None
            floor = medians.get(FLOOR)
            overhead_ratio = (
                (ours - floor) / (ref - floor)
                if ref is not None and ours is not None and floor is not None and ref > floor
                else None
            )
            reference = REFERENCE_S.get((step, services))
            rows.append({"row": f"{step} {services}", "reference_s": reference, **medians})
            rows[-1]["ratio"] = ratio
            rows[-1]["overhead_ratio"] = overhead_ratio
            values = (reference, ref, ours, floor, ratio, overhead_ratio)
            cells = [f"{v:.2f}" if v is not None else "-" for v in values]
            label = f"{'up -d' if step == 'up' else 'down'}, {services} services (s)"
            print(f"{label:24} " + " ".join(f"{c:>14}" for c in cells))
    return rows


if __name__ == "__main__":
    sys.exit(main())
