"""Registry endpoints: pull (POST `/images/create?fromImage=`), push (POST
`/images/{name}/push`) and `docker login` (POST `/auth`).

Role: the wire side of `images/registry/`: decodes `X-Registry-Auth`, streams Docker's
progress messages.

Invariants:
- As dockerd's `output.Flushed()` rule: an error before the first progress message is an
  HTTP error with Docker's status (`manifest for … not found` 404, a registry that is down
  500); an error after it is the stream's last message,
  `{"errorDetail": {"message": …}, "error": …}`, which the CLI prints and exits 1 on.
- jsonmessage lines end in CRLF (moby streamformatter).
- The image events `pull` and `push` name the reference (moby LogImageEvent with the
  familiar reference as both actor and name), emitted once the operation succeeded.
- `POST /auth` answers `{"Status": "Login Succeeded", "IdentityToken": ""}`, or 401 with
  the registry's refusal.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dockyard.engine import events as ev
from dockyard.engine.api.router import (
    JSON,
    PING_HEADERS,
    Call,
    Reply,
    encode,
    error_reply,
    json_reply,
    route,
)
from dockyard.engine.containers import EngineError, InvalidArgument, NotFound
from dockyard.engine.images.model import (
    DEFAULT_DOMAIN,
    LEGACY_DEFAULT_DOMAIN,
    InvalidReference,
    Reference,
    parse_reference,
    validate_digest,
    validate_tag,
)
from dockyard.engine.images.registry.auth import (
    AuthConfig,
    decode_registry_auth,
    parse_auth_body,
)
from dockyard.engine.images.registry.client import ClientOptions, ping_login
from dockyard.engine.images.registry.distribution import (
    Progress,
    prepare_pull,
    prepare_push,
)
from dockyard.engine.images.registry.endpoints import RegistryLocation, registry_host
from dockyard.engine.images.registry.errors import (
    RegistryError,
    RegistryNotFound,
    RegistryUnauthorized,
)
from dockyard.engine.images.registry.manifests import InvalidManifest, Platform, parse_platform
from dockyard.engine.images.store import ImageStoreError, host_platform
from dockyard.http.types import StreamingResponse

if TYPE_CHECKING:
    from dockyard.engine.daemon import Engine

__all__ = ["RegistryRoutes", "pull_image", "pull_reference"]


def _line(value: Any) -> bytes:
    return encode(value).rstrip(b"\n") + b"\r\n"


def _error_line(message: str) -> bytes:
    return _line({"errorDetail": {"message": message}, "error": message})


def pull_reference(from_image: str, tag: str) -> tuple[Reference, bool]:
    """moby postImagesCreate: `tag` may be a tag or a digest; neither means all tags.

    Returns the reference and whether every tag is pulled (`docker pull -a`).
    """
    ref = parse_reference(from_image, default_tag=False)
    if tag:
        if ":" in tag:
            validate_digest(tag)
            return Reference(ref.domain, ref.path, None, tag), False
        validate_tag(tag)
        return Reference(ref.domain, ref.path, tag, None), False
    if ref.tag is None and ref.digest is None:
        return ref, True
    return ref, False


def _login_location(server_address: str) -> RegistryLocation:
    """The registry `docker login SERVER` names (scheme and path dropped, Hub aliased)."""
    text = server_address.strip() or f"https://{LEGACY_DEFAULT_DOMAIN}/v1/"
    host = urlsplit(text).netloc if "://" in text else text.split("/", 1)[0]
    if host in (LEGACY_DEFAULT_DOMAIN, DEFAULT_DOMAIN):
        host = DEFAULT_DOMAIN
    return RegistryLocation(host, registry_host(host), "")


def _engine_error(error: Exception) -> EngineError:
    """Registry errors as the dispatcher's statuses: not found 404, the rest 500."""
    if isinstance(error, RegistryNotFound):
        return NotFound(str(error))
    return EngineError(str(error))


def _client_options(engine: Engine) -> ClientOptions:
    return ClientOptions(insecure_registries=tuple(engine.insecure_registries))


def _platform(call: Call) -> Platform:
    """The platform a pull selects: `?platform=` if given, else the host's."""
    host_os, host_arch = host_platform()
    host = Platform(host_os, host_arch)
    text = call.arg("platform")
    if not text:
        return host
    try:
        return parse_platform(text, host)
    except InvalidManifest as exc:
        raise InvalidArgument(str(exc)) from None


async def _stream(
    messages: AsyncGenerator[Progress, None], on_success: Callable[[], None]
) -> Reply:
    """Take the first message before answering (dockerd's Flushed rule), then stream."""
    try:
        first = await anext(messages)
    except StopAsyncIteration:
        first = None
    except (RegistryError, ImageStoreError, InvalidReference) as exc:
        await messages.aclose()
        raise _engine_error(exc) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield _line(first.to_wire())
            async for item in messages:
                yield _line(item.to_wire())
        except (RegistryError, ImageStoreError, InvalidReference, OSError) as exc:
            yield _error_line(str(exc))
            return
        finally:
            await messages.aclose()
        on_success()

    return StreamingResponse(200, body(), JSON, headers=PING_HEADERS)


async def pull_image(engine: Engine, call: Call) -> Reply:
    """`docker pull`: POST /images/create?fromImage=NAME&tag=TAG (without `fromSrc`).

    A module function so that `image_routes.image_create`, which owns the endpoint, can
    call it without the mixins knowing each other.
    """
    ref, all_tags = pull_reference(call.arg("fromImage"), call.arg("tag"))
    auth = decode_registry_auth(call.request.headers.get("x-registry-auth", ""))
    platform = _platform(call)
    try:
        plan = await prepare_pull(
            engine.images, ref, auth, _client_options(engine), platform, all_tags=all_tags
        )
    except (RegistryError, ImageStoreError) as exc:
        raise _engine_error(exc) from None

    async def messages() -> AsyncGenerator[Progress, None]:
        async for item in plan.run():
            yield item

    familiar = ref.familiar()

    def pulled() -> None:
        engine.events.emit(ev.IMAGE, "pull", familiar, {"name": familiar})

    return await _stream(messages(), pulled)


class RegistryRoutes:
    """Mixin of `DockerApi` (routes.py): push and login; pull through `pull_image`."""

    engine: Engine

    async def pull_image(self, call: Call) -> Reply:
        return await pull_image(self.engine, call)

    @route("POST", "/images/(?P<name>.+)/push")
    async def image_push(self, call: Call) -> Reply:
        name = call.params["name"]
        header = call.request.headers.get("x-registry-auth", "")
        if header:
            auth = decode_registry_auth(header)
        else:
            # moby: the old clients' form, AuthConfig JSON as the body.
            try:
                auth = (
                    parse_auth_body(call.request.body)
                    if call.request.body.strip()
                    else AuthConfig()
                )
            except ValueError as exc:
                raise InvalidArgument(
                    f"Bad parameters and missing X-Registry-Auth: {exc}"
                ) from None
        try:
            plan = await prepare_push(
                self.engine.images, name, call.arg("tag"), auth, _client_options(self.engine)
            )
        except RegistryError as exc:
            raise InvalidArgument(str(exc)) from None
        familiar = plan.ref.familiar()

        def pushed() -> None:
            self.engine.events.emit(ev.IMAGE, "push", familiar, {"name": familiar})

        async def messages() -> AsyncGenerator[Progress, None]:
            async for item in plan.run():
                yield item

        return await _stream(messages(), pushed)

    @route("POST", "/auth")
    async def auth(self, call: Call) -> Reply:
        try:
            auth = parse_auth_body(call.request.body)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        location = _login_location(auth.server_address)
        try:
            token = await ping_login(location, auth, _client_options(self.engine))
        except RegistryUnauthorized as exc:
            return error_reply(401, str(exc))
        except RegistryError as exc:
            raise EngineError(str(exc)) from None
        return json_reply(200, {"Status": "Login Succeeded", "IdentityToken": token})
