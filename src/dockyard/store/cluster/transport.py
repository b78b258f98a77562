"""Peer transport: Raft messages between members over HTTP on the members' peer URLs.

Role: deliver the messages of a `Ready` to their members, and hand the batches other members
send us to the driver. Sending: one long-lived stream per peer, as etcd's rafthttp streams:
`POST /raft/stream` with `Upgrade: dockyard-raft` (and the cluster ID and sender in
headers), answered `101`, then frames `length u32 | batch` (`codec.encode_batch`) one way.
Everything queued for the peer since the last frame goes in the next frame, written while
the driver hands the Ready over (so a Ready's messages are on the wire before it applies);
a task per peer opens the stream and waits when the socket's buffer is full. The peer never
answers a frame: per message, a post and its answer cost each side two sends and an HTTP
parse, most of a busy leader's peer work; the receiver writes on the stream only
`STREAM_REMOVED` before closing it, to tell a removed member so. `MsgSnap` goes in a post
of its own (`POST /raft`, answered `204`), since the core waits to hear that it arrived.
Receiving: the peer listener routes both here; the batches of one read are stepped, then
the driver handles what they made ready (`on_batch`) before the next read. `GET
/members` answers the membership, for a joining member; `GET /probe` says the member runs.

Rules:
- Best effort, as Raft expects of its network: a message to a peer that is down, slow or
  refusing is dropped, and what was written on a stream that then broke may be lost. Raft
  retries on its own (heartbeats, probes, MsgApp resends) and the driver proposes again
  what a lost MsgProp held (at a leader change, or an election timeout later), so the
  transport never resends.
- A queue per peer is bounded (`MAX_QUEUED_MSGS`); when it is full new messages are dropped,
  so a dead peer costs bounded memory.
- A dropped or failed `MsgSnap` is reported to the core (`report_snapshot(to, False)`) so the
  leader probes again instead of waiting forever; a delivered one is reported as done.
- The transport never sends before the driver hands it messages, and the driver hands them
  over only when the Raft driver contract allows (after persisting, but for an async
  leader's appends); enqueueing is that hand-over.
- A stream from another cluster is refused (412) before it starts; a frame that does not
  decode ends the stream.

Must not: decide anything about Raft, block the event loop, or raise into the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dockyard.http.types import HijackedStream, HijackResponse, Request, Response
from dockyard.raft.messages import Message, MessageKind
from dockyard.store.cluster.codec import CONTENT_TYPE, Batch, CodecError, decode_batch, encode_batch

_log = logging.getLogger(__name__)

MAX_QUEUED_MSGS = 4096
# Bytes written to a peer's stream and not yet taken by the kernel before sending waits.
MAX_UNSENT_BYTES = 1 << 20
# The stream: `POST /raft/stream` with `Upgrade`, answered 101, then frames of
# `length u32 | batch` one way; the receiver writes nothing but STREAM_REMOVED.
STREAM_PATH = "/raft/stream"
STREAM_PROTOCOL = "dockyard-raft"
STREAM_REMOVED = b"R"
_FRAME = struct.Struct(">I")
MAX_FRAME_BYTES = 256 << 20  # far above a batch (max_msg_bytes per append)
STREAM_READ_BYTES = 1 << 18
SNAPSHOT_TIMEOUT_S = 60.0
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
class _Stream:
    """An open one-way stream to a peer: framed batches, no answers (see the module doc)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    watcher: asyncio.Task[None] | None = None  # reads the peer's only word: "removed", or EOF
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
        self.stream: _Stream | None = None
        self.snapshot_tasks: set[asyncio.Task[None]] = set()
        self.became_leader = asyncio.Event()  # set when the driver names this peer leader
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
            # A peer that becomes the leader meanwhile is probed at once: waiting out the
            # follower's 1 s interval made every other failover take an election timeout
            # (a leader killed within a second of its election went unnoticed that long).
            leader = self.peer_id == self.transport.leader
            self.became_leader.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(
                    self.transport.leader_probe_s if leader else PROBE_INTERVAL_S
                ):
                    await self.became_leader.wait()

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
                started = asyncio.get_running_loop().time()
                status_line = await reader.readline()
            ok = status_line.split(b" ")[1:2] == [b"204"]
            self._reached(ok)
            if ok:
                # A round trip to the peer: what /v2/stats/leader reports as its latency.
                latencies = self.stats.latencies_s
                latencies.append(asyncio.get_running_loop().time() - started)
                del latencies[:-100]  # a limit on everything: the last 100 round trips
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            self._reached(False)
        finally:
            writer.close()

    def enqueue(self, m: Message) -> None:
        """Queue `m`; `flush` sends the queue."""
        if len(self.queue) >= MAX_QUEUED_MSGS:
            self.transport.dropped(m)
            return
        self.queue.append(m)

    def flush(self) -> None:
        """Send what is queued now on the open stream (so a Ready's messages are on the
        wire before the driver goes on to apply); otherwise the sender task connects, or
        waits for the socket's buffer to drain, and sends."""
        if not self._send_queued():
            self.wakeup.set()

    def _send_queued(self) -> bool:
        """Frame the queue onto the open stream; whether it all went."""
        stream = self.stream
        if stream is None or stream.closed or not self.queue:
            return not self.queue
        if stream.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            return False  # the sender drains first
        batch, self.queue = self.queue, []
        snapshots = [m for m in batch if m.kind is MessageKind.SNAP]
        if snapshots:
            # A snapshot needs to know it arrived (the core waits for the report): it goes
            # in a post of its own, answered.
            batch = [m for m in batch if m.kind is not MessageKind.SNAP]
            for m in snapshots:
                task = asyncio.create_task(self._post_snapshot(m))
                self.snapshot_tasks.add(task)
                task.add_done_callback(self.snapshot_tasks.discard)
        if batch:
            body = encode_batch(
                Batch(self.transport.cluster_id, self.transport.member_id, tuple(batch))
            )
            stream.writer.write(_FRAME.pack(len(body)) + body)
            self.stats.success += 1
        return True

    async def run(self) -> None:
        """The sender task: opens the stream and, when the socket's buffer is full, waits
        for it to drain before sending more."""
        while not self.transport.closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            if not self.queue:
                continue
            stream = self.stream
            if stream is None:
                try:
                    stream = await self._open_stream()
                except _ConnectFailed as error:
                    self._drop_all(error)
                    continue
                except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
                    self._drop_all(error, down=False)
                    continue
            self._send_queued()
            if stream.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        await stream.writer.drain()
                except (OSError, TimeoutError) as error:
                    self._stream_failed(stream, error)
                    continue
                self.wakeup.set()  # room again: send the rest

    async def _open_stream(self) -> _Stream:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await self.connect()
        except (OSError, TimeoutError) as error:
            raise _ConnectFailed(str(error) or type(error).__name__) from error
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                writer.write(
                    f"POST {STREAM_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    f"Upgrade: {STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n"
                    f"X-Etcd-Cluster-Id: {self.transport.cluster_id:x}\r\n"
                    f"X-Server-From: {self.transport.member_id:x}\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                header = await reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
        except BaseException:
            writer.close()
            raise
        if status != 101:
            writer.close()
            if status == 410:
                self.transport.on_removed()
            raise ValueError(f"peer refused the stream with {status}")
        stream = _Stream(reader, writer)
        stream.watcher = asyncio.create_task(
            self._watch(stream), name=f"raft-stream-{self.peer_id:x}"
        )
        self.stream = stream
        if not self.was_reachable:
            _log.info("peer %x reachable again", self.peer_id)
            self.was_reachable = True
        self._reached(True)
        return stream

    async def _watch(self, stream: _Stream) -> None:
        """The peer never writes on the stream but to say this member was removed; EOF or
        an error ends the stream (it is reopened for the next message)."""
        try:
            word = await stream.reader.read(1)
        except asyncio.CancelledError:
            raise
        except OSError as error:
            self._stream_failed(stream, error)
            return
        if word == STREAM_REMOVED:
            self.transport.on_removed()
        self._stream_failed(stream, ConnectionResetError("the peer closed the stream"))

    async def _post_snapshot(self, m: Message) -> None:
        """MsgSnap in a post of its own on a fresh connection; its answer is the report."""
        ok = False
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                reader, writer = await self.connect()
                try:
                    body = encode_batch(
                        Batch(self.transport.cluster_id, self.transport.member_id, (m,))
                    )
                    writer.write(
                        (
                            f"POST /raft HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                            f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
                            "Connection: close\r\n\r\n"
                        ).encode()
                        + body
                    )
                    status, _keep_alive, answer = await _read_answer(reader)
                finally:
                    writer.close()
            if status == 410:
                self.transport.on_removed()
            ok = status == 204
            if not ok:
                _log.warning(
                    "peer %x refused a snapshot: %d %r", self.peer_id, status, answer[:200]
                )
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
            _log.warning("peer %x: snapshot not delivered: %r", self.peer_id, error)
        self.transport.report_snapshot(m.to, ok)

    def _stream_failed(self, stream: _Stream, error: BaseException) -> None:
        """End `stream`: what was written on it may be lost, as Raft expects of its network
        (it resends appends; the driver proposes again what a lost MsgProp held)."""
        if stream.closed:
            return
        stream.closed = True
        stream.writer.close()
        if stream.watcher is not None and stream.watcher is not asyncio.current_task():
            stream.watcher.cancel()
        if self.stream is stream:
            self.stream = None
        self._failed(error)
        if self.queue:
            self.wakeup.set()

    def _drop_all(self, error: BaseException, down: bool = True) -> None:
        """No stream: drop what is queued. `down`: the connection was refused or timed out,
        the only failures that say the peer is down."""
        batch, self.queue = self.queue, []
        for m in batch:
            self.transport.dropped(m)
        if down:
            self.transport.unreachable(self.peer_id)
        self._failed(error)

    def _failed(self, error: BaseException) -> None:
        self._reached(False)
        self.stats.fail += 1
        if self.was_reachable:
            _log.warning("peer %x unreachable: %r", self.peer_id, error)
            self.was_reachable = False

    def _close(self) -> None:
        stream = self.stream
        self.stream = None
        if stream is not None:
            stream.closed = True
            stream.writer.close()
            if stream.watcher is not None:
                stream.watcher.cancel()
        for task in list(self.snapshot_tasks):
            task.cancel()


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
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.member_id = member_id
        self.client_ssl = client_ssl
        self._is_removed = is_removed
        self.on_removed = on_removed
        self.unreachable = on_unreachable
        self.leader_probe_s = leader_probe_s
        self._leader: int | None = None
        self.cluster_id = cluster_id
        self._step = step
        self._on_batch = on_batch  # after a received batch is stepped (the driver's Ready)
        self._report_snapshot = report_snapshot
        self._members_json = members_json
        self._peers = {pid: _Peer(self, pid, url) for pid, url in peers.items()}
        self.closed = False
        self._started = False

    @property
    def leader(self) -> int | None:
        """The peer the driver follows (None: none, or this member): probed every
        `leader_probe_s` instead of every PROBE_INTERVAL_S, from the moment it is named."""
        return self._leader

    @leader.setter
    def leader(self, peer_id: int | None) -> None:
        if peer_id != self._leader:
            self._leader = peer_id
            peer = self._peers.get(peer_id) if peer_id is not None else None
            if peer is not None:
                peer.became_leader.set()

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

    def _accept_stream(self, request: Request) -> Response | HijackResponse:
        if request.method != "POST":
            return Response(405, b"Method Not Allowed\n", "text/plain; charset=utf-8")
        cluster = request.headers.get("x-etcd-cluster-id", "")
        if cluster != f"{self.cluster_id:x}":
            _log.warning("refused a peer stream from cluster %r", cluster)
            return Response(
                412,
                f"cluster ID mismatch: this member is in cluster {self.cluster_id:x}".encode(),
                "text/plain; charset=utf-8",
            )
        sender = request.headers.get("x-server-from", "")
        try:
            if self._is_removed(int(sender, 16)):
                return Response(410, REMOVED_MESSAGE.encode(), "text/plain; charset=utf-8")
        except ValueError:
            return Response(400, b"bad X-Server-From\n", "text/plain; charset=utf-8")
        return HijackResponse(101, self._read_stream)

    def _read_stream(self, stream: HijackedStream) -> Awaitable[None]:
        return self._stream_reader(stream)

    async def _stream_reader(self, stream: HijackedStream) -> None:
        """Step every batch a peer's stream carries; the driver handles what a read made
        ready once the read's batches are stepped (`on_batch`). Anything malformed ends the
        stream (the peer reopens it)."""
        buf = b""
        while not self.closed:
            data = await stream.read(STREAM_READ_BYTES)
            if not data:
                return
            buf = buf + data if buf else data
            offset = 0
            stepped = False
            while len(buf) - offset >= _FRAME.size:
                (length,) = _FRAME.unpack_from(buf, offset)
                if length > MAX_FRAME_BYTES:
                    _log.warning("peer stream: a %d-byte frame; closing the stream", length)
                    return
                end = offset + _FRAME.size + length
                if len(buf) < end:
                    break
                try:
                    batch = decode_batch(buf[offset + _FRAME.size : end], self.cluster_id)
                except CodecError as error:
                    _log.warning("refused a peer batch: %s; closing the stream", error)
                    return
                offset = end
                if self._is_removed(batch.sender):
                    await stream.write(STREAM_REMOVED)
                    return
                for m in batch.messages:
                    if m.to == self.member_id:
                        self._step(m)
                        stepped = True
            buf = buf[offset:]
            if stepped:
                self._on_batch()

    def handle(self, request: Request) -> Response | HijackResponse:
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
        if request.raw_path == STREAM_PATH:
            return self._accept_stream(request)
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
        # Answered after the driver has handled what the batch made ready: a follower's
        # MsgAppResp then leaves within this call (the peer's post waits a little longer
        # for its 204, which nothing waits on: posts are pipelined).
        self._on_batch()
        return Response(204)
