"""Parse the host's resolv.conf into the embedded resolver's upstreams: pure, text in.

Role: the daemon reads /etc/resolv.conf and hands the text here; the result names the
servers the embedded resolver forwards to, and the search domains and options a container's
own resolv.conf may inherit (moby libnetwork/resolvconf: GetNameservers, GetSearchDomains,
GetOptions).

Rules (resolv.conf(5), glibc res_init):
- Lines starting with '#' or ';' are comments; so is the rest of a line after one (moby
  strips them the same way before matching).
- `nameserver ADDR`: IPv4 or IPv6 (with an optional %zone); anything else is ignored, as
  glibc ignores an address inet_pton rejects.
- `search` and `domain` replace each other: the last one wins; `domain x` is `search x`.
- `options` accumulate in order; a later `ndots:`/`timeout:`/`attempts:` overrides an earlier.
- No nameserver at all means glibc's default, the local server on 127.0.0.1. Upstream queries
  leave from the daemon's own namespace, so unlike Docker (which falls back to 8.8.8.8 because
  a container cannot reach the host's loopback) the host's semantics apply unchanged, and a
  host resolver on 127.0.0.53 or 127.0.0.1 works.
- Even 127.0.0.11 is kept: in the daemon's namespace it is not our resolver (ours live only
  inside containers), it is e.g. Docker's when dockyard itself runs in a Docker container.

Must not: read files or touch the network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DNS_PORT = 53
# glibc's default when resolv.conf names no server (resolv/res_init.c).
DEFAULT_NAMESERVER = "127.0.0.1"


@dataclass(frozen=True)
class UpstreamServer:
    host: str  # an address literal, IPv6 possibly with %zone
    port: int = DNS_PORT


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    options: tuple[str, ...]

    def option_value(self, name: str) -> int | None:
        """The numeric value of `name:N` (the last one given), e.g. ndots; None if absent."""
        value: int | None = None
        for option in self.options:
            key, sep, raw = option.partition(":")
            if key == name and sep and raw.isdigit():
                value = int(raw)
        return value

    def upstreams(self) -> tuple[UpstreamServer, ...]:
        servers = self.nameservers or (DEFAULT_NAMESERVER,)
        return tuple(UpstreamServer(host) for host in servers)


def _valid_address(text: str) -> bool:
    address, _, zone = text.partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    # A zone only qualifies an IPv6 address.
    return not zone or parsed.version == 6


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line
        for mark in ("#", ";"):
            line = line.split(mark, 1)[0]
        fields = line.split()
        if not fields:
            continue
        keyword, args = fields[0], fields[1:]
        if keyword == "nameserver" and args:
            if _valid_address(args[0]):
                nameservers.append(args[0])
        elif keyword == "search":
            search = tuple(args)
        elif keyword == "domain" and args:
            search = (args[0],)
        elif keyword == "options":
            options.extend(args)
    return ResolvConf(tuple(nameservers), search, tuple(options))
