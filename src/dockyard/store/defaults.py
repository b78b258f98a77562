"""Where the store listens and keeps its data unless told otherwise (etcd's defaults, with
the legacy 4001 client port as well, and Debian-style paths)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CLIENT_URLS = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
DEFAULT_PEER_URL = "http://127.0.0.1:2380"


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard/store")
    return Path.home() / ".local/share/dockyard/store"
