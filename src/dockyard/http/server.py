"""A small, fast HTTP/1.1 server on asyncio + httptools (the store's etcd API, the engine's).

Role: turn bytes on a socket into `dockyard.http.types.Request` values, hand them to a
`Handler`, and turn the `Response` / `StreamingResponse` it returns into bytes. It knows
nothing of etcd or Docker.

Shape: one `_HttpConnection` (an `asyncio.Protocol`) per TCP/TLS connection, fed by an
`httptools.HttpRequestParser`. Completed requests go into a per-connection FIFO; the FIFO is
drained after every `data_received`, so pipelined requests are answered strictly in order. A
handler that returns a plain `Response` is answered inline with one `transport.write` and no
task; only an awaitable result or a `StreamingResponse` costs a task, and while that task runs
later requests on the connection wait in the FIFO.

Invariants:
- At most one request per connection is being answered at a time (`_task` or inline), and
  responses leave in request order. A 400/413/431 for a bad message is queued behind the
  good requests that preceded it, then the connection closes.
- Reading is paused while the FIFO holds `_PIPELINE_HIGH` requests or the transport's write
  buffer is above its high-water mark, so neither a pipelining client nor a slow reader can
  make us buffer without bound. Header bytes per message are capped (`max_header_bytes`,
  `max_header_count`) before httptools can accumulate them; body bytes by `max_body_bytes`.
- A handler error never reaches the event loop: it is logged and answered with a 500.
  Parser errors are answered with a 400 and never logged as tracebacks.
- A streaming body's iterator is always closed (`aclose`) once the stream ends, whether it
  ran dry, raised, the client went away, or the server shut down; producers rely on this to
  unregister watchers.
- On client disconnect, an in-flight async handler is cancelled as well (an etcd long-poll
  `wait=true` must stop waiting when nobody is listening). A client EOF (half-close) counts
  as a disconnect, as in Go's net/http.
- The server owns framing: a handler's `headers` must not carry Content-Length,
  Transfer-Encoding, Connection or Date (they would be duplicated). Header values with CR/LF
  are refused with a 500 rather than sent.
- The request target is ASCII: llhttp refuses raw bytes >= 0x80 in it (400), unlike Go.

Hijacking (Docker's attach and exec start): a `HijackResponse` ends HTTP on its connection.
For a request that asked to upgrade (`Connection: Upgrade`), llhttp stops at the end of the
request and every byte after it (already read or still to come) belongs to the raw stream;
a client half-close is then not a disconnect (`docker run` without `-i` shuts down its
writing side at once) but EOF on the stream. The handler runs as the connection's task, so
a disconnect or a server shutdown cancels it, and the connection closes when it returns.
Hijacking a request that did not ask to upgrade works too, but bytes pipelined behind it in
the same read are parsed as HTTP and lost to the stream.

Not here (yet): idle keep-alive and slow-header timeouts.

Must not: parse URLs or percent-decode the target (routes do that), or interpret bodies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import email.utils
import functools
import http
import logging
import re
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import httptools

from dockyard.http.types import (
    Handler,
    HijackResponse,
    Request,
    Response,
    StreamingResponse,
    render_headers,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_COUNT",
    "HttpServer",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
# Go's net/http DefaultMaxHeaderBytes, which etcd inherits.
DEFAULT_MAX_HEADER_BYTES: Final = 1024 * 1024
DEFAULT_MAX_HEADER_COUNT: Final = 256

# Pause reading when this many parsed requests wait behind the one being answered.
_PIPELINE_HIGH: Final = 16
# Reading pauses while a hijacked stream holds this many unread bytes.
_RAW_HIGH_BYTES: Final = 256 * 1024
# After an error response we read and drop at most this much before closing, so the client
# can read our answer instead of getting a RST for unread data ("lingering close").
_LINGER_BYTES: Final = 1024 * 1024
_LINGER_S: Final = 2.0
# Bodies above this are written separately rather than copied into the header bytes.
_JOIN_LIMIT_BYTES: Final = 64 * 1024
# How long close() waits for aborted connections and their tasks to wind down.
_ABORT_WAIT_S: Final = 1.0

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_INTERNAL_ERROR: Final = Response(
    500, b'{"message":"internal error"}', content_type="application/json"
)
_NO_BODY_STATUSES: Final = frozenset({204, 304})

_STATUS_LINES: dict[int, str] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in http.HTTPStatus
}
_METHODS: dict[bytes, str] = {
    m: m.decode("ascii") for m in (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS")
}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        # An empty reason-phrase is valid (RFC 9112 §4); cache so unknown codes stay cheap.
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} \r\n"
    return line


class _DateCache:
    """The IMF-fixdate for the current second, formatted once per second (RFC 9110 §6.6.1)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._value = email.utils.formatdate(now, usegmt=True)
            self._second = second
        return self._value


_date = _DateCache()


class _Reject(Exception):
    """Raised from a parser callback to abandon a message with a 4xx status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


MISSING_HOST = 1400  # a queued 400 with Go's own wording for HTTP/1.1 without Host
UNSUPPORTED_TE = 1501  # a queued 501 for a transfer coding we do not know (RFC 9112 §6.1)


def _plain(status: int) -> Response:
    # Go's net/http answers unparseable requests with "400 Bad Request", no newline.
    if status == UNSUPPORTED_TE:
        return Response(
            501, b"Unsupported transfer encoding", content_type="text/plain; charset=utf-8"
        )
    if status == MISSING_HOST:
        return Response(
            400,
            b"400 Bad Request: missing required Host header",
            content_type="text/plain; charset=utf-8",
        )
    return Response(
        status,
        f"{status} {http.HTTPStatus(status).phrase}".encode("ascii"),
        content_type="text/plain; charset=utf-8",
    )


_extra_headers = render_headers  # validates: CR/LF in a value would forge headers


def _escape_non_ascii(url: bytes) -> str:
    # llhttp rejects raw bytes >= 0x80 in the path but not everywhere; escaping them keeps the
    # target ASCII and lossless, exactly as if the client had percent-encoded them itself.
    return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in url)


# One queued unit of work: a request with (keep_alive, http_1_1), or an error status to send
# before closing.
_Pending = tuple[Request, bool, bool] | int


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


@dataclass(frozen=True, slots=True)
class LenientMessage:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    http11: bool
    length: int  # bytes of `data` the message used


def parse_lenient_message(data: bytes, max_header_bytes: int) -> LenientMessage | None:
    """Go's request parsing for what llhttp refuses: any token as the method, raw bytes
    >= 0x80 in the target (percent-escaped here, so routes decode them as Go does). Only a
    complete message with a Content-Length body (or none); None otherwise."""
    # Lines end in CRLF or a bare LF (Go accepts both); the header block ends at an empty line.
    match = _HEAD_END.search(data, 0, max_header_bytes)
    if match is None:
        return None
    end, start = match.start(), match.end()
    lines = [line.removesuffix(b"\r") for line in data[:end].split(b"\n")]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    method, target, version = parts
    if not _TOKEN.match(method) or not target or any(b < 0x21 or b == 0x7F for b in target):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            return None
        key = name.decode("latin-1").lower()
        if key == "content-length" and key in headers:
            return None  # never guess between two lengths (request smuggling)
        headers.setdefault(key, value.strip().decode("latin-1"))
    if "transfer-encoding" in headers:
        return None
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        return None
    length = int(length_text)
    if len(data) < start + length:
        return None
    http11 = version == b"HTTP/1.1"
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if http11 else connection == "keep-alive"
    return LenientMessage(
        method.decode("ascii"),
        _escape_non_ascii(target),
        headers,
        data[start : start + length],
        keep_alive,
        http11,
        start + length,
    )


def _new_parser(protocol: Any) -> httptools.HttpRequestParser:
    return httptools.HttpRequestParser(protocol)


class _RawInput:
    """Bytes from the client once HTTP parsing stopped (an upgrade), and whether it hit EOF."""

    __slots__ = ("_conn", "buffer", "eof", "skip_bytes", "waiter")

    def __init__(self, conn: _HttpConnection, initial: bytes = b"", skip_bytes: int = 0) -> None:
        self._conn = conn
        self.buffer = bytearray(initial)
        self.eof = False
        # The rest of an upgrade request's body, still to arrive: not part of the stream.
        self.skip_bytes = skip_bytes
        self.waiter: asyncio.Future[None] | None = None

    @property
    def full(self) -> bool:
        return len(self.buffer) >= _RAW_HIGH_BYTES

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        if self.skip_bytes:
            skipped = min(self.skip_bytes, len(data))
            self.skip_bytes -= skipped
            data = data[skipped:]
            if not data:
                return
        self.buffer += data
        self._wake()
        if self.full:
            self._conn._update_reading()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    async def read(self, max_bytes: int) -> bytes:
        while not self.buffer and not self.eof:
            if self.waiter is None:
                self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._conn._reading_paused:
            self._conn._update_reading()
        return data


class _Hijacked:
    """`dockyard.http.types.HijackedStream` over a connection's transport."""

    __slots__ = ("_conn", "_raw")

    def __init__(self, conn: _HttpConnection, raw: _RawInput) -> None:
        self._conn = conn
        self._raw = raw

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._raw.read(max_bytes)

    async def write(self, data: bytes) -> None:
        conn = self._conn
        transport = conn._transport
        if transport is None or conn._stop or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        if conn._write_paused:
            await conn._drain()

    def write_eof(self) -> None:
        transport = self._conn._transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    def close(self) -> None:
        self._conn._close()


class _HttpConnection(asyncio.Protocol):
    """One client connection. See the module docstring for the rules it keeps."""

    __slots__ = (
        "_body",
        "_body_bytes",
        "_completed",
        "_drain_waiter",
        "_expect_continue",
        "_header_bytes",
        "_header_count",
        "_headers",
        "_in_headers",
        "_in_message",
        "_keep_alive",
        "_linger_bytes",
        "_lingering",
        "_parser",
        "_parser_dead",
        "_peer_cert",
        "_queue",
        "_raw",
        "_raw_header_bytes",
        "_reading_paused",
        "_reject_status",
        "_remote_addr",
        "_server",
        "_shutting_down",
        "_stop",
        "_streaming",
        "_task",
        "_transport",
        "_url",
        "_write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = _new_parser(self)
        self._remote_addr: tuple[str, int] | None = None
        self._peer_cert: dict[str, Any] | None = None
        self._queue: collections.deque[_Pending] = collections.deque()
        self._task: asyncio.Future[Any] | None = None
        # Per-message parse state.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._raw_header_bytes = 0
        self._in_headers = False
        self._in_message = False
        self._completed = 0  # messages parsed so far on this connection
        self._keep_alive = True
        self._expect_continue = False
        self._reject_status = 0
        # Connection state.
        self._parser_dead = False
        self._stop = False  # no further requests are answered; the transport is closing
        self._shutting_down = False
        self._streaming = False
        self._lingering = False
        self._linger_bytes = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._raw: _RawInput | None = None  # set once HTTP parsing stopped for a hijack

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they quack the same.
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._remote_addr = (str(peer[0]), int(peer[1]))
        if transport.get_extra_info("sslcontext") is not None:
            # For TLS, connection_made runs after the handshake, so the cert is known here.
            # {} means "a certificate was sent but not verified" (CERT_NONE): trust nothing.
            self._peer_cert = transport.get_extra_info("peercert") or None
        self._server._connections.add(self)
        if self._server._closing:
            self._stop = True
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop = True
        self._server._forget(self)
        self._queue.clear()
        if self._raw is not None:
            self._raw.feed_eof()
        if self._task is not None:
            self._task.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
            # Retrieved or not, a lost connection is no error worth a "never retrieved" log.
            waiter.exception()
        self._drain_waiter = None

    def eof_received(self) -> bool | None:
        # Like Go's net/http (which etcd uses), a client EOF means the client is gone: the
        # transport closes and connection_lost cancels any in-flight handler or stream, so a
        # long-poll or watch stops waiting. Requests answered synchronously in data_received
        # have already been written by now, so `printf 'GET ...' | nc -N` still works.
        # After an upgrade, EOF only ends the client's half of the raw stream.
        if self._raw is not None:
            self._raw.feed_eof()
            return True
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw.feed(data)
            return
        if self._lingering:
            self._linger_bytes += len(data)
            if self._linger_bytes > _LINGER_BYTES and self._transport is not None:
                self._transport.close()
            return
        if self._parser_dead or self._stop:
            return
        at_boundary = not self._in_message
        completed_before = self._completed
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The request is answered as plain HTTP/1.1 and the connection then closed, unless
            # its handler hijacks it (a `HijackResponse`): then what follows is its stream.
            self._parser_dead = True
            offset = upgrade.args[0] if upgrade.args and isinstance(upgrade.args[0], int) else 0
            # llhttp stops before the body of an upgrade request (Docker's exec start sends
            # `{"Detach":false,"Tty":false}`): the body is the request's, not the stream's.
            length = self._headers.get("content-length", "")
            body_bytes = int(length) if length.isdigit() else 0
            rest = data[offset:]
            body, rest = rest[:body_bytes], rest[body_bytes:]
            self._raw = _RawInput(self, rest, skip_bytes=body_bytes - len(body))
            if self._queue:
                last = self._queue[-1]
                if not isinstance(last, int):
                    request = last[0]
                    if body and not request.body:
                        request = dataclasses.replace(request, body=body)
                    self._queue[-1] = (request, False, last[2])
        except httptools.HttpParserError:
            # llhttp refuses some requests Go (and so etcd) accepts: unknown methods, raw
            # non-ASCII bytes in the target, bare LF line ends. If the refused message is the
            # first of this read and complete, take it with the lenient parser and go on.
            first_of_read = at_boundary and self._completed == completed_before
            if not self._reject_status and first_of_read and self._lenient(data):
                return  # _lenient processed the queue and fed the rest
            self._parser_dead = True
            encoding = self._headers.get("transfer-encoding", "chunked").lower()
            self._queue.append(
                self._reject_status or (UNSUPPORTED_TE if encoding != "chunked" else 400)
            )
        else:
            if self._in_headers:
                # httptools buffers a header line until it ends, so the callbacks alone
                # cannot bound it: count every read that ends inside the header section.
                self._raw_header_bytes += len(data)
                if self._raw_header_bytes > self._server._max_header_bytes:
                    self._parser_dead = True
                    self._queue.append(431)
        self._process()

    def _lenient(self, data: bytes) -> bool:
        """Parse one complete message at the start of `data` by Go's rules, queue it, and
        feed the rest to a fresh strict parser. False if it is not one we can take."""
        message = parse_lenient_message(data, self._server._max_header_bytes)
        if message is None or len(message.body) > self._server._max_body_bytes:
            return False
        self._in_message = self._in_headers = False
        self._queue.append(
            (
                Request(
                    message.method,
                    message.target,
                    message.headers,
                    message.body,
                    self._remote_addr,
                    self._peer_cert,
                ),
                message.keep_alive,
                message.http11,
            )
        )
        self._parser = _new_parser(self)
        rest = data[message.length :]
        if rest:
            self.data_received(rest)
        else:
            self._process()
        return True

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_headers = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._raw_header_bytes = 0
        self._expect_continue = False
        self._reject_status = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._server._max_header_bytes:
            self._reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        self._header_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if (
            self._header_bytes > self._server._max_header_bytes
            or self._header_count > self._server._max_header_count
        ):
            self._reject(431)
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        parser = self._parser
        self._keep_alive = parser.should_keep_alive()
        headers = self._headers
        length = headers.get("content-length")
        # llhttp validates Content-Length itself; this only rejects a too-large body early,
        # before the client sends it (and before any 100 Continue).
        if length is not None and length.isdigit() and int(length) > self._server._max_body_bytes:
            self._reject(413)
        if headers.get("expect", "").lower() == "100-continue" and (
            parser.get_http_version() == "1.1"
        ):
            self._expect_continue = True
            self._maybe_send_continue()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._server._max_body_bytes:
            self._reject(413)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._completed += 1
        self._in_message = False
        self._expect_continue = False
        parser = self._parser
        method_b = parser.get_method()
        method = _METHODS.get(method_b) or method_b.decode("ascii")
        body = self._body
        url = self._url
        request = Request(
            method,
            url.decode("ascii") if url.isascii() else _escape_non_ascii(url),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
            self._remote_addr,
            self._peer_cert,
        )
        http11 = parser.get_http_version() == "1.1"
        if http11 and "host" not in self._headers:
            self._queue.append(MISSING_HOST)  # RFC 9112 §3.2, and what Go answers
            return
        self._queue.append((request, self._keep_alive, http11))

    def _reject(self, status: int) -> None:
        self._reject_status = status
        raise _Reject(status)

    # --- answering ------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer queued requests in order until one needs a task or the queue is empty."""
        queue = self._queue
        while queue and self._task is None and not self._stop:
            item = queue.popleft()
            if isinstance(item, int):
                self._send_error(item)
                return
            request, keep_alive, http11 = item
            if self._shutting_down:
                keep_alive = False
            try:
                result = self._server._handler(request)
            except Exception:
                logger.exception("handler failed for %s %s", request.method, request.target)
                result = _INTERNAL_ERROR
            if isinstance(result, Response):
                self._send(result, request.method == "HEAD", keep_alive, http11)
            elif isinstance(result, StreamingResponse | HijackResponse):
                self._start_task(self._run_async(result, request, keep_alive, http11))
            else:
                if isinstance(result, asyncio.Future):
                    # A plain future (a write waiting for its log entry): no task needed,
                    # answer from its callback.
                    self._task = result
                    result.add_done_callback(
                        functools.partial(self._on_future_done, request, keep_alive, http11)
                    )
                else:
                    self._start_task(self._run_async(result, request, keep_alive, http11))
        if self._task is None and not self._stop:
            if self._shutting_down and not queue and not self._in_message:
                self._close()
                return
            if self._expect_continue:
                self._maybe_send_continue()
        # Checked inline: this runs once per request and the answer is almost always "no".
        if self._reading_paused or self._write_paused or len(queue) >= _PIPELINE_HIGH:
            self._update_reading()

    def _start_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._task = task
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            # _run_async handles handler errors; anything here is our own bug.
            logger.error("http connection task failed", exc_info=exc)
            self._close()
            return
        self._process()

    def _on_future_done(
        self,
        request: Request,
        keep_alive: bool,
        http11: bool,
        future: asyncio.Future[Response | StreamingResponse | HijackResponse],
    ) -> None:
        if self._task is not future:
            return  # the connection went away and cancelled it
        self._task = None
        if future.cancelled():
            return
        response = future.result() if future.exception() is None else None
        if isinstance(response, Response):
            self._send(
                response, request.method == "HEAD", keep_alive and not self._shutting_down, http11
            )
            self._process()
        else:
            # Streams and failures take the general path (which logs and answers 500).
            self._start_task(self._run_async(future, request, keep_alive, http11))

    async def _run_async(
        self,
        result: StreamingResponse
        | HijackResponse
        | Awaitable[Response | StreamingResponse | HijackResponse],
        request: Request,
        keep_alive: bool,
        http11: bool,
    ) -> None:
        response: object = result
        if not isinstance(result, StreamingResponse | HijackResponse):
            try:
                response = await result
            except Exception:
                logger.exception("handler failed for %s %s", request.method, request.target)
                response = _INTERNAL_ERROR
        head = request.method == "HEAD"
        if self._shutting_down:
            keep_alive = False
        if isinstance(response, Response):
            self._send(response, head, keep_alive, http11)
        elif isinstance(response, StreamingResponse):
            await self._stream(response, head, keep_alive, http11)
        elif isinstance(response, HijackResponse):
            await self._hijack(response, request, http11)
        else:
            logger.error(
                "handler for %s %s returned %r, not a Response",
                request.method,
                request.target,
                type(response),
            )
            self._send(_INTERNAL_ERROR, head, keep_alive, http11)

    def _head(
        self,
        status: int,
        content_type: str | None,
        extra: tuple[tuple[str, str], ...],
        framing: str,
        keep_alive: bool,
        http11: bool,
        trusted: str = "",
    ) -> bytes:
        if keep_alive:
            # HTTP/1.0 keep-alive must be confirmed explicitly; 1.1 is persistent by default.
            connection = "" if http11 else "Connection: keep-alive\r\n"
        else:
            connection = "Connection: close\r\n"
        ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
        others = _extra_headers(extra) if extra else ""
        return (
            f"{_status_line(status)}Date: {_date.get()}\r\n{self._server._server_line}"
            f"{ctype}{framing}{others}{trusted}{connection}\r\n"
        ).encode("latin-1")

    def _send(self, response: Response, head: bool, keep_alive: bool, http11: bool) -> None:
        transport = self._transport
        if transport is None or self._stop:
            return
        status = response.status
        body = response.body
        try:
            if status < 200 or status in _NO_BODY_STATUSES:
                body = b""
                framing = ""
            else:
                framing = f"Content-Length: {len(body)}\r\n"
            data = self._head(
                status,
                response.content_type,
                response.headers,
                framing,
                keep_alive,
                http11,
                response.trusted_headers,
            )
        except (ValueError, UnicodeEncodeError):
            logger.exception("handler returned an unencodable response (status %d)", status)
            response = _INTERNAL_ERROR
            body = response.body
            data = self._head(
                500,
                response.content_type,
                (),
                f"Content-Length: {len(body)}\r\n",
                keep_alive,
                http11,
            )
        if head or not body:
            transport.write(data)
        elif len(body) <= _JOIN_LIMIT_BYTES:
            transport.write(data + body)
        else:
            transport.write(data)
            transport.write(body)
        if not keep_alive:
            self._close()

    async def _stream(
        self, response: StreamingResponse, head: bool, keep_alive: bool, http11: bool
    ) -> None:
        chunks = response.chunks
        transport = self._transport
        status = response.status
        self._streaming = True
        try:
            if transport is None or self._stop:
                return
            # HTTP/1.0 has no chunked coding: send raw bytes and mark the end by closing.
            chunked = http11
            if not chunked:
                keep_alive = False
            bodiless = status < 200 or status in _NO_BODY_STATUSES
            try:
                data = self._head(
                    status,
                    response.content_type,
                    response.headers,
                    "Transfer-Encoding: chunked\r\n" if chunked and not bodiless else "",
                    keep_alive,
                    http11,
                )
            except (ValueError, UnicodeEncodeError):
                logger.exception("handler returned an unencodable streaming response")
                self._send(_INTERNAL_ERROR, head, keep_alive, http11)
                return
            # Written at once, before the first chunk exists: a watcher must see the headers
            # while it waits for the first event.
            transport.write(data)
            if head or bodiless:
                if not keep_alive:
                    self._close()
                return
            if response.single_chunk and chunked:
                # One write for the chunk and the end of the body (one-shot watches fan out
                # to many connections at once; halving the writes matters there).
                async for chunk in chunks:
                    transport.write(b"%x\r\n%b\r\n%b" % (len(chunk), chunk, _LAST_CHUNK))
                    break
                else:
                    transport.write(_LAST_CHUNK)
                if not keep_alive:
                    self._close()
                return
            async for chunk in chunks:
                if not chunk:
                    continue  # an empty chunk would end the chunked body early
                if chunked:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    await self._drain()
            if chunked:
                transport.write(_LAST_CHUNK)
            if not keep_alive:
                self._close()
        except asyncio.CancelledError:
            # Client gone (nothing to write) or server shutting down (end the body cleanly).
            if self._shutting_down and transport is not None and not transport.is_closing():
                if http11:
                    transport.write(_LAST_CHUNK)
                self._close()
            raise
        except ConnectionError:
            self._close()
        except Exception:
            # The headers are out, so no 500 is possible: close without the last chunk so
            # the client sees a truncated body rather than a clean end.
            logger.exception("streaming response body failed")
            self._close()
        finally:
            self._streaming = False
            # Always, even if never iterated (HEAD, 204) or already exhausted (then a no-op):
            # a producer may have registered a watcher when it was created.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    logger.exception("closing a streaming response body failed")

    async def _hijack(self, response: HijackResponse, request: Request, http11: bool) -> None:
        transport = self._transport
        if transport is None or self._stop:
            if response.abandon is not None:
                response.abandon()
            return
        raw = self._raw
        if raw is None:
            # Not an upgrade request: stop parsing; what arrives from now on is the stream's.
            self._parser_dead = True
            raw = self._raw = _RawInput(self)
        self._queue.clear()
        try:
            others = _extra_headers(response.headers) if response.headers else ""
        except ValueError:
            logger.exception("handler returned an unencodable hijack response")
            if response.abandon is not None:
                response.abandon()
            self._send(_INTERNAL_ERROR, False, False, http11)
            return
        if response.status == 101:
            # The parser refused CR/LF in header values, so echoing Upgrade is safe.
            upgrade = request.headers.get("upgrade") or "tcp"
            connection = f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n"
        else:
            connection = "Connection: close\r\n"
        ctype = f"Content-Type: {response.content_type}\r\n" if response.content_type else ""
        transport.write(
            (
                f"{_status_line(response.status)}Date: {_date.get()}\r\n"
                f"{self._server._server_line}{ctype}{others}{connection}\r\n"
            ).encode("latin-1")
        )
        self._streaming = True
        try:
            await response.handler(_Hijacked(self, raw))
        except ConnectionError:
            pass
        except Exception:
            logger.exception("hijacked stream handler failed for %s", request.target)
        finally:
            self._streaming = False
            # The client may still be sending (a terminal's keystrokes, a resize): closing
            # with its bytes unread would RST the connection and could destroy the end of
            # our output before the client reads it (seen with `docker exec -t`).
            self._raw = None
            self._linger_close()

    def _linger_close(self) -> None:
        """Half-close, then read and drop what the client still sends for a while, then
        close: a close with unread bytes in the kernel buffer sends a RST."""
        self._stop = True
        self._queue.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        self._reading_paused = False
        transport.resume_reading()
        asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    async def _drain(self) -> None:
        if not self._write_paused:
            return
        if self._stop:
            raise ConnectionResetError("connection closed")
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _send_error(self, status: int) -> None:
        """Answer a message we could not parse or accept, then close without a RST."""
        transport = self._transport
        if transport is None:
            return
        self._stop = True
        self._queue.clear()
        response = _plain(status)
        body = response.body
        transport.write(
            self._head(
                response.status,
                response.content_type,
                (),
                f"Content-Length: {len(body)}\r\n",
                False,
                True,
            )
            + body
        )
        self._linger_close()

    # --- connection state -----------------------------------------------------------------

    def _maybe_send_continue(self) -> None:
        # 100 Continue only when this message is next to be answered; otherwise it could land
        # in the middle of an earlier response.
        if (
            self._expect_continue
            and self._task is None
            and not self._queue
            and self._transport is not None
            and not self._stop
        ):
            self._expect_continue = False
            self._transport.write(_CONTINUE)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._stop:
            return
        should_pause = (
            self._write_paused
            or len(self._queue) >= _PIPELINE_HIGH
            or (self._raw is not None and self._raw.full)
        )
        if should_pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _close(self) -> None:
        self._stop = True
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()

    def shutdown(self) -> None:
        """Server shutdown: close when idle, end streams, answer in-flight requests last."""
        self._shutting_down = True
        task = self._task
        if self._lingering:
            if self._transport is not None:
                self._transport.close()
        elif task is None:
            if not self._queue and not self._in_message:
                self._close()
        elif self._streaming:
            task.cancel()

    def abort(self) -> None:
        self._stop = True
        if self._transport is not None:
            self._transport.abort()


class _HalfCloseTlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, except that a client's close_notify is a half-close.

    asyncio answers a peer's close_notify by shutting the whole connection down, whatever
    `eof_received` returns. Go's `tls.Conn.CloseWrite` sends close_notify and keeps reading:
    the docker CLI does so right after an attach or exec request without stdin, and waits
    for the output. Go's servers keep writing then, and so must we: when the application
    protocol keeps the connection open (a hijacked stream), the shutdown waits until it
    closes its transport. Relies on CPython's sslproto (3.11+), which `listen` checks.
    """

    _keep_open = False

    def _call_eof_received(self) -> None:
        state: Any = self._app_state  # type: ignore[has-type]
        if state == sslproto.AppProtocolState.STATE_CON_MADE:
            self._app_state = sslproto.AppProtocolState.STATE_EOF
            app: Any = self._app_protocol
            try:
                self._keep_open = bool(app.eof_received())
            except Exception as exc:
                self._fatal_error(exc, "Error calling eof_received()")

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            # Send OpenSSL's alert (e.g. "certificate required") before the connection is
            # dropped, so the client can say why, as it would with Go's server.
            with contextlib.suppress(Exception):
                self._process_outgoing()  # type: ignore[attr-defined]
        super()._on_handshake_complete(handshake_exc)

    def _start_shutdown(self) -> None:
        app_transport = self._app_transport
        # The application closing its transport marks it closed before calling us; the
        # read side reaching close_notify does not.
        if self._keep_open and app_transport is not None and not app_transport._closed:
            return
        super()._start_shutdown()


class HttpServer:
    """Serves one `Handler` on any number of listening sockets; `close()` stops them all.

    Usage::

        server = HttpServer(handler)
        await server.listen("127.0.0.1", 2379)
        await server.listen(sock=already_bound_socket, ssl_context=ctx)
        ...
        await server.close()
    """

    def __init__(
        self,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        server_header: str | None = None,
        half_close_tls: bool = False,
    ) -> None:
        """`half_close_tls`: serve TLS through _HalfCloseTlsProtocol on any event loop (the
        stock loop always does), for hijacked streams whose client half-closes (docker
        attach over TLS); otherwise uvloop's own TLS, which ends the connection instead."""
        if max_body_bytes < 0 or max_header_bytes <= 0 or max_header_count <= 0:
            raise ValueError("limits must be positive")
        if server_header is not None and ("\r" in server_header or "\n" in server_header):
            raise ValueError("invalid server header")
        self._handler = handler
        self._ssl_context = ssl_context
        self._max_body_bytes = max_body_bytes
        self._max_header_bytes = max_header_bytes
        self._max_header_count = max_header_count
        self._server_line = f"Server: {server_header}\r\n" if server_header else ""
        self._servers: list[asyncio.Server] = []
        self._connections: set[_HttpConnection] = set()
        self._closing = False
        self._drained: asyncio.Event | None = None
        self._half_close_tls = half_close_tls

    async def listen(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ) -> asyncio.Server:
        """Start listening on host:port or on an already bound `sock`.

        `ssl_context` overrides the server-wide one for this listener, so one server can
        serve http:// and https:// URLs side by side.
        """
        if self._closing:
            raise RuntimeError("server is closed")
        loop = asyncio.get_running_loop()
        context = ssl_context if ssl_context is not None else self._ssl_context
        factory: Callable[[], asyncio.BaseProtocol] = self._make_connection
        if context is not None and (
            self._half_close_tls or isinstance(loop, asyncio.BaseEventLoop)
        ):
            # TLS with half-close for hijacked streams (_HalfCloseTlsProtocol); other loops
            # (uvloop) keep their own TLS unless the server asks for half-close.
            tls_context = context
            context = None

            def factory() -> asyncio.BaseProtocol:
                # No waiter: handshake failures end the connection, as loop's own TLS does.
                return _HalfCloseTlsProtocol(
                    loop,
                    self._make_connection(),
                    tls_context,
                    None,  # type: ignore[arg-type]
                    server_side=True,
                )

        if sock is not None:
            if host is not None or port is not None:
                raise ValueError("pass either host/port or sock, not both")
            server = await loop.create_server(factory, sock=sock, ssl=context, backlog=backlog)
        else:
            if port is None:
                raise ValueError("pass a port (0 for any) or a bound sock")
            server = await loop.create_server(factory, host, port, ssl=context, backlog=backlog)
        self._servers.append(server)
        return server

    def _make_connection(self) -> _HttpConnection:
        return _HttpConnection(self)

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self._servers for s in server.sockets]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket: port 0 resolved to the real port."""
        out = []
        for sock in self.sockets:
            name = sock.getsockname()
            out.append((str(name[0]), int(name[1])))
        return out

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening, close idle connections and end streams at once, give in-flight
        requests `grace_s` to be answered, then abort whatever is left. Returns once every
        connection is gone and every stream iterator has been closed."""
        if self._closing:
            return
        self._closing = True
        self._drained = asyncio.Event()
        for server in self._servers:
            server.close()
        tasks: set[asyncio.Future[Any]] = set()
        for conn in list(self._connections):
            if conn._task is not None:
                tasks.add(conn._task)
            conn.shutdown()
        if self._connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace_s)
        for conn in list(self._connections):
            if conn._task is not None:
                tasks.add(conn._task)
            conn.abort()
        if self._connections:
            # abort() schedules connection_lost for the next loop iteration.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _ABORT_WAIT_S)
        if tasks:
            # Stream tasks finish (aclose their iterators) after their connection is gone.
            await asyncio.wait(tasks, timeout=_ABORT_WAIT_S)
        for server in self._servers:
            await server.wait_closed()

    def _forget(self, conn: _HttpConnection) -> None:
        self._connections.discard(conn)
        if self._drained is not None and not self._connections:
            self._drained.set()

    async def __aenter__(self) -> HttpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    server_header: str | None = None,
) -> HttpServer:
    """Create an `HttpServer` and listen on host:port (or `sock`). Close with `close()`."""
    server = HttpServer(
        handler,
        ssl_context=ssl_context,
        max_body_bytes=max_body_bytes,
        server_header=server_header,
    )
    await server.listen(host, port, sock=sock)
    return server
