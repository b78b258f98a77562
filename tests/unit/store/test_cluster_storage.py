"""The clustered member's raft log on disk (`store.cluster.storage`): what is saved comes
back, a replaced suffix stays replaced, a torn tail is cut, damage before the tail refuses
to start; compaction (`rewrite`) leaves the old or the new log whatever the crash point; a
cluster snapshot's payload round-trips."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path

import pytest

from dockyard.raft.messages import Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from dockyard.store import commands as c
from dockyard.store.cluster.member import (
    decode_payload,
    encode_payload,
    from_snapshot_file,
    to_snapshot_file,
)
from dockyard.store.cluster.storage import (
    FILE_NAME,
    PREALLOCATE_BYTES,
    TMP_SUFFIX,
    RaftStorage,
    SyncThread,
)
from dockyard.store.snapshot import decode_snapshot, encode_snapshot
from dockyard.store.state import StoreState
from dockyard.store.wal import WalCorruption

pytestmark = pytest.mark.unit


def _entries(first: int, last: int, term: int) -> list[Entry]:
    return [
        Entry(term, i, EntryKind.NORMAL, f"e{i}t{term}".encode()) for i in range(first, last + 1)
    ]


def test_round_trip_and_overwrite(tmp_path: Path) -> None:
    storage, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.hard_state is None and recovered.entries == ()
    storage.save(_entries(2, 6, 1), HardState(1, 7, 3))
    storage.save([Entry(1, 7, EntryKind.CONF_CHANGE, b"add:9")], None)
    # A new leader's log wins from index 5 on (Raft §5.3): 5..7 are replaced.
    storage.save(_entries(5, 5, 2), HardState(2, 0, 4))
    assert storage.last_index == 5
    storage.close()
    _, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.hard_state == HardState(2, 0, 4)
    assert recovered.entries == (*_entries(2, 4, 1), *_entries(5, 5, 2))


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 3, 1), HardState(1, 1, 2))
    storage.close()
    path = tmp_path / FILE_NAME
    RaftStorage.open(tmp_path, 2)[0].close()  # cuts the preallocated (zero) tail
    intact = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x30\x00\x00\x00garbage")  # a record cut short by a crash
    storage, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(2, 3, 1))
    assert path.stat().st_size == intact
    storage.save(_entries(4, 4, 1), None)  # and the log goes on after the cut
    storage.close()
    assert RaftStorage.open(tmp_path, 2)[1].entries == tuple(_entries(2, 4, 1))


def test_blocks_are_reserved_ahead_and_the_zero_tail_is_not_a_record(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 3, 1), HardState(1, 1, 2))
    path = tmp_path / FILE_NAME
    assert path.stat().st_size >= PREALLOCATE_BYTES  # written records + reserved zeros
    storage.close()
    storage, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(2, 3, 1))
    assert recovered.hard_state == HardState(1, 1, 2)
    storage.save(_entries(4, 5, 1), None)  # appended after the records, not after the zeros
    storage.close()
    assert RaftStorage.open(tmp_path, 2)[1].entries == tuple(_entries(2, 5, 1))


def test_damage_before_the_tail_refuses(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 4, 1), HardState(1, 1, 2))
    storage.close()
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorruption):
        RaftStorage.open(tmp_path, 2)


def test_rewrite_keeps_only_the_suffix_and_the_hard_state(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 20, 1), HardState(1, 7, 15))
    before = (tmp_path / FILE_NAME).stat().st_size
    storage.rewrite(12, _entries(12, 20, 1))
    assert storage.last_index == 20
    storage.save(_entries(21, 22, 2), HardState(2, 0, 21))  # appends go on after a rewrite
    storage.close()
    assert (tmp_path / FILE_NAME).stat().st_size < before
    # The header says where the log starts now; the caller's first index is only a default.
    _, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.hard_state == HardState(2, 0, 21)
    assert recovered.entries == (*_entries(12, 20, 1), *_entries(21, 22, 2))


def test_rewrite_to_an_empty_log_after_a_snapshot(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 5, 1), HardState(1, 1, 5))
    storage.rewrite(101, ())  # a leader's snapshot at 100 replaced everything
    assert storage.last_index == 100
    storage.save(_entries(101, 101, 3), HardState(3, 0, 101))
    storage.close()
    _, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(101, 101, 3))
    assert recovered.hard_state == HardState(3, 0, 101)


def _crash_mid_rewrite(tmp_path: Path, tmp_bytes: bytes | None) -> None:
    """The state a crash leaves before `rewrite`'s rename: the old file, and a `.tmp` that
    is complete, torn, or (None) not created yet."""
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 10, 1), HardState(1, 1, 8))
    storage.close()
    if tmp_bytes is not None:
        (tmp_path / (FILE_NAME + TMP_SUFFIX)).write_bytes(tmp_bytes)


@pytest.mark.parametrize("torn", [None, 0, 10, 60])
def test_a_crash_before_the_rename_keeps_the_old_log(tmp_path: Path, torn: int | None) -> None:
    # A complete new file, for a template of what `rewrite` would have written.
    other = tmp_path / "other"
    storage, _ = RaftStorage.open(other, 2)
    storage.save(_entries(2, 10, 1), HardState(1, 1, 8))
    storage.rewrite(6, _entries(6, 10, 1))
    storage.close()
    complete = (other / FILE_NAME).read_bytes()
    log_dir = tmp_path / "log"
    _crash_mid_rewrite(log_dir, None if torn is None else complete[:torn])
    storage, recovered = RaftStorage.open(log_dir, 2)
    assert recovered.entries == tuple(_entries(2, 10, 1))
    assert recovered.hard_state == HardState(1, 1, 8)
    assert not (log_dir / (FILE_NAME + TMP_SUFFIX)).exists()
    storage.close()


def test_a_crash_after_the_rename_has_the_new_log(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)
    storage.save(_entries(2, 10, 1), HardState(1, 1, 8))
    storage.rewrite(6, _entries(6, 10, 1))
    # kill -9 right after the rename: the file descriptor is simply dropped.
    _, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(6, 10, 1))
    assert recovered.hard_state == HardState(1, 1, 8)
    storage.close()


def test_a_cluster_snapshot_carries_the_state_the_dedup_table_and_the_voters() -> None:
    state = StoreState(applied_index=1)
    for index, key in enumerate(("/a", "/b"), start=2):
        state.apply_entry(index, c.SetKey(key, key.upper()), 0)
    dedup: dict[int, tuple[dict[int, None], deque[int]]] = {
        7: (dict.fromkeys([3, 1, 2]), deque([3, 1, 2]))
    }
    raft_snapshot = Snapshot(SnapshotMeta(3, 2, (5, 7, 9)), encode_payload(state, dedup))
    # Through the snapshot file format and back, as a restart or a MsgSnap does.
    file = decode_snapshot(encode_snapshot(to_snapshot_file(raft_snapshot)))
    assert from_snapshot_file(file) == raft_snapshot
    restored, restored_dedup = decode_payload(raft_snapshot.data, 3)
    assert restored.applied_index == 3
    assert restored.to_snapshot_bytes() == state.to_snapshot_bytes()
    assert {p: list(order) for p, (_, order) in restored_dedup.items()} == {7: [3, 1, 2]}
    assert set(restored_dedup[7][0]) == {1, 2, 3}


def test_write_leaves_a_sync_owed_until_sync_and_save_pays_it(tmp_path: Path) -> None:
    """An async leader's `write` (entries, or a new term or vote) owes an fdatasync; `sync`
    pays it and names the durable point; a commit-only hard state owes none; `save` also
    pays what an earlier `write` left owing."""
    storage, _ = RaftStorage.open(tmp_path, 2)
    assert not storage.dirty
    assert storage.write(_entries(2, 4, 1), HardState(1, 1, 1))
    assert storage.dirty
    assert storage.sync() == (4, 1)
    assert not storage.dirty
    assert not storage.write([], HardState(1, 1, 3))  # only the commit index moved
    assert not storage.dirty
    assert not storage.changes_term_or_vote(HardState(1, 1, 4))
    assert storage.changes_term_or_vote(HardState(2, 0, 4))
    storage.write(_entries(5, 5, 1), None)
    storage.save([], HardState(1, 1, 4))  # commit-only, but entry 5 is still owed
    assert not storage.dirty
    storage.close()
    _, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(2, 5, 1))
    assert recovered.hard_state == HardState(1, 1, 4)


def test_the_sync_thread_reports_the_durable_point_on_the_loop(tmp_path: Path) -> None:
    storage, _ = RaftStorage.open(tmp_path, 2)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        synced: asyncio.Future[tuple[int, int]] = loop.create_future()
        thread = SyncThread(
            storage,
            loop.call_soon_threadsafe,
            lambda index, term: synced.set_result((index, term)),
            lambda reason: synced.set_exception(AssertionError(reason)),
        )
        try:
            storage.write(_entries(2, 9, 3), None)
            thread.request()
            return await asyncio.wait_for(synced, 10)
        finally:
            thread.close()

    assert asyncio.run(main()) == (9, 3)
    assert not storage.dirty
    storage.close()
