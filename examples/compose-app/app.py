"""The example's web service: counts its visits in the key-value backend (issue 7).

A stdlib-only HTTP server on port 5000. Each GET of `/` sends `INCR hits` to the backend
(host `redis`, the service name the Compose file links to, port 6379) in RESP, Redis's
protocol, and answers with the new count. `/health` answers without touching the backend.
"""

from __future__ import annotations

import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BACKEND_HOST = os.environ.get("REDIS_HOST", "redis")
BACKEND_PORT = int(os.environ.get("REDIS_PORT", "6379"))
LISTEN_PORT = int(os.environ.get("PORT", "5000"))
BACKEND_TIMEOUT_S = 5.0


class BackendError(Exception):
    """The backend answered with a RESP error or not at all."""


def resp_command(*parts: str) -> bytes:
    """A RESP array of bulk strings: how every Redis client sends a command."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def incr(key: str) -> int:
    """`INCR key` on the backend; its integer reply (`:<n>\\r\\n`)."""
    with socket.create_connection((BACKEND_HOST, BACKEND_PORT), BACKEND_TIMEOUT_S) as conn:
        conn.sendall(resp_command("INCR", key))
        reply = conn.makefile("rb").readline()
    if not reply.startswith(b":"):
        raise BackendError(reply.decode(errors="replace").strip() or "no reply")
    return int(reply[1:])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, "ok\n")
            return
        if self.path != "/":
            self._answer(404, "not found\n")
            return
        try:
            count = incr("hits")
        except (OSError, BackendError) as exc:
            self._answer(503, f"backend unavailable: {exc}\n")
            return
        self._answer(200, f"Hello from Docker! I have been seen {count} times.\n")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print(f"web: listening on :{LISTEN_PORT}, backend {BACKEND_HOST}:{BACKEND_PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", LISTEN_PORT), Handler).serve_forever()
