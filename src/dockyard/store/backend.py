"""What the HTTP layer (`http_v2`, `http_auth`) needs of a store member.

Two implementations: `node.StoreNode` (one member: its own WAL, every write applied once it
is durable) and `cluster.member.ClusterMember` (several members: a write is applied once Raft
commits it). The HTTP layer must use nothing else, so either can serve it unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from dockyard.store.auth import AuthState
from dockyard.store.node import WatchSink
from dockyard.store.tree import KeyTree, Watcher


class FollowerStats(Protocol):
    success: int
    fail: int
    latencies_s: list[float]


class StoreBackend(Protocol):
    member_id: int
    cluster_id: int
    start_time_ns: int

    @property
    def name(self) -> str: ...

    @property
    def tree(self) -> KeyTree: ...

    @property
    def auth(self) -> AuthState: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def term(self) -> int: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def leader_id(self) -> int | None:
        """The leader's member id, or None during an election."""

    @property
    def is_leader(self) -> bool: ...

    def follower_stats(self) -> dict[int, Any]:
        """Per follower (on the leader): an object with success, fail and latencies_s."""

    def propose(self, command: object) -> asyncio.Future[Any]: ...

    async def read_barrier(self) -> None: ...

    def watch(
        self, key: str, recursive: bool, stream: bool, since_index: int
    ) -> tuple[Watcher, WatchSink]: ...

    def unwatch(self, watcher: Watcher) -> None: ...

    # /v2/members changes; MembershipError (errors.py) carries etcd's status and message.
    async def add_member(self, peer_urls: tuple[str, ...]) -> dict[str, Any]: ...

    async def remove_member(self, member_id: str) -> None: ...

    async def update_member(self, member_id: str, peer_urls: tuple[str, ...]) -> None: ...
