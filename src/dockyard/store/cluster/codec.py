"""The peer wire format: batches of `dockyard.raft.messages.Message`, versioned, as JSON.

Role: turn the frames one member sends another on `POST /raft` into bytes and back. One
batch is one request body:

    {"v": 1, "cluster": "<cluster id hex>", "from": <member id>, "msgs": [<message>, ...]}
    message = {"k": "MsgApp", "to": id, "frm": id, "t": term, "lt": log term, "i": index,
               "c": commit, "rj": reject, "rh": reject hint, "ctx": base64,
               "e": [[term, index, "n"|"c", base64 data], ...],
               "s": {"i": index, "t": term, "voters": [id, ...], "d": base64 data}}
    (fields equal to their default are left out, so a heartbeat is a few dozen bytes)

Rules: `v` is checked first, so a later format can be told apart and refused with a clear
error rather than misread; a batch from another cluster (`cluster` differs: a member of a
different `--initial-cluster-token`) is refused. JSON with base64 payloads is a first
format, chosen for being inspectable; a binary one can replace it behind `v`.

Pure: no I/O. Decoding never trusts its input: anything malformed raises `CodecError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from dockyard.raft.messages import (
    Entry,
    EntryKind,
    Message,
    MessageKind,
    Snapshot,
    SnapshotMeta,
)

WIRE_VERSION = 1
CONTENT_TYPE = "application/x-dockyard-raft+json"

_KIND_CODE = {EntryKind.NORMAL: "n", EntryKind.CONF_CHANGE: "c"}
_CODE_KIND = {code: kind for kind, code in _KIND_CODE.items()}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class CodecError(Exception):
    """A peer sent something this member cannot decode (or from another cluster)."""


@dataclass(frozen=True, slots=True)
class Batch:
    cluster_id: int
    sender: int
    messages: tuple[Message, ...]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise CodecError(f"expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise CodecError(f"bad base64: {error}") from None


def encode_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"k": m.kind.value, "to": m.to, "frm": m.frm, "t": m.term}
    if m.log_term:
        out["lt"] = m.log_term
    if m.index:
        out["i"] = m.index
    if m.commit:
        out["c"] = m.commit
    if m.reject:
        out["rj"] = True
    if m.reject_hint:
        out["rh"] = m.reject_hint
    if m.context:
        out["ctx"] = _b64(m.context)
    if m.entries:
        out["e"] = [[e.term, e.index, _KIND_CODE[e.kind], _b64(e.data)] for e in m.entries]
    if m.snapshot is not None:
        meta = m.snapshot.meta
        out["s"] = {
            "i": meta.index,
            "t": meta.term,
            "voters": list(meta.voters),
            "d": _b64(m.snapshot.data),
        }
    return out


def _int(value: Any, name: str) -> int:
    # bool is an int in Python; a peer sending true for a term is malformed, not term 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CodecError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def decode_message(raw: Any) -> Message:
    if not isinstance(raw, dict):
        raise CodecError("a message must be an object")
    try:
        kind = MessageKind(raw["k"])
    except (KeyError, ValueError):
        raise CodecError(f"unknown message kind {raw.get('k')!r}") from None
    entries: list[Entry] = []
    for item in raw.get("e", ()):
        if not isinstance(item, list) or len(item) != 4 or item[2] not in _CODE_KIND:
            raise CodecError(f"bad entry {item!r}")
        entries.append(
            Entry(
                _int(item[0], "entry term"),
                _int(item[1], "entry index"),
                _CODE_KIND[item[2]],
                _unb64(item[3]),
            )
        )
    snapshot = None
    snap = raw.get("s")
    if snap is not None:
        if not isinstance(snap, dict) or not isinstance(snap.get("voters"), list):
            raise CodecError("bad snapshot")
        snapshot = Snapshot(
            SnapshotMeta(
                _int(snap.get("i"), "snapshot index"),
                _int(snap.get("t"), "snapshot term"),
                tuple(_int(v, "voter") for v in snap["voters"]),
            ),
            _unb64(snap.get("d", "")),
        )
    return Message(
        kind,
        to=_int(raw.get("to", 0), "to"),
        frm=_int(raw.get("frm", 0), "frm"),
        term=_int(raw.get("t", 0), "term"),
        log_term=_int(raw.get("lt", 0), "log term"),
        index=_int(raw.get("i", 0), "index"),
        entries=tuple(entries),
        commit=_int(raw.get("c", 0), "commit"),
        reject=raw.get("rj", False) is True,
        reject_hint=_int(raw.get("rh", 0), "reject hint"),
        snapshot=snapshot,
        context=_unb64(raw["ctx"]) if "ctx" in raw else b"",
    )


def encode_batch(batch: Batch) -> bytes:
    return _dumps(
        {
            "v": WIRE_VERSION,
            "cluster": f"{batch.cluster_id:x}",
            "from": batch.sender,
            "msgs": [encode_message(m) for m in batch.messages],
        }
    ).encode()


def decode_batch(body: bytes, cluster_id: int) -> Batch:
    """Decode a request body; refuse another version or another cluster's traffic."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise CodecError(f"not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise CodecError("a batch must be an object")
    if raw.get("v") != WIRE_VERSION:
        raise CodecError(f"unsupported peer wire version {raw.get('v')!r}")
    if raw.get("cluster") != f"{cluster_id:x}":
        raise CodecError(
            f"cluster ID mismatch: this member is in cluster {cluster_id:x}, "
            f"the sender in {raw.get('cluster')!r} (check --initial-cluster-token)"
        )
    msgs = raw.get("msgs")
    if not isinstance(msgs, list):
        raise CodecError("msgs must be a list")
    return Batch(cluster_id, _int(raw.get("from"), "from"), tuple(decode_message(m) for m in msgs))


# --- proposals: who proposed an entry, so the proposing member can answer its client -------

_PROPOSAL_HEAD = 16  # proposer member id u64 | request sequence u64, big-endian


def wrap_proposal(member_id: int, sequence: int, command: bytes) -> bytes:
    """An entry's data: the proposer's id and request number, then the encoded command.

    The entry is applied on every member; only the proposer finds `sequence` among its
    waiting requests and answers the client (followers' proposals reach the leader through
    the core's forwarding, so the entry itself must say whose it is).
    """
    return member_id.to_bytes(8, "big") + sequence.to_bytes(8, "big") + command


def unwrap_proposal(data: bytes) -> tuple[int, int, bytes]:
    if len(data) < _PROPOSAL_HEAD:
        raise CodecError(f"proposal of {len(data)} bytes is shorter than its header")
    return (
        int.from_bytes(data[:8], "big"),
        int.from_bytes(data[8:16], "big"),
        data[_PROPOSAL_HEAD:],
    )
