"""The OCI runtime spec (runc's config.json) for a container, built as dockerd builds it.

Pure: values in, a JSON-ready dict out; no I/O. Host facts that dockerd probes at run
time (kernel, arch, cgroup version, LSMs, device nodes, its own hostname) arrive in
:class:`HostFacts`. Sources, all moby at commit b985e2313a86 (Docker Engine 29 line,
runtime-spec 1.3.0):

- ``daemon/oci_linux.go`` createSpec and its options, applied in the same order
  (common options, cgroups, resources, sysctls, user, devices, rlimits, namespaces,
  capabilities, seccomp, mounts, AppArmor, OOM score, no-new-privileges);
- ``daemon/daemon_unix.go`` adaptContainerSettings (defaults: swap = 2x memory, 64 MiB
  shm, private IPC, cgroupns by cgroup version) and verifyPlatformContainerResources /
  verifyPlatformContainerSettings (validation and their messages);
- ``daemon/pkg/oci`` (defaults, devices), ``daemon/pkg/oci/caps``, moby/profiles seccomp.

The output uses the OCI wire names (camelCase) because it *is* the wire format handed
to runc; omitted fields follow specs-go's ``omitempty`` so the dict equals the JSON
dockerd writes. Invariants: privileged containers get every capability, every host
device, no masked/readonly paths and no seccomp unless a profile is asked for; errors
carry dockerd's (or the docker CLI's) message.

Out of scope here (callers add them): volumes and bind mounts, /etc/hosts,
/etc/resolv.conf and /etc/hostname, joining another container's namespaces,
user-namespace remapping, rootless mode, SELinux labels, CDI/GPU device requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.engine.security import capabilities as caps
from dockyard.engine.security import seccomp
from dockyard.engine.security.defaults import (
    DEFAULT_DEVICE_RULES,
    DEFAULT_MOUNTS,
    DEFAULT_NAMESPACES,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    DeviceNode,
    DeviceRule,
    Mount,
    masked_paths,
)

__all__ = [
    "OCI_VERSION",
    "ContainerConfig",
    "DeviceMapping",
    "HostFacts",
    "InvalidParameter",
    "ResolvedUser",
    "Resources",
    "SpecError",
    "Ulimit",
    "Unsupported",
    "build_spec",
    "check_resources",
    "parse_device",
    "validate_sysctl",
]

OCI_VERSION = "1.3.0"  # runtime-spec specs-go version vendored by moby
DEFAULT_SHM_SIZE_BYTES = 64 * 1024 * 1024  # moby daemon/config/config.go DefaultShmSize
MIN_MEMORY_BYTES = 6291456  # moby daemon_unix.go linuxMinMemory
MAX_HOSTNAME_LEN = 64  # moby daemon_unix.go maxHostnameLen
IN_CONTAINER_INIT_PATH = "/sbin/docker-init"  # moby oci_linux.go inContainerInitPath
SECCOMP_UNCONFINED = "unconfined"  # moby daemon/config SeccompProfileUnconfined
SECCOMP_BUILTIN = "builtin"  # moby daemon/config SeccompProfileDefault
APPARMOR_DEFAULT = "docker-default"
APPARMOR_UNCONFINED = "unconfined"


class SpecError(Exception):
    """The container's configuration cannot be turned into a spec."""


class InvalidParameter(SpecError, ValueError):
    """A configuration value dockerd rejects (HTTP 400 at the API boundary)."""


class Unsupported(SpecError):
    """A valid Docker option this builder does not implement yet."""


@dataclass(frozen=True)
class Ulimit:
    """``--ulimit name=soft[:hard]``; values as Docker's API carries them."""

    name: str
    soft: int
    hard: int


# docker/go-units ulimit.go ulimitNameMapping (the names the CLI accepts)
_ULIMIT_NAMES = frozenset(
    {
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    }
)


@dataclass(frozen=True)
class Resources:
    """The cgroup subset of HostConfig.Resources, in API units (bytes, nano-CPUs)."""

    memory: int = 0
    memory_swap: int = 0  # -1 unlimited; 0 = default (2x memory when memory is set)
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None  # None unset; <= 0 means unlimited (-1)
    blkio_weight: int = 0


@dataclass(frozen=True)
class DeviceMapping:
    """``--device host[:container][:permissions]``."""

    path_on_host: str
    path_in_container: str
    cgroup_permissions: str = "rwm"


@dataclass(frozen=True)
class ResolvedUser:
    """``--user`` resolved against the image's /etc/passwd and /etc/group by a driver."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()  # the user's supplementary groups + group_add


@dataclass(frozen=True)
class ContainerConfig:
    """The subset of Docker's Config + HostConfig this builder understands.

    Mode fields take Docker's strings: ``""`` (daemon default) or ``"host"``; IPC also
    ``"private"``, ``"shareable"``, ``"none"``; cgroupns ``"private"``; network
    ``"none"``, ``"host"``, ``"bridge"``/``"default"`` or a network name.
    """

    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    resolved_user: ResolvedUser | None = None
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    devices: tuple[DeviceMapping, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    read_only: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    group_add: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    ulimits: tuple[Ulimit, ...] = ()
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""
    cgroupns_mode: str = ""
    network_mode: str = ""
    # The network namespace to join (a bind-mounted netns file the network driver made, or
    # another container's /proc/<pid>/ns/net); "" lets runc make an empty one.
    network_namespace_path: str = ""
    # Mounts the daemon resolved: binds, volumes, --mount tmpfs, and the /etc/hosts,
    # /etc/resolv.conf and /etc/hostname files; sorted with --tmpfs by depth (mountSort).
    mounts: tuple[Mount, ...] = ()
    cgroup_parent: str = ""
    resources: Resources = Resources()
    init: bool | None = None  # None: the daemon default (off)
    oom_kill_disable: bool | None = None
    oom_score_adj: int = 0
    shm_size: int = 0  # bytes; 0 = the daemon default, 64 MiB
    stop_signal: str = ""  # not part of the OCI spec; kept for the supervisor


@dataclass(frozen=True)
class HostFacts:
    """What dockerd learns from the host at run time (gathered by a driver)."""

    cgroup_version: int = 2
    kernel: tuple[int, ...] = (6, 1)
    arch: str = "x86_64"
    has_apparmor: bool = False
    has_selinux: bool = False  # dockerd --selinux-enabled on an SELinux host
    seccomp_enabled: bool = True
    cpu_count: int = 1
    hostname: str = "localhost"  # used for --network host without --hostname
    devices: tuple[DeviceNode, ...] = ()  # device nodes under the host's /dev
    thermal_throttle_cpus: tuple[int, ...] = ()  # CPUs with a thermal_throttle dir
    init_path: str = "/usr/libexec/docker/docker-init"
    cpus_online: str = ""  # the CPUs a cpuset may name ("0-1"); "" = not checked
    mems_online: str = ""  # the memory nodes a cpuset may name ("0")
    blkio_weight: bool = True  # the kernel has blkio.weight (v1) / io.weight (v2)
    # The daemon's own bounding set: what --privileged and --cap-add ALL grant (newer moby
    # intersects with it; 20.10 asked for every known capability and runc then failed
    # with EPERM in a daemon lacking one). None: every known capability.
    capabilities: tuple[str, ...] | None = None
    systemd_cgroup: bool = False
    running_in_userns: bool = False
    # Namespaces the OCI runtime knows (`runc features`); runc 1.1 has no time namespace.
    runtime_namespaces: frozenset[str] = frozenset(
        ("cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time")
    )


# --- parsing helpers (docker CLI / dockerd behaviour) --------------------------------


def _valid_device_mode(mode: str) -> bool:
    # docker/cli opts.go validDeviceMode: 1-3 of r, w, m, no repeats.
    return 0 < len(mode) <= 3 and all(c in "rwm" for c in mode) and len(set(mode)) == len(mode)


def parse_device(spec: str) -> DeviceMapping:
    """Parse ``--device`` as the docker CLI does (cli/command/container/opts.go)."""
    parts = spec.split(":", 3)
    if len(parts) > 3:
        raise InvalidParameter(f"invalid device specification: {spec}")
    permissions = "rwm"
    dst = ""
    if len(parts) == 3:
        permissions = parts[2]
    if len(parts) >= 2:
        if _valid_device_mode(parts[1]):
            permissions = parts[1]
        else:
            dst = parts[1]
    src = parts[0]
    return DeviceMapping(src, dst or src, permissions)


# docker/cli opts/opts.go ValidateSysctl: only namespaced sysctls.
_NAMESPACED_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_NAMESPACED_SYSCTL_PREFIXES = ("net.", "fs.mqueue.")


def validate_sysctl(key: str, value: str) -> None:
    """Reject sysctls that are not namespaced, with the docker CLI's message."""
    if key in _NAMESPACED_SYSCTLS or key.startswith(_NAMESPACED_SYSCTL_PREFIXES):
        return
    raise InvalidParameter(f"sysctl '{key}={value}' is not allowed")


def _parse_bool(value: str) -> bool:
    # Go strconv.ParseBool
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(value)


@dataclass(frozen=True)
class _SecurityOptions:
    no_new_privileges: bool = False
    apparmor_profile: str = ""
    seccomp_profile: str = ""
    label_opts: tuple[str, ...] = ()


def _parse_security_opt(opts: Sequence[str]) -> _SecurityOptions:
    # moby daemon_unix.go parseSecurityOpt
    nnp = False
    apparmor = ""
    profile = ""
    labels: list[str] = []
    for opt in opts:
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt == "disable":
            labels.append("disable")
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")  # deprecated separator, still parsed
        else:
            raise InvalidParameter(f"invalid --security-opt 1: {_quote(opt)}")
        if key == "label":
            labels.append(value)
        elif key == "apparmor":
            apparmor = value
        elif key == "seccomp":
            profile = value
        elif key == "no-new-privileges":
            try:
                nnp = _parse_bool(value)
            except ValueError:
                raise InvalidParameter(f"invalid --security-opt 2: {_quote(opt)}") from None
        elif key == "writable-cgroups":
            raise Unsupported("security option writable-cgroups is not supported")
        else:
            raise InvalidParameter(f"invalid --security-opt 2: {_quote(opt)}")
    return _SecurityOptions(nnp, apparmor, profile, tuple(labels))


def _quote(s: str) -> str:
    # Go's %q for the printable ASCII we meet here.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_or_append_env(defaults: list[str], overrides: Sequence[str]) -> list[str]:
    # moby daemon/container/env.go ReplaceOrAppendEnvValues: "KEY" without "=" unsets;
    # only the defaults are indexed, so duplicate overrides are all appended.
    out: list[str | None] = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(defaults)}
    for value in overrides:
        key, sep, _ = value.partition("=")
        if not sep:
            if value in index:
                out[index[value]] = None
            continue
        if key in index:
            out[index[key]] = value
        else:
            out.append(value)
    return [e for e in out if e]


def _merge_tmpfs_options(options: Sequence[str]) -> list[str]:
    # moby/sys/mount flags_unix.go MergeTmpfsOptions: walk backwards, the last flag of
    # each kind (one propagation mode in all) and the last key=value of each key win.
    flag_keys = {
        "ro": "ro", "rw": "ro", "suid": "nosuid", "nosuid": "nosuid", "dev": "nodev",
        "nodev": "nodev", "exec": "noexec", "noexec": "noexec", "sync": "sync",
        "async": "sync", "dirsync": "dirsync", "remount": "remount", "mand": "mand",
        "nomand": "mand", "atime": "noatime", "noatime": "noatime",
        "diratime": "nodiratime", "nodiratime": "nodiratime", "relatime": "relatime",
        "norelatime": "relatime", "strictatime": "strictatime",
        "nostrictatime": "strictatime",
    }  # fmt: skip
    propagation = {
        "bind", "rbind", "unbindable", "runbindable", "private", "rprivate",
        "shared", "rshared", "slave", "rslave",
    }  # fmt: skip
    valid_data = {"", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
    seen_flags: set[str] = set()
    seen_data: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        if option in propagation or option in flag_keys:
            key = "propagation" if option in propagation else flag_keys[option]
            if key not in seen_flags:
                merged.insert(0, option)
                seen_flags.add(key)
            continue
        name, sep, _ = option.partition("=")
        if not sep or name not in valid_data:
            raise InvalidParameter(f"invalid tmpfs option {_quote(name)}")
        if name not in seen_data:
            merged.insert(0, option)
            seen_data.add(name)
    return merged


def _mount_depth(destination: str) -> int:
    # moby daemon/volumes.go mountSort: by number of path components of the cleaned path.
    parts = [p for p in destination.split("/") if p and p != "."]
    return len(parts) + 1


# --- validation (adaptContainerSettings + verifyPlatformContainerSettings) ------------


def _effective_resources(config: ContainerConfig, host: HostFacts) -> Resources:
    r = config.resources
    swap = r.memory_swap
    if r.memory > 0 and swap == 0:
        swap = r.memory * 2  # moby adaptContainerSettings: swap defaults to 2x memory
    # moby verifyPlatformContainerResources, in its order
    if r.memory != 0 and r.memory < MIN_MEMORY_BYTES:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if r.memory > 0 and 0 < swap < r.memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if r.memory == 0 and swap > 0:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if 0 < r.memory_reservation < MIN_MEMORY_BYTES:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if r.memory > 0 and r.memory_reservation > 0 and r.memory < r.memory_reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if r.nano_cpus > 0 and r.cpu_period > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if r.nano_cpus > 0 and r.cpu_quota > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if r.nano_cpus != 0 and (r.nano_cpus < 0 or r.nano_cpus > host.cpu_count * 10**9):
        n = host.cpu_count
        raise InvalidParameter(
            f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
        )
    if r.cpu_period != 0 and not 1000 <= r.cpu_period <= 1000000:
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < r.cpu_quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if r.blkio_weight > 0 and not 10 <= r.blkio_weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    return Resources(
        memory=r.memory,
        memory_swap=swap,
        memory_reservation=r.memory_reservation,
        nano_cpus=r.nano_cpus,
        cpu_shares=r.cpu_shares,
        cpu_period=r.cpu_period,
        cpu_quota=r.cpu_quota,
        cpuset_cpus=r.cpuset_cpus,
        cpuset_mems=r.cpuset_mems,
        pids_limit=r.pids_limit,
        blkio_weight=r.blkio_weight,
    )


def check_resources(config: ContainerConfig, host: HostFacts) -> Resources:
    """Validate ``config.resources`` as dockerd does; the effective values (swap default)."""
    return _effective_resources(config, host)


def _check_modes(config: ContainerConfig) -> None:
    # moby api/types/container hostconfig.go *Mode.Valid(); joining another
    # container ("container:<id>") is valid in Docker but needs that container's pid.
    for label, value in (
        ("IPC", config.ipc_mode),
        ("PID", config.pid_mode),
    ):
        if value.startswith("container:"):
            raise Unsupported(f"joining another container's {label} namespace is not supported")
    if config.ipc_mode not in ("", "none", "private", "host", "shareable"):
        raise InvalidParameter(f"invalid IPC mode: {config.ipc_mode}")
    if config.ipc_mode == "shareable":
        raise Unsupported("IPC mode shareable is not supported")
    if config.pid_mode not in ("", "host"):
        raise InvalidParameter(f"invalid PID mode: {config.pid_mode}")
    if config.uts_mode not in ("", "host"):
        raise InvalidParameter(f"invalid UTS mode: {config.uts_mode}")
    if config.userns_mode not in ("", "host"):
        raise InvalidParameter(f"invalid USER mode: {config.userns_mode}")
    if config.cgroupns_mode not in ("", "host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {config.cgroupns_mode}")


def _validate(config: ContainerConfig) -> None:
    # moby verifyPlatformContainerSettings (after the resources, checked separately)
    if len(config.hostname.encode()) > MAX_HOSTNAME_LEN:
        raise InvalidParameter(
            f"hostname {_quote(config.hostname)} is too long (maximum {MAX_HOSTNAME_LEN} bytes)"
        )
    _check_modes(config)
    if config.shm_size < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    if not -1000 <= config.oom_score_adj <= 1000:
        raise InvalidParameter(
            f"Invalid value {config.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
    for dest in config.tmpfs:
        # moby volume/mounts linux_parser.go ValidateTmpfsMountDestination
        cleaned = "/" + "/".join(p for p in dest.replace("\\", "/").split("/") if p)
        if cleaned == "/" and dest.startswith("/"):
            raise InvalidParameter("invalid specification: destination can't be '/'")
        if not dest.replace("\\", "/").startswith("/"):
            raise InvalidParameter(
                f"invalid mount path: '{dest.replace(chr(92), '/')}' mount path must be absolute"
            )
    for key, value in config.sysctls.items():
        validate_sysctl(key, value)
    for ul in config.ulimits:
        # docker/go-units ParseUlimit
        if ul.name not in _ULIMIT_NAMES:
            raise InvalidParameter(f"invalid ulimit type: {ul.name}")
        if ul.soft > ul.hard:
            raise InvalidParameter(
                f"ulimit soft limit must be less than or equal to hard limit: {ul.soft} > {ul.hard}"
            )


# --- spec pieces ----------------------------------------------------------------------


def _user(config: ContainerConfig) -> dict[str, Any]:
    # moby oci_linux.go getUser: additionalGids = [gid] + supplementary + group_add.
    if config.resolved_user is not None:
        ru = config.resolved_user
        return {"uid": ru.uid, "gid": ru.gid, "additionalGids": [ru.gid, *ru.additional_gids]}
    uid_s, _, gid_s = config.user.partition(":")
    try:
        uid = int(uid_s) if uid_s else 0
        gid = int(gid_s) if gid_s else 0
        groups = [int(g) for g in config.group_add]
    except ValueError:
        raise Unsupported(
            "user and group names need resolving against the image; pass resolved_user"
        ) from None
    return {"uid": uid, "gid": gid, "additionalGids": [gid, *groups]}


def _args(config: ContainerConfig) -> list[str]:
    argv = [*config.entrypoint, *config.cmd]
    if not argv:
        raise InvalidParameter("no command specified")  # moby daemon/create.go
    return argv


def _memory(r: Resources, config: ContainerConfig, host: HostFacts) -> dict[str, Any] | None:
    # moby daemon_unix.go getMemoryResources; adaptContainerSettings defaults
    # OomKillDisable to false, which cgroup v1 keeps and v2 discards (no such knob).
    memory: dict[str, Any] = {}
    if r.memory > 0:
        memory["limit"] = r.memory
    if r.memory_reservation > 0:
        memory["reservation"] = r.memory_reservation
    if r.memory_swap > 0:
        memory["swap"] = r.memory_swap
    if host.cgroup_version == 1:
        memory["disableOOMKiller"] = bool(config.oom_kill_disable)
    return memory or None


def _cpu(r: Resources) -> dict[str, Any] | None:
    # moby daemon_unix.go getCPUResources
    if r.cpu_shares < 0:
        raise InvalidParameter(
            f"invalid CPU shares ({r.cpu_shares}): value must be a positive integer"
        )
    cpu: dict[str, Any] = {}
    period: int | None = None
    quota: int | None = None
    if r.nano_cpus > 0:
        # kernel sched-bwc.txt: a 100ms period, quota = cpus * period
        period = 100_000
        quota = r.nano_cpus * period // 10**9
    if r.cpu_period != 0:
        period = r.cpu_period
    if r.cpu_quota != 0:
        quota = r.cpu_quota
    # specs-go LinuxCPU field order
    if r.cpu_shares != 0:
        cpu["shares"] = r.cpu_shares
    if quota is not None:
        cpu["quota"] = quota
    if period is not None:
        cpu["period"] = period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    return cpu or None


def _devices(
    config: ContainerConfig, host: HostFacts
) -> tuple[list[dict[str, Any]], list[DeviceRule]]:
    # moby oci_linux.go WithDevices
    devs: list[dict[str, Any]] = []
    if config.privileged:
        devs.extend(node.to_oci() for node in host.devices)
        for m in config.devices:
            if m.path_on_host == m.path_in_container:
                continue  # already there through the host's /dev
            devs.extend(d for d, _ in _resolve_device(m, host))
        return devs, [DeviceRule(allow=True, access="rwm")]
    rules = list(DEFAULT_DEVICE_RULES)
    for m in config.devices:
        for dev, rule in _resolve_device(m, host):
            devs.append(dev)
            rules.append(rule)
    rules.extend(_cgroup_rules(config.device_cgroup_rules))
    return devs, rules


def _resolve_device(m: DeviceMapping, host: HostFacts) -> list[tuple[dict[str, Any], DeviceRule]]:
    # moby daemon/pkg/oci/devices_linux.go DevicesFromPath: a device node, or a
    # directory whose device nodes are all mapped under the container path.
    def entry(node: DeviceNode, path: str) -> tuple[dict[str, Any], DeviceRule]:
        rule = DeviceRule(
            allow=True,
            type=node.type,
            major=node.major,
            minor=node.minor,
            access=m.cgroup_permissions,
        )
        return node.to_oci(path), rule

    for node in host.devices:
        if node.path == m.path_on_host:
            return [entry(node, m.path_in_container)]
    prefix = m.path_on_host.rstrip("/") + "/"
    found = [
        entry(node, m.path_in_container + node.path[len(prefix) - 1 :])
        for node in host.devices
        if node.path.startswith(prefix)
    ]
    if found:
        return found
    raise InvalidParameter(
        f"error gathering device information while adding custom device "
        f"{_quote(m.path_on_host)}: not a device node"
    )


def _cgroup_rules(rules: Sequence[str]) -> list[DeviceRule]:
    # moby daemon/pkg/oci/oci.go AppendDevicePermissionsFromCgroupRules,
    # regex ^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$
    out: list[DeviceRule] = []
    for rule in rules:
        parts = rule.split(" ")
        ok = len(parts) == 3 and parts[0] in ("a", "b", "c") and ":" in parts[1]
        numbers = parts[1].split(":") if ok else []
        ok = ok and len(numbers) == 2 and all(n == "*" or n.isdigit() for n in numbers)
        ok = ok and 1 <= len(parts[2]) <= 3 and all(c in "rwm" for c in parts[2])
        if not ok:
            raise InvalidParameter(f"invalid device cgroup rule format: '{rule}'")
        major, minor = (-1 if n == "*" else int(n) for n in numbers)
        out.append(DeviceRule(allow=True, type=parts[0], major=major, minor=minor, access=parts[2]))
    return out


def _namespaces(config: ContainerConfig, host: HostFacts, cgroupns: str) -> list[dict[str, Any]]:
    # moby oci_linux.go WithNamespaces
    ns = list(DEFAULT_NAMESPACES)
    if config.network_mode == "host":
        ns.remove("network")
    if tuple(host.kernel[:2]) < (5, 6) or "time" not in host.runtime_namespaces:
        ns.remove("time")  # sysInfo.TimeNamespaces: kernel >= 5.6, and a runtime that has it
    if config.ipc_mode == "host":
        ns.remove("ipc")
    if config.pid_mode == "host":
        ns.remove("pid")
    if config.uts_mode == "host":
        ns.remove("uts")
    if cgroupns == "private":
        ns.append("cgroup")
    out: list[dict[str, Any]] = [{"type": t} for t in ns]
    if config.network_namespace_path and "network" in ns:
        for entry in out:
            if entry["type"] == "network":
                entry["path"] = config.network_namespace_path
    return out


def _cgroupns_mode(config: ContainerConfig, host: HostFacts) -> str:
    # moby adaptContainerSettings: the daemon default is private on cgroup v2 and
    # host on v1; privileged containers on v1 always share the host's.
    if config.cgroupns_mode:
        return config.cgroupns_mode
    if config.privileged and host.cgroup_version != 2:
        return "host"
    return "private" if host.cgroup_version == 2 else "host"


# The default profile resolved per (bounding set, arch, kernel): the same few sets recur
# (Docker's default capabilities, give or take a cap-add), and resolving ~400 rules was a
# tenth of the daemon's CPU per container start. The value is shared by every spec built
# from it, so it is never mutated (specs are serialised as built). The profile is kept in
# the entry so a reused id() can never match another profile.
_SECCOMP_RESOLVED: dict[
    tuple[int, frozenset[str], str, tuple[int, ...]], tuple[seccomp.Profile, dict[str, Any] | None]
] = {}
_SECCOMP_RESOLVED_MAX = 64


def _seccomp(
    config: ContainerConfig,
    opts: _SecurityOptions,
    host: HostFacts,
    bounding: Sequence[str],
    default_profile: seccomp.Profile,
) -> dict[str, Any] | None:
    # moby daemon/seccomp_linux.go WithSeccomp
    wanted = opts.seccomp_profile
    if wanted == SECCOMP_UNCONFINED:
        return None

    def resolve(profile: seccomp.Profile) -> dict[str, Any] | None:
        key = (id(profile), frozenset(bounding), host.arch, tuple(host.kernel))
        cached = _SECCOMP_RESOLVED.get(key)
        if cached is not None and cached[0] is profile:
            return cached[1]
        try:
            resolved = seccomp.to_oci(
                profile, capabilities=bounding, arch=host.arch, kernel=host.kernel
            )
        except seccomp.SeccompError as exc:
            raise InvalidParameter(str(exc)) from None
        if profile is default_profile:
            if len(_SECCOMP_RESOLVED) >= _SECCOMP_RESOLVED_MAX:
                _SECCOMP_RESOLVED.clear()
            _SECCOMP_RESOLVED[key] = (profile, resolved)
        return resolved

    def load(text: str) -> seccomp.Profile:
        try:
            return seccomp.load_profile(text)
        except seccomp.SeccompError as exc:
            raise InvalidParameter(str(exc)) from None

    if config.privileged:
        # Only an explicitly given profile applies (moby passes even "builtin" to the
        # JSON decoder here, which then fails).
        return resolve(load(wanted)) if wanted else None
    if not host.seccomp_enabled:
        if wanted and wanted != SECCOMP_BUILTIN:
            raise InvalidParameter(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile"
            )
        return None
    if wanted and wanted != SECCOMP_BUILTIN:
        return resolve(load(wanted))
    return resolve(default_profile)


def _mounts(config: ContainerConfig, host: HostFacts, shm_size: int, use_init: bool) -> list[Mount]:
    # moby oci_linux.go withCommonOptions (init) then withMounts
    spec_mounts = list(DEFAULT_MOUNTS)
    if use_init:
        spec_mounts.append(Mount(IN_CONTAINER_INIT_PATH, "bind", host.init_path, ("bind", "ro")))
    # user mounts: --tmpfs, and /dev/shm bound from the host for --ipc host
    # (moby container IpcMounts: the host's /dev/shm with rprivate propagation)
    user: list[Mount] = []
    for dest, data in config.tmpfs.items():
        options = ["noexec", "nosuid", "nodev", "rprivate"]  # DefaultPropagationMode
        if data:
            options.extend(data.split(","))
        user.append(Mount(dest, "tmpfs", "tmpfs", tuple(_merge_tmpfs_options(options))))
    if config.ipc_mode == "host" and "/dev/shm" not in config.tmpfs:
        user.append(Mount("/dev/shm", "bind", "/dev/shm", ("rbind", "rprivate")))
    user.extend(m for m in config.mounts if m.destination not in config.tmpfs)
    # sortMounts; Docker's HostConfig.Tmpfs is a Go map with no order, we keep the
    # caller's order among mounts of equal depth.
    user.sort(key=lambda m: _mount_depth(m.destination))
    user_dests = {m.destination for m in user}
    mount_dev = "/dev" in user_dests
    out: list[Mount] = []
    for m in spec_mounts:
        if m.destination in user_dests:
            continue
        if mount_dev and m.destination.startswith("/dev/"):
            continue
        if m.destination == "/dev/shm":
            if config.ipc_mode == "none":
                continue
            m = Mount(m.destination, m.type, m.source, (*m.options, f"size={shm_size}"))
        out.append(m)
    out.extend(user)
    if config.read_only:
        kept = {"/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"}
        out = [
            Mount(m.destination, m.type, m.source, (*m.options, "ro"))
            if m.destination not in kept
            and m.destination not in user_dests
            and "ro" not in m.options
            else m
            for m in out
        ]
    writable_cgroups = config.privileged
    if config.privileged or writable_cgroups:
        out = [
            Mount(m.destination, m.type, m.source, tuple(o for o in m.options if o != "ro"))
            if (config.privileged and m.destination == "/sys")
            or (writable_cgroups and m.type == "cgroup")
            else m
            for m in out
        ]
    return out


def _hostname(config: ContainerConfig, host: HostFacts, container_id: str) -> str:
    # moby daemon/container.go newContainer: the short ID, or the host's name with
    # --network host.
    if config.hostname:
        return config.hostname
    return host.hostname if config.network_mode == "host" else container_id[:12]


def build_spec(
    config: ContainerConfig,
    *,
    rootfs: str,
    host: HostFacts,
    container_id: str,
    seccomp_profile: seccomp.Profile,
) -> dict[str, Any]:
    """Build the OCI runtime spec dockerd would hand runc for this container.

    ``seccomp_profile`` is the daemon's default profile (used unless the container asks
    for ``seccomp=unconfined`` or its own profile JSON). Raises :class:`SpecError`.
    """
    if not container_id:
        raise InvalidParameter("container id must not be empty")
    if host.has_selinux:
        raise Unsupported("SELinux labelling is not supported")
    _validate(config)
    resources = _effective_resources(config, host)
    opts = _parse_security_opt(config.security_opt)
    shm_size = config.shm_size or DEFAULT_SHM_SIZE_BYTES
    hostname = _hostname(config, host, container_id)
    cgroupns = _cgroupns_mode(config, host)

    # withCommonOptions
    args = _args(config)
    use_init = bool(config.init) and config.pid_mode != "host"
    if use_init:
        args = [IN_CONTAINER_INIT_PATH, "--", *args]
    env = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"]
    if config.tty:
        env.append("TERM=xterm")
    env = _replace_or_append_env(env, config.env)
    sysctl: dict[str, str] = {}
    if config.domainname:
        sysctl["kernel.domainname"] = config.domainname  # moby oci_utils.go
    if not config.network_mode.startswith("container:") and config.network_mode != "host":
        # moby withCommonOptions: unprivileged ping and low ports in a private netns,
        # when the kernel has the sysctl (ping_group_range 2.6.39, port_start 4.11).
        if not host.running_in_userns:
            sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
        if tuple(host.kernel[:2]) >= (4, 11):
            sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    sysctl.update(config.sysctls)  # WithSysctls: the user's win

    # withCgroups
    if host.systemd_cgroup:
        parent = config.cgroup_parent or "system.slice"
        cgroups_path = f"{parent}:dockyard:{container_id}"
    else:
        # Ours, not dockerd's "/docker", so both engines can share a host.
        parent = config.cgroup_parent or "/dockyard"
        cgroups_path = parent.rstrip("/") + "/" + container_id

    # WithResources
    linux_resources: dict[str, Any] = {}
    memory = _memory(resources, config, host)
    cpu = _cpu(resources)
    devices, device_rules = _devices(config, host)
    linux_resources["devices"] = [r.to_oci() for r in device_rules]
    if memory is not None:
        linux_resources["memory"] = memory
    if cpu is not None:
        linux_resources["cpu"] = cpu
    if resources.pids_limit is not None:
        limit = resources.pids_limit if resources.pids_limit > 0 else -1
        linux_resources["pids"] = {"limit": limit}
    block_io: dict[str, Any] = {}
    if resources.blkio_weight:
        block_io["weight"] = resources.blkio_weight
    linux_resources["blockIO"] = block_io

    # WithCapabilities, then WithSeccomp (which reads the bounding set)
    try:
        cap_list = caps.tweak(
            caps.DEFAULT_CAPABILITIES,
            config.cap_add,
            config.cap_drop,
            privileged=config.privileged,
            known=caps.ALL_CAPABILITIES if host.capabilities is None else host.capabilities,
        )
    except caps.CapabilityError as exc:
        raise InvalidParameter(str(exc)) from None
    capabilities: dict[str, Any] = {}
    if cap_list:
        capabilities = {
            "bounding": list(cap_list),
            "effective": list(cap_list),
            "permitted": list(cap_list),
        }
    seccomp_section = _seccomp(config, opts, host, cap_list, seccomp_profile)

    process: dict[str, Any] = {}
    if config.tty:
        process["terminal"] = True
    process["user"] = _user(config)
    process["args"] = args
    process["env"] = env
    process["cwd"] = config.working_dir or "/"
    process["capabilities"] = capabilities
    if config.ulimits:
        process["rlimits"] = [
            {"type": "RLIMIT_" + ul.name.upper(), "hard": ul.hard, "soft": ul.soft}
            for ul in config.ulimits
        ]
    if opts.no_new_privileges:
        process["noNewPrivileges"] = True
    if host.has_apparmor:
        # moby WithApparmor: only where AppArmor is enabled; elsewhere ignored.
        process["apparmorProfile"] = opts.apparmor_profile or (
            APPARMOR_UNCONFINED if config.privileged else APPARMOR_DEFAULT
        )
    process["oomScoreAdj"] = config.oom_score_adj

    linux: dict[str, Any] = {}
    if sysctl:
        linux["sysctl"] = sysctl
    linux["resources"] = linux_resources
    linux["cgroupsPath"] = cgroups_path
    linux["namespaces"] = _namespaces(config, host, cgroupns)
    if devices:
        linux["devices"] = devices
    if seccomp_section is not None:
        linux["seccomp"] = seccomp_section
    if not config.privileged:
        linux["maskedPaths"] = list(masked_paths(host.thermal_throttle_cpus))
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, **({"readonly": True} if config.read_only else {})},
    }
    if config.uts_mode != "host" and hostname:
        spec["hostname"] = hostname
    spec["mounts"] = [m.to_oci() for m in _mounts(config, host, shm_size, use_init)]
    spec["linux"] = linux
    return spec
