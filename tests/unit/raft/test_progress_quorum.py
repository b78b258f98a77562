"""Per-follower progress (probe/replicate/snapshot, inflight window) and quorum arithmetic."""

from __future__ import annotations

import pytest

from dockyard.raft import quorum
from dockyard.raft.log import RaftInvariantError
from dockyard.raft.progress import Inflights, Progress, ProgressState

pytestmark = pytest.mark.unit


def test_probe_sends_one_message_until_an_answer() -> None:
    pr = Progress(next_index=5, max_inflight_msgs=4)
    assert not pr.is_paused()
    pr.sent_entries(2, 6)
    assert pr.is_paused() and pr.next == 5  # probing does not move next
    assert pr.maybe_update(6)
    assert not pr.is_paused()


def test_replicate_moves_next_optimistically_within_the_window() -> None:
    pr = Progress(next_index=1, max_inflight_msgs=2)
    pr.become_replicate()
    pr.sent_entries(3, 3)
    pr.sent_entries(2, 5)
    assert (pr.next, pr.is_paused()) == (6, True)  # window of 2 messages is full
    pr.maybe_update(3)
    pr.inflights.free_le(3)
    assert not pr.is_paused()


def test_rejection_in_probe_uses_the_hint() -> None:
    pr = Progress(next_index=10, max_inflight_msgs=4)
    assert not pr.maybe_decrease_to(7, 3)  # stale: we did not probe at 7
    assert pr.maybe_decrease_to(9, 3)
    assert pr.next == 4
    pr.match = 5
    pr.next = 9
    assert pr.maybe_decrease_to(8, 2)
    assert pr.next == 6  # never below match + 1


def test_rejection_in_replicate_falls_back_to_match() -> None:
    pr = Progress(next_index=1, max_inflight_msgs=4)
    pr.maybe_update(4)
    pr.become_replicate()
    pr.sent_entries(3, 7)
    assert not pr.maybe_decrease_to(3, 0)  # at or below match: stale
    assert pr.maybe_decrease_to(6, 0)
    assert pr.next == 5


def test_snapshot_state_pauses_and_resumes_after_the_snapshot() -> None:
    pr = Progress(next_index=2, max_inflight_msgs=4)
    pr.become_snapshot(20)
    assert pr.is_paused()
    with pytest.raises(RaftInvariantError):
        pr.sent_entries(1, 3)
    pr.become_probe()
    assert (pr.state, pr.next) == (ProgressState.PROBE, 21)


def test_inflights_free_in_order() -> None:
    window = Inflights(3)
    for index in (2, 4, 6):
        window.add(index)
    assert window.full()
    window.free_le(4)
    assert window.count() == 1
    window.free_first_one()
    assert window.count() == 0
    with pytest.raises(RaftInvariantError):
        Inflights(0)


@pytest.mark.parametrize(
    ("voters", "match", "expected"),
    [
        ({1}, {1: 5}, 5),
        ({1, 2, 3}, {1: 5, 2: 3, 3: 1}, 3),
        ({1, 2, 3, 4}, {1: 5, 2: 4, 3: 3, 4: 1}, 3),
        ({1, 2, 3, 4, 5}, {1: 9, 2: 9}, 0),
        (set(), {}, 0),
    ],
)
def test_committed_index_is_what_a_majority_has(
    voters: set[int], match: dict[int, int], expected: int
) -> None:
    assert quorum.committed_index(voters, match) == expected


def test_vote_results() -> None:
    voters = {1, 2, 3, 4, 5}
    assert quorum.vote_result(voters, {1: True, 2: True}) is quorum.VoteResult.PENDING
    assert quorum.vote_result(voters, {1: True, 2: True, 3: True}) is quorum.VoteResult.WON
    lost = {1: True, 2: False, 3: False, 4: False}
    assert quorum.vote_result(voters, lost) is quorum.VoteResult.LOST
    # Votes from non-members do not count.
    assert quorum.vote_result({1, 2, 3}, {1: True, 9: True}) is quorum.VoteResult.PENDING


def test_has_quorum() -> None:
    assert quorum.has_quorum({1, 2, 3}, {1, 3})
    assert not quorum.has_quorum({1, 2, 3, 4}, {1, 3})
