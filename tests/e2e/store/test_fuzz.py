"""A seeded fuzz of dockyard's HTTP API: random requests, raw bytes on the wire, judged by rules
that hold for etcd 3.4.

Properties checked for every answer (etcd never breaks them; there is no documented 500 in the
v2 API except error 300 when raft has no quorum, which a single member never lacks):
- no 5xx at all;
- a keys-API answer with `Content-Type: application/json` is one valid JSON object ending in
  `\\n` (Go's json.Encoder), either an event (`action`) or an error (`errorCode`, `message`),
  with an `X-Etcd-Index` header; any other keys-API answer is one of Go's plain-text ones
  (301 for unclean paths, 400 bad request, 405 wrong method, 200 for OPTIONS);
- raw garbage gets a 4xx or a closed connection, never a hang (the client half-closes first).
After the run the process must still be alive and answer /health, /version and a keys GET; it
is also probed every 250 requests, so a crash points at a narrow window.

Replay: DOCKYARD_FUZZ_SEED=<seed> (printed on failure) and DOCKYARD_FUZZ_COUNT=<n>.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.support.servers import ServerProcess, start_dockyard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SEED = int(os.environ.get("DOCKYARD_FUZZ_SEED", "424242"))
COUNT = int(os.environ.get("DOCKYARD_FUZZ_COUNT", "2000"))
READ_TIMEOUT_S = 10.0
WATCH_GRACE_S = 0.3  # a watch that has not fired by then is armed and waiting: that is fine
HEALTH_EVERY = 250
MAX_REPORTED = 15

METHODS = ["GET"] * 6 + ["PUT"] * 6 + ["POST"] * 2 + ["DELETE"] * 3 + ["HEAD"]
ODD_METHODS = ["PATCH", "OPTIONS", "TRACE", "FROB", "get", "Put", "M-SEARCH", "X" * 40, "PROPFIND"]
ROOTS = (
    ["/v2/keys"] * 12
    + ["/v2/keys/", "/v2/members", "/v2/members/leader", "/v2/stats/self", "/v2/stats/store"]
    + ["/v2/stats/leader", "/v2/machines", "/version", "/health", "/v2/auth/users", "/v2"]
    + ["/", "", "/metrics", "/v2/keysx", "/v2/auth/enable", "/v2/members/abc"]
    + ["/v2/members"] * 3  # the other API that writes
)
PLAIN_SEGMENTS = ["a", "b", "c", "fz", "_h", "ü", "✓", "%E2%9C%93", "~", "00000000000000000001"]
ODD_SEGMENTS = [
    "_", "%", "%2F", "%2f", "%zz", "%f", "..", ".", "", "%ff", "%00", "%20", "a b", ";x", "&",
    "=", "+", "?", "#",
]  # fmt: skip
PARAMS = [
    "value", "ttl", "dir", "prevExist", "prevValue", "prevIndex", "recursive", "sorted", "wait",
    "waitIndex", "stream", "quorum", "refresh", "noValueOnSuccess", "Value", "unknown",
]  # fmt: skip
VALUES = [
    "", "true", "false", "1", "0", "t", "F", "TRUE", "yes", "-1", "abc", "1.5", "+5",
    "18446744073709551615", "18446744073709551616", "99999999999999999999999999999", "%ff%fe",
    "%zz", "%", "✓", "%E2%9C%93", "a%00b", "<&>", "x" * 300, "3", "100",
]  # fmt: skip
GOOD_VALUES = ["true", "false", "1", "0", "3", "100", "v", "✓", "%E2%9C%93"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin1",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=zz",
    "application/x-www-form-urlencoded\x00",
    None,
]
# Plain-text answers Go's mux and server give on the keys path (see the spec, section 10).
BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
PLAIN_KEYS_STATUSES = {200, 301, 400, 404, 405, 413, 431, 501, 505}


@dataclass
class Probe:
    raw: bytes
    path: str  # the target's path, for classification
    method: str
    watch: bool  # GET with a true `wait`: may block until an event
    garbage: bool = False

    def describe(self) -> str:
        shown = self.raw if len(self.raw) <= 400 else self.raw[:400] + b"..."
        return repr(shown)


@dataclass
class Answer:
    status: int  # 0: no HTTP answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    note: str = ""  # why there is no (complete) answer


# --- generation -----------------------------------------------------------------------------


def random_query(rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
        name = rng.choice(PARAMS)
        value = rng.choice(GOOD_VALUES if rng.random() < 0.6 else VALUES)
        if rng.random() < 0.5:
            value = quote(value, safe="%")
        pairs.append(f"{name}={value}" if rng.random() < 0.95 else name)
    return "&".join(pairs)


def random_target(rng: random.Random) -> tuple[str, str]:
    root = rng.choice(ROOTS)
    segments = [
        rng.choice(ODD_SEGMENTS if rng.random() < 0.15 else PLAIN_SEGMENTS)
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 5]))
    ]
    path = root + ("/" + "/".join(segments) if segments else "")
    if root.startswith("/v2/keys") and segments and rng.random() < 0.8:
        path = "/v2/keys/fz/" + "/".join(segments)  # mostly inside one subtree
    query = random_query(rng)
    return (path + ("?" + query if query else "")), path


def random_body(rng: random.Random) -> tuple[bytes, str | None]:
    kind = rng.random()
    content_type = rng.choice(CONTENT_TYPES)
    if kind < 0.3:
        return b"", content_type
    if kind < 0.75:
        return random_query(rng).encode("utf-8", "surrogatepass"), content_type
    if kind < 0.85:
        return json.dumps({"value": rng.choice(VALUES)}).encode(), content_type
    if kind < 0.97:
        return rng.randbytes(rng.randrange(1, 200)), content_type
    return b"value=" + b"y" * rng.randrange(10_000, 300_000), content_type


def is_true(value: str) -> bool:
    return value in ("1", "t", "T", "TRUE", "true", "True")


def random_probe(rng: random.Random) -> Probe:
    if rng.random() < 0.04:
        return garbage_probe(rng)
    method = rng.choice(METHODS) if rng.random() < 0.93 else rng.choice(ODD_METHODS)
    target, path = random_target(rng)
    if rng.random() < 0.02:
        target = target.replace("/", "//", 1)
    body, content_type = (b"", None)
    if method in ("PUT", "POST", "PATCH", "DELETE") or rng.random() < 0.1:
        body, content_type = random_body(rng)
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    if content_type is not None and (body or rng.random() < 0.5):
        head += b"Content-Type: " + content_type.encode() + b"\r\n"
    if body or method in ("PUT", "POST"):
        head += f"Content-Length: {len(body)}\r\n".encode()
    query = target.partition("?")[2]
    flags = dict(p.partition("=")[::2] for p in query.split("&") if p)
    watch = method == "GET" and (is_true(flags.get("wait", "")) or "wait" in query)
    return Probe(head + b"\r\n" + body, path, method, watch)


def garbage_probe(rng: random.Random) -> Probe:
    choices = [
        lambda: rng.randbytes(rng.randrange(1, 400)),
        lambda: b"GET " + rng.randbytes(20) + b" HTTP/1.1\r\nHost: x\r\n",
        lambda: b"PUT /v2/keys/fz/g HTTP/1.1\r\nHost: x\r\nContent-Length: " + rng.randbytes(4),
        lambda: (
            b"POST /v2/keys/fz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + rng.randbytes(30)
        ),
        lambda: b"GET /v2/keys/fz HTTP/1.1\r\n" + b"X-Long: " + b"h" * rng.randrange(1, 70_000),
        lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64),
        lambda: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]
    raw = rng.choice(choices)() + b"\r\n\r\n"
    return Probe(raw, "", "", watch=False, garbage=True)


# --- the wire ---------------------------------------------------------------------------------


def send(url: str, probe: Probe) -> Answer:
    parts = urlsplit(url)
    deadline = time.monotonic() + READ_TIMEOUT_S
    with socket.create_connection((parts.hostname, parts.port), timeout=READ_TIMEOUT_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(probe.raw)
            if probe.garbage:
                sock.shutdown(socket.SHUT_WR)  # EOF: the server must answer or close now
        buf = bytearray()
        try:
            while b"\r\n\r\n" not in buf:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    return Answer(0, note=f"closed after {bytes(buf[:100])!r}")
                buf += chunk
        except ConnectionResetError:
            return Answer(0, note="reset")
        except TimeoutError:
            return Answer(0, note=f"no answer within {READ_TIMEOUT_S}s: hang")
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            return Answer(0, note=f"not an HTTP response: {head[:100]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = Answer(int(status_line[1]), headers, b"")
        if probe.method == "HEAD" or answer.status in (204, 304):
            return answer
        body = bytearray(rest)
        # A watch may be armed and waiting for an event: read what comes within a grace period.
        read_until = time.monotonic() + WATCH_GRACE_S if probe.watch else deadline
        try:
            if "content-length" in headers:
                need = int(headers["content-length"])
                while len(body) < need:
                    sock.settimeout(max(0.01, read_until - time.monotonic()))
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    body += chunk
                answer.body = bytes(body[:need])
                if len(body) < need:
                    answer.note = f"body cut at {len(body)} of {need} bytes"
            else:
                answer.body = read_chunked(sock, body, read_until)
        except TimeoutError:
            answer.note = "watch waiting" if probe.watch else "body timed out"
            answer.body = bytes(body)
        except ConnectionResetError:
            answer.note = "reset inside the body"
        return answer


def read_chunked(sock: socket.socket, buf: bytearray, until: float) -> bytes:
    out = bytearray()
    while True:
        while b"\r\n" not in buf:
            sock.settimeout(max(0.01, until - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(out)
            buf += chunk
        size_line, _, rest = bytes(buf).partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        while len(rest) < size + 2:
            sock.settimeout(max(0.01, until - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(out + rest[:size])
            rest += chunk
        out += rest[:size]
        buf[:] = rest[size + 2 :]


# --- judging ------------------------------------------------------------------------------------


def etcd_answers_500_too(probe: Probe, answer: Answer) -> bool:
    """The one 500 etcd 3.4.23 gives to a client (verified): an auth-API request whose query has
    a bad %-escape gets `500 {"message":"Internal Server Error"}` (the form parse error is
    reported as an internal one)."""
    target = probe.raw.split(b" ", 2)[1] if probe.raw.count(b" ") >= 2 else b""
    return (
        probe.path.startswith("/v2/auth")
        and answer.status == 500
        and answer.body == b'{"message":"Internal Server Error"}'
        and BAD_ESCAPE.search(target.partition(b"?")[2]) is not None
    )


def problems(probe: Probe, answer: Answer) -> list[str]:
    found = []
    if probe.garbage:
        # Some "garbage" is a request after all (a long header, say): only 5xx and hangs count.
        if answer.status == 0 and "hang" in answer.note:
            found.append("garbage: neither answered nor closed after EOF")
        if answer.status >= 500:
            found.append(f"garbage answered {answer.status}")
        return found
    if answer.status >= 500 and not etcd_answers_500_too(probe, answer):
        found.append(f"{answer.status} answer")
    if answer.status == 0 and "hang" in answer.note:
        found.append("no answer (hang)")
    keys_api = probe.path.startswith("/v2/keys") and not probe.path.startswith("/v2/keysx")
    if not keys_api or answer.status == 0:
        return found
    content_type = answer.headers.get("content-type", "")
    if content_type == "application/json":
        if "x-etcd-index" not in answer.headers:
            found.append("JSON keys answer without X-Etcd-Index")
        if probe.method == "HEAD" or answer.note == "watch waiting":
            return found
        if answer.note:
            found.append(f"incomplete body: {answer.note}")
            return found
        try:
            parsed = json.loads(answer.body)
        except ValueError as error:
            return [*found, f"invalid JSON ({error}): {answer.body[:300]!r}"]
        if not answer.body.endswith(b"\n"):
            found.append("JSON body without Go's trailing newline")
        if not isinstance(parsed, dict) or not (
            "action" in parsed or {"errorCode", "message"} <= set(parsed)
        ):
            found.append(f"JSON is neither an event nor an error: {answer.body[:300]!r}")
    elif answer.status not in PLAIN_KEYS_STATUSES:
        found.append(f"keys answer {answer.status} with Content-Type {content_type!r}")
    return found


# --- the run --------------------------------------------------------------------------------------


@pytest.fixture
def dockyard() -> Iterator[ServerProcess]:
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="dockyard-fuzz-", dir=shm if shm.is_dir() else None))
    started: list[ServerProcess] = []
    try:
        started.append(start_dockyard(base, name="fuzz"))
        yield started[0]
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def healthy(server: ServerProcess) -> str | None:
    """None if the server is alive and answers; else what is wrong."""
    if server.process.poll() is not None:
        return f"process exited with {server.process.returncode}"
    for target, expect in (("/health", b'{"health":"true"}'), ("/version", b"etcdserver")):
        probe = Probe(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
            target,
            "GET",
            False,
        )
        answer = send(server.url, probe)
        if answer.status != 200 or expect not in answer.body:
            return f"GET {target} -> {answer.status} {answer.body[:200]!r} {answer.note}"
    keys = send(
        server.url,
        Probe(
            b"GET /v2/keys/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "/v2/keys/",
            "GET",
            False,
        ),
    )
    if keys.status != 200:
        return f"GET /v2/keys/ -> {keys.status} {keys.body[:200]!r}"
    return None


def test_fuzz_http_api_no_5xx_valid_json_still_alive(dockyard: ServerProcess) -> None:
    rng = random.Random(SEED)
    replay = f"DOCKYARD_FUZZ_SEED={SEED} DOCKYARD_FUZZ_COUNT={COUNT}"
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for number in range(COUNT):
        probe = random_probe(rng)
        answer = send(dockyard.url, probe)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        for problem in problems(probe, answer):
            failures.append(
                f"#{number} {problem}\n  request: {probe.describe()}\n"
                f"  answer: {answer.status} {answer.headers.get('content-type')!r} "
                f"{answer.body[:300]!r} {answer.note}"
            )
        if (number + 1) % HEALTH_EVERY == 0 or number == COUNT - 1:
            wrong = healthy(dockyard)
            assert wrong is None, (
                f"server unhealthy after request #{number} ({wrong}); seed {SEED}: {replay}\n"
                f"last request: {probe.describe()}\n--- server log ---\n{dockyard.log()}"
            )
    assert not failures, (
        f"{len(failures)} of {COUNT} requests broke a rule; seed {SEED}, replay with {replay}\n"
        + "\n".join(failures[:MAX_REPORTED])
        + f"\nstatus counts: {sorted(statuses.items())}\n--- server log ---\n{dockyard.log()}"
    )
    # The fuzz must have reached the interesting places, or it proves little.
    assert statuses.get(200, 0) + statuses.get(201, 0) > COUNT // 20, statuses
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > COUNT // 10, statuses
