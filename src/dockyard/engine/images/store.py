"""The engine's image store on disk: content store, layer store and tag store.

Role: keep images as Docker does — config blobs addressed by digest, layers extracted once
per chain ID, and a tag index — under the engine's data root. The overlay snapshotter
stacks the extracted layers; this module never mounts anything.

On-disk layout under `root` (e.g. `/var/lib/dockyard/engine/images`):

    blobs/sha256/<hex>              content-addressed blobs (image configs), verified on read
    images/sha256/<hex>             empty marker: the config blob <hex> is an image
    layers/sha256/<hex>/diff/       the layer extracted, whiteouts in overlayfs form
    layers/sha256/<hex>/diff_id     the digest of the uncompressed layer tar
    layers/sha256/<hex>/parent      the parent layer's chain ID (absent for a base layer)
    layers/sha256/<hex>/size        the size of the uncompressed layer tar, in bytes
    layers/sha256/<hex>/tar-split.gz how to reassemble the layer's tar byte for byte (tarsplit.py)
    meta/sha256/<hex>.json          an image's metadata: build parent, last tag time
    distribution/<diff hex>.json    registry blobs known to hold a layer (digest, repository)
    repositories.json               Docker's tag index: {"Repositories": {name: {ref: id}}}
    tmp/                            staging; every write lands here first, then is renamed
    lock                            flock(2) held by every mutation

Invariants:
- Every write is a rename from `tmp/` of a complete, fsynced file or directory, so a reader
  (or a crash) never sees half of one; an operation that fails removes what it had added.
- A layer directory exists once per chain ID, however many images share it. Its reference
  count is not stored: it is derived from the images (and the `held_layers` hook), so it
  cannot drift; `gc` removes layers and blobs nothing references.
- Layer extraction never writes outside the layer's `diff/`: absolute and `..` paths,
  writes through symlinks, and device nodes (unless root) are refused.
- Whiteouts (OCI image spec, layer.md) are stored as overlayfs expects them: `.wh.<name>`
  becomes a 0/0 character device, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr.
  Both need root; without it a layer holding whiteouts is refused.
"""

from __future__ import annotations

import builtins
import bz2
import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import platform
import re
import shutil
import stat
import tarfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from dockyard.engine.images.model import (
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    InvalidReference,
    Reference,
    RootFS,
    chain_ids,
    format_time,
    go_json,
    parse_reference,
    short_id,
    validate_digest,
)
from dockyard.engine.images.tarsplit import SplitRecorder, TarSplitMismatch, open_reassembled

__all__ = [
    "LAYER_LEASE_S",
    "BlobCorrupted",
    "DeleteItem",
    "DistributionSource",
    "ImageConflict",
    "ImageNotFound",
    "ImageRecord",
    "ImageStore",
    "ImageStoreError",
    "ImageUser",
    "LayerDigestMismatch",
    "LayerError",
    "LayerRecord",
    "extract_layer",
    "host_platform",
    "open_decompressed",
    "remove_tree",
]

_CHUNK_BYTES = 1 << 20
_TAR_SPLIT = "tar-split.gz"
_DIFF_SIZE = "diff_size"
# How long a layer may wait unreferenced for the image that will use it (a pull, load or
# build registers layers first), and staging may sit in tmp/, before recovery removes it.
LAYER_LEASE_S = 15 * 60.0
_DISTRIBUTION_SOURCES_MAX = 16
_WHITEOUT_PREFIX = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_HEX_PREFIX_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAGIC_BYTES = 6
_END_BLOCKS_BYTES = 2 * tarfile.BLOCKSIZE
_TAIL_MAX_BYTES = 256 * 1024


class ImageStoreError(Exception):
    """Base of every error the image store raises."""


class ImageNotFound(ImageStoreError):
    """No image matches; the message is Docker's (`No such image: busybox:latest`)."""


class ImageConflict(ImageStoreError):
    """Docker's delete conflicts (HTTP 409 at the API boundary)."""


class LayerError(ImageStoreError):
    """A layer tar that cannot or must not be extracted."""


class LayerDigestMismatch(LayerError):
    """A layer whose uncompressed digest is not the DiffID it was registered as."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"layer digest mismatch: expected {expected!r}, got {actual!r}")
        self.expected = expected
        self.actual = actual


class BlobCorrupted(ImageStoreError):
    """A stored blob whose bytes no longer match its digest."""


@dataclass(frozen=True)
class ImageUser:
    """A container that uses an image, as the engine's container store reports it."""

    container_id: str
    running: bool


@dataclass(frozen=True)
class DeleteItem:
    """One line of Docker's image delete response: `Untagged` or `Deleted`."""

    untagged: str | None = None
    deleted: str | None = None


@dataclass(frozen=True)
class LayerRecord:
    chain_id: str
    diff_id: str
    parent: str | None
    size_bytes: int  # of the uncompressed tar
    content_bytes: int | None = None  # what Docker shows: the files' bytes

    @property
    def shown_bytes(self) -> int:
        """The size Docker reports for this layer (`docker images`, `history`, `df`)."""
        return self.content_bytes if self.content_bytes is not None else self.size_bytes


@dataclass(frozen=True)
class DistributionSource:
    """Where a layer's compressed blob is known to live in a registry (dockerd's v2metadata)."""

    digest: str  # of the compressed blob
    repository: str  # registry host and path, no tag: "localhost:5000/team/app"
    media_type: str
    size_bytes: int


@dataclass(frozen=True)
class ImageRecord:
    id: str
    config: ImageConfig
    references: tuple[str, ...]  # tags as familiar strings, e.g. "busybox:latest"
    chain_ids: tuple[str, ...]  # bottom first
    repo_digests: tuple[str, ...] = ()  # familiar "name@sha256:…"
    parent: str | None = None  # the build parent's image ID
    last_tag_time: str | None = None  # RFC 3339, when a tag last moved to this image

    @property
    def top_layer(self) -> str | None:
        return self.chain_ids[-1] if self.chain_ids else None


def host_platform() -> tuple[str, str]:
    """The host's (os, architecture) in Go's names, as Docker writes them in configs."""
    machine = platform.machine().lower()
    arch = {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "i386": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)
    return "linux", arch


def _hex(digest: str) -> str:
    validate_digest(digest)
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256":
        raise ImageStoreError(f"unsupported digest algorithm: {algorithm}")
    return hex_part


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a file or tree, whichever it is; a missing path is not an error."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


# ---------------------------------------------------------------------------
# Layer extraction


class _PeekReader:
    """A read-only stream with its first bytes already read, so they can be sniffed."""

    def __init__(self, inner: IO[bytes], head: bytes) -> None:
        self._inner = inner
        self._head = head

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._inner.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._inner.read(size)


class _HashingReader:
    """Counts and hashes every byte read: the DiffID is the digest of the uncompressed tar."""

    def __init__(self, inner: Any, recorder: SplitRecorder | None = None) -> None:
        self._inner = inner
        self._recorder = recorder
        self.sha256 = hashlib.sha256()
        self.size_bytes = 0
        # The last bytes read (bounded), to check the archive's end marker.
        self._tail = bytearray()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read(size)
        self.sha256.update(data)
        if self._recorder is not None:
            self._recorder.feed(data)
        self.size_bytes += len(data)
        self._tail += data
        if len(self._tail) > _TAIL_MAX_BYTES:
            del self._tail[: len(self._tail) - _TAIL_MAX_BYTES // 2]
        return data

    def ends_cleanly_at(self, offset: int) -> bool:
        """Whether the end-of-archive blocks at `offset` are zeros (or the stream ends).

        tarfile takes a truncated header for the end of the archive; Go's archive/tar
        (and so Docker) reports an unexpected EOF.
        """
        self.read(_END_BLOCKS_BYTES)
        start = self.size_bytes - len(self._tail)
        if offset < start:
            return False
        return not any(self._tail[offset - start : offset - start + _END_BLOCKS_BYTES])

    def drain(self) -> None:
        while self.read(_CHUNK_BYTES):
            pass


def _clean_parts(name: str) -> tuple[str, ...]:
    if name.startswith("/"):
        raise LayerError(f"refusing absolute path in layer: {name!r}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"refusing path outside the layer: {name!r}")
    return parts


class _Decompressing:
    """A bzip2/xz reader whose corrupt-data errors (OSError, LZMAError) are LayerErrors,
    so that only they, not the extraction's own I/O errors, read as a bad layer."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except (OSError, lzma.LZMAError) as exc:
            raise LayerError(f"invalid layer tar: {exc}") from exc


def _read_head(stream: IO[bytes], size: int) -> bytes:
    """The first `size` bytes (fewer only at the end): a pipe may return short reads."""
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _decompressed(peek: _PeekReader, head: bytes) -> Any:
    """Docker's DetectCompression: gzip, bzip2 or xz by their magic, else a plain tar."""
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=cast(Any, peek), mode="rb")
    if head.startswith(_BZIP2_MAGIC):
        return _Decompressing(bz2.BZ2File(cast(Any, peek), mode="rb"))
    if head.startswith(_XZ_MAGIC):
        return _Decompressing(lzma.LZMAFile(cast(Any, peek), mode="rb"))
    if head.startswith(_ZSTD_MAGIC):
        raise LayerError("zstd-compressed layers are not supported yet")
    return peek


@contextlib.contextmanager
def open_decompressed(stream: IO[bytes]) -> Iterator[IO[bytes]]:
    """`stream` decompressed as Docker's DecompressStream does (gzip, bzip2, xz or plain)."""
    head = _read_head(stream, _MAGIC_BYTES)
    yield cast(IO[bytes], _decompressed(_PeekReader(stream, head), head))


def extract_layer(
    stream: IO[bytes],
    dest: Path,
    *,
    is_root: bool | None = None,
    recorder: SplitRecorder | None = None,
) -> tuple[str, int, int]:
    """Extract a (gzip, bzip2, xz or uncompressed) layer tar into the new directory `dest`.

    Returns (diff_id, uncompressed tar size, content size) in bytes; the content size is
    what Docker shows as a layer's size (overlay2's ApplyDiff: moby directory.Size of the
    extracted tree).
    `dest` must not exist. On error `dest` may hold a partial tree: the caller stages it in
    `tmp/` and removes it. `recorder` (tarsplit.py) is fed the uncompressed stream, so the
    tar can be reassembled later.
    """
    root_user = os.geteuid() == 0 if is_root is None else is_root
    head = _read_head(stream, _MAGIC_BYTES)
    peek = _PeekReader(stream, head)
    source = _decompressed(peek, head)
    hashing = _HashingReader(source, recorder)
    os.mkdir(dest, 0o755)
    extraction = _Extraction(dest, root_user, recorder)
    content_bytes = 0
    try:
        with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                extraction.member(tar, member)
                content_bytes += _shown_size(member)
            if not hashing.ends_cleanly_at(tar.offset):
                raise LayerError("invalid layer tar: unexpected EOF")
        # The digest covers the whole stream, tar padding after the end marker included.
        hashing.drain()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, ValueError) as exc:
        raise LayerError(f"invalid layer tar: {exc}") from exc
    # Directory mtimes last: creating their entries has changed them.
    for path, mtime in reversed(extraction.dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return "sha256:" + hashing.sha256.hexdigest(), hashing.size_bytes, content_bytes


def _shown_size(member: tarfile.TarInfo) -> int:
    """The entry's share of moby's directory.Size: st_size of every non-directory, so a
    symlink counts its target's length; a hard link shares its source's inode."""
    if member.isreg():
        return member.size
    if member.issym():
        return len(member.linkname.encode("utf-8", "surrogateescape"))
    return 0


class _Extraction:
    """One layer's extraction into a new, empty directory.

    Speed matters (a base image has thousands of files) and so does safety; both come from
    what the extraction itself knows. `dest` starts empty, so a path not in `made` does not
    exist (paths removed since may linger in `made`: then lstat decides), and `dirs` holds
    the directories verified (or made) as real directories, so a path is walked with one
    lstat per new component, never through a symlink. Replacing a directory forgets `dirs`.
    Regular files are written and given their attributes through their descriptor.
    """

    def __init__(self, dest: Path, root_user: bool, recorder: SplitRecorder | None) -> None:
        self.dest = str(dest)
        self.root_user = root_user
        self.recorder = recorder
        self.dir_times: list[tuple[str, float]] = []
        self.made: set[str] = set()
        self.dirs: set[str] = {""}

    def _path(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    def ensure_dir(self, parts: Sequence[str]) -> str:
        """The relative directory `parts`, made where missing; never through a symlink."""
        rel = ""
        for part in parts:
            rel = f"{rel}/{part}" if rel else part
            if rel in self.dirs:
                continue
            path = self._path(rel)
            if rel in self.made:
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:
                    mode = 0
                if mode:
                    if stat.S_ISLNK(mode):
                        raise LayerError(f"refusing to write through a symlink: {rel}")
                    if not stat.S_ISDIR(mode):
                        raise LayerError(f"not a directory in layer: {rel}")
                    self.dirs.add(rel)
                    continue
            os.mkdir(path, 0o755)
            self.made.add(rel)
            self.dirs.add(rel)
        return rel

    def clear(self, rel: str, *, keep_dir: bool) -> None:
        """Make room for a new entry at `rel` (a later tar entry replaces an earlier one)."""
        if rel not in self.made:
            return
        path = self._path(rel)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            if not keep_dir:
                shutil.rmtree(path)
                self.dirs = {""}  # what was below may be gone, or come back as anything
        else:
            os.unlink(path)

    def member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _clean_parts(member.name)
        if not parts:
            return  # the layer root itself ("./"): its attributes belong to the snapshot
        rel = "/".join(parts)
        if self.recorder is not None:
            self.recorder.path_seen(rel)
        parent = self.ensure_dir(parts[:-1])
        base = parts[-1]
        if base == _OPAQUE_MARKER:
            if not self.root_user:
                raise LayerError("an opaque directory whiteout needs root (trusted.* xattr)")
            os.setxattr(self._path(parent), _OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(_WHITEOUT_PREFIX):
            self._whiteout(member, parent, base[len(_WHITEOUT_PREFIX) :])
            return
        path = self._path(rel)
        if member.isreg():
            self.clear(rel, keep_dir=False)
            self._regular(tar, member, rel, path)
            return
        if member.isdir():
            self.clear(rel, keep_dir=True)
            with contextlib.suppress(FileExistsError):  # kept by clear: a real directory
                os.mkdir(path, 0o755)
            self.made.add(rel)
            self.dirs.add(rel)
            self.dir_times.append((path, float(member.mtime)))
        elif member.issym():
            self.clear(rel, keep_dir=False)
            # The target is resolved inside the container's root, so any target is allowed.
            os.symlink(member.linkname, path)
            self.made.add(rel)
        elif member.islnk():
            link_parts = _clean_parts(member.linkname)
            if not link_parts:
                raise LayerError(f"hard link to the layer root: {member.name!r}")
            source_dir = self.ensure_dir(link_parts[:-1])
            link_source = self._path(
                f"{source_dir}/{link_parts[-1]}" if source_dir else link_parts[-1]
            )
            if not os.path.lexists(link_source):
                raise LayerError(f"hard link to a missing file: {member.linkname!r}")
            self.clear(rel, keep_dir=False)
            os.link(link_source, path, follow_symlinks=False)
            self.made.add(rel)
            return  # a hard link shares the attributes of its source
        elif member.ischr() or member.isblk():
            if not self.root_user:
                raise LayerError(f"refusing device node (not root): {member.name!r}")
            self.clear(rel, keep_dir=False)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self.made.add(rel)
        elif member.isfifo():
            self.clear(rel, keep_dir=False)
            os.mkfifo(path, 0o600)
            self.made.add(rel)
        else:
            raise LayerError(f"unsupported tar entry type {member.type!r}: {member.name!r}")
        self._attributes(member, path)

    def _whiteout(self, member: tarfile.TarInfo, parent: str, hidden: str) -> None:
        if hidden in ("", ".", ".."):
            raise LayerError(f"invalid whiteout: {member.name!r}")
        if not self.root_user:
            raise LayerError(f"a whiteout needs root (a 0/0 character device): {member.name!r}")
        target = f"{parent}/{hidden}" if parent else hidden
        self.clear(target, keep_dir=False)
        # overlayfs whiteout: a character device with device number 0/0.
        os.mknod(self._path(target), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        self.made.add(target)

    def _regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, path: str) -> None:
        if self.recorder is not None and member.size and not member.issparse():
            # Before tarfile reads the payload (bytes it read ahead are trimmed then).
            self.recorder.payload(rel, member.offset_data, member.size)
        source = tar.extractfile(member)
        if source is None:
            raise LayerError(f"unreadable file in layer: {member.name!r}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        self.made.add(rel)
        try:
            written = 0
            while chunk := source.read(_CHUNK_BYTES):
                view = memoryview(chunk)
                while view:
                    done = os.write(fd, view)
                    view = view[done:]
                written += len(chunk)
            # tarfile's stream mode returns short data for a truncated archive.
            if written != member.size:
                raise LayerError(f"truncated layer tar: {member.name!r}")
            if self.root_user:
                os.fchown(fd, member.uid, member.gid)
                self._xattrs(member, fd)
            # After chown, which clears set-id bits.
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _xattrs(self, member: tarfile.TarInfo, target: int | str) -> None:
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key.removeprefix("SCHILY.xattr.")
                data = value.encode("utf-8", "surrogateescape")
                if isinstance(target, int):
                    os.setxattr(target, name, data)  # a descriptor: nothing to follow
                else:
                    os.setxattr(target, name, data, follow_symlinks=False)

    def _attributes(self, member: tarfile.TarInfo, path: str) -> None:
        if self.root_user:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
            self._xattrs(member, path)
        if not member.issym():
            # After chown, which clears set-id bits.
            os.chmod(path, member.mode & 0o7777)
            if not member.isdir():
                os.utime(path, (member.mtime, member.mtime))


# ---------------------------------------------------------------------------
# The store


class _LayerErrors:
    """A reassembled layer stream whose reassembly failures read as LayerErrors."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except (TarSplitMismatch, OSError) as exc:
            raise LayerError(str(exc)) from exc


def _is_fresh(path: Path, lease_s: float, now_s: float | None) -> bool:
    """Whether `path` changed less than `lease_s` before `now_s` (never without a lease)."""
    if lease_s <= 0 or now_s is None:
        return False
    try:
        return now_s - os.lstat(path).st_mtime < lease_s
    except FileNotFoundError:
        return False


def chain_ids_on(parent_chain_id: str, diff_id: str) -> str:
    """The chain ID of layer `diff_id` on top of the chain `parent_chain_id`."""
    return chain_ids([parent_chain_id, diff_id])[-1]


def _no_users(_image_id: str) -> Sequence[ImageUser]:
    return ()


def _no_held_layers() -> Iterable[str]:
    return ()


class ImageStore:
    """Images, layers and tags under one directory. Safe across threads and processes.

    `image_users(image_id)` is the hook by which the container store says which containers
    use an image (Docker's delete conflicts); `held_layers()` names chain IDs that running
    snapshots still stack on, so that `gc` keeps them after a forced delete.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        image_users: Callable[[str], Sequence[ImageUser]] = _no_users,
        held_layers: Callable[[], Iterable[str]] = _no_held_layers,
    ) -> None:
        self.root = Path(root)
        self._image_users = image_users
        self._held_layers = held_layers
        self._blobs = self.root / "blobs" / "sha256"
        self._images = self.root / "images" / "sha256"
        self._layers = self.root / "layers" / "sha256"
        self._tmp = self.root / "tmp"
        self._repositories = self.root / "repositories.json"
        self._meta = self.root / "meta" / "sha256"
        self._distribution = self.root / "distribution"
        for directory in (
            self._blobs,
            self._images,
            self._layers,
            self._tmp,
            self._meta,
            self._distribution,
        ):
            directory.mkdir(parents=True, exist_ok=True)

    # -- locking and atomic writes ------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock locks an open file description, so this serializes threads as well.
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _staging(self) -> Path:
        return self._tmp / uuid.uuid4().hex

    def _write_file(self, dest: Path, data: bytes) -> None:
        staged = self._staging()
        try:
            with open(staged, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(staged, dest)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)

    def _discard(self, path: Path) -> None:
        """Remove a tree atomically: rename it out of sight first, then delete it."""
        graveyard = self._staging()
        try:
            os.rename(path, graveyard)
        except FileNotFoundError:
            return
        remove_tree(graveyard)

    def recover(self, *, lease_s: float = 0.0, now_s: float | None = None) -> None:
        """Remove leftovers of interrupted operations (staging, layers no image took).

        Call when the engine starts. Work younger than `lease_s` is kept: another process
        (`dockyard image bootstrap`) may be using the store right now.
        """
        with self._locked():
            for leftover in self._tmp.iterdir():
                if not _is_fresh(leftover, lease_s, now_s):
                    remove_tree(leftover)
        self.gc(lease_s=lease_s, now_s=now_s)

    # -- blobs ----------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._blobs / _hex(digest)
        if not path.exists():
            self._write_file(path, data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        try:
            data = (self._blobs / _hex(digest)).read_bytes()
        except FileNotFoundError:
            raise ImageStoreError(f"blob not found: {digest}") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BlobCorrupted(f"blob {digest} does not match its digest")
        return data

    # -- layers ---------------------------------------------------------------

    def layer_dir(self, chain_id: str) -> Path:
        return self._layers / _hex(chain_id)

    def layer_diff_path(self, chain_id: str) -> Path:
        """The extracted directory of a layer, as the snapshotter stacks it."""
        path = self.layer_dir(chain_id) / "diff"
        if not path.is_dir():
            raise ImageStoreError(f"layer not found: {chain_id}")
        return path

    def get_layer(self, chain_id: str) -> LayerRecord:
        directory = self.layer_dir(chain_id)
        try:
            diff_id = (directory / "diff_id").read_text()
            size_bytes = int((directory / "size").read_text())
        except FileNotFoundError:
            raise ImageStoreError(f"layer not found: {chain_id}") from None
        parent_path = directory / "parent"
        parent = parent_path.read_text() if parent_path.exists() else None
        try:
            content: int | None = int((directory / _DIFF_SIZE).read_text())
        except FileNotFoundError:
            content = None  # a layer stored before the content size was recorded
        return LayerRecord(chain_id, diff_id, parent, size_bytes, content)

    def has_layer(self, chain_id: str) -> bool:
        return (self.layer_dir(chain_id) / "diff_id").exists()

    def register_layer(
        self, stream: IO[bytes], parent: str | None, *, expected_diff_id: str | None = None
    ) -> LayerRecord:
        """Extract a layer tar on top of the chain `parent` (None: a base layer).

        The tar may be plain, gzip, bzip2 or xz. Idempotent per chain ID. A bad tar, or one
        whose uncompressed digest is not `expected_diff_id`, raises LayerError and leaves
        nothing behind.
        """
        if parent is not None and not self.has_layer(parent):
            raise ImageStoreError(f"parent layer not found: {parent}")
        staged = self._staging()
        os.mkdir(staged, 0o700)
        try:
            diff_id, size = self._extract_recorded(stream, staged)
            if expected_diff_id is not None and diff_id != expected_diff_id:
                raise LayerDigestMismatch(expected_diff_id, diff_id)
            chain_id = diff_id if parent is None else chain_ids_on(parent, diff_id)
            with self._locked():
                if parent is not None and not self.has_layer(parent):
                    raise ImageStoreError(f"parent layer not found: {parent}")
                self._commit_layer(staged, chain_id, diff_id, parent, size)
            return self.get_layer(chain_id)
        finally:
            remove_tree(staged)

    @staticmethod
    def _extract_recorded(stream: IO[bytes], staged: Path) -> tuple[str, int]:
        """Extract into `staged/diff`, recording `staged/tar-split.gz` (tarsplit.py) and the
        content size (`staged/diff_size`)."""
        with open(staged / _TAR_SPLIT, "xb") as record_file:
            recorder = SplitRecorder(record_file)
            diff_id, size, content = extract_layer(stream, staged / "diff", recorder=recorder)
            recorder.close()
            record_file.flush()
            os.fsync(record_file.fileno())
        (staged / _DIFF_SIZE).write_text(str(content))
        return diff_id, size

    @contextlib.contextmanager
    def layer_tar(self, chain_id: str) -> Iterator[IO[bytes]]:
        """The layer's uncompressed tar, byte for byte as registered (its digest: the DiffID).

        A file of the layer changed on disk since shows as a LayerError while reading.
        """
        record = self.get_layer(chain_id)
        directory = self.layer_dir(chain_id)
        split = directory / _TAR_SPLIT
        if not split.exists():
            raise LayerError(f"layer {chain_id} cannot be exported: it has no tar-split record")
        stream = open_reassembled(split, directory / "diff", record.diff_id)
        try:
            yield cast(IO[bytes], _LayerErrors(stream))
        finally:
            stream.close()

    def release_layers(self, chain_ids: Iterable[str]) -> builtins.list[str]:
        """Remove those of `chain_ids` nothing refers to (a failed load or pull's layers)."""
        removed: builtins.list[str] = []
        with self._locked():
            references = self._layer_references()
            for chain_id in reversed(builtins.list(chain_ids)):
                if references[chain_id] == 0 and self.layer_dir(chain_id).exists():
                    self._discard(self.layer_dir(chain_id))
                    removed.append(chain_id)
        return removed

    def list_layers(self) -> builtins.list[str]:
        return sorted("sha256:" + p.name for p in self._layers.iterdir())

    def layer_refcount(self, chain_id: str) -> int:
        """How many images (and held snapshots) stack on this layer."""
        return self._layer_references()[chain_id]

    def _layer_references(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for image in self._image_ids():
            counts.update(self._config(image).chain_ids())
        counts.update(self._held_layers())
        return counts

    def _commit_layer(
        self, staged: Path, chain_id: str, diff_id: str, parent: str | None, size: int
    ) -> bool:
        """Move a staged layer into place; False if the layer was already stored."""
        dest = self.layer_dir(chain_id)
        if dest.exists():
            remove_tree(staged)
            return False
        for name, text in (("diff_id", diff_id), ("size", str(size)), ("parent", parent)):
            if text is not None:
                (staged / name).write_text(text)
        try:
            os.rename(staged, dest)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            remove_tree(staged)
            return False
        _fsync_dir(self._layers)
        return True

    # -- tags -----------------------------------------------------------------

    def _read_repositories(self) -> dict[str, dict[str, str]]:
        try:
            raw = self._repositories.read_bytes()
        except FileNotFoundError:
            return {}
        repositories: dict[str, dict[str, str]] = json.loads(raw).get("Repositories") or {}
        return repositories

    def _write_repositories(self, repositories: dict[str, dict[str, str]]) -> None:
        cleaned = {
            name: dict(sorted(refs.items())) for name, refs in sorted(repositories.items()) if refs
        }
        self._write_file(self._repositories, go_json({"Repositories": cleaned}))

    def _refs_of(self, image: str) -> builtins.list[Reference]:
        return [
            parse_reference(ref, default_tag=False)
            for refs in self._read_repositories().values()
            for ref, target in sorted(refs.items())
            if target == image
        ]

    def _add_ref(self, image: str, ref: Reference) -> None:
        repositories = self._read_repositories()
        repositories.setdefault(ref.familiar_name(), {})[ref.familiar()] = image
        self._write_repositories(repositories)
        if ref.digest is None:
            self._update_meta(image, last_tag_time=format_time(datetime.now(UTC)))

    def _remove_ref(self, ref: Reference) -> str | None:
        repositories = self._read_repositories()
        image = repositories.get(ref.familiar_name(), {}).pop(ref.familiar(), None)
        if image is not None:
            self._write_repositories(repositories)
        return image

    def tag(self, source: str, target: str) -> Reference:
        """`docker tag SOURCE TARGET`: point TARGET at SOURCE's image, moving it if needed."""
        ref = parse_reference(target)
        if ref.digest is not None:
            raise InvalidReference("refusing to create a tag with a digest reference")
        with self._locked():
            image = self._resolve(source)
            self._add_ref(image, ref)
        return ref

    def untag(self, ref_text: str) -> str:
        """Remove a tag or digest reference; return the image it pointed at."""
        ref = parse_reference(ref_text)
        with self._locked():
            image = self._remove_ref(ref)
        if image is None:
            raise ImageNotFound(f"No such image: {ref.familiar()}")
        return image

    # -- images ---------------------------------------------------------------

    def _image_ids(self) -> builtins.list[str]:
        return sorted("sha256:" + p.name for p in self._images.iterdir())

    def _config(self, image: str) -> ImageConfig:
        return ImageConfig.from_json(self.get_blob(image))

    def _resolve(self, text: str) -> str:
        """Docker's GetImage lookup order: full ID, then a reference, then an ID prefix."""
        images = self._image_ids()
        is_hex = _HEX_PREFIX_RE.match(text) is not None
        full = text if text.startswith("sha256:") else f"sha256:{text}"
        if is_hex and len(full) == 71:
            if full in images:
                return full
            raise ImageNotFound(f"No such image: {full}")
        ref: Reference | None = None
        try:
            ref = parse_reference(text, default_tag=False)
        except InvalidReference:
            if not is_hex:
                raise
        if ref is not None:
            tagged = ref.with_default_tag()
            names = self._read_repositories().get(tagged.familiar_name(), {})
            if (image := names.get(tagged.familiar())) is not None:
                return image
        if is_hex:
            matches = [i for i in images if i.startswith(full)]
            # An ambiguous prefix names no image, as in Docker's digestset.
            if len(matches) == 1:
                return matches[0]
        raise ImageNotFound(f"No such image: {ref.familiar() if ref is not None else text}")

    def get(self, ref_or_id: str) -> ImageRecord:
        with self._locked():
            return self._record(self._resolve(ref_or_id))

    def _record(self, image: str) -> ImageRecord:
        config = self._config(image)
        refs = self._refs_of(image)
        meta = self._read_meta(image)
        return ImageRecord(
            id=image,
            config=config,
            references=tuple(ref.familiar() for ref in refs if ref.digest is None),
            chain_ids=tuple(config.chain_ids()),
            repo_digests=tuple(ref.familiar() for ref in refs if ref.digest is not None),
            parent=meta.get("parent"),
            last_tag_time=meta.get("last_tag_time"),
        )

    # -- metadata (build parent, last tag time) ---------------------------------

    def _meta_path(self, image: str) -> Path:
        return self._meta / f"{_hex(image)}.json"

    def _read_meta(self, image: str) -> dict[str, str]:
        try:
            meta: dict[str, str] = json.loads(self._meta_path(image).read_bytes())
        except FileNotFoundError:
            return {}
        return meta

    def _update_meta(self, image: str, **values: str) -> None:
        meta = self._read_meta(image)
        meta.update(values)
        self._write_file(self._meta_path(image), go_json(dict(sorted(meta.items()))))

    def children(self, image_id: str) -> builtins.list[ImageRecord]:
        """Images whose build parent is `image_id` (the classic builder's cache candidates)."""
        with self._locked():
            return [self._record(child) for child in self._children(image_id)]

    def _children(self, image: str) -> builtins.list[str]:
        found = []
        for path in sorted(self._meta.iterdir()):
            try:
                parent = json.loads(path.read_bytes()).get("parent")
            except (OSError, ValueError):
                continue
            child = "sha256:" + path.name.removesuffix(".json")
            if parent == image and (self._images / _hex(child)).exists():
                found.append(child)
        return found

    # -- distribution metadata -------------------------------------------------------

    def distribution_sources(self, diff_id: str) -> builtins.list[DistributionSource]:
        """Registry blobs known to hold the layer `diff_id`, most recently added last."""
        try:
            raw = (self._distribution / f"{_hex(diff_id)}.json").read_bytes()
        except FileNotFoundError:
            return []
        return [
            DistributionSource(
                digest=entry["digest"],
                repository=entry["repository"],
                media_type=entry["media_type"],
                size_bytes=int(entry["size_bytes"]),
            )
            for entry in json.loads(raw)
        ]

    def add_distribution_source(self, diff_id: str, source: DistributionSource) -> None:
        validate_digest(source.digest)
        with self._locked():
            known = [s for s in self.distribution_sources(diff_id) if s != source]
            # Bounded, as dockerd's v2metadata: the newest sources are the useful ones.
            known = [*known, source][-_DISTRIBUTION_SOURCES_MAX:]
            self._write_file(
                self._distribution / f"{_hex(diff_id)}.json",
                go_json(
                    [
                        {
                            "digest": s.digest,
                            "repository": s.repository,
                            "media_type": s.media_type,
                            "size_bytes": s.size_bytes,
                        }
                        for s in known
                    ]
                ),
            )

    # -- committing images --------------------------------------------------------------

    def commit_image(
        self,
        config_json: bytes,
        *,
        ref: str | None = None,
        parent: str | None = None,
        repo_digest: str | None = None,
    ) -> str:
        """Store an image config whose layers are all registered; return the image ID.

        The config is kept byte for byte (the image ID is its digest). `ref` tags the image
        (moving the tag), `parent` records the build parent, `repo_digest`
        (`name@sha256:…`) adds a digest reference. All or nothing.
        """
        try:
            config = ImageConfig.from_json(config_json)
            chain = config.chain_ids()
        except (ValueError, TypeError, AttributeError, InvalidReference) as exc:
            raise ImageStoreError(f"invalid image config: {exc}") from None
        tag_ref = parse_reference(ref) if ref is not None else None
        if tag_ref is not None and tag_ref.digest is not None:
            raise InvalidReference("refusing to create a tag with a digest reference")
        digest_ref = parse_reference(repo_digest, default_tag=False) if repo_digest else None
        if digest_ref is not None and (digest_ref.digest is None or digest_ref.tag is not None):
            raise InvalidReference(f"not a digest reference: {repo_digest}")
        with self._locked():
            for chain_id in chain:
                if not self.has_layer(chain_id):
                    raise ImageStoreError(f"layer not found: {chain_id}")
            if parent is not None and not (self._images / _hex(parent)).exists():
                raise ImageNotFound(f"No such image: {parent}")
            image = "sha256:" + hashlib.sha256(config_json).hexdigest()
            undo: builtins.list[Callable[[], None]] = []
            try:
                self._add_image(image, config_json, undo)
                if parent is not None:
                    self._update_meta(image, parent=parent)
                if tag_ref is not None:
                    self._add_ref(image, tag_ref)
                if digest_ref is not None:
                    self._add_ref(image, digest_ref)
            except BaseException:
                for step in reversed(undo):
                    step()
                raise
            return image

    def _add_image(
        self, image: str, config_json: bytes, undo: builtins.list[Callable[[], None]]
    ) -> None:
        blob = self._blobs / _hex(image)
        if not blob.exists():
            undo.append(lambda: blob.unlink(missing_ok=True))
            self.put_blob(config_json)
        marker = self._images / _hex(image)
        if not marker.exists():
            undo.append(lambda: marker.unlink(missing_ok=True))
            self._write_file(marker, b"")

    def list(self) -> builtins.list[ImageRecord]:
        """All images, newest first (as `docker images` sorts them)."""
        with self._locked():
            records = [self._record(image) for image in self._image_ids()]
        return sorted(records, key=lambda r: (r.config.created or "", r.id), reverse=True)

    def import_tar(
        self,
        stream: IO[bytes],
        *,
        ref: str | None = None,
        config: ContainerConfig | None = None,
        comment: str = "Imported from -",
        created: datetime | None = None,
        platform_os: str | None = None,
        architecture: str | None = None,
    ) -> str:
        """`docker import`: one layer from a tar stream, with `config` as `--change` gives.

        Returns the image ID. On any error nothing it added remains.
        """
        parsed = parse_reference(ref) if ref is not None else None
        if parsed is not None and parsed.digest is not None:
            raise InvalidReference("refusing to create a tag with a digest reference")
        host_os, host_arch = host_platform()
        stamp = format_time(created if created is not None else datetime.now(UTC))
        staged = self._staging()
        os.mkdir(staged, 0o700)
        try:
            diff_id, size = self._extract_recorded(stream, staged)
            image_config = ImageConfig(
                architecture=architecture or host_arch,
                os=platform_os or host_os,
                config=config if config is not None else ContainerConfig(),
                rootfs=RootFS(diff_ids=(diff_id,)),
                history=(HistoryEntry(created=stamp, comment=comment),),
                created=stamp,
                comment=comment,
            )
            with self._locked():
                return self._commit_image(staged, image_config, size, parsed)
        finally:
            remove_tree(staged)

    def _commit_image(
        self, staged: Path, image_config: ImageConfig, size: int, ref: Reference | None
    ) -> str:
        """Commit a staged one-layer image under the lock, undoing every step on failure."""
        undo: builtins.list[Callable[[], None]] = []
        try:
            (diff_id,) = image_config.rootfs.diff_ids
            (chain_id,) = chain_ids([diff_id])
            if self._commit_layer(staged, chain_id, diff_id, None, size):
                undo.append(lambda: self._discard(self.layer_dir(chain_id)))
            raw = image_config.to_json()
            image = "sha256:" + hashlib.sha256(raw).hexdigest()
            self._add_image(image, raw, undo)
            if ref is not None:
                self._add_ref(image, ref)
            return image
        except BaseException:
            for step in reversed(undo):
                step()
            raise

    def delete(self, ref_or_id: str, *, force: bool = False) -> builtins.list[DeleteItem]:
        """`docker rmi`: untag, and delete the image once nothing refers to it.

        Follows moby daemon/images/image_delete.go: a reference removes only that tag
        while others remain; an ID removes a single-repository image's tags with it; users
        of the image conflict (`must be forced` if stopped, `cannot be forced` if running).
        """
        with self._locked():
            image = self._resolve(ref_or_id)
            refs = self._refs_of(image)
            users = list(self._image_users(image))
            items: builtins.list[DeleteItem] = []
            by_reference = not (
                image.startswith(ref_or_id) or image.removeprefix("sha256:").startswith(ref_or_id)
            )
            if by_reference:
                ref = parse_reference(ref_or_id)
                if not force and _is_single_reference(refs) and users:
                    raise ImageConflict(
                        f'conflict: unable to remove repository reference "{ref_or_id}" '
                        f"(must force) - container {short_id(users[0].container_id)} "
                        f"is using its referenced image {short_id(image)}"
                    )
                self._remove_ref(ref)
                items.append(DeleteItem(untagged=ref.familiar()))
                if self._refs_of(image):
                    return items
                if any(user.running for user in users) or self._children(image):
                    # Docker's "quiet" delete: the untag stands, the image stays (dangling,
                    # or the parent of a build's images).
                    return items
            elif _is_single_reference(refs):
                self._check_conflicts(image, users, force=force, active_refs=False)
                for ref in refs:
                    self._remove_ref(ref)
                    items.append(DeleteItem(untagged=ref.familiar()))
            self._check_conflicts(image, users, force=force, active_refs=True)
            for ref in self._refs_of(image):
                self._remove_ref(ref)
                items.append(DeleteItem(untagged=ref.familiar()))
            parent = self._read_meta(image).get("parent")
            self._delete_image(image, items)
            # moby imageDeleteHelper with prune: untagged parents nothing else needs (a
            # build's intermediate images) go with their last child.
            while parent is not None and (self._images / _hex(parent)).exists():
                if self._refs_of(parent) or self._children(parent) or self._image_users(parent):
                    break
                grandparent = self._read_meta(parent).get("parent")
                self._delete_image(parent, items)
                parent = grandparent
            return items

    def _delete_image(self, image: str, items: builtins.list[DeleteItem]) -> None:
        chain = self._config(image).chain_ids()
        (self._images / _hex(image)).unlink()
        (self._blobs / _hex(image)).unlink(missing_ok=True)
        self._meta_path(image).unlink(missing_ok=True)
        items.append(DeleteItem(deleted=image))
        references = self._layer_references()
        for chain_id in reversed(chain):
            if references[chain_id] == 0 and self.layer_dir(chain_id).exists():
                self._discard(self.layer_dir(chain_id))
                items.append(DeleteItem(deleted=chain_id))

    def _check_conflicts(
        self, image: str, users: Sequence[ImageUser], *, force: bool, active_refs: bool
    ) -> None:
        # moby checkImageDeleteConflict, in its order: running (hard), then the soft ones.
        def conflict(message: str, *, hard: bool) -> ImageConflict:
            how = "cannot be forced" if hard else "must be forced"
            return ImageConflict(
                f"conflict: unable to delete {short_id(image)} ({how}) - {message}"
            )

        for user in users:
            if user.running:
                raise conflict(
                    f"image is being used by running container {short_id(user.container_id)}",
                    hard=True,
                )
        if self._children(image):
            raise conflict("image has dependent child images", hard=True)
        if force:
            return
        if active_refs and self._refs_of(image):
            raise conflict("image is referenced in multiple repositories", hard=False)
        for user in users:
            raise conflict(
                f"image is being used by stopped container {short_id(user.container_id)}",
                hard=False,
            )

    def gc(self, *, lease_s: float = 0.0, now_s: float | None = None) -> builtins.list[str]:
        """Remove layers and blobs no image (nor held snapshot) refers to; return them.

        Layers registered less than `lease_s` ago are kept: a pull, load or build registers
        its layers before it commits the image that references them (containerd's leases).
        """
        removed: builtins.list[str] = []
        with self._locked():
            references = self._layer_references()
            for chain_id in self.list_layers():
                leased = _is_fresh(self.layer_dir(chain_id), lease_s, now_s)
                if references[chain_id] == 0 and not leased:
                    self._discard(self.layer_dir(chain_id))
                    removed.append(chain_id)
            images = set(self._image_ids())
            for blob in sorted(self._blobs.iterdir()):
                if "sha256:" + blob.name not in images:
                    blob.unlink()
                    removed.append("sha256:" + blob.name)
        return removed


def _is_single_reference(refs: Sequence[Reference]) -> bool:
    """moby isSingleReference: at most one tag, and all references in one repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    single: Reference | None = None
    canonical_names: set[str] = set()
    for ref in refs:
        if ref.digest is not None:
            canonical_names.add(ref.name)
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(canonical_names) == 1 and single.name in canonical_names
