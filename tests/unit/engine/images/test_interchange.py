"""Save plans and archives between two stores: names resolved as moby's tarexport does."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard.engine.images.interchange import (
    ArchiveError,
    load_archive,
    plan_save,
    save_chunks,
)
from dockyard.engine.images.model import ContainerConfig
from dockyard.engine.images.store import ImageNotFound, ImageStore

pytestmark = pytest.mark.unit


def layer_tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def source(tmp_path: Path) -> ImageStore:
    store = ImageStore(tmp_path / "source")
    store.import_tar(io.BytesIO(layer_tar("a", b"one")), ref="app:1")
    store.tag("app:1", "app:2")
    store.import_tar(
        io.BytesIO(layer_tar("b", b"two")), ref="other:1", config=ContainerConfig(cmd=("x",))
    )
    return store


def test_names_resolve_as_docker_save_does(source: ImageStore) -> None:
    # A bare repository name saves every tag of it; a tag saves that tag; an ID no tag.
    plan = plan_save(source, ["app"])
    assert [[t.familiar() for t in s.tags] for s in plan.images] == [["app:1", "app:2"]]
    plan = plan_save(source, ["app:2", "other:1"])
    assert [[t.familiar() for t in s.tags] for s in plan.images] == [["app:2"], ["other:1"]]
    image = source.get("other:1").id
    assert [s.tags for s in plan_save(source, [image[7:19]]).images] == [()]
    with pytest.raises(ImageNotFound, match="No such image: nope:1"):
        plan_save(source, ["nope:1"])


def test_an_archive_moves_images_between_stores(source: ImageStore, tmp_path: Path) -> None:
    archive = b"".join(save_chunks(source, plan_save(source, ["app", "other:1"])))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [m["RepoTags"] for m in manifest] == [["app:1", "app:2"], ["other:1"]]
    target = ImageStore(tmp_path / "target")
    lines = [event.text for event in load_archive(target, io.BytesIO(archive))]
    assert [line for line in lines if line.startswith("Loaded")] == [
        "Loaded image: app:1",
        "Loaded image: app:2",
        "Loaded image: other:1",
    ]
    for name in ("app:1", "app:2", "other:1"):
        assert target.get(name).id == source.get(name).id
    # An untagged image comes back untagged, announced by its ID.
    image = source.get("other:1").id
    untagged = b"".join(save_chunks(source, plan_save(source, [image])))
    fresh = ImageStore(tmp_path / "fresh")
    assert [e.text for e in load_archive(fresh, io.BytesIO(untagged)) if e.kind == "loaded"] == [
        f"Loaded image ID: {image}"
    ]
    assert fresh.get(image).references == ()


def test_a_layer_count_mismatch_is_refused(source: ImageStore, tmp_path: Path) -> None:
    archive = b"".join(save_chunks(source, plan_save(source, ["app:1"])))
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive)) as tar,
        tarfile.open(fileobj=out, mode="w") as rewritten,
    ):
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "manifest.json" and data is not None:
                manifest = json.loads(data)
                manifest[0]["Layers"] = []
                data = json.dumps(manifest).encode()
                member.size = len(data)
            rewritten.addfile(member, io.BytesIO(data) if data is not None else None)
    target = ImageStore(tmp_path / "target")
    with pytest.raises(ArchiveError, match="layers length mismatch: expected 1, got 0"):
        list(load_archive(target, io.BytesIO(out.getvalue())))
    assert target.list() == [] and target.list_layers() == []
