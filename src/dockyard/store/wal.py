"""The write-ahead log: the store's one ordered, durable log of commands.

Role: every command is appended here and made durable (`sync`) before it is acknowledged or
applied. Today this is the single node's log; later it holds the Raft log. Snapshots
(`snapshot.py`) bound its length: once a snapshot at index N is durable, `compact(N)` drops
whole segments that hold only records <= N.

On-disk format (all integers little-endian):

    directory/
      0000000000000001.wal      segment; the name is the index of its first record
      0000000000004711.wal      ...

    segment = header record*
    header  = magic b"DYKDWAL\\0" (8) | version u32 (=1) | reserved u32 (=0) | first_index u64
    record  = length u32 | crc u32 | type u8 | payload
              length = len(type + payload); crc = CRC-32C (Castagnoli) of type + payload
    type 1  = entry: payload = index u64 | term u64 | data

Invariants (checked by helpers that always run, never by `assert`):
- record indexes are strictly increasing and contiguous across the whole log, and the first
  record of a segment carries the index in the segment's name;
- only the tail of the *last* segment can be torn: a segment is fsynced before the next one is
  created, so every non-last segment is complete;
- segments are deleted oldest first, so the segments on disk always form a contiguous suffix;
- the active (last) segment is never deleted by `compact`.

Recovery (`open`): an unreadable record at the tail of the last segment, with no valid record
anywhere after it, is a torn write (the process or machine died mid-`append`); it is cut off
(truncate + fsync). Anything else that does not decode, or an index gap, raises
`WalCorruption` naming the file and byte offset: silently dropping a record that may have
been acknowledged would lose a committed write, so we refuse to start instead.

Threading contract: one thread (the event loop) calls `append`, `compact` and `close`.
`sync` may run on another thread (the driver runs it in a worker so fsync does not block the
loop), but never at the same time as `append`/`compact`: the driver appends a batch, awaits
`sync` in the worker, and only then appends the next batch. An overlap is detected (a
non-blocking lock) and raises `WalInvariantError` rather than corrupting state. `close` is
the exception: it waits for an in-flight `sync` (shutdown may cancel the awaiting task while
the worker thread is still inside fsync).

Failure: after an `OSError` from a write or an fsync the log refuses all further calls
(`WalError`); the state of the file is unknown (a failed fsync may have dropped dirty pages
and will not report it twice), so the only way on is to reopen, which re-reads the disk.

This module must not interpret payloads (that is `commands.py`) and must not buffer records in
user space past `append`: `append` hands the bytes to the OS in one `os.write` call.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

__all__ = [
    "LogRecord",
    "WalCorruption",
    "WalError",
    "WalInvariantError",
    "WriteAheadLog",
]

_log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"DYKDWAL\x00"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIIQ")
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size  # 24

_FRAME = struct.Struct("<II")  # length, crc
FRAME_BYTES = _FRAME.size  # 8
_ENTRY_HEAD = struct.Struct("<BQQ")  # type, index, term
RECORD_TYPE_ENTRY = 1
_ENTRY_HEAD_BYTES = _ENTRY_HEAD.size  # 17

# A limit on everything: a length field above this is garbage, not a record. It bounds the
# memory a corrupt length can make us touch and keeps any single write reasonable.
MAX_RECORD_BYTES = 64 * 2**20

_SEGMENT_NAME = re.compile(r"^(\d{16})\.wal$")


class WalError(Exception):
    """Base of the write-ahead log's exceptions."""


class WalCorruption(WalError):
    """The log on disk is damaged somewhere other than a torn tail; it must not be used."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"WAL corrupt: {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class WalInvariantError(WalError):
    """The caller broke the log's contract (index order, threading, use after close)."""


def _require(condition: bool, message: str) -> None:
    """Always-on invariant check (survives `python -O`, unlike `assert`)."""
    if not condition:
        raise WalInvariantError(message)


@dataclass(frozen=True, slots=True)
class LogRecord:
    index: int
    term: int
    payload: bytes


def segment_name(first_index: int) -> str:
    return f"{first_index:016d}.wal"


def _encode_header(first_index: int) -> bytes:
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, 0, first_index)


def _header_problem(data: bytes, first_index: int) -> str | None:
    """Why `data` does not start with a valid header for `first_index`, or None if it does."""
    if len(data) < SEGMENT_HEADER_BYTES:
        return f"segment header truncated ({len(data)} of {SEGMENT_HEADER_BYTES} bytes)"
    magic, version, _reserved, named = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return "bad segment magic"
    if version != SEGMENT_VERSION:
        return f"unsupported segment version {version}"
    if named != first_index:
        return f"segment header says first index {named}, file name says {first_index}"
    return None


def _frame_at(data: bytes, offset: int) -> tuple[int, str]:
    """Check the frame at `offset`: (offset after it, "") if its checksum holds, else (-1, why)."""
    end = len(data)
    if end - offset < FRAME_BYTES:
        return -1, "record frame truncated"
    length, crc = _FRAME.unpack_from(data, offset)
    if length < _ENTRY_HEAD_BYTES or length > MAX_RECORD_BYTES:
        return -1, f"implausible record length {length}"
    body_start = offset + FRAME_BYTES
    body_end = body_start + length
    if body_end > end:
        return -1, f"record claims {length} bytes, {end - body_start} remain"
    if crc32c(data[body_start:body_end]) != crc:
        return -1, "checksum mismatch"
    return body_end, ""


_NON_ZERO = re.compile(rb"[^\x00]")


def _valid_frame_after(data: bytes, offset: int) -> int | None:
    """Offset of the first checksum-valid frame starting after `offset`, if any.

    This is what separates a torn tail (nothing valid follows: cut it) from corruption in the
    middle (something valid follows: refuse). We try every byte offset because a damaged
    length field tells us nothing about where the next record starts. Garbage rarely yields a
    length that fits, so few positions cost a CRC; runs of zeros (a common torn tail) are
    skipped in one step, since a frame's length field cannot be all zeros.
    """
    end = len(data)
    start = offset + 1
    last_start = end - FRAME_BYTES - _ENTRY_HEAD_BYTES
    while start <= last_start:
        length = int.from_bytes(data[start : start + 4], "little")
        if length == 0:
            found = _NON_ZERO.search(data, start + 4)
            if found is None:
                return None
            # The next length field that is not zero must contain byte `found.start()`.
            start = max(start + 1, found.start() - 3)
            continue
        fits = _ENTRY_HEAD_BYTES <= length <= MAX_RECORD_BYTES
        if fits and start + FRAME_BYTES + length <= end and _frame_at(data, start)[0] >= 0:
            return start
        start += 1
    return None


def _fsync_directory(directory: Path) -> None:
    # A new or removed file is durable only once its directory entry is (POSIX fsync(2)).
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    # os.pwrite may write less than asked (signals, full disk); a short write left unnoticed
    # would leave a hole that recovery reads as corruption.
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _preallocate(fd: int, size: int) -> None:
    """Reserve the segment's blocks up front (as etcd does), so that an fdatasync after an
    append flushes data, not a new file size: measured here, ~130 us instead of ~200-400 us."""
    try:
        if os.fstat(fd).st_size < size:
            os.posix_fallocate(fd, 0, size)
    except OSError:  # a file system without fallocate: segments just grow
        pass


class WriteAheadLog:
    """An append-only, segmented, checksummed log of `LogRecord`s. See the module docstring."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int,
        segment_starts: list[int],
        fd: int | None,
        segment_size: int,
        first_index: int,
        last_index: int,
    ) -> None:
        # Use `open`; this constructor trusts its arguments.
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._segment_starts = segment_starts  # first index of each segment, oldest first
        self._fd = fd  # the active (last) segment, written with pwrite; None until the first append
        self._segment_size = segment_size  # bytes in the active segment
        self._first_index = first_index
        self._last_index = last_index
        self._directory_sync_pending = False
        self._closed = False
        # Set by a failed write or fsync; see "Failure" in the module docstring.
        self._failure: str | None = None
        # Not for mutual exclusion (that is the caller's contract) but to detect an overlap
        # between `sync` on a worker thread and `append` on the loop, and fail loudly.
        self._busy = threading.Lock()

    # --- opening and recovery ------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: Path, *, segment_bytes: int = 64 * 2**20
    ) -> tuple[WriteAheadLog, list[LogRecord]]:
        """Open (creating if needed) the log in `directory`; return it and all its records.

        Repairs a torn tail of the last segment; raises `WalCorruption` for anything else.
        """
        _require(segment_bytes > SEGMENT_HEADER_BYTES, f"segment_bytes too small: {segment_bytes}")
        directory = Path(directory)
        if not directory.is_dir():
            directory.mkdir(parents=True)
            _fsync_directory(directory.parent)
        starts = sorted(
            int(match.group(1))
            for name in os.listdir(directory)
            if (match := _SEGMENT_NAME.match(name)) is not None
        )
        records: list[LogRecord] = []
        kept: list[int] = []
        active_size = 0
        for position, start in enumerate(starts):
            path = directory / segment_name(start)
            is_last = position == len(starts) - 1
            if records and start != records[-1].index + 1:
                raise WalCorruption(
                    path, 0, f"index gap: previous segment ends at {records[-1].index}"
                )
            size = cls._read_segment(path, start, is_last, records)
            if size is None:  # a torn, record-less last segment: removed
                continue
            if not is_last and (not records or records[-1].index < start):
                raise WalCorruption(path, SEGMENT_HEADER_BYTES, "non-last segment holds no records")
            kept.append(start)
            active_size = size

        fd: int | None = None
        if kept:
            fd = os.open(directory / segment_name(kept[-1]), os.O_WRONLY)
            _preallocate(fd, segment_bytes)
            first_index = kept[0]
            # An active segment without records yet continues at the index in its name.
            last_index = records[-1].index if records else kept[-1] - 1
        else:
            # A fresh log; its first append may start at any index (e.g. after a snapshot).
            first_index, last_index = 1, 0
        wal = cls(directory, segment_bytes, kept, fd, active_size, first_index, last_index)
        return wal, records

    @staticmethod
    def _read_segment(path: Path, start: int, is_last: bool, out: list[LogRecord]) -> int | None:
        """Append the segment's records to `out`; return its (repaired) size, or None if removed."""
        data = path.read_bytes()
        problem = _header_problem(data, start)
        if problem is not None:
            # `_roll` writes the header right after creating the file, before any record, so
            # a torn header with no valid frame after it is a crash during segment creation.
            if is_last and _valid_frame_after(data, SEGMENT_HEADER_BYTES - 1) is None:
                _log.warning("WAL: removing torn segment %s (%s)", path, problem)
                path.unlink()
                _fsync_directory(path.parent)
                return None
            raise WalCorruption(path, 0, problem)
        offset = SEGMENT_HEADER_BYTES
        expected = start
        end = len(data)
        while offset < end:
            next_offset, problem = _frame_at(data, offset)
            if next_offset < 0:
                if not is_last:
                    raise WalCorruption(path, offset, problem)
                if data.count(0, offset) == end - offset:
                    return offset  # the preallocated, never written rest of the segment
                following = _valid_frame_after(data, offset)
                if following is not None:
                    raise WalCorruption(
                        path, offset, f"{problem} (a valid record follows at offset {following})"
                    )
                _log.warning(
                    "WAL: cutting torn tail of %s at offset %d (%d bytes: %s)",
                    path,
                    offset,
                    end - offset,
                    problem,
                )
                _truncate_durably(path, offset)
                return offset
            body_start = offset + FRAME_BYTES
            record_type, index, term = _ENTRY_HEAD.unpack_from(data, body_start)
            if record_type != RECORD_TYPE_ENTRY:
                # The checksum holds, so this is not a torn write but a format we do not know.
                raise WalCorruption(path, offset, f"unknown record type {record_type}")
            if index != expected:
                raise WalCorruption(path, offset, f"index gap: expected {expected}, found {index}")
            out.append(LogRecord(index, term, data[body_start + _ENTRY_HEAD_BYTES : next_offset]))
            expected += 1
            offset = next_offset
        return offset

    # --- properties ------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def first_index(self) -> int:
        """Index of the oldest record kept (1 for a fresh log)."""
        return self._first_index

    @property
    def active_segment_bytes(self) -> int:
        """Bytes of records (and header) in the active segment; the file itself is longer,
        preallocated, until `close` trims it."""
        return self._segment_size

    @property
    def last_index(self) -> int:
        """Index of the newest record; `first_index - 1` when the log holds none."""
        return self._last_index

    @property
    def segment_count(self) -> int:
        return len(self._segment_starts)

    # --- writing -----------------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> None:
        """Hand `records` (contiguous, following `last_index`) to the OS in one write call.

        Not durable until `sync` returns. Rolls to a new segment first when this batch would
        push a segment that already holds records past `segment_bytes`; rolling fsyncs the
        old segment, so that only the last segment can ever have a torn tail.
        """
        if not records:
            return
        self._enter("append")
        try:
            fresh = not self._segment_starts
            first = records[0].index
            if fresh:
                _require(first >= 1, f"append: first index must be >= 1, got {first}")
            else:
                _require(
                    first == self._last_index + 1,
                    f"append: expected index {self._last_index + 1}, got {first}",
                )
            buf = bytearray()
            expected = first
            for record in records:
                if record.index != expected:
                    _require(False, f"append: expected index {expected}, got {record.index}")
                # One concatenation and one CRC call measured faster than chaining the CRC
                # over head and payload for small records, the common case (JSON commands).
                body = _ENTRY_HEAD.pack(RECORD_TYPE_ENTRY, record.index, record.term)
                body += record.payload
                if len(body) > MAX_RECORD_BYTES:
                    _require(False, f"append: record {record.index} is over {MAX_RECORD_BYTES} B")
                buf += _FRAME.pack(len(body), crc32c(body))
                buf += body
                expected += 1
            self._write(buf, first, fresh)
            self._last_index = expected - 1
        finally:
            self._busy.release()

    def _write(self, buf: bytearray, first: int, fresh: bool) -> None:
        try:
            if fresh:
                self._roll(first)
                self._first_index = first
                self._last_index = first - 1
            elif (
                self._last_index >= self._segment_starts[-1]
                and self._segment_size + len(buf) > self._segment_bytes
            ):
                self._roll(first)
            fd = self._fd
            if fd is None:
                raise WalInvariantError("append: no active segment")
            _write_all(fd, buf, self._segment_size)
        except OSError as error:
            self._failure = f"append failed: {error!r}"
            raise
        self._segment_size += len(buf)

    def _roll(self, first_index: int) -> None:
        """Make a new active segment whose first record will be `first_index`."""
        if self._fd is not None:
            # Every non-last segment must be complete on disk before a later one can exist,
            # and end at its last record (no preallocated zeros after it).
            os.ftruncate(self._fd, self._segment_size)
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
        path = self._directory / segment_name(first_index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._fd = fd
        self._segment_starts.append(first_index)
        self._segment_size = 0
        _write_all(fd, _encode_header(first_index), 0)
        self._segment_size = SEGMENT_HEADER_BYTES
        _preallocate(fd, self._segment_bytes)
        # The new name becomes durable at the next `sync`, before anything in it is acked.
        self._directory_sync_pending = True

    def sync(self) -> None:
        """Make every appended record durable. May run on a worker thread; see the contract."""
        self._enter("sync")
        try:
            self._sync_locked()
        finally:
            self._busy.release()

    def _sync_locked(self) -> None:
        if self._fd is None:
            return
        try:
            os.fdatasync(self._fd)
            if self._directory_sync_pending:
                _fsync_directory(self._directory)
                self._directory_sync_pending = False
        except OSError as error:
            self._failure = f"sync failed: {error!r}"
            raise

    def compact(self, upto_index: int) -> None:
        """Delete whole segments holding only records <= `upto_index` (never the active one).

        Call only once a snapshot at `upto_index` is durable. Records <= `upto_index` may
        survive in the segment that also holds `upto_index + 1`; replay must skip them.
        """
        self._enter("compact")
        try:
            starts = self._segment_starts
            removable = 0
            # Segment i holds [starts[i], starts[i + 1] - 1]; the last one is active.
            while removable < len(starts) - 1 and starts[removable + 1] - 1 <= upto_index:
                removable += 1
            if removable == 0:
                return
            # Oldest first, so a crash midway still leaves a contiguous suffix on disk.
            for start in starts[:removable]:
                (self._directory / segment_name(start)).unlink()
            del starts[:removable]
            self._first_index = starts[0]
            _fsync_directory(self._directory)
        finally:
            self._busy.release()

    def close(self) -> None:
        """Sync (unless the log has failed) and close. Idempotent.

        Unlike the other calls, `close` waits for a `sync` still running on a worker: at
        shutdown the driver may cancel the task that awaits it without stopping the thread.
        """
        if self._closed:
            return
        with self._busy:
            try:
                if self._failure is None:
                    if self._fd is not None:
                        # A clean stop leaves the segment at its logical size; the next open
                        # preallocates again.
                        os.ftruncate(self._fd, self._segment_size)
                    self._sync_locked()
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._closed = True

    # --- helpers ---------------------------------------------------------------------------

    def _enter(self, operation: str) -> None:
        _require(not self._closed, f"{operation} on a closed WAL")
        if self._failure is not None:
            raise WalError(f"{operation} on a failed WAL ({self._failure}); reopen it")
        if not self._busy.acquire(blocking=False):
            raise WalInvariantError(
                f"{operation} overlapped another WAL call: append/compact/close and sync "
                "must never run at the same time"
            )


def _truncate_durably(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
