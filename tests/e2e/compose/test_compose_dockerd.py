"""dockyard compose driving the real dockerd 20.10 (issue 7: Compose talks only the Engine
API, so the same files work against any engine).

A reference dockerd on a private socket (no host network changes: `--bridge=none`,
`--iptables=false`; user-defined bridge networks and the userland proxy still work) holds
busybox; dockyard compose brings up a project with a published port, a service that reaches
another by its name on the project network, and a named volume; a second `up -d` changes
nothing; a changed service is recreated alone; `down -v` leaves nothing of the project.
"""

from __future__ import annotations

import secrets
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.compose.conftest import free_port, project_objects, run_compose
from tests.support.dockerd import DaemonProcess

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT_S = 10.0

COMPOSE_FILE = """\
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo served-by-web > /www/index.html && exec httpd -f -p 80 -h /www"]
    volumes: ["www:/www"]
    ports: ["127.0.0.1:${WEB_PORT}:80"]
  client:
    image: busybox:latest
    depends_on: [web]
    environment:
      - MARK=${MARK:-one}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
volumes:
  www: {}
"""


def _ids(daemon: DaemonProcess, project: str) -> dict[str, str]:
    return {
        c["Labels"]["com.docker.compose.service"]: c["Id"]
        for c in project_objects(daemon, project)["containers"]
    }


def test_dockyard_compose_drives_the_real_dockerd(dockerd: DaemonProcess, tmp_path: Path) -> None:
    project = f"dyd{secrets.token_hex(3)}"
    port = free_port()
    (tmp_path / "compose.yaml").write_text(COMPOSE_FILE)
    env = {"WEB_PORT": str(port)}
    args = ("-p", project, "-f", str(tmp_path / "compose.yaml"))
    try:
        run_compose(dockerd, *args, "up", "-d", env=env)
        first = _ids(dockerd, project)
        assert set(first) == {"web", "client"}

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=HTTP_TIMEOUT_S) as r:
            assert r.read() == b"served-by-web\n"
        # The client reaches web by its service name on the project network.
        fetched = run_compose(
            dockerd,
            *args,
            "exec",
            "-T",
            "client",
            "wget",
            "-q",
            "-O",
            "-",
            "http://web/",
            env=env,
        )
        assert fetched.stdout == "served-by-web\n", fetched

        again = run_compose(dockerd, *args, "up", "-d", env=env)
        assert _ids(dockerd, project) == first, again.stderr

        run_compose(dockerd, *args, "up", "-d", env={**env, "MARK": "two"})
        changed = _ids(dockerd, project)
        assert changed["web"] == first["web"]
        assert changed["client"] != first["client"]

        ps = run_compose(dockerd, *args, "ps", env=env)
        assert f"{project}_web_1" in ps.stdout and f"{project}_client_1" in ps.stdout
    finally:
        run_compose(dockerd, *args, "down", "-v", env=env, check=False)
    left = project_objects(dockerd, project)
    assert left == {"containers": [], "networks": [], "volumes": []}, left
