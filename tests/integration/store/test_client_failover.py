"""The store client against a 3-member cluster (issue 6): told one member, it learns all
(`sync`), and when that member dies (kill -9) its requests and a watch in progress move to
the others without losing an event.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dockyard.store.client import Result, StoreClient
from tests.integration.store.test_cluster import await_leader, eventually
from tests.support.servers import start_dockyard_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WRITES = 40


def test_a_synced_client_fails_over_and_its_watch_misses_nothing(tmp_path: Path) -> None:
    with start_dockyard_cluster(tmp_path) as cluster:
        servers = cluster.members
        await_leader(list(servers.values()))
        m0, m1, m2 = servers["m0"], servers["m1"], servers["m2"]
        with (
            StoreClient(endpoints=m0.url) as watcher,
            StoreClient(endpoints=[m1.url, m2.url]) as writer,
        ):
            # Members publish their client URLs through the log, asynchronously (as etcd):
            # sync once every member's is in the membership.
            everyone = sorted(s.url for s in servers.values())
            eventually(
                lambda: True if sorted(watcher.sync()) == everyone else None,
                10.0,
                "every member's client URL in /v2/members",
            )
            start = writer.set("/jobs/start", "0").node.modified_index
            seen: list[Result] = []
            done = threading.Event()
            failure: list[BaseException] = []

            def watch() -> None:
                try:
                    for result in watcher.watch_iter("/jobs", index=start + 1, recursive=True):
                        seen.append(result)
                        if len(seen) == WRITES:
                            break
                except BaseException as error:  # reported by the test thread below
                    failure.append(error)
                finally:
                    done.set()

            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            indexes = []
            for i in range(WRITES):
                if i == WRITES // 2:
                    m0.kill9()  # the watcher's member, mid-stream
                indexes.append(writer.set(f"/jobs/{i}", str(i)).node.modified_index)
            assert done.wait(60), "the watch did not deliver every write"
            thread.join(5)
            assert not failure, failure
            assert [r.node.modified_index for r in seen] == indexes
            assert [r.node.value for r in seen] == [str(i) for i in range(WRITES)]
            # Plain requests through the synced client go to the members left.
            assert watcher.get("/jobs/0").node.value == "0"
            assert watcher.set("/jobs/after", "x").action == "set"
