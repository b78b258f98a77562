"""Start the reference dockerd 20.10 and dockyard's daemon as processes for tests and benchmarks.

Role: give differential tests and the engine benchmark two daemons that answer the docker CLI
on private unix sockets and hold the same `busybox:latest` layer.

Rules:
- dockerd never touches the host's network or a system docker: it runs with
  `--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none` (no
  docker0, no FORWARD policy change, no sysctl), its own `--config-file` (so
  /etc/docker/daemon.json is never read and the 20.10 trust key goes to the temp dir, not
  /etc/docker/key.json), `--data-root`, `--exec-root`, `--pidfile`, its own socket and a
  unique `--cgroup-parent`. It starts its own containerd under the exec root. Its containers
  must use `--network none`: there is no bridge network.
- Every process is stopped by its PID, never by name. `stop()` force-removes every container
  through the API first, then sends SIGTERM and waits; whatever outlives that (a process
  whose command line names the temp dirs, a runc container, a mount under the temp dirs, a
  cgroup under the private parent, containerd's shim socket dir that we created) is removed
  and returned as a leak, so a caller can fail the test after cleaning up.
- Readiness is `GET /_ping` answering 200 on the unix socket. A missing binary or a daemon
  that exits early fails loudly (`DaemonError`), never a skip.
- Socket paths must fit in sun_path (108 bytes), so sockets, exec roots and pid files live
  in a short `mkdtemp` under /tmp; data roots and logs live under the caller's `tmp_path`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import wait_pid_gone
from tests.support.servers import free_port
from tests.support.tls import TlsMaterial, make_tls_material

DOCKER_CLI = "/usr/local/bin/docker"
DOCKERD_BINARY = "/usr/sbin/dockerd"
DOCKYARD_CLI = (sys.executable, "-m", "dockyard")
RUNC_BINARY = shutil.which("runc") or "/usr/sbin/runc"


def remove_runc_containers(root: Path) -> list[str]:
    """Force-delete every runc container under `root`; name each one (they are leaks)."""
    if not root.exists():
        return []
    listing = subprocess.run(
        [RUNC_BINARY, "--root", str(root), "list", "--format", "json"],
        capture_output=True,
        check=False,
    ).stdout
    found = []
    for item in json.loads(listing or b"null") or []:
        found.append(f"runc container {item['id']}")
        subprocess.run(
            [RUNC_BINARY, "--root", str(root), "delete", "--force", item["id"]],
            capture_output=True,
            check=False,
        )
    return found


# Docker Hub's busybox config, the same values dockyard's bootstrap writes (BUSYBOX_CONFIG).
BUSYBOX_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_REF = "busybox:latest"
# dockerd 20.10 speaks API 1.41 at most; dockyard 1.24..1.44. Raw API calls use the common one.
API_VERSION = "1.41"
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PING_RETRY_S = 0.02
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINERD_STATE_DIR = Path("/run/containerd")  # containerd 1.6 puts shim sockets in ./s


class DaemonError(Exception):
    """A daemon could not be started or did not become ready."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket; reusable for keep-alive requests."""

    def __init__(self, path: Path, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def api_request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One request on `conn`; the body is decoded when the answer is JSON."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    kind = response.getheader("Content-Type") or ""
    return response.status, json.loads(raw) if "json" in kind and raw else raw


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def pids_naming(text: str) -> list[int]:
    """Live processes (not this one, not zombies) whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if text in _cmdline(pid) and not _is_zombie(pid):
                found.append(pid)
    return sorted(found)


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or under any of `roots`, deepest first."""
    bases = [str(r.resolve()) for r in roots]
    with open("/proc/self/mountinfo") as info:
        points = {line.split()[4].replace("\\040", " ") for line in info}
    hits = [p for p in points if any(p == b or p.startswith(b + "/") for b in bases)]
    return sorted(hits, key=lambda p: p.count("/"), reverse=True)


def run_docker_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    input_bytes: bytes | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """The docker CLI with `env`; output decoded, never raises on a non-zero exit."""
    result = subprocess.run(
        [DOCKER_CLI, *args],
        env=dict(env),
        input=input_bytes,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


@dataclass
class DaemonProcess:
    """A daemon subprocess (dockerd or dockyard) and the docker CLI pointed at it."""

    kind: str  # "dockerd" or "dockyard"
    run_dir: Path  # short: socket, exec root, pid file
    data_root: Path
    log_path: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    runc_roots: tuple[Path, ...] = ()
    cgroup_parent: str = ""
    created_containerd_state: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def sock(self) -> Path:
        return self.run_dir / "d.sock"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise DaemonError(f"{self.kind} is not running")
        return self.process.pid

    def _start(self) -> None:
        if not Path(self.argv[0]).exists():
            raise DaemonError(f"{self.argv[0]} is missing: {self.kind} cannot be started")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
            "HOME": str(self.run_dir),
            "DOCKER_HOST": self.docker_host,
            "DOCKER_CONFIG": str(self.run_dir / "dockercfg"),
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal is not meant for it
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ping():
            if self.process.poll() is not None:
                raise DaemonError(
                    f"{self.kind} exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.kind} did not answer /_ping in {START_TIMEOUT_S}s")
            time.sleep(PING_RETRY_S)  # the socket answering is the readiness condition

    def log(self, tail_chars: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail_chars:]
        except FileNotFoundError:
            return ""

    def connect(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.sock)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request on a fresh connection; `path` without the version prefix."""
        conn = self.connect()
        try:
            return api_request(conn, method, f"/v{API_VERSION}{path}", body)
        finally:
            conn.close()

    def ping(self) -> bool:
        conn = UnixHTTPConnection(self.sock, timeout_s=2.0)
        try:
            status, _ = api_request(conn, "GET", "/_ping")
        except OSError:
            return False
        finally:
            conn.close()
        return status == 200

    def docker(
        self, *args: str, input_bytes: bytes | None = None, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon; never raises on a non-zero exit."""
        return run_docker_cli(args, env=self.env, input_bytes=input_bytes, timeout_s=timeout_s)

    def shim_pids(self) -> list[int]:
        """The per-container shims this daemon started (running ones)."""
        if self.kind == "dockerd":
            return pids_naming(f"-address {self.exec_root}/containerd/containerd.sock")
        from dockyard.engine.runtime.shim import SHIM_PID_FILE, read_pid_file, shim_running

        shims = self.exec_root / "shims"
        found = []
        for state_dir in sorted(shims.iterdir()) if shims.exists() else []:
            pid = read_pid_file(state_dir / SHIM_PID_FILE)
            if pid is not None and shim_running(state_dir):
                found.append(pid)
        return found

    def helper_pids(self) -> list[int]:
        """Processes that belong to the daemon itself besides its pid (dockerd's containerd)."""
        if self.kind != "dockerd":
            return []
        return pids_naming(f"--config {self.exec_root}/containerd/containerd.toml")

    def remove_all_containers(self) -> None:
        if self.process is None or self.process.poll() is not None or not self.ping():
            return
        status, items = self.api("GET", "/containers/json?all=1")
        if status == 200:
            for item in items:
                self.api("DELETE", f"/containers/{item['Id']}?force=1")

    def stop(self) -> list[str]:
        """Stop the daemon and remove everything it made; return what had to be forced."""
        leaks: list[str] = []
        try:
            self.remove_all_containers()
        finally:
            proc, self.process = self.process, None
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    leaks.append(f"{self.kind} {proc.pid} ignored SIGTERM")
                    proc.kill()
                    proc.wait()
            leaks += self._remove_leftovers()
        return leaks

    def _remove_leftovers(self) -> list[str]:
        leaks: list[str] = []
        for pid in sorted({*pids_naming(str(self.run_dir)), *pids_naming(str(self.data_root))}):
            leaks.append(f"process {pid}: {_cmdline(pid)[:120]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_pid_gone(pid, STOP_TIMEOUT_S)
        for root in self.runc_roots:
            leaks += [f"{leak} ({root})" for leak in remove_runc_containers(root)]
        leaks += self._remove_cgroups()
        for point in mounts_under(self.run_dir, self.data_root):
            leaks.append(f"mount {point}")
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self.created_containerd_state:
            # containerd 1.6 puts shim sockets in /run/containerd/s whatever its config says;
            # remove the dirs only if we made them and they are empty again.
            for path in (CONTAINERD_STATE_DIR / "s", CONTAINERD_STATE_DIR):
                with contextlib.suppress(FileNotFoundError):
                    if any(path.iterdir()):
                        leaks.append(f"left in {path}: {sorted(p.name for p in path.iterdir())}")
                        break
                    path.rmdir()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        return leaks

    def _remove_cgroups(self) -> list[str]:
        if not self.cgroup_parent:
            return []
        leaks: list[str] = []
        tops = [CGROUP_ROOT / self.cgroup_parent]
        tops += [h / self.cgroup_parent for h in CGROUP_ROOT.iterdir() if h.is_dir()]
        for top in (t for t in tops if t.is_dir()):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                procs = Path(dirpath, "cgroup.procs")
                pids = procs.read_text().split() if procs.exists() else []
                for pid in map(int, pids):
                    leaks.append(f"process {pid} in cgroup {dirpath}")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    wait_pid_gone(pid, STOP_TIMEOUT_S)
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        return leaks


DockerdProcess = DaemonProcess


def _short_run_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def start_dockerd(tmp_path: Path, *, networking: bool = False) -> DaemonProcess:
    """dockerd 20.10 on a private socket, data root and exec root, with no network changes;
    with `networking`, its defaults: docker0, iptables (it sets FORWARD's policy to DROP),
    IP forwarding, masquerading and the userland proxy (the caller restores the host)."""
    no_network = [
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
    ]
    run_dir = _short_run_dir("dd-")
    data_root = tmp_path / "dockerd-root"
    config_file = run_dir / "daemon.json"
    # 20.10 writes a trust key to /etc/docker/key.json unless told otherwise; the option has
    # no command-line flag in 20.10, only this (deprecated) config-file key.
    config_file.write_text(json.dumps({"deprecated-key-path": str(run_dir / "key.json")}))
    cgroup_parent = f"dyref-{secrets.token_hex(4)}"
    daemon = DaemonProcess(
        kind="dockerd",
        run_dir=run_dir,
        data_root=data_root,
        log_path=tmp_path / "dockerd.log",
        argv=[
            DOCKERD_BINARY,
            "--config-file",
            str(config_file),
            "-H",
            f"unix://{run_dir / 'd.sock'}",
            "--data-root",
            str(data_root),
            "--exec-root",
            str(run_dir / "exec"),
            "--pidfile",
            str(run_dir / "dockerd.pid"),
            *([] if networking else no_network),
            "--cgroup-parent",
            f"/{cgroup_parent}",
            "--storage-driver",
            "overlay2",
        ],
        # dockerd 20.10 passes runc `--root <exec-root>/runtime-runc/moby`.
        runc_roots=(run_dir / "exec" / "runtime-runc" / "moby",),
        cgroup_parent=cgroup_parent,
        created_containerd_state=not CONTAINERD_STATE_DIR.exists(),
    )
    try:
        daemon._start()
    except BaseException:
        daemon.stop()
        raise
    return daemon


def start_dockyard_daemon(
    tmp_path: Path,
    *,
    labels: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> DaemonProcess:
    """`dockyard daemon` with busybox bootstrapped offline into its fresh data root.

    `extra_args` are more daemon flags (e.g. a tcp:// listener and its TLS files); the unix
    socket in `run_dir` stays the one readiness is checked on.
    """
    run_dir = _short_run_dir("dy-")
    data_root = tmp_path / "dockyard-root"
    subprocess.run(
        [*DOCKYARD_CLI, "image", "bootstrap", "busybox", "--data-root", str(data_root)],
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    label_args = [a for k, v in (labels or {}).items() for a in ("--label", f"{k}={v}")]
    daemon = DaemonProcess(
        kind="dockyard",
        run_dir=run_dir,
        data_root=data_root,
        log_path=tmp_path / "dockyard-daemon.log",
        argv=[
            sys.executable,
            "-m",
            "dockyard",
            "daemon",
            "-H",
            f"unix://{run_dir / 'd.sock'}",
            "--data-root",
            str(data_root),
            "--exec-root",
            str(run_dir / "exec"),
            # Its own default bridge (and so its own iptables chains): test daemons may run
            # side by side.
            "--bridge",
            f"dys{secrets.token_hex(3)}",
            *label_args,
            *extra_args,
        ],
        runc_roots=(run_dir / "exec" / "runc",),
    )
    try:
        daemon._start()
    except BaseException:
        daemon.stop()
        raise
    return daemon


def busybox_rootfs_tar() -> bytes:
    """The rootfs tar dockyard's `image bootstrap busybox` imports, byte for byte."""
    from dockyard.engine.images.bootstrap import HOST_BUSYBOX, build_rootfs_tar, busybox_applets

    return build_rootfs_tar(HOST_BUSYBOX.read_bytes(), busybox_applets(HOST_BUSYBOX))


def load_busybox_into(docker_host: str, *, docker_config: Path | None = None) -> str:
    """`docker import` dockyard's busybox rootfs as `busybox:latest`; return the image ID."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": docker_host}
    if docker_config is not None:
        env["DOCKER_CONFIG"] = str(docker_config)
    result = subprocess.run(
        [
            DOCKER_CLI,
            "import",
            "--change",
            'CMD ["sh"]',
            "--change",
            f"ENV {BUSYBOX_PATH_ENV}",
            "-",
            BUSYBOX_REF,
        ],
        input=busybox_rootfs_tar(),
        env=env,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise DaemonError(f"docker import failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode().strip()


@contextlib.contextmanager
def dockerd_and_dockyard(
    tmp_path_factory: Any,
) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    """A reference dockerd and a dockyard daemon, both holding the same busybox image.

    On exit both are stopped by PID; it fails if anything had to be removed by force or if
    dockyard's log shows a traceback.
    """
    started: list[DaemonProcess] = []
    leaks: list[str] = []
    try:
        dockerd = start_dockerd(tmp_path_factory.mktemp("dockerd"))
        started.append(dockerd)
        load_busybox_into(dockerd.docker_host, docker_config=dockerd.run_dir / "dockercfg")
        dockyard = start_dockyard_daemon(tmp_path_factory.mktemp("dockyard"))
        started.append(dockyard)
        yield dockerd, dockyard
    finally:
        logs = {d.kind: d.log_path for d in started}
        for daemon in started:
            leaks += [f"{daemon.kind}: {leak}" for leak in daemon.stop()]
    if leaks:
        raise DaemonError(f"left behind (now removed): {leaks}")
    dockyard_log = logs["dockyard"].read_text(errors="replace")
    if "Traceback" in dockyard_log:
        raise DaemonError(f"dockyard logged a traceback:\n{dockyard_log[-4000:]}")


@dataclass(frozen=True)
class TlsDaemonSetup:
    """A dockyard daemon that also listens on tcp://127.0.0.1:`port` with mutual TLS, and a
    docker-CLI-style certificate directory (ca.pem, cert.pem, key.pem) for its clients."""

    daemon: DaemonProcess
    port: int
    material: TlsMaterial
    cert_dir: Path


def start_tls_dockyard_daemon(base: Path) -> TlsDaemonSetup:
    """`start_dockyard_daemon` plus a mutual-TLS TCP listener on a free loopback port."""
    material = make_tls_material(base / "pki")
    cert_dir = base / "client-certs"
    cert_dir.mkdir()
    shutil.copy(material.ca_cert, cert_dir / "ca.pem")
    shutil.copy(material.client_cert, cert_dir / "cert.pem")
    shutil.copy(material.client_key, cert_dir / "key.pem")
    port = free_port()
    daemon = start_dockyard_daemon(
        base,
        extra_args=[
            "-H", f"tcp://127.0.0.1:{port}",
            "--tlsverify",
            "--tlscacert", str(material.ca_cert),
            "--tlscert", str(material.server_cert),
            "--tlskey", str(material.server_key),
        ],
    )  # fmt: skip
    return TlsDaemonSetup(daemon, port, material, cert_dir)
