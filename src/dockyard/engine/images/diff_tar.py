"""A layer tar from an overlayfs upper directory (the inverse of the store's extraction).

Role: `write_diff_tar(upper_dir, out)` writes the changes a container (or a build step)
made as an OCI layer tar, for `ImageStore.register_layer`: the build's RUN/COPY steps and
`docker commit` use it.

Invariants:
- Deterministic: entries in sorted path order, a directory before what it holds; PAX
  format; owner, mode, mtime (whole seconds) and extended attributes as on disk; no user
  or group names. The same tree always gives the same bytes, hence the same DiffID.
- overlayfs whiteouts become OCI whiteouts (image-spec layer.md): a 0/0 character device
  `name` becomes an empty `.wh.name`; a directory with `trusted.overlay.opaque=y` gets a
  `.wh..wh..opq` entry right after its own entry. overlayfs's private `trusted.overlay.*`
  attributes are never written.
- Hard links within the tree are kept: the first path (in order) carries the content, the
  others are link entries to it.
- `exclude` names relative paths (and their subtrees) to leave out: the runtime's
  mountpoints (`/etc/hosts`…), which Docker keeps in a separate init layer.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

__all__ = ["is_empty_diff", "write_diff_tar"]

_WHITEOUT_PREFIX = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_CHUNK_BYTES = 1 << 20


def _walk(root: Path, rel: str, exclude: Collection[str]) -> Iterator[str]:
    """Relative paths under root/rel in sorted order, parents first."""
    try:
        names = sorted(os.listdir(root / rel if rel else root))
    except FileNotFoundError:
        return
    for name in names:
        path = f"{rel}/{name}" if rel else name
        if path in exclude:
            continue
        yield path
        if stat.S_ISDIR(os.lstat(root / path).st_mode):
            yield from _walk(root, path, exclude)


def _xattrs(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return out


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _header(rel: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = ""
    info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def write_diff_tar(upper_dir: Path | str, out: IO[bytes], *, exclude: Collection[str] = ()) -> int:
    """Write the tar of `upper_dir` to `out`; return the number of entries written."""
    root = Path(upper_dir)
    excluded = frozenset(p.strip("/") for p in exclude)
    seen_inodes: dict[tuple[int, int], str] = {}
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(root, "", excluded):
            path = root / rel
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == os.makedev(0, 0):
                # An overlayfs whiteout: the lower file is deleted.
                parent, _, name = rel.rpartition("/")
                whiteout = f"{parent}/{_WHITEOUT_PREFIX}{name}" if parent else f".wh.{name}"
                info = _header(whiteout, st)
                info.type = tarfile.REGTYPE
                info.mode = 0
                info.size = 0
                tar.addfile(info)
                count += 1
                continue
            info = _header(rel, st)
            info.pax_headers = _xattrs(path)
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                count += 1
                if _is_opaque(path):
                    marker = _header(f"{rel}/{_OPAQUE_MARKER}", st)
                    marker.type = tarfile.REGTYPE
                    marker.mode = 0
                    marker.size = 0
                    tar.addfile(marker)
                    count += 1
                continue
            if stat.S_ISREG(mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[key]
                    tar.addfile(info)
                    count += 1
                    continue
                seen_inodes[key] = rel
            if stat.S_ISREG(mode):
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                with open(path, "rb") as source:
                    tar.addfile(info, source)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor = os.major(st.st_rdev)
                info.devminor = os.minor(st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                continue  # sockets do not travel in layers (as Docker's archive)
            count += 1
    return count


def is_empty_diff(upper_dir: Path | str, *, exclude: Collection[str] = ()) -> bool:
    """Whether the upper directory holds no change (Docker then commits an empty layer)."""
    excluded = frozenset(p.strip("/") for p in exclude)
    return next(_walk(Path(upper_dir), "", excluded), None) is None
