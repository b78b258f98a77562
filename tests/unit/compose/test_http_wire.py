"""compose/http_wire.py: request bytes, response heads, body framing and the chunked
decoder fed whole, byte by byte and in odd splits."""

from __future__ import annotations

import itertools

import pytest

from dockyard.compose.http_wire import (
    MAX_CHUNK_LINE_BYTES,
    MAX_HEAD_BYTES,
    BodyDecoder,
    ChunkedDecoder,
    Framing,
    FramingKind,
    IncompleteBodyError,
    ProtocolError,
    ResponseHead,
    body_framing,
    dechunk,
    keeps_alive,
    parse_response_head,
    serialize_request,
)

pytestmark = pytest.mark.unit

CHUNKED = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"
CHUNKED_PAYLOAD = b"hello, world" + b"z" * 26


def head(raw: str) -> ResponseHead:
    return parse_response_head(raw.encode())


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode_in(decoder: ChunkedDecoder | BodyDecoder, pieces: list[bytes]) -> bytes:
    return b"".join(out for piece in pieces for out in decoder.feed(piece))


# --- requests -------------------------------------------------------------------------------


def test_a_request_with_a_body_states_its_length() -> None:
    raw = serialize_request(
        "POST",
        "/v1.41/containers/create?name=web",
        host="docker",
        headers=[("Content-Type", "application/json")],
        body=b'{"Image":"busybox"}',
    )
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    assert lines[0] == "POST /v1.41/containers/create?name=web HTTP/1.1"
    assert lines[1] == "Host: docker"
    assert {"Content-Type: application/json", "Content-Length: 19"} <= set(lines)
    assert body == b'{"Image":"busybox"}'


def test_a_get_has_no_length_and_a_bodyless_post_says_zero() -> None:
    get = serialize_request("GET", "/version", host="docker")
    assert b"Content-Length" not in get
    assert get.endswith(b"\r\n\r\n")
    post = serialize_request("POST", "/v1.41/containers/x/start", host="docker")
    assert post.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Registry-Auth", "e30=\r\nInjected: 1")],
        [("Bad\nName", "x")],
        [("Content-Length", "5")],
        [("Host", "elsewhere")],
        [("", "x")],
    ],
)
def test_headers_that_could_break_the_framing_are_refused(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        serialize_request("GET", "/version", host="docker", headers=headers)


def test_a_target_with_a_space_or_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        serialize_request("GET", "/a b", host="docker")
    with pytest.raises(ValueError):
        serialize_request("GET", "/a\r\nX: y", host="docker")


# --- heads ----------------------------------------------------------------------------------


def test_a_head_keeps_header_order_and_finds_names_in_any_case() -> None:
    parsed = head(
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
        "Vary: a, b\r\nVary: c\r\n\r\n"
    )
    assert (parsed.status, parsed.reason, parsed.version) == (200, "OK", "HTTP/1.1")
    assert parsed.header("API-VERSION") == "1.41"
    assert parsed.header_values("vary") == ["a", "b", "c"]
    assert parsed.headers[0] == ("api-version", "1.41")


def test_a_reason_may_be_empty_or_have_spaces() -> None:
    assert head("HTTP/1.1 404 Not Found\r\n\r\n").reason == "Not Found"
    assert head("HTTP/1.1 204 \r\n\r\n").reason == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n Folded: value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: " + b"b" * MAX_HEAD_BYTES + b"\r\n\r\n",
    ],
)
def test_a_malformed_head_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response_head(raw)


def test_keep_alive_follows_the_version_and_connection_header() -> None:
    assert keeps_alive(head("HTTP/1.1 200 OK\r\n\r\n"))
    assert not keeps_alive(head("HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"))
    assert not keeps_alive(head("HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n\r\n"))
    assert not keeps_alive(head("HTTP/1.0 200 OK\r\n\r\n"))
    assert keeps_alive(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n"))


# --- framing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "method", "framing"),
    [
        ("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "GET", Framing(FramingKind.LENGTH, 12)),
        ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", Framing(FramingKind.EMPTY)),
        ("HTTP/1.1 204 No Content\r\n\r\n", "POST", Framing(FramingKind.EMPTY)),
        ("HTTP/1.1 304 Not Modified\r\n\r\n", "POST", Framing(FramingKind.EMPTY)),
        ("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", Framing(FramingKind.EMPTY)),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
            Framing(FramingKind.CHUNKED),
        ),
        # chunked wins over a Content-Length (RFC 9112 §6.3 item 3)
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: Chunked\r\n\r\n",
            "GET",
            Framing(FramingKind.CHUNKED),
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", "GET", Framing(FramingKind.UNTIL_CLOSE)),
        # the same length twice is one length
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
            "GET",
            Framing(FramingKind.LENGTH, 4),
        ),
    ],
)
def test_body_framing_follows_rfc_9112(raw: str, method: str, framing: Framing) -> None:
    assert body_framing(head(raw), method) == framing


@pytest.mark.parametrize(
    "raw",
    [
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
def test_ambiguous_or_unsupported_framing_is_a_protocol_error(raw: str) -> None:
    with pytest.raises(ProtocolError):
        body_framing(head(raw), "GET")


def test_only_a_body_read_to_eof_takes_the_connection() -> None:
    assert Framing(FramingKind.LENGTH, 3).reusable
    assert Framing(FramingKind.CHUNKED).reusable
    assert not Framing(FramingKind.UNTIL_CLOSE).reusable


# --- the chunked state machine -------------------------------------------------------------


def test_chunked_fed_whole() -> None:
    decoder = ChunkedDecoder()
    assert b"".join(decoder.feed(CHUNKED)) == CHUNKED_PAYLOAD
    assert decoder.done
    decoder.feed_eof()  # complete: no error


def test_chunked_fed_byte_by_byte() -> None:
    decoder = ChunkedDecoder()
    pieces = [CHUNKED[i : i + 1] for i in range(len(CHUNKED))]
    out = decode_in(decoder, pieces)
    assert out == CHUNKED_PAYLOAD
    assert decoder.done


@pytest.mark.parametrize(
    "cuts",
    [
        [1],  # inside the first size line
        [3],  # between CR and LF
        [4, 5],  # a one-byte piece of data
        [8, 9, 10],  # data, its CR, its LF
        [len(CHUNKED) - 3],  # inside the last CRLF
        [len(CHUNKED) - 1],
        [13, 14, 15, 16, 17],  # inside a chunk extension
        list(range(2, len(CHUNKED), 7)),
        list(range(1, len(CHUNKED), 3)),
    ],
)
def test_chunked_fed_in_odd_splits(cuts: list[int]) -> None:
    decoder = ChunkedDecoder()
    assert decode_in(decoder, split_at(CHUNKED, cuts)) == CHUNKED_PAYLOAD
    assert decoder.done


def test_data_is_passed_on_as_it_arrives() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"a\r\nhel") == [b"hel"]
    assert decoder.feed(b"lo") == [b"lo"]
    assert not decoder.done


def test_trailers_are_read_and_bytes_after_the_end_kept() -> None:
    decoder = ChunkedDecoder()
    out = decoder.feed(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 200 OK")
    assert out == [b"abc"]
    assert decoder.done
    assert decoder.unused == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n",  # not hex
        b"\r\nhello\r\n",  # no size
        b"-5\r\nhello\r\n",
        b"5\r\nhelloXX\r\n",  # data longer than its size
        b"5\nhello\r\n",  # a bare LF
        b"1" * (MAX_CHUNK_LINE_BYTES + 1),  # a size line without end
        b"1" * 17 + b"\r\n",  # more than 64 bits of size
        b"0\r\n" + b"X: " + b"y" * MAX_CHUNK_LINE_BYTES + b"\r\n\r\n",  # a huge trailer
    ],
)
def test_malformed_chunked_input_is_a_protocol_error(wire: bytes) -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(wire)
    # the same error whatever the split
    bytewise = ChunkedDecoder()
    with pytest.raises(ProtocolError):
        for i in range(len(wire)):
            bytewise.feed(wire[i : i + 1])


@pytest.mark.parametrize("cut", [0, 1, 3, 7, len(CHUNKED) - 2])
def test_a_chunked_body_cut_short_is_an_incomplete_body(cut: int) -> None:
    decoder = ChunkedDecoder()
    decoder.feed(CHUNKED[:cut])
    with pytest.raises(IncompleteBodyError):
        decoder.feed_eof()


def test_dechunk_keeps_what_precedes_a_bad_or_missing_end() -> None:
    assert dechunk(CHUNKED) == CHUNKED_PAYLOAD
    assert dechunk(b"5\r\nhel") == b"hel"
    assert dechunk(b"5\r\nhello\r\nzz\r\n") == b"hello"
    assert dechunk(b"zz\r\nhello\r\n") == b""


# --- whole bodies ---------------------------------------------------------------------------


def test_a_length_body_ends_at_its_length_and_keeps_what_follows() -> None:
    decoder = BodyDecoder(Framing(FramingKind.LENGTH, 5))
    assert decoder.feed(b"he") == [b"he"]
    done_early = decoder.done
    assert decoder.feed(b"lloEXTRA") == [b"llo"]
    assert (done_early, decoder.done) == (False, True)
    assert decoder.unused == b"EXTRA"


def test_a_length_body_cut_short_says_how_much_arrived() -> None:
    decoder = BodyDecoder(Framing(FramingKind.LENGTH, 10))
    decoder.feed(b"abcd")
    with pytest.raises(IncompleteBodyError, match="4 of 10 body bytes"):
        decoder.feed_eof()


def test_a_body_until_close_ends_at_eof() -> None:
    decoder = BodyDecoder(Framing(FramingKind.UNTIL_CLOSE))
    assert decoder.feed(b"abc") == [b"abc"]
    assert not decoder.done
    decoder.feed_eof()
    assert decoder.done


def test_an_empty_body_is_done_at_once() -> None:
    decoder = BodyDecoder(Framing(FramingKind.EMPTY))
    assert decoder.done
    assert decoder.feed(b"x") == []
    assert decoder.unused == b"x"


def test_a_chunked_body_decoder_matches_the_chunked_state_machine() -> None:
    decoder = BodyDecoder(Framing(FramingKind.CHUNKED))
    pieces = split_at(CHUNKED + b"NEXT", list(range(3, len(CHUNKED), 5)))
    assert decode_in(decoder, pieces) == CHUNKED_PAYLOAD
    assert decoder.done
    assert decoder.received_bytes == len(CHUNKED_PAYLOAD)
    assert decoder.unused == b"NEXT"
