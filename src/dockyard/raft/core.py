"""The Raft state machine of one node (`RaftNode`): ticks and messages in, a `Ready` out.

Role: decide everything Raft decides (elections, replication, commitment, snapshots,
membership, leadership transfer, linearizable reads) and nothing else. The driver owns time
(it calls `tick()` every tick interval), the network (it steps received messages and sends
the ones a `Ready` carries), the disk and the state machine; see `messages.Ready` for the
order of work it must follow: persist, then send, then apply, then `advance`.

Rules (the Raft paper's sections and etcd's raft where it goes further):
- Elections with randomized timeouts in [election_timeout, 2*election_timeout) ticks (§5.2);
  with `pre_vote`, a node first asks whether it could win without raising its term, so a
  node rejoining from a partition does not depose a healthy leader (thesis §9.6).
- `check_quorum`: a leader that has not heard from a quorum within an election timeout steps
  down, and a follower that heard from its leader within one ignores vote requests (the
  leader lease, thesis §6.2, §4.2.3) unless a leadership transfer forces the election.
- Replication (§5.3): PROBE/REPLICATE/SNAPSHOT per follower (`progress.py`), batches of at
  most `max_msg_entries`/`max_msg_bytes`, at most `max_inflight_msgs` appends in flight, and
  the follower's conflict hint to skip a term per round trip.
- Commitment by counting replicas only for entries of the current term (§5.4.2); a new leader
  appends an empty entry so that it can commit (and learn the commit index) at once.
- One voter added or removed at a time (thesis §4.1): a conf-change entry takes effect when
  applied (in `advance`); the leader refuses a second while one is unapplied, and a new
  leader refuses one until its first entry is applied (Ongaro's single-server fix); a leader
  that applies its own removal steps down.
- Leadership transfer (thesis §3.10): catch the target up, send it TIMEOUT_NOW; proposals are
  dropped meanwhile; abandoned after an election timeout.
- ReadIndex (thesis §6.4): the leader records its commit index, confirms it still leads with
  a heartbeat round, then releases the read; a leader that has not committed an entry of its
  term yet defers reads until it has.
- Fast failover: when the driver's transport finds the leader unreachable (its process is
  gone: connections refused), `leader_unreachable` drops the lease and brings the election
  forward to within a few ticks; a heartbeat in the meantime cancels it. Timing only: the
  election's rules are unchanged, so safety is not at stake, and pre-vote keeps a node that
  alone lost the leader from disrupting the others.

Must not: do I/O, read a clock, or draw randomness except from the `rng` it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dockyard.raft import quorum
from dockyard.raft.log import RaftLog, check
from dockyard.raft.messages import (
    CAMPAIGN_TRANSFER,
    NONE,
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
)
from dockyard.raft.progress import Progress, ProgressState

MK = MessageKind
# `leader_unreachable`: campaign within this many ticks, randomized so that the followers
# that all lost the leader at once do not split their votes.
FAST_ELECTION_MAX_TICKS = 3


class Rng(Protocol):
    """The part of `random.Random` the core uses (passed in: the core stays pure)."""

    def randrange(self, start: int, stop: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: int
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 1
    max_msg_entries: int = 64
    max_msg_bytes: int = 1 << 20
    max_inflight_msgs: int = 64
    pre_vote: bool = True
    check_quorum: bool = True
    # The leader's own entries count toward a commit only once the driver reports them
    # durable (`persisted`), so it may send them before its fsync (see `messages.Ready`).
    # Off: the driver syncs every Ready before sending, and the leader counts an entry as
    # soon as it appends it.
    leader_persists_async: bool = False

    def __post_init__(self) -> None:
        check(self.node_id != NONE, "node id 0 is reserved")
        check(
            0 < self.heartbeat_ticks < self.election_timeout_ticks,
            "the heartbeat must be shorter than the election timeout",
        )


@dataclass(slots=True)
class _ReadRequest:
    index: int
    frm: int
    acks: set[int]


_VOTE_RESPONSE = {MK.VOTE: MK.VOTE_RESP, MK.PRE_VOTE: MK.PRE_VOTE_RESP}


class RaftNode:
    def __init__(
        self,
        config: RaftConfig,
        rng: Rng,
        snapshot: Snapshot,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        trace: Callable[[str], None] | None = None,
    ) -> None:
        """A node starting (or restarting) from what its driver persisted.

        A new cluster starts from a bootstrap snapshot naming the voters; a member joining a
        running cluster starts from an empty snapshot (no voters) and learns its log and the
        configuration from the leader.
        """
        if hard_state is None:
            hard_state = HardState()
        self.id = config.node_id
        self.config = config
        self._rng = rng
        self._trace = trace
        self.log = RaftLog(snapshot, entries, hard_state.commit)
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.voters: set[int] = set(snapshot.meta.voters)
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed_ticks = 0
        self.heartbeat_elapsed_ticks = 0
        self.randomized_election_timeout_ticks = config.election_timeout_ticks
        # Set by `leader_unreachable`; cleared by a leader heard from, or used up by one
        # fast retry (`_reset`).
        self.leader_lost = False
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self._reads: dict[bytes, _ReadRequest] = {}
        self._read_queue: list[bytes] = []
        self._deferred_reads: list[Message] = []
        self.msgs: list[Message] = []
        # How many of `msgs` the last `ready()` handed out (until `advance`): those are the
        # driver's now, so folding (`_newest_waiting`) only touches the ones after them.
        self._msgs_handed_out = 0
        self.read_states: list[ReadState] = []
        self._prev_hard_state = hard_state
        self._prev_soft_state = SoftState(NONE, Role.FOLLOWER)
        self._become_follower(self.term, NONE)

    # ---- inputs -------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def campaign(self) -> None:
        self.step(Message(MK.HUP))

    def propose(self, data: bytes) -> bool:
        """False if dropped (no leader known, a transfer in progress, or removed)."""
        return self.step(Message(MK.PROPOSE, entries=(Entry(0, 0, EntryKind.NORMAL, data),)))

    def propose_conf_change(self, change: ConfChange) -> bool:
        if self.role is Role.LEADER and self.pending_conf_index > self.log.applied:
            # One change at a time, and none before this leader's first entry is applied.
            self._log(f"refused conf change: entry {self.pending_conf_index} is not applied")
            return False
        entry = Entry(0, 0, EntryKind.CONF_CHANGE, change.encode())
        return self.step(Message(MK.PROPOSE, entries=(entry,)))

    def leader_unreachable(self, leader: int) -> None:
        """The driver's transport cannot reach `leader` (connection refused or timed out):
        stop counting on it. The lease goes (so this node grants votes), and unless a
        heartbeat arrives within the next 1-`FAST_ELECTION_MAX_TICKS` ticks, this node
        campaigns then instead of after a whole election timeout.

        Only the time of an election changes, never its rules: a leader that is in fact
        alive keeps its followers with its next heartbeat, and pre-vote keeps a node that
        alone lost the leader from disrupting the others (they still hold the lease)."""
        if self.role is not Role.FOLLOWER or self.lead != leader or leader == NONE:
            return
        self._log(f"leader {leader} unreachable: campaigning soon unless it is heard from")
        self.lead = NONE
        self.leader_lost = True
        soon = self._rng.randrange(1, FAST_ELECTION_MAX_TICKS + 1)
        self.election_elapsed_ticks = max(
            self.election_elapsed_ticks, self.randomized_election_timeout_ticks - soon
        )

    def transfer_leadership(self, to: int) -> None:
        self.step(Message(MK.TRANSFER_LEADER, frm=to))

    def persisted(self, index: int, term: int) -> None:
        """The driver's fsync made the log durable up to `index`, whose entry had `term`
        when written. A leader (`leader_persists_async`) now counts its own copy; an entry
        since replaced (its term differs) proves nothing. Followers ignore it: they sync
        before they answer."""
        if self.role is not Role.LEADER or self.log.term(index) != term:
            return
        pr = self.progress.get(self.id)
        if pr is not None and pr.maybe_update(index) and self._maybe_commit():
            self._bcast_append()

    def read_index(self, context: bytes) -> None:
        """Ask for a read index; the answer arrives as a `ReadState` in a later Ready."""
        self.step(Message(MK.READ_INDEX, context=context))

    def compact(self, snapshot: Snapshot) -> None:
        """The driver took `snapshot` of its applied state: drop the entries it covers."""
        self.log.compact(snapshot)

    def report_snapshot(self, to: int, ok: bool) -> None:
        """The driver's transport says whether a snapshot reached `to`."""
        pr = self.progress.get(to)
        if self.role is Role.LEADER and pr and pr.state is ProgressState.SNAPSHOT:
            if not ok:
                pr.pending_snapshot = 0
            pr.become_probe()
            pr.probe_sent = True  # wait for the follower's next heartbeat answer

    def step(self, m: Message) -> bool:
        """Handle one message, local or received. Returns False only for a dropped proposal."""
        if m.term == 0:
            pass  # a local input
        elif m.term > self.term:
            if m.kind in (MK.VOTE, MK.PRE_VOTE):
                forced = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed_ticks < self.config.election_timeout_ticks
                )
                if in_lease and not forced:
                    # Thesis §4.2.3: we heard from a leader recently, ignore the disruption.
                    self._log(
                        f"ignored {m.kind.value} from {m.frm} at term {m.term}: lease "
                        f"({self.election_elapsed_ticks} ticks since leader {self.lead})"
                    )
                    return True
            if m.kind is MK.PRE_VOTE or (m.kind is MK.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes do not change terms: their term is a hypothetical one
            elif m.kind in (MK.APP, MK.HEARTBEAT, MK.SNAP):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.kind in (
                MK.APP,
                MK.HEARTBEAT,
            ):
                # A stale leader (e.g. back from a partition, whose pre-votes never raise
                # our term) learns of our term from this answer and steps down.
                self._send(MK.APP_RESP, to=m.frm)
            elif m.kind is MK.PRE_VOTE:
                # Tell a lagging pre-candidate our term so it can catch up.
                self._send(MK.PRE_VOTE_RESP, to=m.frm, term=self.term, reject=True)
            return True

        if m.kind is MK.HUP:
            self._hup(transfer=False)
            return True
        if m.kind in (MK.VOTE, MK.PRE_VOTE):
            self._handle_vote_request(m)
            return True
        if self.role is Role.LEADER:
            return self._step_leader(m)
        if self.role is Role.FOLLOWER:
            return self._step_follower(m)
        return self._step_candidate(m)

    # ---- outputs ------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self.msgs
            or self.read_states
            or log.pending_snapshot is not None
            or log.stable_index < log.last_index()
            or log.applied < log.committed
            or self.hard_state() != self._prev_hard_state
            or self.soft_state() != self._prev_soft_state
        )

    def ready(self) -> Ready:
        hard = self.hard_state()
        soft = self.soft_state()
        return Ready(
            soft_state=soft if soft != self._prev_soft_state else None,
            hard_state=hard if hard != self._prev_hard_state else None,
            entries=self.log.unstable_entries(),
            snapshot=self.log.pending_snapshot,
            committed_entries=self.log.next_committed_entries(),
            messages=self._hand_out_messages(),
            read_states=tuple(self.read_states),
        )

    def _hand_out_messages(self) -> tuple[Message, ...]:
        self._msgs_handed_out = len(self.msgs)
        return tuple(self.msgs)

    def advance(self, rd: Ready) -> None:
        """The driver did what `rd` asked: record it, and apply committed conf changes."""
        if rd.soft_state is not None:
            self._prev_soft_state = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        del self.msgs[: len(rd.messages)]
        self._msgs_handed_out = 0
        del self.read_states[: len(rd.read_states)]
        if rd.snapshot is not None:
            self.log.snapshot_applied(rd.snapshot)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries and rd.committed_entries[-1].index > self.log.applied:
            for entry in rd.committed_entries:
                if entry.index <= self.log.applied:
                    continue
                self.log.applied_to(entry.index)
                if entry.kind is EntryKind.CONF_CHANGE:
                    self._apply_conf_change(ConfChange.decode(entry.data))

    # ---- roles --------------------------------------------------------------------------

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed_ticks = 0
        self.heartbeat_elapsed_ticks = 0
        et = self.config.election_timeout_ticks
        self.randomized_election_timeout_ticks = et + self._rng.randrange(0, et)
        if self.leader_lost:
            # The first round after our leader became unreachable failed (its pre-vote met
            # a lease the other followers had not dropped yet, or the vote split): one more
            # round within a few ticks, then back to the usual timeouts. Once only: repeated
            # fast rounds could keep a cluster electing forever (the simulator found that).
            self.leader_lost = False
            soon = self._rng.randrange(1, FAST_ELECTION_MAX_TICKS + 1)
            self.election_elapsed_ticks = self.randomized_election_timeout_ticks - soon
        self.lead_transferee = NONE
        self.votes = {}
        self.progress = {}
        self.pending_conf_index = 0
        self._reads = {}
        self._read_queue = []
        self._deferred_reads = []

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        if lead != NONE:
            self.leader_lost = False
        self.role = Role.FOLLOWER
        self._log(f"became follower at term {self.term}")

    def _become_pre_candidate(self) -> None:
        # Neither the term nor the vote changes: a pre-vote is only a question.
        check(self.role is not Role.LEADER, "leader cannot become pre-candidate")
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE
        self._log(f"became pre-candidate at term {self.term}")

    def _become_candidate(self) -> None:
        check(self.role is not Role.LEADER, "leader cannot become candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._log(f"became candidate at term {self.term}")

    def _become_leader(self) -> None:
        check(self.role is Role.CANDIDATE, "only a candidate can become leader")
        self._reset(self.term)
        self.lead = self.id
        self.leader_lost = False
        self.role = Role.LEADER
        last = self.log.last_index()
        for node in self.voters:
            pr = Progress(last + 1, self.config.max_inflight_msgs)
            if node == self.id:
                pr.match = last
                pr.become_replicate()
            self.progress[node] = pr
        # §5.4.2 / §8: an entry of our term, so we can commit (and serve reads) at once.
        self._append_entries([Entry(0, 0)])
        # No conf change until this entry is applied (Ongaro's single-server-change fix).
        self.pending_conf_index = self.log.last_index()
        self._log(f"became leader at term {self.term}")

    # ---- elections ----------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed_ticks += 1
        if (
            self._promotable()
            and self.election_elapsed_ticks >= self.randomized_election_timeout_ticks
        ):
            self.election_elapsed_ticks = 0
            self.step(Message(MK.HUP))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed_ticks += 1
        self.election_elapsed_ticks += 1
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks:
            self.election_elapsed_ticks = 0
            if self.config.check_quorum and not self._quorum_active():
                self._log("stepped down: no quorum heard from in an election timeout")
                self._become_follower(self.term, NONE)
                return
            if self.lead_transferee != NONE:
                self._log(f"abandoned transfer to {self.lead_transferee}: timed out")
                self.lead_transferee = NONE
        for node, pr in self.progress.items():
            if node != self.id and pr.state is ProgressState.SNAPSHOT:
                # A lost snapshot is never acknowledged: try again after an election timeout.
                pr.snapshot_wait_ticks += 1
                if pr.snapshot_wait_ticks >= self.config.election_timeout_ticks:
                    pr.pending_snapshot = 0
                    pr.become_probe()
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed_ticks = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = {self.id}
        for node, pr in self.progress.items():
            if pr.recent_active:
                active.add(node)
            if node != self.id:
                pr.recent_active = False
        return quorum.has_quorum(self.voters, active)

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER:
            return
        if not self._promotable():
            self._log("cannot campaign: not a voter")
            return
        if any(e.kind is EntryKind.CONF_CHANGE for e in self.log.next_committed_entries()):
            # Our configuration is about to change: wait until it has.
            self._log("cannot campaign: a committed conf change is not applied yet")
            return
        self._log(f"starting a new election at term {self.term}")
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            kind, vote_term = MK.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            kind, vote_term = MK.VOTE, self.term
        if self._poll(self.id, granted=True) is quorum.VoteResult.WON:
            # A single voter wins at once.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self._become_leader()
            return
        context = CAMPAIGN_TRANSFER if transfer else b""
        for node in sorted(self.voters):
            if node == self.id:
                continue
            self._log(
                f"sent {kind.value} to {node} at term {vote_term} "
                f"(last {self.log.last_term()}/{self.log.last_index()})"
            )
            self._send(
                kind,
                to=node,
                term=vote_term,
                index=self.log.last_index(),
                log_term=self.log.last_term(),
                context=context,
            )

    def _poll(self, node: int, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(node, granted)
        return quorum.vote_result(self.voters, self.votes)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.kind is MK.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # §5.2, §5.4.1. The reply carries the candidate's term so that it is counted.
            self._log(f"granted {m.kind.value} to {m.frm} at term {m.term}")
            self._send(_VOTE_RESPONSE[m.kind], to=m.frm, term=m.term)
            if m.kind is MK.VOTE:
                self.election_elapsed_ticks = 0
                self.vote = m.frm
        else:
            self._log(f"rejected {m.kind.value} from {m.frm} at term {m.term}")
            self._send(_VOTE_RESPONSE[m.kind], to=m.frm, term=self.term, reject=True)

    # ---- per role -----------------------------------------------------------------------

    # Each role handles a message kind with one method, found in a table (`_STEPS`, at the
    # end of this module); kinds missing from a role's table are ignored by that role.

    def _step_follower(self, m: Message) -> bool:
        handler = _FOLLOWER_STEPS.get(m.kind)
        return handler(self, m) if handler is not None else True

    def _step_candidate(self, m: Message) -> bool:
        handler = _CANDIDATE_STEPS.get(m.kind)
        return handler(self, m) if handler is not None else True

    def _step_leader(self, m: Message) -> bool:
        handler = _LEADER_STEPS.get(m.kind)
        return handler(self, m) if handler is not None else True

    def _forward_proposal(self, m: Message) -> bool:
        if self.lead == NONE:
            return False
        self._send(MK.PROPOSE, to=self.lead, frm=m.frm, entries=m.entries)
        return True

    def _follow_append(self, m: Message) -> bool:
        self.election_elapsed_ticks = 0
        self.lead = m.frm
        self.leader_lost = False
        self._handle_append(m)
        return True

    def _follow_heartbeat(self, m: Message) -> bool:
        self.election_elapsed_ticks = 0
        self.lead = m.frm
        self.leader_lost = False
        self._handle_heartbeat(m)
        return True

    def _follow_snapshot(self, m: Message) -> bool:
        self.election_elapsed_ticks = 0
        self.lead = m.frm
        self.leader_lost = False
        self._handle_snapshot(m)
        return True

    def _forward_transfer(self, m: Message) -> bool:
        if self.lead != NONE:
            self._send(MK.TRANSFER_LEADER, to=self.lead, frm=m.frm)
        return True

    def _timeout_now(self, m: Message) -> bool:
        self._log(f"received TimeoutNow from {m.frm}: campaigning to take over")
        self._hup(transfer=True)
        return True

    def _forward_read_index(self, m: Message) -> bool:
        if self.lead != NONE:
            self._send(MK.READ_INDEX, to=self.lead, context=m.context)
        return True

    def _read_index_answered(self, m: Message) -> bool:
        self.read_states.append(ReadState(m.index, m.context))
        return True

    def _drop_proposal(self, m: Message) -> bool:
        return False

    def _yield_to_leader(self, m: Message) -> bool:
        # A leader of our term exists (§5.2): yield to it.
        self._become_follower(m.term, m.frm)
        return self._step_follower(m)

    def _vote_response(self, m: Message) -> bool:
        expected = MK.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MK.VOTE_RESP
        if m.kind is not expected:
            return True  # left over from an earlier phase of this campaign
        result = self._poll(m.frm, granted=not m.reject)
        self._log(
            f"received {m.kind.value} {'rejection' if m.reject else 'grant'} from {m.frm}: "
            f"{result.value}"
        )
        if result is quorum.VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
                self._bcast_append()
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self.term, NONE)
        return True

    def _leader_beat(self, m: Message) -> bool:
        self._bcast_heartbeat()
        return True

    def _leader_read_index_step(self, m: Message) -> bool:
        self._leader_read_index(m)
        return True

    def _leader_transfer_step(self, m: Message) -> bool:
        self._leader_transfer(m.frm)
        return True

    def _leader_append_response(self, m: Message) -> bool:
        pr = self.progress.get(m.frm)
        if pr is None:
            return True  # not (or no longer) a member
        pr.recent_active = True
        if m.reject:
            self._leader_append_rejected(m, pr)
        else:
            self._leader_append_accepted(m, pr)
        return True

    def _leader_heartbeat_response(self, m: Message) -> bool:
        pr = self.progress.get(m.frm)
        if pr is None:
            return True
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            # Unblock a stalled stream: an append may have been lost.
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            # Also how a lost append is noticed: an empty one makes the follower reject.
            self._send_append(m.frm)
        if m.context:
            self._read_acked(m.context, m.frm)
        return True

    def _leader_propose(self, m: Message) -> bool:
        if self.id not in self.progress:
            return False  # removed from the configuration
        if self.lead_transferee != NONE:
            self._log(f"dropped proposal: transferring leadership to {self.lead_transferee}")
            return False
        entries = list(m.entries)
        for i, entry in enumerate(entries):
            if entry.kind is EntryKind.CONF_CHANGE:
                if self.pending_conf_index > self.log.applied:
                    self._log("dropped conf change: another one is not applied yet")
                    entries[i] = Entry(0, 0)
                else:
                    self.pending_conf_index = self.log.last_index() + i + 1
        self._append_entries(entries)
        self._bcast_append()
        return True

    def _leader_append_rejected(self, m: Message, pr: Progress) -> None:
        next_probe = m.reject_hint
        if m.log_term > 0:
            # Skip every entry of ours whose term the follower cannot have at the hint.
            next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decrease_to(m.index, next_probe):
            self._log(f"append to {m.frm} rejected at {m.index}: probing from {pr.next}")
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            self._send_append(m.frm)

    def _leader_append_accepted(self, m: Message, pr: Progress) -> None:
        was_paused = pr.is_paused()
        updated = pr.maybe_update(m.index)
        # A probe answered at exactly our match also proves where the follower's log ends.
        if not updated and not (pr.match == m.index and pr.state is ProgressState.PROBE):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and (
            pr.match >= pr.pending_snapshot or pr.match + 1 >= self.log.first_index()
        ):
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        # Keep the stream full while the window allows.
        while self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._log(f"{m.frm} caught up: sending TimeoutNow")
            self._send(MK.TIMEOUT_NOW, to=m.frm)

    def _leader_transfer(self, target: int) -> None:
        if target == self.id or target not in self.progress:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == target:
                return
            self._log(f"abandoned transfer to {self.lead_transferee} for {target}")
        self.lead_transferee = target
        # The transfer must finish within an election timeout (§3.10), counted from here.
        self.election_elapsed_ticks = 0
        self._log(f"transferring leadership to {target}")
        if self.progress[target].match == self.log.last_index():
            self._send(MK.TIMEOUT_NOW, to=target)
        else:
            self._send_append(target)

    # ---- replication --------------------------------------------------------------------

    def _append_entries(self, entries: Sequence[Entry]) -> None:
        last = self.log.last_index()
        self.log.append(
            [Entry(self.term, last + i + 1, e.kind, e.data) for i, e in enumerate(entries)]
        )
        if self.config.leader_persists_async:
            return  # counted when `persisted` says the entries are durable
        self.progress[self.id].maybe_update(self.log.last_index())
        # A single voter commits on its own.
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        match = {node: pr.match for node, pr in self.progress.items()}
        index = quorum.committed_index(self.voters, match)
        had_term_commit = self.log.term(self.log.committed) == self.term
        if not self.log.maybe_commit(index, self.term):
            return False
        if not had_term_commit and self._deferred_reads:
            deferred, self._deferred_reads = self._deferred_reads, []
            for m in deferred:
                self._leader_read_index(m)
        return True

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            return self._send_snapshot(to, pr)
        entries: tuple[Entry, ...] = ()
        if pr.next <= self.log.last_index():
            entries = self.log.entries_from(
                pr.next, self.config.max_msg_entries, self.config.max_msg_bytes
            )
        if not entries and not send_if_empty:
            return False
        if pr.state is ProgressState.REPLICATE and self._coalesce_append(
            to, prev_index, prev_term, entries
        ):
            return True
        self._send(
            MK.APP,
            to=to,
            index=prev_index,
            log_term=prev_term,
            entries=entries,
            commit=self.log.committed,
        )
        pr.sent_entries(len(entries), entries[-1].index if entries else prev_index)
        return True

    def _coalesce_append(
        self, to: int, prev_index: int, prev_term: int, entries: tuple[Entry, ...]
    ) -> bool:
        """Fold an append into one to the same follower that waits in this Ready, when that
        loses nothing (under load half of a leader's appends only carried a new commit index,
        each costing a message, a decode, a step and an answer on both sides):

        - a commit-only append (no entries) raises the commit index of the waiting one
          instead of being sent (True: nothing more to send). A follower takes
          min(commit, its last new entry), so a higher commit on an earlier append is what
          the later one would have told it;
        - an append with entries replaces a waiting commit-only one that checks the same
          previous entry (the same consistency check, and a commit index at least as new).

        Only the newest message to `to` is looked at, so the order of what the follower
        receives is kept, and only messages no Ready has handed out yet."""
        i = self._newest_waiting(to)
        if i is None:
            return False
        waiting = self.msgs[i]
        if waiting.kind is not MK.APP or waiting.term != self.term:
            return False
        if not entries:
            if waiting.commit != self.log.committed:
                self.msgs[i] = dataclasses.replace(waiting, commit=self.log.committed)
            return True
        if not waiting.entries and (waiting.index, waiting.log_term) == (prev_index, prev_term):
            del self.msgs[i]
        return False

    def _newest_waiting(self, to: int) -> int | None:
        """Where in `msgs` the newest message to `to` is, among those no `ready()` has handed
        out yet (the driver owns those); None if there is none."""
        msgs = self.msgs
        for i in range(len(msgs) - 1, self._msgs_handed_out - 1, -1):
            if msgs[i].to == to:
                return i
        return None

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down: do not ship a snapshot into the void
        snapshot = self.log.snapshot
        self._log(f"sending snapshot at {snapshot.meta.index} to {to} (next {pr.next})")
        pr.become_snapshot(snapshot.meta.index)
        self._send(MK.SNAP, to=to, snapshot=snapshot)
        return True

    def _bcast_append(self) -> None:
        for node in sorted(self.progress):
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self) -> None:
        # Carry the newest pending read so that a lost heartbeat round is retried.
        context = self._read_queue[-1] if self._read_queue else b""
        for node in sorted(self.progress):
            if node == self.id:
                continue
            commit = min(self.progress[node].match, self.log.committed)
            self._send(MK.HEARTBEAT, to=node, commit=commit, context=context)

    def _accept_append(self, to: int, index: int) -> None:
        """Answer an accepted append: our log matches the leader's up to `index`. An
        acceptance still waiting in this Ready for the same leader and term, at or below
        `index`, says less than this one (matching up to `index` includes it), so this one
        takes its place: a follower stepping several appends between two Readies answers
        once (the leader frees its in-flight appends up to the index it is told)."""
        i = self._newest_waiting(to)
        if i is not None:
            waiting = self.msgs[i]
            if (
                waiting.kind is MK.APP_RESP
                and not waiting.reject
                and waiting.term == self.term
                and waiting.index <= index
            ):
                del self.msgs[i]
        self._send(MK.APP_RESP, to=to, index=index)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._accept_append(m.frm, self.log.committed)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._accept_append(m.frm, last_new)
            return
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._log(f"rejected append at {m.log_term}/{m.index}: hint {hint_term}/{hint_index}")
        self._send(
            MK.APP_RESP,
            to=m.frm,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(MK.HEARTBEAT_RESP, to=m.frm, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        check(m.snapshot is not None, "MsgSnap without a snapshot")
        snapshot = m.snapshot
        assert snapshot is not None  # for mypy; checked above
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            pass  # nothing new in it
        elif self.log.match_term(meta.index, meta.term):
            # Our log already has it: just learn that it is committed.
            self.log.commit_to(meta.index)
        else:
            self._log(f"restoring snapshot at {meta.term}/{meta.index}")
            self.log.restore(snapshot)
            self.voters = set(meta.voters)
            self._send(MK.APP_RESP, to=m.frm, index=self.log.last_index())
            return
        self._send(MK.APP_RESP, to=m.frm, index=self.log.committed)

    # ---- membership ---------------------------------------------------------------------

    def _apply_conf_change(self, change: ConfChange) -> None:
        node = change.node_id
        if change.kind is ConfChangeKind.ADD_VOTER:
            self.voters.add(node)
            if self.role is Role.LEADER and node not in self.progress:
                pr = Progress(self.log.last_index() + 1, self.config.max_inflight_msgs)
                # Active until proven otherwise, or check-quorum could count it as down
                # before it ever heard from us.
                pr.recent_active = True
                self.progress[node] = pr
        else:
            self.voters.discard(node)
            self.progress.pop(node, None)
            if node == self.lead_transferee:
                self.lead_transferee = NONE
        self._log(f"applied {change.kind.value} {node}: voters {sorted(self.voters)}")
        if self.role is not Role.LEADER:
            return
        if self.id not in self.voters:
            self._log("stepped down: removed from the configuration")
            self._become_follower(self.term, NONE)
            return
        # A smaller quorum may commit more; a new member needs the log.
        if self._maybe_commit():
            self._bcast_append()
        elif change.kind is ConfChangeKind.ADD_VOTER:
            self._send_append(node)

    # ---- linearizable reads -------------------------------------------------------------

    def _leader_read_index(self, m: Message) -> None:
        if self.voters == {self.id}:
            self._release_read(_ReadRequest(self.log.committed, m.frm, set()), m.context)
            return
        if self.log.term(self.log.committed) != self.term:
            # Thesis §6.4: until an entry of our term commits, our commit index may be
            # behind the last leader's: answer after our no-op commits.
            self._log(f"deferred read {m.context!r}: no entry of term {self.term} committed yet")
            self._deferred_reads.append(m)
            return
        if m.context in self._reads:
            return
        self._reads[m.context] = _ReadRequest(self.log.committed, m.frm, {self.id})
        self._read_queue.append(m.context)
        self._bcast_heartbeat()

    def _read_acked(self, context: bytes, frm: int) -> None:
        request = self._reads.get(context)
        if request is None:
            return
        request.acks.add(frm)
        if not quorum.has_quorum(self.voters, request.acks):
            return
        # Leadership confirmed now confirms every earlier read too.
        position = self._read_queue.index(context)
        released, self._read_queue = (
            self._read_queue[: position + 1],
            self._read_queue[position + 1 :],
        )
        for ctx in released:
            self._release_read(self._reads.pop(ctx), ctx)

    def _release_read(self, request: _ReadRequest, context: bytes) -> None:
        if request.frm in (NONE, self.id):
            self.read_states.append(ReadState(request.index, context))
        else:
            self._send(MK.READ_INDEX_RESP, to=request.frm, index=request.index, context=context)

    # ---- plumbing -----------------------------------------------------------------------

    def _send(
        self,
        kind: MessageKind,
        to: int,
        *,
        term: int | None = None,
        frm: int = NONE,
        log_term: int = 0,
        index: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        snapshot: Snapshot | None = None,
        context: bytes = b"",
    ) -> None:
        if term is None:
            # Forwarded local inputs carry no term: the leader handles them as its own.
            forwarded = kind in (MK.PROPOSE, MK.READ_INDEX, MK.TRANSFER_LEADER)
            term = 0 if forwarded else self.term
        elif kind not in (MK.VOTE, MK.VOTE_RESP, MK.PRE_VOTE, MK.PRE_VOTE_RESP):
            check(False, f"{kind.value} is always sent in our term")
        self.msgs.append(
            Message(
                kind,
                to=to,
                frm=frm or self.id,
                term=term,
                log_term=log_term,
                index=index,
                entries=entries,
                commit=commit,
                reject=reject,
                reject_hint=reject_hint,
                snapshot=snapshot,
                context=context,
            )
        )

    def _log(self, text: str) -> None:
        if self._trace is not None:
            self._trace(f"{self.id} {text}")


_Step = Callable[[RaftNode, Message], bool]

_FOLLOWER_STEPS: dict[MessageKind, _Step] = {
    MK.PROPOSE: RaftNode._forward_proposal,
    MK.APP: RaftNode._follow_append,
    MK.HEARTBEAT: RaftNode._follow_heartbeat,
    MK.SNAP: RaftNode._follow_snapshot,
    MK.TRANSFER_LEADER: RaftNode._forward_transfer,
    MK.TIMEOUT_NOW: RaftNode._timeout_now,
    MK.READ_INDEX: RaftNode._forward_read_index,
    MK.READ_INDEX_RESP: RaftNode._read_index_answered,
}

# Pre-candidates and candidates alike.
_CANDIDATE_STEPS: dict[MessageKind, _Step] = {
    MK.PROPOSE: RaftNode._drop_proposal,
    MK.APP: RaftNode._yield_to_leader,
    MK.HEARTBEAT: RaftNode._yield_to_leader,
    MK.SNAP: RaftNode._yield_to_leader,
    MK.VOTE_RESP: RaftNode._vote_response,
    MK.PRE_VOTE_RESP: RaftNode._vote_response,
}

_LEADER_STEPS: dict[MessageKind, _Step] = {
    MK.BEAT: RaftNode._leader_beat,
    MK.PROPOSE: RaftNode._leader_propose,
    MK.READ_INDEX: RaftNode._leader_read_index_step,
    MK.TRANSFER_LEADER: RaftNode._leader_transfer_step,
    MK.APP_RESP: RaftNode._leader_append_response,
    MK.HEARTBEAT_RESP: RaftNode._leader_heartbeat_response,
}
