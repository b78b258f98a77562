"""A small async Docker Engine API client: exactly what the Compose runner needs.

Role: the Engine API layer of ``compose/``, on the lean HTTP/1.1 client of
``compose/http.py`` (a general-purpose HTTP library's import cost every compose command
~60 ms). It connects where the docker CLI would (``DOCKER_HOST``: ``unix://`` or
``tcp://``, a port defaulting to 2375, or 2376 with TLS, with ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``'s ``ca.pem``/``cert.pem``/``key.pem``; default
``unix:///var/run/docker.sock``), negotiates the API version from ``GET /version`` (the
engine's ``ApiVersion`` capped to ours, at least ``MIN_API_VERSION``, as docker-py's
``version="auto"``), and turns every non-2xx answer into :class:`EngineError` carrying
Docker's ``{"message": ...}``.

Invariants:
- Wire names (PascalCase JSON) stay in the bodies the runner builds; this module passes
  them through and never interprets a container's configuration.
- Streams are consumed as they arrive: the multiplexed decoder holds at most one
  incomplete frame (whose size its header states); JSON-lines progress streams are split
  on newlines and one line may not exceed ``MAX_PROGRESS_LINE_BYTES``.
- An error inside a progress stream (``{"error": ...}``, as ``/images/create`` and
  ``/build`` report failures after a 200) is raised as :class:`EngineError` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from dockyard.compose.http import ConnectionPool, Endpoint, HTTPError, Response, Timeouts

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "EngineClient",
    "EngineError",
    "LogLine",
    "demultiplex",
    "engine_address",
    "error_from_answer",
    "tls_context",
]

API_VERSION = "1.41"  # the newest we speak (Docker 20.10)
MIN_API_VERSION = "1.24"  # docker-compose 1.29.2's floor for the features it uses
DEFAULT_HOST = "unix:///var/run/docker.sock"
REQUEST_TIMEOUT_S = 120.0
# docker CLI (opts.ParseHost): a tcp:// host without a port means 2375, or 2376 with TLS
DEFAULT_TCP_PORT, DEFAULT_TLS_PORT = 2375, 2376
_TIMEOUTS = Timeouts(
    connect_s=REQUEST_TIMEOUT_S, read_s=REQUEST_TIMEOUT_S, write_s=REQUEST_TIMEOUT_S
)
# a stream (logs --follow, events, attach, a long build) may stay silent for as long as
# it likes; connecting and sending stay bounded
_STREAM_TIMEOUTS = Timeouts(connect_s=REQUEST_TIMEOUT_S, read_s=None, write_s=REQUEST_TIMEOUT_S)
MAX_PROGRESS_LINE_BYTES = 16 << 20  # one JSON progress message; Docker's are < 1 KiB
STDOUT, STDERR = 1, 2
_FRAME_HEADER = struct.Struct(">BxxxL")


class EngineError(Exception):
    """A non-2xx answer (or a stream error) from the engine: Docker's message verbatim."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class LogLine:
    stream: int  # STDOUT or STDERR
    data: bytes


@dataclass(frozen=True)
class EngineAddress:
    """Where to connect: a unix socket path, or a base URL (with TLS files when set)."""

    socket_path: str | None
    base_url: str
    host: str = DEFAULT_HOST  # as the user wrote it, for messages
    tls: tuple[str, str, str] | None = None  # (ca, cert, key)
    tls_verify: bool = False


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def engine_address(environ: Mapping[str, str]) -> EngineAddress:
    """The engine the docker CLI would talk to, from its environment variables."""
    host = environ.get("DOCKER_HOST") or DEFAULT_HOST
    if host.startswith("unix://"):
        return EngineAddress(
            socket_path=host[len("unix://") :], base_url="http://docker", host=host
        )
    if host.startswith("tcp://"):
        verify = environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        cert_path = environ.get("DOCKER_CERT_PATH") or os.path.join(
            os.path.expanduser("~"), ".docker"
        )
        files = tuple(os.path.join(cert_path, n) for n in ("ca.pem", "cert.pem", "key.pem"))
        tls = (files[0], files[1], files[2]) if verify or environ.get("DOCKER_CERT_PATH") else None
        scheme = "https" if tls is not None else "http"
        netloc = host[len("tcp://") :].rstrip("/")
        try:
            port = urlsplit(f"//{netloc}").port
        except ValueError:
            raise EngineError(0, f"unable to parse docker host `{host}`") from None
        if port is None:
            netloc += f":{DEFAULT_TLS_PORT if tls is not None else DEFAULT_TCP_PORT}"
        return EngineAddress(
            socket_path=None,
            base_url=f"{scheme}://{netloc}",
            host=host,
            tls=tls,
            tls_verify=verify,
        )
    # docker CLI: "unable to parse docker host `%s`"
    raise EngineError(0, f"unable to parse docker host `{host}`")


def _tls_context(ca: str, cert: str, key: str, *, verify: bool) -> ssl.SSLContext:
    """The client's TLS as the docker CLI builds it (go-connections tlsconfig.Client): a
    file that does not exist is skipped; without ``DOCKER_TLS_VERIFY`` the server is not
    verified; the errors are the CLI's."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if verify and os.path.exists(ca):
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as err:
            raise EngineError(0, f'could not read CA certificate "{ca}": {err}') from None
    if os.path.exists(cert) and os.path.exists(key):
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise EngineError(0, f"Could not load X509 key pair: {err}") from None
    return context


def demultiplex(buffer: bytearray) -> list[LogLine]:
    """Take every complete frame of Docker's stdcopy stream off the front of ``buffer``
    (Docker API: ``[stream, 0, 0, 0, size(uint32 BE)]`` then ``size`` bytes)."""
    out: list[LogLine] = []
    while len(buffer) >= _FRAME_HEADER.size:
        stream, size = _FRAME_HEADER.unpack_from(buffer)
        end = _FRAME_HEADER.size + size
        if len(buffer) < end:
            break
        out.append(LogLine(stream, bytes(buffer[_FRAME_HEADER.size : end])))
        del buffer[:end]
    return out


def tls_context(address: EngineAddress) -> ssl.SSLContext | None:
    """The client TLS context for ``address`` (None without TLS): what the HTTP transport
    uses, for connections made outside it (the hijacked attach of ``compose/hijack.py``)."""
    if address.tls is None:
        return None
    return _tls_context(*address.tls, verify=address.tls_verify)


def error_from_answer(status: int, raw: bytes) -> EngineError:
    """An error answer's body as :class:`EngineError` (Docker's ``{"message": ...}``)."""
    return EngineError(status, _error_message(status, raw))


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip() or f"engine answered {status}"
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message
    return raw.decode(errors="replace").strip()


def _endpoint(address: EngineAddress) -> Endpoint:
    """Where the pool connects; ``Host`` is the docker CLI's dummy ``docker`` on a unix
    socket, the address itself over TCP."""
    if address.socket_path is not None:
        return Endpoint(host_header="docker", socket_path=address.socket_path)
    parts = urlsplit(address.base_url)
    context = tls_context(address) if parts.scheme == "https" else None
    return Endpoint(
        host_header=parts.netloc,
        host=parts.hostname,
        port=parts.port or (DEFAULT_TLS_PORT if context is not None else DEFAULT_TCP_PORT),
        ssl_context=context,
    )


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    """``path`` with ``params`` as its query, %-encoded (``%20``, never ``+``)."""
    if not params:
        return path
    return f"{path}?{urlencode(params, quote_via=quote)}"


def _raise_for_status(response: Response) -> None:
    if response.status >= 400:
        raise EngineError(response.status, _error_message(response.status, response.content))


def _filters(filters: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    return {"filters": json.dumps({k: list(v) for k, v in filters.items()})} if filters else {}


class EngineClient:
    """One connection pool to one engine; use as ``async with EngineClient.from_env()``."""

    def __init__(self, address: EngineAddress) -> None:
        self.address = address
        self.api_version = MIN_API_VERSION
        self._http = ConnectionPool(_endpoint(address), _TIMEOUTS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineClient:
        return cls(engine_address(os.environ if environ is None else environ))

    async def __aenter__(self) -> EngineClient:
        try:
            await self.negotiate()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- plumbing ------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"/v{self.api_version}{path}"

    def api_path(self, path: str) -> str:
        """``path`` under the negotiated version prefix (``/v1.41/exec/ID/start``)."""
        return self._url(path)

    async def negotiate(self) -> str:
        """Docker API version negotiation: min(ours, the engine's), never below 1.24."""
        try:
            response = await self._http.request("GET", "/version")
        except (HTTPError, OSError) as err:
            if self.address.tls is not None and "SSL" in str(err):
                # a refused handshake is no "daemon not running" (docker CLI: "error during
                # connect: ... x509: certificate signed by unknown authority")
                raise EngineError(0, f"error during connect: {err}") from err
            # docker CLI (client/errors.go ErrorConnectionFailed)
            raise EngineError(
                0,
                f"Cannot connect to the Docker daemon at {self.address.host}. "
                "Is the docker daemon running?",
            ) from err
        if response.status != 200:
            raise EngineError(response.status, _error_message(response.status, response.content))
        theirs = str(response.json().get("ApiVersion", MIN_API_VERSION))
        chosen = min(_version_tuple(theirs), _version_tuple(API_VERSION))
        if chosen < _version_tuple(MIN_API_VERSION):
            raise EngineError(
                0, f"the engine's API version {theirs} is older than the minimum {MIN_API_VERSION}"
            )
        self.api_version = ".".join(str(part) for part in chosen)
        return self.api_version

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        no_read_timeout: bool = False,
    ) -> Any:
        """One request; the decoded JSON answer (None when empty), or :class:`EngineError`.
        `timeout_s` replaces the default timeouts; `no_read_timeout` lets the engine take as
        long as it must to answer (a wait for a container's exit)."""
        fields = list((headers or {}).items())
        if body is not None:
            content = json.dumps(body).encode()
            fields.append(("Content-Type", "application/json"))
        timeouts = _TIMEOUTS
        if timeout_s is not None:
            timeouts = Timeouts(connect_s=timeout_s, read_s=timeout_s, write_s=timeout_s)
        if no_read_timeout:
            timeouts = _STREAM_TIMEOUTS
        response = await self._http.request(
            method,
            _target(self._url(path), params),
            headers=fields,
            body=content,
            timeouts=timeouts,
        )
        _raise_for_status(response)
        if not response.content:
            return None
        if "json" in (response.header("content-type") or ""):
            return response.json()
        return response.content

    async def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        async with self._http.stream(
            method,
            _target(self._url(path), params),
            headers=list((headers or {}).items()),
            body=content,
            timeouts=_STREAM_TIMEOUTS,
        ) as response:
            if response.status >= 400:
                raw = await response.aread()
                raise EngineError(response.status, _error_message(response.status, raw))
            async for chunk in response.aiter_bytes():
                yield chunk

    async def _json_lines(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        pending = b""
        async for chunk in self._stream(
            method, path, params=params, content=content, headers=headers
        ):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_PROGRESS_LINE_BYTES:
                raise EngineError(0, f"a progress message over {MAX_PROGRESS_LINE_BYTES} bytes")
            for line in lines:
                if line.strip():
                    yield self._progress_item(line)
        if pending.strip():
            yield self._progress_item(pending)

    @staticmethod
    def _progress_item(line: bytes) -> dict[str, Any]:
        item = json.loads(line)
        if not isinstance(item, dict):
            return {}
        if item.get("error"):
            raise EngineError(500, str(item.get("error")))
        return item

    # --- containers ----------------------------------------------------------------------

    async def containers(
        self, *, all: bool = True, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        params = {"all": "1" if all else "0", **_filters(filters)}
        result: list[dict[str, Any]] = await self.request("GET", "/containers/json", params=params)
        return result

    async def inspect_container(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/containers/{quote(ref)}/json")
        return result

    async def create_container(self, name: str | None, body: Mapping[str, Any]) -> str:
        params = {"name": name} if name else {}
        result = await self.request("POST", "/containers/create", params=params, body=body)
        return str(result["Id"])

    async def start_container(self, ref: str) -> None:
        await self.request("POST", f"/containers/{quote(ref)}/start")

    async def stop_container(self, ref: str, timeout_s: int | None = None) -> None:
        params = {"t": str(timeout_s)} if timeout_s is not None else {}
        wait = (timeout_s if timeout_s is not None else 10) + REQUEST_TIMEOUT_S
        await self.request("POST", f"/containers/{quote(ref)}/stop", params=params, timeout_s=wait)

    async def restart_container(self, ref: str, timeout_s: int | None = None) -> None:
        params = {"t": str(timeout_s)} if timeout_s is not None else {}
        wait = (timeout_s if timeout_s is not None else 10) + REQUEST_TIMEOUT_S
        await self.request(
            "POST", f"/containers/{quote(ref)}/restart", params=params, timeout_s=wait
        )

    async def kill_container(self, ref: str, signal: str | None = None) -> None:
        params = {"signal": signal} if signal else {}
        await self.request("POST", f"/containers/{quote(ref)}/kill", params=params)

    async def rename_container(self, ref: str, new_name: str) -> None:
        await self.request("POST", f"/containers/{quote(ref)}/rename", params={"name": new_name})

    async def remove_container(
        self, ref: str, *, force: bool = False, volumes: bool = False
    ) -> None:
        params = {"force": "1" if force else "0", "v": "1" if volumes else "0"}
        await self.request("DELETE", f"/containers/{quote(ref)}", params=params)

    async def wait_container(self, ref: str, condition: str = "not-running") -> int:
        result = await self.request(
            "POST",
            f"/containers/{quote(ref)}/wait",
            params={"condition": condition},
            no_read_timeout=True,  # a one-off `run` may last hours
        )
        return int(result.get("StatusCode", -1))

    async def logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        tail: str = "all",
        timestamps: bool = False,
        tty: bool = False,
        since: int | None = None,
    ) -> AsyncIterator[LogLine]:
        """The container's output; a tty container's stream is raw, others multiplexed."""
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": tail,
            "timestamps": "1" if timestamps else "0",
        }
        if since is not None:
            params["since"] = str(since)
        chunks = self._stream("GET", f"/containers/{quote(ref)}/logs", params=params)
        async for line in _decode(chunks, tty=tty):
            yield line

    async def top(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/containers/{quote(ref)}/top")
        return result

    async def exec_create(self, ref: str, body: Mapping[str, Any]) -> str:
        result = await self.request("POST", f"/containers/{quote(ref)}/exec", body=body)
        return str(result["Id"])

    async def exec_start_output(self, exec_id: str, *, tty: bool = False) -> AsyncIterator[LogLine]:
        """Start an exec without stdin and stream its output until it ends."""
        chunks = self._stream(
            "POST",
            f"/exec/{quote(exec_id)}/start",
            content=json.dumps({"Detach": False, "Tty": tty}).encode(),
            headers={"Content-Type": "application/json"},
        )
        async for line in _decode(chunks, tty=tty):
            yield line

    @contextlib.asynccontextmanager
    async def attached_output(
        self, ref: str, *, tty: bool = False
    ) -> AsyncIterator[AsyncIterator[LogLine]]:
        """Attach to a container's stdout/stderr (no stdin) and yield its output stream.

        The answer's headers are in when this enters, so a container started afterwards
        loses no output (docker-compose 1.29.2 run: attach, then start). Without
        ``Upgrade: tcp`` the engine answers 200 and streams until the container ends.
        """
        target = _target(
            self._url(f"/containers/{quote(ref)}/attach"),
            {"stream": "1", "stdout": "1", "stderr": "1"},
        )
        async with self._http.stream("POST", target, timeouts=_STREAM_TIMEOUTS) as response:
            if response.status >= 400:
                raw = await response.aread()
                raise EngineError(response.status, _error_message(response.status, raw))
            yield _decode(response.aiter_bytes(), tty=tty)

    async def resize_exec(self, exec_id: str, rows: int, columns: int) -> None:
        """Docker API: ``POST /exec/{id}/resize?h=ROWS&w=COLUMNS`` (a TTY exec only)."""
        await self.request(
            "POST", f"/exec/{quote(exec_id)}/resize", params={"h": str(rows), "w": str(columns)}
        )

    async def resize_container(self, ref: str, rows: int, columns: int) -> None:
        """Docker API: ``POST /containers/{id}/resize?h=ROWS&w=COLUMNS``."""
        await self.request(
            "POST",
            f"/containers/{quote(ref)}/resize",
            params={"h": str(rows), "w": str(columns)},
        )

    async def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/exec/{quote(exec_id)}/json")
        return result

    # --- images --------------------------------------------------------------------------

    async def _inspect_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", path)
        except EngineError as err:
            if err.status == 404:
                return None
            raise
        return result

    async def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """The image's inspect document, or None when the engine has none (404)."""
        return await self._inspect_or_none(f"/images/{ref}/json")

    async def images(
        self, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request(
            "GET", "/images/json", params=_filters(filters)
        )
        return result

    async def pull(self, image: str) -> AsyncIterator[dict[str, Any]]:
        name, tag = _split_reference(image)
        params = {"fromImage": name, "tag": tag}
        async for item in self._json_lines("POST", "/images/create", params=params):
            yield item

    async def push(self, image: str) -> AsyncIterator[dict[str, Any]]:
        name, tag = _split_reference(image)
        # An empty X-Registry-Auth ("{}" base64) as the docker CLI sends without a login.
        headers = {"X-Registry-Auth": "e30="}
        async for item in self._json_lines(
            "POST", f"/images/{name}/push", params={"tag": tag}, headers=headers
        ):
            yield item

    async def build(
        self, context_tar: bytes, params: Mapping[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        headers = {"Content-Type": "application/x-tar"}
        async for item in self._json_lines(
            "POST", "/build", params=params, content=context_tar, headers=headers
        ):
            yield item

    async def remove_image(self, ref: str) -> None:
        await self.request("DELETE", f"/images/{ref}")

    # --- networks and volumes ------------------------------------------------------------

    async def networks(
        self, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request(
            "GET", "/networks", params=_filters(filters)
        )
        return result

    async def inspect_network(self, ref: str) -> dict[str, Any] | None:
        """The network's inspect document, or None when the engine has none (404)."""
        return await self._inspect_or_none(f"/networks/{quote(ref)}")

    async def create_network(self, body: Mapping[str, Any]) -> str:
        result = await self.request("POST", "/networks/create", body=body)
        return str(result["Id"])

    async def remove_network(self, ref: str) -> None:
        await self.request("DELETE", f"/networks/{quote(ref)}")

    async def connect_network(self, network: str, body: Mapping[str, Any]) -> None:
        await self.request("POST", f"/networks/{quote(network)}/connect", body=body)

    async def volumes(
        self, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        result = await self.request("GET", "/volumes", params=_filters(filters))
        return list(result.get("Volumes") or [])

    async def inspect_volume(self, name: str) -> dict[str, Any] | None:
        """The volume's inspect document, or None when the engine has none (404)."""
        return await self._inspect_or_none(f"/volumes/{quote(name)}")

    async def create_volume(self, body: Mapping[str, Any]) -> None:
        await self.request("POST", "/volumes/create", body=body)

    async def remove_volume(self, name: str) -> None:
        await self.request("DELETE", f"/volumes/{quote(name)}")

    # --- events --------------------------------------------------------------------------

    async def events(
        self, filters: Mapping[str, Sequence[str]] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        async for item in self._json_lines("GET", "/events", params=_filters(filters)):
            yield item


async def _decode(chunks: AsyncIterator[bytes], *, tty: bool) -> AsyncIterator[LogLine]:
    """A container's output: raw with a TTY, else Docker's multiplexed frames."""
    buffer = bytearray()
    async for chunk in chunks:
        if tty:
            yield LogLine(STDOUT, chunk)
            continue
        buffer += chunk
        for line in demultiplex(buffer):
            yield line


def _split_reference(image: str) -> tuple[str, str]:
    """``name[:tag][@digest]`` → (name, tag); a ``:`` inside the registry host is no tag."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"
