"""python-etcd 0.4.5, a real v2 client, drives dockyard, and the same test bodies drive etcd 3.4.

Every test is parametrized over both servers: an assertion that holds for etcd is the
reference's behaviour, so the same assertion passing for dockyard proves compatibility for this
client (not just for hand-written HTTP). Keys are prefixed per test, so the tests share one
server per module without seeing each other's keys. Nothing sleeps: watches are armed with a
`waitIndex` past the current index, so they catch the next event whenever they reach the server.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import etcd
import pytest

from tests.support.servers import ServerProcess, start_dockyard, start_etcd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

WAIT_S = 10  # bound on every blocking client call; an event is expected well within it
HISTORY_EVENTS = 1000  # etcd's global event ring


@pytest.fixture(scope="module", params=["dockyard", "etcd"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    # tmpfs when there is one: etcd fsyncs every write, and the history test writes 1,000.
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="dockyard-pyetcd-", dir=shm if shm.is_dir() else None))
    started: list[ServerProcess] = []
    try:
        if request.param == "etcd":
            started.append(start_etcd(base, name="pyetcd"))
        else:
            started.append(start_dockyard(base, name="pyetcd"))
        yield started[0]
    finally:
        for process in started:
            process.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[etcd.Client]:
    parts = urlsplit(server.url)
    c = etcd.Client(host="127.0.0.1", port=parts.port, read_timeout=WAIT_S)
    try:
        yield c
    finally:
        c.http.clear()


def on(server: ServerProcess) -> str:
    return f"[{server.kind}]\n--- server log (tail) ---\n{server.log()[-2000:]}"


# --- keys -------------------------------------------------------------------------------------


def test_write_read_update_delete(client: etcd.Client, server: ServerProcess) -> None:
    created = client.write("/pe/crud/k", "one")
    assert (created.action, created.value, created.newKey) == ("set", "one", True), on(server)
    assert created.modifiedIndex == created.createdIndex == created.etcd_index

    read = client.read("/pe/crud/k")
    assert (read.key, read.value, read.modifiedIndex) == (
        "/pe/crud/k",
        "one",
        created.modifiedIndex,
    )
    assert client.get("/pe/crud/k").value == "one"
    assert "/pe/crud/k" in client
    assert "/pe/crud/missing" not in client

    replaced = client.set("/pe/crud/k", "two")
    assert (replaced.action, replaced.newKey) == ("set", False)
    assert replaced._prev_node.value == "one"
    # etcd quirk: a set over an existing key is a new node (new createdIndex).
    assert replaced.createdIndex == replaced.modifiedIndex > created.modifiedIndex

    replaced.value = "three"
    updated = client.update(replaced)  # python-etcd: a CAS on the read modifiedIndex
    assert (updated.action, updated.value) == ("compareAndSwap", "three")
    assert updated.createdIndex == replaced.createdIndex

    deleted = client.delete("/pe/crud/k")
    assert deleted.action == "delete"
    assert deleted._prev_node.value == "three"
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.read("/pe/crud/k")
    # write with prevExist=True on a missing key is an update: 100.
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.write("/pe/crud/k", "x", prevExist=True)


def test_directories_and_recursive_reads(client: etcd.Client, server: ServerProcess) -> None:
    made = client.write("/pe/dir/d", None, dir=True)
    assert made.dir and made.action == "set", on(server)
    client.write("/pe/dir/d/a", "1")
    client.write("/pe/dir/d/sub/b", "2")
    client.write("/pe/dir/d/sub/c", "3")
    client.write("/pe/dir/d/_hidden", "h")

    shallow = client.read("/pe/dir/d", sorted=True)
    assert shallow.dir
    assert [(n["key"], n.get("dir", False)) for n in shallow._children] == [
        ("/pe/dir/d/a", False),
        ("/pe/dir/d/sub", True),
    ], on(server)

    deep = client.read("/pe/dir/d", recursive=True)
    leaves = sorted((leaf.key, leaf.value) for leaf in deep.leaves)
    assert leaves == [("/pe/dir/d/a", "1"), ("/pe/dir/d/sub/b", "2"), ("/pe/dir/d/sub/c", "3")]
    assert sorted(c.key for c in deep.get_subtree() if c.dir) == ["/pe/dir/d", "/pe/dir/d/sub"]
    assert client.read("/pe/dir/d/_hidden").value == "h"  # hidden from listings only

    with pytest.raises(etcd.EtcdNotFile):  # 102: a dir needs dir=True or recursive=True
        client.delete("/pe/dir/d")
    with pytest.raises(etcd.EtcdDirNotEmpty):  # 108
        client.delete("/pe/dir/d", dir=True)
    with pytest.raises(etcd.EtcdNotDir):  # 104: a file blocks the path
        client.write("/pe/dir/d/a/deeper", "x")
    gone = client.delete("/pe/dir/d", recursive=True)
    assert gone.action == "delete" and gone.dir
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.read("/pe/dir/d/sub/b")
    with pytest.raises(etcd.EtcdRootReadOnly):  # 107
        client.delete("/", recursive=True)


def test_ttl_and_refresh(client: etcd.Client, server: ServerProcess) -> None:
    written = client.write("/pe/ttl/k", "v", ttl=50)
    assert written.ttl == 50 and written.expiration, on(server)

    refreshed = client.refresh("/pe/ttl/k", ttl=500)
    # refresh with prevExist=true: an update that keeps the value and the createdIndex.
    assert (refreshed.action, refreshed.value, refreshed.ttl) == ("update", "v", 500), on(server)
    assert refreshed.createdIndex == written.createdIndex
    assert refreshed.modifiedIndex == written.modifiedIndex + 1
    again = client.read("/pe/ttl/k")
    assert again.value == "v" and 499 <= again.ttl <= 500

    with pytest.raises(etcd.EtcdKeyNotFound):
        client.refresh("/pe/ttl/missing", ttl=5)
    # A write without ttl makes the key permanent again.
    permanent = client.write("/pe/ttl/k", "w")
    assert permanent.ttl is None and permanent.expiration is None
    # The client's own TTL type checks do not reach the server: ttl must be a number.
    with pytest.raises(etcd.EtcdValueError):
        client.write("/pe/ttl/bad", "v", ttl="soon")


def test_test_and_set_and_conditional_errors(client: etcd.Client, server: ServerProcess) -> None:
    first = client.write("/pe/cas/k", "old")
    swapped = client.test_and_set("/pe/cas/k", "new", "old")
    assert (swapped.action, swapped.value) == ("compareAndSwap", "new"), on(server)
    assert swapped._prev_node.value == "old"

    with pytest.raises(etcd.EtcdCompareFailed) as failed:
        client.test_and_set("/pe/cas/k", "newer", "old")
    assert "[old != new]" in str(failed.value), on(server)
    with pytest.raises(etcd.EtcdCompareFailed) as by_index:
        client.write("/pe/cas/k", "x", prevIndex=first.modifiedIndex)
    assert f"[{first.modifiedIndex} != {swapped.modifiedIndex}]" in str(by_index.value)
    with pytest.raises(etcd.EtcdAlreadyExist):
        client.write("/pe/cas/k", "x", prevExist=False)
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.test_and_set("/pe/cas/missing", "x", "y")
    with pytest.raises(etcd.EtcdCompareFailed):
        client.delete("/pe/cas/k", prevValue="wrong")
    assert client.delete("/pe/cas/k", prevValue="new").action == "compareAndDelete"
    # The payload the exception carries is the server's error body.
    payload = failed.value.payload
    assert (payload["errorCode"], payload["message"]) == (101, "Compare failed"), payload
    assert payload["index"] == swapped.modifiedIndex, payload


def test_in_order_keys_read_back_sorted(client: etcd.Client, server: ServerProcess) -> None:
    created = [client.write("/pe/queue", f"job{i}", append=True) for i in range(6)]
    assert all(c.action == "create" and c.newKey for c in created), on(server)
    names = [c.key.rsplit("/", 1)[1] for c in created]
    assert all(re.fullmatch(r"\d{20}", name) for name in names), names
    assert [int(n) for n in names] == [c.modifiedIndex for c in created]
    listing = client.read("/pe/queue", sorted=True)
    assert [(c.key, c.value) for c in listing.leaves] == [(c.key, c.value) for c in created]


def test_watch_with_index(client: etcd.Client, server: ServerProcess) -> None:
    first = client.write("/pe/watch/k", "a")
    second = client.write("/pe/watch/k", "b")
    # An index in the past is answered from the history, at once.
    past = client.watch("/pe/watch/k", index=first.modifiedIndex + 1, timeout=WAIT_S)
    assert (past.action, past.value, past.modifiedIndex) == ("set", "b", second.modifiedIndex)

    # An index in the future waits for the next write, whenever the watch reaches the server.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            client.watch,
            "/pe/watch",
            index=second.modifiedIndex + 1,
            timeout=WAIT_S,
            recursive=True,
        )
        third = client.write("/pe/watch/k2", "c")
        event = pending.result(timeout=WAIT_S + 5)
    assert (event.key, event.value, event.modifiedIndex) == (
        "/pe/watch/k2",
        "c",
        third.modifiedIndex,
    )

    # A watch with nothing to report times out on the client side.
    with pytest.raises(etcd.EtcdWatchTimedOut):
        client.watch("/pe/watch/quiet", index=third.modifiedIndex + 1, timeout=0.3)


def test_lock_with_two_contenders(client: etcd.Client, server: ServerProcess) -> None:
    port = urlsplit(server.url).port
    other = etcd.Client(host="127.0.0.1", port=port, read_timeout=WAIT_S)
    first = etcd.Lock(client, "pe-lock")
    second = etcd.Lock(other, "pe-lock")
    acquired = threading.Event()
    try:
        assert first.acquire(blocking=True, lock_ttl=60, timeout=WAIT_S), on(server)
        assert first.is_acquired
        start = client.read("/_locks/pe-lock").etcd_index

        def contend() -> bool:
            got = bool(second.acquire(blocking=True, lock_ttl=60, timeout=WAIT_S))
            acquired.set()
            return got

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(contend)
            # Await the contender's in-order key: then it is queued behind the holder.
            queued = client.watch(
                "/_locks/pe-lock", index=start + 1, recursive=True, timeout=WAIT_S
            )
            assert queued.action == "create" and queued.value == second.uuid, on(server)
            assert not acquired.is_set(), "the second contender got a held lock"
            holders = client.read("/_locks/pe-lock", recursive=True).leaves
            assert sorted(leaf.key for leaf in holders) == [first.lock_key, queued.key]
            first.release()
            assert pending.result(timeout=WAIT_S + 5) is True, on(server)
        assert second.is_acquired and not first.is_acquired
        second.release()
        assert not second.is_acquired
        remaining = client.read("/_locks/pe-lock", recursive=True)
        assert [n["key"] for n in remaining._children] == [], "a released lock key is left"
    finally:
        other.http.clear()


# --- cluster information ----------------------------------------------------------------------


def test_members_leader_stats_machines_version(client: etcd.Client, server: ServerProcess) -> None:
    members = client.members
    assert len(members) == 1, on(server)
    ((member_id, member),) = members.items()
    assert re.fullmatch(r"[0-9a-f]+", member_id) and member["id"] == member_id
    assert member["name"] == "pyetcd"
    assert member["clientURLs"] == [server.url]
    assert len(member["peerURLs"]) == 1

    assert client.leader == member

    stats = client.stats
    assert stats["name"] == "pyetcd" and stats["id"] == member_id
    assert stats["state"] == "StateLeader"
    assert stats["leaderInfo"]["leader"] == member_id
    assert client.leader_stats == {"leader": member_id, "followers": {}}
    store = client.store_stats
    assert {"getsSuccess", "setsSuccess", "watchers", "expireCount"} <= set(store)

    assert client.machines == [server.url]
    assert re.fullmatch(r"3\.4\.\d+", client.version), client.version
    assert client.cluster_version == "3.4.0"


# --- history: the event ring of 1000 ------------------------------------------------------------


def test_watch_on_cleared_history_raises_event_index_cleared(
    client: etcd.Client, server: ServerProcess
) -> None:
    first = client.write("/pe/hist/start", "s")
    # 1,000+ more events push `first` out of the ring; plain HTTP keep-alive keeps this quick.
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT_S)
    try:
        for n in range(HISTORY_EVENTS + 5):
            conn.request(
                "PUT",
                f"/v2/keys/pe/hist/churn{n % 7}",
                urlencode({"value": str(n)}),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 201), (n, response.status)
    finally:
        conn.close()

    with pytest.raises(etcd.EtcdEventIndexCleared) as cleared:
        client.watch("/pe/hist/start", index=first.modifiedIndex, timeout=WAIT_S)
    current = client.read("/pe/hist/start").etcd_index
    oldest = current - HISTORY_EVENTS + 1
    assert f"the requested history has been cleared [{oldest}/{first.modifiedIndex}]" in str(
        cleared.value
    ), on(server)
    # The oldest kept index is still answered from the history.
    kept = client.watch("/pe/hist", index=oldest, timeout=WAIT_S, recursive=True)
    assert kept.modifiedIndex == oldest
