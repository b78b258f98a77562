"""The Raft log of one node: a snapshot, then entries, part of them not yet persisted.

Layout, by index:
    ... compacted ... | snapshot.index | first_index ... stable_index | ... last_index
                        (term known)     persisted by the driver        unstable (in a Ready)

Invariants (checked by `_check`, which always runs):
- applied <= committed <= last_index; snapshot.index <= applied once a pending snapshot is
  applied; committed entries are never truncated (Raft §5.3: a committed entry is final);
- entries are contiguous and their terms never decrease.

The log keeps every entry after the snapshot in memory: the store's logs are compacted every
`snapshot_count` entries, so the window is bounded, and the core stays free of storage calls.
A restarted node rebuilds its log from what the driver persisted (`RaftLog.restore_from`).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.raft.messages import Entry, Snapshot


class RaftInvariantError(AssertionError):
    """A Raft invariant broke: a bug, never a runtime condition to handle."""


def check(condition: bool, message: str) -> None:
    # Not `assert`: invariants must hold under `python -O` too.
    if not condition:
        raise RaftInvariantError(message)


class RaftLog:
    def __init__(self, snapshot: Snapshot, entries: Sequence[Entry] = (), commit: int = 0) -> None:
        self.snapshot = snapshot
        self._entries: list[Entry] = list(entries)
        self.stable_index = self.last_index()
        self.committed = max(commit, snapshot.meta.index)
        self.applied = snapshot.meta.index
        # A snapshot received from the leader that the driver has not persisted and applied.
        self.pending_snapshot: Snapshot | None = None
        check(
            not self._entries or self._entries[0].index == snapshot.meta.index + 1,
            "entries must follow the snapshot",
        )
        check(self.committed <= self.last_index(), "commit beyond the last entry")

    # ---- lookups ------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.meta.index + 1

    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self._entries)

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`; None if compacted away or not there yet."""
        offset = self.snapshot.meta.index
        if index == offset:
            return self.snapshot.meta.term
        if index < offset or index > offset + len(self._entries):
            return None
        return self._entries[index - offset - 1].term

    def last_term(self) -> int:
        term = self.term(self.last_index())
        check(term is not None, "the last entry always has a term")
        return term or 0

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up-to-date as ours?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def entry(self, index: int) -> Entry:
        check(self.first_index() <= index <= self.last_index(), f"no entry {index}")
        return self._entries[index - self.first_index()]

    def entries_from(self, index: int, max_count: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries from `index` on, at most `max_count` and about `max_bytes` (at least one)."""
        check(index >= self.first_index(), f"entries {index}+ are compacted")
        start = index - self.first_index()
        out: list[Entry] = []
        size = 0
        for entry in self._entries[start : start + max_count]:
            size += entry.size_bytes()
            if out and size > max_bytes:
                break
            out.append(entry)
        return tuple(out)

    def slice(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Entries [lo, hi)."""
        check(self.first_index() <= lo <= hi <= self.last_index() + 1, f"bad slice {lo}:{hi}")
        first = self.first_index()
        return tuple(self._entries[lo - first : hi - first])

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index <= `index` whose term is <= `term`, with that term.

        A follower answers a rejected append with it so the leader skips a whole term of
        mismatched entries per round trip instead of one entry (Raft §5.3, "the optimization").
        Returns (index, 0) when the term there is unknown (compacted).
        """
        while True:
            found = self.term(index)
            if found is None:
                return index, 0
            if found <= term:
                return index, found
            index -= 1

    # ---- changes ------------------------------------------------------------------------

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """A leader's append (Raft §5.3): None if our log does not contain (prev_index,
        prev_term); else append what is new, truncating a conflicting suffix, and return the
        index of the last entry the message covers."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            check(conflict > self.committed, f"conflict at committed index {conflict}")
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def _find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry that is new or differs from ours, or 0."""
        for entry in entries:
            if entry.index < self.first_index():
                continue  # covered by our snapshot, so committed and equal
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        after = entries[0].index - 1
        check(after >= self.committed, f"truncating committed entries after {after}")
        check(after <= self.last_index(), "appending past a gap")
        del self._entries[after - self.snapshot.meta.index :]
        self._entries.extend(entries)
        # The driver overwrites its log from `after + 1` when it persists these.
        self.stable_index = min(self.stable_index, after)

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            check(index <= self.last_index(), f"commit {index} beyond {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Raft §5.4.2: a leader commits by counting only entries of its own term."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a leader's snapshot (our log did not contain its index)."""
        self.snapshot = snapshot
        self._entries = []
        self.committed = snapshot.meta.index
        self.stable_index = snapshot.meta.index
        self.pending_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop the entries the driver's snapshot covers (it must be of applied state)."""
        index = snapshot.meta.index
        check(index <= self.applied, f"compacting {index} beyond applied {self.applied}")
        check(index <= self.stable_index, "compacting unpersisted entries")
        check(self.term(index) == snapshot.meta.term, "snapshot term does not match the log")
        if index <= self.snapshot.meta.index:
            return
        del self._entries[: index - self.snapshot.meta.index]
        self.snapshot = snapshot

    # ---- the driver's progress ----------------------------------------------------------

    def unstable_entries(self) -> tuple[Entry, ...]:
        return self.slice(self.stable_index + 1, self.last_index() + 1)

    def next_committed_entries(self) -> tuple[Entry, ...]:
        if self.pending_snapshot is not None:
            return ()  # the snapshot is applied first
        return self.slice(self.applied + 1, self.committed + 1)

    def stable_to(self, index: int, term: int) -> None:
        # Only if that entry is still the one persisted: a later append may have replaced it.
        if self.term(index) == term and index > self.stable_index:
            self.stable_index = index

    def snapshot_applied(self, snapshot: Snapshot) -> None:
        if self.pending_snapshot is snapshot:
            self.pending_snapshot = None
            self.applied = max(self.applied, snapshot.meta.index)

    def applied_to(self, index: int) -> None:
        check(self.applied <= index <= self.committed, f"applied {index} out of range")
        self.applied = index

    def all_entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)
