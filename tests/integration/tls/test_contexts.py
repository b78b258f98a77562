"""Real TLS handshakes on loopback between `server_context` and `client_context`.

The server runs in a thread on a blocking loopback socket so the test can see *why* it refused
a client (OpenSSL's reason, such as CERTIFICATE_VERIFY_FAILED), not just that the client got
an EOF. With TLS 1.3 the server rejects a client cert after the client's side of the handshake
has completed, so the client sees the rejection only on its first read; both protocol versions
are exercised. One test runs the same contexts under an asyncio server, as our daemons will.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.tls.certs import make_ca, make_server_cert, write_pair
from dockyard.tls.contexts import MINIMUM_TLS_VERSION, client_context, server_context
from dockyard.tls.errors import TlsConfigError
from tests.support.tls import TlsMaterial, make_tls_material

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
IO_TIMEOUT_S = 10.0


@dataclass
class Outcome:
    accepted: bool  # the server completed the handshake and the client read its answer
    peer_cn: str | None  # the client cert's CN as the server saw it
    server_error: BaseException | None
    client_error: BaseException | None

    @property
    def server_reason(self) -> str:
        return str(getattr(self.server_error, "reason", None) or self.server_error)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


def _common_name(peer: Mapping[str, Any] | None) -> str | None:
    if not peer:
        return None
    for rdn in peer["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _run(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost"
) -> Outcome:
    """One connection: handshake, the server sends `ok`, the client reads it."""
    peers: list[str | None] = []
    server_errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(IO_TIMEOUT_S)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(IO_TIMEOUT_S)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    peers.append(_common_name(tls.getpeercert()))
                    tls.sendall(b"ok\n")
            except (ssl.SSLError, OSError) as e:
                server_errors.append(e)

        thread = threading.Thread(target=serve, name="tls-test-server")
        thread.start()
        line, client_error = b"", None
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                line = tls.recv(16)
        except (ssl.SSLError, OSError) as e:
            client_error = e
        finally:
            thread.join(IO_TIMEOUT_S + 5)
    assert not thread.is_alive(), "the test server thread hung"
    accepted = line == b"ok\n" and bool(peers)
    return Outcome(
        accepted, peers[0] if peers else None, server_errors[0] if server_errors else None,
        client_error,
    )  # fmt: skip


def _capped(ctx: ssl.SSLContext, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx.maximum_version = version
    return ctx


def _ca_server(material: TlsMaterial, client_cert_auth: bool) -> ssl.SSLContext:
    return server_context(
        material.server_cert,
        material.server_key,
        trusted_ca_file=material.ca_cert,
        client_cert_auth=client_cert_auth,
    )


AUTH_MODES = pytest.mark.parametrize("client_cert_auth", [True, False], ids=["auth", "ca-alone"])
VERSIONS = pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)


@VERSIONS
@AUTH_MODES
def test_client_cert_from_the_ca_is_accepted(
    material: TlsMaterial, version: ssl.TLSVersion, client_cert_auth: bool
) -> None:
    outcome = _run(
        _ca_server(material, client_cert_auth), _capped(material.client_context(), version)
    )
    assert outcome.accepted and outcome.peer_cn == "dockyard test client", outcome


@VERSIONS
@AUTH_MODES
def test_no_client_cert_is_rejected(
    material: TlsMaterial, version: ssl.TLSVersion, client_cert_auth: bool
) -> None:
    # etcd 3.4: the trusted CA file alone already requires a client cert (spec §13).
    client = _capped(material.client_context(with_cert=False), version)
    outcome = _run(_ca_server(material, client_cert_auth), client)
    assert not outcome.accepted, outcome
    assert outcome.server_reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE", outcome
    assert isinstance(outcome.client_error, ssl.SSLError), outcome


@VERSIONS
@AUTH_MODES
def test_client_cert_from_another_ca_is_rejected(
    material: TlsMaterial, version: ssl.TLSVersion, client_cert_auth: bool
) -> None:
    client = _capped(material.other_client_context(), version)
    outcome = _run(_ca_server(material, client_cert_auth), client)
    assert not outcome.accepted, outcome
    assert outcome.server_reason == "CERTIFICATE_VERIFY_FAILED", outcome
    assert "unknown ca" in str(outcome.client_error), outcome


def test_server_cert_without_client_auth_eku_is_not_a_client_cert(tmp_path: Path) -> None:
    # A cert from the right CA but issued for serving only: OpenSSL checks the EKU, as Go does.
    ca = make_ca("eku CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    write_pair(
        make_server_cert(ca, "server only", hosts=["127.0.0.1"]),
        tmp_path / "s.pem",
        tmp_path / "s-key.pem",
    )
    server = server_context(
        tmp_path / "s.pem", tmp_path / "s-key.pem", trusted_ca_file=tmp_path / "ca.pem"
    )
    client = client_context(
        ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "s.pem", key_file=tmp_path / "s-key.pem"
    )
    outcome = _run(server, client, server_hostname="127.0.0.1")
    assert not outcome.accepted
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError), outcome
    assert "certificate purpose" in outcome.server_error.verify_message


def test_without_a_ca_no_client_cert_is_needed(material: TlsMaterial) -> None:
    server = server_context(material.server_cert, material.server_key)
    outcome = _run(server, material.client_context(with_cert=False))
    assert outcome.accepted and outcome.peer_cn is None, outcome


def test_client_checks_the_server_ca_and_name(material: TlsMaterial) -> None:
    server = material.server_context(trusted_ca=False)
    # Our server cert names 127.0.0.1 and localhost, as IP and DNS SANs.
    for name in ("127.0.0.1", "localhost"):
        assert _run(server, client_context(ca_file=material.ca_cert), name).accepted
    wrong_name = _run(server, client_context(ca_file=material.ca_cert), "example.com")
    assert isinstance(wrong_name.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in wrong_name.client_error.verify_message
    # The server's cert does not chain to the other CA...
    foreign = _run(server, client_context(ca_file=material.other_ca_cert))
    assert isinstance(foreign.client_error, ssl.SSLCertVerificationError), foreign
    # ...but verify=False accepts it anyway (docker's --tls without --tlsverify).
    assert _run(server, client_context(ca_file=material.other_ca_cert, verify=False)).accepted


def test_strict_x509_checks_pass(material: TlsMaterial) -> None:
    # Python 3.13 turns VERIFY_X509_STRICT on by default; our certs must already satisfy it.
    server = material.server_context()
    client = material.client_context()
    for ctx in (server, client):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert _run(server, client).accepted


def test_asyncio_server(material: TlsMaterial) -> None:
    """The contexts under asyncio streams, as the store and engine will use them."""

    async def exchange(client: ssl.SSLContext) -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"ok\n")
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.drain()
                writer.close()
                await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=material.server_context())
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=client), IO_TIMEOUT_S
            )
            try:
                return await asyncio.wait_for(reader.readline(), IO_TIMEOUT_S)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            return b""
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(exchange(material.client_context())) == b"ok\n"
    assert asyncio.run(exchange(material.client_context(with_cert=False))) == b""


def test_tls_1_2_is_the_minimum(material: TlsMaterial) -> None:
    assert material.server_context().minimum_version == MINIMUM_TLS_VERSION
    assert material.client_context().minimum_version == MINIMUM_TLS_VERSION
    assert ssl.TLSVersion.TLSv1_2 == MINIMUM_TLS_VERSION


def test_mismatched_key_is_a_config_error(material: TlsMaterial) -> None:
    with pytest.raises(TlsConfigError, match="does not match") as info:
        server_context(material.server_cert, material.client_key)
    assert info.value.path == str(material.client_key)
    with pytest.raises(TlsConfigError, match="does not match"):
        client_context(cert_file=material.client_cert, key_file=material.other_client_key)


def test_missing_and_malformed_files_are_config_errors(
    material: TlsMaterial, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsConfigError, match="certificate file not found") as info:
        server_context(missing, material.server_key)
    assert info.value.path == str(missing) and str(missing) in str(info.value)
    with pytest.raises(TlsConfigError, match="key file not found"):
        server_context(material.server_cert, missing)
    with pytest.raises(TlsConfigError, match="trusted CA file not found"):
        server_context(material.server_cert, material.server_key, trusted_ca_file=missing)
    with pytest.raises(TlsConfigError, match="CA file not found"):
        client_context(ca_file=missing)

    # A key where the CA should be, and a certificate where the key should be.
    with pytest.raises(TlsConfigError, match="no valid PEM certificate"):
        server_context(
            material.server_cert, material.server_key, trusted_ca_file=material.server_key
        )
    with pytest.raises(TlsConfigError, match="no valid PEM private key"):
        server_context(material.server_cert, material.server_cert)

    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(TlsConfigError, match="empty"):
        server_context(empty, material.server_key)
    with pytest.raises(TlsConfigError, match="directory"):
        server_context(tmp_path, material.server_key)


def test_client_cert_auth_without_a_ca_is_a_config_error(material: TlsMaterial) -> None:
    with pytest.raises(TlsConfigError, match="needs a trusted CA file") as info:
        server_context(material.server_cert, material.server_key, client_cert_auth=True)
    assert info.value.path is None


def test_client_key_without_cert_is_a_config_error(material: TlsMaterial) -> None:
    with pytest.raises(TlsConfigError, match="without its certificate"):
        client_context(ca_file=material.ca_cert, key_file=material.client_key)


def test_combined_cert_and_key_file(material: TlsMaterial, tmp_path: Path) -> None:
    combined = tmp_path / "client-combined.pem"
    combined.write_bytes(material.client_cert.read_bytes() + material.client_key.read_bytes())
    client = client_context(ca_file=material.ca_cert, cert_file=combined)
    assert _run(material.server_context(), client).accepted
