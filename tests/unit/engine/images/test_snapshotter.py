"""Overlay snapshot planning: the mounts are values, checked without mounting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.engine.images.snapshotter import (
    MOUNT_OPTIONS_MAX_BYTES,
    Mount,
    OverlaySnapshotter,
    SnapshotError,
    plan_mounts,
)

pytestmark = pytest.mark.unit

L0, L1, L2 = (f"sha256:{c * 64}" for c in "012")


def test_overlay_with_upper_lists_the_top_layer_first() -> None:
    assert plan_mounts(["/l/2", "/l/1", "/l/0"], "/s/fs", "/s/work") == [
        Mount(
            "overlay",
            "overlay",
            "",
            ("lowerdir=/l/2:/l/1:/l/0", "upperdir=/s/fs", "workdir=/s/work"),
        )
    ]


def test_read_only_views() -> None:
    assert plan_mounts(["/l/0"]) == [Mount("bind", "/l/0", "", ("ro", "rbind"))]
    assert plan_mounts(["/l/1", "/l/0"]) == [
        Mount("overlay", "overlay", "", ("lowerdir=/l/1:/l/0",))
    ]
    assert plan_mounts([], "/s/fs", "/s/work") == [Mount("bind", "/s/fs", "", ("rw", "rbind"))]


@pytest.mark.parametrize(
    ("lowers", "upper", "work"),
    [
        ([], None, None),
        (["/a,b", "/c"], None, None),
        (["/a:b", "/c"], None, None),
        (["relative", "/c"], None, None),
        (["/a"], "/up", None),
        ([f"/{'x' * 200}/{i}" for i in range(30)], None, None),
    ],
)
def test_unplannable_mounts_are_refused(
    lowers: list[str], upper: str | None, work: str | None
) -> None:
    with pytest.raises(SnapshotError):
        plan_mounts(lowers, upper, work)
    assert MOUNT_OPTIONS_MAX_BYTES < 4096


def test_prepare_remove_and_held_layers(tmp_path: Path) -> None:
    layers = tmp_path / "layers"
    snapshotter = OverlaySnapshotter(tmp_path / "snap", lambda c: layers / c[7:15])
    mounts = snapshotter.prepare("c1", [L0, L1, L2])
    upper = snapshotter.upper_dir("c1")
    assert mounts == [
        Mount(
            "overlay",
            "overlay",
            "",
            (
                f"lowerdir={layers}/22222222:{layers}/11111111:{layers}/00000000",
                f"upperdir={upper}",
                f"workdir={upper.parent / 'work'}",
            ),
        )
    ]
    assert upper.is_dir()
    assert (upper.parent / "work").is_dir()
    assert snapshotter.mounts("c1") == mounts
    snapshotter.prepare("c2", [L0])
    assert snapshotter.held_chain_ids() == [L0, L1, L2, L0]
    assert snapshotter.view([L0]) == [Mount("bind", f"{layers}/00000000", "", ("ro", "rbind"))]
    with pytest.raises(SnapshotError, match="already exists"):
        snapshotter.prepare("c1", [L0])
    with pytest.raises(SnapshotError, match="invalid container id"):
        snapshotter.prepare("../evil", [L0])
    snapshotter.remove("c1")
    assert not upper.parent.exists()
    assert snapshotter.held_chain_ids() == [L0]
    with pytest.raises(SnapshotError, match="no such snapshot"):
        snapshotter.remove("c1")
    assert list((tmp_path / "snap/tmp").iterdir()) == []
