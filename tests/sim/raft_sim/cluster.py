"""A seeded world for Raft nodes: members with disks, a lossy network, crashes and restarts.

Each node runs the driver loop of `messages.Ready` exactly: persist (to the simulated disk,
then sync), send, apply, advance. The disk keeps two layers: what was synced survives a
crash; a crash in the middle of a Ready (between its writes and its sync) keeps a random
prefix of those writes (torn write) and nothing after. Because messages leave only after
the sync, nothing another node heard of can be lost.

With `leader_persists_async` (drawn per seed), a leader may write a Ready's entries without
syncing them, send, and sync later (a random number of rounds on): the core counts its own
copy only from `persisted`. Those writes stay in a pending layer: a crash keeps a random
prefix of them, so a leader that counted an entry before it was durable loses a committed
entry, which the invariants catch.

The network delays every message by a random number of rounds (so messages reorder), drops
and duplicates some, and drops everything across a partition. Each node ticks at its own
rate (clock drift). Every random choice comes from one `random.Random(seed)`, so a seed
replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.raft.core import RaftConfig, RaftNode
from dockyard.raft.messages import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from tests.sim.raft_sim.invariants import Checker

BOOTSTRAP_INDEX = 1


@dataclass
class Disk:
    """What a node has synced. Entries follow the snapshot."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=lambda: Snapshot(SnapshotMeta(0, 0, ())))
    entries: list[Entry] = field(default_factory=list)

    def write_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.entries = [e for e in self.entries if e.index > snapshot.meta.index]
        if self.entries and self.entries[0].index != snapshot.meta.index + 1:
            self.entries = []

    def write_entries(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        keep = first - self.snapshot.meta.index - 1
        del self.entries[max(keep, 0) :]
        self.entries.extend(entries)


@dataclass(frozen=True)
class WorldParams:
    members: int
    drop_p: float
    duplicate_p: float
    max_delay_rounds: int
    crash_p: float
    restart_p: float
    partition_p: float
    heal_p: float
    propose_p: float
    read_p: float
    conf_change_p: float
    transfer_p: float
    compact_every_entries: int
    torn_p: float
    crash_after_send_p: float
    pre_vote: bool
    check_quorum: bool
    election_timeout_ticks: int = 6
    heartbeat_ticks: int = 1
    # How often per step a follower's transport reports its leader unreachable (the real
    # one does when the leader's port is closed); sometimes as a false alarm.
    unreachable_p: float = 0.0
    max_msg_entries: int = 4
    max_inflight_msgs: int = 3
    leader_persists_async: bool = False
    # Per round, the chance that a leader's pending (unsynced) writes get their fsync.
    sync_p: float = 0.5


class SimNode:
    def __init__(self, world: World, node_id: int, disk: Disk, tick_p: float) -> None:
        self.world = world
        self.id = node_id
        self.disk = disk
        self.tick_p = tick_p
        self.raft: RaftNode | None = None
        self.applied_index = 0
        self.digest = 0
        self.removed = False
        # Written but not synced (async leader mode), in write order; the last entry written.
        self.pending: list[Callable[[], None]] = []
        # Entries written and not synced yet, each with its predecessor's term then.
        self.pending_entries: list[tuple[Entry, int]] = []
        self.pending_commit: int | None = None
        self.last_written: tuple[int, int] | None = None

    def start(self) -> None:
        w = self.world
        p = w.params
        config = RaftConfig(
            node_id=self.id,
            election_timeout_ticks=p.election_timeout_ticks,
            heartbeat_ticks=p.heartbeat_ticks,
            max_msg_entries=p.max_msg_entries,
            max_inflight_msgs=p.max_inflight_msgs,
            pre_vote=p.pre_vote,
            check_quorum=p.check_quorum,
            leader_persists_async=p.leader_persists_async,
        )
        snapshot = self.disk.snapshot
        self.raft = RaftNode(
            config,
            w.rng,
            snapshot=snapshot,
            hard_state=self.disk.hard_state,
            entries=list(self.disk.entries),
            trace=w.trace_fn,
        )
        self.applied_index, self.digest = decode_snapshot(snapshot)
        w.checker.on_restart(self.id)

    def crash(self) -> None:
        if self.pending:
            # What the page cache had not written back: a random prefix survives.
            survived = self.world.rng.randrange(len(self.pending) + 1)
            for write in self.pending[:survived]:
                write()
            self.world.trace(
                f"{self.id} lost {len(self.pending) - survived}/{len(self.pending)} unsynced writes"
            )
        self._clear_pending()
        self.raft = None

    def _clear_pending(self) -> None:
        self.pending = []
        self.pending_entries = []
        self.pending_commit = None

    def sync(self) -> None:
        """The fsync of a leader's pending writes; then the core may count them."""
        raft = self.raft
        assert raft is not None
        for write in self.pending:
            write()
        self.world.checker.on_persist(raft, self.pending_entries, self.pending_commit)
        self._clear_pending()
        if self.last_written is not None:
            raft.persisted(*self.last_written)

    def _deferrable(self, rd: Ready) -> bool:
        raft = self.raft
        assert raft is not None
        if not raft.config.leader_persists_async or raft.role is not Role.LEADER:
            return False
        if rd.snapshot is not None:
            return False
        hs = rd.hard_state
        return hs is None or (hs.term, hs.vote) == (raft.term, raft.vote) == (
            self.disk.hard_state.term,
            self.disk.hard_state.vote,
        )

    def _write_pending(self, rd: Ready) -> None:
        disk = self.disk
        entries = rd.entries
        if entries:
            self.pending.append(lambda: disk.write_entries(entries))
            assert self.raft is not None
            self.pending_entries.extend(self.world.checker.with_previous(self.raft, entries))
            self.last_written = (entries[-1].index, entries[-1].term)
        if rd.hard_state is not None:
            hs = rd.hard_state
            self.pending.append(lambda: setattr(disk, "hard_state", hs))
            self.pending_commit = hs.commit

    def handle_ready(self) -> None:
        raft = self.raft
        assert raft is not None
        w = self.world
        rd = raft.ready()
        if not w.lossless and w.rng.random() < w.params.torn_p:
            self._torn_crash(rd)
            return
        # 1. persist and sync (or, a leader in async mode, only write).
        disk = self.disk
        deferred = self._deferrable(rd)
        if deferred:
            self._write_pending(rd)
        else:
            if self.pending:
                self.sync()  # this Ready's fsync covers the pending writes before it
            if rd.snapshot is not None:
                disk.write_snapshot(rd.snapshot)
                disk.entries = []
            if rd.entries:
                disk.write_entries(rd.entries)
                self.last_written = (rd.entries[-1].index, rd.entries[-1].term)
            if rd.hard_state is not None:
                disk.hard_state = rd.hard_state
            commit = rd.hard_state.commit if rd.hard_state else None
            w.checker.on_persist(raft, w.checker.with_previous(raft, rd.entries), commit)
        # 2. send.
        for m in rd.messages:
            w.send(m)
        if not w.lossless and rd.messages and w.rng.random() < w.params.crash_after_send_p:
            # Dying right after sending (a leader after replicating to a minority) is where
            # Raft's subtle cases live (Figure 8).
            w.trace(f"{self.id} crashed after sending")
            self.crash()
            return
        # 3. apply.
        if rd.snapshot is not None:
            self.applied_index, self.digest = decode_snapshot(rd.snapshot)
            w.checker.on_snapshot(self.id, self.applied_index, self.digest)
        for entry in rd.committed_entries:
            if entry.index != self.applied_index + 1:
                w.checker.fail(f"node {self.id} applies {entry.index} after {self.applied_index}")
            self.digest = w.checker.on_apply(self.id, entry, self.digest)
            self.applied_index = entry.index
            if entry.kind is EntryKind.CONF_CHANGE:
                change = ConfChange.decode(entry.data)
                if change.kind is ConfChangeKind.REMOVE_VOTER:
                    w.member_removed(change.node_id)
        for read in rd.read_states:
            w.checker.on_read_state(self.id, read.index, read.context)
        raft.advance(rd)
        if self.raft is None:
            return  # it applied its own removal and shut down
        if not deferred and rd.entries and self.last_written is not None:
            raft.persisted(*self.last_written)
        # 4. compact now and then, behind the applied state.
        log = raft.log
        if self.applied_index - log.snapshot.meta.index >= w.params.compact_every_entries:
            index = min(self.applied_index, log.stable_index)
            term = log.term(index)
            assert term is not None
            snapshot = Snapshot(
                SnapshotMeta(index, term, tuple(sorted(raft.voters))),
                encode_snapshot(index, self.digest if index == self.applied_index else -1),
            )
            if index == self.applied_index:
                if self.pending:
                    self.sync()  # the driver's log rewrite syncs whatever it keeps
                raft.compact(snapshot)
                disk.write_snapshot(snapshot)

    def _torn_crash(self, rd: Ready) -> None:
        """Crash between the writes of this Ready and their sync: a prefix survives."""
        writes: list[Callable[[], None]] = list(self.pending)  # written earlier, unsynced
        self._clear_pending()
        disk = self.disk
        if rd.snapshot is not None:
            snap = rd.snapshot

            def install() -> None:
                disk.write_snapshot(snap)
                disk.entries = []

            writes.append(install)
        for i in range(len(rd.entries)):
            part = rd.entries[i : i + 1]
            writes.append(lambda part=part: disk.write_entries(part))  # type: ignore[misc]
        if rd.hard_state is not None:
            hs = rd.hard_state
            writes.append(lambda: setattr(disk, "hard_state", hs))
        survived = self.world.rng.randrange(len(writes) + 1)
        for write in writes[:survived]:
            write()
        self.world.trace(f"{self.id} crashed mid-ready: {survived}/{len(writes)} writes kept")
        self.crash()


def encode_snapshot(index: int, digest: int) -> bytes:
    return f"{index}:{digest}".encode()


def decode_snapshot(snapshot: Snapshot) -> tuple[int, int]:
    if not snapshot.data:
        return snapshot.meta.index, 0
    index, _, digest = snapshot.data.decode().partition(":")
    return int(index), int(digest)


class World:
    def __init__(self, seed: int, params: WorldParams, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.params = params
        self.checker = Checker()
        self.round = 0
        self.log_lines: list[str] = []
        self.trace_fn: Callable[[str], None] | None = self._trace if trace else None
        self._queue: list[tuple[int, float, Message]] = []
        self._seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.lossless = False
        voters = tuple(range(1, params.members + 1))
        bootstrap = Snapshot(
            SnapshotMeta(BOOTSTRAP_INDEX, 1, voters), encode_snapshot(BOOTSTRAP_INDEX, 0)
        )
        self.checker.applied_digest[BOOTSTRAP_INDEX] = 0
        self.nodes: dict[int, SimNode] = {}
        for node_id in voters:
            self.add_node(node_id, Disk(HardState(1, 0, BOOTSTRAP_INDEX), bootstrap, []))
        self.next_id = params.members + 1
        self.proposals = 0
        self.reads = 0

    def _trace(self, line: str) -> None:
        self.log_lines.append(f"[{self.round}] {line}")

    def trace(self, line: str) -> None:
        if self.trace_fn is not None:
            self._trace(line)

    def member_removed(self, node_id: int) -> None:
        """etcd: once its removal is committed, a member stops (it learns it from its peers
        when it has not applied the removal itself). Left running, a removed member that
        never hears of its removal would disrupt the cluster forever without pre-vote."""
        node = self.nodes.get(node_id)
        if node is not None and not node.removed:
            node.removed = True
            node.raft = None
            self.trace(f"{node_id} shut down: removed")

    def add_node(self, node_id: int, disk: Disk) -> SimNode:
        node = SimNode(self, node_id, disk, tick_p=0.7 + 0.3 * self.rng.random())
        self.nodes[node_id] = node
        node.start()
        return node

    # ---- network ------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        p = self.params
        if not self.lossless:
            if (m.frm, m.to) in self.blocked or self.rng.random() < p.drop_p:
                return
            if self.rng.random() < p.duplicate_p:
                self._enqueue(m)
        self._enqueue(m)

    def _enqueue(self, m: Message) -> None:
        delay = 1 + int(self.rng.random() * self.params.max_delay_rounds)
        self._seq += 1
        heapq.heappush(self._queue, (self.round + delay, self.rng.random(), m))

    def deliver_due(self) -> None:
        queue = self._queue
        while queue and queue[0][0] <= self.round:
            _, _, m = heapq.heappop(queue)
            if (m.frm, m.to) in self.blocked and not self.lossless:
                continue
            node = self.nodes.get(m.to)
            if node is None or node.raft is None:
                continue
            node.raft.step(m)
            self.check(node)

    # ---- helpers for the scenario -------------------------------------------------------

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raft is not None]

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for node in self.live():
            raft = node.raft
            assert raft is not None
            if raft.role is Role.LEADER and (best is None or raft.term > best.raft.term):  # type: ignore[union-attr]
                best = node
        return best

    def check(self, node: SimNode) -> None:
        if node.raft is not None:
            self.checker.check_node(node.raft)

    def run_round(self) -> None:
        self.round += 1
        rng = self.rng
        for node in list(self.nodes.values()):
            if node.raft is not None and rng.random() < node.tick_p:
                node.raft.tick()
                self.check(node)
        self.deliver_due()
        for node in list(self.nodes.values()):
            if node.raft is not None and node.pending and rng.random() < self.params.sync_p:
                node.sync()
                self.check(node)
        nodes = list(self.nodes.values())
        rng.shuffle(nodes)
        for node in nodes:
            if node.raft is not None and node.raft.has_ready():
                node.handle_ready()
                self.check(node)
