"""`docker cp` and `docker export` as values: container paths, Go file modes, tar members.

Role: the pure half of the archive endpoints (`engine/archive.py` does the I/O). It decides
how a requested container path resolves (moby's `container.ResolvePath` and
`symlink.FollowSymlinkInScope`, with the file system reached only through an injected
`readlink`), what `X-Docker-Container-Path-Stat` says (a Go `os.FileMode`, a Go time), how
the members of a `GET /archive` tar are named (moby `TarResourceRebaseOpts`), and which
members of a `PUT /archive` tar would break out of the extraction directory (moby
pkg/archive `Unpack`, `createTarFile`), with dockerd's error wording.

Invariants:
- Container paths are absolute and use `/`; the scope (the rootfs) is never named here.
- `resolve_in_scope` never yields a path outside `/`: `..` stops at the root and an
  absolute symlink restarts from it, as the kernel's `RESOLVE_IN_ROOT` does (the driver
  opens what it returns with that flag, so a race cannot escape either).
- Tar headers are built in memory (`tarfile.TarInfo.tobuf`), never from the host's files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

# Go's os.FileMode type bits (io/fs/fs.go), which X-Docker-Container-Path-Stat carries.
MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19

# moby/sys/symlink: evalSymlinksInScope gives up after this many steps.
MAX_SYMLINK_STEPS = 255
BLOCK_BYTES = 512
# Go's archive/tar ends an archive with two zero blocks (no padding to a 10 KiB record).
TAR_END = b"\0" * (2 * BLOCK_BYTES)
# dockerd runs the extraction in a re-exec'd child; its failures carry this prefix.
EXTRACT_ERROR_PREFIX = "Error processing tar file(exit status 1): "
NOT_A_DIRECTORY = "extraction point is not a directory"
ROOTFS_READ_ONLY = "container rootfs is marked read-only"
# moby's own message, missing space included (api/server/router/container/copy.go).
EMPTY_PATH = "bad parameter: pathcannot be empty"


class ArchiveError(Exception):
    """A path or tar member dockerd refuses; the message is dockerd's."""


class TooManyLinks(ArchiveError):
    pass


class Breakout(ArchiveError):
    """A tar member that would be written outside the extraction directory."""


# -- Go's path functions (path/filepath on Linux) ---------------------------------------------


def go_clean(path: str) -> str:
    """filepath.Clean: posixpath.normpath, except that `//x` is `/x` (POSIX keeps `//`)."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def go_join(*elements: str) -> str:
    joined = "/".join(e for e in elements if e)
    return go_clean(joined) if joined else ""


def go_base(path: str) -> str:
    if not path:
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def go_split(path: str) -> tuple[str, str]:
    """filepath.Split: the directory keeps its trailing separator."""
    cut = path.rfind("/") + 1
    return path[:cut], path[cut:]


def container_abs_path(path: str) -> str:
    """moby ResolvePath's absPath: joined to `/` and cleaned, keeping a trailing `/` or `/.`
    (archive.PreserveTrailingDotOrSeparator), which the copy semantics depend on."""
    cleaned = go_join("/", path)
    if go_base(cleaned) != "." and go_base(path) == ".":
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and path.endswith("/"):
        cleaned += "/"
    return cleaned


# -- resolution in the container's scope --------------------------------------------------------

# readlink(container path) -> the symlink's target, or None when the path is not a symlink
# or does not exist; other failures (ENOTDIR, EACCES) raise OSError.
Readlink = Callable[[str], str | None]


def resolve_in_scope(path: str, readlink: Readlink) -> str:
    """moby/sys/symlink FollowSymlinkInScope with `/` as the scope: every symlink followed,
    absolute targets from the container's root, `..` never above it. Missing components
    are accepted as they are (the result may not exist)."""
    rest = go_clean("/" + path)
    built: list[str] = []
    steps = 0
    while rest:
        steps += 1
        if steps > MAX_SYMLINK_STEPS:
            raise TooManyLinks(f"evalSymlinksInScope: too many links in {path}")
        head, _, rest = rest.partition("/")
        if head in ("", "."):
            continue
        if head == "..":
            if built:
                built.pop()
            continue
        candidate = "/" + "/".join([*built, head])
        target = readlink(candidate)
        if target is None:
            built.append(head)
            continue
        if target.startswith("/"):
            built = []
        rest = target + "/" + rest if rest else target
    return "/" + "/".join(built)


@dataclass(frozen=True)
class ResolvedPath:
    """A requested path in moby's terms: `abs_path` as asked (cleaned), `resolved` with every
    symlink followed except the last element's, unless the request ends in `/` or `/.`."""

    requested: str
    abs_path: str
    resolved: str

    @property
    def name(self) -> str:
        """The stat's name and the tar's rebase name: the base of what was asked for."""
        return go_base(self.abs_path)

    @property
    def wants_dir(self) -> bool:
        """A trailing `/` or `/.` names a directory: a file there is ENOTDIR (lstat "f/")."""
        return self.abs_path != "/" and self.abs_path.endswith(("/", "/."))


def resolve_path(path: str, readlink: Readlink) -> ResolvedPath:
    """moby container.ResolvePath: the directory part is resolved in scope, the base kept."""
    abs_path = container_abs_path(path)
    directory, base = go_split(abs_path)
    resolved_dir = resolve_in_scope(directory, readlink)
    resolved = go_clean(resolved_dir + "/" + base)
    return ResolvedPath(path, abs_path, resolved)


# -- the path stat header ---------------------------------------------------------------------


def go_file_mode(st_mode: int) -> int:
    """Go's os.FileMode of a stat(2) mode (os/stat_linux.go fillFileStatFromSys)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif kind == stat.S_IFDIR:
        mode |= MODE_DIR
    elif kind == stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif kind == stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif kind == stat.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def go_time_utc(ns: int) -> str:
    """A Unix time in ns as Go's time.Time marshals it in UTC (RFC 3339, trailing zeros of
    the fraction dropped, no fraction when it is zero)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class PathStat:
    """types.ContainerPathStat."""

    name: str
    size: int
    mode: int  # Go os.FileMode
    mtime_ns: int
    link_target: str = ""

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & MODE_DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.mode & MODE_SYMLINK)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": go_time_utc(self.mtime_ns),
            "linkTarget": self.link_target,
        }

    def header_value(self) -> str:
        """X-Docker-Container-Path-Stat: the JSON in standard base64."""
        raw = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return base64.b64encode(raw).decode("ascii")


def file_not_found(path: str, container: str) -> str:
    return f"Could not find the file {path} in container {container}"


# -- naming the members of an archive ----------------------------------------------------------


def rebase_prefix(resolved: ResolvedPath) -> str:
    """The name the archived item takes (moby TarResourceRebaseOpts): the base of the path
    asked for, so `/etc/hostname` is `hostname`, `/dir/.` is `.`; the root is `` so that
    its members are `/bin`, not `//bin`."""
    name = resolved.name
    return "" if name == "/" else name


def member_name(prefix: str | None, relative: str, is_dir: bool) -> str:
    """A member's tar name: `relative` (the path under the archived item, `` for the item
    itself) under `prefix`; `None` is `docker export` (no prefix, root not a member)."""
    if prefix is None:
        name = relative
    elif not relative:
        name = prefix
    else:
        name = f"{prefix}/{relative}"
    if is_dir and not name.endswith("/"):
        name += "/"
    return name


@dataclass(frozen=True)
class Member:
    """What a tar header says about one file (Go archive/tar's Header, the parts we use)."""

    name: str
    kind: bytes  # tarfile.REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE, CHRTYPE, BLKTYPE, FIFOTYPE
    mode: int  # permission and set-id bits
    uid: int
    gid: int
    size: int
    mtime_s: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""


def member_kind(st_mode: int) -> bytes | None:
    """The tar type of a file; None for what Docker skips (sockets)."""
    kind = stat.S_IFMT(st_mode)
    return {
        stat.S_IFREG: tarfile.REGTYPE,
        stat.S_IFDIR: tarfile.DIRTYPE,
        stat.S_IFLNK: tarfile.SYMTYPE,
        stat.S_IFCHR: tarfile.CHRTYPE,
        stat.S_IFBLK: tarfile.BLKTYPE,
        stat.S_IFIFO: tarfile.FIFOTYPE,
    }.get(kind)


def member_header(member: Member) -> bytes:
    """The header block(s) of one member; PAX records only when USTAR cannot hold it."""
    info = tarfile.TarInfo(member.name)
    info.type = member.kind
    info.mode = member.mode & 0o7777
    info.uid, info.gid = member.uid, member.gid
    info.uname, info.gname = member.uname, member.gname
    info.size = member.size if member.kind == tarfile.REGTYPE else 0
    info.mtime = member.mtime_s
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    """Zeros that complete a member's data to a whole block."""
    return b"\0" * (-size % BLOCK_BYTES)


# -- extraction ---------------------------------------------------------------------------


# Go's archive/tar reads no data after the header of these types, whatever the size says.
_HEADER_ONLY_TYPES = frozenset(b"123456")


def _header_size(block: bytes) -> int | None:
    """The size field of a tar header (octal, or GNU base-256); None if unreadable."""
    if block[156] in _HEADER_ONLY_TYPES:
        return 0
    field = block[124:136]
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        return None


def tar_prefix(data: bytes) -> tuple[bytes, bool]:
    """The complete members at the start of `data` as Go's tar reader sees them, and whether
    it fails after them with `unexpected EOF` (a partial header, or data cut short). A last
    member whose padding is cut short is complete for Go (it reads the end there): its
    padding is restored, so Python's reader agrees."""
    offset = 0
    while True:
        left = len(data) - offset
        if left == 0:
            return data, False
        if left < BLOCK_BYTES:
            return data[:offset], True
        block = data[offset : offset + BLOCK_BYTES]
        size = _header_size(block)
        if not block.strip(b"\0") or size is None:
            return data, False  # the end marker, or a header tarfile will call invalid
        end = offset + BLOCK_BYTES + size
        if end > len(data):
            return data[:offset], True
        padded = end + (-size % BLOCK_BYTES)
        if padded > len(data):
            return data[:end] + b"\0" * (padded - end), False
        offset = padded


def within(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


def extract_target(dest: str, name: str) -> str:
    """The container path a member named `name` is written to under `dest` (pkg/archive
    Unpack): names are cleaned, absolute names are taken relative to `dest`, and a name
    that climbs out of `dest` is refused in dockerd's words."""
    cleaned = go_clean(name)
    target = go_join(dest, cleaned)
    if not within(target, dest):
        raise Breakout(f'{EXTRACT_ERROR_PREFIX}"{cleaned}" is outside of "{dest}"')
    return target


def hardlink_source(dest: str, linkname: str) -> str:
    """A hard link's source under `dest` (createTarFile TypeLink), never outside it."""
    source = go_join(dest, linkname)
    if not within(source, dest):
        raise Breakout(f'{EXTRACT_ERROR_PREFIX}invalid hardlink "{source}" -> "{linkname}"')
    return source


def check_symlink(dest: str, target: str, linkname: str) -> None:
    """createTarFile TypeSymlink: a relative link may not point above `dest` (an absolute
    one is resolved in the container's root when used, so it may)."""
    pointed = go_join(posixpath.dirname(target), linkname)
    if not within(pointed, dest):
        raise Breakout(f'{EXTRACT_ERROR_PREFIX}invalid symlink "{target}" -> "{linkname}"')


def overwrite_error(target: str, dest: str, existing_is_dir: bool, member_is_dir: bool) -> str:
    """The message of `noOverwriteDirNonDir` (pkg/archive Unpack), or "" when allowed."""
    if existing_is_dir and not member_is_dir:
        return (
            f'{EXTRACT_ERROR_PREFIX}cannot overwrite directory "{target}" '
            f'with non-directory "{dest}"'
        )
    if not existing_is_dir and member_is_dir:
        return (
            f'{EXTRACT_ERROR_PREFIX}cannot overwrite non-directory "{target}" '
            f'with directory "{dest}"'
        )
    return ""


def _ids(line: str, key: str, width: int) -> list[int] | None:
    """The numeric fields (from the third) of a passwd or group line naming `key`."""
    fields = line.split(":")
    if len(fields) < width or key not in (fields[0], fields[2]):
        return None
    try:
        return [int(f) for f in fields[2:width]]
    except ValueError:
        return None  # a malformed line names nobody


def lookup_user(user: str, passwd: str, group: str) -> tuple[int, int]:
    """`copyUIDGID`: the uid and gid of a container's `User` (`name`, `uid`, `name:group`,
    `uid:gid`) from its /etc/passwd and /etc/group contents."""
    name, _, group_name = user.partition(":")
    found = next((ids for line in passwd.splitlines() if (ids := _ids(line, name, 4))), None)
    if found is not None:
        uid, gid = found
    elif name.isdigit():
        uid, gid = int(name), 0
    else:
        raise ArchiveError(f"unable to find user {name}: no matching entries in passwd file")
    if group_name:
        entry = next(
            (ids for line in group.splitlines() if (ids := _ids(line, group_name, 3))), None
        )
        if entry is not None:
            gid = entry[0]
        elif group_name.isdigit():
            gid = int(group_name)
        else:
            raise ArchiveError(
                f"unable to find group {group_name}: no matching entries in group file"
            )
    return uid, gid
