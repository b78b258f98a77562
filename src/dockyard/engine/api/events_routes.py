"""`GET /events` and `POST /containers/prune`.

Role: the API side of the event bus (engine/events.py) and of container pruning.

Events (moby api/server/router/system getEvents, api-surface.md §11): the answer's headers
are flushed at once; then the buffered events between `since` and `until` (only when one of
them is given), then live events as they happen, one JSON object per chunk, each ending in
"\\n". An `until` in the past ends the stream after the replay; one in the future ends it
when that time comes. `since` and `until` are unix seconds with an optional fraction (the
CLI converts durations and dates itself).

Prune (moby daemon/prune.go ContainersPrune): removes every container that is not running
(paused and restarting ones count as running), filtered by `until` (created before) and
`label`/`label!`; answers `{"ContainersDeleted": [ids] | null, "SpaceReclaimed": N}` and
emits a container `prune` event with the `reclaimed` attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dockyard.engine import events as ev
from dockyard.engine.api.router import (
    JSON,
    PING_HEADERS,
    Call,
    Reply,
    encode,
    json_reply,
    route,
)
from dockyard.engine.containers import EngineError, InvalidArgument, parse_time_ns
from dockyard.engine.model.filters import (
    PRUNE_FILTERS,
    FilterArgs,
    labels_match,
    parse_timestamp,
    parse_unix_timestamp,
)
from dockyard.http.types import StreamingResponse

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine


def _event_time(text: str) -> int | None:
    return parse_unix_timestamp(text) if text else None


class EventRoutes:
    engine: Engine

    @route("GET", "/events")
    async def events(self, call: Call) -> Reply:
        since_ns = _event_time(call.arg("since"))
        until_ns = _event_time(call.arg("until"))
        now_ns = time.time_ns()
        if until_ns is not None and since_ns is not None and until_ns < since_ns:
            raise InvalidArgument(
                f"`since` time ({call.arg('since')}) cannot be after "
                f"`until` time ({call.arg('until')})"
            )
        event_filter = ev.EventFilter(FilterArgs.parse(call.arg("filters")))
        only_past = until_ns is not None and until_ns < now_ns
        bus = self.engine.events
        buffered, sub = bus.subscribe(
            since_ns=since_ns, until_ns=until_ns, event_filter=event_filter
        )
        if only_past:
            sub.close()

        async def body() -> AsyncIterator[bytes]:
            try:
                for item in buffered:
                    yield encode(item.to_wire())
                if only_past:
                    return
                deadline = None if until_ns is None else (until_ns - time.time_ns()) / 1e9
                async with asyncio.timeout(deadline):
                    while (live := await sub.next()) is not None:
                        yield encode(live.to_wire())
            except TimeoutError:
                return  # `until` reached
            finally:
                sub.close()

        return StreamingResponse(200, body(), JSON, headers=PING_HEADERS)

    @route("POST", "/containers/prune")
    async def containers_prune(self, call: Call) -> Reply:
        filters = FilterArgs.parse(call.arg("filters"))
        filters.validate(PRUNE_FILTERS)
        untils = filters.get("until")
        if len(untils) > 1:
            raise InvalidArgument("more than one until filter specified")
        until_ns = parse_timestamp(next(iter(untils)), time.time_ns()) if untils else None
        engine = self.engine
        deleted: list[str] = []
        for record in list(engine.containers):
            state = record.state
            if state.running or state.restarting:
                continue
            if until_ns is not None and parse_time_ns(record.created) > until_ns:
                continue
            if not labels_match(filters, record.config.get("Labels") or {}):
                continue
            # moby logs and skips a container it fails to remove (say, removed meanwhile).
            with contextlib.suppress(EngineError):
                await engine.remove(record.id, force=False)
                deleted.append(record.id)
        # No per-container size accounting yet: nothing is reported as reclaimed.
        reclaimed = 0
        engine.events.emit(ev.CONTAINER, "prune", "", {"reclaimed": str(reclaimed)})
        return json_reply(200, {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


__all__ = ["EventRoutes"]
