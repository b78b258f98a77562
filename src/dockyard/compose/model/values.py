"""The Compose project model's values: frozen dataclasses, and the one error it raises.

Role: what the planner, the runner, the labels and the CLI see of a Compose file: a
:class:`Project` of :class:`Service` values whose short syntaxes are already parsed
(:class:`PortSpec`, :class:`VolumeMount`, :class:`Healthcheck`, ...), and
:class:`ComposeModelError`, the error every other module of the package raises.

Invariants:
- Values only: no parsing or checking here. The builders (``service``, ``project``, and the
  key builders they call) are the only producers, so a value that exists was checked.
- Frozen dataclasses; tuples for sequences; mappings are built once by the builders and
  never mutated. :attr:`Service.config` is the loader's dict verbatim (the config hash
  covers it, see ``labels.config_hash``).
- Units last in names: ``*_ns`` durations (the Engine API's unit), ``*_bytes`` sizes.
- Imports nothing from the rest of the package: every other module imports this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ComposeModelError(ValueError):
    """A Compose file the model refuses; ``message`` is what the CLI prints."""

    def __init__(self, message: str, service: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.service = service
        self.key = key


@dataclass(frozen=True)
class PortSpec:
    """One published or exposed port; a short-form range is expanded to one spec per port.

    ``published`` stays a string: a host range against one container port (``8000-8010:80``)
    is kept whole, as compose-go does, and the engine picks a free port in it.
    """

    target: int
    published: str | None = None
    host_ip: str = ""
    protocol: str = "tcp"
    mode: str = "ingress"


@dataclass(frozen=True)
class VolumeMount:
    """A service volume: ``bind`` (host path), ``volume`` (named, or anonymous when
    ``source`` is None) or ``tmpfs``."""

    type: str
    target: str
    source: str | None = None
    read_only: bool = False
    consistency: str | None = None
    propagation: str | None = None  # bind: rprivate, shared, ...
    create_host_path: bool = True  # bind: short syntax always creates (compose 1.29.2)
    selinux: str | None = None  # bind: "z" or "Z"
    nocopy: bool = False  # volume
    tmpfs_size_bytes: int | None = None
    tmpfs_mode: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.type == "volume" and self.source is None


@dataclass(frozen=True)
class Healthcheck:
    """``test`` is the Engine API's form: ("CMD", ...), ("CMD-SHELL", cmd) or ("NONE",)."""

    test: tuple[str, ...] | None = None
    interval_ns: int | None = None
    timeout_ns: int | None = None
    start_period_ns: int | None = None
    start_interval_ns: int | None = None
    retries: int | None = None

    @property
    def disabled(self) -> bool:
        return self.test == ("NONE",)


@dataclass(frozen=True)
class Resources:
    """Effective limits: ``mem_limit`` and ``deploy.resources.limits.memory`` are one knob
    (compose-go refuses distinct values for the two), likewise ``cpus``."""

    memory_bytes: int | None = None
    memory_swap_bytes: int | None = None
    memory_reservation_bytes: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset: str | None = None
    pids_limit: int | None = None
    shm_size_bytes: int | None = None


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Logging:
    driver: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkMode:
    """``bridge``, ``host``, ``none``, ``service:x``, ``container:x`` or a network name."""

    mode: str
    target: str | None = None

    @property
    def service(self) -> str | None:
        return self.target if self.mode == "service" else None

    def __str__(self) -> str:
        return f"{self.mode}:{self.target}" if self.target is not None else self.mode


@dataclass(frozen=True)
class Link:
    service: str
    alias: str


@dataclass(frozen=True)
class VolumesFrom:
    """``svc``, ``svc:ro``, ``container:name[:mode]``; ``kind`` is service or container."""

    source: str
    kind: str = "service"
    read_only: bool = False

    @property
    def mode(self) -> str:
        return "ro" if self.read_only else "rw"


@dataclass(frozen=True)
class DeviceMapping:
    host_path: str
    container_path: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class DependsOn:
    service: str
    condition: str = "service_started"
    restart: bool = False
    required: bool = True


@dataclass(frozen=True)
class ServiceNetwork:
    name: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Build:
    context: str
    dockerfile: str | None = None
    args: Mapping[str, str | None] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str | None] = field(default_factory=dict)
    cache_from: tuple[str, ...] = ()
    network: str | None = None
    shm_size_bytes: int | None = None
    extra_hosts: Mapping[str, str | None] = field(default_factory=dict)
    pull: bool = False
    no_cache: bool = False


@dataclass(frozen=True)
class Service:
    """One service. ``config`` is the loader's dict verbatim (the config hash covers it)."""

    name: str
    config: Mapping[str, Any]
    image: str | None = None
    build: Build | None = None
    container_name: str | None = None
    replicas: int = 1
    profiles: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str | None] = field(default_factory=dict)
    labels: Mapping[str, str | None] = field(default_factory=dict)
    ports: tuple[PortSpec, ...] = ()
    expose: tuple[str, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    volumes_from: tuple[VolumesFrom, ...] = ()
    tmpfs: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    external_links: tuple[str, ...] = ()
    depends_on: tuple[DependsOn, ...] = ()
    network_mode: NetworkMode | None = None
    networks: tuple[ServiceNetwork, ...] = ()
    healthcheck: Healthcheck | None = None
    resources: Resources = Resources()
    restart: RestartPolicy = RestartPolicy()
    ulimits: tuple[Ulimit, ...] = ()
    logging: Logging | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    devices: tuple[DeviceMapping, ...] = ()
    user: str | None = None
    working_dir: str | None = None
    tty: bool = False
    stdin_open: bool = False
    init: bool | None = None
    stop_signal: str | None = None
    stop_grace_period_ns: int | None = None
    sysctls: Mapping[str, str | None] = field(default_factory=dict)
    extra_hosts: Mapping[str, str | None] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    hostname: str | None = None
    domainname: str | None = None
    pid: str | None = None
    ipc: str | None = None
    read_only: bool = False
    group_add: tuple[str, ...] = ()
    mac_address: str | None = None
    # compose-spec keys the model does not interpret (type-checked, kept for the runner)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkConfig:
    """A project network; ``name`` is the engine-side name (``{project}_{key}``)."""

    key: str
    name: str
    driver: str | None = None
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    ipam: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeConfig:
    """A project volume; ``name`` is the engine-side name (``{project}_{key}``)."""

    key: str
    name: str
    driver: str | None = None
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    external: bool = False
    labels: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    name: str
    services: Mapping[str, Service]
    networks: Mapping[str, NetworkConfig] = field(default_factory=dict)
    volumes: Mapping[str, VolumeConfig] = field(default_factory=dict)
    configs: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(self.services)
