"""Raft's safety properties, checked after every simulated event (Raft Figure 3).

The checker keeps a global record of what any node has ever said, persisted, committed or
applied, so a violation is caught at the step that causes it, not at the end of the run:
- election safety: at most one leader per term, ever;
- log matching: the same (index, term) anywhere means the same entry after the same
  previous term (so, by induction, the same log prefix);
- leader completeness: a leader's log holds every entry any node has seen committed;
- state-machine safety: every node applies the same entry at each index (a digest chain);
- monotonic commit: a node's commit index never goes back within one incarnation, and its
  persisted commit index never goes back at all;
- linearizable reads: a ReadIndex answer is at least the highest index applied anywhere
  when the read was asked;
- no acknowledged write lost: checked at the end, once the healed cluster has caught up.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from dockyard.raft.core import RaftNode
from dockyard.raft.messages import Entry, Role


class InvariantViolation(AssertionError):
    pass


def entry_digest(previous: int, entry: Entry) -> int:
    return zlib.crc32(entry.data, (previous * 31 + entry.term * 7 + entry.index) & 0xFFFFFFFF)


class Checker:
    def __init__(self) -> None:
        self.leader_by_term: dict[int, int] = {}
        # (index, term) -> (previous entry's term or -1 if unknown, kind, data)
        self.entries: dict[tuple[int, int], tuple[int, str, bytes]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        # The term in which each index was first seen committed (by the node that committed
        # it, or learned it from such a node): leaders of later terms must hold the entry.
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.applied_digest: dict[int, int] = {0: 0}
        self.acked: dict[bytes, int] = {}
        self.max_applied = 0
        self.reads: dict[bytes, int] = {}
        self._seen_commit: dict[int, int] = {}
        self._persisted_commit: dict[int, int] = {}
        self._leader_checked: dict[tuple[int, int], int] = {}

    @staticmethod
    def fail(message: str) -> None:
        raise InvariantViolation(message)

    # ---- at events ----------------------------------------------------------------------

    def on_restart(self, node_id: int) -> None:
        self._seen_commit.pop(node_id, None)
        for key in [k for k in self._leader_checked if k[0] == node_id]:
            del self._leader_checked[key]

    @staticmethod
    def with_previous(node: RaftNode, entries: Iterable[Entry]) -> list[tuple[Entry, int]]:
        """Each entry with the term of the one before it in `node`'s log now, i.e. when the
        entries are written (-1: compacted away). Taken then, not at the fsync: by the time
        an async leader's pending writes are synced it may have stepped down and had those
        entries overwritten in memory, and the log would name a newer predecessor."""
        out = []
        for entry in entries:
            previous = node.log.term(entry.index - 1)
            out.append((entry, -1 if previous is None else previous))
        return out

    def on_persist(
        self, node: RaftNode, written: Iterable[tuple[Entry, int]], commit: int | None
    ) -> None:
        """`written`: entries made durable, each with its predecessor's term (`with_previous`)."""
        for entry, previous in written:
            record = (previous, entry.kind.value, entry.data)
            key = (entry.index, entry.term)
            known = self.entries.setdefault(key, record)
            if known[1:] != record[1:] or (
                known[0] != record[0] and known[0] != -1 and record[0] != -1
            ):
                self.fail(
                    f"log matching: node {node.id} has {record} at index/term {key}, "
                    f"another log has {known}"
                )
        if commit is not None:
            before = self._persisted_commit.get(node.id, 0)
            if commit < before:
                self.fail(f"node {node.id} persisted commit {commit} after {before}")
            self._persisted_commit[node.id] = commit

    def on_apply(self, node_id: int, entry: Entry, previous_digest: int) -> int:
        digest = entry_digest(previous_digest, entry)
        known = self.applied_digest.setdefault(entry.index, digest)
        if known != digest:
            self.fail(
                f"state-machine safety: node {node_id} applied {entry} at {entry.index}, "
                "another node applied a different entry there"
            )
        if entry.data.startswith(b"p"):
            self.acked.setdefault(entry.data, entry.index)
        self.max_applied = max(self.max_applied, entry.index)
        return digest

    def on_read_requested(self, context: bytes) -> None:
        # Linearizable reads (thesis §6.4): a read must observe every write acknowledged
        # before it started, so its read index is at least the highest applied index then.
        self.reads[context] = self.max_applied

    def on_read_state(self, node_id: int, index: int, context: bytes) -> None:
        floor = self.reads.get(context)
        if floor is None:
            self.fail(f"node {node_id} answered read {context!r} that nobody asked")
        elif index < floor:
            self.fail(
                f"stale read: node {node_id} answered {context!r} at index {index}, but "
                f"index {floor} was acknowledged before the read began"
            )

    def on_snapshot(self, node_id: int, index: int, digest: int) -> None:
        known = self.applied_digest.get(index)
        if known is not None and known != digest:
            self.fail(f"node {node_id} installed a snapshot at {index} of a different history")
        self.applied_digest.setdefault(index, digest)

    # ---- after every step ---------------------------------------------------------------

    def check_node(self, node: RaftNode) -> None:
        log = node.log
        seen = self._seen_commit.get(node.id, 0)
        if log.committed < seen:
            self.fail(f"node {node.id} commit went back from {seen} to {log.committed}")
        if log.committed > seen:
            for index in range(max(seen + 1, log.first_index()), log.committed + 1):
                term = log.term(index)
                data = log.entry(index).data
                assert term is not None
                known = self.committed.setdefault(index, (term, data))
                self.commit_term.setdefault(index, node.term)
                if known != (term, data):
                    self.fail(
                        f"node {node.id} committed {term}/{data!r} at {index}, "
                        f"but {known} was committed there"
                    )
            self._seen_commit[node.id] = log.committed
            self.max_committed = max(self.max_committed, log.committed)
        if node.role is Role.LEADER:
            holder = self.leader_by_term.setdefault(node.term, node.id)
            if holder != node.id:
                self.fail(f"election safety: {holder} and {node.id} both led term {node.term}")
            self._check_leader_completeness(node)

    def _check_leader_completeness(self, leader: RaftNode) -> None:
        log = leader.log
        key = (leader.id, leader.term)
        checked = self._leader_checked.get(key, 0)
        for index in range(max(checked + 1, log.first_index()), self.max_committed + 1):
            if self.commit_term[index] >= leader.term:
                continue  # committed in this term or later: not this leader's to hold
            term, data = self.committed[index]
            if log.term(index) != term or log.entry(index).data != data:
                self.fail(
                    f"leader completeness: leader {leader.id} of term {leader.term} lacks "
                    f"committed entry {term}/{data!r} at {index}"
                )
        self._leader_checked[key] = self.max_committed
