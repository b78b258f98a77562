"""Fixtures for the runtime tests: a busybox rootfs, OCI bundles, and a leak-checked runc root.

Every container id is unique per test and tracked; at teardown each is force-deleted, every
shim and helper process is stopped by pid, and the test fails if a runc container, a shim
process or a cgroup directory of its containers is left behind.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.engine.runtime.runc import Runc
from dockyard.engine.runtime.shim import SHIM_PID_FILE, ShimConfig, read_pid_file, shim_running
from tests.support.processes import wait_pid_gone

RUNC_BINARY = "/usr/sbin/runc"
BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "echo", "cat", "sleep", "id", "true", "false", "ls", "ps", "tty")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROCESS_EXIT_TIMEOUT_S = 10.0


def _require(path: str) -> None:
    # No skips: a host without runc or busybox must fail loudly.
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is required for the runtime integration tests")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require(BUSYBOX)
    rootfs = tmp_path_factory.mktemp("rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    return rootfs


@pytest.fixture(scope="session")
def spec_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _require(RUNC_BINARY)
    where = tmp_path_factory.mktemp("spec")
    subprocess.run([RUNC_BINARY, "spec", "--bundle", str(where)], check=True)
    spec: dict[str, Any] = json.loads((where / "config.json").read_text())
    return spec


def cgroup_dirs(container_id: str) -> list[Path]:
    """Every cgroup directory (v1 controllers and the v2 hierarchy) named for a container."""
    name = cgroup_name(container_id)
    return [p for p in CGROUP_ROOT.glob(f"*/{name}") if p.exists()]


def cgroup_name(container_id: str) -> str:
    return f"dockyard-test-{container_id}"


class RuntimeEnv:
    """A private runc root plus the bundles, state dirs and processes one test created."""

    def __init__(self, base: Path, rootfs: Path, spec: dict[str, Any]) -> None:
        self.base = base
        self.root = base / "runc"
        self.runc = Runc(self.root, RUNC_BINARY)
        self._rootfs = rootfs
        self._spec = spec
        self.container_ids: list[str] = []
        self.state_dirs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def new_id(self) -> str:
        cid = f"dyt-{uuid.uuid4().hex[:12]}"
        self.container_ids.append(cid)
        return cid

    def bundle(self, container_id: str, args: list[str], *, tty: bool = False) -> Path:
        spec = copy.deepcopy(self._spec)
        spec["root"] = {"path": str(self._rootfs), "readonly": True}
        spec["process"]["args"] = args
        spec["process"]["terminal"] = tty
        spec["linux"]["cgroupsPath"] = f"/{cgroup_name(container_id)}"
        bundle = self.base / "bundles" / container_id
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def shim_config(self, args: list[str], *, tty: bool = False, stdin: bool = False) -> ShimConfig:
        cid = self.new_id()
        state_dir = self.base / "state" / cid
        self.state_dirs.append(state_dir)
        return ShimConfig(
            container_id=cid,
            bundle=self.bundle(cid, args, tty=tty),
            state_dir=state_dir,
            runc_root=self.root,
            runc_binary=RUNC_BINARY,
            tty=tty,
            stdin=stdin,
        )

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.processes.append(proc)
        return proc

    def runc_ids(self) -> list[str]:
        out = subprocess.run(
            [RUNC_BINARY, "--root", str(self.root), "list", "--format", "json"],
            check=True,
            capture_output=True,
        ).stdout
        return [c["id"] for c in json.loads(out or b"null") or []]

    def live_shims(self) -> list[Path]:
        return [d for d in self.state_dirs if shim_running(d)]

    def cleanup(self) -> list[str]:
        """Remove everything; return what had leaked (empty when the test cleaned up)."""
        leaks: list[str] = []
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        for cid in self.container_ids:
            if self.root.exists() and cid in self.runc_ids():
                leaks.append(f"runc container {cid}")
            subprocess.run(
                [RUNC_BINARY, "--root", str(self.root), "delete", "--force", cid],
                check=True,
                capture_output=True,
            )
        for state_dir in self.state_dirs:
            pid = read_pid_file(state_dir / SHIM_PID_FILE)
            if pid is None or not shim_running(state_dir):
                continue
            # With its container deleted the shim exits by itself; give it the chance.
            if not wait_pid_gone(pid, PROCESS_EXIT_TIMEOUT_S) and shim_running(state_dir):
                leaks.append(f"shim {pid} of {state_dir.name}")
                os.kill(pid, signal.SIGKILL)
                wait_pid_gone(pid, PROCESS_EXIT_TIMEOUT_S)
        for cid in self.container_ids:
            for d in cgroup_dirs(cid):
                leaks.append(f"cgroup {d}")
        return leaks


@pytest.fixture
def runtime(
    tmp_path: Path, busybox_rootfs: Path, spec_template: dict[str, Any]
) -> Iterator[RuntimeEnv]:
    env = RuntimeEnv(tmp_path, busybox_rootfs, spec_template)
    try:
        yield env
    finally:
        leaks = env.cleanup()
    assert not leaks, f"test left resources behind: {leaks}"
