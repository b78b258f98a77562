"""The registry component's exception tree; messages are Docker's, statuses are mapped at
the API boundary (not found 404, unauthorized 401 for login, the rest 500).

This module is PURE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ErrorEntry",
    "RegistryError",
    "RegistryNotFound",
    "RegistryResponseError",
    "RegistryUnauthorized",
    "RegistryUnreachable",
    "format_error_entries",
]


class RegistryError(Exception):
    """Base of every registry error; `str()` is the message Docker shows."""


class RegistryUnreachable(RegistryError):
    """The endpoint could not be talked to (dial, TLS, not HTTP): the next one is tried."""


class RegistryUnauthorized(RegistryError):
    """Credentials were missing or refused (`docker login` answers 401).

    `reason` is the message without the request it failed (Go's `url.Error.Err`): moby's
    push reports auth failures of layer uploads that way (distribution retryOnError).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class RegistryNotFound(RegistryError):
    """A repository, tag or blob the registry does not have (404 at the API)."""


@dataclass(frozen=True)
class ErrorEntry:
    """One entry of a registry's `{"errors": [...]}` body (distribution errcode)."""

    code: str
    message: str

    def __str__(self) -> str:
        # errcode.Error.Error(): the code in lower case with spaces, then the message.
        return f"{self.code.lower().replace('_', ' ')}: {self.message}"


def format_error_entries(entries: Sequence[ErrorEntry]) -> str:
    """errcode.Errors.Error(): one error as itself, several listed."""
    if len(entries) == 1:
        return str(entries[0])
    return "errors:\n" + "".join(f"{entry}\n" for entry in entries)


class RegistryResponseError(RegistryError):
    """A registry answered with an error status (and maybe an errcode body)."""

    def __init__(self, status: int, entries: Sequence[ErrorEntry], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.entries = tuple(entries)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(entry.code for entry in self.entries)
