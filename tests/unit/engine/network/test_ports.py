"""Published ports: dockerd's parsing errors, host-port allocation and the API renderings.

Expected values are written out by hand from moby v20.10's rules (daemon/container.go
validatePortBindings, go-connections nat, libnetwork portallocator, daemon/list.go).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dockyard.engine.model.container import InvalidArgument
from dockyard.engine.network.ports import (
    DEFAULT_EPHEMERAL_RANGE,
    AllPortsAllocated,
    ContainerPort,
    InvalidPortSpec,
    PortAllocated,
    PortAllocator,
    PortMapping,
    PortRequest,
    inspect_ports,
    parse_exposed_ports,
    parse_ip_local_port_range,
    parse_port_bindings,
    port_requests,
    ps_ports,
)

pytestmark = pytest.mark.unit

TCP80 = ContainerPort(80, "tcp")
SMALL = (50000, 50002)


def req(port: int, host_port: int = 0, host_ip: str = "", proto: str = "tcp") -> PortRequest:
    return PortRequest(ContainerPort(port, proto), host_ip, host_port, host_port)


# -- parsing -----------------------------------------------------------------------------


def test_bindings_parse_into_requests_sorted_by_container_port() -> None:
    got = parse_port_bindings(
        {
            "8080/tcp": [{"HostIp": "", "HostPort": "9090"}],
            "80/tcp": [
                {"HostIp": "127.0.0.1", "HostPort": "8080"},
                {"HostIp": "", "HostPort": ""},
            ],
            "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
            "7/tcp": None,
        }
    )
    assert got == (
        PortRequest(ContainerPort(53, "udp"), "0.0.0.0", 5353, 5353),
        PortRequest(TCP80, "127.0.0.1", 8080, 8080),
        PortRequest(TCP80, "", 0, 0),
        PortRequest(ContainerPort(8080), "", 9090, 9090),
    )


def test_host_port_range_and_proto_suffix_are_accepted_as_dockerd_does() -> None:
    # `-p 8080-8081:80` arrives as HostPort "8080-8081"; nat.NewPort(SplitProtoPort(...))
    # tolerates a "/proto" suffix on HostPort.
    assert parse_port_bindings({"80": [{"HostPort": "8080-8081"}]}) == (
        PortRequest(TCP80, "", 8080, 8081),
    )
    assert parse_port_bindings({"80/tcp": [{"HostPort": "8080/tcp"}]}) == (
        PortRequest(TCP80, "", 8080, 8080),
    )


def test_host_ip_is_canonicalised() -> None:
    (got,) = parse_port_bindings({"80/tcp": [{"HostIp": "[::1]", "HostPort": "1"}]})
    assert got.host_ip == "::1"


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ({"abc/tcp": []}, 'invalid port specification: "abc"'),
        ({"": []}, 'invalid port specification: ""'),
        ({"70000/tcp": []}, 'invalid port specification: "70000"'),
        ({"0/tcp": []}, 'invalid port specification: "0"'),
        ({"-1/tcp": []}, 'invalid port specification: "-1"'),
        ({"80/foo": []}, 'invalid port specification: "80/foo"'),
        ({"80/tcp": [{"HostPort": "x"}]}, 'invalid port specification: "x"'),
        ({"80/tcp": [{"HostPort": "8081-8080"}]}, 'invalid port specification: "8081-8080"'),
        ({"80/tcp": [{"HostPort": "65536"}]}, 'invalid port specification: "65536"'),
        ({"80/tcp": [{"HostPort": " 80"}]}, 'invalid port specification: " 80"'),
        ({"80/tcp": [{"HostIp": "1.2.3", "HostPort": "80"}]}, "invalid IP address: 1.2.3"),
        ({"80/tcp": [{"HostIp": "localhost"}]}, "invalid IP address: localhost"),
    ],
)
def test_bad_bindings_get_dockerds_message(bindings: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPortSpec) as caught:
        parse_port_bindings(bindings)
    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidArgument)  # HTTP 400 at the API boundary


def test_exposed_ports_parse_sorted_and_deduplicated() -> None:
    got = parse_exposed_ports({"443/tcp": {}, "80/tcp": {}, "53/udp": {}, "80": {}})
    assert got == (ContainerPort(53, "udp"), TCP80, ContainerPort(443))
    assert parse_exposed_ports(None) == ()


def test_publish_all_adds_one_ephemeral_binding_per_unbound_exposed_port() -> None:
    got = port_requests(
        {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
        {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        publish_all=True,
    )
    assert got == (
        PortRequest(ContainerPort(53, "udp")),
        PortRequest(TCP80, "", 8080, 8080),
        PortRequest(ContainerPort(443)),
    )
    # Without -P only the explicit bindings are published.
    assert port_requests({"443/tcp": {}}, None, publish_all=False) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32768\t60999\n", (32768, 60999)),
        ("1024 65535", (1024, 65535)),
        ("", DEFAULT_EPHEMERAL_RANGE),
        ("60999 32768", DEFAULT_EPHEMERAL_RANGE),
        ("a b", DEFAULT_EPHEMERAL_RANGE),
    ],
)
def test_ip_local_port_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_ip_local_port_range(text) == expected
    assert DEFAULT_EPHEMERAL_RANGE == (49153, 60999)


# -- allocation ----------------------------------------------------------------------------


def test_explicit_port_then_conflict_on_same_address() -> None:
    alloc, (m,) = PortAllocator().allocate([req(80, 8080)], container_ip="172.17.0.2")
    assert m == PortMapping("tcp", "0.0.0.0", 8080, 80, "172.17.0.2")
    with pytest.raises(PortAllocated) as caught:
        alloc.allocate([req(81, 8080)])
    assert str(caught.value) == "Bind for 0.0.0.0:8080 failed: port is already allocated"


def test_wildcard_conflicts_with_specific_addresses_both_ways() -> None:
    specific, _ = PortAllocator().allocate([req(80, 8080, "127.0.0.1")])
    with pytest.raises(PortAllocated, match=r"^Bind for 0\.0\.0\.0:8080 failed"):
        specific.allocate([req(80, 8080)])
    wildcard, _ = PortAllocator().allocate([req(80, 8080)])
    with pytest.raises(PortAllocated) as caught:
        wildcard.allocate([req(80, 8080, "10.1.2.3")])
    assert str(caught.value) == "Bind for 10.1.2.3:8080 failed: port is already allocated"


def test_no_conflict_across_protocols_or_between_distinct_addresses() -> None:
    alloc, _ = PortAllocator().allocate([req(80, 8080, "127.0.0.1")])
    alloc, _ = alloc.allocate([req(80, 8080, "10.0.0.1")])
    alloc, _ = alloc.allocate([req(80, 8080, "127.0.0.1", proto="udp")])
    assert alloc.is_allocated("tcp", "", 8080)
    assert not alloc.is_allocated("sctp", "", 8080)


def test_ephemeral_ports_are_sequential_after_the_last_one_and_wrap() -> None:
    alloc = PortAllocator()
    got = []
    for _ in range(3):
        alloc, (m,) = alloc.allocate([req(80)], ephemeral_range=SMALL)
        got.append(m.host_port)
    assert got == [50000, 50001, 50002]
    # Free the first: the next pick wraps around to it instead of failing.
    alloc = alloc.release([PortMapping("tcp", "0.0.0.0", 50000, 80)])
    alloc, (m,) = alloc.allocate([req(80)], ephemeral_range=SMALL)
    assert m.host_port == 50000


def test_released_port_is_not_handed_out_again_at_once() -> None:
    alloc, (a,) = PortAllocator().allocate([req(80)], ephemeral_range=SMALL)
    alloc = alloc.release([a])
    alloc, (b,) = alloc.allocate([req(80)], ephemeral_range=SMALL)
    assert (a.host_port, b.host_port) == (50000, 50001)


def test_ephemeral_skips_busy_and_allocated_ports_then_runs_out() -> None:
    alloc, _ = PortAllocator().allocate([req(80, 50001, "127.0.0.1")])
    alloc, (m,) = alloc.allocate(
        [req(80)], ephemeral_range=SMALL, host_busy={("tcp", 50000), ("udp", 50002)}
    )
    assert m.host_port == 50002  # 50000 busy on the host, 50001 ours on 127.0.0.1
    with pytest.raises(AllPortsAllocated) as caught:
        alloc.allocate([req(80)], ephemeral_range=SMALL, host_busy={("tcp", 50000)})
    assert str(caught.value) == "all ports are allocated"


def test_host_port_range_picks_one_free_port_of_the_range() -> None:
    rng = PortRequest(TCP80, "", 8080, 8081)
    alloc, (a,) = PortAllocator().allocate([rng], host_busy={("tcp", 8080)})
    assert a.host_port == 8081
    alloc, (b,) = alloc.allocate([rng])
    assert b.host_port == 8080
    with pytest.raises(AllPortsAllocated):
        alloc.allocate([rng])


def test_allocation_is_all_or_nothing() -> None:
    alloc, _ = PortAllocator().allocate([req(80, 8081)])
    with pytest.raises(PortAllocated):
        alloc.allocate([req(80, 8080), req(81, 8081)])
    # The failed call left nothing behind: 8080 is still free.
    _, (m,) = alloc.allocate([req(80, 8080)])
    assert m.host_port == 8080


def test_release_ignores_unknown_mappings() -> None:
    alloc, maps = PortAllocator().allocate([req(80, 8080)])
    assert alloc.release(maps).release(maps) == PortAllocator(cursors=alloc.cursors)


def test_json_round_trip_keeps_allocations_and_cursors() -> None:
    alloc, _ = PortAllocator().allocate([req(80, 8080, "127.0.0.1"), req(81), req(82)])
    data = json.loads(json.dumps(alloc.to_json()))
    restored = PortAllocator.from_json(data)
    assert restored == alloc
    assert restored.to_json() == data
    _, (m,) = restored.allocate([req(83)])
    assert m.host_port == DEFAULT_EPHEMERAL_RANGE[0] + 2
    mapping = PortMapping("udp", "0.0.0.0", 5353, 53, "172.17.0.3")
    assert PortMapping.from_json(json.loads(json.dumps(mapping.to_json()))) == mapping


RANGE = (50000, 50003)
protos = st.sampled_from(["tcp", "udp"])
host_ips = st.sampled_from(["", "127.0.0.1", "10.0.0.1"])


def _clash(a: tuple[str, str, int], b: tuple[str, str, int]) -> bool:
    wild = "0.0.0.0"
    return a[0] == b[0] and a[2] == b[2] and (a[1] == b[1] or wild in (a[1], b[1]))


class AllocatorAgainstModel(RuleBasedStateMachine):
    """The allocator against a set of (proto, ip, port) and a cursor per (ip, proto)."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = PortAllocator()
        self.held: set[tuple[str, str, int]] = set()
        self.last: dict[tuple[str, str], int] = {}

    def _free(self, key: tuple[str, str, int]) -> bool:
        return not any(_clash(key, other) for other in self.held)

    @rule(proto=protos, ip=host_ips, port=st.integers(min_value=RANGE[0], max_value=RANGE[1]))
    def explicit(self, proto: str, ip: str, port: int) -> None:
        key = (proto, ip or "0.0.0.0", port)
        if self._free(key):
            self.alloc, (m,) = self.alloc.allocate([req(80, port, ip, proto)])
            assert (m.proto, m.host_ip, m.host_port) == key
            self.held.add(key)
        else:
            with pytest.raises(PortAllocated):
                self.alloc.allocate([req(80, port, ip, proto)])

    @rule(proto=protos, ip=host_ips, busy=st.sets(st.integers(RANGE[0], RANGE[1]), max_size=2))
    def ephemeral(self, proto: str, ip: str, busy: set[int]) -> None:
        host_ip = ip or "0.0.0.0"
        last = self.last.get((host_ip, proto), RANGE[1])
        size = RANGE[1] - RANGE[0] + 1
        order = [RANGE[0] + (last - RANGE[0] + i) % size for i in range(1, size + 1)]
        free = [p for p in order if p not in busy and self._free((proto, host_ip, p))]
        host_busy = {(proto, p) for p in busy}
        if not free:
            with pytest.raises(AllPortsAllocated):
                self.alloc.allocate(
                    [req(80, 0, ip, proto)], ephemeral_range=RANGE, host_busy=host_busy
                )
            return
        self.alloc, (m,) = self.alloc.allocate(
            [req(80, 0, ip, proto)], ephemeral_range=RANGE, host_busy=host_busy
        )
        assert m.host_port == free[0]
        self.held.add((proto, host_ip, free[0]))
        self.last[(host_ip, proto)] = free[0]

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.held:
            return
        proto, ip, port = data.draw(st.sampled_from(sorted(self.held)))
        self.alloc = self.alloc.release([PortMapping(proto, ip, port, 80)])
        self.held.discard((proto, ip, port))

    @invariant()
    def matches_the_model_and_survives_json(self) -> None:
        assert {(h.proto, h.host_ip, h.host_port) for h in self.alloc.held} == self.held
        assert PortAllocator.from_json(json.loads(json.dumps(self.alloc.to_json()))) == self.alloc
        held = sorted(self.held)
        for i, a in enumerate(held):
            assert not any(_clash(a, b) for b in held[i + 1 :])


AllocatorAgainstModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
test_allocator_against_model = AllocatorAgainstModel.TestCase


# -- rendering -----------------------------------------------------------------------------


EXPOSED = (ContainerPort(443), TCP80, ContainerPort(53, "udp"))
MAPPINGS = (
    PortMapping("tcp", "0.0.0.0", 8080, 80, "172.17.0.2"),
    PortMapping("tcp", "127.0.0.1", 8081, 80, "172.17.0.2"),
    PortMapping("udp", "0.0.0.0", 49153, 53, "172.17.0.2"),
)


def test_inspect_ports_map() -> None:
    got = inspect_ports(EXPOSED, MAPPINGS)
    assert list(got) == ["443/tcp", "53/udp", "80/tcp"]  # Go sorts map keys as strings
    assert got == {
        "443/tcp": None,
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}],
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "8080"},
            {"HostIp": "127.0.0.1", "HostPort": "8081"},
        ],
    }
    assert inspect_ports((), ()) == {}


def test_ps_ports_list() -> None:
    assert ps_ports(EXPOSED, MAPPINGS) == [
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 49153, "Type": "udp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8081, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
