"""The Compose runner: executes ``plan_up``/``plan_down`` plans against a Docker Engine API.

Role: the I/O half of Compose. It observes the project's containers (by label), makes the
images a plan needs (pull or build), asks ``compose/plan.py`` what to do, and does it with
``compose/client.py``: networks and volumes first, then the plan's levels in order (the
services of one level in parallel, ``asyncio.gather``), awaiting each service's
``depends_on`` conditions before its containers are touched.

Invariants:
- It speaks only the Engine API, so it drives a dockyard engine, dockerd or a manager alike.
- Nothing half-started: when ``up`` fails, every container it created in this run is
  force-removed (with its anonymous volumes), a container it was recreating gets its old
  name back, and networks it created in this run are removed; the first error is raised.
- Every container carries Compose's labels (``labels.container_labels`` with the plan's
  config hash), every network/volume ``labels.network_labels``/``volume_labels``.
- :func:`container_body` is a pure function of the project, the service and what the
  runner learnt from the engine (ids of ``service:``/``volumes_from`` peers, link targets,
  the old container's anonymous volumes), so a reviewer can read the mapping in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import tarfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from dockyard.compose import labels as lb
from dockyard.compose.client import EngineClient, EngineError
from dockyard.compose.graph import build_graph
from dockyard.compose.loader.core import LoadedProject
from dockyard.compose.model import Project, Service
from dockyard.compose.plan import (
    ContainerAction,
    CreateContainer,
    KeepContainer,
    ObservedContainer,
    RecreateContainer,
    RemoveContainer,
    ServicePlan,
    StartContainer,
    UpOptions,
    plan_down,
    plan_up,
)
from dockyard.compose.progress import Progress
from dockyard.engine.images.build.dockerignore import IgnoreMatcher, read_dockerignore

__all__ = ["ComposeRunError", "Runner", "UpSettings", "container_body", "service_image"]

_T = TypeVar("_T")
_NOTHING: Mapping[str, str] = MappingProxyType({})

HEALTH_POLL_S = 0.25  # how often a depends_on: service_healthy wait re-inspects
DEFAULT_STOP_TIMEOUT_S = 10


class ComposeRunError(Exception):
    """A failure the CLI prints as one line (Docker's message or Compose's wording)."""


@dataclass(frozen=True)
class UpSettings:
    plan: UpOptions = field(default_factory=UpOptions)
    build: bool = False  # --build
    no_build: bool = False  # --no-build
    pull: str = "missing"  # --pull: always | missing | never (Compose v2)
    wait: bool = False  # --wait
    timeout_s: int | None = None  # -t: for stopping recreated containers


@dataclass
class _RunState:
    """What one ``up`` changed, so a failure can undo it."""

    created: list[str] = field(default_factory=list)
    # containers being recreated: (id, original name, was running), until the old is removed
    renamed: list[tuple[str, str, bool]] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)


def service_image(project: Project, service: Service) -> str:
    """The image a service runs: ``image:``, else ``{project}_{service}`` (1.29.2
    ``Service.image_name`` for a service with only ``build:``)."""
    if service.image is not None:
        return service.image
    return f"{project.name}_{service.name}"


def _port_key(target: int, protocol: str) -> str:
    return f"{target}/{protocol}"


def _ports(service: Service) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in service.ports:
        key = _port_key(spec.target, spec.protocol)
        exposed[key] = {}
        # An unpublished port still gets a binding with an empty HostPort: the engine picks
        # an ephemeral port (docker-compose 1.29.2 build_port_bindings).
        bindings.setdefault(key, []).append(
            {"HostIp": spec.host_ip, "HostPort": spec.published or ""}
        )
    for text in service.expose:
        port, _, protocol = text.partition("/")
        exposed[_port_key(int(port.split("-")[0]), protocol or "tcp")] = {}
    return exposed, bindings


def _binds(
    project: Project, service: Service, carried: Mapping[str, str]
) -> tuple[list[str], dict[str, Any], dict[str, str]]:
    """(Binds, Config.Volumes for anonymous volumes, Tmpfs) as 1.29.2 sends them; an
    anonymous volume of a recreated container is re-bound by its name (``carried``:
    target → volume name, 1.29.2 ``get_container_data_volumes``)."""
    binds: list[str] = []
    anonymous: dict[str, Any] = {}
    tmpfs: dict[str, str] = {}
    for mount in service.volumes:
        if mount.type == "tmpfs":
            options = []
            if mount.tmpfs_size_bytes is not None:
                options.append(f"size={mount.tmpfs_size_bytes}")
            if mount.tmpfs_mode is not None:
                options.append(f"mode={mount.tmpfs_mode:o}")
            tmpfs[mount.target] = ",".join(options)
            continue
        mode = ["ro" if mount.read_only else "rw"]
        if mount.type == "bind":
            if mount.selinux:
                mode.append(mount.selinux)
            if mount.propagation:
                mode.append(mount.propagation)
            binds.append(f"{mount.source}:{mount.target}:{','.join(mode)}")
        elif mount.source is None:
            if mount.target in carried:
                binds.append(f"{carried[mount.target]}:{mount.target}:{mode[0]}")
            else:
                anonymous[mount.target] = {}
        else:
            config = project.volumes.get(mount.source)
            name = config.name if config is not None else mount.source
            if mount.nocopy:
                mode.append("nocopy")
            binds.append(f"{name}:{mount.target}:{','.join(mode)}")
    for item in service.tmpfs:
        tmpfs_target, _, tmpfs_options = item.partition(":")
        tmpfs[tmpfs_target] = tmpfs_options
    return binds, anonymous, tmpfs


def _nonempty(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value not in (None, [], {})}


def container_body(
    project: Project,
    service: Service,
    *,
    image: str,
    labels: Mapping[str, str],
    peers: Mapping[str, str],
    links: Sequence[str],
    carried_volumes: Mapping[str, str] = _NOTHING,
    network_names: Mapping[str, str] = _NOTHING,
    environment: Mapping[str, str | None] | None = None,
    command: Sequence[str] | None = None,
    publish_ports: bool = True,
    tty: bool | None = None,
    stdin_open: bool | None = None,
) -> dict[str, Any]:
    """The ``POST /containers/create`` body of one container of ``service``.

    ``peers`` maps a service to the id of its first container (for ``network_mode:
    service:x`` and ``volumes_from: x``); ``links`` are ``container_name:alias`` entries;
    ``network_names`` maps a file network key to its engine name. Only the first network
    is attached at create (API < 1.44 accepts one endpoint); the runner connects the others
    before the start, as 1.29.2 does.
    """
    exposed, bindings = _ports(service)
    binds, anonymous, tmpfs = _binds(project, service, carried_volumes)
    env = service.environment if environment is None else environment
    res = service.resources
    mode = service.network_mode
    if mode is None:
        network_mode = network_names.get(service.networks[0].name) if service.networks else None
    elif mode.mode == "service" and mode.target is not None:
        network_mode = f"container:{peers[mode.target]}"
    else:
        network_mode = str(mode)
    volumes_from = [
        f"{peers[source.source] if source.kind == 'service' else source.source}:{source.mode}"
        for source in service.volumes_from
    ]
    health = service.healthcheck
    config: dict[str, Any] = {
        "Image": image,
        "Hostname": service.hostname,
        "Domainname": service.domainname,
        "User": service.user,
        "Env": [key if value is None else f"{key}={value}" for key, value in env.items()],
        "Cmd": list(command)
        if command is not None
        else (list(service.command) if service.command is not None else None),
        "Entrypoint": list(service.entrypoint) if service.entrypoint is not None else None,
        "WorkingDir": service.working_dir,
        "Labels": dict(labels),
        "ExposedPorts": exposed,
        "Volumes": anonymous,
        "Tty": service.tty if tty is None else tty,
        "OpenStdin": service.stdin_open if stdin_open is None else stdin_open,
        "StopSignal": service.stop_signal,
        "StopTimeout": None
        if service.stop_grace_period_ns is None
        else service.stop_grace_period_ns // 1_000_000_000,
        "MacAddress": service.mac_address,
        "Healthcheck": None
        if health is None
        else _nonempty(
            {
                "Test": list(health.test) if health.test is not None else None,
                "Interval": health.interval_ns,
                "Timeout": health.timeout_ns,
                "StartPeriod": health.start_period_ns,
                "Retries": health.retries,
            }
        ),
    }
    host: dict[str, Any] = {
        "Binds": binds,
        "Tmpfs": tmpfs,
        "PortBindings": bindings if publish_ports else {},
        "Links": list(links) if mode is not None and mode.mode == "bridge" else [],
        "VolumesFrom": volumes_from,
        "NetworkMode": network_mode,
        "RestartPolicy": {
            "Name": "" if service.restart.name == "no" else service.restart.name,
            "MaximumRetryCount": service.restart.maximum_retry_count,
        },
        "Memory": res.memory_bytes,
        "MemorySwap": res.memory_swap_bytes,
        "MemoryReservation": res.memory_reservation_bytes,
        "NanoCpus": res.nano_cpus,
        "CpuShares": res.cpu_shares,
        "CpuQuota": res.cpu_quota,
        "CpuPeriod": res.cpu_period,
        "CpusetCpus": res.cpuset,
        "PidsLimit": res.pids_limit,
        "ShmSize": res.shm_size_bytes,
        "CapAdd": list(service.cap_add),
        "CapDrop": list(service.cap_drop),
        "Privileged": service.privileged or None,
        "SecurityOpt": list(service.security_opt),
        "Devices": [
            {
                "PathOnHost": d.host_path,
                "PathInContainer": d.container_path,
                "CgroupPermissions": d.permissions,
            }
            for d in service.devices
        ],
        "Init": service.init,
        "Sysctls": {k: v or "" for k, v in service.sysctls.items()},
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in service.ulimits],
        "ExtraHosts": [f"{h}:{ip}" for h, ip in service.extra_hosts.items()],
        "Dns": list(service.dns),
        "DnsSearch": list(service.dns_search),
        "DnsOptions": list(service.dns_opt),
        "PidMode": service.pid,
        "IpcMode": service.ipc,
        "ReadonlyRootfs": service.read_only or None,
        "GroupAdd": list(service.group_add),
        "LogConfig": None
        if service.logging is None or service.logging.driver is None
        else {"Type": service.logging.driver, "Config": dict(service.logging.options)},
    }
    body = _nonempty(config)
    body["HostConfig"] = _nonempty(host)
    if mode is None and service.networks:
        first = service.networks[0]
        body["NetworkingConfig"] = {
            "EndpointsConfig": {
                network_names[first.name]: endpoint_config(service, first.name, links)
            }
        }
    return body


def endpoint_config(service: Service, network_key: str, links: Sequence[str]) -> dict[str, Any]:
    """One network endpoint: the service name is always an alias (1.29.2
    ``_get_aliases``: services reach each other by name), then the file's aliases; links
    are endpoint links on user-defined networks (moby: legacy links are bridge-only)."""
    net = next(n for n in service.networks if n.name == network_key)
    aliases = [service.name, *(a for a in net.aliases if a != service.name)]
    endpoint: dict[str, Any] = {"Aliases": aliases}
    ipam = _nonempty(
        {
            "IPv4Address": net.ipv4_address,
            "IPv6Address": net.ipv6_address,
            "LinkLocalIPs": list(net.link_local_ips),
        }
    )
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if links:
        endpoint["Links"] = list(links)
    return endpoint


def _ipam(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    if not spec:
        return None
    return _nonempty(
        {
            "Driver": spec.get("driver") or "default",
            "Options": spec.get("options") or {},
            "Config": [
                _nonempty(
                    {
                        "Subnet": item.get("subnet"),
                        "IPRange": item.get("ip_range"),
                        "Gateway": item.get("gateway"),
                        "AuxiliaryAddresses": item.get("aux_addresses"),
                    }
                )
                for item in spec.get("config") or []
            ],
        }
    )


def _context_tar(context: str, dockerfile: str | None) -> bytes:
    """The build context as the tar ``POST /build`` wants, filtered by ``.dockerignore``
    as the docker CLI does (moby/patternmatcher, via the engine's pure matcher); the
    Dockerfile and ``.dockerignore`` are always sent (docker CLI build: they are removed
    from the exclusions)."""
    matcher = IgnoreMatcher()
    ignore_file = os.path.join(context, ".dockerignore")
    if os.path.isfile(ignore_file):
        with open(ignore_file, encoding="utf-8") as handle:
            matcher = IgnoreMatcher.from_patterns(read_dockerignore(handle.read()))
    always = {".dockerignore", dockerfile or "Dockerfile"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for root, dirs, files in os.walk(context):
            relative_root = os.path.relpath(root, context)
            for directory in sorted(dirs):
                relative = os.path.normpath(os.path.join(relative_root, directory))
                if matcher.excluded(relative) and not matcher.should_descend(relative):
                    dirs.remove(directory)
            dirs.sort()
            for entry in sorted([*dirs, *files]):
                relative = os.path.normpath(os.path.join(relative_root, entry))
                if relative in always or not matcher.excluded(relative):
                    archive.add(os.path.join(root, entry), arcname=relative, recursive=False)
    return buffer.getvalue()


class Runner:
    """Runs Compose commands for one loaded project against one engine."""

    def __init__(
        self,
        client: EngineClient,
        loaded: LoadedProject,
        project: Project,
        progress: Progress,
    ) -> None:
        self.client = client
        self.loaded = loaded
        self.project = project
        self.progress = progress

    # --- observing -----------------------------------------------------------------------

    async def containers(self, *, all: bool = True, oneoff: bool = False) -> list[dict[str, Any]]:
        items = await self.client.containers(all=all, filters=lb.project_filter(self.project.name))
        if not oneoff:
            items = [c for c in items if (c.get("Labels") or {}).get(lb.LABEL_ONEOFF) != "True"]
        # oldest first, then by number: plan.ObservedContainer's contract
        items.sort(
            key=lambda c: (
                c.get("Created", 0),
                int((c.get("Labels") or {}).get(lb.LABEL_CONTAINER_NUMBER, "0") or 0),
            )
        )
        return items

    async def observed(self) -> list[ObservedContainer]:
        return [
            ObservedContainer(
                name=str((c.get("Names") or ["/"])[0]).lstrip("/"),
                id=str(c["Id"]),
                labels=dict(c.get("Labels") or {}),
                running=c.get("State") == "running",
                image_id=c.get("ImageID"),
            )
            for c in await self.containers(oneoff=True)
        ]

    # --- images --------------------------------------------------------------------------

    async def build_service(self, service: Service) -> None:
        build = service.build
        if build is None:
            return
        tag = service_image(self.project, service)
        self.progress.update("Service", service.name, "Building")
        params: dict[str, str] = {"t": tag, "rm": "1"}
        if build.dockerfile:
            params["dockerfile"] = build.dockerfile
        if build.args:
            params["buildargs"] = json.dumps({k: v for k, v in build.args.items() if v is not None})
        if build.target:
            params["target"] = build.target
        if build.labels:
            params["labels"] = json.dumps({k: v or "" for k, v in build.labels.items()})
        if build.pull:
            params["pull"] = "1"
        if build.no_cache:
            params["nocache"] = "1"
        if build.network:
            params["networkmode"] = build.network
        context = await asyncio.to_thread(_context_tar, build.context, build.dockerfile)
        async for _ in self.client.build(context, params):
            pass
        self.progress.update("Service", service.name, "Built", done=True)

    async def pull_image(self, image: str, label: str) -> None:
        self.progress.update("Image", label, "Pulling")
        async for _ in self.client.pull(image):
            pass
        self.progress.update("Image", label, "Pulled", done=True)

    async def push_image(self, image: str, label: str) -> None:
        self.progress.update("Image", label, "Pushing")
        async for _ in self.client.push(image):
            pass
        self.progress.update("Image", label, "Pushed", done=True)

    async def ensure_images(
        self, names: Sequence[str], settings: UpSettings
    ) -> dict[str, str | None]:
        """Pull or build what the services need and return their image ids (1.29.2
        ``ensure_image_exists``: build when asked or when the image is missing, else pull
        a missing image). Each distinct image is inspected and pulled once, in parallel."""
        images = {name: service_image(self.project, self.project.services[name]) for name in names}
        distinct = sorted(set(images.values()))
        found = dict(
            zip(distinct, await _gather_all([self._image_id(i) for i in distinct]), strict=True)
        )
        to_build: list[Service] = []
        to_pull: set[str] = set()
        for name in names:
            service, image = self.project.services[name], images[name]
            if service.build is not None and (settings.build or found[image] is None):
                if settings.no_build:
                    if found[image] is None:
                        raise ComposeRunError(
                            f"Service {name} needs to be built, but --no-build was passed."
                        )
                    continue
                to_build.append(service)
            elif settings.pull == "always" or (found[image] is None and settings.pull != "never"):
                to_pull.add(image)
            elif found[image] is None:
                # --pull never and nothing to run: the engine's words for a missing image
                raise ComposeRunError(f"No such image: {image}")
        await _gather_all([self.pull_image(image, image) for image in sorted(to_pull)])
        await _gather_all([self.build_service(service) for service in to_build])
        for image in to_pull | {images[s.name] for s in to_build}:
            found[image] = await self._image_id(image)
        return {name: found[images[name]] for name in names}

    async def _image_id(self, image: str) -> str | None:
        info = await self.client.inspect_image(image)
        return None if info is None else str(info.get("Id"))

    # --- networks and volumes ------------------------------------------------------------

    async def ensure_networks(self, keys: Sequence[str], state: _RunState | None = None) -> None:
        for key in keys:
            config = self.project.networks[key]
            existing = await self.client.inspect_network(config.name)
            if config.external:
                if existing is None:
                    # docker-compose 1.29.2 Network.ensure
                    raise ComposeRunError(
                        f"Network {config.name} declared as external, but could not be found. "
                        f"Please create the network manually using `docker network create "
                        f"{config.name}` and try again."
                    )
                continue
            if existing is not None:
                continue
            self.progress.update("Network", config.name, "Creating")
            await self.client.create_network(
                _nonempty(
                    {
                        "Name": config.name,
                        "CheckDuplicate": True,
                        "Driver": config.driver,
                        "Options": dict(config.driver_opts),
                        "Internal": config.internal or None,
                        "Attachable": config.attachable or None,
                        "EnableIPv6": config.enable_ipv6 or None,
                        "IPAM": _ipam(config.ipam),
                        "Labels": lb.network_labels(self.project.name, key, config.labels),
                    }
                )
            )
            if state is not None:
                state.networks.append(config.name)
            self.progress.update("Network", config.name, "Created", done=True)

    async def ensure_volumes(self, keys: Sequence[str]) -> None:
        for key in keys:
            config = self.project.volumes[key]
            existing = await self.client.inspect_volume(config.name)
            if config.external:
                if existing is None:
                    # docker-compose 1.29.2 Volume.create/ProjectVolumes.initialize
                    raise ComposeRunError(
                        f"Volume {config.name} declared as external, but could not be found. "
                        f"Please create the volume manually using `docker volume create "
                        f"--name={config.name}` and try again."
                    )
                continue
            if existing is not None:
                continue
            self.progress.update("Volume", config.name, "Creating")
            await self.client.create_volume(
                _nonempty(
                    {
                        "Name": config.name,
                        "Driver": config.driver,
                        "DriverOpts": dict(config.driver_opts),
                        "Labels": lb.volume_labels(self.project.name, key, config.labels),
                    }
                )
            )
            self.progress.update("Volume", config.name, "Created", done=True)

    # --- up ------------------------------------------------------------------------------

    async def up(self, selected: Sequence[str], settings: UpSettings) -> list[str]:
        """Converge; the ids of the service containers now wanted running."""
        options = settings.plan
        # The services to plan (with dependencies): a dry plan with no image ids tells us.
        dry = plan_up(self.project, [], selected=selected or None, options=options)
        names = [plan.service for level in dry.levels for plan in level]
        image_ids = await self.ensure_images(names, settings)
        observed = await self.observed()
        plan = plan_up(
            self.project, observed, selected=selected or None, options=options, image_ids=image_ids
        )
        for warning in plan.warnings:
            self.progress.warn(warning)
        state = _RunState()
        try:
            for action in plan.remove_orphans:
                await self._remove(action, settings.timeout_s)
            await self.ensure_networks([n.key for n in plan.networks], state)
            await self.ensure_volumes([v.key for v in plan.volumes])
            ids: dict[str, list[str]] = {}
            for level in plan.levels:
                results = await _gather_all(
                    [self._run_service(sp, ids, settings, state) for sp in level]
                )
                for service, container_ids in results:
                    ids[service] = container_ids
            if settings.wait:
                one_shot = {
                    dep.service
                    for service in self.project.services.values()
                    for dep in service.depends_on
                    if dep.condition == "service_completed_successfully"
                }
                await _gather_all(
                    [
                        self._await_ready(cid, exited_ok=service in one_shot)
                        for service, group in ids.items()
                        for cid in group
                    ]
                )
        except BaseException:
            await self._undo(state)
            raise
        return [cid for group in ids.values() for cid in group]

    async def _undo(self, state: _RunState) -> None:
        for cid in reversed(state.created):
            with contextlib.suppress(EngineError):
                await self.client.remove_container(cid, force=True, volumes=True)
        for cid, name, running in state.renamed:
            with contextlib.suppress(EngineError):
                await self.client.rename_container(cid, name)
                if running:
                    await self.client.start_container(cid)
        for network in state.networks:
            with contextlib.suppress(EngineError):
                await self.client.remove_network(network)

    async def _await_condition(
        self, dependency: str, condition: str, ids: Mapping[str, list[str]]
    ) -> None:
        for cid in ids.get(dependency, []):
            info = await self.client.inspect_container(cid)
            name = str(info.get("Name", cid)).lstrip("/")
            if condition == "service_completed_successfully":
                code = await self.client.wait_container(cid)
                if code != 0:
                    # Compose v2 convergence.go
                    raise ComposeRunError(
                        f"service {dependency!r} didn't complete successfully: exit {code}"
                    )
            elif condition == "service_healthy":
                self.progress.update("Container", name, "Waiting")
                await self._await_healthy(cid, name, dependency)
                self.progress.update("Container", name, "Healthy", done=True)

    async def _await_healthy(self, cid: str, name: str, service: str) -> None:
        while True:
            info = await self.client.inspect_container(cid)
            status = ((info.get("State") or {}).get("Health") or {}).get("Status")
            if status is None:
                # docker-compose 1.29.2 Container.is_healthy
                raise ComposeRunError(f"Service {service} is missing a healthcheck configuration")
            if status == "healthy":
                return
            if status == "unhealthy":
                # Compose v2: "dependency failed to start: container x is unhealthy"
                raise ComposeRunError(f"dependency failed to start: container {name} is unhealthy")
            if not (info.get("State") or {}).get("Running"):
                raise ComposeRunError(f"dependency failed to start: container {name} exited")
            await asyncio.sleep(HEALTH_POLL_S)  # the Engine API has no "health changed" wait

    async def _await_ready(self, cid: str, *, exited_ok: bool) -> None:
        """``up --wait`` (Compose v2): running, and healthy when it has a healthcheck; a
        one-shot dependency (awaited with service_completed_successfully) may have exited 0."""
        info = await self.client.inspect_container(cid)
        name = str(info.get("Name", cid)).lstrip("/")
        state = info.get("State") or {}
        if exited_ok and not state.get("Running") and state.get("ExitCode") == 0:
            return
        if not state.get("Running"):
            raise ComposeRunError(f"container {name} exited ({state.get('ExitCode')})")
        if state.get("Health") is not None:
            service = (info.get("Config", {}).get("Labels") or {}).get(lb.LABEL_SERVICE, name)
            await self._await_healthy(cid, name, service)

    async def _run_service(
        self,
        service_plan: ServicePlan,
        ids: Mapping[str, list[str]],
        settings: UpSettings,
        state: _RunState,
    ) -> tuple[str, list[str]]:
        for dependency, condition in service_plan.wait_for:
            await self._await_condition(dependency, condition, ids)
        service = self.project.services[service_plan.service]
        peers = {name: group[0] for name, group in ids.items() if group}
        for dep in _peer_services(service):
            if dep not in peers:
                found = [
                    c["Id"]
                    for c in await self.containers()
                    if (c.get("Labels") or {}).get(lb.LABEL_SERVICE) == dep
                ]
                if found:
                    peers[dep] = found[0]
        links = await self._links(service)

        async def act(action: ContainerAction) -> str | None:
            if isinstance(action, CreateContainer):
                return await self._create(
                    service, action.name, action.number, action.config_hash, peers, links, state
                )
            if isinstance(action, RecreateContainer):
                return await self._recreate(service, action, peers, links, settings, state)
            if isinstance(action, StartContainer):
                self.progress.update("Container", action.name, "Starting")
                await self.client.start_container(action.container_id)
                self.progress.update("Container", action.name, "Started", done=True)
                return action.container_id
            if isinstance(action, KeepContainer):
                self.progress.update("Container", action.name, "Running", done=True)
                return action.container_id
            if isinstance(action, RemoveContainer):
                await self._remove(action, settings.timeout_s)
            return None

        results = await _gather_all([act(action) for action in service_plan.actions])
        return service_plan.service, [cid for cid in results if cid is not None]

    async def _links(self, service: Service) -> list[str]:
        """``{container}:{alias}`` for every container of each linked service (1.29.2
        ``_get_links`` also adds the container's own names as aliases; on a project network
        the service name already resolves, so the alias alone is sent)."""
        if not service.links:
            return []
        containers = await self.containers()
        out: list[str] = []
        for link in service.links:
            for c in containers:
                if (c.get("Labels") or {}).get(lb.LABEL_SERVICE) == link.service:
                    name = str((c.get("Names") or ["/"])[0]).lstrip("/")
                    out.append(f"{name}:{link.alias}")
        return out

    def _network_names(self) -> dict[str, str]:
        return {key: config.name for key, config in self.project.networks.items()}

    async def _create(
        self,
        service: Service,
        name: str,
        number: int,
        config_hash: str,
        peers: Mapping[str, str],
        links: Sequence[str],
        state: _RunState,
        carried: Mapping[str, str] = _NOTHING,
    ) -> str:
        self.progress.update("Container", name, "Creating")
        labels = lb.container_labels(
            self.project.name,
            service,
            number=number,
            config_hash=config_hash,
            working_dir=self.loaded.working_dir,
            config_files=self.loaded.config_files,
        )
        body = container_body(
            self.project,
            service,
            image=service_image(self.project, service),
            labels=labels,
            peers=peers,
            links=links,
            carried_volumes=carried,
            network_names=self._network_names(),
        )
        cid = await self.client.create_container(name, body)
        state.created.append(cid)
        await self._connect_other_networks(service, cid, links)
        self.progress.update("Container", name, "Created", done=True)
        self.progress.update("Container", name, "Starting")
        await self.client.start_container(cid)
        self.progress.update("Container", name, "Started", done=True)
        return cid

    async def _connect_other_networks(
        self, service: Service, cid: str, links: Sequence[str]
    ) -> None:
        if service.network_mode is not None:
            return
        names = self._network_names()
        for net in service.networks[1:]:
            await self.client.connect_network(
                names[net.name],
                {"Container": cid, "EndpointConfig": endpoint_config(service, net.name, links)},
            )

    async def _recreate(
        self,
        service: Service,
        action: RecreateContainer,
        peers: Mapping[str, str],
        links: Sequence[str],
        settings: UpSettings,
        state: _RunState,
    ) -> str:
        old = action.old
        # the planner's reason ("config hash changed", "dependency recreated", ...): `up`
        # says why it replaces a container
        self.progress.update("Container", action.name, f"Recreate ({action.reason})")
        info = await self.client.inspect_container(old.id)
        anonymous_targets = {m.target for m in service.volumes if m.anonymous}
        carried = {
            str(m["Destination"]): str(m["Name"])
            for m in info.get("Mounts") or []
            if m.get("Type") == "volume" and m.get("Destination") in anonymous_targets
        }
        if old.running:
            await self.client.stop_container(old.id, settings.timeout_s)
        await self.client.rename_container(old.id, action.temporary_name)
        state.renamed.append((old.id, old.name, old.running))
        cid = await self._create(
            service, action.name, action.number, action.config_hash, peers, links, state, carried
        )
        await self.client.remove_container(old.id, force=True)
        state.renamed.remove((old.id, old.name, old.running))
        self.progress.update("Container", action.name, "Recreated", done=True)
        return cid

    async def _remove(self, action: RemoveContainer, timeout_s: int | None) -> None:
        if action.running:
            self.progress.update("Container", action.name, "Stopping")
            await self.client.stop_container(action.container_id, timeout_s)
            self.progress.update("Container", action.name, "Stopped", done=True)
        self.progress.update("Container", action.name, "Removing")
        try:
            await self.client.remove_container(
                action.container_id, force=True, volumes=action.volumes
            )
        except EngineError as err:
            if err.status != 404:
                raise
        self.progress.update("Container", action.name, "Removed", done=True)

    # --- down ----------------------------------------------------------------------------

    async def down(
        self,
        *,
        remove_orphans: bool,
        volumes: bool,
        rmi: str | None,
        timeout_s: int | None,
    ) -> None:
        observed = await self.observed()
        plan = plan_down(self.project, observed, remove_orphans=remove_orphans, volumes=volumes)
        for warning in plan.warnings:
            self.progress.warn(warning)
        for level in plan.levels:
            await _gather_all([self._remove(action, timeout_s) for action in level])
        await _gather_all([self._remove(action, timeout_s) for action in plan.orphans])
        for name in plan.networks:
            if await self.client.inspect_network(name) is None:
                continue
            self.progress.update("Network", name, "Removing")
            await self.client.remove_network(name)
            self.progress.update("Network", name, "Removed", done=True)
        for name in plan.volumes:
            if await self.client.inspect_volume(name) is None:
                continue
            self.progress.update("Volume", name, "Removing")
            await self.client.remove_volume(name)
            self.progress.update("Volume", name, "Removed", done=True)
        if rmi is not None:
            for service in self.project.services.values():
                # docker-compose 1.29.2 ImageType.local: only images without a custom tag
                if rmi == "local" and service.image is not None:
                    continue
                image = service_image(self.project, service)
                if await self.client.inspect_image(image) is None:
                    continue
                self.progress.update("Image", image, "Removing")
                await self.client.remove_image(image)
                self.progress.update("Image", image, "Removed", done=True)

    # --- per-container commands ----------------------------------------------------------

    async def service_containers(
        self, services: Sequence[str], *, all: bool = True
    ) -> list[dict[str, Any]]:
        for name in services:
            if name not in self.project.services:
                raise ComposeRunError(f"No such service: {name}")
        items = await self.containers(all=all)
        if services:
            items = [c for c in items if (c.get("Labels") or {}).get(lb.LABEL_SERVICE) in services]
        return items

    async def for_each(
        self,
        services: Sequence[str],
        verb: tuple[str, str],
        operation: Callable[[str], Awaitable[None]],
        *,
        reverse: bool = False,
        only_running: bool | None = None,
    ) -> None:
        """Apply ``operation`` to the services' containers level by level (start order, or
        stop order with ``reverse``)."""
        graph = build_graph(self.project)
        levels = graph.stop_levels() if reverse else graph.levels()
        items = await self.service_containers(services)
        for level in levels:
            members = [
                c
                for c in items
                if (c.get("Labels") or {}).get(lb.LABEL_SERVICE) in level
                and (only_running is None or (c.get("State") == "running") == only_running)
            ]

            async def one(c: dict[str, Any]) -> None:
                name = str((c.get("Names") or ["/"])[0]).lstrip("/")
                self.progress.update("Container", name, verb[0])
                await operation(str(c["Id"]))
                self.progress.update("Container", name, verb[1], done=True)

            await _gather_all([one(c) for c in members])


def _peer_services(service: Service) -> list[str]:
    out = [s.source for s in service.volumes_from if s.kind == "service"]
    if service.network_mode is not None and service.network_mode.service is not None:
        out.append(service.network_mode.service)
    return out


async def _gather_all(awaitables: Sequence[Awaitable[_T]]) -> list[_T]:
    """All of them run to the end (so an undo sees everything created); then the first
    error, if any, is raised."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]
