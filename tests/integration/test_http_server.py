"""Integration tests for `dockyard.http.server` over real loopback sockets.

Clients are raw asyncio streams so the tests see exactly the bytes the server sends (order of
pipelined answers, headers before the first chunk, 100 Continue, connection close). Every
wait is for a condition, bounded by `asyncio.timeout`; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockyard.http.server import HttpServer, serve
from dockyard.http.types import HijackedStream, HijackResponse, Request, Response, StreamingResponse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

WAIT_S = 5.0

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


# --- a tiny HTTP/1.1 client that shows us the raw framing ------------------------------------


async def read_head(reader: Reader) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    pairs = []
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            pairs.append((name, value.strip()))
    return int(status), {n.lower(): v for n, v in pairs}, pairs


async def read_chunk(reader: Reader) -> bytes:
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.strip(), 16)
    data = await reader.readexactly(size + 2)
    assert data.endswith(b"\r\n")
    return data[:-2]


async def read_response(reader: Reader, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    status, headers, _ = await read_head(reader)
    if head or status in (204, 304) or status < 200:
        return status, headers, b""
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while chunk := await read_chunk(reader):
            body += chunk
        return status, headers, body
    return status, headers, await reader.readexactly(int(headers["content-length"]))


async def connect(server: HttpServer, **kwargs: object) -> tuple[Reader, Writer]:
    host, port = server.addresses[0]
    return await asyncio.open_connection(host, port, **kwargs)  # type: ignore[arg-type]


async def assert_closed(reader: Reader) -> None:
    async with asyncio.timeout(WAIT_S):
        assert await reader.read() == b""


def request(method: str, target: str, body: bytes = b"", *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *extra]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def echo(req: Request) -> Response:
    text = f"{req.method} {req.target} {req.headers.get('x-first', '-')} ".encode() + req.body
    return Response(200, text, content_type="text/plain", headers=(("X-A", "1"), ("X-B", "2")))


async def start(handler: Callable[[Request], object], **kwargs: object) -> HttpServer:
    return await serve(handler, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


# --- basics ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_head_put_on_one_keep_alive_connection() -> None:
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return echo(req)

    async with await start(handler, server_header="dockyard") as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/v2/keys/a%2Fb?x=%20y", b"", "X-First: one", "x-first: two"))
        status, headers, body = await read_response(reader)
        assert status == 200
        assert body == b"GET /v2/keys/a%2Fb?x=%20y one "
        assert headers["content-type"] == "text/plain"
        assert headers["content-length"] == str(len(body))
        assert headers["server"] == "dockyard"
        assert headers["date"].endswith(" GMT")
        assert "connection" not in headers

        writer.write(request("HEAD", "/h"))
        status, headers, body = await read_response(reader, head=True)
        assert status == 200
        assert headers["content-length"] == str(len(b"HEAD /h - "))

        writer.write(request("PUT", "/v2/keys/k", b"value=hello"))
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"PUT /v2/keys/k - value=hello")

        # The HEAD response carried no body: the PUT answer parsed cleanly right after it.
        assert [r.method for r in seen] == ["GET", "HEAD", "PUT"]
        assert seen[0].headers["x-first"] == "one"
        assert seen[0].raw_path == "/v2/keys/a%2Fb" and seen[0].raw_query == "x=%20y"
        assert len({r.remote_addr for r in seen}) == 1  # one connection for all three
        assert seen[0].remote_addr is not None and seen[0].remote_addr[0] == "127.0.0.1"
        assert seen[0].peer_cert is None
        writer.close()


@pytest.mark.asyncio
async def test_extra_headers_keep_their_order_and_no_body_statuses() -> None:
    def handler(req: Request) -> Response:
        if req.raw_path == "/204":
            return Response(204, b"ignored")
        return Response(
            201, b"{}", content_type="application/json", headers=(("Z", "1"), ("A", "2"))
        )

    async with await start(handler) as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/x"))
        status, _, pairs = await read_head(reader)
        assert status == 201
        names = [n for n, _ in pairs]
        assert names.index("Z") < names.index("A")
        assert await reader.readexactly(2) == b"{}"
        writer.write(request("GET", "/204") + request("GET", "/x"))
        status, headers, _ = await read_response(reader)
        assert status == 204 and "content-length" not in headers
        # Had the 204 carried its body, this would not parse as a status line.
        assert (await read_response(reader))[0] == 201
        writer.close()


@pytest.mark.asyncio
async def test_connection_close_and_http_1_0() -> None:
    async with await start(echo) as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/a", b"", "Connection: close"))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        await assert_closed(reader)
        writer.close()

        reader, writer = await connect(server)
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"GET /old - ")
        assert headers["connection"] == "close"
        await assert_closed(reader)
        writer.close()

        reader, writer = await connect(server)
        writer.write(b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        for _ in range(2):
            status, headers, _ = await read_response(reader)
            assert status == 200 and headers["connection"] == "keep-alive"
        writer.close()


# --- pipelining --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pipelined_requests_answered_in_order_with_async_handler() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def slow(req: Request) -> Response:
        await release.wait()
        calls.append(req.raw_path + ":done")
        return Response(200, b"slow")

    def handler(req: Request) -> Response | Awaitable[Response]:
        calls.append(req.raw_path)
        if req.raw_path == "/slow":
            return slow(req)
        return Response(200, req.raw_path.encode())

    async with await start(handler) as server:
        reader, writer = await connect(server)
        writer.write(
            request("GET", "/one") + request("GET", "/slow") + request("PUT", "/two", b"x")
        )
        async with asyncio.timeout(WAIT_S):
            assert (await read_response(reader))[2] == b"/one"
            while "/slow" not in calls:
                await asyncio.sleep(0)
        # /two is parsed but must not run while /slow is outstanding.
        conn = next(iter(server._connections))
        async with asyncio.timeout(WAIT_S):
            while len(conn._queue) < 1:
                await asyncio.sleep(0)
        assert calls == ["/one", "/slow"]
        release.set()
        async with asyncio.timeout(WAIT_S):
            assert (await read_response(reader))[2] == b"slow"
            assert (await read_response(reader))[2] == b"/two"
        assert calls == ["/one", "/slow", "/slow:done", "/two"]
        writer.close()


@pytest.mark.asyncio
async def test_many_pipelined_requests_pause_reading_and_all_get_answers() -> None:
    release = asyncio.Event()

    async def gate(req: Request) -> Response:
        await release.wait()
        return Response(200, b"first")

    def handler(req: Request) -> Response | Awaitable[Response]:
        if req.raw_path == "/gate":
            return gate(req)
        return Response(200, req.raw_path.encode())

    async with await start(handler) as server:
        reader, writer = await connect(server)
        n = 200
        writer.write(request("GET", "/gate") + b"".join(request("GET", f"/{i}") for i in range(n)))
        async with asyncio.timeout(WAIT_S):
            while not server._connections or not next(iter(server._connections))._reading_paused:
                await asyncio.sleep(0)
        conn = next(iter(server._connections))
        # One read's worth of requests is parsed; after that, reading stops, so more pipelined
        # requests wait in the kernel instead of in our memory.
        queued = len(conn._queue)
        writer.write(b"".join(request("GET", f"/{i}") for i in range(n, 2 * n)))
        await writer.drain()
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(conn._queue) == queued
        release.set()
        async with asyncio.timeout(WAIT_S):
            assert (await read_response(reader))[2] == b"first"
            for i in range(2 * n):
                assert (await read_response(reader))[2] == f"/{i}".encode()
        writer.close()


# --- request bodies ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chunked_request_body_is_collected() -> None:
    async with await start(echo) as server:
        reader, writer = await connect(server)
        writer.write(
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        await writer.drain()
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"POST /c - hello world")
        writer.close()


@pytest.mark.asyncio
async def test_expect_100_continue() -> None:
    async with await start(echo) as server:
        reader, writer = await connect(server)
        writer.write(
            b"PUT /k HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(WAIT_S):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"value")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"PUT /k - value")
        writer.close()


@pytest.mark.asyncio
async def test_body_over_limit_is_413_and_closes() -> None:
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200)

    async with await start(handler, max_body_bytes=1000) as server:
        # Declared too large: refused before the body (and before any 100 Continue).
        reader, writer = await connect(server)
        writer.write(
            b"PUT /k HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        status, headers, _ = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        await assert_closed(reader)
        writer.close()

        # Chunked, growing past the limit while streaming in; the body already sent is drained.
        reader, writer = await connect(server)
        writer.write(b"PUT /k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"200\r\n" + b"x" * 0x200 + b"\r\n" + b"200\r\n" + b"x" * 0x200 + b"\r\n")
        assert (await read_response(reader))[0] == 413
        await assert_closed(reader)
        writer.close()

        # Exactly at the limit is fine.
        reader, writer = await connect(server)
        writer.write(request("PUT", "/k", b"y" * 1000))
        assert (await read_response(reader))[0] == 200
        assert len(seen) == 1 and seen[0].body == b"y" * 1000
        writer.close()


@pytest.mark.asyncio
async def test_malformed_request_is_400_and_answers_earlier_requests_first() -> None:
    async with await start(echo) as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/ok") + b"NOT HTTP AT ALL\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /ok - "
        status, headers, body = await read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert b"Traceback" not in body
        await assert_closed(reader)
        writer.close()

        reader, writer = await connect(server)
        writer.write(b"GET /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
        assert (await read_response(reader))[0] == 400
        await assert_closed(reader)
        writer.close()


@pytest.mark.asyncio
async def test_header_limits() -> None:
    server = HttpServer(echo, max_header_bytes=4096, max_header_count=10)
    await server.listen("127.0.0.1", 0)
    async with server:
        reader, writer = await connect(server)
        writer.write(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 10_000)  # never ends its line
        assert (await read_response(reader))[0] == 431
        await assert_closed(reader)
        writer.close()

        reader, writer = await connect(server)
        writer.write(request("GET", "/", b"", *(f"X-{i}: v" for i in range(11))))
        assert (await read_response(reader))[0] == 431
        writer.close()

        reader, writer = await connect(server)
        writer.write(request("GET", "/" + "p" * 5000))
        assert (await read_response(reader))[0] == 414
        writer.close()


# --- handler errors ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_handler_exception_is_500_and_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def async_boom() -> Response:
        raise KeyError("async")

    def handler(req: Request) -> Response | Awaitable[Response]:
        if req.raw_path == "/boom":
            raise RuntimeError("sync boom")
        if req.raw_path == "/aboom":
            return async_boom()
        if req.raw_path == "/badheader":
            return Response(200, headers=(("X-Evil", "a\r\nSet-Cookie: x"),))
        return Response(200, b"fine")

    with caplog.at_level(logging.ERROR, logger="dockyard.http.server"):
        async with await start(handler) as server:
            reader, writer = await connect(server)
            for path in ("/boom", "/aboom", "/badheader"):
                writer.write(request("GET", path))
                status, headers, body = await read_response(reader)
                assert (status, body) == (500, b'{"message":"internal error"}')
                assert headers["content-type"] == "application/json"
                assert "set-cookie" not in headers
            writer.write(request("GET", "/ok"))
            assert (await read_response(reader))[2] == b"fine"
            writer.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("/boom" in m for m in messages)
    assert any("/aboom" in m for m in messages)
    assert all(r.exc_info is not None for r in caplog.records)


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stream_headers_arrive_before_first_chunk() -> None:
    first = asyncio.Event()
    second = asyncio.Event()
    closed = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            await first.wait()
            yield b'{"action":"set"}\n'
            await second.wait()
            yield b""  # skipped: an empty chunk would end the body
            yield b'{"action":"delete"}\n'
        finally:
            closed.set()

    def handler(req: Request) -> Response | StreamingResponse:
        if req.raw_path == "/watch":
            return StreamingResponse(200, chunks(), content_type="application/json")
        return Response(200, b"after")

    async with await start(handler) as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/watch") + request("GET", "/next"))
        async with asyncio.timeout(WAIT_S):
            status, headers, _ = await read_head(reader)
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert headers["content-type"] == "application/json"
        assert "content-length" not in headers
        first.set()
        assert await read_chunk(reader) == b'{"action":"set"}\n'
        second.set()
        assert await read_chunk(reader) == b'{"action":"delete"}\n'
        assert await read_chunk(reader) == b""
        assert closed.is_set()
        # The pipelined request behind the stream is answered once the stream ends.
        assert (await read_response(reader))[2] == b"after"
        writer.close()


@pytest.mark.asyncio
async def test_client_disconnect_closes_stream_iterator() -> None:
    closed = asyncio.Event()
    never = asyncio.Event()
    handler_done = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"one"
            await never.wait()
            yield b"unreachable"
        finally:
            closed.set()

    async def long_poll() -> Response:
        try:
            await never.wait()
            return Response(200)
        finally:
            handler_done.set()

    def handler(req: Request) -> StreamingResponse | Awaitable[Response]:
        if req.raw_path == "/poll":
            return long_poll()
        return StreamingResponse(200, chunks())

    async with await start(handler) as server:
        reader, writer = await connect(server)
        writer.write(request("GET", "/watch?stream=true"))
        await read_head(reader)
        assert await read_chunk(reader) == b"one"
        writer.close()
        async with asyncio.timeout(WAIT_S):
            await closed.wait()
            while server.connection_count:
                await asyncio.sleep(0)

        # An async (long-poll) handler is cancelled too when its client goes away.
        reader, writer = await connect(server)
        writer.write(request("GET", "/poll"))
        async with asyncio.timeout(WAIT_S):
            while not any(conn._task for conn in server._connections):
                await asyncio.sleep(0)
        writer.close()
        async with asyncio.timeout(WAIT_S):
            await handler_done.wait()


@pytest.mark.asyncio
async def test_stream_respects_flow_control() -> None:
    chunk = b"z" * 65536
    total = 256  # 16 MiB if nobody stops us
    produced = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(total):
            produced += 1
            yield chunk

    async with await start(lambda req: StreamingResponse(200, chunks())) as server:
        # A raw socket that nobody reads (a StreamReader would keep reading in the background).
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await loop.sock_connect(sock, server.addresses[0])
        await loop.sock_sendall(sock, request("GET", "/big"))
        async with asyncio.timeout(WAIT_S):
            while not server._connections or not next(iter(server._connections))._write_paused:
                await asyncio.sleep(0)
        before = produced
        for _ in range(50):
            await asyncio.sleep(0)
        assert produced == before < total  # the producer waits for the reader
        framed = len(b"10000\r\n") + len(chunk) + 2
        received = bytearray()
        async with asyncio.timeout(WAIT_S * 2):
            while not received.endswith(b"\r\n0\r\n\r\n"):
                data = await loop.sock_recv(sock, 1 << 20)
                assert data
                received += data
        head_len = received.index(b"\r\n\r\n") + 4
        assert len(received) == head_len + total * framed + 5
        assert produced == total
        sock.close()


# --- shutdown ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_stops_listening_closes_idle_and_ends_streams() -> None:
    closed = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()
            yield b"b"
        finally:
            closed.set()

    def handler(req: Request) -> Response | StreamingResponse:
        if req.raw_path == "/watch":
            return StreamingResponse(200, chunks())
        return Response(200, b"ok")

    server = await start(handler)
    host, port = server.addresses[0]
    idle_reader, idle_writer = await connect(server)
    idle_writer.write(request("GET", "/"))
    await read_response(idle_reader)
    stream_reader, stream_writer = await connect(server)
    stream_writer.write(request("GET", "/watch"))
    await read_head(stream_reader)
    assert await read_chunk(stream_reader) == b"a"

    async with asyncio.timeout(WAIT_S):
        await server.close()
    assert server.connection_count == 0
    assert closed.is_set()
    await assert_closed(idle_reader)
    # The stream was ended with a proper last chunk, then the connection closed.
    assert await read_chunk(stream_reader) == b""
    await assert_closed(stream_reader)
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)
    idle_writer.close()
    stream_writer.close()


@pytest.mark.asyncio
async def test_listen_on_bound_socket_and_several_listeners() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = HttpServer(echo)
    await server.listen(sock=sock)
    await server.listen("127.0.0.1", 0)
    async with server:
        assert len(server.addresses) == 2
        for host, port in server.addresses:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request("GET", "/s"))
            assert (await read_response(reader))[2] == b"GET /s - "
            writer.close()


# --- TLS ---------------------------------------------------------------------------------------


def _cert(
    subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: str | None, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.mark.asyncio
async def test_tls_requires_client_cert(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await tls_scenario(tmp_path, caplog)


def test_tls_requires_client_cert_under_uvloop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(tls_scenario(tmp_path, caplog), WAIT_S * 2))


async def tls_scenario(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca_cert, ca_key = _cert("test-ca", None, None, ca=True)
    server_cert, server_key = _cert("server", ca_key, "test-ca", ca=False)
    client_cert, client_key = _cert("client-1", ca_key, "test-ca", ca=False)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_files = _write(tmp_path / "server", server_cert, server_key)
    client_files = _write(tmp_path / "client", client_cert, client_key)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    server_ctx.load_cert_chain(*server_files)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200, b"secure")

    with caplog.at_level(logging.WARNING):
        async with await start(handler, ssl_context=server_ctx) as server:
            good = ssl.create_default_context(cafile=str(ca_file))
            good.load_cert_chain(*client_files)
            reader, writer = await connect(server, ssl=good)
            writer.write(request("GET", "/tls"))
            assert (await read_response(reader))[2] == b"secure"
            writer.close()
            peer = seen[0].peer_cert
            assert peer is not None
            assert (("commonName", "client-1"),) in peer["subject"]

            # No client certificate: with TLS 1.3 the client may finish its half of the
            # handshake, but the server's alert arrives before any HTTP response can.
            anon = ssl.create_default_context(cafile=str(ca_file))
            with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
                async with asyncio.timeout(WAIT_S):
                    reader, writer = await connect(server, ssl=anon)
                    try:
                        writer.write(request("GET", "/tls"))
                        await read_response(reader)
                    finally:
                        writer.close()
            assert len(seen) == 1
    assert not [r for r in caplog.records if r.name.startswith(("asyncio", "dockyard"))]


# --- uvloop ------------------------------------------------------------------------------------


def test_keep_alive_and_streaming_under_uvloop() -> None:
    async def main() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"x"
            yield b"y"

        def handler(req: Request) -> Response | StreamingResponse:
            if req.raw_path == "/s":
                return StreamingResponse(200, chunks())
            return echo(req)

        async with await start(handler) as server:
            reader, writer = await connect(server)
            for i in range(3):
                writer.write(request("PUT", f"/{i}", b"b"))
                assert (await read_response(reader))[2] == f"PUT /{i} - b".encode()
            writer.write(request("GET", "/s"))
            assert (await read_response(reader))[2] == b"xy"
            writer.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main(), WAIT_S * 2))


# --- odds and ends -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_upgrade_request_is_answered_as_http_1_1_then_closed() -> None:
    async with await start(echo) as server:
        reader, writer = await connect(server)
        writer.write(
            request("GET", "/u", b"", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c")
        )
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"GET /u - ")
        assert headers["connection"] == "close"
        await assert_closed(reader)
        writer.close()


@pytest.mark.asyncio
async def test_head_of_streaming_response_sends_no_body_and_closes_iterator() -> None:
    closed = asyncio.Event()

    class Chunks:
        """Not a generator: registers on creation, so it must be closed even if never read."""

        def __aiter__(self) -> Chunks:
            return self

        async def __anext__(self) -> bytes:
            raise AssertionError("HEAD must not read the body")

        async def aclose(self) -> None:
            closed.set()

    def handler(req: Request) -> Response | StreamingResponse:
        if req.raw_path == "/watch":
            return StreamingResponse(200, Chunks())
        return Response(200, b"next")

    async with await start(handler) as server:
        reader, writer = await connect(server)
        writer.write(request("HEAD", "/watch") + request("GET", "/n"))
        status, headers, _ = await read_response(reader, head=True)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert (await read_response(reader))[2] == b"next"
        assert closed.is_set()
        writer.close()


@pytest.mark.asyncio
async def test_close_lets_in_flight_request_finish_with_connection_close() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> Response:
        started.set()
        await release.wait()
        return Response(200, b"late")

    server = await start(lambda req: slow())
    reader, writer = await connect(server)
    writer.write(request("GET", "/slow"))
    async with asyncio.timeout(WAIT_S):
        await started.wait()
    closing = asyncio.create_task(server.close(grace_s=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        while server.sockets and server._servers[0].is_serving():
            await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    status, headers, body = await read_response(reader)
    assert (status, body) == (200, b"late") and headers["connection"] == "close"
    await assert_closed(reader)
    async with asyncio.timeout(WAIT_S):
        await closing
    assert server.connection_count == 0
    writer.close()


# --- hijacked connections (Docker's attach) ---------------------------------------------------


def _upgrade(target: str) -> bytes:
    return request("POST", target, b"", "Connection: Upgrade", "Upgrade: tcp")


@pytest.mark.asyncio
async def test_hijack_upgrades_and_survives_the_clients_half_close() -> None:
    received: list[bytes] = []
    handler_done = asyncio.Event()

    async def handle(stream: HijackedStream) -> None:
        try:
            # Echo upper-cased until the client half-closes, then write once more and end.
            while data := await stream.read():
                received.append(data)
                await stream.write(data.upper())
            await stream.write(b"bye")
        finally:
            handler_done.set()

    async def route(req: Request) -> HijackResponse:
        return HijackResponse(
            101, handle, "application/vnd.docker.raw-stream", headers=(("Api-Version", "1.44"),)
        )

    server = await start(route)
    try:
        reader, writer = await connect(server)
        # Bytes sent right behind the request (in the same write) belong to the stream.
        writer.write(_upgrade("/attach") + b"early ")
        async with asyncio.timeout(WAIT_S):
            status, headers, _ = await read_head(reader)
            assert status == 101
            assert headers["connection"] == "Upgrade" and headers["upgrade"] == "tcp"
            assert headers["content-type"] == "application/vnd.docker.raw-stream"
            assert headers["api-version"] == "1.44"
            assert "content-length" not in headers
            assert await reader.readexactly(6) == b"EARLY "
            writer.write(b"late")
            assert await reader.readexactly(4) == b"LATE"
            writer.write_eof()  # half-close: the server keeps writing
            assert await reader.read() == b"bye"  # then the server closes
            await handler_done.wait()
        assert b"".join(received) == b"early late"
        writer.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_hijack_handler_is_cancelled_when_the_client_leaves() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handle(stream: HijackedStream) -> None:
        started.set()
        try:
            await asyncio.Future()  # the handler never ends on its own
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start(lambda req: HijackResponse(101, handle))
    try:
        reader, writer = await connect(server)
        writer.write(_upgrade("/attach"))
        async with asyncio.timeout(WAIT_S):
            assert (await read_head(reader))[0] == 101
            await started.wait()
            # A reset, not a FIN: a FIN is only the end of the client's half of the stream.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            await cancelled.wait()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_hijack_ends_with_the_server_and_an_upgrade_answered_plainly_closes() -> None:
    started = asyncio.Event()

    async def handle(stream: HijackedStream) -> None:
        started.set()
        await stream.read()  # the client never writes: only the server's close ends this

    def route(req: Request) -> Response | HijackResponse:
        if req.raw_path == "/missing":
            return Response(404, b"no", content_type="text/plain")
        return HijackResponse(101, handle)

    server = await start(route)
    reader2, writer2 = await connect(server)
    try:
        writer2.write(_upgrade("/missing") + b"junk that is not HTTP")
        async with asyncio.timeout(WAIT_S):
            status, _, body = await read_response(reader2)
        assert (status, body) == (404, b"no")
        await assert_closed(reader2)
        reader, writer = await connect(server)
        writer.write(_upgrade("/attach"))
        async with asyncio.timeout(WAIT_S):
            assert (await read_head(reader))[0] == 101
            await started.wait()
    finally:
        async with asyncio.timeout(WAIT_S):
            await server.close()
    await assert_closed(reader)
    writer.close()
    writer2.close()
