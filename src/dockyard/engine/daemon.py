"""`dockyard daemon`: the engine's wiring and lifecycle, and the container supervisor.

Role: lay out the data root, detect the host facts dockerd probes (`host.py`), open the
listeners (`-H`, `listeners.py`), serve the Docker API (`dockyard.engine.api.routes`) on
them, and stop gracefully on SIGTERM/SIGINT.
`Engine` drives containers through the existing layers: image store → overlay snapshot →
OCI spec → shim → runc, and learns each container's exit from its shim.

Layout:

    <data-root>/images/                     the image store (images/store.py)
    <data-root>/snapshots/                  the overlay snapshotter's upper dirs
    <data-root>/containers/<id>/            config.v2.json (the record), <id>-json.log,
                                            bundle/config.json, rootfs/ (the mount point)
    <data-root>/engine-id                   the engine's ID (/info `ID`), made once
    <exec-root>/runc/                       runc's state (`runc --root`)
    <exec-root>/shims/<id>/                 each shim's state dir (pid files, exit.json)

Invariants:
- The daemon never parents a container: shims do, so stopping the daemon leaves running
  containers running, and a daemon start re-attaches to them (`wait_exit(state_dir)`) or
  records the exit their shim wrote while the daemon was away.
- Operations on one container are serialized by a per-container lock; every state change
  is persisted (atomically) before anyone is told about it (waiters, API answers).
- A container's rootfs is mounted only while it runs: unmounted when it exits, when its
  start fails, and before its snapshot is removed.
- Unix sockets are created root-only (0600) and removed on a graceful stop.

Attach: a session is a stream connection to the container's shim (the shim's attach
protocol, runtime/shim.py). Attaching to a running container connects to its `attach.sock`;
attaching to one that is not running (`docker run` attaches before it starts) makes a
socketpair whose other end is handed to the shim at the next start, so the session sees the
output from the first byte. A pending end is closed when its session ends, when the start
is over (the shim holds its own copy), or when the container is removed.
AutoRemove (`--rm`): the container is removed after it exits or fails to start, and only then
are `condition=removed` waiters answered.

Exec: `execs.py` runs `runc exec` against the running container (its bundle's process).
Pause: `runc pause`/`resume` freeze and thaw the cgroup; a paused container stays running.
SIGKILL or the stop signal thaws it after sending (moby kill.go), so stop and kill work.

Restart policies (model/restart.py decides): after an exit the monitor schedules a restart
after the backoff (the record says `restarting` meanwhile); `docker stop` cancels restarting
until the next start; a daemon start restarts what the policies ask for, and what was
pending when it stopped.

Security and resources: `model/host_config.py` turns the stored Config/HostConfig into the
spec builder's input (and fills dockerd's defaults at create); this module only reads what
that needs from the host (device nodes, the rootfs's /etc/passwd and /etc/group). `docker
update` merges there too and reaches a running container's cgroup through `runc update`.
OOM kills are reported by the shim (exit.json `oom_killed`).

Not yet: networking (every container gets `--network none`, or `host` when asked; /info
says so in Warnings).

Listeners (listeners.py): unix sockets (root-only), and tcp:// ones. With `--tlsverify`
every tcp listener speaks TLS and requires a client certificate that chains to
`--tlscacert` (the handshake refuses anyone else, before HTTP); `--tls` alone is TLS without
client certificates, as dockerd's. A tcp listener off loopback without `--tlsverify` is
refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dockyard import __version__
from dockyard.engine import containers as ct
from dockyard.engine import events as ev
from dockyard.engine.containers import (
    Conflict,
    ContainerRecord,
    ContainerStore,
    EngineError,
    InvalidArgument,
    NotModified,
)
from dockyard.engine.execs import ExecDriver
from dockyard.engine.health import HealthMonitor, healthcheck_entry
from dockyard.engine.host import HostInfo, detect_host
from dockyard.engine.images.build import BUILD_DIR_NAME, BUILD_SNAPSHOT_PREFIX
from dockyard.engine.images.model import InvalidReference, parse_reference
from dockyard.engine.images.snapshotter import (
    Mount,
    OverlaySnapshotter,
    SnapshotError,
    mount,
    mounts_under,
    unmount,
)
from dockyard.engine.images.store import LAYER_LEASE_S, ImageNotFound, ImageStore, ImageUser
from dockyard.engine.listeners import (
    API_MAX_BODY_BYTES,
    bind_listener,
    parse_host,
    server_tls_context,
)
from dockyard.engine.model import host_config as hcfg
from dockyard.engine.model import oci_spec
from dockyard.engine.model import restart as rp
from dockyard.engine.model.top import PsOutputError, parse_ps_output
from dockyard.engine.network.manager import NetworkConfig, NetworkManager
from dockyard.engine.runtime.logfile import format_rfc3339nano
from dockyard.engine.runtime.runc import Runc, RuncError
from dockyard.engine.runtime.shim import (
    ATTACH_OUTPUT,
    ATTACH_RESIZE,
    ATTACH_STDIN,
    ExitStatus,
    ShimConfig,
    ShimError,
    ShimZygote,
    attach_socket_path,
    load_exit_status,
    shim_running,
    start_shim,
    wait_exit,
)
from dockyard.engine.security import seccomp
from dockyard.engine.security.devices import device_nodes, host_devices
from dockyard.engine.volumes import model as vmodel
from dockyard.engine.volumes.model import MountPoint
from dockyard.engine.volumes.service import VolumeService

logger = logging.getLogger(__name__)

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_DATA_ROOT = Path("/var/lib/dockyard/engine")
DEFAULT_EXEC_ROOT = Path("/run/dockyard")
DEFAULT_STOP_TIMEOUT_S = 10  # moby container/container.go defaultStopTimeout
# `logs --follow` re-reads the json-file at this interval while the container runs.
FOLLOW_POLL_S = 0.1
# How long a forced remove or SIGKILL waits for the shim to report the exit.
KILL_WAIT_S = 30.0


@dataclass(eq=False)
class AttachSession:
    """One attach client's connection to a container's shim (stdcopy frames in, stdin out)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: socket.socket | None = None  # the shim's end, until a start hands it over


@dataclass(frozen=True)
class DaemonConfig:
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    data_root: Path = DEFAULT_DATA_ROOT
    exec_root: Path = DEFAULT_EXEC_ROOT
    labels: tuple[str, ...] = ()
    tls_verify: bool = False
    tls: bool = False  # TLS on tcp listeners; implied by tls_verify
    tls_ca_cert: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    runc_binary: str = "runc"
    # dockerd --insecure-registry: host[:port] or CIDR; loopback is always insecure.
    insecure_registries: tuple[str, ...] = ()
    network: NetworkConfig = field(default_factory=NetworkConfig)  # -b, --bip, --iptables


@dataclass(frozen=True)
class Layout:
    data_root: Path
    exec_root: Path

    @property
    def images(self) -> Path:
        return self.data_root / "images"

    @property
    def snapshots(self) -> Path:
        return self.data_root / "snapshots"

    @property
    def containers(self) -> Path:
        return self.data_root / "containers"

    @property
    def runc_root(self) -> Path:
        return self.exec_root / "runc"

    @property
    def shims(self) -> Path:
        return self.exec_root / "shims"

    def create(self) -> None:
        for directory in (self.data_root, self.exec_root, self.runc_root, self.shims):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def now_rfc3339() -> str:
    return format_rfc3339nano(time.time_ns())


def parse_signal(text: str, default: int) -> int:
    """Docker's signal argument: a number, `KILL` or `SIGKILL`; 400 otherwise."""
    if not text:
        return default
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise InvalidArgument(f"Invalid signal: {text}")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"Invalid signal: {text}") from None


def _mount_rootfs(mounts: Sequence[Mount], rootfs: Path) -> None:
    # One worker-thread hop for the directory and the mount: both are filesystem calls the
    # event loop should not wait in while other containers start.
    rootfs.mkdir(exist_ok=True)
    mount(mounts, rootfs)


def _write_bundle(bundle: Path, spec_json: str, state_dir: Path) -> None:
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(spec_json)
    shutil.rmtree(state_dir, ignore_errors=True)  # the previous run's


def _merge_env(image_env: Sequence[str], env: Sequence[str]) -> list[str]:
    # moby daemon/commit.go merge: the container's entries first, then the image's entries
    # whose keys it does not set.
    keys = {entry.partition("=")[0] for entry in env}
    return [*env, *(entry for entry in image_env if entry.partition("=")[0] not in keys)]


def _dependencies(host_config: Mapping[str, Any]) -> list[str]:
    """The containers this one needs running first: legacy link targets (stored as
    `/db:/web/alias`), a `container:` network and `--volumes-from` sources."""
    wanted = [str(link).split(":")[0] for link in host_config.get("Links") or ()]
    mode = str(host_config.get("NetworkMode") or "")
    if mode.startswith("container:"):
        wanted.append(mode.partition(":")[2])
    wanted += [str(v).split(":")[0] for v in host_config.get("VolumesFrom") or ()]
    return wanted


def _merge_set(own: Any, image: Sequence[str] | None) -> dict[str, Any] | None:
    """moby merge(): a Go set (`{"80/tcp": {}}`) with the image's keys added."""
    merged: dict[str, Any] = {str(k): {} for k in (own or {})}
    for key in image or ():
        merged.setdefault(str(key), {})
    return merged or (None if own is None else merged)


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class Engine:
    """The containers of one data root, and the operations the API exposes on them."""

    def __init__(
        self,
        layout: Layout,
        host: HostInfo,
        *,
        runc_binary: str,
        insecure_registries: tuple[str, ...] = (),
        network: NetworkConfig | None = None,
    ) -> None:
        self.layout = layout
        self.insecure_registries = insecure_registries
        self.host = host
        self.images = ImageStore(
            layout.images, image_users=self._image_users, held_layers=self._held_layers
        )
        self.snapshots = OverlaySnapshotter(layout.snapshots, self.images.layer_diff_path)
        self.containers = ContainerStore(layout.containers)
        self._runc_binary = runc_binary
        self._runc = Runc(layout.runc_root, runc_binary)
        self._seccomp = seccomp.default_profile()
        self._rng = random.SystemRandom()
        self._locks: dict[str, asyncio.Lock] = {}
        self._exit_waiters: dict[str, set[asyncio.Future[int]]] = {}
        # Containers whose exit is being torn down (`_on_exit`); a start waits for it.
        self._tearing_down: dict[str, asyncio.Event] = {}
        self._removed_waiters: dict[str, set[asyncio.Future[int]]] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        # A pidfd of each init this daemon started: signals go straight to it instead of
        # through a `runc kill` process (pid reuse is excluded: a pidfd names one process).
        self._init_pidfds: dict[str, int] = {}
        self._pending_attach: dict[str, list[tuple[socket.socket, str]]] = {}
        # Restart policies: pending restarts (sleeping their backoff), each container's
        # backoff, and the containers `docker stop` took out of restarting until a start.
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._backoff_ms: dict[str, int] = {}
        self._stopped_by_user: set[str] = set()
        self._closing = False
        # Forks shims from a warm process (runtime/shim_zygote.py): no Python start per start.
        self._zygote = ShimZygote()
        self.events = ev.EventBus(time.time_ns)
        self.execs = ExecDriver(
            self._runc,
            bundle_dir=lambda cid: self._dir(cid) / "bundle",
            rootfs_dir=self._rootfs,
            new_id=lambda: ct.new_id(self._rng),
            emit=self.emit_container_event,
        )
        self.health = HealthMonitor(self.containers, self.execs, self.emit_container_event)
        self.networks = NetworkManager(
            state_dir=layout.data_root / "network",
            netns_dir=layout.exec_root / "netns",
            files_dir=self._dir,
            config=network or NetworkConfig(),
            emit=self._emit_network_event,
            host_name=host.hostname,
        )
        # The loop the event bus lives on (set by recover); volume events from worker
        # threads are handed to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.volumes = VolumeService(
            layout.data_root,
            emit=self._emit_volume_event,
            rng=self._rng,
        )

    def _emit_network_event(self, action: str, nid: str, attrs: Mapping[str, str]) -> None:
        self.events.emit(ev.NETWORK, action, nid, attrs)

    def _emit_volume_event(self, action: str, name: str, attrs: Mapping[str, str]) -> None:
        """The volume service emits from the worker threads it blocks in (attach, detach,
        the /volumes routes); the bus's subscribers are asyncio queues of the loop, which
        only the loop's thread may touch (asyncio.Queue is not thread-safe)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.events.emit, ev.VOLUME, action, name, attrs)
            return
        self.events.emit(ev.VOLUME, action, name, attrs)

    def volume_users(self) -> dict[str, list[str]]:
        """Volume name -> the containers whose mounts name it (running or not)."""
        users: dict[str, list[str]] = {}
        for record in self.containers:
            for point in record.mount_points:
                if point.get("type") == "volume" and point.get("name"):
                    users.setdefault(str(point["name"]), []).append(record.id)
        return users

    @staticmethod
    def mount_points(record: ContainerRecord) -> list[MountPoint]:
        return [MountPoint.from_json(m) for m in record.mount_points]

    def find_container(self, ref: str) -> ContainerRecord | None:
        try:
            return self.containers.resolve(ref)
        except EngineError:
            return None

    def emit_container_event(
        self, cid: str, action: str, extra: Mapping[str, str] | None = None
    ) -> None:
        """A container event carrying the record's name, image and labels (events.py)."""
        try:
            record = self.containers.get(cid)
        except KeyError:
            return  # removed meanwhile
        labels = record.config.get("Labels") or {}
        attributes = ev.container_attributes(
            name=record.name, image=record.image, labels=labels, extra=extra
        )
        self.events.emit(ev.CONTAINER, action, cid, attributes)

    # -- hooks for the image store ------------------------------------------------------

    def _image_users(self, image_id: str) -> list[ImageUser]:
        return [ImageUser(r.id, r.state.running) for r in self.containers if r.image_id == image_id]

    def _held_layers(self) -> list[str]:
        return self.snapshots.held_chain_ids()

    # -- paths ----------------------------------------------------------------------------

    def _dir(self, cid: str) -> Path:
        return self.containers.container_dir(cid)

    def log_path(self, cid: str) -> Path:
        return self._dir(cid) / f"{cid}-json.log"

    def _rootfs(self, cid: str) -> Path:
        return self._dir(cid) / "rootfs"

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    # -- lifecycle --------------------------------------------------------------------------

    async def recover(self) -> None:
        """Re-attach to containers that ran when the daemon stopped; record the others' exits."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._clear_stale_mounts)
        await asyncio.to_thread(self._clear_stale_builds)
        # Interrupted pulls, loads and builds: staging and layers no image took.
        await asyncio.to_thread(self.images.recover, lease_s=LAYER_LEASE_S, now_s=time.time())
        # Volumes and networks first: restart policies below start containers on them.
        running = {
            r.id: r
            for r in self.containers
            if r.state.running and shim_running(self.layout.shims / r.id)
        }
        await asyncio.to_thread(
            self.volumes.recover, {cid: self.mount_points(r) for cid, r in running.items()}
        )
        await self.networks.start(running)
        records = {r.id: r for r in self.containers}
        for cid in rp.start_order(
            [(r.id, r.name, _dependencies(r.host_config)) for r in records.values()]
        ):
            record = records[cid]
            if not record.state.running:
                if record.state.status == "exited":
                    # The daemon stopped between an AutoRemove container's exit and removal.
                    await self._auto_remove(record.id)
                    await self._start_with_daemon(record.id)
                continue
            state_dir = self.layout.shims / record.id
            if shim_running(state_dir):
                self._watch(record.id, lambda d=state_dir: wait_exit(d))  # type: ignore[misc]
                self.health.start(record.id)
                continue
            status = load_exit_status(state_dir) or ExitStatus(
                255, None, False, now_rfc3339(), "the container's shim is gone"
            )
            await self._on_exit(record.id, status)
            await self._auto_remove(record.id)

    async def _start_with_daemon(self, cid: str) -> None:
        """Restart policies at daemon start (moby daemon.go restore)."""
        try:
            record = self.containers.get(cid)
        except KeyError:
            return  # auto-removed
        state = record.state
        if not state.restarting and not rp.at_daemon_start(
            self._policy(record),
            restart_count=state.restart_count,
            exit_code=state.exit_code,
            manually_stopped=state.manually_stopped,
        ):
            return
        if not state.restarting:
            self.containers.save(record.with_state(replace(state, restarting=True)))
        try:
            await self._start(cid, by_policy=True)
        except EngineError as e:
            logger.error("container %s: restart at daemon start failed: %s", cid, e)

    def _policy(self, record: ContainerRecord) -> rp.RestartPolicy:
        try:
            return rp.parse_policy(record.host_config.get("RestartPolicy"))
        except rp.InvalidRestartPolicy:
            return rp.RestartPolicy()

    def _after_exit(self, cid: str) -> None:
        """Schedule a restart if the container's policy asks for one (moby monitor.go)."""
        record = self.containers.get(cid)
        if self._closing or cid in self._stopped_by_user:
            return
        state = record.state
        ran_ns = ct.parse_time_ns(state.finished_at) - ct.parse_time_ns(state.started_at)
        decision = rp.on_exit(
            self._policy(record),
            restart_count=state.restart_count,
            backoff_ms=self._backoff_ms.get(cid, 0),
            exit_code=state.exit_code,
            manually_stopped=state.manually_stopped,
            ran_ms=max(0, ran_ns // 1_000_000),
        )
        self._backoff_ms[cid] = decision.backoff_ms
        if not decision.restart:
            return
        restarting = replace(state, restarting=True, restart_count=state.restart_count + 1)
        self.containers.save(record.with_state(restarting))
        self._restarts[cid] = asyncio.create_task(self._restart_later(cid, decision.delay_ms))

    async def _restart_later(self, cid: str, delay_ms: int) -> None:
        await asyncio.sleep(delay_ms / 1000)  # the policy's backoff, not a wait for a condition
        self._restarts.pop(cid, None)
        try:
            await self._start(cid, by_policy=True)
        except (EngineError, KeyError) as e:
            logger.error("container %s: restart failed: %s", cid, e)

    def _cancel_restart(self, cid: str) -> None:
        task = self._restarts.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Stop watching (containers keep running under their shims); pending restarts
        stay recorded (`restarting`) and happen at the next daemon start."""
        self._closing = True
        await self.health.close()
        await self._zygote.close()
        restarts = list(self._restarts.values())
        for task in restarts:
            task.cancel()
        if restarts:
            await asyncio.wait(restarts)
        for task in self._monitors.values():
            task.cancel()
        if self._monitors:
            await asyncio.wait(list(self._monitors.values()))
        self._monitors.clear()
        for cid in list(self._init_pidfds):
            self._close_init_pidfd(cid)
        running = any(r.state.running for r in self.containers)
        await self.networks.close(containers_running=running)
        with contextlib.suppress(OSError):  # logged by the store; nothing left to answer
            await self.containers.flush()  # records written behind land before exit

    def _watch(self, cid: str, waiter: Callable[[], Awaitable[ExitStatus]]) -> None:
        self._monitors[cid] = asyncio.create_task(self._monitor(cid, waiter))

    async def _monitor(self, cid: str, waiter: Callable[[], Awaitable[ExitStatus]]) -> None:
        try:
            status = await waiter()
        except ShimError as e:
            logger.error("container %s: %s", cid, e)
            status = ExitStatus(255, None, False, now_rfc3339(), str(e))
        self._monitors.pop(cid, None)
        await self._on_exit(cid, status)
        await self._auto_remove(cid)

    async def _auto_remove(self, cid: str) -> None:
        """`--rm`: remove a container that is no longer running (moby daemon/monitor.go)."""
        try:
            record = self.containers.get(cid)
        except KeyError:
            return  # already removed (`docker rm -f` while the exit was being recorded)
        if not record.host_config.get("AutoRemove") or record.state.running:
            return
        try:
            # moby monitor.go/start.go: ContainerRmConfig{ForceRemove, RemoveVolume}: `--rm`
            # takes the container's anonymous volumes with it.
            await self.remove(cid, force=True, remove_volumes=True)
        except EngineError:
            pass  # removed meanwhile (`docker rm -f` raced us)
        except Exception:
            logger.exception("container %s: auto-remove failed", cid)

    async def _on_exit(self, cid: str, status: ExitStatus) -> None:
        # A start (by the API or the restart policy) waits for this teardown: the exited
        # state is saved first, and a start racing the unmount below would lose its rootfs
        # (runc: `exec: "sh": executable file not found`). docker-compose 1.29.2's `run`
        # starts a container again right after it exits. Not the container lock: stop and
        # kill hold it while they wait for this exit.
        done = self._tearing_down[cid] = asyncio.Event()
        try:
            await self._tear_down_exited(cid, status)
        finally:
            done.set()
            if self._tearing_down.get(cid) is done:
                del self._tearing_down[cid]

    def _open_init_pidfd(self, cid: str, pid: int) -> None:
        """Hold a pidfd of the container's init, once it is known to be that init: a pid
        whose cgroup names the container (a pid the shim already reaped and the kernel gave
        to another process would not be in it). Without one, signals go through runc."""
        self._close_init_pidfd(cid)
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                ours = cid in f.read()
        except OSError:
            ours = False
        if ours:
            self._init_pidfds[cid] = fd
        else:
            os.close(fd)

    def _close_init_pidfd(self, cid: str) -> None:
        fd = self._init_pidfds.pop(cid, None)
        if fd is not None:
            os.close(fd)

    async def _tear_down_exited(self, cid: str, status: ExitStatus) -> None:
        self._close_init_pidfd(cid)
        record = self.containers.get(cid)
        state = ct.exited(
            record.state,
            exit_code=status.exit_code,
            finished_at=status.finished_at,
            oom_killed=status.oom_killed,
        )
        self.containers.save(record.with_state(state))
        self.health.stop(cid)
        if status.oom_killed:
            self.emit_container_event(cid, "oom")
        self.emit_container_event(cid, "die", {"exitCode": str(status.exit_code)})
        await self._release_start(cid)
        # Decided before anyone hears of the exit: an answer to stop/kill/wait already
        # shows whether the container restarts.
        self._after_exit(cid)
        await asyncio.to_thread(unmount, self._rootfs(cid))
        for fut in self._exit_waiters.pop(cid, set()):
            if not fut.done():
                fut.set_result(status.exit_code)

    async def _release_start(self, cid: str) -> None:
        """What a start took besides the rootfs: the network sandbox and volume references."""
        try:
            await self.networks.detach_container(cid)
        except Exception:
            logger.exception("container %s: network teardown failed", cid)
        await asyncio.to_thread(self.volumes.detach, cid)

    # -- waiting ------------------------------------------------------------------------------

    def register_wait(self, record: ContainerRecord, condition: str) -> asyncio.Future[int]:
        """A future for `condition`, registered now so no exit after this call is missed."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if condition == "removed":
            self._removed_waiters.setdefault(record.id, set()).add(fut)
        elif condition == "next-exit" or record.state.running:
            self._exit_waiters.setdefault(record.id, set()).add(fut)
        else:
            fut.set_result(record.state.exit_code)
        return fut

    def forget_wait(self, cid: str, fut: asyncio.Future[int]) -> None:
        for table in (self._exit_waiters, self._removed_waiters):
            waiters = table.get(cid)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    del table[cid]

    async def _await_exit(self, cid: str, fut: asyncio.Future[int], timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(fut)
        finally:
            self.forget_wait(cid, fut)

    # -- operations -------------------------------------------------------------------------

    def create(
        self, name: str, body: Mapping[str, Any], *, api_version: str = "1.44"
    ) -> tuple[ContainerRecord, list[str]]:
        image_ref = str(body.get("Image") or "")
        if not image_ref:
            raise InvalidArgument("config cannot be empty in order to create a container")
        try:
            image = self.images.get(image_ref)
        except ImageNotFound:
            # dockerd names the reference with its default tag: `No such image: x:latest`.
            try:
                shown = parse_reference(image_ref).familiar()
            except InvalidReference:
                shown = image_ref
            raise ImageNotFound(f"No such image: {shown}") from None
        full_name = (
            ct.validate_name(name) if name else ct.generate_name(self._rng, self.containers.names())
        )
        cid = ct.new_id(self._rng)
        image_cfg = image.config.config
        entrypoint = _strings(body.get("Entrypoint"))
        cmd = _strings(body.get("Cmd"))
        if entrypoint is None and image_cfg is not None and image_cfg.entrypoint is not None:
            entrypoint = list(image_cfg.entrypoint)
            if cmd is None and image_cfg.cmd is not None:
                cmd = list(image_cfg.cmd)
        elif entrypoint is None and cmd is None and image_cfg is not None:
            # moby daemon/create.go: the image's Cmd applies only when the request sets
            # neither Entrypoint nor Cmd.
            cmd = list(image_cfg.cmd) if image_cfg.cmd is not None else None
        argv = [*(entrypoint or []), *(cmd or [])]
        if not argv:
            raise InvalidArgument("No command specified")
        image_env = list(image_cfg.env or ()) if image_cfg is not None else []
        env = _merge_env(image_env, _strings(body.get("Env")) or [])
        working_dir = str(body.get("WorkingDir") or (image_cfg.working_dir if image_cfg else ""))
        labels = dict(image_cfg.labels or ()) if image_cfg is not None else {}
        labels.update({str(k): str(v) for k, v in (body.get("Labels") or {}).items()})
        host_config, warnings = hcfg.fill_defaults(
            body.get("HostConfig") or {}, host=self.host.facts
        )
        stop_signal = str(body.get("StopSignal") or (image_cfg.stop_signal if image_cfg else ""))
        try:
            hcfg.validate_create(
                {**body, "StopSignal": stop_signal}, host_config, host=self.host.facts
            )
        except oci_spec.SpecError as e:
            raise InvalidArgument(str(e)) from None
        # moby daemon/container.go: the short ID names the container, except on the host's
        # network, where it takes the host's name.
        default_hostname = self.host.hostname if host_config["NetworkMode"] == "host" else cid[:12]
        config: dict[str, Any] = {
            "Hostname": str(body.get("Hostname") or default_hostname),
            "Domainname": str(body.get("Domainname") or ""),
            "User": str(body.get("User") or (image_cfg.user if image_cfg else "")),
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout")),
            "AttachStderr": bool(body.get("AttachStderr")),
            "Tty": bool(body.get("Tty")),
            "OpenStdin": bool(body.get("OpenStdin")),
            "StdinOnce": bool(body.get("StdinOnce")),
            "Env": env,
            "Cmd": cmd,
            "Image": image_ref,
            "Volumes": _merge_set(body.get("Volumes"), image_cfg.volumes if image_cfg else None),
            "WorkingDir": working_dir,
            "Entrypoint": entrypoint,
            "OnBuild": None,
            "Labels": labels,
        }
        # moby merge(): the image's EXPOSE joins the container's ExposedPorts.
        exposed = _merge_set(
            body.get("ExposedPorts"), image_cfg.exposed_ports if image_cfg else None
        )
        if exposed:
            config["ExposedPorts"] = exposed
        # Shown only when set, as dockerd's omitempty; stop() reads them.
        if stop_signal:
            config["StopSignal"] = stop_signal
        if body.get("StopTimeout") is not None:
            config["StopTimeout"] = int(body["StopTimeout"])
        config.update(healthcheck_entry(body.get("Healthcheck"), image_cfg))
        record = ContainerRecord(
            id=cid,
            name=full_name,
            created=now_rfc3339(),
            image=image_ref,
            image_id=image.id,
            path=argv[0],
            args=tuple(argv[1:]),
            config=config,
            host_config=host_config,
        )
        # Validate as dockerd does at create (memory minimum, capabilities, modes...).
        try:
            oci_spec.build_spec(
                self._spec_config(record),
                rootfs="/",
                host=self._host_facts(record, strict=False),
                container_id=cid,
                seccomp_profile=self._seccomp,
            )
        except oci_spec.SpecError as e:
            raise InvalidArgument(str(e)) from None
        endpoints = self.networks.plan_endpoints(
            body, config, host_config, body.get("NetworkingConfig"), api_version=api_version
        )
        volumes_from: list[tuple[list[MountPoint], str]] = []
        for spec in host_config.get("VolumesFrom") or ():
            name, mode = vmodel.parse_volumes_from(str(spec))
            try:
                source = self.containers.resolve(name)
            except ct.NotFound as e:
                # moby registerMountPoints: errdefs.InvalidParameter, a 400 (a 404 makes
                # `docker run` try to pull the image instead of printing the error).
                raise InvalidArgument(str(e)) from None
            volumes_from.append((self.mount_points(source), mode))
        # Last: it creates the volumes the container names (moby does at create).
        points = self.volumes.plan(
            binds=[str(b) for b in host_config.get("Binds") or ()],
            mounts=list(host_config.get("Mounts") or ()),
            config_volumes=list(config.get("Volumes") or {}),
            image_volumes=list(image_cfg.volumes or ()) if image_cfg else [],
            volumes_from=volumes_from,
            tmpfs_destinations=list(host_config.get("Tmpfs") or {}),
            volume_driver=str(host_config.get("VolumeDriver") or ""),
        )
        record = replace(
            record,
            mount_points=tuple(p.to_json() for p in points),
            endpoints_config=endpoints,
        )
        self.containers.add(record)
        try:
            self.snapshots.prepare(cid, image.chain_ids)
        except BaseException:
            self.containers.remove(cid)
            self.volumes.remove_container(cid, points, remove_anonymous=True, users={})
            raise
        self.networks.set_container_name(cid, full_name)
        self.emit_container_event(cid, "create")
        return record, warnings

    def _spec_config(
        self, record: ContainerRecord, rootfs: Path | None = None
    ) -> oci_spec.ContainerConfig:
        """The spec builder's input; with the mounted `rootfs`, users and groups resolved
        against its /etc/passwd and /etc/group (before the start there is nothing to read,
        so validation runs with root)."""
        resolved = oci_spec.ResolvedUser(0, 0)
        if rootfs is not None:
            texts = []
            for name in ("passwd", "group"):
                try:
                    texts.append((rootfs / "etc" / name).read_text(errors="replace"))
                except OSError:
                    texts.append("")
            resolved = hcfg.resolve_user(
                str(record.config.get("User") or ""),
                [str(g) for g in record.host_config.get("GroupAdd") or ()],
                passwd=texts[0],
                group=texts[1],
            )
        return hcfg.container_config(
            path=record.path,
            args=record.args,
            config=record.config,
            hc=record.host_config,
            resolved_user=resolved,
        )

    def _host_facts(self, record: ContainerRecord, *, strict: bool = True) -> oci_spec.HostFacts:
        """The host facts plus the device nodes this container maps (stat'ed now, as
        dockerd does at each start)."""
        hc = record.host_config
        paths = hcfg.device_paths(hc)
        if not paths and not hc.get("Privileged"):
            return self.host.facts
        nodes = device_nodes(paths, strict=strict)
        if hc.get("Privileged"):
            nodes = (*host_devices(), *nodes)
        return replace(self.host.facts, devices=nodes)

    async def update(self, ref: str, body: Mapping[str, Any]) -> list[str]:
        """`docker update`: persist the merged HostConfig; a running container's cgroup
        gets the new limits through `runc update` first (moby daemon/update.go)."""
        cid = self.containers.resolve(ref).id
        async with self._lock(cid):
            record = self.containers.get(cid)
            try:
                result = hcfg.apply_update(record.host_config, body, host=self.host.facts)
            except hcfg.UpdateConflict as e:
                raise Conflict(f"Cannot update container {cid}: {e}") from None
            except oci_spec.SpecError as e:
                raise InvalidArgument(str(e)) from None
            if record.state.running and not record.state.restarting and result.resources:
                try:
                    await self._runc.update(cid, result.resources)
                except RuncError as e:
                    raise EngineError(f"Cannot update container {cid}: {e.message}") from None
            self.containers.save(replace(record, host_config=dict(result.host_config)))
            return list(result.warnings)

    async def start(self, ref: str) -> None:
        record = self.containers.resolve(ref)
        try:
            await self._start(record.id)
        except EngineError:
            # moby daemon/start.go: an AutoRemove container whose start failed is removed.
            await self._auto_remove(record.id)
            raise

    async def _start(self, cid: str, *, by_policy: bool = False) -> None:
        teardown = self._tearing_down.get(cid)
        if teardown is not None:
            await teardown.wait()  # the last run's exit is still being torn down
        async with self._lock(cid):
            record = self.containers.get(cid)
            if by_policy:
                if not record.state.restarting or record.state.running:
                    return  # stopped, started or removed meanwhile
                record = record.with_state(replace(record.state, restarting=False))
            else:
                if record.state.running:
                    raise NotModified()
                # A manual start resets the policy's count, backoff and the user's stop.
                self._cancel_restart(cid)
                self._backoff_ms.pop(cid, None)
                self._stopped_by_user.discard(cid)
                record = record.with_state(
                    replace(record.state, restarting=False, restart_count=0, manually_stopped=False)
                )
            rootfs = self._rootfs(cid)
            await asyncio.to_thread(_mount_rootfs, self.snapshots.mounts(cid), rootfs)
            try:
                spec_config = await self._start_config(record, rootfs)
                spec = oci_spec.build_spec(
                    spec_config,
                    rootfs=str(rootfs),
                    host=self._host_facts(record),
                    container_id=cid,
                    seccomp_profile=self._seccomp,
                )
                propagation = vmodel.rootfs_propagation(self.mount_points(record))
                if propagation:
                    spec["linux"]["rootfsPropagation"] = propagation
                bundle = self._dir(cid) / "bundle"
                state_dir = self.layout.shims / cid
                await asyncio.to_thread(_write_bundle, bundle, json.dumps(spec), state_dir)
                # Sessions that attached before the start get the output from its first byte.
                pending = self._pending_attach.pop(cid, [])
                # Taken before the start: a short-lived init may exit (and its shim stamp
                # FinishedAt) before start_shim returns, and StartedAt must not be later.
                started_at = now_rfc3339()
                try:
                    handle = await start_shim(
                        ShimConfig(
                            container_id=cid,
                            bundle=bundle,
                            state_dir=state_dir,
                            runc_root=self.layout.runc_root,
                            runc_binary=self._runc_binary,
                            tty=record.tty,
                            stdin=bool(record.config.get("OpenStdin")),
                            stdin_once=bool(record.config.get("StdinOnce")),
                            log_path=self.log_path(cid),
                            console_size=_console_size(record.host_config),
                        ),
                        attach_fds=[(sock.fileno(), mode) for sock, mode in pending],
                        zygote=self._zygote,
                    )
                finally:
                    for sock, _ in pending:
                        sock.close()
            except RuncError as e:
                await self._release_start(cid)
                await asyncio.to_thread(unmount, rootfs)
                message = ct.docker_start_error(e.message)
                self.containers.save(
                    record.with_state(ct.start_failed(record.state, error=message))
                )
                raise InvalidArgument(message) from None
            except oci_spec.SpecError as e:
                await self._release_start(cid)
                await asyncio.to_thread(unmount, rootfs)
                raise InvalidArgument(str(e)) from None
            except BaseException:
                await self._release_start(cid)
                await asyncio.to_thread(unmount, rootfs)
                raise
            state = ct.started(record.state, pid=handle.init_pid, started_at=started_at)
            self.containers.save(record.with_state(state))
            self._open_init_pidfd(cid, handle.init_pid)
            self._watch(cid, handle.wait_exit)
            self.emit_container_event(cid, "start")
            self.health.start(cid)

    async def _start_config(
        self, record: ContainerRecord, rootfs: Path
    ) -> oci_spec.ContainerConfig:
        """The spec input with what a start adds: volume and bind mounts, the network
        namespace, the /etc files and the link environment."""
        cid = record.id
        base = self._spec_config(record, rootfs)
        volume_mounts = await asyncio.to_thread(
            self.volumes.attach,
            cid,
            self.mount_points(record),
            rootfs,
        )
        net = await self.networks.attach_container(
            record, lookup=self.find_container, pid_of=self._pid_of
        )
        if net.hostname is not None:
            base = replace(base, hostname=net.hostname, domainname=net.domainname or "")
        taken = {m.destination for m in volume_mounts}
        # A volume or bind on /etc/hosts etc. wins over the generated file (moby).
        files = tuple(m for m in net.mounts if m.destination not in taken)
        return replace(
            base,
            mounts=(*volume_mounts, *files),
            network_namespace_path=net.netns_path,
            env=(*net.env, *base.env),
        )

    def _pid_of(self, cid: str) -> int:
        return self.containers.get(cid).state.pid

    async def connect_network(
        self, network_ref: str, container_ref: str, endpoint: Mapping[str, Any]
    ) -> None:
        cid = self.containers.resolve(container_ref).id
        async with self._lock(cid):
            record = self.containers.get(cid)
            configs = await self.networks.connect(network_ref, record, endpoint)
            self.containers.save(replace(record, endpoints_config=configs))

    async def disconnect_network(
        self, network_ref: str, container_ref: str, *, force: bool
    ) -> None:
        cid = self.containers.resolve(container_ref).id
        async with self._lock(cid):
            record = self.containers.get(cid)
            configs = await self.networks.disconnect(network_ref, record, force=force)
            self.containers.save(replace(record, endpoints_config=configs))

    async def stop(self, ref: str, timeout_s: int | None) -> None:
        record = self.containers.resolve(ref)
        cid = record.id
        async with self._lock(cid):
            record = self.containers.get(cid)
            if record.state.restarting:
                # moby: stop cancels the pending restart; the container stays exited.
                self._cancel_restart(cid)
                self._stopped_by_user.add(cid)
                stopped = replace(record.state, restarting=False, manually_stopped=True)
                self.containers.save(record.with_state(stopped))
                return
            if not record.state.running:
                raise NotModified()
            # `docker stop` disables the restart policy until the next start.
            self._stopped_by_user.add(cid)
            record = record.with_state(replace(record.state, manually_stopped=True))
            self.containers.save(record)
            self.health.stop(cid)  # moby containerStop: no probe result counts once stopping
            stop_timeout = record.config.get("StopTimeout")
            if timeout_s is None:
                timeout_s = (
                    int(stop_timeout) if stop_timeout is not None else DEFAULT_STOP_TIMEOUT_S
                )
            sig = parse_signal(str(record.config.get("StopSignal") or ""), signal.SIGTERM)
            fut = self.register_wait(record, "next-exit")
            with contextlib.suppress(RuncError):  # it may have exited meanwhile
                await self._signal(record, sig)
            # A negative timeout waits for ever (moby: -1).
            grace = float("inf") if timeout_s < 0 else float(timeout_s)
            try:
                await self._await_exit(cid, fut, grace)
            except TimeoutError:
                fut = self.register_wait(self.containers.get(cid), "not-running")
                self.emit_container_event(cid, "kill", {"signal": str(int(signal.SIGKILL))})
                with contextlib.suppress(RuncError):
                    await self._runc.kill(cid, signal.SIGKILL)
                await self._await_exit(cid, fut, KILL_WAIT_S)
            self.emit_container_event(cid, "stop")

    async def restart(self, ref: str, timeout_s: int | None) -> None:
        """`docker restart`: stop if running (with the stop timeout), then start (moby
        daemon/restart.go). Failures after the lookup read "Cannot restart container <ref>:
        <err>" (a 500, as dockerd's plain error)."""
        cid = self.containers.resolve(ref).id
        try:
            with contextlib.suppress(NotModified):
                await self.stop(cid, timeout_s)
            await self.start(cid)
        except (ct.NotFound, ImageNotFound):
            raise
        except EngineError as e:
            raise EngineError(f"Cannot restart container {ref}: {e}") from None
        self.emit_container_event(cid, "restart")

    async def _signal(self, record: ContainerRecord, sig: int) -> None:
        """Send `sig`; a paused container is thawed after SIGKILL or its stop signal, which it
        then receives (moby daemon/kill.go killWithSignal)."""
        cid = record.id
        # Logged before the signal goes out: the container's `die` (from its shim) must not
        # overtake it, as clients read kill -> die (moby logs it right after the signal).
        self.emit_container_event(cid, "kill", {"signal": str(sig)})
        pidfd = self._init_pidfds.get(cid)
        if pidfd is None:
            await self._runc.kill(cid, sig)
        else:
            # What `runc kill` does (a signal to the init only), without a runc process.
            with contextlib.suppress(ProcessLookupError):  # exited: its exit is on the way
                signal.pidfd_send_signal(pidfd, sig)
        stop_sig = parse_signal(str(record.config.get("StopSignal") or ""), signal.SIGTERM)
        if not record.state.paused or sig not in (signal.SIGKILL, stop_sig):
            return
        with contextlib.suppress(RuncError):  # it may have exited meanwhile
            await self._runc.resume(cid)
        current = self.containers.get(cid)
        if current.state.running and current.state.paused:
            self.containers.save(current.with_state(ct.unpaused(current.state)))

    async def pause(self, ref: str) -> None:
        cid = self.containers.resolve(ref).id
        async with self._lock(cid):
            record = self.containers.get(cid)
            if not record.state.running:
                raise Conflict(f"Container {cid} is not running")
            if record.state.paused:
                raise Conflict(f"Container {cid} is already paused")
            try:
                await self._runc.pause(cid)
            except RuncError as e:
                raise EngineError(f"Cannot pause container {cid}: {e.message}") from None
            record = self.containers.get(cid)
            if record.state.running:
                self.containers.save(record.with_state(ct.paused(record.state)))
                self.health.stop(cid)
                self.emit_container_event(cid, "pause")

    async def unpause(self, ref: str) -> None:
        cid = self.containers.resolve(ref).id
        async with self._lock(cid):
            record = self.containers.get(cid)
            if not record.state.paused:
                raise Conflict(f"Container {cid} is not paused")
            try:
                await self._runc.resume(cid)
            except RuncError as e:
                raise EngineError(f"Cannot unpause container {cid}: {e.message}") from None
            record = self.containers.get(cid)
            if record.state.running:
                self.containers.save(record.with_state(ct.unpaused(record.state)))
                self.emit_container_event(cid, "unpause")
                self.health.resume(cid)

    async def kill(self, ref: str, signal_text: str) -> None:
        record = self.containers.resolve(ref)
        sig = parse_signal(signal_text, signal.SIGKILL)
        cid = record.id
        async with self._lock(cid):
            record = self.containers.get(cid)
            if not record.state.running:
                raise Conflict(f"Cannot kill container: {ref}: Container {cid} is not running")
            # moby kill.go: HasBeenManuallyStopped (unless-stopped then stays down), and
            # SIGKILL or the stop signal cancel restarting until the next start (ExitOnNext).
            stop_sig = parse_signal(str(record.config.get("StopSignal") or ""), signal.SIGTERM)
            if sig in (signal.SIGKILL, stop_sig):
                self._stopped_by_user.add(cid)
            record = record.with_state(replace(record.state, manually_stopped=True))
            self.containers.save(record)
            fut = self.register_wait(record, "next-exit")
            try:
                await self._signal(record, sig)
                if sig == signal.SIGKILL:
                    # dockerd waits for a SIGKILLed container to be gone before answering.
                    await self._await_exit(cid, fut, KILL_WAIT_S)
            finally:
                self.forget_wait(cid, fut)

    async def remove(self, ref: str, *, force: bool, remove_volumes: bool = False) -> None:
        record = self.containers.resolve(ref)
        cid = record.id
        async with self._lock(cid):
            record = self.containers.get(cid)
            if record.state.restarting and not force:
                raise Conflict(
                    f"You cannot remove a restarting container {cid}. Stop the container "
                    "before attempting removal or force remove"
                )
            self._cancel_restart(cid)
            if record.state.running:
                if not force:
                    raise Conflict(
                        f"You cannot remove a running container {cid}. Stop the container "
                        "before attempting removal or force remove"
                    )
                self._stopped_by_user.add(cid)  # no restart after this kill
                fut = self.register_wait(record, "not-running")
                with contextlib.suppress(RuncError):
                    await self._signal(record, signal.SIGKILL)
                await self._await_exit(cid, fut, KILL_WAIT_S)
                record = self.containers.get(cid)
            await asyncio.to_thread(unmount, self._rootfs(cid))
            # The shim deletes the runc container; this covers a shim that crashed. runc
            # keeps each container's state in <root>/<id>: a stat, not a `runc list`.
            if (self.layout.runc_root / cid).exists():
                with contextlib.suppress(RuncError):
                    await self._runc.delete(cid, force=True)
            with contextlib.suppress(SnapshotError):
                await asyncio.to_thread(self.snapshots.remove, cid)
            await self.networks.detach_container(cid)
            self.networks.forget_container(cid)
            await asyncio.to_thread(
                self.volumes.remove_container,
                cid,
                self.mount_points(record),
                remove_anonymous=remove_volumes,
                users=self.volume_users(),
            )
            shutil.rmtree(self.layout.shims / cid, ignore_errors=True)
            self.emit_container_event(cid, "destroy")
            self._close_init_pidfd(cid)
            await self.containers.settle(cid)
            self.containers.remove(cid)
            self.execs.forget_container(cid)
            self._backoff_ms.pop(cid, None)
            self._stopped_by_user.discard(cid)
            for sock, _ in self._pending_attach.pop(cid, []):
                sock.close()
        self._locks.pop(cid, None)
        for fut in self._removed_waiters.pop(cid, set()):
            if not fut.done():
                fut.set_result(record.state.exit_code)

    async def rename(self, ref: str, new_name: str) -> None:
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        cid = self.containers.resolve(ref).id
        name = ct.validate_name(new_name)
        async with self._lock(cid):
            if self.containers.get(cid).name == name:
                raise InvalidArgument("Renaming a container with the same name as its current name")
            old_name = self.containers.get(cid).name
            self.containers.rename(cid, name)
            self.networks.set_container_name(cid, name)
            self.emit_container_event(cid, "rename", {"oldName": old_name})

    def _clear_stale_mounts(self) -> None:
        """Unmount what `mounted_rootfs` left when a daemon died during a copy or export."""
        mounts = self.layout.exec_root / "mounts"
        for point in sorted(mounts.iterdir()) if mounts.is_dir() else []:
            try:
                unmount(point)
                point.rmdir()
            except (OSError, SnapshotError) as e:
                logger.warning("stale archive mount %s: %s", point, e)

    def _clear_stale_builds(self) -> None:
        """What a build cut short by the daemon's death left: mounts and working trees under
        the data root's build directory, and the snapshots of its COPY/ADD layers (they
        would pin their layers against garbage collection)."""
        root = self.layout.data_root / BUILD_DIR_NAME
        if root.is_dir():
            for point in mounts_under(root):
                try:
                    unmount(point)
                except (OSError, SnapshotError) as e:
                    logger.warning("stale build mount %s: %s", point, e)
            shutil.rmtree(root, ignore_errors=True)
        for snapshot in self.snapshots.ids():
            if snapshot.startswith(BUILD_SNAPSHOT_PREFIX):
                with contextlib.suppress(SnapshotError):
                    self.snapshots.remove(snapshot)

    @contextlib.asynccontextmanager
    async def mounted_rootfs(self, ref: str) -> AsyncGenerator[tuple[ContainerRecord, Path], None]:
        """The container's root filesystem at a private mount point, for cp and export.

        Running: a bind of its mounted rootfs, so writes reach the container and its exit
        can still unmount the original (our reads hold only the bind busy). Stopped: its
        snapshot mounted there under the container's lock, held until the caller is done,
        so no start mounts the same upper directory meanwhile. Always unmounted after.
        """
        cid = self.containers.resolve(ref).id
        point = self.layout.exec_root / "mounts" / f"{cid}-{uuid.uuid4().hex[:12]}"
        lock = self._lock(cid)
        await lock.acquire()
        locked = True
        try:
            record = self.containers.get(cid)
            point.mkdir(parents=True, mode=0o700)
            if record.state.running:
                bind = [Mount("bind", str(self._rootfs(cid)), "", ())]
                await asyncio.to_thread(mount, bind, point)
                if self.containers.get(cid).state.running:
                    lock.release()  # start and stop need not wait for the copy
                    locked = False
                else:
                    # It exited while we bound: the bind may hold the bare mount point.
                    await asyncio.to_thread(unmount, point)
                    await asyncio.to_thread(mount, self.snapshots.mounts(cid), point)
            else:
                await asyncio.to_thread(mount, self.snapshots.mounts(cid), point)
            try:
                yield record, point
            finally:
                await asyncio.to_thread(unmount, point)
        finally:
            with contextlib.suppress(OSError):
                point.rmdir()
            if locked:
                lock.release()

    async def top(self, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
        """moby daemon/top_unix.go: the host's `ps` rows of the container's processes."""
        record = self.containers.resolve(ref)
        if not record.state.running:
            raise Conflict(f"Container {record.id} is not running")
        try:
            pids = await self._runc.ps(record.id)
        except RuncError as e:
            raise EngineError(str(e)) from None
        proc = await asyncio.create_subprocess_exec(
            "ps",
            *(ps_args.split() or ["-ef"]),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise EngineError(f"ps: {err.decode(errors='replace').strip()}")
        try:
            rows = parse_ps_output(out.decode(errors="replace"), set(pids))
        except PsOutputError as e:
            raise EngineError(str(e)) from None
        self.emit_container_event(record.id, "top")
        return rows

    async def attach(self, record: ContainerRecord, *, stdin: bool) -> AttachSession | None:
        """Connect a session to the container's shim; None if it exited meanwhile."""
        cid = record.id
        mode = ATTACH_STDIN if stdin else ATTACH_OUTPUT
        self.emit_container_event(cid, "attach")
        if record.state.running:
            dir_fd = os.open(self.layout.shims / cid, os.O_RDONLY | os.O_DIRECTORY)
            try:
                reader, writer = await asyncio.open_unix_connection(attach_socket_path(dir_fd))
            except (FileNotFoundError, ConnectionRefusedError):
                return None  # the shim is gone: the container exited
            finally:
                os.close(dir_fd)
            writer.write(mode.encode())
            return AttachSession(reader, writer)
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self._pending_attach.setdefault(cid, []).append((theirs, mode))
        return AttachSession(reader, writer, theirs)

    def end_attach(self, cid: str, session: AttachSession) -> None:
        pending = self._pending_attach.get(cid, [])
        if session.pending is not None:
            self._pending_attach[cid] = [p for p in pending if p[0] is not session.pending]
            if not self._pending_attach[cid]:
                del self._pending_attach[cid]
            session.pending.close()
        session.writer.close()

    async def resize(self, ref: str, rows: int, cols: int) -> None:
        record = self.containers.resolve(ref)
        if not record.state.running:
            raise Conflict(f"Container {record.id} is not running")
        dir_fd = os.open(self.layout.shims / record.id, os.O_RDONLY | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(attach_socket_path(dir_fd))
        except (FileNotFoundError, ConnectionRefusedError):
            raise Conflict(f"Container {record.id} is not running") from None
        finally:
            os.close(dir_fd)
        try:
            writer.write(f"{ATTACH_RESIZE}{rows} {cols}\n".encode())
            await reader.read()  # the shim answers once the terminal has its new size
        finally:
            writer.close()
        self.emit_container_event(record.id, "resize", {"height": str(rows), "width": str(cols)})

    async def logs(
        self,
        record: ContainerRecord,
        *,
        streams: frozenset[str],
        follow: bool,
        tail: int | None,
        timestamps: bool,
        since_ns: int = 0,
        until_ns: int = 0,
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """(stream, line) pairs from the json-file log; with `follow`, until the exit (or
        `until_ns` passes). As moby's json-file reader, the tail is taken first and `since`
        then filters it; 0 leaves `since_ns`/`until_ns` unset."""
        path = self.log_path(record.id)
        fut = self.register_wait(record, "not-running") if follow else None
        window = _LogWindow(since_ns, until_ns)
        try:
            offset, entries = _read_log(path, 0)
            if tail is not None:
                entries = entries[-tail:] if tail > 0 else []
            for entry in entries:
                if window.after(entry):
                    return
                if window.holds(entry) and (item := _log_item(entry, streams, timestamps)):
                    yield item
            while fut is not None:
                done = fut.done() or (until_ns > 0 and time.time_ns() > until_ns)
                offset, entries = _read_log(path, offset)
                for entry in entries:
                    if window.after(entry):
                        return
                    if window.holds(entry) and (item := _log_item(entry, streams, timestamps)):
                        yield item
                if done:
                    break
                await asyncio.wait([fut], timeout=FOLLOW_POLL_S)
        finally:
            if fut is not None:
                self.forget_wait(record.id, fut)


@dataclass(frozen=True)
class _LogWindow:
    """`docker logs --since/--until` bounds in Unix nanoseconds; 0 is unbounded."""

    since_ns: int
    until_ns: int

    def holds(self, entry: Mapping[str, Any]) -> bool:
        return not self.since_ns or _entry_ns(entry) >= self.since_ns

    def after(self, entry: Mapping[str, Any]) -> bool:
        return bool(self.until_ns) and _entry_ns(entry) > self.until_ns


def _entry_ns(entry: Mapping[str, Any]) -> int:
    try:
        return ct.parse_time_ns(str(entry.get("time", "")))
    except ValueError:
        return 0


def _read_log(path: Path, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """Complete lines from `offset`; returns the offset after the last complete line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset, []
    end = data.rfind(b"\n") + 1
    entries = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return offset + end, entries


def _log_item(
    entry: Mapping[str, Any], streams: frozenset[str], timestamps: bool
) -> tuple[str, bytes] | None:
    stream = str(entry.get("stream", "stdout"))
    if stream not in streams:
        return None
    line = str(entry.get("log", "")).encode()
    if timestamps:
        line = str(entry.get("time", "")).encode() + b" " + line
    return stream, line


def _console_size(hc: Mapping[str, Any]) -> tuple[int, int] | None:
    """HostConfig.ConsoleSize ([rows, cols], API 1.42+); None when unset or zero."""
    size = hc.get("ConsoleSize")
    try:
        rows, cols = (int(v) for v in size) if size else (0, 0)
    except (TypeError, ValueError):
        return None
    if 0 < rows < 65536 and 0 < cols < 65536:
        return rows, cols
    return None


# --- the daemon -----------------------------------------------------------------------------


@dataclass
class Daemon:
    config: DaemonConfig
    engine: Engine | None = None
    sockets: list[socket.socket] = field(default_factory=list)
    unix_paths: list[Path] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close listeners and stop watching containers."""
        # Lazy: the routes module imports this one.
        from dockyard.engine.api.routes import DockerApi
        from dockyard.http.server import HttpServer

        listeners = [
            parse_host(h, tls_verify=self.config.tls_verify, tls=self.config.tls)
            for h in self.config.hosts
        ]
        # Built before anything is touched: a bad certificate stops the start here.
        tls_context = server_tls_context(self.config) if any(x.tls for x in listeners) else None
        layout = Layout(self.config.data_root, self.config.exec_root)
        layout.create()
        runc = Runc(layout.runc_root, self.config.runc_binary)
        host = await detect_host(runc, self.config.runc_binary, layout.data_root)
        engine = Engine(
            layout,
            host,
            runc_binary=self.config.runc_binary,
            insecure_registries=self.config.insecure_registries,
            network=self.config.network,
        )
        self.engine = engine
        await engine.recover()
        api = DockerApi(engine, labels=self.config.labels)
        server = HttpServer(
            api,
            server_header=f"Dockyard/{__version__} (linux)",
            max_body_bytes=API_MAX_BODY_BYTES,
            half_close_tls=True,  # attach/exec over TLS: the CLI half-closes its side
        )
        try:
            for listener in listeners:
                sock = bind_listener(listener)
                self.sockets.append(sock)
                if listener.kind == "unix":
                    self.unix_paths.append(Path(listener.address))
                await server.listen(sock=sock, ssl_context=tls_context if listener.tls else None)
                logger.info("API listening on %s", listener)
            await stop.wait()
        finally:
            await server.close()
            await engine.close()
            for path in self.unix_paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


async def serve_forever(config: DaemonConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Daemon(config).run(stop)


__all__ = [
    "DEFAULT_DATA_ROOT",
    "DEFAULT_EXEC_ROOT",
    "DEFAULT_HOST",
    "Daemon",
    "DaemonConfig",
    "Engine",
    "EngineError",
    "HostInfo",
    "Layout",
    "serve_forever",
]
