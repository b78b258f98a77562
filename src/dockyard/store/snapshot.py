"""Snapshots: the store's state at a log index, so the WAL and restart time stay bounded.

Role: `save_snapshot` writes the serialized state (opaque bytes to this module) as of log
index `index` (in Raft term `term`) durably and atomically; `load_latest_snapshot` returns
the newest one that reads back intact. Once a snapshot at N is saved, the driver may call
`WriteAheadLog.compact(N)`.

On-disk format (integers little-endian), one file per snapshot:

    directory/<term %016d>-<index %016d>.snap
    header = magic b"DYKDSNAP" (8) | version u32 (=1) | crc u32 | term u64 | index u64
             | data_length u64
    body   = data
    crc    = CRC-32C of term | index | data_length | data  (all but magic, version and crc)

Invariants:
- a `.snap` file is only ever created by renaming a fully written and fsynced `.tmp` file, and
  the rename is made durable (directory fsync) before older snapshots are deleted; so a crash
  at any point leaves every previously saved snapshot, or the new one, readable;
- a snapshot is trusted only if its checksum, length, and the term and index in its name all
  agree; otherwise it is skipped (logged), never partially applied;
- at most `KEEP_SNAPSHOTS` snapshots are kept, the newest by index. The older ones are the
  fallback if the newest is damaged; the driver should compact the WAL no further than the
  oldest kept snapshot if it wants that fallback to be usable.

This module must not interpret `data`.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

__all__ = ["KEEP_SNAPSHOTS", "Snapshot", "load_latest_snapshot", "save_snapshot"]

_log = logging.getLogger(__name__)

SNAPSHOT_MAGIC = b"DYKDSNAP"
SNAPSHOT_VERSION = 1
KEEP_SNAPSHOTS = 3
_HEADER = struct.Struct("<8sIIQQQ")  # magic, version, crc, term, index, data_length
_CHECKED = struct.Struct("<QQQ")  # the header fields the crc covers
_NAME = re.compile(r"^(\d{16})-(\d{16})\.snap$")
_TMP_SUFFIX = ".tmp"


class SnapshotError(Exception):
    """A snapshot file is unreadable; `load_latest_snapshot` skips such files."""


@dataclass(frozen=True)
class Snapshot:
    index: int
    term: int
    data: bytes


def snapshot_name(term: int, index: int) -> str:
    return f"{term:016d}-{index:016d}.snap"


def encode_snapshot(snapshot: Snapshot) -> bytes:
    checked = _CHECKED.pack(snapshot.term, snapshot.index, len(snapshot.data))
    crc = crc32c(snapshot.data, crc32c(checked))
    header = _HEADER.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_VERSION, crc, snapshot.term, snapshot.index, len(snapshot.data)
    )
    return header + snapshot.data


def decode_snapshot(blob: bytes) -> Snapshot:
    """Decode a snapshot file's bytes; raise `SnapshotError` if they are not intact."""
    if len(blob) < _HEADER.size:
        raise SnapshotError(f"header truncated ({len(blob)} of {_HEADER.size} bytes)")
    magic, version, crc, term, index, length = _HEADER.unpack_from(blob, 0)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotError("bad magic")
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported version {version}")
    if len(blob) - _HEADER.size != length:
        raise SnapshotError(f"header says {length} data bytes, file has {len(blob) - _HEADER.size}")
    data = blob[_HEADER.size :]
    if crc32c(data, crc32c(_CHECKED.pack(term, index, length))) != crc:
        raise SnapshotError("checksum mismatch")
    return Snapshot(index=index, term=term, data=data)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _snapshot_files(directory: Path) -> list[tuple[int, int, Path]]:
    """(index, term, path) of every snapshot-named file, oldest first."""
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match is not None:
            found.append((int(match.group(2)), int(match.group(1)), directory / name))
    found.sort()
    return found


def save_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write `snapshot` durably and atomically; keep only the newest `KEEP_SNAPSHOTS`."""
    if snapshot.index < 0 or snapshot.term < 0:
        raise ValueError(f"snapshot index and term must be >= 0: {snapshot.index}, {snapshot.term}")
    directory = Path(directory)
    if not directory.is_dir():
        directory.mkdir(parents=True)
        _fsync_directory(directory.parent)
    final = directory / snapshot_name(snapshot.term, snapshot.index)
    tmp = final.with_name(final.name + _TMP_SUFFIX)
    blob = encode_snapshot(snapshot)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view) :]
        # The data must be on disk before the name points at it, or a crash could leave a
        # `.snap` whose contents never made it (rename is ordered only by our fsync).
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    _fsync_directory(directory)
    # Only now that the new snapshot's name is durable may older fallbacks go.
    files = _snapshot_files(directory)
    stale = files[:-KEEP_SNAPSHOTS]
    for _index, _term, path in stale:
        path.unlink()
    if stale:
        _fsync_directory(directory)
    return final


def load_latest_snapshot(directory: Path) -> Snapshot | None:
    """The newest intact snapshot in `directory`, or None. Removes leftover `.tmp` files."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    leftovers = [name for name in os.listdir(directory) if name.endswith(_TMP_SUFFIX)]
    for name in leftovers:
        # A crash during `save_snapshot`: the `.tmp` was never renamed, so never trusted.
        _log.warning("snapshot: removing leftover %s", directory / name)
        (directory / name).unlink()
    if leftovers:
        _fsync_directory(directory)
    for index, term, path in reversed(_snapshot_files(directory)):
        try:
            snapshot = decode_snapshot(path.read_bytes())
            if (snapshot.index, snapshot.term) != (index, term):
                raise SnapshotError(
                    f"file says term {snapshot.term} index {snapshot.index}, name disagrees"
                )
        except (OSError, SnapshotError) as error:
            _log.warning("snapshot: skipping unreadable %s: %s", path, error)
            continue
        return snapshot
    return None
