"""The store's exception tree, carrying etcd v2 error codes.

Codes, messages and HTTP statuses are etcd 3.4's (`etcdserver/api/v2error/error.go`). The
HTTP status is a property of the code; only the boundary (`http_v2`) turns an error into a
response. Pure: no I/O.
"""

from __future__ import annotations

MESSAGES: dict[int, str] = {
    100: "Key not found",
    101: "Compare failed",
    102: "Not a file",
    104: "Not a directory",
    105: "Key already exists",
    107: "Root is read only",
    108: "Directory not empty",
    110: "The request requires user authentication",
    201: "PrevValue is Required in POST form",
    202: "The given TTL in POST form is not a number",
    203: "The given index in POST form is not a number",
    209: "Invalid field",
    210: "Invalid POST form",
    211: "Value provided on refresh",
    212: "A TTL must be provided on refresh",
    300: "Raft Internal Error",
    401: "The event in requested index is outdated and cleared",
}

# etcd 3.4: 404 for 100; 412 for 101 and 105; 403 for 102 and 108; 401 for 110;
# 500 for 300 and 301; 400 for everything else (104, 107 and 401 included).
_HTTP_STATUS: dict[int, int] = {
    100: 404,
    101: 412,
    105: 412,
    102: 403,
    108: 403,
    110: 401,
    300: 500,
}


class StoreError(Exception):
    """An etcd v2 error: code, cause and the store index at the time it happened."""

    code: int = 0

    def __init__(self, cause: str = "", index: int = 0, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(f"{self.code} {MESSAGES.get(self.code, '')}: {cause}")
        self.cause = cause
        self.index = index

    @property
    def message(self) -> str:
        return MESSAGES.get(self.code, "")

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 400)

    def with_index(self, index: int) -> StoreError:
        return type(self)(self.cause, index, self.code)


class KeyNotFound(StoreError):
    code = 100


class CompareFailed(StoreError):
    code = 101


class NotAFile(StoreError):
    code = 102


class NotADirectory(StoreError):
    code = 104


class KeyAlreadyExists(StoreError):
    code = 105


class RootReadOnly(StoreError):
    code = 107


class DirectoryNotEmpty(StoreError):
    code = 108


class Unauthorized(StoreError):
    code = 110


class RequestError(StoreError):
    """Errors found while parsing a request (2xx codes); they never touch the store (index 0)."""


class HistoryCleared(StoreError):
    code = 401


class RaftInternalError(StoreError):
    code = 300


class MembershipError(Exception):
    """A /v2/members change refused, with etcd's HTTP status and message (not a keys-API
    error: the members API answers `{"message": ...}`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
