"""The embedded resolver's name table and answer rules: pure, values in, `Answer` out.

Role: given every endpoint on user-defined networks, decide for one requesting container and
one question whether we answer (records or NODATA), deny (NXDOMAIN) or forward upstream. The
rules are moby libnetwork's (sandbox.go ResolveName/resolveName/ResolveIP, network.go
ResolveName/ResolveIP/addSvcRecords, resolver.go handleIPQuery/handlePTRQuery):

- A requester sees only the networks it is attached to; networks are tried in the order of
  its endpoints (by network name, as libnetwork's endpoint heap orders endpoints of equal
  priority) and the first network that knows the name answers alone.
- On a network, a container is known by its name, each of its network aliases and its
  12-character short ID (the daemon adds the short ID as an alias on user networks). Several
  endpoints sharing a name all answer, duplicates removed, in an order the caller's rng picks
  (libnetwork shuffleAddr). TTL 600 s (resolver.go respTTL).
- `name.network` is the name on that network only; for a.b.c every split is tried, the whole
  name first (sandbox.go ResolveName). Nothing else is stripped: `web.example.com` is not
  `web`, so a search domain the client appended makes the name unknown and it is forwarded.
- A link alias (`--link target:alias` on a user network) is private to the declaring
  container and resolves to the target's name on that network; it shadows a container of the
  same name there (resolveName: "if the requested name is an alias don't perform a svc lookup").
- AAAA for a name we know with no IPv6 address: NOERROR, no records, not forwarded
  (libnetwork ipv6Miss).
- PTR for an address on one of the requester's networks: `<container name>.<network name>.`
  (network.go ResolveIP returns `elem.name + "." + nwName`, resolver.go makes it an FQDN).
  Only the container name is mapped back, never aliases (addSvcRecords ipMapUpdate=false).
- Names match ASCII case-insensitively (RFC 4343), with or without the trailing dot.

dockyard deviations, on purpose:
- A name that exists on a network the requester is not attached to gets NXDOMAIN from us.
  Docker forwards it and the upstream says NXDOMAIN for such single-label names anyway; we
  answer ourselves so container names never leak to the host's resolvers and isolation does
  not depend on what the upstream does.
- Other query types (TXT, ANY, SRV, ...) for a visible name get NODATA instead of being
  forwarded, as Docker already does for MX (resolver.go handleMXQuery: "implicit MX"), so an
  upstream NXDOMAIN cannot be negatively cached for a name we own (RFC 2308 §5: NXDOMAIN
  covers every type). Swarm service SRV records do not exist here.
- Docker answers NODATA for dotless A/AAAA names it does not know when the container set
  ndots explicitly (resolver.go NdotsSet); not done here, the table does not know the
  container's options (forwarding is what Docker does without ndots).
- A PTR question outside in-addr.arpa/ip6.arpa follows the rule for other types (NODATA for
  a name we own, else forwarded); Docker drops it unanswered.

Must not: do I/O, read the clock, or hold randomness of its own (the rng is an argument).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dockyard.engine.network.dns.message import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    AnswerRecord,
)

# resolver.go: respTTL = 600.
TTL_S = 600
SHORT_ID_LENGTH = 12
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_REVERSE_SUFFIXES = (".in-addr.arpa", ".ip6.arpa")


class Rng(Protocol):
    """The one draw the table needs (random.Random satisfies it)."""

    def shuffle(self, x: MutableSequence[Any]) -> None: ...


def _check(condition: bool, message: str) -> None:
    # Always-on invariant check (bare assert disappears under -O).
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class DnsEndpoint:
    """One container's endpoint on one user-defined network, as the resolver sees it.

    Endpoints on the default bridge must not be given: Docker has no embedded DNS there.
    """

    container_id: str  # 64 hex
    container_name: str  # without the leading "/"
    network_id: str
    network_name: str
    ipv4: str
    aliases: tuple[str, ...] = ()
    # (link alias, target container name): only the declaring container sees these.
    links: tuple[tuple[str, str], ...] = ()
    ipv6: str = ""  # empty when the network has no IPv6

    def __post_init__(self) -> None:
        _check(bool(_FULL_ID.fullmatch(self.container_id)), "container_id must be 64 hex")
        _check(
            bool(self.container_name) and not self.container_name.startswith("/"),
            f"bad container name {self.container_name!r}",
        )
        _check(bool(self.network_id) and bool(self.network_name), "network id/name required")
        ipaddress.IPv4Address(self.ipv4)
        if self.ipv6:
            ipaddress.IPv6Address(self.ipv6)

    @property
    def short_id(self) -> str:
        return self.container_id[:SHORT_ID_LENGTH]


class AnswerKind(enum.Enum):
    RECORDS = "records"  # NOERROR with `records` (empty: NODATA)
    NXDOMAIN = "nxdomain"
    FORWARD = "forward"


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    records: tuple[AnswerRecord, ...] = ()


FORWARD = Answer(AnswerKind.FORWARD)
NXDOMAIN = Answer(AnswerKind.NXDOMAIN)
NODATA = Answer(AnswerKind.RECORDS)


@dataclass(frozen=True)
class _NetworkNames:
    """libnetwork svcRecords for one network: svcMap, svcIPv6Map and ipMap."""

    name: str
    ipv4: Mapping[str, tuple[str, ...]]
    ipv6: Mapping[str, tuple[str, ...]]
    reverse: Mapping[str, str]  # "d.c.b.a.in-addr.arpa" -> "<container>.<network>."


@dataclass(frozen=True)
class _Attachment:
    network_id: str
    network_name: str  # folded
    links: Mapping[str, str]  # folded alias -> folded target


def _fold(name: str) -> str:
    return name.lower().removesuffix(".") if name != "." else ""


def _append_unique(table: dict[str, list[str]], key: str, address: str) -> None:
    addresses = table.setdefault(key, [])
    if address not in addresses:
        addresses.append(address)


@dataclass(frozen=True)
class DnsTable:
    """An immutable snapshot of every name; the server swaps in a new one on each change."""

    _networks: Mapping[str, _NetworkNames] = field(default_factory=dict)
    _attachments: Mapping[str, tuple[_Attachment, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, endpoints: Iterable[DnsEndpoint]) -> DnsTable:
        v4: dict[str, dict[str, list[str]]] = {}
        v6: dict[str, dict[str, list[str]]] = {}
        reverse: dict[str, dict[str, str]] = {}
        names: dict[str, str] = {}
        attachments: dict[str, list[_Attachment]] = {}
        for ep in endpoints:
            names.setdefault(ep.network_id, ep.network_name)
            _check(
                names[ep.network_id] == ep.network_name,
                f"network {ep.network_id} has two names",
            )
            keys = [ep.container_name, *ep.aliases, ep.short_id]
            for key in keys:
                _append_unique(v4.setdefault(ep.network_id, {}), _fold(key), ep.ipv4)
                if ep.ipv6:
                    _append_unique(v6.setdefault(ep.network_id, {}), _fold(key), ep.ipv6)
            ptr = f"{ep.container_name}.{ep.network_name}."
            rev = reverse.setdefault(ep.network_id, {})
            rev.setdefault(ipaddress.IPv4Address(ep.ipv4).reverse_pointer, ptr)
            if ep.ipv6:
                rev.setdefault(ipaddress.IPv6Address(ep.ipv6).reverse_pointer, ptr)
            attachments.setdefault(ep.container_id, []).append(
                _Attachment(
                    network_id=ep.network_id,
                    network_name=_fold(ep.network_name),
                    links={_fold(alias): _fold(target) for alias, target in ep.links},
                )
            )
        networks = {
            nid: _NetworkNames(
                name=name,
                ipv4={k: tuple(v) for k, v in v4.get(nid, {}).items()},
                ipv6={k: tuple(v) for k, v in v6.get(nid, {}).items()},
                reverse=reverse.get(nid, {}),
            )
            for nid, name in names.items()
        }
        # sandbox.go Endpoint.Less: with equal priority, gateway and join info (all equal for
        # the bridge endpoints we serve) the network name decides, byte order.
        ordered = {
            cid: tuple(sorted(atts, key=lambda a: (names[a.network_id], a.network_id)))
            for cid, atts in attachments.items()
        }
        return cls(networks, ordered)

    def answer(self, requester_id: str, qname: str, qtype: int, rng: Rng) -> Answer:
        """What the resolver does with `qname`/`qtype` asked by container `requester_id`."""
        name = _fold(qname)
        if not name:
            return FORWARD
        owner = qname if qname.endswith(".") else qname + "."
        attachments = self._attachments.get(requester_id, ())
        if qtype == TYPE_PTR and name.endswith(_REVERSE_SUFFIXES):
            for att in attachments:
                target = self._networks[att.network_id].reverse.get(name)
                if target is not None:
                    return Answer(
                        AnswerKind.RECORDS, (AnswerRecord(owner, TYPE_PTR, TTL_S, target),)
                    )
            # resolver.go: an address we do not know is somebody else's; forward.
            return FORWARD
        ipv6 = qtype == TYPE_AAAA
        addresses, ipv6_miss = self._resolve(attachments, name, ipv6=ipv6)
        if addresses:
            if qtype not in (TYPE_A, TYPE_AAAA):
                return NODATA
            shuffled = list(addresses)
            if len(shuffled) > 1:
                rng.shuffle(shuffled)
            return Answer(
                AnswerKind.RECORDS,
                tuple(AnswerRecord(owner, qtype, TTL_S, address) for address in shuffled),
            )
        if ipv6_miss:
            return NODATA
        if self._exists_elsewhere(name):
            return NXDOMAIN
        return FORWARD

    def _resolve(
        self, attachments: Sequence[_Attachment], name: str, *, ipv6: bool
    ) -> tuple[tuple[str, ...], bool]:
        # sandbox.go ResolveName: "a.b.c" is tried as {a.b.c anywhere}, {a.b on network c},
        # {a on network b.c}; at each step link aliases first, then names.
        for request, network in _splits(name):
            for alias_pass in (True, False):
                miss = False
                for att in attachments:
                    if network is not None and network != att.network_name:
                        continue
                    lookup = request
                    if alias_pass:
                        if request not in att.links:
                            continue
                        lookup = att.links[request]
                    elif request in att.links:
                        continue
                    addresses, this_miss = self._on_network(att.network_id, lookup, ipv6=ipv6)
                    if addresses:
                        return addresses, False
                    miss = miss or this_miss
                if miss:
                    return (), True
        return (), False

    def _on_network(
        self, network_id: str, name: str, *, ipv6: bool
    ) -> tuple[tuple[str, ...], bool]:
        # network.go ResolveName: a v4-only name asked for AAAA is an ipv6Miss.
        names = self._networks[network_id]
        if not ipv6:
            return names.ipv4.get(name, ()), False
        found = names.ipv6.get(name, ())
        return found, not found and name in names.ipv4

    def _exists_elsewhere(self, name: str) -> bool:
        for request, network in _splits(name):
            for names in self._networks.values():
                if network is not None and network != _fold(names.name):
                    continue
                if request in names.ipv4:
                    return True
        return False


def _splits(name: str) -> list[tuple[str, str | None]]:
    splits: list[tuple[str, str | None]] = [(name, None)]
    cut = len(name)
    while (cut := name.rfind(".", 0, cut)) > 0:
        splits.append((name[:cut], name[cut + 1 :]))
    return splits
