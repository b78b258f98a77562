"""The etcd-compatible service-discovery store (v2 keys API): server, clients and recipes.

`from dockyard.store import StoreClient, Lock, ...` works, but loads the client only when
asked: the server's pure modules live in this package and must not pull in HTTP clients.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AsyncStoreClient": "dockyard.store.client",
    "StoreClient": "dockyard.store.client",
    "StoreClientError": "dockyard.store.client",
    "AsyncElection": "dockyard.store.recipes",
    "AsyncLock": "dockyard.store.recipes",
    "Election": "dockyard.store.recipes",
    "Lock": "dockyard.store.recipes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dockyard.store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
