"""Docker Engine API versioning: path prefixes, negotiation bounds and dockerd's errors.

Role: decide which API version a request speaks and refuse the ones dockerd refuses, with
dockerd's exact messages (the CLI and SDKs show them to users and some match on them).
Rules, as measured against dockerd and read in moby's `api/server/middleware/version.go`
(see ../shared/specs/docker-api/api-surface.md §2 and §14):
- every path may carry a `/v<major>.<minor>` prefix; an unversioned path speaks the server's
  own (maximum) version;
- versions from MIN_API_VERSION to API_VERSION are accepted; a newer one gets 400
  `client version X is too new. Maximum supported API version is Y`; an older one 400
  `client version X is too old. Minimum supported API version is Y, please upgrade your
  client to a newer version`;
- a malformed prefix (`/vfoo/...`) is not a version: the path is then unknown (404).
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


@total_ordering
@dataclass(frozen=True, slots=True)
class ApiVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        major, dot, minor = text.partition(".")
        if not dot or not major.isdigit() or not minor.isdigit():
            raise ValueError(f"invalid API version {text!r}")
        return cls(int(major), int(minor))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ApiVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


# 1.44 is the oldest version current clients accept (docker SDK 7.x, CLI 29); the docker
# 28 CLI on this machine negotiates down to whatever the server advertises.
API_VERSION = ApiVersion(1, 44)
MIN_API_VERSION = ApiVersion(1, 24)


class ApiVersionError(Exception):
    """A request for a version this server does not speak (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class VersionedPath:
    version: ApiVersion
    path: str  # the path without its version prefix, e.g. "/containers/json"
    explicit: bool  # the client named the version in the path


def split_version(
    path: str, *, current: ApiVersion = API_VERSION, minimum: ApiVersion = MIN_API_VERSION
) -> VersionedPath:
    """The version a request speaks and its path; raises ApiVersionError as dockerd does."""
    match = _PREFIX.match(path)
    if match is None:
        return VersionedPath(current, path, False)
    version = ApiVersion(int(match.group(1)), int(match.group(2)))
    if version > current:
        raise ApiVersionError(
            f"client version {version} is too new. Maximum supported API version is {current}"
        )
    if version < minimum:
        raise ApiVersionError(
            f"client version {version} is too old. Minimum supported API version is "
            f"{minimum}, please upgrade your client to a newer version"
        )
    return VersionedPath(version, match.group(3), True)


def ping_headers(current: ApiVersion = API_VERSION) -> tuple[tuple[str, str], ...]:
    """What dockerd sends on every answer, and what `/_ping` exists for: the CLI negotiates
    from `Api-Version` alone."""
    return (("Api-Version", str(current)), ("Docker-Experimental", "false"), ("Ostype", "linux"))
