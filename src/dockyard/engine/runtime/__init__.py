"""The engine's runtime layer: a runc CLI driver (`runc`) and a per-container shim (`shim`).

The daemon never parents container processes: it starts a shim per container, and the
shim owns the container's stdio, json-file log and exit status, so containers survive a
daemon restart.

This `__init__` imports nothing eagerly (PEP 562 `__getattr__`): the shim process imports
`dockyard.engine.runtime.shim_main`, and loading asyncio here would double its start time.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.engine.runtime.runc import Runc, RuncError, RuncState
    from dockyard.engine.runtime.shim import (
        ExitStatus,
        ShimConfig,
        ShimError,
        ShimHandle,
        start_shim,
        wait_exit,
    )

_EXPORTS = {
    "ExitStatus": "shim",
    "Runc": "runc",
    "RuncError": "runc",
    "RuncState": "runc",
    "ShimConfig": "shim",
    "ShimError": "shim",
    "ShimHandle": "shim",
    "start_shim": "shim",
    "wait_exit": "shim",
}

__all__ = [
    "ExitStatus",
    "Runc",
    "RuncError",
    "RuncState",
    "ShimConfig",
    "ShimError",
    "ShimHandle",
    "start_shim",
    "wait_exit",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
