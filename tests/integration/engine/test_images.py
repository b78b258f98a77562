"""A busybox image on a real overlay mount: the rootfs works, writes land in the upper dir.

Runs as root (overlayfs). Every mount is tracked and removed in a finalizer, even when the
test fails, and the test checks that nothing stays mounted.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.engine.images.bootstrap import bootstrap_busybox
from dockyard.engine.images.snapshotter import (
    OverlaySnapshotter,
    is_mountpoint,
    mount,
    unmount,
)
from dockyard.engine.images.store import ImageStore

pytestmark = pytest.mark.integration


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[list[Path]]:
    """Targets the test mounts; all unmounted afterwards, then checked."""
    targets: list[Path] = []
    try:
        yield targets
    finally:
        for target in reversed(targets):
            unmount(target)
        leaked = [t for t in targets if is_mountpoint(t)]
        assert not leaked, f"still mounted: {leaked}"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Path → (mode, size) of everything under root, to compare before and after."""
    return {
        str(p.relative_to(root)): (os.lstat(p).st_mode, os.lstat(p).st_size)
        for p in root.rglob("*")
    }


def test_busybox_rootfs_on_overlay(tmp_path: Path, mounted: list[Path]) -> None:
    store = ImageStore(tmp_path / "images")
    image = bootstrap_busybox(store)
    snapshots = OverlaySnapshotter(tmp_path / "snapshots", store.layer_diff_path)
    chain = store.get(image).chain_ids
    lower = store.layer_diff_path(chain[-1])
    lower_before = tree(lower)

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    mounted.append(rootfs)
    mount(snapshots.prepare("c1", chain), rootfs)
    assert is_mountpoint(rootfs)
    assert (rootfs / "bin/sh").is_symlink()
    assert (rootfs / "bin/busybox").is_file()

    # The image's own shell runs from the overlay and writes into it.
    result = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", "echo hi > /tmp/hello && cat /etc/passwd"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert result.stdout.startswith("root:x:0:0:")
    (rootfs / "etc/motd").write_text("written\n")
    (rootfs / "bin/ls").unlink()  # deleting a lower file makes a whiteout in the upper dir

    upper = snapshots.upper_dir("c1")
    assert (upper / "tmp/hello").read_text() == "hi\n"
    assert (upper / "etc/motd").read_text() == "written\n"
    assert os.major(os.lstat(upper / "bin/ls").st_rdev) == 0  # overlayfs whiteout

    unmount(rootfs)
    assert not is_mountpoint(rootfs)
    assert tree(lower) == lower_before
    assert not (lower / "tmp/hello").exists()

    snapshots.remove("c1")
    assert not upper.exists()


def test_single_layer_view_is_read_only(tmp_path: Path, mounted: list[Path]) -> None:
    store = ImageStore(tmp_path / "images")
    image = bootstrap_busybox(store)
    snapshots = OverlaySnapshotter(tmp_path / "snapshots", store.layer_diff_path)
    view = tmp_path / "view"
    view.mkdir()
    mounted.append(view)
    mount(snapshots.view(store.get(image).chain_ids), view)
    assert (view / "bin/sh").is_symlink()
    with pytest.raises(OSError) as excinfo:
        (view / "new").write_text("x")
    assert excinfo.value.errno == errno.EROFS
    unmount(view)
    assert not is_mountpoint(view)
