"""The engine's whole iptables ruleset, planned from values (bridge networks, published ports).

Role: given the engine's bridge networks and published ports, produce the
``iptables-restore --noflush`` input for the ``filter`` and ``nat`` tables, the jumps the
builtin chains need, the sysctls the rules rely on, and the plan that removes all of it.
``firewall.py`` (the I/O half) feeds the text to iptables-restore, ensures the jumps with
``-C`` then ``-I``/``-A``, and sets the sysctls.

Pure: values in, text and values out; nothing here runs iptables.

Invariants:
- Only the engine's own chains are written: declaring ``:CHAIN - [0:0]`` in restore input
  flushes that chain, its rules are then appended; with ``--noflush`` no other chain's rules
  are touched. The builtin chains only get the jumps of :meth:`RuleSet.jumps`.
- Chain names start with ``DOCKYARD`` so a real dockerd on the same host (``DOCKER*``
  chains) and this engine never edit each other's rules.
- Rendering is deterministic (networks by name, ports and links sorted, duplicates
  dropped): equal inputs give equal text, so the driver can diff plans.
- After :func:`teardown` is applied, ``iptables-save`` is as before the engine ran.

Semantics follow moby's bridge driver with ``--userland-proxy=false`` (libnetwork
``drivers/bridge/setup_ip_tables.go``, ``link.go``, ``iptables/iptables.go``, v20.10):

filter
- FORWARD jumps to DOCKYARD-FORWARD at position 1, before anything another engine (or a
  FORWARD policy of DROP) decides, so our traffic is decided by our rules only.
- DOCKYARD-FORWARD: isolation first (DOCKYARD-ISOLATION-STAGE-1), then per network:
  replies to the bridge (``RELATED,ESTABLISHED``) accepted; ``-o bridge -j DOCKYARD`` for
  published ports and links; bridge -> outside accepted unless the network is internal;
  bridge -> same bridge accepted, or dropped with ``icc`` off.
- Published ports are accepted per mapping in DOCKYARD, ``-d container_ip ! -i bridge -o
  bridge -p proto --dport port``, as moby's DOCKER chain does, *and* only with ``-m conntrack
  --ctstate DNAT``: the per-mapping match opens only the published container ports (a rule
  disappears with its mapping), and the DNAT state keeps a neighbour that routes straight
  to a container address (bypassing the host port) out, which moby < 28 let in.
- Isolation as moby: STAGE-1 sends traffic leaving a bridge for another interface to
  STAGE-2, which drops it if it enters another engine bridge. Internal networks drop
  anything that enters or leaves their bridge from or to another interface (moby >= 25's
  ``-i br ! -o br`` / ``! -i br -o br`` form).
- ``icc`` off: per link, ``-i br -o br -s parent -d child --dport P -j ACCEPT`` and the
  reverse ``--sport`` rule (link.go), before the bridge's DROP.
- DOCKYARD-INPUT (INPUT, position 1): drop new packets that arrive on a bridge for
  127.0.0.0/8. ``route_localnet=1`` (needed for loopback access to published ports) would
  otherwise let containers reach host services bound to 127.0.0.1 (CVE-2020-8558 class);
  replies of the loopback DNAT are ESTABLISHED and pass.

nat
- PREROUTING and OUTPUT jump to DOCKYARD for ``-m addrtype --dst-type LOCAL`` (appended, as
  dockerd). OUTPUT does *not* exclude 127.0.0.0/8 (dockerd does only when its userland proxy
  serves loopback): host-local clients reach published ports on 127.0.0.1 by NAT.
- DOCKYARD: one DNAT per mapping, ``-d host_ip`` unless it is 0.0.0.0. There is no ``! -i
  bridge``: without the proxy dockerd (hairpin mode) DNATs packets from containers too, so a
  container reaches a published port on a host address, its own included.
- POSTROUTING jumps to DOCKYARD-POSTROUTING at position 1: per non-internal network with
  masquerading, ``-s subnet ! -o bridge -j MASQUERADE``; per non-internal network
  ``-o bridge -m addrtype --src-type LOCAL -j MASQUERADE`` (host-local and 127.x sources
  must not reach a container as such; this needs ``route_localnet=1`` on the bridge); per
  mapping the hairpin ``-s ip -d ip -p proto --dport port -j MASQUERADE``.
- Published ports on an internal network are not programmed: it has no external
  connectivity (moby publishes a container's ports only through the network that gives it
  its default gateway, which an internal network never does).

IPv4 only: the engine runs with IPv6 off, so there is no ip6tables plan.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dockyard.engine.network.ports import PROTOCOLS, PortMapping

__all__ = [
    "CHAIN",
    "FILTER_CHAINS",
    "FORWARD_CHAIN",
    "INPUT_CHAIN",
    "ISOLATION_STAGE_1",
    "ISOLATION_STAGE_2",
    "NAT_CHAINS",
    "POSTROUTING_CHAIN",
    "BridgeNetwork",
    "Jump",
    "LinkAccept",
    "PlanError",
    "PublishedPort",
    "RuleSet",
    "Sysctl",
    "Teardown",
    "chain_prefix_for",
    "plan",
    "teardown",
]

CHAIN = "DOCKYARD"  # filter: published ports and links; nat: DNAT
FORWARD_CHAIN = "DOCKYARD-FORWARD"
INPUT_CHAIN = "DOCKYARD-INPUT"
ISOLATION_STAGE_1 = "DOCKYARD-ISOLATION-STAGE-1"
ISOLATION_STAGE_2 = "DOCKYARD-ISOLATION-STAGE-2"
POSTROUTING_CHAIN = "DOCKYARD-POSTROUTING"
FILTER_CHAINS = (CHAIN, FORWARD_CHAIN, INPUT_CHAIN, ISOLATION_STAGE_1, ISOLATION_STAGE_2)
NAT_CHAINS = (CHAIN, POSTROUTING_CHAIN)
_ALL_CHAINS = frozenset((*FILTER_CHAINS, *NAT_CHAINS))
# Chain names are at most 28 characters (XT_EXTENSION_MAXNAMELEN); the longest suffix of ours
# ("-ISOLATION-STAGE-1") leaves 10 for a prefix.
MAX_PREFIX_LEN = 10


def chain_prefix_for(bridge: str) -> str:
    """The chains' prefix for a daemon whose default bridge is `bridge`: `DOCKYARD` for
    the standard `dockyard0`, else `DY` and six characters of a hash of the name, so two
    engines on one host (tests, several data roots) never rewrite each other's chains."""
    if bridge in ("dockyard0", "none"):
        return CHAIN
    digest = hashlib.sha256(bridge.encode()).hexdigest()[:6].upper()
    return f"DY{digest}"


def _renamer(prefix: str) -> Callable[[str], str]:
    if len(prefix) > MAX_PREFIX_LEN or not re.fullmatch(r"[A-Z][A-Z0-9]*", prefix):
        raise PlanError(f"bad chain prefix {prefix!r}")

    def rename(token: str) -> str:
        return prefix + token[len(CHAIN) :] if token in _ALL_CHAINS else token

    return rename


# Linux IFNAMSIZ is 16 including the NUL. No '.': sysctl keys name the bridge in dotted form
# (net.ipv4.conf.<bridge>.route_localnet), where a dot would be ambiguous.
_IFNAME = re.compile(r"^[A-Za-z0-9_-]{1,15}$")


class PlanError(ValueError):
    """Inputs no ruleset can express (a bug in the caller, not user input)."""


@dataclass(frozen=True, order=True)
class BridgeNetwork:
    """One engine bridge network, as the firewall sees it."""

    name: str
    bridge: str
    subnet: str  # IPv4 CIDR, e.g. "172.17.0.0/16"
    internal: bool = False
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade
    icc: bool = True  # com.docker.network.bridge.enable_icc


@dataclass(frozen=True, order=True)
class PublishedPort:
    """A published port as NAT sees it: host address/port -> container address/port."""

    bridge: str
    proto: str
    host_ip: str  # "0.0.0.0" for every address
    host_port: int
    container_ip: str
    container_port: int

    @classmethod
    def from_mapping(cls, mapping: PortMapping, bridge: str) -> PublishedPort:
        return cls(
            bridge=bridge,
            proto=mapping.proto,
            host_ip=mapping.host_ip or "0.0.0.0",
            host_port=mapping.host_port,
            container_ip=mapping.container_ip,
            container_port=mapping.container_port,
        )


@dataclass(frozen=True, order=True)
class LinkAccept:
    """A legacy link's exposed port between two containers of an ``icc=false`` bridge."""

    bridge: str
    parent_ip: str
    child_ip: str
    proto: str
    port: int


@dataclass(frozen=True)
class Jump:
    """A rule a builtin chain needs: ensured with ``-C`` then ``-I chain 1`` or ``-A``."""

    table: str
    chain: str
    args: tuple[str, ...]
    first: bool  # insert at position 1 (else append)

    def check_argv(self) -> tuple[str, ...]:
        return ("-t", self.table, "-C", self.chain, *self.args)

    def add_argv(self) -> tuple[str, ...]:
        op = ("-I", self.chain, "1") if self.first else ("-A", self.chain)
        return ("-t", self.table, *op, *self.args)

    def delete_argv(self) -> tuple[str, ...]:
        return ("-t", self.table, "-D", self.chain, *self.args)


@dataclass(frozen=True, order=True)
class Sysctl:
    """A kernel setting the rules rely on; ``key`` in sysctl's dotted form."""

    key: str
    value: str


_JUMPS = (
    Jump("filter", "FORWARD", ("-j", FORWARD_CHAIN), first=True),
    Jump("filter", "INPUT", ("-j", INPUT_CHAIN), first=True),
    Jump("nat", "PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN), first=False),
    Jump("nat", "OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN), first=False),
    Jump("nat", "POSTROUTING", ("-j", POSTROUTING_CHAIN), first=True),
)

Rule = tuple[str, tuple[str, ...]]  # (chain, rule args)


def _restore_text(
    table: str, chains: Sequence[str], rules: Iterable[Rule], rename: Callable[[str], str]
) -> str:
    lines = [f"*{table}"]
    lines += [f":{rename(chain)} - [0:0]" for chain in chains]
    lines += [f"-A {rename(chain)} {' '.join(map(rename, args))}" for chain, args in rules]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RuleSet:
    """The planned rules of the engine's chains, per table, in order."""

    filter_rules: tuple[Rule, ...]
    nat_rules: tuple[Rule, ...]
    sysctl_settings: tuple[Sysctl, ...]
    prefix: str = CHAIN  # the chains' names start with it (chain_prefix_for)

    def filter_restore_text(self) -> str:
        return _restore_text("filter", FILTER_CHAINS, self.filter_rules, _renamer(self.prefix))

    def nat_restore_text(self) -> str:
        return _restore_text("nat", NAT_CHAINS, self.nat_rules, _renamer(self.prefix))

    def restore_text(self) -> str:
        """Both tables in one input (iptables-restore applies each table atomically)."""
        return self.filter_restore_text() + self.nat_restore_text()

    def jumps(self) -> tuple[Jump, ...]:
        return _jumps(self.prefix)

    def sysctls(self) -> tuple[Sysctl, ...]:
        return self.sysctl_settings


@dataclass(frozen=True)
class Teardown:
    """How to remove everything :func:`plan` added: first delete the jumps (every copy),
    then apply ``restore_text`` (flushes and deletes the chains; missing ones are fine
    because declaring a chain creates it). ``chains`` lists (table, chain) for drivers
    that prefer ``-F``/``-X``. Sysctls are left as set (dockerd does not restore them)."""

    jumps: tuple[Jump, ...]
    chains: tuple[tuple[str, str], ...]
    restore_text: str


def _jumps(prefix: str) -> tuple[Jump, ...]:
    rename = _renamer(prefix)
    return tuple(Jump(j.table, j.chain, tuple(map(rename, j.args)), first=j.first) for j in _JUMPS)


def teardown(prefix: str = CHAIN) -> Teardown:
    rename = _renamer(prefix)
    filter_chains = [rename(c) for c in FILTER_CHAINS]
    nat_chains = [rename(c) for c in NAT_CHAINS]

    def text(table: str, chains: Sequence[str]) -> str:
        lines = [f"*{table}", *(f":{c} - [0:0]" for c in chains)]
        lines += [f"-X {c}" for c in chains]
        return "\n".join([*lines, "COMMIT"]) + "\n"

    return Teardown(
        jumps=_jumps(prefix),
        chains=(
            *(("filter", c) for c in filter_chains),
            *(("nat", c) for c in nat_chains),
        ),
        restore_text=text("filter", filter_chains) + text("nat", nat_chains),
    )


# -- planning ------------------------------------------------------------------------------


def _check_ifname(name: str) -> str:
    if not _IFNAME.match(name):
        raise PlanError(f"invalid bridge name: {name!r}")
    return name


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise PlanError(f"invalid IPv4 {what}: {text!r}") from None


def _subnet(text: str) -> str:
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        raise PlanError(f"invalid IPv4 subnet: {text!r}") from None


def _proto(proto: str) -> tuple[str, ...]:
    if proto not in PROTOCOLS:
        raise PlanError(f"invalid protocol: {proto!r}")
    return ("-p", proto, "-m", proto)


def _port(port: int) -> str:
    if not 0 < port <= 65535:
        raise PlanError(f"invalid port: {port}")
    return str(port)


def plan(
    networks: Iterable[BridgeNetwork],
    ports: Iterable[PublishedPort] = (),
    links: Iterable[LinkAccept] = (),
    *,
    prefix: str = CHAIN,
) -> RuleSet:
    """The whole ruleset for these networks, published ports and ``icc=false`` links, in
    chains named with ``prefix`` (``chain_prefix_for``)."""
    _renamer(prefix)  # refuse a bad prefix now, not when the text is rendered
    nets = sorted(set(networks))
    by_bridge: dict[str, BridgeNetwork] = {}
    for net in nets:
        _check_ifname(net.bridge)
        if net.bridge in by_bridge:
            raise PlanError(f"bridge {net.bridge} belongs to two networks")
        by_bridge[net.bridge] = net
    ports_ = sorted(set(ports))
    for port in ports_:
        if port.bridge not in by_bridge:
            raise PlanError(f"published port on unknown bridge {port.bridge}")
    published = [p for p in ports_ if not by_bridge[p.bridge].internal]
    accepted_links = sorted(
        {link for link in links if link.bridge in by_bridge and not by_bridge[link.bridge].icc}
    )

    filter_rules: list[Rule] = [(FORWARD_CHAIN, ("-j", ISOLATION_STAGE_1))]
    stage1_internal: list[Rule] = []
    stage1: list[Rule] = []
    stage2: list[Rule] = []
    input_rules: list[Rule] = []
    nat_post: list[Rule] = []
    for net in nets:
        br = net.bridge
        subnet = _subnet(net.subnet)
        stage2.append((ISOLATION_STAGE_2, ("-o", br, "-j", "DROP")))
        if net.internal:
            stage1_internal += [
                (ISOLATION_STAGE_1, ("-i", br, "!", "-o", br, "-j", "DROP")),
                (ISOLATION_STAGE_1, ("!", "-i", br, "-o", br, "-j", "DROP")),
            ]
        else:
            stage1.append((ISOLATION_STAGE_1, ("-i", br, "!", "-o", br, "-j", ISOLATION_STAGE_2)))
            filter_rules += [
                (
                    FORWARD_CHAIN,
                    (
                        "-o",
                        br,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "RELATED,ESTABLISHED",
                        "-j",
                        "ACCEPT",
                    ),
                ),
                (FORWARD_CHAIN, ("-o", br, "-j", CHAIN)),
                (FORWARD_CHAIN, ("-i", br, "!", "-o", br, "-j", "ACCEPT")),
            ]
            input_rules.append(
                (
                    INPUT_CHAIN,
                    ("-i", br, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate",
                     "RELATED,ESTABLISHED", "-j", "DROP"),
                )
            )  # fmt: skip
            if net.masquerade:
                nat_post.append(
                    (POSTROUTING_CHAIN, ("-s", subnet, "!", "-o", br, "-j", "MASQUERADE"))
                )
            nat_post.append(
                (
                    POSTROUTING_CHAIN,
                    ("-o", br, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"),
                )
            )
        filter_rules.append(
            (FORWARD_CHAIN, ("-i", br, "-o", br, "-j", "ACCEPT" if net.icc else "DROP"))
        )

    docker_chain: list[Rule] = []
    nat_dnat: list[Rule] = []
    for p in published:
        proto = _proto(p.proto)
        cip = _ipv4(p.container_ip, "container address")
        hip = _ipv4(p.host_ip, "host address")
        hport, cport = _port(p.host_port), _port(p.container_port)
        accept = (
            "-d", f"{cip}/32", "!", "-i", p.bridge, "-o", p.bridge, *proto, "--dport", cport,
            "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT",
        )  # fmt: skip
        if (CHAIN, accept) not in docker_chain:
            docker_chain.append((CHAIN, accept))
        dest = () if hip.is_unspecified else ("-d", f"{hip}/32")
        dnat = (*dest, *proto, "--dport", hport, "-j", "DNAT", "--to-destination", f"{cip}:{cport}")
        nat_dnat.append((CHAIN, dnat))
        hairpin = (
            "-s", f"{cip}/32", "-d", f"{cip}/32", *proto, "--dport", cport, "-j", "MASQUERADE",
        )  # fmt: skip
        if (POSTROUTING_CHAIN, hairpin) not in nat_post:
            nat_post.append((POSTROUTING_CHAIN, hairpin))
    for link in accepted_links:
        proto = _proto(link.proto)
        parent = str(_ipv4(link.parent_ip, "parent address"))
        child = str(_ipv4(link.child_ip, "child address"))
        link_port = _port(link.port)
        br = link.bridge
        docker_chain += [
            (CHAIN, ("-i", br, "-o", br, *proto, "-s", parent, "-d", child, "--dport", link_port,
                     "-j", "ACCEPT")),
            (CHAIN, ("-i", br, "-o", br, *proto, "-s", child, "-d", parent, "--sport", link_port,
                     "-j", "ACCEPT")),
        ]  # fmt: skip

    sysctls: set[Sysctl] = set()
    if nets:
        sysctls.add(Sysctl("net.ipv4.ip_forward", "1"))
        # Without br_netfilter, traffic between two containers of one bridge skips iptables:
        # icc=false would not hold and a DNAT'd reply bridged straight back would not be
        # un-NATed (moby setupBridgeNetFiltering). The driver loads br_netfilter first.
        sysctls.add(Sysctl("net.bridge.bridge-nf-call-iptables", "1"))
    for net in nets:
        if not net.internal:
            # 127.x sources (loopback clients, after OUTPUT DNAT) may leave through the
            # bridge only with route_localnet (moby: setupLoopbackAddressesRouting).
            sysctls.add(Sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet", "1"))

    return RuleSet(
        filter_rules=(
            *filter_rules,
            *docker_chain,
            *input_rules,
            *stage1_internal,
            *stage1,
            *stage2,
        ),
        nat_rules=(*nat_dnat, *nat_post),
        sysctl_settings=tuple(sorted(sysctls)),
        prefix=prefix,
    )
