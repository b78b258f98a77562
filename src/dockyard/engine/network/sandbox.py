"""A running container's network sandbox, as the network manager records it.

Role: the value persisted per running container (`<data-root>/network/sandboxes/<id>.json`)
so a restarted daemon knows which namespace, veths, addresses and published ports exist,
and can re-reserve, reattach or remove them. Pure values and their JSON round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.engine.network.model import EndpointRecord
from dockyard.engine.network.ports import PortMapping


@dataclass(frozen=True)
class Interface:
    """An endpoint as it exists in the sandbox: the record and the interface name."""

    endpoint: EndpointRecord
    ifname: str  # "eth0", "eth1"... ("" on host/null networks)

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.to_json(), "ifname": self.ifname}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Interface:
        return cls(EndpointRecord.from_json(obj["endpoint"]), str(obj["ifname"]))


@dataclass(frozen=True)
class Sandbox:
    container_id: str
    netns_path: str  # "" for host/none/container: modes (no namespace of ours)
    interfaces: tuple[Interface, ...] = ()
    ports: tuple[PortMapping, ...] = ()  # published ports (kernel NAT)
    dns: bool = False  # attached to the embedded DNS (on a user network)

    def interface(self, network_id: str) -> Interface | None:
        for i in self.interfaces:
            if i.endpoint.network_id == network_id:
                return i
        return None

    def next_ifname(self) -> str:
        taken = {i.ifname for i in self.interfaces}
        n = 0
        while f"eth{n}" in taken:
            n += 1
        return f"eth{n}"

    def to_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "netns_path": self.netns_path,
            "interfaces": [i.to_json() for i in self.interfaces],
            "ports": [p.to_json() for p in self.ports],
            "dns": self.dns,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Sandbox:
        return cls(
            container_id=str(obj["container_id"]),
            netns_path=str(obj.get("netns_path") or ""),
            interfaces=tuple(Interface.from_json(i) for i in obj.get("interfaces") or ()),
            ports=tuple(PortMapping.from_json(p) for p in obj.get("ports") or ()),
            dns=bool(obj.get("dns")),
        )
