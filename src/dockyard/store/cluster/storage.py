"""The clustered member's durable Raft state: its log entries and its hard state, in one file.

Role: what the driver contract says to persist before sending (`Ready.entries`,
`Ready.hard_state`), and what a restarting member hands back to `RaftNode`. The record
format is the store WAL's (`wal.py`): `length u32 | crc32c u32 | type u8 | payload`,
little-endian, after a 24-byte header (magic `DYKDRAFT`, version, reserved, 0):

    type 1  entry       index u64 | term u64 | kind u8 (0 normal, 1 conf change) | data
    type 2  hard state  term u64 | vote u64 | commit u64

Rules:
- Records are only appended. An entry whose index is at or below the last one written
  replaces it and everything after it (Raft §5.3: a follower's conflicting suffix is
  overwritten), so replay keeps, for each index, the newest record, and drops any later
  ones from the replaced suffix. The newest hard-state record wins.
- `save` writes the whole Ready in one `write` and `fdatasync`s before it returns: nothing
  the Ready carries may be sent before that. An async leader's driver (`RaftConfig.
  leader_persists_async`) calls `write`, sends, then `sync`, and tells the core what is
  durable. The one exception is a Ready whose only
  change is the commit index (no entries, same term and vote): it is written but not
  synced, as etcd's raft allows (`MustSync`), since a commit index lost in a crash is
  learned again from the leader and state is rebuilt from the log.
- Recovery: a torn tail (an unreadable record with no valid record after it) is cut off, as
  the store WAL does; damage anywhere else raises `WalCorruption` rather than risking a lost
  committed entry.
- The file's blocks are reserved ahead of the writes in `PREALLOCATE_BYTES` steps (as the
  store WAL and etcd do), so an `fdatasync` after an append flushes the data, not a new file
  size. The reserved, never-written tail reads as zeros: recovery sees it as a torn tail and
  cuts it.

Compaction (`rewrite`): once the member has a durable snapshot, the entries it covers
(but a catch-up tail) are dropped by writing a new file holding only the kept entries and
the hard state, with the index of its first entry in the header's last field (0 in a file
never rewritten: its entries start where the caller says), fsyncing it, renaming it over
the old one and fsyncing the directory. A crash before the rename leaves the old file (and
a `.tmp` that `open` removes); after it, the new one: either is a startable log, since the
snapshot was made durable first.

Must not: interpret entry data (that is the member's job through `commands.py`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

from dockyard.raft.messages import Entry, EntryKind, HardState

# The same frame checks and durable-write helpers as the store WAL: one record format.
from dockyard.store.wal import (
    FRAME_BYTES,
    WalCorruption,
    WalError,
    _frame_at,
    _fsync_directory,
    _truncate_durably,
    _valid_frame_after,
    _write_all,
)

MAGIC = b"DYKDRAFT"
VERSION = 1
_HEADER = struct.Struct("<8sIIQ")
_FRAME = struct.Struct("<II")
_ENTRY = struct.Struct("<BQQB")
_HARD = struct.Struct("<BQQQ")
TYPE_ENTRY = 1
TYPE_HARD_STATE = 2
_KIND_BYTE = {EntryKind.NORMAL: 0, EntryKind.CONF_CHANGE: 1}
_BYTE_KIND = {b: k for k, b in _KIND_BYTE.items()}
FILE_NAME = "raft.log"
# Blocks reserved ahead of the writes: each fdatasync then flushes data only (measured on the
# store WAL: ~130 us instead of 200-400 us on ext4).
PREALLOCATE_BYTES = 16 << 20
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class Recovered:
    hard_state: HardState | None
    entries: tuple[Entry, ...]


def _frame(body: bytes) -> bytes:
    return _FRAME.pack(len(body), crc32c(body)) + body


class RaftStorage:
    """Append-only storage of entries and hard states; see the module docstring."""

    def __init__(self, path: Path, fd: int, size: int, last_index: int) -> None:
        self._path = path
        self._fd = fd
        self._size = size
        self._reserved = size  # bytes the file holds on disk (written + preallocated)
        self._last_index = last_index
        self._failure: str | None = None
        self._synced = HardState()  # term and vote as last written (see `write`)
        # What `sync` may report durable: (write number, last entry's index, its term), one
        # tuple so that the sync thread reads it in one step; `_synced_seq` is the write
        # number the last fdatasync covered (see `sync`).
        self._written = (0, last_index, 0)
        self._synced_seq = 0
        self._sync_lock = threading.Lock()  # one fdatasync (or rewrite) at a time
        self._hard: HardState | None = None  # the last hard state written (synced or not)

    @classmethod
    def open(cls, directory: Path, first_index: int) -> tuple[RaftStorage, Recovered]:
        """Open (creating) the log; entries must start at `first_index` (after the snapshot)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE_NAME
        tmp = path.with_name(FILE_NAME + TMP_SUFFIX)
        if tmp.exists():
            # A crash during `rewrite` before its rename: the old file is the log.
            tmp.unlink()
            _fsync_directory(directory)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            header = _HEADER.pack(MAGIC, VERSION, 0, 0)
            _write_all(fd, header, 0)
            os.fsync(fd)
            _fsync_directory(directory)
            return cls(path, fd, len(header), first_index - 1), Recovered(None, ())
        data = path.read_bytes()
        if len(data) < _HEADER.size or data[:8] != MAGIC:
            raise WalCorruption(path, 0, "not a dockyard raft log (bad header)")
        _magic, version, _, file_first = _HEADER.unpack_from(data, 0)
        if version != VERSION:
            raise WalCorruption(path, 0, f"unsupported raft log version {version}")
        if file_first:
            first_index = file_first  # a rewritten (compacted) log says where it starts
        entries: list[Entry] = []
        hard: HardState | None = None
        offset = _HEADER.size
        while offset < len(data):
            end, problem = _frame_at(data, offset)
            if end < 0:
                following = _valid_frame_after(data, offset)
                if following is not None:
                    raise WalCorruption(
                        path, offset, f"{problem} (a valid record follows at offset {following})"
                    )
                _truncate_durably(path, offset)
                break
            body = data[offset + FRAME_BYTES : end]
            if body[0] == TYPE_ENTRY:
                _, index, term, kind = _ENTRY.unpack_from(body, 0)
                if kind not in _BYTE_KIND:
                    raise WalCorruption(path, offset, f"unknown entry kind {kind}")
                expected_max = (entries[-1].index if entries else first_index - 1) + 1
                if not first_index <= index <= expected_max:
                    raise WalCorruption(
                        path, offset, f"entry {index} does not follow the log (next {expected_max})"
                    )
                del entries[index - first_index :]
                entries.append(Entry(term, index, _BYTE_KIND[kind], body[_ENTRY.size :]))
            elif body[0] == TYPE_HARD_STATE:
                _, term, vote, commit = _HARD.unpack_from(body, 0)
                hard = HardState(term, vote, commit)
            else:
                raise WalCorruption(path, offset, f"unknown record type {body[0]}")
            offset = end
        fd = os.open(path, os.O_WRONLY)
        last = entries[-1].index if entries else first_index - 1
        storage = cls(path, fd, offset, last)
        storage._written = (0, last, entries[-1].term if entries else 0)
        if hard is not None:
            storage._synced = hard
            storage._hard = hard
        return storage, Recovered(hard, tuple(entries))

    @property
    def last_index(self) -> int:
        return self._last_index

    def save(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        """Append `entries` (replacing any from the first one's index on) and `hard_state`,
        then fdatasync, unless only the commit index moved (and nothing written before
        waits for a sync): a lost commit index is learned
        again from the leader (etcd raft's MustSync), and skipping that fsync halves a
        leader's fsyncs per write. Raises `WalError` once any write or sync has failed."""
        self.write(entries, hard_state)
        if self.dirty:
            self.sync()  # also whatever an async leader wrote before and has not synced

    def changes_term_or_vote(self, hard_state: HardState | None) -> bool:
        """Whether writing `hard_state` would change the term or vote last written."""
        return hard_state is not None and (hard_state.term, hard_state.vote) != (
            self._synced.term,
            self._synced.vote,
        )

    def write(self, entries: Sequence[Entry], hard_state: HardState | None) -> bool:
        """`save` without its fdatasync: whether the write needs one (it changed entries, the
        term or the vote). An async leader's driver sends before it calls `sync`."""
        if self._failure is not None:
            raise WalError(f"raft log failed earlier ({self._failure}); restart the member")
        if not entries and hard_state is None:
            return False
        buf = bytearray()
        for e in entries:
            buf += _frame(_ENTRY.pack(TYPE_ENTRY, e.index, e.term, _KIND_BYTE[e.kind]) + e.data)
        if hard_state is not None:
            buf += _frame(
                _HARD.pack(TYPE_HARD_STATE, hard_state.term, hard_state.vote, hard_state.commit)
            )
        must_sync = bool(entries) or self.changes_term_or_vote(hard_state)
        try:
            if self._size + len(buf) > self._reserved:
                self._reserve(self._size + len(buf) + PREALLOCATE_BYTES)
            _write_all(self._fd, buf, self._size)
        except OSError as error:
            # As the store WAL: after a failed write or fsync the file's state is unknown.
            self._failure = repr(error)
            raise WalError(f"raft log write failed: {error}") from error
        self._size += len(buf)
        if hard_state is not None:
            self._synced = hard_state
            self._hard = hard_state
        seq, last, term = self._written
        if entries:
            self._last_index = last = entries[-1].index
            term = entries[-1].term
        if must_sync:
            seq += 1
        self._written = (seq, last, term)  # after the write: a sync that reads it covers it
        return must_sync

    def sync(self) -> tuple[int, int]:
        """fdatasync what `write` left unsynced (nothing if nothing needs it); the index and
        term of the last entry written, durable now. Safe from another thread than the
        writer's (an async leader's sync thread): `write` only appends with pwrite, which an
        fdatasync on the same file does not disturb."""
        with self._sync_lock:
            if self._failure is not None:
                raise WalError(f"raft log failed earlier ({self._failure}); restart the member")
            seq, last, term = self._written
            if seq != self._synced_seq:
                try:
                    os.fdatasync(self._fd)
                except OSError as error:
                    self._failure = repr(error)
                    raise WalError(f"raft log sync failed: {error}") from error
                self._synced_seq = seq
        return last, term

    @property
    def dirty(self) -> bool:
        """Written entries (or a term or vote) wait for `sync`."""
        return self._written[0] != self._synced_seq

    def _reserve(self, size: int) -> None:
        # A file system without fallocate: the file just grows with the writes.
        with contextlib.suppress(OSError):
            os.posix_fallocate(self._fd, 0, size)
        self._reserved = size

    def rewrite(self, first_index: int, entries: Sequence[Entry]) -> None:
        """Replace the file by one holding only `entries` (which start at `first_index`, or
        are empty) and the last hard state written; durably, atomically (see the module
        docstring). The caller's snapshot must already be durable and cover `first_index - 1`."""
        with self._sync_lock:  # not while the sync thread holds the old file's fd
            self._rewrite(first_index, entries)

    def _rewrite(self, first_index: int, entries: Sequence[Entry]) -> None:
        if self._failure is not None:
            raise WalError(f"raft log failed earlier ({self._failure}); restart the member")
        if entries and entries[0].index != first_index:
            raise ValueError(f"entries start at {entries[0].index}, not {first_index}")
        buf = bytearray(_HEADER.pack(MAGIC, VERSION, 0, first_index))
        for e in entries:
            buf += _frame(_ENTRY.pack(TYPE_ENTRY, e.index, e.term, _KIND_BYTE[e.kind]) + e.data)
        if self._hard is not None:
            h = self._hard
            buf += _frame(_HARD.pack(TYPE_HARD_STATE, h.term, h.vote, h.commit))
        tmp = self._path.with_name(FILE_NAME + TMP_SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, buf, 0)
                os.fsync(fd)  # the data before the name that points at it
            except BaseException:
                os.close(fd)
                raise
            os.replace(tmp, self._path)
            _fsync_directory(self._path.parent)
        except OSError as error:
            self._failure = repr(error)
            raise WalError(f"raft log rewrite failed: {error}") from error
        os.close(self._fd)
        self._fd = fd
        self._size = len(buf)
        self._reserved = len(buf)
        self._last_index = entries[-1].index if entries else first_index - 1
        # The new file was fsynced whole: nothing waits for a sync.
        self._synced_seq = self._written[0]
        self._written = (self._synced_seq, self._last_index, entries[-1].term if entries else 0)
        if self._hard is not None:
            self._synced = self._hard

    def close(self) -> None:
        with self._sync_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class SyncThread:
    """An async leader's fdatasync, on a thread of its own (Raft thesis §10.2.1).

    The event loop writes the leader's entries (`RaftStorage.write`), sends them and calls
    `request`; this thread runs `RaftStorage.sync` (the GIL is released during the
    fdatasync, so the loop keeps parsing requests and applying entries meanwhile) and hands
    the durable (index, term) back on the loop with `call_soon_threadsafe`. Requests made
    while a sync runs are covered by the next one: at most one sync is in flight, and under
    load each one covers every write before it (group commit).
    """

    def __init__(
        self,
        storage: RaftStorage,
        call_soon_threadsafe: Callable[..., object],
        on_synced: Callable[[int, int], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self._storage = storage
        self._call_soon_threadsafe = call_soon_threadsafe
        self._on_synced = on_synced
        self._on_failed = on_failed
        # A wake-up token: a C queue's put is far cheaper on the loop than Event.set (a
        # Condition and notify_all; 3% of a busy leader's loop). `_requested` keeps at most
        # one token queued: the thread clears it before it reads what to sync, so a write
        # made after that read queues a new token and gets a sync of its own.
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._requested = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="raft-log-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        if not self._requested:
            self._requested = True
            self._tokens.put(None)

    def close(self) -> None:
        self._stopping = True
        self._tokens.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._tokens.get()
            self._requested = False
            if self._stopping:
                return
            try:
                index, term = self._storage.sync()
            except WalError as error:
                self._call_soon_threadsafe(self._on_failed, str(error))
                return
            try:
                self._call_soon_threadsafe(self._on_synced, index, term)
            except RuntimeError:
                return  # the loop is closed: the member is stopping
