"""A 3-member `dockyard store serve` cluster of real processes on loopback (issue 6).

Each test starts its own members (`start_dockyard_cluster`, which kills every process it
started by PID at the end, restarts included) and drives them over HTTP as a client would.
Waiting is polling with a deadline for a condition the servers report (a leader named, a
write applied), never a fixed sleep.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from dockyard.store.cluster.storage import RaftStorage
from tests.support.servers import DockyardCluster, ServerProcess, start_dockyard_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T = TypeVar("T")
LEADER_DEADLINE_S = 10.0
NO_QUORUM_ERROR = {
    "errorCode": 300,
    "message": "Raft Internal Error",
    "cause": "etcdserver: request timed out",
    "index": 0,
}


def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something other than None (external processes: there
    is no event to await)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except httpx.HTTPError:
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def leader_of(server: ServerProcess) -> str | None:
    r = httpx.get(f"{server.url}/v2/members/leader", timeout=2)
    return str(r.json()["id"]) if r.status_code == 200 else None


def await_leader(servers: list[ServerProcess], not_id: str | None = None) -> str:
    """The leader id once every server in `servers` names the same one (and not `not_id`)."""

    def probe() -> str | None:
        ids = {leader_of(s) for s in servers}
        if len(ids) == 1:
            (lead,) = ids
            if lead is not None and lead != not_id:
                return lead
        return None

    return eventually(probe, LEADER_DEADLINE_S, "one leader named by every member")


def member_ids(cluster: DockyardCluster) -> dict[str, str]:
    """Member name -> id, once every member has published its name."""

    def probe() -> dict[str, str] | None:
        any_member = next(iter(cluster.members.values()))
        members = httpx.get(f"{any_member.url}/v2/members", timeout=2).json()["members"]
        names = {m["name"]: m["id"] for m in members}
        return names if set(names) == set(cluster.members) else None

    return eventually(probe, LEADER_DEADLINE_S, "every member's name published")


def put(server: ServerProcess, key: str, value: str, timeout_s: float = 10) -> httpx.Response:
    return httpx.put(f"{server.url}/v2/keys{key}", data={"value": value}, timeout=timeout_s)


def get(server: ServerProcess, key: str, quorum: bool = False) -> dict[str, Any]:
    params = {"quorum": "true"} if quorum else {}
    r = httpx.get(f"{server.url}/v2/keys{key}", params=params, timeout=10)
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DockyardCluster]:
    with start_dockyard_cluster(tmp_path) as started:
        await_leader(list(started.members.values()))
        yield started


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:12]}"


def test_members_leader_and_stats(cluster: DockyardCluster) -> None:
    servers = list(cluster.members.values())
    ids = member_ids(cluster)
    lead = await_leader(servers)
    assert lead in ids.values()
    members = httpx.get(f"{servers[0].url}/v2/members", timeout=2).json()["members"]
    assert {m["name"]: m["clientURLs"] for m in members} == {
        name: [s.url] for name, s in cluster.members.items()
    }
    for name, server in cluster.members.items():
        stats = httpx.get(f"{server.url}/v2/stats/leader", timeout=2)
        self_stats = httpx.get(f"{server.url}/v2/stats/self", timeout=2).json()
        assert self_stats["leaderInfo"]["leader"] == lead
        if ids[name] == lead:
            assert stats.status_code == 200
            assert set(stats.json()["followers"]) == set(ids.values()) - {lead}
            assert self_stats["state"] == "StateLeader"
        else:
            # etcd 3.4 answers followers so (docs/store.md, etcd-v2-behaviour.md §11).
            assert stats.status_code == 403
            assert stats.json() == {"message": "not current leader"}
            assert self_stats["state"] == "StateFollower"
        health = httpx.get(f"{server.url}/health", timeout=2)
        assert (health.status_code, health.json()) == (200, {"health": "true"})


def test_writes_through_each_member_are_visible_on_all(
    cluster: DockyardCluster, prefix: str
) -> None:
    servers = list(cluster.members.values())
    for i, server in enumerate(servers):
        r = put(server, f"{prefix}/k{i}", f"v{i}")
        assert r.status_code == 201, r.text
    last_index = int(r.headers["X-Etcd-Index"])
    for server in servers:
        # A quorum GET is linearizable: it must see every acknowledged write at once.
        for i in range(len(servers)):
            assert get(server, f"{prefix}/k{i}", quorum=True)["node"]["value"] == f"v{i}"
        # A plain GET is served locally; the member applies the writes soon after.
        eventually(
            lambda s=server: get(s, f"{prefix}/k2") if "node" in get(s, f"{prefix}/k2") else None,
            5,
            "the last write applied on every member",
        )
        assert int(httpx.get(f"{server.url}/v2/keys/", timeout=2).headers["X-Etcd-Index"]) >= (
            last_index
        )


def test_quorum_get_on_a_follower_sees_the_latest_write(
    cluster: DockyardCluster, prefix: str
) -> None:
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    leader = next(s for n, s in cluster.members.items() if ids[n] == lead)
    followers = [s for n, s in cluster.members.items() if ids[n] != lead]
    for i in range(20):
        assert put(leader, f"{prefix}/k", str(i)).status_code in (200, 201)
        for follower in followers:
            assert get(follower, f"{prefix}/k", quorum=True)["node"]["value"] == str(i)


def test_kill_leader_new_leader_and_restart_catches_up(
    cluster: DockyardCluster, prefix: str
) -> None:
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    old_name = next(n for n in cluster.members if ids[n] == lead)
    assert put(cluster.members[old_name], f"{prefix}/before", "1").status_code == 201
    cluster.members[old_name].kill9()
    survivors = [s for n, s in cluster.members.items() if n != old_name]
    started = time.monotonic()
    # A write sent at once goes to a member that still believes in the dead leader: its
    # proposal is forwarded there and lost, and is proposed again to the next leader.
    r = put(survivors[0], f"{prefix}/during", "x")
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 5, "a write during failover waited for its timeout"
    new_lead = await_leader(survivors, not_id=lead)
    failover_s = time.monotonic() - started
    assert new_lead != lead
    for i, server in enumerate(survivors):
        r = put(server, f"{prefix}/after{i}", "x")
        assert r.status_code == 201, r.text
        assert get(server, f"{prefix}/before", quorum=True)["node"]["value"] == "1"
    restarted = cluster.restart(old_name)
    # It catches up from the leader: its local (plain) reads show the writes it missed.
    for i in range(len(survivors)):
        eventually(
            lambda i=i: True if "node" in get(restarted, f"{prefix}/after{i}") else None,
            LEADER_DEADLINE_S,
            "the restarted member to catch up",
        )
    assert get(restarted, f"{prefix}/before")["node"]["value"] == "1"
    r = put(restarted, f"{prefix}/from-restarted", "y")
    assert r.status_code == 201, r.text
    assert await_leader(list(cluster.members.values())) == new_lead
    assert failover_s < LEADER_DEADLINE_S


def test_without_quorum_writes_fail_and_health_is_false(
    cluster: DockyardCluster, prefix: str
) -> None:
    names = list(cluster.members)
    survivor = cluster.members[names[0]]
    assert put(survivor, f"{prefix}/k", "1").status_code == 201
    for name in names[1:]:
        cluster.members[name].kill9()

    def unhealthy() -> dict[str, str] | None:
        r = httpx.get(f"{survivor.url}/health", timeout=2)
        return dict(r.json()) if r.status_code == 503 else None

    # The survivor loses its leader within an election timeout (a leader steps down by
    # check-quorum; a follower stops hearing heartbeats).
    assert eventually(unhealthy, LEADER_DEADLINE_S, "/health to say 503") == {"health": "false"}
    r = httpx.get(f"{survivor.url}/v2/members/leader", timeout=2)
    assert (r.status_code, r.json()) == (503, {"message": "During election"})
    # As etcd 3.4: the write waits 5 s + 2 election timeouts, then error 300.
    started = time.monotonic()
    r = put(survivor, f"{prefix}/k", "2", timeout_s=20)
    assert time.monotonic() - started >= 6.5
    assert (r.status_code, r.json()) == (500, NO_QUORUM_ERROR)
    # Plain reads still answer from local (possibly stale) state.
    assert get(survivor, f"{prefix}/k")["node"]["value"] == "1"


def test_python_etcd_client_against_the_cluster(cluster: DockyardCluster, prefix: str) -> None:
    import etcd

    servers = list(cluster.members.values())
    hosts = tuple(
        (s.url.split("//")[1].split(":")[0], int(s.url.rsplit(":", 1)[1])) for s in servers
    )
    client = etcd.Client(host=hosts, allow_reconnect=True, read_timeout=10)

    def published_everywhere() -> bool | None:
        # A member lists another's client URL once that member's publish entry is applied
        # on it (as etcd's attributes); the client reads whichever member it asks.
        listed = [httpx.get(f"{s.url}/v2/machines", timeout=2).text for s in servers]
        return True if all(len(t.split(", ")) == len(servers) for t in listed) else None

    eventually(published_everywhere, LEADER_DEADLINE_S, "every client URL on every member")
    client.write(f"{prefix}/py", "hello")
    assert client.read(f"{prefix}/py", quorum=True).value == "hello"
    assert len(client.machines) == 3


def test_watch_on_a_follower_and_one_expiry_for_all(cluster: DockyardCluster, prefix: str) -> None:
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    leader = next(s for n, s in cluster.members.items() if ids[n] == lead)
    follower = next(s for n, s in cluster.members.items() if ids[n] != lead)
    r = httpx.put(
        f"{follower.url}/v2/keys{prefix}/ttl", data={"value": "v", "ttl": "1"}, timeout=10
    )
    assert r.status_code == 201, r.text
    set_index = r.json()["node"]["modifiedIndex"]
    r = put(leader, f"{prefix}/w", "x")
    # A watch on a follower sees a write made through the leader (live or from the history).
    watched = httpx.get(
        f"{follower.url}/v2/keys{prefix}/w",
        params={"wait": "true", "waitIndex": str(set_index + 1)},
        timeout=10,
    ).json()
    assert (watched["action"], watched["node"]["value"]) == ("set", "x")
    # The leader alone decides expiry, through the log: every member has the same event.
    events = [
        httpx.get(
            f"{s.url}/v2/keys{prefix}/ttl",
            params={"wait": "true", "waitIndex": str(set_index + 1)},
            timeout=10,
        ).json()
        for s in cluster.members.values()
    ]
    assert [e["action"] for e in events] == ["expire"] * 3
    assert len({e["node"]["modifiedIndex"] for e in events}) == 1


def test_sigterm_of_the_leader_hands_leadership_over(cluster: DockyardCluster, prefix: str) -> None:
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    name = next(n for n in cluster.members if ids[n] == lead)
    leader = cluster.members[name]
    leader.stop()  # SIGTERM: as etcd 3.4, the leader transfers leadership before exiting
    assert leader.process.returncode == 0, leader.log()
    assert "handing leadership to" in leader.log()
    survivors = [s for n, s in cluster.members.items() if n != name]
    new_lead = await_leader(survivors, not_id=lead)
    assert new_lead in ids.values()
    assert put(survivors[0], f"{prefix}/k", "v").status_code == 201


SNAPSHOT_COUNT = 50


@pytest.fixture
def snapshotting_cluster(tmp_path: Path) -> Iterator[DockyardCluster]:
    with start_dockyard_cluster(tmp_path, extra=["--snapshot-count", str(SNAPSHOT_COUNT)]) as c:
        await_leader(list(c.members.values()))
        yield c


def write_keys(server: ServerProcess, prefix: str, count: int) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(count):
            r = client.put(f"/v2/keys{prefix}/k{i:04d}", data={"value": str(i)})
            assert r.status_code == 201, r.text


def keys_under(server: ServerProcess, prefix: str) -> dict[str, str]:
    r = httpx.get(f"{server.url}/v2/keys{prefix}", params={"recursive": "true"}, timeout=10)
    if r.status_code != 200:
        return {}
    return {n["key"]: n["value"] for n in r.json()["node"].get("nodes", [])}


def start_lines(server: ServerProcess) -> list[tuple[int, int]]:
    """(snapshot index, entries replayed after it) for each start logged by the member."""
    found = re.findall(r"snapshot at (\d+), (\d+) entries after it", server.log())
    return [(int(index), int(count)) for index, count in found]


def test_a_restarted_member_starts_from_its_snapshot(
    snapshotting_cluster: DockyardCluster, prefix: str
) -> None:
    cluster = snapshotting_cluster
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    leader = next(s for n, s in cluster.members.items() if ids[n] == lead)
    name = next(n for n in cluster.members if ids[n] != lead)
    write_keys(leader, prefix, 300)
    expected = {f"{prefix}/k{i:04d}": str(i) for i in range(300)}
    eventually(
        lambda: True if keys_under(cluster.members[name], prefix) == expected else None,
        LEADER_DEADLINE_S,
        "the follower to apply every write",
    )
    cluster.members[name].stop()
    snaps = list((cluster.members[name].data_dir / "member" / "snap").glob("*.snap"))
    assert snaps, "no snapshot was taken"
    storage, on_disk = RaftStorage.open(cluster.members[name].data_dir / "member" / "raft", 2)
    storage.close()
    restarted = cluster.restart(name)
    # It starts from a snapshot near the end and replays only the entries after it.
    snapshot_index, replayed = start_lines(restarted)[-1]
    assert snapshot_index >= 300 - SNAPSHOT_COUNT
    assert replayed < SNAPSHOT_COUNT
    # The log was compacted: it holds at most two snapshot intervals (and the writes of the
    # Ready in progress then), not the 300+ entries written.
    assert on_disk.entries[0].index > 300 - 3 * SNAPSHOT_COUNT
    assert len(on_disk.entries) < 3 * SNAPSHOT_COUNT
    assert keys_under(restarted, prefix) == expected
    assert put(restarted, f"{prefix}/after", "x").status_code == 201
    assert get(restarted, f"{prefix}/after", quorum=True)["node"]["value"] == "x"


def test_a_follower_behind_the_compaction_point_catches_up_by_snapshot(
    snapshotting_cluster: DockyardCluster, prefix: str
) -> None:
    cluster = snapshotting_cluster
    ids = member_ids(cluster)
    lead = await_leader(list(cluster.members.values()))
    leader = next(s for n, s in cluster.members.items() if ids[n] == lead)
    name = next(n for n in cluster.members if ids[n] != lead)
    cluster.members[name].kill9()
    write_keys(leader, prefix, 300)  # six snapshot intervals: compacted far past it
    assert put(leader, f"{prefix}/last", "final").status_code == 201
    restarted = cluster.restart(name)
    expected = keys_under(leader, prefix)
    assert len(expected) == 301
    eventually(
        lambda: True if keys_under(restarted, prefix) == expected else None,
        LEADER_DEADLINE_S,
        "the restarted follower to catch up",
    )
    assert "installed the leader's snapshot" in restarted.log()
    for server in cluster.members.values():
        assert keys_under(server, prefix) == expected
    assert get(restarted, f"{prefix}/last", quorum=True)["node"]["value"] == "final"
    # And it goes on from there: a write through it, read back everywhere.
    assert put(restarted, f"{prefix}/next", "n").status_code == 201
    for server in cluster.members.values():
        assert get(server, f"{prefix}/next", quorum=True)["node"]["value"] == "n"
