"""Lock and Election against a real server: mutual exclusion under contention, hand-over when a
holder dies (its TTL runs out), and leader fail-over."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from dockyard.store.client import AsyncStoreClient, StoreClient
from dockyard.store.recipes import LOCK_PREFIX, AsyncElection, AsyncLock, Election, Lock
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CONTENDERS = 8
ROUNDS = 3

# A contender in another process, so that it can really crash (SIGKILL: no release, no refresh).
CONTENDER = """
import sys
from dockyard.store.client import StoreClient
from dockyard.store.recipes import Election, Lock
url, kind, name = sys.argv[1:4]
client = StoreClient(url)
if kind == "lock":
    lock = Lock(client, name, ttl_s=2)
    lock.acquire()
    print("held", lock.key, flush=True)
else:
    election = Election(client, name, "A", ttl_s=2)
    election.campaign()
    print("leading", flush=True)
sys.stdin.read()  # hold on until killed
"""


@pytest.fixture
def name() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def spawn(store_server: ServerProcess) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout):
            if stream is not None:
                stream.close()


def _start_contender(
    processes: list[subprocess.Popen[str]], url: str, kind: str, name: str
) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-c", CONTENDER, url, kind, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(p)
    line = p.stdout.readline() if p.stdout is not None else ""  # blocks until it holds/leads
    assert line, f"contender exited with {p.poll()}"
    return p, line.strip()


def test_lock_mutual_exclusion_across_threads(store_server: ServerProcess, name: str) -> None:
    counter = f"/counters/{name}"
    with StoreClient(store_server.url, timeout_s=10) as setup:
        setup.set(counter, "0")
    inside = 0
    max_inside = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def contender() -> None:
        nonlocal inside, max_inside
        try:
            with StoreClient(store_server.url, timeout_s=10) as client:
                for _ in range(ROUNDS):
                    with Lock(client, name, ttl_s=5):
                        with guard:
                            inside += 1
                            max_inside = max(max_inside, inside)
                        current = client.get(counter).node
                        # CAS would fail if anyone else wrote between our get and our swap.
                        client.compare_and_swap(
                            counter,
                            str(int(current.value or "0") + 1),
                            prev_index=current.modified_index,
                        )
                        with guard:
                            inside -= 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=contender) for _ in range(CONTENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert max_inside == 1
    with StoreClient(store_server.url) as client:
        assert client.get(counter).node.value == str(CONTENDERS * ROUNDS)
        # Every contender removed its queue key on release.
        assert client.get(f"{LOCK_PREFIX}/{name}").node.nodes == ()


@pytest.mark.asyncio
async def test_async_lock_mutual_exclusion_across_tasks(
    store_server: ServerProcess, name: str
) -> None:
    counter = f"/counters/{name}"
    inside = 0
    max_inside = 0
    async with AsyncStoreClient(store_server.url, timeout_s=10) as client:
        await client.set(counter, "0")

        async def contender() -> None:
            nonlocal inside, max_inside
            for _ in range(ROUNDS):
                async with AsyncLock(client, name, ttl_s=5):
                    inside += 1
                    max_inside = max(max_inside, inside)
                    current = (await client.get(counter)).node
                    await asyncio.sleep(0)  # let other tasks run while we hold the lock
                    await client.compare_and_swap(
                        counter,
                        str(int(current.value or "0") + 1),
                        prev_index=current.modified_index,
                    )
                    inside -= 1

        await asyncio.wait_for(asyncio.gather(*(contender() for _ in range(CONTENDERS))), 60)
        assert max_inside == 1
        assert (await client.get(counter)).node.value == str(CONTENDERS * ROUNDS)
        assert (await client.get(f"{LOCK_PREFIX}/{name}")).node.nodes == ()


def test_lock_timeout_and_keepalive_beyond_the_ttl(client: StoreClient, name: str) -> None:
    holder = Lock(client, name, ttl_s=1)
    assert holder.acquire(timeout=5)
    waiter = Lock(client, name, ttl_s=1)
    assert waiter.acquire(timeout=2.5) is False  # held across 2.5 TTLs: the keep-alive works
    assert waiter.key is None  # a timed-out waiter leaves the queue
    assert holder.is_acquired and not holder.lost
    holder.release()
    assert waiter.acquire(timeout=5)
    waiter.release()


def test_crashed_holder_hands_the_lock_over_when_its_ttl_expires(
    store_server: ServerProcess, client: StoreClient, name: str, spawn: list[subprocess.Popen[str]]
) -> None:
    holder, line = _start_contender(spawn, store_server.url, "lock", name)
    held_key = line.split()[1]
    waiter = Lock(client, name, ttl_s=2)
    assert waiter.acquire(timeout=0.5) is False
    holder.kill()  # SIGKILL: neither release nor refresh
    holder.wait()
    started = time.monotonic()
    assert waiter.acquire(timeout=15)
    # ttl 2 s plus etcd's 0.5 s expiry sync, plus slack for a loaded machine.
    assert time.monotonic() - started < 8
    keys = [n.key for n in client.get(f"{LOCK_PREFIX}/{name}").node.nodes]
    assert held_key not in keys and keys == [waiter.key]
    waiter.release()


def test_election_leader_failover_and_observe(
    store_server: ServerProcess, client: StoreClient, name: str, spawn: list[subprocess.Popen[str]]
) -> None:
    a, _ = _start_contender(spawn, store_server.url, "election", name)
    b = Election(client, name, "B", ttl_s=2)
    assert b.leader() == "A"
    assert b.campaign(timeout=0.5) is False

    seen: list[str | None] = []
    with StoreClient(store_server.url) as observer_client:
        observer = Election(observer_client, name, "observer", ttl_s=2)

        def observe() -> None:
            for leader in observer.observe():
                seen.append(leader)
                if leader == "B":
                    return

        thread = threading.Thread(target=observe)
        thread.start()
        a.kill()
        a.wait()
        assert b.campaign(timeout=15)
        assert b.is_leader and b.leader() == "B"
        thread.join(timeout=20)
        assert not thread.is_alive()
    # Between A and B there may be a moment with no leader at all (None).
    assert seen[0] == "A" and seen[-1] == "B"
    assert set(seen) <= {"A", None, "B"}
    b.resign()
    assert b.leader() is None


@pytest.mark.asyncio
async def test_async_election(store_server: ServerProcess, name: str) -> None:
    async with AsyncStoreClient(store_server.url, timeout_s=10) as client:
        first = AsyncElection(client, name, "one", ttl_s=2)
        second = AsyncElection(client, name, "two", ttl_s=2)
        assert await first.leader() is None
        assert await first.campaign(timeout=5)
        assert await second.campaign(timeout=0.3) is False
        leaders = second.observe()
        assert await anext(leaders) == "one"
        campaign = asyncio.create_task(second.campaign(timeout=15))
        await first.resign()
        assert await asyncio.wait_for(campaign, 15)
        assert await asyncio.wait_for(anext(leaders), 15) in ("two", None)
        assert await second.leader() == "two"
        await leaders.aclose()
        await second.resign()


@pytest.mark.asyncio
async def test_cancelled_async_acquire_leaves_the_queue(
    store_server: ServerProcess, name: str
) -> None:
    queue = f"{LOCK_PREFIX}/{name}"
    async with AsyncStoreClient(store_server.url, timeout_s=10) as client:
        holder = AsyncLock(client, name, ttl_s=5)
        assert await holder.acquire(timeout=5)
        held = (await client.get(queue)).etcd_index
        waiter = AsyncLock(client, name, ttl_s=5)
        attempt = asyncio.create_task(waiter.acquire())
        queued = await client.watch(queue, index=held + 1, recursive=True, timeout=10)
        assert queued.action == "create" and queued.node.key != holder.key
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert waiter.key is None
        assert [n.key for n in (await client.get(queue)).node.nodes] == [holder.key]
        await holder.release()
