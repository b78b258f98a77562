"""The store's replicated state: the key tree and the auth state, advanced entry by entry.

Role: the one place that knows how a log entry changes the state machines, so that the live
node, recovery from snapshot + WAL, and the simulations all apply entries identically.

Invariants: entries are applied in index order with no gaps (`apply_entry` checks); the
state after applying entries 1..N is a function of those entries alone (`now_ns` only shapes
the ttl shown in events). Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.store import commands as c
from dockyard.store.auth import _APPLY as _AUTH_APPLY
from dockyard.store.auth import AuthError, AuthState
from dockyard.store.tree import ApplyResult, KeyTree

_AUTH_COMMANDS = tuple(_AUTH_APPLY)


class StateInvariantError(Exception):
    pass


class StoreState:
    def __init__(
        self, tree: KeyTree | None = None, auth: AuthState | None = None, applied_index: int = 0
    ) -> None:
        self.tree = tree or KeyTree()
        self.auth = auth or AuthState()
        self.applied_index = applied_index

    def apply_entry(self, index: int, command: object, now_ns: int) -> ApplyResult | Any:
        """Apply the log entry at `index`. Returns the tree's ApplyResult, or auth's
        AuthApplied; an AuthError is returned (not raised) so the log goes on."""
        if index != self.applied_index + 1:
            raise StateInvariantError(f"entry {index} applied after {self.applied_index}")
        self.applied_index = index
        if isinstance(command, _AUTH_COMMANDS):
            try:
                applied = self.auth.apply(command)
            except AuthError as error:
                self.tree.consume_internal_indexes(error.index_writes)
                return error
            self.tree.consume_internal_indexes(applied.index_writes)
            return applied
        if isinstance(command, c.ExpireKeys):
            now_ns = command.now_ns
        return self.tree.apply(command, now_ns)

    def to_snapshot_bytes(self) -> bytes:
        return json.dumps(
            {
                "tree": self.tree.to_snapshot(),
                "auth": self.auth.to_json(),
                "applied_index": self.applied_index,
            }
        ).encode()

    @classmethod
    def from_snapshot_bytes(cls, data: bytes, index: int) -> StoreState:
        decoded = json.loads(data)
        return cls(
            KeyTree.from_snapshot(decoded["tree"]), AuthState.from_json(decoded["auth"]), index
        )


class StateView:
    """The applied state's read side, as every store member exposes it to the HTTP layer
    (`backend.StoreBackend`): `StoreNode` and `ClusterMember` hold a `state` and share these."""

    state: StoreState

    @property
    def tree(self) -> KeyTree:
        return self.state.tree

    @property
    def auth(self) -> AuthState:
        return self.state.auth

    @property
    def applied_index(self) -> int:
        return self.state.applied_index
