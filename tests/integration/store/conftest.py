"""Fixtures for the store client, recipes and CLI tests: a server of each kind, and clients.

`store_server` runs every test against the reference etcd 3.4 and against
`dockyard store serve`: the client must work with both, and both must behave alike.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from dockyard.store.client import AsyncStoreClient, StoreClient
from tests.support.servers import ServerProcess, start_dockyard, start_etcd


@pytest.fixture(scope="module", params=["etcd", "dockyard"])
def store_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per test module and kind; tests isolate themselves with `prefix`."""
    base = tmp_path_factory.mktemp(f"store-{request.param}")
    start = start_etcd if request.param == "etcd" else start_dockyard
    server = start(base)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests can share a server."""
    return f"/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(store_server: ServerProcess) -> Iterator[StoreClient]:
    with StoreClient([store_server.url], timeout_s=10.0) as c:
        yield c


@pytest_asyncio.fixture
async def aclient(store_server: ServerProcess) -> AsyncIterator[AsyncStoreClient]:
    async with AsyncStoreClient([store_server.url], timeout_s=10.0) as c:
        yield c
