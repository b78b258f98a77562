"""The etcd-compatible service-discovery store (v2 keys API): server, clients and recipes."""

from dockyard.store.client import AsyncStoreClient, StoreClient, StoreClientError
from dockyard.store.recipes import AsyncElection, AsyncLock, Election, Lock

__all__ = [
    "AsyncElection",
    "AsyncLock",
    "AsyncStoreClient",
    "Election",
    "Lock",
    "StoreClient",
    "StoreClientError",
]
