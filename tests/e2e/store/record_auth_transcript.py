"""Record the v2 auth API of the real etcd 3.4 into `fixtures/etcd_auth_transcript.json`.

Run: `.venv/bin/python -m tests.e2e.store.record_auth_transcript` (needs /usr/bin/etcd).

The script starts a fresh etcd, sends `STEPS` in order over raw HTTP/1.1 and saves every
request with the status, the relevant response headers and the exact body. Normalized, so the
file is the same on every run: X-Etcd-Cluster-Id becomes `<cluster-id>`; the CORS headers,
Date, Content-Length and X-Raft-* are left out. X-Etcd-Index is kept: a fresh server starts at
the same index, and auth writes consume store indexes (see `dockyard.store.auth`), which is
part of what the transcript checks. `test_auth_differential.py` replays the same requests.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.servers import start_etcd

FIXTURE = Path(__file__).parent / "fixtures" / "etcd_auth_transcript.json"
KEPT_HEADERS = (
    "content-type",
    "allow",
    "x-content-type-options",
    "x-etcd-cluster-id",
    "x-etcd-index",
)
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
LONG = "A" * 72  # bcrypt looks at the first 72 bytes only


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def step(
    method: str,
    path: str,
    body: Any = None,
    *,
    ct: str | None = JSON,
    user: str | None = None,
    headers: dict[str, str] | None = None,
    note: str = "",
) -> dict[str, Any]:
    hdrs: dict[str, str] = dict(headers or {})
    if body is not None and not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"))
    if body is not None and ct is not None:
        hdrs["Content-Type"] = ct
    if user is not None:
        hdrs["Authorization"] = basic(user)
    return {"note": note, "method": method, "path": path, "headers": hdrs, "body": body or ""}


S = step
STEPS: list[dict[str, Any]] = [
    # --- auth off, nothing created: reads, errors, 405s, 404s -------------------------------
    S("GET", "/v2/auth/enable"),
    S("GET", "/v2/auth/users", note="no users: null"),
    S("GET", "/v2/auth/roles", note="the built-in root role"),
    S("GET", "/v2/auth/roles/root"),
    S("GET", "/v2/auth/roles/guest"),
    S("GET", "/v2/auth/users/root"),
    S("PUT", "/v2/auth/enable", note="409 without a root user"),
    S("POST", "/v2/auth/enable"),
    S("HEAD", "/v2/auth/enable"),
    S("POST", "/v2/auth/users"),
    S("HEAD", "/v2/auth/users"),
    S("POST", "/v2/auth/roles/x"),
    S("GET", "/v2/auth/users/a/b", note="Invalid path, before the method check"),
    S("POST", "/v2/auth/users/a/b"),
    S("GET", "/v2/auth/enable/", note="ServeMux: no such route"),
    S("GET", "/v2/auth/nothing"),
    S("GET", "/v2/auth/users?a=%zz", note="ParseForm error"),
    S("GET", "/v2/keys/"),
    S("DELETE", "/v2/auth/users/nobody", note="the first auth write creates /2 dirs: +4"),
    S("GET", "/v2/keys/"),
    # --- users --------------------------------------------------------------------------
    S(
        "PUT",
        "/v2/auth/users/root",
        {"user": "root", "password": "pw"},
        ct=None,
        note="no Content-Type check",
    ),
    S(
        "PUT",
        "/v2/auth/users/root",
        {"user": "root", "password": "pw"},
        ct="text/plain",
        note="same password: still an update (new salt)",
    ),
    S("PUT", "/v2/auth/users/root", "notjson"),
    S("PUT", "/v2/auth/users/root", ""),
    S("PUT", "/v2/auth/users/root", "null"),
    S("PUT", "/v2/auth/users/root", '{"user":"root","password":5}'),
    S("PUT", "/v2/auth/users/root", {"user": "rootx", "password": "pw"}),
    S("PUT", "/v2/auth/users/root", {"user": "root"}, note="not updated"),
    S("GET", "/v2/keys/"),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "password": "c"}, note="roles null"),
    S("PUT", "/v2/auth/users/carol", {"user": "carol"}, note="nil roles -> [] is an update"),
    S("PUT", "/v2/auth/users/carol", {"user": "carol"}, note="now a no-op"),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "password": "c", "roles": ["x"]}),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "password": "", "roles": ["x"]}),
    S("PUT", "/v2/auth/users/dave", {"user": "dave"}),
    S("PUT", "/v2/auth/users/dave", {"user": "dave", "grant": ["a"]}),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "grant": ["b", "a"]}),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "grant": ["a"]}),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "revoke": ["zzz"]}),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "grant": ["c"], "roles": ["b"]}),
    S(
        "PUT",
        "/v2/auth/users/carol",
        {"User": "carol", "Password": "z", "grant": ["d", "d"]},
        note="field names are case-insensitive",
    ),
    S("PUT", "/v2/auth/users/carol", '{"user":"carol","grant":["e"]} trailing garbage'),
    S("PUT", "/v2/auth/users/carol", '{"user":"carol","user":"x","password":"q"}'),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "revoke": ["a", "b", "e"]}),
    S("GET", "/v2/auth/users/carol"),
    S("PUT", "/v2/auth/users/carol", {"user": "carol", "grant": ["nosuch"]}),
    S("GET", "/v2/auth/users/carol", note="404 for a missing role"),
    S("GET", "/v2/auth/users/carol/", note="trailing slash cleaned"),
    S("PUT", "/v2/auth/users/e%3C%26%3E", {"user": "e<&>", "password": "q"}, note="Go escapes <>&"),
    S("GET", "/v2/auth/users/e%3C%26%3E"),
    S(
        "PUT",
        "/v2/auth/users/alice",
        {"user": "alice", "password": "a", "roles": ["rw_app"]},
        note="create with roles answers 200",
    ),
    S("PUT", "/v2/auth/users/lng", {"user": "lng", "password": LONG + "tail", "roles": ["ro"]}),
    S("PUT", "/v2/auth/users/adm", {"user": "adm", "password": "p:x", "roles": ["root"]}),
    S("PUT", "/v2/auth/users/root", {"user": "root", "revoke": ["root"]}),
    S("GET", "/v2/auth/users/root", note="root role re-attached"),
    S("GET", "/v2/auth/users"),
    # --- roles --------------------------------------------------------------------------
    S(
        "PUT",
        "/v2/auth/roles/rw_app",
        {"role": "rw_app", "permissions": {"kv": {"read": ["/app/*"], "write": ["/app/*"]}}},
    ),
    S(
        "PUT",
        "/v2/auth/roles/rw_app",
        {"role": "rw_app", "permissions": {"kv": {"read": ["/app/*"], "write": ["/app/*"]}}},
    ),
    S("PUT", "/v2/auth/roles/empty", {"role": "empty"}),
    S("PUT", "/v2/auth/roles/root", {"role": "root"}),
    S(
        "PUT",
        "/v2/auth/roles/r1",
        {"role": "r1", "permissions": {"kv": {"read": ["/b", "/a", "/a"], "write": []}}},
    ),
    S(
        "PUT",
        "/v2/auth/roles/r1",
        {"role": "r1", "revoke": {"kv": {"read": ["/zz"]}}},
        note="revoke without grant re-sorts: an update",
    ),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1", "revoke": {"kv": {"read": ["/zz"]}}}),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1", "grant": {"kv": {"read": ["/c"]}}}),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1", "grant": {"kv": {"read": ["/c"]}}}),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1", "grant": {"kv": {"write": ["/w", "/w"]}}}),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1", "revoke": {"kv": {"read": ["/a", "/b", "/c"]}}}),
    S(
        "PUT",
        "/v2/auth/roles/r1",
        {"role": "r1", "grant": {"kv": {"write": ["/w"]}}, "revoke": {"kv": {"write": ["/w"]}}},
    ),
    S(
        "PUT",
        "/v2/auth/roles/r1",
        {"role": "r1", "grant": {"kv": {"write": ["/w"]}}, "permissions": {"kv": {"read": ["/q"]}}},
    ),
    S("PUT", "/v2/auth/roles/nosuch", {"role": "nosuch", "grant": {"kv": {"write": ["/w"]}}}),
    S("PUT", "/v2/auth/roles/root", {"role": "root", "grant": {"kv": {"write": ["/w"]}}}),
    S(
        "PUT",
        "/v2/auth/roles/r2",
        {"role": "r2", "grant": {"kv": {"read": []}}},
        note="empty grant: a create that stores the grant",
    ),
    S("GET", "/v2/auth/roles/r2"),
    S(
        "PUT",
        "/v2/auth/roles/r3",
        {"role": "r3", "permissions": {"kv": {"read": ["/x"]}}, "grant": {"kv": {}}},
    ),
    S("PUT", "/v2/auth/roles/r1", {"role": "r1x"}),
    S("PUT", "/v2/auth/roles/r1", "[1]"),
    S(
        "PUT",
        "/v2/auth/roles/ro",
        {"role": "ro", "permissions": {"kv": {"read": ["/app/*", "/exact"], "write": ["/app"]}}},
    ),
    S(
        "PUT",
        "/v2/auth/roles/guest",
        {"role": "guest", "permissions": {"kv": {"read": ["/pub/*"], "write": []}}},
    ),
    S("GET", "/v2/auth/roles"),
    S("GET", "/v2/auth/roles/"),
    S("DELETE", "/v2/auth/roles/r1"),
    S("DELETE", "/v2/auth/roles/r1"),
    S("DELETE", "/v2/auth/roles/root"),
    S("DELETE", "/v2/auth/users/carol"),
    S("DELETE", "/v2/auth/users/carol"),
    S("GET", "/v2/auth/users/"),
    S("GET", "/v2/keys/"),
    S("PUT", "/v2/keys/pub/a/b", "value=1", ct=FORM),
    # --- enable -------------------------------------------------------------------------
    S("PUT", "/v2/auth/enable", note="guest exists already: +1"),
    S("GET", "/v2/keys/pub/a/b"),
    S("GET", "/v2/auth/enable"),
    S("GET", "/v2/auth/enable", user="alice:a"),
    S("PUT", "/v2/auth/enable", user="root:pw"),
    S("GET", "/v2/auth/users", note="401 without credentials"),
    S("GET", "/v2/auth/users", user="root:bad"),
    S("GET", "/v2/auth/users", user="alice:a"),
    S("GET", "/v2/auth/users", user="adm:p:x", note="a user with the root role"),
    S("GET", "/v2/auth/users", user="root:pw"),
    S("GET", "/v2/auth/roles", user="root:pw"),
    S("GET", "/v2/auth/users/nobody", user="alice:a", note="401 before 404"),
    S("POST", "/v2/auth/users/nobody", user="alice:a", note="405 before 401"),
    S(
        "GET",
        "/v2/auth/users",
        headers={"Authorization": "basic cm9vdDpwdw=="},
        note="scheme is case-insensitive",
    ),
    S("GET", "/v2/auth/users", headers={"Authorization": "Basic  cm9vdDpwdw=="}),
    S("GET", "/v2/auth/users", headers={"Authorization": "Basic cm9vdDpwdw"}),
    S("DELETE", "/v2/auth/users/root", user="root:pw"),
    # --- the keys API under auth ----------------------------------------------------------
    S("GET", "/v2/keys/pub/a/b", note="guest may read /pub/*"),
    S("GET", "/v2/keys/pub/a/b", headers={"Authorization": ""}),
    S("GET", "/v2/keys/pub/a/b", headers={"Authorization": "Bearer x"}),
    S("GET", "/v2/keys/pub/a/b", headers={"Authorization": "Basic !!!"}),
    S("GET", "/v2/keys/pub/a/b", user="nocolon"),
    S("GET", "/v2/keys/pub/a/b", user="alice:bad", note="bad credentials: no guest fallback"),
    S("GET", "/v2/keys/pub/?recursive=true", note="guest: plain match even if recursive"),
    S("GET", "/v2/keys/pub?recursive=true"),
    S("GET", "/v2/keys/pub"),
    S("PUT", "/v2/keys/pub/z", "value=1", ct=FORM),
    S("GET", "/v2/keys"),
    S("GET", "/v2/keys/app/x", user="lng:" + LONG + "other", note="bcrypt: 72 bytes"),
    S("GET", "/v2/keys/app", user="lng:" + LONG),
    S("GET", "/v2/keys/app/", user="lng:" + LONG),
    S("GET", "/v2/keys/app?recursive=true", user="lng:" + LONG),
    S("GET", "/v2/keys/app/?recursive=true", user="lng:" + LONG),
    S("GET", "/v2/keys/exact?recursive=true", user="lng:" + LONG),
    S("PUT", "/v2/keys/app", "value=1", ct=FORM, user="lng:" + LONG),
    S("PUT", "/v2/keys/app/q", "value=1", ct=FORM, user="lng:" + LONG),
    S("PUT", "/v2/keys/app/q", "value=1", ct=FORM, user="alice:a"),
    S("DELETE", "/v2/keys/app", user="alice:a"),
    S("DELETE", "/v2/keys/app", user="root:pw"),
    S("POST", "/v2/members", {"peerURLs": ["http://127.0.0.1:1"]}, note="root only"),
    S("DELETE", "/v2/members/1234", user="alice:a"),
    # --- disable, re-enable ---------------------------------------------------------------
    S("DELETE", "/v2/auth/roles/guest", user="root:pw"),
    S("GET", "/v2/keys/pub/a/b", note="no guest role: no anonymous access"),
    S("DELETE", "/v2/auth/users/adm", user="adm:p:x"),
    S("DELETE", "/v2/auth/enable", user="alice:a"),
    S("DELETE", "/v2/auth/enable", user="root:pw"),
    S("DELETE", "/v2/auth/enable", user="root:pw"),
    S("PUT", "/v2/auth/enable", note="creates the guest role again: +2"),
    S("GET", "/v2/auth/roles/guest", user="root:pw"),
    S("DELETE", "/v2/auth/enable", user="root:pw"),
    S("DELETE", "/v2/auth/users/root"),
    S("GET", "/v2/keys/"),
]


def send(base_url: str, entry: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """One request on a fresh connection; the response as the transcript records it."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        body = entry["body"].encode() if entry["body"] else None
        conn.putrequest(entry["method"], entry["path"], skip_accept_encoding=True)
        for name, value in entry["headers"].items():
            conn.putheader(name, value)
        if body is not None or entry["method"] in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
        headers: dict[str, str] = {}
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in KEPT_HEADERS and lower not in headers:
                headers[lower] = "<cluster-id>" if lower == "x-etcd-cluster-id" else value
        return {
            "status": response.status,
            "response_headers": headers,
            "response_body": raw.decode("utf-8", errors="replace"),
        }
    finally:
        conn.close()


def record(base_url: str) -> list[dict[str, Any]]:
    return [{**entry, **send(base_url, entry)} for entry in STEPS]


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="dockyard-auth-rec-"))
    server = start_etcd(base, name="rec")
    try:
        transcript = record(server.url)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    FIXTURE.write_text(json.dumps(transcript, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(transcript)} exchanges to {FIXTURE}")


if __name__ == "__main__":
    main()
