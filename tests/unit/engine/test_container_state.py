"""Container state transitions: pause and unpause (containers.py)."""

from __future__ import annotations

import pytest

from dockyard.engine import containers as ct

STARTED_AT = "2026-01-01T00:00:00Z"
NOW_NS = ct.parse_time_ns("2026-01-01T00:00:05Z")


def running() -> ct.ContainerState:
    return ct.started(ct.ContainerState(), pid=42, started_at=STARTED_AT)


def test_a_paused_container_still_runs_and_says_so() -> None:
    state = ct.paused(running())
    assert (state.running, state.paused, state.wire_status) == (True, True, "paused")
    assert ct.status_text(state, NOW_NS) == "Up 5 seconds (Paused)"
    back = ct.unpaused(state)
    assert (back.paused, back.wire_status) == (False, "running")
    assert ct.status_text(back, NOW_NS) == "Up 5 seconds"


def test_an_exit_ends_the_pause_and_the_record_keeps_it() -> None:
    state = ct.paused(running())
    assert ct.ContainerState.from_json(state.to_json()) == state
    assert ct.ContainerState.from_json({"status": "running"}).paused is False
    gone = ct.exited(state, exit_code=137, finished_at=STARTED_AT)
    assert (gone.paused, gone.wire_status) == (False, "exited")


@pytest.mark.parametrize("transition", [ct.paused, ct.unpaused])
def test_only_a_running_container_pauses(transition: object) -> None:
    with pytest.raises(ct.TransitionError):
        transition(ct.ContainerState())  # type: ignore[operator]
