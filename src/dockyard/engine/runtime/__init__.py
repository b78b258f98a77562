"""The engine's runtime layer: a runc CLI driver (`runc`) and a per-container shim (`shim`).

The daemon never parents container processes: it starts a shim per container, and the
shim owns the container's stdio, json-file log and exit status, so containers survive a
daemon restart.
"""

from dockyard.engine.runtime.runc import Runc, RuncError, RuncState
from dockyard.engine.runtime.shim import (
    ExitStatus,
    ShimConfig,
    ShimError,
    ShimHandle,
    start_shim,
    wait_exit,
)

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
