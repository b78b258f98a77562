"""A 3-member cluster whose peers speak TLS with client certificates (etcd's --peer-*
flags, issue 6): it replicates, and a member with a certificate from another CA cannot join.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dockyard.tls.certs import make_ca, make_server_cert, write_pair
from tests.integration.store.test_cluster import await_leader, eventually
from tests.support.servers import start_dockyard_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

JSON = {"Content-Type": "application/json"}


def peer_identity(directory: Path, name: str) -> list[str]:
    """--peer-* flags for a member whose certificate a CA named `name` signed."""
    directory.mkdir()
    ca = make_ca(f"{name} CA")
    write_pair(ca, directory / "ca.pem", directory / "ca-key.pem")
    member = make_server_cert(ca, "member", hosts=["127.0.0.1"], client_auth=True)
    write_pair(member, directory / "peer.pem", directory / "peer-key.pem")
    return [
        "--peer-cert-file",
        str(directory / "peer.pem"),
        "--peer-key-file",
        str(directory / "peer-key.pem"),
        "--peer-trusted-ca-file",
        str(directory / "ca.pem"),
        "--peer-client-cert-auth",
    ]


def test_a_cluster_over_peer_tls_replicates_and_refuses_strangers(tmp_path: Path) -> None:
    trusted = peer_identity(tmp_path / "pki", "cluster")
    with start_dockyard_cluster(tmp_path, extra=trusted, peer_scheme="https") as cluster:
        await_leader(list(cluster.members.values()))
        m0, m1 = cluster.members["m0"], cluster.members["m1"]
        r = httpx.put(f"{m0.url}/v2/keys/k", data={"value": "v"}, timeout=15)
        assert r.status_code == 201
        quorum = httpx.get(f"{m1.url}/v2/keys/k?quorum=true", timeout=15)
        assert quorum.json()["node"]["value"] == "v"
        # The peer port speaks only TLS, and only to holders of a certificate of its CA.
        peer = cluster.peer_url("m0")
        with pytest.raises(httpx.HTTPError):
            httpx.get(peer.replace("https://", "http://") + "/members", timeout=5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(peer + "/members", timeout=5, verify=False)

        # A member added properly, but holding a certificate of another CA, cannot join.
        rogue = peer_identity(tmp_path / "rogue", "rogue")
        rogue_peer = cluster.new_peer_url().replace("http://", "https://")

        def add() -> httpx.Response | None:
            r = httpx.post(
                f"{m0.url}/v2/members", json={"peerURLs": [rogue_peer]}, headers=JSON, timeout=15
            )
            return r if r.status_code != 500 else None  # etcd's 5 s health rule first

        assert eventually(add, 30.0, "the cluster healthy for changes").status_code == 201
        stranger = cluster.join("rogue", rogue_peer, wait=False, extra=rogue)
        assert stranger.process.wait(timeout=60) != 0
        assert "could not reach a member of the cluster to join" in stranger.log()
