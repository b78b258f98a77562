"""The Raft log: term lookups, appends with conflicts, commit rules, compaction."""

from __future__ import annotations

import pytest

from dockyard.raft.log import RaftInvariantError, RaftLog
from dockyard.raft.messages import Entry, Snapshot, SnapshotMeta

pytestmark = pytest.mark.unit


def snap(index: int = 0, term: int = 0) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, (1, 2, 3)))


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term, start + i) for i, term in enumerate(terms)]


def test_terms_and_bounds() -> None:
    log = RaftLog(snap(3, 2), entries(2, 3, 3, start=4))
    assert (log.first_index(), log.last_index(), log.last_term()) == (4, 6, 3)
    assert log.term(3) == 2  # the snapshot's own index keeps its term
    assert log.term(2) is None  # compacted
    assert log.term(7) is None  # not there yet
    assert log.term(5) == 3


def test_up_to_date_compares_last_term_then_index() -> None:
    log = RaftLog(snap(), entries(1, 2, 2))
    assert log.is_up_to_date(1, 3)  # higher last term wins even if shorter
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_maybe_append_rejects_a_mismatched_previous_entry() -> None:
    log = RaftLog(snap(), entries(1, 1))
    assert log.maybe_append(2, 2, 0, entries(2, start=3)) is None
    assert log.maybe_append(3, 1, 0, []) is None  # beyond our log


def test_maybe_append_truncates_a_conflicting_suffix() -> None:
    log = RaftLog(snap(), entries(1, 1, 1, 1))
    log.stable_to(4, 1)
    assert log.maybe_append(2, 1, 3, entries(2, 2, start=3)) == 4
    assert [e.term for e in log.all_entries()] == [1, 1, 2, 2]
    # The driver must overwrite from index 3: those entries are unstable again.
    assert [e.index for e in log.unstable_entries()] == [3, 4]
    assert log.committed == 3


def test_maybe_append_keeps_a_longer_matching_log() -> None:
    # A delayed, shorter append must not truncate entries after it (§5.3: only conflicts).
    log = RaftLog(snap(), entries(1, 1, 1, 1))
    assert log.maybe_append(1, 1, 0, entries(1, start=2)) == 2
    assert log.last_index() == 4


def test_commit_is_limited_to_what_the_message_covers() -> None:
    log = RaftLog(snap(), entries(1, 1, 1, 1))
    log.maybe_append(1, 1, 10, entries(1, start=2))
    assert log.committed == 2


def test_committed_entries_are_never_truncated() -> None:
    log = RaftLog(snap(), entries(1, 1, 1))
    log.commit_to(2)
    with pytest.raises(RaftInvariantError):
        log.append(entries(2, start=2))


def test_maybe_commit_needs_the_current_term() -> None:
    # Raft §5.4.2: a leader of term 3 cannot commit index 2 (term 2) by counting.
    log = RaftLog(snap(), entries(1, 2, 3))
    assert not log.maybe_commit(2, 3)
    assert log.maybe_commit(3, 3)
    assert log.committed == 3


def test_find_conflict_by_term_skips_whole_terms() -> None:
    log = RaftLog(snap(), entries(1, 1, 2, 2, 4, 4, 4))
    assert log.find_conflict_by_term(7, 3) == (4, 2)
    assert log.find_conflict_by_term(7, 4) == (7, 4)
    assert log.find_conflict_by_term(7, 0) == (0, 0)
    compacted = RaftLog(snap(3, 2), entries(4, 4, start=4))
    assert compacted.find_conflict_by_term(5, 3) == (3, 2)
    assert compacted.find_conflict_by_term(5, 1) == (2, 0)  # unknown below the snapshot


def test_entries_from_limits_count_and_bytes_but_sends_at_least_one() -> None:
    big = [Entry(1, i, data=b"x" * 100) for i in range(1, 6)]
    log = RaftLog(snap(), big)
    assert len(log.entries_from(1, 3, 10_000)) == 3
    assert len(log.entries_from(1, 10, 250)) == 2
    assert len(log.entries_from(1, 10, 1)) == 1


def test_compaction_drops_applied_entries_only() -> None:
    log = RaftLog(snap(), entries(1, 1, 2, 2))
    log.commit_to(3)
    log.applied_to(3)
    log.compact(Snapshot(SnapshotMeta(3, 2, (1, 2, 3))))
    assert (log.first_index(), log.last_index(), log.term(3)) == (4, 4, 2)
    with pytest.raises(RaftInvariantError):
        log.compact(Snapshot(SnapshotMeta(4, 2, (1, 2, 3))))  # not applied


def test_restore_replaces_the_log_and_waits_for_the_snapshot_to_apply() -> None:
    log = RaftLog(snap(), entries(1, 1))
    incoming = Snapshot(SnapshotMeta(10, 3, (1, 2)))
    log.restore(incoming)
    assert (log.last_index(), log.committed, log.pending_snapshot) == (10, 10, incoming)
    assert log.next_committed_entries() == ()
    log.snapshot_applied(incoming)
    assert (log.applied, log.pending_snapshot) == (10, None)


def test_stable_to_ignores_a_replaced_entry() -> None:
    log = RaftLog(snap(), [])
    log.append(entries(1, 1))
    log.append(entries(2, start=2))  # replaces index 2 before the driver persisted it
    log.stable_to(2, 1)  # the driver reports the old entry: not the one in the log
    assert log.stable_index == 0
    log.stable_to(2, 2)
    assert log.stable_index == 2
