"""`tests.support.tls` material works with the reference etcd 3.4 over https (spec §13).

With the client cert from our CA, GET /version answers; without one, or with a cert from
another CA, the handshake fails. A trusted CA file alone (no --client-cert-auth) already
demands a client cert, which is the etcd quirk `server_context` copies.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import running, start_etcd
from tests.support.tls import TlsMaterial, make_tls_material

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _get_version(url: str, context: ssl.SSLContext) -> dict[str, str]:
    with urllib.request.urlopen(f"{url}/version", timeout=5, context=context) as response:
        assert response.status == 200
        body: dict[str, str] = json.load(response)
        return body


def _assert_refused(url: str, context: ssl.SSLContext) -> None:
    # TLS 1.2 fails in the handshake (urllib wraps it in URLError); TLS 1.3 delivers the
    # server's alert on the first read (a bare SSLError, or a reset). All are OSErrors.
    with pytest.raises(OSError) as info:
        _get_version(url, context)
    error = info.value
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    assert isinstance(cause, ssl.SSLError | ConnectionResetError), repr(error)


@pytest.mark.parametrize("client_cert_auth", [True, False], ids=["auth", "ca-alone"])
def test_etcd_requires_a_client_cert_from_the_ca(tmp_path: Path, client_cert_auth: bool) -> None:
    material: TlsMaterial = make_tls_material(tmp_path / "tls")
    server = start_etcd(
        tmp_path,
        extra=material.etcd_args(client_cert_auth=client_cert_auth),
        scheme="https",
        ssl_context=material.client_context(),
    )
    with running(server):
        assert server.url.startswith("https://127.0.0.1:")
        assert _get_version(server.url, material.client_context())["etcdserver"].startswith("3.4")
        # The same URL by name: the server cert's DNS SAN.
        by_name = server.url.replace("127.0.0.1", "localhost")
        assert "etcdserver" in _get_version(by_name, material.client_context())

        _assert_refused(server.url, material.client_context(with_cert=False))
        _assert_refused(server.url, material.other_client_context())
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            capped = material.client_context(with_cert=False)
            capped.maximum_version = version
            _assert_refused(server.url, capped)
        # etcd's gRPC gateway dials its own port with the server cert as a client cert; without
        # the clientAuth EKU it would be refused over and over (etcd#9785).
        assert "incompatible key usage" not in server.log()
