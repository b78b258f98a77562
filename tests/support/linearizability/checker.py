"""A linearizability checker: the Wing-Gong-Lowe search, as Porcupine runs it.

A history is a list of `Operation`s, each with a call and a return time. It is linearizable if
every operation can be given one point between its call and its return such that applying the
operations at those points, in order, to the sequential `Model` yields exactly the outputs the
clients observed (Herlihy & Wing 1990).

The search (Wing & Gong 1993, with Lowe's memoization, "Testing for linearizability", 2017;
Porcupine's `checkSingle`):
- The call and return entries of all operations are sorted by time into a doubly-linked list;
  at equal times calls come first, so intervals are closed (two operations that touch overlap).
- Walk the list from the head. At a call entry, try to linearize that operation now: step the
  model; if the step is legal and the pair (set of linearized operations, new state) was never
  seen before, push (operation, old state) on a stack, *lift* the call and its return out of the
  list and restart from the head. At a return entry, the operation it closes cannot be put off
  any longer, so the last choice was wrong: pop it, *unlift* it and try the next call after it.
  An empty list means every operation was linearized; a return with an empty stack means none
  of the choices works: the history is illegal.
- The memo holds (bitset of linearized operations as a Python int, state): a configuration
  reached again by another order has the same future, so it is pruned (Lowe §4).
- P-compositionality (Herlihy & Wing): a history is linearizable iff each of its partitions
  (e.g. per key) is, so `Model.partition` splits the history and each part is searched alone.

An operation whose outcome is unknown (Jepsen `:info`, a client timeout) has return time
`+inf` (`math.inf`) and output `UNKNOWN`: it may be linearized anywhere after its call, and
linearizing it last is the same as it never having taken effect. Models must accept `UNKNOWN`
for any input. Two sound reductions, beyond Porcupine, for these *optional* operations:
- the search succeeds as soon as every operation with a finite return is linearized (the
  optional ones left can all go last, i.e. never happen);
- an optional operation is never linearized where its step leaves the state unchanged: any
  continuation from there works as well without it (it can go last instead).
They cut the steps on the Jepsen etcd corpus (up to 19 pending `:info` operations per log)
by 2-5x; `test_checker.py` compares the search with a brute-force enumeration.

The search of each partition is a generator that yields every `_SLICE_STEPS` steps: the
partitions are interleaved, so an illegal history is reported when its first illegal
partition is found (as Porcupine's parallel check), and a deadline bounds the whole check;
past it the verdict is `Verdict.UNKNOWN`.

This module is pure apart from reading a monotonic clock for the deadline and pausing the
cyclic garbage collector during a check (the memo holds millions of acyclic tuples); it never
raises on an illegal history (the caller decides), only on malformed input.
"""

from __future__ import annotations

import enum
import gc
import itertools
import math
import time
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

__all__ = [
    "UNKNOWN",
    "CheckResult",
    "Model",
    "Operation",
    "Unknown",
    "Verdict",
    "check_operations",
]

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the conventional name for an operation's input type
O = TypeVar("O")  # noqa: E741 - the conventional name for an operation's output type

# How many model steps a partition's search runs before the next partition's turn and a look
# at the clock (a few milliseconds; reading the clock every step would cost more than a step).
_SLICE_STEPS: Final = 1 << 12
# The default bound on memoized configurations across a check (each costs ~150 bytes): past
# it the verdict is UNKNOWN rather than the machine swapping.
MAX_CONFIGURATIONS: Final = 10_000_000
# How many operations of the longest linearizable prefix an explanation shows.
_EXPLAIN_PREFIX_OPS: Final = 8
# At most this many candidate operations are listed in an explanation.
_EXPLAIN_CANDIDATE_OPS: Final = 12


class Unknown:
    """The type of `UNKNOWN`: the output of an operation whose outcome nobody observed."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()
"""The output of an operation that timed out or crashed: it may or may not have taken effect."""


class Verdict(enum.Enum):
    """The checker's answer; `UNKNOWN` means the deadline passed before the search finished."""

    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Operation(Generic[I, O]):
    """One client operation: its input, its observed output and when it was called/returned.

    Times are integers in any unit (nanoseconds from a monotonic clock, or line numbers of a
    log); `return_ns` is `math.inf` when the outcome is unknown (the output is then
    `UNKNOWN`). `call_ns <= return_ns` is required; equal times count as overlapping.
    """

    client_id: int
    input: I
    call_ns: float
    output: O | Unknown
    return_ns: float


class Model(Protocol[S, I, O]):
    """A sequential specification. Implementations subclass this to inherit the defaults.

    States must be immutable values with `==` and `hash` (they are memo keys): two states
    that compare equal must behave identically from then on.
    """

    def init(self) -> S:
        """The state before any operation (of one partition)."""
        ...

    def step(self, state: S, op_input: I, op_output: O | Unknown) -> tuple[bool, S]:
        """Whether `op_input` applied to `state` may produce `op_output`, and the next state.

        Must be pure. With `UNKNOWN` as output the step must be legal (the outcome was not
        observed) and return the state as if the operation took effect.
        """
        ...

    def partition(self, history: Sequence[Operation[I, O]]) -> list[list[Operation[I, O]]]:
        """Split a history into independently checkable parts (default: one part)."""
        return [list(history)]

    def describe_operation(self, op_input: I, op_output: O | Unknown) -> str:
        """A short human description such as `cas('x', 1, 2) -> ok`, for explanations."""
        return f"{op_input!r} -> {op_output!r}"

    def describe_state(self, state: S) -> str:
        """A short human description of a state, for explanations."""
        return repr(state)


@dataclass(frozen=True, slots=True)
class CheckResult(Generic[I, O]):
    """The verdict, and on `ILLEGAL` the partition that failed and why.

    `longest_prefix` is the longest sequence of operations of the failing partition that the
    search could linearize; `explanation` is a short text for a failing test's message.
    """

    verdict: Verdict
    explanation: str = ""
    partition: tuple[Operation[I, O], ...] = ()
    longest_prefix: tuple[Operation[I, O], ...] = ()
    elapsed_s: float = 0.0
    steps: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


@dataclass(slots=True)
class _Search:
    """The outcome of searching one partition."""

    verdict: Verdict
    longest: list[int] = field(default_factory=list)
    steps: int = 0


def check_operations(
    model: Model[S, I, O],
    history: Sequence[Operation[I, O]],
    *,
    timeout_s: float | None = None,
    max_configurations: int = MAX_CONFIGURATIONS,
    clock_s: Callable[[], float] = time.monotonic,
) -> CheckResult[I, O]:
    """Check that `history` is linearizable with respect to `model`.

    The partitions of `model.partition(history)` are searched round-robin, a slice of steps
    each, and the first illegal one ends the check: as Porcupine's parallel check, an illegal
    history is reported as soon as its easiest illegal partition is found, instead of after an
    exhaustive search of a hard one. `timeout_s` bounds the whole check (None: no bound), and
    `max_configurations` the memo entries of all partitions together (checked per slice).
    """
    start_s = clock_s()
    deadline_s = math.inf if timeout_s is None else start_s + timeout_s
    parts = model.partition(history)
    for part in parts:
        _validate(part)
    memo_sizes = [0] * len(parts)
    running = [(part, _search(model, part, memo_sizes, k)) for k, part in enumerate(parts)]
    total_steps = 0
    # The memo of a long search holds millions of tuples; the cyclic collector would walk
    # them again and again for nothing (nothing here makes cycles).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while running:
            still_running = []
            for part, search in running:
                try:
                    next(search)
                    total_steps += _SLICE_STEPS
                    still_running.append((part, search))
                    continue
                except StopIteration as stop:
                    outcome: _Search = stop.value
                total_steps += outcome.steps % _SLICE_STEPS
                if outcome.verdict is Verdict.ILLEGAL:
                    elapsed_s = clock_s() - start_s
                    return CheckResult(
                        Verdict.ILLEGAL,
                        _explain(model, part, outcome.longest),
                        tuple(part),
                        tuple(part[i] for i in outcome.longest),
                        elapsed_s,
                        total_steps,
                    )
            running = still_running
            timed_out = clock_s() > deadline_s
            if running and (timed_out or sum(memo_sizes) > max_configurations):
                elapsed_s = clock_s() - start_s
                sizes = ", ".join(str(len(part)) for part, _ in running)
                limit = (
                    f"timed out after {elapsed_s:.3f} s (limit {timeout_s} s)"
                    if timed_out
                    else f"gave up after {sum(memo_sizes)} configurations (limit "
                    f"{max_configurations}) in {elapsed_s:.3f} s"
                )
                return CheckResult(
                    Verdict.UNKNOWN,
                    f"{limit} with {len(running)} of {len(parts)} partitions unfinished "
                    f"(sizes {sizes})",
                    elapsed_s=elapsed_s,
                    steps=total_steps,
                )
    finally:
        if gc_was_enabled:
            gc.enable()
    return CheckResult(Verdict.OK, elapsed_s=clock_s() - start_s, steps=total_steps)


def _validate(part: Sequence[Operation[I, O]]) -> None:
    for op in part:
        if not op.call_ns <= op.return_ns:
            raise ValueError(f"operation returns before it is called: {op!r}")
        if op.return_ns == math.inf and op.output is not UNKNOWN:
            raise ValueError(f"an operation that never returned has an output: {op!r}")


def _entry_order(part: Sequence[Operation[I, O]]) -> list[int]:
    """Entry ids sorted by time: call of op i is entry i, its return is entry n + i.

    At equal times calls sort before returns, so touching intervals overlap.
    """
    n = len(part)
    keyed = [(op.call_ns, 0, i) for i, op in enumerate(part)]
    keyed += [(op.return_ns, 1, n + i) for i, op in enumerate(part)]
    keyed.sort()
    return [entry for _, _, entry in keyed]


def _search(
    model: Model[S, I, O], part: Sequence[Operation[I, O]], memo_sizes: list[int], slot: int
) -> Generator[None, None, _Search]:
    """The WGL depth-first search over one partition (see the module docstring).

    A generator: it yields after every `_SLICE_STEPS` model steps so that the caller can
    interleave partitions and watch the deadline, and returns the outcome. Before yielding it
    stores the size of its memo in `memo_sizes[slot]`.
    """
    n = len(part)
    if n == 0:
        return _Search(Verdict.OK)
    head = 2 * n
    tail = 2 * n + 1
    # The doubly-linked entry list as two int arrays indexed by entry id (dancing links).
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    order = [head, *_entry_order(part), tail]
    for a, b in itertools.pairwise(order):
        nxt[a] = b
        prv[b] = a

    step = model.step
    inputs = [op.input for op in part]
    outputs = [op.output for op in part]
    bits = [1 << i for i in range(n)]
    # Operations with an unknown outcome (return at +inf) are optional: never needed to
    # finish, and pointless to linearize where they would not change the state.
    optional = [op.return_ns == math.inf for op in part]
    required_left = optional.count(False)
    if required_left == 0:
        return _Search(Verdict.OK)
    seen: set[tuple[int, S]] = set()
    # The stack of choices: (operation, state before it, linearized set before it).
    calls: list[tuple[int, S, int]] = []
    longest: list[int] = []

    state = model.init()
    linearized = 0
    steps = 0
    slice_steps = _SLICE_STEPS
    budget = slice_steps
    entry = nxt[head]
    # The loop never walks onto `tail`: every remaining call is followed by its return.
    while entry != tail:
        if entry < n:
            budget -= 1
            if not budget:
                steps += slice_steps
                budget = slice_steps
                memo_sizes[slot] = len(seen)
                yield
            legal, new_state = step(state, inputs[entry], outputs[entry])
            if legal and not (optional[entry] and new_state == state):
                new_linearized = linearized | bits[entry]
                # One hash of the (bitset, state) key instead of two for `in` then `add`.
                seen_before = len(seen)
                seen.add((new_linearized, new_state))
                if len(seen) != seen_before:
                    calls.append((entry, state, linearized))
                    state = new_state
                    linearized = new_linearized
                    # Lift the call, then its return.
                    p = prv[entry]
                    q = nxt[entry]
                    nxt[p] = q
                    prv[q] = p
                    ret = entry + n
                    p = prv[ret]
                    q = nxt[ret]
                    nxt[p] = q
                    prv[q] = p
                    if not optional[entry]:
                        required_left -= 1
                        if not required_left:
                            # The optional operations left can all go last, or never happen.
                            break
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            # A return: its operation had to be linearized by now, so undo the last choice.
            if not calls:
                return _Search(Verdict.ILLEGAL, longest, steps + slice_steps - budget)
            if len(calls) > len(longest):
                longest = [c[0] for c in calls]
            entry, state, linearized = calls.pop()
            if not optional[entry]:
                required_left += 1
            # Unlift in the reverse order of the lift: the return, then the call.
            ret = entry + n
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    return _Search(Verdict.OK, [c[0] for c in calls], steps + slice_steps - budget)


def _explain(model: Model[S, I, O], part: Sequence[Operation[I, O]], longest: list[int]) -> str:
    """Describe where the search got stuck: the end of the longest linearizable prefix and the
    operations that could come next, each with why it cannot (its step from the state reached
    is illegal, or every continuation after it dead-ends)."""
    n = len(part)
    states = [model.init()]
    for i in longest:
        legal, nxt_state = model.step(states[-1], part[i].input, part[i].output)
        _require(legal, "the longest prefix replays")
        states.append(nxt_state)
    done = set(longest)
    order = [e for e in _entry_order(part) if (e if e < n else e - n) not in done]
    candidates: list[int] = []
    blocking = -1
    for e in order:
        if e >= n:
            blocking = e - n
            break
        candidates.append(e)

    def describe(i: int) -> str:
        op = part[i]
        ret = "inf" if op.return_ns == math.inf else f"{op.return_ns:g}"
        return (
            f"#{i} client {op.client_id} [{op.call_ns:g}, {ret}] "
            f"{model.describe_operation(op.input, op.output)}"
        )

    lines = [
        f"not linearizable: a partition of {n} operations; the longest linearizable prefix "
        f"has {len(longest)} of them"
    ]
    shown = longest[-_EXPLAIN_PREFIX_OPS:]
    if len(longest) > len(shown):
        lines.append(f"  ... {len(longest) - len(shown)} earlier operations")
    for k, i in enumerate(shown, start=len(longest) - len(shown) + 1):
        lines.append(f"  {describe(i)}    => {model.describe_state(states[k])}")
    lines.append(
        f"from state {model.describe_state(states[-1])}, none of these can come next "
        f"(all were called before #{blocking} returned):"
    )
    for i in candidates[:_EXPLAIN_CANDIDATE_OPS]:
        legal, _ = model.step(states[-1], part[i].input, part[i].output)
        why = "continuations dead-end" if legal else "illegal in this state"
        mark = "  <- must precede the next return" if i == blocking else ""
        lines.append(f"  {describe(i)}    ({why}){mark}")
    if len(candidates) > _EXPLAIN_CANDIDATE_OPS:
        lines.append(f"  ... and {len(candidates) - _EXPLAIN_CANDIDATE_OPS} more")
    return "\n".join(lines)


def _require(condition: bool, what: str) -> None:
    """An invariant check that survives `python -O`."""
    if not condition:
        raise AssertionError(f"linearizability checker invariant violated: {what}")
