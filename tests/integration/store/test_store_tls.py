"""dockyard's store over TLS: HTTPS with a server certificate, and client certificates
required at the handshake (etcd's --client-cert-auth / --trusted-ca-file semantics)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess, start_dockyard
from tests.support.tls import TlsMaterial, make_tls_material

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


def _request(
    url: str, context: ssl.SSLContext, method: str = "GET", data: bytes | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.read()


@pytest.fixture
def server(tmp_path: Path, tls: TlsMaterial) -> Iterator[ServerProcess]:
    srv = start_dockyard(
        tmp_path,
        extra=tls.etcd_args(client_cert_auth=True),
        scheme="https",
        ssl_context=tls.client_context(),
    )
    try:
        yield srv
    finally:
        srv.stop()


def test_client_with_a_certificate_from_the_ca_reads_and_writes(
    server: ServerProcess, tls: TlsMaterial
) -> None:
    status, body = _request(
        f"{server.url}/v2/keys/secure", tls.client_context(), "PUT", b"value=yes"
    )
    assert status == 201 and json.loads(body)["node"]["value"] == "yes"
    status, body = _request(f"{server.url}/v2/keys/secure", tls.client_context())
    assert status == 200 and json.loads(body)["node"]["value"] == "yes"


def test_client_without_a_certificate_is_refused_at_the_handshake(
    server: ServerProcess, tls: TlsMaterial
) -> None:
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _request(f"{server.url}/version", tls.client_context(with_cert=False))
    assert server.process.poll() is None, "a refused handshake must not hurt the server"


def test_client_with_a_certificate_from_another_ca_is_refused(
    server: ServerProcess, tls: TlsMaterial
) -> None:
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _request(f"{server.url}/version", tls.other_client_context())
    status, _ = _request(f"{server.url}/version", tls.client_context())
    assert status == 200


def test_plain_http_to_the_https_port_gets_no_answer(server: ServerProcess) -> None:
    plain = server.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{plain}/version", timeout=5).read()


def test_trusted_ca_alone_already_requires_client_certificates(
    tmp_path: Path, tls: TlsMaterial
) -> None:
    srv = start_dockyard(
        tmp_path,
        extra=tls.etcd_args(client_cert_auth=False),
        scheme="https",
        ssl_context=tls.client_context(),
    )
    try:
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            _request(f"{srv.url}/version", tls.client_context(with_cert=False))
    finally:
        srv.stop()
