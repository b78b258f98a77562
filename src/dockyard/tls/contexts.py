"""Build `ssl.SSLContext`s for our servers and clients from certificate files.

Server semantics are etcd 3.4's (`--cert-file --key-file --trusted-ca-file --client-cert-auth`),
which dockerd's `--tlsverify --tlscacert --tlscert --tlskey` share:
- A trusted CA file ALONE already requires and verifies client certificates. etcd's transport
  (`pkg/transport/listener.go`, `TLSInfo.ServerConfig`) sets `RequireAndVerifyClientCert`
  whenever a CA file is given, whatever `--client-cert-auth` says (spec §13, verified).
- `client_cert_auth=True` without a CA file is refused: there would be nothing to verify
  client certificates against, and silently accepting everyone is the worst reading.
- TLS 1.2 is the minimum, as in etcd 3.4 and dockerd.

Every file is read and checked before OpenSSL sees it, so a missing, unreadable, malformed or
mismatched file raises `TlsConfigError` naming that file, not `ssl.SSLError: [SSL] PEM lib`.
This module reads files but never opens a socket.
"""

from __future__ import annotations

import ssl

from dockyard.tls._files import StrPath, load_ca_bundle, load_identity
from dockyard.tls.errors import TlsConfigError

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    trusted_ca_file: StrPath | None = None,
    client_cert_auth: bool = False,
) -> ssl.SSLContext:
    """A server context presenting `cert_file`; with a CA file, clients must present a cert
    that chains to it (and carries the clientAuth EKU, which OpenSSL checks)."""
    if client_cert_auth and trusted_ca_file is None:
        raise TlsConfigError(
            "client certificate authentication (--client-cert-auth) needs a trusted CA file "
            "(--trusted-ca-file) to verify client certificates against"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS_VERSION
    _load_identity(context, cert_file, key_file)
    if trusted_ca_file is not None:
        _load_trusted_cas(context, trusted_ca_file)
        # etcd 3.4: a CA file alone means RequireAndVerifyClientCert (see the module docstring).
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    *,
    ca_file: StrPath | None = None,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context.

    `verify=True` checks the server's chain (against `ca_file`, or the system's CAs when it is
    None) and its host name. `verify=False` checks nothing and ignores `ca_file`, like the docker
    CLI's `--tls` without `--tlsverify`. `cert_file` (with `key_file`, or with the key in the
    same file) is the client identity; a key file without a cert file is an error.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MINIMUM_TLS_VERSION
    if verify:
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if ca_file is not None:
            _load_trusted_cas(context, ca_file, what="CA file")
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        # check_hostname must be off before verify_mode may drop to CERT_NONE.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        _load_identity(context, cert_file, key_file)
    elif key_file is not None:
        raise TlsConfigError("a client key file was given without its certificate file", key_file)
    return context


def _load_identity(context: ssl.SSLContext, cert_file: StrPath, key_file: StrPath | None) -> None:
    load_identity(cert_file, key_file)  # raises a TlsConfigError that names the file
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as e:
        # Checked above, so only a file changed underfoot or a key OpenSSL refuses lands here.
        raise TlsConfigError(f"OpenSSL cannot load the certificate and key: {e}", cert_file) from e


def _load_trusted_cas(
    context: ssl.SSLContext, ca_file: StrPath, what: str = "trusted CA file"
) -> None:
    load_ca_bundle(ca_file, what)
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"OpenSSL cannot load the {what}: {e}", ca_file) from e
