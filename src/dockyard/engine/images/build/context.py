"""The build context: the tar the client sends, unpacked privately and filtered.

Role: unpack the context (plain, gzip, bzip2 or xz tar, as the docker CLI and SDK send it)
into a new private directory, find and read the Dockerfile, apply `.dockerignore`, and
answer the COPY/ADD questions about it: which files a source names (with wildcards), and
their content checksums for the cache.

Invariants:
- Nothing is written outside the context directory: absolute and `..` names, writes
  through symlinks and device nodes are refused or skipped; lookups of sources resolve
  symlinks inside the context only (moby `symlink.FollowSymlinkInScope`).
- The Dockerfile and `.dockerignore` are read before filtering; afterwards they are in
  the context only if `.dockerignore` does not exclude them (moby removeDockerfile).
- Errors are Docker's messages (`Cannot locate specified Dockerfile: …`, `file not found
  in build context or excluded by .dockerignore: stat x: file does not exist`).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dockyard.engine import fsutil
from dockyard.engine.images.build.cache import dir_hash, file_hash
from dockyard.engine.images.build.dockerignore import (
    IgnoreMatcher,
    PatternError,
    read_dockerignore,
)
from dockyard.engine.images.store import remove_tree
from dockyard.engine.model.archive import TooManyLinks
from dockyard.engine.model.gopath import path_match

__all__ = [
    "BuildContext",
    "ContextError",
    "SourceInfo",
    "SourceTree",
    "decompressed",
    "extract_tar_into",
    "has_wildcards",
    "resolve_in_scope",
    "unpack_context",
]

DEFAULT_DOCKERFILE = "Dockerfile"
_CHUNK_BYTES = 1 << 20


class ContextError(ValueError):
    """A context or source Docker refuses; the message is Docker's."""


def decompressed(stream: IO[bytes]) -> Any:
    """Docker's DetectCompression: gzip, bzip2 or xz by magic, else the stream itself."""
    head = stream.read(6)
    stream.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream, mode="rb")
    return stream


class _PaddedAtEnd:
    """A tar stream completed with zeros: the docker CLI's `-f -` rewrites the context
    with moby ReplaceFileTarWrapper, which closes its pipe before the tar writer, so the
    last file's padding and the end-of-archive blocks never arrive (Go's reader copes;
    Python's does not). Zeros after a complete archive are ignored anyway."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._offset = 0
        self._tail: int | None = None

    def read(self, size: int = -1) -> bytes:
        if self._tail is None:
            data: bytes = self._inner.read(size)
            if data or size == 0:
                self._offset += len(data)
                return data
            self._tail = (-self._offset) % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE
        count = self._tail if size < 0 else min(size, self._tail)
        self._tail -= count
        return bytes(count)


def _clean_member(name: str) -> str | None:
    """The member's path inside the context, or None for the root; refuses escapes."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise ContextError(f"invalid build context: illegal path {name!r}")
    return "/".join(parts) or None


def resolve_in_scope(root: Path, rel: str) -> Path:
    """`root/rel` with every symlink resolved as if `root` were `/` (never leaves root)."""
    try:
        return fsutil.resolve_in_scope(root, rel)
    except TooManyLinks:
        raise ContextError(f"too many links in {rel}") from None


def has_wildcards(path: str) -> bool:
    """moby containsWildcards: an unescaped `*`, `?` or `[`."""
    escaped = False
    for ch in path:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "*?[":
            return True
    return False


@dataclass(frozen=True)
class SourceInfo:
    """One COPY/ADD source in the context: its path (for the destination's base name),
    the resolved file on disk and its checksum."""

    path: str  # as named (or matched), context-relative
    full_path: Path
    is_dir: bool
    checksum: str


def extract_tar_into(tar: tarfile.TarFile, root: Path) -> None:
    """Extract a tar stream under `root`, never writing outside it (see module rules),
    with the owners the tar names (ADD of a local archive: moby UntarPath keeps them)."""
    _safe_extract(tar, root, keep_owners=True)


def _safe_extract(tar: tarfile.TarFile, root: Path, *, keep_owners: bool = False) -> None:
    dir_times: list[tuple[Path, int]] = []
    for member in tar:
        _extract_member(tar, member, root, dir_times)
        rel = _clean_member(member.name)
        if keep_owners and rel is not None and os.path.lexists(root / rel):
            os.chown(root / rel, member.uid, member.gid, follow_symlinks=False)
            if not member.issym():
                os.chmod(root / rel, member.mode & 0o7777)  # chown clears set-id bits
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime))


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: Path,
    dir_times: list[tuple[Path, int]],
) -> None:
    rel = _clean_member(member.name)
    if rel is None:
        return
    parent = root
    for part in rel.split("/")[:-1]:
        parent = parent / part
        try:
            mode = os.lstat(parent).st_mode
        except FileNotFoundError:
            os.mkdir(parent, 0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise ContextError(f"invalid build context: {rel!r} is below a non-directory")
    path = root / rel
    if member.isdir():
        if not path.is_dir() or path.is_symlink():
            remove_tree(path)
            os.mkdir(path, 0o755)
        os.chmod(path, member.mode & 0o7777)
        dir_times.append((path, int(member.mtime)))
        return
    remove_tree(path)
    if member.isreg():
        source = tar.extractfile(member)
        if source is None:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK_BYTES)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target = _clean_member(member.linkname)
        if target is None or not (root / target).is_file() or (root / target).is_symlink():
            raise ContextError(f"invalid build context: bad hard link {member.name!r}")
        os.link(root / target, path)
    # Devices and FIFOs are no build sources (nor safe to create): skipped.


class SourceTree:
    """A directory COPY/ADD take sources from: the context, or another stage's (or an
    image's) root filesystem for `COPY --from`. Checksums are memoized per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._checksums: dict[str, str] = {}

    def sources(self, original: str) -> list[SourceInfo]:
        """The files one COPY/ADD source names (moby calcCopyInfo)."""
        cleaned = posixpath.normpath("/" + original).lstrip("/") or "."
        if original.startswith("../") or original == "..":
            raise ContextError(f"forbidden path outside the build context: {original} ()")
        if has_wildcards(original):
            matches = [rel for rel in self._walk() if path_match(cleaned, rel)]
            return [
                self._info(rel, str(resolve_in_scope(self.root, rel).relative_to(self.root)))
                for rel in matches
            ]
        full = resolve_in_scope(self.root, cleaned)
        if not os.path.lexists(full) or not full.exists():
            raise ContextError(
                "file not found in build context or excluded by .dockerignore: "
                f"stat {cleaned}: file does not exist"
            )
        return [self._info(cleaned, str(full.relative_to(self.root)) or ".")]

    def _walk(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            base = os.path.relpath(dirpath, self.root)
            for name in sorted([*dirnames, *filenames]):
                yield name if base == "." else f"{base}/{name}"

    def _info(self, named: str, rel: str) -> SourceInfo:
        full = self.root if rel in (".", "") else self.root / rel
        is_dir = full.is_dir()
        return SourceInfo(named, full, is_dir, self.checksum(rel))

    def checksum(self, rel: str) -> str:
        rel = "" if rel == "." else rel
        if rel in self._checksums:
            return self._checksums[rel]
        full = self.root / rel if rel else self.root
        st = os.stat(full)
        if stat.S_ISDIR(st.st_mode):
            entries = []
            for name in sorted(os.listdir(full)):
                child = f"{rel}/{name}" if rel else name
                entries.append((name, self._entry_hash(child)))
            value = dir_hash(entries)
        else:
            value = self._file_hash(rel, full)
        self._checksums[rel] = value
        return value

    def _entry_hash(self, rel: str) -> str:
        full = self.root / rel
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            return "symlink:" + hashlib.sha256(os.readlink(full).encode()).hexdigest()
        if stat.S_ISDIR(st.st_mode):
            return self.checksum(rel)
        return self._file_hash(rel, full)

    @staticmethod
    def _file_hash(rel: str, full: Path) -> str:
        st = os.stat(full)
        digest = hashlib.sha256()
        with open(full, "rb") as source:
            while chunk := source.read(_CHUNK_BYTES):
                digest.update(chunk)
        return file_hash(
            posixpath.basename(rel),
            stat.S_IMODE(st.st_mode),
            0,
            0,
            st.st_size,
            digest.hexdigest(),
        )


class BuildContext(SourceTree):
    """An unpacked build context in `root` (owned by this object: `close` removes it)."""

    def __init__(self, root: Path, dockerfile_text: str, dockerfile_name: str) -> None:
        super().__init__(root)
        self.dockerfile_text = dockerfile_text
        self.dockerfile_name = dockerfile_name

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _find_dockerfile(root: Path, name: str) -> tuple[Path, str]:
    rel = posixpath.normpath(name).lstrip("/")
    candidates = [rel]
    if name == DEFAULT_DOCKERFILE:
        candidates.append(DEFAULT_DOCKERFILE.lower())  # moby's lowercase fallback
    for candidate in candidates:
        path = resolve_in_scope(root, candidate)
        if path.is_file():
            return path, candidate
    raise ContextError(f"Cannot locate specified Dockerfile: {name}")


def unpack_context(body: bytes, dest: Path, dockerfile: str) -> BuildContext:
    """Unpack `body` into the new directory `dest` and read the Dockerfile from it.

    `dest` is removed again if anything fails.
    """
    os.mkdir(dest, 0o700)
    try:
        stream: Any = _PaddedAtEnd(decompressed(io.BytesIO(body)))
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                _safe_extract(tar, dest)
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as e:
            raise ContextError(f"failed to read the build context: {e}") from None
        path, rel = _find_dockerfile(dest, dockerfile or DEFAULT_DOCKERFILE)
        raw = path.read_bytes()
        if not raw:
            raise ContextError(
                f"the Dockerfile ({dockerfile or DEFAULT_DOCKERFILE}) cannot be empty"
            )
        text = raw.decode("utf-8", "replace")
        _apply_dockerignore(dest)
        return BuildContext(dest, text, rel)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _apply_dockerignore(root: Path) -> None:
    """Remove what `.dockerignore` excludes. The CLI and the SDK filter the context
    already; dockerd removes the Dockerfile and `.dockerignore` themselves when they are
    excluded (moby removeDockerfile), which this covers too."""
    ignore = root / ".dockerignore"
    if not ignore.is_file() or ignore.is_symlink():
        return
    try:
        matcher = IgnoreMatcher.from_patterns(read_dockerignore(ignore.read_text(errors="replace")))
    except PatternError as e:
        raise ContextError(f"failed to read .dockerignore: {e}") from None
    if not matcher.patterns:
        return
    _filter(root, "", matcher)


def _filter(root: Path, rel: str, matcher: IgnoreMatcher) -> None:
    directory = root / rel if rel else root
    for name in sorted(os.listdir(directory)):
        child = f"{rel}/{name}" if rel else name
        path = root / child
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        if matcher.excluded(child):
            if is_dir and matcher.should_descend(child):
                _filter(root, child, matcher)
            else:
                remove_tree(path)
        elif is_dir:
            _filter(root, child, matcher)
