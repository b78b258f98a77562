"""A linearizability checker for the store's fault tests: Porcupine's algorithm in Python.

`checker` is the Wing-Gong-Lowe search, `models` the sequential specifications (CAS register,
kv, etcd v2), `parsers` read the shared corpora, and `history` records what clients saw during
a test and formats it for failure messages.
"""

from .checker import UNKNOWN, CheckResult, Model, Operation, Unknown, Verdict, check_operations
from .history import HistoryRecorder, assert_linearizable, format_history

__all__ = [
    "UNKNOWN",
    "CheckResult",
    "HistoryRecorder",
    "Model",
    "Operation",
    "Unknown",
    "Verdict",
    "assert_linearizable",
    "check_operations",
    "format_history",
]
