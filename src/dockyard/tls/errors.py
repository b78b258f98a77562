"""The TLS component's exception tree.

`TlsError` is the root. `TlsConfigError` means "the files you pointed me at cannot be used"
and always names the file (or the flag combination) at fault, so a CLI can print it as is
instead of an OpenSSL traceback. `CertificateError` means a generator was given bad values
(an empty host list, a CA pair that is not a CA); it is also a `ValueError`. Pure: no I/O.
"""

from __future__ import annotations

import os


class TlsError(Exception):
    """Root of every error raised by `dockyard.tls`."""


class TlsConfigError(TlsError):
    """A certificate, key or CA file is missing, unreadable, malformed or mismatched.

    `path` is the offending file, or None when the fault is a combination of options (such as
    client-cert-auth without a trusted CA file). `str()` starts with the path when there is one.
    """

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class CertificateError(TlsError, ValueError):
    """A certificate could not be generated from the values given."""
