"""The Docker API's routing table and reply helpers, shared by the route modules.

Role: route modules (`routes.py` and the `*_routes.py` beside it) declare handlers with
`@route(method, pattern)` on mixin classes; `DockerApi` (routes.py) inherits them all and
dispatches by the registered method name. Keeping the table and helpers here lets each
group of endpoints live in its own module without importing the dispatcher.

Invariants:
- Patterns match the path after the optional `/vX.Y` prefix, URL-decoded, whole.
- The first registered match wins, so a module that needs precedence over a broader pattern
  must be imported first (routes.py imports the mixins in order).
- Every reply carries the ping headers (`TRUSTED_HEADERS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.engine.api.versions import ApiVersion, ping_headers
from dockyard.engine.containers import ZERO_TIME, InvalidArgument, parse_time_ns
from dockyard.http.types import (
    HijackResponse,
    Request,
    Response,
    StreamingResponse,
    render_headers,
)

JSON = "application/json"
PING_HEADERS = (*ping_headers(), ("Swarm", "inactive"))
TRUSTED_HEADERS = render_headers(PING_HEADERS)
NO_CACHE = (("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"))
STREAM_IDS = {"stdout": 1, "stderr": 2}
# API 1.42 named the stream format in Content-Type (api-surface.md §4).
TYPED_STREAMS_SINCE = ApiVersion(1, 42)

Reply = Response | StreamingResponse | HijackResponse


@dataclass(frozen=True)
class Call:
    """One routed request: the version it speaks, path parameters and the query."""

    request: Request
    version: ApiVersion
    params: Mapping[str, str]
    query: Mapping[str, list[str]]

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        # moby httputils.BoolValue: false iff empty, 0, no, false or none.
        if name not in self.query:
            return default
        return self.arg(name).strip().lower() not in ("", "0", "no", "false", "none")

    def json_body(self) -> Any:
        if not self.request.body.strip():
            return None
        try:
            return json.loads(self.request.body)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None


def encode(value: Any) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


def json_reply(status: int, value: Any) -> Response:
    return Response(status, encode(value), JSON, trusted_headers=TRUSTED_HEADERS)


def error_reply(status: int, message: str) -> Response:
    return json_reply(status, {"message": message})


def frame(stream: str, payload: bytes) -> bytes:
    """stdcopy: [stream id, 0, 0, 0, size as big-endian u32] + payload (api-surface.md §5)."""
    return bytes((STREAM_IDS[stream], 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def unix_s(rfc3339: str | None) -> int:
    return parse_time_ns(rfc3339 or ZERO_TIME) // 1_000_000_000


Handler = Callable[[Any, Call], Awaitable[Reply]]
# (method, compiled pattern, handler's attribute name on DockerApi)
ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), fn.__name__))
        return fn

    return register
