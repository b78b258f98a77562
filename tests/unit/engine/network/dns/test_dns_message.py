"""The DNS wire codec against dnspython as an independent reference, and against garbage."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dockyard.engine.network.dns.message import (
    EDNS_PAYLOAD_SIZE,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    UDP_PLAIN_LIMIT,
    AnswerRecord,
    Dropped,
    Query,
    Rejected,
    decode_message,
    decode_query,
    encode_reply,
    labels_to_text,
    relay_reply,
    text_to_labels,
    with_id,
)

pytestmark = pytest.mark.unit


def _query(name: str, rdtype: str = "A", **kwargs: object) -> tuple[dns.message.Message, Query]:
    ref = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    decoded = decode_query(ref.to_wire())
    assert isinstance(decoded, Query)
    return ref, decoded


def test_parses_a_plain_query() -> None:
    ref, query = _query("Web.Example.", "AAAA")
    assert query.id == ref.id
    assert query.question.labels == (b"Web", b"Example")
    assert query.question.name == "Web.Example."
    assert query.question.qtype == TYPE_AAAA
    assert query.recursion_desired
    assert query.edns is None
    assert query.udp_limit() == UDP_PLAIN_LIMIT


def test_parses_edns0_and_caps_the_payload_size() -> None:
    _, query = _query("web.", use_edns=0, payload=1232, want_dnssec=True)
    assert query.edns is not None
    assert (query.edns.udp_payload_size, query.edns.version, query.edns.dnssec_ok) == (
        1232,
        0,
        True,
    )
    assert query.udp_limit() == 1232
    _, big = _query("web.", use_edns=0, payload=65000)
    assert big.udp_limit() == EDNS_PAYLOAD_SIZE
    _, tiny = _query("web.", use_edns=0, payload=100)
    assert tiny.udp_limit() == UDP_PLAIN_LIMIT


def test_answer_round_trips_through_dnspython() -> None:
    ref, query = _query("wEb.", "A", use_edns=0, want_dnssec=True)
    records = [AnswerRecord("wEb.", TYPE_A, 600, f"10.0.0.{i}") for i in (2, 3)]
    wire = encode_reply(query, RCODE_NOERROR, records)
    reply = dns.message.from_wire(wire)
    assert reply.id == ref.id
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert not reply.flags & dns.flags.AA
    assert reply.question[0].name.to_text() == "wEb."  # question echoed verbatim
    (rrset,) = reply.answer
    assert rrset.ttl == 600
    assert sorted(r.address for r in rrset) == ["10.0.0.2", "10.0.0.3"]
    assert reply.edns == 0 and reply.payload == EDNS_PAYLOAD_SIZE
    assert reply.ednsflags & dns.flags.DO
    # The owner names are pointers to the question: 12 + 4+1+4 + 2 pointer + 10 + 4 per record.
    assert wire[21:23] == b"\xc0\x0c"


def test_ptr_and_aaaa_round_trip() -> None:
    _, query = _query("2.0.0.10.in-addr.arpa.", "PTR")
    wire = encode_reply(
        query, RCODE_NOERROR, [AnswerRecord("2.0.0.10.in-addr.arpa.", TYPE_PTR, 600, "web.net1.")]
    )
    (rrset,) = dns.message.from_wire(wire).answer
    assert rrset[0].target.to_text() == "web.net1."
    _, query6 = _query("web.", "AAAA")
    wire6 = encode_reply(query6, RCODE_NOERROR, [AnswerRecord("web.", TYPE_AAAA, 600, "fd00::2")])
    (rrset6,) = dns.message.from_wire(wire6).answer
    assert rrset6[0].address == "fd00::2"


@pytest.mark.parametrize("rcode", [RCODE_NXDOMAIN, RCODE_SERVFAIL, RCODE_NOERROR])
def test_bare_rcode_replies(rcode: int) -> None:
    _, query = _query("nope.")
    reply = dns.message.from_wire(encode_reply(query, rcode))
    assert reply.rcode() == rcode
    assert not reply.answer
    assert reply.question[0].name.to_text() == "nope."


def test_truncates_udp_answers_over_512_without_edns() -> None:
    _, query = _query("many.")
    records = [AnswerRecord("many.", TYPE_A, 600, f"10.0.{i // 256}.{i % 256}") for i in range(60)]
    wire = encode_reply(query, RCODE_NOERROR, records, limit=query.udp_limit())
    assert len(wire) <= UDP_PLAIN_LIMIT
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC
    assert 0 < len(reply.answer[0]) < 60
    full = dns.message.from_wire(encode_reply(query, RCODE_NOERROR, records))
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 60


def test_truncation_keeps_the_opt_record() -> None:
    _, query = _query("many.", use_edns=0, payload=512)
    records = [AnswerRecord("many.", TYPE_A, 600, f"10.1.0.{i}") for i in range(60)]
    wire = encode_reply(query, RCODE_NOERROR, records, limit=query.udp_limit())
    assert len(wire) <= 512
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC and reply.edns == 0


def test_unknown_edns_version_gets_badvers() -> None:
    _, query = _query("web.", use_edns=1)
    reply = dns.message.from_wire(
        encode_reply(query, RCODE_NOERROR, [AnswerRecord("web.", TYPE_A, 600, "10.0.0.2")])
    )
    assert reply.rcode() == dns.rcode.BADVERS
    assert not reply.answer


def test_follows_compression_pointers_on_parse() -> None:
    # A query whose question is followed by an additional record named by a pointer.
    ref = dns.message.make_query("a.b.example.", "A", use_edns=0)
    ref.additional.append(
        dns.rrset.from_text("x.b.example.", 60, "IN", "A", "10.0.0.1")  # compressed on wire
    )
    wire = ref.to_wire()
    assert b"\xc0" in wire[30:]
    message = decode_message(wire)
    assert message is not None
    assert message.additional[0].labels == (b"x", b"b", b"example")
    assert message.edns is not None


def _header(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0xBEEF, flags, qd, an, ns, ar)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (b"", Dropped),
        (b"\x00" * 11, Dropped),
        (_header(flags=0x8100) + b"\x00\x00\x01\x00\x01", Dropped),  # a response
        (_header(flags=0x2100) + b"\x00\x00\x01\x00\x01", Rejected),  # opcode NOTIFY: NOTIMP
        (_header(qd=0), Rejected),
        (_header(qd=2) + b"\x00\x00\x01\x00\x01" * 2, Rejected),
        (_header() + b"\x03web", Rejected),  # name runs off the end
        (_header() + b"\x03web\x00\x00", Rejected),  # truncated type/class
        (_header() + b"\xc0\x0c\x00\x01\x00\x01", Rejected),  # pointer to itself
        (_header() + b"\x01a\xc0\x0e\x00\x01\x00\x01", Rejected),  # pointer forward/loop
        (_header() + b"\x40a\x00\x00\x01\x00\x01", Rejected),  # extended label type
        (_header() + b"\x00\x00\x01\x00\x01extra", Rejected),  # trailing garbage
        (_header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", Rejected),  # > 255
        (_header(ar=1) + b"\x00\x00\x01\x00\x01\x01a\x00\x00\x29\x10\x00" + b"\0" * 6, Rejected),
    ],
)
def test_garbage_is_dropped_or_rejected(packet: bytes, expected: type) -> None:
    result = decode_query(packet)
    assert isinstance(result, expected)
    if isinstance(result, Rejected):
        reply = dns.message.from_wire(result.reply)
        assert reply.id == 0xBEEF
        assert reply.rcode() in (RCODE_FORMERR, RCODE_NOTIMP)


def test_notimp_for_other_opcodes() -> None:
    result = decode_query(_header(flags=0x2100) + b"\x00\x00\x01\x00\x01")
    assert isinstance(result, Rejected)
    assert dns.message.from_wire(result.reply).rcode() == RCODE_NOTIMP


def test_fuzzed_packets_never_raise() -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    base = [
        dns.message.make_query("web.net1.", "A").to_wire(),
        dns.message.make_query("x.example.", "AAAA", use_edns=0, want_dnssec=True).to_wire(),
        dns.message.make_query("2.0.0.10.in-addr.arpa.", "PTR").to_wire(),
    ]
    for _ in range(3000):
        packet = bytearray(rng.choice(base))
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            if op == 0 and packet:
                packet[rng.randrange(len(packet))] = rng.randrange(256)
            elif op == 1:
                packet = packet[: rng.randrange(len(packet) + 1)]
            elif op == 2:
                packet[rng.randrange(len(packet) + 1) : 0] = rng.randbytes(rng.randrange(1, 8))
            else:
                packet = bytearray(rng.randbytes(rng.randrange(64)))
        try:
            result = decode_query(bytes(packet))
            decode_message(bytes(packet))
            if isinstance(result, Query):
                encode_reply(result, RCODE_NXDOMAIN, limit=result.udp_limit())
        except Exception as exc:  # pragma: no cover - the failure report
            pytest.fail(f"seed {seed}: {bytes(packet).hex()} raised {exc!r}")


def test_relay_restores_the_id_and_checks_the_question() -> None:
    ref, query = _query("upstream.test.")
    forwarded = with_id(query.packet, 0x4242)
    upstream = dns.message.make_response(dns.message.from_wire(forwarded))
    upstream.answer.append(dns.rrset.from_text("upstream.test.", 30, "IN", "A", "10.9.8.7"))
    relayed = relay_reply(query, upstream.to_wire(), limit=512)
    assert relayed is not None
    reply = dns.message.from_wire(relayed)
    assert reply.id == ref.id and reply.answer[0][0].address == "10.9.8.7"
    other = dns.message.make_response(dns.message.make_query("other.test.", "A"))
    assert relay_reply(query, other.to_wire(), limit=512) is None
    assert relay_reply(query, b"\x00\x01garbage", limit=512) is None
    assert relay_reply(query, forwarded, limit=512) is None  # a query, not a response


def test_relay_truncates_what_does_not_fit() -> None:
    _, query = _query("big.test.", "TXT")
    upstream = dns.message.make_response(dns.message.from_wire(query.packet))
    for i in range(20):
        upstream.answer.append(
            dns.rrset.from_text("big.test.", 30, "IN", "TXT", f'"{"x" * 100}{i}"')
        )
    wire = upstream.to_wire()
    assert len(wire) > 512
    relayed = relay_reply(query, wire, limit=512)
    assert relayed is not None and len(relayed) <= 512
    reply = dns.message.from_wire(relayed)
    assert reply.flags & dns.flags.TC and not reply.answer
    assert reply.question[0].name == dns.name.from_text("big.test.")


@pytest.mark.parametrize("name", ["web.", "a.b.c.", ".", "we\\.b.x.", "\\000\\255.x."])
def test_name_text_round_trip(name: str) -> None:
    assert labels_to_text(text_to_labels(name)) == name


@pytest.mark.parametrize("name", ["a..b", "x" * 64 + ".", ("a" * 63 + ".") * 4])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        text_to_labels(name)
