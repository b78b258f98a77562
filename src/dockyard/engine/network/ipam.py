"""IPv4 address management: Docker's default address pools, subnet choice, address allocation.

Role: the sans-I/O equivalent of libnetwork's built-in `default` IPAM driver (moby 20.10:
libnetwork/ipam/allocator.go, bitseq, ipamutils, netutils.GenerateMACFromIP) for one address
space of local-scope networks:

- `DEFAULT_POOLS` are `ipamutils.PredefinedLocalScopeDefaultNetworks`: 172.17.0.0/16 ...
  172.31.0.0/16 as /16s, then 192.168.0.0/16 as /20s (31 pools).
- `choose_subnet` picks the first default pool that overlaps nothing in use (other networks,
  host routes and addresses: libnetwork's `requestPoolHelper` retries while
  `netutils.FindAvailableNetwork` sees an overlap with a route), searching from the pool after
  the one chosen last, as the allocator's `predefinedStartIndices` rotation does.
- `Pool` is one network's subnet with its allocation state as an immutable value; every
  operation returns a new `Pool`. Invariants (checked by `Pool.__post_init__`, always):
  the gateway and every allocated address lie in the subnet and are neither its network nor
  its broadcast address; the optional `ip_range` lies in the subnet.

Address choice is libnetwork's: an address is an ordinal in the subnet's bitmap, ordinal 0
(the network address) and the last one (broadcast) are never handed out; a dynamic request
takes the lowest free ordinal inside `ip_range` (or the subnet), or, for a `serial` pool
(swarm's `com.docker.network.ipam.serial`), the lowest free one after the last dynamic
allocation, wrapping to the start. A preferred address may be anywhere in the subnet (the
range only limits dynamic choice) but must be free.

Pure: no I/O, no clock, no randomness. Errors are `NetworkError`s carrying Docker's message
and HTTP status (libnetwork's types.*Errorf classes, mapped as moby's errdefs does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any

from dockyard.engine.model.container import EngineError


class NetworkError(EngineError):
    """A networking request refused with Docker's message and HTTP status.

    The status is what dockerd 20.10 answers for the error's class (checked against it):
    errdefs InvalidParameter 400, Forbidden 403, NotFound 404, Conflict 409, NotImplemented
    501; everything else 500, including libnetwork's own BadRequest and NoService classes,
    which 20.10's errdefs mapping does not recognise (moby 23+ maps them to 400 and 503).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# libnetwork ipamapi/contract.go well-known errors (message and class).
class AddressOutOfRange(NetworkError):
    def __init__(self) -> None:
        super().__init__(500, "Requested address is out of range")  # ErrIPOutOfRange


class AddressInUse(NetworkError):
    def __init__(self) -> None:
        super().__init__(403, "Address already in use")  # ErrIPAlreadyAllocated


class NoAvailableAddresses(NetworkError):
    def __init__(self) -> None:
        super().__init__(500, "No available addresses on this pool")  # ErrNoAvailableIPs


class PoolOverlap(NetworkError):
    def __init__(self) -> None:
        super().__init__(
            403, "Pool overlaps with other one on this address space"
        )  # ErrPoolOverlap


def _split(base: str, prefix_len: int) -> list[IPv4Network]:
    return list(IPv4Network(base).subnets(new_prefix=prefix_len))


# libnetwork ipamutils localScopeDefaultNetworks, split as ipamutils.splitNetworks does.
DEFAULT_POOLS: tuple[IPv4Network, ...] = tuple(
    [
        *_split("172.17.0.0/16", 16),
        *_split("172.18.0.0/16", 16),
        *_split("172.19.0.0/16", 16),
        *_split("172.20.0.0/14", 16),
        *_split("172.24.0.0/14", 16),
        *_split("172.28.0.0/14", 16),
        *_split("192.168.0.0/16", 20),
    ]
)

# libnetwork ipam/allocator.go getPredefinedPool (types.NotFoundErrorf).
_NO_POOL = (
    "could not find an available, non-overlapping IPv4 address pool among the defaults to "
    "assign to the network"
)


def choose_subnet(
    in_use: Sequence[IPv4Network],
    pools: Sequence[IPv4Network] = DEFAULT_POOLS,
    *,
    after: IPv4Network | None = None,
) -> IPv4Network:
    """The first of `pools` overlapping nothing in `in_use`.

    `after` is the subnet this function returned last (kept in memory by the caller, as
    libnetwork keeps `predefinedStartIndices`): the search starts at the pool that follows it
    and wraps, so a network removed and re-created gets the next subnet, as dockerd does.
    """
    start = 0
    if after is not None and after in pools:
        start = (list(pools).index(after) + 1) % len(pools)
    for candidate in (*pools[start:], *pools[:start]):
        if not any(candidate.overlaps(used) for used in in_use):
            return candidate
    raise NetworkError(404, _NO_POOL)


def check_no_overlap(subnet: IPv4Network, others: Iterable[IPv4Network]) -> None:
    """A user-chosen subnet must not overlap another network's (libnetwork addrSpace.contains:
    ErrPoolOverlap, 403). Host routes are not checked for explicit subnets, as in dockerd."""
    if any(subnet.overlaps(other) for other in others):
        raise PoolOverlap()


def parse_cidr(text: str) -> IPv4Network:
    """Go's net.ParseCIDR for IPv4, masked as Go masks it (`10.0.0.1/16` is 10.0.0.0/16).

    Raises ValueError with Go's message `invalid CIDR address: x`.
    """
    address, slash, bits = text.partition("/")
    if not slash or not bits.isdigit() or int(bits) > 32 or not _is_ipv4(address):
        raise ValueError(f"invalid CIDR address: {text}")
    return IPv4Network(f"{address}/{int(bits)}", strict=False)


def parse_ipv4(text: str) -> IPv4Address | None:
    """Go's net.ParseIP(x).To4() for dotted quads; None when it is not an IPv4 address."""
    return IPv4Address(text) if _is_ipv4(text) else None


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except (AddressValueError, NetmaskValueError, ValueError):
        return False
    return True


def mac_for(ipv4: IPv4Address | str) -> str:
    """The MAC Docker 20.10 gives an endpoint: 02:42 then the four address bytes
    (libnetwork netutils.GenerateMACFromIP: locally administered, unicast)."""
    packed = IPv4Address(ipv4).packed
    return ":".join(f"{b:02x}" for b in (0x02, 0x42, *packed))


def _check(condition: bool, what: str) -> None:
    # Invariant checks that survive `python -O`.
    if not condition:
        raise ValueError(f"ipam invariant violated: {what}")


@dataclass(frozen=True)
class Pool:
    """One network's IPv4 subnet and its allocations (libnetwork PoolData + bitseq.Handle).

    `allocated` holds every address handed out: the gateway, endpoint addresses and reserved
    auxiliary addresses. `next_ordinal` is bitseq's `curr`: where a serial search resumes.
    """

    subnet: IPv4Network
    gateway: IPv4Address | None = None
    ip_range: IPv4Network | None = None
    allocated: frozenset[IPv4Address] = field(default_factory=frozenset)
    serial: bool = False
    next_ordinal: int = 0

    def __post_init__(self) -> None:
        if self.ip_range is not None:
            _check(self.ip_range.subnet_of(self.subnet), "ip_range inside the subnet")
        for address in self.allocated:
            _check(self._usable(address), f"{address} is a host address of {self.subnet}")
        if self.gateway is not None:
            _check(self.gateway in self.allocated, "the gateway is allocated")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        subnet: IPv4Network,
        *,
        gateway: IPv4Address | str | None = None,
        ip_range: IPv4Network | None = None,
        serial: bool = False,
    ) -> Pool:
        """A new pool with its gateway reserved, as libnetwork's ipamAllocateVersion does: a
        requested gateway is taken as a preferred address, else the first free address of the
        range (so `--ip-range 10.1.5.0/24` alone puts the gateway on 10.1.5.0, the range's
        first ordinal, as libnetwork's SetAnyInRange does).

        Errors are dockerd's `failed to allocate gateway (x): ...` (InternalError, 500).
        """
        if ip_range is not None and not ip_range.subnet_of(subnet):
            raise NetworkError(
                400, f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range"
            )  # moby 25 api/types/network ValidateIPAM; 20.10 computes garbage here
        pool = cls(subnet=subnet, ip_range=ip_range, serial=serial)
        requested = "" if gateway is None else str(gateway)
        try:
            pool, address = pool._take(gateway)
        except NetworkError as e:
            raise NetworkError(500, f"failed to allocate gateway ({requested}): {e}") from None
        return replace(pool, gateway=address)

    # -- queries ------------------------------------------------------------------------------

    @property
    def prefix_len(self) -> int:
        return self.subnet.prefixlen

    def _usable(self, address: IPv4Address) -> bool:
        return (
            address in self.subnet
            and address != self.subnet.network_address
            and address != self.subnet.broadcast_address
        )

    def is_free(self, address: IPv4Address) -> bool:
        return self._usable(address) and address not in self.allocated

    def _bounds(self) -> tuple[int, int]:
        """First and last ordinal of the dynamic range (libnetwork AddressRange Start/End)."""
        base = int(self.subnet.network_address)
        span = self.ip_range if self.ip_range is not None else self.subnet
        return int(span.network_address) - base, int(span.broadcast_address) - base

    # -- allocation ---------------------------------------------------------------------------

    def allocate(self, preferred: IPv4Address | str | None = None) -> tuple[Pool, IPv4Address]:
        """Hand out `preferred` or the next free address (libnetwork Allocator.RequestAddress).

        Errors: `Requested address is out of range` (preferred outside the subnet, 500),
        `Address already in use` (403), `No available addresses on this pool` (500).
        """
        pool, address = self._take(preferred)
        return pool, address

    def _take(self, preferred: IPv4Address | str | None) -> tuple[Pool, IPv4Address]:
        if preferred is not None:
            address = preferred if isinstance(preferred, IPv4Address) else parse_ipv4(preferred)
            if address is None:
                raise NetworkError(400, f"invalid IPv4 address: {preferred}")
            if address not in self.subnet:
                raise AddressOutOfRange()
            if not self.is_free(address):
                raise AddressInUse()
            return replace(self, allocated=self.allocated | {address}), address
        ordinal = self._first_free()
        address = self.subnet.network_address + ordinal
        # bitseq sets `curr` after every dynamic allocation, serial or not.
        return replace(
            self, allocated=self.allocated | {address}, next_ordinal=ordinal + 1
        ), address

    def _first_free(self) -> int:
        start, end = self._bounds()
        base = self.subnet.network_address
        # bitseq getAvailableFromCurrent: from `curr` when serial and past the start, then
        # from the start of the range.
        origins = [start]
        if self.serial and start < self.next_ordinal <= end:
            origins.insert(0, self.next_ordinal)
        for origin in origins:
            for ordinal in range(origin, end + 1):
                if self.is_free(base + ordinal):
                    return ordinal
        raise NoAvailableAddresses()

    def release(self, address: IPv4Address | str) -> Pool:
        """Return an address to the pool (libnetwork ReleaseAddress); releasing a free address
        is a no-op as unsetting a clear bit is. Outside the subnet: out of range (500)."""
        ip = IPv4Address(address)
        if ip not in self.subnet:
            raise AddressOutOfRange()
        if ip == self.gateway:
            # The gateway is held for the network's life; the lead releases the whole pool.
            return self
        return replace(self, allocated=self.allocated - {ip})

    # -- persistence --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "subnet": str(self.subnet),
            "gateway": None if self.gateway is None else str(self.gateway),
            "ip_range": None if self.ip_range is None else str(self.ip_range),
            "allocated": [str(a) for a in sorted(self.allocated)],
            "serial": self.serial,
            "next_ordinal": self.next_ordinal,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Pool:
        gateway = obj.get("gateway")
        ip_range = obj.get("ip_range")
        return cls(
            subnet=IPv4Network(str(obj["subnet"])),
            gateway=None if gateway is None else IPv4Address(str(gateway)),
            ip_range=None if ip_range is None else IPv4Network(str(ip_range)),
            allocated=frozenset(IPv4Address(str(a)) for a in obj.get("allocated") or ()),
            serial=bool(obj.get("serial", False)),
            next_ordinal=int(obj.get("next_ordinal", 0)),
        )


__all__ = [
    "DEFAULT_POOLS",
    "AddressInUse",
    "AddressOutOfRange",
    "NetworkError",
    "NoAvailableAddresses",
    "Pool",
    "PoolOverlap",
    "check_no_overlap",
    "choose_subnet",
    "mac_for",
    "parse_cidr",
    "parse_ipv4",
]
