"""The etcd-compatible service-discovery store (v2 keys API)."""
