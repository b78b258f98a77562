"""Fixtures for the store's e2e tests: the reference etcd 3.4 and a candidate, started per module.

The candidate is chosen by one switch, the environment variable DOCKYARD_DIFF_CANDIDATE:
`dockyard` (the default) runs `dockyard store serve`; `etcd` runs a second etcd, the baseline
that proves the harness's normalization (two etcds must show no difference).

Data dirs live on tmpfs when there is one: etcd fsyncs every write, and hundreds of cases
would otherwise spend most of their time waiting for the disk.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.store.differential import Client
from tests.support.servers import ServerProcess, start_dockyard, start_etcd

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
    if Path("/dev/shm").is_dir():
        base = Path(tempfile.mkdtemp(prefix="dockyard-diff-", dir="/dev/shm"))
    else:
        base = tmp_path_factory.mktemp("diff")
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
