"""The v2 auth state machine: users, roles, the enabled flag, and permission checks.

Role: `AuthState` is the pure model behind `/v2/auth/*` (served by `http_auth`) and behind the
permission checks of the keys API. It changes only through the log commands defined here
(`CreateUser` ... `DisableAuth`), applied in log order by `AuthState.apply`.

Invariants and rules:
- Pure: no I/O, no clock, no randomness. Passwords reach the log already hashed (the boundary
  draws the salt and calls `hash_password`), so applying a command is deterministic.
- Behaviour is etcd 3.4's `etcdserver/api/v2auth` as measured against etcd 3.4.23, quirks kept:
  the `root` role is built in and cannot be changed; the `root` user always has the `root` role;
  enabling auth needs a `root` user and creates a `guest` role with read/write on `/*` if none
  exists; a user's `roles` keeps Go's nil-versus-empty distinction (`null` vs `[]`) because it
  shows in responses and decides whether an update is a no-op.
- Index accounting: etcd keeps auth data in its v2 store under `/2`, so every successful auth
  write consumes one store index (and a slot of the 1000-event history), and the first auth
  write ever also creates `/2`, `/2/users`, `/2/roles` and `/2/enabled` (4 more indexes), even
  when that write then fails. `AuthApplied.index_writes` and `AuthError.index_writes` report
  how many indexes a command consumed; the store must advance its index by that much.
- Passwords compare like bcrypt: only the first 72 bytes count (etcd 3.4 uses bcrypt).
- Errors are `AuthError` subclasses carrying the HTTP status and etcd's message text; only the
  boundary turns them into responses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from dockyard.store.commands import register

ROOT_ROLE = "root"
GUEST_ROLE = "guest"
ROOT_USER = "root"

# bcrypt (etcd's hash) ignores everything after 72 bytes; keep that, clients may rely on it.
BCRYPT_MAX_PASSWORD_BYTES = 72
PBKDF2_ITERATIONS = 60_000  # ~ the cost of bcrypt's default cost 10, which etcd uses
_AUTH_DIR_WRITES = 4  # /2, /2/users/, /2/roles/, /2/enabled (etcd ensureAuthDirectories)
_VERIFY_CACHE_MAX_ENTRIES = 1024

Patterns = tuple[str, ...] | None  # None is Go's nil slice: it encodes as JSON null


# --- errors --------------------------------------------------------------------------------


class AuthError(Exception):
    """An auth failure: `http_status` and etcd's `message` ("auth: ..." included)."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str, index_writes: int = 0) -> None:
        super().__init__(message)
        self.message = message
        # Store indexes consumed before the failure (etcd creates its auth dirs first).
        self.index_writes = index_writes


class AuthBadRequest(AuthError):
    http_status = 400


class AuthForbidden(AuthError):
    http_status = 403


class AuthNotFound(AuthError):
    http_status = 404


class AuthConflict(AuthError):
    http_status = 409


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Permissions:
    """A kv read/write pattern pair; a trailing `*` makes a pattern a prefix match."""

    read: Patterns = None
    write: Patterns = None

    def is_empty(self) -> bool:
        return not self.read and not self.write


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    permissions: Permissions = field(default_factory=Permissions)
    # etcd 3.4 quirk: a PUT that creates a role with an empty-but-present "grant"/"revoke"
    # stores and echoes that object forever (until the next update).
    grant: Permissions | None = None
    revoke: Permissions | None = None


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    roles: Patterns = None  # as stored; use `AuthState.effective_roles` for checks


@dataclass(frozen=True, slots=True)
class AuthApplied:
    """What a successful command did: the value etcd answers with and the indexes consumed."""

    value: User | Role | None
    created: bool = False  # 201 rather than 200 (only CreateOrUpdateUser creating a user)
    index_writes: int = 0


ROOT_ROLE_VALUE = Role(ROOT_ROLE, Permissions(("/*",), ("/*",)))
_DEFAULT_GUEST_ROLE = Role(GUEST_ROLE, Permissions(("/*",), ("/*",)))


# --- passwords -----------------------------------------------------------------------------


def _truncate(password: str) -> bytes:
    return password.encode("utf-8")[:BCRYPT_MAX_PASSWORD_BYTES]


def hash_password(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """PBKDF2-SHA256 hash in `pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>` form.

    The caller (the HTTP boundary) draws `salt` at random, so the log carries the result.
    """
    digest = hashlib.pbkdf2_hmac("sha256", _truncate(password), salt, iterations)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password_hash: str, password: str) -> bool:
    try:
        scheme, iterations, salt_b64, digest_b64 = password_hash.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        actual = hashlib.pbkdf2_hmac("sha256", _truncate(password), salt, int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# --- commands ------------------------------------------------------------------------------
# One command per etcd store operation, so apply can make the decisions etcd makes against
# the state at apply time (existence, duplicates, "not updated").


@register
@dataclass(frozen=True, slots=True)
class CreateUser:
    """PUT user with `roles`: create only (409 if the user exists). Answers 200, not 201."""

    name: str
    password_hash: str | None  # None: the password was empty (400)
    roles: Patterns = None


@register
@dataclass(frozen=True, slots=True)
class CreateOrUpdateUser:
    """PUT user without roles, grant or revoke: create (201) or change the password (200)."""

    name: str
    password_hash: str | None


@register
@dataclass(frozen=True, slots=True)
class UpdateUser:
    """PUT user with grant and/or revoke (and optionally a new password)."""

    name: str
    password_hash: str | None
    grant: tuple[str, ...] = ()
    revoke: tuple[str, ...] = ()


@register
@dataclass(frozen=True, slots=True)
class DeleteUser:
    name: str


@register
@dataclass(frozen=True, slots=True)
class CreateRole:
    """PUT role without grant/revoke. The echo fields keep etcd's empty grant/revoke quirk."""

    name: str
    read: Patterns = None
    write: Patterns = None
    has_grant_echo: bool = False
    grant_read: Patterns = None
    grant_write: Patterns = None
    has_revoke_echo: bool = False
    revoke_read: Patterns = None
    revoke_write: Patterns = None


@register
@dataclass(frozen=True, slots=True)
class UpdateRole:
    """PUT role with grant/revoke. `has_grant` is Go's non-nil pointer: it re-sorts the lists."""

    name: str
    has_grant: bool = False
    grant_read: tuple[str, ...] = ()
    grant_write: tuple[str, ...] = ()
    has_revoke: bool = False
    revoke_read: tuple[str, ...] = ()
    revoke_write: tuple[str, ...] = ()


@register
@dataclass(frozen=True, slots=True)
class DeleteRole:
    name: str


@register
@dataclass(frozen=True, slots=True)
class EnableAuth:
    pass


@register
@dataclass(frozen=True, slots=True)
class DisableAuth:
    pass


AUTH_COMMANDS: tuple[type[Any], ...] = (
    CreateUser, CreateOrUpdateUser, UpdateUser, DeleteUser,
    CreateRole, UpdateRole, DeleteRole, EnableAuth, DisableAuth,
)  # fmt: skip


# --- pattern matching ----------------------------------------------------------------------


def _simple_match(pattern: str, key: str) -> bool:
    # etcd's simpleMatch; an empty pattern makes etcd panic (the connection drops): no match.
    if not pattern:
        return False
    if pattern.endswith("*"):
        return key.startswith(pattern[:-1])
    return key == pattern


def _prefix_match(pattern: str, key: str) -> bool:
    # etcd's prefixMatch, used for recursive requests: only `*` patterns can grant them.
    return bool(pattern) and pattern.endswith("*") and key.startswith(pattern[:-1])


def role_has_access(role: Role, key: str, *, write: bool, recursive: bool = False) -> bool:
    if role.name == ROOT_ROLE:
        return True
    patterns = (role.permissions.write if write else role.permissions.read) or ()
    match = _prefix_match if recursive else _simple_match
    return any(match(p, key) for p in patterns)


# --- the state machine ---------------------------------------------------------------------


def _sorted_union(current: Patterns, added: tuple[str, ...], what: str) -> tuple[str, ...]:
    result = set(current or ())
    for item in added:
        if item in result:
            raise AuthConflict(f"auth: Granting duplicate {what} permission {item}")
        result.add(item)
    return tuple(sorted(result))


def _sorted_difference(current: Patterns, removed: tuple[str, ...]) -> tuple[str, ...]:
    # etcd 3.4: revoking an ungranted permission is only logged.
    return tuple(sorted(set(current or ()) - set(removed)))


class AuthState:
    """Users, roles and the enabled flag, changed only by `apply`.

    Reads (`get_user`, `authenticate`, `has_key_access` ...) never change the model; the
    password-verification memo they keep is a bounded cache that affects only speed.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}  # never holds ROOT_ROLE: it is built in
        self.dirs_created = False  # etcd's /2 auth dirs exist (they cost 4 indexes once)
        self._verified: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    # -- reads ---------------------------------------------------------------------------

    def get_user(self, name: str) -> User | None:
        """The user as etcd's getUser returns it: the root user always has the root role."""
        user = self.users.get(name)
        if user is None or name != ROOT_USER:
            return user
        roles = user.roles or ()
        if ROOT_ROLE in roles:
            return user
        return replace(user, roles=(*roles, ROOT_ROLE))

    def get_role(self, name: str) -> Role | None:
        if name == ROOT_ROLE:
            return ROOT_ROLE_VALUE
        return self.roles.get(name)

    def user_names(self) -> list[str]:
        return sorted(self.users)

    def role_names(self) -> list[str]:
        return sorted([ROOT_ROLE, *self.roles])

    def effective_roles(self, name: str) -> tuple[str, ...]:
        user = self.get_user(name)
        return (user.roles or ()) if user else ()

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches (bcrypt rules: first 72 bytes), else None."""
        user = self.get_user(username)
        if user is None:
            return None
        memo_key = (username, user.password_hash)
        probe = hashlib.sha256(user.password_hash.encode() + b"\0" + _truncate(password))
        cached = self._verified.get(memo_key)
        if cached is not None and hmac.compare_digest(cached, probe.digest()):
            self._verified.move_to_end(memo_key)
            return user
        if not check_password(user.password_hash, password):
            return None
        self._verified[memo_key] = probe.digest()
        if len(self._verified) > _VERIFY_CACHE_MAX_ENTRIES:
            self._verified.popitem(last=False)
        return user

    def is_root(self, user: User | str | None) -> bool:
        """Whether this user may use the auth API and other root-only endpoints."""
        name = user.name if isinstance(user, User) else user
        return name is not None and ROOT_ROLE in self.effective_roles(name)

    def has_key_access(
        self, user: User | str | None, key: str, *, write: bool, recursive: bool = False
    ) -> bool:
        """etcd's hasKeyPrefixAccess after authentication.

        `user` None is the anonymous client: the guest role, checked as a plain key even for
        recursive requests (etcd 3.4 quirk). `key` is the request path after `/v2/keys`, as
        decoded, so `/v2/keys` gives "" and `/v2/keys/a/` gives "/a/". With auth disabled,
        everything is allowed.
        """
        if not self.enabled:
            return True
        if user is None:
            guest = self.get_role(GUEST_ROLE)
            return guest is not None and role_has_access(guest, key, write=write)
        name = user.name if isinstance(user, User) else user
        for role_name in self.effective_roles(name):
            role = self.get_role(role_name)
            if role is not None and role_has_access(role, key, write=write, recursive=recursive):
                return True
        return False

    def can_read(self, user: User | str | None, key: str, recursive: bool = False) -> bool:
        return self.has_key_access(user, key, write=False, recursive=recursive)

    def can_write(self, user: User | str | None, key: str, recursive: bool = False) -> bool:
        return self.has_key_access(user, key, write=True, recursive=recursive)

    # -- apply ---------------------------------------------------------------------------

    def apply(self, command: object) -> AuthApplied:
        """Apply one log command. Raises `AuthError`; check its `index_writes` even then."""
        handler = _APPLY.get(type(command))
        if handler is None:
            raise TypeError(f"not an auth command: {command!r}")
        return handler(self, command)

    def _ensure_dirs(self) -> int:
        # etcd's ensureAuthDirectories runs before every auth store write or delete.
        if self.dirs_created:
            return 0
        self.dirs_created = True
        return _AUTH_DIR_WRITES

    def _create_user(self, name: str, password_hash: str | None, roles: Patterns) -> AuthApplied:
        if name == ROOT_USER and ROOT_ROLE not in (roles or ()):
            roles = (*(roles or ()), ROOT_ROLE)  # etcd attachRootRole
        if password_hash is None:
            raise AuthBadRequest(f"auth: Cannot create user {name} with an empty password")
        writes = self._ensure_dirs()
        if name in self.users:
            raise AuthConflict(f"auth: User {name} already exists.", writes)
        user = User(name, password_hash, roles)
        self.users[name] = user
        return AuthApplied(user, created=True, index_writes=writes + 1)

    def _update_user(
        self, name: str, password_hash: str | None, grant: tuple[str, ...], revoke: tuple[str, ...]
    ) -> AuthApplied:
        old = self.get_user(name)
        if old is None:
            raise AuthNotFound(f"auth: User {name} does not exist.")
        roles = set(old.roles or ())
        for role in grant:
            if role in roles:
                raise AuthConflict(f"auth: Granting duplicate role {role} for user {name}")
            roles.add(role)
        for role in revoke:
            if role not in roles:
                raise AuthConflict(f"auth: Revoking ungranted role {role} for user {name}")
            roles.discard(role)
        new = User(name, password_hash or old.password_hash, tuple(sorted(roles)))
        # etcd compares with reflect.DeepEqual: a nil roles list differs from an empty one.
        if new == old:
            raise AuthBadRequest(
                "auth: User not updated. Use grant/revoke/password to update the user."
            )
        writes = self._ensure_dirs() + 1
        self.users[name] = new
        return AuthApplied(new, index_writes=writes)

    def _apply_create_user(self, c: CreateUser) -> AuthApplied:
        applied = self._create_user(c.name, c.password_hash, c.roles)
        return replace(applied, created=False)  # etcd answers 200 on this path

    def _apply_create_or_update_user(self, c: CreateOrUpdateUser) -> AuthApplied:
        if c.name in self.users:
            return self._update_user(c.name, c.password_hash, (), ())
        return self._create_user(c.name, c.password_hash, None)

    def _apply_update_user(self, c: UpdateUser) -> AuthApplied:
        return self._update_user(c.name, c.password_hash, c.grant, c.revoke)

    def _apply_delete_user(self, c: DeleteUser) -> AuthApplied:
        if self.enabled and c.name == ROOT_USER:
            raise AuthForbidden("auth: Cannot delete root user while auth is enabled.")
        writes = self._ensure_dirs()
        if c.name not in self.users:
            raise AuthNotFound(f"auth: User {c.name} does not exist", writes)
        del self.users[c.name]
        self._verified = OrderedDict((k, v) for k, v in self._verified.items() if k[0] != c.name)
        return AuthApplied(None, index_writes=writes + 1)

    def _create_role(self, role: Role) -> AuthApplied:
        if role.name == ROOT_ROLE:
            raise AuthForbidden(f"auth: Cannot modify role {role.name}: is root role.")
        writes = self._ensure_dirs()
        if role.name in self.roles:
            raise AuthConflict(f"auth: Role {role.name} already exists.", writes)
        self.roles[role.name] = role
        return AuthApplied(role, created=True, index_writes=writes + 1)

    def _apply_create_role(self, c: CreateRole) -> AuthApplied:
        grant = Permissions(c.grant_read, c.grant_write) if c.has_grant_echo else None
        revoke = Permissions(c.revoke_read, c.revoke_write) if c.has_revoke_echo else None
        return self._create_role(Role(c.name, Permissions(c.read, c.write), grant, revoke))

    def _apply_update_role(self, c: UpdateRole) -> AuthApplied:
        if c.name == ROOT_ROLE:
            raise AuthForbidden(f"auth: Cannot modify role {c.name}: is root role.")
        old = self.roles.get(c.name)
        if old is None:
            raise AuthNotFound(f"auth: Role {c.name} does not exist.")
        perms = old.permissions
        if c.has_grant:  # etcd Permissions.Grant: a nil grant keeps the lists untouched
            perms = Permissions(
                _sorted_union(perms.read, c.grant_read, "read"),
                _sorted_union(perms.write, c.grant_write, "write"),
            )
        if c.has_revoke:
            perms = Permissions(
                _sorted_difference(perms.read, c.revoke_read),
                _sorted_difference(perms.write, c.revoke_write),
            )
        new = Role(c.name, perms)
        if new == old:
            raise AuthBadRequest("auth: Role not updated. Use grant/revoke to update the role.")
        writes = self._ensure_dirs() + 1
        self.roles[c.name] = new
        return AuthApplied(new, index_writes=writes)

    def _apply_delete_role(self, c: DeleteRole) -> AuthApplied:
        if c.name == ROOT_ROLE:
            raise AuthForbidden(f"auth: Cannot modify role {c.name}: is root role.")
        writes = self._ensure_dirs()
        if c.name not in self.roles:
            raise AuthNotFound(f"auth: Role {c.name} doesn't exist.", writes)
        del self.roles[c.name]  # users keep the name; lookups skip missing roles
        return AuthApplied(None, index_writes=writes + 1)

    def _apply_enable(self, _c: EnableAuth) -> AuthApplied:
        if self.enabled:
            raise AuthConflict("auth: already enabled")
        if ROOT_USER not in self.users:
            raise AuthConflict("auth: No root user available, please create one")
        writes = 0
        if GUEST_ROLE not in self.roles:
            writes += self._create_role(_DEFAULT_GUEST_ROLE).index_writes
        writes += self._ensure_dirs() + 1
        self.enabled = True
        return AuthApplied(None, index_writes=writes)

    def _apply_disable(self, _c: DisableAuth) -> AuthApplied:
        if not self.enabled:
            raise AuthConflict("auth: already disabled")
        writes = self._ensure_dirs() + 1
        self.enabled = False
        return AuthApplied(None, index_writes=writes)

    # -- snapshots -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        def perms(p: Permissions | None) -> Any:
            return None if p is None else {"read": _list(p.read), "write": _list(p.write)}

        return {
            "enabled": self.enabled,
            "dirs_created": self.dirs_created,
            "users": [
                {"name": u.name, "password_hash": u.password_hash, "roles": _list(u.roles)}
                for u in sorted(self.users.values(), key=lambda u: u.name)
            ],
            "roles": [
                {"name": r.name, "permissions": perms(r.permissions),
                 "grant": perms(r.grant), "revoke": perms(r.revoke)}
                for r in sorted(self.roles.values(), key=lambda r: r.name)
            ],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthState:
        def perms(p: Any) -> Permissions | None:
            return None if p is None else Permissions(_tuple(p["read"]), _tuple(p["write"]))

        state = cls()
        state.enabled = bool(data["enabled"])
        state.dirs_created = bool(data["dirs_created"])
        for u in data["users"]:
            state.users[u["name"]] = User(u["name"], u["password_hash"], _tuple(u["roles"]))
        for r in data["roles"]:
            state.roles[r["name"]] = Role(
                r["name"], perms(r["permissions"]) or Permissions(), perms(r["grant"]),
                perms(r["revoke"]),
            )  # fmt: skip
        return state


def _list(items: Patterns) -> list[str] | None:
    return None if items is None else list(items)


def _tuple(items: list[str] | None) -> Patterns:
    return None if items is None else tuple(items)


_APPLY: dict[type[Any], Callable[[AuthState, Any], AuthApplied]] = {
    CreateUser: AuthState._apply_create_user,
    CreateOrUpdateUser: AuthState._apply_create_or_update_user,
    UpdateUser: AuthState._apply_update_user,
    DeleteUser: AuthState._apply_delete_user,
    CreateRole: AuthState._apply_create_role,
    UpdateRole: AuthState._apply_update_role,
    DeleteRole: AuthState._apply_delete_role,
    EnableAuth: AuthState._apply_enable,
    DisableAuth: AuthState._apply_disable,
}
