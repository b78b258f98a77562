#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, then every tier.
# Extra arguments go to pytest (e.g. scripts/test.sh -m unit, or -k watch).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then echo "no tests ran: failing"; exit 1; fi
exit $status
