"""HTTP/1.1 on the wire for the Compose client: the one HTTP parser of ``compose/``.

Role: the sans-I/O half of the client's HTTP (``compose/http.py`` is the asyncio driver,
``compose/hijack.py`` the hijacked attach): bytes and values in, bytes and values out.
It serialises requests, parses a response head, decides how the body is framed
(RFC 9112 §6.3) and decodes it incrementally. It imports nothing that does I/O.

Invariants:
- Every buffer is bounded: a response head by ``MAX_HEAD_BYTES``, a chunk-size or trailer
  line by ``MAX_CHUNK_LINE_BYTES``; a decoder never holds more than one such line (body
  data is passed on as it arrives, never accumulated here).
- The decoders are state machines fed arbitrary splits of the stream (one byte at a
  time included) and produce the same payload whatever the splits; bytes after the end
  of a body are kept in ``unused``, never swallowed.
- Malformed input raises :class:`ProtocolError`; a stream that ends before its framing
  says it is complete raises :class:`IncompleteBodyError` (the connection dropped).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_CHUNK_LINE_BYTES",
    "MAX_HEAD_BYTES",
    "BodyDecoder",
    "ChunkedDecoder",
    "Framing",
    "FramingKind",
    "HTTPError",
    "IncompleteBodyError",
    "ProtocolError",
    "ResponseHead",
    "body_framing",
    "dechunk",
    "keeps_alive",
    "parse_response_head",
    "serialize_request",
    "upgrade_request",
]

MAX_HEAD_BYTES = 64 << 10  # Go's net/http DefaultMaxHeaderBytes is 1 MiB; moby's are < 1 KiB
# A chunk-size line is a hex number and optional extensions; Go's net/http/internal caps
# such a line at 4 KiB (maxLineLength) too.
MAX_CHUNK_LINE_BYTES = 4096
USER_AGENT = "dockyard-compose"
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Headers this module writes itself; a caller's copy would make the framing ambiguous.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


class HTTPError(Exception):
    """Base of every error of the Compose HTTP client below the Engine API (a transport,
    timeout or protocol failure; an engine's error *answer* is no HTTPError)."""


class ProtocolError(HTTPError):
    """Bytes from the engine that are not the HTTP/1.1 this client speaks."""


class IncompleteBodyError(HTTPError):
    """The connection ended before the response body was complete."""


# --- requests -------------------------------------------------------------------------------


def _check_token(kind: str, value: str) -> None:
    # A CR, LF or NUL would let a value end the header line early (request smuggling):
    # Go's net/http refuses such headers too (httpguts.ValidHeaderFieldValue).
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"invalid HTTP {kind} {value!r}")


def serialize_request(
    method: str,
    target: str,
    *,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bytes:
    """The head of an HTTP/1.1 request, then ``body``.

    ``Content-Length`` is sent with a body, and as ``0`` for a POST/PUT/PATCH without one,
    as Go's net/http does (an engine may otherwise wait for a body that never comes); no
    ``Connection`` header: HTTP/1.1 connections are persistent by default.
    """
    for kind, value in (("method", method), ("target", target), ("host", host)):
        _check_token(kind, value)
    if " " in method or " " in target:
        raise ValueError(f"invalid HTTP request line {method} {target}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    for name, value in headers:
        _check_token("header name", name)
        _check_token("header value", value)
        if not name or ":" in name or name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"invalid HTTP header name {name!r}")
        lines.append(f"{name}: {value}")
    if body is not None or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
    return "\r\n".join(lines).encode("latin-1") + _HEAD_END + (body or b"")


def upgrade_request(method: str, target: str, *, host: str, body: bytes | None = None) -> bytes:
    """The bytes of a hijack request (docker CLI ``postHijacked``): ``Connection: Upgrade``
    and ``Upgrade: tcp``, a JSON body when given."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "tcp")]
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    return serialize_request(method, target, host=host, headers=headers, body=body)


# --- the response head ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseHead:
    """The status line and headers of an answer."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, value), in order
    version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name``, comma-separated lists split (RFC 9110 §5.3)."""
        wanted = name.lower()
        return [
            item.strip()
            for key, value in self.headers
            if key == wanted
            for item in value.split(",")
            if item.strip()
        ]

    @property
    def upgraded(self) -> bool:
        """101 is the hijack; 200 is what engines before API 1.24 answer (and what moby
        answers to a request without ``Upgrade``): the stream follows the head either way."""
        return self.status in (101, 200)


def parse_response_head(raw: bytes) -> ResponseHead:
    """Parse ``HTTP/1.x STATUS REASON`` and the header lines of ``raw`` (the head, with or
    without its final empty line). Raises :class:`ProtocolError` on anything else: a
    header line folded onto the previous one (obsolete since RFC 7230, and refused by Go)
    included."""
    if len(raw) > MAX_HEAD_BYTES:
        raise ProtocolError(f"the engine's answer head exceeds {MAX_HEAD_BYTES} bytes")
    text = raw.decode("latin-1")
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    status_line, *header_lines = text.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.0", "HTTP/1.1") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"malformed HTTP response {status_line!r}")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed HTTP header line {line!r}")
        headers.append((name.lower(), value.strip()))
    return ResponseHead(int(code), reason, tuple(headers), version)


def keeps_alive(head: ResponseHead) -> bool:
    """Whether the connection may carry another request after this answer: HTTP/1.1
    unless ``Connection: close``; HTTP/1.0 only with ``Connection: keep-alive``."""
    tokens = {token.lower() for token in head.header_values("connection")}
    if head.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


# --- body framing -----------------------------------------------------------------------------


class FramingKind(enum.Enum):
    EMPTY = "empty"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"


@dataclass(frozen=True)
class Framing:
    """How a response body ends (RFC 9112 §6.3)."""

    kind: FramingKind
    length_bytes: int = 0  # for LENGTH

    @property
    def reusable(self) -> bool:
        """A body read to EOF takes the connection with it."""
        return self.kind is not FramingKind.UNTIL_CLOSE


def body_framing(head: ResponseHead, method: str) -> Framing:
    """RFC 9112 §6.3, in its order: no body for HEAD, 1xx, 204 and 304; chunked when the
    last transfer coding is chunked (it wins over a Content-Length); else Content-Length;
    else the body runs until the engine closes the connection."""
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return Framing(FramingKind.EMPTY)
    codings = [coding.lower() for coding in head.header_values("transfer-encoding")]
    if codings:
        if codings[-1] != "chunked":
            # §6.3 item 4: a response without chunked last is read until close, but we
            # never asked for a transfer coding we cannot decode (gzip, ...)
            raise ProtocolError(f"unsupported transfer encoding {', '.join(codings)!r}")
        return Framing(FramingKind.CHUNKED)
    lengths = {value.strip() for key, value in head.headers if key == "content-length"}
    if not lengths:
        return Framing(FramingKind.UNTIL_CLOSE)
    if len(lengths) != 1:
        raise ProtocolError(f"conflicting Content-Length headers {sorted(lengths)}")
    (value,) = lengths
    if not value.isdigit() or not value.isascii():
        raise ProtocolError(f"invalid Content-Length {value!r}")
    size = int(value)
    return Framing(FramingKind.LENGTH, size) if size else Framing(FramingKind.EMPTY)


# --- chunked transfer coding ------------------------------------------------------------------


class _Chunk(enum.Enum):
    SIZE = "size"  # reading "HEX[;ext]\r\n"
    DATA = "data"  # passing `remaining` payload bytes through
    DATA_END = "data-end"  # reading the CRLF after a chunk's data
    TRAILER = "trailer"  # reading trailer lines until an empty one
    DONE = "done"


class ChunkedDecoder:
    """``Transfer-Encoding: chunked`` (RFC 9112 §7.1) as an incremental state machine.

    ``feed`` takes any split of the stream and returns the payload pieces it completes;
    after the last chunk and the trailer section ``done`` is True and any further bytes
    are kept in ``unused``. Trailer fields are read and dropped (the Engine API sends
    none). Chunk extensions are ignored, as every HTTP/1.1 client must.
    """

    def __init__(self) -> None:
        self._state = _Chunk.SIZE
        self._line = bytearray()
        self._remaining = 0
        self.unused = b""
        self._steps: dict[_Chunk, Callable[[memoryview, list[bytes]], int]] = {
            _Chunk.SIZE: self._size,
            _Chunk.DATA: self._data,
            _Chunk.DATA_END: self._data_end,
            _Chunk.TRAILER: self._trailer,
        }

    @property
    def done(self) -> bool:
        return self._state is _Chunk.DONE

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        self.feed_into(data, out)
        return out

    def feed_into(self, data: bytes, out: list[bytes]) -> None:
        """``feed``, appending to ``out``: what was decoded before a :class:`ProtocolError`
        stays there (``dechunk`` keeps it)."""
        view = memoryview(data)
        while view and self._state is not _Chunk.DONE:
            used = self._steps[self._state](view, out)
            view = view[used:]
        if view:
            self.unused += bytes(view)

    def feed_eof(self) -> None:
        """The stream ended: an error unless the last chunk and trailer were read."""
        if self._state is not _Chunk.DONE:
            raise IncompleteBodyError(
                "the engine closed the connection in the middle of a chunked response"
            )

    def _take_line(self, view: memoryview) -> tuple[int, bytes | None]:
        """Bytes of ``view`` used, and the complete line (without CRLF) if one ended."""
        end = bytes(view[: MAX_CHUNK_LINE_BYTES + 2]).find(b"\n")
        if end < 0:
            self._line += view
            if len(self._line) > MAX_CHUNK_LINE_BYTES:
                raise ProtocolError(f"a chunk line exceeds {MAX_CHUNK_LINE_BYTES} bytes")
            return len(view), None
        self._line += view[: end + 1]
        line = bytes(self._line)
        self._line.clear()
        if len(line) > MAX_CHUNK_LINE_BYTES + 2 or not line.endswith(_CRLF):
            raise ProtocolError(f"malformed chunk line {line[:64]!r}")
        return end + 1, line[:-2]

    def _size(self, view: memoryview, out: list[bytes]) -> int:
        used, line = self._take_line(view)
        if line is None:
            return used
        digits = line.split(b";", 1)[0].strip(b" \t")
        if not digits or not set(digits) <= _HEX_DIGITS or len(digits) > 16:
            raise ProtocolError(f"malformed chunk size {line[:64]!r}")
        self._remaining = int(digits, 16)
        self._state = _Chunk.DATA if self._remaining else _Chunk.TRAILER
        return used

    def _data(self, view: memoryview, out: list[bytes]) -> int:
        take = min(self._remaining, len(view))
        out.append(bytes(view[:take]))
        self._remaining -= take
        if not self._remaining:
            self._state = _Chunk.DATA_END
        return take

    def _data_end(self, view: memoryview, out: list[bytes]) -> int:
        used, line = self._take_line(view)
        if line is None:
            return used
        if line:
            raise ProtocolError("a chunk's data is longer than its size")
        self._state = _Chunk.SIZE
        return used

    def _trailer(self, view: memoryview, out: list[bytes]) -> int:
        used, line = self._take_line(view)
        if line is not None and not line:
            self._state = _Chunk.DONE
        return used


def dechunk(body: bytes) -> bytes:
    """The payload of a ``Transfer-Encoding: chunked`` body read whole (an error answer
    is small); an incomplete or malformed chunk ends the payload where it stands."""
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    with contextlib.suppress(ProtocolError):  # what preceded the bad line is in `out`
        decoder.feed_into(body, out)
    return b"".join(out)


class BodyDecoder:
    """One response body under its :class:`Framing`: ``feed`` returns the payload pieces,
    ``done`` says when the body is complete, ``unused`` holds what came after it."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.received_bytes = 0
        self.unused = b""
        self._chunked = ChunkedDecoder() if framing.kind is FramingKind.CHUNKED else None
        self._ended = False

    @property
    def done(self) -> bool:
        kind = self.framing.kind
        if kind is FramingKind.EMPTY:
            return True
        if kind is FramingKind.LENGTH:
            return self.received_bytes == self.framing.length_bytes
        if self._chunked is not None:
            return self._chunked.done
        return self._ended

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.unused += data
            return []
        if self._chunked is not None:
            pieces = self._chunked.feed(data)
            self.unused = self._chunked.unused
        elif self.framing.kind is FramingKind.LENGTH:
            take = self.framing.length_bytes - self.received_bytes
            pieces = [data[:take]] if data[:take] else []
            self.unused += data[take:]
        else:
            pieces = [data] if data else []
        self.received_bytes += sum(len(piece) for piece in pieces)
        return pieces

    def feed_eof(self) -> None:
        """The connection ended. Fine for a body read until close or already complete;
        otherwise :class:`IncompleteBodyError` saying how much had arrived."""
        if self.framing.kind is FramingKind.UNTIL_CLOSE:
            self._ended = True
            return
        if self.done:
            return
        if self._chunked is not None:
            self._chunked.feed_eof()
        raise IncompleteBodyError(
            "the engine closed the connection in the middle of a response "
            f"({self.received_bytes} of {self.framing.length_bytes} body bytes received)"
        )
