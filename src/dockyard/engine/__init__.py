"""The container engine: a Docker Engine API daemon running containers under runc."""
