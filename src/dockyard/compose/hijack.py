"""Interactive attach for ``dockyard compose exec``/``run``: Docker's hijacked connection.

Role: what the docker CLI's ``hijack.go`` and ``hijackedIOStreamer`` do, for Compose. The
Engine API turns ``POST /exec/{id}/start`` and ``POST /containers/{id}/attach`` into a raw
bidirectional byte stream: the client sends ``Connection: Upgrade`` / ``Upgrade: tcp``, the
engine answers ``101 UPGRADED`` (engines before API 1.24 answer ``200 OK``, which is
accepted too) and from then on the socket carries the process's stdin one way and its
output the other — raw bytes with a TTY, Docker's 8-byte-header frames (stdcopy) without.

The module has two halves:

- A pure, sans-I/O half (``error_body_length``, ``OutputDecoder``, ``stream_modes``, and
  re-exported from ``compose/http_wire.py``, compose's one HTTP parser: ``upgrade_request``,
  ``parse_response_head``, ``dechunk``): bytes and values in, bytes and values out; no
  sockets, no terminal, no clock. It is what tests/unit/compose/test_hijack.py covers.
- A thin driver (``open_hijack``, ``Session.pump``, ``raw_terminal``, ``terminal_size``,
  ``resize_with_retry``): connects where the client's
  :class:`~dockyard.compose.client.EngineAddress` points (unix socket, TCP, TCP+TLS with
  the client's certificates), and moves bytes between the local stdio and the socket.

Invariants:
- The local terminal leaves raw mode on every exit path: ``raw_terminal`` restores the saved
  attributes in a ``finally``, and the session turns SIGTERM/SIGHUP into a cancellation so
  that the ``finally`` runs (a raw terminal has no SIGINT: Ctrl-C goes to the container, as
  with ``docker exec -it``).
- At local stdin EOF the write side is closed (docker CLI ``CloseWrite``): a TCP/unix
  half-close, or on TLS a close_notify (Go ``tls.Conn.CloseWrite``); the engine then
  closes the container's stdin, so ``cat`` ends. asyncio's TLS transport cannot do that,
  so TLS runs over memory BIOs here (:class:`_TlsWriter`).
- The session ends when the engine closes the output side; the stdin reader never keeps it
  open (a container that exits while the user still types ends the session, as docker's).
- The response head is bounded (``MAX_HEAD_BYTES``), an error answer's body too
  (``MAX_ERROR_BODY_BYTES``), and stdin read ahead of the engine (``STDIN_QUEUE_CHUNKS``).
  Output is written to stdout synchronously as it is read, so at most a few chunks of it
  are ever buffered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import signal
import ssl
import struct
import termios
import threading
import tty as ttymod
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from dockyard.compose import http_wire
from dockyard.compose.client import (
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    STDERR,
    EngineAddress,
    EngineError,
    LogLine,
    demultiplex,
    error_from_answer,
)
from dockyard.compose.http_wire import MAX_HEAD_BYTES, ResponseHead, dechunk, upgrade_request

__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "HijackProtocolError",
    "OutputDecoder",
    "ResponseHead",
    "Session",
    "StreamModes",
    "dechunk",
    "error_body_length",
    "open_hijack",
    "parse_response_head",
    "raw_terminal",
    "resize_with_retry",
    "stream_modes",
    "terminal_size",
    "upgrade_request",
]

MAX_ERROR_BODY_BYTES = 1 << 20
STDIN_CHUNK_BYTES = 32 << 10  # the docker CLI copies stdin with io.Copy's 32 KiB buffer
STDIN_QUEUE_CHUNKS = 16  # at most 512 KiB of stdin read ahead of the engine
# docker CLI (cli/command/container/tty.go initTtySize): the first resize of an exec can
# come before the process exists; it is retried this many times, 10 ms x attempt apart.
RESIZE_ATTEMPTS = 10
RESIZE_RETRY_STEP_S = 0.01
_HEAD_END = b"\r\n\r\n"


class HijackProtocolError(EngineError):
    """The engine's answer to the upgrade request is not HTTP we can read."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


# --- pure: the upgrade request and its answer ---------------------------------------------


def parse_response_head(raw: bytes) -> ResponseHead:
    """The engine's answer head (``http_wire.parse_response_head``); a malformed one is a
    :class:`HijackProtocolError`, an :class:`EngineError` as every failure of the
    attach that the CLI reports."""
    try:
        return http_wire.parse_response_head(raw)
    except http_wire.ProtocolError as err:
        raise HijackProtocolError(str(err)) from None


def error_body_length(head: ResponseHead) -> int | None:
    """How many body bytes follow an error head: its ``Content-Length`` capped to
    ``MAX_ERROR_BODY_BYTES``, or None to read until the engine closes (no length given)."""
    value = head.header("content-length")
    if value is None or not value.isdigit():
        return None
    return min(int(value), MAX_ERROR_BODY_BYTES)


class OutputDecoder:
    """The container's output as it arrives: raw bytes with a TTY (all on stdout), else
    Docker's stdcopy frames, holding at most one incomplete frame (``demultiplex``).

    Stream 0 (stdin, echoed by old engines) is written to stdout as the docker CLI does.
    """

    def __init__(self, *, tty: bool) -> None:
        self.tty = tty
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[LogLine]:
        if self.tty:
            return [LogLine(1, chunk)] if chunk else []
        self._buffer += chunk
        return demultiplex(self._buffer)

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF: a truncated stream)."""
        return len(self._buffer)


@dataclass(frozen=True)
class StreamModes:
    """What an interactive command attaches: stdin, and whether a TTY is allocated."""

    stdin: bool
    tty: bool


def stream_modes(
    *,
    detach: bool,
    no_tty: bool,
    interactive: bool,
    stdin_is_terminal: bool,
    service_tty: bool | None = None,
) -> StreamModes:
    """Compose v2 (``cmd/compose/exec.go``, ``run.go``): stdin is attached unless detached
    (or ``-i=false``); a TTY is allocated unless ``-T``/``--no-TTY``, unless stdin is not a
    terminal (``echo x | compose exec`` must not get a TTY, which would echo and turn
    ``\\n`` into ``\\r\\n``), and — for ``run`` — unless the service says ``tty: false``
    (``service_tty`` False; None means the file does not say)."""
    stdin = interactive and not detach
    tty = not no_tty and stdin_is_terminal and not detach and service_tty is not False
    return StreamModes(stdin=stdin, tty=tty)


# --- driver ---------------------------------------------------------------------------------


@dataclass
class Session:
    """A hijacked connection: the stream after the engine's head."""

    reader: asyncio.StreamReader
    writer: StreamWriterLike
    tty: bool

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, ConnectionError):
            await self.writer.wait_closed()

    async def pump(
        self,
        *,
        stdin_fd: int | None,
        stdout: BinaryIO,
        stderr: BinaryIO,
        on_resize: Callable[[], Awaitable[None]] | None = None,
    ) -> int | None:
        """Copy stdin → socket and socket → stdout/stderr until the engine closes the
        output side. SIGWINCH calls ``on_resize``; SIGTERM/SIGHUP end the session early
        and are returned (the caller exits 128+signal), else None."""
        loop = asyncio.get_running_loop()
        decoder = OutputDecoder(tty=self.tty)
        interrupted: list[int] = []
        output = asyncio.ensure_future(self._copy_output(decoder, stdout, stderr))
        feeding = (
            asyncio.ensure_future(self._copy_input(stdin_fd)) if stdin_fd is not None else None
        )
        resizes: set[asyncio.Task[None]] = set()

        def resize() -> None:
            if on_resize is not None:
                task = asyncio.ensure_future(_quietly(on_resize()))
                resizes.add(task)
                task.add_done_callback(resizes.discard)

        def stop(signum: int) -> None:
            interrupted.append(signum)
            output.cancel()

        installed: list[int] = []
        try:
            for signum, handler in (
                (signal.SIGWINCH, resize),
                (signal.SIGTERM, lambda: stop(signal.SIGTERM)),
                (signal.SIGHUP, lambda: stop(signal.SIGHUP)),
            ):
                loop.add_signal_handler(signum, handler)
                installed.append(signum)
            with contextlib.suppress(asyncio.CancelledError):
                await output
            if interrupted:
                return interrupted[0]
            if output.cancelled():
                raise asyncio.CancelledError
            return None
        finally:
            for number in installed:
                loop.remove_signal_handler(number)
            tasks = [t for t in (feeding, output, *resizes) if t is not None]
            for task in tasks:
                task.cancel()
            # every task's outcome is collected (a stdin copy that failed because the engine
            # closed first is no error of the session's)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _copy_output(
        self, decoder: OutputDecoder, stdout: BinaryIO, stderr: BinaryIO
    ) -> None:
        while True:
            chunk = await self.reader.read(STDIN_CHUNK_BYTES)
            if not chunk:
                return
            for line in decoder.feed(chunk):
                target = stderr if line.stream == STDERR else stdout
                target.write(line.data)
                target.flush()

    async def _copy_input(self, fd: int) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=STDIN_QUEUE_CHUNKS)
        _start_stdin_reader(fd, asyncio.get_running_loop(), queue)
        while True:
            data = await queue.get()
            if not data:
                break
            self.writer.write(data)
            await self.writer.drain()
        # docker CLI: stdin EOF → CloseWrite, so the engine closes the process's stdin
        if self.writer.can_write_eof():
            self.writer.write_eof()
            await self.writer.drain()


async def _quietly(work: Awaitable[None]) -> None:
    # A failed resize (the process just ended) must not end the session: the CLI logs it
    # at debug level only.
    with contextlib.suppress(EngineError, OSError):
        await work


def _start_stdin_reader(
    fd: int, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]
) -> None:
    """Read ``fd`` in a daemon thread: blocking reads work on terminals, pipes and regular
    files alike (epoll refuses regular files), and never put the shared stdin description
    into non-blocking mode under the user's shell. The queue is bounded, so the thread
    waits while the engine is slower than the input (``psql < dump.sql``). The thread may
    stay blocked in ``read`` after the session; being a daemon it does not hold the
    process."""

    def deliver(data: bytes) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return False  # the loop is closed or the session is over
        return True

    def run() -> None:
        while True:
            try:
                data = os.read(fd, STDIN_CHUNK_BYTES)
            except OSError:
                data = b""
            if not deliver(data) or not data:
                return

    threading.Thread(target=run, name="compose-stdin", daemon=True).start()


class StreamWriterLike(Protocol):
    """What the session writes through: an asyncio ``StreamWriter``, or :class:`_TlsWriter`."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class _TlsWriter:
    """TLS over a plain TCP stream with ``ssl.SSLObject`` and memory BIOs.

    Why not asyncio's TLS transport: it cannot half-close (``write_eof`` raises), and the
    docker CLI ends stdin on TLS by sending close_notify (Go ``tls.Conn.CloseWrite``), which
    the engine reads as stdin EOF; ``SSLObject.unwrap`` sends exactly that and the record
    layer keeps reading the engine's output afterwards. Decrypted output is fed to a
    ``StreamReader`` by one task, so the session reads it like a plain connection.
    """

    def __init__(
        self,
        raw_reader: asyncio.StreamReader,
        raw_writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
        server_hostname: str | None,
    ) -> None:
        self._raw_reader = raw_reader
        self._raw_writer = raw_writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self.reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
        self._decrypting: asyncio.Task[None] | None = None
        self._eof_sent = False

    async def handshake(self) -> None:
        while not self._handshake_step():
            self._flush()
            await self._raw_writer.drain()
            data = await self._raw_reader.read(STDIN_CHUNK_BYTES)
            if not data:
                raise ConnectionResetError("the engine closed the connection in the TLS handshake")
            self._incoming.write(data)
        self._flush()
        await self._raw_writer.drain()
        self._decrypting = asyncio.ensure_future(self._decrypt())

    def _handshake_step(self) -> bool:
        """One handshake attempt: True when done, False when it waits for the engine."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._raw_writer.write(pending)

    async def _decrypt(self) -> None:
        try:
            while True:
                data = await self._raw_reader.read(STDIN_CHUNK_BYTES)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                while True:
                    try:
                        chunk = self._tls.read(STDIN_CHUNK_BYTES)
                    except ssl.SSLWantReadError:
                        break
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        # close_notify, or a TCP close without it (moby closes the socket)
                        chunk = b""
                    if not chunk:
                        self.reader.feed_eof()
                        return
                    self.reader.feed_data(chunk)
                self._flush()  # TLS 1.3 may answer a key update
                if not data:
                    self.reader.feed_eof()
                    return
        except (ssl.SSLError, OSError) as err:
            self.reader.set_exception(err)

    def write(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    async def drain(self) -> None:
        await self._raw_writer.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        # SSL_shutdown: our close_notify goes out; waiting for the engine's is not needed
        with contextlib.suppress(ssl.SSLWantReadError):
            self._tls.unwrap()
        self._flush()

    def close(self) -> None:
        if self._decrypting is not None:
            self._decrypting.cancel()
        self._raw_writer.close()

    async def wait_closed(self) -> None:
        if self._decrypting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._decrypting
        await self._raw_writer.wait_closed()


async def _connect(
    address: EngineAddress, ssl_context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, StreamWriterLike, str]:
    """(reader, writer, Host header) of a new connection to the engine."""
    if address.socket_path is not None:
        reader, writer = await asyncio.open_unix_connection(
            address.socket_path, limit=MAX_HEAD_BYTES
        )
        return reader, writer, "docker"  # the docker CLI's dummy host for a unix socket
    parts = urlsplit(address.base_url)
    context = ssl_context if parts.scheme == "https" else None
    port = parts.port or (DEFAULT_TLS_PORT if context is not None else DEFAULT_TCP_PORT)
    reader, writer = await asyncio.open_connection(parts.hostname, port, limit=MAX_HEAD_BYTES)
    if context is None:
        return reader, writer, parts.netloc
    tls = _TlsWriter(reader, writer, context, parts.hostname)
    try:
        await tls.handshake()
    except BaseException:
        tls.close()
        raise
    return tls.reader, tls, parts.netloc


async def open_hijack(
    address: EngineAddress,
    ssl_context: ssl.SSLContext | None,
    target: str,
    *,
    body: bytes | None,
    tty: bool,
) -> Session:
    """Connect, send the upgrade request for ``target`` (``/vX/exec/ID/start`` or
    ``/vX/containers/ID/attach?...``) and read the engine's head. A 4xx/5xx answer is
    raised as :class:`EngineError` with Docker's message."""
    reader, writer, host = await _connect(address, ssl_context)
    try:
        writer.write(upgrade_request("POST", target, host=host, body=body))
        await writer.drain()
        try:
            raw = await reader.readuntil(_HEAD_END)
        except (asyncio.LimitOverrunError, ValueError):
            raise HijackProtocolError("the engine's answer head is too long") from None
        except asyncio.IncompleteReadError:
            raise HijackProtocolError("the engine closed the connection before answering") from None
        head = parse_response_head(raw)
        if not head.upgraded:
            raise error_from_answer(head.status, await _error_body(reader, head))
    except BaseException:
        writer.close()
        raise
    return Session(reader, writer, tty)


async def _error_body(reader: asyncio.StreamReader, head: ResponseHead) -> bytes:
    length = error_body_length(head)
    if length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read(MAX_ERROR_BODY_BYTES)
        if (head.header("transfer-encoding") or "").lower() == "chunked":
            body = dechunk(body)
    return body


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, or None when it has none."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, columns, _, _ = struct.unpack("HHHH", packed)
    return (rows, columns) if rows and columns else None


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on the terminal ``fd`` (docker CLI ``term.MakeRaw``: no echo, no line
    editing, no signal keys, no output processing), restored on every exit path."""
    saved = termios.tcgetattr(fd)
    try:
        ttymod.setraw(fd, termios.TCSANOW)
        yield
    finally:
        # TCSADRAIN: let the last output reach the terminal before the modes change back
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def resize_with_retry(resize: Callable[[], Awaitable[None]], *, first: bool) -> None:
    """docker CLI initTtySize: the first resize is retried while the process starts."""
    attempts = RESIZE_ATTEMPTS if first else 1
    for attempt in range(1, attempts + 1):
        try:
            await resize()
            return
        except EngineError:
            if attempt == attempts:
                return
            await asyncio.sleep(RESIZE_RETRY_STEP_S * attempt)
