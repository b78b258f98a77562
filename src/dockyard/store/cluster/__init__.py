"""The replicated store: several members agreeing on one log with Raft (docs/raft.md).

`codec` (pure: the peer wire format), `storage` (the raft log on disk), `transport` (peer
HTTP), `member` (the Ready loop: the clustered counterpart of `store.node.StoreNode`).
"""
