"""Container records on disk, and the names the engine uses for records (re-exported).

Role: `ContainerStore` persists each record (`model/container.py`, pure) as
`<root>/<id>/config.v2.json`, written atomically (temp file, fsync, rename, fsync of the
directory), so a daemon restart (or a crash) finds either the old or the new record, never
half of one. The pure names are re-exported so callers keep one import for both.

Invariants: IDs are unique and names are unique (the store refuses a taken name).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
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


class ContainerStore:
    """The records under `root` (`<data-root>/containers`), cached in memory.

    Not thread-safe: the daemon calls it from its event loop only.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, ContainerRecord] = {}
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
        directory = self.container_dir(record.id)
        data = json.dumps(record.to_json(), sort_keys=True).encode()
        write_atomic(directory / RECORD_FILE, data)
        self._records[record.id] = record

    def remove(self, container_id: str) -> None:
        """Forget the record, then delete its directory (the record file first)."""
        directory = self.container_dir(container_id)
        self._records.pop(container_id, None)
        with contextlib.suppress(FileNotFoundError):
            (directory / RECORD_FILE).unlink()
        shutil.rmtree(directory, ignore_errors=True)
