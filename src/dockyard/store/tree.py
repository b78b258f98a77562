"""The v2 key tree: the store's state machine, applied from the ordered log.

Role: hold the keys, directories, TTL deadlines, the global store index and the 1000-event
history, and apply log commands (`commands.py`) to them exactly as etcd 3.4's v2 store does
(`etcdserver/api/v2store/store.go`, `node.go`, `event_history.go`, `watcher_hub.go`).

Invariants:
- Applying a command depends only on the tree and the command. `now_ns` is passed to `apply`
  only to compute the `ttl` *shown* in the event (presentation), never to decide anything;
  expiry is decided by `ExpireKeys(now_ns)` commands that carry the leader's clock.
- Every successful write, refresh and expiry raises the store index by exactly 1 and adds
  exactly one event to the history, so history indexes are contiguous.
- Failed commands change nothing (they still consume a log entry, as in etcd).
- A directory's stored modifiedIndex never changes after creation (etcd 3.4 quirk: `n.Write`
  fails silently on dirs).

Watchers live here too (the hub must see deletes of whole subtrees as they happen), but
delivery is the driver's job: `apply` returns the (watcher, event) pairs to deliver.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.store import commands as c
from dockyard.store.errors import (
    CompareFailed,
    DirectoryNotEmpty,
    HistoryCleared,
    KeyAlreadyExists,
    KeyNotFound,
    NotADirectory,
    NotAFile,
    RootReadOnly,
    StoreError,
)

HISTORY_CAPACITY = 1000
# etcd: expire times before 2000-01-01 are treated as permanent (a zero time from JSON).
MIN_EXPIRE_NS = 946_684_800 * 1_000_000_000
_NS_PER_S = 1_000_000_000
# Internal events (membership writes kept in etcd's v2 store) use keys no user path can match.
_INTERNAL_PREFIX = "\x00"


def ttl_seconds(expire_ns: int, now_ns: int) -> int:
    """etcd's ttl: ceil((expire - now) / 1s) with Go's truncating division (may be <= 0)."""
    remaining = expire_ns - now_ns
    whole = abs(remaining) // _NS_PER_S
    quotient = whole if remaining >= 0 else -whole
    if remaining - quotient * _NS_PER_S > 0:
        quotient += 1
    return quotient


@dataclass(frozen=True, slots=True)
class NodeValue:
    """A node as an event reports it (never with children)."""

    key: str
    value: str | None  # None: no `value` field (dirs; the node of a delete or expire event)
    dir: bool
    modified_index: int
    created_index: int
    expire_ns: int | None = None
    ttl: int = 0  # as computed when the event happened; 0 is omitted


@dataclass(frozen=True, slots=True)
class Event:
    action: str
    node: NodeValue
    prev_node: NodeValue | None = None
    refresh: bool = False
    # The boundary caches the rendered event here, so that a hundred watchers of one event
    # share one rendering. Not part of the value.
    rendered: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    @property
    def index(self) -> int:
        return self.node.modified_index

    @property
    def is_created(self) -> bool:
        """etcd answers 201 for a create, or a set that replaced nothing."""
        return self.action == "create" or (self.action == "set" and self.prev_node is None)


class Node:
    """A mutable tree node; `children is None` means a file."""

    __slots__ = (
        "children",
        "created_index",
        "expire_ns",
        "key",
        "modified_index",
        "parent",
        "render_cache",
        "value",
    )

    def __init__(
        self,
        key: str,
        value: str,
        children: dict[str, Node] | None,
        created_index: int,
        parent: Node | None,
        expire_ns: int | None,
    ) -> None:
        self.key = key
        self.value = value
        self.children = children
        self.created_index = created_index
        self.modified_index = created_index
        self.parent = parent
        self.expire_ns = expire_ns
        # The boundary may cache this node's rendered GET body here; every in-place change
        # below resets it (replacements are new nodes).
        self.render_cache: bytes | None = None

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[1]

    def value_at(self, now_ns: int) -> NodeValue:
        """etcd's `Repr(false, false)`: the node without children, ttl as of `now_ns`."""
        ttl = ttl_seconds(self.expire_ns, now_ns) if self.expire_ns is not None else 0
        return NodeValue(
            self.key,
            None if self.children is not None else self.value,
            self.children is not None,
            self.modified_index,
            self.created_index,
            self.expire_ns,
            ttl,
        )


def is_hidden_name(name: str) -> bool:
    return name.startswith("_")


def is_hidden_below(watch_path: str, key: str) -> bool:
    """etcd's isHidden: does `key`, seen from `watch_path`, pass through a `_` component?"""
    if len(watch_path) > len(key):
        return False
    after = "/" + key[len(watch_path) :]
    return "/_" in clean_path(after)


def clean_path(path: str) -> str:
    """Go's path.Clean for absolute paths."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


@dataclass(eq=False, slots=True)
class Watcher:
    """A registered watch. `sink` is the driver's (a queue); the tree never touches it."""

    key: str
    recursive: bool
    stream: bool
    since_index: int
    start_index: int  # the store index when registered (etcd's X-Etcd-Index for watches)
    sink: Any = None
    removed: bool = False
    last_index: int = 0  # index of the last event handed out, so no event goes out twice


@dataclass(slots=True)
class StoreStats:
    """etcd's /v2/stats/store counters (watchers is filled in from the hub)."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "getsSuccess",
                "getsFail",
                "setsSuccess",
                "setsFail",
                "deleteSuccess",
                "deleteFail",
                "updateSuccess",
                "updateFail",
                "createSuccess",
                "createFail",
                "compareAndSwapSuccess",
                "compareAndSwapFail",
                "compareAndDeleteSuccess",
                "compareAndDeleteFail",
                "expireCount",
            ),
            0,
        )
    )

    def inc(self, name: str) -> None:
        self.counts[name] += 1


_STAT_NAMES: dict[type, tuple[str, str]] = {
    c.SetKey: ("setsSuccess", "setsFail"),
    c.CreateKey: ("createSuccess", "createFail"),
    c.CreateInOrderKey: ("createSuccess", "createFail"),
    c.UpdateKey: ("updateSuccess", "updateFail"),
    c.CompareAndSwap: ("compareAndSwapSuccess", "compareAndSwapFail"),
    c.DeleteKey: ("deleteSuccess", "deleteFail"),
    c.CompareAndDelete: ("compareAndDeleteSuccess", "compareAndDeleteFail"),
}


@dataclass(slots=True)
class ApplyResult:
    """What applying one command produced: an event (or an error) and the deliveries."""

    event: Event | None = None
    error: StoreError | None = None
    deliveries: list[tuple[Watcher, Event]] = field(default_factory=list)
    expired: list[Event] = field(default_factory=list)


class KeyTree:
    """The state machine. `apply` is the only way to change it."""

    def __init__(self) -> None:
        self.root = Node("/", "", {}, 0, None, None)
        self.index = 0
        self.history: list[Event | None] = [None] * HISTORY_CAPACITY
        self.history_start = 0  # index of the oldest kept event (0: none yet)
        self.history_len = 0
        self._ttl_heap: list[tuple[int, str, int, Node]] = []
        self._ttl_live = 0
        self._heap_seq = 0
        self.watchers: dict[str, list[Watcher]] = {}
        self.watcher_count = 0
        self.stats = StoreStats()
        self.members: dict[str, dict[str, Any]] = {}
        self.removed_members: set[str] = set()
        self.cluster_version = ""
        self._deliveries: list[tuple[Watcher, Event]] = []

    # --- reads ---------------------------------------------------------------------------

    def _walk(self, key: str) -> tuple[Node, str | None]:
        """The node at `key`, or the deepest node on its path and the first missing name.
        Raises 104 at a file in the middle of the path."""
        node = self.root
        if key == "/":
            return node, None
        for name in key[1:].split("/"):
            children = node.children
            if children is None:
                raise NotADirectory(node.key, self.index)
            child = children.get(name)
            if child is None:
                return node, name
            node = child
        return node, None

    def lookup(self, key: str) -> Node:
        """etcd's internalGet: 100 names the first missing component, 104 the blocking file."""
        node, missing = self._walk(key)
        if missing is not None:
            raise KeyNotFound(
                f"{node.key}/{missing}" if node.key != "/" else f"/{missing}", self.index
            )
        return node

    def find(self, key: str) -> Node | None:
        """`lookup` for the apply path: None instead of 100 when a component is missing (a
        PUT of a new key is the common write; building and catching the error cost more than
        the walk). 104 still raises."""
        node, missing = self._walk(key)
        return node if missing is None else None

    def get(self, key: str) -> Node:
        try:
            node = self.lookup(key)
        except StoreError:
            self.stats.inc("getsFail")
            raise
        self.stats.inc("getsSuccess")
        return node

    def next_expiry_ns(self) -> int | None:
        """The earliest TTL deadline of a live key, for the driver's expiry ticker."""
        heap = self._ttl_heap
        while heap:
            expire_ns, _, _, node = heap[0]
            if node.expire_ns == expire_ns and self._attached(node):
                return expire_ns
            heapq.heappop(heap)
        return None

    # --- history -------------------------------------------------------------------------

    def _add_history(self, event: Event) -> None:
        slot = event.index % HISTORY_CAPACITY
        self.history[slot] = event
        if self.history_len < HISTORY_CAPACITY:
            self.history_len += 1
        self.history_start = event.index - self.history_len + 1

    def history_events(self, since_index: int) -> Iterator[Event]:
        if self.history_len == 0:
            return
        for index in range(max(since_index, self.history_start), self.index + 1):
            event = self.history[index % HISTORY_CAPACITY]
            if event is not None:
                yield event

    def scan_history(self, key: str, recursive: bool, since_index: int) -> Event | None:
        """etcd's EventHistory.scan: the first matching event with index >= since_index.

        Raises 401 when since_index is older than the oldest kept event. Refresh events are
        skipped; hidden keys are NOT filtered (etcd quirk #1677).
        """
        if since_index < self.history_start:
            raise HistoryCleared(
                f"the requested history has been cleared [{self.history_start}/{since_index}]",
                self.index,
            )
        if since_index > self.index:
            return None
        prefix = key if key.endswith("/") else key + "/"
        for event in self.history_events(since_index):
            if event.refresh:
                continue
            node_key = event.node.key
            if node_key == key or (recursive and node_key.startswith(prefix)):
                return event
            prev = event.prev_node
            if (
                event.action in ("delete", "expire")
                and prev is not None
                and prev.dir
                and key.startswith(prev.key)
            ):
                return event
        return None

    # --- watchers ------------------------------------------------------------------------

    def add_watcher(
        self, key: str, recursive: bool, stream: bool, since_index: int, sink: Any = None
    ) -> tuple[Watcher, Event | None]:
        """etcd's Watch: returns the watcher and an event from history to deliver at once.

        A one-shot watch satisfied from history is not registered. A stream watch satisfied
        from history is registered from the event after it (etcd would deliver that one event
        and then nothing: we keep streaming).
        """
        if since_index == 0:
            since_index = self.index + 1
        found = self.scan_history(key, recursive, since_index)
        watcher = Watcher(key, recursive, stream, since_index, self.index, sink)
        if found is not None:
            if not stream:
                watcher.removed = True
                return watcher, found
            watcher.since_index = found.index + 1
        self.watchers.setdefault(key, []).append(watcher)
        self.watcher_count += 1
        return watcher, found

    def remove_watcher(self, watcher: Watcher) -> None:
        if watcher.removed:
            return
        watcher.removed = True
        bucket = self.watchers.get(watcher.key)
        if bucket is not None:
            bucket.remove(watcher)
            if not bucket:
                del self.watchers[watcher.key]
        self.watcher_count -= 1

    def _notify_path(self, event: Event, path: str, deleted: bool) -> None:
        bucket = self.watchers.get(path)
        if not bucket:
            return
        original = event.node.key == path
        if not original and is_hidden_below(path, event.node.key):
            return
        index = event.index
        for watcher in list(bucket):
            if (watcher.recursive or original or deleted) and index >= watcher.since_index:
                if watcher.last_index == index:
                    continue  # etcd notifies a watcher of a deleted key twice; once is enough
                watcher.last_index = index
                self._deliveries.append((watcher, event))
                if not watcher.stream:
                    self.remove_watcher(watcher)

    def _notify(self, event: Event) -> None:
        self._add_history(event)
        if not self.watchers:
            return
        key = event.node.key
        self._notify_path(event, "/", False)
        if key != "/":
            end = 0
            while end != -1:
                end = key.find("/", end + 1)
                self._notify_path(event, key if end == -1 else key[:end], False)

    # --- apply ---------------------------------------------------------------------------

    def apply(self, command: object, now_ns: int) -> ApplyResult:
        """Apply one log command. Never raises StoreError: errors are in the result."""
        deliveries: list[tuple[Watcher, Event]] = []
        self._deliveries = deliveries
        result = ApplyResult(deliveries=deliveries)
        handler = _APPLY.get(type(command))
        if handler is None:
            return result  # Noop and commands of other state machines
        stat_names = _STAT_NAMES.get(type(command))
        try:
            event = handler(self, command, now_ns)
        except StoreError as error:
            if stat_names:
                self.stats.inc(stat_names[1])
            result.error = error
        else:
            if stat_names:
                self.stats.inc(stat_names[0])
            if isinstance(event, list):
                result.expired = event
            else:
                result.event = event
        self._deliveries = []
        return result

    def _expire_ns(self, expire_ns: int | None) -> int | None:
        if expire_ns is None or expire_ns < MIN_EXPIRE_NS:
            return None
        return expire_ns

    def _push_ttl(self, node: Node) -> None:
        if node.expire_ns is not None:
            self._heap_seq += 1
            heapq.heappush(self._ttl_heap, (node.expire_ns, node.key, self._heap_seq, node))

    def _attached(self, node: Node) -> bool:
        parent = node.parent
        if parent is None:
            return False
        children = parent.children
        return (
            children is not None
            and children.get(node.name) is node
            and (parent is self.root or self._attached(parent))
        )

    def _walk_create(self, dir_key: str) -> Node:
        """etcd's walk with checkDir: create missing dirs (index = next), 104 on a file."""
        node = self.root
        if dir_key == "/":
            return node
        for name in dir_key[1:].split("/"):
            children = node.children
            assert children is not None
            child = children.get(name)
            if child is None:
                key = f"{node.key}/{name}" if node.key != "/" else f"/{name}"
                child = Node(key, "", {}, self.index + 1, node, None)
                children[name] = child
            elif child.children is None:
                raise NotADirectory(child.key, self.index)
            node = child
        return node

    def _create(
        self,
        key: str,
        dir: bool,
        value: str,
        replace: bool,
        expire_ns: int | None,
        action: str,
        now_ns: int,
    ) -> Event:
        """etcd's internalCreate."""
        if key == "/":
            raise RootReadOnly("/", self.index)
        expire_ns = self._expire_ns(expire_ns)
        parent_key, name = key.rsplit("/", 1)
        parent = self._walk_create(parent_key or "/")
        next_index = self.index + 1
        assert parent.children is not None
        prev_node: NodeValue | None = None
        existing = parent.children.get(name)
        if existing is not None:
            if not replace:
                raise KeyAlreadyExists(key, self.index)
            if existing.children is not None:
                raise NotAFile(key, self.index)
            prev_node = existing.value_at(now_ns)
            del parent.children[name]
        node = Node(key, "" if dir else value, {} if dir else None, next_index, parent, expire_ns)
        parent.children[name] = node
        self._push_ttl(node)
        self.index = next_index
        return Event(action, node.value_at(now_ns), prev_node)

    def _apply_set(self, cmd: c.SetKey, now_ns: int) -> Event:
        value = cmd.value
        prev = self.find(cmd.key)
        if cmd.refresh:
            if prev is None:
                self.lookup(cmd.key)  # raises 100 naming the first missing component
            else:
                value = prev.value
        event = self._create(cmd.key, cmd.dir, value, True, cmd.expire_ns, "set", now_ns)
        return self._emit(event, cmd.refresh)

    def _emit(self, event: Event, refresh: bool) -> Event:
        if refresh:
            event = Event(event.action, event.node, event.prev_node, refresh=True)
            self._add_history(event)  # refreshes use an index and a slot, but wake nobody
        else:
            self._notify(event)
        return event

    def _apply_create(self, cmd: c.CreateKey, now_ns: int) -> Event:
        event = self._create(cmd.key, cmd.dir, cmd.value, False, cmd.expire_ns, "create", now_ns)
        self._notify(event)
        return event

    def _apply_create_in_order(self, cmd: c.CreateInOrderKey, now_ns: int) -> Event:
        base = cmd.dir_key.rstrip("/")
        key = f"{base}/{self.index + 1:020d}"
        event = self._create(key, cmd.dir, cmd.value, False, cmd.expire_ns, "create", now_ns)
        self._notify(event)
        return event

    def _update_ttl(self, node: Node, expire_ns: int | None) -> None:
        node.expire_ns = self._expire_ns(expire_ns)
        self._push_ttl(node)

    def _apply_update(self, cmd: c.UpdateKey, now_ns: int) -> Event:
        if cmd.key == "/":
            raise RootReadOnly("/", self.index)
        node = self.lookup(cmd.key)
        value = cmd.value
        if node.children is not None and value:
            raise NotAFile(cmd.key, self.index)
        if cmd.refresh:
            value = node.value
        next_index = self.index + 1
        prev_node = node.value_at(now_ns)
        node.render_cache = None
        if node.children is None:  # etcd 3.4: a dir's modifiedIndex is never rewritten
            node.value = value
            node.modified_index = next_index
        self._update_ttl(node, cmd.expire_ns)
        ttl = ttl_seconds(node.expire_ns, now_ns) if node.expire_ns is not None else 0
        event = Event(
            "update",
            NodeValue(
                node.key,
                None if node.children is not None else value,
                node.children is not None,
                next_index,
                node.created_index,
                node.expire_ns,
                ttl,
            ),
            prev_node,
        )
        self.index = next_index
        return self._emit(event, cmd.refresh)

    @staticmethod
    def _compare(node: Node, prev_value: str | None, prev_index: int, index: int) -> None:
        index_ok = prev_index == 0 or node.modified_index == prev_index
        value_ok = not prev_value or node.value == prev_value
        if index_ok and value_ok:
            return
        if not index_ok and value_ok:
            cause = f"[{prev_index} != {node.modified_index}]"
        elif index_ok:
            cause = f"[{prev_value} != {node.value}]"
        else:
            cause = f"[{prev_value or ''} != {node.value}] [{prev_index} != {node.modified_index}]"
        raise CompareFailed(cause, index)

    def _apply_cas(self, cmd: c.CompareAndSwap, now_ns: int) -> Event:
        if cmd.key == "/":
            raise RootReadOnly("/", self.index)
        node = self.lookup(cmd.key)
        if node.children is not None:
            raise NotAFile(cmd.key, self.index)
        self._compare(node, cmd.prev_value, cmd.prev_index, self.index)
        value = node.value if cmd.refresh else cmd.value
        self.index += 1
        prev_node = node.value_at(now_ns)
        node.value = value
        node.modified_index = self.index
        node.render_cache = None
        self._update_ttl(node, cmd.expire_ns)
        event = Event("compareAndSwap", node.value_at(now_ns), prev_node)
        return self._emit(event, cmd.refresh)

    def _remove(self, node: Node, event: Event) -> None:
        """etcd's node.Remove(recursive): detach, notifying watchers of every removed path."""
        if node.children:
            for child in list(node.children.values()):
                self._remove(child, event)
        parent = node.parent
        siblings = parent.children if parent is not None else None
        if siblings is not None and siblings.get(node.name) is node:
            del siblings[node.name]
        if self.watchers:
            self._notify_path(event, node.key, True)

    def _apply_delete(self, cmd: c.DeleteKey, now_ns: int) -> Event:
        if cmd.key == "/":
            raise RootReadOnly("/", self.index)
        node = self.lookup(cmd.key)
        is_dir = cmd.dir or cmd.recursive
        if node.children is not None:
            if not is_dir:
                raise NotAFile(cmd.key, self.index)
            if node.children and not cmd.recursive:
                raise DirectoryNotEmpty(cmd.key, self.index)
        self.index += 1
        event = Event(
            "delete",
            NodeValue(cmd.key, None, node.children is not None, self.index, node.created_index),
            node.value_at(now_ns),
        )
        self._remove(node, event)
        self._notify(event)
        return event

    def _apply_cad(self, cmd: c.CompareAndDelete, now_ns: int) -> Event:
        node = self.lookup(cmd.key)
        if node.children is not None:
            # etcd quirk: CompareAndDelete never checks the read-only root; the internal
            # root path "/1" is trimmed to an empty cause.
            raise NotAFile("" if cmd.key == "/" else cmd.key, self.index)
        self._compare(node, cmd.prev_value, cmd.prev_index, self.index)
        self.index += 1
        event = Event(
            "compareAndDelete",
            NodeValue(cmd.key, None, False, self.index, node.created_index),
            node.value_at(now_ns),
        )
        self._remove(node, event)
        self._notify(event)
        return event

    def _apply_expire(self, cmd: c.ExpireKeys, now_ns: int) -> list[Event]:
        expired: list[Event] = []
        heap = self._ttl_heap
        while heap and heap[0][0] <= cmd.now_ns:
            expire_ns, _, _, node = heapq.heappop(heap)
            if node.expire_ns != expire_ns or not self._attached(node):
                continue  # stale entry: the key was rewritten or removed since
            self.index += 1
            event = Event(
                "expire",
                NodeValue(
                    node.key, None, node.children is not None, self.index, node.created_index
                ),
                node.value_at(now_ns),
            )
            self.stats.inc("expireCount")
            self._remove(node, event)
            self._notify(event)
            expired.append(event)
        return expired

    def _apply_bootstrap(self, cmd: c.Bootstrap, now_ns: int) -> Event:
        """Three internal writes, as etcd's first entries (raftAttributes, attributes, version)."""
        self.members[cmd.member_id] = {
            "name": cmd.name,
            "peerURLs": list(cmd.peer_urls),
            "clientURLs": list(cmd.client_urls),
        }
        self.cluster_version = cmd.cluster_version
        event: Event | None = None
        for suffix in (
            f"/0/members/{cmd.member_id}/raftAttributes",
            f"/0/members/{cmd.member_id}/attributes",
            "/0/version",
        ):
            self.index += 1
            event = Event(
                "set", NodeValue(_INTERNAL_PREFIX + suffix, "", False, self.index, self.index)
            )
            self._add_history(event)
        assert event is not None
        return event

    def _apply_add_member(self, cmd: c.AddMember, now_ns: int) -> Event:
        """etcd's AddMember: one internal write (the member's raftAttributes)."""
        self.members[cmd.member_id] = {
            "name": "",
            "peerURLs": list(cmd.peer_urls),
            "clientURLs": [],
        }
        return self._internal_write(f"/0/members/{cmd.member_id}/raftAttributes")

    def _apply_remove_member(self, cmd: c.RemoveMember, now_ns: int) -> Event:
        """etcd's RemoveMember: delete the member's keys, then mark its ID removed."""
        self.members.pop(cmd.member_id, None)
        self.removed_members.add(cmd.member_id)
        self._internal_write(f"/0/members/{cmd.member_id}")
        return self._internal_write(f"/0/removed_members/{cmd.member_id}")

    def _apply_update_member(self, cmd: c.UpdateMember, now_ns: int) -> Event:
        member = self.members.get(cmd.member_id)
        if member is not None:
            member["peerURLs"] = list(cmd.peer_urls)
        return self._internal_write(f"/0/members/{cmd.member_id}/raftAttributes")

    def _internal_write(self, suffix: str) -> Event:
        self.index += 1
        event = Event(
            "set", NodeValue(_INTERNAL_PREFIX + suffix, "", False, self.index, self.index)
        )
        self._add_history(event)
        return event

    def consume_internal_indexes(self, count: int) -> None:
        """Writes to etcd's internal namespaces (auth data under /2) use store indexes and
        history slots too; no user watch can see them."""
        for _ in range(count):
            self.index += 1
            self._add_history(
                Event("set", NodeValue(f"{_INTERNAL_PREFIX}/2", "", False, self.index, self.index))
            )

    # --- snapshots -----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        def dump(node: Node) -> list[Any]:
            children = None
            if node.children is not None:
                children = [dump(child) for child in node.children.values()]
            return [
                node.name,
                node.value,
                node.created_index,
                node.modified_index,
                node.expire_ns,
                children,
            ]

        history = [event_to_json(e) for e in self.history_events(self.history_start)]
        return {
            "index": self.index,
            "root": dump(self.root),
            "history": history,
            "members": self.members,
            "removed_members": sorted(self.removed_members),
            "cluster_version": self.cluster_version,
            "stats": self.stats.counts,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> KeyTree:
        tree = cls()
        tree.index = data["index"]

        def load(parent: Node, item: list[Any]) -> None:
            name, value, created, modified, expire_ns, children = item
            key = f"{parent.key}/{name}" if parent.key != "/" else f"/{name}"
            node = Node(
                key, value, {} if children is not None else None, created, parent, expire_ns
            )
            node.modified_index = modified
            assert parent.children is not None
            parent.children[name] = node
            tree._push_ttl(node)
            for child in children or ():
                load(node, child)

        for child in data["root"][5]:
            load(tree.root, child)
        for item in data["history"]:
            tree._add_history(event_from_json(item))
        tree.members = data["members"]
        tree.removed_members = set(data.get("removed_members", ()))
        tree.cluster_version = data["cluster_version"]
        tree.stats.counts.update(data["stats"])
        return tree


def _node_to_json(n: NodeValue | None) -> list[Any] | None:
    if n is None:
        return None
    return [n.key, n.value, n.dir, n.modified_index, n.created_index, n.expire_ns, n.ttl]


def _node_from_json(item: list[Any] | None) -> NodeValue | None:
    return None if item is None else NodeValue(*item)


def event_to_json(e: Event) -> list[Any]:
    return [e.action, _node_to_json(e.node), _node_to_json(e.prev_node), e.refresh]


def event_from_json(item: list[Any]) -> Event:
    node = _node_from_json(item[1])
    assert node is not None
    return Event(item[0], node, _node_from_json(item[2]), item[3])


_APPLY: dict[type, Any] = {
    c.SetKey: KeyTree._apply_set,
    c.CreateKey: KeyTree._apply_create,
    c.CreateInOrderKey: KeyTree._apply_create_in_order,
    c.UpdateKey: KeyTree._apply_update,
    c.CompareAndSwap: KeyTree._apply_cas,
    c.DeleteKey: KeyTree._apply_delete,
    c.CompareAndDelete: KeyTree._apply_cad,
    c.ExpireKeys: KeyTree._apply_expire,
    c.Bootstrap: KeyTree._apply_bootstrap,
    c.AddMember: KeyTree._apply_add_member,
    c.RemoveMember: KeyTree._apply_remove_member,
    c.UpdateMember: KeyTree._apply_update_member,
}
