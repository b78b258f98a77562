"""Raft values: log entries, persistent state, snapshots, messages and read states.

Role: the vocabulary shared by the core (`core.RaftNode`), its log and its drivers. Everything
here is a frozen value; the core never mutates a message or an entry it has handed out, so a
driver may keep, persist or send them as they are.

Message kinds follow etcd's raft: one `Message` shape whose meaning depends on `kind`, so the
core's dispatch is a table and a driver's codec is one function. Local inputs (`HUP`,
`PROPOSE`, `TRANSFER_LEADER`, `READ_INDEX` stepped on the node itself) carry term 0.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0  # "no node": node ids are positive


class EntryKind(enum.Enum):
    NORMAL = "normal"
    CONF_CHANGE = "conf"


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def size_bytes(self) -> int:
        # What an entry costs a batch: its payload plus a fixed header, so empty entries
        # (the leader's no-op) still count against max_msg_bytes.
        return len(self.data) + 16


class ConfChangeKind(enum.Enum):
    ADD_VOTER = "add"
    REMOVE_VOTER = "remove"


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One voter added or removed (Raft thesis §4.1: single-server changes)."""

    kind: ConfChangeKind
    node_id: int
    # Opaque to the core; the driver's (etcd's ConfChange.Context: the member's URLs).
    context: bytes = b""

    def encode(self) -> bytes:
        head = f"{self.kind.value}:{self.node_id}".encode()
        return head + b":" + self.context if self.context else head

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        kind, node, *context = data.split(b":", 2)
        return cls(ConfChangeKind(kind.decode()), int(node), context[0] if context else b"")


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent (Raft Figure 2)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    voters: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The applied state up to `meta.index`, opaque to raft (the driver's state machine)."""

    meta: SnapshotMeta
    data: bytes = b""


class MessageKind(enum.Enum):
    # Local inputs (term 0), never sent on the wire except PROPOSE/READ_INDEX forwarding.
    HUP = "MsgHup"
    BEAT = "MsgBeat"
    PROPOSE = "MsgProp"
    TRANSFER_LEADER = "MsgTransferLeader"
    # Wire messages.
    APP = "MsgApp"
    APP_RESP = "MsgAppResp"
    VOTE = "MsgVote"
    VOTE_RESP = "MsgVoteResp"
    PRE_VOTE = "MsgPreVote"
    PRE_VOTE_RESP = "MsgPreVoteResp"
    HEARTBEAT = "MsgHeartbeat"
    HEARTBEAT_RESP = "MsgHeartbeatResp"
    SNAP = "MsgSnap"
    TIMEOUT_NOW = "MsgTimeoutNow"
    READ_INDEX = "MsgReadIndex"
    READ_INDEX_RESP = "MsgReadIndexResp"


@dataclass(frozen=True, slots=True)
class Message:
    kind: MessageKind
    to: int = NONE
    frm: int = NONE
    term: int = 0
    # APP: the index and term of the entry before `entries`; VOTE: the candidate's last entry;
    # APP_RESP: the index acknowledged (or rejected); READ_INDEX_RESP: the read index.
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    # HEARTBEAT(_RESP), READ_INDEX(_RESP): the read request's context; VOTE: b"transfer"
    # when a leadership transfer forces the election past the leader lease.
    context: bytes = b""


CAMPAIGN_TRANSFER = b"transfer"


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches `index`."""

    index: int
    context: bytes


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state a driver may watch (who leads, and our role); never persisted."""

    leader: int
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """What the driver must do, in this order (etcd's raft contract):

    1. persist `snapshot` (if any), then `entries` (overwriting any persisted entries from the
       first one's index on), then `hard_state` (if not None), with one fsync;
    2. only then send `messages`;
    3. apply `snapshot`, then `committed_entries` in order; serve `read_states` once applied;
    4. call `RaftNode.advance(ready)`.

    With `RaftConfig.leader_persists_async`, a leader's Ready whose `hard_state` changes no
    term or vote (and that has no snapshot) may skip the fsync of step 1: its entries are
    written, its messages sent, and the driver calls `RaftNode.persisted` once an fsync has
    made them durable (Raft thesis §10.2.1: the leader's disk leaves the critical path). The
    leader counts its own copy toward a commit only from then on. Every other Ready keeps the
    order above.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = field(default=())

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.committed_entries
            or self.messages
            or self.read_states
        )
