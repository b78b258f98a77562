"""The `/v2/auth/*` HTTP boundary, and basic-auth helpers for the rest of the v2 API.

Role: turn requests into reads of `AuthState` or into log commands proposed through an
`AuthContext`, and turn the results (or `AuthError`s) into the exact responses of etcd 3.4.23
(`etcdserver/api/v2http/client_auth.go`), as recorded in
`tests/e2e/store/fixtures/etcd_auth_transcript.json`.

Rules, all measured against etcd 3.4.23:
- Order of checks: route, then method (405 text/plain with `Allow`), then root access (401
  `{"message":"Insufficient credentials"}`, no cluster-id header), then the handler, which sets
  `X-Etcd-Cluster-Id` and `Content-Type: application/json` on everything after that point.
- Only root may use the auth API while auth is enabled (anyone while disabled); GET of
  `/v2/auth/enable` is open to all.
- Bodies are decoded as Go's `json.Decoder` does: field names case-insensitive, the first JSON
  value only (trailing bytes ignored), any type mismatch is "Invalid JSON in request body.".
  **Content-Type is not checked** (contrary to the old spec §12 note).
- Success bodies are written by Go's `json.Encoder` (trailing newline, `<>&` escaped as
  `\\u003c`...); error bodies by `json.Marshal` (no trailing newline).
- Passwords are hashed here, before proposing, with a fresh random salt, in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import posixpath
import re
import secrets
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from dockyard.http.types import Request, Response
from dockyard.store.auth import (
    AuthApplied,
    AuthError,
    AuthState,
    CreateOrUpdateUser,
    CreateRole,
    CreateUser,
    DeleteRole,
    DeleteUser,
    DisableAuth,
    EnableAuth,
    Permissions,
    Role,
    UpdateRole,
    UpdateUser,
    User,
    hash_password,
)
from dockyard.store.v2json import go_json

AUTH_PREFIX = "/v2/auth"
_SALT_BYTES = 16
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


class AuthContext(Protocol):
    """What `handle_auth` needs from the server."""

    @property
    def auth(self) -> AuthState:
        """The applied auth state (read only: change it through `propose`)."""
        ...

    @property
    def cluster_id_hex(self) -> str:
        """Lower-case hex, not zero-padded, as etcd's X-Etcd-Cluster-Id."""
        ...

    async def propose(self, command: object) -> object:
        """Append to the log, await apply; return `AuthState.apply`'s result or raise its error."""
        ...


# --- Go encoding/json --------------------------------------------------------------------


class _BadJSON(Exception):
    """The body does not decode into etcd's struct."""


def _decode_first_value(body: bytes) -> Any:
    # Go's json.Decoder.Decode reads one value; whatever follows it is never looked at.
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))

    def reject_constant(name: str) -> Any:
        raise _BadJSON(name)  # NaN / Infinity are not JSON to Go

    try:
        value, _end = json.JSONDecoder(parse_constant=reject_constant).raw_decode(text, start)
    except (ValueError, RecursionError) as e:
        raise _BadJSON(str(e)) from None
    return value


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Go struct decoding: keys match field names case-insensitively; the last key wins."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise _BadJSON("not an object")
    wanted = {n.casefold(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = wanted.get(key.casefold())
        if name is not None:
            out[name] = value
    return out


def _go_str(value: Any) -> str | None:
    if value is None:
        return None  # null leaves a Go string untouched
    if not isinstance(value, str):
        raise _BadJSON("not a string")
    return value


def _go_str_list(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _BadJSON("not an array")
    return tuple("" if v is None else _go_str(v) or "" for v in value)


def _go_perms(value: Any) -> Permissions | None:
    """A Go `*Permissions`: None for absent or null, else the decoded kv pair."""
    if value is None:
        return None
    kv = _fields(_fields(value, ("kv",)).get("kv"), ("read", "write"))
    return Permissions(_go_str_list(kv.get("read")), _go_str_list(kv.get("write")))


# --- responses ---------------------------------------------------------------------------


def _message(status: int, message: str, cluster_id: str | None = None) -> Response:
    headers = (("X-Etcd-Cluster-Id", cluster_id),) if cluster_id is not None else ()
    body = go_json({"message": message}).encode()
    return Response(status, body, _JSON, headers)


def _not_allowed(allowed: tuple[str, ...]) -> Response:
    return Response(
        405,
        b"Method Not Allowed\n",
        _TEXT,
        (("Allow", ",".join(allowed)), ("X-Content-Type-Options", "nosniff")),
    )


def _not_found_page() -> Response:
    return Response(404, b"404 page not found\n", _TEXT, (("X-Content-Type-Options", "nosniff"),))


def _no_auth() -> Response:
    return _message(401, "Insufficient credentials")


def _encoded(status: int, value: Any, cluster_id: str) -> Response:
    body = (go_json(value) + "\n").encode()  # json.Encoder appends a newline
    return Response(status, body, _JSON, (("X-Etcd-Cluster-Id", cluster_id),))


def _role_json(role: Role) -> dict[str, Any]:
    def perms(p: Permissions) -> dict[str, Any]:
        return {"kv": {"read": p.read, "write": p.write}}

    out: dict[str, Any] = {"role": role.name, "permissions": perms(role.permissions)}
    if role.grant is not None:
        out["grant"] = perms(role.grant)
    if role.revoke is not None:
        out["revoke"] = perms(role.revoke)
    return out


def _user_out_json(user: User) -> dict[str, Any]:
    # auth.User with the password cleared: "roles" has no omitempty, so nil shows as null.
    return {"user": user.name, "roles": user.roles}


# --- credentials ---------------------------------------------------------------------------


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    """Go's Request.BasicAuth: case-insensitive "Basic ", strict padded base64, split at ':'."""
    prefix = "basic "
    if len(header) < len(prefix) or header[: len(prefix)].lower() != prefix:
        return None
    encoded = header[len(prefix) :].replace("\r", "").replace("\n", "")  # Go skips CR/LF
    try:
        decoded = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    username, sep, password = decoded.decode("utf-8", errors="replace").partition(":")
    if not sep:
        return None
    return username, password


def _cert_common_name(peer_cert: Mapping[str, Any] | None) -> str | None:
    if not peer_cert:
        return None
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def basic_auth_user(
    request: Request, auth: AuthState, *, client_cert_auth: bool = False
) -> tuple[bool, str | None]:
    """Who is asking, for the keys API: `(ok, username)`.

    - auth disabled, or no Authorization header: `(True, None)`: anonymous, i.e. the guest
      role (or, with `client_cert_auth`, the user named by a verified client cert's CN);
    - a header that is not valid Basic credentials of an existing user: `(False, None)`;
      etcd does not fall back to guest then, the keys API answers 110;
    - valid credentials: `(True, username)`.
    Then check `auth.has_key_access(username, key, write=..., recursive=...)`.
    """
    if not auth.enabled:
        return True, None
    header = request.headers.get("authorization", "")
    if header == "":
        if client_cert_auth:
            cn = _cert_common_name(request.peer_cert)
            if cn is not None and auth.get_user(cn) is not None:
                return True, cn
        return True, None
    credentials = parse_basic_auth(header)
    if credentials is None:
        return False, None
    user = auth.authenticate(*credentials)
    return (True, user.name) if user is not None else (False, None)


def has_root_access(request: Request, auth: AuthState, *, client_cert_auth: bool = False) -> bool:
    """etcd's hasRootAccess: always true while auth is off, else the caller must be root.

    Also what guards POST/PUT/DELETE of `/v2/members` (etcd's hasWriteRootAccess).
    """
    if not auth.enabled:
        return True
    header = request.headers.get("authorization", "")
    if header == "" and client_cert_auth:
        name = _cert_common_name(request.peer_cert)
        return name is not None and auth.is_root(name)
    credentials = parse_basic_auth(header)
    if credentials is None:
        return False
    user = auth.authenticate(*credentials)
    return user is not None and auth.is_root(user)


def no_auth_response() -> Response:
    """etcd's writeNoAuth, for root-only endpoints such as POST/PUT/DELETE `/v2/members`:
    401 `{"message":"Insufficient credentials"}` with no trailing newline (json.Marshal)."""
    return _no_auth()


def keys_auth_key(request: Request) -> str:
    """The key etcd checks permissions on: the decoded path after `/v2/keys`, as sent.

    Not the normalized key: `/v2/keys` gives "" and `/v2/keys/pub/` gives "/pub/", which
    matters for patterns such as `/pub/*` (etcd 3.4: `r.URL.Path[len(keysPrefix):]`).
    """
    return unquote(request.raw_path, errors="replace")[len("/v2/keys") :]


# --- the handler ---------------------------------------------------------------------------


def _clean(path: str) -> str:
    # Go's path.Clean for a rooted path.
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


async def _hash(password: str) -> str | None:
    if password == "":
        return None
    salt = secrets.token_bytes(_SALT_BYTES)
    # PBKDF2 takes tens of milliseconds: keep it off the event loop.
    return await asyncio.to_thread(hash_password, password, salt)


async def handle_auth(
    request: Request, ctx: AuthContext, *, client_cert_auth: bool = False
) -> Response:
    """Serve any request whose decoded path starts with `/v2/auth`."""
    path = unquote(request.raw_path, errors="replace")
    method = request.method
    if path == f"{AUTH_PREFIX}/enable":
        return await _enable(request, ctx, client_cert_auth)
    for resource, base, single in (
        ("roles", _base_roles, _for_role),
        ("users", _base_users, _for_user),
    ):
        if path == f"{AUTH_PREFIX}/{resource}":
            return base(request, ctx, client_cert_auth)
        if path.startswith(f"{AUTH_PREFIX}/{resource}/"):
            pieces = _clean(path[len(AUTH_PREFIX) :]).split("/")
            if len(pieces) == 2:
                return base(request, ctx, client_cert_auth)
            if len(pieces) != 3:
                return _message(400, "Invalid path")
            if method not in ("GET", "PUT", "DELETE"):
                return _not_allowed(("GET", "PUT", "DELETE"))
            if not has_root_access(request, ctx.auth, client_cert_auth=client_cert_auth):
                return _no_auth()
            return await single(request, ctx, pieces[2])
    return _not_found_page()


def _read_guard(request: Request, ctx: AuthContext, client_cert_auth: bool) -> Response | None:
    if request.method != "GET":
        return _not_allowed(("GET",))
    if not has_root_access(request, ctx.auth, client_cert_auth=client_cert_auth):
        return _no_auth()
    return None


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _query_ok(request: Request) -> bool:
    # etcd calls r.ParseForm() here; Go's query parser rejects a bad %-escape (then a 500).
    return _BAD_ESCAPE.search(request.raw_query) is None


def _base_roles(request: Request, ctx: AuthContext, client_cert_auth: bool) -> Response:
    refused = _read_guard(request, ctx, client_cert_auth)
    if refused is not None:
        return refused
    if not _query_ok(request):
        return _message(500, "Internal Server Error", ctx.cluster_id_hex)
    auth = ctx.auth
    roles = [auth.get_role(name) for name in auth.role_names()]
    body = {"roles": [_role_json(r) for r in roles if r is not None]}
    return _encoded(200, body, ctx.cluster_id_hex)


def _base_users(request: Request, ctx: AuthContext, client_cert_auth: bool) -> Response:
    refused = _read_guard(request, ctx, client_cert_auth)
    if refused is not None:
        return refused
    if not _query_ok(request):
        return _message(500, "Internal Server Error", ctx.cluster_id_hex)
    auth = ctx.auth
    users: list[dict[str, Any]] = []
    for name in auth.user_names():
        entry: dict[str, Any] = {"user": name}
        roles = [auth.get_role(r) for r in auth.effective_roles(name)]
        found = [_role_json(r) for r in roles if r is not None]  # missing roles are skipped
        if found:
            entry["roles"] = found
        users.append(entry)
    return _encoded(200, {"users": users or None}, ctx.cluster_id_hex)


def _error(err: AuthError, cluster_id: str) -> Response:
    return _message(err.http_status, err.message, cluster_id)


async def _propose(ctx: AuthContext, command: object) -> AuthApplied:
    result = await ctx.propose(command)
    if not isinstance(result, AuthApplied):
        raise TypeError(f"propose returned {result!r} for {command!r}")
    return result


async def _for_user(request: Request, ctx: AuthContext, name: str) -> Response:
    cid = ctx.cluster_id_hex
    auth = ctx.auth
    if request.method == "GET":
        user = auth.get_user(name)
        if user is None:
            return _message(404, f"auth: User {name} does not exist.", cid)
        if not _query_ok(request):
            return _message(500, "Internal Server Error", cid)
        entry: dict[str, Any] = {"user": user.name}
        roles = []
        for role_name in user.roles or ():
            role = auth.get_role(role_name)
            if role is None:
                return _message(404, f"auth: Role {role_name} does not exist.", cid)
            roles.append(_role_json(role))
        if roles:
            entry["roles"] = roles
        return _encoded(200, entry, cid)
    if request.method == "DELETE":
        try:
            await _propose(ctx, DeleteUser(name))
        except AuthError as e:
            return _error(e, cid)
        return Response(200, b"", _JSON, (("X-Etcd-Cluster-Id", cid),))
    # PUT
    try:
        fields = _fields(
            _decode_first_value(request.body), ("user", "password", "roles", "grant", "revoke")
        )
        user_name = _go_str(fields.get("user")) or ""
        password = _go_str(fields.get("password")) or ""
        roles_in = _go_str_list(fields.get("roles"))
        grant = _go_str_list(fields.get("grant")) or ()
        revoke = _go_str_list(fields.get("revoke")) or ()
    except _BadJSON:
        return _message(400, "Invalid JSON in request body.", cid)
    if user_name != name:
        return _message(400, "User JSON name does not match the name in the URL", cid)
    command: object
    if not grant and not revoke:
        if roles_in:
            command = CreateUser(name, await _hash(password), roles_in)
        else:
            # etcd: with only a password it cannot tell a create from an update.
            command = CreateOrUpdateUser(name, await _hash(password))
    else:
        if roles_in:
            return _message(400, "User JSON contains both roles and grant/revoke", cid)
        command = UpdateUser(name, await _hash(password), grant, revoke)
    try:
        applied = await _propose(ctx, command)
    except AuthError as e:
        return _error(e, cid)
    if not isinstance(applied.value, User):
        raise TypeError(f"expected a user from {command!r}, got {applied.value!r}")
    return _encoded(201 if applied.created else 200, _user_out_json(applied.value), cid)


async def _for_role(request: Request, ctx: AuthContext, name: str) -> Response:
    cid = ctx.cluster_id_hex
    if request.method == "GET":
        role = ctx.auth.get_role(name)
        if role is None:
            return _message(404, f"auth: Role {name} does not exist.", cid)
        return _encoded(200, _role_json(role), cid)
    if request.method == "DELETE":
        try:
            await _propose(ctx, DeleteRole(name))
        except AuthError as e:
            return _error(e, cid)
        return Response(200, b"", _JSON, (("X-Etcd-Cluster-Id", cid),))
    # PUT
    try:
        fields = _fields(
            _decode_first_value(request.body), ("role", "permissions", "grant", "revoke")
        )
        role_name = _go_str(fields.get("role")) or ""
        permissions = _go_perms(fields.get("permissions")) or Permissions()
        grant = _go_perms(fields.get("grant"))
        revoke = _go_perms(fields.get("revoke"))
    except _BadJSON:
        return _message(400, "Invalid JSON in request body.", cid)
    if role_name != name:
        return _message(400, "Role JSON name does not match the name in the URL", cid)
    command: object
    if (grant is None or grant.is_empty()) and (revoke is None or revoke.is_empty()):
        command = CreateRole(
            name,
            permissions.read,
            permissions.write,
            grant is not None,
            grant.read if grant else None,
            grant.write if grant else None,
            revoke is not None,
            revoke.read if revoke else None,
            revoke.write if revoke else None,
        )
        status = 201
    else:
        if not permissions.is_empty():
            return _message(400, "Role JSON contains both permissions and grant/revoke", cid)
        command = UpdateRole(
            name,
            grant is not None,
            (grant.read or ()) if grant else (),
            (grant.write or ()) if grant else (),
            revoke is not None,
            (revoke.read or ()) if revoke else (),
            (revoke.write or ()) if revoke else (),
        )
        status = 200
    try:
        applied = await _propose(ctx, command)
    except AuthError as e:
        return _error(e, cid)
    if not isinstance(applied.value, Role):
        raise TypeError(f"expected a role from {command!r}, got {applied.value!r}")
    return _encoded(status, _role_json(applied.value), cid)


async def _enable(request: Request, ctx: AuthContext, client_cert_auth: bool) -> Response:
    method = request.method
    if method not in ("GET", "PUT", "DELETE"):
        return _not_allowed(("GET", "PUT", "DELETE"))
    # etcd's hasWriteRootAccess: reading the flag is open to everyone.
    if method != "GET" and not has_root_access(
        request, ctx.auth, client_cert_auth=client_cert_auth
    ):
        return _no_auth()
    cid = ctx.cluster_id_hex
    if method == "GET":
        return _encoded(200, {"enabled": ctx.auth.enabled}, cid)
    try:
        await _propose(ctx, EnableAuth() if method == "PUT" else DisableAuth())
    except AuthError as e:
        return _error(e, cid)
    return Response(200, b"", _JSON, (("X-Etcd-Cluster-Id", cid),))
