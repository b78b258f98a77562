"""DNS wire codec for the embedded resolver (RFC 1035, RFC 6891 EDNS0): pure, bytes in, bytes out.

Role: turn a datagram or a TCP frame from a container into a `Query` (or into the reply a
malformed one deserves), build the replies the resolver sends itself (answers, NODATA,
NXDOMAIN, SERVFAIL, REFUSED, FORMERR, NOTIMP), and check and fit upstream replies that are
relayed back.

Invariants:
- Nothing here raises on wire input. `decode_query` returns `Query`, `Rejected` (a ready reply,
  FORMERR or NOTIMP, when the header was readable) or `Dropped` (no reply: shorter than a
  header, or a response rather than a query), as miekg/dns's default MsgAcceptFunc does for
  Docker's resolver. `decode_message` returns None for anything it cannot walk.
- Compression pointers are followed on parse only backwards (each pointer must point before
  the previous one), so a pointer loop cannot exist; names are limited to 255 octets and labels
  to 63 (RFC 1035 §2.3.4).
- The question of a reply is the question bytes of the query, copied verbatim: case and odd
  octets survive (resolvers compare with 0x20 randomisation in mind).
- A UDP reply never exceeds the requester's limit: 512 octets without EDNS0 (RFC 1035 §4.2.1),
  else the advertised payload size capped at `EDNS_PAYLOAD_SIZE`; what does not fit is dropped
  whole and TC is set (RFC 2181 §9).
- No I/O, no clock, no randomness: the caller owns sockets, IDs and time.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# RFC 1035 §3.2.2 / RFC 3596 / RFC 6891 type codes the resolver uses.
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1

OPCODE_QUERY = 0

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
# RFC 6891 §6.1.3: extended RCODE 16, upper 8 bits carried in the OPT TTL.
RCODE_BADVERS = 16

HEADER_SIZE = 12
# RFC 1035 §4.2.1: UDP messages without EDNS0 are limited to 512 octets.
UDP_PLAIN_LIMIT = 512
# What we advertise in our OPT and the most we send over UDP even if a client offers more
# (RFC 6891 §6.2.5 suggests 4096 as a starting point; Docker relays the client's figure).
EDNS_PAYLOAD_SIZE = 4096
# A TCP frame carries at most 65535 octets (RFC 1035 §4.2.2 two-octet length prefix).
TCP_MESSAGE_LIMIT = 65535
MAX_NAME_OCTETS = 255
MAX_LABEL_OCTETS = 63

_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
_FLAG_RA = 0x0080
_FLAG_CD = 0x0010
_OPCODE_SHIFT = 11
_OPT_DO = 0x8000

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_U16 = struct.Struct("!H")


class WireError(ValueError):
    """Raised by the internal walkers; never escapes `decode_query`/`decode_message`."""


@dataclass(frozen=True)
class Header:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> _OPCODE_SHIFT) & 0xF

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & _FLAG_AA)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & _FLAG_TC)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


@dataclass(frozen=True)
class Question:
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int

    @property
    def name(self) -> str:
        return labels_to_text(self.labels)


@dataclass(frozen=True)
class Edns:
    """The OPT pseudo-record of a message (RFC 6891 §6.1.2)."""

    udp_payload_size: int
    extended_rcode: int
    version: int
    dnssec_ok: bool
    options: bytes = b""


@dataclass(frozen=True)
class ResourceRecord:
    labels: tuple[bytes, ...]
    rtype: int
    rclass: int
    ttl_s: int
    rdata: bytes


@dataclass(frozen=True)
class Message:
    """A walked message; rdata is kept raw (names inside rdata may hold pointers)."""

    header: Header
    questions: tuple[Question, ...]
    answers: tuple[ResourceRecord, ...]
    authority: tuple[ResourceRecord, ...]
    additional: tuple[ResourceRecord, ...]
    edns: Edns | None
    question_end: int


@dataclass(frozen=True)
class Query:
    """A well-formed standard query with exactly one question."""

    id: int
    flags: int
    question: Question
    edns: Edns | None
    question_wire: bytes  # the question section as received, for verbatim echo
    packet: bytes  # the whole query as received, for forwarding

    @property
    def recursion_desired(self) -> bool:
        return bool(self.flags & _FLAG_RD)

    def udp_limit(self) -> int:
        """Largest UDP reply this requester accepts (RFC 6891 §6.2.3, never under 512)."""
        if self.edns is None:
            return UDP_PLAIN_LIMIT
        return max(UDP_PLAIN_LIMIT, min(self.edns.udp_payload_size, EDNS_PAYLOAD_SIZE))


@dataclass(frozen=True)
class Rejected:
    """The header was readable but the query is not acceptable: send `reply`."""

    reply: bytes
    reason: str


@dataclass(frozen=True)
class Dropped:
    """No reply is possible or due (not even a header, or the packet is a response)."""

    reason: str


@dataclass(frozen=True)
class AnswerRecord:
    """A record we answer with: data is an address in text form or a domain name."""

    name: str
    rtype: int
    ttl_s: int
    data: str


# ----------------------------------------------------------------------------- names


def labels_to_text(labels: Sequence[bytes]) -> str:
    """Presentation form with a trailing dot; '.', '\\' and non-printables escaped (RFC 4343)."""
    if not labels:
        return "."
    parts = []
    for label in labels:
        out = []
        for octet in label:
            if octet in (0x2E, 0x5C):
                out.append("\\" + chr(octet))
            elif 0x21 <= octet <= 0x7E:
                out.append(chr(octet))
            else:
                out.append(f"\\{octet:03d}")
        parts.append("".join(out))
    return ".".join(parts) + "."


def text_to_labels(name: str) -> tuple[bytes, ...]:
    """Inverse of `labels_to_text` (trailing dot optional). Raises ValueError when invalid."""
    if name in ("", "."):
        return ()
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            if name[i + 1 : i + 4].isdigit() and len(name[i + 1 : i + 4]) == 3:
                value = int(name[i + 1 : i + 4])
                if value > 255:
                    raise ValueError(f"bad escape in {name!r}")
                current.append(value)
                i += 4
                continue
            if i + 1 >= len(name):
                raise ValueError(f"dangling escape in {name!r}")
            current.extend(name[i + 1].encode("ascii"))
            i += 2
            continue
        if ch == ".":
            if not current:
                raise ValueError(f"empty label in {name!r}")
            labels.append(bytes(current))
            current = bytearray()
        else:
            current.extend(ch.encode("ascii"))
        i += 1
    if current:
        labels.append(bytes(current))
    _check_name(labels)
    return tuple(labels)


def _check_name(labels: Sequence[bytes]) -> None:
    if any(len(label) > MAX_LABEL_OCTETS or not label for label in labels):
        raise ValueError("label longer than 63 octets or empty")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_OCTETS:
        raise ValueError("name longer than 255 octets")


def _read_name(packet: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Read a possibly compressed name; returns the labels and the offset after it in place."""
    labels: list[bytes] = []
    total = 1
    end: int | None = None
    limit = offset  # pointers must go strictly backwards from here (RFC 1035 §4.1.4 use)
    pos = offset
    while True:
        if pos >= len(packet):
            raise WireError("name runs past the end")
        length = packet[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(packet):
                raise WireError("truncated pointer")
            target = ((length & 0x3F) << 8) | packet[pos + 1]
            if end is None:
                end = pos + 2
            if target >= limit:
                raise WireError("forward or looping compression pointer")
            limit = target
            pos = target
            continue
        if kind != 0:
            # 0x40 / 0x80: extended label types (RFC 6891 §5 deprecates them).
            raise WireError("unsupported label type")
        if length == 0:
            pos += 1
            break
        if pos + 1 + length > len(packet):
            raise WireError("label runs past the end")
        total += length + 1
        if total > MAX_NAME_OCTETS:
            raise WireError("name longer than 255 octets")
        labels.append(packet[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return tuple(labels), (end if end is not None else pos)


def _fold(labels: Sequence[bytes]) -> tuple[bytes, ...]:
    # RFC 4343: ASCII case-insensitive comparison, other octets compared exactly.
    return tuple(label.lower() for label in labels)


def same_name(a: Sequence[bytes], b: Sequence[bytes]) -> bool:
    return _fold(a) == _fold(b)


# ----------------------------------------------------------------------------- parse


def decode_message(packet: bytes) -> Message | None:
    """Walk every section of a message; None when it is malformed in any way."""
    try:
        return _walk(packet)
    except WireError:
        return None


def _walk(packet: bytes) -> Message:
    if len(packet) < HEADER_SIZE:
        raise WireError("shorter than a header")
    header = Header(*_HEADER.unpack_from(packet, 0))
    pos = HEADER_SIZE
    questions = []
    for _ in range(header.qdcount):
        labels, pos = _read_name(packet, pos)
        if pos + 4 > len(packet):
            raise WireError("truncated question")
        qtype, qclass = struct.unpack_from("!HH", packet, pos)
        pos += 4
        questions.append(Question(labels, qtype, qclass))
    question_end = pos
    sections: list[list[ResourceRecord]] = [[], [], []]
    counts = (header.ancount, header.nscount, header.arcount)
    edns: Edns | None = None
    for index, count in enumerate(counts):
        for _ in range(count):
            labels, pos = _read_name(packet, pos)
            if pos + _RR_FIXED.size > len(packet):
                raise WireError("truncated record")
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(packet, pos)
            pos += _RR_FIXED.size
            if pos + rdlength > len(packet):
                raise WireError("rdata runs past the end")
            rdata = packet[pos : pos + rdlength]
            pos += rdlength
            if rtype == TYPE_OPT:
                # RFC 6891 §6.1.1: one OPT at most, in the additional section, owner root.
                if index != 2 or edns is not None or labels:
                    raise WireError("misplaced OPT record")
                edns = Edns(
                    udp_payload_size=rclass,
                    extended_rcode=ttl >> 24,
                    version=(ttl >> 16) & 0xFF,
                    dnssec_ok=bool(ttl & _OPT_DO),
                    options=rdata,
                )
                continue
            sections[index].append(ResourceRecord(labels, rtype, rclass, ttl, rdata))
    if pos != len(packet):
        raise WireError("trailing octets after the last record")
    return Message(
        header=header,
        questions=tuple(questions),
        answers=tuple(sections[0]),
        authority=tuple(sections[1]),
        additional=tuple(sections[2]),
        edns=edns,
        question_end=question_end,
    )


def decode_query(packet: bytes) -> Query | Rejected | Dropped:
    """Classify a packet from a container; never raises."""
    if len(packet) < HEADER_SIZE:
        return Dropped("shorter than a DNS header")
    header = Header(*_HEADER.unpack_from(packet, 0))
    if header.is_response:
        # miekg/dns MsgIgnore: a response sent to a server gets no reply (no reflection loops).
        return Dropped("a response, not a query")
    if header.opcode != OPCODE_QUERY:
        return Rejected(_bare_reply(header, RCODE_NOTIMP), "opcode not implemented")
    # miekg/dns DefaultMsgAcceptFunc: exactly one question, no answers to speak of.
    if header.qdcount != 1 or header.ancount > 1 or header.nscount > 1 or header.arcount > 2:
        return Rejected(_bare_reply(header, RCODE_FORMERR), "unexpected section counts")
    message = decode_message(packet)
    if message is None:
        return Rejected(_bare_reply(header, RCODE_FORMERR), "malformed message")
    question_wire = packet[HEADER_SIZE : message.question_end]
    return Query(
        id=header.id,
        flags=header.flags,
        question=message.questions[0],
        edns=message.edns,
        question_wire=question_wire,
        packet=packet,
    )


def _bare_reply(header: Header, rcode: int) -> bytes:
    """A header-only reply (no question): what miekg/dns sends for rejected messages."""
    flags = _FLAG_QR | (header.flags & (0xF << _OPCODE_SHIFT)) | (header.flags & _FLAG_RD)
    return _HEADER.pack(header.id, flags | rcode, 0, 0, 0, 0)


# ----------------------------------------------------------------------------- build


class _NameWriter:
    """Appends names with compression pointers to suffixes already written (RFC 1035 §4.1.4)."""

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer
        self._offsets: dict[tuple[bytes, ...], int] = {}

    def snapshot(self) -> dict[tuple[bytes, ...], int]:
        return dict(self._offsets)

    def restore(self, offsets: dict[tuple[bytes, ...], int]) -> None:
        self._offsets = offsets

    def remember(self, labels: Sequence[bytes], offset: int, written: int | None = None) -> None:
        """Record where each suffix of `labels` starts; only the first `written` labels are
        literally at `offset` onwards (the rest sits behind a pointer)."""
        pos = offset
        for i in range(len(labels) if written is None else written):
            if pos < 0x4000:
                self._offsets.setdefault(_fold(labels[i:]), pos)
            pos += 1 + len(labels[i])

    def write(self, labels: Sequence[bytes]) -> None:
        start = len(self._buffer)
        for i in range(len(labels)):
            pointer = self._offsets.get(_fold(labels[i:]))
            if pointer is not None:
                self._buffer.extend(_U16.pack(0xC000 | pointer))
                self.remember(labels, start, written=i)
                return
            self._buffer.append(len(labels[i]))
            self._buffer.extend(labels[i])
        self._buffer.append(0)
        self.remember(labels, start)


def _rdata(record: AnswerRecord, writer: _NameWriter, buffer: bytearray) -> None:
    if record.rtype == TYPE_A:
        data = ipaddress.IPv4Address(record.data).packed
    elif record.rtype == TYPE_AAAA:
        data = ipaddress.IPv6Address(record.data).packed
    elif record.rtype == TYPE_PTR:
        length_at = len(buffer)
        buffer.extend(b"\0\0")
        writer.write(text_to_labels(record.data))
        _U16.pack_into(buffer, length_at, len(buffer) - length_at - 2)
        return
    else:
        raise ValueError(f"cannot encode record type {record.rtype}")
    buffer.extend(_U16.pack(len(data)))
    buffer.extend(data)


def _opt_record(edns: Edns, extended_rcode: int) -> bytes:
    # RFC 6891 §6.1.1/§7: we speak version 0, echo DO (we never sign, but must not clear it
    # for a requester that asked), and carry no options of our own.
    ttl = (extended_rcode << 24) | (_OPT_DO if edns.dnssec_ok else 0)
    return b"\0" + _RR_FIXED.pack(TYPE_OPT, EDNS_PAYLOAD_SIZE, ttl, 0)


def encode_reply(
    query: Query,
    rcode: int,
    answers: Sequence[AnswerRecord] = (),
    *,
    limit: int = TCP_MESSAGE_LIMIT,
) -> bytes:
    """Our own reply to `query`: RA set as Docker's setCommonFlags, AA clear, RD/CD copied.

    Records that would make the message longer than `limit` are left out and TC is set.
    """
    full_rcode = rcode
    if query.edns is not None and query.edns.version != 0:
        # RFC 6891 §6.1.3: unknown EDNS version -> BADVERS, no answers.
        full_rcode, answers = RCODE_BADVERS, ()
    flags = _FLAG_QR | _FLAG_RA | (query.flags & (_FLAG_RD | _FLAG_CD)) | (full_rcode & 0xF)
    opt = _opt_record(query.edns, full_rcode >> 4) if query.edns is not None else b""
    buffer = bytearray(_HEADER.size)
    buffer.extend(query.question_wire)
    writer = _NameWriter(buffer)
    writer.remember(query.question.labels, HEADER_SIZE)
    written = 0
    truncated = False
    for record in answers:
        mark = len(buffer)
        writer_state = writer.snapshot()
        writer.write(text_to_labels(record.name))
        buffer.extend(struct.pack("!HHI", record.rtype, CLASS_IN, record.ttl_s))
        _rdata(record, writer, buffer)
        if len(buffer) + len(opt) > limit:
            del buffer[mark:]
            writer.restore(writer_state)
            truncated = True
            break
        written += 1
    if truncated:
        flags |= _FLAG_TC
    buffer.extend(opt)
    _HEADER.pack_into(buffer, 0, query.id, flags, 1, written, 0, 1 if opt else 0)
    return bytes(buffer)


def relay_reply(query: Query, upstream_reply: bytes, *, limit: int) -> bytes | None:
    """Fit an upstream reply for the requester: its ID restored, `limit` respected.

    Returns None when the upstream reply does not answer this query (wrong question, not a
    response, malformed): the caller tries the next upstream. When the reply is too long it is
    cut to header, question and OPT with TC set, so the requester retries over TCP.
    """
    message = decode_message(upstream_reply)
    if message is None or not message.header.is_response or len(message.questions) != 1:
        return None
    asked = query.question
    got = message.questions[0]
    if not same_name(asked.labels, got.labels) or (asked.qtype, asked.qclass) != (
        got.qtype,
        got.qclass,
    ):
        return None
    if len(upstream_reply) <= limit:
        return _U16.pack(query.id) + upstream_reply[2:]
    flags = message.header.flags | _FLAG_TC
    opt = b""
    if message.edns is not None:
        opt = b"\0" + _RR_FIXED.pack(
            TYPE_OPT,
            message.edns.udp_payload_size,
            (message.edns.extended_rcode << 24)
            | (message.edns.version << 16)
            | (_OPT_DO if message.edns.dnssec_ok else 0),
            0,
        )
    head = _HEADER.pack(query.id, flags, 1, 0, 0, 1 if opt else 0)
    return head + upstream_reply[HEADER_SIZE : message.question_end] + opt


def with_id(packet: bytes, message_id: int) -> bytes:
    """The same message under another ID (the upstream sees our ID, never the container's)."""
    return _U16.pack(message_id) + packet[2:]


def reply_id(packet: bytes) -> int | None:
    return _U16.unpack_from(packet, 0)[0] if len(packet) >= 2 else None
