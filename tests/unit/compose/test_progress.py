"""Compose-style progress lines and log prefixes (the pure part of compose/progress.py),
and the writer over an in-memory stream."""

from __future__ import annotations

import io

import pytest

from dockyard.compose.progress import (
    DONE_MARK,
    SPINNER_FRAMES,
    LineState,
    Progress,
    color_for,
    format_line,
    format_log_line,
    log_prefix,
)

pytestmark = pytest.mark.unit


def test_plain_line_is_compose_v2_plain_output() -> None:
    state = LineState("Container", "app_web_1", "Started", done=True)
    assert format_line(state, tty=False) == " Container app_web_1  Started"


def test_tty_line_has_a_spinner_until_done_then_a_check_mark() -> None:
    running = LineState("Container", "app_web_1", "Starting")
    assert (
        format_line(running, tty=True, frame=0)
        == f" {SPINNER_FRAMES[0]} Container app_web_1  Starting"
    )
    assert format_line(running, tty=True, frame=len(SPINNER_FRAMES) + 1).startswith(
        f" {SPINNER_FRAMES[1]} "
    )
    done = LineState("Container", "app_web_1", "Started", done=True)
    assert format_line(done, tty=True, frame=3) == f" {DONE_MARK} Container app_web_1  Started"


def test_tty_names_are_padded_so_statuses_line_up() -> None:
    short = format_line(LineState("Network", "n", "Created"), tty=True, width=20)
    long = format_line(LineState("Container", "app_web_1", "Created"), tty=True, width=20)
    assert short.index("Created") == long.index("Created")


def test_log_prefix_pads_and_colors() -> None:
    assert log_prefix("web_1", 8, color=None) == "web_1    | "
    assert log_prefix("web_1", 3, color=None) == "web_1 | "
    assert log_prefix("db", 2, color="36") == "\x1b[36mdb | \x1b[0m"


def test_colors_cycle_through_the_palette() -> None:
    first = [color_for(i) for i in range(10)]
    assert len(set(first)) == 10
    assert color_for(10) == color_for(0)


def test_log_lines_split_on_newlines_without_a_trailing_empty_line() -> None:
    assert format_log_line("a | ", "one\ntwo\n") == ["a | one", "a | two"]
    assert format_log_line("a | ", "partial") == ["a | partial"]
    assert format_log_line("a | ", "") == []
    assert format_log_line("a | ", "\n") == ["a | "]


def test_plain_writer_prints_one_line_per_state_change() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    progress.update("Container", "app_web_1", "Creating")
    progress.update("Container", "app_web_1", "Created", done=True)
    progress.warn("careful")
    assert out.getvalue().splitlines() == [
        " Container app_web_1  Creating",
        " Container app_web_1  Created",
        "WARNING: careful",
    ]


def test_tty_writer_redraws_its_block_in_place() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.update("Container", "a", "Creating")
    progress.update("Container", "b", "Creating")
    progress.update("Container", "a", "Created", done=True)
    text = out.getvalue()
    # the third draw moves up over the two lines it drew before and rewrites both
    last = text.rsplit("\x1b[2A", 1)[1]
    assert last.count("\n") == 2
    assert f"{DONE_MARK} Container a  Created" in last
    assert "Container b  Creating" in last


def test_quiet_writer_prints_nothing_but_warnings() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False, quiet=True)
    progress.update("Container", "a", "Created", done=True)
    progress.warn("w")
    assert out.getvalue() == "WARNING: w\n"
