"""The sans-I/O half of compose/hijack.py: the upgrade request, the engine's answer head,
the output decoder and the stdin/TTY rules of ``exec``/``run``."""

from __future__ import annotations

import struct

import pytest

from dockyard.compose.client import LogLine
from dockyard.compose.hijack import (
    MAX_ERROR_BODY_BYTES,
    MAX_HEAD_BYTES,
    HijackProtocolError,
    OutputDecoder,
    StreamModes,
    dechunk,
    error_body_length,
    parse_response_head,
    stream_modes,
    upgrade_request,
)

pytestmark = pytest.mark.unit


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_upgrade_request_asks_for_a_tcp_upgrade_with_a_json_body() -> None:
    raw = upgrade_request("POST", "/v1.41/exec/abc/start", host="docker", body=b'{"Tty":true}')
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1.41/exec/abc/start HTTP/1.1"
    assert {"Host: docker", "Connection: Upgrade", "Upgrade: tcp"} <= set(lines)
    assert "Content-Type: application/json" in lines
    assert "Content-Length: 12" in lines
    assert body == b'{"Tty":true}'


def test_upgrade_request_without_a_body_says_so() -> None:
    raw = upgrade_request("POST", "/v1.41/containers/x/attach?stream=1", host="h:2375")
    assert raw.endswith(b"Content-Length: 0\r\n\r\n")
    assert b"Content-Type" not in raw


def test_101_and_200_answers_are_the_stream() -> None:
    head = parse_response_head(
        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    assert (head.status, head.reason, head.upgraded) == (101, "UPGRADED", True)
    assert head.header("CONTENT-TYPE") == "application/vnd.docker.raw-stream"
    assert head.header("missing") is None
    # engines before API 1.24 answer 200 OK and stream the same way
    assert parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n").upgraded


def test_an_error_answer_is_not_the_stream_and_its_body_length_is_bounded() -> None:
    head = parse_response_head(
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 57\r\n\r\n"
    )
    assert (head.status, head.upgraded) == (409, False)
    assert error_body_length(head) == 57
    huge = parse_response_head(f"HTTP/1.1 500 x\r\nContent-Length: {1 << 40}\r\n".encode())
    assert error_body_length(huge) == MAX_ERROR_BODY_BYTES
    assert error_body_length(parse_response_head(b"HTTP/1.1 500 x\r\n\r\n")) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 1O1 UPGRADED\r\n\r\n",
        b"HTTP/1.1 101 UPGRADED\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 101 UPGRADED\r\n Folded: value\r\n\r\n",
        b"HTTP/1.1 101 X\r\n" + b"A: " + b"b" * MAX_HEAD_BYTES + b"\r\n\r\n",
    ],
)
def test_a_malformed_head_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(HijackProtocolError):
        parse_response_head(raw)


def test_a_chunked_error_body_is_dechunked() -> None:
    assert dechunk(b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n") == b"hello, world"
    assert dechunk(b"5\r\nhel") == b"hel"  # cut short: what arrived
    assert dechunk(b"zz\r\nhello\r\n") == b""


def test_tty_output_is_raw_and_all_on_stdout() -> None:
    decoder = OutputDecoder(tty=True)
    assert decoder.feed(b"\x01\x00\x00\x00prompt$ ") == [LogLine(1, b"\x01\x00\x00\x00prompt$ ")]
    assert decoder.feed(b"") == []


def test_multiplexed_output_is_split_by_stream_across_chunk_boundaries() -> None:
    decoder = OutputDecoder(tty=False)
    wire = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"x" * 10)
    got: list[LogLine] = []
    for i in range(0, len(wire), 3):  # three bytes at a time: headers cut anywhere
        got += decoder.feed(wire[i : i + 3])
    assert got == [LogLine(1, b"out\n"), LogLine(2, b"err\n"), LogLine(1, b"x" * 10)]
    assert decoder.pending_bytes == 0
    assert decoder.feed(frame(2, b"cut")[:-1]) == []
    assert decoder.pending_bytes == 10  # a truncated frame is held, never emitted


@pytest.mark.parametrize(
    ("detach", "no_tty", "terminal", "service_tty", "expected"),
    [
        (False, False, True, None, StreamModes(stdin=True, tty=True)),
        (False, True, True, None, StreamModes(stdin=True, tty=False)),  # -T
        (False, False, False, None, StreamModes(stdin=True, tty=False)),  # piped stdin
        (True, False, True, None, StreamModes(stdin=False, tty=False)),  # -d
        (False, False, True, False, StreamModes(stdin=True, tty=False)),  # tty: false
        (False, False, True, True, StreamModes(stdin=True, tty=True)),
    ],
)
def test_stdin_and_tty_follow_compose(
    detach: bool, no_tty: bool, terminal: bool, service_tty: bool | None, expected: StreamModes
) -> None:
    modes = stream_modes(
        detach=detach,
        no_tty=no_tty,
        interactive=True,
        stdin_is_terminal=terminal,
        service_tty=service_tty,
    )
    assert modes == expected


def test_not_interactive_attaches_no_stdin() -> None:
    modes = stream_modes(detach=False, no_tty=False, interactive=False, stdin_is_terminal=True)
    assert modes == StreamModes(stdin=False, tty=True)
