"""Docker's default Linux container spec pieces: mounts, masked/readonly paths, devices.

Pure: no I/O, values only. Source: moby `daemon/pkg/oci/defaults.go` DefaultLinuxSpec
at commit b985e2313a86 (Docker Engine 29 line). Invariants:

- lists keep moby's order, since the spec's order is what runc applies;
- host-dependent parts (the per-CPU ``thermal_throttle`` masks, which moby adds only
  when the path exists) take their facts as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_MOUNTS",
    "DEFAULT_NAMESPACES",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "DeviceNode",
    "DeviceRule",
    "Mount",
    "masked_paths",
]

# moby defaults.go defaultUnixPathEnv
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Mount:
    """An OCI mount (runtime-spec config.md#mounts)."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
        }
        if self.options:  # specs-go Mount.Options is omitempty
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class DeviceRule:
    """A devices-cgroup rule (runtime-spec LinuxDeviceCgroup); None major/minor = any."""

    allow: bool
    access: str
    type: str = ""
    major: int | None = None
    minor: int | None = None

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": self.allow}
        if self.type:
            out["type"] = self.type
        if self.major is not None:
            out["major"] = self.major
        if self.minor is not None:
            out["minor"] = self.minor
        if self.access:
            out["access"] = self.access
        return out


@dataclass(frozen=True)
class DeviceNode:
    """A device node as stat(2) reports it (containerd oci.DeviceFromPath).

    ``file_mode`` is the permission bits only (st_mode without the file type).
    """

    path: str
    type: str  # "c", "b" or "u"
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0

    def to_oci(self, path: str | None = None) -> dict[str, Any]:
        return {
            "path": self.path if path is None else path,
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
            "fileMode": self.file_mode,
            "uid": self.uid,
            "gid": self.gid,
        }


# moby defaults.go DefaultLinuxSpec Mounts
DEFAULT_MOUNTS: tuple[Mount, ...] = (
    Mount("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    Mount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    Mount(
        "/dev/pts",
        "devpts",
        "devpts",
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    ),
    Mount("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    Mount("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    Mount("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    Mount("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777")),
)

# moby defaults.go defaultLinuxMaskedPaths (before the per-CPU thermal_throttle paths)
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",  # GHSA-6fw5-f8r9-fgfm
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",  # GHSA-jq35-85cj-fj4p
    "/sys/firmware",
)

# moby defaults.go DefaultLinuxSpec Linux.ReadonlyPaths
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# moby defaults.go DefaultLinuxSpec Linux.Namespaces (the time namespace is removed
# later when the kernel lacks it, see daemon/oci_linux.go WithNamespaces).
DEFAULT_NAMESPACES: tuple[str, ...] = ("mount", "network", "time", "uts", "pid", "ipc")

# moby defaults.go DefaultLinuxSpec Linux.Resources.Devices, in moby's order: deny all,
# allow zero 1:5, null 1:3, urandom 1:9, random 1:8, tty 5:0, console 5:1, then deny
# tun 10:229. The device nodes themselves are runc's implicit defaults
# (runtime-spec config-linux.md#default-devices), so Linux.Devices starts empty.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(allow=False, access="rwm"),
    DeviceRule(allow=True, type="c", major=1, minor=5, access="rwm"),
    DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),
    DeviceRule(allow=True, type="c", major=1, minor=9, access="rwm"),
    DeviceRule(allow=True, type="c", major=1, minor=8, access="rwm"),
    DeviceRule(allow=True, type="c", major=5, minor=0, access="rwm"),
    DeviceRule(allow=True, type="c", major=5, minor=1, access="rwm"),
    DeviceRule(allow=False, type="c", major=10, minor=229, access="rwm"),
)


def masked_paths(thermal_throttle_cpus: Iterable[int] = ()) -> tuple[str, ...]:
    """Default masked paths plus ``/sys/devices/system/cpu/cpuN/thermal_throttle``.

    # moby defaults.go: appended for each possible CPU whose path exists on the host
    # (GHSA-6fw5-f8r9-fgfm); the caller passes the CPUs where it exists.
    """
    extra = tuple(f"/sys/devices/system/cpu/cpu{n}/thermal_throttle" for n in thermal_throttle_cpus)
    return DEFAULT_MASKED_PATHS + extra
