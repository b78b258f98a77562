"""The clustered member's raft log on disk (`store.cluster.storage`): what is saved comes
back, a replaced suffix stays replaced, a torn tail is cut, damage before the tail refuses
to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.raft.messages import Entry, EntryKind, HardState
from dockyard.store.cluster.storage import FILE_NAME, RaftStorage
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
    intact = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x30\x00\x00\x00garbage")  # a record cut short by a crash
    storage, recovered = RaftStorage.open(tmp_path, 2)
    assert recovered.entries == tuple(_entries(2, 3, 1))
    assert path.stat().st_size == intact
    storage.save(_entries(4, 4, 1), None)  # and the log goes on after the cut
    storage.close()
    assert RaftStorage.open(tmp_path, 2)[1].entries == tuple(_entries(2, 4, 1))


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
