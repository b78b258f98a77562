"""Start the reference etcd 3.4 and dockyard's store as real processes for tests and benchmarks.

Each server gets free loopback ports and its own data dir, is awaited until it answers, and is
stopped by PID (never by name). A missing binary fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ETCD_BINARY = "/usr/bin/etcd"


# Ports are picked below the kernel's ephemeral range (net.ipv4.ip_local_port_range,
# 32768-60999 by default): a port bind(0) hands out comes from that range, where any
# outgoing connection of the machine (the tests' own clients included) may take it before
# the server the test starts binds it ("address already in use", seen in CI).
FIXED_PORT_RANGE = (20000, 32767)
_PORT_TRIES = 200
_ports = random.SystemRandom()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on `address` now, outside the ephemeral range."""
    for _ in range(_PORT_TRIES):
        port = _ports.randint(*FIXED_PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {address} in {FIXED_PORT_RANGE}")


@dataclass
class ServerProcess:
    kind: str  # "etcd" or "dockyard"
    url: str  # client URL, e.g. http://127.0.0.1:23790
    data_dir: Path
    process: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-5000:]
        return ""


def wait_until_serving(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float = 30.0,
    ssl_context: object | None = None,
) -> None:
    """Poll /version until it answers; fail with the process's fate if it exits first."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before serving {url}")
        try:
            kwargs = {"context": ssl_context} if ssl_context is not None else {}
            with urllib.request.urlopen(f"{url}/version", timeout=1, **kwargs) as r:  # type: ignore[arg-type]
                if r.status == 200:
                    return
        except Exception as e:
            last_error = e
        time.sleep(0.02)  # polling an external process: there is no event to await
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last_error}")


def _spawn(
    kind: str,
    argv: Sequence[str],
    url: str,
    data_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    wait: bool = True,
    ssl_context: object | None = None,
) -> ServerProcess:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    process = subprocess.Popen(
        list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    log.close()
    server = ServerProcess(kind, url, data_dir, process, list(argv), log_path)
    if wait:
        try:
            wait_until_serving(url, process, ssl_context=ssl_context)
        except Exception:
            server.stop()
            raise RuntimeError(f"{kind} failed to start:\n{server.log()}") from None
    return server


def etcd_argv(data_dir: Path, url: str, name: str, peer: str, initial: str) -> list[str]:
    """etcd 3.4 with the v2 API on, one client URL and one peer URL."""
    return [
        ETCD_BINARY,
        "--enable-v2=true",
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        initial,
    ]


def start_etcd(
    base_dir: Path,
    name: str = "ref",
    extra: Sequence[str] = (),
    scheme: str = "http",
    ssl_context: object | None = None,
) -> ServerProcess:
    if not Path(ETCD_BINARY).exists():
        raise RuntimeError(
            f"{ETCD_BINARY} is missing: install Debian's etcd-server (scripts/setup.sh)"
        )
    client_port, peer_port = free_port(), free_port()
    data_dir = base_dir / f"etcd-{name}"
    url = f"{scheme}://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    argv = [*etcd_argv(data_dir, url, name, peer, f"{name}={peer}"), *extra]
    return _spawn(
        "etcd", argv, url, data_dir, base_dir / f"etcd-{name}.log", ssl_context=ssl_context
    )


def dockyard_argv(
    data_dir: Path, client_urls: Sequence[str], name: str, peer: str, extra: Sequence[str] = ()
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dockyard",
        "store",
        "serve",
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        ",".join(client_urls),
        "--advertise-client-urls",
        ",".join(client_urls),
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"{name}={peer}",
        *extra,
    ]


def start_dockyard(
    base_dir: Path,
    name: str = "dy",
    extra: Sequence[str] = (),
    scheme: str = "http",
    port: int | None = None,
    data_dir: Path | None = None,
    wait: bool = True,
    ssl_context: object | None = None,
) -> ServerProcess:
    client_port = port or free_port()
    data_dir = data_dir or base_dir / f"dockyard-{name}"
    url = f"{scheme}://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{free_port()}"
    argv = dockyard_argv(data_dir, [url], name, peer, extra)
    return _spawn(
        "dockyard",
        argv,
        url,
        data_dir,
        base_dir / f"dockyard-{name}.log",
        wait=wait,
        ssl_context=ssl_context,
    )


@dataclass
class DockyardCluster:
    """Members of one `dockyard store serve` cluster, by name. Every process ever started for
    it (restarts included) is remembered, so `stop_all` stops each one by PID."""

    base_dir: Path
    members: dict[str, ServerProcess]
    started: list[ServerProcess] = field(default_factory=list)

    def restart(self, name: str, wait: bool = True) -> ServerProcess:
        server = restart(self.members[name], wait=wait)
        self.started.append(server)
        self.members[name] = server
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop(signal.SIGKILL)

    def peer_url(self, name: str) -> str:
        argv = self.members[name].argv
        return argv[argv.index("--listen-peer-urls") + 1]

    def new_peer_url(self) -> str:
        return f"http://127.0.0.1:{free_port()}"

    def join(
        self, name: str, peer_url: str, *, wait: bool = True, extra: Sequence[str] = ()
    ) -> ServerProcess:
        """Start member `name` on `peer_url` with --initial-cluster-state existing (the
        cluster must have added it first); --initial-cluster names the running members."""
        running = {n: self.peer_url(n) for n, s in self.members.items() if s.process.poll() is None}
        initial = ",".join(f"{n}={u}" for n, u in {**running, name: peer_url}.items())
        url = f"http://127.0.0.1:{free_port()}"
        data_dir = self.base_dir / f"dockyard-{name}"
        argv = dockyard_argv(data_dir, [url], name, peer_url, extra)
        argv[argv.index("--initial-cluster") + 1] = initial
        argv += ["--initial-cluster-state", "existing"]
        server = _spawn(
            "dockyard", argv, url, data_dir, self.base_dir / f"dockyard-{name}.log", wait=wait
        )
        self.started.append(server)
        self.members[name] = server
        return server


@contextlib.contextmanager
def start_dockyard_cluster(
    base_dir: Path,
    size: int = 3,
    extra: Sequence[str] = (),
    peer_scheme: str = "http",
    prefix: str = "m",
) -> Iterator[DockyardCluster]:
    """Start `size` members on free loopback ports (names m0, m1, ...), each answering
    /version; the cluster may still be electing. All are killed by PID at the end.
    `peer_scheme="https"` needs the --peer-* TLS flags in `extra`."""
    names = [f"{prefix}{i}" for i in range(size)]
    peers = {name: f"{peer_scheme}://127.0.0.1:{free_port()}" for name in names}
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    cluster = DockyardCluster(base_dir, {})
    try:
        for name in names:
            url = f"http://127.0.0.1:{free_port()}"
            data_dir = base_dir / f"dockyard-{name}"
            argv = dockyard_argv(data_dir, [url], name, peers[name], extra)
            # Replace the single-member --initial-cluster that dockyard_argv ends with.
            argv[argv.index("--initial-cluster") + 1] = initial
            server = _spawn(
                "dockyard", argv, url, data_dir, base_dir / f"dockyard-{name}.log", wait=False
            )
            cluster.started.append(server)
            cluster.members[name] = server
        for server in cluster.members.values():
            try:
                wait_until_serving(server.url, server.process)
            except Exception:
                raise RuntimeError(f"cluster member failed to start:\n{server.log()}") from None
        yield cluster
    finally:
        cluster.stop_all()


@contextlib.contextmanager
def start_etcd_cluster(
    base_dir: Path, size: int = 3, prefix: str = "e"
) -> Iterator[DockyardCluster]:
    """A real etcd 3.4 cluster of `size` members on free loopback ports (names e0, e1, ...),
    each answering /version. All are killed by PID at the end."""
    if not Path(ETCD_BINARY).exists():
        raise RuntimeError(f"{ETCD_BINARY} is missing: install Debian's etcd-server")
    names = [f"{prefix}{i}" for i in range(size)]
    peers = {name: f"http://127.0.0.1:{free_port()}" for name in names}
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    cluster = DockyardCluster(base_dir, {})
    try:
        for name in names:
            url = f"http://127.0.0.1:{free_port()}"
            data_dir = base_dir / f"etcd-{name}"
            argv = etcd_argv(data_dir, url, name, peers[name], initial)
            server = _spawn("etcd", argv, url, data_dir, base_dir / f"etcd-{name}.log", wait=False)
            cluster.started.append(server)
            cluster.members[name] = server
        for server in cluster.members.values():
            wait_until_serving(server.url, server.process)
        yield cluster
    finally:
        cluster.stop_all()


def restart(server: ServerProcess, wait: bool = True) -> ServerProcess:
    """Start the same server again on the same ports and data dir (after stop or kill -9)."""
    log_path = server.log_path or server.data_dir.parent / f"{server.kind}.log"
    return _spawn(server.kind, server.argv, server.url, server.data_dir, log_path, wait=wait)


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


def which_or_fail(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is required and missing: run scripts/setup.sh")
    return path
