"""Sequential specifications for the linearizability checker.

- `CasRegisterModel`: one register with read, write and compare-and-swap; values may be None
  (nil, the register's initial value). The model of the Jepsen etcd corpus.
- `KvModel`: get/put/append on string values, partitioned per key (a missing key reads "").
  The model of Porcupine's kv corpus.
- `EtcdModel`: the etcd v2 operations our fault tests record, partitioned per key: quorum
  `get` (a value or not-found), `set`, `cas` with `prevValue` (ok, or error 101 "Compare
  failed", or error 100 "Key not found" on a missing key), `create` (`prevExist=false`; error
  105 "Key already exists") and `delete`, optionally with `prevValue` (compare-and-delete).
  Plain (non-quorum) etcd GETs may be stale by design and must not be recorded as `get`.

Every step accepts `UNKNOWN` as output (the outcome was not observed) and then applies the
operation as if it succeeded; the checker makes that "maybe" by giving such operations an
infinite return time. Steps are pure and states are immutable hashable values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeVar

from .checker import UNKNOWN, Model, Operation, Unknown

__all__ = [
    "ALREADY_EXISTS",
    "COMPARE_FAILED",
    "KEY_NOT_FOUND",
    "OK",
    "CasRegisterModel",
    "EtcdModel",
    "EtcdOp",
    "EtcdResult",
    "KvModel",
    "KvOp",
    "RegisterOp",
    "RegisterValue",
]

RegisterValue = Hashable
"""A register value: anything hashable; None is nil (the initial value)."""


@dataclass(frozen=True, slots=True)
class RegisterOp:
    """A register operation: `read`, `write(value)` or `cas(expected, value)`."""

    kind: Literal["read", "write", "cas"]
    value: RegisterValue = None
    expected: RegisterValue = None


# Outputs: a read returns the value read, a cas returns True (swapped) or False (compare
# failed), a write returns None.
RegisterOutput = RegisterValue


class CasRegisterModel(Model[RegisterValue, RegisterOp, RegisterOutput]):
    """A single compare-and-swap register starting at None."""

    def init(self) -> RegisterValue:
        return None

    def step(
        self, state: RegisterValue, op_input: RegisterOp, op_output: RegisterOutput | Unknown
    ) -> tuple[bool, RegisterValue]:
        kind = op_input.kind
        if kind == "read":
            return (op_output is UNKNOWN or op_output == state), state
        if kind == "write":
            return True, op_input.value
        if op_input.expected == state:
            return (op_output is UNKNOWN or op_output is True), op_input.value
        return (op_output is UNKNOWN or op_output is False), state

    def describe_operation(self, op_input: RegisterOp, op_output: RegisterOutput | Unknown) -> str:
        out = "?" if op_output is UNKNOWN else repr(op_output)
        if op_input.kind == "read":
            return f"read() -> {out}"
        if op_input.kind == "write":
            return f"write({op_input.value!r})" + (" -> ?" if op_output is UNKNOWN else "")
        result = "?" if op_output is UNKNOWN else ("ok" if op_output is True else "fail")
        return f"cas({op_input.expected!r}, {op_input.value!r}) -> {result}"


@dataclass(frozen=True, slots=True)
class KvOp:
    """A kv operation on one key: `get`, `put(value)` or `append(value)`."""

    kind: Literal["get", "put", "append"]
    key: str
    value: str = ""


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)
R = TypeVar("R")


def _partition_by_key(history: Sequence[Operation[K, R]]) -> list[list[Operation[K, R]]]:
    """Per-key sub-histories, in first-use order: keys are independent (P-compositionality)."""
    parts: defaultdict[str, list[Operation[K, R]]] = defaultdict(list)
    for op in history:
        parts[op.input.key].append(op)
    return list(parts.values())


class KvModel(Model[str, KvOp, str]):
    """Per-key string values (missing reads as ""), with gets returning the whole value."""

    def init(self) -> str:
        return ""

    def step(self, state: str, op_input: KvOp, op_output: str | Unknown) -> tuple[bool, str]:
        kind = op_input.kind
        if kind == "get":
            return (op_output is UNKNOWN or op_output == state), state
        if kind == "put":
            return True, op_input.value
        return True, state + op_input.value

    def partition(
        self, history: Sequence[Operation[KvOp, str]]
    ) -> list[list[Operation[KvOp, str]]]:
        return _partition_by_key(history)

    def describe_operation(self, op_input: KvOp, op_output: str | Unknown) -> str:
        if op_input.kind == "get":
            return f"get({op_input.key!r}) -> {'?' if op_output is UNKNOWN else repr(op_output)}"
        return f"{op_input.kind}({op_input.key!r}, {op_input.value!r})"


# etcd v2 ----------------------------------------------------------------------------------

EtcdOutcome = Literal["ok", "not_found", "compare_failed", "already_exists"]
OK: Final = "ok"
KEY_NOT_FOUND: Final = "not_found"  # etcd error 100 "Key not found"
COMPARE_FAILED: Final = "compare_failed"  # etcd error 101 "Compare failed"
ALREADY_EXISTS: Final = "already_exists"  # etcd error 105 "Key already exists"


@dataclass(frozen=True, slots=True)
class EtcdOp:
    """An etcd v2 request on one key.

    `get` is a quorum read; `set` writes `value`; `create` writes `value` if the key does not
    exist; `cas` writes `value` if the key exists and holds `prev_value` (any value when that is
    None, as `prevExist=true`); `delete` removes the key, only if it holds `prev_value` when
    that is given.
    """

    kind: Literal["get", "set", "create", "cas", "delete"]
    key: str
    value: str | None = None
    prev_value: str | None = None


@dataclass(frozen=True, slots=True)
class EtcdResult:
    """What the client saw: an outcome, and for an ok `get` the value read."""

    outcome: EtcdOutcome
    value: str | None = None


EtcdState = str | None
"""One key's value; None when the key does not exist."""


class EtcdModel(Model[EtcdState, EtcdOp, EtcdResult]):
    """One etcd v2 key per partition, starting absent."""

    def init(self) -> EtcdState:
        return None

    def step(
        self, state: EtcdState, op_input: EtcdOp, op_output: EtcdResult | Unknown
    ) -> tuple[bool, EtcdState]:
        kind = op_input.kind
        if kind == "get":
            if not isinstance(op_output, EtcdResult):
                return True, state  # UNKNOWN
            if state is None:
                return op_output.outcome == KEY_NOT_FOUND, state
            return (op_output.outcome == OK and op_output.value == state), state
        if kind == "set":
            return (op_output is UNKNOWN or _outcome(op_output) == OK), op_input.value
        if kind == "create":
            if state is not None:
                return (op_output is UNKNOWN or _outcome(op_output) == ALREADY_EXISTS), state
            return (op_output is UNKNOWN or _outcome(op_output) == OK), op_input.value
        # cas, delete: etcd v2 checks existence first (100), then prevValue (101).
        if state is None:
            expected: EtcdOutcome = KEY_NOT_FOUND
        elif op_input.prev_value is not None and op_input.prev_value != state:
            expected = COMPARE_FAILED
        else:
            expected = OK
        legal = op_output is UNKNOWN or _outcome(op_output) == expected
        if expected != OK:
            return legal, state
        return legal, (op_input.value if kind == "cas" else None)

    def partition(
        self, history: Sequence[Operation[EtcdOp, EtcdResult]]
    ) -> list[list[Operation[EtcdOp, EtcdResult]]]:
        return _partition_by_key(history)

    def describe_operation(self, op_input: EtcdOp, op_output: EtcdResult | Unknown) -> str:
        if not isinstance(op_output, EtcdResult):
            out = "?"
        elif op_input.kind == "get" and op_output.outcome == OK:
            out = repr(op_output.value)
        else:
            out = op_output.outcome
        args = [repr(op_input.key)]
        if op_input.kind in ("set", "create", "cas"):
            args.append(repr(op_input.value))
        if op_input.prev_value is not None:
            args.append(f"prev={op_input.prev_value!r}")
        return f"{op_input.kind}({', '.join(args)}) -> {out}"


def _outcome(op_output: EtcdResult | Unknown) -> EtcdOutcome | None:
    return op_output.outcome if isinstance(op_output, EtcdResult) else None
