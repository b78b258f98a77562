"""Snapshot tests: atomic save, checksum, newest-valid-wins, leftovers, retention."""

from __future__ import annotations

import logging
import os
import random
import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from dockyard.store.snapshot import (
    KEEP_SNAPSHOTS,
    Snapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    load_latest_snapshot,
    save_snapshot,
)

pytestmark = pytest.mark.unit


def snap_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(100_000)
    path = save_snapshot(tmp_path / "snap", Snapshot(index=1234, term=7, data=data))
    assert path == tmp_path / "snap" / "0000000000000007-0000000000001234.snap"
    assert snap_names(tmp_path / "snap") == [path.name]
    assert load_latest_snapshot(tmp_path / "snap") == Snapshot(1234, 7, data)


def test_empty_data_round_trips(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(0, 0, b""))
    assert load_latest_snapshot(tmp_path) == Snapshot(0, 0, b"")


def test_on_disk_format(tmp_path: Path) -> None:
    path = save_snapshot(tmp_path, Snapshot(index=9, term=2, data=b"state"))
    checked = struct.pack("<QQQ", 2, 9, 5)
    crc = crc32c(b"state", crc32c(checked))
    assert path.read_bytes() == b"DYKDSNAP" + struct.pack("<II", 1, crc) + checked + b"state"


def test_no_directory_or_no_snapshot_loads_none(tmp_path: Path) -> None:
    assert load_latest_snapshot(tmp_path / "missing") is None
    assert load_latest_snapshot(tmp_path) is None


def test_newest_by_index_wins(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"ten"))
    save_snapshot(tmp_path, Snapshot(30, 3, b"thirty"))
    save_snapshot(tmp_path, Snapshot(20, 2, b"twenty"))  # saved last, but older
    assert load_latest_snapshot(tmp_path) == Snapshot(30, 3, b"thirty")


def test_corrupt_newest_falls_back_to_an_older_valid_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"ten"))
    save_snapshot(tmp_path, Snapshot(20, 1, b"twenty"))
    newest = save_snapshot(tmp_path, Snapshot(30, 1, b"thirty"))
    flip_byte(newest, newest.stat().st_size - 1)
    with caplog.at_level(logging.WARNING, logger="dockyard.store.snapshot"):
        assert load_latest_snapshot(tmp_path) == Snapshot(20, 1, b"twenty")
    assert any(
        newest.name in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records
    )
    assert newest.exists()  # kept for inspection, never trusted


@pytest.mark.parametrize("seed", range(5))
def test_any_single_flipped_byte_is_detected(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    good = Snapshot(rng.randrange(1, 1 << 40), rng.randrange(1, 1 << 20), rng.randbytes(300))
    blob = bytearray(encode_snapshot(good))
    for position in range(len(blob)):
        blob[position] ^= 1 << rng.randrange(8)
        with pytest.raises(SnapshotError):
            decode_snapshot(bytes(blob))
        blob[position] = encode_snapshot(good)[position]
    assert decode_snapshot(bytes(blob)) == good, f"seed={seed}"


def test_truncated_snapshots_are_skipped(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"ten"))
    newest = save_snapshot(tmp_path, Snapshot(20, 1, b"twenty" * 100))
    for size in (0, 10, newest.stat().st_size - 1):
        os.truncate(newest, size)
        assert load_latest_snapshot(tmp_path) == Snapshot(10, 1, b"ten"), f"size={size}"


def test_every_snapshot_corrupt_loads_none(tmp_path: Path) -> None:
    for index in (1, 2):
        path = save_snapshot(tmp_path, Snapshot(index, 1, b"x"))
        flip_byte(path, 30)
    assert load_latest_snapshot(tmp_path) is None


def test_a_file_renamed_to_another_index_is_not_trusted(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"ten"))
    twenty = save_snapshot(tmp_path, Snapshot(20, 1, b"twenty"))
    twenty.rename(tmp_path / "0000000000000001-0000000000000099.snap")
    assert load_latest_snapshot(tmp_path) == Snapshot(10, 1, b"ten")


def test_leftover_tmp_files_are_removed_and_never_loaded(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"ten"))
    # A crash during save_snapshot of index 20, before the rename: a complete-looking but
    # unrenamed file and a half-written one.
    full = encode_snapshot(Snapshot(20, 1, b"twenty"))
    (tmp_path / "0000000000000001-0000000000000020.snap.tmp").write_bytes(full)
    (tmp_path / "0000000000000001-0000000000000021.snap.tmp").write_bytes(full[:7])
    assert load_latest_snapshot(tmp_path) == Snapshot(10, 1, b"ten")
    assert snap_names(tmp_path) == ["0000000000000001-0000000000000010.snap"]


def test_only_the_newest_three_are_kept(tmp_path: Path) -> None:
    assert KEEP_SNAPSHOTS == 3
    for index in range(1, 7):
        save_snapshot(tmp_path, Snapshot(index * 10, 1 + index // 3, b"s%d" % index))
    assert snap_names(tmp_path) == [
        "0000000000000002-0000000000000040.snap",
        "0000000000000002-0000000000000050.snap",
        "0000000000000003-0000000000000060.snap",
    ]
    assert load_latest_snapshot(tmp_path) == Snapshot(60, 3, b"s6")


def test_saving_the_same_index_again_replaces_it(tmp_path: Path) -> None:
    save_snapshot(tmp_path, Snapshot(10, 1, b"first"))
    save_snapshot(tmp_path, Snapshot(10, 1, b"second"))
    assert snap_names(tmp_path) == ["0000000000000001-0000000000000010.snap"]
    assert load_latest_snapshot(tmp_path) == Snapshot(10, 1, b"second")


def test_negative_index_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_snapshot(tmp_path, Snapshot(-1, 1, b""))
    assert snap_names(tmp_path) == []
