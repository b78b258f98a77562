"""StoreClient and AsyncStoreClient against a real server (etcd 3.4, and dockyard's when ready)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.store.client import (
    AsyncStoreClient,
    CompareFailedError,
    ConnectionFailedError,
    EventIndexClearedError,
    KeyExistsError,
    KeyNotFoundError,
    NotADirectoryError,
    NotAFileError,
    StoreClient,
    UnauthorizedError,
    WatchTimeoutError,
)
from tests.support.servers import ServerProcess, free_port, start_dockyard, start_etcd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HISTORY = 1000  # etcd v2 keeps one global ring of the last 1000 events


def test_set_get_update_delete(client: StoreClient, prefix: str) -> None:
    created = client.set(f"{prefix}/k", "v1")
    assert (created.action, created.node.value, created.prev_node) == ("set", "v1", None)
    assert created.etcd_index == created.node.modified_index == created.node.created_index
    assert created.raft_index is not None and created.raft_term is not None

    replaced = client.set(f"{prefix}/k", "v2")
    assert replaced.prev_node is not None and replaced.prev_node.value == "v1"
    # etcd: a set over a key is a replace, with a new createdIndex.
    assert replaced.node.created_index == replaced.node.modified_index > created.node.created_index

    updated = client.update(f"{prefix}/k", "v3")
    assert updated.action == "update" and updated.node.created_index == replaced.node.created_index

    got = client.get(f"{prefix}/k", quorum=True)
    assert (got.action, got.node.key, got.node.value) == ("get", f"{prefix}/k", "v3")
    assert got.etcd_index >= updated.node.modified_index

    deleted = client.delete(f"{prefix}/k")
    assert deleted.action == "delete" and deleted.node.value is None
    assert deleted.prev_node is not None and deleted.prev_node.value == "v3"
    with pytest.raises(KeyNotFoundError):
        client.get(f"{prefix}/k")


def test_errors_carry_code_cause_and_index(client: StoreClient, prefix: str) -> None:
    with pytest.raises(KeyNotFoundError) as missing:
        client.get(f"{prefix}/a/b/c")
    assert (missing.value.code, missing.value.cause) == (100, prefix)  # first missing component
    assert missing.value.index > 0
    assert str(missing.value) == f"100: Key not found ({prefix}) [{missing.value.index}]"

    client.create(f"{prefix}/f", "x")
    with pytest.raises(KeyExistsError):
        client.create(f"{prefix}/f", "y")
    with pytest.raises(NotADirectoryError) as not_dir:
        client.set(f"{prefix}/f/child", "z")
    assert not_dir.value.cause == f"{prefix}/f"
    client.mkdir(f"{prefix}/d")
    with pytest.raises(NotAFileError):
        client.set(f"{prefix}/d", "v")
    with pytest.raises(KeyNotFoundError):
        client.update(f"{prefix}/nope", "v")


def test_compare_and_swap_and_compare_and_delete(client: StoreClient, prefix: str) -> None:
    first = client.set(f"{prefix}/c", "one")
    with pytest.raises(CompareFailedError) as failed:
        client.compare_and_swap(f"{prefix}/c", "two", prev_value="zzz")
    assert failed.value.cause == "[zzz != one]"
    swapped = client.compare_and_swap(f"{prefix}/c", "two", prev_index=first.node.modified_index)
    assert swapped.action == "compareAndSwap" and swapped.node.value == "two"
    with pytest.raises(ValueError, match="prev_value or prev_index"):
        client.compare_and_swap(f"{prefix}/c", "three")
    with pytest.raises(CompareFailedError):
        client.delete(f"{prefix}/c", prev_value="one")  # sent in the query, so it is enforced
    gone = client.delete(f"{prefix}/c", prev_value="two")
    assert gone.action == "compareAndDelete"


def test_ttl_refresh_keeps_value_and_does_not_wake_watchers(
    client: StoreClient, prefix: str
) -> None:
    key = f"{prefix}/hb"
    first = client.set(key, "alive", ttl=5)
    assert first.node.ttl is not None and 0 < first.node.ttl <= 5 and first.node.expiration
    refreshed = client.refresh(key, 30)
    assert refreshed.action == "update" and refreshed.node.value == "alive"
    assert refreshed.node.ttl is not None and refreshed.node.ttl > 5
    assert refreshed.node.created_index == first.node.created_index
    client.set(key, "next")
    # The watch from just after the first set skips the refresh and sees the next set.
    event = client.watch(key, index=first.node.modified_index + 1, timeout=5)
    assert (event.action, event.node.value) == ("set", "next")


def test_expiry_is_seen_by_a_watch(client: StoreClient, prefix: str) -> None:
    key = f"{prefix}/short"
    first = client.set(key, "v", ttl=1)
    event = client.watch(key, index=first.node.modified_index + 1, timeout=10)
    assert event.action == "expire"
    assert event.prev_node is not None and event.prev_node.value == "v"


def test_dirs_in_order_keys_and_sorted_recursive_listing(client: StoreClient, prefix: str) -> None:
    client.mkdir(f"{prefix}/q")
    keys = [client.append(f"{prefix}/q", f"job{i}").node.key for i in range(3)]
    assert all(k.startswith(f"{prefix}/q/") and len(k.rsplit("/", 1)[1]) == 20 for k in keys)
    assert keys == sorted(keys)
    client.set(f"{prefix}/q2/b/x", "1")
    client.set(f"{prefix}/q2/a", "2")
    listing = client.get(prefix, recursive=True, sorted=True)
    assert [n.key for n in listing.node.walk()] == [
        prefix, f"{prefix}/q", *keys,
        f"{prefix}/q2", f"{prefix}/q2/a", f"{prefix}/q2/b", f"{prefix}/q2/b/x",
    ]  # fmt: skip
    assert [n.value for n in client.get(f"{prefix}/q", sorted=True).node.nodes] == [
        "job0",
        "job1",
        "job2",
    ]
    with pytest.raises(Exception) as not_empty:
        client.delete(f"{prefix}/q2", dir=True)
    assert getattr(not_empty.value, "code", None) == 108
    assert client.delete(f"{prefix}/q2", recursive=True).node.dir


def test_watch_one_shot_from_history_and_timeout(client: StoreClient, prefix: str) -> None:
    key = f"{prefix}/w"
    first = client.set(key, "a")
    client.set(key, "b")
    event = client.watch(key, index=first.node.modified_index)
    assert (event.action, event.node.value) == ("set", "a")
    # X-Etcd-Index on a watch is the index when it was registered, not the event's.
    assert event.etcd_index > event.node.modified_index
    with pytest.raises(WatchTimeoutError):
        client.watch(key, timeout=0.3)
    child = client.set(f"{key}x/deep/er", "c")
    recursive = client.watch(f"{key}x", index=child.node.modified_index, recursive=True)
    assert recursive.node.key == f"{key}x/deep/er"


def test_watch_iter_resumes_from_modified_index(client: StoreClient, prefix: str) -> None:
    key = f"{prefix}/it"
    start = client.set(key, "0").node.modified_index
    for i in range(1, 5):
        client.set(key, str(i))
    events = client.watch_iter(key, index=start)
    assert [next(events).node.value for _ in range(5)] == ["0", "1", "2", "3", "4"]
    events.close()


def test_watch_iter_resyncs_after_history_is_cleared(client: StoreClient, prefix: str) -> None:
    key = f"{prefix}/quiet"
    old = client.set(key, "before").node.modified_index
    for i in range(HISTORY + 5):  # churn another key so the quiet key's index leaves the ring
        client.set(f"{prefix}/churn", str(i))
    with pytest.raises(EventIndexClearedError) as cleared:
        client.watch(key, index=old + 1)
    assert "the requested history has been cleared" in cleared.value.cause

    events = client.watch_iter(key, index=old + 1)
    resync = next(events)
    assert (resync.action, resync.node.value) == ("get", "before")
    assert resync.etcd_index >= old + HISTORY
    client.set(key, "after")
    following = next(events)
    assert (following.action, following.node.value) == ("set", "after")
    events.close()


def test_failover_to_the_next_endpoint(store_server: ServerProcess, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with StoreClient([dead, store_server.url]) as c:
        assert c.set(f"{prefix}/fo", "ok").node.value == "ok"
        assert c.get(f"{prefix}/fo").node.value == "ok"
    with (
        StoreClient(f"{dead},127.0.0.1:{free_port()}") as c,
        pytest.raises(ConnectionFailedError) as info,
    ):
        c.get("/x")
    assert len(info.value.errors) == 2
    assert "connection refused" in str(info.value)


def test_cluster_information(client: StoreClient, store_server: ServerProcess) -> None:
    members = client.members()
    assert len(members) == 1 and members[0].client_urls == (store_server.url,)
    assert client.leader().id == members[0].id
    assert client.machines() == [store_server.url]
    assert client.health() is True
    version = client.version()
    assert version.server and version.cluster


@pytest.mark.asyncio
async def test_async_client(aclient: AsyncStoreClient, prefix: str) -> None:
    key = f"{prefix}/async"
    created = await aclient.create(key, "v1", ttl=30)
    assert created.action == "create"
    assert (await aclient.get(key)).node.value == "v1"
    assert (await aclient.refresh(key, 40)).node.value == "v1"
    swapped = await aclient.compare_and_swap(key, "v2", prev_value="v1")
    with pytest.raises(CompareFailedError):
        await aclient.compare_and_swap(key, "v3", prev_index=1)
    watcher = asyncio.create_task(
        aclient.watch(key, index=swapped.node.modified_index + 1, timeout=10)
    )
    await aclient.set(key, "v3")
    assert (await watcher).node.value == "v3"
    with pytest.raises(WatchTimeoutError):
        await aclient.watch(key, timeout=0.2)

    events = aclient.watch_iter(key, index=created.node.modified_index)
    values = [(await anext(events)).node.value for _ in range(3)]
    await events.aclose()
    assert values == ["v1", "v2", "v3"]  # the refresh is skipped

    await aclient.mkdir(f"{prefix}/adir")
    item = await aclient.append(f"{prefix}/adir", "x")
    assert item.node.key.startswith(f"{prefix}/adir/")
    assert (await aclient.delete(f"{prefix}/adir", recursive=True)).node.dir
    with pytest.raises(KeyNotFoundError):
        await aclient.update(f"{prefix}/none", "v")
    assert await aclient.health() is True
    assert len(await aclient.members()) == 1
    assert (await aclient.leader()).id == (await aclient.members())[0].id
    assert len(await aclient.machines()) == 1
    assert (await aclient.version()).server


@pytest.mark.asyncio
async def test_async_failover(store_server: ServerProcess, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with AsyncStoreClient([dead, store_server.url]) as c:
        assert (await c.set(f"{prefix}/afo", "ok")).node.value == "ok"
    async with AsyncStoreClient([dead]) as c:
        with pytest.raises(ConnectionFailedError):
            await c.get("/x")


# -- servers of their own: TLS and auth -----------------------------------------------------


def _start(kind: str, base: Path, **kwargs: object) -> ServerProcess:
    start = start_etcd if kind == "etcd" else start_dockyard
    return start(base, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def own_server_kind(store_server: ServerProcess) -> str:
    return store_server.kind


def test_tls_with_client_certificates(tmp_path: Path, own_server_kind: str) -> None:
    from tests.support.tls import make_tls_material

    tls = make_tls_material(tmp_path / "tls")
    server = _start(
        own_server_kind,
        tmp_path,
        extra=tls.etcd_args(),
        scheme="https",
        ssl_context=tls.client_context(),
    )
    try:
        with StoreClient(
            server.url,
            ca_file=str(tls.ca_cert),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
        ) as c:
            assert c.set("/tls", "secure").node.value == "secure"
            assert c.get("/tls").node.value == "secure"
        with (
            StoreClient(server.url, ca_file=str(tls.ca_cert)) as c,
            pytest.raises(ConnectionFailedError),
        ):
            c.get("/tls")  # no client certificate: the handshake fails
    finally:
        server.stop()


def _auth_request(url: str, method: str, path: str, data: object, auth: str | None = None) -> None:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(data).encode(), method=method)
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
def auth_server(tmp_path: Path, own_server_kind: str) -> Iterator[ServerProcess]:
    import base64

    server = _start(own_server_kind, tmp_path)
    root = "Basic " + base64.b64encode(b"root:rootpw").decode()
    try:
        _auth_request(
            server.url, "PUT", "/v2/auth/users/root", {"user": "root", "password": "rootpw"}
        )
        _auth_request(server.url, "PUT", "/v2/auth/enable", {})
        revoke = {"role": "guest", "revoke": {"kv": {"read": ["/*"], "write": ["/*"]}}}
        _auth_request(server.url, "PUT", "/v2/auth/roles/guest", revoke, auth=root)
        yield server
    finally:
        server.stop()


def test_basic_auth(auth_server: ServerProcess) -> None:
    with StoreClient(auth_server.url, username="root", password="rootpw") as c:
        assert c.set("/secret", "s").node.value == "s"
    with StoreClient(auth_server.url) as anonymous, pytest.raises(UnauthorizedError) as info:
        anonymous.get("/secret")
    assert info.value.code == 110
    with (
        StoreClient(auth_server.url, username="root", password="wrong") as c,
        pytest.raises(UnauthorizedError),
    ):
        c.get("/secret")
