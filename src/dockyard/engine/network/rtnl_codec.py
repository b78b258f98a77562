"""rtnetlink wire format: pure encoders and decoders for NETLINK_ROUTE messages.

Role: everything the rtnetlink client says to and hears from the kernel, as bytes in and values
out. The socket lives in `netlink.py`; this module never does I/O, so every request the client
sends and every reply it understands is unit-tested here byte for byte.

Wire rules (linux/netlink.h, linux/rtnetlink.h), all in host byte order:
- A message is a 16-byte `nlmsghdr` (len u32, type u16, flags u16, seq u32, port id u32) and a
  payload; `len` counts the header and the payload but not the padding that aligns the next
  message to 4 bytes (NLMSG_ALIGN).
- A payload is a fixed family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`) followed by attributes:
  `rtattr` (len u16, type u16, value) padded to 4 bytes (RTA_ALIGN); `len` excludes the padding.
  Nested attributes carry NLA_F_NESTED in their type; decoders mask the flag bits off.
- A request with NLM_F_ACK is answered by NLMSG_ERROR with error 0 (the ack) or -errno. With
  NETLINK_CAP_ACK only the request's header is echoed back, and with NETLINK_EXT_ACK the kernel
  appends attributes, NLMSGERR_ATTR_MSG being its human-readable reason.
- A dump (NLM_F_DUMP) is answered by NLM_F_MULTI messages over several reads, ended by
  NLMSG_DONE whose payload is an int error; NLM_F_DUMP_INTR on any part means the table changed
  under the dump and the result must be discarded and the dump retried.

Invariants: encoders emit only aligned, length-consistent bytes; decoders reject truncated or
inconsistent input with `CodecError` instead of guessing; a `Reply` accepts only the messages
of its own sequence number and is complete exactly once.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# --- linux/netlink.h ------------------------------------------------------------------------
NETLINK_ROUTE = 0
NETLINK_EXT_ACK = 11  # socket option: extended ack (kernel reason strings)
NETLINK_CAP_ACK = 10  # socket option: do not echo the request payload in errors
NETLINK_GET_STRICT_CHK = 12

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
# Modifiers of NEW requests.
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# Flags of an NLMSG_ERROR message.
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

# --- linux/rtnetlink.h ----------------------------------------------------------------------
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

AF_UNSPEC = 0
AF_INET = 2
AF_BRIDGE = 7
AF_INET6 = 10

IFF_UP = 0x1

# linux/if_link.h
IFLA_ADDRESS = 1
IFLA_BROADCAST = 2
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37

IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

VETH_INFO_PEER = 1

IFLA_BRPORT_MODE = 4  # hairpin mode of a bridge port

RTEXT_FILTER_SKIP_STATS = 1 << 3  # replies without the 200-odd bytes of counters per link

# linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_BROADCAST = 4

# rtmsg fields and attributes
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15

NLMSG_HDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBi")
RTMSG = struct.Struct("=BBBBBBBBI")
RTA_HDR = struct.Struct("=HH")
_I32 = struct.Struct("=i")
_U32 = struct.Struct("=I")

ALIGN_TO = 4
IFNAMSIZ = 16  # including the terminating NUL
MAC_LEN = 6


class CodecError(ValueError):
    """Bytes that are not a well-formed netlink message (a bug or a torn read, never retried)."""


class NetlinkError(OSError):
    """The kernel refused a request: `errno` is its error, `message` names the operation
    (`add veth veth1a2b3c: File exists`), `kernel_reason` is the extended-ack text if any."""

    def __init__(self, errno: int, message: str, kernel_reason: str = "") -> None:
        super().__init__(errno, message)
        self.message = message
        self.kernel_reason = kernel_reason

    def __str__(self) -> str:
        return self.message


def align(length: int) -> int:
    """NLMSG_ALIGN / RTA_ALIGN: round up to the next multiple of 4."""
    return (length + ALIGN_TO - 1) & ~(ALIGN_TO - 1)


# --- attributes -----------------------------------------------------------------------------
def attr(attr_type: int, value: bytes) -> bytes:
    """One rtattr, padded so that the next attribute starts aligned."""
    length = RTA_HDR.size + len(value)
    if length > 0xFFFF:
        raise CodecError(f"attribute {attr_type} too long: {len(value)} bytes")
    return RTA_HDR.pack(length, attr_type) + value + b"\0" * (align(length) - length)


def attr_u8(attr_type: int, value: int) -> bytes:
    return attr(attr_type, struct.pack("=B", value))


def attr_u32(attr_type: int, value: int) -> bytes:
    return attr(attr_type, _U32.pack(value))


def attr_str(attr_type: int, value: str) -> bytes:
    """A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND)."""
    return attr(attr_type, value.encode() + b"\0")


def nested(attr_type: int, *children: bytes) -> bytes:
    """A nested attribute: already-encoded children, NLA_F_NESTED set as the kernel expects
    for strictly validated policies."""
    return attr(attr_type | NLA_F_NESTED, b"".join(children))


def iter_attrs(data: bytes | memoryview) -> Iterator[tuple[int, bytes]]:
    """Yields (type without flag bits, value) for each attribute of a packed sequence."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if len(view) - offset < RTA_HDR.size:
            raise CodecError(f"truncated attribute header at offset {offset}")
        length, attr_type = RTA_HDR.unpack_from(view, offset)
        if length < RTA_HDR.size or offset + length > len(view):
            raise CodecError(f"attribute {attr_type} length {length} at offset {offset} overruns")
        yield attr_type & NLA_TYPE_MASK, bytes(view[offset + RTA_HDR.size : offset + length])
        offset += align(length)


def parse_attrs(data: bytes | memoryview) -> dict[int, bytes]:
    """Attributes by type; a repeated type keeps its last value (as the kernel's nla_parse)."""
    return dict(iter_attrs(data))


def decode_str(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode()


def decode_u32(value: bytes) -> int:
    if len(value) < _U32.size:
        raise CodecError(f"u32 attribute of {len(value)} bytes")
    return int(_U32.unpack_from(value)[0])


def decode_i32(value: bytes) -> int:
    if len(value) < _I32.size:
        raise CodecError(f"s32 attribute of {len(value)} bytes")
    return int(_I32.unpack_from(value)[0])


# --- messages -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One netlink message: its header fields and its payload (family header + attributes)."""

    msg_type: int
    flags: int
    seq: int
    port_id: int
    payload: bytes


def encode_message(msg_type: int, flags: int, seq: int, payload: bytes, port_id: int = 0) -> bytes:
    """A complete, padded message; the header length excludes the trailing padding."""
    length = NLMSG_HDR.size + len(payload)
    return (
        NLMSG_HDR.pack(length, msg_type, flags, seq, port_id)
        + payload
        + b"\0" * (align(length) - length)
    )


def decode_messages(data: bytes | memoryview) -> list[Message]:
    """Every message of one datagram, in order."""
    view = memoryview(data)
    messages: list[Message] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < NLMSG_HDR.size:
            raise CodecError(f"truncated message header at offset {offset}")
        length, msg_type, flags, seq, port_id = NLMSG_HDR.unpack_from(view, offset)
        if length < NLMSG_HDR.size or offset + length > len(view):
            raise CodecError(f"message length {length} at offset {offset} overruns the datagram")
        payload = bytes(view[offset + NLMSG_HDR.size : offset + length])
        messages.append(Message(msg_type, flags, seq, port_id, payload))
        offset += align(length)
    return messages


@dataclass(frozen=True)
class ErrorReply:
    """An NLMSG_ERROR payload: `errno` 0 is an ack; `seq` is the echoed request's."""

    errno: int
    seq: int
    kernel_reason: str = ""


def decode_error(message: Message) -> ErrorReply:
    payload = message.payload
    if len(payload) < _I32.size + NLMSG_HDR.size:
        raise CodecError(f"NLMSG_ERROR payload of {len(payload)} bytes")
    error = decode_i32(payload)
    orig_len, _, _, orig_seq, _ = NLMSG_HDR.unpack_from(payload, _I32.size)
    reason = ""
    if message.flags & NLM_F_ACK_TLVS:
        # The echoed request is its header alone when capped, else the whole request.
        echoed = NLMSG_HDR.size if message.flags & NLM_F_CAPPED else orig_len
        tlvs = parse_attrs(payload[_I32.size + align(echoed) :])
        if NLMSGERR_ATTR_MSG in tlvs:
            reason = decode_str(tlvs[NLMSGERR_ATTR_MSG])
    return ErrorReply(-error, orig_seq, reason)


@dataclass
class Reply:
    """Sans-I/O collector for the answer to one request: feed it every message read from the
    socket; it keeps those of its sequence number and says when the answer is complete.

    Modes: `dump` reads NLM_F_MULTI parts to NLMSG_DONE; otherwise the answer is one message,
    either the ack/error (an ACKed change) or the object asked for (a GET without NLM_F_ACK).
    """

    seq: int
    dump: bool
    messages: list[Message] = field(default_factory=list)
    errno: int = 0
    kernel_reason: str = ""
    interrupted: bool = False
    done: bool = False

    def feed(self, message: Message) -> bool:
        """Takes one message; returns whether the answer is now complete."""
        if self.done:
            raise CodecError(f"reply {self.seq} fed after completion")
        if message.seq != self.seq or message.msg_type == NLMSG_NOOP:
            return False  # a stale answer to an abandoned request, or padding
        if message.msg_type == NLMSG_OVERRUN:
            raise CodecError("netlink overrun: the kernel dropped messages")
        if message.flags & NLM_F_DUMP_INTR:
            self.interrupted = True
        if message.msg_type == NLMSG_ERROR:
            error = decode_error(message)
            self.errno, self.kernel_reason = error.errno, error.kernel_reason
            self.done = True
        elif message.msg_type == NLMSG_DONE:
            # The payload, when present, is the dump's final int error (linux netlink_dump).
            if len(message.payload) >= _I32.size:
                self.errno = -decode_i32(message.payload)
            self.done = True
        else:
            self.messages.append(message)
            self.done = not self.dump
        return self.done


# --- family headers and requests ------------------------------------------------------------
def ifinfomsg(index: int = 0, *, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    # ifi_type 0: the kernel fills it in replies and ignores it in requests.
    return IFINFOMSG.pack(family, 0, index, flags, change)


def encode_mac(mac: str) -> bytes:
    parts = mac.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts if len(p) in (1, 2))
    except ValueError:
        raw = b""
    if len(raw) != MAC_LEN or len(parts) != MAC_LEN:
        raise ValueError(f"invalid MAC address: {mac!r}")
    return raw


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def check_ifname(name: str) -> str:
    """The kernel's dev_valid_name: 1..15 bytes, not "." or "..", no "/", ":" or whitespace."""
    encoded = name.encode()
    if (
        not 0 < len(encoded) < IFNAMSIZ
        or name in (".", "..")
        or any(c in name for c in "/:")
        or any(c.isspace() for c in name)
    ):
        raise ValueError(f"invalid interface name: {name!r}")
    return name


def link_request(index: int = 0, *attrs: bytes, flags: int = 0, change: int = 0) -> bytes:
    return ifinfomsg(index, flags=flags, change=change) + b"".join(attrs)


def get_link_by_name(name: str) -> bytes:
    return link_request(
        0,
        attr_str(IFLA_IFNAME, check_ifname(name)),
        attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
    )


def dump_links() -> bytes:
    return link_request(0, attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))


def new_bridge(name: str, mtu_bytes: int) -> bytes:
    return link_request(
        0,
        attr_str(IFLA_IFNAME, check_ifname(name)),
        attr_u32(IFLA_MTU, mtu_bytes),
        nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge")),
    )


def new_veth(
    name: str, peer_name: str, *, peer_netns_fd: int | None = None, mtu_bytes: int | None = None
) -> bytes:
    """A veth pair; the peer's own ifinfomsg and attributes sit in VETH_INFO_PEER
    (linux/veth.h), and IFLA_NET_NS_FD there creates the peer directly in that namespace."""
    mtu = [] if mtu_bytes is None else [attr_u32(IFLA_MTU, mtu_bytes)]
    peer_attrs = [attr_str(IFLA_IFNAME, check_ifname(peer_name)), *mtu]
    if peer_netns_fd is not None:
        peer_attrs.append(attr_u32(IFLA_NET_NS_FD, peer_netns_fd))
    peer = attr(VETH_INFO_PEER | NLA_F_NESTED, ifinfomsg() + b"".join(peer_attrs))
    return link_request(
        0,
        attr_str(IFLA_IFNAME, check_ifname(name)),
        *mtu,
        nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "veth"), nested(IFLA_INFO_DATA, peer)),
    )


def set_link_up(name: str, up: bool) -> bytes:
    """Administrative state of a link addressed by name; ifi_change limits the change to
    IFF_UP, leaving the other flags as they are."""
    return link_request(
        0, attr_str(IFLA_IFNAME, check_ifname(name)), flags=IFF_UP if up else 0, change=IFF_UP
    )


def set_hairpin(index: int, on: bool) -> bytes:
    """Bridge port hairpin mode as moby's netlink.LinkSetHairpin sends it: an AF_BRIDGE
    SETLINK carrying IFLA_PROTINFO { IFLA_BRPORT_MODE u8 }."""
    return ifinfomsg(index, family=AF_BRIDGE) + nested(
        IFLA_PROTINFO, attr_u8(IFLA_BRPORT_MODE, 1 if on else 0)
    )


def delete_link_by_name(name: str) -> bytes:
    return link_request(0, attr_str(IFLA_IFNAME, check_ifname(name)))


def new_address(index: int, cidr: str) -> bytes:
    """An IPv4 or IPv6 interface address. IPv4 gets the subnet broadcast when the prefix leaves
    room for one (/30 and shorter), as moby's netlink.AddrAdd does, so `ip addr` in a container
    shows `brd 172.18.255.255` as with Docker."""
    interface = ipaddress.ip_interface(cidr)
    ip = interface.ip.packed
    family = AF_INET if interface.version == 4 else AF_INET6
    prefix = interface.network.prefixlen
    attrs = [attr(IFA_LOCAL, ip), attr(IFA_ADDRESS, ip)]
    if interface.version == 4 and prefix < 31:
        attrs.append(attr(IFA_BROADCAST, interface.network.broadcast_address.packed))
    return IFADDRMSG.pack(family, prefix, 0, RT_SCOPE_UNIVERSE, index) + b"".join(attrs)


def dump_addresses(family: int) -> bytes:
    return IFADDRMSG.pack(family, 0, 0, 0, 0)


def new_default_route(gateway: str, oif_index: int | None = None) -> bytes:
    """The main table's IPv4 default route via `gateway` (what `ip route add default via`
    sends); without an output interface the kernel resolves it through the connected route."""
    gw = ipaddress.IPv4Address(gateway)
    attrs = [attr(RTA_GATEWAY, gw.packed)]
    if oif_index is not None:
        attrs.append(attr_u32(RTA_OIF, oif_index))
    header = RTMSG.pack(
        AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    )
    return header + b"".join(attrs)


def dump_routes(family: int) -> bytes:
    return RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)


# --- replies --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """A network interface as RTM_NEWLINK describes it.

    `kind` is IFLA_INFO_KIND ("bridge", "veth"; "" for loopback and physical devices);
    `master_index` 0 means no master; `link_index` is IFLA_LINK (a veth's peer index, in the
    peer's namespace); `peer_netns_id` is IFLA_LINK_NETNSID, set when the peer lives in another
    namespace (the id is local to this namespace)."""

    index: int
    name: str
    kind: str
    master_index: int
    mac: str
    mtu: int
    up: bool
    link_index: int = 0
    peer_netns_id: int | None = None


def decode_link(payload: bytes) -> Link:
    if len(payload) < IFINFOMSG.size:
        raise CodecError(f"ifinfomsg of {len(payload)} bytes")
    _, _, index, flags, _ = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload[IFINFOMSG.size :])
    kind = ""
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        kind = decode_str(info.get(IFLA_INFO_KIND, b""))
    return Link(
        index=index,
        name=decode_str(attrs.get(IFLA_IFNAME, b"")),
        kind=kind,
        master_index=decode_u32(attrs[IFLA_MASTER]) if IFLA_MASTER in attrs else 0,
        mac=format_mac(attrs.get(IFLA_ADDRESS, b"")),
        mtu=decode_u32(attrs[IFLA_MTU]) if IFLA_MTU in attrs else 0,
        up=bool(flags & IFF_UP),
        link_index=decode_u32(attrs[IFLA_LINK]) if IFLA_LINK in attrs else 0,
        peer_netns_id=(
            decode_i32(attrs[IFLA_LINK_NETNSID]) if IFLA_LINK_NETNSID in attrs else None
        ),
    )


@dataclass(frozen=True)
class Address:
    """An interface address: `cidr` is the local address with the prefix length."""

    index: int
    cidr: str


def decode_address(payload: bytes) -> Address:
    if len(payload) < IFADDRMSG.size:
        raise CodecError(f"ifaddrmsg of {len(payload)} bytes")
    family, prefix, _, _, index = IFADDRMSG.unpack_from(payload)
    attrs = parse_attrs(payload[IFADDRMSG.size :])
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point
    # links and equals IFA_LOCAL elsewhere (linux/if_addr.h).
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        raise CodecError(f"address of interface {index} without IFA_LOCAL/IFA_ADDRESS")
    return Address(index, f"{_ip(family, raw)}/{prefix}")


@dataclass(frozen=True)
class Route:
    """A route: destination as a CIDR, its table, type, gateway ("" if none), output index."""

    dst: str
    table: int
    route_type: int
    gateway: str = ""
    oif_index: int = 0


def decode_route(payload: bytes) -> Route:
    if len(payload) < RTMSG.size:
        raise CodecError(f"rtmsg of {len(payload)} bytes")
    family, dst_len, _, _, table, _, _, route_type, _ = RTMSG.unpack_from(payload)
    attrs = parse_attrs(payload[RTMSG.size :])
    if RTA_DST in attrs:
        dst = _ip(family, attrs[RTA_DST])
    else:
        dst = "0.0.0.0" if family == AF_INET else "::"
    if RTA_TABLE in attrs:  # rtm_table is 8 bits; tables above 255 come in RTA_TABLE only
        table = decode_u32(attrs[RTA_TABLE])
    return Route(
        dst=f"{dst}/{dst_len}",
        table=table,
        route_type=route_type,
        gateway=_ip(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else "",
        oif_index=decode_u32(attrs[RTA_OIF]) if RTA_OIF in attrs else 0,
    )


def _ip(family: int, raw: bytes) -> str:
    if family == AF_INET and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if family == AF_INET6 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    raise CodecError(f"address of family {family} with {len(raw)} bytes")


def names_by_index(links: Iterable[Link]) -> Mapping[int, str]:
    return {link.index: link.name for link in links}
