"""The docker SDK for Python (docker-py 7.2) against `dockyard daemon`.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, busybox bootstrapped, leak checks at teardown) and talks to it through
`docker.DockerClient(base_url="unix://…")`, as SDK users do. Containers a test makes are
force-removed by the `made` fixture even when the test fails. The SDK over TCP+TLS is
tested in `test_tls_listener.py`, which has the TLS daemon.

The later endpoints (restart, update, stats, events, archive, export, healthchecks) have
their own tests at the end of the module.
"""

from __future__ import annotations

import contextlib
import gc
import io
import tarfile
import warnings
from collections.abc import Iterator
from datetime import datetime

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import DaemonProcess

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)
SDK_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[docker.DockerClient]:
    sdk = docker.DockerClient(base_url=f"unix://{daemon.sock}", timeout=SDK_TIMEOUT_S)
    try:
        yield sdk
    finally:
        sdk.close()


@pytest.fixture
def made(client: docker.DockerClient) -> Iterator[list[str]]:
    """Names of the containers and images a test makes; removed (forced) afterwards."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        with contextlib.suppress(docker.errors.NotFound):
            if ":" in name:
                client.images.remove(name, force=True)
            else:
                client.api.remove_container(name, force=True)


def run_detached(
    client: docker.DockerClient, made: list[str], name: str, *command: str, **kwargs: object
) -> Container:
    made.append(name)
    container: Container = client.containers.run(
        "busybox", list(command) or ["sleep", "300"], name=name, detach=True, **kwargs
    )
    return container


def test_version_info_and_ping(client: docker.DockerClient) -> None:
    assert client.ping() is True
    version = client.version()
    assert version["Os"] == "linux"
    assert float(version["ApiVersion"]) >= 1.44
    info = client.info()
    assert "purpose=e2e" in info["Labels"]
    assert info["Images"] >= 1


def test_images_list_and_get(client: docker.DockerClient) -> None:
    images = client.images.list()
    busybox = next(image for image in images if "busybox:latest" in image.tags)
    assert client.images.get("busybox").id == busybox.id
    assert client.images.get(busybox.short_id).id == busybox.id
    assert busybox.attrs["Config"]["Cmd"] == ["sh"]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nosuch-image")


def test_run_returns_the_output_and_removes_the_container(client: docker.DockerClient) -> None:
    output = client.containers.run(
        "busybox",
        ["sh", "-c", "echo $GREETING; pwd; id -u; hostname"],
        environment={"GREETING": "hello"},
        working_dir="/tmp",
        user="nobody",
        hostname="sdk-host",
        remove=True,
    )
    assert output == b"hello\n/tmp\n65534\nsdk-host\n"
    left = client.containers.list(all=True)
    assert all(c.attrs["Config"]["Hostname"] != "sdk-host" for c in left), "remove=True"


def test_run_with_an_entrypoint_and_stderr(client: docker.DockerClient) -> None:
    output = client.containers.run(
        "busybox", ["-c", "echo out; echo err >&2"], entrypoint="sh", stderr=True, remove=True
    )
    assert sorted(output.splitlines()) == [b"err", b"out"]


def test_a_failing_command_raises_container_error(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ContainerError) as caught:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert caught.value.exit_status == 3
    assert caught.value.stderr == b"bad\n"


def test_detached_run_labels_logs_and_wait(client: docker.DockerClient, made: list[str]) -> None:
    container = run_detached(
        client,
        made,
        "sdk-logs",
        "sh", "-c", "for i in 1 2 3; do echo line$i; done; exit 7",
        labels={"probe": "sdk"},
    )  # fmt: skip
    assert container.wait(timeout=SDK_TIMEOUT_S) == {"Error": None, "StatusCode": 7}
    container.reload()
    assert container.status == "exited"
    assert container.labels == {"probe": "sdk"}
    assert container.name == "sdk-logs"
    listed = client.containers.list(all=True, filters={"label": "probe=sdk"})
    assert [c.id for c in listed] == [container.id]
    assert container.logs() == b"line1\nline2\nline3\n"
    assert container.logs(tail=1) == b"line3\n"
    with contextlib.closing(container.logs(stream=True)) as lines:
        assert list(lines) == [b"line1\n", b"line2\n", b"line3\n"]
    stamped = container.logs(timestamps=True).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["line1", "line2", "line3"]
    for line in stamped:
        datetime.fromisoformat(line.split(" ", 1)[0][:26])  # RFC 3339 with nanoseconds


def test_logs_stream_follows_a_running_container(
    client: docker.DockerClient, made: list[str]
) -> None:
    container = run_detached(
        client, made, "sdk-follow", "sh", "-c", "echo first; sleep 0.3; echo second"
    )
    with contextlib.closing(container.logs(stream=True, follow=True)) as stream:
        assert list(stream) == [b"first\n", b"second\n"]  # ends when the container exits


def test_exec_run(client: docker.DockerClient, made: list[str]) -> None:
    container = run_detached(client, made, "sdk-exec")
    result = container.exec_run(["sh", "-c", "echo out; exit 4"])
    assert (result.exit_code, result.output) == (4, b"out\n")
    env = container.exec_run(
        ["sh", "-c", "echo $X; pwd; id -u"], environment={"X": "y"}, workdir="/tmp", user="nobody"
    )
    assert (env.exit_code, env.output) == (0, b"y\n/tmp\n65534\n")
    demuxed = container.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert demuxed.output == (b"o\n", b"e\n")
    streamed = container.exec_run(["sh", "-c", "echo a; sleep 0.1; echo b"], stream=True)
    assert streamed.exit_code is None
    assert b"".join(streamed.output) == b"a\nb\n"
    # docker-py 7.2 never closes the hijacked socket of exec_run(stream=True) (its close()
    # sees the response as closed already): collect it here, quietly, so its
    # ResourceWarning is not blamed on whichever test the collector happens to run in.
    del streamed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_stop_kill_pause_unpause_rename_top(client: docker.DockerClient, made: list[str]) -> None:
    container = run_detached(client, made, "sdk-life")
    made.append("sdk-renamed")
    top = container.top()
    assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    container.pause()
    container.reload()
    assert container.status == "paused"
    container.unpause()
    container.reload()
    assert container.status == "running"
    container.rename("sdk-renamed")
    container.reload()
    assert container.name == "sdk-renamed"
    container.stop(timeout=0)
    container.reload()
    assert (container.status, container.attrs["State"]["ExitCode"]) == ("exited", 137)
    container.start()
    # Not SIGTERM: `sleep` as PID 1 has no handler, and the kernel spares init.
    container.kill(signal="SIGKILL")
    assert container.wait(timeout=SDK_TIMEOUT_S)["StatusCode"] == 137
    container.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("sdk-renamed")


def test_errors(client: docker.DockerClient, made: list[str]) -> None:
    with pytest.raises(docker.errors.NotFound) as missing:
        client.containers.get("sdk-nosuch")
    assert "No such container: sdk-nosuch" in str(missing.value)
    # run → create (404 No such image) → pull from a registry on a closed loopback port:
    # dockerd's 500 with the dial error (and no traffic off the machine).
    with pytest.raises(docker.errors.APIError, match="connection refused"):
        client.containers.run("127.0.0.1:1/sdk-nosuch-image", "true", remove=True)
    run_detached(client, made, "sdk-dup")
    with pytest.raises(docker.errors.APIError) as conflict:
        client.containers.create("busybox", "true", name="sdk-dup")
    assert conflict.value.status_code == 409
    assert 'The container name "/sdk-dup" is already in use' in str(conflict.value)
    with pytest.raises(docker.errors.APIError) as running:
        client.containers.get("sdk-dup").remove()
    assert running.value.status_code == 409
    client.containers.get("sdk-dup").remove(force=True)


def _rootfs_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = b"imported by the SDK\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_import_tag_and_remove_images(client: docker.DockerClient, made: list[str]) -> None:
    made += ["sdk/imported:v1", "sdk/other:v2"]
    status = client.api.import_image_from_data(
        _rootfs_tar(), repository="sdk/imported", tag="v1", changes=["ENV A=1", "LABEL k=v"]
    )
    assert '"status":"sha256:' in status
    image = client.images.get("sdk/imported:v1")
    assert image.attrs["Config"]["Env"] == ["A=1"]
    assert image.labels == {"k": "v"}
    assert image.tag("sdk/other", "v2") is True
    image.reload()
    assert image.tags == ["sdk/imported:v1", "sdk/other:v2"]
    client.images.remove("sdk/other:v2")
    assert client.images.get(image.id).tags == ["sdk/imported:v1"]
    client.images.remove(image.id)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("sdk/imported:v1")


def test_restart_and_update(client: docker.DockerClient, made: list[str]) -> None:
    container = run_detached(client, made, "sdk-restart")
    container.reload()
    first_pid = container.attrs["State"]["Pid"]
    container.restart(timeout=0)
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["Pid"] != first_pid
    assert container.update(mem_limit="64m", memswap_limit="128m", cpu_shares=512) == {
        "Warnings": []
    }
    container.reload()
    host_config = container.attrs["HostConfig"]
    assert (host_config["Memory"], host_config["MemorySwap"], host_config["CpuShares"]) == (
        64 * 1024 * 1024,
        128 * 1024 * 1024,
        512,
    )
    limit = container.exec_run(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert limit.output.strip() == str(64 * 1024 * 1024).encode()


def test_stats_events_and_health(client: docker.DockerClient, made: list[str]) -> None:
    since = datetime.now()
    container = run_detached(
        client,
        made,
        "sdk-stats",
        healthcheck={"test": ["CMD", "true"], "interval": 200_000_000, "retries": 1},
    )
    stats = container.stats(stream=False)
    assert stats["id"] == container.id and stats["name"] == "/sdk-stats"
    assert stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] >= 1
    for event in client.events(since=since, decode=True, filters={"container": container.id}):
        if event["Action"] == "health_status: healthy":
            break
    container.reload()
    assert container.health == "healthy"
    container.kill(signal="SIGKILL")
    lifecycle = client.events(
        since=since,
        decode=True,
        filters={"container": "sdk-stats", "event": ["create", "start", "kill", "die"]},
    )
    actions = []
    try:
        for event in lifecycle:  # history first, then live: read up to the die
            actions.append(event["Action"])
            if event["Action"] == "die":
                assert event["Actor"]["Attributes"]["exitCode"] == "137"
                break
    finally:
        lifecycle.close()
    assert actions == ["create", "start", "kill", "die"]


def test_put_and_get_archive_and_export(client: docker.DockerClient, made: list[str]) -> None:
    container = run_detached(client, made, "sdk-archive")
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("greeting.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    assert container.put_archive("/tmp", payload.getvalue()) is True
    chunks, stat = container.get_archive("/tmp/greeting.txt")
    assert (stat["name"], stat["size"]) == ("greeting.txt", 5)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.extractfile("greeting.txt")
        assert member is not None and member.read() == b"hello"
    with tarfile.open(fileobj=io.BytesIO(b"".join(container.export()))) as tar:
        assert "tmp/greeting.txt" in tar.getnames()
        assert "bin/busybox" in tar.getnames()
