"""`docker build` through the classic builder API: POST `/build` (and `/build/prune`), and
`docker commit` (POST `/commit`), which shares the builder's layer writing.

Role: the wire side of `images/build/`: reads the query and the context tar (the HTTP
server has buffered the body), streams Docker's JSON messages (`{"stream": …}`,
`{"aux": {"ID": …}}`, `{"errorDetail": …, "error": …}`), tags the result.

Invariants (moby api/server/router/build, api/server/backend/build):
- Anything wrong before the build starts (query, tags, context, Dockerfile, target) is an
  ordinary JSON error reply (`{"message": …}`, 400), which the CLI prints as
  `Error response from daemon: …`; once streaming, errors are in-stream error messages.
- Each message is one JSON object followed by CRLF (moby streamformatter).
- `q=1` holds the text back and sends the image ID alone (aux messages still go out);
  a failure then sends the held text before the error, as dockerd's `errf`.
- The context directory and the build's scratch space are removed however the build
  ends, the client leaving included; the builder removes its containers itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.engine import events as ev
from dockyard.engine.api.router import JSON, PING_HEADERS, Call, Reply, json_reply, route
from dockyard.engine.containers import InvalidArgument
from dockyard.engine.images.build import BUILD_DIR_NAME
from dockyard.engine.images.build.builder import (
    Builder,
    BuildError,
    BuildEvent,
    BuildInputError,
    BuildOptions,
    PreparedBuild,
    prepare_build,
)
from dockyard.engine.images.build.commit import CommitOptions, commit_container, config_from_body
from dockyard.engine.images.changes import InvalidChange
from dockyard.engine.images.model import parse_reference, short_id, validate_tag
from dockyard.http.types import StreamingResponse

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

logger = logging.getLogger(__name__)


def _message(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\r\n").encode()


def _error(message: str, code: int | None = None) -> bytes:
    detail: dict[str, Any] = (
        {"message": message} if code is None else {"code": code, "message": message}
    )
    return _message({"errorDetail": detail, "error": message})


def _json_map(call: Call, name: str) -> dict[str, Any]:
    text = call.arg(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid {name} parameter: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid {name} parameter: not a JSON object")
    return value


def build_options(call: Call) -> BuildOptions:
    """moby newImageBuildOptions, for what the classic builder uses."""
    if call.arg("remote"):
        raise InvalidArgument("remote build contexts are not supported: send the context as a tar")
    if call.arg("version") == "2":
        raise InvalidArgument("BuildKit is not supported: build with DOCKER_BUILDKIT=0")
    build_args = {
        str(k): None if v is None else str(v) for k, v in _json_map(call, "buildargs").items()
    }
    labels = {str(k): str(v) for k, v in _json_map(call, "labels").items()}
    return BuildOptions(
        dockerfile=call.arg("dockerfile") or "Dockerfile",
        tags=tuple(t for t in call.query.get("t", []) if t),
        no_cache=call.flag("nocache"),
        pull=call.flag("pull"),
        remove=call.flag("rm", default=True),
        force_remove=call.flag("forcerm"),
        build_args=build_args,
        labels=labels,
        target=call.arg("target"),
        network_mode=call.arg("networkmode"),
    )


class BuildRoutes:
    engine: Engine

    def _build_root(self) -> Path:
        root = self.engine.layout.data_root / BUILD_DIR_NAME
        root.mkdir(mode=0o700, exist_ok=True)
        return root

    @route("POST", "/build")
    async def image_build(self, call: Call) -> Reply:
        options = build_options(call)
        workdir = self._build_root() / uuid.uuid4().hex
        workdir.mkdir(mode=0o700)
        try:
            prepared = await prepare_build(call.request.body, options, workdir)
        except BuildInputError as e:
            shutil.rmtree(workdir, ignore_errors=True)
            raise InvalidArgument(str(e)) from None
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        builder = Builder(self.engine, prepared, options, workdir)
        chunks = self._build_stream(builder, prepared, workdir, quiet=call.flag("q"))
        return StreamingResponse(200, chunks, JSON, headers=PING_HEADERS)

    async def _build_stream(
        self, builder: Builder, prepared: PreparedBuild, workdir: Path, *, quiet: bool
    ) -> AsyncIterator[bytes]:
        held: list[bytes] = []

        def hold(chunk: bytes) -> bytes | None:
            """The chunk to send now, or None when `q=1` holds it back."""
            if quiet:
                held.append(chunk)
                return None
            return chunk

        def text(message: str) -> bytes | None:
            return hold(_message({"stream": message}))

        try:
            try:
                async for event in builder.run():
                    chunk = self._event_chunk(event, hold)
                    if chunk is not None:
                        yield chunk
                image_id = builder.image_id
                done = [text(f"Successfully built {short_id(image_id)}\n")]
                for tag in prepared.tags:
                    await asyncio.to_thread(self.engine.images.tag, image_id, tag)
                    # moby TagImages: one `tag` event per reference.
                    self.engine.events.emit(ev.IMAGE, "tag", image_id, {"name": tag})
                    done.append(text(f"Successfully tagged {tag}\n"))
            except BuildError as e:
                yield b"".join(held) + _error(str(e), e.code)
                return
            except Exception as e:
                # Once streaming, the status is sent: the error must be in the stream.
                logger.exception("build failed")
                yield b"".join(held) + _error(str(e) or type(e).__name__)
                return
            for line in done:
                if line is not None:
                    yield line
            if quiet:
                yield _message({"stream": image_id + "\n"})
        finally:
            prepared.context.close()
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _event_chunk(event: BuildEvent, hold: Callable[[bytes], bytes | None]) -> bytes | None:
        if event.aux_id:
            # Aux messages go out even with `q=1` (moby's AuxFormatter writes to the
            # response, not to the held output).
            return _message({"aux": {"ID": event.aux_id}})
        if event.status is not None:
            # Pull progress is output like the text: held back by `q=1`.
            return hold(_message(event.status))
        return hold(_message({"stream": event.stream}))

    @route("POST", "/build/prune")
    async def build_prune(self, call: Call) -> Reply:
        # The classic builder keeps no cache besides images (pruned with `image prune`).
        return json_reply(200, {"CachesDeleted": None, "SpaceReclaimed": 0})

    @route("POST", "/commit")
    async def container_commit(self, call: Call) -> Reply:
        """moby postCommit: pause by default (API ≥ 1.13), the body is a container config,
        `changes` are Dockerfile lines, `repo`/`tag` name the result (`:latest` default)."""
        ref = commit_reference(call.arg("repo"), call.arg("tag"))
        body_config = config_from_body(call.json_body())
        options = CommitOptions(
            ref=ref,
            comment=call.arg("comment"),
            author=call.arg("author"),
            pause=call.flag("pause", default=True),
        )
        record = self.engine.containers.resolve(call.arg("container"))
        try:
            image_id = await commit_container(
                self.engine, record.id, body_config, call.query.get("changes", []), options
            )
        except InvalidChange as e:
            raise InvalidArgument(str(e)) from None
        self.engine.emit_container_event(
            record.id,
            "commit",
            {"comment": options.comment, "imageID": image_id, "imageRef": ref or ""},
        )
        if ref is not None:
            self.engine.events.emit(ev.IMAGE, "tag", image_id, {"name": ref})
        return json_reply(201, {"Id": image_id})


def commit_reference(repo: str, tag: str) -> str | None:
    """moby httputils.RepoTagReference: the familiar `name:tag`, or None without a repo."""
    if not repo:
        return None
    named = parse_reference(repo, default_tag=False)
    if named.digest is not None:
        raise InvalidArgument("cannot commit to digest reference")
    if tag:
        validate_tag(tag)
        return f"{named.familiar_name()}:{tag}"
    return named.with_default_tag().familiar()
