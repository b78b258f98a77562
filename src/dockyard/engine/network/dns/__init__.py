"""Docker's embedded DNS server for user-defined networks (127.0.0.11 in every container).

`message` (wire codec), `records` (names and answer rules) and `resolvconf` (the host's
upstreams) are pure; `server` owns the sockets, the per-container NAT rules and forwarding.
"""

from dockyard.engine.network.dns.records import Answer, AnswerKind, DnsEndpoint, DnsTable
from dockyard.engine.network.dns.resolvconf import UpstreamServer, host_upstreams

__all__ = [
    "Answer",
    "AnswerKind",
    "DnsEndpoint",
    "DnsTable",
    "UpstreamServer",
    "host_upstreams",
]
