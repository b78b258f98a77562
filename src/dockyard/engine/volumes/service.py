"""What the daemon calls for volumes: the `/volumes` API and containers' mounts.

Role: tie `model.py` (decisions) to `store.py` (the local driver on disk), emit dockerd's
volume events, and keep which volumes each running container holds.

Thread model: every method is synchronous and may block (mount(8), copying, deleting);
the daemon calls them from worker threads (`asyncio.to_thread`). One lock serializes
them, so a create and a remove of the same name, or two starts taking the same option
volume, never interleave.

Invariants:
- `plan` either returns mount points whose volumes all exist, or raises having removed
  the volumes it created.
- A container holds a reference on each of its volumes from `attach` until `detach`;
  an option volume is mounted exactly while it is held (store.py). `attach` that fails
  releases what it took.
- Volume events as dockerd's: `create`/`destroy` with `driver`, `mount` with `driver`,
  `container`, `destination`, `read/write`, `propagation`, `unmount` with `driver` and
  `container`, and `prune` (no name) with `reclaimed`.
"""

from __future__ import annotations

import builtins
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.security.defaults import Mount
from dockyard.engine.volumes import model
from dockyard.engine.volumes.model import (
    ANONYMOUS_LABEL,
    DEFAULT_DRIVER,
    InvalidVolume,
    MountPoint,
    VolumeError,
    VolumeInUse,
    VolumeNotFound,
    VolumeRecord,
    VolumeRequest,
)
from dockyard.engine.volumes.store import LocalStore, copy_up, resolve_in_scope

__all__ = ["Emit", "VolumeService"]

logger = logging.getLogger(__name__)

Emit = Callable[[str, str, dict[str, str]], None]


def _filters(value: FilterArgs | Mapping[str, Iterable[str]]) -> FilterArgs:
    if isinstance(value, FilterArgs):
        return value
    return FilterArgs({str(k): frozenset(str(v) for v in vs) for k, vs in value.items()})


class VolumeService:
    """The local driver's volumes under `<root>/volumes` and the mounts of containers."""

    def __init__(
        self,
        root: Path,
        *,
        emit: Emit,
        rng: random.Random,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.store = LocalStore(root / "volumes")
        self._emit = emit
        self._rng = rng
        self._clock_s = clock_s
        self._lock = threading.RLock()
        # container id -> the volume names it holds a reference on (attach .. detach)
        self._held: dict[str, builtins.list[str]] = {}

    # -- the /volumes API ----------------------------------------------------------------------

    def create(
        self,
        name: str | None,
        driver: str,
        opts: Mapping[str, str] | None,
        labels: Mapping[str, str] | None,
    ) -> VolumeRecord:
        """`docker volume create`: a name given twice answers the existing volume (its
        options and labels unchanged), as moby's store does."""
        anonymous = not name
        with self._lock:
            if not name:
                name = model.new_volume_name(self._rng)
            request = VolumeRequest(
                name=name,
                driver=driver or DEFAULT_DRIVER,
                options=None if opts is None else dict(opts),
                labels=(
                    {**(labels or {}), ANONYMOUS_LABEL: ""}
                    if anonymous
                    else (None if labels is None else dict(labels))
                ),
                anonymous=anonymous,
            )
            return self._ensure(request)[0]

    def _ensure(self, request: VolumeRequest) -> tuple[VolumeRecord, bool]:
        """The volume `request` names, created if absent; and whether it was created."""
        if request.driver != DEFAULT_DRIVER:
            raise VolumeNotFound(
                f"create {request.name}: error looking up volume plugin {request.driver}: "
                f'plugin "{request.driver}" not found'
            )
        if self.store.exists(request.name):
            return self.store.get(request.name), False
        if not request.create:
            raise VolumeNotFound(f"get {request.name}: no such volume")
        model.validate_local_name(request.name)
        options = model.parse_local_options(request.name, request.options or {})
        record = VolumeRecord(
            name=request.name,
            driver=DEFAULT_DRIVER,
            created_at_s=int(self._clock_s()),
            labels=request.labels,
            options=request.options,
        )
        self.store.create(record, options)
        self._emit("create", record.name, {"driver": record.driver})
        return record, True

    def to_json(
        self, record: VolumeRecord, *, usage: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        return model.volume_json(record, str(self.store.data_path(record.name)), usage=usage)

    def inspect(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.to_json(self.store.get(name))

    def list(
        self,
        filters: FilterArgs | Mapping[str, Iterable[str]],
        users: Mapping[str, Sequence[str]],
    ) -> builtins.list[dict[str, Any]]:
        """`docker volume ls`; `users` = volume name -> ids of containers that name it."""
        args = _filters(filters)
        model.validate_list_filters(args)
        with self._lock:
            return [
                self.to_json(record)
                for record in self.store.list()
                if model.match_volume(args, record, self._in_use(record.name, users))
            ]

    def usage(self, users: Mapping[str, Sequence[str]]) -> builtins.list[dict[str, Any]]:
        """`docker system df`: every volume with UsageData (size, containers using it)."""
        with self._lock:
            return [
                self.to_json(
                    record,
                    usage=(self.store.size(record.name), len(set(users.get(record.name, ())))),
                )
                for record in self.store.list()
            ]

    def _in_use(self, name: str, users: Mapping[str, Sequence[str]]) -> bool:
        return bool(users.get(name)) or bool(self.store.refs(name))

    def remove(self, name: str, *, force: bool, users: Sequence[str]) -> None:
        """`docker volume rm`: 404 unless `force`; 409 while a container names it."""
        with self._lock:
            if not self.store.exists(name):
                if force:
                    return
                raise VolumeNotFound(f"get {name}: no such volume")
            holders = sorted({*users, *self.store.refs(name)})
            if holders:
                raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(holders)}]")
            self._destroy(name)

    def _destroy(self, name: str) -> None:
        record = self.store.get(name)
        self.store.remove(name)
        self._emit("destroy", name, {"driver": record.driver})

    def prune(
        self,
        filters: FilterArgs | Mapping[str, Iterable[str]],
        users: Mapping[str, Sequence[str]],
        *,
        anonymous_only: bool = True,
    ) -> tuple[builtins.list[str], int]:
        """`docker volume prune` (moby VolumesService.Prune): unused local volumes that
        have no driver options, anonymous ones only unless `all=true` (API 1.42+; the
        router passes `anonymous_only=False` for older clients). Returns the names removed
        and the bytes reclaimed."""
        args = model.prune_filters(_filters(filters), anonymous_only_default=anonymous_only)
        deleted: builtins.list[str] = []
        reclaimed = 0
        with self._lock:
            for record in self.store.list():
                if record.options or self._in_use(record.name, users):
                    continue
                if not model.match_volume(args, record, in_use=False):
                    continue
                size = self.store.size(record.name)
                try:
                    self._destroy(record.name)
                except (VolumeError, OSError) as e:
                    logger.warning("prune: could not remove volume %s: %s", record.name, e)
                    continue
                deleted.append(record.name)
                reclaimed += size
        self._emit("prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    # -- containers ----------------------------------------------------------------------------

    def plan(
        self,
        *,
        binds: Sequence[str],
        mounts: Sequence[Mapping[str, Any]],
        config_volumes: Iterable[str],
        image_volumes: Iterable[str],
        volumes_from: Sequence[tuple[Sequence[MountPoint], str]],
        tmpfs_destinations: Iterable[str],
        volume_driver: str = "",
    ) -> builtins.list[MountPoint]:
        """A new container's mount points (model.plan_mounts), with the volumes they
        need created (moby creates them at container create). `--mount` bind sources
        must exist. On any error, the volumes made here are removed again."""
        with self._lock:
            result = model.plan_mounts(
                binds=binds,
                mounts=mounts,
                config_volumes=config_volumes,
                image_volumes=image_volumes,
                volumes_from=volumes_from,
                tmpfs_destinations=tmpfs_destinations,
                rng=self._rng,
                volume_driver=volume_driver,
            )
            for source in result.bind_sources:
                if not os.path.exists(source):
                    raise InvalidVolume(
                        'invalid mount config for type "bind": '
                        f"bind source path does not exist: {source}"
                    )
            created: builtins.list[str] = []
            try:
                for request in result.volumes:
                    _, made = self._ensure(request)
                    if made:
                        created.append(request.name)
            except BaseException:
                for name in created:
                    try:
                        self._destroy(name)
                    except (VolumeError, OSError) as e:
                        logger.warning("volume %s: cleanup after a failed plan: %s", name, e)
                raise
            return list(result.points)

    def attach(
        self,
        container_id: str,
        points: Sequence[MountPoint],
        rootfs: Path,
        *,
        recursive_readonly: bool = False,
    ) -> builtins.list[Mount]:
        """At start, with the container's rootfs mounted: take a reference on each
        volume (mounting option volumes), copy the image's content into empty volumes,
        make missing `-v` bind sources, and return the OCI mounts in runc's order."""
        with self._lock:
            if container_id in self._held:
                self.detach(container_id)  # a start after a crash of the previous one
            held: builtins.list[str] = []
            self._held[container_id] = held
            sources: dict[str, str] = {}
            try:
                for point in points:
                    if point.type == "volume":
                        path = self.store.mount(point.name, container_id)
                        held.append(point.name)
                        if point.copy_data:
                            try:
                                copy_up(resolve_in_scope(rootfs, point.destination), path)
                            except OSError as e:
                                raise VolumeError(
                                    f"failed to populate volume {point.name}: {e}"
                                ) from None
                        sources[point.destination] = str(path)
                        self._emit(
                            "mount",
                            point.name,
                            {
                                "driver": point.driver or DEFAULT_DRIVER,
                                "container": container_id,
                                "destination": point.destination,
                                "read/write": "true" if point.read_write else "false",
                                "propagation": point.propagation,
                            },
                        )
                    elif point.type == "bind":
                        if point.create_source and not os.path.lexists(point.source):
                            # moby MountPoint.Setup: MkdirAllAndChown(source, 0755) for -v.
                            try:
                                os.makedirs(point.source, mode=0o755, exist_ok=True)
                            except OSError as e:
                                raise VolumeError(
                                    "error while creating mount source path "
                                    f"'{point.source}': mkdir {e.filename}: {e.strerror}"
                                ) from None
                        if point.propagation not in ("", "private", "rprivate"):
                            with open("/proc/self/mountinfo") as info:
                                model.check_bind_propagation(
                                    point.source,
                                    os.path.realpath(point.source),
                                    point.propagation,
                                    info.read(),
                                )
                        sources[point.destination] = point.source
            except BaseException:
                self.detach(container_id)
                raise
            return model.oci_mounts(points, sources, recursive_readonly=recursive_readonly)

    def detach(self, container_id: str) -> None:
        """At exit: release the container's references (unmounting option volumes
        nobody else holds)."""
        with self._lock:
            for name in self._held.pop(container_id, []):
                try:
                    driver = self.store.get(name).driver
                    self.store.unmount(name, container_id)
                except VolumeError as e:
                    logger.error("volume %s: release by %s: %s", name, container_id, e)
                    continue
                self._emit("unmount", name, {"driver": driver, "container": container_id})

    def remove_container(
        self,
        container_id: str,
        points: Sequence[MountPoint],
        *,
        remove_anonymous: bool,
        users: Mapping[str, Sequence[str]],
    ) -> None:
        """`docker rm [-v]`: release the container's volumes; with `-v`, remove its
        anonymous ones that no other container uses (moby removeMountPoints)."""
        with self._lock:
            self.detach(container_id)
            if not remove_anonymous:
                return
            for point in points:
                if point.type != "volume" or not point.anonymous:
                    continue
                others = [c for c in users.get(point.name, ()) if c != container_id]
                if others or self.store.refs(point.name) or not self.store.exists(point.name):
                    continue  # moby ignores "in use" here
                try:
                    self._destroy(point.name)
                except (VolumeError, OSError) as e:
                    logger.error(
                        "volume %s: remove with container %s: %s", point.name, container_id, e
                    )

    def recover(self, running: Mapping[str, Sequence[MountPoint]]) -> None:
        """At daemon start: the running containers keep their volumes (mounted again if
        needed); every other option volume is unmounted."""
        with self._lock:
            refs: dict[str, set[str]] = {}
            self._held = {}
            for cid, points in running.items():
                names = [p.name for p in points if p.type == "volume" and self.store.exists(p.name)]
                self._held[cid] = names
                for name in names:
                    refs.setdefault(name, set()).add(cid)
            self.store.recover(refs)

    def inspect_mounts(self, points: Sequence[MountPoint]) -> builtins.list[dict[str, Any]]:
        """Container inspect `Mounts`."""
        paths = {p.name: str(self.store.data_path(p.name)) for p in points if p.type == "volume"}
        return model.inspect_mounts(points, paths)

    def held(self, container_id: str) -> tuple[str, ...]:
        """The volumes `container_id` holds now (tests and diagnostics)."""
        with self._lock:
            return tuple(self._held.get(container_id, ()))
