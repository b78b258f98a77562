"""The Docker API's `POST /containers/{id}/update` (`docker update`).

Role: the wire shape only; the merge rules and their messages live in
`model/host_config.py` (apply_update) and the runtime step in `Engine.update`.

Invariants: the answer is `{"Warnings": [...]}` (a list, never null); a body that is not
a JSON object is a 400, an unknown container a 404, a conflicting change a 409 with
dockerd's "Cannot update container <id>: ..." message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.engine.api.router import Call, Reply, json_reply, route
from dockyard.engine.containers import InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine


class UpdateRoutes:
    """Mixin of `DockerApi` (routes.py): container resource and restart-policy updates."""

    engine: Engine

    @route("POST", "/containers/(?P<id>[^/]+)/update")
    async def container_update(self, call: Call) -> Reply:
        body = call.json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InvalidArgument("json: cannot unmarshal the update body: not an object")
        warnings = await self.engine.update(call.params["id"], body)
        return json_reply(200, {"Warnings": warnings})
