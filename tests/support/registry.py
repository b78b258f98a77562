"""A real Docker Registry v2 (Debian's docker-registry 2.8) for tests, and its auth helpers.

`start_registry(base, ...)` runs `/usr/bin/docker-registry serve <config>` on a free
loopback port with its own config and storage under `base` (never the system service, never
/etc/docker/registry), optionally with TLS (a CA and server cert from `dockyard.tls`),
basic auth (an htpasswd file hashed with `bcrypt`) or bearer-token auth (`TokenServer`, a
tiny token server in this process that signs ES256 JWTs with an `x5c` header the registry
verifies against its `rootcertbundle`). `stop()` stops the registry by PID.

Also here: `GarbageServer`, a TCP server that answers every connection with bytes that are
not HTTP, and `CutOnceProxy`, a TCP proxy that breaks the first download of a blob after
a number of bytes (to prove `Range` resume).

A registry "off loopback" runs in a network namespace the test creates (`remote_host`),
joined to the host by a veth pair that is removed at the end: tests reach only loopback and
their own namespaces.

A missing binary fails loudly; nothing is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from dockyard.tls.certs import CertKeyPair, make_ca, make_server_cert, write_pair
from tests.support.netns import IP, pick_subnet
from tests.support.servers import free_port

REGISTRY_BINARY = "/usr/bin/docker-registry"
REMOTE_PORT = 5000
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02
TOKEN_SERVICE = "dockyard-test-registry"
TOKEN_ISSUER = "dockyard-test-token-issuer"
TOKEN_TTL_S = 300


@dataclass(frozen=True)
class RemoteHost:
    """A host of the test's own for a "remote" registry: a network namespace joined to this
    one by a veth pair. A registry there is off loopback, so dockerd's rules make it secure."""

    netns: str
    address: str  # the namespace's end
    host_link: str  # the veth end in this namespace


@contextlib.contextmanager
def remote_host() -> Iterator[RemoteHost]:
    """Create the namespace and the veth pair (10.213.<x>.1 here, .2 there); remove both at
    the end, even on failure (deleting the namespace destroys the pair)."""
    token = secrets.token_hex(3)
    subnet = pick_subnet()
    netns, link, peer = f"dyr{token}", f"dyrh{token}", f"dyrn{token}"
    here, there = str(subnet.network_address + 1), str(subnet.network_address + 2)
    created = False
    try:
        _ip("netns", "add", netns)
        created = True
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", netns)
        _ip("addr", "add", f"{here}/{subnet.prefixlen}", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", netns, "addr", "add", f"{there}/{subnet.prefixlen}", "dev", peer)
        _ip("-n", netns, "link", "set", peer, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        yield RemoteHost(netns, there, link)
    finally:
        if created:
            subprocess.run([IP, "netns", "del", netns], check=False, capture_output=True)
        subprocess.run([IP, "link", "del", link], check=False, capture_output=True)


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, text=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class RegistryTls:
    """A CA and the registry's server cert (for 127.0.0.1 and localhost)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def make(cls, directory: Path, address: str = "127.0.0.1") -> RegistryTls:
        directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca("dockyard registry test CA")
        hosts = tuple(dict.fromkeys(("127.0.0.1", "localhost", address)))
        server = make_server_cert(ca, "registry", hosts=hosts)
        tls = cls(directory / "ca.crt", directory / "server.cert", directory / "server.key")
        tls.ca_cert.write_bytes(ca.cert_pem)
        write_pair(server, tls.server_cert, tls.server_key)
        return tls

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


class TokenServer:
    """Docker's token auth (distribution docs/spec/auth/token.md) for one registry.

    `users` maps user → password. An authenticated user gets every action asked for; an
    anonymous client gets `anonymous_actions` (none by default); bad credentials get 401.
    Each token request is recorded in `requests` (its query, and the user if any).
    """

    def __init__(
        self,
        directory: Path,
        users: Mapping[str, str],
        *,
        anonymous_actions: tuple[str, ...] = (),
    ) -> None:
        self.users = dict(users)
        self.anonymous_actions = anonymous_actions
        self.signer: CertKeyPair = make_ca("dockyard test token signer")
        self.root_cert_bundle = directory / "token-signer.crt"
        self.root_cert_bundle.write_bytes(self.signer.cert_pem)
        self._key = serialization.load_pem_private_key(self.signer.key_pem, password=None)
        self._x5c = base64.b64encode(
            self.signer.certificate.public_bytes(serialization.Encoding.DER)
        ).decode()
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a in self.anonymous_actions]
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        return access

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(name) != password:
                        self._send(
                            401,
                            {
                                "errors": [
                                    {"code": "UNAUTHORIZED", "message": "invalid credentials"}
                                ]
                            },
                        )
                        return
                    user = name
                server.requests.append({"query": query, "user": user})
                now = int(time.time())
                claims = {
                    "iss": TOKEN_ISSUER,
                    "sub": user or "",
                    "aud": query.get("service", [""])[0],
                    "exp": now + TOKEN_TTL_S,
                    "nbf": now - 60,
                    "iat": now,
                    "jti": secrets.token_hex(8),
                    "access": server._grant(user, query.get("scope", [])),
                }
                token = server.sign(claims)
                self._send(200, {"token": token, "access_token": token, "expires_in": TOKEN_TTL_S})

        return Handler


@dataclass
class RegistryProcess:
    """A running docker-registry; `host` is `127.0.0.1:PORT`."""

    base: Path
    address: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    tls: RegistryTls | None = None
    token_server: TokenServer | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        finally:
            if self.token_server is not None:
                self.token_server.close()

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """A raw request to the registry (basic auth with the first user, if any)."""
        all_headers = dict(headers or {})
        if self.users and self.token_server is None:
            user, password = next(iter(self.users.items()))
            all_headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            )
        if self.token_server is not None:
            scope = _scope_for(path)
            claims_user = next(iter(self.users), "admin")
            now = int(time.time())
            token = self.token_server.sign(
                {
                    "iss": TOKEN_ISSUER,
                    "sub": claims_user,
                    "aud": TOKEN_SERVICE,
                    "exp": now + TOKEN_TTL_S,
                    "nbf": now - 60,
                    "iat": now,
                    "jti": secrets.token_hex(8),
                    "access": [
                        {"type": "repository", "name": scope, "actions": ["pull", "push", "delete"]}
                    ]
                    if scope
                    else [],
                }
            )
            all_headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, method=method, headers=all_headers)
        context = self.tls.client_context() if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


def _scope_for(path: str) -> str:
    parts = path.split("/")
    for marker in ("manifests", "blobs", "tags"):
        if marker in parts:
            return "/".join(parts[2 : parts.index(marker)])
    return ""


def _config_text(
    storage: Path,
    address: str,
    port: int,
    tls: RegistryTls | None,
    htpasswd: Path | None,
    token_server: TokenServer | None,
) -> str:
    # JSON is YAML: no YAML writer needed.
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"{address}:{port}", "secret": secrets.token_hex(16)},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "dockyard-test", "path": str(htpasswd)}}
    if token_server is not None:
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(token_server.root_cert_bundle),
            }
        }
    return json.dumps(config, indent=2)


def start_registry(
    base: Path,
    *,
    address: str = "127.0.0.1",
    tls: bool = False,
    basic_users: Mapping[str, str] | None = None,
    token_users: Mapping[str, str] | None = None,
    anonymous_actions: tuple[str, ...] = (),
    remote: RemoteHost | None = None,
) -> RegistryProcess:
    """Start docker-registry under `base` (config, storage, log); wait until it answers.
    With `remote` it runs in that namespace, on its address."""
    if not os.access(REGISTRY_BINARY, os.X_OK):
        raise RuntimeError(f"{REGISTRY_BINARY} is missing: install Debian's docker-registry")
    base.mkdir(parents=True, exist_ok=True)
    if remote is not None:
        address = remote.address
    registry_tls = RegistryTls.make(base / "tls", address) if tls else None
    htpasswd = None
    if basic_users:
        htpasswd = base / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for user, password in basic_users.items()
            )
        )
    token_server = (
        TokenServer(base, token_users, anonymous_actions=anonymous_actions)
        if token_users is not None
        else None
    )
    # A namespace of the test's own has nothing else listening.
    port = REMOTE_PORT if remote is not None else free_port(address)
    config = base / "config.yml"
    config.write_text(
        _config_text(base / "storage", address, port, registry_tls, htpasswd, token_server)
    )
    log_path = base / "registry.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*_in_netns(remote), REGISTRY_BINARY, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    registry = RegistryProcess(
        base,
        address,
        port,
        process,
        log_path,
        registry_tls,
        token_server,
        dict(basic_users or token_users or {}),
    )
    try:
        _wait_serving(registry)
    except BaseException:
        registry.stop()
        raise
    return registry


def _in_netns(remote: RemoteHost | None) -> list[str]:
    # `ip netns exec` execs the command: the Popen's PID is the registry's.
    return [IP, "netns", "exec", remote.netns] if remote is not None else []


def _wait_serving(registry: RegistryProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    context = registry.tls.client_context() if registry.tls else None
    while True:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{registry.log()}")
        try:
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return  # 401: serving, and asking for auth
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"docker-registry did not answer in {START_TIMEOUT_S}s:\n{registry.log()}"
            )
        time.sleep(POLL_S)  # polling an external process: there is no event to await


@contextlib.contextmanager
def running_registry(base: Path, **options: Any) -> Iterator[RegistryProcess]:
    registry = start_registry(base, **options)
    try:
        yield registry
    finally:
        registry.stop()


class GarbageServer:
    """Accepts TCP connections and answers each with bytes that are not HTTP."""

    def __init__(self, payload: bytes = b"\x00\x01garbage, not HTTP\r\n\r\n") -> None:
        self.payload = payload
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(self.payload)

    def close(self) -> None:
        self._stop.set()
        # shutdown wakes the thread blocked in accept(); close alone does not on Linux.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join()


class CutOnceProxy:
    """A TCP proxy to `target_port` that cuts the first response carrying a blob after
    `cut_after_bytes` of its body stream; later connections pass untouched. Records the
    request heads it forwarded (to see the `Range` header of the resumed download)."""

    def __init__(self, target_port: int, cut_after_bytes: int) -> None:
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.cut_done = threading.Event()
        self.request_heads: list[bytes] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        cut = {"active": False}

        def upward() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    with self._lock:
                        self.request_heads.append(data)
                        if (
                            b"/blobs/sha256:" in data
                            and b"GET " in data
                            and not self.cut_done.is_set()
                        ):
                            cut["active"] = True
                            self.cut_done.set()
                    upstream.sendall(data)
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        up = threading.Thread(target=upward, daemon=True)
        up.start()
        sent = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if cut["active"]:
                    room = self.cut_after_bytes - sent
                    if room <= 0 or len(data) > room:
                        client.sendall(data[: max(room, 0)])
                        break
                    sent += len(data)
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        client.close()
        upstream.close()
        up.join(timeout=5)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accept.join()
        for thread in self._threads:
            thread.join(timeout=5)


def blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
