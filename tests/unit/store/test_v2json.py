"""The event renderer (`event_body`) against a reference built the plain way: the event
as dicts in etcd's field order, encoded whole by `go_json` (Go's escapes applied to the
whole document). `event_body` writes the text directly and escapes string by string, so
both must give the same bytes for every event: a seeded corpus of nodes with awkward
strings (Go's escapes, control characters, non-ASCII, lone surrogates), every optional
field present or absent. (That the format is etcd's own is checked against a real etcd by
tests/e2e/store/test_differential.py.)
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from dockyard.store.tree import Event, NodeValue
from dockyard.store.v2json import event_body, go_json, rfc3339_nano

SEED = 20261129
_ALPHABET = [
    "a", "Z", "/", "_", " ", '"', "\\", "<", ">", "&", "\u2028", "\u2029", "\b", "\f", "\n",
    "\r", "\t", "\x00", "\x1f", "\x7f", "é", "日", "\U0001f600", "\ud800", "\udfff", "\\b",
]  # fmt: skip


def _node_reference(n: NodeValue) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if n.key != "/":
        out["key"] = n.key
    if n.value is not None:
        out["value"] = n.value
    if n.dir:
        out["dir"] = True
    if n.expire_ns is not None:
        out["expiration"] = rfc3339_nano(n.expire_ns)
        if n.ttl:
            out["ttl"] = n.ttl
    if n.modified_index:
        out["modifiedIndex"] = n.modified_index
    if n.created_index:
        out["createdIndex"] = n.created_index
    return out


def _reference(event: Event) -> bytes:
    out: dict[str, Any] = {"action": event.action, "node": _node_reference(event.node)}
    if event.prev_node is not None:
        out["prevNode"] = _node_reference(event.prev_node)
    return (go_json(out) + "\n").encode()


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 12)))


def _node(rng: random.Random) -> NodeValue:
    key = "/" if rng.random() < 0.05 else "/" + _text(rng)
    is_dir = rng.random() < 0.2
    expire_ns = rng.choice([None, 0, 1_700_000_000_123_456_789, 1_700_000_000_000_000_000])
    return NodeValue(
        key,
        None if is_dir or rng.random() < 0.1 else _text(rng),
        is_dir,
        rng.choice([0, 1, 7, 2**40]),
        rng.choice([0, 1, 5, 2**40]),
        expire_ns,
        rng.choice([0, 1, 30]) if expire_ns is not None else 0,
    )


@pytest.mark.parametrize("case", range(4))
def test_event_body_matches_the_generic_rendering(case: int) -> None:
    seed = SEED + case
    rng = random.Random(seed)
    actions = ["set", "create", "update", "compareAndSwap", "delete", "expire", "get"]
    for _ in range(2_000):
        event = Event(rng.choice(actions), _node(rng), _node(rng) if rng.random() < 0.5 else None)
        assert event_body(event) == _reference(event), f"seed {seed}: {event!r}"


def test_no_value_on_success_answers_the_action_alone() -> None:
    event = Event("set", NodeValue("/k", "v", False, 3, 3))
    assert event_body(event, no_value=True) == b'{"action":"set"}\n'
    deleted = Event("delete", NodeValue("/k", None, False, 4, 3))
    assert event_body(deleted, no_value=True) == event_body(deleted)
