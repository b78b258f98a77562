"""The etcd v2 HTTP API: routes, the keys handler, members, stats, version and health.

Role: the boundary between HTTP (`dockyard.http.types.Request`/`Response`) and the store node. It
reproduces what etcd 3.4's `v2http` package and Go's `net/http` ServeMux do around it:
301 redirects for unclean paths, `404 page not found`, `405` with `Allow`, CORS headers on
every response and 200 for any OPTIONS, and the exact headers of the keys API
(`X-Etcd-Index`, `X-Raft-Index`, `X-Raft-Term`, `X-Etcd-Cluster-Id`).

Must not: change state except through the node's `propose` (`backend.StoreBackend`: one
member or a cluster member), or let a bad request raise (every
error is answered in etcd's format).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from dockyard import __version__
from dockyard.http.types import (
    HandlerResult,
    Request,
    Response,
    StreamingResponse,
    render_headers,
)
from dockyard.store import commands as c
from dockyard.store.auth import AuthState
from dockyard.store.backend import StoreBackend
from dockyard.store.errors import MembershipError, StoreError, Unauthorized
from dockyard.store.http_auth import (
    basic_auth_user,
    handle_auth,
    has_root_access,
    keys_auth_key,
    no_auth_response,
)
from dockyard.store.node import WatchSink
from dockyard.store.params import (
    FormError,
    KeyRequest,
    expire_ns_for,
    go_string,
    parse_form,
    parse_key_request,
)
from dockyard.store.tree import ApplyResult, Watcher, clean_path
from dockyard.store.v2json import error_body, event_body, get_body, go_json, rfc3339_nano

ETCD_SERVER_VERSION = "3.4.23"  # the API level dockyard implements and clients check
ETCD_CLUSTER_VERSION = "3.4.0"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
CORS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
)
_KEYS_METHODS = ("HEAD", "GET", "PUT", "POST", "DELETE")
_HEX = frozenset("0123456789abcdefABCDEF")


def _go_path_escape(path: str) -> str:
    # Go's url.URL.EscapedPath (encodePath mode): unreserved and $&+,/:;=@ stay as they are.
    return quote(path, safe="$&+,/:;=@")


def go_clean_request_path(path: str) -> str:
    """Go's ServeMux cleanPath: path.Clean, keeping one trailing slash."""
    if not path:
        return "/"
    if path[0] != "/":
        path = "/" + path
    cleaned = clean_path(path)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def decode_request_path(raw: str) -> str | None:
    """Go's url.ParseRequestURI path unescaping: strict %XX; None when invalid (400)."""
    i = raw.find("%")
    while i != -1:
        if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            return None
        i = raw.find("%", i + 3)
    return go_string(unquote_to_bytes(raw)) if "%" in raw else raw


def go_duration(ns: int) -> str:
    """Go's time.Duration.String for non-negative durations (e.g. `1m2.5s`, `3.2ms`)."""
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3f}".rstrip("0").rstrip(".") + "µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.6f}".rstrip("0").rstrip(".") + "ms"
    hours, rest = divmod(ns, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{rest / 10**9:.9f}".rstrip("0").rstrip(".")
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + seconds + "s"


class V2Api:
    """The request handler for dockyard's store; also the `AuthContext` of `http_auth`."""

    def __init__(self, node: StoreBackend, *, client_cert_auth: bool = False) -> None:
        self.node = node
        self.client_cert_auth = client_cert_auth
        self.cluster_id_hex = f"{node.cluster_id:x}"
        self._cluster_header = ("X-Etcd-Cluster-Id", self.cluster_id_hex)
        # Every keys-API answer ends with these; render them once.
        self._keys_trailer = render_headers((self._cluster_header, *CORS))

    # -- AuthContext ------------------------------------------------------------------------

    @property
    def auth(self) -> AuthState:
        return self.node.auth

    async def propose(self, command: object) -> object:
        return await self.node.propose(command)

    # -- routing ----------------------------------------------------------------------------

    def __call__(self, request: Request) -> HandlerResult:
        if request.method == "OPTIONS":
            if request.target == "*":
                return Response(200)  # Go's server answers `OPTIONS *` itself
            return Response(200, b"", None, CORS)
        path = request.raw_path
        if not path.startswith("/"):
            if path.startswith(("http://", "https://")):
                # Absolute-form target (RFC 9112 §3.2.2): Go routes on its path.
                path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
            else:
                return Response(400, b"400 Bad Request", TEXT, (("Connection", "close"),))
        if "%" in path or "/." in path or "//" in path:
            # Not obviously clean: decode and clean as Go's ServeMux does.
            decoded = decode_request_path(path)
            if decoded is None:
                return Response(400, b"400 Bad Request", TEXT, (("Connection", "close"),))
            path = decoded
            cleaned = go_clean_request_path(path)
            if cleaned != path:
                return self._redirect(request, cleaned)
        if path.startswith("/v2/keys") and (len(path) == 8 or path[8] == "/"):
            return self._keys(request, path[8:])
        if path.startswith("/v2/members") and (len(path) == 11 or path[11] == "/"):
            return self._members(request, path[12:])
        if path.startswith("/v2/auth"):
            return self._auth(request)
        simple = _SIMPLE_ROUTES.get(path)
        if simple is not None:
            methods, route = simple
            if request.method not in methods:
                return _not_allowed(methods)
            response: Response = route(self, request)
            return response
        return _not_found()

    def _redirect(self, request: Request, cleaned: str) -> Response:
        location = _go_path_escape(cleaned)
        if request.raw_query:
            location += "?" + request.raw_query
        headers = (("Location", location), *CORS)
        if request.method in ("GET", "HEAD"):
            body = f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n'.encode()
            return Response(301, body, "text/html; charset=utf-8", headers)
        return Response(301, b"", None, headers)

    async def _auth(self, request: Request) -> Response:
        response = await handle_auth(request, self, client_cert_auth=self.client_cert_auth)
        return Response(
            response.status, response.body, response.content_type, (*response.headers, *CORS)
        )

    # -- keys -------------------------------------------------------------------------------

    def _json(self, status: int, body: bytes, *extra: tuple[str, str]) -> Response:
        return Response(status, body, JSON, extra, self._keys_trailer)

    def _store_error(self, error: StoreError) -> Response:
        return self._json(error.http_status, error_body(error), ("X-Etcd-Index", str(error.index)))

    def _indexed_json(self, status: int, body: bytes, etcd_index: int) -> Response:
        """`_json` with the index headers every keys answer carries, rendered here: they are
        numbers, so nothing in them needs the header check (the hot path: every GET and
        every write's answer)."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in self._raft_headers(etcd_index))
        return Response(status, body, JSON, (), lines + self._keys_trailer)

    def _raft_headers(self, etcd_index: int) -> tuple[tuple[str, str], ...]:
        return (
            ("X-Etcd-Index", str(etcd_index)),
            ("X-Raft-Index", str(self.node.applied_index)),
            ("X-Raft-Term", str(self.node.term)),
        )

    def _keys(self, request: Request, rest: str) -> HandlerResult:
        method = request.method
        if method not in _KEYS_METHODS:
            return _not_allowed(_KEYS_METHODS)
        try:
            form = parse_form(
                method, request.raw_query, request.headers.get("content-type"), request.body
            )
        except FormError as e:
            return self._store_error(StoreError(str(e), 0, 210))
        # The path is clean here (ServeMux rules): at most a trailing slash to drop.
        key = rest.rstrip("/") or "/"
        try:
            req = parse_key_request(method, key, form)
        except StoreError as e:
            return self._store_error(e)
        if self.node.auth.enabled and not self._key_access(request, req):
            return self._store_error(Unauthorized("Insufficient credentials", 0))
        if method in ("GET", "HEAD"):
            if req.quorum:
                # etcd turns a quorum GET into a linearizable Get, even with wait=true.
                return self._quorum_get(req)
            if req.wait:
                return self._watch(req)
            return self._get(req)
        return self._write(req)

    def _key_access(self, request: Request, req: KeyRequest) -> bool:
        ok, user = basic_auth_user(request, self.node.auth, client_cert_auth=self.client_cert_auth)
        if not ok:
            return False
        write = req.method not in ("GET", "HEAD")
        # etcd checks the decoded path as sent ("/pub/" stays "/pub/"), not the clean key.
        key = keys_auth_key(request)
        return self.node.auth.has_key_access(user, key, write=write, recursive=req.recursive)

    def _get(self, req: KeyRequest) -> Response:
        tree = self.node.tree
        try:
            node = tree.get(req.key)
        except StoreError as e:
            return self._store_error(e)
        body = get_body(node, req.recursive, req.sorted, time.time_ns())
        return self._indexed_json(200, body, tree.index)

    async def _quorum_get(self, req: KeyRequest) -> Response:
        try:
            await self.node.read_barrier()
        except StoreError as e:
            return self._store_error(e)  # 300 "request timed out" without quorum, as etcd
        return self._get(req)

    def _command(self, req: KeyRequest) -> object:
        expire_ns = None if req.ttl_s is None else expire_ns_for(req.ttl_s, time.time_ns())
        refresh = bool(req.refresh)
        if req.method == "POST":
            return c.CreateInOrderKey(req.key, req.value, req.dir, expire_ns)
        if req.method == "DELETE":
            if req.prev_index > 0 or req.prev_value:
                return c.CompareAndDelete(req.key, req.prev_value, req.prev_index)
            return c.DeleteKey(req.key, req.dir, req.recursive)
        # PUT: etcd's apply_v2.go Put
        if req.prev_exist is not None:
            if req.prev_exist:
                if req.prev_index == 0 and not req.prev_value:
                    return c.UpdateKey(req.key, req.value, expire_ns, refresh)
                return c.CompareAndSwap(
                    req.key, req.value, req.prev_value, req.prev_index, expire_ns, refresh
                )
            return c.CreateKey(req.key, req.value, req.dir, expire_ns, refresh)
        if req.prev_index > 0 or req.prev_value:
            return c.CompareAndSwap(
                req.key, req.value, req.prev_value, req.prev_index, expire_ns, refresh
            )
        return c.SetKey(req.key, req.value, req.dir, expire_ns, refresh)

    def _write(self, req: KeyRequest) -> asyncio.Future[Response]:
        """Propose the write; the returned future resolves to the answer once it is applied
        (a future with a callback, not a coroutine: writes are the hot path)."""
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        proposal = self.node.propose(self._command(req))

        def applied(done: asyncio.Future[ApplyResult]) -> None:
            if answer.done():
                return  # the client went away; the write is applied all the same
            error = done.exception()
            if error is not None:
                if isinstance(error, StoreError):
                    answer.set_result(self._store_error(error))
                else:
                    answer.set_exception(error)
                return
            result = done.result()
            if result.error is not None:
                answer.set_result(self._store_error(result.error))
                return
            event = result.event
            assert event is not None
            status = 201 if event.is_created else 200
            answer.set_result(
                self._indexed_json(status, event_body(event, req.no_value_on_success), event.index)
            )

        proposal.add_done_callback(applied)
        return answer

    def _watch(self, req: KeyRequest) -> Response | StreamingResponse:
        try:
            watcher, sink = self.node.watch(req.key, req.recursive, req.stream, req.wait_index)
        except StoreError as e:
            return self._store_error(e)
        headers = (*self._raft_headers(watcher.start_index), self._cluster_header, *CORS)
        return StreamingResponse(
            200, self._watch_events(watcher, sink, req.stream), JSON, headers, not req.stream
        )

    async def _watch_events(
        self, watcher: Watcher, sink: WatchSink, stream: bool
    ) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await sink.next()
                if event is None:
                    return  # the watcher fell 100 events behind and was dropped
                yield event_body(event)
                if not stream:
                    return
        finally:
            self.node.unwatch(watcher)

    # -- members ----------------------------------------------------------------------------

    def _member_json(self, member_id: str, member: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": member_id,
            "name": member["name"],
            "peerURLs": member["peerURLs"],
            "clientURLs": member["clientURLs"],
        }

    def _members(self, request: Request, rest: str) -> HandlerResult:
        methods = ("GET", "POST", "DELETE", "PUT")
        if request.method not in methods:
            return _not_allowed(methods)
        if request.method != "GET" and not has_root_access(
            request, self.node.auth, client_cert_auth=self.client_cert_auth
        ):
            no_auth = no_auth_response()
            return Response(no_auth.status, no_auth.body, no_auth.content_type, CORS)
        members = self.node.tree.members
        if request.method == "GET":
            if rest == "":
                body = {"members": [self._member_json(i, m) for i, m in members.items()]}
                return self._json(200, (go_json(body) + "\n").encode())
            if rest == "leader":
                lead = self.node.leader_id
                leader_id = f"{lead:x}" if lead is not None else ""
                member = members.get(leader_id)
                if member is None:
                    return self._message(503, "During election")
                return self._json(
                    200, (go_json(self._member_json(leader_id, member)) + "\n").encode()
                )
            return self._message(404, "Not found")
        if request.method in ("DELETE", "PUT") and not rest:
            return _not_allowed(("GET", "POST"))  # etcd's getID: no member ID in the path
        if request.method in ("POST", "PUT"):
            content_type = request.headers.get("content-type", "")
            if content_type.split(";", 1)[0].strip() != JSON:
                return self._message(
                    415, f"Bad Content-Type {content_type}, accept application/json"
                )
        if request.method in ("POST", "PUT"):
            problem = _json_problem(request.body) or _peer_urls_problem(request.body)
            if problem is not None:
                return self._message(400, problem)
        if request.method in ("DELETE", "PUT") and rest not in members:
            if rest in self.node.tree.removed_members:
                return self._message(410, f"Member permanently removed: {rest}")
            return self._message(404, f"No such member: {rest}")
        peer_urls = ()
        if request.method in ("POST", "PUT"):
            peer_urls = tuple(json.loads(request.body)["peerURLs"])
        return self._change_members(request.method, rest, peer_urls)

    async def _change_members(
        self, method: str, member_id: str, peer_urls: tuple[str, ...]
    ) -> Response:
        try:
            if method == "POST":
                added = await self.node.add_member(peer_urls)
                # etcd answers the new member with 201 and a trailing newline.
                return self._json(201, (go_json(added) + "\n").encode())
            if method == "PUT":
                await self.node.update_member(member_id, peer_urls)
            else:
                await self.node.remove_member(member_id)
        except MembershipError as error:
            return self._message(error.status, error.message)
        return Response(204, b"", None, (self._cluster_header, *CORS))

    def _message(self, status: int, message: str) -> Response:
        # etcd's httptypes.HTTPError.WriteTo: json.Marshal, so no trailing newline.
        return self._json(status, go_json({"message": message}).encode())

    # -- small endpoints --------------------------------------------------------------------

    def _version(self, request: Request) -> Response:
        body = go_json({"etcdserver": ETCD_SERVER_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION})
        return Response(200, body.encode(), JSON, (("X-Dockyard-Version", __version__), *CORS))

    def _health(self, request: Request) -> Response:
        healthy = self.node.healthy
        body = b'{"health":"true"}' if healthy else b'{"health":"false"}'
        return Response(200 if healthy else 503, body, TEXT, CORS)

    def _machines(self, request: Request) -> Response:
        urls = [u for m in self.node.tree.members.values() for u in m["clientURLs"]]
        return Response(200, ", ".join(urls).encode(), TEXT, CORS)

    def _stats_self(self, request: Request) -> Response:
        node = self.node
        now = time.time_ns()
        start = rfc3339_nano(node.start_time_ns)
        lead = node.leader_id
        body = {
            "name": node.name,
            "id": f"{node.member_id:x}",
            "state": "StateLeader" if node.is_leader else "StateFollower",
            "startTime": start,
            "leaderInfo": {
                "leader": f"{lead:x}" if lead is not None else "",
                "uptime": go_duration(now - node.start_time_ns),
                "startTime": start,
            },
            "recvAppendRequestCnt": 0,
            "sendAppendRequestCnt": 0,
        }
        return Response(200, go_json(body).encode(), JSON, CORS)

    def _stats_store(self, request: Request) -> Response:
        tree = self.node.tree
        body = dict(tree.stats.counts)
        body["watchers"] = tree.watcher_count
        return Response(200, go_json(body).encode(), JSON, CORS)

    def _stats_leader(self, request: Request) -> Response:
        if not self.node.is_leader:
            # etcd 3.4: httptypes.HTTPError, so JSON without a trailing newline.
            return Response(403, go_json({"message": "not current leader"}).encode(), JSON, CORS)
        followers: dict[str, Any] = {}
        for member_id, stats in sorted(self.node.follower_stats().items()):
            if member_id == self.node.member_id:
                continue
            followers[f"{member_id:x}"] = {
                "latency": _latency_json(stats.latencies_s),
                "counts": {"fail": stats.fail, "success": stats.success},
            }
        body = {"leader": f"{self.node.member_id:x}", "followers": followers}
        return Response(200, go_json(body).encode(), JSON, CORS)

    def _metrics(self, request: Request) -> Response:
        tree = self.node.tree
        lines = [
            "# HELP etcd_debugging_store_watchers Count of currently active watchers.",
            "# TYPE etcd_debugging_store_watchers gauge",
            f"etcd_debugging_store_watchers {tree.watcher_count}",
            "# HELP etcd_server_has_leader Whether or not a leader exists.",
            "# TYPE etcd_server_has_leader gauge",
            f"etcd_server_has_leader {int(self.node.leader_id is not None)}",
            "# HELP etcd_debugging_store_expires_total Total number of expired keys.",
            "# TYPE etcd_debugging_store_expires_total counter",
            f"etcd_debugging_store_expires_total {tree.stats.counts['expireCount']}",
            "# HELP dockyard_store_applied_index The last applied log index.",
            "# TYPE dockyard_store_applied_index gauge",
            f"dockyard_store_applied_index {self.node.applied_index}",
        ]
        return Response(
            200,
            ("\n".join(lines) + "\n").encode(),
            "text/plain; version=0.0.4; charset=utf-8",
            CORS,
        )


def _latency_json(latencies_s: list[float]) -> dict[str, float]:
    """etcd's follower latency stats, in milliseconds, over the recent round trips."""
    if not latencies_s:
        return dict.fromkeys(("current", "average", "standardDeviation", "minimum", "maximum"), 0)
    ms = [x * 1000 for x in latencies_s]
    mean = sum(ms) / len(ms)
    stats = {
        "current": ms[-1],
        "average": mean,
        "standardDeviation": (sum((x - mean) ** 2 for x in ms) / len(ms)) ** 0.5,
        "minimum": min(ms),
        "maximum": max(ms),
    }
    # Go's encoding/json writes a whole float64 without a fraction ("0", not "0.0").
    return {k: int(v) if v.is_integer() else v for k, v in stats.items()}


def _json_problem(body: bytes) -> str | None:
    """Go's encoding/json error text for a body that is not one JSON value, or None."""
    text = body.decode("utf-8", "replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        if error.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        return f"invalid character {text[error.pos]!r} looking for beginning of value"
    return None


def _peer_urls_problem(body: bytes) -> str | None:
    """etcd's MemberCreateRequest/MemberUpdateRequest validation of `peerURLs`."""
    decoded = json.loads(body)
    urls = decoded.get("peerURLs") if isinstance(decoded, dict) else None
    if not isinstance(urls, list) or not urls:
        return "no valid URLs given"
    for url in urls:
        if not isinstance(url, str):
            return "json: cannot unmarshal into Go value of type string"
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https", "unix", "unixs"):
            return f"URL scheme must be http, https, unix, or unixs: {url}"
        host, slash, path = rest.partition("/")
        if scheme in ("http", "https") and (":" not in host or not host.rsplit(":", 1)[1]):
            return f'URL address does not have the form "host:port": {url}'
        if slash and path:
            return f"URL must not contain a path: {url}"
    return None


def _not_found() -> Response:
    return Response(
        404, b"404 page not found\n", TEXT, (("X-Content-Type-Options", "nosniff"), *CORS)
    )


def _not_allowed(methods: tuple[str, ...]) -> Response:
    return Response(
        405,
        b"Method Not Allowed\n",
        TEXT,
        (("Allow", ",".join(methods)), ("X-Content-Type-Options", "nosniff"), *CORS),
    )


def _message(status: int, message: str, extra: tuple[tuple[str, str], ...]) -> Response:
    return Response(status, (go_json({"message": message}) + "\n").encode(), JSON, extra)


_SIMPLE_ROUTES: dict[str, tuple[tuple[str, ...], Any]] = {
    "/version": (("GET",), V2Api._version),
    "/health": (("GET",), V2Api._health),
    # promhttp serves any method.
    "/metrics": (("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"), V2Api._metrics),
    "/v2/machines": (("GET", "HEAD"), V2Api._machines),
    "/v2/stats/self": (("GET",), V2Api._stats_self),
    "/v2/stats/store": (("GET",), V2Api._stats_store),
    "/v2/stats/leader": (("GET",), V2Api._stats_leader),
}
