"""Parsing the host's resolv.conf into upstreams, search domains and options."""

from __future__ import annotations

import pytest

from dockyard.engine.network.dns.resolvconf import (
    ResolvConf,
    UpstreamServer,
    parse_resolv_conf,
)

pytestmark = pytest.mark.unit

SYSTEMD = """\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
nameserver 127.0.0.53
options edns0 trust-ad
search corp.example
"""


def test_systemd_stub_is_kept_as_is() -> None:
    conf = parse_resolv_conf(SYSTEMD)
    assert conf == ResolvConf(("127.0.0.53",), ("corp.example",), ("edns0", "trust-ad"))
    assert conf.upstreams() == (UpstreamServer("127.0.0.53", 53),)


def test_comments_bad_addresses_and_ipv6() -> None:
    conf = parse_resolv_conf(
        "; comment\n"
        "nameserver 10.0.0.1 # trailing\n"
        "nameserver   fe80::1%eth0\n"
        "nameserver 2001:db8::53\n"
        "nameserver not-an-address\n"
        "nameserver 10.0.0.1%eth0\n"
        "nameserver\n"
        "#nameserver 10.9.9.9\n"
    )
    assert conf.nameservers == ("10.0.0.1", "fe80::1%eth0", "2001:db8::53")


def test_search_and_domain_replace_each_other() -> None:
    assert parse_resolv_conf("search a b\ndomain c\n").search == ("c",)
    assert parse_resolv_conf("domain c\nsearch a b\n").search == ("a", "b")
    assert parse_resolv_conf("search a\nsearch\n").search == ()


def test_options_accumulate_and_the_last_value_wins() -> None:
    conf = parse_resolv_conf("options ndots:2 rotate\noptions ndots:5 timeout:1\n")
    assert conf.options == ("ndots:2", "rotate", "ndots:5", "timeout:1")
    assert conf.option_value("ndots") == 5
    assert conf.option_value("timeout") == 1
    assert conf.option_value("attempts") is None


def test_no_nameserver_means_glibc_local_default() -> None:
    conf = parse_resolv_conf("search x\n")
    assert conf.nameservers == ()
    assert conf.upstreams() == (UpstreamServer("127.0.0.1"),)


def test_garbage_does_not_raise() -> None:
    conf = parse_resolv_conf("\x00\xff nameserver\n\t\n:::\noptions\n")
    assert conf == ResolvConf((), (), ())
