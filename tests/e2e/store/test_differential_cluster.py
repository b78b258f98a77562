"""The store's differential cases against clusters: a 3-member etcd 3.4 and a 3-member
dockyard store, each case sent to each cluster's leader (issue 6: "the differential tests of
the single-node issue also pass against a 3-member cluster").

Writes go through Raft on both sides, quorum reads through ReadIndex, TTL expiry through the
leader's log. Which member leads is chance, so member names are masked (`diff<n>`).
`/v2/stats/leader` names the followers by their (random) IDs and reports measured
latencies, so it is compared by structure in its own test instead of by the `stats` case.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.store.conftest import ServerPair
from tests.e2e.store.differential import Case, Client, case_ids, compare, run_pair
from tests.e2e.store.test_differential import CASES

CLUSTER_CASES = [c for c in CASES if c.name != "stats"]


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize("c", CLUSTER_CASES, ids=case_ids(CLUSTER_CASES))
def test_same_as_a_three_member_etcd(cluster_server_pair: ServerPair, c: Case) -> None:
    pair = cluster_server_pair
    reference, candidate = run_pair(pair.reference, pair.candidate, c, pair.pool)
    report = compare(c, reference, candidate)
    assert report is None, report


def leader_stats(client: Client) -> dict[str, Any]:
    response = client.request("GET", b"/v2/stats/leader")
    assert response.status == 200, response
    stats: dict[str, Any] = json.loads(response.body)
    return stats


def structure(stats: dict[str, Any], leader_id: str) -> list[Any]:
    followers = stats["followers"]
    return [
        stats["leader"] == leader_id,
        len(followers),
        sorted({tuple(sorted(f)) for f in followers.values()}),
        sorted({tuple(sorted(f["latency"])) for f in followers.values()}),
        sorted({tuple(sorted(f["counts"])) for f in followers.values()}),
        all(f["counts"]["success"] > 0 for f in followers.values()),
        all(isinstance(v, int | float) for f in followers.values() for v in f["latency"].values()),
    ]


@pytest.mark.e2e
def test_leader_stats_have_etcds_structure(cluster_server_pair: ServerPair) -> None:
    pair = cluster_server_pair
    shapes = []
    for client in (pair.reference, pair.candidate):
        leader = json.loads(client.request("GET", b"/v2/members/leader").body)["id"]
        shapes.append(structure(leader_stats(client), leader))
    assert shapes[1] == shapes[0]
    assert shapes[0][:2] == [True, 2]
