"""Soak the Raft simulator over many seeds, on every core.

    python -m tests.sim.raft_soak --seeds 1000000 [--start 0] [--jobs N]

Prints progress and, for each failure, the seed and the command that replays it; exits 1 if
any seed failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.sim.raft_sim.scenario import SimFailure, run_seed

CHUNK_SEEDS = 250


@dataclass
class Summary:
    seeds: int = 0
    leaders: int = 0
    committed: int = 0
    acked: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Summary) -> None:
        self.seeds += other.seeds
        self.leaders += other.leaders
        self.committed += other.committed
        self.acked += other.acked
        self.failures.extend(other.failures)


def run_chunk(seeds: list[int]) -> Summary:
    summary = Summary()
    for seed in seeds:
        summary.seeds += 1
        try:
            result = run_seed(seed)
        except SimFailure as failure:
            summary.failures.append(str(failure))
            continue
        summary.leaders += result.leaders
        summary.committed += result.committed
        summary.acked += result.acked
    return summary


def run_many(seeds: Iterable[int], jobs: int, progress: bool = False) -> Summary:
    all_seeds = list(seeds)
    chunks = [all_seeds[i : i + CHUNK_SEEDS] for i in range(0, len(all_seeds), CHUNK_SEEDS)]
    total = Summary()
    if jobs <= 1:
        for chunk in chunks:
            total.add(run_chunk(chunk))
        return total
    started = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        for done in pool.map(run_chunk, chunks):
            total.add(done)
            if progress:
                rate = total.seeds / max(time.monotonic() - started, 1e-9)
                print(
                    f"{total.seeds}/{len(all_seeds)} seeds, {len(total.failures)} failed, "
                    f"{rate:.0f} seeds/s",
                    file=sys.stderr,
                )
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    summary = run_many(range(args.start, args.start + args.seeds), args.jobs, progress=True)
    for failure in summary.failures[:20]:
        print(failure, end="\n\n")
    print(
        f"{summary.seeds} seeds: {len(summary.failures)} failed; "
        f"{summary.leaders} leaders elected, {summary.committed} entries committed, "
        f"{summary.acked} proposals acknowledged"
    )
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
