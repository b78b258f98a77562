"""The archive endpoints' driver: `docker cp` (HEAD/GET/PUT archive) and `docker export`.

Role: reach a container's files through `Engine.mounted_rootfs` (its running rootfs bound at
a private mount point, or its snapshot mounted there while it is stopped) and do the file
work in a worker thread (`asyncio.to_thread`); the decisions are `model/archive.py`'s.

Safety: every path inside the rootfs is opened with openat2(2) `RESOLVE_IN_ROOT` relative
to a descriptor of the rootfs, so a symlink (`/`, `../../..`, or one a running container
swaps in mid-copy) resolves inside the container and never on the host. Below the opened
directory, trees are walked with descriptors and `O_NOFOLLOW`, and extraction creates,
chowns, chmods and stamps files relative to a parent descriptor without following the
final component. `model.archive.resolve_in_scope` computes the same resolution for what
dockerd reports (names, `linkTarget`); the kernel enforces it.

Streams: a tar is produced by a generator run one chunk at a time in a worker thread;
closing the stream waits for the chunk in progress, closes the generator (its
descriptors) and only then releases the mount, so no mount outlives its stream and no
unmount races a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import grp
import io
import logging
import os
import posixpath
import pwd
import shutil
import stat
import tarfile
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dockyard.engine.containers import ContainerRecord, EngineError, InvalidArgument, NotFound
from dockyard.engine.model import archive as am

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
Chunks = Generator[bytes, None, None]
T = TypeVar("T")
# linux/openat2.h; the syscall number is the same on every architecture (since 5.6).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
# openat2 answers EAGAIN when a rename raced the lookup; it is safe to retry.
OPENAT2_ATTEMPTS = 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def openat2_in_root(root_fd: int, path: str, flags: int) -> int:
    """open(2) `path` as if `root_fd` were `/`: no symlink or `..` leaves it."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path or "/")
    for _ in range(OPENAT2_ATTEMPTS):
        fd = _libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


class Rootfs:
    """A container's root directory, by descriptor; paths are container paths."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def open(self, path: str, flags: int = os.O_PATH | os.O_DIRECTORY) -> int:
        return openat2_in_root(self.fd, path, flags)

    @contextlib.contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, base name) of a container path."""
        fd = self.open(posixpath.dirname(path))
        try:
            yield fd, posixpath.basename(path)
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result:
        if path == "/":
            return os.fstat(self.fd)
        with self.parent(path) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def readlink(self, path: str) -> str | None:
        """`model.archive.Readlink`: a symlink's target; None for other or missing files."""
        if path == "/":
            return None
        try:
            with self.parent(path) as (fd, name):
                return os.readlink(name, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.EINVAL:  # not a symlink
                return None
            raise

    def read_text(self, path: str) -> str:
        """A regular file's text ("" for anything else: a FIFO must not block the read)."""
        try:
            fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return ""
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            return f.read(1 << 20).decode(errors="replace")


# -- stat ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    resolved: am.ResolvedPath
    stat: am.PathStat


def _lstat_error(e: OSError, shown: str) -> str:
    return f"lstat {shown}: {(e.strerror or str(e)).lower()}"


def locate(rootfs: Rootfs, path: str, container: str) -> Located:
    """moby containerStatPath: resolve `path` (not its last symlink) and lstat it."""
    try:
        resolved = am.resolve_path(path, rootfs.readlink)
        st = rootfs.lstat(resolved.resolved)
        if resolved.wants_dir and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            link_target = am.resolve_in_scope(resolved.abs_path, rootfs.readlink)
    except FileNotFoundError:
        raise NotFound(am.file_not_found(path, container)) from None
    except am.TooManyLinks as e:
        raise EngineError(str(e)) from None
    except OSError as e:
        raise EngineError(_lstat_error(e, am.container_abs_path(path))) from None
    return Located(
        resolved,
        am.PathStat(
            name=resolved.name,
            size=st.st_size,
            mode=am.go_file_mode(st.st_mode),
            mtime_ns=st.st_mtime_ns,
            link_target=link_target,
        ),
    )


# -- tar streams ---------------------------------------------------------------------------


@dataclass
class _TarWriter:
    """Members as tar bytes, handed out in chunks of about CHUNK_BYTES."""

    out: bytearray = field(default_factory=bytearray)
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    names: dict[tuple[str, int], str] = field(default_factory=dict)

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def _owner(self, kind: str, ident: int) -> str:
        key = (kind, ident)
        if key not in self.names:
            # Go's archive/tar names the owners from the host's databases, as we do.
            try:
                name = pwd.getpwuid(ident).pw_name if kind == "u" else grp.getgrgid(ident).gr_name
            except KeyError:
                name = ""
            self.names[key] = name
        return self.names[key]

    def member(self, dir_fd: int, name: str, st: os.stat_result, tar_name: str) -> Chunks:
        """One file's header and data, `name` relative to `dir_fd`, never followed."""
        kind = am.member_kind(st.st_mode)
        if kind is None:
            return  # sockets are not archived (pkg/archive addTarFile)
        linkname = ""
        size = 0
        if kind == tarfile.SYMTYPE:
            linkname = os.readlink(name, dir_fd=dir_fd)
        elif kind == tarfile.REGTYPE:
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in self.links:
                kind, linkname = tarfile.LNKTYPE, self.links[inode]
            else:
                if st.st_nlink > 1:
                    self.links[inode] = tar_name
                size = st.st_size
        self.out += am.member_header(
            am.Member(
                name=tar_name,
                kind=kind,
                mode=stat.S_IMODE(st.st_mode),
                uid=st.st_uid,
                gid=st.st_gid,
                size=size,
                mtime_s=int(st.st_mtime),
                linkname=linkname,
                devmajor=os.major(st.st_rdev) if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0,
                devminor=os.minor(st.st_rdev) if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0,
                uname=self._owner("u", st.st_uid),
                gname=self._owner("g", st.st_gid),
            )
        )
        if kind == tarfile.REGTYPE:
            yield from self._data(dir_fd, name, size)
        if len(self.out) >= CHUNK_BYTES:
            yield self.take()

    def _data(self, dir_fd: int, name: str, size: int) -> Chunks:
        """Exactly `size` bytes: a file that shrank meanwhile is padded, one that grew cut."""
        left = size
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            fd = -1
        try:
            while left > 0 and fd >= 0:
                data = os.read(fd, min(CHUNK_BYTES, left))
                if not data:
                    break
                self.out += data
                left -= len(data)
                if len(self.out) >= CHUNK_BYTES:
                    yield self.take()
        finally:
            if fd >= 0:
                os.close(fd)
        self.out += b"\0" * left + am.padding(size)


def _walk(writer: _TarWriter, dir_fd: int, relative: str, prefix: str | None) -> Chunks:
    """The members under the directory `dir_fd`, in Go's lexical order, depth first."""
    try:
        names = sorted(os.listdir(dir_fd), key=os.fsencode)
    except OSError:
        return  # removed meanwhile
    for name in names:
        child = f"{relative}/{name}" if relative else name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        yield from writer.member(dir_fd, name, st, am.member_name(prefix, child, is_dir))
        if not is_dir:
            continue
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError:
            continue  # replaced by a symlink or removed meanwhile: not followed
        try:
            yield from _walk(writer, sub, child, prefix)
        finally:
            os.close(sub)


def archive_chunks(rootfs: Rootfs, located: Located) -> Chunks:
    """moby containerArchivePath: the resolved item (a symlink itself, not its target)
    named after the path asked for, and everything under it when it is a directory."""
    writer = _TarWriter()
    prefix = am.rebase_prefix(located.resolved)
    target = located.resolved.resolved
    if target == "/":
        # The root has no parent inside the container: its own descriptor stands for it.
        top = am.member_name(prefix, "", True)
        yield from writer.member(rootfs.fd, "", os.fstat(rootfs.fd), top)
        fd = rootfs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    else:
        with rootfs.parent(target) as (pfd, name):
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            yield from writer.member(pfd, name, st, am.member_name(prefix, "", is_dir))
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            fd = os.open(name, flags, dir_fd=pfd) if is_dir else -1
    if fd >= 0:
        try:
            yield from _walk(writer, fd, "", prefix)
        finally:
            os.close(fd)
    writer.out += am.TAR_END
    yield writer.take()


def export_chunks(rootfs: Rootfs) -> Chunks:
    """moby containerExport: the whole root filesystem, members named without a prefix."""
    writer = _TarWriter()
    fd = rootfs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield from _walk(writer, fd, "", None)
    finally:
        os.close(fd)
    writer.out += am.TAR_END
    yield writer.take()


class ThreadedChunks:
    """An async iterator over a blocking chunk generator, one chunk per worker-thread call.

    It reads one chunk ahead, so the generator's end is known before its last chunk is
    handed out: the mount is released before the client can see the end of the body.
    `aclose` (the HTTP server calls it whether or not the body was read) waits for the
    chunk in progress, closes the generator, then runs `cleanup`."""

    def __init__(self, chunks: Chunks, cleanup: Callable[[], Awaitable[object]]) -> None:
        self._chunks = chunks
        self._cleanup = cleanup
        self._pending: asyncio.Future[bytes | None] | None = None
        self._ahead: bytes | None = None
        self._started = False
        self._finished = False

    def __aiter__(self) -> ThreadedChunks:
        return self

    async def _fetch(self) -> bytes | None:
        self._pending = asyncio.ensure_future(asyncio.to_thread(next, self._chunks, None))
        try:
            # Shielded: a client that leaves cancels the wait, not the thread's chunk.
            return await asyncio.shield(self._pending)
        except OSError as e:
            # The headers are out: end the body early, which the client sees as truncated.
            logger.warning("archive stream ended early: %s", e)
            await self.aclose()
            raise ConnectionResetError(str(e)) from None

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            self._ahead = await self._fetch()
        chunk = self._ahead
        if chunk is None:
            await self.aclose()
            raise StopAsyncIteration
        self._ahead = await self._fetch()
        if self._ahead is None:
            await self.aclose()  # before the last chunk goes out
        return chunk

    async def aclose(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            if self._pending is not None and not self._pending.done():
                with contextlib.suppress(Exception):
                    await self._pending
            await asyncio.to_thread(self._chunks.close)
        finally:
            await self._cleanup()


# -- extraction ----------------------------------------------------------------------------


def _tar_read_error(e: tarfile.TarError) -> str:
    text = str(e)
    if "unexpected end" in text or "truncated" in text:
        return am.EXTRACT_ERROR_PREFIX + "unexpected EOF"
    return am.EXTRACT_ERROR_PREFIX + "archive/tar: invalid tar header"


def _ensure_dir(rootfs: Rootfs, path: str) -> None:
    """mkdir -p inside the container (idtools.MkdirAllAndChownNew, root-owned 0755)."""
    try:
        os.close(rootfs.open(path))
        return
    except FileNotFoundError:
        pass
    _ensure_dir(rootfs, posixpath.dirname(path))
    with rootfs.parent(path) as (fd, name), contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=fd)


def _set_mode(dir_fd: int, name: str, mode: int) -> None:
    # chmod(2) follows symlinks; through an O_PATH descriptor it reaches this very file.
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None  # copyUIDGID: the container user's ids


def extract(rootfs: Rootfs, dest: str, data: bytes, options: ExtractOptions) -> None:
    """pkg/archive Unpack into the container directory `dest` (already resolved)."""
    if not data.strip(b"\0"):
        return  # an empty body or an empty archive: nothing to do, as dockerd
    dirs: list[tuple[str, int]] = []
    # What precedes a truncation is extracted, then the error reported, as dockerd does.
    whole, truncated = am.tar_prefix(data)
    try:
        if whole.strip(b"\0"):
            with tarfile.open(fileobj=io.BytesIO(whole), mode="r|") as archive:
                for member in archive:
                    _extract_member(rootfs, dest, archive, member, options, dirs)
    except tarfile.TarError as e:
        raise EngineError(_tar_read_error(e)) from None
    if truncated:
        raise EngineError(am.EXTRACT_ERROR_PREFIX + "unexpected EOF")
    # Directories are stamped last: their members' creation changed their times.
    for path, mtime in reversed(dirs):
        with contextlib.suppress(OSError), rootfs.parent(path) as (fd, name):
            os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)


def _extract_member(
    rootfs: Rootfs,
    dest: str,
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    options: ExtractOptions,
    dirs: list[tuple[str, int]],
) -> None:
    try:
        target = am.extract_target(dest, member.name)
    except am.Breakout as e:
        raise EngineError(str(e)) from None
    is_dir = member.isdir()
    if target == dest:
        return  # the extraction directory itself (`.`) keeps its own metadata
    parent = posixpath.dirname(target)
    try:
        _ensure_dir(rootfs, parent)
        with rootfs.parent(target) as (pfd, name):
            _replace_existing(pfd, name, target, dest, is_dir, options)
            _create(rootfs, dest, target, pfd, name, archive, member)
            uid, gid = options.owner or (member.uid, member.gid)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            if not member.issym():
                _set_mode(pfd, name, member.mode & 0o7777)
            mtime = int(member.mtime * 1_000_000_000)
            if is_dir:
                dirs.append((target, mtime))
            else:
                os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
    except am.ArchiveError as e:
        raise EngineError(str(e)) from None
    except OSError as e:
        what = (e.strerror or str(e)).lower()
        raise EngineError(f"{am.EXTRACT_ERROR_PREFIX}{target}: {what}") from None


def _replace_existing(
    pfd: int, name: str, target: str, dest: str, is_dir: bool, options: ExtractOptions
) -> None:
    try:
        existing = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    existing_is_dir = stat.S_ISDIR(existing.st_mode)
    if options.no_overwrite_dir_non_dir:
        message = am.overwrite_error(target, dest, existing_is_dir, is_dir)
        if message:
            raise am.ArchiveError(message)
    if existing_is_dir and is_dir:
        return  # merged: only the metadata is applied
    if existing_is_dir:
        shutil.rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


def _create(
    rootfs: Rootfs,
    dest: str,
    target: str,
    pfd: int,
    name: str,
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
) -> None:
    mode = member.mode & 0o7777
    if member.isdir():
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=pfd)
    elif member.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            source = archive.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, CHUNK_BYTES)
    elif member.islnk():
        source_path = am.hardlink_source(dest, member.linkname)
        try:
            with rootfs.parent(source_path) as (sfd, source_name):
                os.link(source_name, name, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        except OSError as e:
            what = (e.strerror or str(e)).lower()
            raise am.ArchiveError(
                f"{am.EXTRACT_ERROR_PREFIX}link {source_path} {target}: {what}"
            ) from None
    elif member.issym():
        am.check_symlink(dest, target, member.linkname)
        os.symlink(member.linkname, name, dir_fd=pfd)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        device = os.makedev(member.devmajor, member.devminor)
        os.mknod(name, mode | kind, device, dir_fd=pfd)
    elif member.isfifo():
        os.mkfifo(name, mode, dir_fd=pfd)
    else:
        raise am.ArchiveError(f"{am.EXTRACT_ERROR_PREFIX}unhandled tar header type {member.type!r}")


# -- the engine's operations -----------------------------------------------------------------


async def stat_path(engine: Engine, ref: str, path: str) -> am.PathStat:
    async with engine.mounted_rootfs(ref) as (_, root):
        return (await asyncio.to_thread(_locate_at, root, path, ref)).stat


def _locate_at(root: Path, path: str, ref: str) -> Located:
    rootfs = Rootfs(root)
    try:
        return locate(rootfs, path, ref)
    finally:
        rootfs.close()


async def _open_stream(
    engine: Engine, ref: str, action: str, produce: Callable[[Rootfs], tuple[T, Chunks]]
) -> tuple[T, ThreadedChunks]:
    """Mount, open the rootfs and start `produce`; the stream owns both until closed.
    dockerd logs the container event `action` once the archive is ready to be sent."""
    stack = contextlib.AsyncExitStack()
    try:
        record, root = await stack.enter_async_context(engine.mounted_rootfs(ref))
        rootfs = await asyncio.to_thread(Rootfs, root)
        stack.callback(rootfs.close)
        value, chunks = await asyncio.to_thread(produce, rootfs)
    except BaseException:
        await stack.aclose()
        raise
    engine.emit_container_event(record.id, action)
    return value, ThreadedChunks(chunks, stack.aclose)


async def open_archive(engine: Engine, ref: str, path: str) -> tuple[am.PathStat, ThreadedChunks]:
    def produce(rootfs: Rootfs) -> tuple[am.PathStat, Chunks]:
        located = locate(rootfs, path, ref)
        return located.stat, archive_chunks(rootfs, located)

    return await _open_stream(engine, ref, "archive-path", produce)


async def open_export(engine: Engine, ref: str) -> ThreadedChunks:
    def produce(rootfs: Rootfs) -> tuple[None, Chunks]:
        return None, export_chunks(rootfs)

    _, chunks = await _open_stream(engine, ref, "export", produce)
    return chunks


async def extract_to(
    engine: Engine,
    ref: str,
    path: str,
    data: bytes,
    *,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
) -> None:
    """moby containerExtractToDir: the path is resolved through its last symlink and must be
    a directory; a read-only rootfs refuses."""
    async with engine.mounted_rootfs(ref) as (record, root):
        await asyncio.to_thread(
            _extract_at, root, record, ref, path, data, no_overwrite_dir_non_dir, copy_uid_gid
        )
    engine.emit_container_event(record.id, "extract-to-dir")


def _extract_at(
    root: Path,
    record: ContainerRecord,
    ref: str,
    path: str,
    data: bytes,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
) -> None:
    rootfs = Rootfs(root)
    try:
        abs_path = am.container_abs_path(path)
        try:
            dest = am.resolve_in_scope(abs_path, rootfs.readlink)
            st = rootfs.lstat(dest)
        except FileNotFoundError:
            raise NotFound(am.file_not_found(path, ref)) from None
        except am.TooManyLinks as e:
            raise EngineError(str(e)) from None
        except OSError as e:
            raise EngineError(_lstat_error(e, abs_path)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise EngineError(am.NOT_A_DIRECTORY)
        if record.host_config.get("ReadonlyRootfs"):
            raise EngineError(am.ROOTFS_READ_ONLY)
        owner = None
        user = str(record.config.get("User") or "")
        if copy_uid_gid and user:
            try:
                owner = am.lookup_user(
                    user, rootfs.read_text("/etc/passwd"), rootfs.read_text("/etc/group")
                )
            except am.ArchiveError as e:
                raise InvalidArgument(str(e)) from None
        extract(rootfs, dest, data, ExtractOptions(no_overwrite_dir_non_dir, owner))
    finally:
        rootfs.close()
