"""The fast event renderer (`event_body`) against the generic one (`go_json(event_json())`).

Writes are answered with `event_body`, which writes the JSON text directly; the generic path
builds dicts and lets the encoder walk them. Both must give the same bytes for every event:
a seeded corpus of nodes with awkward strings (Go's escapes, control characters, non-ASCII,
lone surrogates), every optional field present or absent.
"""

from __future__ import annotations

import random

import pytest

from dockyard.store.tree import Event, NodeValue
from dockyard.store.v2json import event_body, event_json, go_json

SEED = 20261129
_ALPHABET = [
    "a", "Z", "/", "_", " ", '"', "\\", "<", ">", "&", "\u2028", "\u2029", "\b", "\f", "\n",
    "\r", "\t", "\x00", "\x1f", "\x7f", "é", "日", "\U0001f600", "\ud800", "\udfff", "\\b",
]  # fmt: skip


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
        expected = (go_json(event_json(event)) + "\n").encode()
        assert event_body(event) == expected, f"seed {seed}: {event!r}"


def test_no_value_on_success_answers_the_action_alone() -> None:
    event = Event("set", NodeValue("/k", "v", False, 3, 3))
    assert event_body(event, no_value=True) == b'{"action":"set"}\n'
    deleted = Event("delete", NodeValue("/k", None, False, 4, 3))
    assert event_body(deleted, no_value=True) == event_body(deleted)
