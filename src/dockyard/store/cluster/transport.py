"""Peer transport: Raft messages between members over HTTP on the members' peer URLs.

Role: deliver the messages of a `Ready` to their members, and hand the batches other members
send us to the driver. Sending: `POST /raft` with a batch (`codec.encode_batch`) on one
keep-alive HTTP/1.1 connection per peer, written by one task per peer that takes everything
queued for that peer since its last post (so a busy leader sends few, large requests and a
follower's answers come back in order). Posts are pipelined: up to `MAX_POSTS_IN_FLIGHT`
go out without waiting for the answers before them, which a second task per connection
reads in order; a peer busy with its fsync or apply then delays no later append (with one
post at a time, an append waited for the answer to the previous one: 4 ms of a 3-member
round trip under load). Receiving: the member's peer listener routes `POST /raft` here; the
answer is `204` once the batch is stepped, `400`/`412` for a batch this member cannot take.
`GET /members` answers the membership, for a joining member.

Rules:
- Best effort, as Raft expects of its network: a message to a peer that is down, slow or
  refusing is dropped (the connection is closed and reopened for the next batch). Raft
  retries on its own (heartbeats, probes, MsgApp resends). The one resend here: the
  unanswered posts of a connection that failed go once more on a new one (it may have been
  a kept-alive connection the peer closed while idle, which says nothing of the peer, and a
  lost batch can hold a forwarded proposal that would wait an election timeout).
- A queue per peer is bounded (`MAX_QUEUED_MSGS`); when it is full new messages are dropped,
  so a dead peer costs bounded memory.
- A dropped or failed `MsgSnap` is reported to the core (`report_snapshot(to, False)`) so the
  leader probes again instead of waiting forever; a delivered one is reported as done.
- The transport never sends before the driver hands it messages, and the driver hands them
  over only when the Raft driver contract allows (after persisting, but for an async
  leader's appends); enqueueing is that hand-over.

Must not: decide anything about Raft, block the event loop, or raise into the driver.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dockyard.http.types import Request, Response
from dockyard.raft.messages import Message, MessageKind
from dockyard.store.cluster.codec import CONTENT_TYPE, Batch, CodecError, decode_batch, encode_batch

_log = logging.getLogger(__name__)

MAX_QUEUED_MSGS = 4096
# Unanswered posts per peer connection (HTTP/1.1 pipelining); the peer answers in order.
MAX_POSTS_IN_FLIGHT = 16
# Bytes written to a peer's socket and not yet taken by the kernel before posting waits.
MAX_UNSENT_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 1.0
REMOVED_MESSAGE = "the member has been permanently removed from the cluster"
MAX_RESPONSE_HEADER_BYTES = 16 * 1024


@dataclass
class PeerStats:
    """Counts etcd reports per follower in /v2/stats/leader."""

    success: int = 0
    fail: int = 0
    latencies_s: list[float] = field(default_factory=list)


class _ConnectFailed(OSError):
    """A new connection to a peer was refused or timed out."""


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"bad peer URL {url!r}")
    return parts.hostname, parts.port


@dataclass(eq=False)
class _Posted:
    batch: list[Message]
    started: float  # loop time
    retried: bool  # a second try: dropped if it fails again


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    in_flight: collections.deque[_Posted] = field(default_factory=collections.deque)
    posted: asyncio.Event = field(default_factory=asyncio.Event)
    reader_task: asyncio.Task[None] | None = None
    closed: bool = False


class _Peer:
    def __init__(self, transport: Transport, peer_id: int, url: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.host, self.port = _host_port(url)
        # https peer URLs: TLS with the member's peer identity (--peer-cert-file).
        self.ssl = transport.client_ssl if url.startswith("https://") else None
        self.queue: list[Message] = []
        self.wakeup = asyncio.Event()
        self.stats = PeerStats()
        self.retry: list[Message] = []  # from a failed connection's posts, sent once more
        self.conn: _Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self.probe_task: asyncio.Task[None] | None = None
        self.was_reachable = True
        # Since when (loop time) the peer has answered without a failure in between: etcd's
        # ActiveSince, which the strict membership checks read. None: not reachable now.
        self.active_since: float | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.ssl is None:
            return await asyncio.open_connection(self.host, self.port)
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, server_hostname=self.host
        )

    def _reached(self, ok: bool) -> None:
        if not ok:
            self.active_since = None
        elif self.active_since is None:
            self.active_since = asyncio.get_running_loop().time()

    async def probe(self) -> None:
        """Every PROBE_INTERVAL_S, `GET /probe` on a fresh connection: members that exchange
        no Raft messages (two followers) still know whether each other runs, as etcd's
        full mesh of peer streams does."""
        while not self.transport.closed:
            await self._probe_once()
            # The leader is probed every heartbeat interval: that is how a follower learns
            # within a tick that its leader's process is gone (fast failover).
            leader = self.peer_id == self.transport.leader
            await asyncio.sleep(self.transport.leader_probe_s if leader else PROBE_INTERVAL_S)

    async def _probe_once(self) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await self.connect()
        except (OSError, TimeoutError):
            # Refused (the process is gone) or no answer to the handshake: the only failures
            # that say the peer is down, not merely busy.
            self._reached(False)
            self.transport.unreachable(self.peer_id)
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                writer.write(
                    f"GET /probe HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                status_line = await reader.readline()
            self._reached(status_line.split(b" ")[1:2] == [b"204"])
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            self._reached(False)
        finally:
            writer.close()

    def enqueue(self, m: Message) -> None:
        """Queue `m`; `flush` posts the queue."""
        if len(self.queue) >= MAX_QUEUED_MSGS:
            self.transport.dropped(m)
            return
        self.queue.append(m)

    def flush(self) -> None:
        """Post what is queued now, on the open connection if it has room (so a Ready's
        messages are on the wire before the driver goes on to apply); otherwise the sender
        task connects, or waits for room, and posts."""
        if not self._post_queued():
            self.wakeup.set()

    def _post_queued(self) -> bool:
        """Post the queue on the open connection, within the window; whether all went."""
        conn = self.conn
        if conn is None or conn.closed:
            return False
        loop = asyncio.get_running_loop()
        while self.retry or self.queue:
            if len(conn.in_flight) >= MAX_POSTS_IN_FLIGHT:
                return False  # `_read_answers` wakes the sender when an answer makes room
            if conn.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                return False  # the sender drains first
            retried = bool(self.retry)
            if retried:
                batch, self.retry = self.retry, []
            else:
                batch, self.queue = self.queue, []
            body = encode_batch(
                Batch(self.transport.cluster_id, self.transport.member_id, tuple(batch))
            )
            head = (
                f"POST /raft HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            conn.in_flight.append(_Posted(batch, loop.time(), retried))
            conn.posted.set()
            conn.writer.write(head + body)
        return True

    async def run(self) -> None:
        """The sender task: opens the connection, waits for room in the window or in the
        socket's buffer, and posts. Posts are pipelined: up to MAX_POSTS_IN_FLIGHT
        unanswered on the connection (the peer answers in order, `_read_answers` reads the
        answers), so a peer busy with its fsync or its apply holds up no later append."""
        while not self.transport.closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            if not (self.retry or self.queue):
                continue
            conn = self.conn
            if conn is None:
                try:
                    conn = await self._connect()
                except _ConnectFailed as error:
                    self._drop_all(error)
                    continue
            self._post_queued()
            if conn.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        await conn.writer.drain()
                except (OSError, TimeoutError) as error:
                    self._connection_failed(conn, error)
                    continue
                self.wakeup.set()  # room again: post the rest

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await self.connect()
        except (OSError, TimeoutError) as error:
            raise _ConnectFailed(str(error) or type(error).__name__) from error
        conn = _Connection(reader, writer)
        conn.reader_task = asyncio.create_task(
            self._read_answers(conn), name=f"raft-peer-answers-{self.peer_id:x}"
        )
        self.conn = conn
        return conn

    async def _read_answers(self, conn: _Connection) -> None:
        """The answers to the posts on `conn`, in order; any failure ends the connection."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not conn.in_flight:
                    conn.posted.clear()
                    await conn.posted.wait()
                    continue
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, keep_alive, answer = await _read_answer(conn.reader)
                posted = conn.in_flight.popleft()
                if status == 410:
                    self.transport.on_removed()
                if status != 204:
                    raise ValueError(f"peer answered {status}: {answer[:200]!r}")
                self._answered(posted, loop.time())
                if not keep_alive:
                    raise ConnectionResetError("the peer closed the connection")
                self.wakeup.set()  # room in the window
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            self._connection_failed(conn, error)

    def _answered(self, posted: _Posted, now: float) -> None:
        if not self.was_reachable:
            _log.info("peer %x reachable again", self.peer_id)
            self.was_reachable = True
        self._reached(True)
        self.stats.success += 1
        latencies = self.stats.latencies_s
        latencies.append(now - posted.started)
        del latencies[:-100]  # a limit on everything: the last 100 round trips
        for m in posted.batch:
            if m.kind is MessageKind.SNAP:
                self.transport.report_snapshot(m.to, True)

    def _connection_failed(self, conn: _Connection, error: BaseException) -> None:
        """End `conn`. Its unanswered posts are sent once more on a new connection (it may
        have been a kept-alive connection the peer closed while idle, which says nothing of
        the peer, and a dropped batch can hold a forwarded proposal that would wait an
        election timeout); posts that were already a second try are dropped, as Raft
        expects of its network. Raft tolerates the duplicates this allows."""
        if conn.closed:
            return
        conn.closed = True
        conn.writer.close()
        if conn.reader_task is not None and conn.reader_task is not asyncio.current_task():
            conn.reader_task.cancel()
        if self.conn is conn:
            self.conn = None
        unanswered = list(conn.in_flight)
        conn.in_flight.clear()
        if not unanswered:
            return  # an idle connection closed by the peer: nothing lost
        again = [m for p in unanswered if not p.retried for m in p.batch]
        for p in unanswered:
            if p.retried:
                self._dropped(p.batch)
        if any(p.retried for p in unanswered):
            self._failed(error)
        self.retry = again + self.retry
        self.wakeup.set()

    def _drop_all(self, error: _ConnectFailed) -> None:
        """No connection: refused or timed out, the only failures that say the peer is down."""
        batch = self.retry + self.queue
        self.retry, self.queue = [], []
        self._dropped(batch)
        self.transport.unreachable(self.peer_id)
        self._failed(error)

    def _dropped(self, batch: list[Message]) -> None:
        for m in batch:
            self.transport.dropped(m)

    def _failed(self, error: BaseException) -> None:
        self._reached(False)
        self.stats.fail += 1
        if self.was_reachable:
            _log.warning("peer %x unreachable: %r", self.peer_id, error)
            self.was_reachable = False

    def _close(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.closed = True
            conn.writer.close()
            if conn.reader_task is not None:
                conn.reader_task.cancel()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """One HTTP answer: status, whether the connection stays open, body."""
    header = await reader.readuntil(b"\r\n\r\n")
    if len(header) > MAX_RESPONSE_HEADER_BYTES:
        raise ValueError("response header too large")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    answer = await reader.readexactly(length) if length else b""
    return status, keep_alive, answer


class Transport:
    """One member's peer traffic. `step` is the driver's: it steps a received message."""

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        peers: dict[int, str],
        step: Callable[[Message], None],
        report_snapshot: Callable[[int, bool], None],
        members_json: Callable[[], bytes] | None = None,
        client_ssl: ssl.SSLContext | None = None,
        is_removed: Callable[[int], bool] = lambda _member: False,
        on_removed: Callable[[], None] = lambda: None,
        on_unreachable: Callable[[int], None] = lambda _member: None,
        leader_probe_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self.member_id = member_id
        self.client_ssl = client_ssl
        self._is_removed = is_removed
        self.on_removed = on_removed
        self.unreachable = on_unreachable
        self.leader_probe_s = leader_probe_s
        self.leader: int | None = None  # set by the driver: probed every leader_probe_s
        self.cluster_id = cluster_id
        self._step = step
        self._report_snapshot = report_snapshot
        self._members_json = members_json
        self._peers = {pid: _Peer(self, pid, url) for pid, url in peers.items()}
        self.closed = False
        self._started = False

    def start(self) -> None:
        self._started = True
        for peer in self._peers.values():
            self._run(peer)

    def _run(self, peer: _Peer) -> None:
        peer.task = asyncio.create_task(peer.run(), name=f"raft-peer-{peer.peer_id:x}")
        peer.probe_task = asyncio.create_task(peer.probe(), name=f"probe-{peer.peer_id:x}")

    def active_since(self, peer_id: int) -> float | None:
        """Loop time since which `peer_id` has been reachable, or None (etcd ActiveSince)."""
        peer = self._peers.get(peer_id)
        return peer.active_since if peer is not None else None

    # --- membership changes at runtime -----------------------------------------------------

    def add_peer(self, peer_id: int, url: str) -> None:
        """Send to `peer_id` at `url` from now on (a member added, or its URL moved)."""
        current = self._peers.get(peer_id)
        if current is not None:
            if (current.host, current.port) == _host_port(url) and (current.ssl is None) == (
                not url.startswith("https://")
            ):
                return
            self.remove_peer(peer_id)
        peer = _Peer(self, peer_id, url)
        self._peers[peer_id] = peer
        if self._started and not self.closed:
            self._run(peer)

    def remove_peer(self, peer_id: int) -> None:
        """Stop sending to a member that left; what was queued for it is dropped."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        for task in (peer.task, peer.probe_task):
            if task is not None:
                task.cancel()
        peer._close()

    def set_peers(self, peers: dict[int, str]) -> None:
        """Make the peer set exactly `peers` (after a snapshot replaced the membership)."""
        for peer_id in [pid for pid in self._peers if pid not in peers]:
            self.remove_peer(peer_id)
        for peer_id, url in peers.items():
            self.add_peer(peer_id, url)

    async def close(self) -> None:
        self.closed = True  # the peer loops end even if a cancellation is lost
        tasks = [
            task
            for p in self._peers.values()
            for task in (p.task, p.probe_task)
            if task is not None
        ]
        for peer in self._peers.values():
            peer.wakeup.set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for peer in self._peers.values():
            peer._close()

    def send(self, messages: tuple[Message, ...]) -> None:
        touched: dict[int, _Peer] = {}
        for m in messages:
            peer = self._peers.get(m.to)
            if peer is None:
                self.dropped(m)  # a member we do not know (yet): Raft will retry
            else:
                peer.enqueue(m)
                touched[m.to] = peer
        for peer in touched.values():
            peer.flush()

    def dropped(self, m: Message) -> None:
        if m.kind is MessageKind.SNAP:
            self.report_snapshot(m.to, False)

    def report_snapshot(self, to: int, ok: bool) -> None:
        self._report_snapshot(to, ok)

    def stats(self, peer_id: int) -> PeerStats | None:
        peer = self._peers.get(peer_id)
        return peer.stats if peer else None

    # --- receiving ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """The peer listener's handler."""
        if request.raw_path == "/probe":
            return Response(204)
        if request.raw_path == "/members" and self._members_json is not None:
            if request.method != "GET":
                return Response(405, b"Method Not Allowed\n", "text/plain; charset=utf-8")
            # etcd's peer /members: how a member started with --initial-cluster-state
            # existing learns the cluster (and its own ID).
            return Response(
                200,
                self._members_json(),
                "application/json",
                (("X-Etcd-Cluster-Id", f"{self.cluster_id:x}"),),
            )
        if request.raw_path != "/raft":
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if request.method != "POST":
            return Response(405, b"Method Not Allowed\n", "text/plain; charset=utf-8")
        try:
            batch = decode_batch(request.body, self.cluster_id)
        except CodecError as error:
            status = 412 if "cluster ID mismatch" in str(error) else 400
            _log.warning("refused a peer batch: %s", error)
            return Response(status, str(error).encode(), "text/plain; charset=utf-8")
        if self._is_removed(batch.sender):
            # etcd's rafthttp: a removed member may not know it (the leader stopped sending
            # to it before it applied its removal); 410 tells it, and it stops.
            return Response(410, REMOVED_MESSAGE.encode(), "text/plain; charset=utf-8")
        for m in batch.messages:
            if m.to == self.member_id:
                self._step(m)
        return Response(204)
