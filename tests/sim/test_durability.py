"""Simulated crashes of the store's durability layer, many seeds.

Each seed drives a random workload through the real WAL and snapshot code (on a temp dir)
into a `StoreState`, syncing in random batches (group commit) and snapshotting at random
points. Then the machine "crashes": every byte written after the last sync may be lost or
torn (the file is cut at a random offset past the synced length, sometimes with garbage
appended), and sometimes a snapshot was half-written. Recovery (newest good snapshot + WAL
replay) must give exactly the state after some prefix of the log that contains every
acknowledged (synced) entry. A failure prints the seed and the command that replays it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dockyard.store import commands as c
from dockyard.store.snapshot import Snapshot, load_latest_snapshot, save_snapshot
from dockyard.store.state import StoreState
from dockyard.store.wal import LogRecord, WriteAheadLog

pytestmark = pytest.mark.sim
SEEDS = int(os.environ.get("DOCKYARD_SIM_SEEDS", "200"))
NOW = 1_800_000_000 * 10**9
S = 10**9


def random_command(rng: random.Random, step: int) -> object:
    key = "/" + "/".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))
    expire = NOW + rng.randint(0, 5) * S if rng.random() < 0.2 else None
    choice = rng.random()
    if choice < 0.45:
        return c.SetKey(key, f"v{step}", expire_ns=expire)
    if choice < 0.55:
        return c.CreateInOrderKey(key, f"q{step}")
    if choice < 0.65:
        return c.DeleteKey(key, recursive=True)
    if choice < 0.75:
        return c.CompareAndSwap(key, f"w{step}", None, rng.randint(0, step))
    if choice < 0.85:
        return c.ExpireKeys(NOW + rng.randint(0, 6) * S)
    return c.UpdateKey(key, f"u{step}", expire)


def fingerprint(state: StoreState) -> tuple[int, int, str]:
    snap = state.tree.to_snapshot()
    snap.pop("stats")  # counters of reads are not replicated state
    return state.applied_index, state.tree.index, repr(snap)


def run_seed(seed: int, directory: Path) -> None:
    rng = random.Random(seed)
    wal_dir, snap_dir = directory / "wal", directory / "snap"
    snap_dir.mkdir(parents=True)
    wal, _ = WriteAheadLog.open(wal_dir, segment_bytes=rng.choice([512, 4096, 1 << 20]))
    state = StoreState()
    prints = {0: fingerprint(state)}
    acknowledged = 0
    index = 0
    for _ in range(rng.randint(5, 40)):
        batch = []
        for _ in range(rng.randint(1, 8)):
            index += 1
            command = random_command(rng, index)
            batch.append(LogRecord(index, 2, c.encode_command(command)))
            state.apply_entry(index, command, NOW)
            prints[index] = fingerprint(state)
        wal.append(batch)
        if rng.random() < 0.9:  # the last batch may be written but never synced
            wal.sync()
            acknowledged = index
            if rng.random() < 0.15:
                save_snapshot(snap_dir, Snapshot(index, 2, state.to_snapshot_bytes()))
                if rng.random() < 0.5:
                    wal.compact(index)
    wal.close()
    crash(rng, wal_dir, snap_dir, acknowledged)

    snapshot = load_latest_snapshot(snap_dir)
    recovered = (
        StoreState()
        if snapshot is None
        else StoreState.from_snapshot_bytes(snapshot.data, snapshot.index)
    )
    _, records = WriteAheadLog.open(wal_dir)
    for record in records:
        if record.index > recovered.applied_index:
            recovered.apply_entry(record.index, c.decode_command(record.payload), NOW)
    assert recovered.applied_index >= acknowledged, "an acknowledged entry was lost"
    assert fingerprint(recovered) == prints[recovered.applied_index], "state differs"


def crash(rng: random.Random, wal_dir: Path, snap_dir: Path, acknowledged: int) -> None:
    """Lose or tear what was not synced; maybe leave a half-written snapshot."""
    segments = sorted(wal_dir.glob("*.wal"))
    if segments and rng.random() < 0.7:
        last = segments[-1]
        data = last.read_bytes()
        synced = _synced_length(data, acknowledged)
        cut = rng.randint(synced, len(data))
        tail = os.urandom(rng.randint(0, 40)) if rng.random() < 0.3 else b""
        last.write_bytes(data[:cut] + tail)
    if rng.random() < 0.2:
        (snap_dir / "0000000000000002-0000000000999999.snap.tmp").write_bytes(os.urandom(64))


def _synced_length(data: bytes, acknowledged: int) -> int:
    """Byte length of the segment prefix holding records <= acknowledged (24-byte header,
    then length u32 | crc u32 | type u8 | index u64 | ...)."""
    offset = 24
    while offset + 17 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        index = int.from_bytes(data[offset + 9 : offset + 17], "little")
        if index > acknowledged:
            break
        offset += 8 + length
    return min(offset, len(data))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_recovery_after_a_crash_keeps_every_acknowledged_entry(seed: int, tmp_path: Path) -> None:
    try:
        run_seed(seed, tmp_path)
    except AssertionError as error:
        raise AssertionError(
            f"{error} (seed {seed}; replay: .venv/bin/pytest "
            f"'tests/sim/test_durability.py::test_recovery_after_a_crash_keeps_every_"
            f"acknowledged_entry[{seed}]')"
        ) from error
