"""Values exchanged between the HTTP server (`dockyard.http.server`) and routes (store, engine).

A handler takes a `Request` and returns a `Response`, a `StreamingResponse`, a `HijackResponse`,
or an awaitable of one of them. Header names in `Request.headers` are lower-case; the first
occurrence wins. Pure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # the request target as sent: raw path plus "?query", percent-escapes intact
    headers: Mapping[str, str]
    body: bytes
    remote_addr: tuple[str, int] | None = None
    peer_cert: Mapping[str, Any] | None = None  # ssl.SSLSocket.getpeercert() of a TLS client

    @property
    def raw_path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else ""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # Header lines rendered once by the route ("Name: value\r\n" each) and checked with
    # `render_headers`, sent after `headers`: for the headers every response repeats.
    trusted_headers: str = ""
    # For HEAD the server sends the headers (Content-Length of `body`) and no body.


@dataclass(slots=True)
class StreamingResponse:
    """Headers are sent (and flushed) at once; then each chunk from `chunks` as one HTTP chunk.

    The server closes `chunks` (aclose) when the client disconnects, so producers can unregister.
    """

    status: int
    chunks: AsyncIterator[bytes]
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # The producer yields exactly one chunk (an etcd one-shot watch): the server sends it and
    # the end of the body in one write, and closes the iterator without asking for more.
    single_chunk: bool = False


class HijackedStream(Protocol):
    """The raw connection after a `HijackResponse`'s headers: HTTP is no longer parsed.

    `read` returns bytes the client sent after the request (including any that arrived with
    it), and b"" once the client half-closed (shutdown SHUT_WR) or left. A half-close does not
    end the connection: the handler may go on writing. `write` waits while the client is slow.
    """

    async def read(self, max_bytes: int = 65536) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class HijackResponse:
    """Take over the connection (Docker's attach/exec: `Upgrade: tcp`, api-surface.md §4).

    The server writes the status line (101 adds `Connection: Upgrade` and echoes the
    request's `Upgrade`), `content_type` and `headers`, then awaits `handler` with the raw
    stream and closes the connection when it returns (or is cancelled: client gone, server
    closing). If the connection is gone before the handler could start, `abandon` is called
    instead, so a route can release what it prepared for the handler.
    """

    status: int
    handler: Callable[[HijackedStream], Awaitable[None]]
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    abandon: Callable[[], None] | None = None


def render_headers(headers: tuple[tuple[str, str], ...]) -> str:
    """Header lines for `Response.trusted_headers`; refuses CR, LF and bad names."""
    out = []
    for name, value in headers:
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise ValueError(f"invalid response header {name!r}")
        out.append(f"{name}: {value}\r\n")
    return "".join(out)


AnyResponse = Response | StreamingResponse | HijackResponse
HandlerResult = AnyResponse | Awaitable[AnyResponse]
Handler = Callable[[Request], HandlerResult]
