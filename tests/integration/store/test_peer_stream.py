"""The peer listener of a clustered member against raw, wrong or hostile peer traffic.

Members talk over one-way streams (`POST /raft/stream` upgraded with 101, then length-framed
batches; store/cluster/transport.py). A stream from another cluster is refused with 412
before it starts, a removed member's with 410, a wrong method with 405; a frame that does
not decode, or claims an absurd length, ends that stream only; the cluster keeps serving
writes through all of it.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.store.test_cluster import await_leader
from tests.support.servers import start_dockyard_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SOCKET_TIMEOUT_S = 10.0


def _open(peer_url: str, head: str) -> tuple[socket.socket, bytes]:
    """Send `head` to the peer listener; the connection and the answer's status line."""
    parts = urlsplit(peer_url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT_S)
    sock.sendall(head.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return sock, answer.split(b"\r\n", 1)[0]


def _stream_head(cluster_id: str, sender: str = "1", method: str = "POST") -> str:
    return (
        f"{method} /raft/stream HTTP/1.1\r\nHost: x\r\nUpgrade: dockyard-raft\r\n"
        f"Connection: Upgrade\r\nX-Etcd-Cluster-Id: {cluster_id}\r\n"
        f"X-Server-From: {sender}\r\nContent-Length: 0\r\n\r\n"
    )


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer ends the connection (EOF or reset) rather than waiting for more."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_bad_streams_are_refused_or_ended_and_the_cluster_keeps_writing(tmp_path: Path) -> None:
    with start_dockyard_cluster(tmp_path) as cluster:
        servers = list(cluster.members.values())
        await_leader(servers)
        first = servers[0]
        cluster_id = httpx.get(f"{first.url}/v2/keys/", timeout=5).headers["X-Etcd-Cluster-Id"]
        peer = cluster.peer_url("m0")

        sock, status = _open(peer, _stream_head("0123abcd"))
        sock.close()
        assert status == b"HTTP/1.1 412 Precondition Failed", status

        sock, status = _open(peer, _stream_head(cluster_id, method="GET"))
        sock.close()
        assert status == b"HTTP/1.1 405 Method Not Allowed", status

        sock, status = _open(peer, _stream_head(cluster_id, sender="not-hex"))
        sock.close()
        assert status == b"HTTP/1.1 400 Bad Request", status

        # Accepted, then a frame that is not a batch: the stream ends.
        sock, status = _open(peer, _stream_head(cluster_id))
        assert status == b"HTTP/1.1 101 Switching Protocols", status
        sock.sendall(struct.pack(">I", 5) + b"hello")
        assert _closed_by_peer(sock)
        sock.close()

        # A frame claiming 4 GiB: ended at once, nothing buffered for it.
        sock, status = _open(peer, _stream_head(cluster_id))
        assert status == b"HTTP/1.1 101 Switching Protocols", status
        sock.sendall(struct.pack(">I", 0xFFFFFFFF))
        assert _closed_by_peer(sock)
        sock.close()

        for i, server in enumerate(servers):
            r = httpx.put(f"{server.url}/v2/keys/after-{i}", data={"value": "ok"}, timeout=10)
            assert r.status_code == 201, r.text
        logs = "".join(s.log() for s in servers)
        assert "Traceback" not in logs
