"""The build context: unpacking safely, the Dockerfile, `.dockerignore`, COPY sources.

Small real tars unpacked under the test's temp dir (milliseconds each).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from dockyard.engine.images.build.context import (
    ContextError,
    resolve_in_scope,
    unpack_context,
)

pytestmark = pytest.mark.unit


def tar_of(entries: dict[str, str | None], *, symlinks: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = content.encode()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def test_unpacks_plain_and_gzip_and_reads_the_dockerfile(tmp_path: Path) -> None:
    body = tar_of({"Dockerfile": "FROM busybox\n", "a.txt": "a"})
    for index, data in enumerate((body, gzip.compress(body))):
        context = unpack_context(data, tmp_path / f"c{index}", "Dockerfile")
        try:
            assert context.dockerfile_text == "FROM busybox\n"
            assert (context.root / "a.txt").read_text() == "a"
        finally:
            context.close()
        assert not (tmp_path / f"c{index}").exists()


def test_a_tar_without_its_end_blocks_still_unpacks(tmp_path: Path) -> None:
    # What the docker CLI sends for `-f -` (moby ReplaceFileTarWrapper closes early).
    body = tar_of({"Dockerfile": "FROM x\n", "f": "12345"})
    header_and_data = 512 + 512 + 512 + 5  # two headers, one padded block, five bytes
    context = unpack_context(body[:header_and_data], tmp_path / "c", "Dockerfile")
    try:
        assert (context.root / "f").read_text() == "12345"
    finally:
        context.close()


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/../../b"])
def test_paths_outside_the_context_are_refused(tmp_path: Path, name: str) -> None:
    body = tar_of({"Dockerfile": "FROM x\n", name: "x"})
    with pytest.raises(ContextError, match="illegal path"):
        unpack_context(body, tmp_path / "c", "Dockerfile")
    assert not (tmp_path / "c").exists()


def test_writes_through_a_symlink_are_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path)  # a directory outside the context
        tar.addfile(link)
        info = tarfile.TarInfo("link/file")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ContextError, match="below a non-directory"):
        unpack_context(out.getvalue(), tmp_path / "c", "Dockerfile")
    assert not (tmp_path / "file").exists()
    assert not (tmp_path / "c").exists()


def test_missing_and_empty_dockerfiles(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="Cannot locate specified Dockerfile: Other"):
        unpack_context(tar_of({"Dockerfile": "x"}), tmp_path / "c1", "Other")
    with pytest.raises(ContextError, match=r"the Dockerfile \(Dockerfile\) cannot be empty"):
        unpack_context(tar_of({"Dockerfile": ""}), tmp_path / "c2", "Dockerfile")
    # moby falls back to a lowercase `dockerfile`.
    context = unpack_context(tar_of({"dockerfile": "FROM y\n"}), tmp_path / "c3", "Dockerfile")
    assert context.dockerfile_text == "FROM y\n"
    context.close()


def test_dockerignore_filters_the_context(tmp_path: Path) -> None:
    body = tar_of(
        {
            "Dockerfile": "FROM x\n",
            ".dockerignore": "*.log\n!keep.log\ndocs\n!docs/keep.md\n",
            "a.log": "",
            "keep.log": "",
            "docs/": None,
            "docs/keep.md": "",
            "docs/other.md": "",
        }
    )
    context = unpack_context(body, tmp_path / "c", "Dockerfile")
    try:
        names = sorted(str(p.relative_to(context.root)) for p in context.root.rglob("*"))
        assert names == [".dockerignore", "Dockerfile", "docs", "docs/keep.md", "keep.log"]
    finally:
        context.close()


def test_sources_wildcards_missing_files_and_checksums(tmp_path: Path) -> None:
    body = tar_of(
        {"Dockerfile": "FROM x\n", "a1.txt": "1", "a2.txt": "2", "dir/": None, "dir/f": "f"},
        symlinks={"escape": "/etc/passwd"},
    )
    context = unpack_context(body, tmp_path / "c", "Dockerfile")
    try:
        assert [s.path for s in context.sources("a*.txt")] == ["a1.txt", "a2.txt"]
        (directory,) = context.sources("dir")
        assert directory.is_dir and directory.checksum.startswith("dir:")
        with pytest.raises(ContextError, match="stat nothere: file does not exist"):
            context.sources("nothere")
        # A symlink resolves inside the context: /etc/passwd of the host is not reachable.
        with pytest.raises(ContextError, match="file does not exist"):
            context.sources("escape")
        before = context.sources("a1.txt")[0].checksum
        assert before == context.sources("./a1.txt")[0].checksum
    finally:
        context.close()


def test_resolve_in_scope_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "up").symlink_to("../../../../..")
    (root / "abs").symlink_to("/etc")
    assert resolve_in_scope(root, "etc/up/x") == root / "x"
    assert resolve_in_scope(root, "abs/passwd") == root / "etc" / "passwd"
