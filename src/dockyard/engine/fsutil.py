"""Small filesystem helpers shared by the image builder, volumes and the API.

Role: blocking I/O on host paths; callers on the event loop use asyncio.to_thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dockyard.engine.model import archive as am

__all__ = ["directory_size", "resolve_in_scope"]


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
