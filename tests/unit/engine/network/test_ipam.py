"""IPv4 address management (engine/network/ipam.py) against libnetwork 20.10's rules.

Expected values follow moby 20.10 (libnetwork ipam/allocator.go, bitseq, ipamutils,
netutils.GenerateMACFromIP); a comment names newer moby where that is matched instead.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.engine.model.container import EngineError
from dockyard.engine.network.ipam import (
    DEFAULT_POOLS,
    AddressInUse,
    AddressOutOfRange,
    NetworkError,
    NoAvailableAddresses,
    Pool,
    PoolOverlap,
    check_no_overlap,
    choose_subnet,
    mac_for,
    parse_cidr,
    parse_ipv4,
)

pytestmark = pytest.mark.unit

A = IPv4Address
N = IPv4Network


# -- default pools and subnet choice -----------------------------------------------------------


def test_default_pools_are_dockers_local_scope_defaults() -> None:
    assert len(DEFAULT_POOLS) == 31
    assert DEFAULT_POOLS[:15] == tuple(N(f"172.{i}.0.0/16") for i in range(17, 32))
    assert DEFAULT_POOLS[15] == N("192.168.0.0/20")
    assert DEFAULT_POOLS[16] == N("192.168.16.0/20")
    assert DEFAULT_POOLS[-1] == N("192.168.240.0/20")


def test_choose_subnet_takes_the_first_free_pool() -> None:
    assert choose_subnet([]) == N("172.17.0.0/16")


def test_choose_subnet_skips_docker0_routes_and_other_networks() -> None:
    in_use = [
        N("172.17.0.0/16"),  # an existing docker0
        N("172.18.5.0/24"),  # a host route inside the next pool
        N("172.19.0.1/32"),  # a host address
        N("172.16.0.0/12"),  # ...and a route covering every 172 pool
    ]
    assert choose_subnet(in_use) == N("192.168.0.0/20")


def test_choose_subnet_rotates_after_the_last_choice_as_libnetwork_does() -> None:
    # libnetwork predefinedStartIndices: a re-created network gets the next pool.
    assert choose_subnet([], after=N("172.18.0.0/16")) == N("172.19.0.0/16")
    # ...and wraps at the end.
    assert choose_subnet([], after=DEFAULT_POOLS[-1]) == N("172.17.0.0/16")
    # a subnet not among the pools starts from the beginning
    assert choose_subnet([], after=N("10.0.0.0/8")) == N("172.17.0.0/16")


def test_choose_subnet_from_custom_pools_and_exhaustion() -> None:
    pools = [N("10.10.0.0/24"), N("10.10.1.0/24")]
    assert choose_subnet([N("10.10.0.0/24")], pools) == N("10.10.1.0/24")
    with pytest.raises(NetworkError) as err:
        choose_subnet([N("10.0.0.0/8")], pools)
    assert err.value.status == 404
    assert str(err.value) == (
        "could not find an available, non-overlapping IPv4 address pool among the defaults "
        "to assign to the network"
    )


def test_overlap_check_for_explicit_subnets() -> None:
    check_no_overlap(N("10.1.0.0/16"), [N("10.2.0.0/16")])
    for other in (N("10.1.0.0/16"), N("10.1.2.0/24"), N("10.0.0.0/8")):
        with pytest.raises(PoolOverlap) as err:
            check_no_overlap(N("10.1.0.0/16"), [other])
        assert err.value.status == 403
        assert str(err.value) == "Pool overlaps with other one on this address space"


def test_network_error_is_an_engine_error_with_status() -> None:
    error = NetworkError(409, "network with name x already exists")
    assert isinstance(error, EngineError)
    assert (error.status, error.message, str(error)) == (
        409,
        "network with name x already exists",
        "network with name x already exists",
    )


# -- parsing -----------------------------------------------------------------------------------


def test_parse_cidr_masks_like_go() -> None:
    assert parse_cidr("10.0.0.1/16") == N("10.0.0.0/16")
    assert parse_cidr("192.168.5.0/24") == N("192.168.5.0/24")


@pytest.mark.parametrize("text", ["", "10.0.0.0", "10.0.0.0/33", "foo", "10.0.0/8", "10.0.0.0/x"])
def test_parse_cidr_errors_are_gos(text: str) -> None:
    with pytest.raises(ValueError, match=f"^invalid CIDR address: {text}$"):
        parse_cidr(text)


def test_parse_ipv4() -> None:
    assert parse_ipv4("10.0.0.1") == A("10.0.0.1")
    assert parse_ipv4("10.0.0.256") is None
    assert parse_ipv4("fe80::1") is None
    assert parse_ipv4("") is None


# -- MACs --------------------------------------------------------------------------------------


def test_mac_from_address_as_docker_20_10() -> None:
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for(A("10.255.0.1")) == "02:42:0a:ff:00:01"


# -- pools -------------------------------------------------------------------------------------


def test_pool_create_reserves_the_first_address_as_gateway() -> None:
    pool = Pool.create(N("172.18.0.0/16"))
    assert pool.gateway == A("172.18.0.1")
    assert pool.allocated == frozenset({A("172.18.0.1")})
    assert pool.prefix_len == 16


def test_pool_create_with_explicit_gateway() -> None:
    pool = Pool.create(N("10.5.0.0/16"), gateway="10.5.200.1")
    assert pool.gateway == A("10.5.200.1")
    pool, first = pool.allocate()
    assert first == A("10.5.0.1")  # the lowest free address, the gateway is elsewhere


def test_pool_gateway_with_ip_range_is_the_first_address_of_the_range() -> None:
    # libnetwork requests the gateway from the sub-pool: SetAnyInRange.
    pool = Pool.create(N("10.1.0.0/16"), ip_range=N("10.1.5.0/24"))
    assert pool.gateway == A("10.1.5.0")
    pool, first = pool.allocate()
    assert first == A("10.1.5.1")
    # a range starting at the subnet start skips the network address
    pool = Pool.create(N("10.2.0.0/16"), ip_range=N("10.2.0.0/24"))
    assert pool.gateway == A("10.2.0.1")


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("10.9.0.1", "failed to allocate gateway (10.9.0.1): Requested address is out of range"),
        ("10.5.0.0", "failed to allocate gateway (10.5.0.0): Address already in use"),
        ("10.5.255.255", "failed to allocate gateway (10.5.255.255): Address already in use"),
    ],
)
def test_pool_gateway_errors_are_dockerds(gateway: str, message: str) -> None:
    with pytest.raises(NetworkError) as err:
        Pool.create(N("10.5.0.0/16"), gateway=gateway)
    assert (err.value.status, str(err.value)) == (500, message)


def test_pool_ip_range_outside_subnet_is_refused() -> None:
    with pytest.raises(NetworkError) as err:
        Pool.create(N("10.5.0.0/16"), ip_range=N("10.6.0.0/24"))
    assert err.value.status == 400
    assert str(err.value) == (
        "invalid ip-range 10.6.0.0/24: parent subnet 10.5.0.0/16 doesn't contain ip-range"
    )


def test_allocation_takes_the_lowest_free_address_and_reuses_released_ones() -> None:
    # dockerd 20.10 allocates non-serially for local networks: the lowest free bit.
    pool = Pool.create(N("172.18.0.0/16"))
    pool, a = pool.allocate()
    pool, b = pool.allocate()
    assert (a, b) == (A("172.18.0.2"), A("172.18.0.3"))
    pool = pool.release(a)
    pool, c = pool.allocate()
    assert c == A("172.18.0.2")


def test_serial_allocation_continues_after_the_last_and_wraps() -> None:
    # bitseq with serial=true (swarm's com.docker.network.ipam.serial).
    pool = Pool.create(N("10.0.0.0/29"), serial=True)  # .1 gateway, .2-.6 usable
    pool, a = pool.allocate()
    pool, b = pool.allocate()
    pool = pool.release(a)
    pool, c = pool.allocate()
    assert (a, b, c) == (A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4"))
    pool, _ = pool.allocate()  # .5
    pool, _ = pool.allocate()  # .6
    pool, wrapped = pool.allocate()
    assert wrapped == A("10.0.0.2")


def test_preferred_address_anywhere_in_the_subnet_even_outside_the_range() -> None:
    pool = Pool.create(N("10.1.0.0/16"), ip_range=N("10.1.5.0/24"))
    pool, address = pool.allocate("10.1.9.9")
    assert address == A("10.1.9.9")
    assert address in pool.allocated


def test_preferred_address_errors() -> None:
    pool = Pool.create(N("10.1.0.0/24"))
    pool, _ = pool.allocate("10.1.0.10")
    with pytest.raises(AddressInUse) as in_use:
        pool.allocate("10.1.0.10")
    assert (in_use.value.status, str(in_use.value)) == (403, "Address already in use")
    for taken in ("10.1.0.1", "10.1.0.0", "10.1.0.255"):  # gateway, network, broadcast
        with pytest.raises(AddressInUse):
            pool.allocate(taken)
    with pytest.raises(AddressOutOfRange) as out:
        pool.allocate("10.2.0.1")
    assert (out.value.status, str(out.value)) == (500, "Requested address is out of range")
    with pytest.raises(NetworkError, match=r"^invalid IPv4 address: nope$"):
        pool.allocate("nope")


def test_exhaustion_in_subnet_and_in_range() -> None:
    pool = Pool.create(N("10.0.0.0/30"))  # .1 gateway, .2 the only other host
    pool, last = pool.allocate()
    assert last == A("10.0.0.2")
    with pytest.raises(NoAvailableAddresses) as err:
        pool.allocate()
    assert (err.value.status, str(err.value)) == (500, "No available addresses on this pool")

    ranged = Pool.create(N("10.1.0.0/16"), ip_range=N("10.1.7.0/30"))  # .0 gw .1 .2 .3
    for expected in ("10.1.7.1", "10.1.7.2", "10.1.7.3"):
        ranged, got = ranged.allocate()
        assert got == A(expected)
    with pytest.raises(NoAvailableAddresses):
        ranged.allocate()


def test_release_rules() -> None:
    pool = Pool.create(N("10.3.0.0/24"))
    assert pool.release("10.3.0.77") == pool  # a free address: nothing to do
    assert pool.release("10.3.0.1") == pool  # the gateway stays with the network
    with pytest.raises(AddressOutOfRange):
        pool.release("10.4.0.1")


def test_pool_invariants_are_checked() -> None:
    with pytest.raises(ValueError, match="invariant"):
        Pool(subnet=N("10.0.0.0/24"), allocated=frozenset({A("10.0.0.0")}))
    with pytest.raises(ValueError, match="invariant"):
        Pool(subnet=N("10.0.0.0/24"), gateway=A("10.0.0.1"))  # gateway not allocated
    with pytest.raises(ValueError, match="invariant"):
        Pool(subnet=N("10.0.0.0/24"), ip_range=N("10.0.1.0/28"))


def test_pool_json_round_trip_keeps_allocations() -> None:
    pool = Pool.create(N("10.7.0.0/16"), ip_range=N("10.7.1.0/24"), serial=True)
    pool, _ = pool.allocate()
    pool, _ = pool.allocate("10.7.9.9")
    text = json.dumps(pool.to_json())
    restored = Pool.from_json(json.loads(text))
    assert restored == pool
    # after a restart, allocation continues where it left off
    assert restored.allocate() == pool.allocate()
    assert json.loads(text)["allocated"] == ["10.7.1.0", "10.7.1.1", "10.7.9.9"]


@given(st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=15)), max_size=60))
def test_allocations_never_collide_and_stay_usable(ops: list[int | None]) -> None:
    """Model check against a set: allocate (None) or release the n-th held address."""
    pool = Pool.create(N("10.9.0.0/28"))
    held: list[IPv4Address] = []
    for op in ops:
        if op is None or not held:
            try:
                pool, address = pool.allocate()
            except NoAvailableAddresses:
                assert len(held) == 16 - 3  # network, broadcast, gateway
                continue
            assert address not in held
            assert address not in (A("10.9.0.0"), A("10.9.0.15"), pool.gateway)
            held.append(address)
        else:
            address = held.pop(op % len(held))
            pool = pool.release(address)
        assert pool.allocated == frozenset({*held, A("10.9.0.1")})
