"""Docker's create/update request (Config + HostConfig, wire shape) as the engine keeps it.

Pure: mappings in, values out; no I/O. The daemon reads what this module needs from the
host (`HostFacts`) and from the container's rootfs (/etc/passwd and /etc/group texts) and
passes them in. Three jobs, all as dockerd does them (moby daemon/create.go,
daemon/container.go verifyContainerSettings, daemon_unix.go adaptContainerSettings and
verifyPlatformContainerResources, container/container_unix.go UpdateContainer):

- :func:`fill_defaults`: the HostConfig a create request sends, with dockerd's defaults
  filled, as `docker inspect` shows it, plus the warnings the create answers with;
- :func:`validate_create` / :func:`container_config`: the checks dockerd makes at create
  that the spec builder does not, and the translation into ``oci_spec.ContainerConfig``;
- :func:`apply_update`: `docker update` merged into a stored HostConfig, and the OCI
  ``LinuxResources`` that `runc update` applies to a running container.

Invariants: every error is an ``oci_spec.InvalidParameter`` (HTTP 400) or an
:class:`UpdateConflict` (409) carrying dockerd's message, which the docker CLI prints and
derives its exit code from.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.engine.model import oci_spec
from dockyard.engine.model import restart as rp
from dockyard.engine.model.exec_process import ExecUserError
from dockyard.engine.model.exec_process import resolve_user as _resolve_exec_user
from dockyard.engine.model.oci_spec import InvalidParameter
from dockyard.engine.security import capabilities as caps
from dockyard.engine.security.defaults import DEFAULT_READONLY_PATHS, masked_paths

__all__ = [
    "BLKIO_WEIGHT_WARNING",
    "OOM_KILL_DISABLE_WARNING",
    "UpdateConflict",
    "UpdateResult",
    "apply_update",
    "container_config",
    "device_paths",
    "fill_defaults",
    "parse_cpuset",
    "resolve_user",
    "validate_create",
]

# moby daemon_unix.go verifyPlatformContainerResources
BLKIO_WEIGHT_WARNING = (
    "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
)
OOM_KILL_DISABLE_WARNING = (
    "OOM killer is disabled for the container, but no memory limit is set, this can result "
    "in the system running out of resources."
)
CPU_PERIOD_US = 100_000  # moby: --cpus is a quota over a 100ms period


class UpdateConflict(oci_spec.SpecError):
    """An update that contradicts the stored settings (moby conflictingUpdateOptions, 409)."""


# --- defaults --------------------------------------------------------------------------


def fill_defaults(
    hc: Mapping[str, Any], *, host: oci_spec.HostFacts
) -> tuple[dict[str, Any], list[str]]:
    """The create request's HostConfig with dockerd's defaults filled, and its warnings."""
    out = dict(hc)
    warnings: list[str] = []
    memory = _int(out.get("Memory"))
    defaults: dict[str, Any] = {
        "NetworkMode": "default",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "CapAdd": None,
        "CapDrop": None,
        "Privileged": False,
        "ReadonlyRootfs": False,
        "Memory": 0,
        "NanoCpus": 0,
        "PidsLimit": None,
        # moby daemon_unix.go: private cgroupns by default on cgroup v2 only.
        "CgroupnsMode": "private" if host.cgroup_version == 2 else "host",
        "IpcMode": "private",
        "ShmSize": oci_spec.DEFAULT_SHM_SIZE_BYTES,
        "Runtime": "runc",
        "SecurityOpt": None,
        "AutoRemove": False,
    }
    for key, value in defaults.items():
        if not out.get(key):
            out[key] = value
    if not (out.get("LogConfig") or {}).get("Type"):
        out["LogConfig"] = {"Type": "json-file", "Config": {}}
    if memory > 0 and not out.get("MemorySwap"):
        out["MemorySwap"] = memory * 2  # moby daemon_unix.go adaptContainerSettings
    # moby adaptContainerSettings: a PidsLimit <= 0 is "unset"; MemorySwappiness -1 too.
    if out.get("PidsLimit") is not None and _int(out["PidsLimit"]) <= 0:
        out["PidsLimit"] = None
    if out.get("MemorySwappiness") == -1:
        out["MemorySwappiness"] = None
    if host.cgroup_version == 1 and out.get("OomKillDisable") is None:
        out["OomKillDisable"] = False  # v2 has no such knob, and dockerd leaves it null
    if out.get("OomKillDisable") and memory == 0:
        warnings.append(OOM_KILL_DISABLE_WARNING)
    if _int(out.get("BlkioWeight")) and not host.blkio_weight:
        warnings.append(BLKIO_WEIGHT_WARNING)
        out["BlkioWeight"] = 0
    # moby daemon/create.go generateSecurityOpt: sharing the host's IPC or PID namespace,
    # or running privileged, disables SELinux labelling unless a label is given (dockerd
    # records it even on hosts without SELinux).
    security_opt = [str(o) for o in out.get("SecurityOpt") or ()]
    shares_host = out.get("IpcMode") == "host" or out.get("PidMode") == "host"
    if (shares_host or out.get("Privileged")) and not any(
        o.split("=", 1)[0] == "label" for o in security_opt
    ):
        out["SecurityOpt"] = [*security_opt, "label=disable"]
    # moby daemon/create.go: the default masked and read-only paths, unless privileged.
    if not out.get("Privileged"):
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(masked_paths(host.thermal_throttle_cpus))
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    return out, warnings


# --- validation ------------------------------------------------------------------------


def parse_cpuset(text: str) -> frozenset[int]:
    """moby pkg/parsers ParseUintList: ``0-2,4``; raises ValueError("invalid format: …")."""
    out: set[int] = set()
    if not text:
        raise ValueError("empty string")
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"invalid format: {text}")
        start, end = int(low), int(high) if dash else int(low)
        if end < start:
            raise ValueError(f"invalid format: {text}")
        out.update(range(start, end + 1))
    return frozenset(out)


def _check_cpuset(value: str, available: str, what: str, label: str) -> None:
    # moby daemon_unix.go verifyPlatformContainerResources + sysinfo IsCpusetCpusAvailable
    if not value:
        return
    try:
        wanted = parse_cpuset(value)
    except ValueError as e:
        raise InvalidParameter(f"Invalid value {value} for cpuset {label}: {e}") from None
    if not available:
        return  # the host did not tell: runc will judge
    if not wanted <= parse_cpuset(available):
        raise InvalidParameter(
            f"Requested {what} are not available - requested {value}, available: {available}"
        )


def check_resources(hc: Mapping[str, Any], *, host: oci_spec.HostFacts) -> None:
    """The checks of verifyPlatformContainerResources that the spec builder lacks."""
    _check_cpuset(str(hc.get("CpusetCpus") or ""), host.cpus_online, "CPUs", "cpus")
    _check_cpuset(str(hc.get("CpusetMems") or ""), host.mems_online, "memory nodes", "mems")


def _valid_device_mode(mode: str) -> bool:
    # docker/cli opts.go validDeviceMode: 1-3 of r, w, m, no repeats.
    return 0 < len(mode) <= 3 and all(c in "rwm" for c in mode) and len(set(mode)) == len(mode)


def validate_create(
    config: Mapping[str, Any], hc: Mapping[str, Any], *, host: oci_spec.HostFacts
) -> None:
    """dockerd's create-time checks that `oci_spec.build_spec` does not make itself.

    # moby daemon/container.go verifyContainerSettings, in its order.
    """
    stop_signal = str(config.get("StopSignal") or "")
    if stop_signal and _signal_number(stop_signal) is None:
        raise InvalidParameter(f"Invalid signal: {stop_signal}")
    stop_timeout = config.get("StopTimeout")
    if stop_timeout is not None and not isinstance(stop_timeout, int):
        raise InvalidParameter(f"invalid StopTimeout: {stop_timeout!r}")
    for field_name in ("CapAdd", "CapDrop"):
        for name in hc.get(field_name) or ():
            try:
                caps.normalize(str(name))
            except caps.CapabilityError as e:
                raise InvalidParameter(f"invalid {field_name}: {e}") from None
    for device in hc.get("Devices") or ():
        mode = str(device.get("CgroupPermissions") or "rwm")
        if not _valid_device_mode(mode):
            raise InvalidParameter(f"invalid device mode: {mode}")
        if not str(device.get("PathOnHost") or ""):
            raise InvalidParameter("invalid device specification: empty PathOnHost")
    try:
        rp.parse_policy(hc.get("RestartPolicy"), auto_remove=bool(hc.get("AutoRemove")))
    except rp.InvalidRestartPolicy as e:
        raise InvalidParameter(str(e)) from None
    check_resources(hc, host=host)


def _signal_number(text: str) -> int | None:
    # moby pkg/signal ParseSignal: a number, or a name with or without SIG.
    if text.isdigit():
        number = int(text)
        return number if 0 < number < signal.NSIG else None
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


# --- translation -----------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise InvalidParameter(f"invalid integer value: {value!r}") from None


def _strs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def device_paths(hc: Mapping[str, Any]) -> tuple[str, ...]:
    """The host paths of HostConfig.Devices (what the daemon must stat)."""
    return tuple(str(d.get("PathOnHost") or "") for d in hc.get("Devices") or ())


def _devices(hc: Mapping[str, Any]) -> tuple[oci_spec.DeviceMapping, ...]:
    out = []
    for d in hc.get("Devices") or ():
        src = str(d.get("PathOnHost") or "")
        dst = str(d.get("PathInContainer") or "") or src
        out.append(oci_spec.DeviceMapping(src, dst, str(d.get("CgroupPermissions") or "rwm")))
    return tuple(out)


def _ulimits(hc: Mapping[str, Any]) -> tuple[oci_spec.Ulimit, ...]:
    return tuple(
        oci_spec.Ulimit(str(u.get("Name") or ""), _int(u.get("Soft")), _int(u.get("Hard")))
        for u in hc.get("Ulimits") or ()
    )


def _resources(hc: Mapping[str, Any]) -> oci_spec.Resources:
    pids = hc.get("PidsLimit")
    return oci_spec.Resources(
        memory=_int(hc.get("Memory")),
        memory_swap=_int(hc.get("MemorySwap")),
        memory_reservation=_int(hc.get("MemoryReservation")),
        nano_cpus=_int(hc.get("NanoCpus")),
        cpu_shares=_int(hc.get("CpuShares")),
        cpu_period=_int(hc.get("CpuPeriod")),
        cpu_quota=_int(hc.get("CpuQuota")),
        cpuset_cpus=str(hc.get("CpusetCpus") or ""),
        cpuset_mems=str(hc.get("CpusetMems") or ""),
        # Stored 0 (an update to "unlimited") and null both leave a new cgroup unlimited.
        pids_limit=_int(pids) if pids is not None and _int(pids) > 0 else None,
        blkio_weight=_int(hc.get("BlkioWeight")),
    )


def container_config(
    *,
    path: str,
    args: Sequence[str],
    config: Mapping[str, Any],
    hc: Mapping[str, Any],
    resolved_user: oci_spec.ResolvedUser | None = None,
) -> oci_spec.ContainerConfig:
    """A stored container (Path/Args, Config, HostConfig) as the spec builder's input."""
    network = str(hc.get("NetworkMode") or "default")
    init = hc.get("Init")
    oom_kill_disable = hc.get("OomKillDisable")
    return oci_spec.ContainerConfig(
        cmd=(path, *args),
        env=_strs(config.get("Env")),
        working_dir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        resolved_user=resolved_user,
        hostname=str(config.get("Hostname") or ""),
        domainname=str(config.get("Domainname") or ""),
        tty=bool(config.get("Tty")),
        open_stdin=bool(config.get("OpenStdin")),
        cap_add=_strs(hc.get("CapAdd")),
        cap_drop=_strs(hc.get("CapDrop")),
        privileged=bool(hc.get("Privileged")),
        devices=_devices(hc),
        device_cgroup_rules=_strs(hc.get("DeviceCgroupRules")),
        security_opt=_strs(hc.get("SecurityOpt")),
        read_only=bool(hc.get("ReadonlyRootfs")),
        tmpfs={str(k): str(v or "") for k, v in (hc.get("Tmpfs") or {}).items()},
        group_add=_strs(hc.get("GroupAdd")),
        sysctls={str(k): str(v) for k, v in (hc.get("Sysctls") or {}).items()},
        ulimits=_ulimits(hc),
        pid_mode=str(hc.get("PidMode") or ""),
        ipc_mode=str(hc.get("IpcMode") or ""),
        uts_mode=str(hc.get("UTSMode") or ""),
        userns_mode=str(hc.get("UsernsMode") or ""),
        cgroupns_mode=str(hc.get("CgroupnsMode") or ""),
        # "default" is the daemon's default network, the bridge (moby
        # NetworkMode.NetworkName); the daemon sets network_namespace_path for the bridge,
        # user networks and container:<name>.
        network_mode="bridge" if network == "default" else network,
        cgroup_parent=str(hc.get("CgroupParent") or ""),
        resources=_resources(hc),
        init=None if init is None else bool(init),
        oom_kill_disable=None if oom_kill_disable is None else bool(oom_kill_disable),
        oom_score_adj=_int(hc.get("OomScoreAdj")),
        shm_size=_int(hc.get("ShmSize")),
        stop_signal=str(config.get("StopSignal") or ""),
    )


def resolve_user(
    user: str, group_add: Sequence[str], *, passwd: str, group: str
) -> oci_spec.ResolvedUser:
    """``--user`` and ``--group-add`` against the container's /etc/passwd and /etc/group.

    # moby oci_linux.go getUser: an empty user is uid 0 (looked up for its groups);
    # GroupAdd entries are group names or gids (moby/sys/user GetAdditionalGroups).
    """
    try:
        uid, gid, extra = _resolve_exec_user(user or "0", passwd, group)
    except ExecUserError as e:
        raise InvalidParameter(str(e)) from None
    added: list[int] = []
    for wanted in group_add:
        for line in group.splitlines():
            fields = line.split(":")
            if line.startswith("#") or len(fields) < 3:
                continue
            if fields[0] == wanted or fields[2] == wanted:
                added.append(int(fields[2]))
                break
        else:
            if not wanted.isdigit():
                raise InvalidParameter(
                    f"Unable to find group {wanted}: no matching entries in group file"
                )
            added.append(int(wanted))
    return oci_spec.ResolvedUser(uid, gid, (*extra, *added))


# --- docker update ---------------------------------------------------------------------

# Update body fields copied when non-zero (moby container_unix.go UpdateContainer).
_UPDATABLE = (
    "BlkioWeight",
    "CpuShares",
    "NanoCpus",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "MemorySwap",
    "MemoryReservation",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
)


@dataclass(frozen=True)
class UpdateResult:
    host_config: Mapping[str, Any]  # the HostConfig to persist
    resources: Mapping[str, Any]  # OCI LinuxResources for `runc update` (what changed)
    warnings: tuple[str, ...] = ()


def apply_update(
    current: Mapping[str, Any], body: Mapping[str, Any], *, host: oci_spec.HostFacts
) -> UpdateResult:
    """`POST /containers/{id}/update`: merge the body into the stored HostConfig.

    # moby daemon/update.go ContainerUpdate: verify the body alone (resource limits),
    # then container_unix.go UpdateContainer merges it (zero means "keep").
    """
    update = dict(body)
    warnings: list[str] = []
    # api/server/router/container: 0 and any negative PidsLimit mean "unlimited" here.
    if update.get("PidsLimit") is not None and _int(update["PidsLimit"]) <= 0:
        update["PidsLimit"] = 0
    if _int(update.get("BlkioWeight")) and not host.blkio_weight:
        warnings.append(BLKIO_WEIGHT_WARNING)
        update["BlkioWeight"] = 0
    # verifyContainerSettings(update) runs the resource checks on the update alone.
    probe = oci_spec.ContainerConfig(cmd=("true",), resources=_resources(update))
    _verify_resources(probe, host)
    check_resources(update, host=host)

    out = dict(current)
    nano, period, quota = (_int(update.get(k)) for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if period and _int(out.get("NanoCpus")) > 0:
        raise UpdateConflict(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
        )
    if quota and _int(out.get("NanoCpus")) > 0:
        raise UpdateConflict(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        )
    if nano and _int(out.get("CpuPeriod")) > 0:
        raise UpdateConflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
        )
    if nano and _int(out.get("CpuQuota")) > 0:
        raise UpdateConflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
        )
    memory = _int(update.get("Memory"))
    if memory:
        # Newer moby's rule (20.10 also refused when no swap limit was ever set).
        swap = _int(out.get("MemorySwap"))
        if swap > 0 and memory > swap and not _int(update.get("MemorySwap")):
            raise UpdateConflict(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        out["Memory"] = memory
    for key in _UPDATABLE:
        value = update.get(key)
        if value:
            out[key] = value
    if update.get("PidsLimit") is not None:
        out["PidsLimit"] = _int(update["PidsLimit"])
    policy = update.get("RestartPolicy") or {}
    if policy.get("Name"):
        if out.get("AutoRemove") and policy.get("Name") != "no":
            raise UpdateConflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        try:
            rp.parse_policy(policy)
        except rp.InvalidRestartPolicy as e:
            raise InvalidParameter(str(e)) from None
        out["RestartPolicy"] = {
            "Name": str(policy["Name"]),
            "MaximumRetryCount": _int(policy.get("MaximumRetryCount")),
        }
    # The merged result must still be a valid container (e.g. reservation <= limit).
    _verify_resources(oci_spec.ContainerConfig(cmd=("true",), resources=_resources(out)), host)
    return UpdateResult(out, _runc_resources(update, host), tuple(warnings))


def _verify_resources(config: oci_spec.ContainerConfig, host: oci_spec.HostFacts) -> None:
    # The spec builder's resource checks, without building a whole spec.
    oci_spec.check_resources(config, host)


def _runc_resources(update: Mapping[str, Any], host: oci_spec.HostFacts) -> dict[str, Any]:
    """The OCI LinuxResources of the fields an update sets (moby toContainerdResources)."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if _int(update.get("Memory")):
        memory["limit"] = _int(update["Memory"])
    if _int(update.get("MemoryReservation")):
        memory["reservation"] = _int(update["MemoryReservation"])
    if _int(update.get("MemorySwap")):
        memory["swap"] = _int(update["MemorySwap"])
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if _int(update.get("CpuShares")):
        cpu["shares"] = _int(update["CpuShares"])
    nano = _int(update.get("NanoCpus"))
    if nano:
        cpu["quota"] = nano * CPU_PERIOD_US // 10**9
        cpu["period"] = CPU_PERIOD_US
    if _int(update.get("CpuQuota")):
        cpu["quota"] = _int(update["CpuQuota"])
    if _int(update.get("CpuPeriod")):
        cpu["period"] = _int(update["CpuPeriod"])
    if update.get("CpusetCpus"):
        cpu["cpus"] = str(update["CpusetCpus"])
    if update.get("CpusetMems"):
        cpu["mems"] = str(update["CpusetMems"])
    if cpu:
        out["cpu"] = cpu
    if update.get("PidsLimit") is not None:
        limit = _int(update["PidsLimit"])
        out["pids"] = {"limit": limit if limit > 0 else -1}  # runc: -1 writes "max"
    if _int(update.get("BlkioWeight")):
        out["blockIO"] = {"weight": _int(update["BlkioWeight"])}
    return out
