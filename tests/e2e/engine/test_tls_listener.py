"""`dockyard daemon -H tcp://… --tlsverify`: the Docker API over mutual TLS.

One daemon for the module, with busybox bootstrapped, listening on a private unix socket
(readiness, cleanup) and on a loopback TCP port with `--tlsverify`, certificates from
`tests/support/tls.py`. The docker CLI connects as users do (`DOCKER_HOST=tcp://…
DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<dir with ca.pem cert.pem key.pem>`), and so do the
docker SDK (`docker.tls.TLSConfig`) and a raw TLS client; clients without a certificate, or
with one from another CA, are refused at the handshake. Refusals at daemon start (a
non-loopback address without `--tlsverify`, unusable certificate files) are checked without
a daemon: they must happen before the data root is touched.
"""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.tls import TLSConfig

from tests.support.dockerd import (
    COMMAND_TIMEOUT_S,
    DaemonProcess,
    run_docker_cli,
    start_tls_dockyard_daemon,
)
from tests.support.tls import TlsMaterial, make_tls_material

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class TlsDaemon:
    daemon: DaemonProcess
    port: int
    material: TlsMaterial
    cert_dir: Path  # ca.pem, cert.pem, key.pem: what DOCKER_CERT_PATH names

    @property
    def tcp_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def cli_env(self, cert_dir: Path | None = None) -> dict[str, str]:
        return dict(
            self.daemon.env,
            DOCKER_HOST=self.tcp_host,
            DOCKER_TLS_VERIFY="1",
            DOCKER_CERT_PATH=str(cert_dir or self.cert_dir),
        )

    def docker(
        self, *args: str, env: dict[str, str] | None = None, input_bytes: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_docker_cli(args, env=env or self.cli_env(), input_bytes=input_bytes)


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDaemon]:
    base = tmp_path_factory.mktemp("tls-daemon")
    setup = start_tls_dockyard_daemon(base)
    daemon, port, material, cert_dir = setup.daemon, setup.port, setup.material, setup.cert_dir
    try:
        yield TlsDaemon(daemon, port, material, cert_dir)
    finally:
        leaks = daemon.stop()
        log = daemon.log(tail_chars=20_000)
    assert not leaks, f"left behind: {leaks}"
    assert "Traceback" not in log, log


def _https(tls: TlsDaemon, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1", tls.port, context=context, timeout=COMMAND_TIMEOUT_S
    )


def test_the_cli_drives_the_daemon_over_mutual_tls(tls_daemon: TlsDaemon) -> None:
    version = tls_daemon.docker("version", "--format", "{{.Server.Os}}")
    assert (version.returncode, version.stdout, version.stderr) == (0, "linux\n", "")
    # Attach and exec over TLS: the CLI half-closes (close_notify) and still reads output.
    run = tls_daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (run.returncode, run.stdout, run.stderr) == (0, "out\n", "err\n")
    tls_daemon.docker("run", "-d", "--name", "tls-exec", "busybox", "sleep", "300")
    try:
        exec_out = tls_daemon.docker("exec", "tls-exec", "echo", "exec-ok")
        assert (exec_out.returncode, exec_out.stdout) == (0, "exec-ok\n")
        piped = tls_daemon.docker("exec", "-i", "tls-exec", "cat", input_bytes=b"via-stdin\n")
        assert (piped.returncode, piped.stdout) == (0, "via-stdin\n")
    finally:
        removed = tls_daemon.docker("rm", "-f", "tls-exec")
    assert removed.returncode == 0, removed.stderr


def test_a_cli_without_a_client_certificate_is_refused(tls_daemon: TlsDaemon) -> None:
    # --tlsverify with only the CA: the CLI checks the server but has no identity to offer.
    result = tls_daemon.docker(
        "--tlsverify",
        "--tlscacert",
        str(tls_daemon.material.ca_cert),
        "-H",
        tls_daemon.tcp_host,
        "version",
        "--format",
        "{{.Server.Version}}",
        env=tls_daemon.daemon.env,
    )
    assert result.returncode != 0
    assert result.stdout.strip() == ""
    assert "tls: certificate required" in result.stderr, result.stderr


def test_a_raw_tls_client_needs_a_certificate_from_the_ca(tls_daemon: TlsDaemon) -> None:
    conn = _https(tls_daemon, tls_daemon.material.client_context())
    try:
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"OK")
        assert response.getheader("Api-Version")
    finally:
        conn.close()
    for context in (
        tls_daemon.material.client_context(with_cert=False),
        tls_daemon.material.other_client_context(),
    ):
        refused = _https(tls_daemon, context)
        try:
            # TLS 1.3 reports the server's alert at the first read, 1.2 at the handshake:
            # either way no HTTP answer comes back.
            with pytest.raises((ssl.SSLError, ConnectionError)):
                refused.request("GET", "/_ping")
                refused.getresponse().read()
        finally:
            refused.close()


def test_a_plain_http_client_gets_no_api_on_the_tls_port(tls_daemon: TlsDaemon) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", tls_daemon.port, timeout=COMMAND_TIMEOUT_S)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.request("GET", "/_ping")
            conn.getresponse().read()
    finally:
        conn.close()


def test_the_sdk_over_tls(tls_daemon: TlsDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the session's CA (docker-py's ca_cert) when set.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    material = tls_daemon.material
    tls_config = TLSConfig(
        client_cert=(str(material.client_cert), str(material.client_key)),
        ca_cert=str(material.ca_cert),
        verify=True,
    )
    client = docker.DockerClient(
        base_url=f"https://127.0.0.1:{tls_daemon.port}", tls=tls_config, timeout=60
    )
    try:
        assert client.ping() is True
        assert client.version()["Os"] == "linux"
        output = client.containers.run("busybox", ["echo", "sdk-tls"], remove=True)
        assert output == b"sdk-tls\n"
    finally:
        client.close()


def _refused_start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            sys.executable, "-m", "dockyard", "daemon",
            "--data-root", str(tmp_path / "root"),
            "--exec-root", str(tmp_path / "run"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.stderr
    assert not (tmp_path / "root").exists(), "refused before touching anything"
    assert not (tmp_path / "run").exists(), "refused before touching anything"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_a_non_loopback_plain_tcp_listener_is_refused_at_start(tmp_path: Path) -> None:
    for flags in ([], ["--tls"]):
        result = _refused_start(tmp_path, "-H", "tcp://0.0.0.0:2375", *flags)
        assert "refusing to listen on tcp://0.0.0.0:2375 without --tlsverify" in result.stderr


def test_unusable_certificates_are_refused_at_start(tmp_path: Path) -> None:
    material = make_tls_material(tmp_path / "pki")
    missing = tmp_path / "pki" / "missing.pem"
    result = _refused_start(
        tmp_path,
        "-H", "tcp://127.0.0.1:1",
        "--tlsverify",
        "--tlscacert", str(material.ca_cert),
        "--tlscert", str(missing),
        "--tlskey", str(material.server_key),
    )  # fmt: skip
    assert str(missing) in result.stderr
    # A key that belongs to another certificate.
    mismatched = _refused_start(
        tmp_path,
        "-H", "tcp://127.0.0.1:1",
        "--tlsverify",
        "--tlscacert", str(material.ca_cert),
        "--tlscert", str(material.server_cert),
        "--tlskey", str(material.client_key),
    )  # fmt: skip
    assert "Error:" in mismatched.stderr and "pki" in mismatched.stderr
