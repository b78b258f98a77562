"""Throw-away TLS material for tests: a CA with server and client certs, and a foreign CA.

`make_tls_material(directory)` writes everything under `directory` (use `tmp_path`) and returns
the paths. The server cert names 127.0.0.1 and localhost and carries both serverAuth and
clientAuth, because etcd 3.4 also uses it as a client cert (its gRPC gateway dials its own
client port with it). The "other" CA and its client cert are for rejection tests.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from dockyard.tls.certs import make_ca, make_client_cert, make_server_cert, write_pair
from dockyard.tls.contexts import client_context, server_context

SERVER_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    other_client_cert: Path
    other_client_key: Path

    def etcd_args(self, *, client_cert_auth: bool = True) -> list[str]:
        """etcd (and `dockyard store serve`) flags serving these certs on https client URLs."""
        args = [
            "--cert-file", str(self.server_cert),
            "--key-file", str(self.server_key),
            "--trusted-ca-file", str(self.ca_cert),
        ]  # fmt: skip
        return [*args, "--client-cert-auth"] if client_cert_auth else args

    def server_context(self, *, trusted_ca: bool = True) -> ssl.SSLContext:
        return server_context(
            self.server_cert,
            self.server_key,
            trusted_ca_file=self.ca_cert if trusted_ca else None,
        )

    def client_context(self, *, with_cert: bool = True) -> ssl.SSLContext:
        """Trusts our CA; presents our client cert unless `with_cert=False`."""
        if not with_cert:
            return client_context(ca_file=self.ca_cert)
        return client_context(
            ca_file=self.ca_cert, cert_file=self.client_cert, key_file=self.client_key
        )

    def other_client_context(self) -> ssl.SSLContext:
        """Trusts our CA (so the server is accepted) but presents a cert from the other CA."""
        return client_context(
            ca_file=self.ca_cert, cert_file=self.other_client_cert, key_file=self.other_client_key
        )


def make_tls_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("dockyard test CA")
    other_ca = make_ca("dockyard other test CA")
    server = make_server_cert(ca, "dockyard test server", hosts=SERVER_HOSTS, client_auth=True)
    client = make_client_cert(ca, "dockyard test client")
    other_client = make_client_cert(other_ca, "dockyard foreign client")

    material = TlsMaterial(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca_cert=directory / "other-ca.pem",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client-key.pem",
    )
    # CA keys stay in memory: no test needs them on disk, and fewer keys lying around is better.
    material.ca_cert.write_bytes(ca.cert_pem)
    material.other_ca_cert.write_bytes(other_ca.cert_pem)
    write_pair(server, material.server_cert, material.server_key)
    write_pair(client, material.client_cert, material.client_key)
    write_pair(other_client, material.other_client_cert, material.other_client_key)
    return material
