"""The embedded resolver's upstreams from the host's resolv.conf: pure, text in.

Role: the daemon reads /etc/resolv.conf and hands the text here; the servers it names are
where the embedded resolver forwards names it does not own. The file is parsed once, by
etcfiles.parse_resolv_conf (moby's rules, also used to write containers' resolv.conf).

Rules:
- No nameserver at all means glibc's default, the local server on 127.0.0.1. Upstream queries
  leave from the daemon's own namespace, so unlike Docker (which falls back to 8.8.8.8 because
  a container cannot reach the host's loopback) the host's semantics apply unchanged, and a
  host resolver on 127.0.0.53 or 127.0.0.1 works.
- Even 127.0.0.11 is kept: in the daemon's namespace it is not our resolver (ours live only
  inside containers), it is e.g. Docker's when dockyard itself runs in a Docker container.

Must not: read files or touch the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.engine.network.etcfiles import parse_resolv_conf

DNS_PORT = 53
# glibc's default when resolv.conf names no server (resolv/res_init.c).
DEFAULT_NAMESERVER = "127.0.0.1"


@dataclass(frozen=True)
class UpstreamServer:
    host: str  # an address literal, IPv6 possibly with %zone
    port: int = DNS_PORT


def host_upstreams(resolv_conf_text: str) -> tuple[UpstreamServer, ...]:
    """The servers the host's resolv.conf names, in order (glibc's default if none)."""
    servers = parse_resolv_conf(resolv_conf_text).nameservers or (DEFAULT_NAMESERVER,)
    return tuple(UpstreamServer(host) for host in servers)
