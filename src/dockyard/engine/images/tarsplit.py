"""Tar-split: keep a layer's tar reproducible byte for byte without keeping the tar.

Role: a layer's DiffID is the digest of its uncompressed tar, and `docker save`/`docker push`
must hand out exactly those bytes again. Keeping every tar would double the disk an image
takes; instead, while a layer is extracted, everything in the stream except the payload of
regular files (headers, PAX and GNU long-name records, padding, the end-of-archive blocks) is
recorded, with a reference (path, size) where each payload was. Reassembly reads the
payloads back from the extracted tree. This is what moby's tar-split does; the record format
here is our own.

Record file (gzip, level 1): a sequence of
    b"R" u32 length, the bytes             raw tar bytes
    b"F" u16 length, the path, u64 size     `size` bytes of payload from `<diff>/<path>`

Invariants:
- The recorder sees every byte of the uncompressed stream exactly once, in order, and is
  told each regular member's data offset and size as tarfile yields it; bytes tarfile read
  ahead before a payload was known are trimmed from the buffer then, so raw + payloads
  always tile the stream.
- A tar in which a path occurs twice cannot be reassembled from the tree (the later entry
  replaced the earlier one's payload). The recorder marks such a layer; reassembly then
  checks the digest and fails clearly instead of handing out different bytes.
- Reassembly verifies the whole stream against the DiffID at EOF and raises
  `TarSplitMismatch` if a payload changed on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

__all__ = ["SplitRecorder", "TarSplitMismatch", "open_reassembled"]

_RAW = b"R"
_FILE = b"F"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FLUSH_BYTES = 1 << 16
_CHUNK_BYTES = 1 << 20


class TarSplitMismatch(Exception):
    """The reassembled tar does not have the layer's DiffID."""


class SplitRecorder:
    """Records one uncompressed tar stream as raw segments and payload references."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        self._buffer = bytearray()
        self._buffer_start = 0  # stream offset of _buffer[0]
        self._next_offset = 0  # stream offset of the next byte fed
        self._skip_until = 0  # payload bytes not yet fed, to drop when they come
        self._paths: set[str] = set()
        self.has_duplicates = False

    def feed(self, data: bytes) -> None:
        if self._next_offset < self._skip_until:
            cut = min(len(data), self._skip_until - self._next_offset)
            data = data[cut:]
            self._next_offset += cut
            self._buffer_start = self._next_offset
        self._buffer += data
        self._next_offset += len(data)

    def path_seen(self, path: str) -> None:
        """Any member's path: a second occurrence makes the layer irreproducible."""
        if path in self._paths:
            self.has_duplicates = True
        self._paths.add(path)

    def payload(self, path: str, offset_data: int, size_bytes: int) -> None:
        """A regular file's payload starts at stream offset `offset_data`."""
        raw_bytes = offset_data - self._buffer_start
        if raw_bytes < 0 or raw_bytes > len(self._buffer):
            raise ValueError("tar-split: payload offset outside the buffered stream")
        self._raw(bytes(self._buffer[:raw_bytes]))
        encoded = path.encode("utf-8", "surrogateescape")
        self._out.write(_FILE + _U16.pack(len(encoded)) + encoded + _U64.pack(size_bytes))
        end = offset_data + size_bytes
        if end <= self._next_offset:
            del self._buffer[: end - self._buffer_start]
            self._buffer_start = end
        else:
            self._buffer.clear()
            self._buffer_start = end
            self._skip_until = end

    def _raw(self, data: bytes) -> None:
        if data:
            self._out.write(_RAW + _U32.pack(len(data)) + data)

    def close(self) -> None:
        """Record the rest of the stream (end blocks, padding) and finish the file."""
        if self._skip_until > self._next_offset:
            raise ValueError("tar-split: stream ended inside a payload")
        self._raw(bytes(self._buffer))
        self._buffer.clear()
        self._out.close()


def _segments(record: gzip.GzipFile, diff_dir: Path) -> Iterator[bytes]:
    def read_exact(size: int) -> bytes:
        data = record.read(size)
        if len(data) != size:
            raise TarSplitMismatch("tar-split record is truncated")
        return data

    while kind := record.read(1):
        if kind == _RAW:
            (length,) = _U32.unpack(read_exact(_U32.size))
            yield read_exact(length)
        elif kind == _FILE:
            (length,) = _U16.unpack(read_exact(_U16.size))
            path = read_exact(length).decode("utf-8", "surrogateescape")
            (size,) = _U64.unpack(read_exact(_U64.size))
            yield from _payload(diff_dir, path, size)
        else:
            raise TarSplitMismatch(f"tar-split record has an unknown segment {kind!r}")


def _payload(diff_dir: Path, path: str, size: int) -> Iterator[bytes]:
    # O_NOFOLLOW on the last component; the record's paths were cleaned at extraction.
    fd = os.open(diff_dir / path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        left = size
        while left:
            chunk = source.read(min(left, _CHUNK_BYTES))
            if not chunk:
                raise TarSplitMismatch(f"layer file {path!r} is shorter than its tar entry")
            left -= len(chunk)
            yield chunk


class _Reassembled:
    """A readable stream of the reassembled tar, verified against the DiffID at EOF."""

    def __init__(self, segments: Iterator[bytes], diff_id: str) -> None:
        self._segments = segments
        self._diff_id = diff_id
        self._sha256 = hashlib.sha256()
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        have = 0
        while wanted is None or have < wanted:
            if not self._pending:
                if self._done:
                    break
                chunk = next(self._segments, None)
                if chunk is None:
                    self._finish()
                    break
                self._sha256.update(chunk)
                self._pending = chunk
            take = self._pending if wanted is None else self._pending[: wanted - have]
            self._pending = self._pending[len(take) :]
            parts.append(take)
            have += len(take)
        return b"".join(parts)

    def _finish(self) -> None:
        self._done = True
        actual = "sha256:" + self._sha256.hexdigest()
        if actual != self._diff_id:
            raise TarSplitMismatch(
                f"layer {self._diff_id} cannot be reproduced: its files no longer match "
                f"the tar it was extracted from (got {actual})"
            )


def open_reassembled(record_path: Path, diff_dir: Path, diff_id: str) -> IO[bytes]:
    """The layer's tar as registered; the caller closes the returned stream."""
    # The returned stream owns the record file and closes it.
    record = gzip.open(record_path, "rb")  # noqa: SIM115
    stream = _Reassembled(_segments(record, diff_dir), diff_id)
    return cast(IO[bytes], _Closing(stream, record))


class _Closing:
    """Pairs the reassembled stream with the record file it reads, for `with` and close."""

    def __init__(self, stream: _Reassembled, record: gzip.GzipFile) -> None:
        self._stream = stream
        self._record = record

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        self._record.close()

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
