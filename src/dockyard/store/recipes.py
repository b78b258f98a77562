"""Distributed `Lock` and `Election` on the etcd v2 keys API (in-order keys + TTL + watches).

Role: coordination primitives for anything that runs against etcd or `dockyard store serve`.
Both come as a sync class (`Lock`, `Election`, on `StoreClient`, keep-alive in a daemon thread)
and an asyncio class (`AsyncLock`, `AsyncElection`, on `AsyncStoreClient`, keep-alive in a task).
The decision "who holds it, whom do I wait for" is one pure function, `queue_position`.

The protocol (the same for both, and for both recipes):
1. Enqueue: POST an in-order key under `<prefix>/<name>` with a TTL. Its name is the store index
   zero-padded to 20 digits, so sorted order is arrival order (spec §9).
2. The holder (the leader) is the lowest key. Every other contender watches only the key just
   before its own, so a release wakes one waiter, not all of them (no thundering herd).
3. The watch starts at the listing's `X-Etcd-Index + 1`, so a change between the GET and the
   watch is not missed. Any event on the predecessor (delete, expire, anything) means "re-read
   the queue": the predecessor may have left while an earlier key still holds it.
4. A keep-alive refreshes the TTL (`refresh=true&prevExist=true`, which does not wake watchers)
   every `ttl_s / 3` while queued or holding. A crashed holder stops refreshing and its key
   expires, which hands over to the next in line after at most `ttl_s` (+ etcd's 0.5 s sync).
5. A 401 (history cleared) or a watch time slice ending just re-reads the queue.

Invariants and limits:
- At most one contender sees itself lowest at a time, because keys are only removed, never
  re-ordered. Mutual exclusion is lease-based: if the keep-alive cannot refresh for `ttl_s`
  (partition, stopped process), the key expires and another contender may acquire. `lost`
  turns True as soon as a refresh finds the key gone; a careful holder checks it.
- If our own key disappears while waiting, we re-enqueue at the back of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType

from dockyard.store.client import (
    AsyncStoreClient,
    EventIndexClearedError,
    KeyNotFoundError,
    Node,
    StoreClient,
    StoreClientError,
    WatchTimeoutError,
)

__all__ = [
    "ELECTION_PREFIX",
    "LOCK_PREFIX",
    "AsyncElection",
    "AsyncLock",
    "Election",
    "Lock",
    "QueuePosition",
    "queue_position",
]

LOCK_PREFIX = "/_locks"
ELECTION_PREFIX = "/_elections"
# A watch never blocks longer than this: the queue is re-read after each slice, which also keeps
# the watch index fresh against 401s on quiet keys (etcd issue #5466).
WATCH_SLICE_S = 10.0


# --------------------------------------------------------------------------------------------
# Pure decision


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where a contender stands: the holder (lowest key), its own node and the key before it."""

    holder: Node | None
    mine: Node | None
    predecessor: Node | None

    @property
    def holds(self) -> bool:
        return (
            self.mine is not None and self.holder is not None and self.holder.key == self.mine.key
        )


def queue_position(listing: Node, my_key: str | None) -> QueuePosition:
    """Read a queue dir listing (in-order children). Sorted by key here as well, so the caller
    need not trust the server's `sorted=true`; the 20-digit names make key order arrival order."""
    entries = sorted((n for n in listing.nodes if not n.dir), key=lambda n: n.key)
    holder = entries[0] if entries else None
    for i, node in enumerate(entries):
        if node.key == my_key:
            return QueuePosition(holder, node, entries[i - 1] if i > 0 else None)
    return QueuePosition(holder, None, None)


def _predecessor(position: QueuePosition) -> Node:
    """The key to watch; present and not first implies one exists (checked, never `assert`)."""
    if position.predecessor is None:
        raise RuntimeError(f"queue invariant broken: no predecessor in {position}")
    return position.predecessor


def _queue_dir(prefix: str, name: str) -> str:
    if not name or "/" in name.strip("/"):
        raise ValueError(f"a lock or election name is one path component, got {name!r}")
    return f"{prefix.rstrip('/')}/{name.strip('/')}"


def _refresh_interval_s(ttl_s: int) -> float:
    if ttl_s < 1:
        raise ValueError("ttl_s must be at least 1 second")
    return ttl_s / 3


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _slice(remaining: float | None) -> float:
    return WATCH_SLICE_S if remaining is None else max(0.0, min(remaining, WATCH_SLICE_S))


# --------------------------------------------------------------------------------------------
# Sync


class _Ticket:
    """One place in a queue dir (sync): enqueue, keep alive, wait to be first, leave."""

    def __init__(self, client: StoreClient, queue_dir: str, value: str, ttl_s: int) -> None:
        self.client = client
        self.queue_dir = queue_dir
        self.value = value
        self.ttl_s = ttl_s
        self.interval_s = _refresh_interval_s(ttl_s)
        self.key: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _enqueue(self) -> str:
        self._stop_keepalive()
        key = self.client.append(self.queue_dir, self.value, ttl=self.ttl_s).node.key
        self.key, self.lost = key, False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._keepalive, args=(key, self._stop), name=f"keepalive {key}", daemon=True
        )
        self._thread.start()
        return key

    def _keepalive(self, key: str, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.client.refresh(key, self.ttl_s)
            except KeyNotFoundError:
                self.lost = True
                return
            except StoreClientError:
                continue  # transient (no endpoint, timeout): try again next interval
            except RuntimeError:
                return  # the client was closed under us: nobody is left to refresh for

    def _stop_keepalive(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def wait_first(self, timeout: float | None) -> bool:
        """Enqueue if needed and block until our key is the lowest; False on timeout. On
        timeout or error the key is removed again, so no orphan is kept alive."""
        try:
            return self._wait_first(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.leave()
            raise

    def _wait_first(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.key is None:
            self._enqueue()
        while True:
            try:
                listing = self.client.get(self.queue_dir, sorted=True)
                node, index = listing.node, listing.etcd_index
            except KeyNotFoundError as e:  # the dir expired with our key in it
                node, index = Node(key=self.queue_dir, dir=True), e.index
            position = queue_position(node, self.key)
            if position.mine is None:
                self._enqueue()  # our key expired while waiting: back of the queue
                continue
            if position.holds:
                return True
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                self.leave()
                return False
            predecessor = _predecessor(position)
            with contextlib.suppress(WatchTimeoutError, EventIndexClearedError):
                self.client.watch(predecessor.key, index=index + 1, timeout=_slice(remaining))

    def leave(self) -> None:
        self._stop_keepalive()
        key, self.key = self.key, None
        if key is not None:
            with contextlib.suppress(KeyNotFoundError):
                self.client.delete(key)


class Lock:
    """A distributed mutex: `with Lock(client, "jobs", ttl_s=10): ...`.

    `acquire(timeout)` returns True once held, False after `timeout` seconds (None: forever).
    Not re-entrant; one `Lock` object is one contender (use one per thread)."""

    def __init__(
        self,
        client: StoreClient,
        name: str,
        ttl_s: int = 30,
        *,
        prefix: str = LOCK_PREFIX,
        value: str | None = None,
    ) -> None:
        self.name = name
        self.value = value if value is not None else uuid.uuid4().hex
        self._ticket = _Ticket(client, _queue_dir(prefix, name), self.value, ttl_s)
        self._held = False

    @property
    def key(self) -> str | None:
        """Our in-order key while queued or holding."""
        return self._ticket.key

    @property
    def is_acquired(self) -> bool:
        return self._held and not self._ticket.lost

    @property
    def lost(self) -> bool:
        """True if a keep-alive found our key gone (expired): the lock may be held by another."""
        return self._ticket.lost

    def acquire(self, timeout: float | None = None) -> bool:
        if self._held:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        self._held = self._ticket.wait_first(timeout)
        return self._held

    def release(self) -> None:
        self._held = False
        self._ticket.leave()

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _leader_of(client_listing: Node) -> Node | None:
    return queue_position(client_listing, None).holder


class Election:
    """Leader election: the candidate with the lowest in-order key leads.

    `campaign(timeout)` blocks until we lead (True) or the timeout passes (False, candidacy
    withdrawn); `resign()` steps down; `leader()` is the current leader's value (None if none);
    `observe()` yields the leader's value now and after every change of leader."""

    def __init__(
        self,
        client: StoreClient,
        name: str,
        candidate_value: str,
        ttl_s: int = 30,
        *,
        prefix: str = ELECTION_PREFIX,
    ) -> None:
        self.client = client
        self.name = name
        self.value = candidate_value
        self.queue_dir = _queue_dir(prefix, name)
        self._ticket = _Ticket(client, self.queue_dir, candidate_value, ttl_s)
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading and not self._ticket.lost

    def campaign(self, timeout: float | None = None) -> bool:
        self._leading = self._ticket.wait_first(timeout)
        return self._leading

    def resign(self) -> None:
        self._leading = False
        self._ticket.leave()

    def _read(self) -> tuple[Node | None, int]:
        try:
            listing = self.client.get(self.queue_dir, sorted=True)
        except KeyNotFoundError as e:
            return None, e.index
        return _leader_of(listing.node), listing.etcd_index

    def leader(self) -> str | None:
        node, _ = self._read()
        return node.value if node is not None else None

    def observe(self) -> Iterator[str | None]:
        """Leader values, starting with the current one; None while nobody leads. A change is a
        change of leader *key*: a new term of the same candidate value is reported again."""
        last: str | bool | None = False  # False: nothing reported yet
        while True:
            node, index = self._read()
            key = node.key if node is not None else None
            if key != last:
                last = key
                yield node.value if node is not None else None
            with contextlib.suppress(WatchTimeoutError, EventIndexClearedError):
                self.client.watch(
                    self.queue_dir, index=index + 1, recursive=True, timeout=WATCH_SLICE_S
                )


# --------------------------------------------------------------------------------------------
# Async


class _AsyncTicket:
    """The asyncio twin of `_Ticket`; the keep-alive is a task on the running loop."""

    def __init__(self, client: AsyncStoreClient, queue_dir: str, value: str, ttl_s: int) -> None:
        self.client = client
        self.queue_dir = queue_dir
        self.value = value
        self.ttl_s = ttl_s
        self.interval_s = _refresh_interval_s(ttl_s)
        self.key: str | None = None
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    async def _enqueue(self) -> str:
        await self._stop_keepalive()
        # Shielded: cancelled mid-request, the POST may still create our key on the server. We
        # then wait for its answer (bounded by the client's timeout) and remove that key, rather
        # than leave an orphan at the head of the queue for a whole TTL.
        append = asyncio.ensure_future(
            self.client.append(self.queue_dir, self.value, ttl=self.ttl_s)
        )
        try:
            result = await asyncio.shield(append)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                orphan = await append
                await self.client.delete(orphan.node.key)
            raise
        key = result.node.key
        self.key, self.lost = key, False
        self._task = asyncio.create_task(self._keepalive(key), name=f"keepalive {key}")
        return key

    async def _keepalive(self, key: str) -> None:
        while True:
            await asyncio.sleep(self.interval_s)  # a period, not a wait for a condition
            try:
                await self.client.refresh(key, self.ttl_s)
            except KeyNotFoundError:
                self.lost = True
                return
            except StoreClientError:
                continue
            except RuntimeError:
                return  # the client was closed under us

    async def _stop_keepalive(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_first(self, timeout: float | None) -> bool:
        try:
            return await self._wait_first(timeout)
        except BaseException:
            # Cancelled or failed: stop refreshing and remove the key (best effort).
            with contextlib.suppress(Exception):
                await self.leave()
            raise

    async def _wait_first(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.key is None:
            await self._enqueue()
        while True:
            try:
                listing = await self.client.get(self.queue_dir, sorted=True)
                node, index = listing.node, listing.etcd_index
            except KeyNotFoundError as e:
                node, index = Node(key=self.queue_dir, dir=True), e.index
            position = queue_position(node, self.key)
            if position.mine is None:
                await self._enqueue()
                continue
            if position.holds:
                return True
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                await self.leave()
                return False
            predecessor = _predecessor(position)
            with contextlib.suppress(WatchTimeoutError, EventIndexClearedError):
                await self.client.watch(predecessor.key, index=index + 1, timeout=_slice(remaining))

    async def leave(self) -> None:
        await self._stop_keepalive()
        key, self.key = self.key, None
        if key is not None:
            with contextlib.suppress(KeyNotFoundError):
                await self.client.delete(key)


class AsyncLock:
    """The asyncio `Lock`: `async with AsyncLock(client, "jobs", ttl_s=10): ...`.

    A cancelled or failed `acquire` removes its queue key before re-raising."""

    def __init__(
        self,
        client: AsyncStoreClient,
        name: str,
        ttl_s: int = 30,
        *,
        prefix: str = LOCK_PREFIX,
        value: str | None = None,
    ) -> None:
        self.name = name
        self.value = value if value is not None else uuid.uuid4().hex
        self._ticket = _AsyncTicket(client, _queue_dir(prefix, name), self.value, ttl_s)
        self._held = False

    @property
    def key(self) -> str | None:
        return self._ticket.key

    @property
    def is_acquired(self) -> bool:
        return self._held and not self._ticket.lost

    @property
    def lost(self) -> bool:
        return self._ticket.lost

    async def acquire(self, timeout: float | None = None) -> bool:
        if self._held:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        self._held = await self._ticket.wait_first(timeout)
        return self._held

    async def release(self) -> None:
        self._held = False
        await self._ticket.leave()

    async def __aenter__(self) -> AsyncLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class AsyncElection:
    """The asyncio `Election`; `observe()` is an async iterator."""

    def __init__(
        self,
        client: AsyncStoreClient,
        name: str,
        candidate_value: str,
        ttl_s: int = 30,
        *,
        prefix: str = ELECTION_PREFIX,
    ) -> None:
        self.client = client
        self.name = name
        self.value = candidate_value
        self.queue_dir = _queue_dir(prefix, name)
        self._ticket = _AsyncTicket(client, self.queue_dir, candidate_value, ttl_s)
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading and not self._ticket.lost

    async def campaign(self, timeout: float | None = None) -> bool:
        self._leading = await self._ticket.wait_first(timeout)
        return self._leading

    async def resign(self) -> None:
        self._leading = False
        await self._ticket.leave()

    async def _read(self) -> tuple[Node | None, int]:
        try:
            listing = await self.client.get(self.queue_dir, sorted=True)
        except KeyNotFoundError as e:
            return None, e.index
        return _leader_of(listing.node), listing.etcd_index

    async def leader(self) -> str | None:
        node, _ = await self._read()
        return node.value if node is not None else None

    async def observe(self) -> AsyncIterator[str | None]:
        last: str | bool | None = False
        while True:
            node, index = await self._read()
            key = node.key if node is not None else None
            if key != last:
                last = key
                yield node.value if node is not None else None
            with contextlib.suppress(WatchTimeoutError, EventIndexClearedError):
                await self.client.watch(
                    self.queue_dir, index=index + 1, recursive=True, timeout=WATCH_SLICE_S
                )
