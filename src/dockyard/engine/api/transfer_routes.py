"""Image interchange and disk usage: `docker save` (GET `/images/get`,
`/images/{name}/get`), `docker load` (POST `/images/load`) and `docker system df`
(GET `/system/df`).

Role: the wire side of `images/interchange.py`.
"""

from __future__ import annotations

from dockyard.engine.daemon import Engine


class TransferRoutes:
    engine: Engine
