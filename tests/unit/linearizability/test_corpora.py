"""The checker against the shared corpora: every file gets the verdict `expected.json` gives.

The corpora live outside the repository, in `shared/testdata/` next to it (see its README):
`$DOCKYARD_SHARED_TESTDATA` if set, else `shared/testdata` in the repository's directory or
any directory above it, else the project machines' own copy at `/work/shared/testdata` (so a
clone made anywhere on such a machine finds it). If they cannot be found the tests FAIL
(never skip): a checker that silently went unchecked would prove nothing. The file names
are listed here, not globbed, so that a missing or extra file is noticed too.

Timings per file are printed at the end of the module. The whole etcd corpus takes about 0.5 s
of CPU here and the kv corpus about 0.4 s (the reference: 1.5 s for the etcd corpus); marked
`sim` since the module takes a few seconds with parsing and pytest's overhead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.linearizability.checker import CheckResult, Verdict, check_operations
from tests.support.linearizability.models import CasRegisterModel, KvModel
from tests.support.linearizability.parsers import parse_jepsen_etcd_log, parse_porcupine_kv_log

pytestmark = pytest.mark.sim

ENV_VAR = "DOCKYARD_SHARED_TESTDATA"
REPO_ROOT = Path(__file__).resolve().parents[3]
# Where the project's machines (development and CI) keep shared/.
MACHINE_TESTDATA = Path("/work/shared/testdata")
ETCD_DIR = "jepsen-etcd-cas-register"
KV_DIR = "porcupine-kv-append"
# etcd_095.log is empty (its Jepsen run never started a cluster) and has no expectation.
ETCD_LOGS = [f"etcd_{i:03d}.log" for i in range(103) if i != 95]
KV_LOGS = [f"c{c}-{v}.txt" for c in ("01", "10", "50") for v in ("ok", "bad")]
# Far above the expected seconds: a timeout here means the checker got badly slower.
CHECK_TIMEOUT_S = 60.0

_timings_s: dict[str, tuple[int, str, float]] = {}


def _candidates() -> list[Path]:
    found = [REPO_ROOT / "shared" / "testdata"]
    found += [parent / "shared" / "testdata" for parent in REPO_ROOT.parents]
    found.append(MACHINE_TESTDATA)
    if os.environ.get(ENV_VAR):
        found.insert(0, Path(os.environ[ENV_VAR]))
    return found


@pytest.fixture(scope="module")
def testdata() -> Path:
    for candidate in _candidates():
        if (candidate / ETCD_DIR / "expected.json").is_file():
            return candidate
    looked = "\n  ".join(str(c) for c in _candidates())
    pytest.fail(
        "linearizability corpora not found (shared/testdata with "
        f"{ETCD_DIR}/ and {KV_DIR}/); looked in:\n  {looked}\n"
        f"place shared/testdata next to the repository or set {ENV_VAR}",
        pytrace=False,
    )


def _expected(testdata: Path, corpus: str) -> dict[str, bool]:
    data: Any = json.loads((testdata / corpus / "expected.json").read_text())
    return {str(k): bool(v) for k, v in data.items()}


def _check(testdata: Path, corpus: str, name: str) -> None:
    expected = _expected(testdata, corpus)
    assert name in expected, f"{corpus}/expected.json has no verdict for {name}"
    path = testdata / corpus / name
    result: CheckResult[Any, Any]
    if corpus == ETCD_DIR:
        ops = parse_jepsen_etcd_log(path)
        result = check_operations(CasRegisterModel(), ops, timeout_s=CHECK_TIMEOUT_S)
    else:
        kv_ops = parse_porcupine_kv_log(path)
        result = check_operations(KvModel(), kv_ops, timeout_s=CHECK_TIMEOUT_S)
    _timings_s[f"{corpus}/{name}"] = (result.steps, result.verdict.value, result.elapsed_s)
    want = Verdict.OK if expected[name] else Verdict.ILLEGAL
    assert result.verdict is want, f"{name}: expected {want.value}\n{result.explanation}"


def test_the_corpora_hold_exactly_the_listed_files(testdata: Path) -> None:
    etcd_files = {p.name for p in (testdata / ETCD_DIR).glob("*.log")}
    assert etcd_files == {*ETCD_LOGS, "etcd_095.log"}
    assert set(_expected(testdata, ETCD_DIR)) == set(ETCD_LOGS)
    assert {p.name for p in (testdata / KV_DIR).glob("*.txt")} == set(KV_LOGS)
    assert set(_expected(testdata, KV_DIR)) == set(KV_LOGS)
    expected = _expected(testdata, ETCD_DIR)
    assert sum(expected.values()) == 23, "Porcupine expects 23 linearizable etcd logs"


def test_the_empty_log_is_linearizable(testdata: Path) -> None:
    ops = parse_jepsen_etcd_log(testdata / ETCD_DIR / "etcd_095.log")
    assert ops == []
    assert check_operations(CasRegisterModel(), ops).verdict is Verdict.OK


@pytest.mark.parametrize("name", ETCD_LOGS)
def test_jepsen_etcd(testdata: Path, name: str) -> None:
    _check(testdata, ETCD_DIR, name)


@pytest.mark.parametrize("name", KV_LOGS)
def test_porcupine_kv(testdata: Path, name: str) -> None:
    _check(testdata, KV_DIR, name)


@pytest.fixture(scope="module", autouse=True)
def _print_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module, print every file's check time, slowest first, and the totals."""
    started_s = time.perf_counter()
    yield
    if not _timings_s:
        return
    lines = [f"\nlinearizability corpora ({time.perf_counter() - started_s:.2f} s wall):"]
    for corpus in (ETCD_DIR, KV_DIR):
        rows = {k: v for k, v in _timings_s.items() if k.startswith(corpus)}
        if not rows:
            continue
        total_s = sum(elapsed_s for _, _, elapsed_s in rows.values())
        lines.append(f"  {corpus}: {len(rows)} files checked in {total_s:.3f} s")
        slowest = sorted(rows.items(), key=lambda kv: -kv[1][2])
        for key, (steps, verdict, elapsed_s) in slowest:
            lines.append(f"    {key:<45} {verdict:<8} {elapsed_s:8.3f} s {steps:>9} steps")
    # Teardown output is captured; write around the capture, as `capsys.disabled()` does.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n".join(lines))
