"""A member of a replicated store: the Raft driver around `RaftNode` and `StoreState`.

Role: what `StoreNode` is for one member, for a cluster of several (`--initial-cluster` with
more than one member). It offers the HTTP layer the same interface (`store.backend.
StoreBackend`): propose a command and await its result, a linearizable read barrier, watches,
the tree and auth state, and who leads.

The Ready loop (etcd's raft driver contract, docs/raft.md):

    ticks (every --heartbeat-interval ms), received messages, proposals, read requests
      -> RaftNode.step/tick/propose/read_index -> wake the loop
    loop: while node.has_ready():
        rd = node.ready()
        storage.save(rd.entries, rd.hard_state)     # write + fdatasync
        transport.send(rd.messages)                 # only after the fsync
        apply rd.committed_entries to StoreState    # in log order; answer local proposers
        release rd.read_states once applied that far
        node.advance(rd)

    except for a leader (`leader_persists_async`, Raft thesis §10.2.1): its Ready is only
    written and its appends sent; its fdatasync runs on a thread (`storage.SyncThread`), so
    the loop keeps serving and the followers persist while the leader does; then
    `node.persisted` lets the core count the leader's own copy toward a commit (in a
    cluster of three, the two followers' copies commit an entry without it).

Rules:
- The log's entry 1 is the bootstrap snapshot naming the voters (every member computes the
  same one from `--initial-cluster`), so `StoreState.applied_index` equals the Raft index.
  Empty entries (a new leader's first entry) and conf-change entries apply as `Noop`.
- An entry's data is `codec.wrap_proposal(proposer, sequence, command)`: every member applies
  it; the proposer alone answers its waiting client. A proposal is answered only once it is
  applied here, so a client that wrote through a member reads its write there.
- A proposal made while no leader is known is retried every tick until its deadline. One
  that may have been lost on the way (a forwarded MsgProp dropped, a leader deposed before
  replicating it) is proposed again when a new leader is known and after every election
  timeout without being applied; each entry names its proposer and request number, and
  apply skips a repeat of one already applied (`_is_duplicate`), so a write is applied at
  most once. Without quorum the request is answered, when its deadline passes, with error
  300 "etcdserver: request timed out", as etcd 3.4 does (after 5 s + 2 election timeouts =
  7 s); its outcome is then unknown to the client, as with etcd.
- Quorum reads: `read_barrier` asks the core for a read index (re-asked every election
  timeout while unanswered) and returns once this member has applied that far.
- TTL expiry: only the leader proposes `ExpireKeys` with its clock, so every member applies
  the same expiry at the same index.
- Each member publishes its name and client URLs through the log (`Bootstrap`, etcd's
  publish) once a leader is known, unless the state already has them.
- `healthy` (for /health): a leader is known and the raft log has not failed. A leader that
  loses its quorum steps down within an election timeout (check-quorum), so a member without
  quorum reports unhealthy.

- Snapshots (`_maybe_snapshot`): every `--snapshot-count` applied entries the member writes
  its applied `StoreState` and the dedup table (`_applied_sequences`, which must travel with
  the state it describes) as a snapshot file (`store.snapshot`'s format, in member/snap;
  the payload is `encode_payload`), durably, from a forked child that sees the state as it
  was at the fork (copy-on-write), so the loop goes on meanwhile; once the child has
  exited with the file saved (`_snapshot_child_exited`), the member compacts the core and
  the raft log to its *previous* snapshot, so the entries between the two (at least
  `catch_up_entries`, as etcd keeps 5,000) stay for followers that lag a little. The
  snapshot the core holds (the compaction point) is the one a follower behind it gets in
  MsgSnap.
- A snapshot in a Ready (a MsgSnap from the leader) is written durably first, the raft log
  is rewritten empty after it, then the state and the dedup table are replaced by its
  contents, before anything else of that Ready is done.
- Start-up loads the newest snapshot and replays only the log entries after it.

- Membership (etcd's /v2/members): a change is a conf-change entry whose context names the
  proposer, its request number and the member's peer URLs; applying it updates the state's
  members (`AddMember`/`RemoveMember`, as etcd's internal writes) and the transport's peers
  here, and the core's voters when the Ready is advanced. A conf change is proposed once a
  leader takes it and never repeated (a repeat committed after a later change would undo
  it). A member added at runtime starts with `--initial-cluster-state existing`: it learns
  its ID and the cluster's from a running member (GET /members on the peer listener),
  starts with an empty log and no configuration, and gets the leader's snapshot. The IDs
  are kept in member/identity.json; from then on the initial flags are ignored, as etcd's.
  A member that applies its own removal stops serving and sets `removed`.

Limits (this version): peer TLS has no certificate reload or CRLs. The fsync runs on the
event loop, as the single node's does, and so does taking a snapshot.

Must not: parse HTTP (that is `http_v2`), do Raft's decisions (that is the core), or send
anything before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import signal
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx

from dockyard.http.server import HttpServer
from dockyard.raft.core import RaftConfig, RaftNode
from dockyard.raft.messages import (
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
    SnapshotMeta,
)
from dockyard.store import commands as c
from dockyard.store.auth import AuthError
from dockyard.store.cluster.codec import CodecError, unwrap_proposal, wrap_proposal
from dockyard.store.cluster.storage import RaftStorage, SyncThread
from dockyard.store.cluster.transport import PeerStats, Transport
from dockyard.store.errors import MembershipError, RaftInternalError
from dockyard.store.node import (
    EXPIRY_TICK_S,
    StoreDataError,
    WatchingMember,
    WatchSink,
    cluster_id_for,
    member_id_for,
)
from dockyard.store.snapshot import Snapshot as SnapshotFile
from dockyard.store.snapshot import (
    SnapshotError,
    decode_snapshot,
    load_latest_snapshot,
    save_snapshot,
    snapshot_name,
)
from dockyard.store.state import StoreState
from dockyard.store.tree import ApplyResult, Event, Watcher
from dockyard.store.wal import WalError
from dockyard.tls.contexts import client_context, server_context
from dockyard.tls.errors import TlsError

_log = logging.getLogger(__name__)

BOOTSTRAP_INDEX = 1
BOOTSTRAP_TERM = 1
REQUEST_TIMEOUT_BASE_MS = 5_000  # etcd: 5 s + 2 x election timeout before "request timed out"
TIMED_OUT = "etcdserver: request timed out"
DEDUP_WINDOW = 100_000  # applied proposals remembered per member, to drop repeats
# How long a stopping member waits for a snapshot being saved before it kills the saver.
SNAPSHOT_STOP_WAIT_S = 10.0
SNAPSHOT_COUNT = 100_000  # applied entries between snapshots (etcd 3.4's --snapshot-count)
# Entries kept behind the compaction point for followers that lag a little (etcd's
# SnapshotCatchUpEntries); at most --snapshot-count of them, see `_maybe_snapshot`.
SNAPSHOT_CATCH_UP_ENTRIES = 5_000
_PAYLOAD_HEAD = struct.Struct("<I")  # length of the JSON metadata that precedes the state
JOIN_TIMEOUT_S = 2.0  # per member asked, when joining a running cluster
# etcd's HealthInterval: how long a member must have been reachable to count as connected.
HEALTH_INTERVAL_S = 5.0
# etcd answers these with 500 "Internal Server Error" on the v2 API; we say why (same status).
UNHEALTHY = "etcdserver: unhealthy cluster"
NOT_ENOUGH_STARTED = "etcdserver: re-configuration failed due to not enough started members"


@dataclass(frozen=True)
class InitialMember:
    name: str
    peer_urls: tuple[str, ...]


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    data_dir: Path
    initial_cluster: tuple[InitialMember, ...]
    client_urls: tuple[str, ...]
    listen_peer_urls: tuple[str, ...]
    cluster_token: str = "etcd-cluster"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = SNAPSHOT_COUNT
    # etcd's --initial-cluster-state: "existing" joins a running cluster that has already
    # added this member (member add); ignored once the data dir holds the member.
    initial_cluster_state: str = "new"
    # Peer TLS (etcd's --peer-*): required for https peer URLs. The same certificate is the
    # server identity and, to other members, the client identity (serverAuth + clientAuth).
    peer_cert_file: str | None = None
    peer_key_file: str | None = None
    peer_trusted_ca_file: str | None = None
    peer_client_cert_auth: bool = False

    def __post_init__(self) -> None:
        if self.initial_cluster_state not in ("new", "existing"):
            raise ValueError("--initial-cluster-state must be 'new' or 'existing'")
        if self.election_timeout_ms < 2 * self.heartbeat_interval_ms:
            raise ValueError("--election-timeout must be at least twice --heartbeat-interval")
        if self.snapshot_count < 1:
            raise ValueError("--snapshot-count must be at least 1")

    @property
    def peer_urls(self) -> tuple[str, ...]:
        for m in self.initial_cluster:
            if m.name == self.name:
                return m.peer_urls
        raise ValueError(f"{self.name!r} is not in the initial cluster")

    @property
    def request_timeout_s(self) -> float:
        return (REQUEST_TIMEOUT_BASE_MS + 2 * self.election_timeout_ms) / 1000


def bootstrap_state(members: dict[int, InitialMember]) -> StoreState:
    """The state at index 1, the same on every member: each member's peer URLs (etcd's
    raftAttributes); names and client URLs arrive when each member publishes them."""
    state = StoreState(applied_index=BOOTSTRAP_INDEX)
    for member_id, m in sorted(members.items()):
        state.tree.members[f"{member_id:x}"] = {
            "name": "",
            "peerURLs": list(m.peer_urls),
            "clientURLs": [],
        }
    return state


_DedupTable = dict[int, tuple[dict[int, None], deque[int]]]


def _snapshot_child_main(save: Callable[[SnapshotMeta], bytes], meta: SnapshotMeta) -> NoReturn:
    """The forked snapshot saver: the parent's memory as it was at the fork, one job, then
    `os._exit` (no atexit handlers, no flushing of the parent's buffers, no event loop)."""
    code = 1
    try:
        # A signal meant for the member must not reach the parent's loop through the
        # wakeup fd both share; the default action is right for the saver.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        save(meta)
        code = 0
    finally:
        os._exit(code)


def encode_payload(state: StoreState, dedup: _DedupTable) -> bytes:
    """A cluster snapshot's data: `len u32 | JSON {"dedup": {proposer: [sequence, ...]}} |
    StoreState.to_snapshot_bytes()`; sequences oldest first, so the window trims alike."""
    head = json.dumps(
        {"dedup": {str(proposer): list(order) for proposer, (_, order) in dedup.items()}}
    ).encode()
    return _PAYLOAD_HEAD.pack(len(head)) + head + state.to_snapshot_bytes()


def decode_payload(data: bytes, index: int) -> tuple[StoreState, _DedupTable]:
    (length,) = _PAYLOAD_HEAD.unpack_from(data, 0)
    head = json.loads(data[_PAYLOAD_HEAD.size : _PAYLOAD_HEAD.size + length])
    dedup: _DedupTable = {}
    for proposer, sequences in head["dedup"].items():
        order = deque(int(s) for s in sequences)
        dedup[int(proposer)] = (dict.fromkeys(order), order)
    state = StoreState.from_snapshot_bytes(data[_PAYLOAD_HEAD.size + length :], index)
    return state, dedup


def to_snapshot_file(snapshot: Snapshot) -> SnapshotFile:
    """The file form of a raft snapshot: the voters go into the data, after a JSON line."""
    meta = json.dumps({"voters": list(snapshot.meta.voters)}).encode() + b"\n"
    return SnapshotFile(snapshot.meta.index, snapshot.meta.term, meta + snapshot.data)


def from_snapshot_file(file: SnapshotFile) -> Snapshot:
    meta, _, data = file.data.partition(b"\n")
    voters = tuple(int(v) for v in json.loads(meta)["voters"])
    return Snapshot(SnapshotMeta(file.index, file.term, voters), data)


@dataclass
class _Proposal:
    data: bytes
    command: object
    future: asyncio.Future[Any]
    deadline: float
    proposed: bool = False
    proposed_at: float = 0.0
    # A membership change goes into the log as a conf-change entry. It is proposed once a
    # leader takes it and never again: a repeat committed after a later change would undo
    # that change in the core's configuration (the driver cannot veto a conf change).
    conf_change: ConfChange | None = None
    queued: bool = False  # waiting in ClusterMember._queued for the Ready loop


@dataclass
class _Read:
    future: asyncio.Future[None]
    deadline: float
    asked_at: float
    index: int = 0  # set once the core answers


class ClusterMember(WatchingMember):
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.members = {
            member_id_for(m.peer_urls, config.cluster_token): m for m in config.initial_cluster
        }
        self.member_id = member_id_for(config.peer_urls, config.cluster_token)
        self.cluster_id = cluster_id_for(list(self.members))
        self.state = bootstrap_state(self.members)
        self.start_time_ns = time.time_ns()
        self.raft: RaftNode | None = None
        self._storage: RaftStorage | None = None
        self._sync_thread: SyncThread | None = None  # the leader's fdatasync
        self._handling_readies = False  # `_handle_readies` is running (never re-entered)
        # The forked process saving a snapshot: (pid, pidfd, what it saves), or None.
        self._snapshot_child: tuple[int, int, SnapshotMeta] | None = None
        self._transport: Transport | None = None
        self._peer_server: HttpServer | None = None
        self._proposals: dict[int, _Proposal] = {}
        # Sequence numbers start from the clock so that a restarted member never mistakes
        # its predecessor's entries (replayed from the log) for its own waiting requests.
        self._sequence = itertools.count(time.time_ns())
        self._reads: dict[bytes, _Read] = {}
        self._wakeup = asyncio.Event()
        self._failed: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._published = False
        self._soft_state_changed = asyncio.Event()
        self._applied_sequences: _DedupTable = {}
        # The newest snapshot taken or received; the core is compacted to the one before.
        self._snapshot: Snapshot | None = None
        # Set when the cluster removed this member: the server stops (as etcd exits).
        self.removed = asyncio.Event()
        self._queued: list[_Proposal] = []  # stepped by the Ready loop, see _try_propose
        self._peer_server_ssl: ssl.SSLContext | None = None
        self._peer_client_ssl: ssl.SSLContext | None = None

    @property
    def snap_dir(self) -> Path:
        return self.config.data_dir / "member" / "snap"

    @property
    def catch_up_entries(self) -> int:
        # Never more than --snapshot-count, so the previous snapshot is always far enough
        # behind to compact to.
        return min(SNAPSHOT_CATCH_UP_ENTRIES, self.config.snapshot_count)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def raft_dir(self) -> Path:
        return self.config.data_dir / "member" / "raft"

    @property
    def identity_path(self) -> Path:
        return self.config.data_dir / "member" / "identity.json"

    def _read_identity(self) -> bool | None:
        """Adopt the member and cluster IDs the data dir was created with; None if new.
        Returns whether this member joined a running cluster (started without bootstrap)."""
        try:
            identity = json.loads(self.identity_path.read_bytes())
        except FileNotFoundError:
            return None
        self.member_id = int(identity["member_id"], 16)
        self.cluster_id = int(identity["cluster_id"], 16)
        return bool(identity["joined"])

    def _write_identity(self, joined: bool) -> None:
        # Once written, --initial-cluster no longer decides who this member is (etcd
        # ignores the initial flags when the data dir exists).
        data = json.dumps(
            {
                "member_id": f"{self.member_id:x}",
                "cluster_id": f"{self.cluster_id:x}",
                "joined": joined,
            }
        ).encode()
        path = self.identity_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _join(self) -> None:
        """--initial-cluster-state existing: learn this member's ID (given at `member add`),
        the cluster ID and the members from a running member's peer listener."""
        own = set(self.config.peer_urls)
        problems: list[str] = []
        for m in self.config.initial_cluster:
            if set(m.peer_urls) == own:
                continue
            for url in m.peer_urls:
                try:
                    verify: ssl.SSLContext | bool = self._peer_client_ssl or True
                    async with httpx.AsyncClient(timeout=JOIN_TIMEOUT_S, verify=verify) as client:
                        answer = await client.get(url.rstrip("/") + "/members")
                    listed = answer.json()["members"]
                    cluster_id = int(answer.headers["X-Etcd-Cluster-Id"], 16)
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                    problems.append(f"{url}: {error}")
                    continue
                mine = [int(i["id"], 16) for i in listed if set(i["peerURLs"]) == own]
                if not mine:
                    raise StoreDataError(
                        f"member {self.config.name} ({', '.join(sorted(own))}) has not been "
                        "added to the cluster: add it first (dockyard store member add "
                        f"{self.config.name} {','.join(sorted(own))})"
                    )
                self.member_id, self.cluster_id = mine[0], cluster_id
                self.members = {
                    int(i["id"], 16): InitialMember(i["name"], tuple(i["peerURLs"])) for i in listed
                }
                return
        raise StoreDataError(
            "could not reach a member of the cluster to join: " + "; ".join(problems)
        )

    def _peer_tls(self) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
        """The peer listener's and the peer client's TLS contexts (None without https)."""
        config = self.config
        urls = [*config.listen_peer_urls, *(u for m in config.initial_cluster for u in m.peer_urls)]
        if not any(u.startswith("https://") for u in urls):
            return None, None
        if not config.peer_cert_file or not config.peer_key_file:
            raise StoreDataError("https peer URLs need --peer-cert-file and --peer-key-file")
        try:
            server = server_context(
                config.peer_cert_file,
                config.peer_key_file,
                trusted_ca_file=config.peer_trusted_ca_file,
                client_cert_auth=config.peer_client_cert_auth,
            )
            client = client_context(
                ca_file=config.peer_trusted_ca_file,
                cert_file=config.peer_cert_file,
                key_file=config.peer_key_file,
            )
        except TlsError as error:
            raise StoreDataError(f"peer TLS: {error}") from None
        return server, client

    def _state_from(self, snapshot: Snapshot) -> tuple[StoreState, _DedupTable]:
        if snapshot.data:
            return decode_payload(snapshot.data, snapshot.meta.index)
        # The bootstrap snapshot (index 1) has no data: every member computes it from the
        # voters' peer URLs. A member that joined later knows them from the members list.
        voters = {v: self.members.get(v, InitialMember("", ())) for v in snapshot.meta.voters}
        state = bootstrap_state(voters)
        state.applied_index = snapshot.meta.index
        return state, {}

    async def start(self) -> None:
        if (self.config.data_dir / "member" / "wal").exists():
            raise StoreDataError(
                f"{self.config.data_dir} holds a single-member store; a cluster member needs "
                "an empty data dir (a single member cannot yet be grown into a cluster)"
            )
        self._peer_server_ssl, self._peer_client_ssl = self._peer_tls()
        joined = self._read_identity()
        if joined is None:
            joined = self.config.initial_cluster_state == "existing"
            if joined:
                await self._join()
            self._write_identity(joined)
        storage, recovered = RaftStorage.open(self.raft_dir, 1 if joined else BOOTSTRAP_INDEX + 1)
        self._storage = storage
        loop = asyncio.get_running_loop()
        self._sync_thread = SyncThread(
            storage, loop.call_soon_threadsafe, self._synced, self._sync_failed
        )
        voters = tuple(sorted(self.members))
        if joined:
            # No configuration of our own: the leader sends its snapshot and log, and with
            # them the configuration that names us (raft's empty start for a joining node).
            start = Snapshot(SnapshotMeta(0, 0, ()))
            self.state = StoreState(applied_index=0)
            self.state.tree.members = {
                f"{pid:x}": {"name": m.name, "peerURLs": list(m.peer_urls), "clientURLs": []}
                for pid, m in self.members.items()
            }
        else:
            start = Snapshot(SnapshotMeta(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, voters))
        saved = load_latest_snapshot(self.snap_dir)
        if saved is not None:
            start = from_snapshot_file(saved)
            self.state, self._applied_sequences = self._state_from(start)
            self._snapshot = start
        # The log may hold entries at or before the snapshot (the catch-up tail, or all of
        # them after a crash between saving a snapshot and rewriting the log).
        entries = tuple(e for e in recovered.entries if e.index > start.meta.index)
        if entries and entries[0].index != start.meta.index + 1:
            raise StoreDataError(
                f"{self.raft_dir}: the raft log starts at {entries[0].index}, after a gap "
                f"behind the snapshot at {start.meta.index}"
            )
        hard_state = recovered.hard_state
        if hard_state is not None and hard_state.commit < start.meta.index:
            hard_state = HardState(hard_state.term, hard_state.vote, start.meta.index)
        election_ticks = self.config.election_timeout_ms // self.config.heartbeat_interval_ms
        self.raft = RaftNode(
            RaftConfig(
                self.member_id,
                election_timeout_ticks=election_ticks,
                heartbeat_ticks=1,
                leader_persists_async=True,
            ),
            random.Random(),
            start,
            hard_state,
            entries,
        )
        _log.info(
            "cluster member %s (%x) of cluster %x: snapshot at %d, %d entries after it in the "
            "raft log, term %d",
            self.config.name,
            self.member_id,
            self.cluster_id,
            start.meta.index,
            len(entries),
            self.raft.term,
        )
        self._transport = Transport(
            self.member_id,
            self.cluster_id,
            self._known_peers(),
            self._receive,
            self._report_snapshot,
            members_json=self._members_json,
            client_ssl=self._peer_client_ssl,
            is_removed=lambda pid: f"{pid:x}" in self.tree.removed_members,
            on_removed=self._learned_removed,
            on_unreachable=self._peer_unreachable,
            leader_probe_s=self.config.heartbeat_interval_ms / 1000,
            on_batch=self._ready_now,
        )
        self._transport.start()
        self._peer_server = HttpServer(self._transport.handle)
        from dockyard.store.server import parse_url  # a cycle at import time otherwise

        for url in self.config.listen_peer_urls:
            scheme, host, port = parse_url(url)
            server_ssl = self._peer_server_ssl if scheme == "https" else None
            await self._peer_server.listen(host, port, ssl_context=server_ssl)
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name="raft-ready"),
            asyncio.create_task(self._ticker(), name="raft-ticker"),
            asyncio.create_task(self._expiry_ticker(), name="store-expiry"),
        ]
        self._wakeup.set()  # replay what the log holds as committed

    def _known_peers(self) -> dict[int, str]:
        """Peer URL per member: the initial members, then what the state says (members
        added or moved since); never removed members, never ourselves."""
        peers = {pid: m.peer_urls[0] for pid, m in self.members.items() if m.peer_urls}
        for hex_id, m in self.state.tree.members.items():
            if m["peerURLs"]:
                peers[int(hex_id, 16)] = m["peerURLs"][0]
        for hex_id in self.state.tree.removed_members:
            peers.pop(int(hex_id, 16), None)
        peers.pop(self.member_id, None)
        return peers

    def _peer_unreachable(self, peer: int) -> None:
        """The transport could not reach `peer`; if it leads us, elect without waiting out
        an election timeout (`RaftNode.leader_unreachable`)."""
        raft = self.raft
        if raft is not None and self._failed is None and raft.lead == peer:
            raft.leader_unreachable(peer)
            self._wakeup.set()

    def _learned_removed(self) -> None:
        """A peer answered 410: the cluster removed us before we applied it (etcd stops)."""
        if not self.removed.is_set():
            self._fail("the member has been permanently removed from the cluster")
            self.removed.set()

    def _members_json(self) -> bytes:
        """GET /members on the peer listener: what a joining member learns its ID from."""
        listed = [
            {
                "id": hex_id,
                "name": m["name"],
                "peerURLs": m["peerURLs"],
                "clientURLs": m["clientURLs"],
            }
            for hex_id, m in self.tree.members.items()
        ]
        return json.dumps({"members": listed}).encode()

    async def close(self) -> None:
        """Stop: hand over leadership if we lead, then stop the loop, the peer listener and
        the transport; waiting proposals fail with error 300."""
        await self._hand_over_leadership()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Our own sends first, so peers see us go; then the peer listener, bounded: peers
        # keep reconnecting every heartbeat, and a stop must not wait on them.
        if self._transport is not None:
            await self._transport.close()
        if self._peer_server is not None:
            try:
                async with asyncio.timeout(3.0):
                    await self._peer_server.close(grace_s=0.5)
            except TimeoutError:
                _log.warning("member %x: peer listener did not close within 3 s", self.member_id)
        _log.info("member %x: stopped", self.member_id)
        await self._await_snapshot_child()
        if self._sync_thread is not None:
            self._sync_thread.close()
        if self._storage is not None:
            self._storage.close()
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(RaftInternalError("etcdserver: server stopped"))

    async def _await_snapshot_child(self) -> None:
        """At stop: let a snapshot being saved finish (bounded), so its file is complete."""
        child = self._snapshot_child
        if child is None:
            return
        pid, pidfd, _meta = child
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        loop.remove_reader(pidfd)
        loop.add_reader(pidfd, lambda: None if done.done() else done.set_result(None))
        try:
            async with asyncio.timeout(SNAPSHOT_STOP_WAIT_S):
                await done
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)  # its .tmp is never trusted (store.snapshot)
        loop.remove_reader(pidfd)
        os.close(pidfd)
        os.waitpid(pid, 0)
        self._snapshot_child = None

    async def _hand_over_leadership(self) -> None:
        """A leader that stops cleanly hands leadership to its most caught-up follower
        first (as etcd 3.4 does on SIGTERM), so the cluster does not wait an election timeout
        to notice. Bounded by one election timeout; a crash skips this, of course."""
        raft = self.raft
        if raft is None or self._failed is not None or not self.is_leader or not self._tasks:
            return
        followers = [(pr.match, pid) for pid, pr in raft.progress.items() if pid != self.member_id]
        if not followers:
            return
        _, target = max(followers)
        _log.info("member %x: stopping; handing leadership to %x", self.member_id, target)
        raft.transfer_leadership(target)
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.election_timeout_ms / 1000
        # The hand-over completes when the target's election deposes us, which the Ready
        # loop reports as a soft-state change.
        while self.is_leader and loop.time() < deadline:
            self._soft_state_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._soft_state_changed.wait()

    # --- what the HTTP layer uses (store.backend.StoreBackend) -----------------------------

    @property
    def term(self) -> int:
        return self.raft.term if self.raft is not None else 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def leader_id(self) -> int | None:
        lead = self.raft.lead if self.raft is not None else NONE
        return None if lead == NONE else lead

    @property
    def is_leader(self) -> bool:
        return self.raft is not None and self.raft.role is Role.LEADER

    @property
    def healthy(self) -> bool:
        return self._failed is None and self.leader_id is not None

    def follower_stats(self) -> dict[int, PeerStats]:
        if self._transport is None:
            return {}
        out = {}
        for pid in (int(hex_id, 16) for hex_id in self.tree.members):
            stats = self._transport.stats(pid)
            if stats is not None:
                out[pid] = stats
        return out

    def propose(self, command: object) -> asyncio.Future[Any]:
        """The future resolves to the apply result once the command is applied here (or
        raises RaftInternalError on timeout or failure)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._failed is not None:
            future.set_exception(RaftInternalError(self._failed))
            return future
        sequence = next(self._sequence)
        data = wrap_proposal(self.member_id, sequence, c.encode_command(command))
        proposal = _Proposal(data, command, future, loop.time() + self.config.request_timeout_s)
        self._proposals[sequence] = proposal
        self._try_propose(proposal)
        return future

    async def read_barrier(self) -> None:
        """Return once this member has applied every write acknowledged before the call
        (Raft's ReadIndex, thesis §6.4); RaftInternalError on timeout."""
        if self._failed is not None:
            raise RaftInternalError(self._failed)
        loop = asyncio.get_running_loop()
        # Unique across members: the leader keys pending reads by context.
        context = self.member_id.to_bytes(8, "big") + next(self._sequence).to_bytes(8, "big")
        now = loop.time()
        read = _Read(loop.create_future(), now + self.config.request_timeout_s, now)
        self._reads[context] = read
        assert self.raft is not None
        self.raft.read_index(context)
        self._wakeup.set()
        try:
            await read.future
        finally:
            self._reads.pop(context, None)

    # --- membership (etcd's /v2/members POST, DELETE, PUT) -------------------------------

    async def add_member(self, peer_urls: tuple[str, ...]) -> dict[str, Any]:
        """Add a voter that will start with --initial-cluster-state existing."""
        # etcd's order: the strict checks, then the conflicts found when the change applies.
        self._check_add()
        for m in self.tree.members.values():
            if set(peer_urls) & set(m["peerURLs"]):
                raise MembershipError(409, "membership: peerURL exists")
        # etcd's NewMember: the time is part of the ID, so a member added again later
        # (after a remove) gets a new one; removed IDs are never reused.
        new_id = member_id_for(peer_urls, f"{self.config.cluster_token}{time.time_ns()}")
        if f"{new_id:x}" in self.tree.members or f"{new_id:x}" in self.tree.removed_members:
            raise MembershipError(409, "membership: ID exists")
        await self._change_membership(ConfChangeKind.ADD_VOTER, new_id, peer_urls)
        return {"id": f"{new_id:x}", "name": "", "peerURLs": list(peer_urls), "clientURLs": []}

    async def remove_member(self, hex_id: str) -> None:
        if hex_id in self.tree.removed_members:
            raise MembershipError(410, f"Member permanently removed: {hex_id}")
        if hex_id not in self.tree.members:
            raise MembershipError(404, f"No such member: {hex_id}")
        self._check_remove(int(hex_id, 16))
        await self._change_membership(ConfChangeKind.REMOVE_VOTER, int(hex_id, 16), ())

    async def update_member(self, hex_id: str, peer_urls: tuple[str, ...]) -> None:
        """New peer URLs for a member (not a configuration change: the voters stay)."""
        if hex_id not in self.tree.members:
            raise MembershipError(404, f"No such member: {hex_id}")
        for other, m in self.tree.members.items():
            if other != hex_id and set(peer_urls) & set(m["peerURLs"]):
                raise MembershipError(409, "membership: peerURL exists")
        try:
            await self.propose(c.UpdateMember(hex_id, peer_urls))
        except RaftInternalError as error:
            raise MembershipError(500, str(error)) from None

    # etcd's strict reconfiguration checks (etcdserver/server.go mayAddMember and
    # mayRemoveMember, membership/cluster.go IsReadyTo*VotingMember), from this member's
    # view: "started" members have published their name; "connected" ones have answered
    # this member's transport for HEALTH_INTERVAL_S without a failure.

    def _connected(self, pid: int, now: float) -> bool:
        if pid == self.member_id:
            return True
        since = self._transport.active_since(pid) if self._transport is not None else None
        return since is not None and now - since >= HEALTH_INTERVAL_S

    def _voters(self) -> list[int]:
        return [int(hex_id, 16) for hex_id in self.tree.members]

    def _started(self, pid: int) -> bool:
        return bool(self.tree.members.get(f"{pid:x}", {}).get("name"))

    def _check_add(self) -> None:
        voters = self._voters()
        started = sum(1 for pid in voters if self._started(pid))
        members = len(voters) + 1
        if not (started == 1 and members == 2) and started < members // 2 + 1:
            raise MembershipError(500, NOT_ENOUGH_STARTED)
        now = asyncio.get_running_loop().time()
        if not all(self._connected(pid, now) for pid in voters):
            raise MembershipError(500, UNHEALTHY)

    def _check_remove(self, removed: int) -> None:
        voters = self._voters()
        others = [pid for pid in voters if pid != removed]
        if sum(1 for pid in others if self._started(pid)) < len(others) // 2 + 1:
            raise MembershipError(500, NOT_ENOUGH_STARTED)
        transport = self._transport
        if removed != self.member_id and (
            transport is None or transport.active_since(removed) is None
        ):
            return  # a member that is down is not part of the active quorum: safe
        now = asyncio.get_running_loop().time()
        active = sum(1 for pid in voters if self._connected(pid, now))
        if active - 1 < 1 + (len(voters) - 1) // 2:
            raise MembershipError(500, UNHEALTHY)

    async def _change_membership(
        self, kind: ConfChangeKind, member_id: int, peer_urls: tuple[str, ...]
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._failed is not None:
            raise MembershipError(500, self._failed)
        sequence = next(self._sequence)
        context = json.dumps(
            {"proposer": self.member_id, "sequence": sequence, "peerURLs": list(peer_urls)}
        ).encode()
        change = ConfChange(kind, member_id, context)
        future: asyncio.Future[Any] = loop.create_future()
        proposal = _Proposal(
            b"", change, future, loop.time() + self.config.request_timeout_s, conf_change=change
        )
        self._proposals[sequence] = proposal
        self._try_propose(proposal)
        try:
            await future
        except RaftInternalError as error:
            raise MembershipError(500, str(error)) from None

    # --- inputs to the core ----------------------------------------------------------------

    def _receive(self, m: Message) -> None:
        if self.raft is None or self._failed is not None:
            return
        self.raft.step(m)
        self._wakeup.set()

    def _report_snapshot(self, to: int, ok: bool) -> None:
        if self.raft is not None:
            self.raft.report_snapshot(to, ok)
            self._wakeup.set()

    def _try_propose(self, proposal: _Proposal) -> None:
        assert self.raft is not None
        proposal.proposed_at = asyncio.get_running_loop().time()
        if proposal.conf_change is not None:
            # False: no leader known or a transfer in progress; the ticker tries again.
            proposal.proposed = self.raft.propose_conf_change(proposal.conf_change)
            if proposal.proposed:
                self._wakeup.set()
            return
        # Normal proposals are stepped together, once per turn of the Ready loop
        # (`_flush_proposals`): one MsgProp with many entries, so one append per follower
        # carries them all instead of one append (and one answer) per request.
        proposal.proposed = True
        if not proposal.queued:
            proposal.queued = True
            self._queued.append(proposal)
        self._wakeup.set()

    def _flush_proposals(self) -> None:
        if not self._queued:
            return
        assert self.raft is not None
        batch = [p for p in self._queued if not p.future.done()]
        for p in self._queued:
            p.queued = False
        self._queued = []
        if not batch:
            return
        entries = tuple(Entry(0, 0, EntryKind.NORMAL, p.data) for p in batch)
        if not self.raft.step(Message(MessageKind.PROPOSE, entries=entries)):
            for p in batch:
                p.proposed = False  # no leader known or a transfer: the ticker tries again

    async def _ticker(self) -> None:
        interval_s = self.config.heartbeat_interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            # Ticks on a schedule, not "sleep after work", so a slow Ready does not stretch
            # the election timeout.
            next_tick += interval_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            raft = self.raft
            assert raft is not None
            raft.tick()
            now = loop.time()
            for sequence, p in list(self._proposals.items()):
                if p.future.done():
                    del self._proposals[sequence]
                elif now >= p.deadline:
                    del self._proposals[sequence]
                    p.future.set_exception(RaftInternalError(TIMED_OUT))
                elif not p.proposed or (
                    p.conf_change is None
                    and now - p.proposed_at >= self.config.election_timeout_ms / 1000
                ):
                    # Not taken, or taken and not applied within an election timeout (a
                    # forwarded MsgProp lost on the way, a leader deposed before it
                    # replicated it): propose again; `_is_duplicate` makes a repeat a no-op.
                    self._try_propose(p)
            for context, read in list(self._reads.items()):
                if read.future.done():
                    continue
                if now >= read.deadline:
                    read.future.set_exception(RaftInternalError(TIMED_OUT))
                elif (
                    not read.index and now - read.asked_at >= self.config.election_timeout_ms / 1000
                ):
                    # Unanswered (no leader then, or the request was lost): ask again.
                    read.asked_at = now
                    raft.read_index(context)
            if not self._published and raft.lead != NONE:
                self._publish()
            self._wakeup.set()

    def _publish(self) -> None:
        me = self.tree.members.get(f"{self.member_id:x}")
        wanted = (self.config.name, list(self.config.client_urls))
        self._published = True
        if me is not None and (me["name"], me["clientURLs"]) == wanted:
            return
        future = self.propose(
            c.Bootstrap(
                f"{self.member_id:x}",
                self.config.name,
                self.config.peer_urls,
                self.config.client_urls,
            )
        )

        def done(f: asyncio.Future[Any]) -> None:
            if f.exception() is not None:
                self._published = False  # try again at a later tick

        future.add_done_callback(done)

    async def _expiry_ticker(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_TICK_S)
            if not self.is_leader:
                continue  # expiry is the leader's decision, through the log
            due = self.tree.next_expiry_ns()
            now_ns = time.time_ns()
            if due is not None and due <= now_ns:
                with contextlib.suppress(RaftInternalError):
                    await self.propose(c.ExpireKeys(now_ns))

    # --- the Ready loop --------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        while self._failed is None:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._handle_readies()

    def _ready_now(self) -> None:
        """A peer's batch was stepped: handle what it made ready now, in this turn of the
        loop, rather than after every other callback of the turn (under load, a turn holds
        dozens of client requests): a follower persists and answers an append at once, and
        a leader commits, applies and answers its clients as soon as a quorum is known.
        Never re-entered (nothing in `_handle_readies` steps a received message)."""
        if not self._handling_readies:
            self._handle_readies()

    def _handle_readies(self) -> None:
        raft = self.raft
        storage = self._storage
        transport = self._transport
        assert raft is not None and storage is not None and transport is not None
        if self._failed is not None:
            return
        self._handling_readies = True
        try:
            self._flush_proposals()
            while raft.has_ready():
                rd = raft.ready()
                # A leader's new entries go out before its own fsync (the sync thread's);
                # every other Ready is durable before anything it carries is sent.
                deferred = (
                    raft.role is Role.LEADER
                    and rd.snapshot is None
                    and not storage.changes_term_or_vote(rd.hard_state)
                )
                try:
                    if rd.snapshot is not None:
                        self._install_snapshot(rd.snapshot)
                    if deferred:
                        storage.write(rd.entries, rd.hard_state)
                    else:
                        storage.save(rd.entries, rd.hard_state)
                except (WalError, OSError) as error:
                    self._fail(f"etcdserver: raft log write failed: {error}")
                    return
                transport.send(rd.messages)
                self._apply(rd)
                self._serve_reads(rd.read_states)
                if rd.soft_state is not None:
                    self._leader_changed(rd)
                raft.advance(rd)
                if storage.dirty:
                    assert self._sync_thread is not None
                    self._sync_thread.request()
                elif rd.entries:
                    raft.persisted(*storage.sync())  # synced by `save`: a leader counts it
                try:
                    self._maybe_snapshot()
                except (WalError, OSError) as error:
                    self._fail(f"etcdserver: snapshot failed: {error}")
                    return
        finally:
            self._handling_readies = False

    def _synced(self, index: int, term: int) -> None:
        """The sync thread made the log durable up to `index`: the core may count the
        leader's own copy toward a commit."""
        if self.raft is not None and self._failed is None:
            self.raft.persisted(index, term)
            self._wakeup.set()

    def _sync_failed(self, reason: str) -> None:
        self._fail(f"etcdserver: raft log sync failed: {reason}")

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        """A leader's snapshot (MsgSnap): durable first, then the log restarts after it,
        then the state and the dedup table are replaced (Raft §7)."""
        assert self._storage is not None
        try:
            state, dedup = self._state_from(snapshot)
        except (ValueError, KeyError, TypeError, struct.error) as error:
            # Checked before anything is written: the log and the state stay as they were.
            raise WalError(
                f"the leader's snapshot at {snapshot.meta.index} does not decode"
            ) from error
        save_snapshot(self.snap_dir, to_snapshot_file(snapshot))
        self._storage.rewrite(snapshot.meta.index + 1, ())
        _log.info(
            "member %x: installed the leader's snapshot at %d (term %d)",
            self.member_id,
            snapshot.meta.index,
            snapshot.meta.term,
        )
        old_tree = self.state.tree
        self.state, self._applied_sequences = state, dedup
        self._snapshot = snapshot
        if self._transport is not None:
            self._transport.set_peers(self._known_peers())
        # Watchers registered on the old tree would never fire again: end them as an
        # overflowed watch ends (the stream closes), so clients watch again.
        for bucket in list(old_tree.watchers.values()):
            for watcher in list(bucket):
                old_tree.remove_watcher(watcher)
                sink = watcher.sink
                if isinstance(sink, WatchSink):
                    sink.overflowed = True
                    sink._wake()
        self._release_reads()

    def _maybe_snapshot(self) -> None:
        """Every --snapshot-count applied entries: save a snapshot of the applied state in a
        forked child, then (`_snapshot_saved`) compact the core and the raft log to the
        previous one (see the module docstring); both only after the new snapshot is
        durable. The child encodes a copy-on-write image of the state as it is now, so the
        loop does not stop for the encoding (0.3 s at 140,000 keys, on every member at the
        same index); one snapshot at a time."""
        raft = self.raft
        assert raft is not None
        if self._snapshot_child is not None:
            return
        applied = self.state.applied_index
        last = self._snapshot.meta.index if self._snapshot is not None else BOOTSTRAP_INDEX
        if applied - last < self.config.snapshot_count:
            return
        term = raft.log.term(applied)
        if term is None:
            return  # not in the log (just restored from a snapshot): nothing to take
        meta = SnapshotMeta(applied, term, tuple(sorted(raft.voters)))
        try:
            pid = os.fork()
        except OSError as error:
            _log.warning(
                "member %x: cannot fork for a snapshot (%s); saving inline", self.member_id, error
            )
            self._snapshot_saved(Snapshot(meta, self._save_snapshot(meta)))
            return
        if pid == 0:
            _snapshot_child_main(self._save_snapshot, meta)
        pidfd = os.pidfd_open(pid)
        self._snapshot_child = (pid, pidfd, meta)
        asyncio.get_running_loop().add_reader(pidfd, self._snapshot_child_exited)

    def _save_snapshot(self, meta: SnapshotMeta) -> bytes:
        """Encode and durably save the applied state as the snapshot `meta` names."""
        payload = encode_payload(self.state, self._applied_sequences)
        save_snapshot(self.snap_dir, to_snapshot_file(Snapshot(meta, payload)))
        return payload

    def _snapshot_child_exited(self) -> None:
        assert self._snapshot_child is not None
        pid, pidfd, meta = self._snapshot_child
        self._snapshot_child = None
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if self.raft is None or self._failed is not None:
            return
        if os.waitstatus_to_exitcode(status) != 0:
            self._fail(
                f"etcdserver: snapshot at {meta.index} failed (the snapshot process "
                f"ended with status {os.waitstatus_to_exitcode(status)})"
            )
            return
        path = self.snap_dir / snapshot_name(meta.term, meta.index)
        try:
            snapshot = from_snapshot_file(decode_snapshot(path.read_bytes()))
        except (OSError, SnapshotError) as error:
            self._fail(f"etcdserver: snapshot at {meta.index} unreadable after saving: {error}")
            return
        try:
            self._snapshot_saved(snapshot)
        except (WalError, OSError) as error:
            self._fail(f"etcdserver: snapshot failed: {error}")

    def _snapshot_saved(self, snapshot: Snapshot) -> None:
        """`snapshot` is durable: compact to the previous one, keeping the catch-up tail."""
        raft = self.raft
        storage = self._storage
        assert raft is not None and storage is not None
        if self._snapshot is not None and self._snapshot.meta.index >= snapshot.meta.index:
            return  # a leader's newer snapshot was installed meanwhile
        previous = self._snapshot
        self._snapshot = snapshot
        applied = snapshot.meta.index
        if previous is None or previous.meta.index > applied - self.catch_up_entries:
            return
        if previous.meta.index <= raft.log.snapshot.meta.index:
            return  # the core is already compacted that far
        raft.compact(previous)
        storage.rewrite(previous.meta.index + 1, raft.log.all_entries())
        _log.info(
            "member %x: snapshot at %d; raft log compacted to %d",
            self.member_id,
            applied,
            previous.meta.index,
        )

    def _leader_changed(self, rd: Ready) -> None:
        assert rd.soft_state is not None
        self._soft_state_changed.set()
        lead = rd.soft_state.leader
        if self._transport is not None:
            self._transport.leader = lead if lead not in (NONE, self.member_id) else None
        _log.info(
            "member %x: %s, leader %s, term %d",
            self.member_id,
            rd.soft_state.role.value,
            f"{lead:x}" if lead != NONE else "none",
            self.term,
        )
        if lead != NONE:
            # A new leader: proposals waiting for one, or sent to the old one and possibly
            # lost with it, go (again) now rather than at the next tick.
            for p in self._proposals.values():
                if not p.future.done() and (p.conf_change is None or not p.proposed):
                    self._try_propose(p)

    def _apply(self, rd: Ready) -> None:
        if not rd.committed_entries:
            return
        now_ns = time.time_ns()
        deliveries: list[tuple[Watcher, Event]] = []
        for entry in rd.committed_entries:
            if entry.index <= self.state.applied_index:
                continue  # the bootstrap entry, or one applied before a restart's replay
            self._apply_entry(entry, now_ns, deliveries)
        if deliveries:
            # As node.py: watchers one loop step behind the proposers' answers.
            asyncio.get_running_loop().call_soon(self._deliver_all, deliveries)
        self._release_reads()

    def _apply_entry(
        self, entry: Entry, now_ns: int, deliveries: list[tuple[Watcher, Event]]
    ) -> None:
        if entry.kind is EntryKind.CONF_CHANGE:
            self._apply_conf_change(entry, now_ns)
            return
        if not entry.data:
            # A new leader's empty entry.
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        try:
            proposer, sequence, payload = unwrap_proposal(entry.data)
            mine = self._proposals.get(sequence) if proposer == self.member_id else None
            if mine is not None and mine.data == entry.data:
                # Our own waiting proposal: the command it was encoded from, not decoded
                # again (the bytes are the same, so the outcome is the same everywhere).
                command = mine.command
            else:
                command = c.decode_command(payload)
        except (CodecError, ValueError, KeyError, TypeError) as error:
            # Every member sees the same bytes, so every member skips it alike.
            _log.error("entry %d does not decode (%s); applied as a no-op", entry.index, error)
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        if self._is_duplicate(proposer, sequence):
            # A proposal made again after a leader change whose first copy was committed
            # after all: applied once, the repeat is a no-op on every member alike.
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        result = self.state.apply_entry(entry.index, command, now_ns)
        if isinstance(result, ApplyResult) and result.deliveries:
            deliveries.extend(result.deliveries)
        if isinstance(command, c.UpdateMember) and self._transport is not None:
            pid = int(command.member_id, 16)
            if pid != self.member_id and command.peer_urls:
                self._transport.add_peer(pid, command.peer_urls[0])
        if proposer != self.member_id:
            return
        proposal = self._proposals.pop(sequence, None)
        if proposal is None or proposal.future.done():
            return  # timed out, or the client went away; applied all the same
        if isinstance(result, AuthError):
            proposal.future.set_exception(result)
        else:
            proposal.future.set_result(result)

    def _apply_conf_change(self, entry: Entry, now_ns: int) -> None:
        """A membership change: the state's members and the transport's peers here; the
        core's voters when the Ready is advanced. A member that removed itself stops."""
        try:
            change = ConfChange.decode(entry.data)
            context = json.loads(change.context) if change.context else {}
            proposer = int(context.get("proposer", 0))
            sequence = int(context.get("sequence", 0))
            peer_urls = tuple(str(u) for u in context.get("peerURLs", ()))
        except (ValueError, TypeError, AttributeError) as error:
            _log.error("conf change %d does not decode (%s)", entry.index, error)
            self.state.apply_entry(entry.index, c.Noop(), now_ns)
            return
        hex_id = f"{change.node_id:x}"
        command: object
        if proposer and self._is_duplicate(proposer, sequence):
            command = c.Noop()
        elif change.kind is ConfChangeKind.ADD_VOTER:
            command = c.AddMember(hex_id, peer_urls)
        else:
            command = c.RemoveMember(hex_id)
        self.state.apply_entry(entry.index, command, now_ns)
        if proposer == self.member_id:
            # Answered first: a member removing itself fails what is left right after.
            proposal = self._proposals.pop(sequence, None)
            if proposal is not None and not proposal.future.done():
                proposal.future.set_result(None)
        transport = self._transport
        if isinstance(command, c.AddMember):
            _log.info("member %x: added member %s %s", self.member_id, hex_id, list(peer_urls))
            if transport is not None and change.node_id != self.member_id and peer_urls:
                transport.add_peer(change.node_id, peer_urls[0])
        elif isinstance(command, c.RemoveMember):
            _log.info("member %x: removed member %s", self.member_id, hex_id)
            if change.node_id == self.member_id:
                self._fail("the member has been permanently removed from the cluster")
                self.removed.set()
            elif transport is not None:
                transport.remove_peer(change.node_id)

    def _is_duplicate(self, proposer: int, sequence: int) -> bool:
        """Whether (proposer, sequence) was applied before; records it if not.

        Derived from the log alone (every member applies the same entries in the same order,
        and a restart replays them), so every member decides alike. Bounded: a proposal is
        repeated only within its deadline, long before `DEDUP_WINDOW` later proposals of the
        same member have been applied. Snapshots carry it (`encode_payload`).
        """
        seen = self._applied_sequences.get(proposer)
        if seen is None:
            seen = self._applied_sequences[proposer] = ({}, deque())
        members, order = seen
        if sequence in members:
            return True
        members[sequence] = None
        order.append(sequence)
        if len(order) > DEDUP_WINDOW:
            del members[order.popleft()]
        return False

    def _serve_reads(self, read_states: tuple[ReadState, ...]) -> None:
        for rs in read_states:
            read = self._reads.get(rs.context)
            if read is not None:
                read.index = rs.index
        self._release_reads()

    def _release_reads(self) -> None:
        applied = self.state.applied_index
        for read in self._reads.values():
            if read.index and read.index <= applied and not read.future.done():
                read.future.set_result(None)

    def _fail(self, reason: str) -> None:
        _log.critical("member %x: %s; refusing requests until restart", self.member_id, reason)
        self._failed = reason
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(RaftInternalError(reason))
        self._proposals.clear()
        for read in self._reads.values():
            if not read.future.done():
                read.future.set_exception(RaftInternalError(reason))

    def _deliver_all(self, deliveries: list[tuple[Watcher, Event]]) -> None:
        for watcher, event in deliveries:
            sink = watcher.sink
            if isinstance(sink, WatchSink) and not sink.push(event):
                self.tree.remove_watcher(watcher)
