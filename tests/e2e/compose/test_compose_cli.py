"""``dockyard compose`` end to end: the real CLI against a real ``dockyard daemon``.

The issue's ``containers:`` example adapted to offline busybox: ``web`` is busybox httpd
serving a page made from its environment, ``redis`` a sleeping busybox it links to. Every
test uses its own project name (``project_dir``), and whatever a project leaves is removed
through the Engine API afterwards. Busybox as PID 1 ignores SIGTERM, so stops use ``-t 1``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.compose.conftest import (
    COMPOSE_TIMEOUT_S,
    ComposeRun,
    ProjectDir,
    free_port,
    project_objects,
)
from tests.e2e.engine.test_daemon_cli import DaemonProcess
from tests.support.dockerd import start_tls_dockyard_daemon

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT_S = 10.0
EVENT_ATTEMPTS = 10
EVENT_WAIT_S = 2.0


# $$ is Compose's escape for a literal $: the shell in the container expands GREETING.
WEB_SCRIPT = (
    "mkdir -p /www && echo hello-$$GREETING > /www/index.html && exec httpd -f -p 5000 -h /www"
)


def example(port: int, greeting: str = "one", redis_command: str = "sleep 3600") -> str:
    return textwrap.dedent(
        f"""\
        containers:
          web:
            image: busybox:latest
            command: ["sh", "-c", "{WEB_SCRIPT}"]
            ports: ["{port}:5000"]
            links: [redis]
            environment: [GREETING={greeting}]
          redis:
            image: busybox:latest
            command: {redis_command}
        """
    )


def ids_by_service(daemon: DaemonProcess, project: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for container in project_objects(daemon, project)["containers"]:
        service = container["Labels"]["com.docker.compose.service"]
        out.setdefault(service, []).append(container["Id"])
    return {k: sorted(v) for k, v in out.items()}


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=HTTP_TIMEOUT_S) as answer:
        body: bytes = answer.read()
    return body.decode()


def await_page(compose: ComposeRun, project: ProjectDir, port: int, want: str) -> None:
    """httpd starts after the container does: wait until a probe inside the project's
    network answers (``wget`` exits 0), then read the page through the published port."""
    probe = "until wget -qO- http://web:5000/ >/dev/null 2>&1; do sleep 0.1; done"
    compose(
        "-p",
        project.name,
        "exec",
        "-T",
        "redis",
        "timeout",
        "20",
        "sh",
        "-c",
        probe,
        cwd=project.path,
    )
    assert fetch(port).strip() == want


def test_up_is_reachable_idempotent_recreates_changed_and_dependents_down_leaves_nothing(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    port = free_port()
    project_dir.write("docker-compose.yml", example(port))
    name = project_dir.name
    up = compose("-p", name, "up", "-d", "-t", "1", cwd=project_dir.path)
    assert f"Container {name}_web_1  Started" in up.stderr
    assert f"Network {name}_default  Created" in up.stderr
    # published port from the host; service names resolve inside the project network
    await_page(compose, project_dir, port, "hello-one")

    first = ids_by_service(compose_daemon, name)
    assert set(first) == {"web", "redis"} and all(len(v) == 1 for v in first.values())

    again = compose("-p", name, "up", "-d", "-t", "1", cwd=project_dir.path)
    assert ids_by_service(compose_daemon, name) == first
    assert "Running" in again.stderr

    # a change to web recreates web only
    project_dir.write("docker-compose.yml", example(port, greeting="two"))
    compose("-p", name, "up", "-d", "-t", "1", cwd=project_dir.path)
    second = ids_by_service(compose_daemon, name)
    assert second["redis"] == first["redis"]
    assert second["web"] != first["web"]
    await_page(compose, project_dir, port, "hello-two")

    # a change to redis recreates redis and web, which links to it
    project_dir.write("docker-compose.yml", example(port, "two", "sleep 3601"))
    compose("-p", name, "up", "-d", "-t", "1", cwd=project_dir.path)
    third = ids_by_service(compose_daemon, name)
    assert third["redis"] != second["redis"]
    assert third["web"] != second["web"]

    ps = compose("-p", name, "ps", cwd=project_dir.path)
    assert f"{name}_web_1" in ps.stdout and f"{name}_redis_1" in ps.stdout
    assert f"0.0.0.0:{port}->5000/tcp" in ps.stdout
    services = compose("-p", name, "ps", "--services", cwd=project_dir.path)
    assert sorted(services.stdout.split()) == ["redis", "web"]

    compose("-p", name, "down", "-t", "1", cwd=project_dir.path)
    left = project_objects(compose_daemon, name)
    assert left["containers"] == [] and left["networks"] == []


def test_scale_logs_config_and_volumes(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            """\
            services:
              worker:
                image: busybox:latest
                command: ["sh", "-c", "echo started-$$HOSTNAME-ok; exec sleep 3600"]
                volumes: ["data:/data", "/scratch"]
            volumes:
              data: {}
            """
        ),
    )
    name = project_dir.name
    config = compose("-p", name, "config", "--services", cwd=project_dir.path)
    assert config.stdout.split() == ["worker"]
    resolved = compose("-p", name, "config", cwd=project_dir.path).stdout
    assert resolved.startswith(f"name: {name}\nservices:\n  worker:\n")
    assert "configs:" not in resolved and "\nvolumes:\n  data:" in resolved
    hashes = compose("-p", name, "config", "--hash", "*", cwd=project_dir.path).stdout.split()
    assert hashes[0] == "worker" and len(hashes[1]) == 64
    assert compose("-p", name, "config", "--volumes", cwd=project_dir.path).stdout.split() == [
        "data"
    ]

    compose("-p", name, "up", "-d", "--scale", "worker=3", cwd=project_dir.path)
    assert len(ids_by_service(compose_daemon, name)["worker"]) == 3
    quiet = compose("-p", name, "ps", "-q", cwd=project_dir.path)
    assert len(quiet.stdout.split()) == 3

    logs = compose("-p", name, "logs", "--no-color", "worker", cwd=project_dir.path)
    lines = [line for line in logs.stdout.splitlines() if "started-" in line]
    assert len(lines) == 3
    assert all(line.startswith(f"{name}_worker_") and " | started-" in line for line in lines)

    kept = ids_by_service(compose_daemon, name)["worker"]
    compose("-p", name, "up", "-d", "-t", "1", "--scale", "worker=1", cwd=project_dir.path)
    remaining = ids_by_service(compose_daemon, name)["worker"]
    assert len(remaining) == 1 and remaining[0] in kept

    compose("-p", name, "down", "-t", "1", cwd=project_dir.path)
    left = project_objects(compose_daemon, name)
    assert left["containers"] == [] and left["networks"] == []
    assert [v["Name"] for v in left["volumes"]] == [f"{name}_data"]

    compose("-p", name, "up", "-d", cwd=project_dir.path)
    compose("-p", name, "down", "-v", "-t", "1", cwd=project_dir.path)
    assert project_objects(compose_daemon, name) == {
        "containers": [],
        "networks": [],
        "volumes": [],
    }


def test_up_build_builds_and_tags_the_service_image(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write(
        "app/build.Dockerfile",
        textwrap.dedent(
            """\
            FROM busybox:latest AS base
            ARG FLAVOUR=plain
            RUN echo built-$FLAVOUR > /built
            COPY . /ctx
            FROM base AS final
            RUN echo not-this-stage > /built
            """
        ),
    )
    project_dir.write("app/.dockerignore", "secret.txt\n")
    project_dir.write("app/secret.txt", "do not send\n")
    project_dir.write("app/data/kept.txt", "sent\n")
    project_dir.write(
        "docker-compose.yml",
        textwrap.dedent(
            """\
            version: "2.4"
            services:
              app:
                build:
                  context: ./app
                  dockerfile: build.Dockerfile
                  target: base
                  args: {FLAVOUR: spicy}
                command: sleep 3600
                stop_signal: SIGKILL
            """
        ),
    )
    name = project_dir.name
    try:
        compose("-p", name, "up", "-d", "--build", cwd=project_dir.path)
        out = compose(
            "-p",
            name,
            "exec",
            "-T",
            "app",
            "sh",
            "-c",
            "cat /built; ls /ctx /ctx/data",
            cwd=project_dir.path,
        )
        # the target stage, with the build argument; .dockerignore kept secret.txt out
        assert out.stdout.split() == [
            "built-spicy",
            "/ctx:",
            "build.Dockerfile",
            "data",
            "/ctx/data:",
            "kept.txt",
        ]
        status, image = compose_daemon.api("GET", f"/images/{name}_app/json")
        assert status == 200, image
        compose("-p", name, "down", "-t", "1", "--rmi", "local", cwd=project_dir.path)
        status, _ = compose_daemon.api("GET", f"/images/{name}_app/json")
        assert status == 404
    finally:
        compose_daemon.api("DELETE", f"/images/{name}_app?force=1")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("services:\n  a:\n    image: busybox\n    bogus: 1\n", "bogus"),
        ("services:\n  a:\n    image: busybox\n    ports: 80\n", "services.a.ports"),
        ("services:\n  a:\n    image: ${NEEDED:?set NEEDED please}\n", "set NEEDED please"),
        (
            "services:\n  a:\n    image: busybox\n    depends_on: [b]\n"
            "  b:\n    image: busybox\n    depends_on: [a]\n",
            "ircular",
        ),
    ],
    ids=["unknown-key", "wrong-type", "required-variable", "cycle"],
)
def test_bad_files_fail_in_one_line_and_start_nothing(
    compose: ComposeRun,
    compose_daemon: DaemonProcess,
    project_dir: ProjectDir,
    text: str,
    want: str,
) -> None:
    project_dir.write("compose.yaml", text)
    result = compose("-p", project_dir.name, "up", "-d", cwd=project_dir.path, check=False)
    assert result.returncode == 1, result
    assert want in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert project_objects(compose_daemon, project_dir.name)["containers"] == []


def test_a_missing_file_is_named(compose: ComposeRun, project_dir: ProjectDir) -> None:
    result = compose(
        "-f", "nope.yml", "-p", project_dir.name, "config", cwd=project_dir.path, check=False
    )
    assert result.returncode == 1
    assert "nope.yml" in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_fails_and_leaves_nothing_running(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        project_dir.write("docker-compose.yml", example(port))
        result = compose(
            "-p", project_dir.name, "up", "-d", "-t", "1", cwd=project_dir.path, check=False
        )
    assert result.returncode == 1, result
    assert str(port) in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    left = project_objects(compose_daemon, project_dir.name)
    assert left["containers"] == [] and left["networks"] == []


DEPENDS = textwrap.dedent(
    """\
    services:
      init:
        image: busybox:latest
        command: ["sh", "-c", "echo ready > /shared/flag"]
        volumes: ["shared:/shared"]
      db:
        image: busybox:latest
        command: ["sh", "-c", "touch /tmp/healthy; exec sleep 3600"]
        healthcheck:
          test: ["CMD", "{check}", "-f", "/tmp/healthy"]
          interval: 200ms
          retries: 2
      app:
        image: busybox:latest
        command: ["sh", "-c", "cat /shared/flag; exec sleep 3600"]
        volumes: ["shared:/shared"]
        depends_on:
          init: {{condition: service_completed_successfully}}
          db: {{condition: service_healthy}}
    volumes:
      shared: {{}}
    """
)


def test_depends_on_conditions_are_awaited(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", DEPENDS.format(check="test"))
    name = project_dir.name
    up = compose("-p", name, "up", "-d", "--wait", "-t", "1", cwd=project_dir.path)
    # --wait: back only once everything runs (init, a one-shot dependency, exited 0)
    states = {
        c["Labels"]["com.docker.compose.service"]: c["State"]
        for c in project_objects(compose_daemon, name)["containers"]
    }
    assert states == {"init": "exited", "db": "running", "app": "running"}
    lines = up.stderr.splitlines()
    healthy = lines.index(f" Container {name}_db_1  Healthy")
    assert lines.index(f" Container {name}_app_1  Starting") > healthy
    # init ran to completion before app started: app read the file init wrote
    logs = compose("-p", name, "logs", "--no-color", "app", cwd=project_dir.path)
    assert logs.stdout.strip().endswith("| ready")
    compose("-p", name, "down", "-v", "-t", "1", cwd=project_dir.path)


def test_an_unhealthy_dependency_fails_up_and_removes_what_it_created(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    # `false -f file` always fails: db turns unhealthy after its retries
    project_dir.write("compose.yaml", DEPENDS.format(check="false"))
    name = project_dir.name
    result = compose("-p", name, "up", "-d", "-t", "1", cwd=project_dir.path, check=False)
    assert result.returncode == 1, result
    assert result.stderr.splitlines()[-1] == (
        f"dependency failed to start: container {name}_db_1 is unhealthy"
    )
    left = project_objects(compose_daemon, name)
    assert left["containers"] == [] and left["networks"] == []


ATTACHED = textwrap.dedent(
    """\
    services:
      quick:
        image: busybox:latest
        command: ["sh", "-c", "echo bye; exit 3"]
      slow:
        image: busybox:latest
        command: sleep 3600
    """
)


def test_attached_up_aborts_on_exit_with_the_services_exit_code(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", ATTACHED)
    name = project_dir.name
    result = compose(
        "-p", name, "up", "--exit-code-from", "quick", "-t", "1", cwd=project_dir.path, check=False
    )
    assert result.returncode == 3, result
    assert result.stdout.startswith(f"Attaching to {name}_quick_1, {name}_slow_1\n")
    assert f"{name}_quick_1 | bye" in result.stdout
    assert f"{name}_quick_1 exited with code 3" in result.stdout
    assert "Aborting on container exit..." in result.stderr
    states = {
        c["Names"][0]: c["State"] for c in project_objects(compose_daemon, name)["containers"]
    }
    assert states == {f"/{name}_quick_1": "exited", f"/{name}_slow_1": "exited"}
    compose("-p", name, "down", cwd=project_dir.path)


def test_run_a_one_off_command_and_the_up_short_form(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", ATTACHED)
    name = project_dir.name
    result = compose(
        "-p",
        name,
        "run",
        "--rm",
        "-e",
        "X=five",
        "slow",
        "sh",
        "-c",
        "echo x=$X; exit 4",
        cwd=project_dir.path,
        check=False,
    )
    assert result.returncode == 4, result
    assert result.stdout == "x=five\n"
    assert project_objects(compose_daemon, name)["containers"] == []

    short = subprocess.run(
        [sys.executable, "-m", "dockyard", "up", "-p", name, "-d", "slow"],
        cwd=project_dir.path,
        env=compose_daemon.env,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    assert short.returncode == 0, short
    assert list(ids_by_service(compose_daemon, name)) == ["slow"]
    top = compose("-p", name, "top", "slow", cwd=project_dir.path)
    assert "sleep 3600" in top.stdout
    compose("-p", name, "down", "-t", "1", cwd=project_dir.path)


WIRED = textwrap.dedent(
    """\
    services:
      store:
        image: busybox:latest
        command: sleep 3600
        stop_signal: SIGKILL
        volumes: ["/scratch"]
        networks:
          back:
            aliases: [datastore]
        environment: {{GEN: "{gen}"}}
      sidecar:
        image: busybox:latest
        command: sleep 3600
        stop_signal: SIGKILL
        network_mode: "service:store"
        volumes_from: [store]
      front:
        image: busybox:latest
        command: ["sh", "-c", "echo hi > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        stop_signal: SIGKILL
        ports: ["8080"]
        networks: [back, default]
    networks:
      back: {{}}
    """
)


def test_networks_aliases_shared_namespaces_and_recreate_keeps_anonymous_volumes(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", WIRED.format(gen="1"))
    name = project_dir.name
    compose("-p", name, "up", "-d", cwd=project_dir.path)

    def sh(service: str, script: str) -> str:
        return compose(
            "-p", name, "exec", "-T", service, "sh", "-c", script, cwd=project_dir.path
        ).stdout

    # the alias and the service name resolve on the named network; front is on both
    probe = "until wget -qO- http://front:8080/ >/dev/null 2>&1; do sleep 0.1; done; echo ok"
    assert sh("store", f"timeout 20 sh -c '{probe}'").strip() == "ok"
    assert "datastore" in sh("front", "nslookup datastore 2>&1 || true")
    # sidecar shares store's network namespace and its volumes
    assert sh("sidecar", "hostname") == sh("store", "hostname")
    sh("store", "echo kept > /scratch/file")
    assert sh("sidecar", "cat /scratch/file").strip() == "kept"
    # an ephemeral published port, as `compose port` reports it
    port = compose("-p", name, "port", "front", "8080", cwd=project_dir.path).stdout.strip()
    assert port.startswith("0.0.0.0:") and int(port.rsplit(":", 1)[1]) > 0

    before = ids_by_service(compose_daemon, name)
    project_dir.write("compose.yaml", WIRED.format(gen="2"))
    compose("-p", name, "up", "-d", cwd=project_dir.path)
    after = ids_by_service(compose_daemon, name)
    # store changed; sidecar depends on it (network_mode, volumes_from): both recreated
    assert after["store"] != before["store"] and after["sidecar"] != before["sidecar"]
    assert after["front"] == before["front"]
    assert sh("store", "cat /scratch/file").strip() == "kept"

    images = compose("-p", name, "images", cwd=project_dir.path).stdout
    assert f"{name}_front_1" in images and "busybox" in images
    compose("-p", name, "down", "-v", cwd=project_dir.path)
    assert project_objects(compose_daemon, name)["networks"] == []


def test_lifecycle_commands_recreate_options_and_orphans(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", WIRED.format(gen="1"))
    name = project_dir.name

    def states() -> dict[str, str]:
        return {
            c["Labels"]["com.docker.compose.service"]: c["State"]
            for c in project_objects(compose_daemon, name)["containers"]
        }

    compose("-p", name, "up", "-d", cwd=project_dir.path)
    first = ids_by_service(compose_daemon, name)
    compose("-p", name, "stop", "front", cwd=project_dir.path)
    assert states()["front"] == "exited" and states()["store"] == "running"
    assert compose("-p", name, "ps", "-q", cwd=project_dir.path).stdout.split() != []
    assert len(compose("-p", name, "ps", "-a", "-q", cwd=project_dir.path).stdout.split()) == 3
    compose("-p", name, "start", cwd=project_dir.path)
    assert set(states().values()) == {"running"}
    compose("-p", name, "restart", "front", cwd=project_dir.path)
    compose("-p", name, "kill", "front", cwd=project_dir.path)
    assert states()["front"] == "exited"
    compose("-p", name, "rm", "-f", "front", cwd=project_dir.path)
    assert "front" not in states()

    # --no-recreate keeps a changed service; --force-recreate replaces unchanged ones
    project_dir.write("compose.yaml", WIRED.format(gen="2"))
    compose("-p", name, "up", "-d", "--no-recreate", cwd=project_dir.path)
    kept = ids_by_service(compose_daemon, name)
    assert kept["store"] == first["store"] and "front" in kept
    compose("-p", name, "up", "-d", "--force-recreate", "--no-deps", "front", cwd=project_dir.path)
    forced = ids_by_service(compose_daemon, name)
    assert forced["front"] != kept["front"] and forced["store"] == kept["store"]

    # a service removed from the file is an orphan: warned about, removed on request
    project_dir.write(
        "compose.yaml", WIRED.format(gen="2").split("  front:")[0] + "networks:\n  back: {}\n"
    )
    warned = compose("-p", name, "up", "-d", cwd=project_dir.path)
    assert "Found orphan containers" in warned.stderr and f"{name}_front_1" in warned.stderr
    compose("-p", name, "up", "-d", "--remove-orphans", cwd=project_dir.path)
    assert "front" not in states()
    compose("-p", name, "down", cwd=project_dir.path)


def test_ctrl_c_stops_an_attached_up(
    compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            """\
            services:
              talker:
                image: busybox:latest
                command: ["sh", "-c", "echo hello; exec sleep 3600"]
                stop_signal: SIGKILL
            """
        ),
    )
    name = project_dir.name
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "compose", "-p", name, "up"],
        cwd=project_dir.path,
        env=compose_daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Attaching to {name}_talker_1\n"
        line = proc.stdout.readline()  # blocks until the attached logs show the output
        assert line.rstrip().endswith("| hello"), line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=COMPOSE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Gracefully stopping..." in err
    states = {c["State"] for c in project_objects(compose_daemon, name)["containers"]}
    assert states == {"exited"}


def test_compose_over_mutual_tls_as_the_docker_cli_connects(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("compose-tls")
    setup = start_tls_dockyard_daemon(base)
    daemon, port, cert_dir = setup.daemon, setup.port, setup.cert_dir
    project = base / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text(
        "services:\n  one:\n    image: busybox:latest\n    command: sleep 3600\n"
        "    stop_signal: SIGKILL\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dockyard", "compose", "-p", "tls", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )

    try:
        up = run("up", "-d")
        assert up.returncode == 0, up.stderr
        ps = run("ps", "--services")
        assert ps.stdout.split() == ["one"]
        down = run("down")
        assert down.returncode == 0, down.stderr
        # a directory with the CA but no cert.pem/key.pem: no client identity to offer, and
        # the daemon (--tlsverify) refuses the connection: one line, exit 1
        env["DOCKER_CERT_PATH"] = str(base / "pki")
        refused = run("ps")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("error during connect: "), refused.stderr
        assert "CERTIFICATE_REQUIRED" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    finally:
        leaks = daemon.stop()
        log = daemon.log(tail_chars=20_000)
    assert not leaks, f"left behind: {leaks}"
    assert "Traceback" not in log, log


def test_events_streams_the_projects_container_events(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write("compose.yaml", ATTACHED)
    name = project_dir.name
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "compose", "-p", name, "events", "--json", "quick"],
        cwd=project_dir.path,
        env=compose_daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # The subscription's start is not observable from here: make events (a forced
        # recreate of `quick`) until the stream shows one, a bounded number of times.
        for _ in range(EVENT_ATTEMPTS):
            compose("-p", name, "up", "-d", "--force-recreate", "quick", cwd=project_dir.path)
            readable, _, _ = select.select([proc.stdout], [], [], EVENT_WAIT_S)
            if readable:
                break
        event = json.loads(proc.stdout.readline())
        assert event["Type"] == "container"
        assert event["Actor"]["Attributes"]["com.docker.compose.service"] == "quick"
    finally:
        proc.terminate()
        proc.communicate(timeout=COMPOSE_TIMEOUT_S)
    compose("-p", name, "down", cwd=project_dir.path)


def test_pull_never_with_a_missing_image_starts_nothing(
    compose: ComposeRun, compose_daemon: DaemonProcess, project_dir: ProjectDir
) -> None:
    project_dir.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox:latest\n    command: sleep 1\n"
        "  b:\n    image: nosuch/image:1\n    depends_on: [a]\n",
    )
    name = project_dir.name
    result = compose("-p", name, "up", "-d", "--pull", "never", cwd=project_dir.path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "No such image: nosuch/image:1"
    assert project_objects(compose_daemon, name) == {
        "containers": [],
        "networks": [],
        "volumes": [],
    }


def test_version_needs_no_file_and_no_engine(tmp_path: Path) -> None:
    """As Compose: `version` works in an empty directory with no engine reachable."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}

    def version(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dockyard", "compose", "version", *args]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)

    pretty, short, as_json = version(), version("--short"), version("-f", "json")
    assert (pretty.returncode, short.returncode, as_json.returncode) == (0, 0, 0)
    version = short.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version), short.stdout
    assert pretty.stdout == f"dockyard compose version {version}\n"
    assert json.loads(as_json.stdout) == {"version": version}


def test_a_file_from_standard_input(tmp_path: Path) -> None:
    """`-f -` (docker-compose 1.29.2, docker compose v2): the file is read from stdin, the
    project directory is the current one, and relative bind paths resolve from there."""
    text = "services:\n  app:\n    image: busybox\n    volumes: ['./data:/data']\n"
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "compose", "-f", "-", "-p", "fromstdin", "config"],
        cwd=tmp_path,
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "name: fromstdin" in result.stdout
    assert f"- {tmp_path}/data:/data" in result.stdout, result.stdout


def test_include_reads_the_included_files_and_their_env(tmp_path: Path) -> None:
    """The compose-spec's `include`, through the CLI's file reads: the included file, its
    project's .env, and its relative paths resolved against its own directory."""
    (tmp_path / "app").mkdir()
    (tmp_path / "db").mkdir()
    (tmp_path / "app" / "compose.yaml").write_text(
        "include: [../db/compose.yaml]\n"
        "services:\n  web:\n    image: busybox\n    depends_on: [db]\n"
    )
    (tmp_path / "db" / "compose.yaml").write_text(
        "services:\n  db:\n    image: busybox:${DB_TAG}\n    volumes: ['./data:/data']\n"
    )
    (tmp_path / "db" / ".env").write_text("DB_TAG=1.36\n")
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "compose", "config"],
        cwd=tmp_path / "app",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "image: busybox:1.36" in result.stdout
    assert f"- {tmp_path}/db/data:/data" in result.stdout
    assert "name: app" in result.stdout
