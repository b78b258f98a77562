"""The key tree against a plain dict model (hypothesis state machine): files under a few
directories, every write kind, TTL expiry, and the invariants that must always hold."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dockyard.store import commands as c
from dockyard.store.errors import StoreError
from dockyard.store.tree import KeyTree

NOW = 1_800_000_000 * 10**9
S = 10**9
keys = st.sampled_from([f"/{d}/{k}" for d in ("a", "b") for k in ("x", "y", "z")])
values = st.sampled_from(["", "v1", "v2", "ü", "<&>"])
ttls = st.one_of(st.none(), st.integers(min_value=1, max_value=5))


class TreeAgainstDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = KeyTree()
        self.model: dict[str, tuple[str, int, int | None]] = {}  # key -> value, mod, expire
        self.now_ns = NOW
        self.last_index = 0

    def _expire(self, ttl: int | None) -> int | None:
        return None if ttl is None else self.now_ns + ttl * S

    def _check(self, command: object, expect_ok: bool) -> None:
        result = self.tree.apply(command, self.now_ns)
        assert (result.error is None) == expect_ok, (command, result.error)
        if expect_ok:
            assert result.event is not None and result.event.index == self.tree.index

    @rule(key=keys, value=values, ttl=ttls)
    def set(self, key: str, value: str, ttl: int | None) -> None:
        self._check(c.SetKey(key, value, expire_ns=self._expire(ttl)), True)
        self.model[key] = (value, self.tree.index, self._expire(ttl))

    @rule(key=keys, value=values)
    def create(self, key: str, value: str) -> None:
        exists = key in self.model
        self._check(c.CreateKey(key, value), not exists)
        if not exists:
            self.model[key] = (value, self.tree.index, None)

    @rule(key=keys, value=values, ttl=ttls)
    def update(self, key: str, value: str, ttl: int | None) -> None:
        exists = key in self.model
        self._check(c.UpdateKey(key, value, self._expire(ttl)), exists)
        if exists:
            self.model[key] = (value, self.tree.index, self._expire(ttl))

    @rule(key=keys, value=values, prev=values, use_index=st.booleans())
    def compare_and_swap(self, key: str, value: str, prev: str, use_index: bool) -> None:
        current = self.model.get(key)
        prev_index = current[1] if (use_index and current) else 0
        prev_value = prev or None
        matches = current is not None and (not prev_value or current[0] == prev_value)
        self._check(c.CompareAndSwap(key, value, prev_value, prev_index), matches)
        if matches:
            self.model[key] = (value, self.tree.index, None)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        exists = key in self.model
        self._check(c.DeleteKey(key), exists)
        self.model.pop(key, None)

    @rule(key=keys, prev=values)
    def compare_and_delete(self, key: str, prev: str) -> None:
        current = self.model.get(key)
        matches = current is not None and (not prev or current[0] == prev)
        self._check(c.CompareAndDelete(key, prev or None, 0), matches)
        if matches:
            del self.model[key]

    @rule(seconds=st.integers(min_value=0, max_value=3))
    def time_passes_and_expiry_runs(self, seconds: int) -> None:
        self.now_ns += seconds * S
        due = sorted(k for k, (_, _, e) in self.model.items() if e is not None and e <= self.now_ns)
        result = self.tree.apply(c.ExpireKeys(self.now_ns), self.now_ns)
        assert sorted(e.node.key for e in result.expired) == due
        for key in due:
            del self.model[key]

    @invariant()
    def every_model_key_reads_back(self) -> None:
        for key, (value, modified, expire) in self.model.items():
            node = self.tree.lookup(key)
            assert (node.value, node.modified_index, node.expire_ns) == (value, modified, expire)
        for directory in ("/a", "/b"):
            try:
                children = self.tree.lookup(directory).children or {}
            except StoreError:
                children = {}
            present = {f"{directory}/{name}" for name in children}
            assert present == {k for k in self.model if k.startswith(directory + "/")}

    @invariant()
    def index_is_monotonic_and_history_contiguous(self) -> None:
        assert self.tree.index >= self.last_index
        self.last_index = self.tree.index
        indexes = [e.index for e in self.tree.history_events(self.tree.history_start)]
        assert indexes == list(range(self.tree.history_start, self.tree.index + 1)) or (
            not indexes and self.tree.index == 0
        )


TreeAgainstDict.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_tree_against_dict = pytest.mark.unit(TreeAgainstDict.TestCase)
