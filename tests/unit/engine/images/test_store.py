"""The image store on real files in a temporary directory: layers, tags, delete, GC."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dockyard.engine.images.model import ContainerConfig, InvalidReference, short_id
from dockyard.engine.images.store import (
    BlobCorrupted,
    DeleteItem,
    ImageConflict,
    ImageNotFound,
    ImageStore,
    ImageUser,
    LayerError,
    extract_layer,
)

pytestmark = pytest.mark.unit

CREATED = datetime(2024, 5, 1, tzinfo=UTC)

Entry = tuple[str, bytes, bytes | str | None, int]  # (name, type, content or link, mode)


def make_tar(entries: Sequence[Entry]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.mtime = 1_700_000_000
            data = payload if isinstance(payload, bytes) else b""
            if isinstance(payload, str):
                info.linkname = payload
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


BASIC = make_tar(
    [
        ("etc", tarfile.DIRTYPE, None, 0o755),
        ("etc/hello", tarfile.REGTYPE, b"hello\n", 0o644),
        ("bin", tarfile.DIRTYPE, None, 0o755),
        ("bin/tool", tarfile.REGTYPE, b"#!/bin/sh\n", 0o755),
        ("bin/alias", tarfile.SYMTYPE, "tool", 0o777),
        ("bin/hard", tarfile.LNKTYPE, "bin/tool", 0o755),
    ]
)

WHITEOUTS = make_tar(
    [
        ("./.wh.gone", tarfile.REGTYPE, b"", 0o644),
        ("./dir/", tarfile.DIRTYPE, None, 0o750),
        ("./dir/.wh..wh..opq", tarfile.REGTYPE, b"", 0o644),
        ("./dir/keep", tarfile.REGTYPE, b"kept", 0o600),
    ]
)


def store_contents(root: Path) -> list[str]:
    """Every path under the store except the lock file, to compare before and after."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != "lock")


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_import_extracts_one_layer(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(BASIC), ref="app:v1", created=CREATED)
    record = store.get("app:v1")
    assert record.id == image
    assert record.references == ("app:v1",)
    diff_id = "sha256:" + hashlib.sha256(BASIC).hexdigest()
    assert record.config.rootfs.diff_ids == (diff_id,)
    assert record.chain_ids == (diff_id,)  # a base layer's chain ID is its DiffID
    assert record.config.comment == "Imported from -"
    assert record.config.created == "2024-05-01T00:00:00Z"
    diff = store.layer_diff_path(diff_id)
    assert (diff / "etc/hello").read_bytes() == b"hello\n"
    assert os.readlink(diff / "bin/alias") == "tool"
    assert os.stat(diff / "bin/hard").st_ino == os.stat(diff / "bin/tool").st_ino
    assert stat.S_IMODE(os.stat(diff / "bin/tool").st_mode) == 0o755
    assert os.stat(diff / "etc").st_mtime == 1_700_000_000
    layer = store.get_layer(diff_id)
    assert (layer.diff_id, layer.parent, layer.size_bytes) == (diff_id, None, len(BASIC))


def test_gzip_layer_has_the_uncompressed_diff_id(store: ImageStore) -> None:
    plain = store.import_tar(io.BytesIO(BASIC), created=CREATED)
    zipped = store.import_tar(io.BytesIO(gzip.compress(BASIC, mtime=0)), created=CREATED)
    assert plain == zipped  # same config bytes: same DiffID, same created
    assert len(store.list_layers()) == 1


def test_whiteouts_become_overlay_whiteouts(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(WHITEOUTS), created=CREATED)
    diff = store.layer_diff_path(store.get(image).chain_ids[0])
    gone = os.lstat(diff / "gone")
    assert stat.S_ISCHR(gone.st_mode)
    assert os.major(gone.st_rdev) == os.minor(gone.st_rdev) == 0
    assert os.getxattr(diff / "dir", "trusted.overlay.opaque") == b"y"
    assert (diff / "dir/keep").read_bytes() == b"kept"
    assert not (diff / ".wh.gone").exists()
    assert not (diff / "dir/.wh..wh..opq").exists()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("/etc/passwd", tarfile.REGTYPE, b"x", 0o644)], "absolute path"),
        ([("a/../../escape", tarfile.REGTYPE, b"x", 0o644)], "outside the layer"),
        (
            [
                ("link", tarfile.SYMTYPE, "/tmp", 0o777),
                ("link/evil", tarfile.REGTYPE, b"x", 0o644),
            ],
            "through a symlink",
        ),
        ([("hard", tarfile.LNKTYPE, "../outside", 0o644)], "outside the layer"),
        ([("null", tarfile.CHRTYPE, None, 0o666)], "device node"),
    ],
)
def test_unsafe_layers_are_refused(tmp_path: Path, entries: Sequence[Entry], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        extract_layer(io.BytesIO(make_tar(entries)), tmp_path / "diff", is_root=False)


def test_device_nodes_are_extracted_as_root(tmp_path: Path) -> None:
    tar = make_tar([("null", tarfile.CHRTYPE, None, 0o666)])
    extract_layer(io.BytesIO(tar), tmp_path / "diff", is_root=True)
    assert os.lstat(tmp_path / "diff/null").st_rdev == os.makedev(1, 3)


def test_whiteouts_need_root(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="needs root"):
        extract_layer(io.BytesIO(WHITEOUTS), tmp_path / "diff", is_root=False)


def test_failing_import_leaves_nothing_behind(store: ImageStore) -> None:
    store.import_tar(io.BytesIO(BASIC), ref="keep:1", created=CREATED)
    before = store_contents(store.root)
    repositories = (store.root / "repositories.json").read_bytes()
    # The failure comes after half the layer has been extracted.
    bad = make_tar(
        [("ok", tarfile.REGTYPE, b"fine", 0o644), ("../x", tarfile.REGTYPE, b"x", 0o644)]
    )
    with pytest.raises(LayerError):
        store.import_tar(io.BytesIO(bad), ref="bad:1")
    with pytest.raises(LayerError):
        store.import_tar(io.BytesIO(BASIC[:1000]), ref="bad:1")  # truncated
    with pytest.raises(InvalidReference):
        store.import_tar(io.BytesIO(BASIC), ref="Bad")
    assert store_contents(store.root) == before
    assert (store.root / "repositories.json").read_bytes() == repositories


def test_failure_while_committing_is_undone(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_tag_index(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_repositories", broken_tag_index)
    with pytest.raises(OSError, match="No space"):
        store.import_tar(io.BytesIO(BASIC), ref="app:v1", created=CREATED)
    assert store_contents(store.root) == [
        "blobs",
        "blobs/sha256",
        "distribution",
        "images",
        "images/sha256",
        "layers",
        "layers/sha256",
        "meta",
        "meta/sha256",
        "tmp",
    ]


def test_shared_layer_is_stored_once_and_collected(tmp_path: Path) -> None:
    held: list[str] = []
    store = ImageStore(tmp_path / "images", held_layers=lambda: held)
    first = store.import_tar(io.BytesIO(BASIC), ref="one", created=CREATED)
    second = store.import_tar(
        io.BytesIO(BASIC), ref="two", created=CREATED, config=ContainerConfig(cmd=("sh",))
    )
    assert first != second
    (layer,) = store.list_layers()
    assert store.get(first).chain_ids == store.get(second).chain_ids == (layer,)
    assert store.layer_refcount(layer) == 2

    assert store.delete("one") == [
        DeleteItem(untagged="one:latest"),
        DeleteItem(deleted=first),
    ]
    assert store.list_layers() == [layer]
    assert store.layer_refcount(layer) == 1

    held.append(layer)  # a container still stacks on it: deleting keeps the layer
    assert store.delete(second) == [DeleteItem(untagged="two:latest"), DeleteItem(deleted=second)]
    assert store.list_layers() == [layer]
    assert store.gc() == []
    held.clear()
    assert store.gc() == [layer]
    assert store.list_layers() == []
    assert store.list() == []
    assert list((store.root / "blobs/sha256").iterdir()) == []


def test_delete_removes_an_unshared_layer(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(BASIC), ref="solo", created=CREATED)
    (layer,) = store.get(image).chain_ids
    assert store.delete(image) == [
        DeleteItem(untagged="solo:latest"),
        DeleteItem(deleted=image),
        DeleteItem(deleted=layer),
    ]
    assert store.list_layers() == []


def test_tags_and_lookup(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(BASIC), ref="busybox", created=CREATED)
    store.tag("busybox", "localhost:5000/x/y:v2")
    store.tag(image, "busybox:1.36")
    assert store.get("docker.io/library/busybox:1.36").id == image
    assert store.get(image.removeprefix("sha256:")[:12]).id == image
    assert store.get(f"sha256:{image[7:19]}").id == image
    assert store.get(image).references == (
        "busybox:1.36",
        "busybox:latest",
        "localhost:5000/x/y:v2",
    )
    on_disk = json.loads((store.root / "repositories.json").read_bytes())
    assert on_disk == {
        "Repositories": {
            "busybox": {"busybox:1.36": image, "busybox:latest": image},
            "localhost:5000/x/y": {"localhost:5000/x/y:v2": image},
        }
    }
    assert [r.id for r in store.list()] == [image]
    assert store.untag("busybox:1.36") == image
    with pytest.raises(ImageNotFound, match=r"^No such image: busybox:1.36$"):
        store.get("busybox:1.36")
    with pytest.raises(ImageNotFound, match=r"^No such image: nothing$"):
        store.get("nothing")
    with pytest.raises(ImageNotFound, match=r"^No such image: nothing:latest$"):
        store.untag("nothing")
    with pytest.raises(InvalidReference, match="invalid reference format"):
        store.get("bad::ref")
    with pytest.raises(InvalidReference, match="digest reference"):
        store.tag("busybox", f"x@sha256:{'a' * 64}")


def test_delete_conflicts_use_dockers_wording(tmp_path: Path) -> None:
    users: dict[str, list[ImageUser]] = {}
    store = ImageStore(tmp_path / "images", image_users=lambda i: users.get(i, []))
    image = store.import_tar(io.BytesIO(BASIC), ref="one", created=CREATED)
    store.tag("one", "other/repo:x")
    short = short_id(image)
    with pytest.raises(ImageConflict) as excinfo:
        store.delete(image)
    assert str(excinfo.value) == (
        f"conflict: unable to delete {short} (must be forced) - "
        "image is referenced in multiple repositories"
    )
    assert store.delete("other/repo:x") == [DeleteItem(untagged="other/repo:x")]

    users[image] = [ImageUser("c0ffee" * 10, running=False)]
    with pytest.raises(ImageConflict) as excinfo:
        store.delete("one")
    assert str(excinfo.value) == (
        'conflict: unable to remove repository reference "one" (must force) - '
        f"container {'c0ffee' * 2} is using its referenced image {short}"
    )
    with pytest.raises(ImageConflict) as excinfo:
        store.delete(image)
    assert str(excinfo.value) == (
        f"conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {'c0ffee' * 2}"
    )

    users[image] = [ImageUser("beef" * 16, running=True)]
    with pytest.raises(ImageConflict) as excinfo:
        store.delete(image, force=True)
    assert str(excinfo.value) == (
        f"conflict: unable to delete {short} (cannot be forced) - "
        f"image is being used by running container {'beef' * 3}"
    )
    assert store.get("one").id == image  # nothing was untagged by the failed deletes

    users.clear()
    assert store.delete(image)[-2:][0] == DeleteItem(deleted=image)


def test_corrupted_blob_is_detected(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(BASIC), created=CREATED)
    blob = store.root / "blobs/sha256" / image.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(BlobCorrupted):
        store.get(image)


def test_recover_clears_staging(store: ImageStore) -> None:
    (store.root / "tmp/leftover").mkdir()
    (store.root / "tmp/leftover/file").write_bytes(b"half")
    store.recover()
    assert list((store.root / "tmp").iterdir()) == []
