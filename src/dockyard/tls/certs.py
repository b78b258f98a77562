"""Generate a private CA and the server and client certificates it signs.

This is what `dockyard machine` does on create (as docker-machine does: one CA, a server cert
per machine, one client cert) and what tests use to run etcd and our servers over TLS.

Rules:
- Generation is pure: every `make_*` takes values and returns a `CertKeyPair` of PEM bytes.
  Only `write_pair` (and `read_pair`) touch the file system.
- Defaults: ECDSA P-256 keys, SHA-256 signatures, PKCS#8 unencrypted PEM keys (Go, OpenSSL and
  Python all read them). `key_type="rsa"` gives RSA-2048, docker-machine's choice, for peers that
  cannot do ECDSA.
- Validity: the CA lives `CA_VALID_DAYS` (3 years, like docker-machine's 1080 days), leaves
  `LEAF_VALID_DAYS` (1 year): a leaf is cheap to reissue from the CA, a CA is not. A leaf never
  outlives its CA: its end is clamped to the CA's. `not_before` is backdated by
  `CLOCK_SKEW_ALLOWANCE`, because a freshly created VM's clock is often behind its host's.
- Every certificate is acceptable to OpenSSL's strict X.509 checks (`VERIFY_X509_STRICT`, the
  default in Python ≥ 3.13) and to Go: CAs carry critical BasicConstraints and KeyUsage and a
  SubjectKeyIdentifier, leaves an AuthorityKeyIdentifier, server certs their names as SANs (Go
  ignores the CN since 1.15), and each leaf its extended key usage (serverAuth or clientAuth,
  which both OpenSSL and Go check).
- Key files are written with mode 0600 and never exist, even briefly, with wider permissions;
  both files are replaced atomically (temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.tls._files import (
    StrPath,
    check_key_matches,
    parse_certificates,
    parse_private_key,
    public_key_der,
    read_pem_file,
)
from dockyard.tls.errors import CertificateError

KeyType = Literal["ec", "rsa"]

CA_VALID_DAYS = 3 * 365
LEAF_VALID_DAYS = 365
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
RSA_KEY_BITS = 2048  # docker-machine's size; NIST-acceptable through 2030
KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertKeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        # Never print a private key into a log or a test failure.
        return f"CertKeyPair(cert_pem=<{len(self.cert_pem)} bytes>, key_pem=<redacted>)"

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed (first) certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)


def make_ca(
    common_name: str,
    *,
    valid_days: int = CA_VALID_DAYS,
    key_type: KeyType = "ec",
    organization: str | None = None,
    now: datetime.datetime | None = None,
) -> CertKeyPair:
    """A self-signed CA that may sign leaves but not intermediate CAs (path length 0)."""
    key = _generate_key(key_type)
    name = _name(common_name, organization)
    not_before, not_after = _validity(now, valid_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _pair(cert, key)


def make_server_cert(
    ca: CertKeyPair,
    common_name: str,
    *,
    hosts: Sequence[str],
    valid_days: int = LEAF_VALID_DAYS,
    key_type: KeyType = "ec",
    client_auth: bool = False,
    organization: str | None = None,
    now: datetime.datetime | None = None,
) -> CertKeyPair:
    """A serverAuth certificate for `hosts` (IP literals become IP SANs, the rest DNS SANs).

    `client_auth=True` adds the clientAuth EKU too. etcd needs that when the same cert is also
    its client identity: for peer TLS, and for its gRPC gateway, which dials its own client
    port with the server cert when client certs are required.
    """
    sans = _subject_alt_names(hosts)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return _make_leaf(ca, common_name, organization, key_type, valid_days, now, usages, sans)


def make_client_cert(
    ca: CertKeyPair,
    common_name: str,
    *,
    valid_days: int = LEAF_VALID_DAYS,
    key_type: KeyType = "ec",
    organization: str | None = None,
    now: datetime.datetime | None = None,
) -> CertKeyPair:
    """A clientAuth certificate; the CN is the client's identity (etcd's RBAC uses it)."""
    return _make_leaf(
        ca,
        common_name,
        organization,
        key_type,
        valid_days,
        now,
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        None,
    )


def write_pair(pair: CertKeyPair, cert_path: StrPath, key_path: StrPath) -> None:
    """Write the certificate (mode 0644) and key (mode 0600), each atomically.

    The parent directories must exist. The key is written first, so a reader that sees the new
    certificate also finds its key.
    """
    if Path(cert_path).absolute() == Path(key_path).absolute():
        raise CertificateError(f"cert_path and key_path are the same file: {cert_path}")
    _write_atomically(Path(key_path), pair.key_pem, KEY_FILE_MODE)
    _write_atomically(Path(cert_path), pair.cert_pem, CERT_FILE_MODE)


def read_pair(cert_path: StrPath, key_path: StrPath) -> CertKeyPair:
    """Read a pair written by `write_pair` (or by openssl), checking that the key matches.

    Raises `TlsConfigError` naming the file at fault.
    """
    cert_pem = read_pem_file(cert_path, "certificate file")
    key_pem = read_pem_file(key_path, "key file")
    certs = parse_certificates(cert_pem, cert_path, "certificate file")
    key = parse_private_key(key_pem, key_path, "key file")
    check_key_matches(certs[0], key, cert_path, key_path)
    return CertKeyPair(cert_pem=cert_pem, key_pem=key_pem)


# --- helpers ---------------------------------------------------------------------------------


def _make_leaf(
    ca: CertKeyPair,
    common_name: str,
    organization: str | None,
    key_type: KeyType,
    valid_days: int,
    now: datetime.datetime | None,
    usages: list[x509.ObjectIdentifier],
    sans: x509.SubjectAlternativeName | None,
) -> CertKeyPair:
    ca_cert, ca_key = _load_ca(ca)
    key = _generate_key(key_type)
    not_before, not_after = _validity(now, valid_days)
    # A leaf that outlives its CA would look valid on its own yet fail in every chain.
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    if not_after <= not_before:
        raise CertificateError("the CA has expired (or expires before the leaf would start)")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key: keyEncipherment.
            _key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca_cert, ca_key), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return _pair(builder.sign(ca_key, hashes.SHA256()), key)


def _load_ca(ca: CertKeyPair) -> tuple[x509.Certificate, _PrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"the CA pair cannot be parsed: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"the CA key must be EC or RSA, not {type(key).__name__}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateError(f"{cert.subject.rfc4514_string()} is not a CA certificate")
    if public_key_der(cert) != public_key_der(key):
        raise CertificateError("the CA key does not match the CA certificate")
    return cert, key


def _authority_key_identifier(
    ca_cert: x509.Certificate, ca_key: _PrivateKey
) -> x509.AuthorityKeyIdentifier:
    # Chain building matches AKI to the issuer's SKI byte for byte, so copy it when present.
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _generate_key(key_type: KeyType) -> _PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise CertificateError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def _name(common_name: str, organization: str | None) -> x509.Name:
    if not common_name:
        raise CertificateError("common_name must not be empty")
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _validity(
    now: datetime.datetime | None, valid_days: int
) -> tuple[datetime.datetime, datetime.datetime]:
    if valid_days < 1:
        raise CertificateError(f"valid_days must be at least 1, not {valid_days}")
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    elif now.tzinfo is None:
        raise CertificateError("now must be timezone-aware (UTC)")
    # X.509 times have a one-second resolution; dropping microseconds keeps equality tests exact.
    now = now.astimezone(datetime.UTC).replace(microsecond=0)
    return now - CLOCK_SKEW_ALLOWANCE, now + datetime.timedelta(days=valid_days)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    if isinstance(hosts, str):
        # A bare string is a Sequence[str] of characters: almost certainly a mistake.
        raise CertificateError("hosts must be a sequence of names, not a single string")
    names: list[x509.GeneralName] = []
    for raw in hosts:
        host = raw.strip()
        if host.startswith("[") and host.endswith("]"):  # "[::1]" as written in URLs
            host = host[1:-1]
        if not host:
            raise CertificateError(f"empty host name in hosts: {list(hosts)!r}")
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(_dns_name(host))
        if name not in names:
            names.append(name)
    if not names:
        raise CertificateError("a server certificate needs at least one host (IP or DNS name)")
    return x509.SubjectAlternativeName(names)


def _dns_name(host: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii")  # SANs hold A-labels (RFC 5280 §4.2.1.6)
    except UnicodeError:
        raise CertificateError(f"{host!r} is neither an IP address nor a valid DNS name") from None


def _pair(cert: x509.Certificate, key: _PrivateKey) -> CertKeyPair:
    return CertKeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file 0600 in the target directory (same file system, so the rename
    # is atomic); fchmod then sets the exact mode whatever the umask.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # The rename is durable only once the directory entry is.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
