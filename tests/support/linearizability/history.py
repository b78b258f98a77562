"""Recording what clients saw during a fault test, and showing it when a check fails.

`HistoryRecorder` is shared by all client threads (or tasks) of a test: each operation is
`invoke`d just before its request is sent and completed just after the answer, with a
monotonic clock read under a lock, so that the recorded intervals contain the real ones.
Completions:
- `ok(handle, output)`: the client saw the outcome (an etcd error 101 or 100 is an outcome too);
- `fail(handle)`: the operation certainly had no effect (refused before it was sent): it is
  left out of the checked history but kept in the dump;
- `info(handle)`: the outcome is unknown (timeout, connection reset, member killed): the
  operation may take effect at any later time, so its return time is +inf and its output
  `UNKNOWN`. An operation still pending at the end counts as `info`.

`format_history` dumps operations as a table for a failure message, and
`assert_linearizable` checks a history and fails with the explanation and the dump.

In a fault test (names of the client's API illustrative):

    recorder: HistoryRecorder[EtcdOp, EtcdResult] = HistoryRecorder()
    handle = recorder.invoke(client_id, EtcdOp("cas", "k", "2", prev_value="1"))
    try:
        client.compare_and_swap("k", "2", prev_value="1")
    except CompareFailed:
        recorder.ok(handle, EtcdResult(COMPARE_FAILED))
    except (TimeoutError, ConnectionError):
        recorder.info(handle)
    else:
        recorder.ok(handle, EtcdResult(OK))
    ...
    assert_linearizable(EtcdModel(), recorder.operations())
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from .checker import UNKNOWN, Model, Operation, Unknown, Verdict, check_operations

__all__ = ["HistoryRecorder", "OpHandle", "assert_linearizable", "format_history"]

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

# A failure message shows at most this many operations (those around the problem first).
_DUMP_MAX_OPS: Final = 200

Completion = Literal["pending", "ok", "fail", "info"]


@dataclass(frozen=True, slots=True)
class OpHandle:
    """Names one invoked operation of a recorder; returned by `invoke`."""

    index: int


@dataclass(slots=True)
class _Record(Generic[I, O]):
    client_id: int
    op_input: I
    call_ns: int
    completion: Completion = "pending"
    op_output: O | Unknown = UNKNOWN
    return_ns: int | None = None


class HistoryRecorder(Generic[I, O]):
    """A thread-safe log of operations with call and return times in nanoseconds.

    Times are `clock_ns()` minus the recorder's creation time (the default clock is
    `time.monotonic_ns`; tests may pass a fake one).
    """

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._origin_ns = clock_ns()
        self._records: list[_Record[I, O]] = []

    def invoke(self, client_id: int, op_input: I) -> OpHandle:
        """Record that `client_id` is about to send `op_input`; call right before sending."""
        with self._lock:
            call_ns = self._clock_ns() - self._origin_ns
            self._records.append(_Record(client_id, op_input, call_ns))
            return OpHandle(len(self._records) - 1)

    def ok(self, handle: OpHandle, op_output: O) -> None:
        """Record the outcome the client observed; call right after the answer arrives."""
        self._complete(handle, "ok", op_output)

    def fail(self, handle: OpHandle) -> None:
        """Record that the operation certainly did not take effect."""
        self._complete(handle, "fail", UNKNOWN)

    def info(self, handle: OpHandle) -> None:
        """Record that the outcome is unknown: it may take effect at any later time."""
        self._complete(handle, "info", UNKNOWN)

    def _complete(self, handle: OpHandle, completion: Completion, op_output: O | Unknown) -> None:
        with self._lock:
            return_ns = self._clock_ns() - self._origin_ns
            record = self._records[handle.index]
            if record.completion != "pending":
                raise ValueError(f"operation {handle.index} completed twice ({completion})")
            record.completion = completion
            record.op_output = op_output
            record.return_ns = return_ns

    def operations(self) -> list[Operation[I, O]]:
        """The history to check, in call order: `fail`ed operations are left out, `info` and
        pending ones return at +inf with an unknown output."""
        with self._lock:
            records = list(self._records)
        ops: list[Operation[I, O]] = []
        for r in records:
            if r.completion == "fail":
                continue
            if r.completion == "ok" and r.return_ns is not None:
                ops.append(Operation(r.client_id, r.op_input, r.call_ns, r.op_output, r.return_ns))
            else:
                ops.append(Operation(r.client_id, r.op_input, r.call_ns, UNKNOWN, math.inf))
        return ops

    def dump(self, model: Model[S, I, O] | None = None) -> str:
        """Every recorded operation, including failed ones, as `format_history` lines."""
        with self._lock:
            records = list(self._records)
        lines = [f"{len(records)} operations recorded (times in ms from the start):"]
        for i, r in enumerate(records):
            ret = "..." if r.return_ns is None else f"{r.return_ns / 1e6:10.3f}"
            what = _describe(model, r.op_input, r.op_output)
            lines.append(
                f"  #{i:<5} client {r.client_id:<3} {r.call_ns / 1e6:10.3f} -> {ret:>10}  "
                f"{r.completion:<7} {what}"
            )
        return "\n".join(lines)


def _describe(model: Model[S, I, O] | None, op_input: I, op_output: O | Unknown) -> str:
    if model is None:
        return f"{op_input!r} -> {op_output!r}"
    return model.describe_operation(op_input, op_output)


def format_history(
    history: Sequence[Operation[I, O]],
    model: Model[S, I, O] | None = None,
    *,
    highlight: Iterable[Operation[I, O]] = (),
    time_unit_ns: float = 1e6,
    max_ops: int = _DUMP_MAX_OPS,
) -> str:
    """A readable table of operations sorted by call time, one per line.

    Each line starts with the operation's position in `history` (`#i`, as in the checker's
    explanation when `history` is the failing partition). Times are divided by `time_unit_ns`
    (default: shown in ms). Operations in `highlight` are marked with `>`. Past `max_ops`
    lines, the table keeps the highlighted operations and their neighbourhood and elides the
    rest.
    """
    marked = {id(op) for op in highlight}
    # Numbered by position in `history`, as the checker's explanation numbers a partition.
    ordered = sorted(enumerate(history), key=lambda item: item[1].call_ns)
    keep = set(range(len(ordered)))
    if len(ordered) > max_ops:
        hot = [i for i, (_, op) in enumerate(ordered) if id(op) in marked] or [0]
        radius = max(1, max_ops // (2 * len(hot)))
        keep = {j for i in hot for j in range(i - radius, i + radius + 1) if 0 <= j < len(ordered)}
    lines = []
    skipped = 0
    for i, (number, op) in enumerate(ordered):
        if i not in keep:
            skipped += 1
            continue
        if skipped:
            lines.append(f"    ... {skipped} operations")
            skipped = 0
        ret = "inf" if op.return_ns == math.inf else f"{op.return_ns / time_unit_ns:.3f}"
        mark = ">" if id(op) in marked else " "
        lines.append(
            f"  {mark} #{number:<5} client {op.client_id:<3} "
            f"[{op.call_ns / time_unit_ns:.3f}, {ret}]  {_describe(model, op.input, op.output)}"
        )
    if skipped:
        lines.append(f"    ... {skipped} operations")
    return "\n".join(lines)


def assert_linearizable(
    model: Model[S, I, O],
    history: Sequence[Operation[I, O]],
    *,
    timeout_s: float = 60.0,
    time_unit_ns: float = 1e6,
) -> None:
    """Fail (AssertionError) unless the checker says `history` is linearizable.

    The message holds the checker's explanation and a dump of the failing partition, with
    the operations at the end of the longest linearizable prefix highlighted. A timeout fails
    too: an unchecked history proves nothing.
    """
    result = check_operations(model, history, timeout_s=timeout_s)
    if result.verdict is Verdict.OK:
        return
    dump = format_history(
        result.partition or history,
        model,
        highlight=result.longest_prefix[-8:],
        time_unit_ns=time_unit_ns,
    )
    raise AssertionError(
        f"history of {len(history)} operations: {result.verdict.value}\n"
        f"{result.explanation}\nthe partition (> marks the end of the longest prefix):\n{dump}"
    )
