"""The Compose project model: the loader's canonical dict, type-checked into frozen values.

Role: :func:`project_from_dict` takes the dict ``compose/loader`` produces (interpolated,
merged, ``extends`` resolved; per service ``environment``/``labels``/``extra_hosts``/
``sysctls``/``build.args`` already mappings, ``depends_on`` the long form, ``networks`` a
mapping, ``build`` a mapping with an absolute context, relative bind sources absolute) and
returns a :class:`Project`. Everything else arrives as the user wrote it, so this module
parses the short syntaxes: ports, volumes, durations, byte sizes, restart policies,
ulimits, ``network_mode``, links, ``volumes_from``, devices, ``command``/``entrypoint``.

Invariants:
- Pure: values in, values out; no I/O. The planner and the runner only ever see a
  :class:`Project`, never the raw dict (except :attr:`Service.config`, kept verbatim for the
  config hash, see ``labels.config_hash``).
- Every error is a :class:`ComposeModelError` naming the service and the key, with
  docker-compose 1.29.2's wording where it has one (compose/config/validation.py
  ``handle_error_for_schema_errors``: "services.web.ports contains an invalid type, it
  should be ..."; "Unsupported config option for services.web: 'foo'"), else compose-go's.
- Byte sizes are parsed as docker-py's ``parse_bytes`` (which docker-compose 1.29.2 uses):
  1024-based ``b``/``k``/``m``/``g`` suffixes, an optional trailing ``b`` (``1gb``), a bare
  number is bytes. Durations are Go's ``time.ParseDuration`` (``1m30s``, ``1.5s``,
  ``500ms``), returned in nanoseconds as the Engine API wants them.
- A service with neither ``networks`` nor ``network_mode`` joins the project's ``default``
  network, and the project then has a ``default`` network (docker-compose 1.29.2
  ``get_networks``; compose-go adds it the same way).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = [
    "Build",
    "ComposeModelError",
    "DependsOn",
    "DeviceMapping",
    "Healthcheck",
    "Link",
    "Logging",
    "NetworkConfig",
    "NetworkMode",
    "PortSpec",
    "Project",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceNetwork",
    "Ulimit",
    "VolumeConfig",
    "VolumeMount",
    "VolumesFrom",
    "parse_bytes",
    "parse_duration_ns",
    "parse_port",
    "parse_volume",
    "project_from_dict",
    "service_from_dict",
]


class ComposeModelError(ValueError):
    """A Compose file the model refuses; ``message`` is what the CLI prints."""

    def __init__(self, message: str, service: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.service = service
        self.key = key


# --- values ----------------------------------------------------------------------------


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


# --- scalar parsers --------------------------------------------------------------------

# docker-py utils.parse_bytes (docker-compose 1.29.2): 1024-based, one-letter units.
_BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(value: object, path: str = "value") -> int:
    """A byte size as docker-compose 1.29.2 reads ``mem_limit``/``shm_size``: ``512m``,
    ``1g``, ``1gb``, ``1.5k``, or a bare number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ComposeModelError(
            f"{path} contains an invalid type, it should be a number, or a string"
        )
    if isinstance(value, (int, float)):
        return int(value)
    text = value.strip()
    if not text:
        return 0
    if len(text) >= 2 and text[-1] in "bB" and text[-2].isalpha():
        text = text[:-1]  # "1gb" -> "1g"
    suffix = text[-1].lower()
    digits, multiplier = (text, 1) if suffix.isdigit() else (text[:-1], _BYTE_UNITS.get(suffix))
    if multiplier is None:
        raise ComposeModelError(
            f"{path}: the specified value for memory ({value}) should specify the units. "
            "The postfix should be one of the `b` `k` `m` `g` characters"
        )
    try:
        amount = Fraction(digits)
    except (ValueError, ZeroDivisionError):
        raise ComposeModelError(
            f"{path}: failed converting the string value for memory ({digits}) to an integer."
        ) from None
    if amount < 0:
        raise ComposeModelError(f"{path}: a size cannot be negative: {value}")
    return int(amount * multiplier)


# Go time.ParseDuration units, in nanoseconds.
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration_ns(value: object, path: str = "value") -> int:
    """Go's ``time.ParseDuration`` (compose-go decodes durations with it), in ns."""
    if not isinstance(value, str):
        raise ComposeModelError(f"{path} contains an invalid type, it should be a string")
    text = value
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    total = Fraction(0)
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            break
        total += Fraction(match.group(1)) * _DURATION_UNITS_NS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        # Go: time: invalid duration "1x" (a missing unit is the same error)
        raise ComposeModelError(f'{path}: time: invalid duration "{value}"')
    return sign * int(total)


_PORT_FORMAT = "[[remote_ip:]remote_port[-remote_port]:]port[/protocol]"
_PROTOCOLS = ("tcp", "udp", "sctp")


def _port_range(text: str) -> tuple[int, int] | None:
    """``8080`` or ``8080-8081`` as an inclusive range; None when malformed."""
    low, sep, high = text.partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        return None
    start, end = int(low), int(high) if sep else int(low)
    if not 0 <= start <= end <= 65535:
        return None
    return start, end


def parse_port(value: str | int, path: str = "ports") -> tuple[PortSpec, ...]:
    """A short-form port, as go-connections ``nat.ParsePortSpec`` splits it.

    ``5000``, ``5000:5000``, ``127.0.0.1:8000:8000/udp``, ``[::1]:80:80``, ranges
    ``9090-9091:8080-8081`` (one spec per port; both ranges must be as long), and a host
    range against one container port (``8000-8010:80``, kept whole).
    """
    raw = str(value)
    invalid = ComposeModelError(f'{path}: Invalid port "{raw}", should be {_PORT_FORMAT}')
    spec, _, protocol = raw.partition("/")
    protocol = protocol or "tcp"
    if protocol not in _PROTOCOLS:
        raise invalid
    parts = spec.split(":")
    if len(parts) == 1:
        host_ip, published, target = "", "", parts[0]
    elif len(parts) == 2:
        host_ip, published, target = "", parts[0], parts[1]
    else:
        # everything before the last two parts is the IP (IPv6 may be bracketed)
        host_ip = ":".join(parts[:-2]).removeprefix("[").removesuffix("]")
        published, target = parts[-2], parts[-1]
        if not host_ip:
            raise invalid
    targets = _port_range(target)
    if targets is None:
        raise invalid
    count = targets[1] - targets[0] + 1
    if not published:
        return tuple(
            PortSpec(target=port, host_ip=host_ip, protocol=protocol)
            for port in range(targets[0], targets[1] + 1)
        )
    hosts = _port_range(published)
    if hosts is None:
        raise invalid
    host_count = hosts[1] - hosts[0] + 1
    if count == 1:
        return (
            PortSpec(target=targets[0], published=published, host_ip=host_ip, protocol=protocol),
        )
    if host_count != count:
        # go-connections nat.ParsePortSpec
        raise ComposeModelError(
            f"{path}: Invalid ranges specified for container and host Ports: "
            f"{target} and {published}"
        )
    return tuple(
        PortSpec(
            target=targets[0] + i, published=str(hosts[0] + i), host_ip=host_ip, protocol=protocol
        )
        for i in range(count)
    )


_PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
_CONSISTENCIES = ("consistent", "cached", "delegated")


def _is_host_path(source: str) -> bool:
    # compose-go loader: a source that looks like a path is a bind, else a volume name.
    return source.startswith(("/", ".", "~")) or (len(source) > 1 and source[1] == ":")


def parse_volume(value: str, path: str = "volumes") -> VolumeMount:
    """A short-form service volume: ``dst``, ``name:dst``, ``/src:dst``, ``src:dst:ro,z``."""
    parts = value.split(":")
    if len(parts) > 3 or any(not part for part in parts):
        # docker-compose 1.29.2 VolumeSpec._parse_unix
        raise ComposeModelError(
            f"{path}: Volume {value} has incorrect format, should be external:internal[:mode]"
        )
    if len(parts) == 1:
        return VolumeMount(type="volume", target=parts[0])
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    read_only = False
    propagation = consistency = selinux = None
    nocopy = False
    for option in options:
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option in _PROPAGATIONS:
            propagation = option
        elif option in _CONSISTENCIES:
            consistency = option
        elif option in ("z", "Z"):
            selinux = option
        elif option == "nocopy":
            nocopy = True
        else:
            raise ComposeModelError(f"{path}: invalid mode {option!r} in volume {value}")
    if _is_host_path(source):
        if nocopy:
            raise ComposeModelError(f"{path}: nocopy applies to volumes only: {value}")
        return VolumeMount(
            type="bind",
            source=source,
            target=target,
            read_only=read_only,
            consistency=consistency,
            propagation=propagation,
            selinux=selinux,
        )
    if propagation is not None or selinux is not None:
        raise ComposeModelError(f"{path}: bind options apply to host paths only: {value}")
    return VolumeMount(
        type="volume",
        source=source,
        target=target,
        read_only=read_only,
        consistency=consistency,
        nocopy=nocopy,
    )


# --- type checking ---------------------------------------------------------------------

# JSON types as docker-compose 1.29.2's schema names them.
_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _anglicize(json_type: str) -> str:
    return ("an " if json_type[0] in "aeiou" else "a ") + json_type


def _type_error(path: str, *types: type) -> ComposeModelError:
    """1.29.2 ``_parse_valid_types_from_validator``: the first and the last type get an
    article, the ones between do not ("a string, number, or an object")."""
    names = list(dict.fromkeys(_JSON_TYPES[kind] for kind in types))
    if len(names) == 1:
        expected = _anglicize(names[0])
    else:
        head = ", ".join([_anglicize(names[0]), *names[1:-1]])
        expected = f"{head}, or {_anglicize(names[-1])}"
    return ComposeModelError(f"{path} contains an invalid type, it should be {expected}")


def _is(value: object, *types: type) -> bool:
    # bool is an int subclass in Python but not a number in JSON schema terms.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


class _Ctx:
    """Where we are (service and key) so every error names both."""

    def __init__(self, service: str | None) -> None:
        self.service = service

    def path(self, key: str) -> str:
        return f"services.{self.service}.{key}" if self.service is not None else key

    def fail(self, key: str, message: str) -> ComposeModelError:
        return ComposeModelError(message, self.service, key.split(".")[0])

    def check(self, key: str, value: object, *types: type) -> Any:
        if not _is(value, *types):
            err = _type_error(self.path(key), *types)
            raise ComposeModelError(err.message, self.service, key.split(".")[0])
        return value

    def wrap(self, key: str, call: Callable[[], _T]) -> _T:
        """Run a parser that raises bare ComposeModelErrors and tag them with our place."""
        try:
            return call()
        except ComposeModelError as err:
            raise ComposeModelError(err.message, self.service, key.split(".")[0]) from None

    def strings(self, key: str, value: object, *, scalar_ok: bool = False) -> tuple[str, ...]:
        if scalar_ok and isinstance(value, str):
            return (value,)
        items = self.check(key, value, list, str) if scalar_ok else self.check(key, value, list)
        return tuple(self.check(key, item, str) for item in items)

    def mapping(self, key: str, value: object) -> dict[str, str | None]:
        items = self.check(key, value, dict)
        out: dict[str, str | None] = {}
        for name, item in items.items():
            self.check(f"{key}.{name}", item, str, int, float, bool, type(None))
            out[str(name)] = None if item is None else _scalar_text(item)
        return out

    def options(self, key: str, value: object) -> dict[str, str]:
        """Driver options: a mapping whose values the engine takes as strings."""
        return {name: text or "" for name, text in self.mapping(key, value).items()}

    def unknown(self, where: str, keys: Sequence[str], allowed: Sequence[str]) -> None:
        prefix = f"services.{self.service}."
        for key in keys:
            if key not in allowed and not key.startswith("x-"):
                # the key named is the service's own: "logging" for logging.drvier
                owner = (
                    where.removeprefix(prefix).split(".")[0] if where.startswith(prefix) else key
                )
                raise ComposeModelError(
                    f"Unsupported config option for {where}: '{key}'", self.service, owner
                )


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- service keys ----------------------------------------------------------------------

# compose-spec keys the model keeps verbatim after a type check; the runner may use them.
_PASSTHROUGH: dict[str, tuple[type, ...]] = {
    "annotations": (dict,),
    "attach": (bool,),
    "blkio_config": (dict,),
    "cgroup": (str,),
    "cgroup_parent": (str,),
    "configs": (list,),
    "cpu_count": (int,),
    "cpu_percent": (int, float),
    "cpu_rt_period": (int, str),
    "cpu_rt_runtime": (int, str),
    "credential_spec": (dict,),
    # the loader resolves these into environment / the service itself and may keep them
    "env_file": (list, str),
    "extends": (dict, str),
    "isolation": (str,),
    "oom_kill_disable": (bool,),
    "oom_score_adj": (int,),
    "platform": (str,),
    "pull_policy": (str,),
    "runtime": (str,),
    "secrets": (list,),
    "storage_opt": (dict,),
    "userns_mode": (str,),
    "uts": (str,),
    "volume_driver": (str,),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The service keys the model interprets, plus the passthrough ones.
_SERVICE_KEYS = _words(
    """
    build cap_add cap_drop command container_name cpu_period cpu_quota cpu_shares cpus
    cpuset depends_on deploy devices dns dns_opt dns_search domainname entrypoint
    environment expose external_links extra_hosts group_add healthcheck hostname image init
    ipc labels links logging mac_address mem_limit mem_reservation memswap_limit
    network_mode networks pid pids_limit ports privileged profiles read_only restart scale
    security_opt shm_size stdin_open stop_grace_period stop_signal sysctls tmpfs tty ulimits
    user volumes volumes_from working_dir
    """
) + tuple(_PASSTHROUGH)
_STRING_KEYS = _words(
    """
    container_name cpuset domainname hostname image ipc mac_address pid stop_signal user
    working_dir
    """
)
_BOOL_KEYS = _words("init privileged read_only stdin_open tty")
_DEPENDS_CONDITIONS = (
    "service_started",
    "service_healthy",
    "service_completed_successfully",
)
_RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
_EXPOSE = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")


def _command(ctx: _Ctx, key: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # docker-py split_command / compose-go shellwords: a string is shell-split, not run
        # by a shell (use ["sh", "-c", ...] for that).
        try:
            return tuple(shlex.split(value))
        except ValueError as err:
            raise ctx.fail(key, f"{ctx.path(key)}: {err}") from None
    return ctx.strings(key, value)


def _ports(ctx: _Ctx, value: object) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for item in ctx.check("ports", value, list):
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            out.extend(ctx.wrap("ports", partial(parse_port, item, ctx.path("ports"))))
        elif isinstance(item, dict):
            out.append(_port_long(ctx, item))
        else:
            raise ctx.fail(
                "ports",
                f"{ctx.path('ports')} contains an invalid type, it should be a number, "
                "or an object",
            )
    return tuple(out)


def _port_long(ctx: _Ctx, item: Mapping[str, Any]) -> PortSpec:
    key = "ports"
    ctx.unknown(
        ctx.path(key),
        list(item),
        ("target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"),
    )
    if "target" not in item:
        raise ctx.fail(key, f"{ctx.path(key)}: a long-form port needs a target")
    target = ctx.check(f"{key}.target", item["target"], int)
    published = item.get("published")
    if published is not None:
        ctx.check(f"{key}.published", published, int, str)
        if _port_range(str(published)) is None:
            raise ctx.fail(key, f'{ctx.path(key)}: Invalid published port "{published}"')
    protocol = ctx.check(f"{key}.protocol", item.get("protocol", "tcp"), str)
    mode = ctx.check(f"{key}.mode", item.get("mode", "ingress"), str)
    if protocol not in _PROTOCOLS or mode not in ("host", "ingress") or not 0 < target < 65536:
        raise ctx.fail(key, f"{ctx.path(key)}: invalid long-form port {dict(item)!r}")
    return PortSpec(
        target=target,
        published=None if published is None else str(published),
        host_ip=ctx.check(f"{key}.host_ip", item.get("host_ip", ""), str),
        protocol=protocol,
        mode=mode,
    )


def _volumes(ctx: _Ctx, value: object) -> tuple[VolumeMount, ...]:
    out: list[VolumeMount] = []
    for item in ctx.check("volumes", value, list):
        if isinstance(item, str):
            out.append(ctx.wrap("volumes", partial(parse_volume, item, ctx.path("volumes"))))
        elif isinstance(item, dict):
            out.append(_volume_long(ctx, item))
        else:
            raise _type_error(ctx.path("volumes"), str, dict)
    targets = [mount.target for mount in out]
    for target in targets:
        if targets.count(target) > 1:
            # docker-compose 1.29.2 validate_config_section / moby "Duplicate mount point"
            raise ctx.fail("volumes", f"{ctx.path('volumes')}: Duplicate mount point: {target}")
    return tuple(out)


def _volume_long(ctx: _Ctx, item: Mapping[str, Any]) -> VolumeMount:
    key = "volumes"
    ctx.unknown(
        ctx.path(key),
        list(item),
        ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs"),
    )
    kind = ctx.check(f"{key}.type", item.get("type"), str)
    if kind not in ("bind", "volume", "tmpfs", "npipe"):
        raise ctx.fail(key, f"{ctx.path(key)}: invalid mount type {kind!r}")
    if "target" not in item:
        raise ctx.fail(key, f"{ctx.path(key)}: a long-form volume needs a target")
    target = ctx.check(f"{key}.target", item["target"], str)
    source = item.get("source")
    if source is not None:
        ctx.check(f"{key}.source", source, str)
    if kind == "bind" and not source:
        raise ctx.fail(key, f"{ctx.path(key)}: a bind mount needs a source")
    if kind == "tmpfs" and source:
        raise ctx.fail(key, f"{ctx.path(key)}: a tmpfs mount takes no source")
    read_only = ctx.check(f"{key}.read_only", item.get("read_only", False), bool)
    consistency = item.get("consistency")
    if consistency is not None:
        ctx.check(f"{key}.consistency", consistency, str)
    for section in ("bind", "volume", "tmpfs"):
        if section in item and section != kind:
            raise ctx.fail(key, f"{ctx.path(key)}: {section} options on a {kind} mount")
    options = ctx.check(f"{key}.{kind}", item.get(kind) or {}, dict)
    if kind == "bind":
        ctx.unknown(
            f"{ctx.path(key)}.bind", list(options), ("propagation", "create_host_path", "selinux")
        )
        propagation = options.get("propagation")
        if propagation is not None and propagation not in _PROPAGATIONS:
            raise ctx.fail(key, f"{ctx.path(key)}: invalid propagation {propagation!r}")
        return VolumeMount(
            type="bind",
            source=source,
            target=target,
            read_only=read_only,
            consistency=consistency,
            propagation=propagation,
            create_host_path=ctx.check(
                f"{key}.bind.create_host_path", options.get("create_host_path", True), bool
            ),
            selinux=options.get("selinux"),
        )
    if kind == "tmpfs":
        ctx.unknown(f"{ctx.path(key)}.tmpfs", list(options), ("size", "mode"))
        size = options.get("size")
        mode = options.get("mode")
        return VolumeMount(
            type="tmpfs",
            target=target,
            read_only=read_only,
            tmpfs_size_bytes=None
            if size is None
            else ctx.wrap(key, lambda: parse_bytes(size, f"{ctx.path(key)}.tmpfs.size")),
            tmpfs_mode=None if mode is None else ctx.check(f"{key}.tmpfs.mode", mode, int),
        )
    ctx.unknown(f"{ctx.path(key)}.{kind}", list(options), ("nocopy", "subpath"))
    return VolumeMount(
        type=kind,
        source=source or None,
        target=target,
        read_only=read_only,
        consistency=consistency,
        nocopy=ctx.check(f"{key}.volume.nocopy", options.get("nocopy", False), bool),
    )


def _healthcheck(ctx: _Ctx, value: object) -> Healthcheck:
    key = "healthcheck"
    spec = ctx.check(key, value, dict)
    ctx.unknown(
        ctx.path(key),
        list(spec),
        ("test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"),
    )
    if ctx.check(f"{key}.disable", spec.get("disable", False), bool):
        if "test" in spec and spec["test"] not in (["NONE"], "NONE"):
            # compose-go: "healthcheck.disable and healthcheck.test can't be set at the same time"
            raise ctx.fail(key, f"{ctx.path(key)}: test and disable can't be set at the same time")
        return Healthcheck(test=("NONE",))
    test: tuple[str, ...] | None = None
    if "test" in spec:
        raw = spec["test"]
        if isinstance(raw, str):
            # compose 1.29.2: a string test runs in the shell
            test = ("CMD-SHELL", raw)
        else:
            test = ctx.strings(f"{key}.test", raw)
            if test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
                raise ctx.fail(
                    key,
                    f"{ctx.path(key)}.test: the first item must be CMD, CMD-SHELL or NONE",
                )

    def duration(name: str) -> int | None:
        if name not in spec:
            return None
        full = f"{ctx.path(key)}.{name}"
        return ctx.wrap(key, partial(parse_duration_ns, spec[name], full))

    retries = spec.get("retries")
    return Healthcheck(
        test=test,
        interval_ns=duration("interval"),
        timeout_ns=duration("timeout"),
        start_period_ns=duration("start_period"),
        start_interval_ns=duration("start_interval"),
        retries=None if retries is None else ctx.check(f"{key}.retries", retries, int),
    )


def _nano_cpus(ctx: _Ctx, key: str, value: object) -> int:
    ctx.check(key, value, int, float, str)
    try:
        cpus = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ctx.fail(key, f"{ctx.path(key)}: invalid cpus value {value!r}") from None
    if cpus < 0:
        raise ctx.fail(key, f"{ctx.path(key)}: cpus must not be negative")
    return int(cpus * 1_000_000_000)


def _size(ctx: _Ctx, key: str, value: object) -> int:
    return ctx.wrap(key, partial(parse_bytes, value, ctx.path(key)))


_SWARM_DEPLOY_KEYS: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "endpoint_mode": (str,),
    "restart_policy": (dict,),
    "placement": (dict,),
    "update_config": (dict,),
    "rollback_config": (dict,),
}


def _deploy(ctx: _Ctx, value: object) -> tuple[int | None, dict[str, Any]]:
    """``deploy``: the replicas and the resources the engine can apply (the rest is Swarm's
    and only type-checked)."""
    deploy = ctx.check("deploy", value, dict)
    ctx.unknown(
        ctx.path("deploy"),
        list(deploy),
        _words(
            "mode replicas labels resources restart_policy placement update_config "
            "rollback_config endpoint_mode"
        ),
    )
    # Swarm-only settings: type-checked, otherwise left to the raw config
    for key, types in _SWARM_DEPLOY_KEYS.items():
        if deploy.get(key) is not None:
            ctx.check(f"deploy.{key}", deploy[key], *types)
    if deploy.get("labels") is not None:
        ctx.mapping("deploy.labels", deploy["labels"])
    replicas = deploy.get("replicas")
    if replicas is not None:
        ctx.check("deploy.replicas", replicas, int)
    found: dict[str, Any] = {}
    resources = ctx.check("deploy.resources", deploy.get("resources") or {}, dict)
    ctx.unknown(f"{ctx.path('deploy')}.resources", list(resources), ("limits", "reservations"))
    limits = ctx.check("deploy.resources.limits", resources.get("limits") or {}, dict)
    ctx.unknown(f"{ctx.path('deploy')}.resources.limits", list(limits), ("cpus", "memory", "pids"))
    reservations = ctx.check(
        "deploy.resources.reservations", resources.get("reservations") or {}, dict
    )
    ctx.unknown(
        f"{ctx.path('deploy')}.resources.reservations",
        list(reservations),
        ("cpus", "memory", "devices", "generic_resources"),
    )
    if "cpus" in limits:
        found["cpus"] = _nano_cpus(ctx, "deploy.resources.limits.cpus", limits["cpus"])
    if "memory" in limits:
        found["memory"] = _size(ctx, "deploy.resources.limits.memory", limits["memory"])
    if "pids" in limits:
        found["pids"] = ctx.check("deploy.resources.limits.pids", limits["pids"], int)
    if "memory" in reservations:
        found["reservation"] = _size(
            ctx, "deploy.resources.reservations.memory", reservations["memory"]
        )
    return replicas, found


def _one_knob(
    ctx: _Ctx, key: str, deploy_key: str, legacy: int | None, new: int | None
) -> int | None:
    # compose-go: "can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"
    if legacy is not None and new is not None and legacy != new:
        raise ctx.fail(
            key, f"services.{ctx.service}: can't set distinct values on '{key}' and '{deploy_key}'"
        )
    return new if new is not None else legacy


def _resources(ctx: _Ctx, spec: Mapping[str, Any], deploy: Mapping[str, Any]) -> Resources:
    def size(key: str) -> int | None:
        return _size(ctx, key, spec[key]) if key in spec else None

    def integer(key: str) -> int | None:
        return ctx.check(key, spec[key], int) if key in spec else None

    cpus = _nano_cpus(ctx, "cpus", spec["cpus"]) if "cpus" in spec else None
    memswap = spec.get("memswap_limit")
    return Resources(
        memory_bytes=_one_knob(
            ctx,
            "mem_limit",
            "deploy.resources.limits.memory",
            size("mem_limit"),
            deploy.get("memory"),
        ),
        # memswap_limit: -1 is "unlimited swap" (moby), not a size
        memory_swap_bytes=-1 if memswap == -1 else size("memswap_limit"),
        memory_reservation_bytes=_one_knob(
            ctx,
            "mem_reservation",
            "deploy.resources.reservations.memory",
            size("mem_reservation"),
            deploy.get("reservation"),
        ),
        nano_cpus=_one_knob(ctx, "cpus", "deploy.resources.limits.cpus", cpus, deploy.get("cpus")),
        cpu_shares=integer("cpu_shares"),
        cpu_quota=integer("cpu_quota"),
        cpu_period=integer("cpu_period"),
        cpuset=spec.get("cpuset"),
        pids_limit=_one_knob(
            ctx,
            "pids_limit",
            "deploy.resources.limits.pids",
            integer("pids_limit"),
            deploy.get("pids"),
        ),
        shm_size_bytes=size("shm_size"),
    )


def _restart(ctx: _Ctx, value: object) -> RestartPolicy:
    text = ctx.check("restart", value, str)
    name, _, count = text.partition(":")
    if name not in _RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        # moby runconfig/opts ParseRestartPolicy wording
        raise ctx.fail("restart", f"{ctx.path('restart')}: invalid restart policy {text!r}")
    return RestartPolicy(name=name, maximum_retry_count=int(count or 0))


def _ulimits(ctx: _Ctx, value: object) -> tuple[Ulimit, ...]:
    out: list[Ulimit] = []
    for name, limit in ctx.check("ulimits", value, dict).items():
        key = f"ulimits.{name}"
        if _is(limit, int):
            out.append(Ulimit(name=name, soft=limit, hard=limit))
            continue
        spec = ctx.check(key, limit, int, dict)
        ctx.unknown(ctx.path(key), list(spec), ("soft", "hard"))
        if "soft" not in spec or "hard" not in spec:
            raise ctx.fail(key, f"{ctx.path(key)}: soft and hard are both required")
        soft = ctx.check(f"{key}.soft", spec["soft"], int)
        hard = ctx.check(f"{key}.hard", spec["hard"], int)
        if soft > hard:
            # moby pkg/ulimit: "ulimit soft limit must be less than or equal to hard limit"
            raise ctx.fail(
                key, f"{ctx.path(key)}: soft limit must be less than or equal to hard limit"
            )
        out.append(Ulimit(name=name, soft=soft, hard=hard))
    return tuple(out)


def _logging(ctx: _Ctx, value: object) -> Logging:
    spec = ctx.check("logging", value, dict)
    ctx.unknown(ctx.path("logging"), list(spec), ("driver", "options"))
    driver = spec.get("driver")
    if driver is not None:
        ctx.check("logging.driver", driver, str)
    return Logging(driver=driver, options=ctx.options("logging.options", spec.get("options") or {}))


def _network_mode(ctx: _Ctx, value: object) -> NetworkMode:
    text = ctx.check("network_mode", value, str)
    kind, sep, target = text.partition(":")
    if sep and kind in ("service", "container"):
        if not target:
            raise ctx.fail("network_mode", f"{ctx.path('network_mode')}: {text!r} names nothing")
        return NetworkMode(mode=kind, target=target)
    if not text:
        raise ctx.fail("network_mode", f"{ctx.path('network_mode')} must not be empty")
    return NetworkMode(mode=text)


def _links(ctx: _Ctx, value: object) -> tuple[Link, ...]:
    out = []
    for item in ctx.strings("links", value):
        service, _, alias = item.partition(":")
        if not service:
            raise ctx.fail("links", f"{ctx.path('links')}: invalid link {item!r}")
        out.append(Link(service=service, alias=alias or service))
    return tuple(out)


def _volumes_from(ctx: _Ctx, value: object) -> tuple[VolumesFrom, ...]:
    out = []
    for item in ctx.strings("volumes_from", value):
        parts = item.split(":")
        kind = "service"
        if parts[0] == "container" and len(parts) > 1:
            kind = "container"
            parts = parts[1:]
        if len(parts) > 2 or not parts[0] or (len(parts) == 2 and parts[1] not in ("ro", "rw")):
            # docker-compose 1.29.2 VolumeFromSpec.parse
            raise ctx.fail(
                "volumes_from",
                f"{ctx.path('volumes_from')}: volume_from {item} has incorrect format, should "
                "be one of '<service name>[:<mode>]' or 'container:<container name>[:<mode>]'",
            )
        out.append(VolumesFrom(source=parts[0], kind=kind, read_only=parts[1:] == ["ro"]))
    return tuple(out)


def _devices(ctx: _Ctx, value: object) -> tuple[DeviceMapping, ...]:
    out = []
    for item in ctx.check("devices", value, list):
        if isinstance(item, dict):
            ctx.unknown(ctx.path("devices"), list(item), ("source", "target", "permissions"))
            source = ctx.check("devices.source", item.get("source"), str)
            target = ctx.check("devices.target", item.get("target", source), str)
            perms = ctx.check("devices.permissions", item.get("permissions", "rwm"), str)
            out.append(DeviceMapping(source, target, perms))
            continue
        text = ctx.check("devices", item, str, dict)
        parts = text.split(":")
        # moby opts.ParseDevice: host[:container][:permissions]
        if len(parts) == 3:
            mapping = DeviceMapping(parts[0], parts[1], parts[2])
        elif len(parts) == 2 and set(parts[1]) <= set("rwm"):
            mapping = DeviceMapping(parts[0], parts[0], parts[1])
        elif len(parts) == 2:
            mapping = DeviceMapping(parts[0], parts[1])
        elif len(parts) == 1:
            mapping = DeviceMapping(parts[0], parts[0])
        else:
            raise ctx.fail("devices", f"{ctx.path('devices')}: invalid device {text!r}")
        if not mapping.host_path or not set(mapping.permissions) <= set("rwm"):
            raise ctx.fail("devices", f"{ctx.path('devices')}: invalid device {text!r}")
        out.append(mapping)
    return tuple(out)


def _depends_on(ctx: _Ctx, value: object) -> tuple[DependsOn, ...]:
    out = []
    for name, spec in ctx.check("depends_on", value, dict).items():
        key = f"depends_on.{name}"
        spec = ctx.check(key, spec if spec is not None else {}, dict)
        ctx.unknown(ctx.path(key), list(spec), ("condition", "restart", "required"))
        condition = ctx.check(f"{key}.condition", spec.get("condition", "service_started"), str)
        if condition not in _DEPENDS_CONDITIONS:
            raise ctx.fail(
                "depends_on",
                f"{ctx.path(key)}.condition must be one of {', '.join(_DEPENDS_CONDITIONS)}",
            )
        out.append(
            DependsOn(
                service=name,
                condition=condition,
                restart=ctx.check(f"{key}.restart", spec.get("restart", False), bool),
                required=ctx.check(f"{key}.required", spec.get("required", True), bool),
            )
        )
    return tuple(out)


def _networks(ctx: _Ctx, value: object) -> tuple[ServiceNetwork, ...]:
    out = []
    for name, spec in ctx.check("networks", value, dict).items():
        key = f"networks.{name}"
        spec = ctx.check(key, spec if spec is not None else {}, dict)
        ctx.unknown(
            ctx.path(key),
            list(spec),
            _words("aliases ipv4_address ipv6_address link_local_ips priority mac_address"),
        )
        ipv4 = spec.get("ipv4_address")
        ipv6 = spec.get("ipv6_address")
        out.append(
            ServiceNetwork(
                name=name,
                aliases=ctx.strings(f"{key}.aliases", spec.get("aliases") or []),
                ipv4_address=None if ipv4 is None else ctx.check(f"{key}.ipv4_address", ipv4, str),
                ipv6_address=None if ipv6 is None else ctx.check(f"{key}.ipv6_address", ipv6, str),
                link_local_ips=ctx.strings(
                    f"{key}.link_local_ips", spec.get("link_local_ips") or []
                ),
                priority=ctx.check(f"{key}.priority", spec.get("priority", 0), int),
            )
        )
    return tuple(out)


def _build(ctx: _Ctx, value: object) -> Build:
    if isinstance(value, str):
        return Build(context=value)
    spec = ctx.check("build", value, str, dict)
    ctx.unknown(
        ctx.path("build"),
        list(spec),
        _words(
            "context dockerfile args target labels cache_from network shm_size "
            "extra_hosts pull no_cache isolation platforms ssh secrets tags "
            "additional_contexts dockerfile_inline cache_to privileged"
        ),
    )
    context = ctx.check("build.context", spec.get("context", "."), str)

    def optional(key: str) -> str | None:
        return None if spec.get(key) is None else ctx.check(f"build.{key}", spec[key], str)

    return Build(
        context=context,
        dockerfile=optional("dockerfile"),
        args=ctx.mapping("build.args", spec.get("args") or {}),
        target=optional("target"),
        labels=ctx.mapping("build.labels", spec.get("labels") or {}),
        cache_from=ctx.strings("build.cache_from", spec.get("cache_from") or []),
        network=optional("network"),
        shm_size_bytes=None
        if spec.get("shm_size") is None
        else _size(ctx, "build.shm_size", spec["shm_size"]),
        extra_hosts=ctx.mapping("build.extra_hosts", spec.get("extra_hosts") or {}),
        pull=ctx.check("build.pull", spec.get("pull", False), bool),
        no_cache=ctx.check("build.no_cache", spec.get("no_cache", False), bool),
    )


def _expose(ctx: _Ctx, value: object) -> tuple[str, ...]:
    out = []
    for item in ctx.check("expose", value, list):
        text = str(ctx.check("expose", item, str, int))
        if not _EXPOSE.match(text):
            raise ctx.fail("expose", f"{ctx.path('expose')}: invalid port {text!r}")
        out.append(text)
    return tuple(out)


def service_from_dict(name: str, spec: object) -> Service:
    """One service's dict, type-checked and parsed."""
    ctx = _Ctx(name)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ComposeModelError(
            f"services.{name} contains an invalid type, it should be an object", name, None
        )
    ctx.unknown(f"services.{name}", list(spec), _SERVICE_KEYS)
    for key in _STRING_KEYS:
        if key in spec:
            ctx.check(key, spec[key], str)
    for key in _BOOL_KEYS:
        if key in spec:
            ctx.check(key, spec[key], bool)
    extra = {}
    for key, types in _PASSTHROUGH.items():
        if key in spec:
            extra[key] = ctx.check(key, spec[key], *types)

    image = spec.get("image")
    build = _build(ctx, spec["build"]) if spec.get("build") is not None else None
    if image is None and build is None:
        # docker-compose 1.29.2 / compose-go
        raise ComposeModelError(
            f"Service {name} has neither an image nor a build context specified. "
            "At least one must be provided.",
            name,
            "image",
        )

    deploy_replicas, deploy_resources = (
        _deploy(ctx, spec["deploy"]) if spec.get("deploy") is not None else (None, {})
    )
    scale = spec.get("scale")
    if scale is not None:
        ctx.check("scale", scale, int)
    if scale is not None and deploy_replicas is not None and scale != deploy_replicas:
        raise ctx.fail(
            "scale", f"services.{name}: can't set distinct values on 'scale' and 'deploy.replicas'"
        )
    replicas = scale if scale is not None else deploy_replicas if deploy_replicas is not None else 1
    if replicas < 0:
        raise ctx.fail("scale", f"{ctx.path('scale')} must not be negative")
    container_name = spec.get("container_name")
    if container_name is not None and replicas > 1:
        # docker-compose 1.29.2 Service.scale refuses the same
        raise ctx.fail(
            "container_name",
            f'The "{name}" service is using the custom container name "{container_name}". '
            "Docker requires each container to have a unique name. Remove the custom name to "
            "scale the service.",
        )

    network_mode = _network_mode(ctx, spec["network_mode"]) if "network_mode" in spec else None
    networks = _networks(ctx, spec["networks"]) if spec.get("networks") is not None else ()
    if network_mode is not None and networks:
        # docker-compose 1.29.2 validate_network_mode
        raise ctx.fail("networks", "'network_mode' and 'networks' cannot be combined")
    if network_mode is None and not networks:
        networks = (ServiceNetwork(name="default"),)

    grace = spec.get("stop_grace_period")
    return Service(
        name=name,
        config=spec,
        image=image,
        build=build,
        container_name=container_name,
        replicas=replicas,
        profiles=ctx.strings("profiles", spec.get("profiles") or []),
        command=_command(ctx, "command", spec.get("command")),
        entrypoint=_command(ctx, "entrypoint", spec.get("entrypoint")),
        environment=ctx.mapping("environment", spec.get("environment") or {}),
        labels=ctx.mapping("labels", spec.get("labels") or {}),
        ports=_ports(ctx, spec["ports"]) if spec.get("ports") is not None else (),
        expose=_expose(ctx, spec["expose"]) if spec.get("expose") is not None else (),
        volumes=_volumes(ctx, spec["volumes"]) if spec.get("volumes") is not None else (),
        volumes_from=_volumes_from(ctx, spec.get("volumes_from") or []),
        tmpfs=ctx.strings("tmpfs", spec.get("tmpfs") or [], scalar_ok=True),
        links=_links(ctx, spec.get("links") or []),
        external_links=ctx.strings("external_links", spec.get("external_links") or []),
        depends_on=_depends_on(ctx, spec.get("depends_on") or {}),
        network_mode=network_mode,
        networks=networks,
        healthcheck=_healthcheck(ctx, spec["healthcheck"]) if "healthcheck" in spec else None,
        resources=_resources(ctx, spec, deploy_resources),
        restart=_restart(ctx, spec["restart"]) if "restart" in spec else RestartPolicy(),
        ulimits=_ulimits(ctx, spec.get("ulimits") or {}),
        logging=_logging(ctx, spec["logging"]) if spec.get("logging") is not None else None,
        cap_add=ctx.strings("cap_add", spec.get("cap_add") or []),
        cap_drop=ctx.strings("cap_drop", spec.get("cap_drop") or []),
        privileged=spec.get("privileged", False),
        security_opt=ctx.strings("security_opt", spec.get("security_opt") or []),
        devices=_devices(ctx, spec.get("devices") or []),
        user=spec.get("user"),
        working_dir=spec.get("working_dir"),
        tty=spec.get("tty", False),
        stdin_open=spec.get("stdin_open", False),
        init=spec.get("init"),
        stop_signal=spec.get("stop_signal"),
        stop_grace_period_ns=None
        if grace is None
        else ctx.wrap(
            "stop_grace_period",
            lambda: parse_duration_ns(grace, ctx.path("stop_grace_period")),
        ),
        sysctls=ctx.mapping("sysctls", spec.get("sysctls") or {}),
        extra_hosts=ctx.mapping("extra_hosts", spec.get("extra_hosts") or {}),
        dns=ctx.strings("dns", spec.get("dns") or [], scalar_ok=True),
        dns_search=ctx.strings("dns_search", spec.get("dns_search") or [], scalar_ok=True),
        dns_opt=ctx.strings("dns_opt", spec.get("dns_opt") or [], scalar_ok=True),
        hostname=spec.get("hostname"),
        domainname=spec.get("domainname"),
        pid=spec.get("pid"),
        ipc=spec.get("ipc"),
        read_only=spec.get("read_only", False),
        group_add=tuple(
            _scalar_text(ctx.check("group_add", item, str, int))
            for item in ctx.check("group_add", spec.get("group_add") or [], list)
        ),
        mac_address=spec.get("mac_address"),
        extra=extra,
    )


# --- project ---------------------------------------------------------------------------

_PROJECT_KEYS = ("name", "services", "networks", "volumes", "configs", "secrets")
_NETWORK_KEYS = _words(
    "name driver driver_opts external internal attachable enable_ipv6 ipam labels"
)
_VOLUME_KEYS = ("name", "driver", "driver_opts", "external", "labels")
# compose-go / docker-compose 1.29.2 normalize the project name to this alphabet
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _resource_name(
    ctx: _Ctx, where: str, project: str, key: str, spec: Mapping[str, Any]
) -> tuple[str, bool]:
    external = spec.get("external", False)
    if isinstance(external, dict):
        # compose file v2/v3: external: {name: x}
        ctx.unknown(f"{where}.external", list(external), ("name",))
        name = ctx.check(f"{where}.external.name", external.get("name", key), str)
        return name, True
    ctx.check(f"{where}.external", external, bool)
    explicit = spec.get("name")
    if explicit is not None:
        ctx.check(f"{where}.name", explicit, str)
        return explicit, external
    # docker-compose 1.29.2 Network.full_name / Volume.full_name: "{project}_{key}"
    return (key if external else f"{project}_{key}"), external


def _resource_fields(
    top: _Ctx, where: str, project: str, key: str, raw: Any, known: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A top-level network's or volume's checked spec, and the fields both kinds share."""
    spec: dict[str, Any] = top.check(where, raw if raw is not None else {}, dict)
    top.unknown(where, list(spec), known)
    full, external = _resource_name(top, where, project, key, spec)
    driver = spec.get("driver")
    return spec, {
        "key": key,
        "name": full,
        "driver": None if driver is None else top.check(f"{where}.driver", driver, str),
        "driver_opts": top.options(f"{where}.driver_opts", spec.get("driver_opts") or {}),
        "external": external,
        "labels": top.mapping(f"{where}.labels", spec.get("labels") or {}),
    }


def project_from_dict(data: Mapping[str, Any]) -> Project:
    """The loader's canonical project dict as a :class:`Project`."""
    top = _Ctx(None)
    top.unknown("the project", list(data), _PROJECT_KEYS)
    name = top.check("name", data.get("name"), str)
    if not _PROJECT_NAME.match(name):
        # compose-go: "project name must contain only lowercase letters, decimal digits,
        # dashes, and underscores, and must begin with a lowercase letter or decimal digit"
        raise ComposeModelError(
            f'"{name}" is not a valid project name: it must contain only lowercase letters, '
            "decimal digits, dashes, and underscores, and must begin with a lowercase letter "
            "or decimal digit",
            None,
            "name",
        )
    raw_services = top.check("services", data.get("services") or {}, dict)
    services = {key: service_from_dict(key, spec) for key, spec in raw_services.items()}

    networks: dict[str, NetworkConfig] = {}
    for key, spec in top.check("networks", data.get("networks") or {}, dict).items():
        where = f"networks.{key}"
        spec, common = _resource_fields(top, where, name, key, spec, _NETWORK_KEYS)
        networks[key] = NetworkConfig(
            **common,
            internal=top.check(f"{where}.internal", spec.get("internal", False), bool),
            attachable=top.check(f"{where}.attachable", spec.get("attachable", False), bool),
            enable_ipv6=top.check(f"{where}.enable_ipv6", spec.get("enable_ipv6", False), bool),
            ipam=top.check(f"{where}.ipam", spec.get("ipam") or {}, dict),
        )
    volumes: dict[str, VolumeConfig] = {}
    for key, spec in top.check("volumes", data.get("volumes") or {}, dict).items():
        where = f"volumes.{key}"
        _spec, common = _resource_fields(top, where, name, key, spec, _VOLUME_KEYS)
        volumes[key] = VolumeConfig(**common)

    for service in services.values():
        _check_references(service, networks, volumes)
    if "default" not in networks and any(
        net.name == "default" for service in services.values() for net in service.networks
    ):
        networks["default"] = NetworkConfig(key="default", name=f"{name}_default")
    return Project(
        name=name,
        services=services,
        networks=networks,
        volumes=volumes,
        configs=top.check("configs", data.get("configs") or {}, dict),
        secrets=top.check("secrets", data.get("secrets") or {}, dict),
    )


def _check_references(
    service: Service, networks: Mapping[str, NetworkConfig], volumes: Mapping[str, VolumeConfig]
) -> None:
    for net in service.networks:
        if net.name != "default" and net.name not in networks:
            # docker-compose 1.29.2 validate_networks
            raise ComposeModelError(
                f'Service "{service.name}" uses an undefined network "{net.name}"',
                service.name,
                "networks",
            )
    for mount in service.volumes:
        if mount.type == "volume" and mount.source is not None and mount.source not in volumes:
            # docker-compose 1.29.2 validate_named_volumes (compose-go: "service "web" refers
            # to undefined volume data: invalid compose project")
            raise ComposeModelError(
                f'Named volume "{mount.source}:{mount.target}" is used in service '
                f'"{service.name}" but no declaration was found in the volumes section.',
                service.name,
                "volumes",
            )
