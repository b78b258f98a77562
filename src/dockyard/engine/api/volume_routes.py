"""The volume endpoints: `docker volume create/ls/inspect/rm/prune`.

Role: the wire side of `volumes/service.py` (moby `api/server/router/volume`): decode the
query and body, call the service on a worker thread (it mounts and deletes), and answer
Docker's JSON. Errors are the service's `VolumeError`s, which are `NotFound`/`Conflict`/
`InvalidArgument` and so reach the client with dockerd's status and `{"message": ...}`.

Invariants:
- `POST /volumes/create` answers 201 with the volume, a new one or the existing one of
  that name.
- `DELETE /volumes/{name}` answers 204; `force` turns "no such volume" into success.
- `POST /volumes/prune` before API 1.42 prunes named volumes too (the router adds
  `all=true`, as moby's postVolumesPrune does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, cast

from dockyard.engine.api.router import TRUSTED_HEADERS, Call, Reply, json_reply, route
from dockyard.engine.api.versions import ApiVersion
from dockyard.engine.daemon import Engine
from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.volumes.model import InvalidVolume
from dockyard.engine.volumes.service import VolumeService
from dockyard.http.types import Response

# API 1.42 made prune spare named volumes unless `all=true`.
PRUNE_ANONYMOUS_SINCE = ApiVersion(1, 42)


def _string_map(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        # Go's json decoder into map[string]string.
        raise InvalidVolume(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            f"CreateOptions.{key} of type map[string]string"
        )
    return {str(k): v for k, v in value.items()}


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidVolume(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            f"CreateOptions.{key} of type string"
        )
    return value


class _VolumeEngine(Protocol):
    """What these routes need of Engine: its volume service, and volume name -> ids of
    the containers whose mount points name it."""

    volumes: VolumeService

    def volume_users(self) -> dict[str, list[str]]: ...


class VolumeRoutes:
    engine: Engine

    @property
    def _engine(self) -> _VolumeEngine:
        return cast(_VolumeEngine, self.engine)

    @route("GET", "/volumes")
    async def volumes_list(self, call: Call) -> Reply:
        filters = FilterArgs.parse(call.arg("filters"))
        users = self._engine.volume_users()
        volumes = await asyncio.to_thread(self._engine.volumes.list, filters, users)
        return json_reply(200, {"Volumes": volumes, "Warnings": None})

    @route("POST", "/volumes/create")
    async def volumes_create(self, call: Call) -> Reply:
        body = call.json_body() or {}
        if not isinstance(body, dict):
            raise InvalidVolume(
                "json: cannot unmarshal value into Go value of type volume.CreateOptions"
            )
        name = _string(body, "Name")
        driver = _string(body, "Driver")
        opts = _string_map(body, "DriverOpts")
        labels = _string_map(body, "Labels")
        service = self._engine.volumes

        def create() -> dict[str, Any]:
            record = service.create(name or None, driver, opts, labels)
            result: dict[str, Any] = service.to_json(record)
            return result

        return json_reply(201, await asyncio.to_thread(create))

    @route("GET", "/volumes/(?P<name>[^/]+)")
    async def volume_inspect(self, call: Call) -> Reply:
        service = self._engine.volumes
        return json_reply(200, await asyncio.to_thread(service.inspect, call.params["name"]))

    @route("DELETE", "/volumes/(?P<name>[^/]+)")
    async def volume_remove(self, call: Call) -> Reply:
        name = call.params["name"]
        users = self._engine.volume_users()
        service = self._engine.volumes
        await asyncio.to_thread(
            lambda: service.remove(name, force=call.flag("force"), users=users.get(name, []))
        )
        return Response(204, trusted_headers=TRUSTED_HEADERS)

    @route("POST", "/volumes/prune")
    async def volumes_prune(self, call: Call) -> Reply:
        filters = FilterArgs.parse(call.arg("filters"))
        users = self._engine.volume_users()
        service = self._engine.volumes
        anonymous_only = call.version >= PRUNE_ANONYMOUS_SINCE
        deleted, reclaimed = await asyncio.to_thread(
            lambda: service.prune(filters, users, anonymous_only=anonymous_only)
        )
        return json_reply(200, {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})
