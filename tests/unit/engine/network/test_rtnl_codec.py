"""The rtnetlink codec against the kernel's wire layout (linux/netlink.h, rtnetlink.h,
if_link.h, veth.h): alignment, nested attributes, requests, replies, errors and dumps."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.engine.network import rtnl_codec as c

pytestmark = pytest.mark.unit

ENOENT, EEXIST, ENODEV = 2, 17, 19


def header(length: int, msg_type: int, flags: int, seq: int, port_id: int = 0) -> bytes:
    return struct.pack("=IHHII", length, msg_type, flags, seq, port_id)


# --- alignment and attributes ---------------------------------------------------------------
@pytest.mark.parametrize(("length", "aligned"), [(0, 0), (1, 4), (4, 4), (5, 8), (16, 16)])
def test_align_rounds_up_to_four(length: int, aligned: int) -> None:
    assert c.align(length) == aligned


def test_attribute_length_excludes_padding() -> None:
    # "eth0\0" is 5 bytes: rta_len 9, padded to 12 so the next attribute starts aligned.
    encoded = c.attr_str(c.IFLA_IFNAME, "eth0")
    assert encoded == struct.pack("=HH", 9, c.IFLA_IFNAME) + b"eth0\0" + b"\0\0\0"
    # "br0\0" fills the 4-byte word: no padding.
    assert c.attr_str(c.IFLA_IFNAME, "br0") == struct.pack("=HH", 8, 3) + b"br0\0"
    assert c.attr_u32(c.IFLA_MTU, 1500) == struct.pack("=HHI", 8, 4, 1500)
    assert c.attr_u8(c.IFLA_BRPORT_MODE, 1) == struct.pack("=HHB", 5, 4, 1) + b"\0" * 3


def test_nested_attribute_sets_the_flag_and_decoders_mask_it() -> None:
    inner = c.attr_str(c.IFLA_INFO_KIND, "veth")
    encoded = c.nested(c.IFLA_LINKINFO, inner)
    length, raw_type = struct.unpack_from("=HH", encoded)
    assert raw_type == c.IFLA_LINKINFO | c.NLA_F_NESTED
    assert length == 4 + len(inner)
    ((attr_type, value),) = list(c.iter_attrs(encoded))
    assert attr_type == c.IFLA_LINKINFO
    assert c.parse_attrs(value) == {c.IFLA_INFO_KIND: b"veth\0"}


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=0x3FFF), st.binary(max_size=64)),
        max_size=12,
    )
)
def test_attributes_round_trip(attrs: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(c.attr(t, v) for t, v in attrs)
    assert len(encoded) % 4 == 0
    assert list(c.iter_attrs(encoded)) == attrs


def test_parse_attrs_keeps_the_last_of_a_repeated_type() -> None:
    encoded = c.attr_u32(c.IFLA_MTU, 1) + c.attr_u32(c.IFLA_MTU, 2)
    assert c.decode_u32(c.parse_attrs(encoded)[c.IFLA_MTU]) == 2


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x00",  # shorter than a header
        struct.pack("=HH", 12, 1) + b"abcd",  # claims more than there is
        struct.pack("=HH", 2, 1),  # shorter than its own header
    ],
)
def test_malformed_attributes_are_rejected(data: bytes) -> None:
    with pytest.raises(c.CodecError):
        list(c.iter_attrs(data))


# --- messages -------------------------------------------------------------------------------
def test_message_header_and_padding() -> None:
    encoded = c.encode_message(c.RTM_GETLINK, c.NLM_F_REQUEST | c.NLM_F_DUMP, 7, b"abcde")
    assert encoded[:16] == header(21, c.RTM_GETLINK, 0x301, 7)
    assert encoded[16:] == b"abcde\0\0\0"
    assert c.decode_messages(encoded) == [c.Message(c.RTM_GETLINK, 0x301, 7, 0, b"abcde")]


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=16, max_value=0xFFFF),
            st.integers(min_value=0, max_value=0xFFFF),
            st.integers(min_value=0, max_value=0xFFFFFFFF),
            st.binary(max_size=40),
        ),
        max_size=8,
    )
)
def test_messages_of_one_datagram_round_trip(
    specs: list[tuple[int, int, int, bytes]],
) -> None:
    datagram = b"".join(c.encode_message(t, f, s, p, port_id=9) for t, f, s, p in specs)
    assert c.decode_messages(datagram) == [c.Message(t, f, s, 9, p) for t, f, s, p in specs]


@pytest.mark.parametrize(
    "data",
    [
        header(16, 1, 0, 1)[:10],  # torn header
        header(40, 16, 0, 1) + b"\0" * 8,  # length past the datagram
        header(8, 16, 0, 1),  # length shorter than the header
    ],
)
def test_malformed_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(c.CodecError):
        c.decode_messages(data)


# --- requests -------------------------------------------------------------------------------
def test_new_bridge_request_bytes() -> None:
    expected = (
        struct.pack("=BxHiII", 0, 0, 0, 0, 0)
        + struct.pack("=HH", 8, c.IFLA_IFNAME)
        + b"br0\0"
        + struct.pack("=HHI", 8, c.IFLA_MTU, 1450)
        + struct.pack("=HH", 16, c.IFLA_LINKINFO | c.NLA_F_NESTED)
        + struct.pack("=HH", 11, c.IFLA_INFO_KIND)
        + b"bridge\0"
        + b"\0"
    )
    assert c.new_bridge("br0", 1450) == expected


def test_new_veth_puts_the_peer_with_its_own_ifinfomsg_into_the_namespace_fd() -> None:
    payload = c.new_veth("veth1a2b3c", "eth0", peer_netns_fd=42, mtu_bytes=1400)
    attrs = c.parse_attrs(payload[c.IFINFOMSG.size :])
    assert c.decode_str(attrs[c.IFLA_IFNAME]) == "veth1a2b3c"
    assert c.decode_u32(attrs[c.IFLA_MTU]) == 1400
    info = c.parse_attrs(attrs[c.IFLA_LINKINFO])
    assert c.decode_str(info[c.IFLA_INFO_KIND]) == "veth"
    peer = c.parse_attrs(info[c.IFLA_INFO_DATA])[c.VETH_INFO_PEER]
    assert peer[: c.IFINFOMSG.size] == bytes(16)
    peer_attrs = c.parse_attrs(peer[c.IFINFOMSG.size :])
    assert c.decode_str(peer_attrs[c.IFLA_IFNAME]) == "eth0"
    assert c.decode_u32(peer_attrs[c.IFLA_NET_NS_FD]) == 42
    assert c.decode_u32(peer_attrs[c.IFLA_MTU]) == 1400


def test_new_veth_without_namespace_has_no_fd_attribute() -> None:
    payload = c.new_veth("va", "vb")
    info = c.parse_attrs(c.parse_attrs(payload[16:])[c.IFLA_LINKINFO])
    peer = c.parse_attrs(info[c.IFLA_INFO_DATA])[c.VETH_INFO_PEER]
    assert set(c.parse_attrs(peer[16:])) == {c.IFLA_IFNAME}


def test_set_link_up_changes_only_iff_up() -> None:
    family, _, index, flags, change = c.IFINFOMSG.unpack_from(c.set_link_up("eth0", True))
    assert (family, index, flags, change) == (c.AF_UNSPEC, 0, c.IFF_UP, c.IFF_UP)
    _, _, _, flags, change = c.IFINFOMSG.unpack_from(c.set_link_up("eth0", False))
    assert (flags, change) == (0, c.IFF_UP)


def test_hairpin_is_an_af_bridge_protinfo_mode() -> None:
    payload = c.set_hairpin(5, True)
    family, _, index, _, _ = c.IFINFOMSG.unpack_from(payload)
    assert (family, index) == (c.AF_BRIDGE, 5)
    ((attr_type, value),) = list(c.iter_attrs(payload[16:]))
    assert attr_type == c.IFLA_PROTINFO
    assert c.parse_attrs(value) == {c.IFLA_BRPORT_MODE: b"\x01"}
    off = c.parse_attrs(c.set_hairpin(5, False)[16:])[c.IFLA_PROTINFO]
    assert c.parse_attrs(off) == {c.IFLA_BRPORT_MODE: b"\x00"}


def test_ipv4_address_gets_the_subnet_broadcast_like_moby() -> None:
    payload = c.new_address(3, "172.18.0.2/16")
    assert c.IFADDRMSG.unpack_from(payload) == (c.AF_INET, 16, 0, 0, 3)
    attrs = c.parse_attrs(payload[c.IFADDRMSG.size :])
    assert attrs[c.IFA_LOCAL] == attrs[c.IFA_ADDRESS] == bytes([172, 18, 0, 2])
    assert attrs[c.IFA_BROADCAST] == bytes([172, 18, 255, 255])


@pytest.mark.parametrize("cidr", ["10.0.0.1/31", "10.0.0.1/32", "fd00::2/64"])
def test_no_broadcast_where_a_subnet_has_none(cidr: str) -> None:
    payload = c.new_address(3, cidr)
    assert c.IFA_BROADCAST not in c.parse_attrs(payload[c.IFADDRMSG.size :])


def test_default_route_request() -> None:
    payload = c.new_default_route("172.18.0.1", oif_index=2)
    assert c.RTMSG.unpack_from(payload) == (
        c.AF_INET, 0, 0, 0, c.RT_TABLE_MAIN, c.RTPROT_BOOT, c.RT_SCOPE_UNIVERSE, c.RTN_UNICAST, 0
    )  # fmt: skip
    attrs = c.parse_attrs(payload[c.RTMSG.size :])
    assert attrs == {c.RTA_GATEWAY: bytes([172, 18, 0, 1]), c.RTA_OIF: struct.pack("=I", 2)}
    assert c.RTA_OIF not in c.parse_attrs(c.new_default_route("10.0.0.1")[c.RTMSG.size :])


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a:b", "a b", ".", ".."])
def test_invalid_interface_names_are_refused_before_the_kernel(name: str) -> None:
    with pytest.raises(ValueError, match="invalid interface name"):
        c.new_bridge(name, 1500)


def test_fifteen_byte_names_fit_ifnamsiz() -> None:
    assert c.check_ifname("veth0123456789a") == "veth0123456789a"


@pytest.mark.parametrize("mac", ["02:42:ac:11:00", "02:42:ac:11:00:02:03", "zz:42:ac:11:00:02", ""])
def test_invalid_mac_is_refused(mac: str) -> None:
    with pytest.raises(ValueError, match="invalid MAC address"):
        c.encode_mac(mac)


def test_mac_round_trip() -> None:
    assert c.format_mac(c.encode_mac("02:42:AC:11:00:02")) == "02:42:ac:11:00:02"


# --- errors and acks ------------------------------------------------------------------------
def error_message(
    errno: int, seq: int, *, reason: str = "", capped: bool = True, echoed: bytes = b""
) -> c.Message:
    body = struct.pack("=i", -errno) + header(16 + len(echoed), c.RTM_NEWLINK, 0x605, seq)
    flags = c.NLM_F_CAPPED if capped else 0
    if not capped:
        body += echoed + b"\0" * (c.align(len(echoed)) - len(echoed))
    if reason:
        flags |= c.NLM_F_ACK_TLVS
        body += c.attr_str(c.NLMSGERR_ATTR_MSG, reason)
    return c.Message(c.NLMSG_ERROR, flags, seq, 0, body)


def test_ack_is_an_error_of_zero() -> None:
    assert c.decode_error(error_message(0, 5)) == c.ErrorReply(0, 5)


def test_error_with_extended_ack_reason() -> None:
    reply = c.decode_error(error_message(EEXIST, 6, reason="Device already exists"))
    assert reply == c.ErrorReply(EEXIST, 6, "Device already exists")


def test_extended_ack_after_an_uncapped_echo_of_the_request() -> None:
    message = error_message(ENODEV, 8, reason="no such link", capped=False, echoed=b"\1" * 21)
    assert c.decode_error(message) == c.ErrorReply(ENODEV, 8, "no such link")


def test_truncated_error_is_rejected() -> None:
    with pytest.raises(c.CodecError):
        c.decode_error(c.Message(c.NLMSG_ERROR, 0, 1, 0, b"\0\0\0\0"))


def test_netlink_error_names_the_operation() -> None:
    error = c.NetlinkError(EEXIST, "add veth veth1a2b3c: File exists", "Device exists")
    assert str(error) == "add veth veth1a2b3c: File exists"
    assert error.errno == EEXIST
    assert error.kernel_reason == "Device exists"
    assert isinstance(error, OSError)


# --- replies --------------------------------------------------------------------------------
def link_payload(
    index: int,
    name: str,
    *,
    kind: str = "",
    up: bool = False,
    master: int = 0,
    netnsid: int | None = None,
) -> bytes:
    attrs = [
        c.attr_str(c.IFLA_IFNAME, name),
        c.attr_u32(c.IFLA_MTU, 1500),
        c.attr(c.IFLA_ADDRESS, bytes.fromhex("0242ac120002")),
    ]
    if kind:
        attrs.append(c.nested(c.IFLA_LINKINFO, c.attr_str(c.IFLA_INFO_KIND, kind)))
    if master:
        attrs.append(c.attr_u32(c.IFLA_MASTER, master))
    if netnsid is not None:
        attrs.append(c.attr_u32(c.IFLA_LINK, 7))
        attrs.append(c.attr(c.IFLA_LINK_NETNSID, struct.pack("=i", netnsid)))
    flags = c.IFF_UP | 0x1000 if up else 0x1000
    return struct.pack("=BxHiII", 0, 1, index, flags, 0) + b"".join(attrs)


def test_decode_link() -> None:
    link = c.decode_link(link_payload(4, "veth0", kind="veth", up=True, master=2, netnsid=0))
    assert link == c.Link(
        index=4,
        name="veth0",
        kind="veth",
        master_index=2,
        mac="02:42:ac:12:00:02",
        mtu=1500,
        up=True,
        link_index=7,
        peer_netns_id=0,
    )
    plain = c.decode_link(link_payload(1, "lo"))
    assert (plain.kind, plain.master_index, plain.up, plain.peer_netns_id) == ("", 0, False, None)


def test_decode_address_prefers_ifa_local() -> None:
    payload = c.IFADDRMSG.pack(c.AF_INET, 32, 0, 0, 3) + (
        c.attr(c.IFA_ADDRESS, bytes([10, 0, 0, 2])) + c.attr(c.IFA_LOCAL, bytes([10, 0, 0, 1]))
    )
    assert c.decode_address(payload) == c.Address(3, "10.0.0.1/32")
    v6 = c.IFADDRMSG.pack(c.AF_INET6, 64, 0, 0, 2) + c.attr(
        c.IFA_ADDRESS, bytes.fromhex("fd00" + "00" * 13 + "02")
    )
    assert c.decode_address(v6) == c.Address(2, "fd00::2/64")


def test_decode_routes() -> None:
    default = c.RTMSG.pack(c.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0) + (
        c.attr(c.RTA_GATEWAY, bytes([172, 18, 0, 1])) + c.attr_u32(c.RTA_OIF, 2)
    )
    assert c.decode_route(default) == c.Route("0.0.0.0/0", 254, 1, "172.18.0.1", 2)
    # Tables past 255 are only in RTA_TABLE (rtm_table says RT_TABLE_COMPAT, 252).
    subnet = c.RTMSG.pack(c.AF_INET, 16, 0, 0, 252, 2, 253, 1, 0) + (
        c.attr(c.RTA_DST, bytes([172, 18, 0, 0])) + c.attr_u32(c.RTA_TABLE, 1000)
    )
    assert c.decode_route(subnet) == c.Route("172.18.0.0/16", 1000, 1)


def test_short_family_headers_are_rejected() -> None:
    for decode in (c.decode_link, c.decode_address, c.decode_route):
        with pytest.raises(c.CodecError):
            decode(b"\0" * 4)


def test_acked_change_completes_on_its_own_ack_only() -> None:
    reply = c.Reply(seq=9, dump=False)
    assert not reply.feed(error_message(0, 8))  # a late ack of an abandoned request
    assert reply.feed(error_message(0, 9))
    assert (reply.errno, reply.messages) == (0, [])
    with pytest.raises(c.CodecError):
        reply.feed(error_message(0, 9))


def test_refused_change_carries_errno_and_reason() -> None:
    reply = c.Reply(seq=3, dump=False)
    assert reply.feed(error_message(EEXIST, 3, reason="exists"))
    assert (reply.errno, reply.kernel_reason) == (EEXIST, "exists")


def test_get_completes_on_the_object() -> None:
    reply = c.Reply(seq=4, dump=False)
    message = c.Message(c.RTM_NEWLINK, 0, 4, 0, link_payload(2, "br0"))
    assert reply.feed(message)
    assert reply.messages == [message]


def test_multipart_dump_spans_datagrams_until_done() -> None:
    reply = c.Reply(seq=11, dump=True)
    first = c.encode_message(c.RTM_NEWLINK, c.NLM_F_MULTI, 11, link_payload(1, "lo"))
    first += c.encode_message(c.RTM_NEWLINK, c.NLM_F_MULTI, 11, link_payload(2, "br0"))
    second = c.encode_message(c.RTM_NEWLINK, c.NLM_F_MULTI, 10, link_payload(9, "stale"))
    second += c.encode_message(c.RTM_NEWLINK, c.NLM_F_MULTI, 11, link_payload(3, "veth0"))
    second += c.encode_message(c.NLMSG_DONE, c.NLM_F_MULTI, 11, struct.pack("=i", 0))
    assert not any(reply.feed(m) for m in c.decode_messages(first))
    assert [reply.feed(m) for m in c.decode_messages(second)] == [False, False, True]
    assert [c.decode_link(m.payload).name for m in reply.messages] == ["lo", "br0", "veth0"]
    assert not reply.interrupted
    assert reply.errno == 0


def test_interrupted_dump_is_flagged() -> None:
    reply = c.Reply(seq=1, dump=True)
    reply.feed(c.Message(c.RTM_NEWLINK, c.NLM_F_MULTI | c.NLM_F_DUMP_INTR, 1, 0, b""))
    assert reply.feed(c.Message(c.NLMSG_DONE, c.NLM_F_MULTI, 1, 0, struct.pack("=i", 0)))
    assert reply.interrupted


def test_dump_ending_in_an_error() -> None:
    done = c.Reply(seq=2, dump=True)
    assert done.feed(c.Message(c.NLMSG_DONE, c.NLM_F_MULTI, 2, 0, struct.pack("=i", -ENOENT)))
    assert done.errno == ENOENT
    refused = c.Reply(seq=2, dump=True)
    assert refused.feed(error_message(ENODEV, 2))
    assert refused.errno == ENODEV


def test_overrun_is_never_silently_skipped() -> None:
    with pytest.raises(c.CodecError, match="overrun"):
        c.Reply(seq=1, dump=True).feed(c.Message(c.NLMSG_OVERRUN, 0, 1, 0, b""))
