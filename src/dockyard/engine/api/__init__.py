"""The Docker Engine API boundary of the engine: routes, versioning, wire formats."""
