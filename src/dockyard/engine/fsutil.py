"""Small filesystem helpers shared by the image builder, volumes and the API.

Role: blocking I/O on host paths; callers on the event loop use asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

from dockyard.engine.model import archive as am

__all__ = ["directory_size", "resolve_in_scope", "write_atomic"]


def directory_size(path: Path) -> int:
    """moby pkg/directory Size: st_size of everything below `path` but directories (so a
    symlink counts its target's length), each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, dirs, files in os.walk(path):
        # os.walk lists a symlink to a directory among `dirs` (and does not follow it).
        for name in (*files, *dirs):
            try:
                st = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def resolve_in_scope(root: Path, path: str) -> Path:
    """`path` under `root` with every symlink resolved as if `root` were `/` (moby
    symlink.FollowSymlinkInScope): absolute targets restart at `root`, `..` never climbs
    above it, the last components may not exist. Raises am.TooManyLinks on a loop."""

    def readlink(inside: str) -> str | None:
        try:
            return os.readlink(root / inside.lstrip("/"))
        except OSError:  # not a link, or not there
            return None

    return root / am.resolve_in_scope(path, readlink).lstrip("/")


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace `path` by `data`: a temporary file written and renamed over the old one, so
    readers (and a restart after a crash) see the old content or the new, never a mix. The
    temporary file goes on failure.

    `durable` (the default) also fsyncs the file before the rename and the directory after,
    so the new content survives a machine crash. State that dies with the machine anyway
    (a running container's sandbox, its generated /etc files: no namespace, veth or
    process outlives a reboot) passes ``durable=False``: a `kill -9` of the daemon loses
    nothing written to the page cache, and two fsyncs per write were ~10% of the daemon's
    time when containers start and stop in parallel."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
