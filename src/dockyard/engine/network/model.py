"""The network model: networks and endpoints as values, and Docker's rules and JSON for them.

Role: everything about Docker networks that needs no kernel, as moby 20.10 defines it
(daemon/network.go, daemon/container_operations.go, daemon/create.go, daemon/prune.go,
daemon/network/filter.go, api/server/router/network, runconfig, libnetwork's controller,
network, endpoint and bridge driver configuration):

- values: `NetworkRecord` (a network and its address `Pool`), `EndpointRecord` (a container's
  attachment to one network), `EndpointRequest` (what a client asked for in
  `NetworkingConfig.EndpointsConfig` or `network connect`), `CreateRequest`;
- validation with dockerd's messages and statuses: `validate_create`, `create_network`,
  `check_removable`, `validate_net_mode`, `validate_networking_config`,
  `check_endpoint_request`, `check_connect`, `check_disconnect`, `resolve_network`;
- the predefined networks `bridge` (on the Linux bridge `dockyard0`), `host` and `none`;
- Docker's JSON: `inspect_json` (GET /networks/{id}), `list_json` (GET /networks),
  `container_network_settings` (a container's inspect NetworkSettings),
  `summary_networks` (the `NetworkSettings.Networks` of `docker ps`);
- filters: `select_networks` (network ls) and `select_prunable` (network prune);
- persistence: `to_json`/`from_json` on the records (wire names stay at the API boundary).

Invariants: a record's `pool` is None exactly for the `host` and `null` drivers; every
endpoint's IPv4 address is allocated in its network's pool; JSON field order and empties are
dockerd 20.10's (Go struct order; nil maps are `null`, made maps `{}`).

Pure: no I/O, no clock, no randomness of its own. IDs come from an `rng` argument
(`random.Random`-like), times as RFC 3339 strings or nanoseconds, host routes and container
facts as arguments. Errors are `NetworkError(status, message)` (ipam.py), except an unknown
filter key: the engine's `InvalidArgument` (400), as `FilterArgs.validate` raises it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Literal

from dockyard.engine.api.versions import ApiVersion
from dockyard.engine.model.container import EngineError, RandomSource, new_id, parse_time_ns
from dockyard.engine.model.filters import FilterArgs, parse_timestamp
from dockyard.engine.network.ipam import (
    AddressInUse,
    NetworkError,
    NoAvailableAddresses,
    Pool,
    check_no_overlap,
    choose_subnet,
    mac_for,
    parse_cidr,
    parse_ipv4,
)

# -- names and constants -----------------------------------------------------------------------

DEFAULT_BRIDGE_NAME = "dockyard0"  # dockerd's docker0
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
DEFAULT_MTU = 1500
PREDEFINED_NAMES = ("bridge", "host", "none")
LOCAL_SCOPE = "local"
DEFAULT_IPAM_DRIVER = "default"
_ADDRESS_SPACE = "LocalDefault"  # libnetwork ipam localAddressSpace, quoted in its errors

# libnetwork drivers/bridge labels and netlabel keys the bridge driver parses (fromLabels).
_BOOL_OPTIONS = frozenset(
    {
        "com.docker.network.enable_ipv6",
        "com.docker.network.bridge.enable_ip_masquerade",
        "com.docker.network.bridge.enable_icc",
        "com.docker.network.bridge.inhibit_ipv4",
        "com.docker.network.bridge.default_bridge",
    }
)
_IP_OPTIONS = frozenset(
    {"com.docker.network.bridge.host_binding_ipv4", "com.docker.network.host_ipv4"}
)
_MTU_OPTION = "com.docker.network.driver.mtu"

# moby daemon/network/filter.go acceptedFilters and daemon/prune.go networksAcceptedFilters.
LS_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"label", "label!", "until"})

# runconfig/errors.go (validationError: InvalidParameter, 400).
ERR_CONFLICT_HOST_NETWORK = (
    "container cannot be disconnected from host network or connected to host network"
)
ERR_CONFLICT_SHARED_NETWORK = (
    "container sharing network namespace with another container or host cannot be connected "
    "to any other network"
)
ERR_CONFLICT_NO_NETWORK = (
    "container cannot be connected to multiple networks with one of the networks in private "
    "(none) mode"
)
ERR_UNSUPPORTED_NETWORK_AND_IP = (
    "user specified IP address is supported on user defined networks only"
)
ERR_UNSUPPORTED_NETWORK_NO_SUBNET_AND_IP = (
    "user specified IP address is supported only when connecting to networks with user "
    "configured subnets"
)
ERR_UNSUPPORTED_NETWORK_AND_ALIAS = (
    "network-scoped alias is supported only for containers in user defined networks"
)
_UNDEFINED = "This would result in undefined behavior"
ERR_CONFLICT_CONTAINER_NETWORK_AND_LINKS = (
    f"conflicting options: container type network can't be used with links. {_UNDEFINED}"
)
ERR_CONFLICT_HOST_NETWORK_AND_LINKS = (
    f"conflicting options: host type networking can't be used with links. {_UNDEFINED}"
)
ERR_CONFLICT_NETWORK_AND_MAC = "conflicting options: mac-address and the network mode"
ERR_CONFLICT_NETWORK_HOSTNAME = "conflicting options: hostname and the network mode"
ERR_CONFLICT_NETWORK_AND_DNS = "conflicting options: dns and the network mode"
ERR_CONFLICT_NETWORK_HOSTS = "conflicting options: custom host-to-IP mapping and the network mode"
ERR_CONFLICT_NETWORK_PUBLISH = (
    "conflicting options: port publishing and the container type network mode"
)
ERR_CONFLICT_NETWORK_EXPOSE = (
    "conflicting options: port exposing and the container type network mode"
)

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$")


def is_predefined_name(name: str) -> bool:
    """runconfig.IsPreDefinedNetwork: names no user network may take or lose."""
    return name in ("bridge", "host", "none", "default") or name.startswith("container:")


def is_user_defined_mode(name: str) -> bool:
    """container.NetworkMode(name).IsUserDefined(): anything but default/bridge/host/none/
    container:<x>. Aliases and static addresses need it."""
    return not is_predefined_name(name)


# -- values ------------------------------------------------------------------------------------


def _opt_map(value: Mapping[str, str] | None) -> dict[str, str] | None:
    # Go marshals map keys sorted; keeping that order makes the JSON byte-for-byte dockerd's.
    return None if value is None else dict(sorted(value.items()))


@dataclass(frozen=True)
class IpamConfigEntry:
    """One `IPAM.Config` entry as the client gave it (network.IPAMConfig)."""

    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: Mapping[str, str] | None = None

    def to_wire(self) -> dict[str, Any]:
        # Every field is `json:",omitempty"` (AuxAddress as "AuxiliaryAddresses").
        out: dict[str, Any] = {}
        if self.subnet:
            out["Subnet"] = self.subnet
        if self.ip_range:
            out["IPRange"] = self.ip_range
        if self.gateway:
            out["Gateway"] = self.gateway
        if self.aux_addresses:
            out["AuxiliaryAddresses"] = dict(self.aux_addresses)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "subnet": self.subnet,
            "ip_range": self.ip_range,
            "gateway": self.gateway,
            "aux_addresses": _opt_map(self.aux_addresses),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IpamConfigEntry:
        aux = obj.get("aux_addresses")
        return cls(
            subnet=str(obj.get("subnet", "")),
            ip_range=str(obj.get("ip_range", "")),
            gateway=str(obj.get("gateway", "")),
            aux_addresses=None if aux is None else {str(k): str(v) for k, v in aux.items()},
        )


@dataclass(frozen=True)
class NetworkRecord:
    """A network as the engine persists it.

    `labels`, `options` and `ipam_options` keep the difference between absent (None, shown as
    `null`) and empty (`{}`), as dockerd does. `ipam_config` is what the client asked for;
    inspect falls back to the pool when it is empty, as buildIpamResources does.
    """

    id: str
    name: str
    driver: str
    created: str  # RFC 3339 with nanoseconds, as Go marshals time.Time
    scope: str = LOCAL_SCOPE
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    labels: Mapping[str, str] | None = None
    options: Mapping[str, str] | None = None
    ipam_driver: str = DEFAULT_IPAM_DRIVER
    ipam_options: Mapping[str, str] | None = None
    ipam_config: tuple[IpamConfigEntry, ...] = ()
    bridge_name: str = ""
    pool: Pool | None = None

    def __post_init__(self) -> None:
        if (self.pool is None) != (self.driver in ("host", "null")):
            raise ValueError(f"network {self.name}: a pool exactly for bridge networks")

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def predefined(self) -> bool:
        return is_predefined_name(self.name)

    @property
    def is_default_bridge(self) -> bool:
        return self.name == "bridge"

    @property
    def has_user_subnet(self) -> bool:
        """An IPv4 subnet the user chose (a static `--ip` needs one)."""
        return any(entry.subnet for entry in self.ipam_config)

    def with_pool(self, pool: Pool) -> NetworkRecord:
        return replace(self, pool=pool)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "driver": self.driver,
            "created": self.created,
            "scope": self.scope,
            "internal": self.internal,
            "attachable": self.attachable,
            "ingress": self.ingress,
            "enable_ipv6": self.enable_ipv6,
            "labels": _opt_map(self.labels),
            "options": _opt_map(self.options),
            "ipam_driver": self.ipam_driver,
            "ipam_options": _opt_map(self.ipam_options),
            "ipam_config": [entry.to_json() for entry in self.ipam_config],
            "bridge_name": self.bridge_name,
            "pool": None if self.pool is None else self.pool.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> NetworkRecord:
        def opt(key: str) -> dict[str, str] | None:
            value = obj.get(key)
            return None if value is None else {str(k): str(v) for k, v in value.items()}

        pool = obj.get("pool")
        return cls(
            id=str(obj["id"]),
            name=str(obj["name"]),
            driver=str(obj["driver"]),
            created=str(obj["created"]),
            scope=str(obj.get("scope", LOCAL_SCOPE)),
            internal=bool(obj.get("internal", False)),
            attachable=bool(obj.get("attachable", False)),
            ingress=bool(obj.get("ingress", False)),
            enable_ipv6=bool(obj.get("enable_ipv6", False)),
            labels=opt("labels"),
            options=opt("options"),
            ipam_driver=str(obj.get("ipam_driver", DEFAULT_IPAM_DRIVER)),
            ipam_options=opt("ipam_options"),
            ipam_config=tuple(IpamConfigEntry.from_json(e) for e in obj.get("ipam_config") or ()),
            bridge_name=str(obj.get("bridge_name", "")),
            pool=None if pool is None else Pool.from_json(pool),
        )


@dataclass(frozen=True)
class EndpointRequest:
    """A client's endpoint settings for one network (network.EndpointSettings, configuration
    part): `--ip`, `--network-alias`, `--link` on user networks, `--mac-address`, driver opts.
    """

    ipv4_address: str = ""
    ipv6_address: str = ""
    aliases: tuple[str, ...] | None = None
    links: tuple[str, ...] | None = None
    mac_address: str = ""
    driver_opts: Mapping[str, str] | None = None
    network_id: str = ""  # EndpointSettings.NetworkID as sent (swarm attachments); kept

    @property
    def has_static_address(self) -> bool:
        return bool(self.ipv4_address or self.ipv6_address)

    def ipam_config_wire(self) -> dict[str, Any] | None:
        """`IPAMConfig` as inspect shows it: null unless an address was asked for."""
        if not self.has_static_address:
            return None
        out: dict[str, Any] = {}
        if self.ipv4_address:
            out["IPv4Address"] = self.ipv4_address
        if self.ipv6_address:
            out["IPv6Address"] = self.ipv6_address
        return out

    @classmethod
    def from_wire(cls, name: str, obj: Any) -> EndpointRequest:
        """Decode one `EndpointsConfig` value; shape errors as Go's decoder words them."""
        if obj is None:
            # moby daemon/create.go verifyNetworkingConfig.
            raise NetworkError(400, f"no EndpointSettings for {name}")
        if not isinstance(obj, Mapping):
            raise _unmarshal(obj, "NetworkingConfig.EndpointsConfig", "network.EndpointSettings")
        ipam = obj.get("IPAMConfig")
        if ipam is not None and not isinstance(ipam, Mapping):
            raise _unmarshal(ipam, "EndpointSettings.IPAMConfig", "network.EndpointIPAMConfig")
        ipam = ipam or {}
        return cls(
            ipv4_address=_wire_str(ipam, "IPv4Address", "EndpointIPAMConfig"),
            ipv6_address=_wire_str(ipam, "IPv6Address", "EndpointIPAMConfig"),
            aliases=_wire_str_list(obj, "Aliases", "EndpointSettings"),
            links=_wire_str_list(obj, "Links", "EndpointSettings"),
            mac_address=_wire_str(obj, "MacAddress", "EndpointSettings"),
            driver_opts=_wire_str_map(obj, "DriverOpts", "EndpointSettings"),
            network_id=_wire_str(obj, "NetworkID", "EndpointSettings"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ipv4_address": self.ipv4_address,
            "ipv6_address": self.ipv6_address,
            "aliases": None if self.aliases is None else list(self.aliases),
            "links": None if self.links is None else list(self.links),
            "mac_address": self.mac_address,
            "driver_opts": _opt_map(self.driver_opts),
            "network_id": self.network_id,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EndpointRequest:
        aliases = obj.get("aliases")
        links = obj.get("links")
        opts = obj.get("driver_opts")
        return cls(
            ipv4_address=str(obj.get("ipv4_address", "")),
            ipv6_address=str(obj.get("ipv6_address", "")),
            aliases=None if aliases is None else tuple(str(a) for a in aliases),
            links=None if links is None else tuple(str(a) for a in links),
            mac_address=str(obj.get("mac_address", "")),
            driver_opts=None if opts is None else {str(k): str(v) for k, v in opts.items()},
            network_id=str(obj.get("network_id", "")),
        )


@dataclass(frozen=True)
class EndpointRecord:
    """A container's attachment to one network (libnetwork endpoint + its interface).

    `ipv4` is None on the host and null drivers, `gateway` "" there; on bridge networks,
    internal ones included, `gateway` is the network's as dockerd 20.10 reports it. `aliases`
    are the effective ones, short ID included on user networks (see `endpoint_aliases`).
    """

    container_id: str
    container_name: str  # without the leading "/", as the endpoint is named
    endpoint_id: str
    network_id: str
    mac: str = ""
    ipv4: IPv4Address | None = None
    prefix_len: int = 0
    gateway: str = ""
    aliases: tuple[str, ...] | None = None
    links: tuple[str, ...] | None = None
    ipam_config: EndpointRequest | None = None  # the request's static address, if any
    driver_opts: Mapping[str, str] | None = None
    host_veth: str = ""

    @property
    def ipv4_cidr(self) -> str:
        """`172.18.0.2/16` as network inspect shows it; "" without an address."""
        return "" if self.ipv4 is None else f"{self.ipv4}/{self.prefix_len}"

    def to_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "container_name": self.container_name,
            "endpoint_id": self.endpoint_id,
            "network_id": self.network_id,
            "mac": self.mac,
            "ipv4": None if self.ipv4 is None else str(self.ipv4),
            "prefix_len": self.prefix_len,
            "gateway": self.gateway,
            "aliases": None if self.aliases is None else list(self.aliases),
            "links": None if self.links is None else list(self.links),
            "ipam_config": None if self.ipam_config is None else self.ipam_config.to_json(),
            "driver_opts": _opt_map(self.driver_opts),
            "host_veth": self.host_veth,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EndpointRecord:
        ipv4 = obj.get("ipv4")
        aliases = obj.get("aliases")
        links = obj.get("links")
        ipam = obj.get("ipam_config")
        opts = obj.get("driver_opts")
        return cls(
            container_id=str(obj["container_id"]),
            container_name=str(obj["container_name"]),
            endpoint_id=str(obj["endpoint_id"]),
            network_id=str(obj["network_id"]),
            mac=str(obj.get("mac", "")),
            ipv4=None if ipv4 is None else IPv4Address(str(ipv4)),
            prefix_len=int(obj.get("prefix_len", 0)),
            gateway=str(obj.get("gateway", "")),
            aliases=None if aliases is None else tuple(str(a) for a in aliases),
            links=None if links is None else tuple(str(a) for a in links),
            ipam_config=None if ipam is None else EndpointRequest.from_json(ipam),
            driver_opts=None if opts is None else {str(k): str(v) for k, v in opts.items()},
            host_veth=str(obj.get("host_veth", "")),
        )


@dataclass(frozen=True)
class CreateRequest:
    """A validated `POST /networks/create` body (types.NetworkCreateRequest)."""

    name: str
    driver: str = "bridge"
    scope: str = LOCAL_SCOPE
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: Mapping[str, str] | None = None
    options: Mapping[str, str] | None = None
    ipam_driver: str = DEFAULT_IPAM_DRIVER
    ipam_options: Mapping[str, str] | None = None
    ipam_config: tuple[IpamConfigEntry, ...] = ()
    # The response's `Warning` (a duplicate name accepted with CheckDuplicate false).
    warning: str = ""


def _version_less(version: str, than: str) -> bool:
    """`versions.LessThan` for the request's API version (an unparsable one counts as old)."""
    try:
        return ApiVersion.parse(version) < ApiVersion.parse(than)
    except ValueError:
        return True


# -- Go-decoder shape checks -------------------------------------------------------------------

_JSON_KIND = {bool: "bool", int: "number", float: "number", str: "string", list: "array"}


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    return _JSON_KIND.get(type(value), "value")


def _unmarshal(value: Any, path: str, go_type: str) -> NetworkError:
    # encoding/json UnmarshalTypeError as the API router returns it (400).
    return NetworkError(
        400,
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {path} of type {go_type}",
    )


def _wire_str(obj: Mapping[str, Any], key: str, struct: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _unmarshal(value, f"{struct}.{key}", "string")
    return value


def _wire_bool(obj: Mapping[str, Any], key: str, struct: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _unmarshal(value, f"{struct}.{key}", "bool")
    return value


def _wire_str_map(obj: Mapping[str, Any], key: str, struct: str) -> dict[str, str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _unmarshal(value, f"{struct}.{key}", "map[string]string")
    for item in value.values():
        if not isinstance(item, str):
            raise _unmarshal(item, f"{struct}.{key}", "string")
    return {str(k): v for k, v in value.items()}


def _wire_str_list(obj: Mapping[str, Any], key: str, struct: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _unmarshal(value, f"{struct}.{key}", "[]string")
    for item in value:
        if not isinstance(item, str):
            raise _unmarshal(item, f"{struct}.{key}", "string")
    return tuple(value)


# -- creating networks -------------------------------------------------------------------------


def _find_by_name(records: Sequence[NetworkRecord], name: str) -> NetworkRecord | None:
    # libnetwork NetworkByName; dockerd's GetNetworkByName turns "" into the default network.
    wanted = name or "bridge"
    return next((r for r in records if r.name == wanted), None)


def validate_create(
    body: Mapping[str, Any],
    existing: Sequence[NetworkRecord],
    *,
    api_version: str = "1.41",
) -> CreateRequest:
    """Check a create body as dockerd 20.10 does, in its order: predefined name (403),
    duplicate name (409 when CheckDuplicate, which API 1.44+ always implies; else a warning),
    subnets, name, unsupported features, driver and its options, IPAM configuration and
    overlaps with `existing` networks. Address allocation is `create_network`'s.
    """
    if not isinstance(body, Mapping):
        raise NetworkError(
            400, "json: cannot unmarshal into Go value of type types.NetworkCreateRequest"
        )
    # Go's decoder checks every field's type before dockerd looks at any of them.
    struct = "NetworkCreateRequest"
    name = _wire_str(body, "Name", struct)
    driver = _wire_str(body, "Driver", struct) or "bridge"
    scope = _wire_str(body, "Scope", struct)
    internal = _wire_bool(body, "Internal", struct)
    attachable = _wire_bool(body, "Attachable", struct)
    ingress = _wire_bool(body, "Ingress", struct)
    config_only = _wire_bool(body, "ConfigOnly", struct)
    wants_ipv6 = _wire_bool(body, "EnableIPv6", struct)
    labels = _wire_str_map(body, "Labels", struct)
    options = _wire_str_map(body, "Options", struct)
    ipam_driver, ipam_options, entries = _decode_ipam(body.get("IPAM"))
    if is_predefined_name(name):
        # daemon/network.go PredefinedNetworkError (Forbidden); the trailing space is moby's.
        raise NetworkError(403, f"operation is not permitted on predefined {name} network ")
    check_duplicate = _wire_bool(body, "CheckDuplicate", struct) or not _version_less(
        api_version, "1.44"
    )
    warning = ""
    duplicate = _find_by_name(existing, name)
    if duplicate is not None:
        if check_duplicate:
            # libnetwork NetworkNameError, answered as a Conflict by the router.
            raise NetworkError(409, f"network with name {name} already exists")
        warning = f"Network with name {duplicate.name} (id : {duplicate.id}) already exists"

    v4_subnets: list[IPv4Network] = []
    for entry in entries:
        try:
            if ":" in entry.subnet.partition("/")[0]:
                # IPv6 subnets are refused below, after the name checks dockerd makes first.
                continue
            v4_subnets.append(parse_cidr(entry.subnet))
        except ValueError as e:
            raise NetworkError(500, f"Invalid subnet {entry.subnet} : {e}") from None

    if not name.strip():
        raise NetworkError(500, f"invalid name: {name}")  # libnetwork ErrInvalidName
    if config_only or body.get("ConfigFrom"):
        raise NetworkError(
            501,
            "dockyard does not support configuration-only networks (--config-only, --config-from)",
        )
    if ingress:
        # libnetwork: an ingress network needs a global-scope driver (Forbidden).
        raise NetworkError(403, "Ingress network can only be global scope network")

    _check_driver(driver, scope)
    _check_bridge_options(options or {})

    enable_ipv6 = wants_ipv6 or _truthy((options or {}).get("com.docker.network.enable_ipv6"))
    has_v6_subnet = any(":" in e.subnet.partition("/")[0] for e in entries)
    if enable_ipv6 and not has_v6_subnet:
        # libnetwork getPredefinedPool for v6: there are no default IPv6 pools (NotFound).
        raise NetworkError(
            404,
            "could not find an available, non-overlapping IPv6 address pool among the "
            "defaults to assign to the network",
        )
    if has_v6_subnet:
        raise NetworkError(501, "dockyard does not support IPv6 networks")
    if ipam_driver not in (DEFAULT_IPAM_DRIVER, "null"):
        raise NetworkError(404, f'plugin "{ipam_driver}" not found')
    if ipam_driver == "null":
        raise NetworkError(501, 'dockyard does not support the "null" IPAM driver')

    # One pool per entry: libnetwork RequestPool refuses overlaps among them and with every
    # other network's pool (ErrPoolOverlap, 403); the bridge driver then wants one subnet.
    others = [r.pool.subnet for r in existing if r.pool is not None]
    for index, (entry, subnet) in enumerate(zip(entries, v4_subnets, strict=True)):
        _check_entry(entry, subnet, name, [*others, *v4_subnets[:index]])
    if len(v4_subnets) > 1:
        raise NetworkError(403, "bridge driver doesn't support multiple subnets")
    return CreateRequest(
        name=name,
        driver=driver,
        scope=LOCAL_SCOPE,
        internal=internal,
        attachable=attachable,
        enable_ipv6=False,
        labels=labels,
        options=options,
        ipam_driver=ipam_driver,
        ipam_options=ipam_options,
        ipam_config=entries,
        warning=warning,
    )


def _truthy(value: str | None) -> bool:
    return value is not None and _parse_go_bool(value) is True


def _parse_go_bool(value: str) -> bool | None:
    # strconv.ParseBool
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _decode_ipam(raw: Any) -> tuple[str, dict[str, str] | None, tuple[IpamConfigEntry, ...]]:
    if raw is None:
        return DEFAULT_IPAM_DRIVER, None, ()
    if not isinstance(raw, Mapping):
        raise _unmarshal(raw, "NetworkCreateRequest.IPAM", "network.IPAM")
    driver = _wire_str(raw, "Driver", "IPAM") or DEFAULT_IPAM_DRIVER
    options = _wire_str_map(raw, "Options", "IPAM")
    configs = raw.get("Config")
    if configs is None:
        configs = []
    if not isinstance(configs, list):
        raise _unmarshal(configs, "IPAM.Config", "[]network.IPAMConfig")
    entries: list[IpamConfigEntry] = []
    for item in configs:
        if not isinstance(item, Mapping):
            raise _unmarshal(item, "IPAM.Config", "network.IPAMConfig")
        entries.append(
            IpamConfigEntry(
                subnet=_wire_str(item, "Subnet", "IPAMConfig"),
                ip_range=_wire_str(item, "IPRange", "IPAMConfig"),
                gateway=_wire_str(item, "Gateway", "IPAMConfig"),
                aux_addresses=_wire_str_map(item, "AuxiliaryAddresses", "IPAMConfig"),
            )
        )
    return driver, options, tuple(entries)


def _check_driver(driver: str, scope: str) -> None:
    if driver in ("host", "null"):
        # libnetwork drivers/host|null CreateNetwork (Forbidden).
        raise NetworkError(403, f'only one instance of "{driver}" network is allowed')
    if driver == "overlay":
        # Without swarm the global datastore is missing: daemon/network.go's message (500).
        raise NetworkError(
            500,
            'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
            "to connect this node to swarm and try again.",
        )
    if driver in ("macvlan", "ipvlan"):
        raise NetworkError(501, f"dockyard does not support the {driver} network driver")
    if driver != "bridge":
        raise NetworkError(404, f'plugin "{driver}" not found')  # moby plugin/errors.go
    if scope == "swarm":
        # libnetwork controller.NewNetwork when swarm is not active (Forbidden).
        raise NetworkError(403, "cannot create a swarm scoped network when swarm is not active")
    if scope not in ("", LOCAL_SCOPE):
        # dockerd 20.10 stores any other scope as given; dockyard has local networks only.
        raise NetworkError(501, f"dockyard supports local-scope networks only, not {scope!r}")


def _check_bridge_options(options: Mapping[str, str]) -> None:
    """libnetwork drivers/bridge networkConfiguration.fromLabels + Validate (BadRequest, which
    dockerd 20.10 answers with 500)."""
    for key, value in sorted(options.items()):
        problem = None
        if key in _BOOL_OPTIONS and _parse_go_bool(value) is None:
            problem = f'strconv.ParseBool: parsing "{value}": invalid syntax'
        elif key == _MTU_OPTION:
            if not re.fullmatch(r"[+-]?[0-9]+", value):
                problem = f'strconv.Atoi: parsing "{value}": invalid syntax'
            elif int(value) < 0:
                raise NetworkError(500, f"invalid MTU number: {int(value)}")
        elif key in _IP_OPTIONS and parse_ipv4(value) is None and ":" not in value:
            problem = "nil ip"
        if problem is not None:
            raise NetworkError(500, f"failed to parse {key} value: {value} ({problem})")


def _check_entry(
    entry: IpamConfigEntry, subnet: IPv4Network, name: str, others: Sequence[IPv4Network]
) -> None:
    """Per-entry checks in libnetwork ipamAllocateVersion's order: IpamConf.Validate, then
    RequestPool (parsePoolRequest, the overlap check), then the auxiliary addresses."""
    if entry.gateway and parse_ipv4(entry.gateway) is None:
        raise NetworkError(500, f"invalid gateway address {entry.gateway} in Ipam configuration")
    if entry.ip_range:
        try:
            ip_range = parse_cidr(entry.ip_range)
        except ValueError:
            raise NetworkError(
                500,
                f'failed to parse pool request for address space "{_ADDRESS_SPACE}" pool '
                f'"{entry.subnet}" subpool "{entry.ip_range}": Invalid Address SubPool',
            ) from None
        if not ip_range.subnet_of(subnet):
            # 20.10 computes a range outside the subnet; moby 25 ValidateIPAM refuses it.
            raise NetworkError(
                400,
                f"invalid ip-range {entry.ip_range}: parent subnet {subnet} doesn't contain "
                "ip-range",
            )
    check_no_overlap(subnet, others)
    for key, value in (entry.aux_addresses or {}).items():
        address = parse_ipv4(value)
        if address is None:
            raise NetworkError(
                500,
                f"non parsable secondary ip address ({key}:{value}) passed for network {name}",
            )
        if address not in subnet:
            raise NetworkError(
                403, f"auxiliary address: ({key}:{value}) must belong to the master pool: {subnet}"
            )


def bridge_name_for(network_id: str, options: Mapping[str, str] | None) -> str:
    """The Linux bridge of a user network: `br-<12 hex of the ID>` unless the
    `com.docker.network.bridge.name` option names one (libnetwork bridge driver)."""
    chosen = (options or {}).get(BRIDGE_NAME_OPTION, "")
    return chosen or f"br-{network_id[:12]}"


def create_network(
    request: CreateRequest,
    existing: Sequence[NetworkRecord],
    *,
    rng: RandomSource,
    created: str,
    in_use: Sequence[IPv4Network] = (),
    after: IPv4Network | None = None,
) -> NetworkRecord:
    """Allocate a validated request: a new ID from `rng`, its subnet (the user's, or the first
    free default pool avoiding `existing` networks and the host's routes/addresses in
    `in_use`; `after` as `choose_subnet` takes it), gateway and auxiliary addresses, and
    the bridge name, refusing a bridge name another network has (libnetwork checkConflicts).
    """
    network_id = new_id(rng)
    bridge = bridge_name_for(network_id, request.options)
    for other in existing:
        if other.bridge_name and other.bridge_name == bridge:
            raise NetworkError(
                403,
                f"cannot create network {network_id} ({bridge}): conflicts with network "
                f"{other.id} ({other.bridge_name}): networks have same bridge name",
            )
    taken = [r.pool.subnet for r in existing if r.pool is not None]
    if request.ipam_config:
        entry = request.ipam_config[0]
        subnet = parse_cidr(entry.subnet)
        check_no_overlap(subnet, taken)
        pool = Pool.create(
            subnet,
            gateway=entry.gateway or None,
            ip_range=parse_cidr(entry.ip_range) if entry.ip_range else None,
        )
        for key, value in (entry.aux_addresses or {}).items():
            # libnetwork reserves auxiliary addresses like preferred ones; the network and
            # broadcast addresses and the gateway are taken already.
            try:
                pool, _ = pool.allocate(IPv4Address(value))
            except AddressInUse:
                raise NetworkError(
                    500,
                    f"failed to allocate secondary ip address ({key}:{value}): "
                    "Address already in use",
                ) from None
    else:
        pool = Pool.create(choose_subnet([*taken, *in_use], after=after))
    return NetworkRecord(
        id=network_id,
        name=request.name,
        driver=request.driver,
        created=created,
        scope=request.scope,
        internal=request.internal,
        attachable=request.attachable,
        enable_ipv6=request.enable_ipv6,
        # libnetwork's Labels() and DriverOptions() always answer a map: `{}`, never null.
        labels=dict(request.labels or {}),
        options=dict(request.options or {}),
        ipam_driver=request.ipam_driver,
        ipam_options=request.ipam_options,
        ipam_config=request.ipam_config,
        bridge_name=bridge,
        pool=pool,
    )


# -- predefined networks -----------------------------------------------------------------------


def default_bridge_pool(
    bip: str | None,
    in_use: Sequence[IPv4Network],
    *,
    fixed_cidr: str | None = None,
    bridge_address: str | None = None,
) -> tuple[Pool, bool]:
    """The default bridge's pool, and whether its gateway was given explicitly (then the
    `bridge` network's IPAM Config shows it), as dockerd 20.10's initBridgeDriver decides:

    - `--bip` (`192.168.5.1/24`): that subnet, gateway explicit;
    - else the address `dockyard0` already has (`bridge_address`, as after a restart): its
      subnet, gateway explicit when the address is not the subnet's network address;
    - else the first default pool overlapping nothing in `in_use` (the host's routes and
      addresses, a docker0 among them): gateway implicit, the first free address of the range.

    `--fixed-cidr` becomes the dynamic range. Bad values: Go's `invalid CIDR address: x`.
    """
    ip_range = _daemon_cidr(fixed_cidr) if fixed_cidr else None
    for text in (bip, bridge_address):
        if not text:
            continue
        interface = _daemon_interface(text)
        if interface.ip == interface.network.network_address:
            return Pool.create(interface.network, ip_range=ip_range), False
        return Pool.create(interface.network, gateway=interface.ip, ip_range=ip_range), True
    return Pool.create(choose_subnet(in_use), ip_range=ip_range), False


def _daemon_cidr(text: str) -> IPv4Network:
    try:
        return parse_cidr(text)
    except ValueError as e:
        raise NetworkError(500, str(e)) from None


def _daemon_interface(text: str) -> IPv4Interface:
    network = _daemon_cidr(text)  # checks the syntax as Go's net.ParseCIDR does
    return IPv4Interface(f"{text.partition('/')[0]}/{network.prefixlen}")


def default_bridge_network(
    network_id: str,
    created: str,
    pool: Pool,
    *,
    gateway_in_config: bool = False,
    bridge_name: str = DEFAULT_BRIDGE_NAME,
    mtu: int = DEFAULT_MTU,
    icc: bool = True,
    ip_masquerade: bool = True,
    host_binding_ipv4: str = "0.0.0.0",
) -> NetworkRecord:
    """`bridge`: its Options exactly as dockerd shows them (sorted, as Go marshals maps),
    IPAM Config with the Subnet, the IPRange for --fixed-cidr and the Gateway only when it
    was explicit (`default_bridge_pool`'s flag; dockerd 20.10 on a fresh host shows the
    Subnet alone), IPAM Options null, Labels `{}`."""
    options = {
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.enable_icc": _go_bool(icc),
        "com.docker.network.bridge.enable_ip_masquerade": _go_bool(ip_masquerade),
        "com.docker.network.bridge.host_binding_ipv4": host_binding_ipv4,
        "com.docker.network.bridge.name": bridge_name,
        "com.docker.network.driver.mtu": str(mtu),
    }
    entry = IpamConfigEntry(
        subnet=str(pool.subnet),
        ip_range="" if pool.ip_range is None else str(pool.ip_range),
        gateway=str(pool.gateway) if gateway_in_config and pool.gateway is not None else "",
    )
    return NetworkRecord(
        id=network_id,
        name="bridge",
        driver="bridge",
        created=created,
        labels={},
        options=options,
        ipam_config=(entry,),
        bridge_name=bridge_name,
        pool=pool,
    )


def host_network(network_id: str, created: str) -> NetworkRecord:
    """`host` (driver host): empty Options and Labels, no IPAM Config."""
    return NetworkRecord(
        id=network_id, name="host", driver="host", created=created, labels={}, options={}
    )


def none_network(network_id: str, created: str) -> NetworkRecord:
    """`none` (driver null): empty Options and Labels, no IPAM Config."""
    return NetworkRecord(
        id=network_id, name="none", driver="null", created=created, labels={}, options={}
    )


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


# -- finding and removing ----------------------------------------------------------------------

ResolveStyle = Literal["inspect", "unique", "daemon"]


def resolve_network(
    records: Sequence[NetworkRecord], term: str, *, style: ResolveStyle = "unique"
) -> NetworkRecord:
    """A network by exact ID, then exact name, then ID prefix, with dockerd's ambiguity
    wording, which differs by caller (all 400; not found 404 `network x not found`):

    - "inspect" (GET /networks/{id}): `2 matches found based on name: network x is ambiguous`;
    - "unique" (DELETE, findUniqueNetwork): `network x is ambiguous (2 matches found based on
      name)`;
    - "daemon" (connect, disconnect, container create: daemon.FindNetwork):
      `network x is ambiguous (2 matches found on name)`.
    """
    by_name: list[NetworkRecord] = []
    by_prefix: list[NetworkRecord] = []
    for record in records:
        if record.id == term:
            return record
        if record.name == term:
            by_name.append(record)
        if term and record.id.startswith(term):
            by_prefix.append(record)
    for matches, basis in ((by_name, "name"), (by_prefix, "ID prefix")):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            count = len(matches)
            if style == "inspect":
                message = f"{count} matches found based on {basis}: network {term} is ambiguous"
            elif style == "daemon" and basis == "name":
                message = f"network {term} is ambiguous ({count} matches found on name)"
            else:
                message = f"network {term} is ambiguous ({count} matches found based on {basis})"
            raise NetworkError(400, message)
    raise NetworkError(404, f"network {term} not found")


def check_removable(record: NetworkRecord, endpoint_count: int) -> None:
    """daemon deleteNetwork + libnetwork network.delete: predefined networks (403) and
    networks with endpoints (403) stay."""
    if record.predefined:
        raise NetworkError(403, f"{record.name} is a pre-defined network and cannot be removed")
    if endpoint_count > 0:
        raise NetworkError(
            403,
            f"error while removing network: network {record.name} id {record.id} has active "
            "endpoints",
        )


# -- JSON --------------------------------------------------------------------------------------


def _ipam_config_wire(record: NetworkRecord) -> list[dict[str, Any]]:
    # daemon/network.go buildIpamResources: the user's entries, else the allocated pool.
    entries = [entry.to_wire() for entry in record.ipam_config if entry.subnet]
    if entries or record.pool is None:
        return entries
    pool = record.pool
    derived: dict[str, Any] = {"Subnet": str(pool.subnet)}
    if pool.gateway is not None:
        derived["Gateway"] = str(pool.gateway)
    return [derived]


def _resource(record: NetworkRecord, containers: dict[str, Any]) -> dict[str, Any]:
    # types.NetworkResource field order; Peers and Services are omitempty and local networks
    # have none (verbose inspect fills Services only for swarm networks).
    return {
        "Name": record.name,
        "Id": record.id,
        "Created": record.created,
        "Scope": record.scope,
        "Driver": record.driver,
        "EnableIPv6": record.enable_ipv6,
        "IPAM": {
            "Driver": record.ipam_driver,
            "Options": _opt_map(record.ipam_options),
            "Config": _ipam_config_wire(record),
        },
        "Internal": record.internal,
        "Attachable": record.attachable,
        "Ingress": record.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": _opt_map(record.options),
        "Labels": _opt_map(record.labels),
    }


def inspect_json(
    record: NetworkRecord, endpoints: Sequence[EndpointRecord], *, verbose: bool = False
) -> dict[str, Any]:
    """GET /networks/{id}: with `Containers` keyed by container ID (types.EndpointResource).
    `verbose` changes nothing for local networks (it adds swarm Services only)."""
    del verbose
    # Go marshals the map with its keys sorted.
    containers = {
        ep.container_id: {
            "Name": ep.container_name,
            "EndpointID": ep.endpoint_id,
            "MacAddress": ep.mac,
            "IPv4Address": ep.ipv4_cidr,
            "IPv6Address": "",
        }
        for ep in sorted(endpoints, key=lambda e: e.container_id)
        if ep.network_id == record.id
    }
    return _resource(record, containers)


def list_json(records: Sequence[NetworkRecord]) -> list[dict[str, Any]]:
    """GET /networks (API >= 1.28): not detailed, so every `Containers` is `{}`."""
    return [_resource(record, {}) for record in records]


# -- filters -----------------------------------------------------------------------------------


def select_networks(
    records: Sequence[NetworkRecord],
    filters: FilterArgs,
    *,
    container_counts: Mapping[str, int] | None = None,
) -> list[NetworkRecord]:
    """`network ls` filters as moby daemon/network/filter.go applies them: driver and scope
    exact, name and id as substrings/regular expressions, label `k`/`k=v` (all), then
    dangling (not predefined and no endpoints; `container_counts` are live endpoints by
    network ID, so a created or stopped container does not count, as in dockerd) and type
    custom|builtin. Unknown keys: `Invalid filter 'x'` (400)."""
    filters.validate(LS_FILTERS)
    counts = container_counts or {}
    out = [
        r
        for r in records
        if (not filters.contains("driver") or filters.exact_match("driver", r.driver))
        and (not filters.contains("name") or filters.match("name", r.name))
        and (not filters.contains("id") or filters.match("id", r.id))
        and (not filters.contains("label") or filters.match_kv_list("label", r.labels or {}))
        and (not filters.contains("scope") or filters.exact_match("scope", r.scope))
    ]
    dangling = filters.get("dangling")
    if dangling:
        if len(dangling) > 1:
            raise NetworkError(400, 'got more than one value for filter key "dangling"')
        (value,) = dangling
        if value in ("1", "true"):
            out = [r for r in out if not r.predefined and counts.get(r.id, 0) == 0]
        elif value in ("0", "false"):
            out = [r for r in out if r.predefined or counts.get(r.id, 0) > 0]
        else:
            raise NetworkError(
                400,
                'invalid value for filter \'dangling\', must be "true" (or "1"), '
                'or "false" (or "0")',
            )
    if filters.contains("type"):
        kept: list[NetworkRecord] = []
        # moby walks the values and appends each pass's matches (a network can repeat).
        for kind in sorted(filters.get("type")):
            if kind == "builtin":
                kept.extend(r for r in out if r.predefined)
            elif kind == "custom":
                kept.extend(r for r in out if not r.predefined)
            else:
                raise NetworkError(500, f"invalid filter: 'type'='{kind}'")
        out = kept
    return out


def _match_kv_all(values: frozenset[str], labels: Mapping[str, str]) -> bool:
    # filters.Args.MatchKVList for one key: every `k`/`k=v` present; no labels never match.
    if not labels:
        return False
    for value in values:
        key, eq, wanted = value.partition("=")
        if key not in labels or (eq and labels[key] != wanted):
            return False
    return True


def select_prunable(
    records: Sequence[NetworkRecord],
    filters: FilterArgs,
    *,
    container_counts: Mapping[str, int],
    now_ns: int,
) -> list[NetworkRecord]:
    """`network prune` (daemon/prune.go localNetworksPrune): networks without endpoints that
    are not predefined, created at or before `until`, matching every `label` and not all
    `label!` values (moby 20.10's MatchKVList on "label!")."""
    filters.validate(PRUNE_FILTERS)
    until_ns: int | None = None
    untils = filters.get("until")
    if len(untils) > 1:
        raise NetworkError(500, "more than one until filter specified")
    if untils:
        try:
            until_ns = parse_timestamp(next(iter(untils)), now_ns)
        except EngineError as e:
            raise NetworkError(500, str(e)) from None  # dockerd 20.10 answers 500 here
    out: list[NetworkRecord] = []
    for record in records:
        if until_ns is not None and parse_time_ns(record.created) > until_ns:
            continue
        labels = record.labels or {}
        if filters.contains("label") and not _match_kv_all(filters.get("label"), labels):
            continue
        if filters.contains("label!") and _match_kv_all(filters.get("label!"), labels):
            continue
        if record.predefined or container_counts.get(record.id, 0) > 0:
            continue
        out.append(record)
    return out


# -- containers: create-time checks ------------------------------------------------------------


def _network_mode(host_config: Mapping[str, Any]) -> str:
    return str(host_config.get("NetworkMode") or "default")


def validate_net_mode(config: Mapping[str, Any], host_config: Mapping[str, Any]) -> None:
    """runconfig validateNetMode/validateNetContainerMode (the create decoder, 400): what the
    `container:<x>` and `host` modes cannot be combined with."""
    mode = _network_mode(host_config)
    is_container = mode.startswith("container:")
    if mode == "container" or (is_container and not mode.partition(":")[2]):
        raise NetworkError(
            400, "Invalid network mode: invalid container format container:<name|id>"
        )
    is_host = mode == "host"
    if is_container and config.get("Hostname"):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_HOSTNAME)
    if is_container and host_config.get("Links"):
        raise NetworkError(400, ERR_CONFLICT_CONTAINER_NETWORK_AND_LINKS)
    if is_container and host_config.get("Dns"):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_AND_DNS)
    if is_container and host_config.get("ExtraHosts"):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_HOSTS)
    if (is_container or is_host) and config.get("MacAddress"):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_AND_MAC)
    if is_container and (host_config.get("PortBindings") or host_config.get("PublishAllPorts")):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_PUBLISH)
    if is_container and config.get("ExposedPorts"):
        raise NetworkError(400, ERR_CONFLICT_NETWORK_EXPOSE)
    if host_config.get("UTSMode") == "host" and config.get("Hostname"):
        raise NetworkError(400, "conflicting options: hostname and the UTS mode")
    if is_host and host_config.get("Links"):
        raise NetworkError(400, ERR_CONFLICT_HOST_NETWORK_AND_LINKS)


def validate_networking_config(
    networking_config: Any, *, api_version: str = "1.41"
) -> dict[str, EndpointRequest]:
    """daemon/create.go verifyNetworkingConfig: the create body's `EndpointsConfig` decoded;
    before API 1.44 a container is created on one network at most (400, names sorted where
    Go's map order is random), and static addresses must parse."""
    if networking_config is None:
        return {}
    if not isinstance(networking_config, Mapping):
        raise _unmarshal(networking_config, "NetworkingConfig", "network.NetworkingConfig")
    raw = networking_config.get("EndpointsConfig")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _unmarshal(
            raw, "NetworkingConfig.EndpointsConfig", "map[string]*network.EndpointSettings"
        )
    if len(raw) > 1 and _version_less(api_version, "1.44"):
        names = ", ".join(sorted(str(k) for k in raw))
        raise NetworkError(400, f"Container cannot be connected to network endpoints: {names}")
    out: dict[str, EndpointRequest] = {}
    for name, value in raw.items():
        request = EndpointRequest.from_wire(str(name), value)
        if request.ipv4_address and parse_ipv4(request.ipv4_address) is None:
            raise NetworkError(400, f"invalid IPv4 address: {request.ipv4_address}")
        if request.ipv6_address and (
            ":" not in request.ipv6_address or parse_ipv4(request.ipv6_address) is not None
        ):
            raise NetworkError(400, f"invalid IPv6 address: {request.ipv6_address}")
        if request.mac_address and not _MAC_RE.match(request.mac_address):
            raise NetworkError(400, f"invalid MAC address {request.mac_address}")  # moby 25
        out[str(name)] = request
    return out


def check_endpoint_request(network: NetworkRecord, request: EndpointRequest) -> None:
    """daemon validateNetworkingConfig at connect/start: static addresses and aliases need a
    user-defined network, a static address needs a user-configured subnet (all 400)."""
    if not is_user_defined_mode(network.name):
        if request.has_static_address:
            raise NetworkError(400, ERR_UNSUPPORTED_NETWORK_AND_IP)
        if request.aliases:
            raise NetworkError(400, ERR_UNSUPPORTED_NETWORK_AND_ALIAS)
    if request.ipv4_address and not network.has_user_subnet:
        raise NetworkError(400, ERR_UNSUPPORTED_NETWORK_NO_SUBNET_AND_IP)
    if request.ipv6_address:
        # No network here has an IPv6 subnet (dockyard refuses IPv6 networks).
        raise NetworkError(400, ERR_UNSUPPORTED_NETWORK_NO_SUBNET_AND_IP)


def check_connect(
    network: NetworkRecord,
    *,
    network_mode: str,
    connected: Sequence[NetworkRecord],
    container_name: str,
    endpoint_names: Sequence[str] = (),
) -> None:
    """Connecting a container to `network` (daemon connectToNetwork/updateNetworkSettings,
    libnetwork createEndpoint): `connected` are the networks it is on now, `endpoint_names`
    the endpoint names `network` already has. Returns quietly when it is already connected
    to this network on a stopped container, as dockerd's "avoid duplicate config" does; the
    caller skips the connect then."""
    if network_mode.startswith("container:"):
        raise NetworkError(400, ERR_CONFLICT_SHARED_NETWORK)
    if network_mode != "host" and network.driver == "host":
        raise NetworkError(400, ERR_CONFLICT_HOST_NETWORK)
    name = container_name.lstrip("/")
    for current in connected:
        if current.name == network.name:
            if name in endpoint_names:
                # libnetwork network.createEndpoint (Forbidden).
                raise NetworkError(
                    403, f"endpoint with name {name} already exists in network {network.name}"
                )
            return
        if current.driver == "host" or network.driver == "host":
            raise NetworkError(400, ERR_CONFLICT_SHARED_NETWORK)
        if current.name == "none" or network.name == "none":
            raise NetworkError(400, ERR_CONFLICT_NO_NETWORK)


def check_disconnect(
    network: NetworkRecord,
    *,
    network_mode: str,
    container_id: str,
    connected_names: Sequence[str],
    running: bool,
) -> None:
    """daemon DisconnectFromNetwork: never from host in host mode (400); a container not on
    the network gets moby's plain error (500), worded differently when it is stopped."""
    if running and network_mode == "host" and network.driver == "host":
        raise NetworkError(400, ERR_CONFLICT_HOST_NETWORK)
    if network.name not in connected_names:
        the = "the " if not running else ""
        raise NetworkError(
            500, f"container {container_id} is not connected to {the}network {network.name}"
        )


# -- endpoints ---------------------------------------------------------------------------------


def endpoint_aliases(
    network: NetworkRecord,
    requested: Sequence[str] | None,
    *,
    container_id: str,
    hostname: str,
) -> tuple[str, ...] | None:
    """Aliases as dockerd 20.10's updateNetworkConfig leaves them: on user-defined networks
    the short ID is appended, then the hostname, each unless already there (moby 25 moved
    the short ID to DNSNames; 20.10 is matched here). Call it once per connect; dockerd stores
    the result in the container's endpoint settings, so a restart adds nothing."""
    aliases = list(requested) if requested is not None else None
    if not is_user_defined_mode(network.name):
        return None if aliases is None else tuple(aliases)
    aliases = aliases or []
    short_id = container_id[:12]
    if short_id not in aliases:
        aliases.append(short_id)
    # moby compares container.Name ("/x") with Config.Hostname, which always differ; the
    # default hostname is the short ID, already there.
    if hostname and hostname not in aliases:
        aliases.append(hostname)
    return tuple(aliases)


def _veth_name(rng: RandomSource) -> str:
    # libnetwork netutils.GenerateIfaceName("veth", 7): seven random hex digits.
    return f"veth{rng.getrandbits(28):07x}"


def new_endpoint(
    network: NetworkRecord,
    request: EndpointRequest,
    *,
    container_id: str,
    container_name: str,
    hostname: str,
    rng: RandomSource,
) -> tuple[NetworkRecord, EndpointRecord]:
    """Attach a container: an endpoint ID, an address from the network's pool (the
    requested one or the next free), a MAC (the requested one, else derived from the
    address), the network's gateway, and the host veth name.

    Errors are libnetwork endpoint.assignAddressVersion's: `Invalid address x: It does not
    belong to any of this network's subnets` (500), `Address already in use` (403),
    `no available IPv4 addresses on this network's address pools: name (id)` (500).
    """
    check_endpoint_request(network, request)
    name = container_name.lstrip("/")
    aliases = endpoint_aliases(
        network, request.aliases, container_id=container_id, hostname=hostname
    )
    endpoint_id = new_id(rng)
    ipam = request if request.has_static_address else None
    if network.pool is None:
        endpoint = EndpointRecord(
            container_id=container_id,
            container_name=name,
            endpoint_id=endpoint_id,
            network_id=network.id,
            aliases=aliases,
            links=request.links,
            ipam_config=ipam,
            driver_opts=request.driver_opts,
        )
        return network, endpoint
    pool = network.pool
    if request.ipv4_address:
        preferred = parse_ipv4(request.ipv4_address)
        if preferred is None or preferred not in pool.subnet:
            raise NetworkError(
                500,
                f"Invalid address {request.ipv4_address}: It does not belong to any of this "
                "network's subnets",
            )
        pool, address = pool.allocate(preferred)
    else:
        try:
            pool, address = pool.allocate()
        except NoAvailableAddresses:
            raise NetworkError(
                500,
                "no available IPv4 addresses on this network's address pools: "
                f"{network.name} ({network.id})",
            ) from None
    mac = _normalise_mac(request.mac_address) if request.mac_address else mac_for(address)
    # dockerd 20.10 reports the gateway on internal networks too (checked against it).
    gateway = "" if pool.gateway is None else str(pool.gateway)
    endpoint = EndpointRecord(
        container_id=container_id,
        container_name=name,
        endpoint_id=endpoint_id,
        network_id=network.id,
        mac=mac,
        ipv4=address,
        prefix_len=pool.prefix_len,
        gateway=gateway,
        aliases=aliases,
        links=request.links,
        ipam_config=ipam,
        driver_opts=request.driver_opts,
        host_veth=_veth_name(rng),
    )
    return network.with_pool(pool), endpoint


def _normalise_mac(text: str) -> str:
    if not _MAC_RE.match(text):
        raise NetworkError(400, f"invalid MAC address {text}")
    return text.replace("-", ":").lower()


def release_endpoint(network: NetworkRecord, endpoint: EndpointRecord) -> NetworkRecord:
    """Return the endpoint's address to the network's pool."""
    if network.pool is None or endpoint.ipv4 is None:
        return network
    return network.with_pool(network.pool.release(endpoint.ipv4))


# -- containers: NetworkSettings ---------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """One entry of a container's NetworkSettings.Networks: the network's name (the key),
    the user's settings, and the live endpoint when the container is running. `network_id`
    stays set once the container has run, as dockerd keeps it after a stop."""

    network_name: str
    request: EndpointRequest = field(default_factory=EndpointRequest)
    endpoint: EndpointRecord | None = None
    network_id: str = ""


def _endpoint_settings(attachment: Attachment) -> dict[str, Any]:
    # network.EndpointSettings field order.
    ep = attachment.endpoint
    request = attachment.request
    network_id = ep.network_id if ep is not None else attachment.network_id
    aliases = ep.aliases if ep is not None else request.aliases
    return {
        "IPAMConfig": request.ipam_config_wire(),
        "Links": None if request.links is None else list(request.links),
        "Aliases": None if aliases is None else list(aliases),
        "NetworkID": network_id,
        "EndpointID": "" if ep is None else ep.endpoint_id,
        "Gateway": "" if ep is None else ep.gateway,
        "IPAddress": "" if ep is None or ep.ipv4 is None else str(ep.ipv4),
        "IPPrefixLen": 0 if ep is None else ep.prefix_len,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "" if ep is None else ep.mac,
        "DriverOpts": _opt_map(request.driver_opts),
    }


def container_network_settings(
    attachments: Sequence[Attachment],
    *,
    ports: Mapping[str, Any] | None = None,
    sandbox_id: str = "",
    sandbox_key: str = "",
    bridge: str = "",
) -> dict[str, Any]:
    """A container's inspect `NetworkSettings` (types.NetworkSettings, dockerd 20.10).

    The legacy top-level EndpointID/Gateway/IPAddress/IPPrefixLen/MacAddress... are those of
    the `bridge` network entry and empty otherwise (daemon/inspect.go
    getDefaultNetworkSettings). `ports` is the rendered PortMap (`{}` when None); `bridge`
    is dockerd's `-b` interface, "" by default even on the default bridge.
    """
    # Keys sorted, as Go marshals maps.
    ordered = sorted(attachments, key=lambda a: a.network_name)
    networks = {a.network_name: _endpoint_settings(a) for a in ordered}
    default = networks.get("bridge")
    return {
        "Bridge": bridge,
        "SandboxID": sandbox_id,
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": dict(ports) if ports is not None else {},
        "SandboxKey": sandbox_key,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "" if default is None else default["EndpointID"],
        "Gateway": "" if default is None else default["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "" if default is None else default["IPAddress"],
        "IPPrefixLen": 0 if default is None else default["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": "" if default is None else default["MacAddress"],
        "Networks": networks,
    }


def summary_networks(attachments: Sequence[Attachment]) -> dict[str, Any]:
    """`NetworkSettings` of a `docker ps` entry (container/view.go): operational fields
    only; Links, Aliases and DriverOpts null; IPAMConfig copied when set."""
    networks: dict[str, Any] = {}
    for attachment in sorted(attachments, key=lambda a: a.network_name):
        full = _endpoint_settings(attachment)
        full["Links"] = None
        full["Aliases"] = None
        full["DriverOpts"] = None
        networks[attachment.network_name] = full
    return {"Networks": networks}


__all__ = [
    "BRIDGE_NAME_OPTION",
    "DEFAULT_BRIDGE_NAME",
    "LS_FILTERS",
    "PREDEFINED_NAMES",
    "PRUNE_FILTERS",
    "Attachment",
    "CreateRequest",
    "EndpointRecord",
    "EndpointRequest",
    "IpamConfigEntry",
    "NetworkError",
    "NetworkRecord",
    "ResolveStyle",
    "bridge_name_for",
    "check_connect",
    "check_disconnect",
    "check_endpoint_request",
    "check_removable",
    "container_network_settings",
    "create_network",
    "default_bridge_network",
    "default_bridge_pool",
    "endpoint_aliases",
    "host_network",
    "inspect_json",
    "is_predefined_name",
    "is_user_defined_mode",
    "list_json",
    "new_endpoint",
    "none_network",
    "release_endpoint",
    "resolve_network",
    "select_networks",
    "select_prunable",
    "summary_networks",
    "validate_create",
    "validate_net_mode",
    "validate_networking_config",
]
