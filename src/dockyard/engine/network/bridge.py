"""The bridge driver's kernel side: bridges, veth endpoints, container namespaces.

Role: what libnetwork's bridge driver and osl do through netlink, as blocking calls on
rtnetlink (netlink.py) and namespaces (netns.py); the network manager calls them with
asyncio.to_thread.

Invariants:
- `ensure_bridge` is idempotent: an existing bridge gets the gateway address if missing and
  is brought up, so a daemon restart reconciles instead of failing or duplicating.
- An endpoint's peer is created directly inside the container's namespace as `eth0`,
  `eth1`..., then given its MAC and address, and brought up; the host
  side joins the bridge in hairpin mode (a container can reach its own published port, as
  dockerd without the userland proxy arranges).
- Removal is idempotent: a missing link or namespace is not an error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.network import netns
from dockyard.engine.network.netlink import Rtnl

DEFAULT_MTU = 1500


@dataclass(frozen=True)
class EndpointPlan:
    """One interface of a container: the host-side veth and what the container sees."""

    host_veth: str  # "veth" + 7 hex, as moby names them
    bridge: str
    ifname: str  # "eth0", "eth1"...
    mac: str
    address_cidr: str  # "172.18.0.2/16"
    gateway: str  # "" for no default route (internal networks, secondary endpoints)
    mtu: int = DEFAULT_MTU


def ensure_bridge(name: str, gateway_cidr: str, *, mtu: int = DEFAULT_MTU) -> None:
    with Rtnl.open() as rtnl:
        if rtnl.link(name) is None:
            rtnl.add_bridge(name, mtu=mtu)
        have = {cidr for ifname, cidr in rtnl.addresses() if ifname == name}
        if gateway_cidr not in have:
            rtnl.add_address(name, gateway_cidr)
        rtnl.set_up(name)


def remove_bridge(name: str) -> None:
    with Rtnl.open() as rtnl:
        rtnl.delete_link(name)


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes and interface networks (what a new subnet must not overlap)."""
    with Rtnl.open() as rtnl:
        found = [ipaddress.ip_network(r, strict=False) for r in rtnl.routes()]
        found += [ipaddress.ip_interface(cidr).network for _, cidr in rtnl.addresses()]
    return [
        n
        for n in found
        if isinstance(n, ipaddress.IPv4Network) and n.prefixlen > 0 and not n.is_loopback
    ]


def create_sandbox(path: Path) -> None:
    """A container's network namespace at `path`, with `lo` up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not netns.netns_exists(path):
        netns.create_netns(path)
    with Rtnl.open(path) as rtnl:
        rtnl.set_up("lo")


def delete_sandbox(path: Path) -> None:
    netns.delete_netns(path)


def add_endpoint(sandbox: Path, plan: EndpointPlan) -> None:
    """Create the veth pair, put it on the bridge and configure the container's side."""
    with Rtnl.open() as host:
        # The peer is born inside the sandbox under its final name (the name only has to be
        # free there): no move between namespaces (~35 ms in the kernel), no rename.
        host.add_veth(plan.host_veth, plan.ifname, peer_netns=sandbox, mtu=plan.mtu)
        try:
            host.set_master(plan.host_veth, plan.bridge)
            host.set_hairpin(plan.host_veth, True)
            host.set_up(plan.host_veth)
            with Rtnl.open(sandbox) as inside:
                inside.set_mac(plan.ifname, plan.mac)
                inside.add_address(plan.ifname, plan.address_cidr)
                inside.set_up(plan.ifname)
                if plan.gateway:
                    inside.add_default_route(plan.gateway, dev=plan.ifname)
        except BaseException:
            host.delete_link(plan.host_veth)
            raise


def remove_endpoint(host_veth: str) -> None:
    """Deleting one end of a veth pair deletes both."""
    with Rtnl.open() as rtnl:
        rtnl.delete_link(host_veth)
