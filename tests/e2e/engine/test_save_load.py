"""`docker save` and `docker load` between dockyard and a real dockerd 20.10, both ways.

An archive saved by one engine loads on the other with the same image ID (configs and layer
tars travel byte for byte), and the image runs there. Bad archives get a clear error and
leave nothing in the store. Both daemons run once per module; at teardown both are stopped
by PID and the module fails if anything had to be removed by force.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.dockerd import (
    DaemonProcess,
    dockerd_and_dockyard,
)

pytestmark = pytest.mark.e2e

DOCKERFILE = b"""FROM busybox
RUN echo built-on-dockerd > /greeting && mkdir -p /data/sub && echo one > /data/sub/one
RUN rm /data/sub/one && echo two > /data/two
ENV MODE=reference
CMD ["cat", "/greeting"]
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, ...]]:
    with dockerd_and_dockyard(tmp_path_factory) as started:
        yield started


def ok(daemon: DaemonProcess, *args: str) -> str:
    result = daemon.docker(*args)
    assert result.returncode == 0, f"{daemon.kind} docker {args}: {result.stderr}\n{daemon.log()}"
    return result.stdout


def inspect(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    image: dict[str, Any] = json.loads(ok(daemon, "image", "inspect", name))[0]
    return image


def layers_on_disk(daemon: DaemonProcess) -> list[str]:
    return sorted(p.name for p in (daemon.data_root / "images/layers/sha256").iterdir())


@pytest.fixture(scope="module")
def built_on_dockerd(
    engines: tuple[DaemonProcess, ...], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A three-layer image dockerd built (with a whiteout), saved by dockerd."""
    dockerd, _ = engines
    context = tmp_path_factory.mktemp("context")
    (context / "Dockerfile").write_bytes(DOCKERFILE)
    result = dockerd.docker("build", "-q", "-t", "ref/app:v1", str(context))
    assert result.returncode == 0, result.stderr
    archive = context.parent / "dockerd-app.tar"
    ok(dockerd, "save", "-o", str(archive), "ref/app:v1")
    return archive


def test_an_image_saved_by_dockerd_loads_and_runs_on_dockyard(
    engines: tuple[DaemonProcess, ...], built_on_dockerd: Path
) -> None:
    dockerd, dockyard = engines
    result = dockyard.docker("load", "-i", str(built_on_dockerd))
    assert result.returncode == 0, result.stderr + dockyard.log()
    assert "Loaded image: ref/app:v1" in result.stdout
    expected, loaded = inspect(dockerd, "ref/app:v1"), inspect(dockyard, "ref/app:v1")
    # What Docker shows of the image (not Parent: dockerd built it, so it has one there).
    for key in (
        "Id",
        "RepoTags",
        "Comment",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "RootFS",
    ):
        assert loaded[key] == expected[key], key
    run = ok(dockyard, "run", "--rm", "--network", "none", "ref/app:v1")
    assert run == "built-on-dockerd\n"
    # The whiteout of the second RUN step hides the first step's file.
    listing = ok(dockyard, "run", "--rm", "--network", "none", "ref/app:v1", "ls", "/data/sub")
    assert listing == ""
    for args in (
        ("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", "ref/app:v1"),
        ("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}", "ref/app"),
    ):
        assert ok(dockyard, *args) == ok(dockerd, *args)
    # Loading the same archive again keeps everything as it is.
    layers = layers_on_disk(dockyard)
    again = dockyard.docker("load", "-i", str(built_on_dockerd))
    assert again.returncode == 0 and "Loaded image: ref/app:v1" in again.stdout
    assert layers_on_disk(dockyard) == layers


def test_an_image_saved_by_dockyard_loads_and_runs_on_dockerd(
    engines: tuple[DaemonProcess, ...], built_on_dockerd: Path, tmp_path: Path
) -> None:
    dockerd, dockyard = engines
    ok(dockyard, "load", "-i", str(built_on_dockerd))
    ok(dockyard, "tag", "ref/app:v1", "roundtrip/app:v2")
    archive = tmp_path / "dockyard.tar"
    ok(dockyard, "save", "-o", str(archive), "roundtrip/app:v2", "busybox")
    # Every layer blob is byte for byte the tar dockerd built: its digest is its DiffID.
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for entry in manifest:
            config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
            for path, diff_id in zip(entry["Layers"], config["rootfs"]["diff_ids"], strict=True):
                data = tar.extractfile(path).read()  # type: ignore[union-attr]
                assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
    assert {"index.json", "oci-layout", "manifest.json"} <= set(names)
    assert sorted(tag for e in manifest for tag in e["RepoTags"]) == [
        "busybox:latest",
        "roundtrip/app:v2",
    ]
    result = dockerd.docker("load", "-i", str(archive))
    assert result.returncode == 0, result.stderr
    assert inspect(dockerd, "roundtrip/app:v2")["Id"] == inspect(dockyard, "roundtrip/app:v2")["Id"]
    run = ok(dockerd, "run", "--rm", "--network", "none", "roundtrip/app:v2")
    assert run == "built-on-dockerd\n"
    ok(dockerd, "rmi", "roundtrip/app:v2")


def test_save_then_load_on_dockyard_restores_a_removed_image(
    engines: tuple[DaemonProcess, ...], tmp_path: Path
) -> None:
    _, dockyard = engines
    ok(dockyard, "tag", "busybox", "keep/me:1")
    image_id = inspect(dockyard, "keep/me:1")["Id"]
    archive = tmp_path / "keep.tar"
    ok(dockyard, "save", "-o", str(archive), "keep/me:1")
    ok(dockyard, "rmi", "keep/me:1")
    # A gzip-compressed archive loads as well (docker load sniffs the compression).
    compressed = tmp_path / "keep.tar.gz"
    compressed.write_bytes(gzip.compress(archive.read_bytes()))
    result = dockyard.docker("load", "-i", str(compressed))
    assert result.returncode == 0 and "Loaded image: keep/me:1" in result.stdout, result.stderr
    assert inspect(dockyard, "keep/me:1")["Id"] == image_id
    ok(dockyard, "rmi", "keep/me:1")


def test_an_oci_image_layout_without_manifest_json_loads(
    engines: tuple[DaemonProcess, ...], tmp_path: Path
) -> None:
    _, dockyard = engines
    archive = tmp_path / "busybox.tar"
    ok(dockyard, "save", "-o", str(archive), "busybox")
    oci_only = tmp_path / "oci.tar"
    with tarfile.open(archive) as source, tarfile.open(oci_only, "w") as out:
        for member in source.getmembers():
            if member.name in ("manifest.json", "index.json"):
                continue
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        index = json.load(source.extractfile("index.json"))  # type: ignore[arg-type]
        for entry in index["manifests"]:
            entry["annotations"]["io.containerd.image.name"] = "docker.io/oci/busybox:layout"
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    result = dockyard.docker("load", "-i", str(oci_only))
    assert result.returncode == 0, result.stderr
    assert "Loaded image: oci/busybox:layout" in result.stdout
    assert inspect(dockyard, "oci/busybox:layout")["Id"] == inspect(dockyard, "busybox")["Id"]
    ok(dockyard, "rmi", "oci/busybox:layout")


def corrupt_layer(archive: Path, out: Path) -> None:
    """Flip a byte inside the first layer blob (its tar stays valid: a payload byte)."""
    with tarfile.open(archive) as source, tarfile.open(out, "w") as dest:
        manifest = json.load(source.extractfile("manifest.json"))  # type: ignore[arg-type]
        target = manifest[0]["Layers"][-1]
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == target and data is not None:
                layer = io.BytesIO()
                with (
                    tarfile.open(fileobj=io.BytesIO(data)) as inner,
                    tarfile.open(fileobj=layer, mode="w") as rewritten,
                ):
                    for entry in inner.getmembers():
                        payload = inner.extractfile(entry).read() if entry.isfile() else None  # type: ignore[union-attr]
                        if payload:
                            payload = b"X" + payload[1:]
                        rewritten.addfile(
                            entry, io.BytesIO(payload) if payload is not None else None
                        )
                data = layer.getvalue()
                member.size = len(data)
            dest.addfile(member, io.BytesIO(data) if data is not None else None)


def test_bad_archives_are_refused_and_leave_nothing(
    engines: tuple[DaemonProcess, ...], built_on_dockerd: Path, tmp_path: Path
) -> None:
    _, dockyard = engines
    # The corrupted layer must not be in the store already: a load reuses stored layers.
    for name in ("ref/app:v1", "roundtrip/app:v2"):
        dockyard.docker("rmi", name)
    images_before = ok(dockyard, "images", "-a", "-q", "--no-trunc")
    layers_before = layers_on_disk(dockyard)
    data = built_on_dockerd.read_bytes()
    corrupted = tmp_path / "corrupted.tar"
    corrupt_layer(built_on_dockerd, corrupted)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not an image archive\n" * 100)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    empty_tar = tmp_path / "empty.tar"
    with tarfile.open(empty_tar, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        tar.addfile(info, io.BytesIO(b""))
    escaping = tmp_path / "escaping.tar"
    with tarfile.open(escaping, "w") as tar:
        manifest = json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}])
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest.encode()))
    cases = {
        corrupted: "invalid diffID for layer",
        garbage: "invalid archive",
        truncated: "invalid archive",
        empty_tar: "no manifest.json",
        escaping: "leaves the archive",
    }
    for archive, message in cases.items():
        result = dockyard.docker("load", "-i", str(archive))
        assert result.returncode != 0, f"{archive.name} loaded: {result.stdout}"
        assert message in result.stderr, f"{archive.name}: {result.stderr}"
    assert ok(dockyard, "images", "-a", "-q", "--no-trunc") == images_before
    assert layers_on_disk(dockyard) == layers_before
    assert list((dockyard.data_root / "images/tmp").iterdir()) == []
    assert dockyard.ping()


def test_the_sdk_saves_and_loads(engines: tuple[DaemonProcess, ...]) -> None:
    _, dockyard = engines
    client = docker.DockerClient(base_url=f"unix://{dockyard.sock}", version="auto")
    try:
        image = client.images.get("busybox")
        archive = b"".join(image.save(named=True))
        client.images.get("busybox").tag("sdk/copy", "1")
        client.images.remove("sdk/copy:1")
        loaded = client.images.load(archive)
        assert [i.id for i in loaded] == [image.id]
        with pytest.raises(docker.errors.ImageLoadError, match="invalid archive"):
            client.images.load(b"garbage" * 100)
        with pytest.raises(docker.errors.NotFound, match="No such image: nope:1"):
            b"".join(client.api.get_image("nope:1"))
    finally:
        client.close()


def test_system_df_counts_images_layers_and_containers(
    engines: tuple[DaemonProcess, ...],
) -> None:
    _, dockyard = engines
    ok(dockyard, "create", "--name", "df-user", "--network", "none", "busybox")
    try:
        usage = json.loads(ok(dockyard, "system", "df", "--format", "{{json .}}").splitlines()[0])
        assert usage["Type"] == "Images"
        status, df = dockyard.api("GET", "/system/df")
        assert status == 200
        busybox = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
        assert busybox["Containers"] == 1 and busybox["Size"] > 500_000
        assert df["LayersSize"] >= busybox["Size"]
        (container,) = [c for c in df["Containers"] if c["Names"] == ["/df-user"]]
        assert container["SizeRw"] == 0 and container["SizeRootFs"] == busybox["Size"]
        verbose = ok(dockyard, "system", "df", "-v")
        assert "df-user" in verbose and "busybox" in verbose
    finally:
        ok(dockyard, "rm", "df-user")


def test_export_then_import_round_trips_a_container_filesystem(
    engines: tuple[DaemonProcess, ...], tmp_path: Path
) -> None:
    _, dockyard = engines
    ok(
        dockyard,
        "run",
        "--name",
        "exported",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo kept > /kept && rm /bin/ls",
    )
    archive = tmp_path / "fs.tar"
    ok(dockyard, "export", "-o", str(archive), "exported")
    image_id = ok(
        dockyard, "import", "--change", 'CMD ["cat", "/kept"]', str(archive), "flat/fs:1"
    ).strip()
    assert inspect(dockyard, "flat/fs:1")["Id"] == image_id
    assert ok(dockyard, "run", "--rm", "--network", "none", "flat/fs:1") == "kept\n"
    missing = dockyard.docker("run", "--rm", "--network", "none", "flat/fs:1", "ls")
    assert missing.returncode == 127
    ok(dockyard, "rm", "exported")
    ok(dockyard, "rmi", "flat/fs:1")
