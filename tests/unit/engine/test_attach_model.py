"""Detach keys and frame headers (dockyard.engine.model.attach)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.engine.model.attach import (
    DetachMatcher,
    InvalidDetachKeys,
    parse_detach_keys,
    parse_frame_header,
)


def test_detach_keys_parse_as_moby_does() -> None:
    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    for bad in ("ctrl-", "ctrl-pp", "ab", "ctrl-P"):
        with pytest.raises(InvalidDetachKeys, match=r"Invalid detach keys"):
            parse_detach_keys(bad)


def test_the_sequence_is_held_back_across_reads_and_released_on_mismatch() -> None:
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)
    assert matcher.feed(b"c") == (b"\x10c", False)
    assert matcher.feed(b"\x10") == (b"", False)
    assert matcher.feed(b"\x11rest") == (b"", True)


@given(st.binary(max_size=64))
def test_input_without_the_first_key_passes_unchanged(data: bytes) -> None:
    data = data.replace(b"\x10", b"")
    assert DetachMatcher(b"\x10\x11").feed(data) == (data, False)


def test_frame_header() -> None:
    assert parse_frame_header(b"\x02\x00\x00\x00\x00\x00\x01\x00") == ("stderr", 256)
