"""An async Docker Registry HTTP API v2 client for one repository, on httpx.

Role: the I/O seam of `images/registry/`. `open_repository` finds the endpoint dockerd
would use (HTTPS; for an insecure registry unverified HTTPS, then HTTP — `endpoints.py`)
by pinging `/v2/`, keeps the registry's auth challenges, and returns a `Repository` that
authenticates every request as docker/distribution's auth transport does: a bearer token
per scope fetched from the challenge's realm (cached for the session), or basic
credentials. On it: manifests (GET, HEAD, PUT), blobs (GET streamed to a file with digest
verification and `Range` resume, HEAD), cross-repository mount and chunked upload
(POST, PATCH with `Content-Range`, PUT `?digest=`).

Invariants:
- Errors carry Docker's wording: transport failures as Go's `url.Error`
  (`Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection
  refused`), registry error bodies as distribution's errcode (`manifest unknown: manifest
  unknown`).
- A downloaded blob is only reported complete once its sha256 matches its digest; a
  mismatch leaves nothing the caller would use.
- Credentials are sent only to the registry and the token realm it names; a redirect to
  another host (blob storage) carries no Authorization header (httpx drops it).
- TLS verification uses the system CAs plus `<certs_dir>/<host:port>/*.crt`, with
  `*.cert`/`*.key` as the client identity (moby registry.ReadCertsDirectory).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import errno
import hashlib
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from dockyard import __version__
from dockyard.engine.images.registry.auth import (
    AuthConfig,
    Challenge,
    Scope,
    parse_challenges,
    token_request_url,
)
from dockyard.engine.images.registry.endpoints import (
    Endpoint,
    RegistryLocation,
    endpoints,
    is_insecure,
    split_host_port,
)
from dockyard.engine.images.registry.errors import (
    ErrorEntry,
    RegistryError,
    RegistryNotFound,
    RegistryResponseError,
    RegistryUnauthorized,
    RegistryUnreachable,
    format_error_entries,
)
from dockyard.engine.images.registry.manifests import ACCEPTED_MEDIA_TYPES

__all__ = [
    "DEFAULT_CERTS_DIR",
    "ClientOptions",
    "Repository",
    "open_repository",
    "ping_login",
]

# httpx logs every request at INFO: a pull would flood the daemon's log.
logging.getLogger("httpx").setLevel(logging.WARNING)

DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")
USER_AGENT = f"dockyard/{__version__}"
# moby distribution/xfer: a download is attempted up to 5 times.
DOWNLOAD_ATTEMPTS = 5
RETRY_DELAY_S = 0.2
MANIFEST_MAX_BYTES = 4 << 20  # distribution's limit on manifests it reads
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ClientOptions:
    """What the engine configures: dockerd's `--insecure-registry` and the certs dir."""

    insecure_registries: tuple[str, ...] = ()
    certs_dir: Path = DEFAULT_CERTS_DIR
    timeout_s: float = 60.0
    connect_timeout_s: float = 15.0


def _go_method(method: str) -> str:
    # Go's url.Error prints the method as "Get", "Head", "Put"…
    return method[:1].upper() + method[1:].lower()


def _os_error(exc: BaseException | None, depth: int = 0) -> OSError | None:
    """The OSError with an errno behind a transport error (anyio wraps each attempt's
    error in "All connection attempts failed" with an exception group as the cause)."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _os_error(inner, depth + 1)) is not None:
                return found
    return _os_error(exc.__cause__ or exc.__context__, depth + 1)


def _dial_error(exc: BaseException, address: str) -> str:
    """Go's net.OpError text for a dial failure."""
    cause = _os_error(exc)
    code = cause.errno if cause is not None else None
    reason = {
        errno.ECONNREFUSED: "connect: connection refused",
        errno.EHOSTUNREACH: "connect: no route to host",
        errno.ENETUNREACH: "connect: network is unreachable",
        errno.ECONNRESET: "read: connection reset by peer",
    }.get(code or 0)
    if reason is None:
        reason = str(cause or exc) or type(exc).__name__
    return f"dial tcp {address}: {reason}"


def _transport_message(exc: httpx.TransportError, scheme: str, address: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return "http: server gave HTTP response to HTTPS client"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "x509: certificate signed by unknown authority"
        if scheme == "https" and ("SSL" in text or "TLS" in text):
            return f"tls: {text}"
        return _dial_error(exc, address)
    if isinstance(exc, httpx.RemoteProtocolError):
        return "net/http: HTTP/1.x transport connection broken: " + _go_bad_response(str(exc))
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return f"read tcp {address}: connection reset by peer"
    return str(exc) or type(exc).__name__


_STATUS_LINE_RE = re.compile(r"illegal status line: bytearray\((b'.*'|b\".*\")\)")


def _go_quote(text: str) -> str:
    # Go's %q for the printable ASCII such lines hold; other bytes as \xNN.
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}")
    return '"' + "".join(out) + '"'


def _go_bad_response(text: str) -> str:
    """net/http ReadResponse's wording for a first line that is not an HTTP status line."""
    match = _STATUS_LINE_RE.search(text)
    if match is None:
        return f"malformed HTTP response: {text}"
    try:
        line = ast.literal_eval(match.group(1)).decode("latin-1")
    except (ValueError, SyntaxError):
        return f"malformed HTTP response: {text}"
    proto, sep, status = line.partition(" ")
    if not sep:
        return f"malformed HTTP response {_go_quote(line)}"
    code = status.lstrip(" ").partition(" ")[0]
    if len(code) != 3 or not code.isdigit():
        return f"malformed HTTP status code {_go_quote(code)}"
    return f"malformed HTTP version {_go_quote(proto)}"


def _ssl_context(endpoint: Endpoint, host: str, certs_dir: Path) -> ssl.SSLContext | bool:
    """moby newTLSConfig: the system CAs plus certs.d; no verification when insecure."""
    if endpoint.scheme != "https":
        return False
    context = ssl.create_default_context()
    if not endpoint.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    directory = certs_dir / host
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix == ".crt" and endpoint.verify_tls:
                context.load_verify_locations(cafile=path)
            elif path.suffix == ".cert":
                key = path.with_suffix(".key")
                if not key.exists():
                    raise RegistryError(
                        f"missing key {key.name} for client certificate {path.name}. "
                        "CA certificates must use the extension .crt"
                    )
                context.load_cert_chain(path, key)
    return context


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


async def _resolve(host: str) -> list[str]:
    """The addresses `host` resolves to (IP literals as themselves)."""
    name, port = split_host_port(host)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, port or 443, type=socket.SOCK_STREAM)
    except OSError:
        return []
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def _dial_address(endpoint: Endpoint, addresses: Sequence[str]) -> str:
    name, port = split_host_port(endpoint.host)
    port = port or (443 if endpoint.scheme == "https" else 80)
    address = addresses[0] if addresses else name
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _entries(body: bytes) -> list[ErrorEntry]:
    try:
        document = json.loads(body)
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        if isinstance(document, dict) and isinstance(document.get("details"), str):
            # Docker Hub's token server answers {"details": "..."}.
            return [ErrorEntry("UNAUTHORIZED", document["details"])]
        return []
    return [
        ErrorEntry(str(e.get("code", "UNKNOWN")), str(e.get("message", "")))
        for e in errors
        if isinstance(e, dict)
    ]


def _response_error(
    status: int, reason: str, body: bytes, challenges: Sequence[str] = ()
) -> RegistryResponseError:
    """distribution client HandleErrorResponse, as Docker prints it: an OAuth error in a
    bearer challenge first (RFC 6750 §3.1: `insufficient_scope` is Docker's `denied`)."""
    if 400 <= status < 500:
        for challenge in parse_challenges(challenges):
            if challenge.scheme != "bearer":
                continue
            code = {"invalid_token": "UNAUTHORIZED", "insufficient_scope": "DENIED"}.get(
                challenge.get("error")
            )
            if code is None:
                continue
            default = {
                "UNAUTHORIZED": "authentication required",
                "DENIED": "requested access to the resource is denied",
            }[code]
            entry = ErrorEntry(code, challenge.get("error_description") or default)
            return RegistryResponseError(status, [entry], str(entry))
    entries = _entries(body)
    if entries:
        message = format_error_entries(entries)
    elif status == 401:
        entries = [ErrorEntry("UNAUTHORIZED", "authentication required")]
        message = format_error_entries(entries)
    else:
        # distribution UnexpectedHTTPStatusError
        message = f"received unexpected HTTP status: {status} {reason}"
    return RegistryResponseError(status, entries, message)


@dataclass
class _Session:
    """One endpoint of one registry: HTTP client, challenges and the token cache."""

    http: httpx.AsyncClient
    endpoint: Endpoint
    auth: AuthConfig
    challenges: tuple[Challenge, ...]
    address: str
    tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.endpoint.base_url}{path}"

    def transport_error(self, method: str, url: str, exc: httpx.TransportError) -> RegistryError:
        message = _transport_message(exc, urlsplit(url).scheme, self.address)
        return RegistryUnreachable(f'{_go_method(method)} "{url}": {message}')

    async def _token(
        self, challenge: Challenge, scopes: Sequence[Scope], method: str, url: str
    ) -> str:
        if self.auth.registry_token:
            return self.auth.registry_token
        key = " ".join(sorted(str(s) for s in scopes))
        if key in self.tokens:
            return self.tokens[key]
        try:
            token_url = token_request_url(challenge, scopes, self.auth)
        except ValueError as exc:
            raise RegistryError(f'{_go_method(method)} "{url}": {exc}') from None
        headers = {}
        if self.auth.username or self.auth.password:
            pair = f"{self.auth.username}:{self.auth.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            response = await self.http.get(token_url, headers=headers)
        except httpx.TransportError as exc:
            raise self.transport_error("GET", token_url, exc) from None
        except httpx.HTTPError as exc:
            raise RegistryError(f'Get "{token_url}": {exc}') from None
        if response.status_code != 200:
            error = _response_error(response.status_code, response.reason_phrase, response.content)
            wrapped = f'{_go_method(method)} "{url}": {error}'
            if response.status_code in (401, 403):
                raise RegistryUnauthorized(wrapped, str(error))
            raise RegistryError(wrapped)
        try:
            document = response.json()
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(
                f'{_go_method(method)} "{url}": authorization server did not include a token '
                "in the response"
            )
        self.tokens[key] = token
        return token

    async def authorization(self, scopes: Sequence[Scope], method: str, url: str) -> str | None:
        """The Authorization header for a request, from the registry's challenges."""
        for challenge in self.challenges:
            if challenge.scheme == "bearer":
                return "Bearer " + await self._token(challenge, scopes, method, url)
            if challenge.scheme == "basic":
                if not (self.auth.username or self.auth.password):
                    # docker/distribution ErrNoBasicAuthCredentials
                    raise RegistryUnauthorized(
                        f'{_go_method(method)} "{url}": no basic auth credentials',
                        "no basic auth credentials",
                    )
                pair = f"{self.auth.username}:{self.auth.password}".encode()
                return "Basic " + base64.b64encode(pair).decode()
        return None

    async def send(
        self,
        method: str,
        url: str,
        scopes: Sequence[Scope],
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        authorization = await self.authorization(scopes, method, url)
        if authorization is not None:
            all_headers["Authorization"] = authorization
        try:
            request = self.http.build_request(method, url, headers=all_headers, content=content)
            return await self.http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self.transport_error(method, url, exc) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # A redirect loop or a Location the registry made up: Go's url.Error wording.
            raise RegistryError(f'{_go_method(method)} "{url}": {exc}') from None


def _client(endpoint: Endpoint, host: str, options: ClientOptions) -> httpx.AsyncClient:
    timeout = httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s)
    return httpx.AsyncClient(
        verify=_ssl_context(endpoint, host, options.certs_dir),
        timeout=timeout,
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT, "Docker-Distribution-Api-Version": "registry/2.0"},
        trust_env=False,
    )


async def _ping(http: httpx.AsyncClient, endpoint: Endpoint, address: str) -> httpx.Response:
    url = f"{endpoint.base_url}/v2/"
    try:
        response = await http.get(url)
    except httpx.TransportError as exc:
        message = _transport_message(exc, endpoint.scheme, address)
        raise RegistryUnreachable(f'Get "{url}": {message}') from None
    except httpx.HTTPError as exc:
        raise RegistryUnreachable(f'Get "{url}": {exc}') from None
    if response.status_code not in (200, 401):
        # moby: a /v2/ that is neither OK nor asking for auth is no v2 registry.
        error = _response_error(response.status_code, response.reason_phrase, response.content)
        raise RegistryUnreachable(f'Get "{url}": {error}')
    return response


async def _connect(
    location: RegistryLocation, auth: AuthConfig, options: ClientOptions
) -> tuple[_Session, httpx.Response]:
    """Ping the endpoints in dockerd's order; the first that answers as a v2 registry wins."""
    addresses = await _resolve(location.dial_host)
    insecure = is_insecure(location.dial_host, options.insecure_registries, addresses)
    candidates = endpoints(location.dial_host, insecure=insecure)
    name, _ = split_host_port(location.dial_host)
    if not addresses and not _is_ip(name):
        # Go's resolver error (docker.io's registry-1.docker.io, offline, lands here).
        raise RegistryUnreachable(
            f'Get "{candidates[-1].base_url}/v2/": dial tcp: lookup {name}: no such host'
        )
    last: RegistryError | None = None
    for endpoint in candidates:
        address = _dial_address(endpoint, addresses)
        try:
            http = _client(endpoint, location.host, options)
        except (ssl.SSLError, OSError) as exc:
            # moby: a bad file in certs.d fails the operation, naming the directory.
            raise RegistryError(
                f"could not load the certificates in {options.certs_dir / location.host}: {exc}"
            ) from None
        try:
            response = await _ping(http, endpoint, address)
        except RegistryUnreachable as exc:
            await http.aclose()
            last = exc  # moby keeps the last endpoint's error
            continue
        except BaseException:
            await http.aclose()
            raise
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        return _Session(http, endpoint, auth, challenges, address), response
    assert last is not None  # endpoints() is never empty
    raise last


async def ping_login(location: RegistryLocation, auth: AuthConfig, options: ClientOptions) -> str:
    """`docker login` as moby loginV2: authenticate a GET of `/v2/` with the credentials.

    Returns the identity token (always empty: no OAuth refresh tokens yet). Raises
    `RegistryUnauthorized` with Docker's message when the registry refuses them.
    """
    session, _ = await _connect(location, auth, options)
    try:
        url = session.url("/v2/")
        response = await session.send("GET", url, ())
        if response.status_code == 200:
            return ""
        raise RegistryUnauthorized(
            f"login attempt to {url} failed with status: {response.status_code} "
            f"{response.reason_phrase}"
        )
    finally:
        await session.http.aclose()


class Repository:
    """One repository on the endpoint `open_repository` chose. Close with `aclose`."""

    def __init__(
        self, session: _Session, location: RegistryLocation, actions: tuple[str, ...]
    ) -> None:
        self._session = session
        self.location = location
        self.endpoint = session.endpoint
        self._scopes = (Scope(location.repository, actions),)

    async def aclose(self) -> None:
        await self._session.http.aclose()

    def _url(self, kind: str, reference: str) -> str:
        return self._session.url(f"/v2/{self.location.repository}/{kind}/{reference}")

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        scopes: Sequence[Scope] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        response = await self._session.send(
            method, url, scopes or self._scopes, headers=headers, content=content
        )
        if response.status_code in ok:
            return response
        raise self._error(response, method, url)

    @staticmethod
    def _error(response: httpx.Response, method: str, url: str) -> RegistryError:
        error = _response_error(
            response.status_code,
            response.reason_phrase,
            response.content,
            response.headers.get_list("www-authenticate"),
        )
        if response.status_code == 401 and error.codes != {"DENIED"}:
            return RegistryUnauthorized(str(error))
        if response.status_code == 404 and not error.entries and method == "HEAD":
            return RegistryNotFound(f"{_go_method(method)} {url}: not found")
        return error

    # -- manifests -------------------------------------------------------------------

    async def get_manifest(self, reference: str) -> tuple[str, bytes, str]:
        """(media type, body, digest) of a tag or digest; digests are verified.

        A tag is resolved with HEAD first, as dockerd 20.10 does (its errors, say
        `Head "…": no basic auth credentials`, name that request).
        """
        url = self._url("manifests", reference)
        if not reference.startswith("sha256:"):
            await self.head_manifest(reference)
        response = await self._request(
            "GET", url, headers={"Accept": ", ".join(ACCEPTED_MEDIA_TYPES)}
        )
        body = response.content
        if len(body) > MANIFEST_MAX_BYTES:
            raise RegistryError(f"manifest too big: {len(body)} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            # moby pull_v2 verifySchema2Manifest
            raise RegistryError(f"image verification failed for digest {reference}")
        media_type = response.headers.get("content-type", "")
        return media_type, body, digest

    async def head_manifest(self, reference: str) -> str | None:
        """The digest a tag points at, or None when the registry has no such manifest."""
        url = self._url("manifests", reference)
        response = await self._session.send(
            "HEAD", url, self._scopes, headers={"Accept": ", ".join(ACCEPTED_MEDIA_TYPES)}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, "HEAD", url)
        digest: str | None = response.headers.get("docker-content-digest")
        return digest

    async def put_manifest(self, tag: str, media_type: str, body: bytes) -> str:
        url = self._url("manifests", tag)
        response = await self._request(
            "PUT", url, headers={"Content-Type": media_type}, content=body, ok=(201, 200)
        )
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        served = response.headers.get("docker-content-digest")
        if served and served != digest:
            raise RegistryError(f"manifest digest mismatch: registry says {served}, sent {digest}")
        return digest

    async def tags(self) -> list[str]:
        response = await self._request(
            "GET", self._session.url(f"/v2/{self.location.repository}/tags/list")
        )
        try:
            document = response.json()
            tags = document.get("tags") or []
        except (ValueError, AttributeError):
            raise RegistryError("invalid tag list from the registry") from None
        return [t for t in tags if isinstance(t, str)]

    # -- blobs -----------------------------------------------------------------------

    async def head_blob(self, digest: str, repository: str | None = None) -> int | None:
        """The blob's size if the repository has it, else None."""
        repo = repository or self.location.repository
        url = self._session.url(f"/v2/{repo}/blobs/{digest}")
        scopes = self._scopes if repository is None else (Scope(repo, ("pull",)),)
        response = await self._session.send("HEAD", url, scopes)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, "HEAD", url)
        length = response.headers.get("content-length", "0")
        return int(length) if length.isdigit() else 0

    async def get_blob_bytes(self, digest: str, max_bytes: int) -> bytes:
        """A small blob (an image config), verified against its digest."""
        url = self._url("blobs", digest)
        response = await self._request("GET", url)
        body = response.content
        if len(body) > max_bytes:
            raise RegistryError(f"blob {digest} too big: {len(body)} bytes")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"image config verification failed for digest {digest}")
        return body

    async def download_blob(
        self, digest: str, out: IO[bytes], progress: Progress | None = None
    ) -> int:
        """Stream a blob into `out`, resuming with `Range` after a broken connection (up to
        DOWNLOAD_ATTEMPTS tries, as moby's download manager); verify its digest."""
        url = self._url("blobs", digest)
        hasher = hashlib.sha256()
        written = 0
        attempt = 0
        while True:
            attempt += 1
            # identity: the digest is of the bytes as stored, never of a re-encoding.
            headers = {"Accept-Encoding": "identity"}
            if written:
                headers["Range"] = f"bytes={written}-"
            try:
                response = await self._session.send(
                    "GET", url, self._scopes, headers=headers, stream=True
                )
                try:
                    if response.status_code not in (200, 206):
                        await response.aread()
                        raise self._error(response, "GET", url)
                    if written and not _resumes_at(response, written):
                        # The registry ignored the Range (or answered another): start over.
                        out.seek(0)
                        out.truncate()
                        hasher, written = hashlib.sha256(), 0
                    # No chunk size: httpx would hold bytes back until a chunk is full, and
                    # lose them to a cut connection instead of resuming after them.
                    async for chunk in response.aiter_raw():
                        out.write(chunk)
                        hasher.update(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written)
                finally:
                    await response.aclose()
                break
            except (RegistryUnreachable, httpx.TransportError) as exc:
                if attempt >= DOWNLOAD_ATTEMPTS:
                    if isinstance(exc, httpx.TransportError):
                        raise self._session.transport_error("GET", url, exc) from None
                    raise
                await asyncio.sleep(RETRY_DELAY_S * attempt)
        out.flush()
        if "sha256:" + hasher.hexdigest() != digest:
            # moby distribution/pull_v2.go
            raise RegistryError(f"filesystem layer verification failed for digest {digest}")
        return written

    async def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; True if mounted, False if the registry would not."""
        query = urlencode({"mount": digest, "from": from_repository})
        url = self._session.url(f"/v2/{self.location.repository}/blobs/uploads/?{query}")
        scopes = (*self._scopes, Scope(from_repository, ("pull",)))
        response = await self._request("POST", url, scopes=scopes, ok=(201, 202))
        if response.status_code == 201:
            return True
        # 202: the registry opened an upload instead; cancel it (moby does the same).
        location = response.headers.get("location")
        if location:
            with contextlib.suppress(RegistryError):
                await self._session.send("DELETE", urljoin(url, location), self._scopes)
        return False

    async def upload_blob(
        self,
        chunks: AsyncIterator[bytes] | Callable[[], Awaitable[bytes]],
        digest: str,
        progress: Progress | None = None,
    ) -> int:
        """Chunked upload: POST, one PATCH per chunk with `Content-Range`, PUT ?digest=."""
        start_url = self._session.url(f"/v2/{self.location.repository}/blobs/uploads/")
        response = await self._request("POST", start_url, ok=(202,))
        location = self._location(response, start_url)
        offset = 0
        async for chunk in _iterate(chunks):
            if not chunk:
                continue
            response = await self._request(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                content=chunk,
                ok=(202,),
            )
            offset += len(chunk)
            location = self._location(response, location)
            if progress is not None:
                progress(offset)
        separator = "&" if "?" in location else "?"
        final = f"{location}{separator}{urlencode({'digest': digest})}"
        await self._request(
            "PUT", final, headers={"Content-Length": "0"}, content=b"", ok=(201, 204)
        )
        return offset

    @staticmethod
    def _location(response: httpx.Response, base: str) -> str:
        location = response.headers.get("location")
        if not isinstance(location, str) or not location:
            raise RegistryError("registry did not send an upload location")
        return urljoin(base, location)


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    """Whether a 206 answer continues exactly at `offset` (Content-Range: bytes N-M/T)."""
    if response.status_code != 206:
        return False
    content_range = response.headers.get("content-range", "")
    unit, _, span = content_range.partition(" ")
    start = span.partition("-")[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


async def _iterate(
    chunks: AsyncIterator[bytes] | Callable[[], Awaitable[bytes]],
) -> AsyncIterator[bytes]:
    if callable(chunks):
        while chunk := await chunks():
            yield chunk
    else:
        async for chunk in chunks:
            yield chunk


async def open_repository(
    location: RegistryLocation,
    auth: AuthConfig,
    options: ClientOptions,
    *,
    actions: tuple[str, ...] = ("pull",),
) -> Repository:
    """Connect to the registry holding `location` (see the module docstring)."""
    session, _ = await _connect(location, auth, options)
    return Repository(session, location, actions)
