"""compose/http.py and EngineClient on it, against a real tiny asyncio HTTP/1.1 server.

The server (``TinyEngine``) runs in the test's loop on a unix socket, or on TLS loopback
with docker-style client certificates (``DOCKER_CERT_PATH`` with ca.pem/cert.pem/key.pem,
``DOCKER_TLS_VERIFY=1``, the server requiring a client cert). It numbers its connections,
so the tests see reuse; it answers with Content-Length, chunked, and read-to-EOF bodies,
and drops connections on purpose. Every wait is for a condition, bounded by
``asyncio.timeout``; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.compose.client import (
    EngineAddress,
    EngineClient,
    EngineError,
    engine_address,
    tls_context,
)
from dockyard.compose.http import (
    ConnectionClosedError,
    ConnectionPool,
    Endpoint,
    ReadTimeout,
    Timeouts,
)
from tests.support.tls import make_tls_material

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT_S = 10.0
TIMEOUTS = Timeouts(connect_s=WAIT_S, read_s=WAIT_S, write_s=WAIT_S)
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


# --- the tiny engine --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    connection: int
    method: str
    path: str  # without the /vX.Y prefix and the query
    target: str
    headers: dict[str, str]
    body: bytes


class TinyEngine:
    """An HTTP/1.1 server speaking just enough of the Engine API for these tests."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[Request] = []
        self.in_flight = 0
        self.gathered = asyncio.Condition()
        self.proceed = asyncio.Event()  # /chunks sends its second chunk once set
        self.peer_closed = asyncio.Event()  # /endless saw the client close
        self.ended = 0  # connections closed (by either side)
        self.ending = asyncio.Condition()
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[Writer] = set()

    async def serve(self, reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        try:
            while await self._one(number, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            async with self.ending:
                self.ended += 1
                self.ending.notify_all()

    async def wait_ended(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self.ending:
            await self.ending.wait_for(lambda: self.ended >= count)

    async def shutdown(self) -> None:
        for writer in list(self._writers):
            writer.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _one(self, number: int, reader: Reader, writer: Writer) -> bool:
        """Serve one request; False when the connection is to end."""
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *lines = raw.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, version = request_line.split(" ")
        assert version == "HTTP/1.1"
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        path = target.split("?", 1)[0]
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        request = Request(number, method, path, target, headers, body)
        self.requests.append(request)
        route = ROUTES.get(path)
        if route is None:
            await answer_json(writer, 404, {"message": f"page not found: {path}"})
            return True
        return await route(self, request, reader, writer)


async def answer_json(writer: Writer, status: int, document: object) -> None:
    body = json.dumps(document).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Api-Version: 1.41\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


async def version(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    await answer_json(writer, 200, {"ApiVersion": "1.41", "Version": "tiny"})
    return True


async def echo(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    await answer_json(
        writer,
        200,
        {
            "connection": r.connection,
            "method": r.method,
            "target": r.target,
            "content_type": r.headers.get("content-type"),
            "auth": r.headers.get("x-registry-auth"),
            "host": r.headers.get("host"),
            "body": r.body.decode(),
        },
    )
    return True


async def gather(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    """Answers only once ``n`` requests are in at the same time: proof of parallelism."""
    wanted = int(r.target.rsplit("n=", 1)[1])
    async with engine.gathered:
        engine.in_flight += 1
        engine.gathered.notify_all()
        await engine.gathered.wait_for(lambda: engine.in_flight >= wanted)
    await answer_json(writer, 200, {"connection": r.connection})
    return True


async def chunks(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    writer.write(CHUNKED_HEAD + chunk(b'{"status":"first"}\n'))
    await writer.drain()
    await engine.proceed.wait()
    writer.write(chunk(b'{"status":') + chunk(b'"second"}\n') + b"0\r\n\r\n")
    await writer.drain()
    return True


async def stream_error(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    # /images/create reports a failed pull inside a 200 stream
    writer.write(
        CHUNKED_HEAD
        + chunk(b'{"status":"Pulling"}\n{"error":"manifest unknown",')
        + chunk(b'"errorDetail":{"message":"manifest unknown"}}\n')
        + b"0\r\n\r\n"
    )
    await writer.drain()
    return True


async def drop(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()
    return False


async def drop_chunked(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    writer.write(CHUNKED_HEAD + chunk(b"partial") + b"20\r\nonly this")
    await writer.drain()
    return False


async def endless(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    """A followed log: one chunk, then silence until the client goes away."""
    writer.write(CHUNKED_HEAD + chunk(b"tick\n"))
    await writer.drain()
    with contextlib.suppress(ConnectionError):
        await reader.read(1)  # b"" (or a reset): the client closed the connection
    engine.peer_closed.set()
    return False


async def until_close(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it, then EOF")
    await writer.drain()
    return False


async def then_close(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    """A keep-alive answer, after which the server closes the idle connection anyway."""
    await answer_json(writer, 200, {"connection": r.connection})
    return False


async def silent(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    await reader.read(1)  # never answers; ends when the client gives up
    return False


async def error(engine: TinyEngine, r: Request, reader: Reader, writer: Writer) -> bool:
    await answer_json(writer, 404, {"message": "No such container: ghost"})
    return True


Route = Callable[[TinyEngine, Request, Reader, Writer], Awaitable[bool]]
ROUTES: dict[str, Route] = {
    "/version": version,
    "/echo": echo,
    "/gather": gather,
    "/chunks": chunks,
    "/images/create": stream_error,
    "/drop": drop,
    "/drop-chunked": drop_chunked,
    "/endless": endless,
    "/until-close": until_close,
    "/then-close": then_close,
    "/silent": silent,
    "/containers/ghost/json": error,
}


# --- fixtures ---------------------------------------------------------------------------------


@dataclass
class Served:
    engine: TinyEngine
    address: EngineAddress

    def endpoint(self) -> Endpoint:
        if self.address.socket_path is not None:
            return Endpoint(host_header="docker", socket_path=self.address.socket_path)
        port = int(self.address.base_url.rsplit(":", 1)[1])
        return Endpoint(
            host_header=f"127.0.0.1:{port}",
            host="127.0.0.1",
            port=port,
            ssl_context=tls_context(self.address),
        )


@contextlib.asynccontextmanager
async def serving(transport: str, tmp: Path) -> AsyncIterator[Served]:
    engine = TinyEngine()
    if transport == "unix":
        sock = tmp / "e.sock"
        server = await asyncio.start_unix_server(engine.serve, path=str(sock))
        address = engine_address({"DOCKER_HOST": f"unix://{sock}"})
    else:
        material = make_tls_material(tmp / "tls")
        certs = tmp / "docker-certs"  # what DOCKER_CERT_PATH holds for the docker CLI
        certs.mkdir()
        shutil.copy(material.ca_cert, certs / "ca.pem")
        shutil.copy(material.client_cert, certs / "cert.pem")
        shutil.copy(material.client_key, certs / "key.pem")
        server = await asyncio.start_server(
            engine.serve, "127.0.0.1", 0, ssl=material.server_context(trusted_ca=True)
        )
        port = server.sockets[0].getsockname()[1]
        address = engine_address(
            {
                "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(certs),
            }
        )
    try:
        yield Served(engine, address)
    finally:
        server.close()
        await engine.shutdown()
        await server.wait_closed()


@pytest.fixture(params=["unix", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def pool_for(served: Served) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(served.endpoint(), TIMEOUTS)
    try:
        yield pool
    finally:
        await pool.aclose()


# --- the pool -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sequential_requests_reuse_one_connection(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        seen = []
        for _ in range(5):
            response = await pool.request("GET", "/echo")
            assert response.status == 200
            seen.append(response.json()["connection"])
        assert seen == [1] * 5
        assert served.engine.connections == 1
        assert (pool.idle_count, pool.busy_count) == (1, 0)


@pytest.mark.asyncio
async def test_parallel_requests_each_get_a_connection(transport: str, tmp_path: Path) -> None:
    n = 6
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        async with asyncio.timeout(WAIT_S):
            answers = await asyncio.gather(
                *(pool.request("GET", f"/gather?n={n}") for _ in range(n))
            )
        assert sorted(a.json()["connection"] for a in answers) == list(range(1, n + 1))
        assert pool.idle_count == n  # all kept for the next burst
        # the next burst reuses them
        again = await asyncio.gather(*(pool.request("GET", "/echo") for _ in range(n)))
        assert {a.json()["connection"] for a in again} <= set(range(1, n + 1))
        assert served.engine.connections == n


@pytest.mark.asyncio
async def test_a_chunked_stream_arrives_as_sent(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        async with pool.stream("GET", "/chunks") as response:
            assert response.status == 200
            pieces = response.aiter_bytes()
            async with asyncio.timeout(WAIT_S):
                # the server holds the rest back until we saw the first chunk
                assert await anext(pieces) == b'{"status":"first"}\n'
                served.engine.proceed.set()
                rest = [piece async for piece in pieces]
        assert b"".join(rest) == b'{"status":"second"}\n'
        # read to its end: the connection is reused
        assert (await pool.request("GET", "/echo")).json()["connection"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/drop", "10 of 100 body bytes"),
        ("/drop-chunked", "in the middle of a chunked response"),
    ],
)
async def test_a_connection_dropped_mid_body_is_a_clear_error(
    transport: str, tmp_path: Path, path: str, message: str
) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        with pytest.raises(ConnectionClosedError, match=message):
            await pool.request("GET", path)
        assert (pool.idle_count, pool.busy_count) == (0, 0)
        # the pool goes on with a new connection
        assert (await pool.request("GET", "/echo")).json()["connection"] == 2


@pytest.mark.asyncio
async def test_a_stream_stopped_early_closes_its_connection(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        async with pool.stream(
            "GET", "/endless", timeouts=Timeouts(WAIT_S, None, WAIT_S)
        ) as response:
            async for piece in response.aiter_bytes():
                assert piece == b"tick\n"
                break
        assert (pool.idle_count, pool.busy_count) == (0, 0)
        async with asyncio.timeout(WAIT_S):
            await served.engine.peer_closed.wait()


@pytest.mark.asyncio
async def test_a_body_read_to_eof_does_not_keep_the_connection(
    transport: str, tmp_path: Path
) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        response = await pool.request("GET", "/until-close")
        assert response.content == b"all of it, then EOF"
        assert pool.idle_count == 0
        assert (await pool.request("GET", "/echo")).json()["connection"] == 2


@pytest.mark.asyncio
async def test_an_idle_connection_the_engine_closed_is_replaced(
    transport: str, tmp_path: Path
) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        assert (await pool.request("GET", "/then-close")).json()["connection"] == 1
        await served.engine.wait_ended(1)
        # Whether or not the client has seen the close yet, a GET succeeds: on a new
        # connection, or replayed on one (Go's net/http does the same; a POST is only
        # replayed when the close was seen before it was sent).
        assert (await pool.request("GET", "/echo")).json()["connection"] == 2
        assert served.engine.connections == 2


@pytest.mark.asyncio
async def test_a_silent_engine_is_a_read_timeout(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served, pool_for(served) as pool:
        with pytest.raises(ReadTimeout):
            await pool.request("GET", "/silent", timeouts=Timeouts(WAIT_S, 0.2, WAIT_S))
        assert (pool.idle_count, pool.busy_count) == (0, 0)


# --- EngineClient on it -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_engine_client_negotiates_and_sends_json(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served:
        async with EngineClient(served.address) as client:
            assert client.api_version == "1.41"
            answer = await client.request(
                "POST",
                "/echo",
                params={"filters": json.dumps({"label": ["a=b c"]})},
                body={"Image": "busybox"},
                headers={"X-Registry-Auth": "e30="},
            )
        assert answer["method"] == "POST"
        assert answer["target"] == (
            "/v1.41/echo?filters=%7B%22label%22%3A%20%5B%22a%3Db%20c%22%5D%7D"
        )
        assert answer["content_type"] == "application/json"
        assert answer["auth"] == "e30="
        assert json.loads(answer["body"]) == {"Image": "busybox"}
        expected_host = "docker" if transport == "unix" else served.address.base_url[8:]
        assert answer["host"] == expected_host
        # negotiation and the request shared one connection
        assert served.engine.connections == 1


@pytest.mark.asyncio
async def test_engine_client_errors_and_progress_streams(transport: str, tmp_path: Path) -> None:
    async with serving(transport, tmp_path) as served, EngineClient(served.address) as client:
        with pytest.raises(EngineError, match="No such container: ghost") as err:
            await client.inspect_container("ghost")
        assert err.value.status == 404
        items = []
        with pytest.raises(EngineError, match="manifest unknown"):
            async for item in client.pull("busybox:latest"):
                items.append(item)
        assert items == [{"status": "Pulling"}]
        pull = served.engine.requests[-1]
        assert pull.target == "/v1.41/images/create?fromImage=busybox&tag=latest"


@pytest.mark.asyncio
async def test_no_engine_is_the_docker_cli_message(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/missing.sock"
    client = EngineClient(engine_address({"DOCKER_HOST": host}))
    with pytest.raises(EngineError) as err:
        await client.__aenter__()
    assert str(err.value) == (
        f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running?"
    )


@pytest.mark.asyncio
async def test_an_untrusted_engine_certificate_is_an_error_during_connect(
    tmp_path: Path,
) -> None:
    async with serving("tls", tmp_path) as served:
        foreign = make_tls_material(tmp_path / "foreign")
        certs = tmp_path / "foreign-certs"
        certs.mkdir()
        shutil.copy(foreign.other_ca_cert, certs / "ca.pem")  # not the engine's CA
        address = engine_address(
            {
                "DOCKER_HOST": "tcp://" + served.address.base_url[len("https://") :],
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(certs),
            }
        )
        client = EngineClient(address)
        with pytest.raises(EngineError, match=r"^error during connect: .*CERTIFICATE_VERIFY"):
            await client.__aenter__()


def test_a_tcp_host_without_a_port_gets_the_docker_cli_default() -> None:
    plain = engine_address({"DOCKER_HOST": "tcp://10.0.0.7"})
    assert (plain.base_url, plain.tls) == ("http://10.0.0.7:2375", None)
    tls = engine_address(
        {"DOCKER_HOST": "tcp://[::1]", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}
    )
    assert tls.base_url == "https://[::1]:2376"
    assert engine_address({"DOCKER_HOST": "tcp://h:1234/"}).base_url == "http://h:1234"
    with pytest.raises(EngineError, match="unable to parse docker host"):
        engine_address({"DOCKER_HOST": "tcp://h:port"})
