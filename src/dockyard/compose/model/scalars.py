"""Compose's stand-alone short syntaxes: byte sizes, durations, ports, volumes.

Role: :func:`parse_bytes`, :func:`parse_duration_ns`, :func:`parse_port` and
:func:`parse_volume` turn one user-written scalar into a value. The key builders call them
item by item; the CLI calls :func:`parse_port` for ``run --publish``.

Invariants:
- Context-free: a parser knows the value and the ``path`` its message names, nothing else;
  it raises a bare :class:`ComposeModelError` (no service, no key), which the builder tags
  with its place (``_Ctx.wrap``).
- Byte sizes are parsed as docker-py's ``parse_bytes`` (which docker-compose 1.29.2 uses):
  1024-based ``b``/``k``/``m``/``g`` suffixes, an optional trailing ``b`` (``1gb``), a bare
  number is bytes. Durations are Go's ``time.ParseDuration`` (``1m30s``, ``1.5s``,
  ``500ms``), returned in nanoseconds as the Engine API wants them. Both are exact
  (``Fraction``), never rounded through a float.
- Ports split as go-connections ``nat.ParsePortSpec``; volumes as docker-compose 1.29.2
  ``VolumeSpec._parse_unix``, a path-like source being a bind (compose-go's rule).
"""

from __future__ import annotations

import re
from fractions import Fraction

from dockyard.compose.model.values import ComposeModelError, PortSpec, VolumeMount

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
