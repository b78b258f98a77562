"""The healthcheck state machine (model/health.py), as moby daemon/health.go."""

from __future__ import annotations

import random

import pytest

from dockyard.engine import containers as ct
from dockyard.engine.model import health as hm

S = 1_000_000_000
STARTED_AT = "2026-01-01T00:00:00Z"
T0 = ct.parse_time_ns(STARTED_AT)


def probe(at_s: float, code: int, output: str = "") -> hm.ProbeResult:
    start = T0 + int(at_s * S)
    return hm.ProbeResult(start, start + S // 100, code, output)


def test_config_defaults_and_probe_commands() -> None:
    cfg = hm.HealthConfig.from_wire({"Test": ["CMD-SHELL", "true"]})
    assert cfg is not None
    assert (cfg.interval, cfg.timeout, cfg.start_period, cfg.max_failures) == (
        30 * S,
        30 * S,
        0,
        3,
    )
    assert cfg.probe_argv() == ("/bin/sh", "-c", "true")
    assert hm.HealthConfig(test=("CMD", "ls", "-l")).probe_argv() == ("ls", "-l")
    assert hm.HealthConfig(test=("NONE",)).probe_argv() is None
    assert hm.HealthConfig(test=()).probe_argv() is None
    assert hm.HealthConfig(test=("BOGUS", "x")).probe_argv() is None
    assert hm.HealthConfig.from_wire(None) is None
    assert hm.HealthConfig.from_wire({}) is None


def test_the_request_completes_the_images_healthcheck_field_by_field() -> None:
    image = {"Test": ["CMD-SHELL", "img"], "Interval": 5 * S, "Retries": 7}
    assert hm.merge_config(None, image) == image
    assert hm.merge_config(None, None) is None
    assert hm.merge_config({"Test": ["NONE"]}, image) == {
        "Test": ["NONE"],
        "Interval": 5 * S,
        "Retries": 7,
    }
    merged = hm.merge_config({"Interval": S}, image)
    assert merged == {"Test": ["CMD-SHELL", "img"], "Interval": S, "Retries": 7}


def test_starting_then_healthy_then_unhealthy_after_retries() -> None:
    cfg = hm.HealthConfig(test=("CMD", "x"), retries=2)
    h = hm.on_start(None)
    assert (h.status, h.failing_streak, h.display) == ("starting", 0, "health: starting")
    h = hm.on_result(h, probe(1, 0, "ok\n"), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak, h.display) == ("healthy", 0, "healthy")
    h = hm.on_result(h, probe(2, 1), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak) == ("healthy", 1)
    h = hm.on_result(h, probe(3, -1), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak) == ("unhealthy", 2)
    h = hm.on_result(h, probe(4, 0), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak) == ("healthy", 0)


def test_failures_within_the_start_period_do_not_count_while_starting() -> None:
    cfg = hm.HealthConfig(test=("CMD", "x"), retries=1, start_period_ns=10 * S)
    h = hm.on_start(None)
    h = hm.on_result(h, probe(5, 1), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak) == ("starting", 0)
    h = hm.on_result(h, probe(11, 1), cfg, started_at_ns=T0)
    assert (h.status, h.failing_streak) == ("unhealthy", 1)


def test_the_log_keeps_the_last_five_and_survives_a_restart() -> None:
    cfg = hm.HealthConfig(test=("CMD", "x"))
    h = hm.on_start(None)
    for i in range(8):
        h = hm.on_result(h, probe(i, i % 2, f"run {i}"), cfg, started_at_ns=T0)
    assert [r.output for r in h.log] == [f"run {i}" for i in range(3, 8)]
    again = hm.on_start(h)
    assert (again.status, again.failing_streak, again.log) == ("starting", 0, h.log)
    assert hm.HealthState.from_json(h.to_json()) == h
    wire = h.to_wire()
    assert wire["Log"][0] == {
        "Start": "2026-01-01T00:00:03Z",
        "End": "2026-01-01T00:00:03.01Z",
        "ExitCode": 1,
        "Output": "run 3",
    }


def test_output_is_truncated_as_moby_does_and_timeouts_read_as_go() -> None:
    assert hm.truncate_output(b"a" * 4096) == "a" * 4096
    assert hm.truncate_output(b"a" * 4097) == "a" * 4096 + "..."
    assert hm.go_duration(30 * S) == "30s"
    assert hm.go_duration(200_000_000) == "200ms"
    assert hm.go_duration(90 * S) == "1m30s"
    assert hm.go_duration(1_500_000_000) == "1.5s"
    assert hm.go_duration(2 * 3600 * S) == "2h0m0s"
    assert hm.timeout_message(S) == "Health check exceeded timeout (1s)"


def test_the_container_state_carries_health_into_ps_and_the_record() -> None:
    state = ct.started(ct.ContainerState(), pid=1, started_at=STARTED_AT)
    assert state.health is None
    now = T0 + 3 * S
    assert ct.status_text(state, now) == "Up 3 seconds"
    state = ct.ContainerState(**{**state.__dict__, "health": hm.on_start(None)})
    assert ct.status_text(state, now) == "Up 3 seconds (health: starting)"
    assert ct.ContainerState.from_json(state.to_json()) == state
    # Records persisted before healthchecks existed have no "health" key.
    legacy = state.to_json()
    del legacy["health"]
    assert ct.ContainerState.from_json(legacy).health is None
    paused = ct.paused(state)
    assert ct.status_text(paused, now) == "Up 3 seconds (Paused)"
    assert paused.health is not None and paused.health.status == "unhealthy"
    gone = ct.exited(state, exit_code=0, finished_at=STARTED_AT)
    assert gone.health is not None and gone.health.status == "unhealthy"
    # A new start keeps the Log for the driver to reset.
    assert ct.started(gone, pid=2, started_at=STARTED_AT).health == gone.health


@pytest.mark.parametrize("seed", range(40))
def test_simulated_probe_sequences_keep_mobys_invariants(seed: int) -> None:
    """Random configurations and outcomes against a direct restatement of the rules."""
    rng = random.Random(seed)
    cfg = hm.HealthConfig(
        test=("CMD", "x"),
        retries=rng.choice([0, 1, 2, 3, 5]),
        start_period_ns=rng.choice([0, 2 * S, 10 * S]),
    )
    h = hm.on_start(None)
    ever_healthy = False
    streak = 0
    at = 0.0
    for _ in range(rng.randint(1, 60)):
        at += rng.uniform(0.1, 2.0)
        code = rng.choice([0, 0, 1, 1, 2, -1, 137])
        before = h
        h = hm.on_result(h, probe(at, code), cfg, started_at_ns=T0)
        assert len(h.log) == min(len(before.log) + 1, hm.MAX_LOG_ENTRIES)
        assert h.log[-1].exit_code == code
        if code == 0:
            ever_healthy = True
            streak = 0
            assert h.status == "healthy"
        else:
            grace = before.status == "starting" and at * S < cfg.start_period
            if not grace:
                streak += 1
            assert h.failing_streak == streak
            if streak >= cfg.max_failures:
                assert h.status == "unhealthy"
            else:
                assert h.status == before.status
        assert h.status != "starting" or not ever_healthy
        assert h.failing_streak == 0 or h.log[-1].exit_code != 0
