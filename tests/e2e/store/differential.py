"""Differential harness: the same raw HTTP requests to the reference etcd 3.4 and to a candidate.

A `Case` is a sequence of steps (plain requests, watches opened and awaited, pipelined bulks)
sent byte for byte to both servers, each in its own thread at the same time. Every response is
normalized into an `Observation` (a text block plus tolerant numbers) and the two are compared
step by step.

Rules of normalization (what may legitimately differ between two correct servers):
- Store indexes are relative to the server's index at the start of the case: `@+3`, `@-2`.
  The literal 0 (the index of request errors) stays `0`. This covers X-Etcd-Index,
  modifiedIndex, createdIndex, `index` in errors, in-order key names (`%020d`) and the numbers
  in the causes `[74/73]` and `[1 != 28]`.
- Request targets and bodies may say `@{+N}` (the index base+N) or `@{+N:020}` (zero-padded)
  and `{p}` (the case's key prefix), so that cases never contain absolute indexes.
- `expiration` is checked for Go's RFC3339Nano form and replaced by a placeholder; its offset
  from the request time is compared with a tolerance. `ttl` likewise (within ±1).
- X-Raft-Index/Term: presence only. X-Etcd-Cluster-Id: presence and lower-case hex form.
- The server's own URLs become `<url>`.
- Listings requested without `sorted=true` are sorted by key (Go map order is random).
- JSON bodies must be exactly what Go's encoder writes for their own content (field order,
  `\\u003c`-style escapes, trailing newline); after normalization they are re-serialized the
  same way, so the comparison is on exact text.

Nothing here sleeps: a watch's headers and events are awaited on the socket with a deadline.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import os
import re
import socket
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

# ------------------------------------------------------------------------------------------
# The case model
# ------------------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Req:
    """One raw request. `target` is sent verbatim (after `{p}`/`@{..}` substitution)."""

    method: str
    target: str | bytes
    body: str | bytes = b""
    content_type: str | None = None  # FORM by default when there is a body
    headers: tuple[tuple[str, str], ...] = ()
    shape_only: bool = False  # compare the JSON's keys and value types, not its values
    case_keys_only: bool = False  # in a root listing, keep only this case's top-level nodes
    masked: tuple[str, ...] = ()  # JSON fields holding member ids: compared as "~hex" only

    def describe(self) -> str:
        target = self.target if isinstance(self.target, str) else repr(self.target)
        text = f"{self.method} {target}"
        if self.body:
            text += f"  body={self.body!r} ({self.content_type or FORM})"
        return text


@dataclass(frozen=True)
class Watch:
    """Open a watch on a fresh connection and await its status line and headers."""

    name: str
    target: str

    def describe(self) -> str:
        return f"WATCH[{self.name}] GET {self.target} (headers)"


@dataclass(frozen=True)
class Await:
    """Read `events` events (lines) of the body of watch `name`, within `timeout_s`."""

    name: str
    events: int = 1
    timeout_s: float = 5.0

    def describe(self) -> str:
        return f"AWAIT[{self.name}] {self.events} event(s)"


@dataclass(frozen=True)
class Bulk:
    """`count` pipelined requests (`{i}` in the target/body is 0..count-1); statuses counted."""

    method: str
    target: str
    body: str = ""
    count: int = 1

    def describe(self) -> str:
        return f"BULK {self.count}x {self.method} {self.target} body={self.body!r}"


Step = Req | Watch | Await | Bulk


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]

    @property
    def prefix(self) -> str:
        # No long digit runs: the normalizer would read them as store indexes.
        slug = re.sub(r"[^a-z0-9]+|[0-9]{4,}", "-", self.name.lower()).strip("-")[:60]
        return f"d-{slug}-{zlib.crc32(self.name.encode()):08x}"


def case(name: str, *steps: Step) -> Case:
    return Case(name, tuple(steps))


# ------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over sockets
# ------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    pass


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes
    sent_wall_s: float
    events: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None


class Conn:
    """A persistent connection that reads exactly one response at a time."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed while reading the response")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self.buf:
            if not self._fill(deadline):
                raise ProtocolError(f"connection closed before {marker!r}; got {self.buf!r}")
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ProtocolError("connection closed inside a body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self, deadline: float) -> tuple[int, str, list[tuple[str, str]]]:
        head = self._read_until(b"\r\n\r\n", deadline)
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def read_chunk(self, deadline: float) -> bytes | None:
        """One chunk of a chunked body; None at the last chunk."""
        size_line = self._read_until(b"\r\n", deadline)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            self._read_until(b"\r\n", deadline)  # no trailers are expected
            return None
        data = self._read_exact(size, deadline)
        self._read_exact(2, deadline)
        return data

    def read_body(
        self, method: str, status: int, headers: list[tuple[str, str]], deadline: float
    ) -> bytes:
        h = dict(headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if h.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while (chunk := self.read_chunk(deadline)) is not None:
                parts.append(chunk)
            return b"".join(parts)
        if "content-length" in h:
            return self._read_exact(int(h["content-length"]), deadline)
        while self._fill(deadline):  # delimited by the end of the connection
            pass
        data, self.buf = self.buf, b""
        self.close()
        return data


def encode_request(
    method: str,
    target: bytes,
    host: str,
    body: bytes,
    content_type: str | None,
    headers: Sequence[tuple[str, str]],
) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + host.encode()]
    if body or method in ("PUT", "POST", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if body:
        lines.append(b"Content-Type: " + (content_type or FORM).encode())
    lines += [f"{k}: {v}".encode() for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class Client:
    """One server's connection (reused across cases) and its open watches."""

    def __init__(self, url: str, *, mask_member_names: bool = False) -> None:
        parts = urlsplit(url)
        self.url = url
        self.mask_member_names = mask_member_names
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.conn: Conn | None = None
        self.watches: dict[str, tuple[Conn, RawResponse, bool]] = {}

    def _conn(self) -> Conn:
        if self.conn is None or self.conn.closed:
            self.conn = Conn(self.host, self.port)
        return self.conn

    def request(
        self,
        method: str,
        target: bytes,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        timeout_s: float = 10.0,
    ) -> RawResponse:
        data = encode_request(method, target, self.hostport, body, content_type, headers)
        for attempt in range(2):
            conn = self._conn()
            sent = time.time()
            try:
                conn.send(data)
                deadline = time.monotonic() + timeout_s
                status, reason, hdrs = conn.read_head(deadline)
            except (ProtocolError, ConnectionError) as e:
                # An idle keep-alive connection closed by the server: retry once, fresh.
                conn.close()
                if attempt == 1 or conn.buf:
                    raise ProtocolError(f"{method} {target!r}: {e}") from e
                continue
            body_in = conn.read_body(method, status, hdrs, deadline)
            if (dict(hdrs).get("connection", "").lower() == "close") and not conn.closed:
                conn.close()
            return RawResponse(status, reason, hdrs, body_in, sent)
        raise AssertionError("unreachable")

    def open_watch(self, name: str, target: bytes, timeout_s: float) -> RawResponse:
        conn = Conn(self.host, self.port)
        sent = time.time()
        conn.send(encode_request("GET", target, self.hostport, b"", None, ()))
        status, reason, hdrs = conn.read_head(time.monotonic() + timeout_s)
        response = RawResponse(status, reason, hdrs, b"", sent)
        self.watches[name] = (conn, response, query_flag(target, "stream"))
        return response

    def await_watch(self, name: str, events: int, timeout_s: float) -> RawResponse:
        conn, head, stream = self.watches.pop(name)
        deadline = time.monotonic() + timeout_s
        got: list[bytes] = []
        chunked = head.header("transfer-encoding") == "chunked"
        try:
            if head.status != 200 or not chunked:
                body = conn.read_body("GET", head.status, head.headers, deadline)
                got = [body]
            else:
                pending = b""
                while len(got) < events:
                    chunk = conn.read_chunk(deadline)
                    if chunk is None:
                        break
                    pending += chunk
                    while b"\n" in pending and len(got) < events:
                        line, _, pending = pending.partition(b"\n")
                        got.append(line + b"\n")
                if len(got) == events and not stream and conn.read_chunk(deadline) is not None:
                    got.append(b"<the response did not end after the event>")
        except TimeoutError:
            got.append(b"<timeout: no (further) event>")
        finally:
            conn.close()
        return RawResponse(
            head.status, head.reason, head.headers, b"".join(got), time.time(), events=got
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        for conn, _, _ in self.watches.values():
            conn.close()
        self.watches.clear()

    def bulk(self, requests: list[bytes], timeout_s: float = 60.0) -> Counter[int]:
        """Pipelined requests on a dedicated connection, in windows; returns status counts."""
        conn = Conn(self.host, self.port)
        counts: Counter[int] = Counter()
        window = 50
        deadline = time.monotonic() + timeout_s
        try:
            for start in range(0, len(requests), window):
                batch = requests[start : start + window]
                conn.send(b"".join(batch))
                for _ in batch:
                    status, _reason, hdrs = conn.read_head(deadline)
                    conn.read_body("PUT", status, hdrs, deadline)
                    counts[status] += 1
        finally:
            conn.close()
        return counts


# ------------------------------------------------------------------------------------------
# Go's JSON encoding (encoding/json with HTML escaping, as etcd writes it)
# ------------------------------------------------------------------------------------------

_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def go_float(f: float) -> str:
    """strconv.FormatFloat as encoding/json uses it: 'f' in [1e-6, 1e21), else 'e' (e-7)."""
    if f == 0:
        return "0"
    if 1e-6 <= abs(f) < 1e21:
        text = format(Decimal(repr(f)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exp_text = repr(f).partition("e")
    exp = int(exp_text)
    return f"{mantissa}e-{-exp}" if exp < 0 else f"{mantissa}e+{exp:02d}"


def go_json(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(go_string(k) + ":" + go_json(v) for k, v in value.items()) + "}"
    raise TypeError(f"not JSON: {value!r}")


# ------------------------------------------------------------------------------------------
# Normalization
# ------------------------------------------------------------------------------------------

# Transfer-Encoding is compared on watch heads only: elsewhere Go picks chunking by body size
# (bodies over its 2 KB buffer), which no client can observe. Content-Length likewise.
COMPARED_HEADERS = (
    "content-type",
    "x-content-type-options",
    "x-etcd-index",
    "x-raft-index",
    "x-raft-term",
    "x-etcd-cluster-id",
    "location",
    "allow",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
)
INDEX_FIELDS = ("modifiedIndex", "createdIndex", "index")
OMITEMPTY_RATES = ("recvPkgRate", "recvBandwidthRate", "sendPkgRate", "sendBandwidthRate")
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")
IN_ORDER_NAME = re.compile(r"(?<![0-9])[0-9]{20}(?![0-9])")
CAUSE_CLEARED = re.compile(r"\[(\d+)/(\d+)\]")
CAUSE_INDEX = re.compile(r"\[(\d+) != (\d+)\]")
URL = re.compile(r"https?://127\.0\.0\.1:\d+")
MEMBER_NAME = re.compile(r"\bdiff\d+\b")
TEMPLATE_INDEX = re.compile(r"@\{([+-]?\d+)(?::(0\d+))?\}")
TRUE_WORDS = {"1", "t", "T", "TRUE", "true", "True"}


@dataclass
class Context:
    base: int  # the store index at the start of the case
    prefix: str
    url: str
    mask_member_names: bool = False  # a cluster: which member leads (and answers) is chance

    def rel(self, index: int) -> str:
        return "0" if index == 0 else f"@{index - self.base:+d}"

    def rel_text(self, text: str) -> str:
        text = IN_ORDER_NAME.sub(lambda m: "{" + self.rel(int(m.group())) + "}", text)
        text = CAUSE_CLEARED.sub(lambda m: f"[{self.rel(int(m[1]))}/{self.rel(int(m[2]))}]", text)
        text = CAUSE_INDEX.sub(lambda m: f"[{self.rel(int(m[1]))} != {self.rel(int(m[2]))}]", text)
        if self.mask_member_names:
            text = MEMBER_NAME.sub("diff<n>", text)
        return URL.sub("<url>", text)

    def render(self, raw: str | bytes) -> bytes:
        data = raw.encode() if isinstance(raw, str) else raw
        data = data.replace(b"{p}", self.prefix.encode())

        def index(m: re.Match[bytes]) -> bytes:
            value = self.base + int(m[1])
            return (format(value, m[2].decode() + "d") if m[2] else str(value)).encode()

        return re.sub(TEMPLATE_INDEX.pattern.encode(), index, data)


@dataclass
class Observation:
    text: str
    expirations: dict[str, float] = field(default_factory=dict)  # path -> s after request
    ttls: dict[str, int] = field(default_factory=dict)


def parse_go_time(text: str) -> float:
    date, _, frac = text.rstrip("Z").partition(".")
    seconds = time.mktime(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return seconds + (float("0." + frac) if frac else 0.0)


def query_flag(target: bytes, flag: str) -> bool:
    """Whether Go's ParseBool would read `flag` in the query of `target` as true."""
    query = target.partition(b"?")[2].decode("latin-1")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == flag:
            return value in TRUE_WORDS
    return False


class Normalizer:
    def __init__(
        self, ctx: Context, sent_wall_s: float, sorted_listing: bool, masked: tuple[str, ...] = ()
    ) -> None:
        self.ctx = ctx
        self.masked = masked
        self.sent = sent_wall_s
        self.sorted = sorted_listing
        self.obs = Observation("")

    def value(self, v: Any, path: str) -> Any:
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for k, item in v.items():
                sub = f"{path}.{k}"
                if k in INDEX_FIELDS and isinstance(item, int) and not isinstance(item, bool):
                    out[k] = self.ctx.rel(item)
                elif k == "expiration" and isinstance(item, str):
                    if RFC3339_NANO.match(item):
                        self.obs.expirations[sub] = parse_go_time(item) - self.sent
                        out[k] = "~expiration"
                    else:
                        out[k] = f"~malformed expiration {item}"
                elif k == "ttl" and isinstance(item, int) and not isinstance(item, bool):
                    self.obs.ttls[sub] = item
                    out[k] = "~ttl"
                elif k in self.masked and isinstance(item, str):
                    out[k] = "~hex" if re.fullmatch(r"[1-9a-f][0-9a-f]*", item) else f"~bad {item}"
                elif k == "nodes" and isinstance(item, list):
                    nodes = [self.value(n, f"{sub}[]") for n in item]
                    if not self.sorted:
                        nodes.sort(key=lambda n: str(n.get("key")) if isinstance(n, dict) else "")
                    out[k] = nodes
                else:
                    out[k] = self.value(item, sub)
            return out
        if isinstance(v, list):
            return [self.value(item, path) for item in v]
        if isinstance(v, str):
            return self.ctx.rel_text(v)
        return v


def shape(v: Any) -> Any:
    """Keys and value types only (for stats and members, whose values are not comparable)."""
    if isinstance(v, dict):
        return {k: shape(item) for k, item in v.items() if k not in OMITEMPTY_RATES}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return f"~{type(v).__name__}"


def normalize_headers(resp: RawResponse, ctx: Context, watch_head: bool) -> list[str]:
    lines = []
    names = ("transfer-encoding", *COMPARED_HEADERS) if watch_head else COMPARED_HEADERS
    for name in names:
        value = resp.header(name)
        if value is None:
            continue
        if name == "x-etcd-index":
            value = ctx.rel(int(value)) if value.isdigit() else f"<bad {value!r}>"
        elif name in ("x-raft-index", "x-raft-term"):
            value = "<present>" if value.isdigit() else f"<bad {value!r}>"
        elif name == "x-etcd-cluster-id":
            ok = re.fullmatch(r"[1-9a-f][0-9a-f]*", value) is not None
            value = "<hex>" if ok else f"<bad {value!r}>"
        else:
            value = ctx.rel_text(value)
        lines.append(f"{name}: {value}")
    return lines


def keep_case_keys(parsed: Any, ctx: Context) -> Any:
    """Drop the root listing's nodes that earlier cases left behind.

    Kept: the case's own prefix, and in-order keys created at the root during the case.
    """
    node = parsed.get("node") if isinstance(parsed, dict) else None
    if not isinstance(node, dict) or "key" in node or not isinstance(node.get("nodes"), list):
        return parsed

    def ours(child: Any) -> bool:
        key = str(child.get("key", "")) if isinstance(child, dict) else ""
        if key == "/" + ctx.prefix:
            return True
        return re.fullmatch(r"/[0-9]{20}", key) is not None and int(key[1:]) > ctx.base

    kept = [child for child in node["nodes"] if ours(child)]
    node = {k: v for k, v in node.items() if k != "nodes"}
    if kept:
        node = {**node, "nodes": kept}
    return {**parsed, "node": node}


def normalize_body(
    body: bytes,
    ctx: Context,
    sent: float,
    sorted_listing: bool,
    shape_only: bool,
    obs: Observation,
    case_keys_only: bool = False,
    masked: tuple[str, ...] = (),
) -> str:
    if not body:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<invalid UTF-8> {body!r}"
    stripped = text.rstrip("\n")
    trailer = text[len(stripped) :]
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return ctx.rel_text(text)
        # Go writes invalid UTF-8 as an escaped \ufffd, a valid U+FFFD raw; both parse alike.
        if go_json(parsed) != stripped.replace("\\ufffd", "\ufffd"):
            return "<JSON not as Go writes it> " + ctx.rel_text(text)
        if case_keys_only:
            parsed = keep_case_keys(parsed, ctx)
        if shape_only:
            return go_json(shape(Normalizer(ctx, sent, True).value(parsed, ""))) + trailer
        norm = Normalizer(ctx, sent, sorted_listing, masked)
        result = go_json(norm.value(parsed, "")) + trailer
        obs.expirations.update(norm.obs.expirations)
        obs.ttls.update(norm.obs.ttls)
        return result
    return ctx.rel_text(text)


def observe(
    resp: RawResponse,
    ctx: Context,
    target: bytes,
    shape_only: bool = False,
    body_events: bool = False,
    case_keys_only: bool = False,
    masked: tuple[str, ...] = (),
    watch_head: bool = False,
) -> Observation:
    obs = Observation("")
    sorted_listing = query_flag(target, "sorted")
    lines = [f"{resp.status} {resp.reason}", *normalize_headers(resp, ctx, watch_head)]
    if body_events:
        bodies = [
            normalize_body(e, ctx, resp.sent_wall_s, sorted_listing, shape_only, obs)
            for e in resp.events
        ]
        lines += ["", *(b.rstrip("\n") + ("⏎" if b.endswith("\n") else "") for b in bodies)]
    else:
        body = normalize_body(
            resp.body,
            ctx,
            resp.sent_wall_s,
            sorted_listing,
            shape_only,
            obs,
            case_keys_only,
            masked,
        )
        lines += ["", body.replace("\n", "⏎\n").rstrip("\n")]
    obs.text = "\n".join(lines)
    return obs


# ------------------------------------------------------------------------------------------
# Running and comparing
# ------------------------------------------------------------------------------------------

EXPIRATION_TOLERANCE_S = 1.5
TTL_TOLERANCE_S = 1


def current_index(client: Client) -> int:
    resp = client.request("GET", b"/v2/keys/")
    value = resp.header("x-etcd-index")
    if value is None or not value.isdigit():
        raise AssertionError(f"{client.url}: GET /v2/keys/ has no X-Etcd-Index: {resp}")
    return int(value)


def run_case(client: Client, c: Case) -> list[Observation]:
    ctx = Context(current_index(client), c.prefix, client.url, client.mask_member_names)
    observations = []
    try:
        for step in c.steps:
            observations.append(run_step(client, ctx, step))
    finally:
        for conn, _, _ in client.watches.values():
            conn.close()
        client.watches.clear()
    return observations


def run_step(client: Client, ctx: Context, step: Step) -> Observation:
    if isinstance(step, Req):
        target = ctx.render(step.target)
        body = ctx.render(step.body)
        try:
            resp = client.request(step.method, target, body, step.content_type, step.headers)
        except (ProtocolError, OSError) as e:
            return Observation(f"<no response: {type(e).__name__}: {e}>")
        return observe(
            resp,
            ctx,
            target,
            step.shape_only,
            case_keys_only=step.case_keys_only,
            masked=step.masked,
        )
    if isinstance(step, Watch):
        target = ctx.render(step.target)
        try:
            resp = client.open_watch(step.name, target, timeout_s=5.0)
        except (ProtocolError, OSError) as e:
            return Observation(f"<watch headers did not arrive: {type(e).__name__}: {e}>")
        head = observe(resp, ctx, target, watch_head=True)
        return Observation(head.text.rstrip("\n"))
    if isinstance(step, Await):
        if step.name not in client.watches:
            return Observation(f"<watch {step.name} was not open>")
        try:
            resp = client.await_watch(step.name, step.events, step.timeout_s)
        except (ProtocolError, OSError) as e:
            return Observation(f"<watch body failed: {type(e).__name__}: {e}>")
        obs = observe(resp, ctx, b"", body_events=True)
        # Only the body is new information; the head was compared at Watch time.
        obs.text = "\n".join(obs.text.split("\n\n", 1)[1:])
        return obs
    requests = [
        encode_request(
            step.method,
            ctx.render(step.target.replace("{i}", str(i))),
            client.hostport,
            ctx.render(step.body.replace("{i}", str(i))),
            FORM if step.body else None,
            (),
        )
        for i in range(step.count)
    ]
    counts = client.bulk(requests)
    return Observation("statuses " + ", ".join(f"{k}x{v}" for k, v in sorted(counts.items())))


def run_pair(
    reference: Client, candidate: Client, c: Case, pool: concurrent.futures.Executor
) -> tuple[list[Observation], list[Observation]]:
    ref_future = pool.submit(run_case, reference, c)
    cand_future = pool.submit(run_case, candidate, c)
    ref, cand = ref_future.result(), cand_future.result()
    dump_path = os.environ.get("DOCKYARD_DIFF_DUMP")
    if dump_path:  # for reviewing what the reference actually answered
        with open(dump_path, "a", encoding="utf-8") as dump:
            dump.write(f"=== {c.name}\n")
            for step, obs in zip(c.steps, ref, strict=True):
                dump.write(f"> {step.describe()}\n{clip_text(obs.text)}\n")
    return ref, cand


CLIP_CHARS = 600


def clip(line: str, around: int = 0) -> str:
    """A window of a long line (around a position of interest), so that reports stay short."""
    if len(line) <= CLIP_CHARS:
        return line
    start = max(0, min(around - CLIP_CHARS // 2, len(line) - CLIP_CHARS))
    head = f"…[{start} chars]" if start else ""
    rest = len(line) - start - CLIP_CHARS
    return head + line[start : start + CLIP_CHARS] + (f"[{rest} chars]…" if rest > 0 else "")


def clip_text(text: str) -> str:
    return "\n".join(clip(line) for line in text.split("\n"))


def _clipped_pair(a: list[str], b: list[str]) -> tuple[list[str], list[str]]:
    """Clip long lines; where two lines differ, show both around their first difference."""
    out_a, out_b = [], []
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
        at = 0
        if x is not None and y is not None and x != y:
            at = next(
                (j for j, (p, q) in enumerate(zip(x, y, strict=False)) if p != q),
                min(len(x), len(y)),
            )
        if x is not None:
            out_a.append(clip(x, at))
        if y is not None:
            out_b.append(clip(y, at))
    return out_a, out_b


def differences(ref: Observation, cand: Observation) -> list[str]:
    problems = []
    if ref.text != cand.text:
        a, b = _clipped_pair(ref.text.splitlines(), cand.text.splitlines())
        diff = difflib.unified_diff(a, b, "reference", "candidate", lineterm="", n=2)
        problems.append("\n".join(diff))
    for path in sorted(set(ref.expirations) | set(cand.expirations)):
        a, b = ref.expirations.get(path), cand.expirations.get(path)
        if a is None or b is None or abs(a - b) > EXPIRATION_TOLERANCE_S:
            problems.append(f"expiration {path}: reference now{_fmt(a)}, candidate now{_fmt(b)}")
    for path in sorted(set(ref.ttls) | set(cand.ttls)):
        x, y = ref.ttls.get(path), cand.ttls.get(path)
        if x is None or y is None or abs(x - y) > TTL_TOLERANCE_S:
            problems.append(f"ttl {path}: reference {x}, candidate {y}")
    return problems


def _fmt(delta: float | None) -> str:
    return " (absent)" if delta is None else f"{delta:+.2f}s"


HARNESS_FAILURE = re.compile(r"^<(no response|watch |timeout)|<timeout: no", re.MULTILINE)


def compare(c: Case, ref: list[Observation], cand: list[Observation]) -> str | None:
    """None if equal, else a report with the case, the request, both responses and the diff.

    A reference that did not answer (or a watch that did not fire) means the case itself is
    wrong: that is reported even if the candidate behaved the same way.
    """
    reports = []
    for number, (step, a) in enumerate(zip(c.steps, ref, strict=True), 1):
        if HARNESS_FAILURE.search(a.text):
            reports.append(
                f"step {number}: {step.describe()}\nthe REFERENCE failed, so the "
                f"case is wrong:\n{clip_text(a.text)}"
            )
    for number, (step, a, b) in enumerate(zip(c.steps, ref, cand, strict=True), 1):
        problems = differences(a, b)
        if problems:
            reports.append(
                f"step {number}: {step.describe()}\n"
                f"--- reference (normalized) ---\n{clip_text(a.text)}\n"
                f"--- candidate (normalized) ---\n{clip_text(b.text)}\n"
                f"--- differences ---\n" + "\n".join(problems)
            )
    if not reports:
        return None
    steps = "\n".join(f"  {i}. {s.describe()}" for i, s in enumerate(c.steps, 1))
    return f"case {c.name!r} (prefix /{c.prefix}):\n{steps}\n\n" + "\n\n".join(reports)


def case_ids(cases: Sequence[Case]) -> list[str]:
    """Test ids; case names (and therefore key prefixes) must be unique."""
    names = [c.name for c in cases]
    prefixes = [c.prefix for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    duplicates |= {p for p in prefixes if prefixes.count(p) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names or prefixes: {sorted(duplicates)}")
    return names
