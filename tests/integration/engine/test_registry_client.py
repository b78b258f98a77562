"""The registry client and pull/push against a real Docker Registry v2 (docker-registry 2.8).

Each test starts its own registry (tests/support/registry.py) on a free port with a temp
config and storage, stopped by PID at teardown. Covered: blobs and manifests, chunked
upload, cross-repository mount, `Range` resume after a cut connection, basic and token
auth, TLS with a certs.d CA on a non-loopback address (secure by dockerd's rules), plain
HTTP there only with `--insecure-registry`, and the bad inputs (down, garbage, digest
mismatch, unknown tag) with Docker's messages; then pull and push through the image store:
layers registered in order, an interrupted pull leaving nothing, the image ID surviving
the round trip.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard.engine.images.model import parse_reference
from dockyard.engine.images.registry.auth import AuthConfig
from dockyard.engine.images.registry.client import (
    ClientOptions,
    Repository,
    open_repository,
    ping_login,
)
from dockyard.engine.images.registry.distribution import (
    Progress,
    prepare_pull,
    prepare_push,
)
from dockyard.engine.images.registry.endpoints import RegistryLocation
from dockyard.engine.images.registry.errors import (
    RegistryError,
    RegistryNotFound,
    RegistryUnauthorized,
    RegistryUnreachable,
)
from dockyard.engine.images.registry.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    Descriptor,
    Platform,
    build_schema2,
)
from dockyard.engine.images.store import ImageNotFound, ImageStore
from tests.support.registry import (
    CutOnceProxy,
    GarbageServer,
    RegistryProcess,
    RemoteHost,
    free_port,
    remote_host,
    start_registry,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

AMD64 = Platform("linux", "amd64")
USERS = {"alice": "wonderland"}


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[list[RegistryProcess]]:
    started: list[RegistryProcess] = []
    try:
        yield started
    finally:
        for registry in started:
            registry.stop()
        alive = [r.process.pid for r in started if r.process.poll() is None]
        assert not alive, f"registries still running: {alive}"


@pytest.fixture
def remote() -> Iterator[RemoteHost]:
    """A namespace of the test's own, for a registry off loopback (set up before, and torn
    down after, the registries that run in it)."""
    with remote_host() as host:
        yield host


def _start(registries: list[RegistryProcess], base: Path, **options: object) -> RegistryProcess:
    registry = start_registry(base / f"registry-{len(registries)}", **options)  # type: ignore[arg-type]
    registries.append(registry)
    return registry


def _location(registry: RegistryProcess | str, repository: str = "team/app") -> RegistryLocation:
    host = registry if isinstance(registry, str) else registry.host
    return RegistryLocation(host, host, repository)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _push_blob(repo: Repository, data: bytes, chunk_bytes: int = 1000) -> str:
    digest = _digest(data)
    assert await repo.upload_blob(_chunks(data, chunk_bytes), digest) == len(data)
    return digest


def _options(tmp_path: Path, *insecure: str) -> ClientOptions:
    return ClientOptions(insecure_registries=insecure, certs_dir=tmp_path / "certs.d")


# -- blobs and manifests -----------------------------------------------------------------


async def test_chunked_upload_head_download_and_manifests(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    repo = await open_repository(
        _location(registry), AuthConfig(), _options(tmp_path), actions=("pull", "push")
    )
    try:
        assert repo.endpoint.scheme == "http"  # loopback: insecure, HTTPS refused, then HTTP
        layer = bytes(range(256)) * 40
        config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
        progress: list[int] = []
        digest = _digest(layer)
        assert await repo.head_blob(digest) is None
        await repo.upload_blob(_chunks(layer, 3000), digest, progress.append)
        assert progress == [3000, 6000, 9000, 10240]  # one PATCH per chunk
        assert await repo.head_blob(digest) == len(layer)
        out = io.BytesIO()
        assert await repo.download_blob(digest, out) == len(layer)
        assert out.getvalue() == layer
        config_digest = await _push_blob(repo, config)
        manifest = build_schema2(
            Descriptor(DOCKER_CONFIG, config_digest, len(config)),
            [Descriptor(DOCKER_LAYER_GZIP, digest, len(layer))],
        )
        pushed = await repo.put_manifest("v1", DOCKER_MANIFEST, manifest)
        assert pushed == _digest(manifest)
        media_type, body, served = await repo.get_manifest("v1")
        assert (media_type, body, served) == (DOCKER_MANIFEST, manifest, pushed)
        assert (await repo.get_manifest(pushed))[1] == manifest
        assert await repo.head_manifest("v1") == pushed
        assert await repo.head_manifest("nope") is None
        assert await repo.tags() == ["v1"]
        assert await repo.get_blob_bytes(config_digest, 1 << 20) == config
    finally:
        await repo.aclose()


async def test_cross_repository_mount(registries: list[RegistryProcess], tmp_path: Path) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    source = await open_repository(
        _location(registry, "team/base"), AuthConfig(), options, actions=("pull", "push")
    )
    target = await open_repository(
        _location(registry, "team/app"), AuthConfig(), options, actions=("pull", "push")
    )
    try:
        digest = await _push_blob(source, b"shared layer" * 100)
        assert await target.head_blob(digest) is None
        assert await target.mount_blob(digest, "team/base")
        assert await target.head_blob(digest) == 1200
        # A blob the source repository does not have is not mounted (202: upload opened).
        assert not await target.mount_blob(_digest(b"unknown"), "team/base")
    finally:
        await source.aclose()
        await target.aclose()


async def test_a_cut_download_resumes_with_range(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    data = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB
    writer = await open_repository(
        _location(registry), AuthConfig(), options, actions=("pull", "push")
    )
    try:
        digest = await _push_blob(writer, data, chunk_bytes=1 << 20)
    finally:
        await writer.aclose()
    proxy = CutOnceProxy(registry.port, cut_after_bytes=300_000)
    try:
        repo = await open_repository(_location(proxy.host), AuthConfig(), options)
        try:
            out = io.BytesIO()
            assert await repo.download_blob(digest, out) == len(data)
        finally:
            await repo.aclose()
        assert out.getvalue() == data
        assert proxy.cut_done.is_set()
        heads = b"".join(proxy.request_heads)
        assert b"Range: bytes=" in heads or b"range: bytes=" in heads
    finally:
        proxy.close()


async def test_a_corrupted_blob_fails_verification(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    repo = await open_repository(
        _location(registry), AuthConfig(), _options(tmp_path), actions=("pull", "push")
    )
    try:
        data = b"genuine content" * 50
        digest = await _push_blob(repo, data)
        _corrupt(registry, digest)
        with pytest.raises(
            RegistryError, match=f"^filesystem layer verification failed for digest {digest}$"
        ):
            await repo.download_blob(digest, io.BytesIO())
        with pytest.raises(RegistryError, match=r"^image config verification failed"):
            await repo.get_blob_bytes(digest, 1 << 20)
    finally:
        await repo.aclose()


def _blob_data(registry: RegistryProcess, digest: str) -> Path:
    hex_digest = digest.removeprefix("sha256:")
    return (
        registry.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
    )


def _corrupt(registry: RegistryProcess, digest: str) -> bytes:
    path = _blob_data(registry, digest)
    original = path.read_bytes()
    path.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    return original


async def test_unknown_tag_and_repository(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    repo = await open_repository(_location(registry), AuthConfig(), _options(tmp_path))
    try:
        with pytest.raises(RegistryError) as caught:
            await repo.get_manifest("nope")
        assert str(caught.value) == "manifest unknown: manifest unknown"
    finally:
        await repo.aclose()
    store = ImageStore(tmp_path / "store")
    ref = parse_reference(f"{registry.host}/team/app:nope")
    with pytest.raises(RegistryNotFound) as not_found:
        await prepare_pull(store, ref, AuthConfig(), _options(tmp_path), AMD64)
    assert str(not_found.value) == (
        f"manifest for {registry.host}/team/app:nope not found: manifest unknown: manifest unknown"
    )
    # `docker pull -a` of a repository the registry never heard of (moby notFoundError).
    every_tag = parse_reference(f"{registry.host}/team/app", default_tag=False)
    with pytest.raises(RegistryNotFound) as unknown:
        await prepare_pull(store, every_tag, AuthConfig(), _options(tmp_path), AMD64, all_tags=True)
    assert str(unknown.value) == (
        f"repository {registry.host}/team/app not found: "
        "name unknown: repository name not known to registry"
    )


# -- unreachable registries ----------------------------------------------------------------


async def test_a_registry_that_is_down(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(RegistryUnreachable) as caught:
        await open_repository(_location(f"127.0.0.1:{port}"), AuthConfig(), _options(tmp_path))
    # Insecure (loopback): HTTPS, then HTTP; the last endpoint's error is reported.
    assert str(caught.value) == (
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )


async def test_a_server_that_answers_garbage(tmp_path: Path) -> None:
    server = GarbageServer()
    try:
        with pytest.raises(RegistryUnreachable) as caught:
            await open_repository(_location(server.host), AuthConfig(), _options(tmp_path))
        # Go's net/http wording for a first line that is no status line.
        assert str(caught.value) == (
            f'Get "http://{server.host}/v2/": net/http: HTTP/1.x transport connection broken: '
            'malformed HTTP status code "not"'
        )
    finally:
        server.close()


# -- auth ------------------------------------------------------------------------------


async def test_basic_auth(registries: list[RegistryProcess], tmp_path: Path) -> None:
    registry = _start(registries, tmp_path, basic_users=USERS)
    options = _options(tmp_path)
    good = AuthConfig("alice", "wonderland")
    assert await ping_login(_location(registry, ""), good, options) == ""
    with pytest.raises(RegistryUnauthorized) as refused:
        await ping_login(_location(registry, ""), AuthConfig("alice", "wrong"), options)
    assert str(refused.value) == (
        f"login attempt to http://{registry.host}/v2/ failed with status: 401 Unauthorized"
    )
    anonymous = await open_repository(_location(registry), AuthConfig(), options)
    try:
        with pytest.raises(RegistryUnauthorized) as caught:
            await anonymous.get_manifest("latest")
        assert str(caught.value) == (
            f'Head "http://{registry.host}/v2/team/app/manifests/latest": no basic auth credentials'
        )
    finally:
        await anonymous.aclose()
    repo = await open_repository(_location(registry), good, options, actions=("pull", "push"))
    try:
        digest = await _push_blob(repo, b"private" * 10)
        assert await repo.head_blob(digest) == 70
    finally:
        await repo.aclose()


async def test_token_auth(registries: list[RegistryProcess], tmp_path: Path) -> None:
    registry = _start(registries, tmp_path, token_users=USERS)
    assert registry.token_server is not None
    options = _options(tmp_path)
    good = AuthConfig("alice", "wonderland")
    assert await ping_login(_location(registry, ""), good, options) == ""
    with pytest.raises(RegistryUnauthorized, match="unauthorized: invalid credentials"):
        await ping_login(_location(registry, ""), AuthConfig("alice", "nope"), options)
    repo = await open_repository(_location(registry), good, options, actions=("pull", "push"))
    try:
        digest = await _push_blob(repo, b"token-protected" * 10)
        assert await repo.head_blob(digest) == 150
    finally:
        await repo.aclose()
    scopes = [
        q["query"].get("scope") for q in registry.token_server.requests if q["user"] == "alice"
    ]
    assert ["repository:team/app:pull,push"] in scopes
    # One token per scope for the whole session: not one request per blob.
    assert scopes.count(["repository:team/app:pull,push"]) == 1
    anonymous = await open_repository(_location(registry), AuthConfig(), options)
    try:
        # The registry's challenge says insufficient_scope: Docker's "denied".
        with pytest.raises(
            RegistryError, match=r"^denied: requested access to the resource is denied$"
        ):
            await anonymous.get_manifest("latest")
    finally:
        await anonymous.aclose()


# -- TLS on a non-loopback address (secure by default) ---------------------------------------


async def test_tls_is_verified_against_certs_d(
    remote: RemoteHost, registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path, remote=remote, tls=True)
    assert registry.tls is not None
    options = _options(tmp_path)
    with pytest.raises(RegistryUnreachable) as caught:
        await open_repository(_location(registry), AuthConfig(), options)
    assert str(caught.value).startswith(f'Get "https://{registry.host}/v2/": x509: ')
    ca_dir = options.certs_dir / registry.host
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_bytes(registry.tls.ca_cert.read_bytes())
    repo = await open_repository(
        _location(registry), AuthConfig(), options, actions=("pull", "push")
    )
    try:
        assert (repo.endpoint.scheme, repo.endpoint.verify_tls) == ("https", True)
        digest = await _push_blob(repo, b"over tls" * 10)
        assert await repo.head_blob(digest) == 80
    finally:
        await repo.aclose()


async def test_plain_http_off_loopback_needs_insecure_registry(
    remote: RemoteHost, registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path, remote=remote)
    with pytest.raises(RegistryUnreachable) as caught:
        await open_repository(_location(registry), AuthConfig(), _options(tmp_path))
    assert str(caught.value) == (
        f'Get "https://{registry.host}/v2/": http: server gave HTTP response to HTTPS client'
    )
    for flag in (registry.host, f"{registry.address}/32"):
        repo = await open_repository(_location(registry), AuthConfig(), _options(tmp_path, flag))
        try:
            assert repo.endpoint.scheme == "http"
        finally:
            await repo.aclose()


# -- pull and push through the image store --------------------------------------------------


def _layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _two_layer_image(store: ImageStore, ref: str) -> str:
    base = store.register_layer(io.BytesIO(_layer_tar({"etc/base": b"base\n"})), None)
    top = store.register_layer(io.BytesIO(_layer_tar({"app/data": b"x" * 300_000})), base.chain_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "config": {"Cmd": ["sh"]},
            "created": "2024-01-01T00:00:00Z",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [base.diff_id, top.diff_id]},
        },
        separators=(",", ":"),
    ).encode()
    return store.commit_image(config, ref=ref)


def _layered_image(store: ImageStore, ref: str, count: int) -> str:
    parent = None
    diff_ids = []
    for index in range(count):
        files = {f"layer{index}/data": bytes([index]) * (100_000 + index)}
        record = store.register_layer(io.BytesIO(_layer_tar(files)), parent)
        parent = record.chain_id
        diff_ids.append(record.diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        separators=(",", ":"),
    ).encode()
    return store.commit_image(config, ref=ref)


async def test_at_most_three_downloads_at_once_registered_in_chain_order(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    source = ImageStore(tmp_path / "source")
    name = f"{registry.host}/team/layers"
    image_id = _layered_image(source, f"{name}:v1", 5)
    pushed = await _drain((await prepare_push(source, name, "v1", AuthConfig(), options)).run())
    # dockerd's 5 concurrent uploads: nothing waits for 5 layers.
    assert "Waiting" not in [m.status for m in pushed]
    target = ImageStore(tmp_path / "target")
    pull = await prepare_pull(target, parse_reference(f"{name}:v1"), AuthConfig(), options, AMD64)
    messages = await _drain(pull.run())
    waiting = [m.id for m in messages if m.status == "Waiting"]
    complete = [m.id for m in messages if m.status == "Pull complete"]
    layers = [m.id for m in messages if m.status == "Pulling fs layer"]
    assert len(layers) == 5 and len(waiting) == 2  # 3 at once: the last two wait
    assert waiting == layers[3:]
    assert complete == layers  # registered bottom to top, whatever finished first
    assert target.get(f"{name}:v1").id == image_id


async def _drain(messages: AsyncIterator[Progress]) -> list[Progress]:
    return [item async for item in messages]


async def test_push_then_pull_into_another_store(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    source = ImageStore(tmp_path / "source")
    name = f"{registry.host}/team/app"
    image_id = _two_layer_image(source, f"{name}:v1")
    plan = await prepare_push(source, name, "v1", AuthConfig(), options)
    pushed = await _drain(plan.run())
    statuses = [(m.id, m.status) for m in pushed]
    assert statuses[0] == ("", f"The push refers to repository [{name}]")
    assert sum(1 for _, status in statuses if status == "Pushed") == 2
    final = pushed[-2].status
    assert final.startswith("v1: digest: sha256:") and " size: " in final
    aux = pushed[-1].aux
    assert aux is not None and aux["Tag"] == "v1" and final.endswith(f"size: {aux['Size']}")
    assert f"{name}@{aux['Digest']}" in source.get(image_id).repo_digests

    # A second push: every layer is known in this repository.
    again = await _drain((await prepare_push(source, name, "v1", AuthConfig(), options)).run())
    assert [m.status for m in again].count("Layer already exists") == 2

    target = ImageStore(tmp_path / "target")
    pull = await prepare_pull(target, parse_reference(f"{name}:v1"), AuthConfig(), options, AMD64)
    pulled = await _drain(pull.run())
    assert pulled[0].status == "Pulling from team/app" and pulled[0].id == "v1"
    assert [m.status for m in pulled].count("Pull complete") == 2
    assert pulled[-2].status == f"Digest: {aux['Digest']}"
    assert pulled[-1].status == f"Status: Downloaded newer image for {name}:v1"
    record = target.get(f"{name}:v1")
    assert record.id == image_id  # the config travelled byte for byte
    assert record.repo_digests == (f"{name}@{aux['Digest']}",)
    for chain_id in record.chain_ids:
        with source.layer_tar(chain_id) as a, target.layer_tar(chain_id) as b:
            assert a.read() == b.read()
    assert list((target.root / "tmp").iterdir()) == []

    again_pull = await prepare_pull(
        target, parse_reference(f"{name}:v1"), AuthConfig(), options, AMD64
    )
    statuses = [m.status for m in await _drain(again_pull.run())]
    assert statuses[-1] == f"Status: Image is up to date for {name}:v1"
    assert "Pull complete" not in statuses

    by_digest = parse_reference(f"{name}@{aux['Digest']}")
    digest_pull = await prepare_pull(
        ImageStore(tmp_path / "third"), by_digest, AuthConfig(), options, AMD64
    )
    messages = await _drain(digest_pull.run())
    assert messages[0].id == aux["Digest"]
    assert messages[-1].status == f"Status: Downloaded newer image for {name}@{aux['Digest']}"


async def test_push_mounts_layers_pulled_from_another_repository(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    store = ImageStore(tmp_path / "store")
    _two_layer_image(store, f"{registry.host}/team/base:1")
    await _drain(
        (await prepare_push(store, f"{registry.host}/team/base", "1", AuthConfig(), options)).run()
    )
    store.tag(f"{registry.host}/team/base:1", f"{registry.host}/other/app:1")
    pushed = await _drain(
        (await prepare_push(store, f"{registry.host}/other/app", "", AuthConfig(), options)).run()
    )
    assert [m.status for m in pushed].count("Mounted from team/base") == 2


async def test_an_interrupted_pull_leaves_no_image_and_is_redone(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    source = ImageStore(tmp_path / "source")
    name = f"{registry.host}/team/app"
    image_id = _two_layer_image(source, f"{name}:v1")
    await _drain((await prepare_push(source, name, "v1", AuthConfig(), options)).run())
    top_blob = source.distribution_sources(source.get(image_id).config.rootfs.diff_ids[1])[0].digest
    original = _corrupt(registry, top_blob)

    target = ImageStore(tmp_path / "target")
    pull = await prepare_pull(target, parse_reference(f"{name}:v1"), AuthConfig(), options, AMD64)
    with pytest.raises(RegistryError, match="filesystem layer verification failed"):
        await _drain(pull.run())
    with pytest.raises(ImageNotFound):
        target.get(f"{name}:v1")
    assert list((target.root / "tmp").iterdir()) == []

    _blob_data(registry, top_blob).write_bytes(original)
    pull = await prepare_pull(target, parse_reference(f"{name}:v1"), AuthConfig(), options, AMD64)
    statuses = [m.status for m in await _drain(pull.run())]
    # The base layer registered by the first try is reused, not downloaded again.
    assert statuses.count("Already exists") == 1 and statuses.count("Pull complete") == 1
    assert target.get(f"{name}:v1").id == image_id


async def test_manifest_lists_choose_the_host_platform(
    registries: list[RegistryProcess], tmp_path: Path
) -> None:
    registry = _start(registries, tmp_path)
    options = _options(tmp_path)
    source = ImageStore(tmp_path / "source")
    name = f"{registry.host}/team/multi"
    image_id = _two_layer_image(source, f"{name}:amd64")
    pushed = await _drain((await prepare_push(source, name, "amd64", AuthConfig(), options)).run())
    aux = pushed[-1].aux
    assert aux is not None
    repo = await open_repository(
        _location(registry, "team/multi"), AuthConfig(), options, actions=("pull", "push")
    )
    try:
        entry = {"mediaType": DOCKER_MANIFEST, "size": aux["Size"], "digest": aux["Digest"]}
        listing = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [
                    {**entry, "platform": {"architecture": "arm64", "os": "linux"}},
                    {**entry, "platform": {"architecture": "amd64", "os": "linux"}},
                ],
            }
        ).encode()
        list_digest = await repo.put_manifest("multi", DOCKER_MANIFEST_LIST, listing)
        only_arm = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [{**entry, "platform": {"architecture": "arm64", "os": "linux"}}],
            }
        ).encode()
        await repo.put_manifest("armonly", DOCKER_MANIFEST_LIST, only_arm)
    finally:
        await repo.aclose()
    target = ImageStore(tmp_path / "target")
    pull = await prepare_pull(
        target, parse_reference(f"{name}:multi"), AuthConfig(), options, AMD64
    )
    messages = await _drain(pull.run())
    assert messages[-2].status == f"Digest: {list_digest}"  # the list's digest is recorded
    assert target.get(f"{name}:multi").id == image_id
    assert target.get(f"{name}:multi").repo_digests == (f"{name}@{list_digest}",)
    with pytest.raises(
        RegistryError, match=r"^no matching manifest for linux/amd64 in the manifest list entries$"
    ):
        await prepare_pull(target, parse_reference(f"{name}:armonly"), AuthConfig(), options, AMD64)
