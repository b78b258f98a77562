"""Reading and checking PEM certificate, key and CA files (private to `dockyard.tls`).

Every failure becomes a `TlsConfigError` that names the file and says what is wrong with it in
words ("not found", "contains no PEM certificate", "does not match the certificate"), because
OpenSSL's own errors (`[SSL] PEM lib`, `KEY_VALUES_MISMATCH`) name neither. The parsing
helpers are pure; only `read_pem_file` touches the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from dockyard.tls.errors import TlsConfigError

StrPath = str | os.PathLike[str]

# A PEM bundle of thousands of CAs (a system trust store) is a few hundred KiB; anything far
# bigger is a wrong path, not a certificate. Put a limit on everything.
MAX_PEM_FILE_BYTES = 16 * 1024 * 1024


def read_pem_file(path: StrPath, what: str) -> bytes:
    """Read a whole PEM file; `what` ("certificate file", "key file", ...) goes into errors."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_PEM_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TlsConfigError(f"{what} not found", p) from None
    except IsADirectoryError:
        raise TlsConfigError(f"{what} is a directory, not a file", p) from None
    except PermissionError:
        raise TlsConfigError(f"{what} is not readable (permission denied)", p) from None
    except OSError as e:
        raise TlsConfigError(f"{what} cannot be read: {e.strerror or e}", p) from None
    if len(data) > MAX_PEM_FILE_BYTES:
        raise TlsConfigError(f"{what} is larger than {MAX_PEM_FILE_BYTES} bytes", p)
    if not data.strip():
        raise TlsConfigError(f"{what} is empty", p)
    return data


def parse_certificates(data: bytes, path: StrPath, what: str) -> list[x509.Certificate]:
    """All certificates in a PEM blob, leaf first; other PEM blocks (a key) are skipped."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsConfigError(f"{what} contains no valid PEM certificate", path) from None
    if not certs:  # cryptography raises rather than returning [], but do not rely on it
        raise TlsConfigError(f"{what} contains no valid PEM certificate", path)
    return certs


def parse_private_key(data: bytes, path: StrPath, what: str) -> PrivateKeyTypes:
    """The first private key in a PEM blob (PKCS#8, PKCS#1 or SEC1), which must be unencrypted."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying "this key is encrypted and no password was given".
        # etcd and dockerd cannot prompt for a passphrase either.
        raise TlsConfigError(
            f"{what} holds an encrypted private key; use an unencrypted key", path
        ) from None
    except ValueError:
        raise TlsConfigError(f"{what} contains no valid PEM private key", path) from None
    except UnsupportedAlgorithm as e:
        raise TlsConfigError(f"{what} holds an unsupported private key: {e}", path) from None


def public_key_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key or a certificate, for comparisons."""
    public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_matches(
    cert: x509.Certificate, key: PrivateKeyTypes, cert_path: StrPath, key_path: StrPath
) -> None:
    """Fail unless `key` is the private half of the (leaf) certificate's public key."""
    if public_key_der(cert) != public_key_der(key):
        if Path(cert_path) == Path(key_path):
            reason = "the private key does not match the certificate in the same file"
        else:
            reason = f"the private key does not match the certificate in {cert_path}"
        raise TlsConfigError(reason, key_path)


def load_identity(
    cert_path: StrPath, key_path: StrPath | None
) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    """Read and check a certificate chain and its key; `key_path=None` means "in the cert file"."""
    cert_data = read_pem_file(cert_path, "certificate file")
    certs = parse_certificates(cert_data, cert_path, "certificate file")
    if key_path is None:
        key_path = cert_path
        key = parse_private_key(cert_data, cert_path, "certificate file (no key file was given)")
    else:
        key = parse_private_key(read_pem_file(key_path, "key file"), key_path, "key file")
    check_key_matches(certs[0], key, cert_path, key_path)
    return certs, key


def load_ca_bundle(path: StrPath, what: str = "trusted CA file") -> list[x509.Certificate]:
    """Read and check a CA bundle: it must hold at least one PEM certificate."""
    return parse_certificates(read_pem_file(path, what), path, what)
