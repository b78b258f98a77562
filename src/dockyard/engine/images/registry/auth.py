"""Registry authentication values: credentials, challenges, scopes and token requests.

Role: everything about Docker registry auth that needs no network — decoding the
`X-Registry-Auth` header and `POST /auth` bodies into an `AuthConfig`, parsing
`WWW-Authenticate` challenges as docker/distribution's `challenge` package does, naming
token scopes (`repository:team/app:pull,push`) and building the token request a bearer
challenge asks for (distribution's token spec, `GET realm?service=…&scope=…&account=…`).

Invariants:
- Decoding never raises on a header a client may legitimately send: dockerd treats an
  undecodable `X-Registry-Auth` as anonymous (moby api/server/router/image, "to increase
  compatibility with the existing api it is defaulting to be empty").
- Secrets never appear in `repr` (a log line or a test failure must not leak a password).

This module is PURE: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = [
    "AuthConfig",
    "Challenge",
    "Scope",
    "decode_registry_auth",
    "parse_auth_body",
    "parse_challenges",
    "token_request_url",
]


@dataclass(frozen=True)
class AuthConfig:
    """Docker's `types.AuthConfig` (api/types/auth.go), snake_case inside."""

    username: str = ""
    password: str = field(default="", repr=False)
    email: str = ""
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> AuthConfig:
        """Read Docker's JSON (`username`, `password`, `auth`, `serveraddress`, …).

        `auth` is base64("user:password") as config.json stores it; the CLI sends the
        split fields, but other clients send `auth` alone, which dockerd accepts too.
        """

        def text(key: str) -> str:
            item = value.get(key)
            return item if isinstance(item, str) else ""

        username, password = text("username"), text("password")
        encoded = text("auth")
        if encoded and not username and not password:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            username, _, password = decoded.partition(":")
        return cls(
            username=username,
            password=password,
            email=text("email"),
            server_address=text("serveraddress"),
            identity_token=text("identitytoken"),
            registry_token=text("registrytoken"),
        )


def _b64url_decode(text: str) -> bytes:
    # The CLI sends base64url with padding (Go's URLEncoding); docker-py too, but some
    # clients strip the padding or use the standard alphabet: accept all of them.
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def decode_registry_auth(header: str) -> AuthConfig:
    """The `X-Registry-Auth` header (base64url JSON of an AuthConfig); anonymous if
    absent or undecodable, as dockerd's image routes treat it."""
    if not header.strip():
        return AuthConfig()
    try:
        value = json.loads(_b64url_decode(header))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return AuthConfig()
    if not isinstance(value, dict):
        return AuthConfig()
    return AuthConfig.from_wire(value)


def parse_auth_body(body: bytes) -> AuthConfig:
    """The JSON body of `POST /auth`; ValueError (a 400) if it is not an object."""
    value = json.loads(body or b"{}")
    if not isinstance(value, dict):
        raise ValueError("json: cannot unmarshal into Go value of type types.AuthConfig")
    return AuthConfig.from_wire(value)


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: a scheme (lower-case) and its parameters."""

    scheme: str
    parameters: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.parameters:
            if key == name:
                return value
        return default


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] in _TOKEN_CHARS:
        i += 1
    return text[start:i], i


def _quoted(text: str, i: int) -> tuple[str, int] | None:
    """An RFC 7230 quoted-string at `i` (which is the opening quote), unescaped."""
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < len(text):
            i += 1
            ch = text[i]
        out.append(ch)
        i += 1
    return None


def _parse_one(header: str) -> list[Challenge]:
    # docker/distribution registry/client/auth/challenge parseValueAndParams, extended to
    # several comma-separated challenges in one header (RFC 7235 §4.1).
    challenges: list[Challenge] = []
    i = 0
    while True:
        i = _skip_space(header, i)
        scheme, i = _token(header, i)
        if not scheme:
            return challenges
        params: list[tuple[str, str]] = []
        while True:
            i = _skip_space(header, i)
            save = i
            key, i = _token(header, i)
            i = _skip_space(header, i)
            if not key or i >= len(header) or header[i] != "=":
                i = save  # the next challenge's scheme (or the end)
                break
            i = _skip_space(header, i + 1)
            if i < len(header) and header[i] == '"':
                parsed = _quoted(header, i)
                if parsed is None:
                    return challenges  # unterminated: distribution drops the rest
                value, i = parsed
            else:
                value, i = _token(header, i)
            params.append((key.lower(), value))
            i = _skip_space(header, i)
            if i < len(header) and header[i] == ",":
                i += 1
        challenges.append(Challenge(scheme.lower(), tuple(params)))
        i = _skip_space(header, i)
        if i < len(header) and header[i] == ",":
            i += 1


def parse_challenges(headers: Iterable[str]) -> tuple[Challenge, ...]:
    """Every challenge of every `WWW-Authenticate` header, in order."""
    return tuple(c for header in headers for c in _parse_one(header))


@dataclass(frozen=True)
class Scope:
    """A token scope on one repository (distribution docs/spec/auth/scope.md)."""

    repository: str  # the path in the registry, e.g. "team/app" (no host)
    actions: tuple[str, ...] = ("pull",)

    def __str__(self) -> str:
        return f"repository:{self.repository}:{','.join(self.actions)}"


def token_request_url(challenge: Challenge, scopes: Sequence[Scope], auth: AuthConfig) -> str:
    """The URL of the token request a bearer challenge asks for (GET, token spec).

    `service` comes from the challenge; each scope is its own `scope` parameter; `account`
    names the user when there is one, as docker/distribution's token handler sends it.
    """
    realm = challenge.get("realm")
    if not realm:
        raise ValueError("bearer challenge without a realm")
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"invalid token realm: {realm!r}")
    query: list[tuple[str, str]] = []
    if service := challenge.get("service"):
        query.append(("service", service))
    query.extend(("scope", str(scope)) for scope in scopes)
    if auth.username:
        query.append(("account", auth.username))
    # The realm's own query, if any, is kept as it was sent (already encoded).
    encoded = "&".join(q for q in (parts.query, urlencode(query)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, encoded, ""))
