"""The animated spinner of compose/progress.py on virtual time: the writer is handed a
scheduler that records timers, and the test fires them by hand (no loop, no clock)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from dockyard.compose.progress import (
    DONE_MARK,
    SPINNER_FRAMES,
    SPINNER_INTERVAL_S,
    LineState,
    Progress,
    needs_animation,
    spinner_frame,
)

pytestmark = pytest.mark.unit


@dataclass
class Timer:
    delay_s: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class VirtualLoop:
    """``call_later`` that only records; ``fire`` runs the one armed timer."""

    timers: list[Timer] = field(default_factory=list)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay_s, callback)
        self.timers.append(timer)
        return timer

    @property
    def armed(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def fire(self) -> None:
        timer = self.armed[-1]
        self.timers.remove(timer)
        timer.callback()


def test_frames_cycle_one_per_tick() -> None:
    assert [spinner_frame(t) for t in range(len(SPINNER_FRAMES))] == list(SPINNER_FRAMES)
    assert spinner_frame(len(SPINNER_FRAMES) + 2) == SPINNER_FRAMES[2]


def test_animation_is_needed_while_a_line_is_pending() -> None:
    assert not needs_animation([])
    assert needs_animation([LineState("Image", "a", "Pulling"), LineState("I", "b", "x", True)])
    assert not needs_animation([LineState("Image", "a", "Pulled", done=True)])


def test_a_pending_line_redraws_every_tick_with_the_next_frame() -> None:
    out, loop = io.StringIO(), VirtualLoop()
    progress = Progress(out, tty=True)
    progress.animate(loop.call_later)
    assert loop.armed == []  # nothing pending yet: no timer
    progress.update("Image", "web", "Pulling")
    assert [t.delay_s for t in loop.armed] == [SPINNER_INTERVAL_S]
    seen = []
    for _ in range(3):
        before = out.getvalue()
        loop.fire()
        drawn = out.getvalue()[len(before) :]
        assert drawn.startswith("\x1b[1A")  # in place, over the one line drawn
        seen.append(drawn.split("\x1b[2K", 1)[1].split(" ")[1])
        assert len(loop.armed) == 1  # exactly one timer stays armed
    assert len(set(seen)) == 3  # three different frames: it animates


def test_the_timer_stops_when_every_line_is_done_and_restarts_for_a_new_one() -> None:
    out, loop = io.StringIO(), VirtualLoop()
    progress = Progress(out, tty=True)
    progress.animate(loop.call_later)
    progress.update("Image", "web", "Pulling")
    progress.update("Image", "web", "Pulled", done=True)
    # the armed timer fires once more, sees nothing pending and does not re-arm or draw
    before = out.getvalue()
    loop.fire()
    assert loop.armed == [] and out.getvalue() == before
    assert f"{DONE_MARK} Image web  Pulled" in before
    progress.update("Image", "db", "Pulling")
    assert len(loop.armed) == 1


def test_stop_and_reset_disarm_the_timer() -> None:
    loop = VirtualLoop()
    progress = Progress(io.StringIO(), tty=True)
    progress.animate(loop.call_later)
    progress.update("Image", "web", "Pulling")
    progress.reset()
    assert loop.armed == []
    progress.update("Image", "web", "Pulling")
    progress.stop()
    assert loop.armed == []
    progress.update("Image", "db", "Pulling")  # stopped: no new timer either
    assert loop.armed == []


@pytest.mark.parametrize(("tty", "quiet"), [(False, False), (True, True)])
def test_plain_or_quiet_output_never_animates(tty: bool, quiet: bool) -> None:
    loop = VirtualLoop()
    progress = Progress(io.StringIO(), tty=tty, quiet=quiet)
    progress.animate(loop.call_later)
    progress.update("Image", "web", "Pulling")
    assert loop.timers == []
