"""`docker push`, `docker pull` and `docker login` with the real docker CLI 28 and docker-py
against `dockyard daemon` and a real Docker Registry v2 (docker-registry 2.8), and the
same image crossing between dockyard and the reference dockerd 20.10.

Two dockyard daemons per module (`start_dockyard_daemon`, busybox bootstrapped): `source`
pushes, `sink` pulls what it never had. Every registry is started per test or per module
on a free port with its own config and storage (tests/support/registry.py) and stopped by
PID. The TLS test writes `/etc/docker/certs.d/<host:port>/ca.crt` for its own unique
host:port and removes the directory whatever happens. The `--insecure-registry` test runs
a plain-HTTP registry on this host's non-loopback address (secure by dockerd's rules) and
a daemon started with the flag. Daemons are stopped at teardown and any leak fails the
module.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.support.dockerd import (
    DaemonProcess,
    load_busybox_into,
    run_docker_cli,
    start_dockerd,
    start_dockyard_daemon,
)
from tests.support.registry import (
    GarbageServer,
    RegistryProcess,
    RemoteHost,
    free_port,
    remote_host,
    start_registry,
)

pytestmark = pytest.mark.e2e

CERTS_D = Path("/etc/docker/certs.d")
USERS = {"alice": "wonderland"}


def _stop_all(daemons: list[DaemonProcess]) -> list[str]:
    leaks: list[str] = []
    for daemon in daemons:
        log = daemon.log(20000)
        leaks += daemon.stop()
        if "Traceback" in log:
            leaks.append(f"{daemon.kind} logged a traceback:\n{log[-4000:]}")
    return leaks


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DaemonProcess]]:
    started: list[DaemonProcess] = []
    leaks: list[str] = []
    try:
        for name in ("source", "sink"):
            started.append(start_dockyard_daemon(tmp_path_factory.mktemp(name)))
        yield {"source": started[0], "sink": started[1]}
    finally:
        leaks = _stop_all(started)
    assert not leaks, f"left behind: {leaks}"


def docker_ok(daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_docker_cli(args, env=env or daemon.env)
    assert result.returncode == 0, (
        f"docker {' '.join(args)} exited {result.returncode}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\n--- daemon ---\n{daemon.log()}"
    )
    return result.stdout


def docker_fails(daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_docker_cli(args, env=env or daemon.env)
    assert result.returncode != 0, f"docker {' '.join(args)} succeeded:\n{result.stdout}"
    return result.stderr.strip()


def image_id(daemon: DaemonProcess, ref: str) -> str:
    return docker_ok(daemon, "image", "inspect", "--format", "{{.Id}}", ref).strip()


def lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip()]


def push_busybox(daemon: DaemonProcess, ref: str) -> tuple[list[str], str]:
    """Tag busybox as `ref` and push it; return the output lines and the pushed digest."""
    docker_ok(daemon, "tag", "busybox:latest", ref)
    out = lines(docker_ok(daemon, "push", ref))
    tag = ref.rsplit(":", 1)[1]
    final = [line for line in out if line.startswith(f"{tag}: digest: ")]
    assert len(final) == 1, out
    return out, final[0].split()[2]


def test_push_then_pull_into_another_daemon_and_run(
    daemons: dict[str, DaemonProcess], registry: RegistryProcess
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    ref = f"{registry.host}/e2e/busybox:v1"
    out, digest = push_busybox(source, ref)
    assert out[0] == f"The push refers to repository [{registry.host}/e2e/busybox]"
    layer = image_layers(source, ref)[0]
    assert f"{layer}: Pushed" in out
    assert out[-1] == f"v1: digest: {digest} size: {manifest_size(registry, digest)}"

    # The sink bootstrapped the same busybox: remove it, so that the pull must download.
    busybox_id = image_id(sink, "busybox:latest")
    docker_ok(sink, "rmi", "--force", busybox_id)
    pulled = lines(docker_ok(sink, "pull", ref))
    assert pulled[0] == "v1: Pulling from e2e/busybox"
    assert any(line.endswith(": Pull complete") for line in pulled), pulled
    assert pulled[-3:] == [
        f"Digest: {digest}",
        f"Status: Downloaded newer image for {ref}",
        ref,
    ]
    assert image_id(sink, ref) == image_id(source, ref)
    assert docker_ok(sink, "run", "--rm", "--network", "none", ref, "echo", "pulled").strip() == (
        "pulled"
    )
    digests = docker_ok(sink, "images", "--digests", "--format", "{{.Repository}} {{.Digest}}")
    assert f"{registry.host}/e2e/busybox {digest}" in digests.splitlines()
    inspect = json.loads(docker_ok(sink, "image", "inspect", ref))[0]
    assert inspect["RepoDigests"] == [f"{registry.host}/e2e/busybox@{digest}"]

    again = lines(docker_ok(sink, "pull", ref))
    assert again[-2] == f"Status: Image is up to date for {ref}"
    docker_ok(sink, "tag", ref, "busybox:latest")  # as it was, for the other tests

    by_digest = f"{registry.host}/e2e/busybox@{digest}"
    assert lines(docker_ok(sink, "pull", by_digest))[-1] == by_digest
    assert image_id(sink, by_digest) == image_id(source, ref)

    events = docker_ok(
        sink,
        "events",
        "--since",
        "0",
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{.Actor.ID}}",
    )
    assert ref in events.splitlines()


def image_layers(daemon: DaemonProcess, ref: str) -> list[str]:
    """Short DiffIDs, as push progress names layers."""
    out = docker_ok(daemon, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
    return [d.removeprefix("sha256:")[:12] for d in json.loads(out)]


def manifest_size(registry: RegistryProcess, digest: str) -> int:
    status, _, body = registry.request(
        "GET",
        f"/v2/e2e/busybox/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert status == 200
    return len(body)


def test_pushing_known_layers_skips_or_mounts_them(
    daemons: dict[str, DaemonProcess], registry: RegistryProcess
) -> None:
    source = daemons["source"]
    ref = f"{registry.host}/e2e/layers:v1"
    push_busybox(source, ref)
    layer = image_layers(source, ref)[0]
    # Pushed to this repository before: HEAD finds it, nothing is sent.
    out = lines(docker_ok(source, "push", ref))
    assert f"{layer}: Layer already exists" in out
    # Another repository on the same registry: mounted from the known one, not uploaded.
    other = f"{registry.host}/e2e/copy:v1"
    docker_ok(source, "tag", ref, other)
    out = lines(docker_ok(source, "push", other))
    assert any(line.startswith(f"{layer}: Mounted from e2e/") for line in out), out


def test_bad_references_and_registries_in_dockers_words(
    daemons: dict[str, DaemonProcess], registry: RegistryProcess
) -> None:
    sink = daemons["sink"]
    assert docker_fails(sink, "pull", f"{registry.host}/e2e/busybox:nope") == (
        f"Error response from daemon: manifest for {registry.host}/e2e/busybox:nope not found: "
        "manifest unknown: manifest unknown"
    )
    port = free_port()
    assert docker_fails(sink, "pull", f"127.0.0.1:{port}/x:1") == (
        f'Error response from daemon: Get "http://127.0.0.1:{port}/v2/": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused"
    )
    garbage = GarbageServer()
    try:
        message = docker_fails(sink, "pull", f"{garbage.host}/x:1")
        assert message.startswith(f'Error response from daemon: Get "http://{garbage.host}/v2/": ')
    finally:
        garbage.close()
    # Push errors come after the first progress line: in the stream, printed the same way.
    docker_ok(sink, "tag", "busybox:latest", f"127.0.0.1:{port}/x:1")
    assert docker_fails(sink, "push", f"127.0.0.1:{port}/x:1").endswith(
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )
    docker_ok(sink, "rmi", f"127.0.0.1:{port}/x:1")


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_digest_mismatch_leaves_no_image(
    daemons: dict[str, DaemonProcess], tmp_path: Path
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    registry = start_registry(tmp_path / "registry")
    try:
        ref = f"{registry.host}/e2e/corrupt:v1"
        # An image the sink does not have: one layer of its own.
        imported = run_docker_cli(
            ["import", "-", ref],
            env=source.env,
            input_bytes=_tar({"data.bin": random.Random(7).randbytes(50_000)}),
        )
        assert imported.returncode == 0, imported.stderr
        docker_ok(source, "push", ref)
        blobs = registry.storage / "docker/registry/v2/blobs/sha256"
        config_hex = image_id(source, ref).removeprefix("sha256:")
        layer_data = next(
            p / "data"
            for p in blobs.glob("*/*")
            if p.name != config_hex and (p / "data").stat().st_size > 10_000
        )
        original = layer_data.read_bytes()
        layer_data.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        message = docker_fails(sink, "pull", ref)
        assert "filesystem layer verification failed for digest sha256:" in message
        assert docker_fails(sink, "image", "inspect", ref).endswith(f"No such image: {ref}")
        layer_data.write_bytes(original)
        assert lines(docker_ok(sink, "pull", ref))[-1] == ref
    finally:
        registry.stop()


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    path = tmp_path / "docker-config"
    path.mkdir()
    return path


def test_login_with_basic_auth_then_push_and_pull(
    daemons: dict[str, DaemonProcess], tmp_path: Path, docker_config: Path
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    registry = start_registry(tmp_path / "registry", basic_users=USERS)
    try:
        host = registry.host
        env = {**source.env, "DOCKER_CONFIG": str(docker_config)}
        refused = run_docker_cli(
            ["login", "-u", "alice", "--password-stdin", host], env=env, input_bytes=b"wrong\n"
        )
        assert refused.returncode != 0
        assert refused.stderr.strip().endswith(
            f"Error response from daemon: login attempt to http://{host}/v2/ failed with "
            "status: 401 Unauthorized"
        )
        ok = run_docker_cli(
            ["login", "-u", "alice", "--password-stdin", host], env=env, input_bytes=b"wonderland\n"
        )
        assert ok.returncode == 0, ok.stderr
        assert "Login Succeeded" in ok.stdout
        stored = json.loads((docker_config / "config.json").read_text())["auths"][host]["auth"]
        assert base64.b64decode(stored) == b"alice:wonderland"

        ref = f"{host}/private/busybox:v1"
        docker_ok(source, "tag", "busybox:latest", ref)
        assert f"{host}/private/busybox" in docker_ok(source, "push", ref, env=env)
        sink_env = {**sink.env, "DOCKER_CONFIG": str(docker_config)}
        assert lines(docker_ok(sink, "pull", ref, env=sink_env))[-1] == ref

        anonymous = docker_fails(sink, "pull", f"{host}/private/busybox:v1")
        assert anonymous == (
            f'Error response from daemon: Head "http://{host}/v2/private/busybox/manifests/v1": '
            "no basic auth credentials"
        )
    finally:
        registry.stop()


def test_token_auth_login_push_pull(
    daemons: dict[str, DaemonProcess], tmp_path: Path, docker_config: Path
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    registry = start_registry(tmp_path / "registry", token_users=USERS)
    try:
        host = registry.host
        env = {**source.env, "DOCKER_CONFIG": str(docker_config)}
        ok = run_docker_cli(
            ["login", "-u", "alice", "--password-stdin", host], env=env, input_bytes=b"wonderland\n"
        )
        assert ok.returncode == 0, ok.stderr
        ref = f"{host}/token/busybox:v1"
        docker_ok(source, "tag", "busybox:latest", ref)
        docker_ok(source, "push", ref, env=env)
        sink_env = {**sink.env, "DOCKER_CONFIG": str(docker_config)}
        assert lines(docker_ok(sink, "pull", ref, env=sink_env))[-1] == ref
        assert docker_fails(sink, "pull", ref) == (
            f"Error response from daemon: pull access denied for {host}/token/busybox, "
            "repository does not exist or may require 'docker login': denied: requested "
            "access to the resource is denied"
        )
    finally:
        registry.stop()


def test_sdk_push_and_pull_with_auth_config(
    daemons: dict[str, DaemonProcess], tmp_path: Path
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    registry = start_registry(tmp_path / "registry", basic_users=USERS)
    auth = {"username": "alice", "password": "wonderland"}
    source_sdk = docker.DockerClient(base_url=source.docker_host, timeout=60)
    sink_sdk = docker.DockerClient(base_url=sink.docker_host, timeout=60)
    try:
        repository = f"{registry.host}/sdk/busybox"
        source_sdk.images.get("busybox:latest").tag(repository, "v1")
        messages = list(
            source_sdk.images.push(repository, "v1", auth_config=auth, stream=True, decode=True)
        )
        assert not [m for m in messages if "error" in m], messages
        aux = [m["aux"] for m in messages if "aux" in m]
        assert aux and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:")
        assert (
            sink_sdk.login(username="alice", password="wonderland", registry=registry.host)[
                "Status"
            ]
            == "Login Succeeded"
        )
        image = sink_sdk.images.pull(repository, tag="v1", auth_config=auth)
        assert image.id == source_sdk.images.get(f"{repository}:v1").id
        assert f"{repository}@{aux[0]['Digest']}" in image.attrs["RepoDigests"]
        with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
            sink_sdk.images.pull(repository, tag="nope", auth_config=auth)
        with pytest.raises(docker.errors.APIError) as refused:
            sink_sdk.login(username="alice", password="bad", registry=registry.host, reauth=True)
        assert refused.value.status_code == 401
    finally:
        source_sdk.close()
        sink_sdk.close()
        registry.stop()


def test_progress_messages_all_tags_and_events(
    daemons: dict[str, DaemonProcess], registry: RegistryProcess
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    repository = f"{registry.host}/e2e/progress"
    # An image neither daemon has from elsewhere: a 3 MB layer of its own.
    payload = random.Random(11).randbytes(3_000_000)
    imported = run_docker_cli(
        ["import", "-", f"{repository}:one"], env=source.env, input_bytes=_tar({"blob": payload})
    )
    assert imported.returncode == 0, imported.stderr
    docker_ok(source, "tag", f"{repository}:one", f"{repository}:two")
    source_sdk = docker.APIClient(base_url=source.docker_host, timeout=60)
    sink_sdk = docker.APIClient(base_url=sink.docker_host, timeout=60)
    try:
        since = int(time.time())
        pushed = list(source_sdk.push(repository, stream=True, decode=True))  # every tag
        layer = image_layers(source, f"{repository}:one")[0]
        pushing = [m for m in pushed if m.get("status") == "Pushing" and m.get("id") == layer]
        assert pushing, pushed
        detail = pushing[-1]["progressDetail"]
        assert detail["current"] == detail["total"] > 0 and pushing[-1]["progress"]
        assert sorted(m["aux"]["Tag"] for m in pushed if "aux" in m) == ["one", "two"]

        pulled = list(sink_sdk.pull(repository, all_tags=True, stream=True, decode=True))
        statuses = [m.get("status", "") for m in pulled]
        blob_id = next(m["id"] for m in pulled if m.get("status") == "Pulling fs layer")
        assert len(blob_id) == 12
        downloading = [m for m in pulled if m.get("status") == "Downloading"]
        assert downloading and downloading[-1]["id"] == blob_id
        last = downloading[-1]["progressDetail"]
        assert last["current"] == last["total"] > 0
        assert "Extracting" in statuses and "Download complete" in statuses
        assert statuses.count("Pull complete") == 1  # `two` is the same image
        assert [s for s in statuses if s.startswith("Pulling from")] == [
            "Pulling from e2e/progress"
        ] * 2
        assert statuses[-1] == f"Status: Downloaded newer image for {repository}"
        tags = docker_ok(sink, "images", repository, "--format", "{{.Tag}}").split()
        assert sorted(tags) == ["one", "two"]

        events = docker_ok(
            source,
            "events",
            "--since",
            str(since),
            "--until",
            str(int(time.time()) + 1),
            "--filter",
            "event=push",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}}",
        )
        assert f"image push {repository}" in events.splitlines()
    finally:
        source_sdk.close()
        sink_sdk.close()


@pytest.fixture
def remote() -> Iterator[RemoteHost]:
    """A namespace of the test's own, for a registry off loopback."""
    with remote_host() as host:
        yield host


def test_tls_registry_trusted_through_certs_d(
    remote: RemoteHost, daemons: dict[str, DaemonProcess], tmp_path: Path
) -> None:
    source, sink = daemons["source"], daemons["sink"]
    # Off loopback, so the registry is secure: TLS verified against certs.d.
    registry = start_registry(tmp_path / "registry", remote=remote, tls=True)
    ca_dir = CERTS_D / registry.host
    created = [path for path in (CERTS_D.parent, CERTS_D) if not path.exists()]
    try:
        assert registry.tls is not None
        ref = f"{registry.host}/tls/busybox:v1"
        docker_ok(source, "tag", "busybox:latest", ref)
        untrusted = docker_fails(source, "push", ref)
        assert f'Get "https://{registry.host}/v2/": x509: ' in untrusted
        ca_dir.mkdir(parents=True)
        shutil.copy(registry.tls.ca_cert, ca_dir / "ca.crt")
        docker_ok(source, "push", ref)
        assert lines(docker_ok(sink, "pull", ref))[-1] == ref
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
        for path in reversed(created):
            with contextlib.suppress(OSError):  # another test's directory in it: keep it
                path.rmdir()
        registry.stop()
    assert not ca_dir.exists()


def test_insecure_registry_flag_for_plain_http_off_loopback(
    remote: RemoteHost, tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry", remote=remote)
    started: list[DaemonProcess] = []
    try:
        plain = start_dockyard_daemon(tmp_path / "plain")
        started.append(plain)
        flagged = start_dockyard_daemon(
            tmp_path / "flagged", extra_args=["--insecure-registry", registry.host]
        )
        started.append(flagged)
        ref = f"{registry.host}/insecure/busybox:v1"
        for daemon in started:
            docker_ok(daemon, "tag", "busybox:latest", ref)
        assert docker_fails(plain, "push", ref).endswith(
            f'Get "https://{registry.host}/v2/": http: server gave HTTP response to HTTPS client'
        )
        docker_ok(flagged, "push", ref)
    finally:
        leaks = _stop_all(started)
        registry.stop()
    assert not leaks, leaks


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    base = tmp_path_factory.mktemp("dockerd")
    process = start_dockerd(base)
    leaks: list[str] = []
    try:
        load_busybox_into(process.docker_host, docker_config=base / "docker-config")
        yield process
    finally:
        leaks = process.stop()
    assert not leaks, leaks


def test_images_cross_between_dockerd_and_dockyard(
    daemons: dict[str, DaemonProcess], registry: RegistryProcess, dockerd: DaemonProcess
) -> None:
    dockyard = daemons["sink"]
    from_dockerd = f"{registry.host}/diff/from-dockerd:v1"
    _, digest = push_busybox(dockerd, from_dockerd)
    pulled = lines(docker_ok(dockyard, "pull", from_dockerd))
    assert f"Digest: {digest}" in pulled
    assert image_id(dockyard, from_dockerd) == image_id(dockerd, from_dockerd)
    assert (
        docker_ok(
            dockyard, "run", "--rm", "--network", "none", from_dockerd, "echo", "from dockerd"
        ).strip()
        == "from dockerd"
    )

    from_dockyard = f"{registry.host}/diff/from-dockyard:v1"
    _, digest = push_busybox(dockyard, from_dockyard)
    pulled = lines(docker_ok(dockerd, "pull", from_dockyard))
    assert f"Digest: {digest}" in pulled
    assert image_id(dockerd, from_dockyard) == image_id(dockyard, from_dockyard)
    # Both daemons answer an unknown tag with the same message.
    nope = f"{registry.host}/diff/from-dockerd:nope"
    assert docker_fails(dockerd, "pull", nope) == docker_fails(dockyard, "pull", nope)


def test_bad_input_gets_the_same_answer_as_from_dockerd(
    daemons: dict[str, DaemonProcess], dockerd: DaemonProcess, tmp_path: Path
) -> None:
    """Each command against dockerd 20.10, then dockyard: same exit code, stdout, stderr."""
    dockyard = daemons["source"]
    basic = start_registry(tmp_path / "basic", basic_users=USERS)
    token = start_registry(tmp_path / "token", token_users=USERS)
    garbage = GarbageServer()
    down = f"127.0.0.1:{free_port()}"
    try:
        for daemon in (dockerd, dockyard):
            for host in (down, basic.host, token.host):
                docker_ok(daemon, "tag", "busybox:latest", f"{host}/x:1")
        commands = [
            ["pull", f"{down}/x:1"],
            ["pull", f"{garbage.host}/x:1"],
            ["pull", f"{basic.host}/x:1"],
            ["pull", f"{basic.host}/x@sha256:{'0' * 64}"],
            ["pull", f"{token.host}/x:1"],
            ["push", f"{down}/x:1"],
            ["push", f"{down}/nope:1"],
            ["push", f"{basic.host}/x:1"],
            ["push", f"{token.host}/x:1"],
        ]
        for command in commands:
            expected = run_docker_cli(command, env=dockerd.env)
            got = run_docker_cli(command, env=dockyard.env)
            assert (got.returncode, got.stdout, got.stderr) == (
                expected.returncode,
                expected.stdout,
                expected.stderr,
            ), command
            assert expected.returncode != 0, command
        for host in (basic.host, token.host):
            login = ["login", "-u", "alice", "--password-stdin", host]
            expected = run_docker_cli(login, env=dockerd.env, input_bytes=b"bad\n")
            got = run_docker_cli(login, env=dockyard.env, input_bytes=b"bad\n")
            assert (got.returncode, got.stderr) == (expected.returncode, expected.stderr)
    finally:
        garbage.close()
        basic.stop()
        token.stop()
        for daemon in (dockerd, dockyard):
            for host in (down, basic.host, token.host):
                run_docker_cli(["rmi", f"{host}/x:1"], env=daemon.env)
