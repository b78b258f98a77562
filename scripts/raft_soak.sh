#!/usr/bin/env bash
# Soak the Raft simulator over many seeds on every core (default 1,000,000 seeds).
# Usage: scripts/raft_soak.sh [SEEDS] [START]
# A failure prints its seed and the command that replays it exactly:
#   DOCKYARD_RAFT_SEED=<n> pytest tests/sim/test_raft_sim.py -k replay
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
exec .venv/bin/python -m tests.sim.raft_soak --seeds "${1:-1000000}" --start "${2:-0}"
