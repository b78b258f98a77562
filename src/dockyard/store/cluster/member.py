"""A member of a replicated store: the Raft driver around `RaftNode` and `StoreState`.

Role: what `StoreNode` is for one member, for a cluster of several (`--initial-cluster` with
more than one member). It offers the HTTP layer the same interface (`store.backend.
StoreBackend`): propose a command and await its result, a linearizable read barrier, watches,
the tree and auth state, and who leads.

The Ready loop (etcd's raft driver contract, docs/raft.md):

    ticks (every --heartbeat-interval ms), received messages, proposals, read requests
      -> RaftNode.step/tick/propose/read_index -> wake the loop
    loop: while node.has_ready():
        rd = node.ready()
        storage.save(rd.entries, rd.hard_state)     # write + fdatasync
        transport.send(rd.messages)                 # only after the fsync
        apply rd.committed_entries to StoreState    # in log order; answer local proposers
        release rd.read_states once applied that far
        node.advance(rd)

Rules:
- The log's entry 1 is the bootstrap snapshot naming the voters (every member computes the
  same one from `--initial-cluster`), so `StoreState.applied_index` equals the Raft index.
  Empty entries (a new leader's first entry) and conf-change entries apply as `Noop`.
- An entry's data is `codec.wrap_proposal(proposer, sequence, command)`: every member applies
  it; the proposer alone answers its waiting client. A proposal is answered only once it is
  applied here, so a client that wrote through a member reads its write there.
- A proposal made while no leader is known is retried every tick until its deadline. One
  that may have been lost on the way (a forwarded MsgProp dropped, a leader deposed before
  replicating it) is proposed again when a new leader is known and after every election
  timeout without being applied; each entry names its proposer and request number, and
  apply skips a repeat of one already applied (`_is_duplicate`), so a write is applied at
  most once. Without quorum the request is answered, when its deadline passes, with error
  300 "etcdserver: request timed out", as etcd 3.4 does (after 5 s + 2 election timeouts =
  7 s); its outcome is then unknown to the client, as with etcd.
- Quorum reads: `read_barrier` asks the core for a read index (re-asked every election
  timeout while unanswered) and returns once this member has applied that far.
- TTL expiry: only the leader proposes `ExpireKeys` with its clock, so every member applies
  the same expiry at the same index.
- Each member publishes its name and client URLs through the log (`Bootstrap`, etcd's
  publish) once a leader is known, unless the state already has them.
- `healthy` (for /health): a leader is known and the raft log has not failed. A leader that
  loses its quorum steps down within an election timeout (check-quorum), so a member without
  quorum reports unhealthy.

- Snapshots (`_maybe_snapshot`): every `--snapshot-count` applied entries the member writes
  its applied `StoreState` and the dedup table (`_applied_sequences`, which must travel with
  the state it describes) as a snapshot file (`store.snapshot`'s format, in member/snap;
  the payload is `encode_payload`), durably, then compacts the core and the raft log to
  its *previous* snapshot, so the entries between the two (at least `catch_up_entries`, as
  etcd keeps 5,000) stay for followers that lag a little. The snapshot the core holds
  (the compaction point) is the one a follower behind it gets in MsgSnap.
- A snapshot in a Ready (a MsgSnap from the leader) is written durably first, the raft log
  is rewritten empty after it, then the state and the dedup table are replaced by its
  contents, before anything else of that Ready is done.
- Start-up loads the newest snapshot and replays only the log entries after it.

Limits (this version): no runtime membership changes; no peer TLS. The fsync runs on the
event loop, as the single node's does, and so does taking a snapshot.

Must not: parse HTTP (that is `http_v2`), do Raft's decisions (that is the core), or send
anything before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import struct
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.http.server import HttpServer
from dockyard.raft.core import RaftConfig, RaftNode
from dockyard.raft.messages import (
    NONE,
    Entry,
    EntryKind,
    HardState,
    Message,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from dockyard.store import commands as c
from dockyard.store.auth import AuthError
from dockyard.store.cluster.codec import CodecError, unwrap_proposal, wrap_proposal
from dockyard.store.cluster.storage import RaftStorage
from dockyard.store.cluster.transport import PeerStats, Transport
from dockyard.store.errors import RaftInternalError
from dockyard.store.node import (
    EXPIRY_TICK_S,
    StoreDataError,
    WatchSink,
    cluster_id_for,
    member_id_for,
)
from dockyard.store.snapshot import Snapshot as SnapshotFile
from dockyard.store.snapshot import load_latest_snapshot, save_snapshot
from dockyard.store.state import StateView, StoreState
from dockyard.store.tree import ApplyResult, Event, Watcher
from dockyard.store.wal import WalError

_log = logging.getLogger(__name__)

BOOTSTRAP_INDEX = 1
BOOTSTRAP_TERM = 1
REQUEST_TIMEOUT_BASE_MS = 5_000  # etcd: 5 s + 2 x election timeout before "request timed out"
TIMED_OUT = "etcdserver: request timed out"
DEDUP_WINDOW = 100_000  # applied proposals remembered per member, to drop repeats
SNAPSHOT_COUNT = 100_000  # applied entries between snapshots (etcd 3.4's --snapshot-count)
# Entries kept behind the compaction point for followers that lag a little (etcd's
# SnapshotCatchUpEntries); at most --snapshot-count of them, see `_maybe_snapshot`.
SNAPSHOT_CATCH_UP_ENTRIES = 5_000
_PAYLOAD_HEAD = struct.Struct("<I")  # length of the JSON metadata that precedes the state


@dataclass(frozen=True)
class InitialMember:
    name: str
    peer_urls: tuple[str, ...]


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    data_dir: Path
    initial_cluster: tuple[InitialMember, ...]
    client_urls: tuple[str, ...]
    listen_peer_urls: tuple[str, ...]
    cluster_token: str = "etcd-cluster"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = SNAPSHOT_COUNT

    def __post_init__(self) -> None:
        if self.election_timeout_ms < 2 * self.heartbeat_interval_ms:
            raise ValueError("--election-timeout must be at least twice --heartbeat-interval")
        if self.snapshot_count < 1:
            raise ValueError("--snapshot-count must be at least 1")

    @property
    def peer_urls(self) -> tuple[str, ...]:
        for m in self.initial_cluster:
            if m.name == self.name:
                return m.peer_urls
        raise ValueError(f"{self.name!r} is not in the initial cluster")

    @property
    def request_timeout_s(self) -> float:
        return (REQUEST_TIMEOUT_BASE_MS + 2 * self.election_timeout_ms) / 1000


def bootstrap_state(members: dict[int, InitialMember]) -> StoreState:
    """The state at index 1, the same on every member: each member's peer URLs (etcd's
    raftAttributes); names and client URLs arrive when each member publishes them."""
    state = StoreState(applied_index=BOOTSTRAP_INDEX)
    for member_id, m in sorted(members.items()):
        state.tree.members[f"{member_id:x}"] = {
            "name": "",
            "peerURLs": list(m.peer_urls),
            "clientURLs": [],
        }
    return state


_DedupTable = dict[int, tuple[dict[int, None], deque[int]]]


def encode_payload(state: StoreState, dedup: _DedupTable) -> bytes:
    """A cluster snapshot's data: `len u32 | JSON {"dedup": {proposer: [sequence, ...]}} |
    StoreState.to_snapshot_bytes()`; sequences oldest first, so the window trims alike."""
    head = json.dumps(
        {"dedup": {str(proposer): list(order) for proposer, (_, order) in dedup.items()}}
    ).encode()
    return _PAYLOAD_HEAD.pack(len(head)) + head + state.to_snapshot_bytes()


def decode_payload(data: bytes, index: int) -> tuple[StoreState, _DedupTable]:
    (length,) = _PAYLOAD_HEAD.unpack_from(data, 0)
    head = json.loads(data[_PAYLOAD_HEAD.size : _PAYLOAD_HEAD.size + length])
    dedup: _DedupTable = {}
    for proposer, sequences in head["dedup"].items():
        order = deque(int(s) for s in sequences)
        dedup[int(proposer)] = (dict.fromkeys(order), order)
    state = StoreState.from_snapshot_bytes(data[_PAYLOAD_HEAD.size + length :], index)
    return state, dedup


def to_snapshot_file(snapshot: Snapshot) -> SnapshotFile:
    """The file form of a raft snapshot: the voters go into the data, after a JSON line."""
    meta = json.dumps({"voters": list(snapshot.meta.voters)}).encode() + b"\n"
    return SnapshotFile(snapshot.meta.index, snapshot.meta.term, meta + snapshot.data)


def from_snapshot_file(file: SnapshotFile) -> Snapshot:
    meta, _, data = file.data.partition(b"\n")
    voters = tuple(int(v) for v in json.loads(meta)["voters"])
    return Snapshot(SnapshotMeta(file.index, file.term, voters), data)


@dataclass
class _Proposal:
    data: bytes
    command: object
    future: asyncio.Future[Any]
    deadline: float
    proposed: bool = False
    proposed_at: float = 0.0


@dataclass
class _Read:
    future: asyncio.Future[None]
    deadline: float
    asked_at: float
    index: int = 0  # set once the core answers


class ClusterMember(StateView):
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.members = {
            member_id_for(m.peer_urls, config.cluster_token): m for m in config.initial_cluster
        }
        self.member_id = member_id_for(config.peer_urls, config.cluster_token)
        self.cluster_id = cluster_id_for(list(self.members))
        self.state = bootstrap_state(self.members)
        self.start_time_ns = time.time_ns()
        self.raft: RaftNode | None = None
        self._storage: RaftStorage | None = None
        self._transport: Transport | None = None
        self._peer_server: HttpServer | None = None
        self._proposals: dict[int, _Proposal] = {}
        # Sequence numbers start from the clock so that a restarted member never mistakes
        # its predecessor's entries (replayed from the log) for its own waiting requests.
        self._sequence = itertools.count(time.time_ns())
        self._reads: dict[bytes, _Read] = {}
        self._wakeup = asyncio.Event()
        self._failed: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._published = False
        self._soft_state_changed = asyncio.Event()
        self._applied_sequences: _DedupTable = {}
        # The newest snapshot taken or received; the core is compacted to the one before.
        self._snapshot: Snapshot | None = None

    @property
    def snap_dir(self) -> Path:
        return self.config.data_dir / "member" / "snap"

    @property
    def catch_up_entries(self) -> int:
        # Never more than --snapshot-count, so the previous snapshot is always far enough
        # behind to compact to.
        return min(SNAPSHOT_CATCH_UP_ENTRIES, self.config.snapshot_count)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def raft_dir(self) -> Path:
        return self.config.data_dir / "member" / "raft"

    async def start(self) -> None:
        if (self.config.data_dir / "member" / "wal").exists():
            raise StoreDataError(
                f"{self.config.data_dir} holds a single-member store; a cluster member needs "
                "an empty data dir (a single member cannot yet be grown into a cluster)"
            )
        storage, recovered = RaftStorage.open(self.raft_dir, BOOTSTRAP_INDEX + 1)
        self._storage = storage
        voters = tuple(sorted(self.members))
        start = Snapshot(SnapshotMeta(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, voters))
        saved = load_latest_snapshot(self.snap_dir)
        if saved is not None:
            start = from_snapshot_file(saved)
            self.state, self._applied_sequences = decode_payload(start.data, start.meta.index)
            self._snapshot = start
        # The log may hold entries at or before the snapshot (the catch-up tail, or all of
        # them after a crash between saving a snapshot and rewriting the log).
        entries = tuple(e for e in recovered.entries if e.index > start.meta.index)
        if entries and entries[0].index != start.meta.index + 1:
            raise StoreDataError(
                f"{self.raft_dir}: the raft log starts at {entries[0].index}, after a gap "
                f"behind the snapshot at {start.meta.index}"
            )
        hard_state = recovered.hard_state
        if hard_state is not None and hard_state.commit < start.meta.index:
            hard_state = HardState(hard_state.term, hard_state.vote, start.meta.index)
        election_ticks = self.config.election_timeout_ms // self.config.heartbeat_interval_ms
        self.raft = RaftNode(
            RaftConfig(self.member_id, election_timeout_ticks=election_ticks, heartbeat_ticks=1),
            random.Random(),
            start,
            hard_state,
            entries,
        )
        _log.info(
            "cluster member %s (%x) of cluster %x: snapshot at %d, %d entries after it in the "
            "raft log, term %d",
            self.config.name,
            self.member_id,
            self.cluster_id,
            start.meta.index,
            len(entries),
            self.raft.term,
        )
        peers = {pid: m.peer_urls[0] for pid, m in self.members.items() if pid != self.member_id}
        self._transport = Transport(
            self.member_id, self.cluster_id, peers, self._receive, self._report_snapshot
        )
        self._transport.start()
        self._peer_server = HttpServer(self._transport.handle)
        from dockyard.store.server import parse_url  # a cycle at import time otherwise

        for url in self.config.listen_peer_urls:
            scheme, host, port = parse_url(url)
            if scheme != "http":
                raise StoreDataError(f"peer URL {url}: peer TLS is not supported yet")
            await self._peer_server.listen(host, port)
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name="raft-ready"),
            asyncio.create_task(self._ticker(), name="raft-ticker"),
            asyncio.create_task(self._expiry_ticker(), name="store-expiry"),
        ]
        self._wakeup.set()  # replay what the log holds as committed

    async def close(self) -> None:
        """Stop: hand over leadership if we lead, then stop the loop, the peer listener and
        the transport; waiting proposals fail with error 300."""
        await self._hand_over_leadership()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Our own sends first, so peers see us go; then the peer listener, bounded: peers
        # keep reconnecting every heartbeat, and a stop must not wait on them.
        if self._transport is not None:
            await self._transport.close()
        if self._peer_server is not None:
            try:
                async with asyncio.timeout(3.0):
                    await self._peer_server.close(grace_s=0.5)
            except TimeoutError:
                _log.warning("member %x: peer listener did not close within 3 s", self.member_id)
        _log.info("member %x: stopped", self.member_id)
        if self._storage is not None:
            self._storage.close()
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(RaftInternalError("etcdserver: server stopped"))

    async def _hand_over_leadership(self) -> None:
        """A leader that stops cleanly hands leadership to its most caught-up follower
        first (as etcd 3.4 does on SIGTERM), so the cluster does not wait an election timeout
        to notice. Bounded by one election timeout; a crash skips this, of course."""
        raft = self.raft
        if raft is None or self._failed is not None or not self.is_leader or not self._tasks:
            return
        followers = [(pr.match, pid) for pid, pr in raft.progress.items() if pid != self.member_id]
        if not followers:
            return
        _, target = max(followers)
        _log.info("member %x: stopping; handing leadership to %x", self.member_id, target)
        raft.transfer_leadership(target)
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.election_timeout_ms / 1000
        # The hand-over completes when the target's election deposes us, which the Ready
        # loop reports as a soft-state change.
        while self.is_leader and loop.time() < deadline:
            self._soft_state_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._soft_state_changed.wait()

    # --- what the HTTP layer uses (store.backend.StoreBackend) -----------------------------

    @property
    def term(self) -> int:
        return self.raft.term if self.raft is not None else 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def leader_id(self) -> int | None:
        lead = self.raft.lead if self.raft is not None else NONE
        return None if lead == NONE else lead

    @property
    def is_leader(self) -> bool:
        return self.raft is not None and self.raft.role is Role.LEADER

    @property
    def healthy(self) -> bool:
        return self._failed is None and self.leader_id is not None

    def follower_stats(self) -> dict[int, PeerStats]:
        if self._transport is None:
            return {}
        out = {}
        for pid in self.members:
            stats = self._transport.stats(pid)
            if stats is not None:
                out[pid] = stats
        return out

    def propose(self, command: object) -> asyncio.Future[Any]:
        """The future resolves to the apply result once the command is applied here (or
        raises RaftInternalError on timeout or failure)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._failed is not None:
            future.set_exception(RaftInternalError(self._failed))
            return future
        sequence = next(self._sequence)
        data = wrap_proposal(self.member_id, sequence, c.encode_command(command))
        proposal = _Proposal(data, command, future, loop.time() + self.config.request_timeout_s)
        self._proposals[sequence] = proposal
        self._try_propose(proposal)
        return future

    async def read_barrier(self) -> None:
        """Return once this member has applied every write acknowledged before the call
        (Raft's ReadIndex, thesis §6.4); RaftInternalError on timeout."""
        if self._failed is not None:
            raise RaftInternalError(self._failed)
        loop = asyncio.get_running_loop()
        # Unique across members: the leader keys pending reads by context.
        context = self.member_id.to_bytes(8, "big") + next(self._sequence).to_bytes(8, "big")
        now = loop.time()
        read = _Read(loop.create_future(), now + self.config.request_timeout_s, now)
        self._reads[context] = read
        assert self.raft is not None
        self.raft.read_index(context)
        self._wakeup.set()
        try:
            await read.future
        finally:
            self._reads.pop(context, None)

    def watch(
        self, key: str, recursive: bool, stream: bool, since_index: int
    ) -> tuple[Watcher, WatchSink]:
        sink = WatchSink()
        watcher, found = self.tree.add_watcher(key, recursive, stream, since_index, sink)
        if found is not None:
            sink.push(found)
        return watcher, sink

    def unwatch(self, watcher: Watcher) -> None:
        self.tree.remove_watcher(watcher)

    # --- inputs to the core ----------------------------------------------------------------

    def _receive(self, m: Message) -> None:
        if self.raft is None or self._failed is not None:
            return
        self.raft.step(m)
        self._wakeup.set()

    def _report_snapshot(self, to: int, ok: bool) -> None:
        if self.raft is not None:
            self.raft.report_snapshot(to, ok)
            self._wakeup.set()

    def _try_propose(self, proposal: _Proposal) -> None:
        assert self.raft is not None
        # False: no leader known or a transfer in progress; the ticker tries again.
        proposal.proposed = self.raft.propose(proposal.data)
        proposal.proposed_at = asyncio.get_running_loop().time()
        if proposal.proposed:
            self._wakeup.set()

    async def _ticker(self) -> None:
        interval_s = self.config.heartbeat_interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            # Ticks on a schedule, not "sleep after work", so a slow Ready does not stretch
            # the election timeout.
            next_tick += interval_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            raft = self.raft
            assert raft is not None
            raft.tick()
            now = loop.time()
            for sequence, p in list(self._proposals.items()):
                if p.future.done():
                    del self._proposals[sequence]
                elif now >= p.deadline:
                    del self._proposals[sequence]
                    p.future.set_exception(RaftInternalError(TIMED_OUT))
                elif (
                    not p.proposed or now - p.proposed_at >= self.config.election_timeout_ms / 1000
                ):
                    # Not taken, or taken and not applied within an election timeout (a
                    # forwarded MsgProp lost on the way, a leader deposed before it
                    # replicated it): propose again; `_is_duplicate` makes a repeat a no-op.
                    self._try_propose(p)
            for context, read in list(self._reads.items()):
                if read.future.done():
                    continue
                if now >= read.deadline:
                    read.future.set_exception(RaftInternalError(TIMED_OUT))
                elif (
                    not read.index and now - read.asked_at >= self.config.election_timeout_ms / 1000
                ):
                    # Unanswered (no leader then, or the request was lost): ask again.
                    read.asked_at = now
                    raft.read_index(context)
            if not self._published and raft.lead != NONE:
                self._publish()
            self._wakeup.set()

    def _publish(self) -> None:
        me = self.tree.members.get(f"{self.member_id:x}")
        wanted = (self.config.name, list(self.config.client_urls))
        self._published = True
        if me is not None and (me["name"], me["clientURLs"]) == wanted:
            return
        future = self.propose(
            c.Bootstrap(
                f"{self.member_id:x}",
                self.config.name,
                self.config.peer_urls,
                self.config.client_urls,
            )
        )

        def done(f: asyncio.Future[Any]) -> None:
            if f.exception() is not None:
                self._published = False  # try again at a later tick

        future.add_done_callback(done)

    async def _expiry_ticker(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_TICK_S)
            if not self.is_leader:
                continue  # expiry is the leader's decision, through the log
            due = self.tree.next_expiry_ns()
            now_ns = time.time_ns()
            if due is not None and due <= now_ns:
                with contextlib.suppress(RaftInternalError):
                    await self.propose(c.ExpireKeys(now_ns))

    # --- the Ready loop --------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        raft = self.raft
        storage = self._storage
        transport = self._transport
        assert raft is not None and storage is not None and transport is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while raft.has_ready():
                rd = raft.ready()
                try:
                    if rd.snapshot is not None:
                        self._install_snapshot(rd.snapshot)
                    storage.save(rd.entries, rd.hard_state)
                except (WalError, OSError) as error:
                    self._fail(f"etcdserver: raft log write failed: {error}")
                    return
                transport.send(rd.messages)
                self._apply(rd)
                self._serve_reads(rd.read_states)
                if rd.soft_state is not None:
                    self._leader_changed(rd)
                raft.advance(rd)
                try:
                    self._maybe_snapshot()
                except (WalError, OSError) as error:
                    self._fail(f"etcdserver: snapshot failed: {error}")
                    return

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        """A leader's snapshot (MsgSnap): durable first, then the log restarts after it,
        then the state and the dedup table are replaced (Raft §7)."""
        assert self._storage is not None
        try:
            state, dedup = decode_payload(snapshot.data, snapshot.meta.index)
        except (ValueError, KeyError, TypeError, struct.error) as error:
            # Checked before anything is written: the log and the state stay as they were.
            raise WalError(
                f"the leader's snapshot at {snapshot.meta.index} does not decode"
            ) from error
        save_snapshot(self.snap_dir, to_snapshot_file(snapshot))
        self._storage.rewrite(snapshot.meta.index + 1, ())
        _log.info(
            "member %x: installed the leader's snapshot at %d (term %d)",
            self.member_id,
            snapshot.meta.index,
            snapshot.meta.term,
        )
        old_tree = self.state.tree
        self.state, self._applied_sequences = state, dedup
        self._snapshot = snapshot
        # Watchers registered on the old tree would never fire again: end them as an
        # overflowed watch ends (the stream closes), so clients watch again.
        for bucket in list(old_tree.watchers.values()):
            for watcher in list(bucket):
                old_tree.remove_watcher(watcher)
                sink = watcher.sink
                if isinstance(sink, WatchSink):
                    sink.overflowed = True
                    sink._wake()
        self._release_reads()

    def _maybe_snapshot(self) -> None:
        """Every --snapshot-count applied entries: save a snapshot of the applied state,
        then compact the core and the raft log to the previous one (see the module
        docstring); both only after the new snapshot is durable."""
        raft = self.raft
        storage = self._storage
        assert raft is not None and storage is not None
        applied = self.state.applied_index
        last = self._snapshot.meta.index if self._snapshot is not None else BOOTSTRAP_INDEX
        if applied - last < self.config.snapshot_count:
            return
        term = raft.log.term(applied)
        if term is None:
            return  # not in the log (just restored from a snapshot): nothing to take
        snapshot = Snapshot(
            SnapshotMeta(applied, term, tuple(sorted(raft.voters))),
            encode_payload(self.state, self._applied_sequences),
        )
        save_snapshot(self.snap_dir, to_snapshot_file(snapshot))
        previous = self._snapshot
        self._snapshot = snapshot
        if previous is None or previous.meta.index > applied - self.catch_up_entries:
            return
        raft.compact(previous)
        storage.rewrite(previous.meta.index + 1, raft.log.all_entries())
        _log.info(
            "member %x: snapshot at %d; raft log compacted to %d",
            self.member_id,
            applied,
            previous.meta.index,
        )

    def _leader_changed(self, rd: Ready) -> None:
        assert rd.soft_state is not None
        self._soft_state_changed.set()
        lead = rd.soft_state.leader
        _log.info(
            "member %x: %s, leader %s, term %d",
            self.member_id,
            rd.soft_state.role.value,
            f"{lead:x}" if lead != NONE else "none",
            self.term,
        )
        if lead != NONE:
            # A new leader: proposals waiting for one, or sent to the old one and possibly
            # lost with it, go (again) now rather than at the next tick.
            for p in self._proposals.values():
                if not p.future.done():
                    self._try_propose(p)

    def _apply(self, rd: Ready) -> None:
        if not rd.committed_entries:
            return
        now_ns = time.time_ns()
        deliveries: list[tuple[Watcher, Event]] = []
        for entry in rd.committed_entries:
            if entry.index <= self.state.applied_index:
                continue  # the bootstrap entry, or one applied before a restart's replay
            self._apply_entry(entry, now_ns, deliveries)
        if deliveries:
            # As node.py: watchers one loop step behind the proposers' answers.
            asyncio.get_running_loop().call_soon(self._deliver_all, deliveries)
        self._release_reads()

    def _apply_entry(
        self, entry: Entry, now_ns: int, deliveries: list[tuple[Watcher, Event]]
    ) -> None:
        if entry.kind is EntryKind.CONF_CHANGE or not entry.data:
            # A new leader's empty entry; conf changes take effect in the core (advance).
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        try:
            proposer, sequence, payload = unwrap_proposal(entry.data)
            command = c.decode_command(payload)
        except (CodecError, ValueError, KeyError, TypeError) as error:
            # Every member sees the same bytes, so every member skips it alike.
            _log.error("entry %d does not decode (%s); applied as a no-op", entry.index, error)
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        if self._is_duplicate(proposer, sequence):
            # A proposal made again after a leader change whose first copy was committed
            # after all: applied once, the repeat is a no-op on every member alike.
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        result = self.state.apply_entry(entry.index, command, now_ns)
        if isinstance(result, ApplyResult) and result.deliveries:
            deliveries.extend(result.deliveries)
        if proposer != self.member_id:
            return
        proposal = self._proposals.pop(sequence, None)
        if proposal is None or proposal.future.done():
            return  # timed out, or the client went away; applied all the same
        if isinstance(result, AuthError):
            proposal.future.set_exception(result)
        else:
            proposal.future.set_result(result)

    def _is_duplicate(self, proposer: int, sequence: int) -> bool:
        """Whether (proposer, sequence) was applied before; records it if not.

        Derived from the log alone (every member applies the same entries in the same order,
        and a restart replays them), so every member decides alike. Bounded: a proposal is
        repeated only within its deadline, long before `DEDUP_WINDOW` later proposals of the
        same member have been applied. Snapshots carry it (`encode_payload`).
        """
        seen = self._applied_sequences.get(proposer)
        if seen is None:
            seen = self._applied_sequences[proposer] = ({}, deque())
        members, order = seen
        if sequence in members:
            return True
        members[sequence] = None
        order.append(sequence)
        if len(order) > DEDUP_WINDOW:
            del members[order.popleft()]
        return False

    def _serve_reads(self, read_states: tuple[ReadState, ...]) -> None:
        for rs in read_states:
            read = self._reads.get(rs.context)
            if read is not None:
                read.index = rs.index
        self._release_reads()

    def _release_reads(self) -> None:
        applied = self.state.applied_index
        for read in self._reads.values():
            if read.index and read.index <= applied and not read.future.done():
                read.future.set_result(None)

    def _fail(self, reason: str) -> None:
        _log.critical("member %x: %s; refusing requests until restart", self.member_id, reason)
        self._failed = reason
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(RaftInternalError(reason))
        self._proposals.clear()
        for read in self._reads.values():
            if not read.future.done():
                read.future.set_exception(RaftInternalError(reason))

    def _deliver_all(self, deliveries: list[tuple[Watcher, Event]]) -> None:
        for watcher, event in deliveries:
            sink = watcher.sink
            if isinstance(sink, WatchSink) and not sink.push(event):
                self.tree.remove_watcher(watcher)
