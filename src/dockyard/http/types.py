"""Values exchanged between the HTTP server (`dockyard.http.server`) and routes (store, engine).

A handler takes a `Request` and returns a `Response`, a `StreamingResponse`, or an awaitable of
either. Header names in `Request.headers` are lower-case; the first occurrence wins. Pure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


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


def render_headers(headers: tuple[tuple[str, str], ...]) -> str:
    """Header lines for `Response.trusted_headers`; refuses CR, LF and bad names."""
    out = []
    for name, value in headers:
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise ValueError(f"invalid response header {name!r}")
        out.append(f"{name}: {value}\r\n")
    return "".join(out)


HandlerResult = Response | StreamingResponse | Awaitable[Response | StreamingResponse]
Handler = Callable[[Request], HandlerResult]
