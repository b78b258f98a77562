"""Clients for the etcd v2 keys API: `StoreClient` (sync) and `AsyncStoreClient` (asyncio).

Role: the one client layer for etcd's v2 wire protocol, used by the CLI (`store_ctl`), the
recipes (`recipes`) and anything else that talks to etcd or to `dockyard store serve`.

Layers:
- A pure layer (`Call`, the `*_call` builders, `parse_*`) turns arguments into a request
  description and a response (status, headers, body) into values or an exception. It does no I/O,
  so it is shared by both drivers and unit-tested on its own.
- Two thin drivers send a `Call` over httpx and fail over between endpoints.

Invariants:
- Wire names (etcd's camelCase, `X-Etcd-Index`) never leave this module: values are the frozen
  dataclasses `Node`, `Result`, `Member` and `Version`.
- Every etcd error body becomes a `StoreClientError` subclass chosen by `errorCode`; nothing
  else is raised for a server's answer. `ConnectionFailedError` means no endpoint answered.
- A request goes to the endpoint that last answered first; on a connection failure (the request
  was never received) the next endpoint is tried, so a write is never sent twice by failover.
  Reads (GET, including watches) also fail over after a broken connection, as they are idempotent.
- `sync()` replaces the endpoints with every member's client URLs (etcd's client Sync), so a
  client given one member fails over to all of them.
- Watches are one-shot long polls (`wait=true`, never `stream=true`): etcd silently drops a
  stream watcher that falls 100 events behind (spec §8), while a one-shot watch that resumes from
  `modifiedIndex + 1` cannot miss an event without being told so by a 401.
"""

from __future__ import annotations

import json
import posixpath
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

__all__ = [
    "DEFAULT_ENDPOINTS",
    "AsyncStoreClient",
    "Call",
    "CompareFailedError",
    "ConnectionFailedError",
    "DirectoryNotEmptyError",
    "EventIndexClearedError",
    "KeyExistsError",
    "KeyNotFoundError",
    "Member",
    "Node",
    "NotADirectoryError",
    "NotAFileError",
    "RaftInternalError",
    "RequestTimeoutError",
    "Result",
    "RootReadOnlyError",
    "StoreClient",
    "StoreClientError",
    "UnauthorizedError",
    "Version",
    "WatchTimeoutError",
]

DEFAULT_ENDPOINTS: Final = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")

# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the key tree as etcd reported it.

    `value` is None for directories (etcd omits it) and `""` for an empty file. `ttl` and
    `expiration` (RFC 3339 text exactly as the server sent it) are None without a TTL. `nodes`
    keeps the server's order: use `sorted=True` to get byte order.
    """

    key: str
    value: str | None = None
    dir: bool = False
    ttl: int | None = None
    expiration: str | None = None
    modified_index: int = 0
    created_index: int = 0
    nodes: tuple[Node, ...] = ()

    def walk(self) -> Iterator[Node]:
        """This node, then every descendant, depth first in listing order."""
        yield self
        for child in self.nodes:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Result:
    """One keys-API answer. `etcd_index` is `X-Etcd-Index`: for a watch, the store index when
    the watch was registered, not the event's index (etcd issue #2246)."""

    action: str
    node: Node
    prev_node: Node | None = None
    etcd_index: int = 0
    raft_index: int | None = None
    raft_term: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Version:
    server: str
    cluster: str


# --------------------------------------------------------------------------------------------
# Errors


class StoreClientError(Exception):
    """An error answered by the server (etcd `errorCode`, message, cause and store index), or a
    client-side failure (code 0). `str()` is etcdctl's rendering: `100: Key not found (/a) [7]`."""

    code: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        cause: str = "",
        index: int = 0,
        status: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.cause = cause
        self.index = index
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        if self.code == 0:
            return self.message
        # etcd client/v2 `Error.Error()`: "%v: %v (%v) [%v]".
        return f"{self.code}: {self.message} ({self.cause}) [{self.index}]"


class KeyNotFoundError(StoreClientError):
    code = 100


class CompareFailedError(StoreClientError):
    code = 101


class NotAFileError(StoreClientError):
    code = 102


class NotADirectoryError(StoreClientError):  # shadows the builtin on purpose: etcd names 104 so
    code = 104


class KeyExistsError(StoreClientError):
    code = 105


class RootReadOnlyError(StoreClientError):
    code = 107


class DirectoryNotEmptyError(StoreClientError):
    code = 108


class UnauthorizedError(StoreClientError):
    code = 110


class RaftInternalError(StoreClientError):
    code = 300


class EventIndexClearedError(StoreClientError):
    """401: the watch index fell out of etcd's 1000-event history. Re-sync with a GET."""

    code = 401


class ConnectionFailedError(StoreClientError):
    """No endpoint answered. `errors` holds (endpoint, reason) in the order tried."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = tuple(errors)
        # etcd client/v2 `ClusterError.Error()`, so the CLI can print what etcdctl prints.
        text = "client: etcd cluster is unavailable or misconfigured"
        text += "".join(f"; error #{i}: {reason}\n" for i, (_, reason) in enumerate(errors))
        super().__init__(text)

    def detail(self) -> str:
        return "".join(f"error #{i}: {reason}\n" for i, (_, reason) in enumerate(self.errors))


class RequestTimeoutError(StoreClientError):
    """An endpoint accepted the request but did not answer in time; a write may have applied."""


class WatchTimeoutError(RequestTimeoutError):
    """A one-shot watch saw no event within its timeout."""


_ERRORS_BY_CODE: Final[dict[int, type[StoreClientError]]] = {
    cls.code: cls
    for cls in (
        KeyNotFoundError,
        CompareFailedError,
        NotAFileError,
        NotADirectoryError,
        KeyExistsError,
        RootReadOnlyError,
        DirectoryNotEmptyError,
        UnauthorizedError,
        RaftInternalError,
        EventIndexClearedError,
    )
}


# --------------------------------------------------------------------------------------------
# Pure layer: requests


@dataclass(frozen=True, slots=True)
class Call:
    """A request, before any endpoint is chosen. `path` is already percent-escaped; `form` is
    sent as an url-encoded body (etcd reads bodies only for PUT and POST, spec §2)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    watch: bool = False
    json_body: bytes | None = None  # sent as application/json (the members API)

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD")


def key_path(key: str) -> str:
    """`/v2/keys` plus the cleaned, escaped key. Cleaning (`//`, `.`, `..`, trailing `/`) is what
    the Go client's `path.Join` does; etcd would answer an unclean path with a 301 (spec §10)."""
    cleaned = posixpath.normpath("/" + key.lstrip("/"))
    if cleaned == "/":
        return "/v2/keys/"
    return "/v2/keys" + quote(cleaned, safe="/")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _ttl_text(ttl: int | None) -> list[tuple[str, str]]:
    if ttl is None:
        return []
    if ttl < 0:
        raise ValueError(f"ttl must be >= 0, got {ttl}")
    return [("ttl", str(ttl))]


def get_call(
    key: str, *, recursive: bool = False, sorted: bool = False, quorum: bool = False
) -> Call:
    query = [
        (name, "true")
        for name, on in (("recursive", recursive), ("sorted", sorted), ("quorum", quorum))
        if on
    ]
    return Call("GET", key_path(key), tuple(query))


def set_call(
    key: str,
    value: str | None = "",
    *,
    ttl: int | None = None,
    prev_value: str | None = None,
    prev_index: int | None = None,
    prev_exist: bool | None = None,
    dir: bool = False,
    refresh: bool = False,
) -> Call:
    """PUT. With `dir` or `refresh` no value is sent: etcd ignores it for a dir and rejects a
    non-empty one on refresh (211)."""
    form: list[tuple[str, str]] = []
    if dir:
        form.append(("dir", "true"))
    elif not refresh and value is not None:
        form.append(("value", value))
    form += _ttl_text(ttl)
    if prev_value is not None:
        if prev_value == "":
            # etcd answers 201 for an empty prevValue; refuse before sending.
            raise ValueError("prev_value must not be empty")
        form.append(("prevValue", prev_value))
    if prev_index is not None:
        form.append(("prevIndex", str(prev_index)))
    if prev_exist is not None:
        form.append(("prevExist", _flag(prev_exist)))
    if refresh:
        if ttl is None:
            raise ValueError("refresh needs a ttl")  # etcd: 212
        form.append(("refresh", "true"))
    return Call("PUT", key_path(key), form=tuple(form))


def append_call(
    dir_key: str, value: str = "", *, ttl: int | None = None, dir: bool = False
) -> Call:
    form = [("dir", "true")] if dir else [("value", value)]
    return Call("POST", key_path(dir_key), form=tuple(form + _ttl_text(ttl)))


def delete_call(
    key: str,
    *,
    recursive: bool = False,
    dir: bool = False,
    prev_value: str | None = None,
    prev_index: int | None = None,
) -> Call:
    """DELETE. Everything goes in the query: etcd ignores a DELETE body (spec §2 quirk), so a
    conditional delete sent as a form would silently become unconditional."""
    query: list[tuple[str, str]] = []
    if recursive:
        query.append(("recursive", "true"))
    if dir:
        query.append(("dir", "true"))
    if prev_value is not None:
        if prev_value == "":
            raise ValueError("prev_value must not be empty")
        query.append(("prevValue", prev_value))
    if prev_index is not None:
        query.append(("prevIndex", str(prev_index)))
    return Call("DELETE", key_path(key), tuple(query))


def watch_call(key: str, *, index: int | None = None, recursive: bool = False) -> Call:
    query = [("wait", "true")]
    if recursive:
        query.append(("recursive", "true"))
    if index is not None:
        query.append(("waitIndex", str(index)))
    return Call("GET", key_path(key), tuple(query), watch=True)


MEMBERS_CALL: Final = Call("GET", "/v2/members")


def member_add_call(peer_urls: Sequence[str]) -> Call:
    return Call("POST", "/v2/members", json_body=json.dumps({"peerURLs": list(peer_urls)}).encode())


def member_update_call(member_id: str, peer_urls: Sequence[str]) -> Call:
    body = json.dumps({"peerURLs": list(peer_urls)}).encode()
    return Call("PUT", f"/v2/members/{quote(member_id, safe='')}", json_body=body)


def member_remove_call(member_id: str) -> Call:
    return Call("DELETE", f"/v2/members/{quote(member_id, safe='')}")


LEADER_CALL: Final = Call("GET", "/v2/members/leader")
MACHINES_CALL: Final = Call("GET", "/v2/machines")
HEALTH_CALL: Final = Call("GET", "/health")
JSON_HEADERS: Final = {"Content-Type": "application/json"}
VERSION_CALL: Final = Call("GET", "/version")


# --------------------------------------------------------------------------------------------
# Pure layer: responses


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_node(data: Mapping[str, Any]) -> Node:
    """One node object; the root node has no key (spec §4), which becomes "/"."""
    ttl = data.get("ttl")
    value = data.get("value")
    return Node(
        key=str(data.get("key", "/")) or "/",
        value=None if value is None else str(value),
        dir=bool(data.get("dir", False)),
        ttl=None if ttl is None else int(ttl),
        expiration=data.get("expiration"),
        modified_index=int(data.get("modifiedIndex", 0)),
        created_index=int(data.get("createdIndex", 0)),
        nodes=tuple(parse_node(child) for child in data.get("nodes") or ()),
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> StoreClientError:
    """The exception for a non-2xx answer: an etcd error body, a `{"message":...}` body
    (members, auth), or anything else (plain-text 404/405 from Go's mux)."""
    data = _json_object(body)
    if data is not None and "errorCode" in data:
        code = int(data["errorCode"])
        cls = _ERRORS_BY_CODE.get(code, StoreClientError)
        return cls(
            str(data.get("message", "")),
            code=code,
            cause=str(data.get("cause", "")),
            index=int(data.get("index", 0)),
            status=status,
        )
    if data is not None and "message" in data:
        return StoreClientError(str(data["message"]), status=status)
    text = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    return StoreClientError(f"unexpected answer {status}: {text}", status=status)


def parse_keys_response(status: int, headers: Mapping[str, str], body: bytes) -> Result:
    """A keys-API answer as a `Result`, or raise its `StoreClientError`."""
    if status >= 300:
        raise parse_error(status, headers, body)
    data = _json_object(body)
    if data is None or "action" not in data:
        raise StoreClientError(f"malformed keys answer {status}: {body[:200]!r}", status=status)
    h = _lower(headers)
    prev = data.get("prevNode")
    # noValueOnSuccess answers carry no node; this client never asks for that, but stay total.
    node = parse_node(data["node"]) if data.get("node") is not None else Node(key="")
    return Result(
        action=str(data["action"]),
        node=node,
        prev_node=parse_node(prev) if prev is not None else None,
        etcd_index=_int_header(h, "x-etcd-index") or 0,
        raft_index=_int_header(h, "x-raft-index"),
        raft_term=_int_header(h, "x-raft-term"),
    )


def _member(data: Mapping[str, Any]) -> Member:
    return Member(
        id=str(data.get("id", "")),
        name=str(data.get("name", "")),
        peer_urls=tuple(data.get("peerURLs") or ()),
        client_urls=tuple(data.get("clientURLs") or ()),
    )


def parse_members(status: int, headers: Mapping[str, str], body: bytes) -> list[Member]:
    if status != 200:
        raise parse_error(status, headers, body)
    data = _json_object(body)
    if data is None:
        raise StoreClientError(f"malformed members answer: {body[:200]!r}", status=status)
    return [_member(m) for m in data.get("members") or ()]


def synced_endpoints(members: Sequence[Member], current: Sequence[str]) -> list[str]:
    """etcd client's Sync: every member's client URLs (members not started yet have none),
    in the members' order; the current endpoints if no member publishes any."""
    urls = [u.rstrip("/") for m in members for u in m.client_urls]
    return list(dict.fromkeys(urls)) or list(current)


def parse_member_added(status: int, headers: Mapping[str, str], body: bytes) -> Member:
    if status != 201:
        raise parse_error(status, headers, body)
    data = _json_object(body)
    if data is None:
        raise StoreClientError(f"malformed member answer: {body[:200]!r}", status=status)
    return _member(data)


def parse_no_content(status: int, headers: Mapping[str, str], body: bytes) -> None:
    if status != 204:
        raise parse_error(status, headers, body)


def parse_leader(status: int, headers: Mapping[str, str], body: bytes) -> Member:
    if status != 200:
        raise parse_error(status, headers, body)
    data = _json_object(body)
    if data is None:
        raise StoreClientError(f"malformed leader answer: {body[:200]!r}", status=status)
    return _member(data)


def parse_machines(status: int, headers: Mapping[str, str], body: bytes) -> list[str]:
    if status != 200:
        raise parse_error(status, headers, body)
    # text/plain, the client URLs joined with ", " and no trailing newline (spec §1).
    return [u.strip() for u in body.decode().split(",") if u.strip()]


def parse_health(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """`{"health":"true"}` (etcd 3.4: a string); a bool is accepted as etcdctl does."""
    data = _json_object(body)
    if data is None:
        if status >= 300:
            raise parse_error(status, headers, body)
        return False
    health = data.get("health")
    return health is True or health == "true"


def parse_version(status: int, headers: Mapping[str, str], body: bytes) -> Version:
    if status != 200:
        raise parse_error(status, headers, body)
    data = _json_object(body) or {}
    return Version(server=str(data.get("etcdserver", "")), cluster=str(data.get("etcdcluster", "")))


def resync_result(key: str, get_result: Result | None, missing: KeyNotFoundError | None) -> Result:
    """What `watch_iter` yields after a 401: the GET that re-synced it, or, if the key is gone,
    a `get` Result whose node has no value and zero indexes, at the error's store index."""
    if get_result is not None:
        return get_result
    index = missing.index if missing is not None else 0
    return Result(
        action="get", node=Node(key=posixpath.normpath("/" + key.lstrip("/"))), etcd_index=index
    )


def connection_reason(endpoint: str, error: BaseException) -> str:
    """A Go-like reason for a failed dial, e.g. `dial tcp 127.0.0.1:1: connect: connection
    refused`, so CLI errors read like etcdctl's."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    text = str(error) or type(error).__name__
    if "refused" in text.lower():
        text = "connect: connection refused"
    elif isinstance(error, httpx.TimeoutException):
        text = "i/o timeout"
    return f"dial tcp {host}:{port}: {text}"


# --------------------------------------------------------------------------------------------
# Drivers


class _Default:
    """Marker: use the client's configured timeout."""


_DEFAULT: Final = _Default()
Timeout = float | None | _Default


def _ssl_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


@dataclass
class _Config:
    endpoints: list[str]
    timeout_s: float
    connect_timeout_s: float
    verify: ssl.SSLContext | bool
    auth: httpx.BasicAuth | None
    preferred: int = 0

    def order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self.preferred + i) % n] for i in range(n)]

    def answered(self, endpoint: str) -> None:
        self.preferred = self.endpoints.index(endpoint)

    def replace_endpoints(self, endpoints: Sequence[str]) -> None:
        """New endpoints (a cluster sync); the one that last answered stays preferred."""
        current = self.endpoints[self.preferred]
        self.endpoints = list(endpoints)
        self.preferred = self.endpoints.index(current) if current in self.endpoints else 0

    def timeout(self, call: Call, timeout: Timeout) -> httpx.Timeout:
        if isinstance(timeout, _Default):
            # A watch without a timeout waits as long as it takes: etcd has no server-side limit.
            read = None if call.watch else self.timeout_s
        else:
            read = timeout
        return httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s, read=read)


def _config(
    endpoints: Sequence[str] | str,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    username: str | None,
    password: str | None,
    timeout_s: float,
    connect_timeout_s: float,
) -> _Config:
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    cleaned = []
    for e in endpoints:
        e = e.strip().rstrip("/")
        if not e:
            continue
        cleaned.append(e if "://" in e else "http://" + e)  # etcdctl defaults the scheme to http
    if not cleaned:
        raise ValueError("at least one endpoint is needed")
    needs_tls = any(e.startswith("https://") for e in cleaned) or bool(ca_file or cert_file)
    verify: ssl.SSLContext | bool = (
        _ssl_context(ca_file, cert_file, key_file) if needs_tls else True
    )
    auth = httpx.BasicAuth(username, password or "") if username else None
    return _Config(cleaned, timeout_s, connect_timeout_s, verify, auth)


# Failures that prove the request never reached the server: safe to retry anywhere.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)
# A broken connection after sending: only idempotent requests move on.
_BROKEN: Final = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.PoolTimeout)


class _Failover:
    """Bookkeeping for one request across endpoints (shared by both drivers)."""

    def __init__(self, config: _Config, call: Call) -> None:
        self.config = config
        self.call = call
        self.errors: list[tuple[str, str]] = []

    def failed(self, endpoint: str, error: httpx.HTTPError) -> None:
        """Record a failure, or re-raise it as the right StoreClientError if it must not move on."""
        if isinstance(error, httpx.TimeoutException) and not isinstance(
            error, httpx.ConnectTimeout | httpx.PoolTimeout
        ):
            cls = WatchTimeoutError if self.call.watch else RequestTimeoutError
            raise cls(f"{endpoint}: no answer in time ({type(error).__name__})") from error
        if isinstance(error, _NOT_SENT) or (self.call.idempotent and isinstance(error, _BROKEN)):
            self.errors.append((endpoint, connection_reason(endpoint, error)))
            return
        raise ConnectionFailedError([(endpoint, f"{type(error).__name__}: {error}")]) from error

    def exhausted(self) -> ConnectionFailedError:
        return ConnectionFailedError(self.errors)


class _Api:
    """The keys/members API surface, expressed as `Call`s; drivers supply `_run_*`."""

    @staticmethod
    def _cas_call(
        key: str, value: str, prev_value: str | None, prev_index: int | None, ttl: int | None
    ) -> Call:
        if prev_value is None and prev_index is None:
            raise ValueError("compare_and_swap needs prev_value or prev_index")
        return set_call(key, value, ttl=ttl, prev_value=prev_value, prev_index=prev_index)


class StoreClient(_Api):
    """Synchronous client over `httpx.Client`. Thread-safe as httpx.Client is; close it (or use
    it as a context manager) to release connections."""

    def __init__(
        self,
        endpoints: Sequence[str] | str = DEFAULT_ENDPOINTS,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = _config(
            endpoints,
            ca_file,
            cert_file,
            key_file,
            username,
            password,
            timeout_s,
            connect_timeout_s,
        )
        self._http = httpx.Client(
            verify=self._config.verify, auth=self._config.auth, transport=transport
        )

    @property
    def endpoints(self) -> list[str]:
        return list(self._config.endpoints)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call, timeout: Timeout = _DEFAULT) -> httpx.Response:
        attempt = _Failover(self._config, call)
        for endpoint in self._config.order():
            try:
                response = self._http.request(
                    call.method,
                    endpoint + call.path,
                    params=list(call.query),
                    data=dict(call.form) if call.form else None,
                    content=call.json_body,
                    headers=JSON_HEADERS if call.json_body is not None else None,
                    timeout=self._config.timeout(call, timeout),
                )
            except httpx.HTTPError as e:
                attempt.failed(endpoint, e)
                continue
            self._config.answered(endpoint)
            return response
        raise attempt.exhausted()

    def _keys(self, call: Call, timeout: Timeout = _DEFAULT) -> Result:
        while True:
            r = self._send(call, timeout)
            # Like the Go client: an empty watch body (the server closed the watcher) is retried.
            if call.watch and r.status_code == 200 and not r.content.strip():
                continue
            return parse_keys_response(r.status_code, r.headers, r.content)

    # -- keys API --------------------------------------------------------------------------

    def get(
        self, key: str, recursive: bool = False, sorted: bool = False, quorum: bool = False
    ) -> Result:
        return self._keys(get_call(key, recursive=recursive, sorted=sorted, quorum=quorum))

    def set(
        self,
        key: str,
        value: str | None = "",
        ttl: int | None = None,
        prev_value: str | None = None,
        prev_index: int | None = None,
        prev_exist: bool | None = None,
        dir: bool = False,
        refresh: bool = False,
    ) -> Result:
        return self._keys(
            set_call(
                key, value, ttl=ttl, prev_value=prev_value, prev_index=prev_index,
                prev_exist=prev_exist, dir=dir, refresh=refresh,
            )
        )  # fmt: skip

    def create(
        self, key: str, value: str = "", ttl: int | None = None, dir: bool = False
    ) -> Result:
        return self.set(key, value, ttl=ttl, prev_exist=False, dir=dir)

    def update(
        self, key: str, value: str = "", ttl: int | None = None, dir: bool = False
    ) -> Result:
        return self.set(key, value, ttl=ttl, prev_exist=True, dir=dir)

    def refresh(self, key: str, ttl: int) -> Result:
        """Reset a key's TTL keeping its value, without waking watchers (etcd ≥ 2.3)."""
        return self.set(key, None, ttl=ttl, prev_exist=True, refresh=True)

    def compare_and_swap(
        self,
        key: str,
        value: str,
        prev_value: str | None = None,
        prev_index: int | None = None,
        ttl: int | None = None,
    ) -> Result:
        return self._keys(self._cas_call(key, value, prev_value, prev_index, ttl))

    def delete(
        self,
        key: str,
        recursive: bool = False,
        dir: bool = False,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> Result:
        return self._keys(
            delete_call(
                key, recursive=recursive, dir=dir, prev_value=prev_value, prev_index=prev_index
            )
        )

    def mkdir(self, key: str, ttl: int | None = None) -> Result:
        return self.set(key, None, ttl=ttl, prev_exist=False, dir=True)

    def append(self, dir_key: str, value: str = "", ttl: int | None = None) -> Result:
        """POST: create `<dir_key>/<20-digit index>`, so sorted order is creation order."""
        return self._keys(append_call(dir_key, value, ttl=ttl))

    def watch(
        self,
        key: str,
        index: int | None = None,
        recursive: bool = False,
        timeout: float | None = None,
    ) -> Result:
        """Wait for the first event at `key` (or under it) with index ≥ `index`.

        Raises `WatchTimeoutError` after `timeout` seconds (None: wait forever) and
        `EventIndexClearedError` when `index` is older than etcd's 1000-event history."""
        return self._keys(watch_call(key, index=index, recursive=recursive), timeout)

    def watch_iter(
        self, key: str, index: int | None = None, recursive: bool = False
    ) -> Iterator[Result]:
        """Every event from `index` on, resuming each watch at `modifiedIndex + 1`.

        On 401 (history cleared) it re-syncs: it GETs `key` and yields that `get` Result (see
        `resync_result` for a missing key), then continues from `X-Etcd-Index + 1`. Events in the
        gap are not replayed one by one: the GET summarises them as the current state."""
        next_index = index
        while True:
            try:
                result = self.watch(key, index=next_index, recursive=recursive)
            except EventIndexClearedError:
                try:
                    got: Result | None = self.get(key, recursive=recursive, sorted=True)
                    missing = None
                except KeyNotFoundError as e:
                    got, missing = None, e
                current = resync_result(key, got, missing)
                next_index = current.etcd_index + 1
                yield current
                continue
            next_index = result.node.modified_index + 1
            yield result

    # -- cluster ---------------------------------------------------------------------------

    def _plain(self, call: Call) -> httpx.Response:
        return self._send(call)

    def members(self) -> list[Member]:
        r = self._plain(MEMBERS_CALL)
        return parse_members(r.status_code, r.headers, r.content)

    def leader(self) -> Member:
        r = self._plain(LEADER_CALL)
        return parse_leader(r.status_code, r.headers, r.content)

    def sync(self) -> list[str]:
        """Learn every member's client URLs (etcd client's Sync), so that requests fail over
        to members this client was not told about. Returns the endpoints now used."""
        endpoints = synced_endpoints(self.members(), self._config.endpoints)
        self._config.replace_endpoints(endpoints)
        return endpoints

    def add_member(self, peer_urls: Sequence[str]) -> Member:
        r = self._plain(member_add_call(peer_urls))
        return parse_member_added(r.status_code, r.headers, r.content)

    def update_member(self, member_id: str, peer_urls: Sequence[str]) -> None:
        r = self._plain(member_update_call(member_id, peer_urls))
        parse_no_content(r.status_code, r.headers, r.content)

    def remove_member(self, member_id: str) -> None:
        r = self._plain(member_remove_call(member_id))
        parse_no_content(r.status_code, r.headers, r.content)

    def machines(self) -> list[str]:
        r = self._plain(MACHINES_CALL)
        return parse_machines(r.status_code, r.headers, r.content)

    def health(self) -> bool:
        r = self._plain(HEALTH_CALL)
        return parse_health(r.status_code, r.headers, r.content)

    def version(self) -> Version:
        r = self._plain(VERSION_CALL)
        return parse_version(r.status_code, r.headers, r.content)


class AsyncStoreClient(_Api):
    """The asyncio twin of `StoreClient`, over `httpx.AsyncClient`; same methods, awaited."""

    def __init__(
        self,
        endpoints: Sequence[str] | str = DEFAULT_ENDPOINTS,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = _config(
            endpoints,
            ca_file,
            cert_file,
            key_file,
            username,
            password,
            timeout_s,
            connect_timeout_s,
        )
        self._http = httpx.AsyncClient(
            verify=self._config.verify, auth=self._config.auth, transport=transport
        )

    @property
    def endpoints(self) -> list[str]:
        return list(self._config.endpoints)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncStoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call, timeout: Timeout = _DEFAULT) -> httpx.Response:
        attempt = _Failover(self._config, call)
        for endpoint in self._config.order():
            try:
                response = await self._http.request(
                    call.method,
                    endpoint + call.path,
                    params=list(call.query),
                    data=dict(call.form) if call.form else None,
                    content=call.json_body,
                    headers=JSON_HEADERS if call.json_body is not None else None,
                    timeout=self._config.timeout(call, timeout),
                )
            except httpx.HTTPError as e:
                attempt.failed(endpoint, e)
                continue
            self._config.answered(endpoint)
            return response
        raise attempt.exhausted()

    async def _keys(self, call: Call, timeout: Timeout = _DEFAULT) -> Result:
        while True:
            r = await self._send(call, timeout)
            if call.watch and r.status_code == 200 and not r.content.strip():
                continue
            return parse_keys_response(r.status_code, r.headers, r.content)

    async def get(
        self, key: str, recursive: bool = False, sorted: bool = False, quorum: bool = False
    ) -> Result:
        return await self._keys(get_call(key, recursive=recursive, sorted=sorted, quorum=quorum))

    async def set(
        self,
        key: str,
        value: str | None = "",
        ttl: int | None = None,
        prev_value: str | None = None,
        prev_index: int | None = None,
        prev_exist: bool | None = None,
        dir: bool = False,
        refresh: bool = False,
    ) -> Result:
        return await self._keys(
            set_call(
                key, value, ttl=ttl, prev_value=prev_value, prev_index=prev_index,
                prev_exist=prev_exist, dir=dir, refresh=refresh,
            )
        )  # fmt: skip

    async def create(
        self, key: str, value: str = "", ttl: int | None = None, dir: bool = False
    ) -> Result:
        return await self.set(key, value, ttl=ttl, prev_exist=False, dir=dir)

    async def update(
        self, key: str, value: str = "", ttl: int | None = None, dir: bool = False
    ) -> Result:
        return await self.set(key, value, ttl=ttl, prev_exist=True, dir=dir)

    async def refresh(self, key: str, ttl: int) -> Result:
        return await self.set(key, None, ttl=ttl, prev_exist=True, refresh=True)

    async def compare_and_swap(
        self,
        key: str,
        value: str,
        prev_value: str | None = None,
        prev_index: int | None = None,
        ttl: int | None = None,
    ) -> Result:
        return await self._keys(self._cas_call(key, value, prev_value, prev_index, ttl))

    async def delete(
        self,
        key: str,
        recursive: bool = False,
        dir: bool = False,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> Result:
        return await self._keys(
            delete_call(
                key, recursive=recursive, dir=dir, prev_value=prev_value, prev_index=prev_index
            )
        )

    async def mkdir(self, key: str, ttl: int | None = None) -> Result:
        return await self.set(key, None, ttl=ttl, prev_exist=False, dir=True)

    async def append(self, dir_key: str, value: str = "", ttl: int | None = None) -> Result:
        return await self._keys(append_call(dir_key, value, ttl=ttl))

    async def watch(
        self,
        key: str,
        index: int | None = None,
        recursive: bool = False,
        timeout: float | None = None,
    ) -> Result:
        return await self._keys(watch_call(key, index=index, recursive=recursive), timeout)

    async def watch_iter(
        self, key: str, index: int | None = None, recursive: bool = False
    ) -> AsyncIterator[Result]:
        """As `StoreClient.watch_iter`: resumes at `modifiedIndex + 1`; after a 401 it yields the
        re-syncing GET (which summarises the gap) and continues from `X-Etcd-Index + 1`."""
        next_index = index
        while True:
            try:
                result = await self.watch(key, index=next_index, recursive=recursive)
            except EventIndexClearedError:
                try:
                    got: Result | None = await self.get(key, recursive=recursive, sorted=True)
                    missing = None
                except KeyNotFoundError as e:
                    got, missing = None, e
                current = resync_result(key, got, missing)
                next_index = current.etcd_index + 1
                yield current
                continue
            next_index = result.node.modified_index + 1
            yield result

    async def members(self) -> list[Member]:
        r = await self._send(MEMBERS_CALL)
        return parse_members(r.status_code, r.headers, r.content)

    async def leader(self) -> Member:
        r = await self._send(LEADER_CALL)
        return parse_leader(r.status_code, r.headers, r.content)

    async def sync(self) -> list[str]:
        """As `StoreClient.sync`."""
        endpoints = synced_endpoints(await self.members(), self._config.endpoints)
        self._config.replace_endpoints(endpoints)
        return endpoints

    async def add_member(self, peer_urls: Sequence[str]) -> Member:
        r = await self._send(member_add_call(peer_urls))
        return parse_member_added(r.status_code, r.headers, r.content)

    async def update_member(self, member_id: str, peer_urls: Sequence[str]) -> None:
        r = await self._send(member_update_call(member_id, peer_urls))
        parse_no_content(r.status_code, r.headers, r.content)

    async def remove_member(self, member_id: str) -> None:
        r = await self._send(member_remove_call(member_id))
        parse_no_content(r.status_code, r.headers, r.content)

    async def machines(self) -> list[str]:
        r = await self._send(MACHINES_CALL)
        return parse_machines(r.status_code, r.headers, r.content)

    async def health(self) -> bool:
        r = await self._send(HEALTH_CALL)
        return parse_health(r.status_code, r.headers, r.content)

    async def version(self) -> Version:
        r = await self._send(VERSION_CALL)
        return parse_version(r.status_code, r.headers, r.content)
