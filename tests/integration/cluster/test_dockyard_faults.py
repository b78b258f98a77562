"""Real faults on a real dockyard store cluster, with every client operation checked for
linearizability (issue 6).

Each member is a `dockyard store serve` process in its own network namespace (the lab of
`tests/support/netns.py`); clients run as the observer. While client threads read (quorum),
write, create, compare-and-swap and compare-and-delete a few keys against random members,
a nemesis applies faults one after another: kill -9 of the leader, of a follower and of a
majority (then restarts with their data), SIGSTOP pauses, partitions cut with iptables
(both ways, one way, the leader isolated, a bridge where one member sees both sides), and
membership changes (a member removed and a new one added) under load. Between faults it
waits for the workload to make progress (a number of completed operations), never a fixed
time. Then everything heals, a final quorum read of every key is recorded, and the whole
history must be linearizable (Porcupine's algorithm, `tests/support/linearizability`):
no acknowledged write lost, no stale quorum read, no compare-and-swap against a value
that was not there.

The nemesis and the clients draw from one seeded RNG per run; a failure prints the seed,
and `DOCKYARD_FAULT_SEED=<seed>` replays the same schedule (timing still varies).
"""

from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.integration.cluster.conftest import (
    CLIENT_PORT,
    PEER_PORT,
    ArgvHook,
    HttpResult,
    NetnsCluster,
    wait_for,
)
from tests.support.linearizability.history import HistoryRecorder, assert_linearizable
from tests.support.linearizability.models import (
    ALREADY_EXISTS,
    COMPARE_FAILED,
    KEY_NOT_FOUND,
    OK,
    EtcdModel,
    EtcdOp,
    EtcdResult,
)
from tests.support.netns import Lab, Member

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

KEYS = ("k0", "k1", "k2")
CLIENTS = 4
REQUEST_TIMEOUT_S = 10.0  # above the members' 7 s "request timed out" without quorum
PROGRESS_TIMEOUT_S = 90.0
ERROR_CODES = {100: KEY_NOT_FOUND, 101: COMPARE_FAILED, 105: ALREADY_EXISTS}


def dockyard_argv_hook(initial: Sequence[str]) -> ArgvHook:
    """Members named in `initial` form the cluster; any other joins it when started
    (--initial-cluster-state existing), after the test has added it."""

    def hook(member: Member, cluster: Sequence[Member], data_dir: Path, token: str) -> list[str]:
        def peer(m: Member) -> str:
            return f"http://{m.address}:{PEER_PORT}"

        joining = member.name not in initial
        named = [m for m in cluster if m.name in initial or m.name == member.name]
        client = f"http://{member.address}:{CLIENT_PORT}"
        return [
            sys.executable, "-m", "dockyard", "store", "serve",
            "--name", member.name,
            "--data-dir", str(data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer(member),
            "--initial-advertise-peer-urls", peer(member),
            "--initial-cluster", ",".join(f"{m.name}={peer(m)}" for m in named),
            "--initial-cluster-state", "existing" if joining else "new",
            "--initial-cluster-token", f"dyl{token}",
        ]  # fmt: skip

    return hook


class Workload:
    """Client threads recording every operation; `completed` counts finished operations."""

    def __init__(self, cluster: NetnsCluster, targets: Callable[[], list[str]], seed: int):
        self.cluster = cluster
        self.targets = targets
        self.recorder: HistoryRecorder[EtcdOp, EtcdResult] = HistoryRecorder()
        self.seed = seed
        self.completed = 0
        self.acknowledged_writes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]
        self._failures: list[BaseException] = []
        self._next_client = CLIENTS

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S * 3)
        assert not self._failures, self._failures

    def wait_progress(self, operations: int, what: str) -> None:
        goal = self.completed + operations
        wait_for(lambda: self.completed >= goal, PROGRESS_TIMEOUT_S, f"{operations} ops ({what})")

    def _run(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        client = worker
        sequence = 0
        try:
            while not self._stop.is_set():
                sequence += 1
                op = self._pick(rng, f"w{worker}-{sequence}")
                member = rng.choice(self.targets())
                if self._do(client, member, op) == "info":
                    # Outcome unknown: that client may still act; continue as a new one.
                    with self._lock:
                        client, self._next_client = self._next_client, self._next_client + 1
        except BaseException as error:  # reported by stop()
            self._failures.append(error)

    @staticmethod
    def _pick(rng: random.Random, value: str) -> EtcdOp:
        key = rng.choice(KEYS)
        roll = rng.random()
        if roll < 0.35:
            return EtcdOp("get", key)
        if roll < 0.55:
            return EtcdOp("set", key, value)
        if roll < 0.65:
            return EtcdOp("create", key, value)
        # A compare against a value some client may have written recently.
        prev = f"w{rng.randrange(CLIENTS)}-{rng.randrange(1, 60)}"
        if roll < 0.9:
            return EtcdOp("cas", key, value, prev_value=prev)
        return EtcdOp("delete", key, prev_value=prev if rng.random() < 0.7 else None)

    def _do(self, client: int, member: str, op: EtcdOp) -> str:
        """Run one operation; return how it completed: "ok", "fail" (no effect) or "info"
        (outcome unknown)."""
        handle = self.recorder.invoke(client, op)
        result = self._request(member, op)
        completion = "ok"
        code = int(result.body.get("errorCode", 0)) if result.status >= 400 else 0
        if result.status in (200, 201):
            value = result.body.get("node", {}).get("value") if op.kind == "get" else None
            self.recorder.ok(handle, EtcdResult(OK, value))
            if op.kind != "get":
                with self._lock:
                    self.acknowledged_writes += 1
        elif code in ERROR_CODES:
            self.recorder.ok(handle, EtcdResult(ERROR_CODES[code]))
        elif op.kind == "get":
            self.recorder.fail(handle)  # a read that got no answer had no effect
            completion = "fail"
        else:
            self.recorder.info(handle)  # timed out, refused mid-way, member killed: unknown
            completion = "info"
        with self._lock:
            self.completed += 1
        return completion

    def _request(self, member: str, op: EtcdOp) -> HttpResult:
        path = f"/v2/keys/{op.key}"
        if op.kind == "get":
            return self.cluster.get(member, op.key, quorum=True, timeout_s=REQUEST_TIMEOUT_S)
        if op.kind == "delete":
            query = f"?prevValue={op.prev_value}" if op.prev_value is not None else ""
            return self.cluster.request(member, "DELETE", path + query, timeout_s=REQUEST_TIMEOUT_S)
        form = {"value": op.value or ""}
        if op.kind == "create":
            form["prevExist"] = "false"
        elif op.kind == "cas" and op.prev_value is not None:
            form["prevValue"] = op.prev_value
        return self.cluster.request(member, "PUT", path, form, timeout_s=REQUEST_TIMEOUT_S)

    def final_reads(self, member: str) -> None:
        """A quorum read of every key after the faults: what every acknowledged write must
        be consistent with."""
        for key in KEYS:

            def read(key: str = key) -> bool:
                return self._do(10_000, member, EtcdOp("get", key)) == "ok"

            wait_for(read, PROGRESS_TIMEOUT_S, f"a final quorum read of {key}")


def seed_for_run() -> int:
    text = os.environ.get("DOCKYARD_FAULT_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**31)


def check(workload: Workload, seed: int) -> None:
    for name, member in workload.cluster.members.items():
        log = member.log_path.read_text(errors="replace") if member.log_path.exists() else ""
        assert "Traceback" not in log, f"seed {seed}: {name} logged a traceback:\n{log[-3000:]}"
    history = workload.recorder.operations()
    assert workload.acknowledged_writes >= 20, (
        f"seed {seed}: only {workload.acknowledged_writes} writes acknowledged"
    )
    try:
        assert_linearizable(EtcdModel(), history, timeout_s=120.0)
    except AssertionError as error:
        raise AssertionError(f"seed {seed} (replay: DOCKYARD_FAULT_SEED={seed}): {error}") from None


def test_three_members_under_kills_pauses_and_partitions(
    make_lab: Callable[[int | Sequence[str]], Lab], tmp_path: Path
) -> None:
    seed = seed_for_run()
    rng = random.Random(seed)
    lab = make_lab(3)
    names = list(lab.members)
    cluster = NetnsCluster(lab, tmp_path, dockyard_argv_hook(names))
    cluster.start()
    cluster.wait_leader()
    workload = Workload(cluster, lambda: names, seed)
    workload.start()
    try:
        workload.wait_progress(30, "warm-up")

        leader = cluster.wait_leader()
        cluster.kill9(leader)  # the leader, with writes in flight
        cluster.wait_leader(among=[n for n in names if n != leader])
        workload.wait_progress(20, "after the leader died")
        cluster.start(leader)
        cluster.wait_leader()

        follower = rng.choice([n for n in names if n != cluster.wait_leader()])
        cluster.kill9(follower)
        workload.wait_progress(20, "a follower down")
        cluster.start(follower)

        leader = cluster.wait_leader()
        lab.isolate(leader)  # the old leader must step down; the others elect
        cluster.wait_leader(among=[n for n in names if n != leader], not_=leader)
        workload.wait_progress(20, "the leader isolated")
        lab.heal()
        cluster.wait_leader()

        paused = rng.choice(names)
        lab.pause(cluster.process(paused))
        workload.wait_progress(12, "a member paused")
        lab.resume(cluster.process(paused))
        cluster.wait_leader()

        leader = cluster.wait_leader()
        for other in names:
            if other != leader:
                lab.partition(leader, other, one_way=True)  # the leader is heard by no one
        workload.wait_progress(12, "one-way partition from the leader")
        lab.heal()
        cluster.wait_leader()

        majority = rng.sample(names, 2)
        for name in majority:
            cluster.kill9(name)
        workload.wait_progress(CLIENTS, "a majority down")
        for name in majority:
            cluster.start(name)
        cluster.wait_leader()
        workload.wait_progress(20, "after the majority came back")
    finally:
        workload.stop()
    lab.heal()
    workload.final_reads(cluster.wait_leader())
    check(workload, seed)


def test_five_members_bridge_partition_and_membership_under_load(
    make_lab: Callable[[int | Sequence[str]], Lab], tmp_path: Path
) -> None:
    seed = seed_for_run()
    rng = random.Random(seed)
    lab = make_lab(6)
    names = list(lab.members)
    initial, spare = names[:5], names[5]
    cluster = NetnsCluster(lab, tmp_path, dockyard_argv_hook(initial))
    for name in initial:
        cluster.members[name].process = lab.spawn(
            name, cluster.members[name].argv, log_path=cluster.members[name].log_path
        )
    for name in initial:
        cluster.wait_serving(name)
    cluster.wait_leader(among=initial)
    serving = list(initial)
    workload = Workload(cluster, lambda: list(serving), seed)
    workload.start()
    try:
        workload.wait_progress(30, "warm-up")

        # Bridge: the middle member sees both sides; a majority must still make progress.
        order = rng.sample(initial, 5)
        lab.split(order[:3], order[2:])
        workload.wait_progress(20, "bridge partition")
        lab.heal()
        cluster.wait_leader(among=initial)

        # Remove a follower under load, then add a new member and let it catch up.
        leader = cluster.wait_leader(among=initial)
        leaving = rng.choice([n for n in initial if n != leader])
        listed = cluster.request(leader, "GET", "/v2/members").body["members"]
        ids = {m["name"]: m["id"] for m in listed}
        serving.remove(leaving)

        def removed() -> bool:
            r = cluster.request(leader, "DELETE", f"/v2/members/{ids[leaving]}", timeout_s=15)
            return r.status in (204, 404, 410)

        wait_for(removed, PROGRESS_TIMEOUT_S, f"{leaving} removed")
        cluster.process(leaving).wait(timeout=30)  # a removed member stops
        workload.wait_progress(20, "after a removal")

        peer = f"http://{lab.address(spare)}:{PEER_PORT}"

        def added() -> bool:
            body = {"peerURLs": [peer]}
            r = cluster.request(leader, "POST", "/v2/members", timeout_s=15, json_body=body)
            return r.status == 201

        wait_for(added, PROGRESS_TIMEOUT_S, f"{spare} added")
        cluster.start(spare)
        serving.append(spare)
        workload.wait_progress(30, "the new member serving")
        cluster.wait_leader(among=serving)
    finally:
        workload.stop()
    lab.heal()
    workload.final_reads(cluster.wait_leader(among=serving))
    check(workload, seed)
