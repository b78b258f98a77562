"""The busybox image built from the host's static busybox is complete and deterministic."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockyard.engine.images.bootstrap import (
    HOST_BUSYBOX,
    bootstrap_busybox,
    build_rootfs_tar,
    busybox_applets,
)
from dockyard.engine.images.store import ImageStore

pytestmark = pytest.mark.unit


def test_rootfs_tar_is_deterministic_and_complete() -> None:
    binary = b"\x7fELF fake"
    tar = build_rootfs_tar(binary, ["sh", "ls", "busybox"])
    assert tar == build_rootfs_tar(binary, ["ls", "sh"])
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        passwd = archive.extractfile("etc/passwd")
        assert passwd is not None
        assert passwd.read().splitlines() == [
            b"root:x:0:0:root:/root:/bin/sh",
            b"nobody:x:65534:65534:nobody:/home:/bin/false",
        ]
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert "bin/busybox" in members and members["bin/busybox"].mode == 0o755
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    assert {"dev", "proc", "sys", "etc/group"} <= members.keys()
    assert {m.mtime for m in members.values()} == {0}


def test_bootstrap_gives_the_same_image_id_twice(tmp_path: Path) -> None:
    applets = busybox_applets()
    assert {"sh", "ls", "cat"} <= set(applets)
    first = ImageStore(tmp_path / "a")
    second = ImageStore(tmp_path / "b")
    image = bootstrap_busybox(first)
    assert bootstrap_busybox(second) == image
    record = first.get("busybox")
    assert record.id == image
    assert record.references == ("busybox:latest",)
    assert record.config.config is not None
    assert record.config.config.cmd == ("sh",)
    assert record.config.config.env == (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    diff = first.layer_diff_path(record.chain_ids[0])
    assert (diff / "bin/busybox").read_bytes() == HOST_BUSYBOX.read_bytes()
    assert (diff / "bin/sh").readlink() == Path("busybox")
