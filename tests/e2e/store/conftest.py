"""Fixtures for the store's e2e tests: the reference etcd 3.4 and a candidate, started per module.

The candidate is chosen by one switch, the environment variable DOCKYARD_DIFF_CANDIDATE:
`dockyard` (the default) runs `dockyard store serve`; `etcd` runs a second etcd, the baseline
that proves the harness's normalization (two etcds must show no difference).

Data dirs live on tmpfs when there is one: etcd fsyncs every write, and hundreds of cases
would otherwise spend most of their time waiting for the disk.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.store.differential import Client
from tests.support.servers import (
    ServerProcess,
    start_dockyard,
    start_dockyard_cluster,
    start_etcd,
    start_etcd_cluster,
)

CANDIDATES = ("dockyard", "etcd")


def candidate_kind() -> str:
    kind = os.environ.get("DOCKYARD_DIFF_CANDIDATE", "dockyard")
    if kind not in CANDIDATES:
        raise pytest.UsageError(f"DOCKYARD_DIFF_CANDIDATE={kind!r}: expected one of {CANDIDATES}")
    return kind


@dataclass
class ServerPair:
    reference: Client
    candidate: Client
    reference_server: ServerProcess
    candidate_server: ServerProcess
    pool: concurrent.futures.ThreadPoolExecutor

    def logs(self) -> str:
        return (
            f"--- reference log (tail) ---\n{self.reference_server.log()[-2000:]}\n"
            f"--- candidate log (tail) ---\n{self.candidate_server.log()[-2000:]}"
        )


@pytest.fixture(scope="module")
def server_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    with single_pair(tmp_path_factory) as pair:
        yield pair


@pytest.fixture(scope="module")
def cluster_server_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    with cluster_pair(tmp_path_factory) as pair:
        yield pair


@contextlib.contextmanager
def cluster_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """A 3-member etcd 3.4 and a 3-member dockyard cluster; each client talks to its
    cluster's leader, so that what depends on the role (`/v2/stats/self`, `/v2/stats/leader`)
    is comparable. Member names are masked (`diff<n>`): which one leads is chance."""
    base = _fast_dir(tmp_path_factory)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="diff")
    clients: list[Client] = []
    try:
        (base / "etcd").mkdir()
        (base / "dockyard").mkdir()
        with (
            start_etcd_cluster(base / "etcd", prefix="diff") as etcd,
            start_dockyard_cluster(base / "dockyard", prefix="diff") as dockyard,
        ):
            servers = [
                wait_for_leader(list(cluster.members.values())) for cluster in (etcd, dockyard)
            ]
            clients = [Client(s.url, mask_member_names=True) for s in servers]
            yield ServerPair(clients[0], clients[1], servers[0], servers[1], pool)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
        shutil.rmtree(base, ignore_errors=True)


def _fast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if Path("/dev/shm").is_dir():
        return Path(tempfile.mkdtemp(prefix="dockyard-diff-", dir="/dev/shm"))
    return tmp_path_factory.mktemp("diff")


def wait_for_leader(servers: list[ServerProcess], timeout_s: float = 20.0) -> ServerProcess:
    """The leader, once every member names the same one (polling external processes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        leaders = set()
        for server in servers:
            try:
                r = httpx.get(f"{server.url}/v2/members/leader", timeout=2)
                leaders.add(r.json()["clientURLs"][0] if r.status_code == 200 else None)
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                leaders.add(None)
        if len(leaders) == 1 and None not in leaders:
            (url,) = leaders
            return next(s for s in servers if s.url == url)
        if time.monotonic() > deadline:
            raise AssertionError(f"no agreed leader within {timeout_s}s: {leaders}")
        time.sleep(0.05)


@contextlib.contextmanager
def single_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    base = _fast_dir(tmp_path_factory)
    servers: list[ServerProcess] = []
    clients: list[Client] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="diff")
    try:
        # The same member name on both sides, so that it is comparable in /v2/members.
        servers.append(start_etcd(base, name="diff"))
        if candidate_kind() == "etcd":
            (base / "candidate").mkdir()
            servers.append(start_etcd(base / "candidate", name="diff"))
        else:
            servers.append(start_dockyard(base, name="diff"))
        clients = [Client(s.url) for s in servers]
        yield ServerPair(clients[0], clients[1], servers[0], servers[1], pool)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
