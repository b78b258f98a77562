"""Raft consensus as a pure state machine (no I/O, no clock): see `core.RaftNode`."""
