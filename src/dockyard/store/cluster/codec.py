"""The peer wire format: batches of `dockyard.raft.messages.Message`, binary, versioned.

Role: turn the frames one member sends another on `POST /raft` into bytes and back. One
batch is one request body, big-endian:

    batch   = "DYR2" | cluster id u64 | sender u64 | count u32 | message*
    message = kind u8 | to u64 | frm u64 | term u64 | log term u64 | index u64 | commit u64
              | flags u8 (1: reject, 2: snapshot) | reject hint u64
              | context length u32 | context | entry count u32 | entry* | [snapshot]
    entry   = term u64 | index u64 | kind u8 | data length u32 | data
    snapshot= index u64 | term u64 | voter count u32 | voter u64* | data length u64 | data

Rules: the magic carries the version, so another format is refused with a clear error
rather than misread; a batch from another cluster (a member of a different
`--initial-cluster-token`) is refused. Binary because the leader encodes and decodes every
append and answer: the first (JSON with base64) format cost a third of a busy leader's CPU.

Pure: no I/O. Decoding never trusts its input: anything malformed raises `CodecError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dockyard.raft.messages import (
    Entry,
    EntryKind,
    Message,
    MessageKind,
    Snapshot,
    SnapshotMeta,
)

WIRE_VERSION = 2
CONTENT_TYPE = "application/x-dockyard-raft"


class CodecError(Exception):
    """A peer sent something this member cannot decode (or from another cluster)."""


@dataclass(frozen=True, slots=True)
class Batch:
    cluster_id: int
    sender: int
    messages: tuple[Message, ...]


_MAGIC = b"DYR2"  # the version is part of the magic: another format is refused, not misread
_BATCH = struct.Struct(">4sQQI")  # magic, cluster id, sender, message count
# kind, to, frm, term, log_term, index, commit, flags (1 reject, 2 snapshot), reject hint
_HEAD = struct.Struct(">BQQQQQQBQ")
_LEN32 = struct.Struct(">I")
_ENTRY = struct.Struct(">QQBI")  # term, index, kind, data length
_SNAP = struct.Struct(">QQI")  # index, term, voter count
_U64 = struct.Struct(">Q")
_KINDS = tuple(MessageKind)
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_ENTRY_KINDS = (EntryKind.NORMAL, EntryKind.CONF_CHANGE)
_ENTRY_CODE = {kind: code for code, kind in enumerate(_ENTRY_KINDS)}
_REJECT, _HAS_SNAPSHOT = 1, 2


def encode_message(m: Message, out: bytearray) -> None:
    flags = (_REJECT if m.reject else 0) | (_HAS_SNAPSHOT if m.snapshot is not None else 0)
    out += _HEAD.pack(
        _KIND_CODE[m.kind],
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        flags,
        m.reject_hint,
    )
    out += _LEN32.pack(len(m.context))
    out += m.context
    out += _LEN32.pack(len(m.entries))
    for e in m.entries:
        out += _ENTRY.pack(e.term, e.index, _ENTRY_CODE[e.kind], len(e.data))
        out += e.data
    if m.snapshot is not None:
        meta = m.snapshot.meta
        out += _SNAP.pack(meta.index, meta.term, len(meta.voters))
        for voter in meta.voters:
            out += _U64.pack(voter)
        out += _U64.pack(len(m.snapshot.data))
        out += m.snapshot.data


def _decode_message(data: bytes, offset: int) -> tuple[Message, int]:
    """One message at `offset` of a batch; returns it and the offset after it. Plain
    offsets into the bytes (a follower decodes every entry of every append). A fixed field
    past the end fails in `unpack_from` (struct.error, made a CodecError by `decode_batch`);
    a variable-length field is checked against the end here, since slicing never fails."""
    kind_code, to, frm, term, log_term, index, commit, flags, hint = _HEAD.unpack_from(data, offset)
    if kind_code >= len(_KINDS):
        raise CodecError(f"unknown message kind {kind_code}")
    (ctx_len,) = _LEN32.unpack_from(data, offset + _HEAD.size)
    offset += _HEAD.size + 4
    context = data[offset : offset + ctx_len]
    offset += ctx_len
    (count,) = _LEN32.unpack_from(data, offset)
    offset += 4
    entries: list[Entry] = []
    unpack_entry = _ENTRY.unpack_from
    for _ in range(count):
        e_term, e_index, e_kind, e_len = unpack_entry(data, offset)
        start = offset + _ENTRY.size
        offset = start + e_len
        if e_kind >= len(_ENTRY_KINDS):
            raise CodecError(f"bad entry kind {e_kind}")
        entries.append(Entry(e_term, e_index, _ENTRY_KINDS[e_kind], data[start:offset]))
    snapshot = None
    if flags & _HAS_SNAPSHOT:
        s_index, s_term, n_voters = _SNAP.unpack_from(data, offset)
        offset += _SNAP.size
        voters = struct.unpack_from(f">{n_voters}Q", data, offset)
        offset += 8 * n_voters
        (data_len,) = _U64.unpack_from(data, offset)
        offset += 8
        snapshot = Snapshot(SnapshotMeta(s_index, s_term, voters), data[offset : offset + data_len])
        offset += data_len
    if offset > len(data):  # offsets only grow: one check covers every slice
        raise CodecError("truncated batch")
    message = Message(
        _KINDS[kind_code],
        to=to,
        frm=frm,
        term=term,
        log_term=log_term,
        index=index,
        entries=tuple(entries),
        commit=commit,
        reject=bool(flags & _REJECT),
        reject_hint=hint,
        snapshot=snapshot,
        context=context,
    )
    return message, offset


def encode_batch(batch: Batch) -> bytes:
    out = bytearray(_BATCH.pack(_MAGIC, batch.cluster_id, batch.sender, len(batch.messages)))
    for m in batch.messages:
        encode_message(m, out)
    return bytes(out)


def decode_batch(body: bytes, cluster_id: int) -> Batch:
    """Decode a request body; refuse another version or another cluster's traffic."""
    if len(body) < _BATCH.size or body[:4] != _MAGIC:
        head = body[:4]
        raise CodecError(f"unsupported peer wire format (starts with {head!r}, not {_MAGIC!r})")
    _, batch_cluster, sender, count = _BATCH.unpack_from(body)
    if batch_cluster != cluster_id:
        raise CodecError(
            f"cluster ID mismatch: this member is in cluster {cluster_id:x}, "
            f"the sender in {batch_cluster:x} (check --initial-cluster-token)"
        )
    body = bytes(body)  # slices of the entries' data must be bytes, not views
    offset = _BATCH.size
    messages = []
    try:
        for _ in range(count):
            message, offset = _decode_message(body, offset)
            messages.append(message)
    except struct.error:
        raise CodecError("truncated batch") from None
    if offset != len(body):
        raise CodecError(f"{len(body) - offset} bytes after the last message")
    return Batch(cluster_id, sender, tuple(messages))


# --- proposals: who proposed an entry, so the proposing member can answer its client -------

_PROPOSAL_HEAD = 16  # proposer member id u64 | request sequence u64, big-endian
_PROPOSAL = struct.Struct(">QQ")


def wrap_proposal(member_id: int, sequence: int, command: bytes) -> bytes:
    """An entry's data: the proposer's id and request number, then the encoded command.

    The entry is applied on every member; only the proposer finds `sequence` among its
    waiting requests and answers the client (followers' proposals reach the leader through
    the core's forwarding, so the entry itself must say whose it is).
    """
    return _PROPOSAL.pack(member_id, sequence) + command


def unwrap_proposal(data: bytes) -> tuple[int, int, bytes]:
    if len(data) < _PROPOSAL_HEAD:
        raise CodecError(f"proposal of {len(data)} bytes is shorter than its header")
    proposer, sequence = _PROPOSAL.unpack_from(data)
    return proposer, sequence, data[_PROPOSAL_HEAD:]
