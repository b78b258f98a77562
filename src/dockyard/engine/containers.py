"""Container records on disk, and the names the engine uses for records (re-exported).

Role: `ContainerStore` persists each record (`model/container.py`, pure) as
`<root>/<id>/config.v2.json`, written atomically (temp file, fsync, rename, fsync of the
directory), so a daemon restart (or a crash) finds either the old or the new record, never
half of one. The pure names are re-exported so callers keep one import for both.

Invariants:
- IDs are unique and names are unique (the store refuses a taken name).
- `save` changes the record in memory at once (so a read-modify-save between two awaits
  stays atomic, as on one event loop it always was) and writes the file behind, off the
  event loop: per container one writer task at a time, which writes the record as it is
  when its write begins, so files land in order and a burst of saves costs one write.
  Before an API request is answered, the writes its handler caused are durable
  (`tracking_writes` + `flush`, called by the router): what is acknowledged survives a
  crash, as before, but the loop no longer stalls in fsync while other requests wait.
- A container's writer is idle before its directory is removed (`settle`), so no write
  lands in a removed container's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.engine.fsutil import write_atomic
from dockyard.engine.model.container import (
    ID_RE,
    RECORD_FILE,
    ZERO_TIME,
    Conflict,
    ContainerRecord,
    ContainerState,
    EngineError,
    InvalidArgument,
    NotFound,
    NotModified,
    RandomSource,
    Status,
    TransitionError,
    docker_start_error,
    exited,
    generate_name,
    human_duration,
    new_id,
    parse_time_ns,
    paused,
    start_error_exit_code,
    start_failed,
    started,
    status_text,
    unpaused,
    validate_name,
)

__all__ = [
    "RECORD_FILE",
    "ZERO_TIME",
    "Conflict",
    "ContainerRecord",
    "ContainerState",
    "ContainerStore",
    "EngineError",
    "InvalidArgument",
    "NotFound",
    "NotModified",
    "RandomSource",
    "Status",
    "TransitionError",
    "docker_start_error",
    "exited",
    "generate_name",
    "human_duration",
    "new_id",
    "parse_time_ns",
    "paused",
    "start_error_exit_code",
    "start_failed",
    "started",
    "status_text",
    "unpaused",
    "validate_name",
]


logger = logging.getLogger(__name__)

# The container ids whose records the current API request saved (None: not tracked).
_request_writes: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "dockyard_request_writes", default=None
)


@dataclass
class _Writer:
    """One container's write-behind state: saves asked for vs written, who waits."""

    asked: int = 0
    written: int = 0
    task: asyncio.Task[None] | None = None
    error: OSError | None = None
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)


def _write_record(path: Path, record: ContainerRecord) -> None:
    write_atomic(path, json.dumps(record.to_json(), sort_keys=True).encode())


class ContainerStore:
    """The records under `root` (`<data-root>/containers`), cached in memory.

    Not thread-safe: the daemon calls it from its event loop only (the writes it starts run
    on worker threads). Without a running event loop, `save` writes synchronously.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, ContainerRecord] = {}
        self._writers: dict[str, _Writer] = {}
        for child in sorted(self.root.iterdir()):
            if not ID_RE.match(child.name):
                continue
            try:
                raw = (child / RECORD_FILE).read_bytes()
            except FileNotFoundError:
                # A create that crashed before its record landed: nothing refers to it.
                shutil.rmtree(child, ignore_errors=True)
                continue
            record = ContainerRecord.from_json(json.loads(raw))
            self._records[record.id] = record

    def container_dir(self, container_id: str) -> Path:
        if not ID_RE.match(container_id):
            raise InvalidArgument(f"invalid container id {container_id!r}")
        return self.root / container_id

    def __iter__(self) -> Iterator[ContainerRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.created, reverse=True))

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, container_id: object) -> bool:
        return container_id in self._records

    def names(self) -> set[str]:
        return {r.name for r in self._records.values()}

    def get(self, container_id: str) -> ContainerRecord:
        return self._records[container_id]

    def resolve(self, ref: str) -> ContainerRecord:
        """Docker's lookup order: full ID, then name, then a unique ID prefix."""
        if (record := self._records.get(ref)) is not None:
            return record
        name = ref if ref.startswith("/") else "/" + ref
        for record in self._records.values():
            if record.name == name:
                return record
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            matches = [r for r in self._records.values() if r.id.startswith(ref)]
            if len(matches) > 1:
                raise InvalidArgument(f"Multiple IDs found with provided prefix: {ref}")
            if matches:
                return matches[0]
        raise NotFound(f"No such container: {ref}")

    def add(self, record: ContainerRecord) -> None:
        for other in self._records.values():
            if other.name == record.name:
                raise Conflict(
                    f'Conflict. The container name "{record.name}" is already in use by '
                    f'container "{other.id}". You have to remove (or rename) that container '
                    "to be able to reuse that name."
                )
        if record.id in self._records:
            raise Conflict(f"container ID {record.id} already exists")
        self.container_dir(record.id).mkdir(parents=True, exist_ok=True)
        self.save(record)

    def rename(self, container_id: str, name: str) -> ContainerRecord:
        """Give the container `name` (with its "/"); a name in use is a Conflict."""
        for other in self._records.values():
            if other.name == name and other.id != container_id:
                raise Conflict(
                    f'Error when allocating new name: Conflict. The container name "{name}" '
                    f'is already in use by container "{other.id}". You have to remove (or '
                    "rename) that container to be able to reuse that name."
                )
        record = replace(self._records[container_id], name=name)
        self.save(record)
        return record

    def save(self, record: ContainerRecord) -> None:
        """The record, now in memory; on disk before the request that saved it is answered
        (see the module's invariants)."""
        directory = self.container_dir(record.id)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tools, tests): write here and now
            data = json.dumps(record.to_json(), sort_keys=True).encode()
            write_atomic(directory / RECORD_FILE, data)
            self._records[record.id] = record
            return
        self._records[record.id] = record
        writer = self._writers.setdefault(record.id, _Writer())
        writer.asked += 1
        if writer.task is None:
            writer.task = asyncio.get_running_loop().create_task(self._write_behind(record.id))
        tracked = _request_writes.get()
        if tracked is not None:
            tracked.add(record.id)

    async def _write_behind(self, container_id: str) -> None:
        writer = self._writers[container_id]
        try:
            while writer.written < writer.asked:
                target = writer.asked
                record = self._records.get(container_id)
                if record is None:  # removed meanwhile: nothing left to write
                    writer.written = target
                    break
                try:
                    # Serialised on the worker thread too: a record is an immutable value.
                    await asyncio.to_thread(
                        _write_record, self.container_dir(container_id) / RECORD_FILE, record
                    )
                except OSError as e:
                    logger.error("container %s: record not written: %s", container_id[:12], e)
                    writer.error = e
                writer.written = target
                self._wake(writer)
        finally:
            writer.task = None
            self._wake(writer)
            if writer.written >= writer.asked and not writer.waiters:
                self._writers.pop(container_id, None)

    @staticmethod
    def _wake(writer: _Writer) -> None:
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for generation, future in writer.waiters:
            if future.done():
                continue
            if writer.written >= generation or writer.task is None:
                if writer.error is not None:
                    future.set_exception(writer.error)
                else:
                    future.set_result(None)
            else:
                keep.append((generation, future))
        writer.waiters = keep
        if writer.written >= writer.asked:
            writer.error = None

    @staticmethod
    def tracking_writes() -> tuple[set[str], contextvars.Token[set[str] | None]]:
        """Collect, for the current task and those it starts, the ids whose records are
        saved; reset with the token."""
        ids: set[str] = set()
        return ids, _request_writes.set(ids)

    @staticmethod
    def stop_tracking(token: contextvars.Token[set[str] | None]) -> None:
        _request_writes.reset(token)

    async def flush(self, container_ids: Iterable[str] | None = None) -> None:
        """Wait until every save of these containers (all: None) made before this call is
        on disk; an OSError of one of those writes is raised."""
        ids = list(self._writers) if container_ids is None else list(container_ids)
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for cid in ids:
            writer = self._writers.get(cid)
            if writer is None or (writer.written >= writer.asked and writer.task is None):
                continue
            future: asyncio.Future[None] = loop.create_future()
            writer.waiters.append((writer.asked, future))
            futures.append(future)
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            for result in results:
                if isinstance(result, OSError):
                    raise result

    async def settle(self, container_id: str) -> None:
        """Wait until the container's writer is idle (before its directory goes)."""
        writer = self._writers.get(container_id)
        while writer is not None and writer.task is not None:
            with contextlib.suppress(OSError):
                await self.flush([container_id])
            writer = self._writers.get(container_id)

    def remove(self, container_id: str) -> None:
        """Forget the record, then delete its directory (the record file first). Call
        `settle` first when the daemon runs: a write in flight would land afterwards."""
        directory = self.container_dir(container_id)
        self._records.pop(container_id, None)
        with contextlib.suppress(FileNotFoundError):
            (directory / RECORD_FILE).unlink()
        shutil.rmtree(directory, ignore_errors=True)
