"""`docker save` and `docker load`: image archives that move between dockyard and Docker.

Role: write and read the archives Docker writes and reads.

Save writes Docker 25's layout, which is an OCI image layout that also carries Docker's
`manifest.json`, so both kinds of reader load it (dockerd 20.10 reads `manifest.json`, whose
paths may point anywhere in the archive; OCI tools read `index.json`):

    blobs/sha256/<hex>   layer tars (uncompressed, byte for byte: digest = DiffID), configs
                         (byte for byte: digest = image ID) and OCI manifests
    index.json           one manifest entry per tag (`io.containerd.image.name`,
                         `org.opencontainers.image.ref.name`), one without for an untagged image
    manifest.json        [{"Config", "RepoTags", "Layers"}] as moby's tarexport writes it
    oci-layout           {"imageLayoutVersion": "1.0.0"}

Load takes Docker's `manifest.json` archives (pre-25 ones with `<v1 id>/layer.tar`, and
25+ ones) and plain OCI image layouts (`index.json`, nested indexes resolved to the host's
platform, gzip layers), plain or compressed as a whole.

Invariants:
- The archive is unpacked with tarfile's `data` filter into a private staging directory
  (no absolute paths, no links out, no devices); every path the archive's JSON names is
  resolved inside that directory, so a hostile archive reads nothing else.
- Every layer is checked against the DiffID its config names (moby's message: `invalid
  diffID for layer N: expected …, got …`) before any image refers to it; an image is
  committed only when all its layers are in the store; if the load fails, the layers it
  added that no image refers to are removed, so nothing half-loaded remains.
- Save streams: layers are reassembled from their tar-split records as the archive is
  written; nothing is staged on disk.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dockyard.engine.images.model import (
    ImageConfig,
    InvalidReference,
    Reference,
    digest_of,
    go_json,
    parse_reference,
    short_id,
)
from dockyard.engine.images.store import (
    ImageNotFound,
    ImageRecord,
    ImageStore,
    LayerDigestMismatch,
    LayerError,
    host_platform,
    open_decompressed,
)

__all__ = [
    "ArchiveError",
    "LoadEvent",
    "SaveSet",
    "load_archive",
    "plan_save",
    "save_chunks",
]

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_LAYER_MEDIA = frozenset(
    {
        MEDIA_OCI_LAYER,
        MEDIA_OCI_LAYER_GZIP,
        MEDIA_DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# The archive's JSON documents are small; a bigger one is not an image archive.
_JSON_MAX_BYTES = 8 << 20
_CHUNK_BYTES = 1 << 20
_DIR_MODE = 0o755
_FILE_MODE = 0o644


class ArchiveError(Exception):
    """An archive that is not a loadable image archive (Docker answers these with 500)."""


# ---------------------------------------------------------------------------
# Save


@dataclass(frozen=True)
class SavedImage:
    record: ImageRecord
    tags: tuple[Reference, ...]


@dataclass(frozen=True)
class SaveSet:
    images: tuple[SavedImage, ...]


def plan_save(store: ImageStore, names: Sequence[str]) -> SaveSet:
    """Resolve `docker save` arguments as moby's tarexport does, before anything is sent.

    `name:tag` saves that tag; a bare repository name saves every tag of it; an ID saves
    the image untagged. Raises ImageNotFound (404) for a name that matches nothing.
    """
    order: list[str] = []
    tags: dict[str, list[Reference]] = {}
    records: dict[str, ImageRecord] = {}
    for name in names:
        found: list[tuple[ImageRecord, Reference | None]] = []
        ref: Reference | None
        try:
            ref = parse_reference(name, default_tag=False)
        except InvalidReference:
            ref = None
        if ref is not None and ref.tag is None and ref.digest is None:
            for image in store.list():
                for text in image.references:
                    tagged = parse_reference(text)
                    if tagged.name == ref.name:
                        found.append((image, tagged))
        if not found:
            record = store.get(name)  # ImageNotFound: docker's "No such image: name"
            is_reference = ref is not None and not record.id.removeprefix("sha256:").startswith(
                name.removeprefix("sha256:")
            )
            found.append((record, ref.with_default_tag() if is_reference and ref else None))
        for record, tag in found:
            if record.id not in records:
                records[record.id] = record
                order.append(record.id)
                tags[record.id] = []
            if tag is not None and tag.digest is None and tag not in tags[record.id]:
                tags[record.id].append(tag)
    return SaveSet(tuple(SavedImage(records[i], tuple(tags[i])) for i in order))


def _header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.mtime = 0  # reproducible archives; moby uses the image's creation time
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = _DIR_MODE
    else:
        info.size = size
        info.mode = _FILE_MODE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _file(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data)) + data + _padding(len(data))


def save_chunks(store: ImageStore, plan: SaveSet) -> Iterator[bytes]:
    """The archive, chunk by chunk (blocking: run it on a worker thread)."""
    yield _header("blobs/", 0, directory=True) + _header("blobs/sha256/", 0, directory=True)
    written: set[str] = set()
    index_entries: list[dict[str, Any]] = []
    manifest_json: list[dict[str, Any]] = []
    for saved in plan.images:
        record = saved.record
        config_bytes = store.get_blob(record.id)
        layer_entries = []
        layer_paths = []
        for chain_id in record.chain_ids:
            layer = store.get_layer(chain_id)
            path = f"blobs/sha256/{layer.diff_id.removeprefix('sha256:')}"
            layer_paths.append(path)
            layer_entries.append(
                {"mediaType": MEDIA_OCI_LAYER, "digest": layer.diff_id, "size": layer.size_bytes}
            )
            if layer.diff_id in written:
                continue
            written.add(layer.diff_id)
            yield _header(path, layer.size_bytes)
            with store.layer_tar(chain_id) as tar:
                sent = 0
                while chunk := tar.read(_CHUNK_BYTES):
                    sent += len(chunk)
                    yield chunk
            if sent != layer.size_bytes:
                raise LayerError(f"layer {layer.diff_id} changed size while it was saved")
            yield _padding(layer.size_bytes)
        config_path = f"blobs/sha256/{record.id.removeprefix('sha256:')}"
        if record.id not in written:
            written.add(record.id)
            yield from _file(config_path, config_bytes)
        manifest = go_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {
                    "mediaType": MEDIA_OCI_CONFIG,
                    "digest": record.id,
                    "size": len(config_bytes),
                },
                "layers": layer_entries,
            }
        )
        manifest_digest = digest_of(manifest)
        if manifest_digest not in written:
            written.add(manifest_digest)
            yield from _file(f"blobs/sha256/{manifest_digest.removeprefix('sha256:')}", manifest)
        descriptor = {
            "mediaType": MEDIA_OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest),
        }
        for tag in saved.tags:
            annotations = {ANNOTATION_IMAGE_NAME: str(tag), ANNOTATION_REF_NAME: tag.tag or ""}
            index_entries.append({**descriptor, "annotations": annotations})
        if not saved.tags:
            index_entries.append(descriptor)
        manifest_json.append(
            {
                "Config": config_path,
                "RepoTags": [tag.familiar() for tag in saved.tags] or None,
                "Layers": layer_paths,
            }
        )
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_entries}
    yield from _file("index.json", go_json(index))
    yield from _file("manifest.json", go_json(manifest_json))
    yield from _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


# ---------------------------------------------------------------------------
# Load


@dataclass(frozen=True)
class LoadEvent:
    """One line of `docker load`'s output: progress of a layer, or a loaded image."""

    kind: str  # "layer" (id = short DiffID), "loaded", "renamed"
    text: str
    layer_id: str = ""
    current_bytes: int = 0
    total_bytes: int = 0
    image_id: str = ""  # of "loaded"
    name: str = ""  # of "loaded": the tag, or the ID for an untagged image


@dataclass(frozen=True)
class _ImageToLoad:
    config_path: str | None  # a path in the archive (manifest.json) ...
    config_digest: str | None  # ... or a blob digest (OCI layout)
    layers: tuple[tuple[str, str | None], ...]  # (path in the archive, media type)
    tags: tuple[str, ...]


class _Staging:
    """The unpacked archive; every path the archive names is resolved inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._resolved_root = root.resolve()

    def path(self, name: str) -> Path:
        candidate = (self.root / name).resolve()
        if candidate != self._resolved_root and self._resolved_root not in candidate.parents:
            raise ArchiveError(f"invalid archive: path {name!r} leaves the archive")
        if not candidate.is_file():
            raise ArchiveError(f"invalid archive: {name} not found in the archive")
        return candidate

    def blob(self, digest: str) -> Path:
        algorithm, _, hex_part = digest.partition(":")
        if algorithm != "sha256" or len(hex_part) != 64:
            raise ArchiveError(f"invalid archive: unsupported digest {digest!r}")
        return self.path(f"blobs/sha256/{hex_part}")

    def json(self, path: Path) -> Any:
        if path.stat().st_size > _JSON_MAX_BYTES:
            raise ArchiveError(f"invalid archive: {path.name} is too large")
        try:
            return json.loads(path.read_bytes())
        except ValueError as exc:
            raise ArchiveError(f"invalid archive: {path.name}: {exc}") from None

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()


def _unpack(stream: IO[bytes], dest: Path) -> None:
    try:
        with (
            open_decompressed(stream) as source,
            tarfile.open(fileobj=source, mode="r|") as tar,
        ):
            tar.extractall(dest, filter=_archive_filter)
    except (tarfile.TarError, EOFError, ValueError, gzip.BadGzipFile, LayerError) as exc:
        # Disk errors (other OSErrors) are the daemon's, not the archive's: they propagate.
        raise ArchiveError(f"invalid archive: {exc}") from None


def _archive_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    # tarfile's `data` filter refuses what leaves `dest`; an image archive holds only
    # directories, files and (Docker 25's legacy layer.tar) symlinks.
    filtered = tarfile.data_filter(member, dest)
    if filtered is not None and not (filtered.isdir() or filtered.isreg() or filtered.issym()):
        return None
    return filtered


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ArchiveError("invalid archive: manifest.json RepoTags is not a list of names")
    return tuple(value)


def _from_docker_manifest(staging: _Staging) -> list[_ImageToLoad]:
    entries = staging.json(staging.path("manifest.json"))
    if not isinstance(entries, list):
        raise ArchiveError("invalid archive: manifest.json is not a list")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("invalid archive: manifest.json entry without Config")
        layers = entry.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise ArchiveError("invalid archive: manifest.json Layers is not a list of paths")
        images.append(
            _ImageToLoad(
                config_path=entry["Config"],
                config_digest=None,
                layers=tuple((path, None) for path in layers),
                tags=_tags(entry.get("RepoTags")),
            )
        )
    return images


def _platform_matches(platform: Any) -> bool:
    host_os, host_arch = host_platform()
    if not isinstance(platform, dict):
        return False
    return platform.get("os") == host_os and platform.get("architecture") == host_arch


def _from_oci_layout(staging: _Staging) -> list[_ImageToLoad]:
    index = staging.json(staging.path("index.json"))
    images: list[_ImageToLoad] = []

    def visit(descriptor: Any, names: tuple[str, ...], depth: int) -> None:
        if depth > 4 or not isinstance(descriptor, dict):
            raise ArchiveError("invalid archive: index.json nests too deep or is malformed")
        media = descriptor.get("mediaType")
        document = staging.json(staging.blob(str(descriptor.get("digest"))))
        if media in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST) or "manifests" in document:
            children = [
                child
                for child in document.get("manifests") or []
                if "platform" not in child or _platform_matches(child.get("platform"))
            ]
            if not children:
                host_os, host_arch = host_platform()
                raise ArchiveError(
                    f"no manifest in the archive matches the platform {host_os}/{host_arch}"
                )
            visit(children[0], names, depth + 1)
            return
        config = document.get("config") or {}
        layers = []
        for layer in document.get("layers") or []:
            media_type = layer.get("mediaType")
            if media_type not in _LAYER_MEDIA:
                raise ArchiveError(f"unsupported layer media type {media_type!r}")
            digest = str(layer.get("digest"))
            staging.blob(digest)
            layers.append((f"blobs/sha256/{digest.partition(':')[2]}", media_type))
        images.append(
            _ImageToLoad(
                config_path=None,
                config_digest=str(config.get("digest")),
                layers=tuple(layers),
                tags=names,
            )
        )

    for descriptor in index.get("manifests") or []:
        annotations = descriptor.get("annotations") or {}
        name = annotations.get(ANNOTATION_IMAGE_NAME) or annotations.get(ANNOTATION_REF_NAME)
        names: tuple[str, ...] = ()
        if name:
            try:
                names = (parse_reference(name).familiar(),)
            except InvalidReference:
                names = ()  # a bare OCI ref name ("latest") names no repository
        visit(descriptor, names, 0)
    return images


def load_archive(store: ImageStore, stream: IO[bytes]) -> Iterator[LoadEvent]:
    """`docker load`: every image in the archive, tagged as the archive says.

    A blocking generator (step it on a worker thread) of progress events and the `Loaded
    image` lines, as they happen. Raises ArchiveError, LayerError or ImageStoreError; what it
    added before a failure (or before it was closed) and nothing refers to is removed.
    """
    staging_root = store.root / "tmp" / f"load-{uuid.uuid4().hex}"
    os.mkdir(staging_root, 0o700)
    added_layers: list[str] = []
    try:
        _unpack(stream, staging_root)
        staging = _Staging(staging_root)
        if staging.exists("manifest.json"):
            wanted = _from_docker_manifest(staging)
        elif staging.exists("index.json"):
            wanted = _from_oci_layout(staging)
        else:
            raise ArchiveError(
                "invalid archive: no manifest.json (Docker) or index.json (OCI image layout)"
            )
        for image in wanted:
            yield from _load_one(store, staging, image, added_layers)
    except BaseException:
        store.release_layers(added_layers)
        raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def _load_one(
    store: ImageStore,
    staging: _Staging,
    image: _ImageToLoad,
    added_layers: list[str],
) -> Iterator[LoadEvent]:
    if image.config_path is not None:
        config_file = staging.path(image.config_path)
    else:
        config_file = staging.blob(str(image.config_digest))
    if config_file.stat().st_size > _JSON_MAX_BYTES:
        raise ArchiveError("invalid archive: image config is too large")
    config_bytes = config_file.read_bytes()
    try:
        config = ImageConfig.from_json(config_bytes)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"invalid image config in the archive: {exc}") from None
    diff_ids = config.rootfs.diff_ids
    if len(diff_ids) != len(image.layers):
        raise ArchiveError(
            f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, "
            f"got {len(image.layers)}"
        )
    parent: str | None = None
    for number, ((path, _media), diff_id) in enumerate(zip(image.layers, diff_ids, strict=True)):
        chain_id = config.chain_ids()[number]
        if store.has_layer(chain_id):
            parent = chain_id
            continue
        layer_file = staging.path(path)
        total = layer_file.stat().st_size
        with open(layer_file, "rb") as source:
            try:
                record = store.register_layer(source, parent, expected_diff_id=diff_id)
            except LayerDigestMismatch as exc:
                raise LayerError(
                    f'invalid diffID for layer {number}: expected "{exc.expected}", '
                    f'got "{exc.actual}"'
                ) from None
        added_layers.append(record.chain_id)
        yield LoadEvent("layer", "Loading layer", short_id(diff_id), total, total)
        parent = record.chain_id
    image_id = digest_of(config_bytes)
    if not image.tags:
        store.commit_image(config_bytes)
        yield LoadEvent("loaded", f"Loaded image ID: {image_id}", image_id=image_id, name=image_id)
        return
    for tag in image.tags:
        previous: str | None = None
        with contextlib.suppress(ImageNotFound, InvalidReference):
            previous = store.get(tag).id
        store.commit_image(config_bytes, ref=tag)
        familiar = parse_reference(tag).familiar()
        if previous is not None and previous != image_id:
            # moby tarexport: the tag moves; the old image keeps its other names or dangles.
            yield LoadEvent(
                "renamed",
                f"The image {familiar} already exists, renaming the old one with ID "
                f"{previous} to empty string",
            )
        yield LoadEvent("loaded", f"Loaded image: {familiar}", image_id=image_id, name=familiar)
