"""Host port reservations for published ports.

Role: published ports are forwarded by NAT (iptables DNAT, see iptables.py), so nothing on
the host listens on them; to refuse a port some host process already uses, and to keep
host processes from taking a published port later, the daemon binds (without listening)
a socket on each published host address and port for as long as the mapping exists.
dockerd's userland proxy holds the port the same way as a side effect.

Invariants:
- A reservation is a bound socket without SO_REUSEADDR, so any later bind() of that port by
  another process fails with EADDRINUSE; incoming packets never reach it (DNAT happens in
  PREROUTING/OUTPUT, before local delivery).
- After a daemon restart, `reserve` is called again for every mapping that still exists.
- Errors carry dockerd's wording: "... bind: address already in use".
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

from dockyard.engine.model.container import EngineError


class PortInUse(EngineError):
    """The host already uses this address and port (dockerd answers 500)."""


@dataclass(frozen=True)
class Reservation:
    proto: str  # "tcp" | "udp" | "sctp"
    host_ip: str  # "0.0.0.0" for every address
    host_port: int


@dataclass
class PortReservations:
    """The sockets holding published host ports (one per proto/address/port)."""

    _sockets: dict[Reservation, socket.socket] = field(default_factory=dict)

    def reserve(self, key: Reservation) -> None:
        if key in self._sockets:
            return
        kind = socket.SOCK_DGRAM if key.proto == "udp" else socket.SOCK_STREAM
        family = socket.AF_INET6 if ":" in key.host_ip else socket.AF_INET
        sock = socket.socket(family, kind)
        try:
            sock.bind((key.host_ip, key.host_port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                # moby portmapper: "listen tcp4 0.0.0.0:8080: bind: address already in use"
                ip = key.host_ip if family == socket.AF_INET else f"[{key.host_ip}]"
                raise PortInUse(
                    f"Error starting userland proxy: listen {key.proto}4 "
                    f"{ip}:{key.host_port}: bind: address already in use"
                ) from None
            raise
        self._sockets[key] = sock

    def release(self, key: Reservation) -> None:
        sock = self._sockets.pop(key, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def local_port_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral port range; dockerd's default 49153-60999 if unreadable."""
    try:
        with open(path) as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return (49153, 60999)
    return (low, high)
