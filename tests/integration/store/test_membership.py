"""Runtime membership of a `dockyard store serve` cluster (issue 6): /v2/members add,
remove and update, members joining with --initial-cluster-state existing, and the
`dockyard store member` commands, on real processes on loopback.

Every process is started through `start_dockyard_cluster` (joins included), which kills
each one by PID at the end. Waiting polls a condition the servers report, with a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.store.test_cluster import await_leader, eventually, member_ids
from tests.support.servers import DockyardCluster, ServerProcess, start_dockyard_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JSON = {"Content-Type": "application/json"}
CATCH_UP_DEADLINE_S = 20.0
HEALTHY_DEADLINE_S = 30.0


def put(server: ServerProcess, key: str, value: str) -> httpx.Response:
    return httpx.put(f"{server.url}/v2/keys/{key}", data={"value": value}, timeout=15)


def local_value(server: ServerProcess, key: str) -> str | None:
    r = httpx.get(f"{server.url}/v2/keys/{key}", timeout=2)
    return str(r.json()["node"]["value"]) if r.status_code == 200 else None


def members_of(server: ServerProcess) -> dict[str, dict[str, object]]:
    listed = httpx.get(f"{server.url}/v2/members", timeout=2).json()["members"]
    return {str(m["id"]): m for m in listed}


def ctl(
    server: ServerProcess, group: str, command: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`dockyard store member add …` (etcdctl's member commands) against `server`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "store",
            group,
            command,
            "--endpoints",
            server.url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )


def running(cluster: DockyardCluster) -> list[ServerProcess]:
    return [s for s in cluster.members.values() if s.process.poll() is None]


def test_a_member_added_at_runtime_joins_and_a_removed_one_leaves(tmp_path: Path) -> None:
    with start_dockyard_cluster(tmp_path) as cluster:
        await_leader(list(cluster.members.values()))
        m0 = cluster.members["m0"]
        assert put(m0, "before", "1").status_code == 201
        # `member add` through the CLI, as an operator would (etcdctl's output).
        peer = cluster.new_peer_url()

        def add() -> subprocess.CompletedProcess[str] | None:
            # etcd's strict check: every member connected for 5 s before a change.
            result = ctl(m0, "member", "add", "m3", peer)
            return None if "unhealthy cluster" in result.stderr else result

        added = eventually(add, HEALTHY_DEADLINE_S, "the cluster healthy for changes")
        assert added.returncode == 0, added.stderr
        assert "Added member named m3 with ID" in added.stdout
        assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in added.stdout
        new_id = added.stdout.split("with ID ")[1].split()[0]
        assert members_of(m0)[new_id]["name"] == ""  # unstarted until it publishes
        m3 = cluster.join("m3", peer)
        # It catches up from the leader (snapshot and log) and serves what was written.
        eventually(lambda: local_value(m3, "before"), CATCH_UP_DEADLINE_S, "m3 caught up")
        ids = member_ids(cluster)
        assert ids["m3"] == new_id and len(members_of(m3)) == 4
        assert put(m3, "through-m3", "2").status_code == 201
        eventually(lambda: local_value(m0, "through-m3"), CATCH_UP_DEADLINE_S, "m0 sees it")

        # Remove the leader itself: the rest elect a new one and keep writing.
        leader = await_leader(running(cluster))
        leader_name = next(n for n, i in ids.items() if i == leader)
        other = next(s for n, s in cluster.members.items() if n != leader_name)
        removed = httpx.delete(f"{other.url}/v2/members/{leader}", timeout=15)
        assert removed.status_code == 204, removed.text
        gone = cluster.members[leader_name]
        gone.process.wait(timeout=30)  # a removed member stops, as etcd does
        left = running(cluster)
        assert len(left) == 3
        new_leader = await_leader(left, not_id=leader)
        assert new_leader != leader
        assert put(left[0], "after", "3").status_code == 201
        assert set(members_of(left[0])) == set(ids.values()) - {leader}
        again = httpx.delete(f"{left[0].url}/v2/members/{leader}", timeout=5)
        assert (again.status_code, again.json()) == (
            410,
            {"message": f"Member permanently removed: {leader}"},
        )
        # The joined member keeps its identity across a restart (member/identity.json).
        if leader_name != "m3":
            cluster.members["m3"].stop()
            m3 = cluster.restart("m3")
            eventually(lambda: local_value(m3, "after"), CATCH_UP_DEADLINE_S, "m3 restarted")
            assert members_of(m3)[new_id]["name"] == "m3"


def test_membership_errors_as_etcd_answers_them(tmp_path: Path) -> None:
    with start_dockyard_cluster(tmp_path) as cluster:
        await_leader(list(cluster.members.values()))
        m0 = cluster.members["m0"]
        ids = member_ids(cluster)
        taken = cluster.peer_url("m1")

        # etcd's strict check first: every member connected for 5 s before a change.
        def post_taken() -> httpx.Response | None:
            r = httpx.post(
                f"{m0.url}/v2/members", json={"peerURLs": [taken]}, headers=JSON, timeout=10
            )
            return r if r.status_code != 500 else None

        conflict = eventually(post_taken, HEALTHY_DEADLINE_S, "the cluster healthy for changes")
        assert (conflict.status_code, conflict.json()) == (
            409,
            {"message": "membership: peerURL exists"},
        )
        unknown = httpx.delete(f"{m0.url}/v2/members/abc", timeout=5)
        assert (unknown.status_code, unknown.json()) == (404, {"message": "No such member: abc"})
        # PUT moves a member's peer URLs (not a configuration change).
        moved = cluster.new_peer_url()
        update = ctl(m0, "member", "update", ids["m2"], moved)
        assert update.returncode == 0 and f"Updated member with ID {ids['m2']}" in update.stdout
        eventually(
            lambda: members_of(m0)[ids["m2"]]["peerURLs"] == [moved] or None,
            CATCH_UP_DEADLINE_S,
            "the new peer URL",
        )
        # A member that was never added cannot join.
        stranger = cluster.join("stranger", cluster.new_peer_url(), wait=False)
        assert stranger.process.wait(timeout=30) != 0
        assert "has not been added to the cluster" in stranger.log()
