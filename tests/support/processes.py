"""Waiting on processes the tests did not start as children (shims, daemons' descendants)."""

from __future__ import annotations

import os
import select


def wait_pid_gone(pid: int, timeout_s: float) -> bool:
    """True once `pid` has exited (not necessarily reaped), awaited on a pidfd: it turns
    readable on exit, so nothing polls."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(fd)
