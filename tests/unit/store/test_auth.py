"""Unit tests of the pure auth model (`dockyard.store.auth`) and of the `/v2/auth` boundary
(`dockyard.store.http_auth`) driven in-process with a fake context.

The last test replays the recorded etcd 3.4.23 transcript through `handle_auth`, with the
store index counted from `index_writes`, and demands the exact status, headers and body.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.http.types import Request
from dockyard.store import auth as a
from dockyard.store.commands import decode_command, encode_command
from dockyard.store.http_auth import (
    basic_auth_user,
    go_json,
    handle_auth,
    has_root_access,
    keys_auth_key,
    no_auth_response,
)

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parents[2] / "e2e" / "store" / "fixtures" / "etcd_auth_transcript.json"
SALT = b"0123456789abcdef"


def h(password: str) -> str:
    # Few iterations: the tests check logic, not cost.
    return a.hash_password(password, SALT, iterations=10)


def with_root(enabled: bool = False) -> a.AuthState:
    state = a.AuthState()
    state.apply(a.CreateOrUpdateUser("root", h("pw")))
    if enabled:
        state.apply(a.EnableAuth())
    return state


# --- passwords ---------------------------------------------------------------------------


def test_password_hash_round_trip_and_bcrypt_truncation() -> None:
    hashed = h("secret")
    assert a.check_password(hashed, "secret")
    assert not a.check_password(hashed, "Secret")
    long_hash = h("x" * 72 + "tail")
    assert a.check_password(long_hash, "x" * 72)  # bcrypt ignores bytes after 72
    assert not a.check_password("garbage", "secret")
    assert not a.check_password("bcrypt$1$AA==$AA==", "secret")


def test_hash_is_deterministic_given_the_salt() -> None:
    assert h("pw") == h("pw")
    assert a.hash_password("pw", b"other-salt-16byt", 10) != h("pw")


# --- users -------------------------------------------------------------------------------


def test_first_write_creates_auth_dirs_even_when_it_fails() -> None:
    state = a.AuthState()
    with pytest.raises(a.AuthNotFound) as err:
        state.apply(a.DeleteUser("nobody"))
    assert err.value.http_status == 404
    assert err.value.message == "auth: User nobody does not exist"
    assert err.value.index_writes == 4
    applied = state.apply(a.CreateOrUpdateUser("root", h("pw")))
    assert applied.index_writes == 1 and applied.created


def test_root_user_gets_root_role() -> None:
    state = a.AuthState()
    applied = state.apply(a.CreateOrUpdateUser("root", h("pw")))
    assert applied.index_writes == 5  # 4 dirs + the user
    assert applied.value == a.User("root", h("pw"), ("root",))
    revoked = state.apply(a.UpdateUser("root", None, revoke=("root",)))
    assert isinstance(revoked.value, a.User) and revoked.value.roles == ()
    assert state.effective_roles("root") == ("root",)  # re-attached on every read
    assert state.is_root("root")


def test_empty_password_is_refused_before_anything_else() -> None:
    state = with_root()
    with pytest.raises(a.AuthBadRequest, match="empty password") as err:
        state.apply(a.CreateUser("root", None, ("x",)))
    assert err.value.index_writes == 0


def test_nil_roles_versus_empty_roles() -> None:
    state = with_root()
    created = state.apply(a.CreateOrUpdateUser("carol", h("c")))
    assert isinstance(created.value, a.User) and created.value.roles is None
    updated = state.apply(a.CreateOrUpdateUser("carol", None))  # nil -> []: an update
    assert not updated.created and updated.index_writes == 1
    assert isinstance(updated.value, a.User) and updated.value.roles == ()
    with pytest.raises(a.AuthBadRequest, match="User not updated"):
        state.apply(a.CreateOrUpdateUser("carol", None))


def test_create_user_with_roles_is_create_only() -> None:
    state = with_root()
    applied = state.apply(a.CreateUser("alice", h("a"), ("rw",)))
    assert not applied.created  # etcd answers 200 on this path
    with pytest.raises(a.AuthConflict, match="User alice already exists"):
        state.apply(a.CreateUser("alice", h("a"), ("rw",)))


def test_grant_and_revoke_roles() -> None:
    state = with_root()
    state.apply(a.CreateOrUpdateUser("carol", h("c")))
    applied = state.apply(a.UpdateUser("carol", None, grant=("b", "a")))
    assert isinstance(applied.value, a.User) and applied.value.roles == ("a", "b")
    with pytest.raises(a.AuthConflict, match="Granting duplicate role a for user carol"):
        state.apply(a.UpdateUser("carol", None, grant=("a",)))
    with pytest.raises(a.AuthConflict, match="Granting duplicate role d for user carol"):
        state.apply(a.UpdateUser("carol", None, grant=("d", "d")))
    with pytest.raises(a.AuthConflict, match="Revoking ungranted role z for user carol"):
        state.apply(a.UpdateUser("carol", None, revoke=("z",)))
    with pytest.raises(a.AuthNotFound, match="User dave does not exist"):
        state.apply(a.UpdateUser("dave", None, grant=("a",)))
    assert state.users["carol"].roles == ("a", "b")  # failures change nothing


def test_delete_root_user_only_while_disabled() -> None:
    state = with_root(enabled=True)
    with pytest.raises(a.AuthForbidden):
        state.apply(a.DeleteUser("root"))
    state.apply(a.DisableAuth())
    assert state.apply(a.DeleteUser("root")).index_writes == 1
    assert state.get_user("root") is None


def test_authenticate() -> None:
    state = with_root()
    state.apply(a.CreateUser("alice", h("a"), ("rw",)))
    assert state.authenticate("alice", "a") == state.users["alice"]
    assert state.authenticate("alice", "a") is not None  # memoized path
    assert state.authenticate("alice", "b") is None
    assert state.authenticate("nobody", "a") is None
    state.apply(a.UpdateUser("alice", h("new"), grant=("x",)))
    assert state.authenticate("alice", "a") is None  # the memo is keyed by the hash


# --- roles -------------------------------------------------------------------------------


def test_role_create_keeps_lists_as_given_and_root_is_immutable() -> None:
    state = with_root()
    applied = state.apply(a.CreateRole("r1", ("/b", "/a", "/a"), ()))
    assert applied.value == a.Role("r1", a.Permissions(("/b", "/a", "/a"), ()))
    with pytest.raises(a.AuthConflict, match="Role r1 already exists"):
        state.apply(a.CreateRole("r1"))
    for command in (
        a.CreateRole("root"),
        a.UpdateRole("root", True, ("/x",)),
        a.DeleteRole("root"),
    ):
        with pytest.raises(a.AuthForbidden, match="Cannot modify role root: is root role"):
            state.apply(command)
    assert state.get_role("root") == a.ROOT_ROLE_VALUE
    assert state.role_names() == ["r1", "root"]


def test_role_grant_revoke_sorts_and_detects_no_ops() -> None:
    state = with_root()
    state.apply(a.CreateRole("r1", ("/b", "/a", "/a"), ()))
    # a revoke alone still re-sorts and dedups: that is a change
    applied = state.apply(a.UpdateRole("r1", has_revoke=True, revoke_read=("/zz",)))
    assert isinstance(applied.value, a.Role)
    assert applied.value.permissions == a.Permissions(("/a", "/b"), ())
    with pytest.raises(a.AuthBadRequest, match="Role not updated"):
        state.apply(a.UpdateRole("r1", has_revoke=True, revoke_read=("/zz",)))
    state.apply(a.UpdateRole("r1", has_grant=True, grant_read=("/c",)))
    with pytest.raises(a.AuthConflict, match="Granting duplicate read permission /c"):
        state.apply(a.UpdateRole("r1", has_grant=True, grant_read=("/c",)))
    with pytest.raises(a.AuthConflict, match="Granting duplicate write permission /w"):
        state.apply(a.UpdateRole("r1", has_grant=True, grant_write=("/w", "/w")))
    with pytest.raises(a.AuthNotFound, match="Role nosuch does not exist"):
        state.apply(a.UpdateRole("nosuch", has_grant=True, grant_write=("/w",)))
    state.apply(a.DeleteRole("r1"))
    with pytest.raises(a.AuthNotFound, match="Role r1 doesn't exist"):
        state.apply(a.DeleteRole("r1"))


def test_role_create_echoes_an_empty_grant() -> None:
    state = with_root()
    applied = state.apply(a.CreateRole("r2", has_grant_echo=True, grant_read=()))
    assert applied.value == a.Role("r2", a.Permissions(), grant=a.Permissions((), None))
    # any update rebuilds the role without the echo
    state.apply(a.UpdateRole("r2", has_grant=True, grant_read=("/x",)))
    assert state.roles["r2"].grant is None


# --- enable / disable --------------------------------------------------------------------


def test_enable_needs_root_and_creates_guest() -> None:
    state = a.AuthState()
    with pytest.raises(a.AuthConflict, match="No root user available, please create one"):
        state.apply(a.EnableAuth())
    state.apply(a.CreateOrUpdateUser("root", h("pw")))
    assert state.apply(a.EnableAuth()).index_writes == 2  # guest role + the flag
    assert state.get_role("guest") == a.Role("guest", a.Permissions(("/*",), ("/*",)))
    with pytest.raises(a.AuthConflict, match="already enabled"):
        state.apply(a.EnableAuth())
    assert state.apply(a.DisableAuth()).index_writes == 1
    with pytest.raises(a.AuthConflict, match="already disabled"):
        state.apply(a.DisableAuth())
    assert state.apply(a.EnableAuth()).index_writes == 1  # guest exists now


# --- permission checks -------------------------------------------------------------------


def test_permission_checks() -> None:
    state = with_root()
    state.apply(a.CreateRole("ro", ("/app/*", "/exact"), ("/app",)))
    state.apply(a.CreateRole("guest", ("/pub/*",), ()))
    state.apply(a.CreateUser("lng", h("x"), ("ro", "missing")))
    assert state.can_write(None, "/anything")  # auth disabled: all allowed
    state.apply(a.EnableAuth())
    assert state.can_read("lng", "/app/x") and not state.can_read("lng", "/app")
    assert state.can_read("lng", "/exact") and not state.can_read("lng", "/exact/y")
    assert state.can_write("lng", "/app") and not state.can_write("lng", "/app/q")
    assert state.can_read("lng", "/app/", recursive=True)
    assert not state.can_read("lng", "/app", recursive=True)
    assert not state.can_read("lng", "/exact", recursive=True)  # only `*` grants recursion
    assert state.can_write("root", "/x", recursive=True)
    # anonymous = guest, matched as a plain key even for recursive requests
    assert state.can_read(None, "/pub/", recursive=True)
    assert not state.can_read(None, "/pub") and not state.can_write(None, "/pub/z")
    assert not state.can_read(None, "")  # GET /v2/keys without a slash
    state.apply(a.DeleteRole("guest"))
    assert not state.can_read(None, "/pub/a")
    assert not a.role_has_access(a.Role("e", a.Permissions(("",), None)), "", write=False)


# --- commands and snapshots --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        a.CreateUser("u", h("p"), ("a", "b")),
        a.CreateUser("u", None, None),
        a.CreateOrUpdateUser("u", None),
        a.UpdateUser("u", h("p"), ("a",), ("b",)),
        a.DeleteUser("u"),
        a.CreateRole("r", ("/a",), None, True, (), None, False, None, None),
        a.UpdateRole("r", True, ("/a",), (), True, (), ("/b",)),
        a.DeleteRole("r"),
        a.EnableAuth(),
        a.DisableAuth(),
    ],
)
def test_commands_round_trip(command: object) -> None:
    assert decode_command(encode_command(command)) == command


def test_snapshot_round_trip() -> None:
    state = with_root(enabled=True)
    state.apply(a.CreateOrUpdateUser("carol", h("c")))
    state.apply(a.CreateRole("r2", ("/b",), None, True, (), None))
    restored = a.AuthState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored.to_json() == state.to_json()
    assert restored.users == state.users and restored.roles == state.roles
    assert restored.enabled and restored.dirs_created


def test_apply_rejects_foreign_commands() -> None:
    with pytest.raises(TypeError):
        a.AuthState().apply(object())


# --- the boundary ------------------------------------------------------------------------


class FakeContext:
    """Applies proposals at once; counts the store index as the real store must."""

    def __init__(self) -> None:
        self.auth = a.AuthState()
        self.cluster_id_hex = "94b983bad187c914"
        self.index = 3  # a fresh etcd's store index (its bootstrap writes)

    async def propose(self, command: object) -> object:
        try:
            applied = self.auth.apply(command)
        except a.AuthError as e:
            self.index += e.index_writes
            raise
        self.index += applied.index_writes
        return applied


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
) -> Request:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return Request(method, path, lowered, body.encode())


def test_small_helpers() -> None:
    assert no_auth_response().body == b'{"message":"Insufficient credentials"}'
    assert keys_auth_key(request("GET", "/v2/keys")) == ""
    assert keys_auth_key(request("GET", "/v2/keys/pub/?recursive=true")) == "/pub/"
    assert keys_auth_key(request("GET", "/v2/keys/a%2Fb")) == "/a/b"


def test_go_json() -> None:
    assert go_json({"a": [None, True, 1, "<&>\u2028\x01\n"]}) == (
        '{"a":[null,true,1,"\\u003c\\u0026\\u003e\\u2028\\u0001\\n"]}'
    )


def test_basic_auth_user_and_root_access() -> None:
    state = with_root()
    state.apply(a.CreateUser("alice", h("a"), ("rw",)))

    def req(header: str | None) -> Request:
        return request("GET", "/v2/keys/x", {"Authorization": header} if header is not None else {})

    def b(creds: str) -> str:
        return "Basic " + base64.b64encode(creds.encode()).decode()

    assert basic_auth_user(req(b("alice:bad")), state) == (True, None)  # disabled: anyone
    state.apply(a.EnableAuth())
    assert basic_auth_user(req(None), state) == (True, None)
    assert basic_auth_user(req(""), state) == (True, None)
    assert basic_auth_user(req(b("alice:a")), state) == (True, "alice")
    assert basic_auth_user(req("basic " + b("alice:a")[6:]), state) == (True, "alice")
    for bad in (b("alice:bad"), b("nocolon"), "Bearer x", "Basic !!!", b("alice:a").rstrip("=")):
        assert basic_auth_user(req(bad), state) == (False, None), bad
    assert has_root_access(req(b("root:pw")), state)
    assert not has_root_access(req(b("alice:a")), state)
    assert not has_root_access(req(None), state)
    cert_req = Request(
        "GET", "/v2/auth/users", {}, b"", peer_cert={"subject": ((("commonName", "root"),),)}
    )
    assert has_root_access(cert_req, state, client_cert_auth=True)
    assert not has_root_access(cert_req, state)
    assert basic_auth_user(cert_req, state, client_cert_auth=True) == (True, "root")


def _replay_step(ctx: FakeContext, step: dict[str, Any]) -> None:
    path = step["path"]
    req = request(step["method"], path, step["headers"], step["body"])
    if path.startswith(("/v2/keys", "/v2/members")):
        # Not served here: check the permission decision (401 or not) etcd made.
        if path.startswith("/v2/members"):
            allowed = has_root_access(req, ctx.auth)
        else:
            ok, user = basic_auth_user(req, ctx.auth)
            key = keys_auth_key(req)
            write = step["method"] not in ("GET", "HEAD")
            recursive = "recursive=true" in req.raw_query
            allowed = ok and ctx.auth.has_key_access(user, key, write=write, recursive=recursive)
        assert allowed == (step["status"] != 401), step
    if path.startswith("/v2/keys"):
        # And the index accounting of the auth writes.
        if step["method"] == "GET" and path == "/v2/keys/":
            assert step["response_headers"]["x-etcd-index"] == str(ctx.index), step
        elif step["method"] in ("PUT", "DELETE") and step["status"] in (200, 201):
            ctx.index += 1
        return
    if not path.startswith("/v2/auth"):
        return
    response = asyncio.run(handle_auth(req, ctx))
    body = b"" if step["method"] == "HEAD" else response.body
    headers = {"content-type": response.content_type}
    for name, value in response.headers:
        headers[name.lower()] = "<cluster-id>" if name.lower() == "x-etcd-cluster-id" else value
    got = {"status": response.status, "response_headers": headers, "response_body": body.decode()}
    want = {k: step[k] for k in ("status", "response_headers", "response_body")}
    assert got == want, f"{step['method']} {path} {step['body']!r} ({step['note']})"


def test_transcript_replay_in_process() -> None:
    transcript = json.loads(FIXTURE.read_text())
    ctx = FakeContext()
    for step in transcript:
        _replay_step(ctx, step)
