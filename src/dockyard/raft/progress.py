"""What a leader knows of one follower's log, and how fast it may send to it.

States (etcd's raft, `tracker/progress.go`), as a table of who moves where:

    PROBE      --append accepted-->            REPLICATE
    PROBE      --needed entries compacted-->   SNAPSHOT
    REPLICATE  --append rejected-->            PROBE
    SNAPSHOT   --follower reached snapshot-->  PROBE (then REPLICATE on its next ack)
    SNAPSHOT   --no ack for an election-->     PROBE (the snapshot was lost; try again)

- PROBE: we do not know where the follower's log ends: send one append per heartbeat
  interval and back off `next` on each rejection (with the follower's hint).
- REPLICATE: the follower is in step: stream appends, optimistically moving `next` past what
  was sent, at most `max_inflight_msgs` unacknowledged messages (flow control).
- SNAPSHOT: the follower needs a snapshot; send nothing else until it has it.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections import deque

from dockyard.raft.log import check


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each append sent and not yet acknowledged, oldest first."""

    def __init__(self, capacity_msgs: int) -> None:
        check(capacity_msgs > 0, "inflight capacity must be positive")
        self.capacity_msgs = capacity_msgs
        self._last_indexes: deque[int] = deque()

    def add(self, last_index: int) -> None:
        check(not self.full(), "adding to a full inflight window")
        check(
            not self._last_indexes or self._last_indexes[-1] <= last_index,
            "inflight indexes must not decrease",
        )
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """The follower acknowledged everything up to `index`."""
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def free_first_one(self) -> None:
        if self._last_indexes:
            self._last_indexes.popleft()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity_msgs

    def count(self) -> int:
        return len(self._last_indexes)

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    def __init__(self, next_index: int, max_inflight_msgs: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        # PROBE: an append is out; wait for its answer or the next heartbeat before another.
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_wait_ticks = 0
        # Heard from since the last check-quorum round (Raft thesis §6.2).
        self.recent_active = False
        self.inflights = Inflights(max_inflight_msgs)

    def __repr__(self) -> str:
        extra = ""
        if self.state is ProgressState.SNAPSHOT:
            extra = f" pending_snap={self.pending_snapshot}"
        if self.inflights.count():
            extra += f" inflight={self.inflights.count()}"
            if self.inflights.full():
                extra += "[full]"
        if self.probe_sent:
            extra += " paused"
        return f"{self.state.value} match={self.match} next={self.next}{extra}"

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_wait_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # Resume after the snapshot: the follower has at least its index.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower's log matches ours up to `index`. False if the news is stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, count: int, last_index: int) -> None:
        """An append with `count` entries ending at `last_index` went out."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
        else:
            check(False, "sending entries to a follower waiting for a snapshot")

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append whose previous entry was `rejected`; it suggests
        its log matches no further than `match_hint`. False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # an old message, we have heard better since
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
