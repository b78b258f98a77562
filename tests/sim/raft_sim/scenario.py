"""One seeded run: a short chaotic phase, then a healing phase that must converge.

The seed picks the cluster size (3 or 5), the fault rates and the Raft options, then drives
`ROUNDS` rounds of random proposals (mostly to the leader, some forwarded by followers),
ReadIndex reads at any member, conf changes, leadership transfers, crashes (leaders more
often, some right after sending), restarts, torn writes and partitions (which heal, reform,
and are sometimes one-way). Invariants are checked after every
event (`invariants.Checker`). Finally every crashed member restarts, partitions heal and the
network stops losing messages: within `HEAL_ROUNDS` a leader must have committed an entry of
its term and every voter must have applied it, and every acknowledged proposal must be in
that history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dockyard.raft.messages import ConfChange, ConfChangeKind, Role
from tests.sim.raft_sim.cluster import Disk, World, WorldParams
from tests.sim.raft_sim.invariants import InvariantViolation

ROUNDS = 120
# Generous: without pre-vote, a member whose log is behind keeps starting elections it
# cannot win, and each one restarts the others' timers (thesis §9.6); convergence then
# takes a lucky draw of timeouts. Seeds seen needing ~800 rounds.
HEAL_ROUNDS = 1000


def replay_command(seed: int) -> str:
    return f"DOCKYARD_RAFT_SEED={seed} pytest tests/sim/test_raft_sim.py -k replay"


@dataclass(frozen=True)
class SeedResult:
    seed: int
    members: int
    rounds: int
    leaders: int
    committed: int
    acked: int


class SimFailure(AssertionError):
    pass


def params_for(rng: random.Random) -> WorldParams:
    calm = rng.random() < 0.3
    return WorldParams(
        members=rng.choice((3, 3, 5)),
        drop_p=0.0 if calm else rng.choice((0.0, 0.05, 0.2)),
        duplicate_p=0.0 if calm else rng.choice((0.0, 0.05)),
        max_delay_rounds=rng.choice((1, 2, 4)),
        crash_p=0.0 if calm else rng.choice((0.0, 0.01, 0.03, 0.06)),
        restart_p=0.1,
        partition_p=0.0 if calm else rng.choice((0.0, 0.02, 0.05)),
        heal_p=0.05,
        propose_p=rng.choice((0.2, 0.5)),
        read_p=rng.choice((0.0, 0.05, 0.2)),
        conf_change_p=rng.choice((0.0, 0.02, 0.05)),
        transfer_p=rng.choice((0.0, 0.01)),
        compact_every_entries=rng.choice((3, 10, 1000)),
        torn_p=0.0 if calm else rng.choice((0.0, 0.002)),
        crash_after_send_p=0.0 if calm else rng.choice((0.0, 0.005, 0.02)),
        max_msg_entries=rng.choice((1, 4)),
        max_inflight_msgs=rng.choice((1, 3)),
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        # Drawn last, so the parameters above stay what they were for every seed.
        unreachable_p=rng.choice((0.0, 0.0, 0.05, 0.2)),
        leader_persists_async=rng.random() < 0.5,
        sync_p=rng.choice((0.1, 0.5, 1.0)),
    )


def run_seed(seed: int, trace: bool = False) -> SeedResult:
    rng = random.Random(seed)
    params = params_for(rng)
    world = World(seed, params, trace=trace)
    try:
        for _ in range(ROUNDS):
            _chaos(world)
            world.run_round()
        _heal(world)
    except SimFailure:
        raise
    except InvariantViolation as error:
        raise SimFailure(_report(world, f"invariant violated: {error}")) from None
    except AssertionError as error:  # includes the core's own invariant checks
        raise SimFailure(_report(world, f"{type(error).__name__}: {error}")) from error
    return SeedResult(
        seed,
        params.members,
        world.round,
        len(world.checker.leader_by_term),
        world.checker.max_committed,
        len(world.checker.acked),
    )


def _report(world: World, what: str) -> str:
    lines = [
        f"raft sim seed {world.seed} failed at round {world.round}: {what}",
        f"params: {world.params}",
        f"replay: {replay_command(world.seed)}",
        "  (add DOCKYARD_RAFT_TRACE=1 to print the trace)",
    ]
    if world.log_lines:
        lines.append("trace (last 200 lines):")
        lines.extend(world.log_lines[-200:])
    return "\n".join(lines)


def _chaos(world: World) -> None:
    rng = world.rng
    p = world.params
    nodes = world.nodes
    # Crashes and restarts.
    if rng.random() < p.crash_p:
        live = world.live()
        leader = world.leader()
        if live:
            # Leaders crash more often than their share: that is where the hard cases are.
            victim = leader if leader is not None and rng.random() < 0.5 else rng.choice(live)
            world.trace(f"{victim.id} crashed")
            victim.crash()
    if rng.random() < p.restart_p:
        down = [n for n in nodes.values() if n.raft is None and not n.removed]
        if down:
            node = rng.choice(down)
            world.trace(f"{node.id} restarted")
            node.start()
    # Partitions that form, heal and reform.
    if rng.random() < p.partition_p:
        ids = sorted(nodes)
        side = set(rng.sample(ids, rng.randrange(1, len(ids))))
        world.blocked = set()
        for a in ids:
            for b in ids:
                # Sometimes only one direction is cut (asymmetric partition).
                if (a in side) != (b in side) and (rng.random() < 0.8 or a in side):
                    world.blocked.add((a, b))
        world.trace(f"partition {sorted(side)} | {sorted(set(ids) - side)}")
    elif world.blocked and rng.random() < p.heal_p:
        world.blocked = set()
        world.trace("partition healed")
    # A follower's transport finds its leader unreachable: crashed or cut off from it, and
    # now and then a false alarm while the leader is fine.
    if p.unreachable_p and rng.random() < p.unreachable_p:
        followers = [n for n in world.live() if n.raft is not None and n.raft.lead != 0]
        if followers:
            follower = rng.choice(followers)
            assert follower.raft is not None
            lead = follower.raft.lead
            lost = lead not in {n.id for n in world.live()} or (lead, follower.id) in world.blocked
            if lost or rng.random() < 0.2:
                world.trace(f"{follower.id} finds leader {lead} unreachable")
                follower.raft.leader_unreachable(lead)
    # Linearizable reads, at any member (followers forward them to their leader).
    if rng.random() < p.read_p:
        live = world.live()
        if live:
            reader = rng.choice(live)
            world.reads += 1
            context = b"r%d" % world.reads
            world.checker.on_read_requested(context)
            assert reader.raft is not None
            reader.raft.read_index(context)
            world.trace(f"{reader.id} read-index {context.decode()}")
    leader = world.leader()
    if leader is None or leader.raft is None:
        return
    raft = leader.raft
    # Client proposals: mostly to the leader, some to any member (forwarded).
    if rng.random() < p.propose_p:
        world.proposals += 1
        data = b"p%d" % world.proposals
        target = leader
        if rng.random() < 0.2:
            target = rng.choice(world.live())
        assert target.raft is not None
        if target.raft.propose(data):
            world.trace(f"{target.id} proposed {data.decode()}")
    if rng.random() < p.conf_change_p:
        voters = sorted(raft.voters)
        if rng.random() < 0.5 and len(voters) > 3:
            removed = rng.choice(voters)
            if raft.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_VOTER, removed)):
                world.trace(f"{leader.id} proposed removing {removed}")
        elif len(voters) < p.members + 1:
            new_id = world.next_id
            if raft.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, new_id)):
                world.next_id += 1
                world.trace(f"{leader.id} proposed adding {new_id}")
                world.add_node(new_id, Disk())
    if rng.random() < p.transfer_p:
        others = sorted(raft.voters - {leader.id})
        if others:
            transferee = rng.choice(others)
            world.trace(f"{leader.id} transfers leadership to {transferee}")
            raft.transfer_leadership(transferee)
    world.check(leader)


def _heal(world: World) -> None:
    world.blocked = set()
    world.lossless = True
    world.trace("healing: restart all, no loss, no partitions")
    for node in world.nodes.values():
        if node.raft is None and not node.removed:
            node.start()
    for _ in range(HEAL_ROUNDS):
        world.run_round()
        if _converged(world):
            break
    else:
        states = []
        for node in world.nodes.values():
            raft = node.raft
            if raft is None:
                states.append(f"{node.id}: down (removed={node.removed})")
            else:
                states.append(
                    f"{node.id}: {raft.role.value} term {raft.term} lead {raft.lead} "
                    f"commit {raft.log.committed} applied {node.applied_index} "
                    f"voters {sorted(raft.voters)}"
                )
        raise SimFailure(_report(world, "no convergence after healing:\n  " + "\n  ".join(states)))
    checker = world.checker
    leader = world.leader()
    assert leader is not None and leader.raft is not None
    for data, index in checker.acked.items():
        if index > leader.applied_index:
            raise SimFailure(_report(world, f"acknowledged {data!r} at {index} lost"))


def _converged(world: World) -> bool:
    leader = world.leader()
    if leader is None or leader.raft is None:
        return False
    raft = leader.raft
    log = raft.log
    if log.term(log.committed) != raft.term or leader.applied_index != log.committed:
        return False
    for node_id in raft.voters:
        node = world.nodes.get(node_id)
        if node is None or node.raft is None or node.applied_index != log.committed:
            return False
        if node.raft.role is not Role.LEADER and node.raft.lead != leader.id:
            return False
    return True
