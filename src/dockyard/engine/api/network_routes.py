"""The /networks endpoints: `docker network create/ls/inspect/rm/connect/disconnect/prune`.

Role: the wire side of engine/network/manager.py. Bodies and answers in dockerd's shapes;
errors from the model (`NetworkError` with dockerd's status and message) pass through the
router's error mapping as `{"message": ...}`.
"""

from __future__ import annotations

from typing import Any

from dockyard.engine.api.router import Call, Reply, json_reply, route
from dockyard.engine.containers import InvalidArgument
from dockyard.engine.daemon import Engine
from dockyard.engine.model.filters import FilterArgs
from dockyard.http.types import Response


def _filters(call: Call) -> dict[str, list[str]]:
    args = FilterArgs.parse(call.arg("filters"))
    return {key: sorted(values) for key, values in args.fields.items()}


def _body(call: Call) -> dict[str, Any]:
    body = call.json_body()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument("json: cannot unmarshal the request body: not an object")
    return body


def _container(body: dict[str, Any]) -> str:
    container = str(body.get("Container") or "")
    if not container:
        raise InvalidArgument("container ID must not be empty")
    return container


class NetworkRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @route("GET", "/networks")
    async def network_list(self, call: Call) -> Reply:
        return json_reply(200, self.engine.networks.list_networks(_filters(call)))

    @route("GET", "/networks/(?P<id>[^/]+)")
    async def network_inspect(self, call: Call) -> Reply:
        verbose = call.flag("verbose")
        return json_reply(
            200, self.engine.networks.inspect_network(call.params["id"], verbose=verbose)
        )

    @route("POST", "/networks/create")
    async def network_create(self, call: Call) -> Reply:
        network_id, warning = await self.engine.networks.create_network(_body(call))
        return json_reply(201, {"Id": network_id, "Warning": warning})

    @route("DELETE", "/networks/(?P<id>[^/]+)")
    async def network_remove(self, call: Call) -> Reply:
        await self.engine.networks.remove_network(call.params["id"])
        return Response(204)

    @route("POST", "/networks/(?P<id>[^/]+)/connect")
    async def network_connect(self, call: Call) -> Reply:
        body = _body(call)
        endpoint = body.get("EndpointConfig") or {}
        await self.engine.connect_network(call.params["id"], _container(body), endpoint)
        return Response(200)

    @route("POST", "/networks/(?P<id>[^/]+)/disconnect")
    async def network_disconnect(self, call: Call) -> Reply:
        body = _body(call)
        await self.engine.disconnect_network(
            call.params["id"], _container(body), force=bool(body.get("Force"))
        )
        return Response(200)

    @route("POST", "/networks/prune")
    async def network_prune(self, call: Call) -> Reply:
        deleted = await self.engine.networks.prune_networks(_filters(call))
        return json_reply(200, {"NetworksDeleted": deleted or None})
