"""`docker cp` and `docker export`: HEAD/GET/PUT `/containers/{id}/archive`, GET `/export`.

Role: the wire side of `engine/archive.py`. HEAD answers the path's stat alone in the
`X-Docker-Container-Path-Stat` header (base64 JSON, api-surface.md §9); GET adds the tar
of the path; PUT extracts the request's tar into the directory the path names; export
streams the whole root filesystem. Errors found before a stream starts (missing path,
missing container) are Docker's JSON errors; both verbs share the GET route because the
dispatcher routes HEAD as GET.
"""

from __future__ import annotations

from dockyard.engine import archive
from dockyard.engine.api.router import (
    PING_HEADERS,
    TRUSTED_HEADERS,
    Call,
    Reply,
    route,
)
from dockyard.engine.containers import InvalidArgument
from dockyard.engine.daemon import Engine
from dockyard.engine.model.archive import EMPTY_PATH
from dockyard.http.types import Response, StreamingResponse

STAT_HEADER = "X-Docker-Container-Path-Stat"


class ArchiveRoutes:
    engine: Engine

    @staticmethod
    def _path(call: Call) -> str:
        path = call.arg("path")
        if not path:
            raise InvalidArgument(EMPTY_PATH)
        return path

    @route("GET", "/containers/(?P<id>[^/]+)/archive")
    async def container_archive(self, call: Call) -> Reply:
        path = self._path(call)
        ref = call.params["id"]
        if call.request.method == "HEAD":
            stat = await archive.stat_path(self.engine, ref, path)
            return Response(
                200,
                headers=((STAT_HEADER, stat.header_value()),),
                trusted_headers=TRUSTED_HEADERS,
            )
        stat, chunks = await archive.open_archive(self.engine, ref, path)
        return StreamingResponse(
            200,
            chunks,
            "application/x-tar",
            headers=(*PING_HEADERS, (STAT_HEADER, stat.header_value())),
        )

    @route("PUT", "/containers/(?P<id>[^/]+)/archive")
    async def container_extract(self, call: Call) -> Reply:
        path = self._path(call)
        await archive.extract_to(
            self.engine,
            call.params["id"],
            path,
            call.request.body,
            no_overwrite_dir_non_dir=call.flag("noOverwriteDirNonDir"),
            copy_uid_gid=call.flag("copyUIDGID"),
        )
        return Response(200, trusted_headers=TRUSTED_HEADERS)

    @route("GET", "/containers/(?P<id>[^/]+)/export")
    async def container_export(self, call: Call) -> Reply:
        chunks = await archive.open_export(self.engine, call.params["id"])
        return StreamingResponse(200, chunks, "application/octet-stream", headers=PING_HEADERS)
