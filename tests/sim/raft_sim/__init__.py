"""A deterministic simulator for `dockyard.raft`: seeded network, disk, crashes; invariants."""
