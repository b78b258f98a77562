"""The embedded DNS's reply cache: same answers as without it, the client's ID, and nothing
stale after the name table changes."""

from __future__ import annotations

import struct

import pytest

from dockyard.engine.network.dns.records import DnsEndpoint, DnsTable
from dockyard.engine.network.dns.server import EmbeddedDns

pytestmark = pytest.mark.unit

CLIENT = "c" * 64  # 64 hex digits, as container IDs are
WEB = "e" * 64
NET = "a" * 64


def query(message_id: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    header = struct.pack(">HHHHHH", message_id, 0x0100, 1, 0, 0, 0)
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)


def table(web_ip: str) -> DnsTable:
    return DnsTable.build(
        [
            DnsEndpoint(CLIENT, "client", NET, "net", "172.20.0.2"),
            DnsEndpoint(WEB, "web", NET, "net", web_ip),
        ]
    )


def ask(server: EmbeddedDns, packet: bytes) -> bytes:
    replies: list[bytes] = []
    assert server.handle(CLIENT, packet, udp=True, send=replies.append)
    assert len(replies) == 1
    return replies[0]


def test_a_repeated_question_gets_the_same_answer_under_its_own_id() -> None:
    server = EmbeddedDns([], table=table("172.20.0.3"))
    first = ask(server, query(1, "web"))
    again = ask(server, query(0xBEEF, "web"))
    assert first[:2] == b"\x00\x01" and again[:2] == b"\xbe\xef"
    assert first[2:] == again[2:]
    assert first.endswith(bytes([172, 20, 0, 3]))


def test_a_table_update_is_seen_by_the_next_question() -> None:
    server = EmbeddedDns([], table=table("172.20.0.3"))
    assert ask(server, query(1, "web")).endswith(bytes([172, 20, 0, 3]))
    server.update(table("172.20.0.9"))
    assert ask(server, query(2, "web")).endswith(bytes([172, 20, 0, 9]))


def test_nxdomain_is_cached_and_forgotten_on_update() -> None:
    server = EmbeddedDns([], table=table("172.20.0.3"))
    hidden = DnsTable.build(
        [
            DnsEndpoint(CLIENT, "client", NET, "net", "172.20.0.2"),
            DnsEndpoint(WEB, "db", "b" * 64, "other", "172.21.0.3"),
        ]
    )
    server.update(hidden)
    rcode = ask(server, query(3, "db"))[3] & 0x0F
    assert rcode == 3  # NXDOMAIN: db is on a network the client is not on
    server.update(table("172.20.0.3"))
    server.update(
        DnsTable.build(
            [
                DnsEndpoint(CLIENT, "client", NET, "net", "172.20.0.2"),
                DnsEndpoint(WEB, "db", NET, "net", "172.20.0.4"),
            ]
        )
    )
    assert ask(server, query(4, "db")).endswith(bytes([172, 20, 0, 4]))
