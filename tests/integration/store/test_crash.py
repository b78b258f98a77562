"""Crash recovery of `dockyard store serve`: kill -9 under load, torn and corrupt WALs, torn
snapshots, and TTL deadlines across a restart.

Every test runs the real server process on loopback and judges it only from the outside: what
HTTP acknowledged before the crash must be readable, with the same value and modifiedIndex,
after a restart on the same data dir. The WAL and snapshot files are damaged by hand, using the
on-disk format documented in `dockyard/store/wal.py` and `snapshot.py` (parsed here
independently, so a silent format change shows up too).

Rules: no fixed sleeps where a condition can be awaited (acks are counted, watches awaited,
process exits waited for); randomness comes from one seed (DOCKYARD_CRASH_SEED overrides),
printed in every failure message; every process started is stopped by PID in a fixture.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from crc32c import crc32c

from tests.support.servers import ServerProcess, restart, start_dockyard

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SEED = int(os.environ.get("DOCKYARD_CRASH_SEED", "20261129"))
WRITERS = 32
# About 1.5 s of load on the shared 2-core machine (measured ~4,000 acks/s with 32 writers).
ACKS_BEFORE_KILL = 5000
LOAD_DEADLINE_S = 30.0
REQUEST_TIMEOUT_S = 15.0
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# --- on-disk formats (from the module docstrings of wal.py and snapshot.py) --------------------

WAL_HEADER = struct.Struct("<8sIIQ")  # magic, version, reserved, first_index
WAL_FRAME = struct.Struct("<II")  # length, crc32c(type + payload)
WAL_ENTRY_HEAD = struct.Struct("<BQQ")  # type, index, term
WAL_MAGIC = b"DYKDWAL\x00"


@dataclass(frozen=True)
class WalRecord:
    offset: int  # where the frame starts in its segment
    size: int  # frame header + type + payload
    index: int
    payload: bytes

    def command(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.payload)
        return decoded


def wal_segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "member" / "wal").glob("*.wal"))


def read_wal_segment(path: Path) -> list[WalRecord]:
    """Every record of an intact segment; fails the test if the segment does not parse."""
    data = path.read_bytes()
    magic, version, _reserved, first_index = WAL_HEADER.unpack_from(data, 0)
    assert (magic, version) == (WAL_MAGIC, 1), f"{path}: bad segment header"
    assert first_index == int(path.stem), f"{path}: header says first index {first_index}"
    records = []
    offset = WAL_HEADER.size
    while offset < len(data):
        length, crc = WAL_FRAME.unpack_from(data, offset)
        body = data[offset + WAL_FRAME.size : offset + WAL_FRAME.size + length]
        assert len(body) == length and crc32c(body) == crc, f"{path}: bad record at {offset}"
        record_type, index, _term = WAL_ENTRY_HEAD.unpack_from(body, 0)
        assert record_type == 1, f"{path}: record type {record_type} at {offset}"
        size = WAL_FRAME.size + length
        records.append(WalRecord(offset, size, index, body[WAL_ENTRY_HEAD.size :]))
        offset += size
    return records


def snapshot_files(data_dir: Path) -> list[Path]:
    """`<term>-<index>.snap` files, oldest index first."""
    return sorted(
        (data_dir / "member" / "snap").glob("*.snap"), key=lambda p: int(p.stem.split("-")[1])
    )


# --- a small HTTP client (http.client: one connection per call, nothing hidden) ---------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def etcd_index(self) -> int:
        return int(self.headers["x-etcd-index"])


def call(
    server: ServerProcess,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Reply:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        body = urlencode(form) if form is not None else None
        conn.request(method, path, body=body, headers=FORM if form is not None else {})
        response = conn.getresponse()
        payload = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, payload)
    finally:
        conn.close()


def put(server: ServerProcess, key: str, value: str, **params: str) -> Reply:
    reply = call(server, "PUT", f"/v2/keys{key}", {"value": value, **params})
    assert reply.status in (200, 201), f"PUT {key}: {reply}\n{server.log()}"
    return reply


def flatten(node: dict[str, Any], out: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """key -> (value, modifiedIndex) for every file below `node`."""
    for child in node.get("nodes", []):
        if child.get("dir"):
            flatten(child, out)
        else:
            out[child["key"]] = (child["value"], child["modifiedIndex"])
    return out


def read_tree(server: ServerProcess, prefix: str) -> tuple[dict[str, tuple[str, int]], int]:
    reply = call(server, "GET", f"/v2/keys{prefix}?recursive=true")
    assert reply.status == 200, f"GET {prefix}: {reply}\n{server.log()}"
    return flatten(reply.json["node"], {}), reply.etcd_index


def parse_expiration(text: str) -> float:
    """Go RFC3339Nano (zeros trimmed, up to 9 digits) to Unix seconds."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + (float(f"0.{fraction}") if fraction else 0.0)


# --- process bookkeeping ----------------------------------------------------------------------


@dataclass
class Servers:
    base: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(self, extra: tuple[str, ...] = ()) -> ServerProcess:
        server = start_dockyard(self.base, name="crash", extra=extra)
        self.started.append(server)
        return server

    def restart(self, server: ServerProcess, wait: bool = True) -> ServerProcess:
        again = restart(server, wait=wait)
        self.started.append(again)
        return again


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    tracker = Servers(tmp_path)
    try:
        yield tracker
    finally:
        for server in tracker.started:
            server.stop()


def context(server: ServerProcess, seed: int = SEED) -> str:
    return (
        f"(seed {seed}: DOCKYARD_CRASH_SEED={seed} to replay)\n--- server log ---\n{server.log()}"
    )


# --- kill -9 under 32 concurrent writers ------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    key: str
    value: str
    modified_index: int


@dataclass
class Load:
    """The shared record of a write load: what was acknowledged and what was attempted."""

    acks: list[Ack] = field(default_factory=list)
    attempted: dict[int, int] = field(default_factory=dict)  # writer -> last n sent
    failures: list[str] = field(default_factory=list)  # non-2xx answers: never expected
    stop: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, ack: Ack) -> None:
        with self.changed:
            self.acks.append(ack)
            self.changed.notify_all()


def writer(server: ServerProcess, number: int, load: Load, seed: int) -> None:
    """PUT /crash/w<number>/<n> for n = 0, 1, ... until stopped or the server dies."""
    rng = random.Random(seed * 1000 + number)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_S)
    n = 0
    try:
        while not load.stop.is_set():
            key = f"/crash/w{number}/{n}"
            # Values of varied size and script, so records straddle page and buffer boundaries.
            value = f"w{number}-{n}-" + "".join(
                rng.choice("abcxyz019 &=+%é✓") for _ in range(rng.randrange(0, 600))
            )
            load.attempted[number] = n
            try:
                conn.request("PUT", f"/v2/keys{key}", urlencode({"value": value}), FORM)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                return  # the server died: this write's fate is unknown, and that is allowed
            if response.status not in (200, 201):
                with load.changed:
                    load.failures.append(f"PUT {key} -> {response.status} {body[:200]!r}")
                    load.changed.notify_all()
                return
            load.record(Ack(key, value, json.loads(body)["node"]["modifiedIndex"]))
            n += 1
    finally:
        conn.close()


def kill_under_load(server: ServerProcess, seed: int) -> Load:
    load = Load()
    threads = [
        threading.Thread(target=writer, args=(server, i, load, seed), name=f"crash-writer-{i}")
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        with load.changed:
            reached = load.changed.wait_for(
                lambda: len(load.acks) >= ACKS_BEFORE_KILL or bool(load.failures),
                timeout=LOAD_DEADLINE_S,
            )
        server.kill9()
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
    assert not load.failures, f"writes failed under load: {load.failures[:5]} {context(server)}"
    assert reached, f"only {len(load.acks)} acks in {LOAD_DEADLINE_S}s {context(server)}"
    assert not any(t.is_alive() for t in threads), "a writer hung after kill -9"
    return load


def check_recovered(server: ServerProcess, load: Load, seed: int) -> None:
    present, store_index = read_tree(server, "/crash")
    where = context(server, seed)
    acked_indexes = [ack.modified_index for ack in load.acks]
    assert len(set(acked_indexes)) == len(acked_indexes), f"two acks share an index {where}"

    lost = [a for a in load.acks if a.key not in present]
    changed = [
        a for a in load.acks if a.key in present and present[a.key] != (a.value, a.modified_index)
    ]
    assert not lost, f"{len(lost)} of {len(load.acks)} acked writes lost, e.g. {lost[:3]} {where}"
    assert not changed, (
        f"{len(changed)} acked writes differ after restart, e.g. "
        f"{[(a, present[a.key]) for a in changed[:3]]} {where}"
    )
    # Nothing that was never sent may appear: a writer sends n+1 only after n was acked, so at
    # most its last attempted write (in flight at the kill) may be present unacknowledged.
    acked_keys = {a.key for a in load.acks}
    for key in present:
        if not key.startswith("/crash/w"):
            continue  # written after a previous recovery check
        number, n = key.removeprefix("/crash/w").split("/")
        assert key in acked_keys or int(n) == load.attempted[int(number)], (
            f"{key} present but neither acknowledged nor in flight {where}"
        )
    assert store_index >= max(acked_indexes), (
        f"store index {store_index} < largest acked index {max(acked_indexes)} {where}"
    )
    after = put(server, "/crash/after-restart", "new")
    assert after.json["node"]["modifiedIndex"] > store_index, f"index went back {where}"
    assert after.json["node"]["modifiedIndex"] == after.etcd_index, where


def test_kill9_under_concurrent_writers_loses_no_acknowledged_write(servers: Servers) -> None:
    server = servers.start()
    load = kill_under_load(server, SEED)
    server = servers.restart(server)
    check_recovered(server, load, SEED)


def test_kill9_with_frequent_snapshots_loses_no_acknowledged_write(servers: Servers) -> None:
    server = servers.start(extra=("--snapshot-count", "50"))
    load = kill_under_load(server, SEED + 1)
    snaps = snapshot_files(server.data_dir)
    # KEEP_SNAPSHOTS=3 are kept; their indexes prove snapshots kept being taken during the load.
    assert len(snaps) >= 2, f"no snapshots taken: {snaps} {context(server, SEED + 1)}"
    newest_index = int(snaps[-1].stem.split("-")[1])
    assert newest_index >= ACKS_BEFORE_KILL // 2, f"snapshots stopped early: {snaps}"
    server = servers.restart(server)
    check_recovered(server, load, SEED + 1)
    # A second crash right after recovery from a snapshot must also lose nothing.
    server.kill9()
    server = servers.restart(server)
    check_recovered(server, load, SEED + 1)


# --- torn WAL tail ----------------------------------------------------------------------------


def write_sequence(server: ServerProcess, prefix: str, count: int, rng: random.Random) -> list[Ack]:
    acks = []
    for n in range(count):
        value = f"{n}-" + "".join(rng.choice("abc✓") for _ in range(rng.randrange(0, 80)))
        reply = put(server, f"{prefix}/{n}", value)
        acks.append(Ack(f"{prefix}/{n}", value, reply.json["node"]["modifiedIndex"]))
    return acks


def record_of_key(records: list[WalRecord], key: str) -> WalRecord:
    matching = [r for r in records if r.command().get("key") == key]
    assert len(matching) == 1, f"{key}: {len(matching)} WAL records"
    return matching[0]


TEAR: dict[str, Callable[[Path, WalRecord, random.Random], None]] = {}


def tear(name: str) -> Callable[[Callable[[Path, WalRecord, random.Random], None]], Any]:
    def register(fn: Callable[[Path, WalRecord, random.Random], None]) -> Any:
        TEAR[name] = fn
        return fn

    return register


@tear("garbage-appended")
def _append_garbage(segment: Path, last: WalRecord, rng: random.Random) -> None:
    with segment.open("ab") as f:
        f.write(rng.randbytes(rng.randrange(1, 300)))


@tear("zeros-appended")
def _append_zeros(segment: Path, last: WalRecord, rng: random.Random) -> None:
    with segment.open("ab") as f:  # a file system that extended the file but lost the data
        f.write(b"\0" * 4096)


@tear("cut-mid-payload")
def _cut_mid_payload(segment: Path, last: WalRecord, rng: random.Random) -> None:
    os.truncate(segment, last.offset + rng.randrange(WAL_FRAME.size + 1, last.size))


@tear("cut-mid-frame-header")
def _cut_mid_frame(segment: Path, last: WalRecord, rng: random.Random) -> None:
    os.truncate(segment, last.offset + rng.randrange(1, WAL_FRAME.size))


@pytest.mark.parametrize("how", sorted(TEAR))
def test_torn_wal_tail_is_cut_and_earlier_writes_survive(servers: Servers, how: str) -> None:
    seed = SEED + 7
    rng = random.Random(seed)
    server = servers.start()
    acks = write_sequence(server, "/torn", 25, rng)
    server.stop()
    segment = wal_segments(server.data_dir)[-1]
    records = read_wal_segment(segment)
    last = record_of_key(records, acks[-1].key)
    assert last == records[-1], "the last PUT should be the last WAL record"
    TEAR[how](segment, last, rng)
    lost_last = how.startswith("cut")

    server = servers.restart(server)
    where = context(server, seed)
    present, store_index = read_tree(server, "/torn")
    survivors = acks[:-1] if lost_last else acks
    for ack in survivors:
        assert present.get(ack.key) == (ack.value, ack.modified_index), f"{ack} {where}"
    if lost_last:
        assert acks[-1].key not in present, f"a torn record was applied {where}"
        assert store_index == acks[-2].modified_index, where
    else:
        assert store_index == acks[-1].modified_index, where
    # The log continues cleanly after the cut, and the repair itself is durable.
    after = put(server, "/torn/after", "x")
    assert after.json["node"]["modifiedIndex"] == store_index + 1, where
    server.stop()
    assert read_wal_segment(segment)[-1].command().get("key") == "/torn/after", where
    server = servers.restart(server)
    again, _ = read_tree(server, "/torn")
    assert again == {**present, "/torn/after": ("x", store_index + 1)}, context(server, seed)


# --- corruption before the tail -----------------------------------------------------------------


@pytest.mark.parametrize("field_name", ["payload", "crc", "length"])
def test_wal_corruption_before_the_tail_refuses_to_start(servers: Servers, field_name: str) -> None:
    seed = SEED + 11
    rng = random.Random(seed)
    server = servers.start()
    write_sequence(server, "/corrupt", 20, rng)
    server.stop()
    segment = wal_segments(server.data_dir)[-1]
    records = read_wal_segment(segment)
    victim = records[3]  # an early record, with many valid ones after it
    position = {
        "payload": victim.offset + WAL_FRAME.size + WAL_ENTRY_HEAD.size + 2,
        "crc": victim.offset + 4,
        "length": victim.offset + 3,  # the length's top byte: an implausible length
    }[field_name]
    data = bytearray(segment.read_bytes())
    data[position] ^= 0x40
    segment.write_bytes(bytes(data))

    server = servers.restart(server, wait=False)
    returncode = server.process.wait(timeout=30)
    output = server.log()
    assert returncode != 0, f"server started on a corrupt WAL:\n{output}"
    expected = f"WAL corrupt: {segment} at offset {victim.offset}"
    assert expected in output, f"want {expected!r} in the output:\n{output}"
    # Refusing must not "repair" anything: the evidence stays on disk as it was.
    assert segment.read_bytes() == bytes(data), "the server modified a corrupt WAL"


# --- crash during snapshotting ------------------------------------------------------------------

SNAP_DAMAGE = ("partial-tmp", "newest-truncated", "newest-empty", "tmp-and-newest-truncated")


@pytest.mark.parametrize("damage", SNAP_DAMAGE)
def test_torn_snapshot_is_ignored_and_nothing_is_lost(servers: Servers, damage: str) -> None:
    seed = SEED + 13
    rng = random.Random(seed)
    server = servers.start(extra=("--snapshot-count", "50"))
    acks = write_sequence(server, "/snap", 170, rng)
    server.stop()
    snaps = snapshot_files(server.data_dir)
    assert len(snaps) >= 2, f"expected several snapshots, got {snaps} {context(server, seed)}"
    newest = snaps[-1]
    blob = newest.read_bytes()
    tmp = newest.with_name(
        f"{newest.stem.split('-')[0]}-{int(newest.stem.split('-')[1]) + 50:016d}.snap.tmp"
    )
    if "tmp" in damage:  # killed while writing the next snapshot, before its rename
        tmp.write_bytes(blob[: len(blob) // 2])
    if "truncated" in damage:  # renamed, but the data never reached the disk in full
        newest.write_bytes(blob[: len(blob) // 2])
    if "empty" in damage:
        newest.write_bytes(b"")

    server = servers.restart(server)  # raises with the server's log if it does not start
    where = context(server, seed)
    present, store_index = read_tree(server, "/snap")
    assert present == {a.key: (a.value, a.modified_index) for a in acks}, where
    assert store_index == acks[-1].modified_index, where
    assert not tmp.exists(), f"leftover {tmp.name} not cleaned up {where}"
    assert put(server, "/snap/after", "x").json["node"]["modifiedIndex"] == store_index + 1, where


# --- TTL deadlines survive a restart --------------------------------------------------------------


def watch(server: ServerProcess, key: str, wait_index: int, timeout_s: float = 15.0) -> Reply:
    reply = call(server, "GET", f"/v2/keys{key}?wait=true&waitIndex={wait_index}", None, timeout_s)
    assert reply.status == 200, f"watch {key}: {reply} {context(server)}"
    return reply


def test_ttl_deadlines_survive_a_restart_and_then_expire(servers: Servers) -> None:
    server = servers.start()
    long_reply = put(server, "/ttl/long", "v", ttl="3")
    long_node = long_reply.json["node"]
    expiration = long_node["expiration"]
    last_index = long_node["modifiedIndex"]
    assert long_node["ttl"] == 3, long_node

    # Kill at once: the deadline must come from the log, not from a clean shutdown.
    server.kill9()
    server = servers.restart(server)
    where = context(server)
    reply = call(server, "GET", "/v2/keys/ttl/long")
    assert reply.status == 200, f"the ttl key vanished over the restart {reply} {where}"
    node = reply.json["node"]
    assert node["expiration"] == expiration, f"deadline moved: {node} vs {expiration} {where}"
    assert 1 <= node["ttl"] <= 3, node
    assert (node["modifiedIndex"], node["createdIndex"]) == (last_index, last_index), node
    assert reply.etcd_index >= last_index, where

    event = watch(server, "/ttl/long", last_index + 1).json
    seen_at = time.time()
    assert event["action"] == "expire", event
    assert event["node"]["key"] == "/ttl/long", event
    assert event["node"]["modifiedIndex"] > last_index, event
    assert event["prevNode"]["expiration"] == expiration, event
    deadline = parse_expiration(expiration)
    # etcd never expires early and is at most ~0.5 s late (one SYNC tick), plus scheduling slack.
    assert seen_at >= deadline - 0.05, f"expired {deadline - seen_at:.3f}s early {where}"
    assert seen_at <= deadline + 2.0, f"expired {seen_at - deadline:.3f}s late {where}"
    expire_index = event["node"]["modifiedIndex"]

    server.stop()
    server = servers.restart(server)
    where = context(server)
    gone = call(server, "GET", "/v2/keys/ttl/long")
    assert gone.status == 404, f"an expired key came back after restart {gone} {where}"
    assert gone.etcd_index >= expire_index, f"index went back: {gone.etcd_index} {where}"


def test_ttl_deadline_that_passed_while_down_expires_after_restart(servers: Servers) -> None:
    server = servers.start()
    node = put(server, "/ttl/short", "v", ttl="1").json["node"]
    deadline = parse_expiration(node["expiration"])
    server.kill9()
    # The condition here *is* the wall clock: the deadline must pass while the server is down.
    remaining_s = deadline - time.time()
    if remaining_s > 0:
        time.sleep(remaining_s + 0.05)
    server = servers.restart(server)
    event = watch(server, "/ttl/short", node["modifiedIndex"] + 1).json
    assert event["action"] == "expire", f"{event} {context(server)}"
    assert event["prevNode"]["value"] == "v", event
    assert call(server, "GET", "/v2/keys/ttl/short").status == 404, context(server)
