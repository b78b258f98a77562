"""Shared fixtures for Compose end-to-end tests.

- ``compose_daemon``: one real ``dockyard daemon`` per module (busybox bootstrapped
  offline), stopped by PID and leak-checked by ``running_daemon``.
- ``compose``: runs ``python -m dockyard compose ARGS`` against it (``DOCKER_HOST`` set),
  returning the completed process; ``check=True`` fails the test with the output.
- ``project_dir``: a temp directory with a unique project name; whatever the project
  left (containers, networks, volumes labelled with its name) is removed afterwards
  through the Engine API, whatever the test did.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.e2e.engine.test_daemon_cli import DaemonProcess, running_daemon
from tests.support.dockerd import DaemonProcess as ReferenceDaemon
from tests.support.dockerd import load_busybox_into, start_dockerd
from tests.support.servers import free_port

COMPOSE_TIMEOUT_S = 120.0
PROJECT_LABEL = "com.docker.compose.project"


class ComposeRun(Protocol):
    def __call__(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="module")
def compose_daemon() -> Iterator[DaemonProcess]:
    with running_daemon("dy-cmp-", DaemonProcess) as daemon:
        yield daemon


def run_compose(
    daemon: DaemonProcess,
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m dockyard compose ARGS`` with the daemon as ``DOCKER_HOST``."""
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "compose", *args],
        cwd=cwd,
        env={**daemon.env, **(env or {})},
        stdin=subprocess.DEVNULL,  # exec/run attach stdin (a TTY on a terminal), as compose
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"compose {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n--- daemon ---\n{daemon.log()}"
        )
    return result


@pytest.fixture
def compose(compose_daemon: DaemonProcess) -> ComposeRun:
    def run(
        *args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_compose(compose_daemon, *args, cwd=cwd, check=check, env=env)

    return run


def project_objects(daemon: DaemonProcess, project: str) -> dict[str, list[dict[str, Any]]]:
    """The containers, networks and volumes labelled with ``project``."""
    query = urllib.parse.quote(json.dumps({"label": [f"{PROJECT_LABEL}={project}"]}))
    _, containers = daemon.api("GET", f"/containers/json?all=1&filters={query}")
    _, networks = daemon.api("GET", f"/networks?filters={query}")
    _, volumes = daemon.api("GET", f"/volumes?filters={query}")
    return {
        "containers": list(containers or []),
        "networks": list(networks or []),
        "volumes": list((volumes or {}).get("Volumes") or []),
    }


def remove_project(daemon: DaemonProcess, project: str) -> None:
    objects = project_objects(daemon, project)
    for container in objects["containers"]:
        daemon.api("DELETE", f"/containers/{container['Id']}?force=1&v=1")
    for network in objects["networks"]:
        daemon.api("DELETE", f"/networks/{network['Id']}")
    for volume in objects["volumes"]:
        daemon.api("DELETE", f"/volumes/{volume['Name']}?force=1")


@dataclass
class ProjectDir:
    path: Path
    name: str

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target


@pytest.fixture
def project_dir(compose_daemon: DaemonProcess) -> Iterator[ProjectDir]:
    path = Path(tempfile.mkdtemp(prefix="dy-cmp-proj-"))
    name = f"p{secrets.token_hex(4)}"
    try:
        yield ProjectDir(path, name)
    finally:
        try:
            remove_project(compose_daemon, name)
        finally:
            shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "COMPOSE_TIMEOUT_S",
    "ComposeRun",
    "ProjectDir",
    "free_port",
    "project_objects",
    "remove_project",
    "run_compose",
]


# The real dockerd 20.10 as a second engine (one per module that asks for it).
@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceDaemon]:
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        load_busybox_into(daemon.docker_host, docker_config=daemon.run_dir / "dockercfg")
        yield daemon
    finally:
        leaks = daemon.stop()
    assert not leaks, f"left behind (now removed): {leaks}"
