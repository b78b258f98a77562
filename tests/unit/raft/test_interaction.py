"""Golden-output interaction scripts (`testdata/*.txt`); see `interaction.py` for the format.

Regenerate after an intended change with `DOCKYARD_RAFT_REWRITE=1 pytest tests/unit/raft`,
then review the diff line by line: the goldens are the specification.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.raft.interaction import run_script

pytestmark = pytest.mark.unit
SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txt"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_interaction(script: Path) -> None:
    problems = run_script(script)
    assert not problems, "\n\n".join(problems)
