"""`docker stats`: GET `/containers/{id}/stats?stream=&one-shot=` (api-surface.md §10).

Role: the wire side of `engine/stats.py`. An unknown container is a JSON 404 before the
stream starts; then one JSON object per chunk, each ending in a newline.
"""

from __future__ import annotations

from dockyard.engine import stats
from dockyard.engine.api.router import JSON, PING_HEADERS, Call, Reply, route
from dockyard.engine.daemon import Engine
from dockyard.http.types import StreamingResponse


class StatsRoutes:
    engine: Engine

    @route("GET", "/containers/(?P<id>[^/]+)/stats")
    async def container_stats(self, call: Call) -> Reply:
        ref = call.params["id"]
        self.engine.containers.resolve(ref)  # a 404 before the stream starts
        chunks = stats.stats_stream(
            self.engine,
            ref,
            stream=call.flag("stream", default=True),
            one_shot=call.flag("one-shot"),
        )
        return StreamingResponse(200, chunks, JSON, headers=PING_HEADERS)
