"""`docker build` through the classic builder API: POST `/build` (and `/build/prune`).

Role: the wire side of `images/build/`: reads the context tar and the query, streams Docker's
JSON messages (`{"stream": …}`, `{"aux": {"ID": …}}`, `{"errorDetail": …}`).
"""

from __future__ import annotations

from dockyard.engine.daemon import Engine


class BuildRoutes:
    engine: Engine
