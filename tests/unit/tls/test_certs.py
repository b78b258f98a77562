"""Certificates from `dockyard.tls.certs`: chains, names, usages, validity and key files.

Chains are checked with cryptography's RFC 5280 verifier (strict, like Go's), so a cert that
OpenSSL would tolerate but Go would refuse fails here, without any socket.
"""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.tls.certs import (
    CA_VALID_DAYS,
    LEAF_VALID_DAYS,
    CertKeyPair,
    make_ca,
    make_client_cert,
    make_server_cert,
    read_pair,
    write_pair,
)
from dockyard.tls.errors import CertificateError, TlsConfigError

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> CertKeyPair:
    return make_ca("test CA", now=NOW)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _store(ca: CertKeyPair) -> verification.Store:
    return verification.Store([ca.certificate])


def _client_verifier(ca: CertKeyPair) -> verification.ClientVerifier:
    # The Web PKI profile wants a SAN on client certs too; Go, OpenSSL and docker-machine's
    # client certs do without one (the CN is the identity), so only that rule is relaxed.
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    return (
        verification.PolicyBuilder()
        .store(_store(ca))
        .time(NOW)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        .build_client_verifier()
    )


def test_ca_is_a_self_signed_ca(ca: CertKeyPair) -> None:
    cert = ca.certificate
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=CA_VALID_DAYS)
    assert cert.not_valid_before_utc < NOW  # backdated for clock skew


def test_server_cert_chains_to_the_ca_with_sans_and_server_auth(ca: CertKeyPair) -> None:
    server = make_server_cert(ca, "server", hosts=["127.0.0.1", "localhost", "[::1]"], now=NOW)
    cert = server.certificate
    cert.verify_directly_issued_by(ca.certificate)

    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # The full RFC 5280 path validation, by name and by IP, as a Go or Python client would do.
    builder = verification.PolicyBuilder().store(_store(ca)).time(NOW)
    for subject in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = builder.build_server_verifier(subject).verify(cert, [])
        assert chain[-1] == ca.certificate
    with pytest.raises(verification.VerificationError):
        builder.build_server_verifier(x509.DNSName("example.com")).verify(cert, [])
    # A server cert is not a client cert (OpenSSL and Go both check the EKU).
    with pytest.raises(verification.VerificationError):
        builder.build_client_verifier().verify(cert, [])


def test_server_cert_with_client_auth_has_both_usages(ca: CertKeyPair) -> None:
    server = make_server_cert(ca, "etcd", hosts=["127.0.0.1"], client_auth=True, now=NOW)
    assert _eku(server.certificate) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    builder = verification.PolicyBuilder().store(_store(ca)).time(NOW)
    builder.build_client_verifier().verify(server.certificate, [])


def test_client_cert_chains_to_the_ca_with_client_auth(ca: CertKeyPair) -> None:
    client = make_client_cert(ca, "alice", organization="dockyard", now=NOW)
    cert = client.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.rfc4514_string() == "CN=alice,O=dockyard"
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=LEAF_VALID_DAYS)
    verified = _client_verifier(ca).verify(cert, [])
    assert verified.chain[-1] == ca.certificate


def test_cert_from_another_ca_does_not_chain(ca: CertKeyPair) -> None:
    other = make_ca("other CA", now=NOW)
    client = make_client_cert(other, "mallory", now=NOW)
    with pytest.raises(verification.VerificationError, match="candidate"):
        _client_verifier(ca).verify(client.certificate, [])


def test_rsa_keys() -> None:
    ca = make_ca("rsa CA", key_type="rsa", now=NOW)
    server = make_server_cert(ca, "s", hosts=["localhost"], key_type="rsa", now=NOW)
    assert isinstance(server.certificate.public_key(), rsa.RSAPublicKey)
    usage = server.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    server.certificate.verify_directly_issued_by(ca.certificate)


def test_leaf_never_outlives_its_ca() -> None:
    ca = make_ca("short CA", valid_days=10, now=NOW)
    client = make_client_cert(ca, "c", valid_days=365, now=NOW)
    assert client.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_expired_ca_cannot_sign(ca: CertKeyPair) -> None:
    with pytest.raises(CertificateError, match="expired"):
        make_client_cert(ca, "c", now=NOW + datetime.timedelta(days=CA_VALID_DAYS + 30))


@pytest.mark.parametrize(
    ("hosts", "message"),
    [([], "at least one host"), ("localhost", "single string"), ([" "], "empty host")],
)
def test_bad_hosts_are_refused(ca: CertKeyPair, hosts: list[str] | str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        make_server_cert(ca, "s", hosts=hosts)


def test_a_leaf_is_not_a_ca(ca: CertKeyPair) -> None:
    client = make_client_cert(ca, "c")
    with pytest.raises(CertificateError, match="not a CA"):
        make_client_cert(client, "c2")


def test_ca_key_must_match_ca_cert(ca: CertKeyPair) -> None:
    other = make_ca("other")
    with pytest.raises(CertificateError, match="does not match"):
        make_client_cert(CertKeyPair(ca.cert_pem, other.key_pem), "c")


def test_unknown_key_type_and_naive_time_are_refused() -> None:
    with pytest.raises(CertificateError, match="key_type"):
        make_ca("x", key_type="dsa")  # type: ignore[arg-type]
    with pytest.raises(CertificateError, match="timezone"):
        make_ca("x", now=datetime.datetime(2025, 1, 1))  # naive on purpose


def test_repr_does_not_leak_the_key(ca: CertKeyPair) -> None:
    assert b"PRIVATE KEY" in ca.key_pem
    assert "PRIVATE" not in repr(ca) and "redacted" in repr(ca)


def test_write_pair_modes_and_round_trip(ca: CertKeyPair, tmp_path: Path) -> None:
    pair = make_client_cert(ca, "c")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    # An existing key file with loose permissions is replaced, not rewritten in place.
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)

    write_pair(pair, cert_path, key_path)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem", "key.pem"]  # no temp files
    assert read_pair(cert_path, key_path) == pair


def test_write_pair_refuses_one_path_for_both(ca: CertKeyPair, tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="same file"):
        write_pair(ca, tmp_path / "both.pem", tmp_path / "both.pem")


def test_read_pair_names_the_file_at_fault(ca: CertKeyPair, tmp_path: Path) -> None:
    other = make_ca("other")
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "ca-key.pem"
    write_pair(CertKeyPair(ca.cert_pem, other.key_pem), cert_path, key_path)
    with pytest.raises(TlsConfigError, match="does not match") as info:
        read_pair(cert_path, key_path)
    assert info.value.path == str(key_path)

    with pytest.raises(TlsConfigError, match="not found") as info:
        read_pair(tmp_path / "missing.pem", key_path)
    assert info.value.path == str(tmp_path / "missing.pem")

    (tmp_path / "garbage.pem").write_bytes(b"hello\n")
    with pytest.raises(TlsConfigError, match="no valid PEM certificate"):
        read_pair(tmp_path / "garbage.pem", key_path)
