"""The Raft core under a seeded simulator: many seeds, invariants checked at every step.

Default: 10,000 seeds (`DOCKYARD_RAFT_SEEDS` to change, `DOCKYARD_RAFT_SEED_START` to shift),
spread over the machine's cores. A failure prints the seed and the command that replays it:
    DOCKYARD_RAFT_SEED=<n> pytest tests/sim/test_raft_sim.py -k replay
(with DOCKYARD_RAFT_TRACE=1 for the full trace). For longer soaks:
    python -m tests.sim.raft_soak --seeds 1000000
"""

from __future__ import annotations

import os

import pytest

from tests.sim.raft_sim.scenario import SimFailure, run_seed
from tests.sim.raft_soak import run_many

pytestmark = pytest.mark.sim
SEEDS = int(os.environ.get("DOCKYARD_RAFT_SEEDS", "10000"))
SEED_START = int(os.environ.get("DOCKYARD_RAFT_SEED_START", "0"))


@pytest.mark.timeout(900)  # ~90 s on 2 idle cores; room for a loaded CI machine
def test_raft_sim_seeds() -> None:
    summary = run_many(range(SEED_START, SEED_START + SEEDS), jobs=os.cpu_count() or 1)
    assert not summary.failures, (
        f"{len(summary.failures)} of {SEEDS} seeds failed; the first:\n{summary.failures[0]}"
    )
    assert summary.seeds == SEEDS
    # The scenarios must actually exercise Raft, not idle.
    assert summary.leaders > SEEDS and summary.acked > SEEDS


if "DOCKYARD_RAFT_SEED" in os.environ:
    # Collected only when asked for, so a normal run has no skipped test.

    def test_raft_sim_replay() -> None:
        seed = int(os.environ["DOCKYARD_RAFT_SEED"])
        trace = bool(os.environ.get("DOCKYARD_RAFT_TRACE"))
        failure: SimFailure | None = None
        try:
            print(run_seed(seed, trace=trace))
        except SimFailure as error:
            failure = error
        if failure is not None:
            pytest.fail(str(failure), pytrace=False)


def test_a_seed_runs_the_same_twice() -> None:
    assert run_seed(7, trace=True) == run_seed(7, trace=True)
