"""The key tree as a pure state machine: etcd 3.4's v2 store semantics, applied from commands."""

from __future__ import annotations

import random

import pytest

from dockyard.store import commands as c
from dockyard.store.errors import StoreError
from dockyard.store.tree import Event, KeyTree, ttl_seconds

pytestmark = pytest.mark.unit
NOW = 1_800_000_000 * 10**9
S = 10**9


def ok(tree: KeyTree, command: object, now_ns: int = NOW) -> Event:
    result = tree.apply(command, now_ns)
    assert result.error is None, result.error
    assert result.event is not None
    return result.event


def err(tree: KeyTree, command: object) -> StoreError:
    before = tree.index
    result = tree.apply(command, NOW)
    assert result.error is not None and result.event is None
    assert tree.index == before, "a failed command must not move the index"
    return result.error


def test_set_then_replace_is_a_new_node_with_prev_node() -> None:
    tree = KeyTree()
    first = ok(tree, c.SetKey("/a", "1"))
    assert first.is_created and first.index == 1 and first.prev_node is None
    second = ok(tree, c.SetKey("/a", "2"))
    assert not second.is_created
    assert second.node.created_index == 2, "a replace gives a new createdIndex"
    assert second.prev_node is not None and second.prev_node.value == "1"


def test_implicit_dirs_get_the_creating_index_and_errors_name_components() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/x/y/z", "v"))
    assert tree.lookup("/x").created_index == 1
    assert err(tree, c.SetKey("/x/y/z/w", "v")).cause == "/x/y/z"  # 104 blocking file
    with pytest.raises(StoreError) as missing:
        tree.lookup("/q/r")
    assert missing.value.code == 100 and missing.value.cause == "/q"


@pytest.mark.parametrize(
    ("command", "code", "cause"),
    [
        (c.SetKey("/", "v"), 107, "/"),
        (c.UpdateKey("/", "v"), 107, "/"),
        (c.DeleteKey("/", recursive=True), 107, "/"),
        (c.CompareAndDelete("/", "x", 0), 102, ""),  # etcd quirk: no cause
        (c.CreateKey("/d", "v"), 105, "/d"),
        (c.SetKey("/d", "v"), 102, "/d"),
        (c.DeleteKey("/d"), 102, "/d"),
        (c.DeleteKey("/d", dir=True), 108, "/d"),
        (c.CompareAndSwap("/d", "v", "x", 0), 102, "/d"),
        (c.UpdateKey("/d", "nonempty"), 102, "/d"),
        (c.UpdateKey("/nope", "v"), 100, "/nope"),
    ],
)
def test_errors_have_etcds_codes_and_causes(command: object, code: int, cause: str) -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/d/f", "v"))
    error = err(tree, command)
    assert (error.code, error.cause, error.index) == (code, cause, 1)


def test_compare_failures_report_what_differed() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/k", "two"))
    assert err(tree, c.CompareAndSwap("/k", "n", "zzz", 0)).cause == "[zzz != two]"
    assert err(tree, c.CompareAndSwap("/k", "n", None, 7)).cause == "[7 != 1]"
    assert err(tree, c.CompareAndSwap("/k", "n", "zzz", 7)).cause == "[zzz != two] [7 != 1]"
    assert err(tree, c.CompareAndSwap("/k", "n", "two", 7)).cause == "[7 != 1]"
    event = ok(tree, c.CompareAndSwap("/k", "three", "two", 1))
    assert event.node.created_index == 1 and event.node.modified_index == 2


def test_any_write_without_ttl_makes_the_key_permanent() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/t", "v", expire_ns=NOW + 10 * S))
    assert ok(tree, c.CompareAndSwap("/t", "w", "v", 0)).node.expire_ns is None
    assert tree.next_expiry_ns() is None


def test_dir_modified_index_never_changes_on_update() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/dir", "", dir=True))
    event = ok(tree, c.UpdateKey("/dir", "", expire_ns=NOW + 5 * S))
    assert event.node.modified_index == 2 and event.node.dir and event.node.ttl == 5
    assert tree.lookup("/dir").modified_index == 1


def test_in_order_keys_are_the_new_index_zero_padded() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/other", "x"))
    event = ok(tree, c.CreateInOrderKey("/queue", "job"))
    assert event.node.key == "/queue/00000000000000000002" and event.action == "create"
    assert ok(tree, c.CreateInOrderKey("/", "r")).node.key == "/00000000000000000003"
    assert err(tree, c.CreateInOrderKey("/other", "x")).code == 104


def test_expiry_removes_due_keys_in_deadline_order_with_one_index_each() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/late", "v", expire_ns=NOW + 3 * S))
    ok(tree, c.SetKey("/dir", "", dir=True, expire_ns=NOW + 1 * S))
    ok(tree, c.SetKey("/dir/child", "v"))
    ok(tree, c.SetKey("/keep", "v"))
    result = tree.apply(c.ExpireKeys(NOW + 2 * S), NOW + 2 * S)
    assert [(e.action, e.node.key, e.node.dir, e.index) for e in result.expired] == [
        ("expire", "/dir", True, 5)
    ]
    assert tree.index == 5 and tree.next_expiry_ns() == NOW + 3 * S
    assert tree.apply(c.ExpireKeys(NOW + 3 * S), NOW).expired[0].node.key == "/late"


def test_refresh_uses_an_index_but_wakes_no_watcher() -> None:
    tree = KeyTree()
    ok(tree, c.SetKey("/hb", "v", expire_ns=NOW + 5 * S))
    _watcher, found = tree.add_watcher("/hb", False, True, 0)
    assert found is None
    result = tree.apply(c.UpdateKey("/hb", "", NOW + 9 * S, refresh=True), NOW)
    assert result.event is not None and result.event.refresh
    assert result.event.node.value == "v" and tree.index == 2
    assert result.deliveries == []
    assert tree.scan_history("/hb", False, 2) is None, "history scans skip refreshes"


def test_watchers_see_own_key_recursive_children_and_ancestor_deletes() -> None:
    tree = KeyTree()
    exact, _ = tree.add_watcher("/a/b", False, True, 0)
    recursive, _ = tree.add_watcher("/a", True, True, 0)
    dir_only, _ = tree.add_watcher("/a", False, True, 0)
    seen = tree.apply(c.SetKey("/a/b", "1"), NOW).deliveries
    assert {id(w) for w, _ in seen} == {id(exact), id(recursive)}
    seen = tree.apply(c.DeleteKey("/a", recursive=True), NOW).deliveries
    assert sorted(id(w) for w, _ in seen) == sorted([id(exact), id(recursive), id(dir_only)])
    assert all(e.node.key == "/a" and e.node.dir for _, e in seen)


def test_hidden_keys_are_suppressed_live_but_found_in_history() -> None:
    tree = KeyTree()
    watcher, _ = tree.add_watcher("/", True, True, 0)
    assert tree.apply(c.SetKey("/_hidden/x", "v"), NOW).deliveries == []
    assert tree.apply(c.SetKey("/seen", "v"), NOW).deliveries[0][0] is watcher
    _, found = tree.add_watcher("/", True, False, 1)
    assert found is not None and found.node.key == "/_hidden/x"  # etcd quirk #1677


def test_history_keeps_1000_events_and_reports_what_was_cleared() -> None:
    tree = KeyTree()
    for i in range(1073):
        ok(tree, c.SetKey(f"/k{i % 7}", str(i)))
    assert tree.scan_history("/k3", False, 74) is not None
    with pytest.raises(StoreError) as cleared:
        tree.scan_history("/k3", False, 73)
    assert cleared.value.code == 401 and cleared.value.http_status == 400
    assert cleared.value.cause == "the requested history has been cleared [74/73]"


def test_one_shot_watch_is_removed_after_firing_and_stream_stays() -> None:
    tree = KeyTree()
    tree.add_watcher("/k", False, False, 0)
    tree.add_watcher("/k", False, True, 0)
    assert tree.watcher_count == 2
    assert len(tree.apply(c.SetKey("/k", "1"), NOW).deliveries) == 2
    assert tree.watcher_count == 1
    assert len(tree.apply(c.DeleteKey("/k"), NOW).deliveries) == 1, "delivered once, not twice"


@pytest.mark.parametrize(
    ("remaining_ns", "ttl"),
    [(5 * S, 5), (4 * S + 1, 5), (1, 1), (0, 0), (-S // 2, 0), (-3 * S // 2, -1)],
)
def test_ttl_is_a_ceiling_with_gos_truncating_division(remaining_ns: int, ttl: int) -> None:
    assert ttl_seconds(NOW + remaining_ns, NOW) == ttl


def test_snapshot_round_trip_preserves_everything_observable() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tree = KeyTree()
    for i in range(300):
        key = "/" + "/".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))
        expire = NOW + rng.randint(1, 9) * S if rng.random() < 0.3 else None
        op = rng.choice(
            [
                c.SetKey(key, str(i), expire_ns=expire),
                c.DeleteKey(key, recursive=True),
                c.CreateInOrderKey(key, str(i)),
            ]
        )
        tree.apply(op, NOW)
    copy = KeyTree.from_snapshot(tree.to_snapshot())
    assert copy.to_snapshot() == tree.to_snapshot(), f"seed={seed}"
    assert copy.next_expiry_ns() == tree.next_expiry_ns(), f"seed={seed}"
    later = c.ExpireKeys(NOW + 10 * S)
    a, b = tree.apply(later, NOW), copy.apply(later, NOW)
    assert [e.node.key for e in a.expired] == [e.node.key for e in b.expired], f"seed={seed}"


def test_membership_writes_consume_indexes_as_etcds_and_survive_snapshots() -> None:
    tree = KeyTree()
    ok(tree, c.Bootstrap("a1", "one", ("http://a:2380",), ("http://a:2379",)))
    start = tree.index
    # etcd: AddMember writes raftAttributes (1); RemoveMember deletes the member and records
    # it under removed_members (2); UpdateMember rewrites raftAttributes (1).
    ok(tree, c.AddMember("b2", ("http://b:2380",)))
    assert tree.index == start + 1
    assert tree.members["b2"] == {"name": "", "peerURLs": ["http://b:2380"], "clientURLs": []}
    ok(tree, c.UpdateMember("b2", ("http://b:2390",)))
    assert tree.index == start + 2 and tree.members["b2"]["peerURLs"] == ["http://b:2390"]
    ok(tree, c.RemoveMember("a1"))
    assert tree.index == start + 4
    assert set(tree.members) == {"b2"} and tree.removed_members == {"a1"}
    copy = KeyTree.from_snapshot(tree.to_snapshot())
    assert copy.members == tree.members and copy.removed_members == {"a1"}
    # Internal writes are in the history (they use indexes) under keys no user path matches.
    internal = list(tree.history_events(start + 1))
    assert len(internal) == 4 and all(e.node.key.startswith("\x00/0/") for e in internal)
