"""Interaction tests for `dockyard.raft`: text scripts with golden output.

Modelled on etcd's raft `interaction_test.go` + `testdata/*.txt` (the datadriven format): a
script is a series of blocks, each a command line, a `----` line, then the expected output up
to a blank line; lines starting with `#` before a command are comments. The runner plays
every command against an in-memory cluster and compares the output; with
`DOCKYARD_RAFT_REWRITE=1` it writes the actual output back into the script instead, so a
change in behaviour shows up as a diff to review.

Commands (ids are node ids; `k=v` arguments are optional):
  add-nodes N [voters=1,2,3] [index=1] [pre-vote=true] [check-quorum=true]
              [election=10] [heartbeat=1] [max-msg-entries=64] [max-inflight=64]
              [jitter=0]  (randomized election timeout = election + jitter ticks)
              [async-leader=false]  (`leader_persists_async`: a leader's Ready that changes
              no term or vote is written but not synced until `sync ID`)
      start N nodes from a bootstrap snapshot at `index` (term 1) naming `voters` (default
      the new nodes); `voters=` (empty) starts a member that joins a running cluster
  campaign ID | tick-election ID | tick-heartbeat ID | tick ID [n]
  propose ID DATA | propose-conf-change ID add=X|remove=X
  transfer-leadership from=ID to=ID | read-index ID CTX
  process-ready ID... | deliver-msgs [drop] ID... | stabilize [ID...]
  partition IDS / IDS   (messages across are dropped when sent and when delivered) | heal
  compact ID INDEX       (the driver snapshots its applied state at INDEX and compacts)
  crash ID | restart ID  (restart from what process-ready persisted and synced)
  sync ID                (fsync a leader's unsynced writes, then `persisted`)
  raft-state | raft-log ID | status ID (leader progress) | applied ID | log-level none|info
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.raft.core import RaftConfig, RaftNode
from dockyard.raft.messages import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

REWRITE = bool(os.environ.get("DOCKYARD_RAFT_REWRITE"))


class FixedRng:
    """Randomized election timeouts pinned (to the minimum plus `jitter_ticks`): scripts
    must be exact."""

    def __init__(self, jitter_ticks: int = 0) -> None:
        self.jitter_ticks = jitter_ticks

    def randrange(self, start: int, stop: int, /) -> int:
        return min(start + self.jitter_ticks, stop - 1)


# ---- formatting --------------------------------------------------------------------------


def fmt_entry(e: Entry) -> str:
    if e.kind is EntryKind.CONF_CHANGE:
        change = ConfChange.decode(e.data)
        return f"{e.term}/{e.index} conf {change.kind.value} {change.node_id}"
    return f"{e.term}/{e.index} {e.data.decode()!r}" if e.data else f"{e.term}/{e.index} noop"


def fmt_snapshot(s: Snapshot) -> str:
    voters = ",".join(map(str, s.meta.voters))
    return f"index={s.meta.index} term={s.meta.term} voters=[{voters}]"


def fmt_message(m: Message) -> str:
    parts = [f"{m.frm}->{m.to} {m.kind.value} term={m.term}"]
    k = m.kind
    if k in (MessageKind.APP, MessageKind.VOTE, MessageKind.PRE_VOTE):
        parts.append(f"log={m.log_term}/{m.index}")
    if k is MessageKind.APP:
        parts.append(f"commit={m.commit}")
    if k in (MessageKind.APP_RESP, MessageKind.READ_INDEX_RESP):
        parts.append(f"index={m.index}")
    if m.reject:
        parts.append("rejected")
        if k is MessageKind.APP_RESP:
            parts.append(f"hint={m.log_term}/{m.reject_hint}")
    if k is MessageKind.HEARTBEAT:
        parts.append(f"commit={m.commit}")
    if m.context:
        parts.append(f"ctx={m.context.decode()!r}")
    if m.snapshot is not None:
        parts.append(f"snapshot[{fmt_snapshot(m.snapshot)}]")
    if m.entries:
        parts.append("entries=[" + ", ".join(fmt_entry(e) for e in m.entries) + "]")
    return " ".join(parts)


def fmt_ready(rd: Ready) -> list[str]:
    out: list[str] = []
    if rd.soft_state is not None:
        out.append(f"SoftState: lead={rd.soft_state.leader} role={rd.soft_state.role.value}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"HardState: term={hs.term} vote={hs.vote} commit={hs.commit}")
    if rd.snapshot is not None:
        out.append(f"Snapshot: {fmt_snapshot(rd.snapshot)}")
    if rd.entries:
        out.append("Entries:")
        out.extend(f"  {fmt_entry(e)}" for e in rd.entries)
    if rd.messages:
        out.append("Messages:")
        out.extend(f"  {fmt_message(m)}" for m in rd.messages)
    if rd.committed_entries:
        out.append("CommittedEntries:")
        out.extend(f"  {fmt_entry(e)}" for e in rd.committed_entries)
    if rd.read_states:
        out.append("ReadStates:")
        out.extend(f"  index={r.index} ctx={r.context.decode()!r}" for r in rd.read_states)
    return out


# ---- the environment ---------------------------------------------------------------------


@dataclass
class Member:
    config: RaftConfig
    jitter_ticks: int
    raft: RaftNode | None
    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    # Written but not synced (async leader mode): entries and the newest hard state.
    unsynced_entries: list[Entry] = field(default_factory=list)
    unsynced_hard_state: HardState | None = None


class Env:
    def __init__(self) -> None:
        self.members: dict[int, Member] = {}
        self.inflight: list[Message] = []
        self.sides: list[set[int]] = []
        self.out: list[str] = []
        self.trace_on = True

    def _trace(self, line: str) -> None:
        if self.trace_on:
            self.out.append(f"INFO {line}")

    def node(self, node_id: int) -> RaftNode:
        raft = self.members[node_id].raft
        if raft is None:
            raise ValueError(f"node {node_id} is down")
        return raft

    def run(self, line: str) -> str:
        self.out = []
        words = shlex.split(line)
        name, args = words[0], words[1:]
        handler: Callable[[list[str]], None] | None = getattr(
            self, "cmd_" + name.replace("-", "_"), None
        )
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        handler(args)
        return "\n".join(self.out) if self.out else "ok"

    @staticmethod
    def _kwargs(args: list[str]) -> tuple[list[str], dict[str, str]]:
        plain = [a for a in args if "=" not in a]
        return plain, dict(a.split("=", 1) for a in args if "=" in a)

    # ---- commands -----------------------------------------------------------------------

    def cmd_log_level(self, args: list[str]) -> None:
        self.trace_on = args[0] != "none"

    def cmd_add_nodes(self, args: list[str]) -> None:
        plain, kw = self._kwargs(args)
        count = int(plain[0])
        first = max(self.members, default=0) + 1
        ids = list(range(first, first + count))
        voters_text = kw.get("voters")
        if voters_text is None:
            voters = tuple(ids)
        else:
            voters = tuple(int(v) for v in voters_text.split(",") if v)
        if voters:
            index = int(kw.get("index", "1"))
            snapshot = Snapshot(SnapshotMeta(index, 1, voters), b"")
            hard_state = HardState(1, 0, index)
        else:
            snapshot = Snapshot(SnapshotMeta(0, 0, ()), b"")
            hard_state = HardState()
        for node_id in ids:
            config = RaftConfig(
                node_id=node_id,
                election_timeout_ticks=int(kw.get("election", "10")),
                heartbeat_ticks=int(kw.get("heartbeat", "1")),
                max_msg_entries=int(kw.get("max-msg-entries", "64")),
                max_inflight_msgs=int(kw.get("max-inflight", "64")),
                pre_vote=kw.get("pre-vote", "true") == "true",
                check_quorum=kw.get("check-quorum", "true") == "true",
                leader_persists_async=kw.get("async-leader", "false") == "true",
            )
            member = Member(config, int(kw.get("jitter", "0")), None, hard_state, snapshot)
            self.members[node_id] = member
            self._start(node_id)
            self.out.append(f"{node_id}: started, voters {list(voters)}")

    def _start(self, node_id: int) -> None:
        m = self.members[node_id]
        m.raft = RaftNode(
            m.config,
            FixedRng(m.jitter_ticks),
            snapshot=m.snapshot,
            hard_state=m.hard_state,
            entries=list(m.entries),
            trace=self._trace,
        )
        m.applied = [f"snapshot {m.snapshot.meta.index}"] if m.snapshot.meta.index else []

    def cmd_crash(self, args: list[str]) -> None:
        node_id = int(args[0])
        member = self.members[node_id]
        member.raft = None
        member.unsynced_entries, member.unsynced_hard_state = [], None
        self.inflight = [m for m in self.inflight if m.to != node_id]
        self.out.append(f"{node_id}: crashed (unpersisted state and its inbox lost)")

    def cmd_restart(self, args: list[str]) -> None:
        node_id = int(args[0])
        self._start(node_id)
        hs = self.members[node_id].hard_state
        self.out.append(f"{node_id}: restarted at term={hs.term} vote={hs.vote} commit={hs.commit}")

    def cmd_campaign(self, args: list[str]) -> None:
        self.node(int(args[0])).campaign()

    def cmd_tick(self, args: list[str]) -> None:
        raft = self.node(int(args[0]))
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            raft.tick()

    def cmd_tick_election(self, args: list[str]) -> None:
        # A follower's own (randomized) timeout; a leader's check-quorum period.
        raft = self.node(int(args[0]))
        ticks = (
            raft.config.election_timeout_ticks
            if raft.role is Role.LEADER
            else raft.randomized_election_timeout_ticks
        )
        for _ in range(ticks):
            raft.tick()

    def cmd_tick_heartbeat(self, args: list[str]) -> None:
        raft = self.node(int(args[0]))
        for _ in range(raft.config.heartbeat_ticks):
            raft.tick()

    def cmd_propose(self, args: list[str]) -> None:
        if not self.node(int(args[0])).propose(args[1].encode()):
            self.out.append("dropped")

    def cmd_propose_conf_change(self, args: list[str]) -> None:
        plain, kw = self._kwargs(args)
        if "add" in kw:
            change = ConfChange(ConfChangeKind.ADD_VOTER, int(kw["add"]))
        else:
            change = ConfChange(ConfChangeKind.REMOVE_VOTER, int(kw["remove"]))
        if not self.node(int(plain[0])).propose_conf_change(change):
            self.out.append("dropped")

    def cmd_transfer_leadership(self, args: list[str]) -> None:
        _, kw = self._kwargs(args)
        self.node(int(kw["from"])).transfer_leadership(int(kw["to"]))

    def cmd_read_index(self, args: list[str]) -> None:
        self.node(int(args[0])).read_index(args[1].encode())

    def cmd_compact(self, args: list[str]) -> None:
        node_id, index = int(args[0]), int(args[1])
        raft = self.node(node_id)
        term = raft.log.term(index)
        assert term is not None
        snapshot = Snapshot(
            SnapshotMeta(index, term, tuple(sorted(raft.voters))), f"snap@{index}".encode()
        )
        raft.compact(snapshot)
        m = self.members[node_id]
        m.snapshot = snapshot
        m.entries = [e for e in m.entries if e.index > index]
        self.out.append(f"{node_id}: compacted to {index}; log {self._log_summary(raft)}")

    def cmd_partition(self, args: list[str]) -> None:
        text = " ".join(args)
        self.sides = [{int(x) for x in side.split()} for side in text.split("/")]
        self.out.append("partition " + " | ".join(str(sorted(s)) for s in self.sides))

    def cmd_heal(self, args: list[str]) -> None:
        self.sides = []

    def _cut(self, a: int, b: int) -> bool:
        if not self.sides:
            return False
        side_a = next((i for i, s in enumerate(self.sides) if a in s), -1)
        side_b = next((i for i, s in enumerate(self.sides) if b in s), -1)
        return side_a != side_b

    def cmd_process_ready(self, args: list[str]) -> None:
        for node_id in map(int, args):
            self._process_ready(node_id)

    def _process_ready(self, node_id: int) -> None:
        raft = self.node(node_id)
        rd = raft.ready()
        self.out.append(f"> {node_id} handling Ready")
        body = fmt_ready(rd)
        self.out.extend(f"  {line}" for line in body or ["<empty>"])
        member = self.members[node_id]
        # Persist, then send, then apply (the Ready contract), or in async leader mode write
        # without the sync.
        hs = rd.hard_state
        written = member.hard_state  # an unsynced one has the same term and vote
        deferred = (
            raft.config.leader_persists_async
            and raft.role is Role.LEADER
            and rd.snapshot is None
            and (hs is None or (hs.term, hs.vote) == (written.term, written.vote))
        )
        if deferred:
            member.unsynced_entries.extend(rd.entries)
            member.unsynced_hard_state = hs or member.unsynced_hard_state
            if rd.entries or hs is not None:
                self.out.append("  (written, not synced)")
        else:
            self._sync(member)
            self._persist(member, rd.snapshot, rd.entries, hs)
        # A partition drops messages as they leave, so healing does not resurrect them.
        cut = [m for m in rd.messages if self._cut(m.frm, m.to)]
        self.inflight.extend(m for m in rd.messages if not self._cut(m.frm, m.to))
        if cut:
            self.out.append(
                "  (cut by the partition: " + ", ".join(f"{m.frm}->{m.to}" for m in cut) + ")"
            )
        if rd.snapshot is not None:
            member.applied = [f"snapshot {rd.snapshot.meta.index}"]
        member.applied.extend(fmt_entry(e) for e in rd.committed_entries)
        raft.advance(rd)
        if not deferred and rd.entries:
            raft.persisted(rd.entries[-1].index, rd.entries[-1].term)

    @staticmethod
    def _persist(
        member: Member,
        snapshot: Snapshot | None,
        entries: tuple[Entry, ...] | list[Entry],
        hard_state: HardState | None,
    ) -> None:
        if snapshot is not None:
            member.snapshot = snapshot
            member.entries = []
        if entries:
            first = entries[0].index
            member.entries = [e for e in member.entries if e.index < first] + list(entries)
        if hard_state is not None:
            member.hard_state = hard_state

    def _sync(self, member: Member) -> None:
        """Make the unsynced writes durable; the leader learns it through `persisted`."""
        if not member.unsynced_entries and member.unsynced_hard_state is None:
            return
        self._persist(member, None, member.unsynced_entries, member.unsynced_hard_state)
        last = member.unsynced_entries[-1] if member.unsynced_entries else None
        member.unsynced_entries, member.unsynced_hard_state = [], None
        if last is not None and member.raft is not None:
            member.raft.persisted(last.index, last.term)

    def cmd_sync(self, args: list[str]) -> None:
        member = self.members[int(args[0])]
        last = member.unsynced_entries[-1] if member.unsynced_entries else None
        self._sync(member)
        self.out.append(f"synced up to {last.term}/{last.index}" if last else "nothing to sync")

    def cmd_deliver_msgs(self, args: list[str]) -> None:
        drop = "drop" in args
        ids = {int(a) for a in args if a != "drop"}
        self._deliver(ids, drop)

    def _deliver(self, ids: set[int], drop: bool = False) -> bool:
        mine = [m for m in self.inflight if m.to in ids]
        self.inflight = [m for m in self.inflight if m.to not in ids]
        for m in mine:
            if drop or self._cut(m.frm, m.to) or self.members[m.to].raft is None:
                self.out.append(f"dropped: {fmt_message(m)}")
                continue
            self.out.append(fmt_message(m))
            self.node(m.to).step(m)
        return bool(mine)

    def cmd_stabilize(self, args: list[str]) -> None:
        ids = sorted(int(a) for a in args) or sorted(self.members)
        for _ in range(1000):
            busy = False
            for node_id in ids:
                raft = self.members[node_id].raft
                if raft is not None and raft.has_ready():
                    self._process_ready(node_id)
                    busy = True
            for node_id in ids:
                busy = self._deliver({node_id}) or busy
            if not busy:
                return
        raise RuntimeError("stabilize did not settle")

    def _log_summary(self, raft: RaftNode) -> str:
        log = raft.log
        return (
            f"first={log.first_index()} last={log.last_index()} "
            f"commit={log.committed} applied={log.applied}"
        )

    def cmd_raft_state(self, args: list[str]) -> None:
        for node_id, member in sorted(self.members.items()):
            raft = member.raft
            if raft is None:
                self.out.append(f"{node_id}: down")
                continue
            voter = "voter" if node_id in raft.voters else "non-voter"
            self.out.append(
                f"{node_id}: {raft.role.value} ({voter}) term={raft.term} lead={raft.lead} "
                f"{self._log_summary(raft)}"
            )

    def cmd_raft_log(self, args: list[str]) -> None:
        raft = self.node(int(args[0]))
        snap = raft.log.snapshot.meta
        self.out.append(f"snapshot {snap.term}/{snap.index}")
        self.out.extend(fmt_entry(e) for e in raft.log.all_entries())

    def cmd_applied(self, args: list[str]) -> None:
        self.out.extend(self.members[int(args[0])].applied or ["<nothing>"])

    def cmd_status(self, args: list[str]) -> None:
        raft = self.node(int(args[0]))
        for node_id, pr in sorted(raft.progress.items()):
            self.out.append(f"{node_id}: {pr!r}")
        if not raft.progress:
            self.out.append("<not leader>")


# ---- the script format -------------------------------------------------------------------


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: str
    line_no: int


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    comments: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            if comments and comments[-1] != "":
                comments.append("")
            i += 1
            continue
        if line.startswith("#"):
            comments.append(line)
            i += 1
            continue
        command, line_no = line, i + 1
        i += 1
        if i >= len(lines) or lines[i] != "----":
            raise ValueError(f"line {line_no}: expected ---- after {command!r}")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        while comments and comments[0] == "":
            comments.pop(0)
        blocks.append(Block(comments, command, "\n".join(out), line_no))
        comments = []
    return blocks


def render(blocks: list[Block], outputs: list[str]) -> str:
    parts: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        head = "\n".join(block.comments)
        if head and not head.endswith("\n"):
            head += "\n"
        parts.append(f"{head}{block.command}\n----\n{output}\n")
    return "\n".join(parts)


def run_script(path: Path) -> list[str]:
    """Run a script; return the mismatches (rewriting the file instead under REWRITE)."""
    blocks = parse(path.read_text())
    env = Env()
    outputs: list[str] = []
    problems: list[str] = []
    for block in blocks:
        output = env.run(block.command)
        outputs.append(output)
        if output != block.expected:
            problems.append(
                f"{path.name}:{block.line_no}: {block.command}\n"
                f"--- expected\n{block.expected}\n--- actual\n{output}"
            )
    if REWRITE:
        path.write_text(render(blocks, outputs))
        return []
    return problems
