"""A lean asyncio HTTP/1.1 client for the Docker Engine API: the I/O half of compose's HTTP.

Role: what ``EngineClient`` (``compose/client.py``) sends its requests through, in place of
a general-purpose HTTP library whose import and lazily imported backends cost every
compose command ~90 ms at start.
It connects over the three transports the docker CLI supports — a unix socket, TCP, and
TCP+TLS with the client's context — keeps idle connections for reuse, and reads answers
framed by Content-Length, chunked transfer coding, or the end of the connection. All
parsing is in the pure ``compose/http_wire.py``; ``asyncio`` and ``ssl`` are the only
networking imports.

Invariants:
- A connection goes back to the pool only after its answer was read to the end of its
  framing, the engine did not ask to close it, and no bytes followed the body; anything
  else (an error, a timeout, a cancellation, a consumer that stops reading a stream
  early) closes it. At most ``MAX_IDLE_CONNECTIONS`` idle connections are kept; any
  number may be busy at once (compose runs dozens of requests in parallel).
- Every wait is bounded by a :class:`Timeouts` field, or explicitly unbounded (``None``:
  a followed log or event stream may stay silent for hours).
- A failure below the Engine API is an :class:`HTTPError`: :class:`ConnectError` (with the
  underlying ``OSError``/``ssl`` message), :class:`ReadTimeout`/:class:`WriteTimeout`,
  :class:`ConnectionClosedError` (the engine dropped the connection, saying where),
  :class:`ProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dockyard.compose.http_wire import (
    MAX_HEAD_BYTES,
    BodyDecoder,
    HTTPError,
    IncompleteBodyError,
    ProtocolError,
    ResponseHead,
    body_framing,
    keeps_alive,
    parse_response_head,
    serialize_request,
)

__all__ = [
    "MAX_IDLE_CONNECTIONS",
    "ConnectError",
    "ConnectionClosedError",
    "ConnectionPool",
    "Endpoint",
    "HTTPError",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "StreamResponse",
    "Timeouts",
    "WriteTimeout",
]

MAX_IDLE_CONNECTIONS = 16  # compose's bursts are a few dozen requests, mostly short
READ_CHUNK_BYTES = 64 << 10
MAX_BODY_BYTES = 256 << 20  # a whole (non-streamed) answer; inspect documents are KiBs
# Go's net/http replays a request on a fresh connection when a reused one turns out to
# have been closed by the server before any answer byte (transport.go shouldRetryRequest),
# but only for requests that are safe to replay (Request.isReplayable).
_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class ConnectError(HTTPError):
    """No connection to the engine (refused, no such socket, TLS handshake refused)."""


class ReadTimeout(HTTPError):
    """The engine stayed silent longer than the read timeout."""


class WriteTimeout(HTTPError):
    """The engine did not take the request's bytes within the write timeout."""


class ConnectionClosedError(HTTPError):
    """The engine closed (or reset) the connection before its answer was complete."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds each wait may take; None waits forever."""

    connect_s: float | None
    read_s: float | None  # per read: how long the engine may stay silent
    write_s: float | None


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens: a unix socket path, or a TCP host and port (with TLS
    when ``ssl_context`` is set); ``host_header`` is what requests name as ``Host``."""

    host_header: str
    socket_path: str | None = None
    host: str | None = None
    port: int | None = None
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True)
class Response:
    """A whole answer: its head and body."""

    head: ResponseHead
    content: bytes

    @property
    def status(self) -> int:
        return self.head.status

    def header(self, name: str) -> str | None:
        return self.head.header(name)

    def json(self) -> Any:
        return json.loads(self.content)


class _Connection:
    """One socket to the engine; ``reused`` once it is handed out a second time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    @property
    def usable(self) -> bool:
        """False once the engine closed its side (an idle keep-alive connection the
        engine timed out) or the transport is closing."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


_T = TypeVar("_T")


async def _bounded(work: Awaitable[_T], timeout_s: float | None, error: HTTPError) -> _T:
    if timeout_s is None:
        return await work
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except TimeoutError:
        raise error from None


class StreamResponse:
    """An answer whose body is read as it arrives (``aiter_bytes``); ``aclose`` returns
    the connection to the pool when the body was read to its end, else closes it."""

    def __init__(
        self,
        pool: ConnectionPool,
        connection: _Connection,
        head: ResponseHead,
        decoder: BodyDecoder,
        read_timeout_s: float | None,
    ) -> None:
        self.head = head
        self._pool = pool
        self._connection: _Connection | None = connection
        self._decoder = decoder
        self._read_timeout_s = read_timeout_s

    @property
    def status(self) -> int:
        return self.head.status

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's payload as it arrives, in the sizes it arrives."""
        decoder = self._decoder
        while not decoder.done:
            connection = self._connection
            if connection is None:
                raise ConnectionClosedError("the answer was closed before its body was read")
            data = await self._read(connection)
            if not data:
                try:
                    decoder.feed_eof()
                except IncompleteBodyError as err:
                    raise ConnectionClosedError(str(err)) from None
                break
            for piece in decoder.feed(data):
                yield piece

    async def aread(self, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
        """The whole body (at most ``limit_bytes``, else :class:`ProtocolError`)."""
        pieces: list[bytes] = []
        size = 0
        async for piece in self.aiter_bytes():
            size += len(piece)
            if size > limit_bytes:
                raise ProtocolError(f"the engine's answer exceeds {limit_bytes} bytes")
            pieces.append(piece)
        return b"".join(pieces)

    async def _read(self, connection: _Connection) -> bytes:
        timeout = ReadTimeout(
            f"the engine sent nothing for {self._read_timeout_s} s (read timeout)"
        )
        try:
            return await _bounded(
                connection.reader.read(READ_CHUNK_BYTES), self._read_timeout_s, timeout
            )
        except OSError as err:  # a reset, a TLS record error
            raise ConnectionClosedError(f"the engine's connection broke: {err}") from err

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        reusable = (
            self._decoder.done
            and self._decoder.framing.reusable
            and not self._decoder.unused
            and keeps_alive(self.head)
        )
        self._pool.release(connection, reusable=reusable)


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one engine endpoint."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def busy_count(self) -> int:
        return len(self._busy)

    async def aclose(self) -> None:
        """Close every connection, idle or busy (an open stream then ends in an error)."""
        self._closed = True
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(OSError, ssl.SSLError):
                await connection.writer.wait_closed()

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        timeouts: Timeouts | None = None,
    ) -> Response:
        """One request and its whole answer; ``timeouts`` overrides the pool's."""
        async with self.stream(
            method, target, headers=headers, body=body, timeouts=timeouts
        ) as response:
            return Response(response.head, await response.aread())

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        timeouts: Timeouts | None = None,
    ) -> AsyncIterator[StreamResponse]:
        """Send a request; yield the answer once its head is in (``timeouts`` overrides
        the pool's). Leaving the block closes the connection unless the body was read
        to its end."""
        request = serialize_request(
            method, target, host=self.endpoint.host_header, headers=headers, body=body
        )
        response = await self._exchange(method, request, timeouts or self.timeouts)
        try:
            yield response
        finally:
            await response.aclose()

    async def _exchange(self, method: str, request: bytes, timeouts: Timeouts) -> StreamResponse:
        while True:
            connection = await self._acquire(timeouts)
            try:
                head = await self._send(connection, request, timeouts)
            except _StaleConnection as err:
                self.release(connection, reusable=False)
                if method in _REPLAYABLE_METHODS:
                    continue  # the engine closed an idle connection: replay on a new one
                raise ConnectionClosedError(str(err)) from None
            except BaseException:
                self.release(connection, reusable=False)
                raise
            break
        try:
            decoder = BodyDecoder(body_framing(head, method))
        except BaseException:
            self.release(connection, reusable=False)
            raise
        return StreamResponse(self, connection, head, decoder, timeouts.read_s)

    async def _acquire(self, timeouts: Timeouts) -> _Connection:
        if self._closed:
            raise ConnectError("the client is closed")
        while self._idle:
            connection = self._idle.pop()  # LIFO: the warmest connection first
            if connection.usable:
                connection.reused = True
                self._busy.add(connection)
                return connection
            connection.close()
        connection = await self._connect(timeouts.connect_s)
        self._busy.add(connection)
        return connection

    def release(self, connection: _Connection, *, reusable: bool) -> None:
        self._busy.discard(connection)
        if (
            reusable
            and not self._closed
            and connection.usable
            and len(self._idle) < MAX_IDLE_CONNECTIONS
        ):
            self._idle.append(connection)
        else:
            connection.close()

    async def _connect(self, timeout_s: float | None) -> _Connection:
        endpoint = self.endpoint
        limit = MAX_HEAD_BYTES + 4  # readuntil's buffer: the head and its final CRLFCRLF
        if endpoint.socket_path is not None:
            opening = asyncio.open_unix_connection(endpoint.socket_path, limit=limit)
        else:
            opening = asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=endpoint.ssl_context,
                server_hostname=endpoint.host if endpoint.ssl_context is not None else None,
                limit=limit,
            )
        timeout = ConnectError(f"timed out connecting after {timeout_s} s")
        try:
            reader, writer = await _bounded(opening, timeout_s, timeout)
        except OSError as err:  # ssl.SSLError included: a refused handshake
            raise ConnectError(str(err)) from err
        return _Connection(reader, writer)

    async def _send(
        self, connection: _Connection, request: bytes, timeouts: Timeouts
    ) -> ResponseHead:
        """Write the request and read the answer's head (the body stays in the reader)."""
        try:
            connection.writer.write(request)
            await _bounded(
                connection.writer.drain(),
                timeouts.write_s,
                WriteTimeout(f"the engine took no data for {timeouts.write_s} s (write timeout)"),
            )
            head = await self._read_head(connection, timeouts.read_s)
            while 100 <= head.status < 200 and head.status != 101:
                # an interim answer (100 Continue): the final one follows (RFC 9110 §15.2)
                head = await self._read_head(connection, timeouts.read_s)
        except asyncio.IncompleteReadError as err:
            if not err.partial and connection.reused:
                raise _StaleConnection(
                    "the engine closed the connection before answering"
                ) from None
            raise ConnectionClosedError(
                "the engine closed the connection before answering"
            ) from None
        except OSError as err:  # a reset or broken pipe, a TLS record error
            if connection.reused:
                raise _StaleConnection(f"the engine's connection broke: {err}") from err
            raise ConnectionClosedError(f"the engine's connection broke: {err}") from err
        return head

    @staticmethod
    async def _read_head(connection: _Connection, read_s: float | None) -> ResponseHead:
        try:
            raw = await _bounded(
                connection.reader.readuntil(b"\r\n\r\n"),
                read_s,
                ReadTimeout(f"the engine did not answer within {read_s} s (read timeout)"),
            )
        except asyncio.LimitOverrunError:
            raise ProtocolError(
                f"the engine's answer head exceeds {MAX_HEAD_BYTES} bytes"
            ) from None
        return parse_response_head(raw)


class _StaleConnection(HTTPError):
    """A reused connection the engine had closed before our request reached it."""
