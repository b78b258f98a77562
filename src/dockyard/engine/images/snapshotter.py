"""The overlay snapshotter: a container's root filesystem as a stack of image layers.

Role: as containerd's overlay snapshotter (core/snapshots/snapshotter.go), `prepare` and
`view` RETURN `Mount` values describing the root filesystem instead of mounting it, so the
planning is testable without root; `mount`/`unmount` are thin helpers over mount(8) that
the runtime calls to realize them.

On-disk layout under `root` (e.g. `/var/lib/dockyard/engine/snapshots`):

    snapshots/<container id>/fs/        the writable upper directory
    snapshots/<container id>/work/      overlayfs's work directory (same filesystem as fs/)
    snapshots/<container id>/parents    the image's chain IDs, bottom first, one a line
    tmp/                                staging: a snapshot appears whole, by rename

Invariants:
- `plan_mounts` is pure: values in, `Mount` values out.
- lowerdir lists the top layer first (overlayfs reads it left to right, topmost first).
- A read-only view of a single layer is a read-only bind mount (overlayfs needs two lower
  directories when there is no upper one, as containerd's snapshotter also does).
- A `Mount.target` is relative to the root being assembled; "" is that root itself
  (containerd 2.0's `Mount.Target`), so the same plan can be mounted anywhere.
- Layer directories are never written: all writes go to the container's upper directory.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MOUNT_OPTIONS_MAX_BYTES",
    "Mount",
    "OverlaySnapshotter",
    "SnapshotError",
    "is_mountpoint",
    "mount",
    "plan_mounts",
    "unmount",
]

# mount(2) copies its data argument into one page; longer option strings are cut off.
MOUNT_OPTIONS_MAX_BYTES = 4095
_UNMOUNT_ATTEMPTS_MAX = 16
_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SnapshotError(Exception):
    """A snapshot that cannot be planned, prepared, mounted or removed."""


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: `mount -t type -o options source root/target`."""

    type: str
    source: str
    target: str
    options: tuple[str, ...]


def _overlay_path(path: str) -> str:
    # overlayfs splits its options at ',' and lowerdir at ':'; escaping is kernel-version
    # dependent, so such paths are refused rather than mangled.
    if not path.startswith("/") or any(c in path for c in ",:"):
        raise SnapshotError(f"unusable overlay directory path: {path!r}")
    return path


def plan_mounts(
    lower_dirs: Sequence[str],
    upper_dir: str | None = None,
    work_dir: str | None = None,
    *,
    target: str = "",
) -> list[Mount]:
    """The mounts for a root made of `lower_dirs` (TOP FIRST) and an optional upper dir."""
    if (upper_dir is None) != (work_dir is None):
        raise SnapshotError("upper and work directories go together")
    if upper_dir is None:
        if not lower_dirs:
            raise SnapshotError("a read-only view needs at least one layer")
        if len(lower_dirs) == 1:
            return [Mount("bind", lower_dirs[0], target, ("ro", "rbind"))]
        options: tuple[str, ...] = ("lowerdir=" + ":".join(map(_overlay_path, lower_dirs)),)
    elif not lower_dirs:
        # An image without layers (FROM scratch): the upper directory alone.
        return [Mount("bind", upper_dir, target, ("rw", "rbind"))]
    else:
        assert work_dir is not None  # narrowed above; mypy cannot see it
        options = (
            "lowerdir=" + ":".join(map(_overlay_path, lower_dirs)),
            "upperdir=" + _overlay_path(upper_dir),
            "workdir=" + _overlay_path(work_dir),
        )
    if len(",".join(options).encode()) > MOUNT_OPTIONS_MAX_BYTES:
        raise SnapshotError(
            f"overlay options exceed {MOUNT_OPTIONS_MAX_BYTES} bytes ({len(lower_dirs)} layers)"
        )
    return [Mount("overlay", "overlay", target, options)]


class OverlaySnapshotter:
    """Per-container upper directories over the image store's layer directories.

    `diff_path(chain_id)` locates a layer's extracted directory (the image store's
    `layer_diff_path`).
    """

    def __init__(self, root: Path | str, diff_path: Callable[[str], Path]) -> None:
        self.root = Path(root)
        self._diff_path = diff_path
        self._snapshots = self.root / "snapshots"
        self._tmp = self.root / "tmp"
        self._snapshots.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _dir(self, container_id: str) -> Path:
        if not _CONTAINER_ID_RE.match(container_id):
            raise SnapshotError(f"invalid container id: {container_id!r}")
        return self._snapshots / container_id

    def _lowers(self, chain_ids: Sequence[str]) -> list[str]:
        return [str(self._diff_path(chain_id)) for chain_id in reversed(chain_ids)]

    def prepare(self, container_id: str, image_chain_ids: Sequence[str]) -> list[Mount]:
        """Create the container's writable layer; return the mounts of its root.

        `image_chain_ids` is bottom first, as an image's chain IDs are listed.
        """
        dest = self._dir(container_id)
        lowers = self._lowers(image_chain_ids)  # fails before anything is created
        if dest.exists():
            raise SnapshotError(f"snapshot already exists: {container_id}")
        staged = self._tmp / uuid.uuid4().hex
        try:
            staged.mkdir(0o711)
            (staged / "fs").mkdir(0o755)
            (staged / "work").mkdir(0o700)
            (staged / "parents").write_text("".join(f"{c}\n" for c in image_chain_ids))
            os.rename(staged, dest)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return plan_mounts(lowers, str(dest / "fs"), str(dest / "work"))

    def mounts(self, container_id: str) -> list[Mount]:
        """The mounts of an existing container's root (e.g. after an engine restart)."""
        dest = self._dir(container_id)
        chain_ids = self._parents(dest)
        return plan_mounts(self._lowers(chain_ids), str(dest / "fs"), str(dest / "work"))

    def view(self, image_chain_ids: Sequence[str]) -> list[Mount]:
        """A read-only root of an image, with no upper directory."""
        return plan_mounts(self._lowers(image_chain_ids))

    def upper_dir(self, container_id: str) -> Path:
        return self._dir(container_id) / "fs"

    def remove(self, container_id: str) -> None:
        """Delete the container's upper and work directories (unmount it first)."""
        dest = self._dir(container_id)
        graveyard = self._tmp / uuid.uuid4().hex
        try:
            os.rename(dest, graveyard)
        except FileNotFoundError:
            raise SnapshotError(f"no such snapshot: {container_id}") from None
        shutil.rmtree(graveyard)

    def ids(self) -> list[str]:
        """The snapshots that exist (container IDs, build snapshots)."""
        return sorted(p.name for p in self._snapshots.iterdir())

    def held_chain_ids(self) -> list[str]:
        """Chain IDs some snapshot stacks on: the image store's `held_layers` hook."""
        held: list[str] = []
        for snapshot in sorted(self._snapshots.iterdir()):
            held.extend(self._parents(snapshot))
        return held

    def _parents(self, snapshot: Path) -> list[str]:
        try:
            return (snapshot / "parents").read_text().split()
        except FileNotFoundError:
            raise SnapshotError(f"no such snapshot: {snapshot.name}") from None


def _unescape_mountinfo(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path | str) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    base = os.path.realpath(root)
    with open("/proc/self/mountinfo") as info:
        points = {_unescape_mountinfo(line.split()[4]) for line in info}
    inside = [p for p in points if p == base or p.startswith(base + "/")]
    return sorted(inside, key=lambda p: p.count("/"), reverse=True)


def is_mountpoint(path: Path | str) -> bool:
    """Whether `path` is a mount point (bind mounts on one filesystem included)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as info:
        return any(_unescape_mountinfo(line.split()[4]) == real for line in info)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]  # fmt: skip
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
# mount(2) copies at most one page of data options; longer ones (many layers) go through
# mount(8), which uses the new mount API (fsconfig) and has no such limit.
_MOUNT_DATA_MAX_BYTES = 4000


def _mount_syscall(fstype: str, source: str, dest: str, options: Sequence[str]) -> bool:
    """mount(2) of a filesystem whose options are all data (key=value), without forking
    mount(8) (~10 ms of CPU per container start, and as much for umount(8) at its exit).
    False when the options need mount(8) (flags such as `ro`, or too long)."""
    data = ",".join(options)
    if any("=" not in o for o in options) or len(data) > _MOUNT_DATA_MAX_BYTES:
        return False
    if _libc.mount(source.encode(), os.fsencode(dest), fstype.encode(), 0, data.encode()) != 0:
        err = ctypes.get_errno()
        raise SnapshotError(f"mount -t {fstype} {source} {dest}: {os.strerror(err)}")
    return True


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SnapshotError(f"{' '.join(argv)}: {result.stderr.strip()}")


def mount(mounts: Sequence[Mount], target: Path | str) -> None:
    """Mount `mounts` in order at `target`; on failure, undo the ones already made."""
    done: list[str] = []
    try:
        for m in mounts:
            dest = os.path.join(target, m.target.lstrip("/"))
            if m.type == "bind":
                flag = "--rbind" if "rbind" in m.options else "--bind"
                _run(["mount", flag, m.source, dest])
                done.append(dest)
                if "ro" in m.options:
                    # A bind mount ignores "ro" on creation; it takes a remount.
                    _run(["mount", "-o", "remount,bind,ro", dest])
            else:
                if not _mount_syscall(m.type, m.source, dest, m.options):
                    _run(["mount", "-t", m.type, "-o", ",".join(m.options), m.source, dest])
                done.append(dest)
    except BaseException:
        for dest in reversed(done):
            unmount(dest)
        raise


def unmount(target: Path | str) -> None:
    """Unmount everything at `target` (and under it); a no-op if nothing is mounted."""
    for _ in range(_UNMOUNT_ATTEMPTS_MAX):
        points = mounts_under(target)
        if os.path.realpath(target) not in points:
            return
        if len(points) == 1:
            # Only the root's own mount (a stopped container's overlay): umount2(2), no fork.
            if _libc.umount2(os.fsencode(points[0]), 0) == 0:
                continue
            if ctypes.get_errno() == errno.EINVAL:  # not mounted: another task won the race
                continue
        try:
            _run(["umount", "-R", str(target)])
        except SnapshotError:
            # Two tasks may unmount the same rootfs (a container's exit and its removal
            # racing): `not mounted` after our check means the other one won.
            if not is_mountpoint(target):
                return
            raise
    raise SnapshotError(f"still mounted after {_UNMOUNT_ATTEMPTS_MAX} unmounts: {target}")
