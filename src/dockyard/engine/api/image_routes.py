"""The Docker API's image endpoints: list, inspect, import, tag, delete.

Role: Docker's wire shapes and statuses for the image store (`images/store.py`), which
holds the rules (lookup order, delete conflicts); `images/changes.py` turns `--change`
lines into the image config as dockerd does.

Invariants:
- Import reads the whole tar body (the HTTP server buffers it, up to its body limit) and
  extracts it on a worker thread: the event loop never waits on the disk.
- Import validates the reference and the changes before it reads the layer, so a bad
  request costs no extraction, and answers `{"status": "sha256:…"}` as dockerd's
  jsonmessage stream does (the CLI prints that status).
- Store errors become Docker's statuses here (conflict 409, bad tar 500), never a
  traceback in the daemon's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
from typing import TYPE_CHECKING, Any

from dockyard.engine import events as ev
from dockyard.engine.api.registry_routes import pull_image
from dockyard.engine.api.router import (
    JSON,
    TRUSTED_HEADERS,
    Call,
    Reply,
    encode,
    json_reply,
    route,
    unix_s,
)
from dockyard.engine.containers import (
    ZERO_TIME,
    Conflict,
    EngineError,
    InvalidArgument,
    parse_time_ns,
)
from dockyard.engine.images.changes import InvalidChange, apply_changes
from dockyard.engine.images.model import (
    ContainerConfig,
    InvalidReference,
    parse_reference,
    validate_tag,
)
from dockyard.engine.images.store import (
    DeleteItem,
    ImageConflict,
    ImageNotFound,
    ImageRecord,
    LayerError,
)
from dockyard.engine.model.filters import FilterArgs, labels_match, parse_timestamp
from dockyard.engine.model.gopath import path_match
from dockyard.http.types import Response

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine


def import_reference(repo: str, tag: str) -> str | None:
    """The reference an import tags, as dockerd's ImportImage reads `repo` and `tag`."""
    if not repo:
        return None
    ref = parse_reference(repo, default_tag=False)
    if ref.digest is not None:
        raise InvalidReference("cannot import digest reference")
    if tag:
        validate_tag(tag)
        return f"{ref.name}:{tag}"
    return str(ref)


def tag_reference(repo: str, tag: str) -> str:
    """The reference `POST /images/{name}/tag` creates (moby TagImage: TrimNamed + tag)."""
    ref = parse_reference(repo, default_tag=False)
    if tag:
        validate_tag(tag)
        return f"{ref.name}:{tag}"
    return str(ref)


# moby daemon/images/images.go acceptedImageFilterTags (`until` not yet).
IMAGE_FILTERS = frozenset({"dangling", "label", "before", "since", "reference"})
# moby daemon/images/image_prune.go imagesAcceptedFilters.
IMAGE_PRUNE_FILTERS = frozenset({"dangling", "label", "label!", "until"})


def reference_matches(pattern: str, familiar: str) -> bool:
    """distribution/reference FamiliarMatch: the whole reference, then its name alone."""
    name = familiar.rsplit("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return path_match(pattern, familiar) or path_match(pattern, name)


def _wire(item: DeleteItem) -> dict[str, Any]:
    return {"Untagged": item.untagged} if item.untagged else {"Deleted": item.deleted}


def not_found(name: str) -> ImageNotFound:
    """dockerd's 404 for a name: the reference with its default tag (`x:latest`)."""
    try:
        shown = parse_reference(name).familiar()
    except InvalidReference:
        shown = name
    return ImageNotFound(f"No such image: {shown}")


class ImageRoutes:
    """Mixin of `DockerApi` (routes.py): the `/images/…` endpoints."""

    engine: Engine

    def _image_size(self, image: ImageRecord) -> int:
        return sum(self.engine.images.get_layer(c).shown_bytes for c in image.chain_ids)

    def _select(self, images: list[ImageRecord], filters: FilterArgs) -> list[ImageRecord]:
        """`docker images --filter` as moby's Images: RepoTags narrowed to matching refs."""
        filters.validate(IMAGE_FILTERS)
        dangling = filters.get("dangling")
        if dangling - {"true", "false"} or len(dangling) > 1:
            raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(sorted(dangling))}]'")
        bounds = {}
        for key in ("before", "since"):
            for name in filters.get(key):
                try:
                    bounds[key] = self.engine.images.get(name).config.created or ""
                except ImageNotFound:
                    raise not_found(name) from None
        out = []
        for image in images:
            created = image.config.created or ""
            if "before" in bounds and not created < bounds["before"]:
                continue
            if "since" in bounds and not created > bounds["since"]:
                continue
            config = image.config.config
            labels = dict(config.labels or ()) if config else {}
            if not filters.match_kv_list("label", labels):
                continue
            if dangling == {"true"} and image.references:
                continue
            if dangling == {"false"} and not image.references:
                continue
            patterns = filters.get("reference")
            if patterns:
                refs = tuple(
                    r for r in image.references if any(reference_matches(p, r) for p in patterns)
                )
                if not refs:
                    continue
                image = dataclasses.replace(image, references=refs)
            out.append(image)
        return out

    @route("GET", "/images/json")
    async def images_list(self, call: Call) -> Reply:
        out = []
        images = self.engine.images.list()
        # moby images.go: without `all`, untagged images with children (a build's
        # intermediate images) are not listed.
        parents = {i.parent for i in images if i.parent}
        show_all = call.flag("all")
        for image in self._select(images, FilterArgs.parse(call.arg("filters"))):
            intermediate = image.id in parents and not (image.references or image.repo_digests)
            if intermediate and not show_all:
                continue
            size = self._image_size(image)
            labels = image.config.config.labels if image.config.config else None
            out.append(
                {
                    "Containers": -1,
                    "Created": unix_s(image.config.created),
                    "Id": image.id,
                    "Labels": dict(labels) if labels is not None else None,
                    "ParentId": image.parent or "",
                    "RepoDigests": list(image.repo_digests),
                    "RepoTags": list(image.references),
                    "SharedSize": -1,
                    "Size": size,
                    "VirtualSize": size,
                }
            )
        return json_reply(200, out)

    def _image_event(self, action: str, image_id: str, name: str) -> None:
        # moby LogImageEvent: the actor is the image ID, `name` the reference (or the ID).
        self.engine.events.emit(ev.IMAGE, action, image_id, {"name": name})

    def _delete(self, name: str, *, force: bool) -> list[DeleteItem]:
        try:
            image_id = self.engine.images.get(name).id
            items = self.engine.images.delete(name, force=force)
        except ImageConflict as e:
            raise Conflict(str(e)) from None
        except ImageNotFound:
            raise not_found(name) from None
        for item in items:
            # moby names the image ID in both events; the other `Deleted` are its layers.
            if item.untagged:
                self._image_event("untag", image_id, image_id)
            elif item.deleted == image_id:
                self._image_event("delete", image_id, image_id)
        return items

    @route("GET", "/images/(?P<name>.+)/json")
    async def image_inspect(self, call: Call) -> Reply:
        image = self.engine.images.get(call.params["name"])
        config = image.config
        size = self._image_size(image)
        # Fields the model leaves out, as the config holds them (a classic build's step).
        raw = json.loads(self.engine.images.get_blob(image.id))
        return json_reply(
            200,
            {
                "Id": image.id,
                "RepoTags": list(image.references),
                "RepoDigests": list(image.repo_digests),
                "Parent": image.parent or "",
                "Comment": config.comment,
                "Created": config.created or ZERO_TIME,
                "Container": raw.get("container", ""),
                "ContainerConfig": raw.get("container_config") or ContainerConfig().to_wire(),
                "DockerVersion": raw.get("docker_version", ""),
                "Author": config.author,
                "Config": config.config.to_wire() if config.config else None,
                "Architecture": config.architecture,
                "Variant": config.variant or None,
                "Os": config.os,
                "Size": size,
                "VirtualSize": size,
                "GraphDriver": {"Name": "overlayfs", "Data": None},
                "RootFS": {"Type": "layers", "Layers": list(config.rootfs.diff_ids)},
                "Metadata": {"LastTagTime": image.last_tag_time or ZERO_TIME},
            },
        )

    @route("POST", "/images/create")
    async def image_create(self, call: Call) -> Reply:
        source = call.arg("fromSrc")
        if source:
            return await self._import(call, source)
        return await pull_image(self.engine, call)

    async def _import(self, call: Call, source: str) -> Reply:
        if source != "-":
            raise InvalidArgument(
                f"importing from {source} is not supported: dockyard imports a tar sent "
                "as the request body (fromSrc=-)"
            )
        ref = import_reference(call.arg("repo"), call.arg("tag"))
        try:
            config = apply_changes(call.query.get("changes", []), ContainerConfig())
        except InvalidChange as e:
            raise InvalidArgument(str(e)) from None
        comment = call.arg("message") or f"Imported from {source}"
        try:
            image_id = await asyncio.to_thread(
                self.engine.images.import_tar,
                io.BytesIO(call.request.body),
                ref=ref,
                config=config,
                comment=comment,
            )
        except LayerError as e:
            raise EngineError(f"Error processing tar file: {e}") from None
        self._image_event("import", image_id, image_id)
        # jsonmessage lines end in CRLF (moby streamformatter).
        body = encode({"status": image_id}).rstrip(b"\n") + b"\r\n"
        return Response(200, body, JSON, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/images/(?P<name>.+)/tag")
    async def image_tag(self, call: Call) -> Reply:
        name = call.params["name"]
        try:
            self.engine.images.get(name)  # dockerd looks the image up before the new name
        except ImageNotFound:
            raise not_found(name) from None
        target = tag_reference(call.arg("repo"), call.arg("tag"))
        ref = self.engine.images.tag(name, target)
        image_id = self.engine.images.get(name).id
        self._image_event("tag", image_id, ref.familiar())
        return Response(201, trusted_headers=TRUSTED_HEADERS)

    @route("DELETE", "/images/(?P<name>.+)")
    async def image_delete(self, call: Call) -> Reply:
        items = self._delete(call.params["name"], force=call.flag("force"))
        return json_reply(200, [_wire(item) for item in items])

    @route("GET", "/images/(?P<name>.+)/history")
    async def image_history(self, call: Call) -> Reply:
        """moby ImageHistory: newest first; only the top entry names the image and its tags
        (these images have no parents)."""
        image = self.engine.images.get(call.params["name"])
        layer_sizes = [self.engine.images.get_layer(c).shown_bytes for c in image.chain_ids]
        entries = []
        for entry in image.config.history:
            size = 0 if entry.empty_layer or not layer_sizes else layer_sizes.pop(0)
            entries.append(
                {
                    "Comment": entry.comment,
                    "Created": unix_s(entry.created),
                    "CreatedBy": entry.created_by,
                    "Id": "<missing>",
                    "Size": size,
                    "Tags": None,
                }
            )
        entries.reverse()
        # moby ImageHistory: newest first, each entry names the image of the parent chain
        # that made it, while that chain is in the store; older ones stay <missing>.
        record: ImageRecord | None = image
        for item in entries:
            if record is None:
                break
            tags = [r for r in record.references if "@" not in r]
            item |= {"Id": record.id, "Tags": tags or None}
            try:
                record = self.engine.images.get(record.parent) if record.parent else None
            except ImageNotFound:
                record = None
        return json_reply(200, entries)

    @route("POST", "/images/prune")
    async def images_prune(self, call: Call) -> Reply:
        """moby ImagesPrune: dangling images (all unused ones with `dangling=false`) that no
        container uses, each reference untagged, then the image deleted."""
        filters = FilterArgs.parse(call.arg("filters"))
        filters.validate(IMAGE_PRUNE_FILTERS)
        dangling = filters.get("dangling")
        if dangling - {"true", "false", "1", "0"} or len(dangling) > 1:
            raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(sorted(dangling))}]'")
        dangling_only = not (dangling & {"false", "0"})
        until_ns = None
        for text in filters.get("until"):
            until_ns = parse_timestamp(text, time.time_ns())
        in_use = {record.image_id for record in self.engine.containers}
        deleted: list[DeleteItem] = []
        reclaimed = 0
        images = self.engine.images.list()
        parents = {i.parent for i in images if i.parent}
        for image in images:
            if image.id in in_use or (dangling_only and image.references):
                continue
            if image.id in parents:
                continue  # moby prunes heads only; their parents go with them (delete prunes)
            config = image.config.config
            if not labels_match(filters, dict(config.labels or ()) if config else {}):
                continue
            if until_ns is not None and parse_time_ns(image.config.created or ZERO_TIME) >= (
                until_ns
            ):
                continue
            sizes = {c: self.engine.images.get_layer(c).shown_bytes for c in image.chain_ids}
            items: list[DeleteItem] = []
            try:
                for ref in image.references:
                    items += self._delete(ref, force=False)
                if not image.references:
                    items += self._delete(image.id, force=False)
            except (Conflict, ImageNotFound):
                continue  # taken or removed meanwhile: not prunable any more
            deleted += items
            reclaimed += sum(sizes.get(item.deleted or "", 0) for item in items)
        return json_reply(
            200,
            {
                "ImagesDeleted": [_wire(item) for item in deleted] or None,
                "SpaceReclaimed": reclaimed,
            },
        )
