"""The Docker Engine API handler: routing, Docker's JSON shapes, errors and stream framing.

Role: the boundary between HTTP (`dockyard.http`) and the engine (`dockyard.engine.daemon`).
It strips the optional `/vX.Y` prefix (refusing versions as dockerd does, see
`versions.py`), routes on the remaining path, turns engine values into Docker's wire
shapes (PascalCase lives only here) and engine errors into Docker's statuses with the body
`{"message": "..."}` (api-surface.md §2).

Invariants:
- Every answer, errors and streams included, carries the ping headers (`Api-Version`,
  `Docker-Experimental`, `Ostype`): the CLI negotiates from whichever reply it sees.
- Streaming answers (`wait`, `logs`) flush their headers at once, before the condition is
  met (the CLI blocks on the headers of `wait` before it sends `start`).
- Errors found before a stream starts are ordinary JSON errors.
- Unknown paths answer 404 `page not found`, as dockerd's router does.
- Attach (api-surface.md §4) is a hijack: the shim session is opened before the 101 is sent,
  so a `start` the client sends after it cannot miss output. Output frames are passed on as
  stdcopy frames (raw payload with a TTY); client input goes to the shim until the detach
  keys or EOF. EOF of the client's input closes the container's stdin when it has StdinOnce
  and no TTY, and otherwise ends the session (moby container/stream/attach.go). The session
  ends when the shim closes it (the container exited) or the client leaves.
- Exec start is hijacked the same way (`execs.py` runs the process): stdcopy frames without
  a TTY, raw bytes with one; client EOF closes the process's stdin; the exit code is
  recorded before the stream closes. `Detach: true` answers a plain 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import parse_qs, unquote

from dockyard import __version__
from dockyard.engine.api.archive_routes import ArchiveRoutes
from dockyard.engine.api.build_routes import BuildRoutes
from dockyard.engine.api.events_routes import EventRoutes
from dockyard.engine.api.image_routes import ImageRoutes
from dockyard.engine.api.network_routes import NetworkRoutes
from dockyard.engine.api.registry_routes import RegistryRoutes
from dockyard.engine.api.router import (
    JSON,
    NO_CACHE,
    PING_HEADERS,
    ROUTES,
    TRUSTED_HEADERS,
    TYPED_STREAMS_SINCE,
    Call,
    Reply,
    encode,
    error_reply,
    frame,
    json_reply,
    route,
    unix_s,
)
from dockyard.engine.api.stats_routes import StatsRoutes
from dockyard.engine.api.transfer_routes import TransferRoutes
from dockyard.engine.api.update_routes import UpdateRoutes
from dockyard.engine.api.versions import (
    API_VERSION,
    MIN_API_VERSION,
    ApiVersionError,
    split_version,
)
from dockyard.engine.api.volume_routes import VolumeRoutes
from dockyard.engine.containers import (
    Conflict,
    ContainerRecord,
    ContainerStore,
    EngineError,
    InvalidArgument,
    NotFound,
    NotModified,
    status_text,
)
from dockyard.engine.daemon import AttachSession, Engine
from dockyard.engine.execs import ExecDriver, ExecInstance, write_all
from dockyard.engine.images.model import InvalidReference
from dockyard.engine.images.store import ImageNotFound
from dockyard.engine.model.attach import (
    FRAME_HEADER_BYTES,
    DetachMatcher,
    InvalidDetachKeys,
    parse_detach_keys,
    parse_frame_header,
)
from dockyard.engine.model.filters import (
    FilterArgs,
    PsQuery,
    parse_unix_timestamp,
    select_containers,
    validate_ps_filters,
)
from dockyard.engine.network.ipam import NetworkError
from dockyard.http.types import (
    HijackedStream,
    HijackResponse,
    Request,
    Response,
    StreamingResponse,
)

logger = logging.getLogger(__name__)


class DockerApi(
    ImageRoutes,
    TransferRoutes,
    RegistryRoutes,
    BuildRoutes,
    EventRoutes,
    UpdateRoutes,
    ArchiveRoutes,
    StatsRoutes,
    NetworkRoutes,
    VolumeRoutes,
):
    """The `Handler` the daemon's HTTP server calls."""

    def __init__(self, engine: Engine, *, labels: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.labels = labels

    def __call__(self, request: Request) -> Awaitable[Reply]:
        return self._dispatch(request)

    async def _dispatch(self, request: Request) -> Reply:
        try:
            versioned = split_version(request.raw_path)
        except ApiVersionError as e:
            return error_reply(400, str(e))
        path = unquote(versioned.path)
        method = "GET" if request.method == "HEAD" else request.method
        for route_method, pattern, name in ROUTES:
            match = pattern.match(path)
            if match is None or route_method != method:
                continue
            call = Call(
                request,
                versioned.version,
                match.groupdict(),
                parse_qs(request.raw_query, keep_blank_values=True),
            )
            # A request's container records are on disk before it is answered (they are
            # written behind the event loop: ContainerStore's invariants).
            written, token = ContainerStore.tracking_writes()
            try:
                reply: Reply = await getattr(self, name)(call)
                if written:
                    await self.engine.containers.flush(written)
            except NotModified:
                return Response(304, trusted_headers=TRUSTED_HEADERS)
            except NetworkError as e:
                return error_reply(e.status, str(e))
            except (NotFound, ImageNotFound) as e:
                return error_reply(404, str(e))
            except Conflict as e:
                return error_reply(409, str(e))
            except (InvalidArgument, InvalidReference) as e:
                return error_reply(400, str(e))
            except EngineError as e:
                return error_reply(500, str(e))
            except Exception as e:
                logger.exception("%s %s failed", request.method, request.raw_path)
                return error_reply(500, str(e) or type(e).__name__)
            finally:
                ContainerStore.stop_tracking(token)
                if written:
                    # an error answer too: e.g. a failed start saved the container's error
                    with contextlib.suppress(OSError):
                        await self.engine.containers.flush(written)
            return reply
        return error_reply(404, "page not found")

    # -- system ----------------------------------------------------------------------------

    @route("GET", "/_ping")
    async def ping(self, call: Call) -> Reply:
        return Response(
            200,
            b"OK",
            "text/plain; charset=utf-8",
            headers=NO_CACHE,
            trusted_headers=TRUSTED_HEADERS,
        )

    @route("GET", "/version")
    async def version(self, call: Call) -> Reply:
        host = self.engine.host
        details = {
            "ApiVersion": str(API_VERSION),
            "Arch": host.go_arch,
            "BuildTime": "",
            "Experimental": "false",
            "GitCommit": "",
            "GoVersion": "",
            "KernelVersion": host.kernel_version,
            "MinAPIVersion": str(MIN_API_VERSION),
            "Os": "linux",
        }
        return json_reply(
            200,
            {
                "Platform": {"Name": "dockyard"},
                "Components": [
                    {"Name": "Engine", "Version": __version__, "Details": details},
                    {
                        "Name": "runc",
                        "Version": host.runc_version,
                        "Details": {"GitCommit": ""},
                    },
                ],
                "Version": __version__,
                "ApiVersion": str(API_VERSION),
                "MinAPIVersion": str(MIN_API_VERSION),
                "GitCommit": "",
                "GoVersion": "",
                "Os": "linux",
                "Arch": host.go_arch,
                "KernelVersion": host.kernel_version,
                "BuildTime": "",
            },
        )

    @route("GET", "/info")
    async def info(self, call: Call) -> Reply:
        engine, host = self.engine, self.engine.host
        records = list(engine.containers)
        running = sum(1 for r in records if r.state.running and not r.state.paused)
        paused = sum(1 for r in records if r.state.paused)
        cgroup_v1 = host.facts.cgroup_version == 1
        return json_reply(
            200,
            {
                "ID": host.engine_id,
                "Containers": len(records),
                "ContainersRunning": running,
                "ContainersPaused": paused,
                "ContainersStopped": len(records) - running - paused,
                "Images": len(engine.images.list()),
                "Driver": "overlayfs",
                "DriverStatus": [["Backing Filesystem", "overlayfs snapshotter"]],
                "Plugins": {
                    "Volume": ["local"],
                    "Network": ["bridge", "host", "null"],
                    "Authorization": None,
                    "Log": ["json-file"],
                },
                "MemoryLimit": True,
                "SwapLimit": cgroup_v1,
                "CpuCfsPeriod": True,
                "CpuCfsQuota": True,
                "CPUShares": True,
                "CPUSet": True,
                "PidsLimit": True,
                "IPv4Forwarding": False,
                "BridgeNfIptables": False,
                "BridgeNfIp6tables": False,
                "Debug": logger.isEnabledFor(logging.DEBUG),
                "NFd": 0,
                "OomKillDisable": cgroup_v1,
                "NGoroutines": 0,
                "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "LoggingDriver": "json-file",
                "CgroupDriver": "cgroupfs",
                "CgroupVersion": str(host.facts.cgroup_version),
                "NEventsListener": engine.events.subscriber_count,
                "KernelVersion": host.kernel_version,
                "OperatingSystem": host.operating_system,
                "OSVersion": host.os_version,
                "OSType": "linux",
                "Architecture": host.architecture,
                "IndexServerAddress": "https://index.docker.io/v1/",
                "RegistryConfig": {
                    "AllowNondistributableArtifactsCIDRs": None,
                    "AllowNondistributableArtifactsHostnames": None,
                    "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                    "IndexConfigs": {},
                    "Mirrors": None,
                },
                "NCPU": host.ncpu,
                "MemTotal": host.mem_total_bytes,
                "GenericResources": None,
                "DockerRootDir": str(engine.layout.data_root),
                "HttpProxy": "",
                "HttpsProxy": "",
                "NoProxy": "",
                "Name": host.hostname,
                "Labels": list(self.labels),
                "ExperimentalBuild": False,
                "ServerVersion": __version__,
                "Runtimes": {"runc": {"path": "runc"}},
                "DefaultRuntime": "runc",
                "Swarm": {
                    "NodeID": "",
                    "NodeAddr": "",
                    "LocalNodeState": "inactive",
                    "ControlAvailable": False,
                    "Error": "",
                    "RemoteManagers": None,
                },
                "LiveRestoreEnabled": True,  # shims keep containers across daemon restarts
                "Isolation": "",
                "InitBinary": "",
                "ContainerdCommit": {"ID": "", "Expected": ""},
                "RuncCommit": {"ID": "", "Expected": ""},
                "InitCommit": {"ID": "", "Expected": ""},
                "SecurityOptions": ["name=seccomp,profile=builtin"],
                "Warnings": None,
            },
        )

    # -- containers --------------------------------------------------------------------------

    @route("POST", "/containers/create")
    async def container_create(self, call: Call) -> Reply:
        body = call.json_body()
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        version = f"{call.version.major}.{call.version.minor}"
        record, warnings = self.engine.create(call.arg("name"), body, api_version=version)
        return json_reply(201, {"Id": record.id, "Warnings": warnings})

    @route("GET", "/containers/json")
    async def container_list(self, call: Call) -> Reply:
        filters = FilterArgs.parse(call.arg("filters"))
        exited = validate_ps_filters(filters)
        try:
            limit = int(call.arg("limit", "-1") or "-1")
        except ValueError:
            raise InvalidArgument(f"invalid value for limit: {call.arg('limit')}") from None
        containers, images = self.engine.containers, self.engine.images
        # moby foldFilter: `before`/`since` name containers (404 if unknown); `ancestor`
        # images that do not exist are skipped.
        before = [containers.resolve(v).id for v in filters.get("before")]
        since = [containers.resolve(v).id for v in filters.get("since")]
        ancestors: frozenset[str] | None = None
        if filters.contains("ancestor"):
            found = set()
            for ref in filters.get("ancestor"):
                with contextlib.suppress(ImageNotFound, InvalidReference):
                    found.add(images.get(ref).id)
            ancestors = frozenset(found)
        query = PsQuery(
            filters=filters,
            all=call.flag("all"),
            limit=limit,
            exited=exited,
            before_id=before[-1] if before else None,
            since_id=since[-1] if since else None,
            ancestor_ids=ancestors,
        )
        now_ns = time.time_ns()
        records = select_containers(list(containers), query)
        return json_reply(200, [self._summary(r, now_ns) for r in records])

    def _summary(self, record: ContainerRecord, now_ns: int) -> dict[str, Any]:
        ports, networks = self.engine.networks.summary(record)
        return {
            "Id": record.id,
            "Names": [record.name],
            "Image": record.image,
            "ImageID": record.image_id,
            "Command": record.command,
            "Created": unix_s(record.created),
            "Ports": ports,
            "Labels": dict(record.config.get("Labels") or {}),
            "State": record.state.wire_status,
            "Status": status_text(record.state, now_ns),
            "HostConfig": {"NetworkMode": record.host_config.get("NetworkMode", "default")},
            "NetworkSettings": networks,
            "Mounts": self.engine.volumes.inspect_mounts(self.engine.mount_points(record)),
        }

    @route("GET", "/containers/(?P<id>[^/]+)/json")
    async def container_inspect(self, call: Call) -> Reply:
        record = self.engine.containers.resolve(call.params["id"])
        state = record.state
        resolv_path, hostname_path, hosts_path = self.engine.networks.file_paths(record)
        return json_reply(
            200,
            {
                "Id": record.id,
                "Created": record.created,
                "Path": record.path,
                "Args": list(record.args),
                "State": {
                    "Status": state.wire_status,
                    "Running": state.running or state.restarting,
                    "Paused": state.paused,
                    "Restarting": state.restarting,
                    "OOMKilled": state.oom_killed,
                    "Dead": False,
                    "Pid": state.pid,
                    "ExitCode": state.exit_code,
                    "Error": state.error,
                    "StartedAt": state.started_at,
                    "FinishedAt": state.finished_at,
                    # omitempty: only containers with a healthcheck have it.
                    **({"Health": state.health.to_wire()} if state.health is not None else {}),
                },
                "Image": record.image_id,
                "ResolvConfPath": resolv_path,
                "HostnamePath": hostname_path,
                "HostsPath": hosts_path,
                "LogPath": str(self.engine.log_path(record.id)),
                "Name": record.name,
                "RestartCount": state.restart_count,
                "Driver": "overlayfs",
                "Platform": "linux",
                "MountLabel": "",
                "ProcessLabel": "",
                "AppArmorProfile": "",
                "ExecIDs": self.engine.execs.running_ids_of(record.id) or None,
                "HostConfig": dict(record.host_config),
                "GraphDriver": {"Name": "overlayfs", "Data": None},
                "Mounts": self.engine.volumes.inspect_mounts(self.engine.mount_points(record)),
                "Config": dict(record.config),
                "NetworkSettings": self.engine.networks.network_settings(record),
            },
        )

    @route("POST", "/containers/(?P<id>[^/]+)/start")
    async def container_start(self, call: Call) -> Reply:
        await self.engine.start(call.params["id"])
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/stop")
    async def container_stop(self, call: Call) -> Reply:
        text = call.arg("t")
        try:
            timeout_s = int(text) if text else None
        except ValueError:
            raise InvalidArgument(f"invalid value for t: {text}") from None
        await self.engine.stop(call.params["id"], timeout_s)
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/restart")
    async def container_restart(self, call: Call) -> Reply:
        text = call.arg("t")
        try:
            timeout_s = int(text) if text else None
        except ValueError:
            raise InvalidArgument(f"invalid value for t: {text}") from None
        await self.engine.restart(call.params["id"], timeout_s)
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/kill")
    async def container_kill(self, call: Call) -> Reply:
        await self.engine.kill(call.params["id"], call.arg("signal"))
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/pause")
    async def container_pause(self, call: Call) -> Reply:
        await self.engine.pause(call.params["id"])
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/unpause")
    async def container_unpause(self, call: Call) -> Reply:
        await self.engine.unpause(call.params["id"])
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/rename")
    async def container_rename(self, call: Call) -> Reply:
        await self.engine.rename(call.params["id"], call.arg("name"))
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("GET", "/containers/(?P<id>[^/]+)/top")
    async def container_top(self, call: Call) -> Reply:
        titles, processes = await self.engine.top(call.params["id"], call.arg("ps_args"))
        return json_reply(200, {"Titles": titles, "Processes": processes})

    @route("DELETE", "/containers/(?P<id>[^/]+)")
    async def container_remove(self, call: Call) -> Reply:
        await self.engine.remove(
            call.params["id"], force=call.flag("force"), remove_volumes=call.flag("v")
        )
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/wait")
    async def container_wait(self, call: Call) -> Reply:
        condition = call.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f'invalid condition: "{condition}"')
        record = self.engine.containers.resolve(call.params["id"])
        engine = self.engine
        fut = engine.register_wait(record, condition)

        async def body() -> AsyncIterator[bytes]:
            try:
                code = await fut
                yield encode({"Error": None, "StatusCode": code})
            finally:
                engine.forget_wait(record.id, fut)

        return StreamingResponse(200, body(), JSON, headers=PING_HEADERS)

    @route("POST", "/containers/(?P<id>[^/]+)/attach")
    async def container_attach(self, call: Call) -> Reply:
        engine = self.engine
        record = engine.containers.resolve(call.params["id"])
        try:
            detach_keys = parse_detach_keys(call.arg("detachKeys"))
        except InvalidDetachKeys as e:
            raise InvalidArgument(str(e)) from None
        streams = frozenset(s for s in ("stdout", "stderr") if call.flag(s))
        tty = record.tty
        stdin = call.flag("stdin") and bool(record.config.get("OpenStdin"))
        stdin_once = bool(record.config.get("StdinOnce"))
        logs = call.flag("logs")
        session = await engine.attach(record, stdin=stdin) if call.flag("stream") else None

        async def run(client: HijackedStream) -> None:
            try:
                if logs:
                    lines = engine.logs(
                        record, streams=streams, follow=False, tail=None, timestamps=False
                    )
                    async for stream, line in lines:
                        await client.write(line if tty else frame(stream, line))
                if session is not None:
                    await _pump(
                        client,
                        session,
                        streams=streams,
                        tty=tty,
                        stdin=stdin,
                        close_stdin=stdin_once and not tty,
                        detach_keys=detach_keys,
                    )
            finally:
                if session is not None:
                    engine.end_attach(record.id, session)

        def abandon() -> None:
            if session is not None:
                engine.end_attach(record.id, session)

        upgrade = "upgrade" in call.request.headers.get("connection", "").lower()
        return HijackResponse(
            101 if upgrade else 200,
            run,
            self._stream_type(call, tty),
            headers=PING_HEADERS,
            abandon=abandon,
        )

    @staticmethod
    def _stream_type(call: Call, tty: bool) -> str:
        if call.version >= TYPED_STREAMS_SINCE:
            kind = "raw-stream" if tty else "multiplexed-stream"
        else:
            kind = "raw-stream"
        return f"application/vnd.docker.{kind}"

    @route("POST", "/containers/(?P<id>[^/]+)/resize")
    async def container_resize(self, call: Call) -> Reply:
        try:
            rows, cols = int(call.arg("h", "0") or "0"), int(call.arg("w", "0") or "0")
        except ValueError:
            raise InvalidArgument("invalid resize height or width") from None
        if not (0 <= rows < 65536 and 0 <= cols < 65536):
            raise InvalidArgument("invalid resize height or width")
        await self.engine.resize(call.params["id"], rows, cols)
        return Response(200, trusted_headers=TRUSTED_HEADERS)

    @route("GET", "/containers/(?P<id>[^/]+)/logs")
    async def container_logs(self, call: Call) -> Reply:
        record = self.engine.containers.resolve(call.params["id"])
        streams = frozenset(s for s in ("stdout", "stderr") if call.flag(s))
        if not streams:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        tail_text = call.arg("tail", "all") or "all"
        try:
            tail = None if tail_text == "all" else int(tail_text)
        except ValueError:
            tail = None  # moby: an unparsable tail means all
        if tail is not None and tail < 0:
            tail = None
        # The CLI sends --since/--until as Unix `seconds.nanoseconds` (moby timetypes).
        since, until = call.arg("since"), call.arg("until")
        lines = self.engine.logs(
            record,
            streams=streams,
            follow=call.flag("follow"),
            tail=tail,
            timestamps=call.flag("timestamps"),
            since_ns=parse_unix_timestamp(since) if since else 0,
            until_ns=parse_unix_timestamp(until) if until else 0,
        )
        tty = record.tty

        async def body() -> AsyncIterator[bytes]:
            try:
                async for stream, line in lines:
                    yield line if tty else frame(stream, line)
            finally:
                await lines.aclose()

        return StreamingResponse(200, body(), self._stream_type(call, tty), headers=PING_HEADERS)

    # -- exec (api-surface.md §3, §4) ------------------------------------------------------

    @route("POST", "/containers/(?P<id>[^/]+)/exec")
    async def exec_create(self, call: Call) -> Reply:
        body = call.json_body()
        if not isinstance(body, dict):
            raise InvalidArgument("No exec command specified")
        record = self.engine.containers.resolve(call.params["id"])
        inst = self.engine.execs.create(call.params["id"], record, body)
        return json_reply(201, {"Id": inst.id})

    @route("POST", "/exec/(?P<id>[^/]+)/start")
    async def exec_start(self, call: Call) -> Reply:
        body = call.json_body() or {}
        execs = self.engine.execs
        inst = execs.get(call.params["id"])
        execs.check_startable(inst, self.engine.containers.get(inst.container_id))
        if isinstance(body, dict) and body.get("Detach"):
            await execs.start_detached(inst)
            return Response(200, trusted_headers=TRUSTED_HEADERS)
        tty = inst.config.tty
        detach_keys = parse_detach_keys(inst.config.detach_keys)

        async def run(client: HijackedStream) -> None:
            gone = asyncio.Event()

            async def sink(stream: str, data: bytes) -> None:
                await client.write(data if tty else frame(stream, data))

            pump = None
            if inst.config.attach_stdin:
                pump = asyncio.create_task(_exec_input(client, execs, inst, detach_keys, gone))
            try:
                await execs.run_attached(inst, sink, gone)
            finally:
                if pump is not None:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await pump

        upgrade = "upgrade" in call.request.headers.get("connection", "").lower()
        return HijackResponse(
            101 if upgrade else 200, run, self._stream_type(call, tty), headers=PING_HEADERS
        )

    @route("GET", "/exec/(?P<id>[^/]+)/json")
    async def exec_inspect(self, call: Call) -> Reply:
        inst = self.engine.execs.get(call.params["id"])
        cfg = inst.config
        process: dict[str, Any] = {
            "tty": cfg.tty,
            "entrypoint": cfg.cmd[0],
            "arguments": list(cfg.cmd[1:]),
            "privileged": cfg.privileged,
        }
        if cfg.user:
            process["user"] = cfg.user
        return json_reply(
            200,
            {
                "ID": inst.id,
                "Running": inst.is_running(),
                "ExitCode": inst.exit_code,
                "ProcessConfig": process,
                "OpenStdin": cfg.attach_stdin,
                "OpenStderr": cfg.attach_stderr,
                "OpenStdout": cfg.attach_stdout,
                "CanRemove": False,
                "ContainerID": inst.container_id,
                "DetachKeys": cfg.detach_keys,
                "Pid": inst.current_pid(),
            },
        )

    @route("POST", "/exec/(?P<id>[^/]+)/resize")
    async def exec_resize(self, call: Call) -> Reply:
        try:
            rows, cols = int(call.arg("h", "0") or "0"), int(call.arg("w", "0") or "0")
        except ValueError:
            raise InvalidArgument("invalid resize height or width") from None
        if not (0 <= rows < 65536 and 0 <= cols < 65536):
            raise InvalidArgument("invalid resize height or width")
        self.engine.execs.resize(call.params["id"], rows, cols)
        return Response(200, trusted_headers=TRUSTED_HEADERS)


async def _exec_input(
    client: HijackedStream,
    execs: ExecDriver,
    inst: ExecInstance,
    detach_keys: bytes,
    gone: asyncio.Event,
) -> None:
    """Client input to the exec's stdin (or pty) until EOF, which closes its stdin, or the
    detach keys, which leave the exec running without the client."""
    matcher = DetachMatcher(detach_keys)
    await inst.io_ready.wait()
    while data := await client.read():
        data, detached = matcher.feed(data)
        fd = execs.input_fd(inst)
        if data and fd >= 0:
            try:
                await write_all(fd, data)
            except OSError:
                return  # the process closed its stdin or exited
        if detached:
            gone.set()
            return
    execs.close_stdin(inst)


async def _pump(
    client: HijackedStream,
    session: AttachSession,
    *,
    streams: frozenset[str],
    tty: bool,
    stdin: bool,
    close_stdin: bool,
    detach_keys: bytes,
) -> None:
    """Shim output to the client, client input to the shim, until the session ends."""

    async def output() -> None:
        reader = session.reader
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(FRAME_HEADER_BYTES)
                stream, size = parse_frame_header(header)
                payload = await reader.readexactly(size)
                if stream in streams:
                    await client.write(payload if tty else header + payload)

    async def input_ends_session() -> bool:
        matcher = DetachMatcher(detach_keys)
        writer = session.writer
        while data := await client.read():
            data, detached = matcher.feed(data)
            if data:
                writer.write(data)
                await writer.drain()
            if detached:
                return True
        if close_stdin:
            writer.write_eof()  # the shim closes the container's stdin
            return False
        return True

    out_task = asyncio.create_task(output())
    tasks: set[asyncio.Task[Any]] = {out_task}
    if stdin:
        tasks.add(asyncio.create_task(input_ends_session()))
    try:
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if out_task in done:
                return
            for task in done:
                if task.exception() is not None or task.result():
                    return
    finally:
        for task in (out_task, *tasks):
            task.cancel()
        results = await asyncio.gather(out_task, *tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                logger.error("attach session failed", exc_info=result)
