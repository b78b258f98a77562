"""Micro-benchmark: `dockyard.http.server` answering a fixed etcd-v2-shaped GET response.

Not a test. It measures the server alone (parse, dispatch, render, write), the ceiling for the
keys API. Run the server on one core and wrk on the other:

    taskset -c 0 .venv/bin/python benchmarks/http_server_hello.py --port 8080 &
    taskset -c 1 wrk -t1 -c64 -d5s http://127.0.0.1:8080/v2/keys/foo
    kill %1

Reference: etcd 3.4 serves ~29,700 GET /v2/keys req/s with the same wrk settings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

import uvloop

from dockyard.http.server import HttpServer
from dockyard.http.types import Request, Response

BODY = b'{"action":"get","node":{"key":"/foo","value":"bar","modifiedIndex":7,"createdIndex":7}}'
RESPONSE = Response(
    200,
    BODY,
    content_type="application/json",
    headers=(("X-Etcd-Cluster-Id", "cdf818194e3a8c32"), ("X-Etcd-Index", "7")),
)


def handler(request: Request) -> Response:
    return RESPONSE


async def main(host: str, port: int) -> None:
    server = HttpServer(handler)
    await server.listen(host, port)
    print(f"serving on http://{host}:{port}/ (Ctrl-C or SIGTERM to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] | None = (
        uvloop.new_event_loop if args.loop == "uvloop" else None
    )
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.host, args.port))
