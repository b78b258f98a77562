"""/etc/hosts, /etc/resolv.conf and /etc/hostname text, byte for byte.

Hosts files are written out by hand from moby v20.10 libnetwork etchosts and
sandbox_dns_unix.go; resolv.conf files from moby's internal/resolvconf testdata goldens
(TestRCTransformForLegacyNw, TestRCTransformForIntNS, TestRCModify) plus Docker's header.
"""

from __future__ import annotations

import pytest

from dockyard.engine.model.container import InvalidArgument
from dockyard.engine.network.etcfiles import (
    RESOLV_CONF_HEADER,
    EtcFileError,
    ExtServer,
    HostsRecord,
    InvalidEtcOption,
    ResolvConf,
    extra_host_records,
    hostname_file,
    hosts_file,
    own_records,
    parse_resolv_conf,
    resolv_conf,
    validate_dns,
    validate_extra_host,
)

pytestmark = pytest.mark.unit

DEFAULTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
HEADER = RESOLV_CONF_HEADER + "\n\n"


# -- /etc/hosts ------------------------------------------------------------------------------


def test_default_bridge_hosts_order_defaults_add_hosts_links_own() -> None:
    extra = extra_host_records(["gw:host-gateway", "db6:2001:db8::1"], host_gateway_ip="172.17.0.1")
    text = hosts_file(
        kind="bridge",
        hostname="3f2a1b4c5d6e",
        container_ips=["172.17.0.3"],
        extra=extra,
        links=[HostsRecord("172.17.0.2", "cache 0a1b2c3d4e5f db")],
    )
    assert text == DEFAULTS + (
        "172.17.0.1\tgw\n"
        "2001:db8::1\tdb6\n"
        "172.17.0.2\tcache 0a1b2c3d4e5f db\n"
        "172.17.0.3\t3f2a1b4c5d6e\n"
    )


def test_user_network_hosts_ignore_links_and_list_every_address() -> None:
    text = hosts_file(
        kind="user",
        hostname="web",
        domainname="example.com",
        container_ips=["172.18.0.2", "172.19.0.2"],
        links=[HostsRecord("172.18.0.9", "ignored")],
    )
    assert text == DEFAULTS + ("172.18.0.2\tweb.example.com web\n172.19.0.2\tweb.example.com web\n")


def test_own_record_fqdn_forms() -> None:
    assert own_records("web", "", ["10.0.0.2"]) == (HostsRecord("10.0.0.2", "web"),)
    assert own_records("web.corp.example", "", ["10.0.0.2"]) == (
        HostsRecord("10.0.0.2", "web.corp.example web"),
    )
    assert own_records("web", "corp", ["10.0.0.2", ""]) == (
        HostsRecord("10.0.0.2", "web.corp web"),
    )


def test_none_network_has_no_own_line() -> None:
    text = hosts_file(kind="none", hostname="abc", container_ips=["10.0.0.2"])
    assert text == DEFAULTS


def test_host_network_copies_the_host_file_unless_there_are_add_hosts() -> None:
    host = "127.0.0.1 localhost\n10.0.0.5 myhost\n"
    assert hosts_file(kind="host", hostname="myhost", host_hosts_text=host) == host
    extra = (HostsRecord("10.9.9.9", "myhost"),)
    assert hosts_file(kind="host", hostname="h", host_hosts_text=host, extra=extra) == (
        DEFAULTS + "10.9.9.9\tmyhost\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nohost", 'bad format for add-host: "nohost"'),
        (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
        ("h:1.2.3", 'invalid IP address in add-host: "1.2.3"'),
        ("h:", 'invalid IP address in add-host: ""'),
        ("h:[::1]", 'invalid IP address in add-host: "[::1]"'),
    ],
)
def test_add_host_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidEtcOption) as caught:
        validate_extra_host(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidArgument)


def test_add_host_values() -> None:
    assert validate_extra_host("h:::1") == HostsRecord("::1", "h")
    assert validate_extra_host("h:host-gateway") == HostsRecord("host-gateway", "h")
    with pytest.raises(EtcFileError) as caught:
        extra_host_records(["h:host-gateway"])
    assert str(caught.value) == "unable to derive the IP value for host-gateway"


def test_validate_dns() -> None:
    assert validate_dns("1.1.1.1") == "1.1.1.1"
    assert validate_dns(" 2001:DB8::1 ") == "2001:db8::1"
    with pytest.raises(InvalidEtcOption) as caught:
        validate_dns("dns.example")
    assert str(caught.value) == "dns.example is not an ip address"


def test_hostname_file() -> None:
    assert hostname_file("3f2a1b4c5d6e") == "3f2a1b4c5d6e\n"


# -- /etc/resolv.conf --------------------------------------------------------------------------


def test_parse_resolv_conf() -> None:
    rc = parse_resolv_conf(
        "# comment\n"
        "; other comment\n"
        "nameserver 10.0.0.1\r\n"
        "nameserver bogus\n"
        "domain a.example\n"
        "search b.example c.example\n"
        "options ndots:2 edns0\n"
        "options trust-ad\n"
        "sortlist 10.0.0.0/8\n"
        "nameserver\n"
    )
    assert rc == ResolvConf(
        nameservers=("10.0.0.1",),
        search=("b.example", "c.example"),
        options=("ndots:2", "edns0", "trust-ad"),
        other=("sortlist 10.0.0.0/8",),
        invalid_nameservers=("bogus",),
    )
    assert rc.option("ndots") == "2"
    assert rc.option("edns0") == ""
    assert rc.option("rotate") is None


def test_default_bridge_drops_loopback_and_ipv6_then_uses_defaults() -> None:
    plan = resolv_conf("nameserver 127.0.0.53\nnameserver ::1\n", kind="bridge")
    assert plan.text == HEADER + (
        "nameserver 8.8.8.8\n"
        "nameserver 8.8.4.4\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (legacy)\n"
        "# Used default nameservers.\n"
        "# Overrides: []\n"
    )
    assert plan.ext_servers == ()
    with_v6 = resolv_conf("nameserver 127.0.0.53\n", kind="bridge", ipv6=True)
    assert "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n" in with_v6.text


def test_default_bridge_keeps_routable_servers_search_and_options() -> None:
    host = (
        "nameserver 127.0.0.1\nnameserver 10.0.0.1\nnameserver fd00::1\n"
        "search corp.example\noptions ndots:2 timeout:1\n"
    )
    assert resolv_conf(host, kind="bridge").text == HEADER + (
        "nameserver 10.0.0.1\n"
        "search corp.example\n"
        "options ndots:2 timeout:1\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (legacy)\n"
        "# Overrides: []\n"
        "# Option ndots from: host\n"
    )
    assert "nameserver fd00::1\n" in resolv_conf(host, kind="bridge", ipv6=True).text


def test_dns_overrides_replace_each_part() -> None:
    plan = resolv_conf(
        "nameserver 10.0.0.1\nsearch a.example\noptions edns0\n",
        kind="bridge",
        dns=["127.0.0.1", "::1"],
        dns_search=["b.example", "."],
        dns_options=["ndots:1", "trust-ad"],
        source_path="/run/systemd/resolve/resolv.conf",
    )
    # --dns is the container's own choice: loopback servers are kept (TransformForLegacyNw).
    assert plan.text == HEADER + (
        "nameserver 127.0.0.1\n"
        "nameserver ::1\n"
        "search b.example\n"
        "options ndots:1 trust-ad\n"
        "\n"
        "# Based on host file: '/run/systemd/resolve/resolv.conf' (legacy)\n"
        "# Overrides: [nameservers search options]\n"
        "# Option ndots from: override\n"
    )
    with pytest.raises(InvalidEtcOption, match=r"^x is not an ip address$"):
        resolv_conf("", kind="bridge", dns=["x"])


def test_user_network_uses_the_embedded_dns_with_host_upstreams() -> None:
    plan = resolv_conf(
        "nameserver 127.0.0.53\nsearch corp.example\noptions edns0 trust-ad\n", kind="user"
    )
    assert plan.text == HEADER + (
        "nameserver 127.0.0.11\n"
        "search corp.example\n"
        "options edns0 trust-ad ndots:0\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (internal resolver)\n"
        "# ExtServers: [host(127.0.0.53)]\n"
        "# Overrides: []\n"
        "# Option ndots from: internal\n"
    )
    assert plan.ext_servers == (ExtServer("127.0.0.53", host_loopback=True),)


def test_user_network_keeps_a_valid_ndots_and_replaces_an_invalid_one() -> None:
    kept = resolv_conf("nameserver 10.0.0.1\noptions ndots:1\n", kind="user")
    assert kept.text == HEADER + (
        "nameserver 127.0.0.11\n"
        "options ndots:1\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (internal resolver)\n"
        "# ExtServers: [host(10.0.0.1)]\n"
        "# Overrides: []\n"
        "# Option ndots from: host\n"
    )
    fixed = resolv_conf("nameserver 10.0.0.1\noptions ndots:-1 ndots:x\n", kind="user")
    assert "options ndots:0\n" in fixed.text
    overridden = resolv_conf("nameserver 127.0.0.53\n", kind="user", dns_options=["ndots:2"])
    assert overridden.text == HEADER + (
        "nameserver 127.0.0.11\n"
        "options ndots:2\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (internal resolver)\n"
        "# ExtServers: [host(127.0.0.53)]\n"
        "# Overrides: [options]\n"
        "# Option ndots from: override\n"
    )


def test_user_network_dns_servers_are_queried_from_the_container() -> None:
    plan = resolv_conf("nameserver 10.0.0.1\n", kind="user", dns=["127.0.0.53", "1.1.1.1"])
    assert plan.ext_servers == (
        ExtServer("127.0.0.53", host_loopback=False),
        ExtServer("1.1.1.1", host_loopback=False),
    )
    assert "# ExtServers: [127.0.0.53 1.1.1.1]\n# Overrides: [nameservers]\n" in plan.text


def test_user_network_without_any_nameserver() -> None:
    assert resolv_conf("", kind="user").text == HEADER + (
        "nameserver 127.0.0.11\n"
        "options ndots:0\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf' (internal resolver)\n"
        "# NO EXTERNAL NAMESERVERS DEFINED\n"
        "# Overrides: []\n"
        "# Option ndots from: internal\n"
    )


def test_host_network_copies_the_host_file_unless_overridden() -> None:
    host = "# managed by systemd-resolved\nnameserver 127.0.0.53\noptions edns0\n"
    assert resolv_conf(host, kind="host").text == host
    overridden = resolv_conf(host, kind="host", dns_search=["x.example"])
    assert overridden.text == HEADER + (
        "nameserver 127.0.0.53\n"
        "search x.example\n"
        "options edns0\n"
        "\n"
        "# Based on host file: '/etc/resolv.conf'\n"
        "# Overrides: [search]\n"
    )


def test_none_network_and_invalid_host_nameservers() -> None:
    assert resolv_conf("nameserver 127.0.0.53\nnameserver x\nrotate\n", kind="none").text == (
        HEADER + "nameserver 127.0.0.53\nrotate\n\n"
        "# Based on host file: '/etc/resolv.conf'\n"
        "# Invalid nameservers: [x]\n"
        "# Overrides: []\n"
    )
