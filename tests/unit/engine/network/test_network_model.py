"""The network model (engine/network/model.py): rules, messages, statuses and JSON.

Expected messages, statuses and JSON shapes are dockerd 20.10.24's, taken from a reference
dockerd run in a private network namespace with the docker CLI and raw API calls (the
captures are quoted in the tests); a comment names moby 25 where that is matched instead.
"""

from __future__ import annotations

import json
import random
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from dockyard.engine.model.container import EngineError, InvalidArgument, parse_time_ns
from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.network import model as nm
from dockyard.engine.network.ipam import NetworkError, Pool

pytestmark = pytest.mark.unit

A = IPv4Address
N = IPv4Network
T0 = "2026-11-29T11:11:38.471662966Z"
T1 = "2026-11-29T11:12:08.469770919Z"
S_NS = 1_000_000_000


def rng(seed: int = 1) -> random.Random:
    return random.Random(seed)


def predefined() -> list[nm.NetworkRecord]:
    pool, explicit = nm.default_bridge_pool(None, [])
    return [
        nm.default_bridge_network("b" * 64, T0, pool, gateway_in_config=explicit),
        nm.host_network("c" * 64, T0),
        nm.none_network("d" * 64, T0),
    ]


def create(
    body: dict[str, Any],
    existing: list[nm.NetworkRecord] | None = None,
    *,
    seed: int = 1,
    api_version: str = "1.41",
    created: str = T1,
) -> nm.NetworkRecord:
    records = predefined() if existing is None else existing
    request = nm.validate_create(body, records, api_version=api_version)
    return nm.create_network(request, records, rng=rng(seed), created=created)


def refused(body: dict[str, Any], existing: list[nm.NetworkRecord] | None = None) -> NetworkError:
    with pytest.raises(NetworkError) as err:
        create(body, existing, seed=99)  # an ID (and bridge name) of its own
    return err.value


# -- predefined networks -----------------------------------------------------------------------


def test_default_bridge_inspect_is_dockerds_on_a_fresh_host() -> None:
    bridge = predefined()[0]
    assert bridge.pool is not None
    assert bridge.pool.subnet == N("172.17.0.0/16")
    assert bridge.pool.gateway == A("172.17.0.1")
    assert bridge.bridge_name == "dockyard0"
    # curl /networks/bridge on dockerd 20.10 (--ip-masq=false there; dockyard masquerades).
    assert nm.inspect_json(bridge, []) == {
        "Name": "bridge",
        "Id": "b" * 64,
        "Created": T0,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": "172.17.0.0/16"}]},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            "com.docker.network.bridge.name": "dockyard0",
            "com.docker.network.driver.mtu": "1500",
        },
        "Labels": {},
    }


def test_default_bridge_pool_with_bip_existing_address_and_fixed_cidr() -> None:
    pool, explicit = nm.default_bridge_pool("192.168.5.1/24", [])
    assert (pool.subnet, pool.gateway, explicit) == (N("192.168.5.0/24"), A("192.168.5.1"), True)
    bridge = nm.default_bridge_network("b" * 64, T0, pool, gateway_in_config=explicit)
    assert nm.inspect_json(bridge, [])["IPAM"]["Config"] == [
        {"Subnet": "192.168.5.0/24", "Gateway": "192.168.5.1"}
    ]
    # dockyard0 kept its address over a restart: that subnet and gateway, shown
    pool, explicit = nm.default_bridge_pool(None, [], bridge_address="172.17.0.1/16")
    assert (pool.gateway, explicit) == (A("172.17.0.1"), True)
    # a docker0 on 172.17/16 pushes the default bridge to the next pool
    pool, explicit = nm.default_bridge_pool(None, [N("172.17.0.0/16")])
    assert (pool.subnet, pool.gateway, explicit) == (N("172.18.0.0/16"), A("172.18.0.1"), False)
    pool, _ = nm.default_bridge_pool("10.20.0.1/16", [], fixed_cidr="10.20.8.0/24")
    assert pool.ip_range == N("10.20.8.0/24")
    _, address = pool.allocate()
    assert address == A("10.20.8.0")  # libnetwork hands out the range's first ordinal
    with pytest.raises(NetworkError, match=r"^invalid CIDR address: 10\.0\.0\.1$"):
        nm.default_bridge_pool("10.0.0.1", [])


def test_host_and_none_inspect() -> None:
    _, host, none = predefined()
    # curl /networks/host on dockerd 20.10
    assert json.dumps(nm.inspect_json(host, []), separators=(",", ":")) == (
        '{"Name":"host","Id":"' + "c" * 64 + '","Created":"' + T0 + '","Scope":"local",'
        '"Driver":"host","EnableIPv6":false,"IPAM":{"Driver":"default","Options":null,'
        '"Config":[]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigFrom":'
        '{"Network":""},"ConfigOnly":false,"Containers":{},"Options":{},"Labels":{}}'
    )
    assert none.driver == "null"
    assert none.pool is None and host.pool is None


@pytest.mark.parametrize("name", ["bridge", "host", "none"])
def test_predefined_networks_cannot_be_removed(name: str) -> None:
    record = next(r for r in predefined() if r.name == name)
    with pytest.raises(NetworkError) as err:
        nm.check_removable(record, 0)
    assert (err.value.status, str(err.value)) == (
        403,
        f"{name} is a pre-defined network and cannot be removed",
    )


def test_network_with_endpoints_cannot_be_removed() -> None:
    net = create({"Name": "cli2"})
    nm.check_removable(net, 0)
    with pytest.raises(NetworkError) as err:
        nm.check_removable(net, 1)
    assert err.value.status == 403
    assert str(err.value) == (
        f"error while removing network: network cli2 id {net.id} has active endpoints"
    )


def test_predefined_names() -> None:
    for name in ("bridge", "host", "none", "default", "container:abc"):
        assert nm.is_predefined_name(name)
        assert not nm.is_user_defined_mode(name)
    assert nm.is_user_defined_mode("mynet")


# -- create ------------------------------------------------------------------------------------


def test_create_takes_the_next_default_pool_with_its_first_address_as_gateway() -> None:
    net = create({"Name": "n1", "CheckDuplicate": True})
    assert len(net.id) == 64 and int(net.id, 16) >= 0
    assert net.bridge_name == f"br-{net.id[:12]}"
    # curl /networks/n1 on dockerd 20.10, after POST {"Name":"n1","CheckDuplicate":true}
    assert nm.inspect_json(net, []) == {
        "Name": "n1",
        "Id": net.id,
        "Created": T1,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": None,
            "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}],
        },
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {},
        "Labels": {},
    }


def test_create_ids_come_from_the_rng() -> None:
    assert create({"Name": "a"}, seed=7).id == create({"Name": "a"}, seed=7).id
    assert create({"Name": "a"}, seed=7).id != create({"Name": "a"}, seed=8).id


def test_create_as_the_cli_sends_it() -> None:
    # docker network create --label a=b cli1 (the CLI sends IPAM Options {} and maps)
    body = {
        "Name": "cli1",
        "CheckDuplicate": True,
        "Driver": "bridge",
        "IPAM": {"Driver": "default", "Config": [], "Options": {}},
        "Internal": False,
        "Attachable": False,
        "Options": {},
        "Labels": {"a": "b"},
    }
    view = nm.inspect_json(create(body), [])
    assert view["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}],
    }
    assert (view["Labels"], view["Options"]) == ({"a": "b"}, {})


def test_create_with_subnet_shows_only_what_was_given() -> None:
    # --subnet 10.7.0.0/16 --ip-range 10.7.5.0/24: no Gateway in Config, gateway 10.7.5.0
    net = create(
        {"Name": "x7", "IPAM": {"Config": [{"Subnet": "10.7.0.0/16", "IPRange": "10.7.5.0/24"}]}}
    )
    assert nm.inspect_json(net, [])["IPAM"]["Config"] == [
        {"Subnet": "10.7.0.0/16", "IPRange": "10.7.5.0/24"}
    ]
    assert net.pool is not None and net.pool.gateway == A("10.7.5.0")
    # an unmasked subnet is shown as given and used masked
    net = create({"Name": "x28", "IPAM": {"Config": [{"Subnet": "10.28.0.1/16"}]}})
    assert nm.inspect_json(net, [])["IPAM"]["Config"] == [{"Subnet": "10.28.0.1/16"}]
    assert net.pool is not None and net.pool.subnet == N("10.28.0.0/16")
    # --subnet --gateway --aux-address
    body = {
        "Name": "cli2",
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [
                {
                    "Subnet": "10.50.0.0/24",
                    "Gateway": "10.50.0.254",
                    "AuxiliaryAddresses": {"x": "10.50.0.5"},
                }
            ],
        },
    }
    net = create(body)
    assert nm.inspect_json(net, [])["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [
            {
                "Subnet": "10.50.0.0/24",
                "Gateway": "10.50.0.254",
                "AuxiliaryAddresses": {"x": "10.50.0.5"},
            }
        ],
    }
    assert net.pool is not None
    assert net.pool.allocated == frozenset({A("10.50.0.254"), A("10.50.0.5")})


def test_create_skips_subnets_in_use_and_rotates() -> None:
    records = predefined()
    first = create({"Name": "a"}, records)
    records.append(first)
    request = nm.validate_create({"Name": "b"}, records)
    second = nm.create_network(
        request, records, rng=rng(2), created=T1, in_use=[N("172.19.0.0/16")]
    )
    assert second.pool is not None and second.pool.subnet == N("172.20.0.0/16")
    # dockerd remembers the last pool: removing `a` and creating again moves on
    again = nm.create_network(
        request, predefined(), rng=rng(3), created=T1, after=N("172.20.0.0/16")
    )
    assert again.pool is not None and again.pool.subnet == N("172.21.0.0/16")


def test_create_bridge_name_option() -> None:
    net = create({"Name": "named", "Options": {"com.docker.network.bridge.name": "br-mine"}})
    assert net.bridge_name == "br-mine"
    assert nm.inspect_json(net, [])["Options"] == {"com.docker.network.bridge.name": "br-mine"}
    # dockerd 20.10 accepts a user network on docker0 and then loses its default bridge
    # ("failed to create endpoint ... network ... does not exist"); refused here.
    err = refused({"Name": "x19", "Options": {"com.docker.network.bridge.name": "dockyard0"}})
    assert err.status == 403
    assert str(err).endswith(
        f"conflicts with network {'b' * 64} (dockyard0): networks have same bridge name"
    )


def test_create_flags_are_kept() -> None:
    net = create(
        {"Name": "f", "Internal": True, "Attachable": True, "Labels": {"z": "1", "a": "2"}}
    )
    view = nm.inspect_json(net, [])
    assert (view["Internal"], view["Attachable"], view["Ingress"]) == (True, True, False)
    assert list(view["Labels"]) == ["a", "z"]  # Go marshals map keys sorted


# name and duplicates ---------------------------------------------------------------------


def test_duplicate_name_with_check_duplicate_is_409() -> None:
    records = [*predefined(), create({"Name": "n1"})]
    err = refused({"Name": "n1", "CheckDuplicate": True}, records)
    assert (err.status, str(err)) == (409, "network with name n1 already exists")


def test_duplicate_name_without_check_duplicate_warns_on_old_apis() -> None:
    existing = create({"Name": "n1"})
    records = [*predefined(), existing]
    request = nm.validate_create({"Name": "n1"}, records, api_version="1.41")
    assert request.warning == f"Network with name n1 (id : {existing.id}) already exists"
    # API 1.44 deprecated CheckDuplicate: always checked
    with pytest.raises(NetworkError) as err:
        nm.validate_create({"Name": "n1"}, records, api_version="1.44")
    assert err.value.status == 409


def test_empty_name() -> None:
    # dockerd looks "" up as the default network first
    err = refused({"Name": "", "CheckDuplicate": True})
    assert (err.status, str(err)) == (409, "network with name  already exists")
    err = refused({"Name": ""})
    assert (err.status, str(err)) == (500, "invalid name: ")
    err = refused({"Name": "   "})
    assert (err.status, str(err)) == (500, "invalid name:    ")


@pytest.mark.parametrize("name", ["bridge", "host", "none", "default", "container:x"])
def test_predefined_names_cannot_be_created(name: str) -> None:
    err = refused({"Name": name})
    assert (err.status, str(err)) == (
        403,
        f"operation is not permitted on predefined {name} network ",
    )


# drivers, scopes, unsupported features ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"Driver": "foo"}, 404, 'plugin "foo" not found'),
        ({"Driver": "host"}, 403, 'only one instance of "host" network is allowed'),
        ({"Driver": "null"}, 403, 'only one instance of "null" network is allowed'),
        (
            {"Driver": "overlay"},
            500,
            'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
            "to connect this node to swarm and try again.",
        ),
        ({"Scope": "swarm"}, 403, "cannot create a swarm scoped network when swarm is not active"),
        ({"Ingress": True}, 403, "Ingress network can only be global scope network"),
        (
            {"EnableIPv6": True},
            404,
            "could not find an available, non-overlapping IPv6 address pool among the defaults "
            "to assign to the network",
        ),
        ({"IPAM": {"Driver": "foo"}}, 404, 'plugin "foo" not found'),
        ({"Driver": "macvlan"}, 501, "dockyard does not support the macvlan network driver"),
        (
            {"EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "fd00::/64"}]}},
            501,
            "dockyard does not support IPv6 networks",
        ),
        (
            {"ConfigOnly": True},
            501,
            "dockyard does not support configuration-only networks (--config-only, --config-from)",
        ),
        (
            {"ConfigFrom": {"Network": "cfg"}},
            501,
            "dockyard does not support configuration-only networks (--config-only, --config-from)",
        ),
    ],
)
def test_create_refusals(body: dict[str, Any], status: int, message: str) -> None:
    err = refused({"Name": "x", **body})
    assert (err.status, str(err)) == (status, message)


def test_body_types_are_checked_before_anything_else() -> None:
    err = refused({"Name": "bridge", "Internal": "yes"})
    assert err.status == 400


def test_other_scopes_are_refused_clearly() -> None:
    err = refused({"Name": "g", "Scope": "global"})
    assert (err.status, str(err)) == (
        501,
        "dockyard supports local-scope networks only, not 'global'",
    )
    assert create({"Name": "l", "Scope": "local"}).scope == "local"


def test_ipv6_via_driver_option_is_ipv6_too() -> None:
    err = refused({"Name": "v6", "Options": {"com.docker.network.enable_ipv6": "true"}})
    assert err.status == 404


def test_internal_is_fine() -> None:
    assert create({"Name": "i", "Internal": True}).internal


# bridge options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"com.docker.network.bridge.enable_icc": "maybe"},
            "failed to parse com.docker.network.bridge.enable_icc value: maybe "
            '(strconv.ParseBool: parsing "maybe": invalid syntax)',
        ),
        ({"com.docker.network.driver.mtu": "-5"}, "invalid MTU number: -5"),
        (
            {"com.docker.network.driver.mtu": "big"},
            "failed to parse com.docker.network.driver.mtu value: big "
            '(strconv.Atoi: parsing "big": invalid syntax)',
        ),
        (
            {"com.docker.network.bridge.host_binding_ipv4": "x"},
            "failed to parse com.docker.network.bridge.host_binding_ipv4 value: x (nil ip)",
        ),
    ],
)
def test_bridge_option_errors(options: dict[str, str], message: str) -> None:
    err = refused({"Name": "o", "Options": options})
    assert (err.status, str(err)) == (500, message)


def test_valid_bridge_options() -> None:
    options = {
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.driver.mtu": "1400",
        "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
        "com.example.any": "thing",  # unknown options are kept, as the bridge driver does
    }
    assert create({"Name": "o", "Options": options}).options == options


# IPAM ----------------------------------------------------------------------------------------


def ipam(*configs: dict[str, Any]) -> dict[str, Any]:
    return {"Name": "x", "IPAM": {"Config": list(configs)}}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (ipam({"Subnet": "foo"}), 500, "Invalid subnet foo : invalid CIDR address: foo"),
        (ipam({"Subnet": ""}), 500, "Invalid subnet  : invalid CIDR address: "),
        (
            ipam({"Subnet": "172.18.0.0/24"}),
            403,
            "Pool overlaps with other one on this address space",
        ),
        (
            ipam({"Subnet": "10.12.0.0/16"}, {"Subnet": "10.12.1.0/24"}),
            403,
            "Pool overlaps with other one on this address space",
        ),
        (
            ipam({"Subnet": "10.10.0.0/16"}, {"Subnet": "10.11.0.0/16"}),
            403,
            "bridge driver doesn't support multiple subnets",
        ),
        (
            ipam({"Subnet": "10.5.0.0/16", "Gateway": "10.9.0.1"}),
            500,
            "failed to allocate gateway (10.9.0.1): Requested address is out of range",
        ),
        (
            ipam({"Subnet": "10.6.0.0/16", "Gateway": "bad"}),
            500,
            "invalid gateway address bad in Ipam configuration",
        ),
        (
            ipam({"Subnet": "10.8.0.0/16", "IPRange": "bad"}),
            500,
            'failed to parse pool request for address space "LocalDefault" pool "10.8.0.0/16" '
            'subpool "bad": Invalid Address SubPool',
        ),
        (
            # dockerd 20.10 accepts this and allocates nonsense; moby 25's ValidateIPAM message
            ipam({"Subnet": "10.9.0.0/16", "IPRange": "10.19.0.0/24"}),
            400,
            "invalid ip-range 10.19.0.0/24: parent subnet 10.9.0.0/16 doesn't contain ip-range",
        ),
        (
            ipam({"Subnet": "10.22.0.0/16", "AuxiliaryAddresses": {"a": "bad"}}),
            500,
            "non parsable secondary ip address (a:bad) passed for network x",
        ),
        (
            ipam({"Subnet": "10.23.0.0/16", "AuxiliaryAddresses": {"a": "10.99.0.1"}}),
            403,
            "auxiliary address: (a:10.99.0.1) must belong to the master pool: 10.23.0.0/16",
        ),
        (
            ipam({"Subnet": "10.24.0.0/16", "AuxiliaryAddresses": {"a": "10.24.0.0"}}),
            500,
            "failed to allocate secondary ip address (a:10.24.0.0): Address already in use",
        ),
    ],
)
def test_ipam_errors(body: dict[str, Any], status: int, message: str) -> None:
    records = [*predefined(), create({"Name": "n1"})]  # holds 172.18.0.0/16
    err = refused(body, records)
    assert (err.status, str(err)) == (status, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"Name": "x", "Internal": "yes"},
            "json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal "
            "of type bool",
        ),
        (
            {"Name": 7},
            "json: cannot unmarshal number into Go struct field NetworkCreateRequest.Name of "
            "type string",
        ),
        (
            {"Name": "x", "Labels": {"a": 1}},
            "json: cannot unmarshal number into Go struct field NetworkCreateRequest.Labels of "
            "type string",
        ),
        (
            {"Name": "x", "IPAM": {"Config": {}}},
            "json: cannot unmarshal object into Go struct field IPAM.Config of type "
            "[]network.IPAMConfig",
        ),
    ],
)
def test_body_shape_errors_are_gos(body: dict[str, Any], message: str) -> None:
    err = refused(body)
    assert (err.status, str(err)) == (400, message)


# -- persistence -------------------------------------------------------------------------------


def test_records_round_trip_through_json() -> None:
    net = create(
        {
            "Name": "p",
            "Labels": {"k": "v"},
            "IPAM": {
                "Options": {"o": "1"},
                "Config": [
                    {
                        "Subnet": "10.60.0.0/16",
                        "IPRange": "10.60.1.0/24",
                        "Gateway": "10.60.0.1",
                        "AuxiliaryAddresses": {"h": "10.60.0.9"},
                    }
                ],
            },
        }
    )
    net, ep = nm.new_endpoint(
        net,
        nm.EndpointRequest(ipv4_address="10.60.5.5", aliases=("web",), links=("db:db",)),
        container_id="e" * 64,
        container_name="/web",
        hostname="eeeeeeeeeeee",
        rng=rng(),
    )
    for record in [*predefined(), net]:
        assert nm.NetworkRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert nm.EndpointRecord.from_json(json.loads(json.dumps(ep.to_json()))) == ep
    request = nm.EndpointRequest(ipv4_address="1.2.3.4", driver_opts={"a": "b"}, mac_address="x")
    assert nm.EndpointRequest.from_json(json.loads(json.dumps(request.to_json()))) == request


def test_record_invariant_pool_exactly_for_bridge() -> None:
    with pytest.raises(ValueError, match="a pool exactly for bridge networks"):
        nm.NetworkRecord(id="a" * 64, name="x", driver="bridge", created=T0)
    with pytest.raises(ValueError, match="a pool exactly for bridge networks"):
        nm.NetworkRecord(
            id="a" * 64, name="x", driver="host", created=T0, pool=Pool.create(N("10.0.0.0/24"))
        )


# -- resolution --------------------------------------------------------------------------------


def two_named_n1() -> list[nm.NetworkRecord]:
    a = nm.NetworkRecord(
        id="ab" + "1" * 62,
        name="n1",
        driver="bridge",
        created=T0,
        pool=Pool.create(N("10.1.0.0/24")),
    )
    b = nm.NetworkRecord(
        id="ac" + "2" * 62,
        name="n1",
        driver="bridge",
        created=T0,
        pool=Pool.create(N("10.2.0.0/24")),
    )
    return [*predefined(), a, b]


def test_resolve_by_id_name_and_prefix() -> None:
    records = two_named_n1()
    assert nm.resolve_network(records, "ab" + "1" * 62).name == "n1"
    assert nm.resolve_network(records, "bridge").name == "bridge"
    assert nm.resolve_network(records, "ac").id.startswith("ac")
    assert nm.resolve_network(records, "c").name == "host"


@pytest.mark.parametrize(
    ("style", "term", "message"),
    [
        ("inspect", "n1", "2 matches found based on name: network n1 is ambiguous"),
        ("unique", "n1", "network n1 is ambiguous (2 matches found based on name)"),
        ("daemon", "n1", "network n1 is ambiguous (2 matches found on name)"),
        ("inspect", "a", "2 matches found based on ID prefix: network a is ambiguous"),
        ("unique", "a", "network a is ambiguous (2 matches found based on ID prefix)"),
        ("daemon", "a", "network a is ambiguous (2 matches found based on ID prefix)"),
    ],
)
def test_resolve_ambiguity_wording_per_caller(
    style: nm.ResolveStyle, term: str, message: str
) -> None:
    with pytest.raises(NetworkError) as err:
        nm.resolve_network(two_named_n1(), term, style=style)
    assert (err.value.status, str(err.value)) == (400, message)


def test_resolve_not_found() -> None:
    with pytest.raises(NetworkError) as err:
        nm.resolve_network(predefined(), "nope")
    assert (err.value.status, str(err.value)) == (404, "network nope not found")
    with pytest.raises(NetworkError):
        nm.resolve_network(predefined(), "")


# -- ls and prune filters ----------------------------------------------------------------------


def fleet() -> tuple[list[nm.NetworkRecord], dict[str, int]]:
    records = predefined()
    web = create({"Name": "web", "Labels": {"tier": "front", "env": "prod"}}, records, seed=2)
    records.append(web)
    db = create({"Name": "db", "Labels": {"tier": "back"}}, records, seed=3, created=T0)
    records.append(db)
    counts = {web.id: 2, records[0].id: 1}
    return records, counts


def names(records: list[nm.NetworkRecord]) -> list[str]:
    return [r.name for r in records]


def ls(text: str) -> list[str]:
    records, counts = fleet()
    return names(nm.select_networks(records, FilterArgs.parse(text), container_counts=counts))


def test_ls_filters() -> None:
    assert ls("") == ["bridge", "host", "none", "web", "db"]
    assert ls('{"driver":{"bridge":true}}') == ["bridge", "web", "db"]
    assert ls('{"driver":{"brid":true}}') == []  # driver is exact
    assert ls('{"name":{"e":true}}') == ["bridge", "none", "web"]  # name is a substring
    assert ls('{"name":["^d"]}') == ["db"]  # ...or a regular expression
    assert ls('{"label":["tier"]}') == ["web", "db"]
    assert ls('{"label":["tier=front"]}') == ["web"]
    assert ls('{"label":["tier=front","env=prod"]}') == ["web"]
    assert ls('{"label":["tier=front","env=dev"]}') == []
    assert ls('{"scope":["local"]}') == ["bridge", "host", "none", "web", "db"]
    assert ls('{"scope":["swarm"]}') == []
    assert ls('{"type":["custom"]}') == ["web", "db"]
    assert ls('{"type":["builtin"]}') == ["bridge", "host", "none"]
    assert ls('{"dangling":["true"]}') == ["db"]
    assert ls('{"dangling":["1"]}') == ["db"]
    assert ls('{"dangling":["false"]}') == ["bridge", "host", "none", "web"]
    records, _ = fleet()
    web_id = next(r.id for r in records if r.name == "web")
    assert ls(json.dumps({"id": [web_id[:5]]})) == ["web"]


@pytest.mark.parametrize(
    ("text", "error", "status", "message"),
    [
        ('{"foo":["x"]}', InvalidArgument, None, "Invalid filter 'foo'"),
        ('{"type":["x"]}', NetworkError, 500, "invalid filter: 'type'='x'"),
        (
            '{"dangling":["x"]}',
            NetworkError,
            400,
            'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")',
        ),
        (
            '{"dangling":["true","false"]}',
            NetworkError,
            400,
            'got more than one value for filter key "dangling"',
        ),
    ],
)
def test_ls_filter_errors(
    text: str, error: type[EngineError], status: int | None, message: str
) -> None:
    records, counts = fleet()
    with pytest.raises(error) as err:
        nm.select_networks(records, FilterArgs.parse(text), container_counts=counts)
    assert str(err.value) == message
    if status is not None:
        assert isinstance(err.value, NetworkError) and err.value.status == status


def prune(text: str, now: str = "2026-11-29T12:00:00Z") -> list[str]:
    records, counts = fleet()
    return names(
        nm.select_prunable(
            records, FilterArgs.parse(text), container_counts=counts, now_ns=parse_time_ns(now)
        )
    )


def test_prune_selects_unused_user_networks() -> None:
    assert prune("") == ["db"]  # web has containers; predefined never go
    assert prune('{"label":["tier=back"]}') == ["db"]
    assert prune('{"label":["tier=front"]}') == []
    assert prune('{"label!":["tier=back"]}') == []
    assert prune('{"label!":["tier"]}') == []
    assert prune('{"label!":["tier=back","nothere"]}') == ["db"]  # 20.10: all must match
    # created T0 11:11:38, web T1 11:12:08
    assert prune('{"until":["2026-11-29T11:12:00Z"]}') == ["db"]
    assert prune('{"until":["2026-11-29T11:11:00Z"]}') == []
    assert prune('{"until":["30m"]}', now="2026-11-29T11:50:00Z") == ["db"]
    assert prune('{"until":["50m"]}', now="2026-11-29T11:50:00Z") == []


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        ('{"until":["x","y"]}', 500, "more than one until filter specified"),
        ('{"until":["x"]}', 500, 'failed to parse value as time or duration: "x"'),
    ],
)
def test_prune_filter_errors(text: str, status: int, message: str) -> None:
    with pytest.raises(EngineError) as err:
        prune(text)
    assert str(err.value) == message
    assert not isinstance(err.value, NetworkError) or err.value.status == status


def test_prune_unknown_filter() -> None:
    with pytest.raises(InvalidArgument, match=r"^Invalid filter 'foo'$"):
        prune('{"foo":["x"]}')


def test_list_json_has_empty_containers() -> None:
    records, _ = fleet()
    web = records[3]
    _, ep = nm.new_endpoint(
        web,
        nm.EndpointRequest(),
        container_id="e" * 64,
        container_name="/c",
        hostname="",
        rng=rng(),
    )
    listed = nm.list_json(records)
    assert [n["Name"] for n in listed] == ["bridge", "host", "none", "web", "db"]
    assert all(n["Containers"] == {} for n in listed)
    assert nm.inspect_json(web, [ep])["Containers"] != {}


# -- container create checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "host_config", "message"),
    [
        (
            {},
            {"NetworkMode": "container:"},
            "Invalid network mode: invalid container format container:<name|id>",
        ),
        (
            {"Hostname": "x"},
            {"NetworkMode": "container:b1"},
            "conflicting options: hostname and the network mode",
        ),
        (
            {},
            {"NetworkMode": "container:b1", "Links": ["a:a"]},
            nm.ERR_CONFLICT_CONTAINER_NETWORK_AND_LINKS,
        ),
        (
            {},
            {"NetworkMode": "container:b1", "Dns": ["1.1.1.1"]},
            "conflicting options: dns and the network mode",
        ),
        (
            {},
            {"NetworkMode": "container:b1", "ExtraHosts": ["a:1.2.3.4"]},
            nm.ERR_CONFLICT_NETWORK_HOSTS,
        ),
        (
            {"MacAddress": "02:11:22:33:44:55"},
            {"NetworkMode": "host"},
            "conflicting options: mac-address and the network mode",
        ),
        (
            {"MacAddress": "02:11:22:33:44:55"},
            {"NetworkMode": "container:b1"},
            "conflicting options: mac-address and the network mode",
        ),
        (
            {},
            {"NetworkMode": "container:b1", "PublishAllPorts": True},
            nm.ERR_CONFLICT_NETWORK_PUBLISH,
        ),
        (
            {"ExposedPorts": {"80/tcp": {}}},
            {"NetworkMode": "container:b1"},
            nm.ERR_CONFLICT_NETWORK_EXPOSE,
        ),
        ({"Hostname": "x"}, {"UTSMode": "host"}, "conflicting options: hostname and the UTS mode"),
        (
            {},
            {"NetworkMode": "host", "Links": ["b1:b1"]},
            "conflicting options: host type networking can't be used with links. This would "
            "result in undefined behavior",
        ),
    ],
)
def test_net_mode_conflicts(
    config: dict[str, Any], host_config: dict[str, Any], message: str
) -> None:
    with pytest.raises(NetworkError) as err:
        nm.validate_net_mode(config, host_config)
    assert (err.value.status, str(err.value)) == (400, message)


def test_net_mode_fine() -> None:
    nm.validate_net_mode(
        {"MacAddress": "02:11:22:33:44:55"}, {"NetworkMode": "mynet", "Links": ["a:a"]}
    )
    nm.validate_net_mode({"Hostname": "h"}, {"NetworkMode": "bridge"})
    nm.validate_net_mode({}, {})


def test_networking_config_decoding() -> None:
    assert nm.validate_networking_config(None) == {}
    assert nm.validate_networking_config({"EndpointsConfig": None}) == {}
    got = nm.validate_networking_config(
        {
            "EndpointsConfig": {
                "cli2": {
                    "IPAMConfig": {"IPv4Address": "10.50.0.5"},
                    "Aliases": ["a"],
                    "Links": ["db:db"],
                    "DriverOpts": {"k": "v"},
                }
            }
        }
    )
    assert got == {
        "cli2": nm.EndpointRequest(
            ipv4_address="10.50.0.5", aliases=("a",), links=("db:db",), driver_opts={"k": "v"}
        )
    }
    # API 1.44+ creates a container on several networks at once
    two = {"EndpointsConfig": {"a": {}, "b": {}}}
    assert set(nm.validate_networking_config(two, api_version="1.44")) == {"a", "b"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"EndpointsConfig": {"cli2": {}, "cli1": {}}},
            "Container cannot be connected to network endpoints: cli1, cli2",
        ),
        ({"EndpointsConfig": {"cli2": None}}, "no EndpointSettings for cli2"),
        (
            {"EndpointsConfig": {"cli2": {"IPAMConfig": {"IPv4Address": "nope"}}}},
            "invalid IPv4 address: nope",
        ),
        (
            {"EndpointsConfig": {"cli2": {"IPAMConfig": {"IPv6Address": "1.2.3.4"}}}},
            "invalid IPv6 address: 1.2.3.4",
        ),
        ({"EndpointsConfig": {"cli2": {"MacAddress": "zz"}}}, "invalid MAC address zz"),
        (
            {"EndpointsConfig": {"cli2": {"Aliases": "a"}}},
            "json: cannot unmarshal string into Go struct field EndpointSettings.Aliases of "
            "type []string",
        ),
    ],
)
def test_networking_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError) as err:
        nm.validate_networking_config(config, api_version="1.41")
    assert (err.value.status, str(err.value)) == (400, message)


# -- endpoints ---------------------------------------------------------------------------------


def attach(
    network: nm.NetworkRecord,
    request: nm.EndpointRequest | None = None,
    *,
    cid: str = "e4f48b680e68317303bc15debb907711dca14893d5ea19bccf752c19e6b0e80d",
    name: str = "/c2",
    hostname: str = "e4f48b680e68",
) -> tuple[nm.NetworkRecord, nm.EndpointRecord]:
    return nm.new_endpoint(
        network,
        request or nm.EndpointRequest(),
        container_id=cid,
        container_name=name,
        hostname=hostname,
        rng=rng(5),
    )


def test_endpoint_on_a_user_network_with_ip_range() -> None:
    # docker run --network x7 --network-alias foo (x7: 10.7.0.0/16, range 10.7.5.0/24)
    net = create(
        {"Name": "x7", "IPAM": {"Config": [{"Subnet": "10.7.0.0/16", "IPRange": "10.7.5.0/24"}]}}
    )
    net, ep = attach(net, nm.EndpointRequest(aliases=("foo",)))
    assert (ep.ipv4, ep.prefix_len, ep.gateway) == (A("10.7.5.1"), 16, "10.7.5.0")
    assert ep.mac == "02:42:0a:07:05:01"
    assert ep.aliases == ("foo", "e4f48b680e68")
    assert ep.container_name == "c2"
    assert len(ep.endpoint_id) == 64
    assert ep.host_veth.startswith("veth") and len(ep.host_veth) == 11
    assert net.pool is not None and A("10.7.5.1") in net.pool.allocated
    # network inspect, as dockerd answered for it
    assert nm.inspect_json(net, [ep])["Containers"] == {
        "e4f48b680e68317303bc15debb907711dca14893d5ea19bccf752c19e6b0e80d": {
            "Name": "c2",
            "EndpointID": ep.endpoint_id,
            "MacAddress": "02:42:0a:07:05:01",
            "IPv4Address": "10.7.5.1/16",
            "IPv6Address": "",
        }
    }
    # endpoints of other networks are not listed
    other = nm.EndpointRecord(
        container_id="f" * 64, container_name="o", endpoint_id="1" * 64, network_id="x"
    )
    assert len(nm.inspect_json(net, [ep, other])["Containers"]) == 1


def test_endpoint_static_address_and_mac() -> None:
    net = create(
        {"Name": "cli2", "IPAM": {"Config": [{"Subnet": "10.50.0.0/24", "Gateway": "10.50.0.254"}]}}
    )
    net, ep = attach(
        net, nm.EndpointRequest(ipv4_address="10.50.0.7", mac_address="02-11-22-33-44-AA")
    )
    assert (ep.ipv4, ep.mac, ep.gateway) == (A("10.50.0.7"), "02:11:22:33:44:aa", "10.50.0.254")
    assert ep.ipam_config == nm.EndpointRequest(
        ipv4_address="10.50.0.7", mac_address="02-11-22-33-44-AA"
    )
    # the next dynamic address is the lowest free one
    net, ep2 = attach(net, cid="a" * 64, name="/b")
    assert ep2.ipv4 == A("10.50.0.1")


@pytest.mark.parametrize(
    ("address", "status", "message"),
    [
        ("10.50.0.7", 403, "Address already in use"),
        ("10.50.0.0", 403, "Address already in use"),
        (
            "10.51.0.5",
            500,
            "Invalid address 10.51.0.5: It does not belong to any of this network's subnets",
        ),
    ],
)
def test_endpoint_address_errors(address: str, status: int, message: str) -> None:
    net = create({"Name": "cli2", "IPAM": {"Config": [{"Subnet": "10.50.0.0/24"}]}})
    net, _ = attach(net, nm.EndpointRequest(ipv4_address="10.50.0.7"))
    with pytest.raises(NetworkError) as err:
        attach(net, nm.EndpointRequest(ipv4_address=address), cid="a" * 64, name="/b")
    assert (err.value.status, str(err.value)) == (status, message)


def test_endpoint_exhaustion_names_the_network() -> None:
    net = create({"Name": "tiny", "IPAM": {"Config": [{"Subnet": "10.70.0.0/30"}]}})
    net, _ = attach(net)
    with pytest.raises(NetworkError) as err:
        attach(net, cid="a" * 64, name="/b")
    assert (err.value.status, str(err.value)) == (
        500,
        f"no available IPv4 addresses on this network's address pools: tiny ({net.id})",
    )


def test_static_address_and_alias_rules() -> None:
    bridge, host, _ = predefined()
    auto = create({"Name": "auto"})
    cases = [
        (bridge, nm.EndpointRequest(ipv4_address="172.17.0.9"), nm.ERR_UNSUPPORTED_NETWORK_AND_IP),
        (bridge, nm.EndpointRequest(aliases=("q",)), nm.ERR_UNSUPPORTED_NETWORK_AND_ALIAS),
        (host, nm.EndpointRequest(aliases=("q",)), nm.ERR_UNSUPPORTED_NETWORK_AND_ALIAS),
        (
            auto,
            nm.EndpointRequest(ipv4_address="172.18.0.9"),
            nm.ERR_UNSUPPORTED_NETWORK_NO_SUBNET_AND_IP,
        ),
    ]
    for network, request, message in cases:
        with pytest.raises(NetworkError) as err:
            nm.check_endpoint_request(network, request)
        assert (err.value.status, str(err.value)) == (400, message)
    nm.check_endpoint_request(auto, nm.EndpointRequest(aliases=("q",), links=("db:db",)))


def test_aliases_as_dockerd_20_10() -> None:
    bridge = predefined()[0]
    net = create({"Name": "u"})
    cid = "521b2c40cccf" + "0" * 52
    kwargs: dict[str, Any] = {"container_id": cid}
    assert nm.endpoint_aliases(net, None, hostname="521b2c40cccf", **kwargs) == ("521b2c40cccf",)
    assert nm.endpoint_aliases(net, ["foo"], hostname="521b2c40cccf", **kwargs) == (
        "foo",
        "521b2c40cccf",
    )
    assert nm.endpoint_aliases(net, ["foo"], hostname="hh", **kwargs) == (
        "foo",
        "521b2c40cccf",
        "hh",
    )
    assert nm.endpoint_aliases(net, ["521b2c40cccf"], hostname="hh", **kwargs) == (
        "521b2c40cccf",
        "hh",
    )
    assert nm.endpoint_aliases(bridge, None, hostname="hh", **kwargs) is None


def test_endpoints_on_host_none_and_internal_networks() -> None:
    _, host, none = predefined()
    same, ep = attach(host, name="/h1")
    assert same == host
    assert (ep.ipv4, ep.mac, ep.gateway, ep.ipv4_cidr, ep.host_veth) == (None, "", "", "", "")
    _, ep = attach(none)
    assert ep.ipv4 is None
    internal = create({"Name": "in", "Internal": True})
    _, ep = attach(internal)
    # dockerd 20.10 shows the gateway on internal networks too
    assert (ep.ipv4, ep.gateway) == (A("172.18.0.2"), "172.18.0.1")


def test_release_endpoint_returns_the_address() -> None:
    net = create({"Name": "r"})
    net, ep = attach(net)
    net = nm.release_endpoint(net, ep)
    _, again = attach(net, cid="a" * 64, name="/b")
    assert again.ipv4 == ep.ipv4
    host = predefined()[1]
    _, host_ep = attach(host)
    assert nm.release_endpoint(host, host_ep) == host


# -- connect / disconnect ----------------------------------------------------------------------


def test_connect_rules() -> None:
    bridge, host, none = predefined()
    cli1 = create({"Name": "cli1"})
    cases: list[tuple[nm.NetworkRecord, str, list[nm.NetworkRecord], int, str]] = [
        (cli1, "container:b1", [], 400, nm.ERR_CONFLICT_SHARED_NETWORK),
        (host, "cli1", [cli1], 400, nm.ERR_CONFLICT_HOST_NETWORK),
        (none, "cli1", [cli1], 400, nm.ERR_CONFLICT_NO_NETWORK),
        (cli1, "none", [none], 400, nm.ERR_CONFLICT_NO_NETWORK),
        (cli1, "host", [host], 400, nm.ERR_CONFLICT_SHARED_NETWORK),
    ]
    for network, mode, connected, status, message in cases:
        with pytest.raises(NetworkError) as err:
            nm.check_connect(network, network_mode=mode, connected=connected, container_name="/r1")
        assert (err.value.status, str(err.value)) == (status, message)
    # running and already on it: libnetwork refuses the second endpoint
    with pytest.raises(NetworkError) as err:
        nm.check_connect(
            cli1, network_mode="cli1", connected=[cli1], container_name="/r1", endpoint_names=["r1"]
        )
    assert (err.value.status, str(err.value)) == (
        403,
        "endpoint with name r1 already exists in network cli1",
    )
    # stopped and already on it: a quiet no-op
    nm.check_connect(cli1, network_mode="cli1", connected=[cli1], container_name="/r1")
    nm.check_connect(cli1, network_mode="default", connected=[bridge], container_name="/r1")


def test_disconnect_rules() -> None:
    _, host, _ = predefined()
    cli1 = create({"Name": "cli1"})
    cid = "3c7c4cc73b37" + "0" * 52
    with pytest.raises(NetworkError) as err:
        nm.check_disconnect(
            host, network_mode="host", container_id=cid, connected_names=["host"], running=True
        )
    assert (err.value.status, str(err.value)) == (400, nm.ERR_CONFLICT_HOST_NETWORK)
    with pytest.raises(NetworkError) as err:
        nm.check_disconnect(
            cli1, network_mode="default", container_id=cid, connected_names=["bridge"], running=True
        )
    assert (err.value.status, str(err.value)) == (
        500,
        f"container {cid} is not connected to network cli1",
    )
    with pytest.raises(NetworkError) as err:
        nm.check_disconnect(
            cli1, network_mode="default", container_id=cid, connected_names=[], running=False
        )
    assert str(err.value) == f"container {cid} is not connected to the network cli1"
    nm.check_disconnect(
        cli1, network_mode="cli1", container_id=cid, connected_names=["cli1"], running=True
    )
    nm.check_disconnect(
        host, network_mode="host", container_id=cid, connected_names=["host"], running=False
    )


# -- container NetworkSettings -----------------------------------------------------------------

EMPTY_ENDPOINT = {
    "IPAMConfig": None,
    "Links": None,
    "Aliases": None,
    "NetworkID": "",
    "EndpointID": "",
    "Gateway": "",
    "IPAddress": "",
    "IPPrefixLen": 0,
    "IPv6Gateway": "",
    "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0,
    "MacAddress": "",
    "DriverOpts": None,
}


def settings_json(**values: Any) -> str:
    base: dict[str, Any] = {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": {},
        "SandboxKey": "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": {},
    }
    base.update(values)
    return json.dumps(base)


def test_settings_of_a_created_container() -> None:
    # docker create busybox: one empty "bridge" entry
    got = nm.container_network_settings([nm.Attachment("bridge")])
    assert json.dumps(got) == settings_json(Networks={"bridge": EMPTY_ENDPOINT})


def test_settings_of_a_running_container_on_the_default_bridge() -> None:
    bridge = predefined()[0]
    cid = "9dd23f024ae9" + "7" * 52
    _, ep = attach(bridge, cid=cid, name="/b1", hostname=cid[:12])
    assert (ep.ipv4, ep.mac, ep.aliases) == (A("172.17.0.2"), "02:42:ac:11:00:02", None)
    live = {
        **EMPTY_ENDPOINT,
        "NetworkID": bridge.id,
        "EndpointID": ep.endpoint_id,
        "Gateway": "172.17.0.1",
        "IPAddress": "172.17.0.2",
        "IPPrefixLen": 16,
        "MacAddress": "02:42:ac:11:00:02",
    }
    got = nm.container_network_settings(
        [nm.Attachment("bridge", endpoint=ep)],
        ports={"80/tcp": None},
        sandbox_id="9dd23f02" * 8,
        sandbox_key="/run/dockyard/netns/9dd23f024ae9",
    )
    assert json.dumps(got) == settings_json(
        SandboxID="9dd23f02" * 8,
        Ports={"80/tcp": None},
        SandboxKey="/run/dockyard/netns/9dd23f024ae9",
        EndpointID=ep.endpoint_id,
        Gateway="172.17.0.1",
        IPAddress="172.17.0.2",
        IPPrefixLen=16,
        MacAddress="02:42:ac:11:00:02",
        Networks={"bridge": live},
    )
    # docker ps shows the same operational fields
    assert nm.summary_networks([nm.Attachment("bridge", endpoint=ep)]) == {
        "Networks": {"bridge": live}
    }
    # stopped: dockerd keeps NetworkID (and the sandbox fields), clears the rest
    stopped = nm.container_network_settings(
        [nm.Attachment("bridge", network_id=bridge.id)], sandbox_id="s", sandbox_key="k"
    )
    assert stopped["Networks"]["bridge"] == {**EMPTY_ENDPOINT, "NetworkID": bridge.id}
    assert (stopped["IPAddress"], stopped["SandboxID"]) == ("", "s")


def test_settings_on_a_user_network_leave_legacy_fields_empty() -> None:
    net = create(
        {"Name": "x7", "IPAM": {"Config": [{"Subnet": "10.7.0.0/16", "IPRange": "10.7.5.0/24"}]}}
    )
    request = nm.EndpointRequest(aliases=("foo",), links=("db:db",), driver_opts={"k": "v"})
    _, ep = attach(net, request)
    got = nm.container_network_settings([nm.Attachment("x7", request, ep)])
    assert got["IPAddress"] == "" and got["EndpointID"] == "" and got["MacAddress"] == ""
    assert got["Networks"]["x7"] == {
        "IPAMConfig": None,
        "Links": ["db:db"],
        "Aliases": ["foo", "e4f48b680e68"],
        "NetworkID": net.id,
        "EndpointID": ep.endpoint_id,
        "Gateway": "10.7.5.0",
        "IPAddress": "10.7.5.1",
        "IPPrefixLen": 16,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "02:42:0a:07:05:01",
        "DriverOpts": {"k": "v"},
    }
    summary = nm.summary_networks([nm.Attachment("x7", request, ep)])["Networks"]["x7"]
    assert (summary["Links"], summary["Aliases"], summary["DriverOpts"]) == (None, None, None)


def test_settings_show_the_requested_ip_before_start() -> None:
    # e1: created with --ip 10.50.0.5 whose start failed; aliases as dockerd stored them
    request = nm.EndpointRequest(ipv4_address="10.50.0.5", aliases=("65b7cb606ec5",))
    got = nm.container_network_settings([nm.Attachment("cli2", request)])
    assert got["Networks"]["cli2"] == {
        **EMPTY_ENDPOINT,
        "IPAMConfig": {"IPv4Address": "10.50.0.5"},
        "Aliases": ["65b7cb606ec5"],
    }
    assert nm.summary_networks([nm.Attachment("cli2", request)])["Networks"]["cli2"][
        "IPAMConfig"
    ] == {"IPv4Address": "10.50.0.5"}


def test_maps_are_sorted_as_go_marshals_them() -> None:
    net = create({"Name": "s"})
    net, late = attach(net, cid="f" * 64, name="/f")
    net, early = attach(net, cid="a" * 64, name="/a")
    assert list(nm.inspect_json(net, [late, early])["Containers"]) == ["a" * 64, "f" * 64]
    attachments = [nm.Attachment("zeta"), nm.Attachment("alpha")]
    assert list(nm.container_network_settings(attachments)["Networks"]) == ["alpha", "zeta"]
    assert list(nm.summary_networks(attachments)["Networks"]) == ["alpha", "zeta"]


def test_settings_on_the_host_network() -> None:
    host = predefined()[1]
    _, ep = attach(host, name="/h1")
    got = nm.container_network_settings(
        [nm.Attachment("host", endpoint=ep)], sandbox_key="/var/run/docker/netns/default"
    )
    assert got["Networks"]["host"] == {
        **EMPTY_ENDPOINT,
        "NetworkID": host.id,
        "EndpointID": ep.endpoint_id,
    }
    assert got["Gateway"] == "" and got["SandboxKey"] == "/var/run/docker/netns/default"
