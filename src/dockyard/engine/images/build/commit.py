"""`docker commit`: a container's changes as a new image (moby daemon/commit.go).

Role: the container's overlay upper directory becomes one layer (`diff_tar`) on top of
its image; the new config is the request's config with `--change` lines applied
(`images/changes.py`) and then completed from the container's config (moby `merge`).

Invariants:
- A running container is paused while its layer is written (unless `pause=false`) and
  unpaused afterwards, whatever happens.
- The runtime's mountpoints (`/etc/hosts`…) are left out of the layer, as Docker's init
  layer keeps them out; the container itself is never modified.
- The image records the container's image as its parent, `container_config`, the
  container's ID, comment and author, as dockerd writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dockyard.engine.containers import EngineError
from dockyard.engine.images.build.builder import RUN_EXCLUDES
from dockyard.engine.images.build.state import merge_config
from dockyard.engine.images.changes import apply_changes
from dockyard.engine.images.diff_tar import is_empty_diff, write_diff_tar
from dockyard.engine.images.model import (
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    RootFS,
    format_time,
    go_json,
)
from dockyard.engine.images.store import LayerRecord

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

__all__ = ["CommitOptions", "commit_container", "config_from_body"]


@dataclass(frozen=True)
class CommitOptions:
    ref: str | None = None  # "name:tag" to tag, normalized
    comment: str = ""
    author: str = ""
    pause: bool = True


async def commit_container(
    engine: Engine,
    ref: str,
    body_config: ContainerConfig | None,
    changes: Sequence[str],
    options: CommitOptions,
) -> str:
    """Commit the container `ref`; return the new image ID. Without a config in the
    request the container's own is the base the changes apply to (moby
    CreateImageFromContainer); `InvalidChange` is raised before anything happens."""
    record = engine.containers.resolve(ref)
    container_config = ContainerConfig.from_wire(record.config)
    config = apply_changes(changes, container_config if body_config is None else body_config)
    paused = False
    if options.pause and record.state.running and not record.state.paused:
        await engine.pause(record.id)
        paused = True
    try:
        return await asyncio.to_thread(_commit, engine, record.id, config, options)
    finally:
        if paused:
            with contextlib.suppress(EngineError):
                await engine.unpause(record.id)


def _commit(engine: Engine, cid: str, config: ContainerConfig, options: CommitOptions) -> str:
    record = engine.containers.get(cid)
    store = engine.images
    parent = store.get(record.image_id)
    container_config = ContainerConfig.from_wire(record.config)
    chain = list(parent.chain_ids)
    layer = _layer(engine, cid, chain[-1] if chain else None)
    now = format_time(datetime.now(UTC))
    base = parent.config
    diff_ids: Sequence[str] = tuple(base.rootfs.diff_ids)
    if layer is not None:
        diff_ids = (*diff_ids, layer.diff_id)
    image = ImageConfig(
        architecture=base.architecture,
        os=base.os,
        rootfs=RootFS(diff_ids=tuple(diff_ids)),
        config=merge_config(config, container_config),
        history=(
            *base.history,
            HistoryEntry(
                created=now,
                author=options.author,
                created_by=" ".join(container_config.cmd or ()),
                comment=options.comment,
                empty_layer=layer is None,
            ),
        ),
        created=now,
        author=options.author,
        comment=options.comment,
        variant=base.variant,
        os_version=base.os_version,
        os_features=base.os_features,
    )
    wire = image.to_wire()
    wire["container"] = cid
    wire["container_config"] = container_config.to_wire()
    raw = go_json(dict(sorted(wire.items())))
    return store.commit_image(raw, ref=options.ref, parent=parent.id)


def _layer(engine: Engine, cid: str, parent: str | None) -> LayerRecord | None:
    upper = engine.snapshots.upper_dir(cid)
    if is_empty_diff(upper, exclude=RUN_EXCLUDES):
        return None
    with tempfile.TemporaryFile(dir=engine.layout.data_root) as staged:
        write_diff_tar(upper, staged, exclude=RUN_EXCLUDES)
        staged.seek(0)
        return engine.images.register_layer(staged, parent)


def config_from_body(body: Any) -> ContainerConfig | None:
    """The request body's container config; None when absent or null."""
    return ContainerConfig.from_wire(body) if isinstance(body, dict) else None
