"""The daemon's listeners: `-H` addresses as dockerd reads them, and their sockets.

Role: parse `-H` (unix:///path, tcp://host:port), refuse what would expose root to the
network (TCP off loopback without `--tlsverify`), bind unix sockets root-only from their
first instant, and make the TLS context of TCP listeners (mutual TLS with `--tlsverify`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from dockyard.tls.contexts import server_context


class TlsFiles(Protocol):
    """The `--tls*` flags (DaemonConfig has them)."""

    @property
    def tls_verify(self) -> bool: ...
    @property
    def tls_ca_cert(self) -> Path | None: ...
    @property
    def tls_cert(self) -> Path | None: ...
    @property
    def tls_key(self) -> Path | None: ...


class ListenerError(Exception):
    """A `-H` address that cannot or must not be served."""


# Request bodies are buffered whole by the HTTP server, and `docker import` (later load,
# build contexts) sends root filesystems: dockerd has no limit. Anyone who can reach the
# API controls the host as root already, so the cap only guards against accidents; a
# streamed request body is the real fix.
API_MAX_BODY_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Listener:
    kind: str  # "unix" | "tcp"
    address: str  # the socket path, or the host
    port: int = 0
    tls: bool = False  # tcp only: serve TLS (client certificates per the daemon's flags)


def parse_host(text: str, *, tls_verify: bool, tls: bool = False) -> Listener:
    """A `-H` value as dockerd reads it; refuses what would expose root to the network.

    Plain TCP stays allowed on loopback (dockerd allows it with a warning): only local users
    reach it, as with a socket whose mode would be 0666, so it is refused off loopback only.
    """
    if text.startswith("/"):
        text = "unix://" + text
    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path.startswith("/"):
            raise ListenerError(f"invalid unix socket address {text!r}: need an absolute path")
        return Listener("unix", path)
    if parts.scheme == "tcp":
        host = parts.hostname or ""
        if not host or parts.port is None:
            raise ListenerError(f"invalid tcp address {text!r}: need tcp://host:port")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not tls_verify:
            raise ListenerError(
                f"refusing to listen on {text} without --tlsverify: anyone who can reach "
                "it would control this host as root (use a unix socket or a loopback address)"
            )
        return Listener("tcp", host, parts.port, tls=tls or tls_verify)
    raise ListenerError(f"unsupported -H address {text!r}: use unix:///path or tcp://host:port")


def bind_listener(listener: Listener) -> socket.socket:
    if listener.kind == "tcp":
        family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
        return socket.create_server((listener.address, listener.port), family=family)
    path = Path(listener.address)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if path.is_socket():
        path.unlink()  # stale, from a daemon that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The socket is root's only from its first instant: the umask covers bind's mode.
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(1024)
    return sock


def server_tls_context(config: TlsFiles) -> ssl.SSLContext:
    """The tcp listeners' TLS context: mutual TLS with `--tlsverify`, else server-only.

    Raises `TlsConfigError` naming the file that is missing, unreadable or mismatched.
    """
    if config.tls_cert is None or config.tls_key is None:
        raise ListenerError("TLS listeners need --tlscert and --tlskey")
    if config.tls_verify and config.tls_ca_cert is None:
        raise ListenerError("--tlsverify needs --tlscacert to verify client certificates")
    return server_context(
        config.tls_cert,
        config.tls_key,
        # A CA file makes the context require and verify client certificates.
        trusted_ca_file=config.tls_ca_cert if config.tls_verify else None,
    )
