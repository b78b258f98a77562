"""`write_diff_tar` round trips through the image store, whiteouts and all.

Runs as root (whiteouts are 0/0 character devices, opaque directories a trusted.* xattr).
A real overlay mount makes the upper directory, as a container's would be: the test
deletes and replaces files of a lower layer through the mount, then checks that the layer
written from the upper directory, registered on that lower layer, reads back the same.
Every mount is removed in a finalizer and checked.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.engine.images.diff_tar import is_empty_diff, write_diff_tar
from dockyard.engine.images.snapshotter import (
    OverlaySnapshotter,
    is_mountpoint,
    mount,
    unmount,
)
from dockyard.engine.images.store import ImageStore

pytestmark = pytest.mark.integration


def _tar(entries: dict[str, bytes | None]) -> bytes:
    """A layer tar: a name ending in / is a directory, else a file with that content."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[list[Path]]:
    targets: list[Path] = []
    try:
        yield targets
    finally:
        for target in reversed(targets):
            unmount(target)
        leaked = [t for t in targets if is_mountpoint(t)]
        assert not leaked, f"still mounted: {leaked}"


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_overlay_changes_round_trip(tmp_path: Path, store: ImageStore, mounted: list[Path]) -> None:
    assert os.geteuid() == 0, "whiteouts need root"
    base = store.register_layer(
        io.BytesIO(
            _tar(
                {
                    "etc/": None,
                    "etc/gone": b"x",
                    "etc/keep": b"keep",
                    "opaque/": None,
                    "opaque/old": b"old",
                }
            )
        ),
        None,
    )
    snapshots = OverlaySnapshotter(tmp_path / "snapshots", store.layer_diff_path)
    root = tmp_path / "root"
    root.mkdir()
    mount(snapshots.prepare("c1", [base.chain_id]), root)
    mounted.append(root)
    (root / "etc" / "gone").unlink()  # → a whiteout
    # Replace a directory: overlayfs marks the new one opaque.
    for child in (root / "opaque").iterdir():
        child.unlink()
    (root / "opaque").rmdir()
    (root / "opaque").mkdir()
    (root / "opaque" / "new").write_bytes(b"new")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "bin" / "tool", 1000, 1001)
    os.chmod(root / "bin" / "tool", 0o4755)  # after chown, which clears set-id bits
    os.link(root / "bin" / "tool", root / "bin" / "alias")
    os.symlink("tool", root / "bin" / "link")
    os.setxattr(root / "bin" / "tool", "user.note", b"hello")
    unmount(root)
    mounted.remove(root)

    upper = snapshots.upper_dir("c1")
    assert not is_empty_diff(upper)
    first, second = io.BytesIO(), io.BytesIO()
    write_diff_tar(upper, first)
    write_diff_tar(upper, second)
    assert first.getvalue() == second.getvalue(), "the tar must be deterministic"

    members = _members(first.getvalue())
    names = list(members)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert "etc/.wh.gone" in members
    assert "opaque/.wh..wh..opq" in members
    # The first of the hard-linked paths in order carries the content.
    assert members["bin/tool"].islnk() and members["bin/tool"].linkname == "bin/alias"
    assert members["bin/link"].issym() and members["bin/link"].linkname == "tool"
    tool = members["bin/alias"]
    assert (tool.mode, tool.uid, tool.gid) == (0o4755, 1000, 1001)
    assert tool.pax_headers["SCHILY.xattr.user.note"] == "hello"
    assert not any("trusted.overlay" in k for m in members.values() for k in m.pax_headers)

    layer = store.register_layer(io.BytesIO(first.getvalue()), base.chain_id)
    assert layer.diff_id == "sha256:" + hashlib.sha256(first.getvalue()).hexdigest()
    diff = store.layer_diff_path(layer.chain_id)
    whiteout = os.lstat(diff / "etc" / "gone")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(diff / "opaque", "trusted.overlay.opaque") == b"y"
    assert (diff / "opaque" / "new").read_bytes() == b"new"
    assert os.stat(diff / "bin" / "alias").st_ino == os.stat(diff / "bin" / "tool").st_ino
    with store.layer_tar(layer.chain_id) as exported:
        assert exported.read() == first.getvalue()

    # The stacked result reads as the changes made it.
    view = tmp_path / "view"
    view.mkdir()
    mount(snapshots.view([base.chain_id, layer.chain_id]), view)
    mounted.append(view)
    assert not (view / "etc" / "gone").exists()
    assert (view / "etc" / "keep").read_bytes() == b"keep"
    assert sorted(p.name for p in (view / "opaque").iterdir()) == ["new"]
    snapshots.remove("c1")


def test_an_untouched_upper_is_empty_and_excludes_apply(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    assert is_empty_diff(upper)
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_text("")
    (upper / "etc" / "app").write_text("x")
    out = io.BytesIO()
    write_diff_tar(upper, out, exclude=("etc/hosts",))
    assert list(_members(out.getvalue())) == ["etc", "etc/app"]
