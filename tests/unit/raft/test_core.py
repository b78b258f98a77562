"""RaftNode behaviours the scripts do not spell out: the Ready contract, single voters,
restarts from persisted state, forwarding, snapshot retries."""

from __future__ import annotations

import random

import pytest

from dockyard.raft.core import RaftConfig, RaftNode
from dockyard.raft.log import RaftInvariantError
from dockyard.raft.messages import (
    Entry,
    HardState,
    Message,
    MessageKind,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from dockyard.raft.progress import ProgressState

pytestmark = pytest.mark.unit
MK = MessageKind


def bootstrap(voters: tuple[int, ...]) -> Snapshot:
    return Snapshot(SnapshotMeta(1, 1, voters))


def new_node(node_id: int, voters: tuple[int, ...] = (1, 2, 3), **kw: int | bool) -> RaftNode:
    config = RaftConfig(node_id=node_id, **kw)  # type: ignore[arg-type]
    return RaftNode(config, random.Random(node_id), bootstrap(voters), HardState(1, 0, 1))


class Net:
    """Nodes wired together, running the Ready loop until quiet (no faults)."""

    def __init__(self, *nodes: RaftNode) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.applied: dict[int, list[Entry]] = {n.id: [] for n in nodes}
        self.down: set[int] = set()

    def settle(self) -> None:
        for _ in range(100):
            busy = False
            for node in self.nodes.values():
                if node.id in self.down or not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                self.applied[node.id].extend(rd.committed_entries)
                node.advance(rd)
                for m in rd.messages:
                    if m.to not in self.down:
                        self.nodes[m.to].step(m)
            if not busy:
                return
        raise AssertionError("did not settle")

    def leader(self) -> RaftNode:
        (leader,) = [n for n in self.nodes.values() if n.role is Role.LEADER]
        return leader


def test_config_is_validated() -> None:
    with pytest.raises(RaftInvariantError):
        RaftConfig(node_id=0)
    with pytest.raises(RaftInvariantError):
        RaftConfig(node_id=1, election_timeout_ticks=3, heartbeat_ticks=3)


def test_a_single_voter_leads_commits_and_reads_alone() -> None:
    node = new_node(1, voters=(1,))
    node.campaign()
    assert node.role is Role.LEADER
    assert node.propose(b"a")
    node.read_index(b"r")
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"", b"a"]
    assert [(r.index, r.context) for r in rd.read_states] == [(3, b"r")]
    assert rd.hard_state == HardState(2, 1, 3)
    node.advance(rd)
    assert not node.has_ready()


def test_messages_produced_after_ready_survive_advance() -> None:
    node = new_node(1)
    node.campaign()
    rd = node.ready()
    node.tick()  # more output between ready() and advance()
    node.step(Message(MK.PRE_VOTE_RESP, to=1, frm=2, term=2))
    later = list(node.msgs[len(rd.messages) :])
    node.advance(rd)
    assert node.msgs == later


def _settled_cluster() -> Net:
    net = Net(new_node(1), new_node(2), new_node(3))
    net.nodes[1].campaign()
    net.settle()
    return net


def _appends_to(node: RaftNode, to: int, msgs: list[Message] | None = None) -> list[Message]:
    return [m for m in (node.msgs if msgs is None else msgs) if m.to == to and m.kind is MK.APP]


def test_a_commit_only_append_raises_the_commit_of_the_one_waiting() -> None:
    net = _settled_cluster()
    leader = net.nodes[1]
    assert leader.propose(b"a")
    last = leader.log.last_index()
    assert [len(m.entries) for m in _appends_to(leader, 2)] == [1]
    # Follower 2's answer commits the entry before the leader's Ready went out: the commit
    # index rides on the appends already waiting instead of two more messages.
    leader.step(Message(MK.APP_RESP, to=1, frm=2, term=leader.term, index=last))
    assert leader.log.committed == last
    for to in (2, 3):
        (waiting,) = _appends_to(leader, to)
        assert waiting.entries[-1].index == last and waiting.commit == last
    net.settle()
    assert [e.data for e in net.applied[3]][-1] == b"a"
    assert net.nodes[3].log.committed == last


def test_an_append_with_entries_replaces_a_waiting_commit_only_one() -> None:
    net = _settled_cluster()
    leader = net.nodes[1]
    assert leader.propose(b"a")
    last = leader.log.last_index()
    net.settle()
    # A heartbeat answer with nothing new: no commit-only append is due, so propose twice
    # and acknowledge the first to get one waiting, then propose again.
    assert leader.propose(b"b")
    rd = leader.ready()
    leader.advance(rd)
    leader.step(Message(MK.APP_RESP, to=1, frm=2, term=leader.term, index=last + 1))
    leader.step(Message(MK.APP_RESP, to=1, frm=3, term=leader.term, index=last + 1))
    assert [len(m.entries) for m in _appends_to(leader, 2)] == [0]  # commit only
    assert leader.propose(b"c")
    (waiting,) = _appends_to(leader, 2)
    assert [e.data for e in waiting.entries] == [b"c"]
    assert waiting.commit == last + 1 and waiting.index == last + 1


def test_messages_handed_out_are_never_folded_into() -> None:
    net = _settled_cluster()
    leader = net.nodes[1]
    assert leader.propose(b"a")
    last = leader.log.last_index()
    rd = leader.ready()  # the appends with the entry are the driver's now
    leader.step(Message(MK.APP_RESP, to=1, frm=2, term=leader.term, index=last))
    assert leader.log.committed == last
    handed_out = _appends_to(leader, 2, list(rd.messages))
    assert [m.commit for m in handed_out] == [last - 1]
    leader.advance(rd)
    (commit_only,) = _appends_to(leader, 2)
    assert commit_only.entries == () and commit_only.commit == last


def test_a_follower_answers_several_appends_of_one_ready_once() -> None:
    net = _settled_cluster()
    leader, follower = net.nodes[1], net.nodes[2]
    assert leader.propose(b"a")
    first = leader.ready()
    leader.advance(first)
    assert leader.propose(b"b")
    second = leader.ready()
    leader.advance(second)
    for rd in (first, second):
        for m in rd.messages:
            if m.to == 2:
                follower.step(m)
    answers = [m for m in follower.msgs if m.kind is MK.APP_RESP]
    assert [(m.index, m.reject) for m in answers] == [(leader.log.last_index(), False)]


def test_election_timeouts_are_randomized_within_one_timeout() -> None:
    timeouts = set()
    for seed in range(50):
        node = RaftNode(RaftConfig(1), random.Random(seed), bootstrap((1, 2, 3)))
        timeouts.add(node.randomized_election_timeout_ticks)
    assert min(timeouts) >= 10 and max(timeouts) < 20 and len(timeouts) > 5


def test_follower_forwards_proposals_and_read_requests_to_the_leader() -> None:
    net = Net(new_node(1), new_node(2), new_node(3))
    net.nodes[1].campaign()
    net.settle()
    follower = net.nodes[3]
    assert follower.propose(b"via-3")
    follower.read_index(b"r3")
    net.settle()
    assert [e.data for e in net.applied[1]][-1] == b"via-3"
    rd = follower.ready()  # read states were drained by settle(); ask again
    assert rd.read_states == ()
    assert follower.log.committed == net.nodes[1].log.committed


def test_followers_without_a_leader_drop_proposals() -> None:
    node = new_node(1)
    assert not node.propose(b"x")


def test_restart_rebuilds_from_persisted_state_and_reapplies() -> None:
    net = Net(new_node(1), new_node(2), new_node(3))
    net.nodes[1].campaign()
    net.settle()
    net.nodes[1].propose(b"a")
    net.settle()
    old = net.nodes[2]
    restarted = RaftNode(
        old.config,
        random.Random(9),
        old.log.snapshot,
        old.hard_state(),
        old.log.all_entries(),
    )
    assert (restarted.term, restarted.vote, restarted.log.committed) == (2, 1, 3)
    assert restarted.role is Role.FOLLOWER and restarted.lead == 0
    rd = restarted.ready()
    # Applied state is the driver's: it starts over from the snapshot.
    assert [e.index for e in rd.committed_entries] == [2, 3]


def test_a_lost_snapshot_is_retried_after_an_election_timeout() -> None:
    net = Net(new_node(1), new_node(2), new_node(3))
    net.nodes[1].campaign()
    net.settle()
    net.down.add(3)
    leader = net.nodes[1]
    for i in range(3):
        leader.propose(b"%d" % i)
    net.settle()
    leader.compact(Snapshot(SnapshotMeta(4, 2, (1, 2, 3)), b"state@4"))
    net.down.discard(3)
    snapshots_sent = 0

    def exchange() -> None:
        # One heartbeat and the conversation it starts; every MsgSnap is lost.
        nonlocal snapshots_sent
        leader.tick()
        for _ in range(10):
            for node in net.nodes.values():
                rd = node.ready()
                node.advance(rd)
                for m in rd.messages:
                    if m.kind is MK.SNAP:
                        snapshots_sent += 1
                        continue
                    net.nodes[m.to].step(m)

    exchange()
    pr = leader.progress[3]
    assert (pr.state, snapshots_sent) == (ProgressState.SNAPSHOT, 1)
    for _ in range(leader.config.election_timeout_ticks - 2):
        exchange()
    assert (pr.state, snapshots_sent) == (ProgressState.SNAPSHOT, 1)  # waits, no resend
    exchange()
    exchange()
    assert snapshots_sent == 2  # given up on the first: probed again, sent again


def test_report_snapshot_failure_returns_to_probe() -> None:
    leader = new_node(1)
    leader.campaign()
    for m in [Message(MK.PRE_VOTE_RESP, to=1, frm=2, term=2, reject=False)]:
        leader.step(m)
    leader.step(Message(MK.VOTE_RESP, to=1, frm=2, term=2))
    assert leader.role is Role.LEADER
    leader.progress[3].become_snapshot(7)
    leader.report_snapshot(3, ok=False)
    assert leader.progress[3].state is ProgressState.PROBE


def test_ready_is_empty_when_nothing_happened() -> None:
    node = new_node(1)
    node.advance(node.ready())
    assert not node.has_ready()
    assert Ready().is_empty()


def tick_until(net: Net, ticks: int, nodes: tuple[int, ...]) -> None:
    for _ in range(ticks):
        for node_id in nodes:
            net.nodes[node_id].tick()
        net.settle()


def test_followers_that_lose_a_dead_leader_elect_within_a_few_ticks() -> None:
    from dockyard.raft.core import FAST_ELECTION_MAX_TICKS

    net = Net(
        new_node(1, pre_vote=True, check_quorum=True),
        *(new_node(i, pre_vote=True, check_quorum=True) for i in (2, 3)),
    )
    net.nodes[1].campaign()
    net.settle()
    assert net.leader().id == 1
    net.down.add(1)  # killed: the transports of 2 and 3 find its port closed
    for node_id in (2, 3):
        net.nodes[node_id].leader_unreachable(1)
    # Well before an election timeout (10 ticks): a new leader among 2 and 3.
    tick_until(net, FAST_ELECTION_MAX_TICKS + 1, (2, 3))
    leaders = [n.id for n in net.nodes.values() if n.id != 1 and n.role is Role.LEADER]
    assert len(leaders) == 1 and net.nodes[leaders[0]].term == 3


def test_a_leader_alive_after_all_keeps_its_followers() -> None:
    nodes = [new_node(i, pre_vote=True, check_quorum=True) for i in (1, 2, 3)]
    net = Net(*nodes)
    net.nodes[1].campaign()
    net.settle()
    # A false alarm on 3 alone: its pre-vote meets 2's lease, and the leader's heartbeats
    # (every tick here) bring it back; nobody's term moves.
    net.nodes[3].leader_unreachable(1)
    assert net.nodes[3].lead == 0
    tick_until(net, 25, (1, 2, 3))
    assert net.leader().id == 1
    assert {n.term for n in net.nodes.values()} == {2}
    assert net.nodes[3].lead == 1


def test_leader_unreachable_is_ignored_unless_it_names_the_leader() -> None:
    net = Net(new_node(1), new_node(2), new_node(3))
    net.nodes[1].campaign()
    net.settle()
    elapsed = net.nodes[2].election_elapsed_ticks
    net.nodes[2].leader_unreachable(3)  # not its leader
    net.nodes[1].leader_unreachable(1)  # the leader itself
    assert net.nodes[2].lead == 1 and net.nodes[2].election_elapsed_ticks == elapsed
    assert net.leader().id == 1


def test_a_follower_that_lost_the_leader_first_retries_soon_after_a_lease_refusal() -> None:
    from dockyard.raft.core import FAST_ELECTION_MAX_TICKS

    net = Net(*(new_node(i, pre_vote=True, check_quorum=True) for i in (1, 2, 3)))
    net.nodes[1].campaign()
    net.settle()
    net.down.add(1)
    net.nodes[2].leader_unreachable(1)  # 3's probe has not failed yet: it holds the lease
    tick_until(net, FAST_ELECTION_MAX_TICKS, (2, 3))
    assert all(net.nodes[i].role is not Role.LEADER for i in (2, 3))
    assert net.nodes[2].term == 2  # its pre-vote was refused: no term was burnt
    net.nodes[3].leader_unreachable(1)
    # Both retry within a few ticks, far inside an election timeout (10 ticks).
    tick_until(net, 2 * FAST_ELECTION_MAX_TICKS, (2, 3))
    leaders = [i for i in (2, 3) if net.nodes[i].role is Role.LEADER]
    assert len(leaders) == 1
    assert not net.nodes[leaders[0]].leader_lost
