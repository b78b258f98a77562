"""ContainerStore's write-behind on a real filesystem (engine/containers.py).

The daemon saves container records from its event loop; the files are written on worker
threads, one writer per container, and the API answers only once the records a request
saved are on disk. These tests pin what that promises: memory changes at once, a burst of
saves is one write of the latest record, `flush` waits for exactly the saves made before
it and raises a failed write, `tracking_writes` collects what a request saved, and a
container's directory removed after `settle` stays removed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from dockyard.engine import containers
from dockyard.engine.containers import RECORD_FILE, ContainerRecord, ContainerStore
from dockyard.engine.fsutil import write_atomic

pytestmark = pytest.mark.integration

CID = "c" * 64


def _record(name: str = "/one") -> ContainerRecord:
    return ContainerRecord(
        id=CID,
        name=name,
        created="2026-11-29T00:00:00.000000000Z",
        image="busybox",
        image_id="sha256:" + "e" * 64,
        path="sh",
        args=(),
        config={},
        host_config={},
    )


def _on_disk(store: ContainerStore) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((store.root / CID / RECORD_FILE).read_bytes())
    return loaded


def test_without_an_event_loop_a_save_is_written_at_once(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    store.add(_record())
    assert _on_disk(store) == _record().to_json()
    # and a new store (a daemon restart) reads it back
    assert ContainerStore(tmp_path).get(CID) == _record()


def test_a_burst_of_saves_is_one_write_of_the_latest_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []

    def counted(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
        writes.append(data)
        write_atomic(path, data, mode, durable=durable)

    # observed, not replaced: the real write still happens
    monkeypatch.setattr(containers, "write_atomic", counted)

    async def scenario() -> None:
        store = ContainerStore(tmp_path)
        store.add(_record())
        await store.flush([CID])
        writes.clear()
        for i in range(5):  # no await between them: the writer has not run yet
            store.save(replace(_record(), name=f"/n{i}"))
        assert store.get(CID).name == "/n4"  # memory at once
        await store.flush([CID])
        assert _on_disk(store)["name"] == "/n4"
        assert len(writes) == 1
        assert sorted(p.name for p in (tmp_path / CID).iterdir()) == [RECORD_FILE]

    asyncio.run(scenario())


def test_flush_waits_for_the_saves_made_before_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ContainerStore(tmp_path)
        store.add(_record())
        await store.flush([CID])
        for i in range(20):
            store.save(replace(_record(), name=f"/n{i}"))
            await store.flush([CID])
            assert _on_disk(store)["name"] == f"/n{i}"
        await store.flush()  # all containers: nothing pending, returns at once
        await store.flush(["d" * 64])  # a container never saved: nothing to wait for

    asyncio.run(scenario())


def test_tracking_collects_what_a_request_saved(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ContainerStore(tmp_path)
        written, token = ContainerStore.tracking_writes()
        try:

            async def handler() -> None:
                store.add(_record())

            # a task the request starts inherits the tracking (contextvars)
            await asyncio.create_task(handler())
        finally:
            ContainerStore.stop_tracking(token)
        assert written == {CID}
        await store.flush(written)
        assert _on_disk(store) == _record().to_json()
        store.save(replace(_record(), name="/untracked"))
        assert written == {CID}  # tracking ended with the request
        await store.flush()

    asyncio.run(scenario())


def test_a_failed_write_is_raised_by_flush(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ContainerStore(tmp_path)
        store.add(_record())
        await store.flush([CID])
        shutil.rmtree(tmp_path / CID)  # the directory vanished under the daemon
        store.save(replace(_record(), name="/lost"))
        with pytest.raises(OSError):
            await store.flush([CID])
        # the failure is reported once; the store keeps working for other writes
        (tmp_path / CID).mkdir()
        store.save(replace(_record(), name="/again"))
        await store.flush([CID])
        assert _on_disk(store)["name"] == "/again"

    asyncio.run(scenario())


def test_a_removed_container_stays_removed(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ContainerStore(tmp_path)
        store.add(_record())
        store.save(replace(_record(), name="/pending"))
        await store.settle(CID)
        store.remove(CID)
        # a save made before the removal must not bring the directory back
        await store.flush()
        assert not (tmp_path / CID).exists()
        assert CID not in store

    asyncio.run(scenario())
