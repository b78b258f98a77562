"""`docker pull` and `docker push` on top of the image store and the registry client.

Role: moby's distribution/pull_v2.go and push_v2.go, as two two-phase operations. The
`prepare_*` step does what dockerd does before its first progress message (for pull:
connect and resolve the manifest, so that an unknown tag or a registry that is down is an
HTTP error, not a stream error); the `run` step is an async iterator of `Progress`
messages (Docker's jsonmessage: `Pulling fs layer`, `Downloading` with current/total,
`Pull complete`, `Digest: …`, `Status: …`; `Preparing`, `Pushing`, `Pushed`, `Layer
already exists`, `Mounted from …`, `latest: digest: … size: N` and its aux).

Invariants:
- Pull downloads at most `MAX_CONCURRENT_DOWNLOADS` layers at once (dockerd's 3) into a
  private staging directory under the store's `tmp/`, and registers them strictly in chain
  order through `ImageStore.register_layer`, which checks each DiffID against the config.
  The image is committed (tag and repo digest) only after every layer is registered:
  an interrupted pull leaves no image and no partial layer, and a second pull redoes
  only what is missing. The staging directory is removed whatever happens.
- An image already in the store (its config digest is an image ID) is not downloaded
  again: only its references are updated (`Image is up to date` when nothing moved).
- Push sends layers gzip-compressed from `ImageStore.layer_tar` and the config blob byte
  for byte, so the image ID survives the round trip; a layer the registry is known to
  hold (the store's distribution sources) is checked with HEAD or mounted, not re-sent.
- Every blocking store call runs on a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dockyard.engine.images.model import (
    Reference,
    chain_ids,
    parse_reference,
    short_id,
)
from dockyard.engine.images.registry.auth import AuthConfig
from dockyard.engine.images.registry.client import ClientOptions, Repository, open_repository
from dockyard.engine.images.registry.endpoints import RegistryLocation, locate
from dockyard.engine.images.registry.errors import (
    RegistryError,
    RegistryNotFound,
    RegistryResponseError,
    RegistryUnauthorized,
)
from dockyard.engine.images.registry.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    Descriptor,
    ImageManifest,
    InvalidManifest,
    ManifestList,
    Platform,
    build_schema2,
    parse_manifest,
    select_manifest,
)
from dockyard.engine.images.registry.progress import Progress
from dockyard.engine.images.store import (
    DistributionSource,
    ImageNotFound,
    ImageStore,
    ImageStoreError,
)

__all__ = [
    "MAX_CONCURRENT_DOWNLOADS",
    "MAX_CONCURRENT_UPLOADS",
    "Progress",
    "PullPlan",
    "PushPlan",
    "prepare_pull",
    "prepare_push",
    "translate_pull_error",
]

MAX_CONCURRENT_DOWNLOADS = 3  # dockerd --max-concurrent-downloads default
MAX_CONCURRENT_UPLOADS = 5  # dockerd --max-concurrent-uploads default
CONFIG_MAX_BYTES = 8 << 20
UPLOAD_CHUNK_BYTES = 4 << 20
PROGRESS_STEP_BYTES = 512 << 10  # one progress message per this many bytes, at most
GZIP_LEVEL = 6  # Go's compress/gzip DefaultCompression


Emit = Callable[[Progress], None]


class _Stream:
    """Carries the messages of worker tasks to the async iterator, in order.

    The queue needs no bound of its own: producers emit at most one message per
    PROGRESS_STEP_BYTES of a transfer, plus a fixed few per layer.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    def emit(self, item: Progress) -> None:
        self.queue.put_nowait(item)

    def emit_threadsafe(self, item: Progress) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    async def run(self, work: Callable[[Emit], Awaitable[None]]) -> AsyncIterator[Progress]:
        async def produce() -> None:
            try:
                await work(self.emit)
            finally:
                self.queue.put_nowait(None)

        task = asyncio.create_task(produce())
        try:
            while (item := await self.queue.get()) is not None:
                yield item
            await task  # raises the work's error, after every message before it
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def translate_pull_error(error: RegistryError, ref: Reference) -> RegistryError:
    """moby distribution TranslatePullError + notFoundError: Docker's not-found wording."""
    if isinstance(error, RegistryResponseError) and error.entries:
        first = error.entries[0]
        if first.code == "MANIFEST_UNKNOWN":
            return RegistryNotFound(f"manifest for {ref.familiar()} not found: {first}")
        if first.code == "NAME_UNKNOWN":
            return RegistryNotFound(f"repository {ref.familiar_name()} not found: {first}")
        if first.code == "DENIED":
            return RegistryNotFound(
                f"pull access denied for {ref.familiar_name()}, repository does not exist or "
                f"may require 'docker login': {first}"
            )
    return error


def _staging_dir(store: ImageStore, kind: str) -> Path:
    # Under the store's tmp/: on the same filesystem, and removed by `recover()` at start
    # if the engine died mid-transfer.
    path = store.root / "tmp" / f"{kind}-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    return path


# ---------------------------------------------------------------------------------------
# Pull


@dataclass
class PullPlan:
    """A resolved pull: the manifest chosen for the platform and the connection."""

    store: ImageStore
    ref: Reference  # tagged or digested
    repository: Repository
    manifest: ImageManifest
    manifest_digest: str  # what RepoDigests records (the list's digest for a list)
    all_tags: bool = False
    tag_plans: list[PullPlan] = field(default_factory=list)

    async def aclose(self) -> None:
        """Release the connection; `run` does it itself when it ends."""
        await self.repository.aclose()

    def run(self) -> AsyncIterator[Progress]:
        return _Stream().run(self._run)

    async def _run(self, emit: Emit) -> None:
        # moby pullV2Repository: each tag's messages, then one status line for the name.
        updated = False
        try:
            for plan in self.tag_plans if self.all_tags else [self]:
                updated = await plan._pull_one(emit) or updated
        finally:
            await self.aclose()
        if updated:
            emit(Progress(f"Status: Downloaded newer image for {self.ref.familiar()}"))
        else:
            emit(Progress(f"Status: Image is up to date for {self.ref.familiar()}"))

    async def _pull_one(self, emit: Emit) -> bool:
        """One tag (or digest): its layers, its references; True if the reference moved."""
        ref, store, repo = self.ref, self.store, self.repository
        location = repo.location
        emit(Progress(f"Pulling from {_familiar_path(ref)}", id=ref.digest or ref.tag or ""))
        config_digest = self.manifest.config.digest
        have_image = await asyncio.to_thread(_has_image, store, config_digest)
        if have_image:
            config_bytes = await asyncio.to_thread(store.get_blob, config_digest)
        else:
            config_bytes = await repo.get_blob_bytes(config_digest, CONFIG_MAX_BYTES)
            diff_ids = _diff_ids(config_bytes, len(self.manifest.layers))
            await _pull_layers(store, repo, self.manifest.layers, diff_ids, emit)
        repo_digest = f"{ref.name}@{self.manifest_digest}"
        before = await asyncio.to_thread(_current_target, store, ref, repo_digest)
        image_id = await asyncio.to_thread(
            store.commit_image,
            config_bytes,
            ref=str(ref) if ref.digest is None else None,
            repo_digest=repo_digest,
        )
        if not have_image:
            diff_ids = _diff_ids(config_bytes, len(self.manifest.layers))
            for diff_id, layer in zip(diff_ids, self.manifest.layers, strict=True):
                source = DistributionSource(
                    layer.digest, location.name, layer.media_type, layer.size_bytes
                )
                await asyncio.to_thread(store.add_distribution_source, diff_id, source)
        emit(Progress(f"Digest: {self.manifest_digest}"))
        return before != image_id


def _familiar_path(ref: Reference) -> str:
    # moby: "Pulling from " + FamiliarName(repo.Named()) — the path for a private registry.
    name = ref.familiar_name()
    return name if ref.domain == "docker.io" else ref.path


def _has_image(store: ImageStore, image_id: str) -> bool:
    try:
        return store.get(image_id).id == image_id
    except ImageStoreError:
        return False


def _current_target(store: ImageStore, ref: Reference, repo_digest: str) -> str | None:
    """The image the pulled reference names now (None if none): 'up to date' or not."""
    try:
        record = store.get(str(ref) if ref.digest is None else repo_digest)
    except (ImageNotFound, ImageStoreError, ValueError):
        return None
    if ref.digest is not None:
        familiar = parse_reference(repo_digest, default_tag=False).familiar()
        return record.id if familiar in record.repo_digests else None
    return record.id


def _diff_ids(config_bytes: bytes, layer_count: int) -> list[str]:
    try:
        config = json.loads(config_bytes)
        diff_ids = config["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError("invalid image config: no rootfs.diff_ids") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise RegistryError("invalid image config: no rootfs.diff_ids")
    if len(diff_ids) != layer_count:
        # moby pull_v2: errRootFSMismatch
        raise RegistryError("layers from manifest don't match image configuration")
    os_name = config.get("os") if isinstance(config, dict) else None
    if os_name and os_name != "linux":
        raise RegistryError(f'image operating system "{os_name}" cannot be used on this platform')
    return list(diff_ids)


class _CountingReader:
    """Hands register_layer the staged blob, reporting `Extracting` progress as it reads."""

    def __init__(self, inner: IO[bytes], total: int, report: Callable[[int], None]) -> None:
        self._inner = inner
        self._total = total
        self._report = report
        self._read = 0
        self._reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._read += len(data)
        if self._read - self._reported >= PROGRESS_STEP_BYTES or (
            self._read == self._total and self._reported != self._read
        ):
            self._reported = self._read
            self._report(self._read)
        return data


async def _pull_layers(
    store: ImageStore,
    repo: Repository,
    layers: tuple[Descriptor, ...],
    diff_ids: list[str],
    emit: Emit,
) -> None:
    chain = chain_ids(diff_ids)
    loop = asyncio.get_running_loop()
    present = await asyncio.to_thread(lambda: [store.has_layer(c) for c in chain])
    staging = _staging_dir(store, "pull")
    limit = asyncio.Semaphore(MAX_CONCURRENT_DOWNLOADS)
    downloads: dict[int, asyncio.Task[Path]] = {}
    try:
        for index, layer in enumerate(layers):
            # moby: a layer whose chain is present is not downloaded ("Already exists").
            if present[index]:
                emit(Progress("Already exists", id=short_id(layer.digest), detail=True))
            else:
                emit(Progress("Pulling fs layer", id=short_id(layer.digest), detail=True))
        for index, layer in enumerate(layers):
            if not present[index]:
                downloads[index] = asyncio.create_task(
                    _download(repo, layer, staging / f"{index}.blob", limit, emit)
                )
        parent: str | None = None
        for index, layer in enumerate(layers):
            if present[index]:
                parent = chain[index]
                continue
            path = await downloads[index]
            layer_id = short_id(layer.digest)

            def report(done: int, layer_id: str = layer_id, total: int = layer.size_bytes) -> None:
                loop.call_soon_threadsafe(
                    emit, Progress("Extracting", id=layer_id, current=done, total=total)
                )

            record = await asyncio.to_thread(
                _register, store, path, parent, diff_ids[index], layer.size_bytes, report
            )
            path.unlink()
            emit(Progress("Pull complete", id=layer_id, detail=True))
            parent = record
    finally:
        for task in downloads.values():
            task.cancel()
        for task in downloads.values():
            with contextlib.suppress(BaseException):
                await task
        await asyncio.to_thread(shutil.rmtree, staging, True)


def _register(
    store: ImageStore,
    path: Path,
    parent: str | None,
    diff_id: str,
    total: int,
    report: Callable[[int], None],
) -> str:
    with open(path, "rb") as blob:
        reader = _CountingReader(blob, total, report)
        try:
            record = store.register_layer(reader, parent, expected_diff_id=diff_id)  # type: ignore[arg-type]
        except ImageStoreError as exc:
            # moby: the DiffID check fails as "layer digest mismatch" too; say which layer.
            raise RegistryError(f"failed to register layer: {exc}") from None
    return record.chain_id


async def _download(
    repo: Repository, layer: Descriptor, path: Path, limit: asyncio.Semaphore, emit: Emit
) -> Path:
    layer_id = short_id(layer.digest)
    if limit.locked():
        emit(Progress("Waiting", id=layer_id, detail=True))
    async with limit:
        reported = 0

        def progress(done: int) -> None:
            nonlocal reported
            if done - reported >= PROGRESS_STEP_BYTES or done == layer.size_bytes:
                reported = done
                emit(Progress("Downloading", id=layer_id, current=done, total=layer.size_bytes))

        with open(path, "w+b") as out:
            await repo.download_blob(layer.digest, out, progress)
        emit(Progress("Verifying Checksum", id=layer_id, detail=True))
        emit(Progress("Download complete", id=layer_id, detail=True))
    return path


async def _resolve(
    repo: Repository, ref: Reference, platform: Platform
) -> tuple[ImageManifest, str]:
    reference = ref.digest or ref.tag or "latest"
    try:
        media_type, body, digest = await repo.get_manifest(reference)
        parsed = parse_manifest(media_type, body)
        if isinstance(parsed, ManifestList):
            entry = select_manifest(parsed, platform)
            media_type, body, _ = await repo.get_manifest(entry.digest)
            chosen = parse_manifest(media_type, body)
            if not isinstance(chosen, ImageManifest):
                raise InvalidManifest("a manifest list entry is itself a manifest list")
            return chosen, digest
        return parsed, digest
    except InvalidManifest as exc:
        raise RegistryError(str(exc)) from None
    except RegistryError as exc:
        raise translate_pull_error(exc, ref) from None


async def prepare_pull(
    store: ImageStore,
    ref: Reference,
    auth: AuthConfig,
    options: ClientOptions,
    platform: Platform,
    *,
    all_tags: bool = False,
) -> PullPlan:
    """Connect and resolve the manifest (everything dockerd does before its first
    message), raising Docker's errors. Close the plan with `aclose` (or run it)."""
    location = locate(ref)
    repo = await open_repository(location, auth, options, actions=("pull",))
    try:
        if all_tags:
            try:
                tags = sorted(await repo.tags())
            except RegistryError as exc:
                raise translate_pull_error(exc, ref) from None
            plans = []
            for tag in tags:
                tagged = Reference(ref.domain, ref.path, tag, None)
                manifest, digest = await _resolve(repo, tagged, platform)
                plans.append(PullPlan(store, tagged, repo, manifest, digest))
            if not plans:
                raise RegistryNotFound(f"repository {ref.familiar_name()} not found: no tags")
            first = plans[0]
            return PullPlan(store, ref, repo, first.manifest, first.manifest_digest, True, plans)
        manifest, digest = await _resolve(repo, ref, platform)
        return PullPlan(store, ref, repo, manifest, digest)
    except BaseException:
        await repo.aclose()
        raise


# ---------------------------------------------------------------------------------------
# Push


@dataclass
class PushPlan:
    store: ImageStore
    ref: Reference  # a name, maybe with a tag
    auth: AuthConfig
    options: ClientOptions

    def run(self) -> AsyncIterator[Progress]:
        return _Stream().run(self._run)

    async def _run(self, emit: Emit) -> None:
        ref, store = self.ref, self.store
        location = locate(ref)
        emit(Progress(f"The push refers to repository [{ref.name}]"))
        images = await asyncio.to_thread(_images_to_push, store, ref)
        repo = await open_repository(location, self.auth, self.options, actions=("pull", "push"))
        try:
            for tag, image_id in images:
                await _push_tag(store, repo, ref, tag, image_id, emit)
        finally:
            await repo.aclose()


def _images_to_push(store: ImageStore, ref: Reference) -> list[tuple[str, str]]:
    """moby Push + pushV2Repository: the repository must have a tag here at all, then the
    tag given must exist; no tag means every tag of the repository."""
    found = []
    for record in store.list():
        for text in record.references:
            tagged = parse_reference(text, default_tag=False)
            if tagged.name == ref.name and tagged.tag is not None:
                found.append((tagged.tag, record.id))
    if not found:
        raise RegistryNotFound(
            f"An image does not exist locally with the tag: {ref.familiar_name()}"
        )
    if ref.tag is not None:
        matching = [(tag, image) for tag, image in found if tag == ref.tag]
        if not matching:
            raise RegistryNotFound(f"tag does not exist: {ref.familiar()}")
        return matching
    return sorted(found)


async def _push_tag(
    store: ImageStore, repo: Repository, ref: Reference, tag: str, image_id: str, emit: Emit
) -> None:
    record = await asyncio.to_thread(store.get, image_id)
    config_bytes = await asyncio.to_thread(store.get_blob, image_id)
    diff_ids = list(record.config.rootfs.diff_ids)
    chain = list(record.chain_ids)
    for diff_id in reversed(diff_ids):
        emit(Progress("Preparing", id=short_id(diff_id), detail=True))
    limit = asyncio.Semaphore(MAX_CONCURRENT_UPLOADS)
    staging = _staging_dir(store, "push")
    try:
        tasks = [
            asyncio.create_task(_push_layer(store, repo, diff_id, chain_id, staging, limit, emit))
            for diff_id, chain_id in zip(diff_ids, chain, strict=True)
        ]
        try:
            descriptors = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    config = Descriptor(DOCKER_CONFIG, image_id, len(config_bytes))
    if await repo.head_blob(image_id) is None:

        async def config_chunks() -> AsyncIterator[bytes]:
            yield config_bytes

        await repo.upload_blob(config_chunks(), image_id)
    manifest = build_schema2(config, descriptors)
    digest = await repo.put_manifest(tag, DOCKER_MANIFEST, manifest)
    await asyncio.to_thread(store.commit_image, config_bytes, repo_digest=f"{ref.name}@{digest}")
    emit(Progress(f"{tag}: digest: {digest} size: {len(manifest)}"))
    emit(
        Progress(
            detail=True,
            aux={"Tag": tag, "Digest": digest, "Size": len(manifest)},
        )
    )


async def _push_layer(
    store: ImageStore,
    repo: Repository,
    diff_id: str,
    chain_id: str,
    staging: Path,
    limit: asyncio.Semaphore,
    emit: Emit,
) -> Descriptor:
    try:
        return await _push_layer_once(store, repo, diff_id, chain_id, staging, limit, emit)
    except RegistryUnauthorized as exc:
        # moby retryOnError: an auth failure of a layer push is reported without the
        # request it failed ("no basic auth credentials").
        raise RegistryUnauthorized(exc.reason) from None


async def _push_layer_once(
    store: ImageStore,
    repo: Repository,
    diff_id: str,
    chain_id: str,
    staging: Path,
    limit: asyncio.Semaphore,
    emit: Emit,
) -> Descriptor:
    layer_id = short_id(diff_id)
    location = repo.location
    if limit.locked():
        emit(Progress("Waiting", id=layer_id, detail=True))
    async with limit:
        sources = await asyncio.to_thread(store.distribution_sources, diff_id)
        same_registry = [s for s in reversed(sources) if _host_of(s.repository) == location.host]
        # moby push_v2 layerAlreadyExists: a blob known in this repository is checked with
        # HEAD; one known in another repository of the same registry is mounted.
        for source in same_registry:
            if (
                _path_of(source.repository) == location.repository
                and await repo.head_blob(source.digest) is not None
            ):
                emit(Progress("Layer already exists", id=layer_id, detail=True))
                return Descriptor(source.media_type, source.digest, source.size_bytes)
        for source in same_registry:
            from_path = _path_of(source.repository)
            if from_path == location.repository:
                continue
            with contextlib.suppress(RegistryError):
                if await repo.mount_blob(source.digest, from_path):
                    emit(Progress(f"Mounted from {from_path}", id=layer_id, detail=True))
                    await _record_source(store, diff_id, location, source.digest, source.size_bytes)
                    return Descriptor(source.media_type, source.digest, source.size_bytes)
        path = staging / f"{uuid.uuid4().hex}.tar.gz"
        digest, size = await asyncio.to_thread(_compress_layer, store, chain_id, path)
        if await repo.head_blob(digest) is not None:
            emit(Progress("Layer already exists", id=layer_id, detail=True))
        else:
            with open(path, "rb") as blob:
                reported = 0

                async def next_chunk() -> bytes:
                    return await asyncio.to_thread(blob.read, UPLOAD_CHUNK_BYTES)

                def progress(done: int) -> None:
                    nonlocal reported
                    if done - reported >= PROGRESS_STEP_BYTES or done == size:
                        reported = done
                        emit(Progress("Pushing", id=layer_id, current=done, total=size))

                await repo.upload_blob(next_chunk, digest, progress)
            emit(Progress("Pushed", id=layer_id, detail=True))
        await _record_source(store, diff_id, location, digest, size)
        return Descriptor(DOCKER_LAYER_GZIP, digest, size)


async def _record_source(
    store: ImageStore, diff_id: str, location: RegistryLocation, digest: str, size: int
) -> None:
    source = DistributionSource(digest, location.name, DOCKER_LAYER_GZIP, size)
    await asyncio.to_thread(store.add_distribution_source, diff_id, source)


def _host_of(repository: str) -> str:
    return repository.partition("/")[0]


def _path_of(repository: str) -> str:
    return repository.partition("/")[2]


class _HashingWriter:
    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size_bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size_bytes += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def _compress_layer(store: ImageStore, chain_id: str, path: Path) -> tuple[str, int]:
    """gzip the layer's tar into `path`; return the compressed blob's digest and size."""
    with open(path, "xb") as out, store.layer_tar(chain_id) as tar:
        hashing = _HashingWriter(out)
        # filename="" and mtime=0: no name or time in the header, as Go's gzip.Writer.
        with gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=hashing,
            compresslevel=GZIP_LEVEL,
            mtime=0,
        ) as compressed:
            shutil.copyfileobj(tar, compressed, 1 << 20)
    return "sha256:" + hashing.sha256.hexdigest(), hashing.size_bytes


async def prepare_push(
    store: ImageStore, name: str, tag: str, auth: AuthConfig, options: ClientOptions
) -> PushPlan:
    """moby PushImage: the reference (a tag if given); digests cannot be pushed."""
    ref = parse_reference(name, default_tag=False)
    if tag:
        ref = Reference(ref.domain, ref.path, tag, None)
    if ref.digest is not None:
        raise RegistryError("cannot push a digest reference")
    return PushPlan(store, ref, auth, options)
