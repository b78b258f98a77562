"""Crash-safety tests for the write-ahead log: round trips, torn tails, corruption, compaction.

Every crash here is simulated by editing the files the way a crash leaves them (a file cut
short, zeros or garbage after the last write, a segment whose directory entry was lost).
Random tests are seeded; the seed is in every failure message.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import threading
from pathlib import Path

import pytest
from crc32c import crc32c

from dockyard.store.wal import (
    FRAME_BYTES,
    SEGMENT_HEADER_BYTES,
    LogRecord,
    WalCorruption,
    WalError,
    WalInvariantError,
    WriteAheadLog,
    segment_name,
)

pytestmark = pytest.mark.unit


def make_records(first: int, count: int, rng: random.Random, term: int = 1) -> list[LogRecord]:
    return [
        LogRecord(index, term, rng.randbytes(rng.randrange(0, 40)))
        for index in range(first, first + count)
    ]


def write_log(directory: Path, records: list[LogRecord], segment_bytes: int, batch: int) -> None:
    wal, existing = WriteAheadLog.open(directory, segment_bytes=segment_bytes)
    assert existing == []
    for start in range(0, len(records), batch):
        wal.append(records[start : start + batch])
        wal.sync()
    wal.close()


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of every record in a (valid) segment, found by walking the frames."""
    data = path.read_bytes()
    offsets, offset = [], SEGMENT_HEADER_BYTES
    while offset < len(data):
        offsets.append(offset)
        (length,) = struct.unpack_from("<I", data, offset)
        offset += FRAME_BYTES + length
    assert offset == len(data)
    return offsets


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --- basics --------------------------------------------------------------------------------


def test_fresh_log_is_empty(tmp_path: Path) -> None:
    wal, records = WriteAheadLog.open(tmp_path / "wal")
    assert records == []
    assert (wal.first_index, wal.last_index) == (1, 0)
    wal.sync()  # nothing to sync: no segment yet
    wal.close()
    assert segments(tmp_path / "wal") == []


def test_on_disk_format_of_one_record(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 7, b"hello")])
    wal.close()
    body = bytes([1]) + struct.pack("<QQ", 1, 7) + b"hello"
    expected = (
        b"DYKDWAL\x00"
        + struct.pack("<IIQ", 1, 0, 1)
        + struct.pack("<II", len(body), crc32c(body))
        + body
    )
    assert (tmp_path / "0000000000000001.wal").read_bytes() == expected


def test_round_trip_across_many_segments(tmp_path: Path) -> None:
    seed = 1234
    rng = random.Random(seed)
    written = make_records(1, 300, rng)
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=400)
    position = 0
    while position < len(written):
        size = rng.randrange(1, 12)
        wal.append(written[position : position + size])
        position += size
        if rng.random() < 0.5:
            wal.sync()
    wal.close()

    paths = segments(tmp_path)
    assert len(paths) > 10, f"seed={seed}: expected many segments, got {len(paths)}"
    reopened, records = WriteAheadLog.open(tmp_path, segment_bytes=400)
    assert records == written, f"seed={seed}"
    assert (reopened.first_index, reopened.last_index) == (1, 300)
    assert reopened.segment_count == len(paths)
    # Each segment is named after its first record.
    starts = [int(p.name.removesuffix(".wal")) for p in paths]
    assert starts[0] == 1
    for path, start in zip(paths, starts, strict=True):
        first = path.read_bytes()[SEGMENT_HEADER_BYTES + FRAME_BYTES + 1 :][:8]
        assert int.from_bytes(first, "little") == start, f"seed={seed} {path}"

    more = make_records(301, 50, rng, term=2)
    reopened.append(more)
    reopened.close()
    _, records = WriteAheadLog.open(tmp_path, segment_bytes=400)
    assert records == written + more, f"seed={seed}"


def test_a_batch_larger_than_a_segment_goes_into_one_segment(tmp_path: Path) -> None:
    written = [LogRecord(i, 1, b"x" * 100) for i in range(1, 21)]
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=256)
    wal.append(written)
    wal.append([LogRecord(21, 1, b"y")])
    wal.close()
    assert [p.name for p in segments(tmp_path)] == [segment_name(1), segment_name(21)]
    _, records = WriteAheadLog.open(tmp_path, segment_bytes=256)
    assert records == [*written, LogRecord(21, 1, b"y")]


def test_first_append_of_a_fresh_log_may_start_after_a_snapshot(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1001, 4, b"a"), LogRecord(1002, 4, b"b")])
    assert (wal.first_index, wal.last_index) == (1001, 1002)
    wal.close()
    reopened, records = WriteAheadLog.open(tmp_path)
    assert [r.index for r in records] == [1001, 1002]
    assert (reopened.first_index, reopened.last_index) == (1001, 1002)
    with pytest.raises(WalInvariantError, match="expected index 1003"):
        reopened.append([LogRecord(1, 4, b"c")])
    reopened.close()


@pytest.mark.parametrize(
    "batch",
    [
        [LogRecord(4, 1, b"")],  # gap
        [LogRecord(2, 1, b"")],  # regression
        [LogRecord(3, 1, b""), LogRecord(5, 1, b"")],  # gap inside the batch
        [LogRecord(3, 1, b""), LogRecord(3, 1, b"")],  # duplicate inside the batch
    ],
)
def test_append_rejects_non_contiguous_indexes_and_writes_nothing(
    tmp_path: Path, batch: list[LogRecord]
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a"), LogRecord(2, 1, b"b")])
    size = (tmp_path / segment_name(1)).stat().st_size
    with pytest.raises(WalInvariantError):
        wal.append(batch)
    assert (tmp_path / segment_name(1)).stat().st_size == size
    assert wal.last_index == 2
    wal.append([LogRecord(3, 1, b"c")])  # the log is still usable
    wal.close()
    _, records = WriteAheadLog.open(tmp_path)
    assert [r.index for r in records] == [1, 2, 3]


def test_fresh_log_rejects_index_zero(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    with pytest.raises(WalInvariantError):
        wal.append([LogRecord(0, 0, b"")])
    wal.close()


def test_empty_batch_is_a_no_op(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([])
    wal.close()
    assert segments(tmp_path) == []


def test_use_after_close_is_refused_and_close_is_idempotent(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])
    wal.close()
    wal.close()
    with pytest.raises(WalInvariantError, match="closed"):
        wal.append([LogRecord(2, 1, b"b")])
    with pytest.raises(WalInvariantError, match="closed"):
        wal.sync()


# --- threading contract ------------------------------------------------------------------


def test_sync_runs_on_another_thread(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            wal.sync()
        except BaseException as error:  # surfaced below, in the test thread
            errors.append(error)

    for index in range(1, 40):
        wal.append([LogRecord(index, 1, b"payload")])
        worker = threading.Thread(target=sync)
        worker.start()
        worker.join()
    assert errors == []
    wal.close()
    _, records = WriteAheadLog.open(tmp_path)
    assert [r.index for r in records] == list(range(1, 40))


def test_append_overlapping_sync_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])
    real_fdatasync = os.fdatasync
    seen: list[BaseException] = []

    def fdatasync_with_an_append_in_the_middle(fd: int) -> None:
        # What would happen if the loop appended while a worker was inside `sync`.
        try:
            wal.append([LogRecord(2, 1, b"b")])
        except WalInvariantError as error:
            seen.append(error)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync_with_an_append_in_the_middle)
    wal.sync()
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    assert len(seen) == 1 and "overlapped" in str(seen[0])
    assert wal.last_index == 1
    wal.append([LogRecord(2, 1, b"b")])
    wal.close()


def test_close_waits_for_a_sync_still_running_on_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shutdown may cancel the task awaiting `sync` while the worker is still inside fsync.
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])
    real_fdatasync = os.fdatasync
    inside, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_fdatasync(fd: int) -> None:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "worker":
            inside.set()
            assert release.wait(timeout=30), "never released"
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    worker = threading.Thread(target=wal.sync, name="worker")
    worker.start()
    assert inside.wait(timeout=30)
    closer = threading.Thread(target=wal.close, name="closer")
    closer.start()
    assert calls == ["worker"]  # close has not got past the in-flight sync
    release.set()
    worker.join(timeout=30)
    closer.join(timeout=30)
    assert not worker.is_alive() and not closer.is_alive()
    assert calls == ["worker", "closer"]
    with pytest.raises(WalInvariantError, match="closed"):
        wal.sync()


def test_a_failed_sync_poisons_the_log_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])

    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(OSError):
        wal.sync()
    monkeypatch.undo()
    # A failed fsync may have dropped dirty pages without saying so again: never retry.
    with pytest.raises(WalError, match="failed WAL"):
        wal.sync()
    with pytest.raises(WalError, match="failed WAL"):
        wal.append([LogRecord(2, 1, b"b")])
    wal.close()
    reopened, records = WriteAheadLog.open(tmp_path)
    assert [r.index for r in records] == [1]  # the page cache still had it, here
    reopened.close()


# --- torn tails ----------------------------------------------------------------------------


def test_every_cut_inside_the_last_record_is_repaired(tmp_path: Path) -> None:
    rng = random.Random(7)
    written = make_records(1, 30, rng)
    written[-1] = LogRecord(30, 1, b"the last record, long enough to cut in many places")
    source = tmp_path / "source"
    write_log(source, written, segment_bytes=300, batch=3)
    last = segments(source)[-1]
    data = last.read_bytes()
    last_start = record_offsets(last)[-1]

    for cut in range(last_start, len(data)):
        directory = tmp_path / f"cut{cut}"
        shutil.copytree(source, directory)
        (directory / last.name).write_bytes(data[:cut])

        wal, records = WriteAheadLog.open(directory, segment_bytes=300)
        assert records == written[:-1], f"cut={cut}"
        assert wal.active_segment_bytes == last_start, f"cut={cut}"
        assert (directory / last.name).read_bytes()[:last_start] == data[:last_start]
        assert wal.last_index == 29
        wal.append([written[-1], LogRecord(31, 2, b"after")])
        wal.close()
        _, records = WriteAheadLog.open(directory, segment_bytes=300)
        assert records == [*written, LogRecord(31, 2, b"after")], f"cut={cut}"
        shutil.rmtree(directory)


def test_every_cut_inside_a_new_segment_header_is_repaired(tmp_path: Path) -> None:
    # 55-byte frames, 24-byte header: three records per 200-byte segment, so record 10
    # is alone in the last segment.
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 11)]
    source = tmp_path / "source"
    write_log(source, written, segment_bytes=200, batch=1)
    last = segments(source)[-1]
    data = last.read_bytes()
    first_in_last = int(last.name.removesuffix(".wal"))
    assert first_in_last == 10 and len(record_offsets(last)) == 1

    # Cuts inside the header (the segment was just created) and inside its first record.
    for cut in range(len(data)):
        directory = tmp_path / f"cut{cut}"
        shutil.copytree(source, directory)
        (directory / last.name).write_bytes(data[:cut])

        wal, records = WriteAheadLog.open(directory, segment_bytes=200)
        assert records == written[: first_in_last - 1], f"cut={cut}"
        assert wal.last_index == first_in_last - 1, f"cut={cut}"
        wal.append(written[first_in_last - 1 :])
        wal.close()
        _, records = WriteAheadLog.open(directory, segment_bytes=200)
        assert records == written, f"cut={cut}"
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00" * 4096,
        b"\x00" * 3,
        b"\xff" * 100,
        random.Random(99).randbytes(5000),
        # A frame whose length claims far more than remains.
        struct.pack("<II", 10_000, 0) + b"\x01" * 20,
    ],
    ids=["zeros-4096", "zeros-3", "ff-100", "random-5000-seed99", "overlong-length"],
)
def test_garbage_after_the_last_record_is_cut(tmp_path: Path, tail: bytes) -> None:
    written = make_records(1, 20, random.Random(3))
    write_log(tmp_path, written, segment_bytes=1 << 20, batch=5)
    path = segments(tmp_path)[-1]
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(tail)

    wal, records = WriteAheadLog.open(tmp_path)
    assert records == written
    assert wal.active_segment_bytes == size
    wal.append([LogRecord(21, 1, b"next")])
    wal.close()
    _, records = WriteAheadLog.open(tmp_path)
    assert records == [*written, LogRecord(21, 1, b"next")]


def test_a_record_only_segment_lost_with_its_directory_entry(tmp_path: Path) -> None:
    # A crash before the first `sync` after a roll may lose the new file altogether.
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 12)]
    write_log(tmp_path, written, segment_bytes=200, batch=1)
    last = segments(tmp_path)[-1]
    first_in_last = int(last.name.removesuffix(".wal"))
    last.unlink()
    wal, records = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert records == written[: first_in_last - 1]
    wal.append(written[first_in_last - 1 :])
    wal.close()
    _, records = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert records == written


# --- corruption ----------------------------------------------------------------------------


def test_a_flipped_byte_in_a_middle_record_is_corruption(tmp_path: Path) -> None:
    written = make_records(1, 10, random.Random(11))
    source = tmp_path / "source"
    write_log(source, written, segment_bytes=1 << 20, batch=10)
    path_name = segments(source)[0].name
    offsets = record_offsets(source / path_name)
    victim, after = offsets[4], offsets[5]

    for position in range(victim, after):  # every byte of the record: frame and body
        directory = tmp_path / f"flip{position}"
        shutil.copytree(source, directory)
        flip_byte(directory / path_name, position)
        with pytest.raises(WalCorruption) as caught:
            WriteAheadLog.open(directory)
        message = str(caught.value)
        assert message.startswith(f"WAL corrupt: {directory / path_name} at offset {victim}: "), (
            f"position={position}: {message}"
        )
        assert caught.value.offset == victim
        assert caught.value.path == directory / path_name
        shutil.rmtree(directory)


def test_a_zeroed_middle_record_before_a_valid_last_record_is_corruption(
    tmp_path: Path,
) -> None:
    # A body of 256 bytes makes the valid record's length field start with a zero byte, so
    # the scan must not skip past it when it skips the run of zeros.
    written = [LogRecord(i, 1, bytes([i]) * (256 - 17)) for i in range(1, 4)]
    write_log(tmp_path, written, segment_bytes=1 << 20, batch=3)
    path = segments(tmp_path)[0]
    offsets = record_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[1] : offsets[2]] = bytes(offsets[2] - offsets[1])
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorruption) as caught:
        WriteAheadLog.open(tmp_path)
    assert caught.value.offset == offsets[1]
    assert f"valid record follows at offset {offsets[2]}" in str(caught.value)


def test_a_flipped_byte_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    written = make_records(1, 10, random.Random(12))
    write_log(tmp_path, written, segment_bytes=1 << 20, batch=10)
    path = segments(tmp_path)[0]
    last_start = record_offsets(path)[-1]
    flip_byte(path, path.stat().st_size - 1)
    wal, records = WriteAheadLog.open(tmp_path)
    assert records == written[:-1]
    assert wal.active_segment_bytes == last_start
    wal.close()
    assert path.stat().st_size == last_start, "a clean close trims the preallocated space"


def test_a_flipped_byte_in_a_non_last_segment_is_corruption_even_at_its_end(
    tmp_path: Path,
) -> None:
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 20)]
    write_log(tmp_path, written, segment_bytes=200, batch=1)
    first = segments(tmp_path)[0]
    last_start = record_offsets(first)[-1]
    flip_byte(first, first.stat().st_size - 1)
    with pytest.raises(WalCorruption, match=f"{first} at offset {last_start}: checksum"):
        WriteAheadLog.open(tmp_path, segment_bytes=200)


def test_a_truncated_non_last_segment_is_corruption(tmp_path: Path) -> None:
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 20)]
    write_log(tmp_path, written, segment_bytes=200, batch=1)
    first = segments(tmp_path)[0]
    last_start = record_offsets(first)[-1]
    os.truncate(first, first.stat().st_size - 5)
    with pytest.raises(WalCorruption, match=f"at offset {last_start}"):
        WriteAheadLog.open(tmp_path, segment_bytes=200)


def test_a_damaged_segment_header_is_corruption(tmp_path: Path) -> None:
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 20)]
    write_log(tmp_path, written, segment_bytes=200, batch=1)
    for path in (segments(tmp_path)[0], segments(tmp_path)[-1]):
        flip_byte(path, 2)
        with pytest.raises(WalCorruption, match=f"{path} at offset 0: bad segment magic"):
            WriteAheadLog.open(tmp_path, segment_bytes=200)
        flip_byte(path, 2)


def test_a_missing_middle_segment_is_an_index_gap(tmp_path: Path) -> None:
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 20)]
    write_log(tmp_path, written, segment_bytes=200, batch=1)
    paths = segments(tmp_path)
    assert len(paths) >= 3
    paths[1].unlink()
    with pytest.raises(WalCorruption, match=f"{paths[2]} at offset 0: index gap"):
        WriteAheadLog.open(tmp_path, segment_bytes=200)


def test_a_valid_record_with_the_wrong_index_is_corruption(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])
    wal.close()
    path = segments(tmp_path)[0]
    size = path.stat().st_size
    body = bytes([1]) + struct.pack("<QQ", 5, 1) + b"b"  # index 5 after index 1
    with path.open("ab") as file:
        file.write(struct.pack("<II", len(body), crc32c(body)) + body)
    with pytest.raises(WalCorruption, match=f"at offset {size}: index gap: expected 2, found 5"):
        WriteAheadLog.open(tmp_path)


def test_a_checksummed_record_of_unknown_type_is_not_cut_as_torn(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append([LogRecord(1, 1, b"a")])
    wal.close()
    path = segments(tmp_path)[0]
    size = path.stat().st_size
    body = bytes([9]) + struct.pack("<QQ", 2, 1) + b"from a newer version"
    with path.open("ab") as file:
        file.write(struct.pack("<II", len(body), crc32c(body)) + body)
    with pytest.raises(WalCorruption, match=f"at offset {size}: unknown record type 9"):
        WriteAheadLog.open(tmp_path)
    assert path.stat().st_size == size + FRAME_BYTES + len(body)  # nothing was cut


# --- compaction ----------------------------------------------------------------------------


def test_compact_removes_whole_old_segments(tmp_path: Path) -> None:
    written = [LogRecord(i, 1, b"x" * 30) for i in range(1, 41)]
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for record in written:
        wal.append([record])
    wal.sync()
    starts = [int(p.name.removesuffix(".wal")) for p in segments(tmp_path)]
    assert len(starts) >= 5

    upto = starts[2] + 1  # inside the third segment
    wal.compact(upto)
    # The segment holding upto + 1 (the third) is kept, with everything after it.
    assert [int(p.name.removesuffix(".wal")) for p in segments(tmp_path)] == starts[2:]
    assert wal.first_index == starts[2]
    assert wal.last_index == 40

    wal.compact(starts[2] - 1)  # nothing more to drop
    assert wal.first_index == starts[2]

    wal.append([LogRecord(41, 2, b"after compaction")])
    wal.close()
    reopened, records = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert records == [*written[starts[2] - 1 :], LogRecord(41, 2, b"after compaction")]
    assert reopened.first_index == starts[2]
    reopened.close()


def test_compact_at_the_segment_boundary_drops_that_segment(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for index in range(1, 30):
        wal.append([LogRecord(index, 1, b"x" * 30)])
    starts = [int(p.name.removesuffix(".wal")) for p in segments(tmp_path)]
    wal.compact(starts[1] - 1)  # exactly the whole first segment
    assert wal.first_index == starts[1]
    assert [int(p.name.removesuffix(".wal")) for p in segments(tmp_path)] == starts[1:]
    wal.close()


def test_compact_never_removes_the_active_segment(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for index in range(1, 30):
        wal.append([LogRecord(index, 1, b"x" * 30)])
    last_start = int(segments(tmp_path)[-1].name.removesuffix(".wal"))
    wal.compact(10_000)
    assert [p.name for p in segments(tmp_path)] == [segment_name(last_start)]
    assert (wal.first_index, wal.last_index) == (last_start, 29)
    wal.append([LogRecord(30, 1, b"y")])
    wal.close()
    _, records = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert [r.index for r in records] == list(range(last_start, 31))


# --- property: random batches, random crash ----------------------------------------------


def crash(
    directory: Path,
    rng: random.Random,
    synced_segment: tuple[str, int] | None,
) -> str:
    """Leave `directory` as a power cut could: the unsynced tail of the last segment lost."""
    last = segments(directory)[-1]
    size = last.stat().st_size
    synced_size = synced_segment[1] if synced_segment and synced_segment[0] == last.name else None
    if synced_size is None and rng.random() < 0.2:
        last.unlink()  # created since the last sync: its directory entry may be gone
        return f"lost {last.name}"
    floor = synced_size if synced_size is not None else 0
    cut = rng.randint(floor, size)
    os.truncate(last, cut)
    how = f"cut {last.name} at {cut} of {size} (synced {floor})"
    junk = rng.choice([b"", b"\x00" * rng.randrange(1, 600), rng.randbytes(rng.randrange(1, 64))])
    if junk:
        with last.open("ab") as file:
            file.write(junk)
        how += f" + {len(junk)} junk bytes"
    return how


@pytest.mark.parametrize("seed", range(30))
def test_random_batches_and_crash_recover_a_prefix_with_every_synced_record(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    segment_bytes = rng.choice([128, 300, 1000, 1 << 20])
    written = make_records(1, rng.randrange(1, 250), rng)
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=segment_bytes)
    synced_index = 0
    synced_segment: tuple[str, int] | None = None
    position = 0
    while position < len(written):
        size = rng.randrange(1, 20)
        wal.append(written[position : position + size])
        position += size
        if rng.random() < 0.4:
            wal.sync()
            synced_index = wal.last_index
            last = segments(tmp_path)[-1]
            synced_segment = (last.name, last.stat().st_size)
    # No close: the process dies here. Rolled segments were fsynced; the rest is up to `crash`.
    rolled_index = int(segments(tmp_path)[-1].name.removesuffix(".wal")) - 1
    how = crash(tmp_path, rng, synced_segment)
    wal.close()  # releases the fd; its final sync finds nothing left to write
    context = f"seed={seed} segment_bytes={segment_bytes} {how}"

    reopened, records = WriteAheadLog.open(tmp_path, segment_bytes=segment_bytes)
    assert records == written[: len(records)], f"{context}: not a prefix"
    assert len(records) >= max(synced_index, rolled_index), (
        f"{context}: lost synced records ({len(records)} < {synced_index}, {rolled_index})"
    )
    assert reopened.last_index == len(records), context

    more = make_records(len(records) + 1, rng.randrange(1, 30), rng, term=2)
    reopened.append(more)
    reopened.close()
    _, again = WriteAheadLog.open(tmp_path, segment_bytes=segment_bytes)
    assert again == records + more, f"{context}: append after recovery"


def test_preallocated_space_after_a_crash_is_a_clean_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    wal, _ = WriteAheadLog.open(live, segment_bytes=1 << 16)
    written = make_records(1, 12, random.Random(5))
    wal.append(written)
    wal.sync()
    assert segments(live)[0].stat().st_size == 1 << 16, "the active segment is preallocated"
    # The disk as a crash leaves it: no close(), zeros after the last record.
    shutil.copytree(live, crashed)
    wal.close()
    reopened, records = WriteAheadLog.open(crashed, segment_bytes=1 << 16)
    assert records == written
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "nothing was torn"
    reopened.append([LogRecord(13, 2, b"next")])
    reopened.close()
    _, records = WriteAheadLog.open(crashed, segment_bytes=1 << 16)
    assert [r.index for r in records] == list(range(1, 14))
