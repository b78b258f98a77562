"""Published ports: parsing, host-port allocation and the API renderings, as dockerd does them.

Role: turn a container's ``Config.ExposedPorts``, ``HostConfig.PortBindings`` and
``HostConfig.PublishAllPorts`` into :class:`PortRequest` values, assign host ports to them with
:class:`PortAllocator` (explicit ports checked for conflicts, ephemeral ports handed out
sequentially from the host's range), and render the results as ``docker inspect``
(``NetworkSettings.Ports``, which ``docker port`` reads client-side) and ``docker ps``
(``Ports``) show them.

Pure: values in, values out. The host facts dockerd probes (the contents of
``/proc/sys/net/ipv4/ip_local_port_range``, which ports some host process already holds) are
arguments; nothing here binds a socket or reads a file.

Sources (moby v20.10, the reference dockerd of the differential tests, unless noted):
``daemon/container.go`` validatePortBindings (the create-time checks and their messages),
``daemon/container_operations.go`` buildSandboxOptions (``-P``: every exposed port without
a binding gets one ephemeral binding), go-connections ``nat`` (``80/tcp`` keys, port ranges),
libnetwork ``portallocator`` (per address/protocol maps, a "last handed out" cursor per range,
``Bind for IP:PORT failed: port is already allocated``, ``all ports are allocated``),
``daemon/list.go`` (the ``ps`` rendering) and ``daemon/network.go`` (the inspect map).

Invariants:
- An allocator never holds two allocations that could not both be bound on Linux: the same
  protocol and port on the same address, or on any address when either is a wildcard
  (``0.0.0.0``/``::``). 20.10's allocator only compared equal addresses and left the rest to
  the kernel's bind(); we refuse it up front with the allocator's message (moby >= 25 does).
- ``allocate`` is all-or-nothing: it returns a new allocator or raises; the old one is
  unchanged (it is immutable), so a failed start leaks no port.
- Everything rendered is sorted deterministically (Go marshals map keys sorted; ``ps`` order
  is Go map order in dockerd, which the CLI re-sorts, so any fixed order is compatible).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard.engine.model.container import EngineError, InvalidArgument

__all__ = [
    "DEFAULT_EPHEMERAL_RANGE",
    "PROTOCOLS",
    "AllPortsAllocated",
    "ContainerPort",
    "HeldPort",
    "InvalidPortSpec",
    "PortAllocated",
    "PortAllocator",
    "PortError",
    "PortMapping",
    "PortRequest",
    "RangeCursor",
    "inspect_ports",
    "parse_exposed_ports",
    "parse_ip_local_port_range",
    "parse_port_bindings",
    "port_requests",
    "ps_ports",
]

# libnetwork portallocator_linux.go: used when ip_local_port_range cannot be read.
DEFAULT_EPHEMERAL_RANGE = (49153, 60999)
PROTOCOLS = ("tcp", "udp", "sctp")  # go-connections nat validateProto
_MAX_PORT = 65535
_WILDCARDS = frozenset({"0.0.0.0", "::"})


class PortError(EngineError):
    """Base of the port errors; the message is dockerd's."""


class InvalidPortSpec(PortError, InvalidArgument):
    """A bad ExposedPorts/PortBindings entry: HTTP 400 at create, as dockerd."""


class PortAllocated(PortError):
    """An explicit host port is taken: dockerd fails the start with HTTP 500."""


class AllPortsAllocated(PortError):
    """No free port in the ephemeral range (or in a requested host-port range): HTTP 500."""


@dataclass(frozen=True, order=True)
class ContainerPort:
    """A container-side port and protocol, the ``80/tcp`` key of the API maps."""

    port: int
    proto: str = "tcp"

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"


@dataclass(frozen=True)
class PortRequest:
    """One binding to establish: container port -> host address and host port (or range).

    ``host_ip`` is ``""`` for every address; ``host_port_start == 0`` asks for an ephemeral
    port; ``start < end`` asks for any one free port of that range (``-p 8080-8081:80``).
    """

    container: ContainerPort
    host_ip: str = ""
    host_port_start: int = 0
    host_port_end: int = 0


@dataclass(frozen=True)
class PortMapping:
    """An established binding. ``host_ip`` is ``"0.0.0.0"`` for every IPv4 address."""

    proto: str
    host_ip: str
    host_port: int
    container_port: int
    container_ip: str = ""

    @property
    def container(self) -> ContainerPort:
        return ContainerPort(self.container_port, self.proto)

    def to_json(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "host_ip": self.host_ip,
            "host_port": self.host_port,
            "container_ip": self.container_ip,
            "container_port": self.container_port,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PortMapping:
        return cls(
            proto=str(value["proto"]),
            host_ip=str(value["host_ip"]),
            host_port=int(value["host_port"]),
            container_port=int(value["container_port"]),
            container_ip=str(value.get("container_ip", "")),
        )


# -- parsing -----------------------------------------------------------------------------


def _go_quote(text: str) -> str:
    """Go's %q for the printable ASCII the API carries."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_uint16(text: str) -> int | None:
    # strconv.ParseUint(s, 10, 16): ASCII digits only, no sign, no spaces.
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_PORT else None


def _parse_range(text: str) -> tuple[int, int] | None:
    """go-connections nat.ParsePortRange: ``N`` or ``N-M`` with M >= N."""
    if "-" not in text:
        single = _parse_uint16(text)
        return None if single is None else (single, single)
    parts = text.split("-")
    start, end = _parse_uint16(parts[0]), _parse_uint16(parts[1])
    if start is None or end is None or end < start:
        return None
    return start, end


def _split_proto_port(raw: str) -> tuple[str, str]:
    """go-connections nat.SplitProtoPort: ``80`` -> tcp; ``80/`` -> tcp; ``/udp`` -> empty."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _parse_key(key: str) -> ContainerPort:
    proto, port_text = _split_proto_port(key)
    port = _parse_uint16(port_text) if port_text else None
    # dockerd 20.10 validatePortBindings: `invalid port specification: "<port part>"`. moby
    # >= 25 also refuses port 0 and unknown protocols with the same message.
    if port is None or port == 0:
        raise InvalidPortSpec(f"invalid port specification: {_go_quote(port_text)}")
    if proto.lower() not in PROTOCOLS:
        raise InvalidPortSpec(f"invalid port specification: {_go_quote(key)}")
    return ContainerPort(port, proto.lower())


def _normalize_host_ip(text: str) -> str:
    """``""`` stays ``""``; an address is canonicalised; anything else is refused.

    The docker CLI refuses bad addresses itself; an API client's bad ``HostIp`` gets
    libnetwork portallocator's message (moby >= 25; 20.10 silently bound every address).
    """
    if text == "":
        return ""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise InvalidPortSpec(f"invalid IP address: {text}") from None


def parse_exposed_ports(
    exposed: Mapping[str, Any] | Iterable[str] | None,
) -> tuple[ContainerPort, ...]:
    """``Config.ExposedPorts`` (``{"80/tcp": {}}``) as sorted ContainerPorts."""
    if not exposed:
        return ()
    return tuple(sorted({_parse_key(str(key)) for key in exposed}))


def parse_port_bindings(bindings: Mapping[str, Any] | None) -> tuple[PortRequest, ...]:
    """``HostConfig.PortBindings`` as PortRequests, sorted by container port, bindings in order.

    ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``; ``HostPort`` may be ``""`` (ephemeral),
    ``"8080"`` or a range ``"8080-8081"``; a ``null`` list publishes nothing (dockerd ignores it).
    """
    if not bindings:
        return ()
    requests: list[PortRequest] = []
    for key in sorted(bindings, key=lambda k: _parse_key(str(k))):
        container = _parse_key(str(key))
        for binding in bindings[key] or ():
            if not isinstance(binding, Mapping):
                raise InvalidPortSpec(f"invalid port specification: {_go_quote(str(binding))}")
            host_port = str(binding.get("HostPort") or "")
            # dockerd validates HostPort with nat.NewPort(nat.SplitProtoPort(HostPort)):
            # a "/proto" suffix is tolerated and ignored.
            _, host_port_text = _split_proto_port(host_port)
            start, end = 0, 0
            if host_port_text:
                parsed = _parse_range(host_port_text)
                if parsed is None:
                    raise InvalidPortSpec(f"invalid port specification: {_go_quote(host_port)}")
                start, end = parsed
            host_ip = _normalize_host_ip(str(binding.get("HostIp") or ""))
            requests.append(PortRequest(container, host_ip, start, end))
    return tuple(requests)


def port_requests(
    exposed: Mapping[str, Any] | Iterable[str] | None,
    bindings: Mapping[str, Any] | None,
    *,
    publish_all: bool,
) -> tuple[PortRequest, ...]:
    """What a container start must publish.

    ``exposed`` is the merged ``Config.ExposedPorts`` (image EXPOSE + ``--expose`` + the
    published keys the CLI adds). With ``-P`` (PublishAllPorts) every exposed port that has no
    explicit binding gets one ephemeral binding on every address (buildSandboxOptions).
    """
    explicit = parse_port_bindings(bindings)
    if not publish_all:
        return explicit
    bound = {request.container for request in explicit}
    extra = [PortRequest(port) for port in parse_exposed_ports(exposed) if port not in bound]
    return tuple(sorted((*explicit, *extra), key=lambda r: r.container))


def parse_ip_local_port_range(text: str) -> tuple[int, int]:
    """``/proc/sys/net/ipv4/ip_local_port_range`` content -> (low, high); dockerd's default
    49153-60999 when it is unusable (portallocator_linux.go getDynamicPortRange)."""
    fields = text.split()
    if len(fields) != 2:
        return DEFAULT_EPHEMERAL_RANGE
    low, high = _parse_uint16(fields[0]), _parse_uint16(fields[1])
    if low is None or high is None or low == 0 or high < low:
        return DEFAULT_EPHEMERAL_RANGE
    return (low, high)


# -- allocation --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class HeldPort:
    """A host port an allocation holds (``host_ip`` ``0.0.0.0`` for every address)."""

    proto: str
    host_port: int
    host_ip: str


@dataclass(frozen=True, order=True)
class RangeCursor:
    """libnetwork portallocator portRange: the last port handed out from [start, end]."""

    host_ip: str
    proto: str
    start: int
    end: int


def _addresses_clash(a: str, b: str) -> bool:
    # Linux bind(): a wildcard address conflicts with every address of the same port.
    return a == b or a in _WILDCARDS or b in _WILDCARDS


@dataclass(frozen=True)
class PortAllocator:
    """The host ports handed to published ports, as an immutable value.

    ``allocate`` and ``release`` return a new allocator. The daemon persists
    :meth:`to_json` and keeps the in-memory one (single writer: the engine's event loop).
    """

    held: frozenset[HeldPort] = frozenset()
    cursors: tuple[tuple[RangeCursor, int], ...] = field(default=())

    def is_allocated(self, proto: str, host_ip: str, host_port: int) -> bool:
        return self._clash(proto, host_ip or "0.0.0.0", host_port) is not None

    def _clash(self, proto: str, host_ip: str, host_port: int) -> HeldPort | None:
        for held in self.held:
            if (
                held.proto == proto
                and held.host_port == host_port
                and _addresses_clash(held.host_ip, host_ip)
            ):
                return held
        return None

    def allocate(
        self,
        requests: Sequence[PortRequest],
        *,
        container_ip: str = "",
        ephemeral_range: tuple[int, int] = DEFAULT_EPHEMERAL_RANGE,
        host_busy: Collection[tuple[str, int]] = frozenset(),
    ) -> tuple[PortAllocator, tuple[PortMapping, ...]]:
        """Assign host ports to ``requests`` (all or none), in order.

        ``host_busy`` holds (proto, port) pairs some host process already uses (the caller
        probes them); ephemeral and range picks skip them. An explicit single port is not
        checked against it: the driver's reservation bind reports that with the kernel's
        wording (``bind: address already in use``), as dockerd's does.
        """
        state = self
        mappings: list[PortMapping] = []
        for request in requests:
            state, mapping = state._allocate_one(request, container_ip, ephemeral_range, host_busy)
            mappings.append(mapping)
        return state, tuple(mappings)

    def _allocate_one(
        self,
        request: PortRequest,
        container_ip: str,
        ephemeral_range: tuple[int, int],
        host_busy: Collection[tuple[str, int]],
    ) -> tuple[PortAllocator, PortMapping]:
        proto = request.container.proto
        host_ip = request.host_ip or "0.0.0.0"
        start, end = request.host_port_start, request.host_port_end
        if start == 0:
            start, end = ephemeral_range
        elif start == end:
            if self._clash(proto, host_ip, start) is not None:
                raise PortAllocated(f"Bind for {host_ip}:{start} failed: port is already allocated")
            return self._with(proto, host_ip, start, None), self._mapping(
                request, host_ip, start, container_ip
            )
        # portallocator findPort: continue after the range's last port, wrapping, first free.
        cursor = RangeCursor(host_ip, proto, start, end)
        last = dict(self.cursors).get(cursor, end)
        port = last
        for _ in range(end - start + 1):
            port = start if port >= end else port + 1
            if (proto, port) in host_busy or self._clash(proto, host_ip, port) is not None:
                continue
            return self._with(proto, host_ip, port, cursor), self._mapping(
                request, host_ip, port, container_ip
            )
        raise AllPortsAllocated("all ports are allocated")

    @staticmethod
    def _mapping(request: PortRequest, host_ip: str, port: int, container_ip: str) -> PortMapping:
        return PortMapping(
            proto=request.container.proto,
            host_ip=host_ip,
            host_port=port,
            container_port=request.container.port,
            container_ip=container_ip,
        )

    def _with(
        self, proto: str, host_ip: str, port: int, cursor: RangeCursor | None
    ) -> PortAllocator:
        cursors = self.cursors
        if cursor is not None:
            kept = tuple((c, p) for c, p in cursors if c != cursor)
            cursors = tuple(sorted((*kept, (cursor, port))))
        return replace(self, held=self.held | {HeldPort(proto, port, host_ip)}, cursors=cursors)

    def release(self, mappings: Iterable[PortMapping]) -> PortAllocator:
        """Give the mappings' host ports back; unknown ones are ignored (idempotent).

        The cursors stay where they are, so a released port is not handed out again at once
        (portallocator ReleasePort leaves ``last`` alone).
        """
        gone = {HeldPort(m.proto, m.host_port, m.host_ip or "0.0.0.0") for m in mappings}
        return replace(self, held=self.held - gone)

    def to_json(self) -> dict[str, Any]:
        return {
            "allocated": [
                {"proto": h.proto, "host_ip": h.host_ip, "host_port": h.host_port}
                for h in sorted(self.held)
            ],
            "cursors": [
                {"host_ip": c.host_ip, "proto": c.proto, "start": c.start, "end": c.end, "last": p}
                for c, p in self.cursors
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PortAllocator:
        held = frozenset(
            HeldPort(str(h["proto"]), int(h["host_port"]), str(h["host_ip"]))
            for h in value.get("allocated", ())
        )
        cursors = tuple(
            sorted(
                (
                    RangeCursor(str(c["host_ip"]), str(c["proto"]), int(c["start"]), int(c["end"])),
                    int(c["last"]),
                )
                for c in value.get("cursors", ())
            )
        )
        return cls(held=held, cursors=cursors)


# -- rendering ---------------------------------------------------------------------------


def inspect_ports(
    exposed: Iterable[ContainerPort], mappings: Iterable[PortMapping]
) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports`` of a running container (``docker port`` reads this).

    Exposed-but-unpublished ports map to ``null``; published ones to ``[{HostIp, HostPort}]``
    in binding order. IPv6 is off, so there is no ``::`` twin of a ``0.0.0.0`` binding
    (20.10 adds one only when the host has IPv6). A stopped container has ``{}``: the caller
    passes nothing then.
    """
    ports: dict[ContainerPort, list[dict[str, str]] | None] = dict.fromkeys(exposed)
    for m in mappings:
        bound = ports.get(m.container)
        if bound is None:
            bound = ports[m.container] = []
        bound.append({"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
    # Go's encoding/json writes map keys sorted as strings ("443/tcp" < "80/tcp").
    return {port.key: ports[port] for port in sorted(ports, key=lambda p: p.key)}


def ps_ports(
    exposed: Iterable[ContainerPort], mappings: Iterable[PortMapping]
) -> list[dict[str, Any]]:
    """``docker ps``'s ``Ports`` (daemon/list.go): one entry per binding, ``{PrivatePort,
    Type}`` for an unpublished exposed port (``IP`` and ``PublicPort`` are omitempty)."""
    rendered: list[dict[str, Any]] = []
    for key, bindings in inspect_ports(exposed, mappings).items():
        port_text, proto = key.split("/")
        if not bindings:
            rendered.append({"PrivatePort": int(port_text), "Type": proto})
            continue
        for binding in bindings:
            rendered.append(
                {
                    "IP": binding["HostIp"],
                    "PrivatePort": int(port_text),
                    "PublicPort": int(binding["HostPort"]),
                    "Type": proto,
                }
            )
    rendered.sort(key=lambda p: (p["PrivatePort"], p["Type"], p.get("PublicPort", 0)))
    return rendered
