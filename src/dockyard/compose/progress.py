"""Compose-style progress and log prefixes: pure formatting plus one thin writer.

Role: what ``dockyard compose`` prints while it works. Compose v2 shows one line per
object (`` ✔ Container app-web-1  Started``) redrawn in place with a spinner on a terminal,
and, when the output is not a terminal (``--progress plain``), one plain line per state
change (`` Container app-web-1  Starting``). Logs get a ``name  | `` prefix padded to the
longest name, colored per service in Compose's palette unless ``--no-color``.

Invariants:
- Everything but :class:`Progress`'s writes is pure: ``format_*`` take values and return
  strings, so they are unit-tested without a terminal.
- The writer redraws at most the lines it drew itself (it moves the cursor up exactly
  that many lines), and never interleaves with plain output: a TTY redraw happens only
  inside :meth:`Progress.update`/:meth:`Progress.warn` or a spinner tick, all on the
  event loop's thread.
- The spinner animates only while a line is pending: the writer owns no clock and no
  loop; :meth:`Progress.animate` hands it a scheduler (the event loop's ``call_later``),
  and it keeps exactly one timer armed while some line is not done, none otherwise
  (Compose v2 ``pkg/progress/tty.go`` redraws every 100 ms while events are pending).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TextIO

__all__ = [
    "DONE_MARK",
    "SPINNER_FRAMES",
    "SPINNER_INTERVAL_S",
    "LineState",
    "Progress",
    "Schedule",
    "TimerHandle",
    "color_for",
    "format_line",
    "format_log_line",
    "log_prefix",
    "needs_animation",
    "spinner_frame",
]

# Compose v2 (pkg/progress/tty.go) spinner frames and done mark.
SPINNER_FRAMES = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")
DONE_MARK = "✔"
SPINNER_INTERVAL_S = 0.1  # Compose v2's tty writer ticks every 100 ms
# docker-compose 1.29.2 compose/cli/colors.py: the rainbow, bright variants after the plain.
_PALETTE = ("36", "33", "32", "35", "34", "1;36", "1;33", "1;32", "1;35", "1;34")
_RESET = "\x1b[0m"


@dataclass(frozen=True)
class LineState:
    kind: str  # Container, Network, Volume, Image, Service
    name: str
    status: str
    done: bool = False


def format_line(state: LineState, *, tty: bool, frame: int = 0, width: int = 0) -> str:
    """One progress line. Plain: `` Container app_web_1  Started`` (Compose v2's plain
    writer); TTY: the same led by a spinner frame, or ✔ once done, the name padded to
    ``width`` so that the statuses line up."""
    label = f"{state.kind} {state.name}".ljust(width)
    if not tty:
        return f" {label}  {state.status}"
    mark = DONE_MARK if state.done else spinner_frame(frame)
    return f" {mark} {label}  {state.status}"


def spinner_frame(ticks: int) -> str:
    """The spinner glyph after ``ticks`` timer ticks (one frame per tick, cycling)."""
    return SPINNER_FRAMES[ticks % len(SPINNER_FRAMES)]


def needs_animation(lines: Iterable[LineState]) -> bool:
    """Whether a spinner is visible: some line is still pending."""
    return any(not state.done for state in lines)


def color_for(index: int) -> str:
    """The SGR color of the ``index``-th service (Compose cycles its palette)."""
    return _PALETTE[index % len(_PALETTE)]


def log_prefix(name: str, width: int, *, color: str | None) -> str:
    """``name  | `` padded to ``width`` (docker-compose 1.29.2 LogPrinter), colored."""
    text = f"{name.ljust(width)} | "
    return text if color is None else f"\x1b[{color}m{text}{_RESET}"


def format_log_line(prefix: str, data: str) -> list[str]:
    """Split one chunk of a container's output into prefixed lines (a chunk may hold
    several lines; a trailing newline does not make an empty line)."""
    if not data:
        return []
    return [prefix + line for line in data.rstrip("\n").split("\n")]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


# ``loop.call_later``'s shape: (delay in seconds, callback) -> a cancellable handle
Schedule = Callable[[float, Callable[[], None]], TimerHandle]


class Progress:
    """The writer: plain lines, or an in-place block on a terminal; ``quiet`` prints
    nothing but warnings."""

    def __init__(self, out: TextIO, *, tty: bool | None = None, quiet: bool = False) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.quiet = quiet
        self._lines: dict[tuple[str, str], LineState] = {}
        self._drawn = 0
        self._frame = 0
        self._schedule: Schedule | None = None
        self._timer: TimerHandle | None = None

    def animate(self, schedule: Schedule) -> None:
        """Animate spinners on a terminal: ``schedule`` is the running loop's
        ``call_later``. Without a terminal (or quiet) there is nothing to animate."""
        if self.tty and not self.quiet:
            self._schedule = schedule
            self._arm()

    def stop(self) -> None:
        """Disarm the spinner timer (the operation is over, pending lines or not)."""
        self._schedule = None
        self._disarm()

    def _arm(self) -> None:
        if self._schedule is None or self._timer is not None:
            return
        if needs_animation(self._lines.values()):
            self._timer = self._schedule(SPINNER_INTERVAL_S, self._tick)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if not needs_animation(self._lines.values()):
            return  # every line is done: no more frames until a new pending line
        self._frame += 1
        self._redraw()
        self._arm()

    def update(self, kind: str, name: str, status: str, *, done: bool = False) -> None:
        state = LineState(kind, name, status, done)
        self._lines[(kind, name)] = state
        if self.quiet:
            return
        if not self.tty:
            self.out.write(format_line(state, tty=False) + "\n")
            self.out.flush()
            return
        self._frame += 1
        self._redraw()
        self._arm()

    def warn(self, message: str) -> None:
        if self.tty and self._drawn:
            # keep the block below the warning: forget it, print, redraw afresh
            self._drawn = 0
        self.out.write(f"WARNING: {message}\n")
        self.out.flush()
        if self.tty and not self.quiet:
            self._redraw()

    def _redraw(self) -> None:
        width = max((len(f"{s.kind} {s.name}") for s in self._lines.values()), default=0)
        parts = []
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}A")
        for state in self._lines.values():
            parts.append(
                "\x1b[2K" + format_line(state, tty=True, frame=self._frame, width=width) + "\n"
            )
        self._drawn = len(self._lines)
        self.out.write("".join(parts))
        self.out.flush()

    def reset(self) -> None:
        """Start a new block (the next phase prints below the last one)."""
        self._disarm()
        self._lines.clear()
        self._drawn = 0
