"""The `local` volume driver on disk, its mounts, and copying image content into volumes.

Role: the I/O half of volumes (moby `daemon/volume/local/local.go`, `local_unix.go`,
`daemon/container/container_unix.go` copyExistingContents). Decisions (names, options,
JSON) live in `model.py`; this module only carries them out.

Layout (as dockerd's, plus one metadata file per volume instead of moby's bolt DB):

    <root>/<name>/_data          the data, or the mount point of an option volume (0755)
    <root>/<name>/opts.json      the mount options (Docker's optsConfig fields), if any
    <root>/<name>/meta.json      name, driver, created time, labels, options
    <root>/.creating-<name>      a create in progress (renamed into place when complete)
    <root>/.removing-<name>      a remove in progress (renamed out of place first)

Invariants:
- A volume exists iff `<root>/<name>/meta.json` exists; creation and removal are a rename,
  so a crash leaves either the whole volume or a `.creating-`/`.removing-` directory that
  `recover` deletes. Volume names start with an alphanumeric, so they never collide.
- An option volume (`type`/`device` set) is mounted on its `_data` while at least one
  reference (a container id) holds it, and unmounted when the last is released. The
  references live in memory; `recover` rebuilds them from the running containers and
  makes the mounts agree.
- Nothing is ever deleted through a mount: a volume is removed only once its `_data` is
  no longer a mount point (an `o=bind` volume's `_data` is the user's directory).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from dockyard.engine import fsutil
from dockyard.engine.fsutil import directory_size, write_atomic
from dockyard.engine.images.snapshotter import SnapshotError, is_mountpoint, unmount
from dockyard.engine.model.archive import TooManyLinks
from dockyard.engine.volumes.model import (
    LocalOptions,
    VolumeError,
    VolumeInUse,
    VolumeNotFound,
    VolumeRecord,
)

__all__ = ["LocalStore", "copy_up", "resolve_in_scope"]

DATA_DIR = "_data"
OPTS_FILE = "opts.json"  # Docker's name (local.go volumeOptsFile)
META_FILE = "meta.json"
_CREATING = ".creating-"
_REMOVING = ".removing-"


def _mount_error(text: str) -> VolumeError:
    # local_unix.go mount: errors.Wrap(err, "failed to mount local volume")
    return VolumeError(f"failed to mount local volume: {text}")


class LocalStore:
    """The local driver's volumes under one root, and their mount references."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # moby local.New: the volumes root is 0701 (traversable, not listable).
        root.mkdir(parents=True, exist_ok=True, mode=0o701)
        self._refs: dict[str, set[str]] = {}

    # -- lookups ------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def data_path(self, name: str) -> Path:
        return self._dir(name) / DATA_DIR

    def exists(self, name: str) -> bool:
        return (self._dir(name) / META_FILE).is_file()

    def get(self, name: str) -> VolumeRecord:
        try:
            text = (self._dir(name) / META_FILE).read_text()
        except (FileNotFoundError, NotADirectoryError):
            raise VolumeNotFound(f"get {name}: no such volume") from None
        return VolumeRecord.from_json(json.loads(text))

    def options(self, name: str) -> LocalOptions:
        try:
            text = (self._dir(name) / OPTS_FILE).read_text()
        except FileNotFoundError:
            return LocalOptions()
        return LocalOptions.from_json(json.loads(text))

    def names(self) -> list[str]:
        with os.scandir(self.root) as entries:
            return sorted(
                entry.name
                for entry in entries
                if not entry.name.startswith(".") and (Path(entry.path) / META_FILE).is_file()
            )

    def list(self) -> list[VolumeRecord]:
        out = []
        for name in self.names():
            with contextlib.suppress(VolumeNotFound):  # removed meanwhile
                out.append(self.get(name))
        return out

    def refs(self, name: str) -> frozenset[str]:
        return frozenset(self._refs.get(name, ()))

    # -- create and remove --------------------------------------------------------------------

    def create(self, record: VolumeRecord, options: LocalOptions) -> None:
        """Lay the volume out beside its final place, then rename it in (all or nothing)."""
        staging = self.root / f"{_CREATING}{record.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(mode=0o701)
        try:
            (staging / DATA_DIR).mkdir(mode=0o755)
            os.chmod(staging / DATA_DIR, 0o755)  # whatever the umask
            if options.needs_mount or options.mount_opts:
                write_atomic(staging / OPTS_FILE, json.dumps(options.to_json()).encode())
            write_atomic(staging / META_FILE, json.dumps(record.to_json()).encode())
            os.rename(staging, self._dir(record.name))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        """Remove an unreferenced volume: unmount it if mounted, then delete it."""
        if self._refs.get(name):
            # local.go Remove: "volume has active mounts" (the service checks users first).
            holders = ", ".join(sorted(self._refs[name]))
            raise VolumeInUse(f"remove {name}: volume is in use - [{holders}]")
        if not self.exists(name):
            raise VolumeNotFound(f"get {name}: no such volume")
        self._unmount_data(name)
        doomed = self.root / f"{_REMOVING}{name}-{uuid.uuid4().hex[:8]}"
        os.rename(self._dir(name), doomed)
        self._delete(doomed)

    def _delete(self, path: Path) -> None:
        data = path / DATA_DIR
        if data.exists() and is_mountpoint(data):
            # Never delete through a mount: it could be the user's directory (o=bind).
            raise VolumeError(f"unable to remove volume: {data} is still mounted")
        shutil.rmtree(path)

    # -- mounts -------------------------------------------------------------------------------

    def mount(self, name: str, ref: str) -> Path:
        """Take a reference for `ref`; the first one mounts an option volume."""
        if not self.exists(name):
            raise VolumeNotFound(f"get {name}: no such volume")
        holders = self._refs.setdefault(name, set())
        if not holders:
            try:
                self._mount_data(name)
            except BaseException:
                self._refs.pop(name, None)
                raise
        holders.add(ref)
        return self.data_path(name)

    def unmount(self, name: str, ref: str) -> None:
        """Release `ref`'s reference; the last one unmounts an option volume."""
        holders = self._refs.get(name)
        if holders is None or ref not in holders:
            return
        holders.discard(ref)
        if not holders:
            del self._refs[name]
            self._unmount_data(name)

    def _mount_data(self, name: str) -> None:
        options = self.options(name)
        data = self.data_path(name)
        if not options.needs_mount or is_mountpoint(data):
            return
        if not options.mount_device:
            raise _mount_error("missing device in volume options")
        argv = ["mount", "-t", options.mount_type or "none"]
        if options.mount_opts:
            argv += ["-o", options.mount_opts]
        argv += [options.mount_device, str(data)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise _mount_error(result.stderr.strip() or f"mount exited {result.returncode}")

    def _unmount_data(self, name: str) -> None:
        data = self.data_path(name)
        if not data.exists():
            return
        try:
            unmount(data)
        except SnapshotError as e:
            raise VolumeError(f"error while unmounting volume {name}: {e}") from None

    def recover(self, refs: Mapping[str, set[str]]) -> None:
        """At daemon start: drop interrupted creates/removes, take `refs` (volume name ->
        container ids still running), mount what they need and unmount the rest."""
        with os.scandir(self.root) as entries:
            leftovers = [Path(e.path) for e in entries if e.name.startswith((_CREATING, _REMOVING))]
        for path in leftovers:
            with contextlib.suppress(OSError, SnapshotError):
                unmount(path / DATA_DIR)
            with contextlib.suppress(OSError, VolumeError):
                self._delete(path)
        self._refs = {}
        for name in self.names():
            holders = set(refs.get(name, ()))
            if holders:
                self._mount_data(name)
                self._refs[name] = holders
            else:
                self._unmount_data(name)

    # -- usage --------------------------------------------------------------------------------

    def size(self, name: str) -> int:
        """moby pkg/directory Size: st_size of everything but directories, inodes once."""
        return directory_size(self.data_path(name))


# --- paths inside a container's rootfs ------------------------------------------------------


def resolve_in_scope(rootfs: Path, path: str) -> Path:
    """`path` inside `rootfs` as the container would see it (fsutil.resolve_in_scope)."""
    try:
        return fsutil.resolve_in_scope(rootfs, path)
    except TooManyLinks:
        raise VolumeError(f"too many links while resolving {path} in the container") from None


# --- copy-up ------------------------------------------------------------------------------


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for attr in names:
        try:
            value = os.getxattr(src, attr, follow_symlinks=False)
            os.setxattr(dst, attr, value, follow_symlinks=False)
        except OSError as e:
            # "as feasible": a filesystem (tmpfs before 6.6 for user.*) may refuse some.
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        # After chown: chown clears setuid/setgid bits.
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)


def _walk_copy(src: str, dst: str, links: dict[tuple[int, int], str]) -> Iterator[tuple[str, str]]:
    """Copy the entries of directory `src` into the existing directory `dst`; yields the
    directories made, for their times to be set after their content."""
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            s, d = entry.path, os.path.join(dst, entry.name)
            st = entry.stat(follow_symlinks=False)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in links:
                os.link(links[key], d)  # a hard link within the copied tree stays one
                continue
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(d, 0o700)
                _copy_meta(s, d, st)
                yield from _walk_copy(s, d, links)
                yield s, d
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(d, 0o600)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.mknod(d, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            else:
                continue  # sockets are not copied (moby fs.CopyDir skips them too)
            _copy_meta(s, d, st)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            if st.st_nlink > 1:
                links[key] = d


def copy_up(source: Path, volume: Path) -> bool:
    """Copy the image's content at `source` into the empty `volume` (moby
    copyExistingContents): files, directories, symlinks, hard links, devices and fifos
    with owners, modes, xattrs and times; then the source directory's owner and mode on
    the volume's root (copyOwnership). Nothing is copied into a volume that has content,
    or from a source that is not a directory. Returns whether it copied."""
    if not source.is_dir() or source.is_symlink():
        return False
    with os.scandir(volume) as entries:
        if any(entries):
            return False
    links: dict[tuple[int, int], str] = {}
    for s, d in _walk_copy(str(source), str(volume), links):
        st = os.lstat(s)
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    st = os.stat(source)
    os.chown(volume, st.st_uid, st.st_gid)
    os.chmod(volume, stat.S_IMODE(st.st_mode))
    return True
