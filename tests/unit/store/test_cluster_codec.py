"""The peer wire format (`store.cluster.codec`): every message shape round-trips, and
malformed or foreign input is refused with `CodecError`, never misread."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.raft.messages import (
    Entry,
    EntryKind,
    Message,
    MessageKind,
    Snapshot,
    SnapshotMeta,
)
from dockyard.store.cluster.codec import (
    Batch,
    CodecError,
    decode_batch,
    encode_batch,
    unwrap_proposal,
    wrap_proposal,
)

pytestmark = pytest.mark.unit

ids = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=2**40)
entries = st.builds(Entry, small, small, st.sampled_from(list(EntryKind)), st.binary(max_size=64))
snapshots = st.builds(
    Snapshot,
    st.builds(SnapshotMeta, small, small, st.tuples(ids, ids)),
    st.binary(max_size=64),
)
messages = st.builds(
    Message,
    st.sampled_from(list(MessageKind)),
    to=ids,
    frm=ids,
    term=small,
    log_term=small,
    index=small,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=small,
    reject=st.booleans(),
    reject_hint=small,
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=16),
)


@given(st.lists(messages, max_size=5), ids, ids)
def test_batches_round_trip(msgs: list[Message], cluster_id: int, sender: int) -> None:
    batch = Batch(cluster_id, sender, tuple(msgs))
    assert decode_batch(encode_batch(batch), cluster_id) == batch


def test_a_heartbeat_is_small() -> None:
    m = Message(MessageKind.HEARTBEAT, to=2**63, frm=2**62, term=3, commit=10)
    assert len(encode_batch(Batch(1, 2**62, (m,)))) < 150


def test_another_cluster_is_refused() -> None:
    body = encode_batch(Batch(0xABC, 1, ()))
    with pytest.raises(CodecError, match="cluster ID mismatch"):
        decode_batch(body, 0xDEF)


def _valid() -> bytes:
    m = Message(
        MessageKind.APP, to=2, frm=1, term=3, entries=(Entry(3, 7, EntryKind.NORMAL, b"x"),)
    )
    return encode_batch(Batch(1, 1, (m,)))


def _replace(body: bytes, offset: int, value: int) -> bytes:
    return body[:offset] + bytes([value]) + body[offset + 1 :]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a batch at all",
        b'{"v": 1, "cluster": "1", "from": 1, "msgs": []}',  # the old JSON format
        b"DYR3" + _valid()[4:],  # another version
        _valid()[:-1],  # truncated inside an entry
        _valid() + b"\0",  # trailing bytes
        _replace(_valid(), 24, 0xFF),  # an unknown message kind (after the 24-byte header)
        _replace(_valid(), len(_valid()) - 6, 9),  # a bad entry kind (kind, length u32, 1 byte)
    ],
)
def test_malformed_batches_are_refused(body: bytes) -> None:
    with pytest.raises(CodecError):
        decode_batch(body, 1)


def test_every_cut_of_a_batch_is_refused() -> None:
    """A body cut short anywhere (inside a header, a context, an entry, a snapshot's voters
    or data) is a CodecError, never a shorter message."""
    full = Message(
        MessageKind.SNAP,
        to=2,
        frm=1,
        term=3,
        entries=(Entry(3, 7, EntryKind.NORMAL, b"xyz"), Entry(3, 8, EntryKind.CONF_CHANGE, b"")),
        snapshot=Snapshot(SnapshotMeta(9, 3, (1, 2, 3)), b"state"),
        context=b"ctx",
    )
    body = encode_batch(Batch(1, 1, (full, Message(MessageKind.HEARTBEAT, to=2, frm=1))))
    assert decode_batch(body, 1).messages[0] == full
    for cut in range(len(body)):
        with pytest.raises(CodecError):
            decode_batch(body[:cut], 1)


def test_proposals_carry_their_proposer() -> None:
    data = wrap_proposal(2**64 - 1, 42, b'{"t":"Noop"}')
    assert unwrap_proposal(data) == (2**64 - 1, 42, b'{"t":"Noop"}')
    with pytest.raises(CodecError):
        unwrap_proposal(b"short")
