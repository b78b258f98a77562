"""Registry endpoints: pull (POST `/images/create?fromImage=`), push (POST
`/images/{name}/push`) and `docker login` (POST `/auth`).

Role: the wire side of `images/registry/`: decodes `X-Registry-Auth`, streams Docker's
progress messages.
"""

from __future__ import annotations

from dockyard.engine.daemon import Engine


class RegistryRoutes:
    engine: Engine
