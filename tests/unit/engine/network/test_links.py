"""Legacy links: parsing, dockerd's checks and messages, environment and hosts lines.

Expected environments are written out by hand from moby v20.10 daemon/links/links.go ToEnv
(order included), the hosts lines from daemon/container_operations.go buildSandboxOptions.
"""

from __future__ import annotations

import pytest

from dockyard.engine.model.container import InvalidArgument
from dockyard.engine.network.etcfiles import HostsRecord
from dockyard.engine.network.links import (
    InvalidLink,
    LinkError,
    LinkSpec,
    LinkTarget,
    applies_legacy,
    dns_aliases,
    hosts_record,
    hosts_records,
    link_env,
    not_found_message,
    parse_link,
    parse_links,
    validate_links,
    validate_start,
    validate_target_at_create,
)
from dockyard.engine.network.ports import ContainerPort

pytestmark = pytest.mark.unit

IP = "172.17.0.2"
REDIS = LinkTarget(
    name="/db",
    hostname="3f2a1b4c5d6e",
    ip=IP,
    env=("PATH=/usr/local/sbin:/usr/bin", "REDIS_VERSION=7.2", "HOME=/root", "GOSU=1.17", "X"),
    exposed=(ContainerPort(6379),),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db", LinkSpec("db", "db")),
        ("db:cache", LinkSpec("db", "cache")),
        ("/db:/web/cache", LinkSpec("db", "cache")),  # the form dockerd stores and returns
        ("3f2a1b4c5d6e:db", LinkSpec("3f2a1b4c5d6e", "db")),
    ],
)
def test_parse_link(text: str, expected: LinkSpec) -> None:
    assert parse_link(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty string specified for links"), ("a:b:c", "bad format for links: a:b:c")],
)
def test_parse_link_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidLink) as caught:
        parse_link(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidArgument)


def test_full_name_is_parent_slash_alias() -> None:
    assert LinkSpec("db", "cache").full_name("/web") == "/web/cache"
    assert LinkSpec("db", "cache").full_name("web") == "/web/cache"


def test_create_time_conflicts() -> None:
    assert validate_links("default", ["db:cache"]) == (LinkSpec("db", "cache"),)
    assert validate_links("host", []) == ()
    with pytest.raises(InvalidLink) as caught:
        validate_links("host", ["db"])
    assert str(caught.value) == (
        "conflicting options: host type networking can't be used with links. "
        "This would result in undefined behavior"
    )
    with pytest.raises(InvalidLink) as caught:
        validate_links("container:abc", ["db"])
    assert str(caught.value) == (
        "conflicting options: container type network can't be used with links. "
        "This would result in undefined behavior"
    )
    with pytest.raises(InvalidLink, match=r"^conflicting options: host type networking"):
        validate_target_at_create(
            LinkSpec("h", "h"), LinkTarget("/h", "h", "", network_mode="host")
        )
    assert not_found_message("db") == "could not get container for db: No such container: db"


def test_start_requires_a_running_target_on_the_default_bridge() -> None:
    validate_start("/web", LinkSpec("db", "cache"), REDIS)
    stopped = LinkTarget("/db", "h", IP, running=False)
    with pytest.raises(LinkError) as caught:
        validate_start("/web", LinkSpec("db", "cache"), stopped)
    assert str(caught.value) == "Cannot link to a non running container: /db AS /web/cache"
    elsewhere = LinkTarget("/db", "h", "", on_default_bridge=False)
    with pytest.raises(LinkError) as caught:
        validate_start("/web", LinkSpec("db", "db"), elsewhere)
    assert str(caught.value) == "Cannot link to /db, as it does not belong to the default network"


def test_env_for_a_single_port() -> None:
    assert link_env("/web", LinkSpec("db", "db"), REDIS) == (
        "DB_PORT=tcp://172.17.0.2:6379",
        "DB_PORT_6379_TCP=tcp://172.17.0.2:6379",
        "DB_PORT_6379_TCP_ADDR=172.17.0.2",
        "DB_PORT_6379_TCP_PORT=6379",
        "DB_PORT_6379_TCP_PROTO=tcp",
        "DB_NAME=/web/db",
        "DB_ENV_REDIS_VERSION=7.2",
        "DB_ENV_GOSU=1.17",
    )


def test_env_with_a_port_range_dash_alias_and_tcp_first() -> None:
    target = LinkTarget(
        name="/svc",
        hostname="h",
        ip=IP,
        exposed=(
            ContainerPort(8002),
            ContainerPort(53, "udp"),
            ContainerPort(8000),
            ContainerPort(53),
            ContainerPort(8001),
        ),
    )
    assert link_env("/web", LinkSpec("svc", "my-svc"), target) == (
        "MY_SVC_PORT=tcp://172.17.0.2:53",
        "MY_SVC_PORT_8000_TCP_START=tcp://172.17.0.2:8000",
        "MY_SVC_PORT_8000_TCP_ADDR=172.17.0.2",
        "MY_SVC_PORT_8000_TCP_PROTO=tcp",
        "MY_SVC_PORT_8000_TCP_PORT_START=8000",
        "MY_SVC_PORT_8000_TCP_END=tcp://172.17.0.2:8002",
        "MY_SVC_PORT_8000_TCP_PORT_END=8002",
        "MY_SVC_PORT_53_TCP=tcp://172.17.0.2:53",
        "MY_SVC_PORT_53_TCP_ADDR=172.17.0.2",
        "MY_SVC_PORT_53_TCP_PORT=53",
        "MY_SVC_PORT_53_TCP_PROTO=tcp",
        "MY_SVC_PORT_53_UDP=udp://172.17.0.2:53",
        "MY_SVC_PORT_53_UDP_ADDR=172.17.0.2",
        "MY_SVC_PORT_53_UDP_PORT=53",
        "MY_SVC_PORT_53_UDP_PROTO=udp",
        "MY_SVC_PORT_8000_TCP=tcp://172.17.0.2:8000",
        "MY_SVC_PORT_8000_TCP_ADDR=172.17.0.2",
        "MY_SVC_PORT_8000_TCP_PORT=8000",
        "MY_SVC_PORT_8000_TCP_PROTO=tcp",
        "MY_SVC_PORT_8001_TCP=tcp://172.17.0.2:8001",
        "MY_SVC_PORT_8001_TCP_ADDR=172.17.0.2",
        "MY_SVC_PORT_8001_TCP_PORT=8001",
        "MY_SVC_PORT_8001_TCP_PROTO=tcp",
        "MY_SVC_PORT_8002_TCP=tcp://172.17.0.2:8002",
        "MY_SVC_PORT_8002_TCP_ADDR=172.17.0.2",
        "MY_SVC_PORT_8002_TCP_PORT=8002",
        "MY_SVC_PORT_8002_TCP_PROTO=tcp",
        "MY_SVC_NAME=/web/my-svc",
    )


def test_two_consecutive_ports_are_no_range_in_20_10() -> None:
    target = LinkTarget("/db", "h", IP, exposed=(ContainerPort(6380), ContainerPort(6379)))
    env = link_env("/web", LinkSpec("db", "db"), target)
    assert not [e for e in env if "_START=" in e or "_END=" in e]
    assert env[0] == "DB_PORT=tcp://172.17.0.2:6379"


def test_range_detection_ignores_the_protocol_as_20_10_does() -> None:
    # nextContiguous compares numbers only: 80/tcp, 80/udp, 81/tcp form "a range".
    target = LinkTarget(
        "/db", "h", IP, exposed=(ContainerPort(81), ContainerPort(80, "udp"), ContainerPort(80))
    )
    env = link_env("/web", LinkSpec("db", "x.y"), target)
    assert env[1:7] == (
        "X.Y_PORT_80_TCP_START=tcp://172.17.0.2:80",
        "X.Y_PORT_80_TCP_ADDR=172.17.0.2",
        "X.Y_PORT_80_TCP_PROTO=tcp",
        "X.Y_PORT_80_TCP_PORT_START=80",
        "X.Y_PORT_80_TCP_END=tcp://172.17.0.2:81",
        "X.Y_PORT_80_TCP_PORT_END=81",
    )


def test_env_without_ports() -> None:
    target = LinkTarget("/db", "h", IP, env=("A=b=c", "HOSTNAME=h"))
    assert link_env("/web", LinkSpec("db", "db"), target) == (
        "DB_NAME=/web/db",
        "DB_ENV_A=b=c",
        "DB_ENV_HOSTNAME=h",  # moby skips only HOME and PATH
    )


def test_hosts_lines_name_alias_hostname_and_name_when_different() -> None:
    assert hosts_records(LinkSpec("db", "db"), REDIS) == (
        HostsRecord("172.17.0.2", "db 3f2a1b4c5d6e"),
    )
    assert hosts_record(LinkSpec("db", "cache"), REDIS) == HostsRecord(
        "172.17.0.2", "cache 3f2a1b4c5d6e db"
    )
    dual = LinkTarget("/db", "h", IP, ipv6="2001:db8::2")
    assert hosts_records(LinkSpec("db", "db"), dual) == (
        HostsRecord(IP, "db h"),
        HostsRecord("2001:db8::2", "db h"),
    )
    assert hosts_record(LinkSpec("db", "db"), LinkTarget("/db", "h", "")) is None


def test_links_on_user_networks_are_dns_aliases() -> None:
    links = parse_links(["db:cache", "/web:/x/web"])
    assert dns_aliases("mynet", links) == links
    for mode in ("default", "bridge", "host", "none", "container:abc"):
        assert dns_aliases(mode, links) == ()
    assert applies_legacy("default") and applies_legacy("bridge")
    assert not applies_legacy("mynet")
