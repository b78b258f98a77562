"""Benchmark dockyard's container networking against dockerd 20.10 and the raw loopback limit.

Both daemons run at once on this machine with their default networking (dockerd: docker0,
iptables, the userland proxy; dockyard: dockyard0, kernel NAT for published ports, no proxy),
the same busybox image in each, and every row alternates between them so noise falls on both.

Rows:
- published-port throughput (MB/s): `curl -o /dev/null` of a 512 MiB file that busybox httpd
  serves from a tmpfs inside a container, through `-p HOST:80` on 127.0.0.1; best of N. The
  raw loopback limit is the same busybox httpd and file served by a host process on
  127.0.0.1 (no container, no NAT): the ceiling the goal is measured against. A second
  ceiling, raw veth: the same server in a bare network namespace behind one veth pair (no
  bridge, no NAT, no container), the least any path into another namespace costs.
- connection rate (connections/s): `wrk -t2 -c32` for a few seconds against a 13-byte page
  through the published port; busybox httpd closes every connection, so each request is a
  new TCP connection. Raw loopback again as the ceiling.
- DNS lookup latency (µs): from inside a container on a user network (a client joined to the
  container's network namespace with nsenter), A queries for another container's name sent to
  127.0.0.11:53 one after another; median and p99.
- `docker run -d -p 80 busybox sleep` (ms): median wall time of the CLI command.

Rules: processes are started and stopped by PID; the host's iptables (filter and nat) are
saved before dockerd starts and restored after it stops, docker0 is deleted, and FORWARD's
policy is put back, so the machine is left as found. Run it on an otherwise idle machine.

Usage::

    .venv/bin/python benchmarks/network_bench.py [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.dockerd import (  # noqa: E402 - needs the repo root on sys.path
    DaemonProcess,
    load_busybox_into,
    start_dockerd,
    start_dockyard_daemon,
)

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
CURL = shutil.which("curl") or "/usr/bin/curl"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
IP = shutil.which("ip") or "/usr/sbin/ip"
READY_TIMEOUT_S = 30.0
RETRY_S = 0.05
BIG_FILE_MIB = 512
SMALL_BODY = "hello world\n\n"
SERVE = (
    "mkdir -p /www && echo -n '{small}' > /www/small && "
    "dd if=/dev/zero of=/www/big bs=1M count={mib} 2>/dev/null && exec httpd -f -p 80 -h /www"
)
# The DNS client runs in the container's network namespace (nsenter), so it measures the
# resolver, not process start-up inside the container.
DNS_CLIENT = r"""
import socket, struct, sys, time
name, count = sys.argv[1], int(sys.argv[2])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
samples = []
for i in range(count):
    header = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
    packet = header + qname + struct.pack(">HH", 1, 1)
    t0 = time.perf_counter()
    s.sendto(packet, ("127.0.0.11", 53))
    reply = s.recv(4096)
    samples.append(time.perf_counter() - t0)
    if struct.unpack(">H", reply[6:8])[0] < 1:
        sys.exit("no answer for " + name)
print(" ".join(f"{x:.9f}" for x in samples))
"""


class BenchError(Exception):
    pass


def docker(daemon: DaemonProcess, *args: str) -> str:
    result = daemon.docker(*args)
    if result.returncode != 0:
        raise BenchError(f"{daemon.kind}: docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def await_http(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        done = subprocess.run([CURL, "-sf", "-o", "/dev/null", url], check=False)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{url} did not answer")
        time.sleep(RETRY_S)  # the server starting is the condition


def throughput_mb_s(url: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [CURL, "-sf", "-o", "/dev/null", "-w", "%{size_download}", url],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"curl {url}: exit {done.returncode}")
    return int(done.stdout) / elapsed / 1e6


def connection_rate(url: str, seconds: int) -> float:
    done = subprocess.run(
        [WRK, "-t2", "-c32", f"-d{seconds}s", url], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise BenchError(f"wrk {url}: {done.stdout} {done.stderr}")


@contextlib.contextmanager
def host_server(tmp: Path) -> Iterator[tuple[str, str]]:
    """busybox httpd with the same files on the host's loopback (the raw loopback limit)
    and in a bare namespace behind one veth pair (the raw veth limit): their URLs."""
    www = tmp / "www"
    shm = Path(tempfile.mkdtemp(prefix="netbench-", dir="/dev/shm"))
    www.mkdir()
    (www / "small").write_text(SMALL_BODY)
    big = shm / "big"
    # Written, not truncated: a sparse file's holes read faster than the pages the
    # container's `dd` writes, which would flatter the baseline.
    chunk = bytes(1 << 20)
    with open(big, "wb") as f:
        for _ in range(BIG_FILE_MIB):
            f.write(chunk)
    (www / "big").symlink_to(big)
    port = free_port()
    token = secrets.token_hex(3)
    netns, here, there = f"dynb{token}", f"dynbh{token}", f"dynbn{token}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [BUSYBOX, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(www)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ip = [IP]
        for argv in (
            [*ip, "netns", "add", netns],
            [*ip, "link", "add", here, "type", "veth", "peer", "name", there, "netns", netns],
            [*ip, "addr", "add", "10.254.253.1/30", "dev", here],
            [*ip, "link", "set", here, "up"],
            [*ip, "-n", netns, "addr", "add", "10.254.253.2/30", "dev", there],
            [*ip, "-n", netns, "link", "set", there, "up"],
            [*ip, "-n", netns, "link", "set", "lo", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        procs.append(
            subprocess.Popen(
                [*ip, "netns", "exec", netns, BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(www)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls = (f"http://127.0.0.1:{port}/", "http://10.254.253.2/")
        for url in urls:
            await_http(url + "small")
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        subprocess.run([IP, "netns", "del", netns], capture_output=True, check=False)
        subprocess.run([IP, "link", "del", here], capture_output=True, check=False)
        shutil.rmtree(shm)


def serve_in_container(daemon: DaemonProcess, name: str, network: str) -> str:
    port = free_port()
    script = SERVE.format(small=SMALL_BODY.replace("\n", "\\n"), mib=BIG_FILE_MIB)
    docker(
        daemon, "run", "-d", "--name", name, "--network", network, "-p", f"127.0.0.1:{port}:80",
        "--tmpfs", f"/www:size={BIG_FILE_MIB + 16}m", "busybox", "sh", "-c", script,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    await_http(url + "small")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:  # the big file is written before httpd starts, so this is quick
        head = subprocess.run([CURL, "-sfI", url + "big"], capture_output=True, text=True)
        if f"Content-Length: {BIG_FILE_MIB << 20}" in head.stdout:
            return url
        if time.monotonic() > deadline:
            raise BenchError(f"{daemon.kind}: the big file never appeared")
        time.sleep(RETRY_S)


def dns_latencies_s(daemon: DaemonProcess, client: str, target: str, count: int) -> list[float]:
    pid = docker(daemon, "inspect", "-f", "{{.State.Pid}}", client)
    done = subprocess.run(
        [
            "nsenter",
            f"--net=/proc/{pid}/ns/net",
            sys.executable,
            "-c",
            DNS_CLIENT,
            target,
            str(count),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{daemon.kind}: DNS client: {done.stderr.strip()}")
    return [float(x) for x in done.stdout.split()]


def run_p_s(daemon: DaemonProcess) -> float:
    started = time.perf_counter()
    cid = docker(daemon, "run", "-d", "-p", "80", "busybox", "sleep", "600")
    elapsed = time.perf_counter() - started
    docker(daemon, "rm", "-f", cid)
    return elapsed


def alternate(
    daemons: list[DaemonProcess], reps: int, fn: Callable[[DaemonProcess], Any]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {d.kind: [] for d in daemons}
    for i in range(reps):
        for d in daemons if i % 2 == 0 else list(reversed(daemons)):
            out[d.kind].append(fn(d))
    return out


@contextlib.contextmanager
def host_network_restored() -> Iterator[None]:
    """iptables (filter, nat) and FORWARD's policy as they were, docker0 gone, afterwards."""
    saved = {
        table: subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=True
        ).stdout
        for table in ("filter", "nat")
    }
    had_docker0 = (
        subprocess.run([IP, "link", "show", "docker0"], capture_output=True).returncode == 0
    )
    try:
        yield
    finally:
        for text in saved.values():
            subprocess.run(["iptables-restore"], input=text, text=True, check=False)
        if not had_docker0:
            subprocess.run([IP, "link", "del", "docker0"], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    reps = 2 if args.quick else 5
    wrk_s = 2 if args.quick else 5
    dns_count = 200 if args.quick else 2000
    run_reps = 4 if args.quick else 20

    base = Path(tempfile.mkdtemp(prefix="net-bench-"))
    daemons: list[DaemonProcess] = []
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "quick": args.quick,
    }
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        with host_network_restored():
            try:
                dockyard = start_dockyard_daemon(base)
                daemons.append(dockyard)
                dockerd = start_dockerd(base, networking=True)
                daemons.insert(0, dockerd)
                load_busybox_into(dockerd.docker_host, docker_config=dockerd.run_dir / "dockercfg")
                net = f"bench{secrets.token_hex(3)}"
                urls: dict[str, str] = {}
                for d in daemons:
                    docker(d, "network", "create", net)
                    urls[d.kind] = serve_in_container(d, "web", net)
                    docker(d, "run", "-d", "--name", "client", "--network", net, "busybox",
                           "sleep", "3600")  # fmt: skip
                with host_server(base) as (loop_url, veth_url):
                    urls["loopback"] = loop_url
                    urls["raw veth"] = veth_url
                    kinds = ["loopback", "raw veth", *(d.kind for d in daemons)]
                    tput: dict[str, list[float]] = {k: [] for k in kinds}
                    rate: dict[str, list[float]] = {k: [] for k in kinds}
                    for i in range(reps):
                        order = kinds if i % 2 == 0 else list(reversed(kinds))
                        for kind in order:
                            tput[kind].append(throughput_mb_s(urls[kind] + "big"))
                        for kind in order:
                            rate[kind].append(connection_rate(urls[kind] + "small", wrk_s))
                rows.append(("published port MB/s (best)", {k: max(v) for k, v in tput.items()}))
                rows.append(
                    ("connections/s (median)", {k: statistics.median(v) for k, v in rate.items()})
                )
                report["throughput_mb_s"] = tput
                report["connections_per_s"] = rate
                dns = alternate(
                    daemons, 2, lambda d: dns_latencies_s(d, "client", "web", dns_count)
                )
                merged = {k: [x for run in v for x in run] for k, v in dns.items()}
                rows.append(
                    (
                        "DNS lookup median µs",
                        {k: statistics.median(v) * 1e6 for k, v in merged.items()},
                    )
                )
                rows.append(
                    (
                        "DNS lookup p99 µs",
                        {k: sorted(v)[int(len(v) * 0.99)] * 1e6 for k, v in merged.items()},
                    )
                )
                report["dns_s"] = merged
                alternate(daemons, 1, run_p_s)  # warm-up
                runs = alternate(daemons, run_reps, run_p_s)
                rows.append(
                    (
                        "docker run -d -p ms (median)",
                        {k: statistics.median(v) * 1e3 for k, v in runs.items()},
                    )
                )
                report["run_p_s"] = runs
                for d in daemons:
                    d.docker("rm", "-f", "web", "client")
                    d.docker("network", "rm", net)
            finally:
                for d in reversed(daemons):
                    d.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    heads = ("loopback", "raw veth", "dockerd", "dockyard", "vs dockerd")
    print(f"{'row':32} " + " ".join(f"{h:>10}" for h in heads) + f" {'vs loop':>8}")
    for label, values in rows:
        loop, ref, ours = values.get("loopback"), values.get("dockerd"), values.get("dockyard")
        veth = values.get("raw veth")

        def cell(x: float | None) -> str:
            return f"{x:10.1f}" if x is not None else f"{'-':>10}"

        vs_ref = f"{ours / ref:10.2f}" if ours and ref else f"{'-':>10}"
        vs_loop = f"{ours / loop:8.2f}" if ours and loop else f"{'-':>8}"
        print(f"{label:32} {cell(loop)} {cell(veth)} {cell(ref)} {cell(ours)} {vs_ref} {vs_loop}")
    report["rows"] = {label: values for label, values in rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
