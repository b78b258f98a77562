"""The json-file encoder and line splitter produce what dockerd's json-file driver writes."""

from __future__ import annotations

import json

import pytest

from dockyard.engine.runtime.logfile import LineSplitter, encode_entry, format_rfc3339nano

pytestmark = pytest.mark.integration


def test_entry_escapes_like_docker() -> None:
    line = b'a<b>&"\\\t\x01' + b"\xff" + "\u2028é\n".encode()
    entry = encode_entry(line, "stderr", 1_700_000_000_120_000_000)
    assert entry == (
        b'{"log":"a\\u003cb\\u003e\\u0026\\"\\\\\\t\\u0001\\ufffd\\u2028'
        + "é".encode()
        + b'\\n","stream":"stderr","time":"2023-11-14T22:13:20.12Z"}\n'
    )
    assert json.loads(entry)["log"] == 'a<b>&"\\\t\x01\ufffd\u2028é\n'


def test_rfc3339nano_trims_trailing_zeros() -> None:
    assert format_rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_splitter_keeps_newlines_and_cuts_long_lines() -> None:
    splitter = LineSplitter(max_line_bytes=4)
    assert splitter.feed(b"ab\ncdefg") == [b"ab\n", b"cdef"]
    assert splitter.feed(b"h\n") == [b"gh\n"]
    assert splitter.feed(b"tail") == [b"tail"]
    assert splitter.feed(b"x") == []
    assert splitter.finish() == [b"x"]
    assert splitter.finish() == []
