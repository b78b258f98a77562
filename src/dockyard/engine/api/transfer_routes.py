"""Image interchange and disk usage: `docker save` (GET `/images/get`,
`/images/{name}/get`), `docker load` (POST `/images/load`) and `docker system df`
(GET `/system/df`).

Role: the wire side of `images/interchange.py`.

Invariants:
- Save resolves every name before the first byte is sent, so an unknown name is a JSON
  404 (`No such image: x`); once the archive streams, a failure can only cut it short,
  which the client sees as a truncated archive (dockerd behaves the same).
- Load answers 200 at once and streams Docker's JSON messages; a bad archive is an
  `errorDetail` line in that stream (moby postImagesLoad), which the CLI prints and exits 1
  on, and the SDK raises as ImageLoadError. Nothing half-loaded stays in the store.
- Archive work runs on worker threads (ThreadedChunks), never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Generator
from typing import Any

from dockyard.engine import events as ev
from dockyard.engine.api.router import (
    JSON,
    PING_HEADERS,
    Call,
    Reply,
    encode,
    json_reply,
    route,
    unix_s,
)
from dockyard.engine.archive import ThreadedChunks
from dockyard.engine.containers import ContainerRecord, InvalidArgument, NotFound
from dockyard.engine.daemon import Engine
from dockyard.engine.fsutil import directory_size
from dockyard.engine.images.interchange import (
    ArchiveError,
    LoadEvent,
    load_archive,
    plan_save,
    save_chunks,
)
from dockyard.engine.images.store import ImageNotFound, ImageStoreError
from dockyard.http.types import StreamingResponse

TAR = "application/x-tar"
# docker system df's object types (API 1.42 `type` query).
DF_TYPES = frozenset({"container", "image", "volume", "build-cache"})


def _progress_bar(current: int, total: int) -> str:
    """moby's jsonmessage progress bar text: `[====>     ]  1.2MB/3MB`."""
    width = 50
    filled = width * current // total if total else width
    bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
    return f"[{bar}] {_human(current)}/{_human(total)}"


def _human(size: int) -> str:
    # go-units HumanSize: decimal units, 4 significant digits.
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.4g}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _load_message(event: LoadEvent, quiet: bool) -> bytes | None:
    if event.kind == "layer":
        if quiet:
            return None
        return encode(
            {
                "status": event.text,
                "progressDetail": {"current": event.current_bytes, "total": event.total_bytes},
                "progress": _progress_bar(event.current_bytes, event.total_bytes),
                "id": event.layer_id,
            }
        )
    return encode({"stream": event.text + "\n"})


class TransferRoutes:
    engine: Engine
    # DockerApi's `docker ps` summary (routes.py), reused by `docker system df`.
    _summary: Callable[[ContainerRecord, int], dict[str, Any]]

    def _save(self, names: list[str]) -> Reply:
        if not names:
            raise InvalidArgument("no image names given")
        try:
            plan = plan_save(self.engine.images, names)
        except ImageNotFound as e:
            raise NotFound(str(e)) from None
        for saved in plan.images:
            name = saved.tags[0].familiar() if saved.tags else saved.record.id
            self.engine.events.emit(ev.IMAGE, "save", saved.record.id, {"name": name})

        def chunks() -> Generator[bytes, None, None]:
            try:
                yield from save_chunks(self.engine.images, plan)
            except ImageStoreError as e:
                raise OSError(f"docker save failed: {e}") from None

        async def nothing() -> None:
            return None

        stream = ThreadedChunks(chunks(), nothing)
        return StreamingResponse(200, stream, TAR, headers=PING_HEADERS)

    @route("GET", "/images/get")
    async def images_save(self, call: Call) -> Reply:
        return self._save(list(call.query.get("names", [])))

    @route("GET", "/images/(?P<name>.+)/get")
    async def image_save(self, call: Call) -> Reply:
        return self._save([call.params["name"]])

    @route("POST", "/images/load")
    async def images_load(self, call: Call) -> Reply:
        quiet = call.flag("quiet")
        images = self.engine.images
        body = io.BytesIO(call.request.body)

        def messages() -> Generator[bytes, None, None]:
            try:
                for event in load_archive(images, body):
                    if event.kind == "loaded":
                        self.engine.events.emit(
                            ev.IMAGE, "load", event.image_id, {"name": event.name}
                        )
                    line = _load_message(event, quiet)
                    if line is not None:
                        yield line
            except (ArchiveError, ImageStoreError, ValueError) as e:
                message = str(e)
                yield encode({"errorDetail": {"message": message}, "error": message})

        async def nothing() -> None:
            return None

        return StreamingResponse(
            200, ThreadedChunks(messages(), nothing), JSON, headers=PING_HEADERS
        )

    @route("GET", "/system/df")
    async def system_df(self, call: Call) -> Reply:
        wanted = set(call.query.get("type", [])) or set(DF_TYPES)
        for kind in wanted - DF_TYPES:
            raise InvalidArgument(f"unknown object type: {kind}")
        return json_reply(200, await asyncio.to_thread(self._disk_usage, wanted))

    def _disk_usage(self, wanted: set[str]) -> dict[str, Any]:
        store = self.engine.images
        records = list(self.engine.containers)
        users: dict[str, int] = {}
        for record in records:
            users[record.image_id] = users.get(record.image_id, 0) + 1
        images = store.list()
        sizes = {c: store.get_layer(c).shown_bytes for c in store.list_layers()}
        # SharedSize: the image's layers that another image also stacks on (moby df).
        layer_images: dict[str, int] = {}
        for image in images:
            for chain_id in image.chain_ids:
                layer_images[chain_id] = layer_images.get(chain_id, 0) + 1
        out: dict[str, Any] = {"LayersSize": sum(sizes.values())}
        if "image" in wanted:
            summaries = []
            for image in images:
                size = sum(sizes.get(c, 0) for c in image.chain_ids)
                shared = sum(sizes.get(c, 0) for c in image.chain_ids if layer_images[c] > 1)
                labels = image.config.config.labels if image.config.config else None
                summaries.append(
                    {
                        "Containers": users.get(image.id, 0),
                        "Created": unix_s(image.config.created),
                        "Id": image.id,
                        "Labels": dict(labels) if labels is not None else None,
                        "ParentId": image.parent or "",
                        "RepoDigests": list(image.repo_digests),
                        "RepoTags": list(image.references),
                        "SharedSize": shared,
                        "Size": size,
                        "VirtualSize": size,
                    }
                )
            out["Images"] = summaries
        if "container" in wanted:
            now_ns = time.time_ns()
            containers = []
            image_sizes = {i.id: sum(sizes.get(c, 0) for c in i.chain_ids) for i in images}
            for record in records:
                upper = self.engine.snapshots.upper_dir(record.id)
                size_rw = directory_size(upper) if upper.is_dir() else 0
                containers.append(
                    self._summary(record, now_ns)
                    | {
                        "SizeRw": size_rw,
                        "SizeRootFs": size_rw + image_sizes.get(record.image_id, 0),
                    }
                )
            out["Containers"] = containers
        if "volume" in wanted:
            out["Volumes"] = self.engine.volumes.usage(self.engine.volume_users())
        if "build-cache" in wanted:
            out["BuildCache"] = []  # the classic builder's cache is its images
        return out
