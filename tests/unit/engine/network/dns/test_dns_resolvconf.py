"""The embedded resolver's upstreams from the host's resolv.conf."""

from __future__ import annotations

import pytest

from dockyard.engine.network.dns.resolvconf import UpstreamServer, host_upstreams

pytestmark = pytest.mark.unit

SYSTEMD = """\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
nameserver 127.0.0.53
options edns0 trust-ad
search corp.example
"""


def test_a_host_loopback_resolver_is_kept() -> None:
    # Queries leave from the daemon's namespace, where the systemd stub answers.
    assert host_upstreams(SYSTEMD) == (UpstreamServer("127.0.0.53", 53),)


def test_servers_in_order_bad_addresses_dropped_ipv6_zones_kept() -> None:
    text = (
        "; comment\n"
        "nameserver 10.0.0.1 # trailing\n"
        "nameserver   fe80::1%eth0\n"
        "nameserver 2001:db8::53\n"
        "nameserver not-an-address\n"
        "#nameserver 10.9.9.9\n"
    )
    assert [u.host for u in host_upstreams(text)] == ["10.0.0.1", "fe80::1%eth0", "2001:db8::53"]


def test_no_nameserver_means_glibc_local_default() -> None:
    assert host_upstreams("search x\n") == (UpstreamServer("127.0.0.1"),)
    assert host_upstreams("\x00\xff nameserver\n\t\n:::\noptions\n") == (
        UpstreamServer("127.0.0.1"),
    )
