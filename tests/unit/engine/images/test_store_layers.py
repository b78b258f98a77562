"""Layers by chain, byte-exact layer tars (tar-split), images committed from configs.

These are the store operations save/load, pull/push and build stand on: a layer registered
from any tar must give back the very same bytes (its DiffID) without the tar being kept.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.engine.images.model import InvalidReference, chain_ids
from dockyard.engine.images.store import (
    DeleteItem,
    DistributionSource,
    ImageConflict,
    ImageStore,
    ImageStoreError,
    LayerError,
)

pytestmark = pytest.mark.unit

SEED = 20261129


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_tar(rng: random.Random, tar_format: int) -> bytes:
    """A tar with payloads around block and read-ahead boundaries, long names and links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        names: list[str] = []
        for index in range(rng.randrange(1, 40)):
            depth = rng.randrange(0, 3)
            directory = "/".join(f"d{rng.randrange(3)}" for _ in range(depth))
            long_part = "x" * rng.choice([1, 120, 200])  # past the 100-byte ustar name
            name = f"{directory}/{long_part}{index}" if directory else f"{long_part}{index}"
            kind = rng.choice(["file", "file", "file", "symlink", "hardlink", "empty"])
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000 + index
            info.mode = 0o644
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = "/target/" + "y" * rng.choice([1, 150])
                tar.addfile(info)
            elif kind == "hardlink" and names:
                info.type = tarfile.LNKTYPE
                info.linkname = rng.choice(names)
                tar.addfile(info)
            else:
                size = rng.choice([0, 1, 511, 512, 513, 10240, 10241, 70000, rng.randrange(4096)])
                data = rng.randbytes(size) if kind != "empty" else b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                names.append(name)
    raw = out.getvalue()
    # Padding after the end-of-archive blocks belongs to the DiffID too.
    return raw + b"\0" * rng.choice([0, 512, 4096])


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def read_layer(store: ImageStore, chain_id: str, chunk_bytes: int = -1) -> bytes:
    with store.layer_tar(chain_id) as stream:
        if chunk_bytes < 0:
            return stream.read()
        parts = []
        while chunk := stream.read(chunk_bytes):
            parts.append(chunk)
        return b"".join(parts)


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_registered_layers_reassemble_byte_for_byte(store: ImageStore, tar_format: int) -> None:
    rng = random.Random(SEED + tar_format)
    for case in range(25):
        raw = random_tar(rng, tar_format)
        compressed = rng.random() < 0.5
        body = gzip.compress(raw) if compressed else raw
        record = store.register_layer(io.BytesIO(body), None)
        assert record.diff_id == digest(raw), f"seed {SEED + tar_format} case {case}"
        assert record.chain_id == record.diff_id and record.size_bytes == len(raw)
        chunk = rng.choice([-1, 1, 100, 512, 65536])
        assert read_layer(store, record.chain_id, chunk) == raw, (
            f"seed {SEED + tar_format} case {case} chunk {chunk}"
        )


def test_layer_chains_and_idempotence(store: ImageStore) -> None:
    base_tar = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    top_tar = random_tar(random.Random(SEED + 1), tarfile.PAX_FORMAT)
    base = store.register_layer(io.BytesIO(base_tar), None)
    top = store.register_layer(io.BytesIO(top_tar), base.chain_id)
    assert top.chain_id == chain_ids([base.diff_id, top.diff_id])[1]
    assert top.parent == base.chain_id and store.get_layer(top.chain_id) == top
    again = store.register_layer(io.BytesIO(top_tar), base.chain_id)
    assert again == top and store.list_layers() == sorted([base.chain_id, top.chain_id])
    with pytest.raises(ImageStoreError, match="parent layer not found"):
        store.register_layer(io.BytesIO(top_tar), "sha256:" + "0" * 64)


def test_a_digest_mismatch_or_bad_tar_leaves_nothing(store: ImageStore) -> None:
    raw = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    with pytest.raises(LayerError, match="layer digest mismatch"):
        store.register_layer(io.BytesIO(raw), None, expected_diff_id="sha256:" + "1" * 64)
    with pytest.raises(LayerError):
        store.register_layer(io.BytesIO(raw[: len(raw) // 2]), None)
    with pytest.raises(LayerError):
        store.register_layer(io.BytesIO(gzip.compress(raw)[:-20]), None)
    assert store.list_layers() == []
    assert list((store.root / "tmp").iterdir()) == []


def test_a_file_changed_on_disk_is_reported_not_exported(store: ImageStore) -> None:
    info = tarfile.TarInfo("file")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    record = store.register_layer(io.BytesIO(out.getvalue()), None)
    (store.layer_diff_path(record.chain_id) / "file").write_bytes(b"HELLO")
    with pytest.raises(LayerError, match="cannot be reproduced"):
        read_layer(store, record.chain_id)


def config_for(diff_ids: Sequence[str], **extra: object) -> bytes:
    # Not Go's canonical form on purpose: configs from elsewhere are kept byte for byte.
    wire = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "config": {"Cmd": ["sh"]},
        **extra,
    }
    return json.dumps(wire, indent=1).encode()


def test_commit_image_keeps_the_config_bytes_and_references(store: ImageStore) -> None:
    raw = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    layer = store.register_layer(io.BytesIO(raw), None)
    config = config_for([layer.diff_id])
    manifest_digest = "sha256:" + "ab" * 32
    image = store.commit_image(
        config, ref="localhost:5000/app:v1", repo_digest=f"localhost:5000/app@{manifest_digest}"
    )
    assert image == digest(config) and store.get_blob(image) == config
    record = store.get("localhost:5000/app:v1")
    assert record.references == ("localhost:5000/app:v1",)
    assert record.repo_digests == (f"localhost:5000/app@{manifest_digest}",)
    assert record.last_tag_time is not None
    assert store.get(f"localhost:5000/app@{manifest_digest}").id == image
    with pytest.raises(ImageStoreError, match="layer not found"):
        store.commit_image(config_for(["sha256:" + "2" * 64]))
    with pytest.raises(ImageStoreError, match="invalid image config"):
        store.commit_image(b"[1, 2]")
    with pytest.raises(InvalidReference):
        store.commit_image(config, repo_digest="localhost:5000/app:v1")


def test_build_parents_children_and_pruning_on_delete(store: ImageStore) -> None:
    raw = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    layer = store.register_layer(io.BytesIO(raw), None)
    base = store.commit_image(config_for([layer.diff_id]), ref="base:1")
    step1 = store.commit_image(config_for([layer.diff_id], author="step1"), parent=base)
    step2 = store.commit_image(config_for([layer.diff_id], author="step2"), parent=step1)
    store.tag(step2, "app:1")
    assert [c.id for c in store.children(base)] == [step1]
    assert store.get(step2).parent == step1
    with pytest.raises(ImageConflict, match="image has dependent child images"):
        store.delete(step1, force=True)
    # Untagging a base that has children keeps it (moby's quiet delete).
    assert store.delete("base:1") == [DeleteItem(untagged="base:1")]
    assert store.get(base).references == ()
    # Removing the built image takes its untagged intermediate parents along.
    assert store.delete("app:1") == [
        DeleteItem(untagged="app:1"),
        DeleteItem(deleted=step2),
        DeleteItem(deleted=step1),
        DeleteItem(deleted=base),
        DeleteItem(deleted=layer.chain_id),
    ]
    assert store.list() == [] and store.list_layers() == []


def test_distribution_sources_are_kept_per_layer(store: ImageStore) -> None:
    diff_id = "sha256:" + "3" * 64
    first = DistributionSource("sha256:" + "4" * 64, "localhost:5000/a", "gzip", 10)
    second = DistributionSource("sha256:" + "5" * 64, "localhost:5000/b", "gzip", 12)
    assert store.distribution_sources(diff_id) == []
    store.add_distribution_source(diff_id, first)
    store.add_distribution_source(diff_id, second)
    store.add_distribution_source(diff_id, first)  # moves to the end, not duplicated
    assert store.distribution_sources(diff_id) == [second, first]


def test_gc_keeps_freshly_registered_layers_within_the_lease(store: ImageStore) -> None:
    raw = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    layer = store.register_layer(io.BytesIO(raw), None)
    registered_s = store.layer_dir(layer.chain_id).stat().st_mtime
    assert store.gc(lease_s=600, now_s=registered_s + 10) == []
    assert store.gc(lease_s=600, now_s=registered_s + 601) == [layer.chain_id]


def test_recovery_removes_what_interrupted_work_left(store: ImageStore) -> None:
    raw = random_tar(random.Random(SEED), tarfile.PAX_FORMAT)
    layer = store.register_layer(io.BytesIO(raw), None)  # a pull that died before its commit
    staging = store.root / "tmp" / "half-written"
    staging.mkdir()
    (staging / "layer.tar").write_bytes(raw[:100])
    registered_s = store.layer_dir(layer.chain_id).stat().st_mtime
    # Within the lease another process may still be working: nothing is touched.
    store.recover(lease_s=600, now_s=registered_s + 10)
    assert staging.exists() and store.list_layers() == [layer.chain_id]
    store.recover()
    assert not staging.exists() and store.list_layers() == []
