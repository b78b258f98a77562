"""``dockyard compose pull`` and ``push`` against a real Docker Registry v2.

A real ``docker-registry`` (tests/support/registry.py, the one the engine's own pull/push
tests use) runs on a loopback port for the module; the engine is the compose module's
``dockyard daemon``. ``push`` sends the images of services that have both ``build:`` and
``image:`` (and only those, as docker-compose 1.29.2); ``pull`` fetches every service's
image; ``--ignore-pull-failures``/``--ignore-push-failures`` report a failure and carry on.

The registry is stopped by PID at the end of the module; every image a test tags or pulls
is removed from the engine afterwards, and the projects by ``project_dir``.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.compose.conftest import ComposeRun, ProjectDir, free_port
from tests.e2e.engine.test_daemon_cli import DaemonProcess
from tests.support.registry import RegistryProcess

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT_S = 10.0
DOCKERFILE = "FROM busybox:latest\nRUN echo built > /built\n"


@pytest.fixture
def images(compose_daemon: DaemonProcess) -> Iterator[list[str]]:
    """References the test puts into the engine; removed afterwards whatever happened."""
    created: list[str] = []
    try:
        yield created
    finally:
        for ref in created:
            compose_daemon.api("DELETE", f"/images/{ref}?force=1")


def tags(registry: RegistryProcess, repository: str) -> list[str]:
    """The registry's tags of ``repository`` (Registry API v2 tags/list); [] when unknown."""
    url = f"{registry.url}/v2/{repository}/tags/list"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return sorted(json.load(response).get("tags") or [])
    except urllib.error.HTTPError as err:
        with err:  # the error holds the answer's open body
            if err.code == 404:
                return []
            raise


def has_image(daemon: DaemonProcess, ref: str) -> bool:
    status, _ = daemon.api("GET", f"/images/{ref}/json")
    return status == 200


def test_push_sends_the_built_images_only(
    compose: ComposeRun,
    compose_daemon: DaemonProcess,
    registry: RegistryProcess,
    project_dir: ProjectDir,
    images: list[str],
) -> None:
    repo = f"cmp-{project_dir.name}"
    built, pulled_only = f"{registry.host}/{repo}/app:v1", f"{registry.host}/{repo}/base:v1"
    images += [built, pulled_only]
    project_dir.write("app/Dockerfile", DOCKERFILE)
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            f"""
            services:
              app:
                build: ./app
                image: {built}
              base:
                image: {pulled_only}
              buildonly:
                build: ./app
            """
        ),
    )
    name = project_dir.name
    compose("-p", name, "build", "app", cwd=project_dir.path)
    out = compose("-p", name, "push", cwd=project_dir.path)
    assert f" Image {built}  Pushing" in out.stderr.splitlines(), out.stderr
    assert f" Image {built}  Pushed" in out.stderr.splitlines(), out.stderr
    assert pulled_only not in out.stderr and "buildonly" not in out.stderr
    assert tags(registry, f"{repo}/app") == ["v1"]
    assert tags(registry, f"{repo}/base") == []  # image-only services are not pushed

    # what was pushed is what was built: remove it locally, pull it back, compare ids
    _, built_info = compose_daemon.api("GET", f"/images/{built}/json")
    compose_daemon.api("DELETE", f"/images/{built}?force=1")
    compose("-p", name, "pull", "app", cwd=project_dir.path)
    _, pulled_info = compose_daemon.api("GET", f"/images/{built}/json")
    assert pulled_info["Id"] == built_info["Id"]


def test_push_failures_stop_the_push_unless_ignored(
    compose: ComposeRun, project_dir: ProjectDir, images: list[str]
) -> None:
    # a registry on a closed loopback port: the push fails without leaving the machine
    unreachable = f"127.0.0.1:{free_port()}/cmp-{project_dir.name}/app:v1"
    images.append(unreachable)
    project_dir.write("app/Dockerfile", DOCKERFILE)
    project_dir.write(
        "compose.yaml",
        f"services:\n  app:\n    build: ./app\n    image: {unreachable}\n",
    )
    name = project_dir.name
    compose("-p", name, "build", cwd=project_dir.path)
    failed = compose("-p", name, "push", cwd=project_dir.path, check=False)
    assert failed.returncode == 1, failed
    assert "Traceback" not in failed.stderr
    assert "connection refused" in failed.stderr.lower(), failed.stderr
    ignored = compose("-p", name, "push", "--ignore-push-failures", cwd=project_dir.path)
    assert f" Image {unreachable}  Error" in ignored.stderr.splitlines(), ignored.stderr
    assert "WARNING: app: " in ignored.stderr


def test_pull_fetches_every_service_image_and_ignores_failures_when_asked(
    compose: ComposeRun,
    compose_daemon: DaemonProcess,
    registry: RegistryProcess,
    project_dir: ProjectDir,
    images: list[str],
) -> None:
    repo = f"cmp-{project_dir.name}"
    web, db = f"{registry.host}/{repo}/web:v1", f"{registry.host}/{repo}/db:v2"
    missing = f"{registry.host}/{repo}/missing:v{secrets.token_hex(2)}"
    images += [web, db]
    for ref in (web, db):
        compose_daemon.docker("tag", "busybox:latest", ref)
        compose_daemon.docker("push", ref)
        compose_daemon.api("DELETE", f"/images/{ref}")
    assert not has_image(compose_daemon, web) and not has_image(compose_daemon, db)
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            f"""
            services:
              web:
                image: {web}
              db:
                image: {db}
            """
        ),
    )
    name = project_dir.name
    out = compose("-p", name, "pull", cwd=project_dir.path)
    lines = out.stderr.splitlines()
    for service in ("web", "db"):
        assert f" Image {service}  Pulling" in lines, out.stderr
        assert f" Image {service}  Pulled" in lines, out.stderr
    assert has_image(compose_daemon, web) and has_image(compose_daemon, db)

    # an image the registry does not have: the pull fails with the engine's message...
    for ref in (web, db):
        compose_daemon.api("DELETE", f"/images/{ref}")
    project_dir.write(
        "compose.yaml",
        textwrap.dedent(
            f"""
            services:
              broken:
                image: {missing}
              web:
                image: {web}
            """
        ),
    )
    failed = compose("-p", name, "pull", cwd=project_dir.path, check=False)
    assert failed.returncode == 1, failed
    assert "Traceback" not in failed.stderr
    assert "not found" in failed.stderr.lower() or "unknown" in failed.stderr.lower(), failed
    # every pull runs (in parallel, as 1.29.2 and Compose v2); the failure fails the command
    assert has_image(compose_daemon, web)
    compose_daemon.api("DELETE", f"/images/{web}")

    # ...and with --ignore-pull-failures it is reported while the others are pulled
    ignored = compose("-p", name, "pull", "--ignore-pull-failures", cwd=project_dir.path)
    lines = ignored.stderr.splitlines()
    assert " Image broken  Error" in lines, ignored.stderr
    assert any(line.startswith("WARNING: broken: ") for line in lines), ignored.stderr
    assert " Image web  Pulled" in lines, ignored.stderr
    assert has_image(compose_daemon, web)
