"""Parsers for the corpora in `shared/testdata/` (see its README), into checker operations.

Both formats are event logs: one line per invocation or completion, matched by process id.
Times are line numbers, so the order of the log is the real-time order.

- Jepsen etcd logs (`INFO  jepsen.util - <proc> :invoke|:ok|:fail|:info :read|:write|:cas
  <value>`), for `CasRegisterModel`. `:ok` gives the observed output; `:fail :cas` is a cas whose
  compare failed (output False); `:fail :read :timed-out` had no effect and is dropped; `:info`
  (and an invocation never completed) is an unknown outcome: return time +inf, output
  `UNKNOWN`. Jepsen gives a process a new id after `:info`, but a reused id is handled too.
- Porcupine kv logs (`{:process P, :type :invoke|:ok, :f :get|:put|:append, :key "K",
  :value "V"|nil}`), for `KvModel`; `:fail` drops the operation and `:info` makes it unknown.

A line that matches nothing raises `ValueError`: a silently skipped line could flip a verdict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

from .checker import UNKNOWN, Operation, Unknown
from .models import KvOp, RegisterOp, RegisterValue

__all__ = ["parse_jepsen_etcd_log", "parse_porcupine_kv_log"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

_JEPSEN_LINE: Final = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(?P<proc>\d+)\s+:(?P<type>invoke|ok|fail|info)"
    r"\s+:(?P<f>read|write|cas)\s+(?P<value>.*?)\s*$"
)
_JEPSEN_CAS_ARGS: Final = re.compile(r"^\[\s*(\S+)\s+(\S+)\s*\]$")

_KV_LINE: Final = re.compile(
    r"^\{:process (?P<proc>\d+), :type :(?P<type>invoke|ok|fail|info), :f :(?P<f>get|put|append),"
    r' :key "(?P<key>[^"]*)", :value (?:"(?P<value>[^"]*)"|(?P<nil>nil))\}\s*$'
)


@dataclass(slots=True)
class _Pending(Generic[I]):
    call_line: int
    op_input: I


class _EventLog(Generic[I, O]):
    """Pairs invocations with completions by process id, in log order."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._pending: dict[int, _Pending[I]] = {}
        self._done: list[tuple[int, Operation[I, O]]] = []

    def invoke(self, line_no: int, proc: int, op_input: I) -> None:
        if proc in self._pending:
            raise ValueError(f"{self._source}:{line_no}: process {proc} invokes twice")
        self._pending[proc] = _Pending(line_no, op_input)

    def complete(self, line_no: int, proc: int, op_output: O | Unknown) -> None:
        """Complete with the observed output, or `UNKNOWN` (as if it never returned)."""
        pending = self._take(line_no, proc)
        return_ns = math.inf if op_output is UNKNOWN else float(line_no)
        op = Operation(proc, pending.op_input, float(pending.call_line), op_output, return_ns)
        self._done.append((pending.call_line, op))

    def drop(self, line_no: int, proc: int) -> None:
        """Complete an operation that certainly had no effect: it leaves the history."""
        self._take(line_no, proc)

    def _take(self, line_no: int, proc: int) -> _Pending[I]:
        pending = self._pending.pop(proc, None)
        if pending is None:
            raise ValueError(f"{self._source}:{line_no}: process {proc} completes uninvoked")
        return pending

    def operations(self) -> list[Operation[I, O]]:
        """All operations in call order; still-pending ones have an unknown outcome."""
        for proc, pending in self._pending.items():
            op: Operation[I, O] = Operation(
                proc, pending.op_input, float(pending.call_line), UNKNOWN, math.inf
            )
            self._done.append((pending.call_line, op))
        self._pending.clear()
        self._done.sort(key=lambda item: item[0])
        return [op for _, op in self._done]


def _lines(source: str | Path | Iterable[str]) -> tuple[str, Iterable[str]]:
    if isinstance(source, Path):
        return str(source), source.read_text().splitlines()
    if isinstance(source, str):
        return "<string>", source.splitlines()
    return "<lines>", source


def _jepsen_value(text: str) -> RegisterValue:
    return None if text == "nil" else int(text)


def parse_jepsen_etcd_log(
    source: str | Path | Iterable[str],
) -> list[Operation[RegisterOp, Hashable]]:
    """Parse a Jepsen etcd CAS-register log (a path, its text, or its lines)."""
    name, lines = _lines(source)
    log: _EventLog[RegisterOp, Hashable] = _EventLog(name)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        m = _JEPSEN_LINE.match(line)
        if m is None:
            raise ValueError(f"{name}:{line_no}: not a Jepsen etcd log line: {line!r}")
        proc = int(m["proc"])
        kind, f, value = m["type"], m["f"], m["value"]
        try:
            if kind == "invoke":
                if f == "read":
                    log.invoke(line_no, proc, RegisterOp("read"))
                elif f == "write":
                    log.invoke(line_no, proc, RegisterOp("write", _jepsen_value(value)))
                else:
                    args = _JEPSEN_CAS_ARGS.match(value)
                    if args is None:
                        raise ValueError(f"bad cas arguments {value!r}")
                    expected, new = (_jepsen_value(a) for a in args.groups())
                    log.invoke(line_no, proc, RegisterOp("cas", new, expected))
            elif kind == "info":
                log.complete(line_no, proc, UNKNOWN)
            elif kind == "fail":
                # A failed cas observed a different value; a failed read had no effect.
                if f == "cas":
                    log.complete(line_no, proc, False)
                else:
                    log.drop(line_no, proc)
            elif f == "read":
                log.complete(line_no, proc, _jepsen_value(value))
            else:
                log.complete(line_no, proc, True if f == "cas" else None)
        except ValueError as exc:
            raise ValueError(f"{name}:{line_no}: {exc}: {line!r}") from exc
    return log.operations()


def parse_porcupine_kv_log(source: str | Path | Iterable[str]) -> list[Operation[KvOp, str]]:
    """Parse a Porcupine kv log (a path, its text, or its lines); nil values read as ""."""
    name, lines = _lines(source)
    log: _EventLog[KvOp, str] = _EventLog(name)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        m = _KV_LINE.match(line)
        if m is None:
            raise ValueError(f"{name}:{line_no}: not a Porcupine kv log line: {line!r}")
        proc = int(m["proc"])
        kind, f = m["type"], m["f"]
        value = m["value"] or ""
        if kind == "invoke":
            if f == "get":
                log.invoke(line_no, proc, KvOp("get", m["key"]))
            else:
                log.invoke(line_no, proc, KvOp("put" if f == "put" else "append", m["key"], value))
        elif kind == "info":
            log.complete(line_no, proc, UNKNOWN)
        elif kind == "fail":
            log.drop(line_no, proc)
        else:
            log.complete(line_no, proc, value if f == "get" else "")
    return log.operations()
