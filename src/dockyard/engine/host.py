"""What the engine knows of its host: the facts dockerd probes at start.

Role: cgroup version, kernel, CPUs and memory, runc's version and namespaces, the init
binary, the daemon's own capabilities, the engine ID (made once per data root). `/version`,
`/info` and the OCI spec builder read the `HostInfo` this returns; nothing here changes the
host (except writing `<data-root>/engine-id` the first time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.model import oci_spec
from dockyard.engine.runtime.runc import Runc
from dockyard.engine.security import capabilities as caps

# `--init`: Debian docker.io's docker-init (tini), else Debian tini's static build.
INIT_BINARIES = ("/usr/bin/docker-init", "/usr/bin/tini-static")


@dataclass(frozen=True)
class HostInfo:
    """What /version and /info report, and what the spec builder needs."""

    facts: oci_spec.HostFacts
    kernel_version: str
    operating_system: str
    os_version: str
    architecture: str  # uname -m, as /info shows it
    go_arch: str  # amd64, as /version shows it
    ncpu: int
    mem_total_bytes: int
    hostname: str
    runc_version: str
    engine_id: str


def _os_release() -> tuple[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _mem_total_bytes() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


async def _runc_version(binary: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        binary, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    first = out.decode(errors="replace").splitlines()[:1]
    return first[0].removeprefix("runc version ").strip() if first else ""


def _engine_id(data_root: Path) -> str:
    path = data_root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        tmp = path.with_name(".engine-id.tmp")
        tmp.write_text(value + "\n")
        os.rename(tmp, path)
        return value


def _read_first_line(*paths: str) -> str:
    for path in paths:
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return ""


def _own_capabilities() -> tuple[str, ...] | None:
    """The daemon's bounding set, by name (moby caps.initCaps intersects with it)."""
    for line in _read_first_line("/proc/self/status").splitlines():
        key, _, value = line.partition(":")
        if key == "CapBnd":
            mask = int(value.strip(), 16)
            return tuple(c for bit, c in enumerate(caps.ALL_CAPABILITIES) if mask >> bit & 1)
    return None


def _blkio_weight(cgroup_version: int) -> bool:
    # moby pkg/sysinfo: blkio.weight in the v1 blkio hierarchy (absent where the kernel
    # only has BFQ's), the io controller on v2.
    if cgroup_version == 1:
        return Path("/sys/fs/cgroup/blkio/blkio.weight").exists()
    return "io" in _read_first_line("/sys/fs/cgroup/cgroup.controllers").split()


async def detect_host(runc: Runc, runc_binary: str, data_root: Path) -> HostInfo:
    release = os.uname().release
    numbers = [int(p) for p in release.split("-")[0].split(".")[:2] if p.isdigit()]
    cpu_count = os.cpu_count() or 1
    cgroup_version = 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1
    facts = oci_spec.HostFacts(
        cgroup_version=cgroup_version,
        kernel=tuple(numbers) or (0, 0),
        arch=platform.machine(),
        # AppArmor stays off: the spec would name a `docker-default` profile that nobody
        # loaded on this host, and runc would refuse to start.
        has_apparmor=False,
        cpu_count=cpu_count,
        hostname=socket.gethostname(),
        runtime_namespaces=await runc.namespaces(),
        init_path=next((p for p in INIT_BINARIES if Path(p).exists()), INIT_BINARIES[0]),
        cpus_online=_read_first_line(
            "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
            "/sys/fs/cgroup/cpuset.cpus.effective",
            "/sys/devices/system/cpu/online",
        ),
        mems_online=_read_first_line(
            "/sys/fs/cgroup/cpuset/cpuset.effective_mems",
            "/sys/fs/cgroup/cpuset.mems.effective",
            "/sys/devices/system/node/online",
        ),
        blkio_weight=_blkio_weight(cgroup_version),
        capabilities=_own_capabilities(),
    )
    os_name, os_version = _os_release()
    return HostInfo(
        facts=facts,
        kernel_version=release,
        operating_system=os_name,
        os_version=os_version,
        architecture=platform.machine(),
        go_arch=_go_arch(platform.machine()),
        ncpu=cpu_count,
        mem_total_bytes=_mem_total_bytes(),
        hostname=socket.gethostname(),
        runc_version=await _runc_version(runc_binary),
        engine_id=_engine_id(data_root),
    )


def _go_arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )
