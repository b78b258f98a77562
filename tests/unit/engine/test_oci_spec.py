"""The OCI spec builder against dockerd's behaviour (moby daemon/oci_linux.go, daemon_unix.go)."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.engine.model.oci_spec import (
    ContainerConfig,
    HostFacts,
    InvalidParameter,
    Resources,
    Ulimit,
    build_spec,
    parse_device,
)
from dockyard.engine.security import capabilities as caps
from dockyard.engine.security import seccomp
from dockyard.engine.security.defaults import DEFAULT_READONLY_PATHS, DeviceNode, masked_paths

PROFILE = seccomp.default_profile()
CID = "0123456789abcdef" * 4
HOST = HostFacts(
    cpu_count=4,
    devices=(
        DeviceNode("/dev/null", "c", 1, 3),
        DeviceNode("/dev/fuse", "c", 10, 229),
        DeviceNode("/dev/snd/controlC0", "c", 116, 2, 0o660, 0, 29),
    ),
)


def spec(host: HostFacts = HOST, **kw: Any) -> dict[str, Any]:
    config = ContainerConfig(cmd=("sh",), **kw)
    return build_spec(
        config, rootfs="/rootfs", host=host, container_id=CID, seccomp_profile=PROFILE
    )


def mount(s: dict[str, Any], dest: str) -> dict[str, Any]:
    return next(m for m in s["mounts"] if m["destination"] == dest)


@pytest.mark.unit
def test_default_container() -> None:
    s = spec()
    p = s["process"]
    assert s["ociVersion"] == "1.3.0"
    assert s["root"] == {"path": "/rootfs"}
    assert s["hostname"] == CID[:12]
    assert p["args"] == ["sh"] and p["cwd"] == "/"
    assert p["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"HOSTNAME={CID[:12]}",
    ]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert p["oomScoreAdj"] == 0 and "noNewPrivileges" not in p and "apparmorProfile" not in p
    # moby/containerd WithCapabilities: bounding, effective, permitted; no inheritable
    assert p["capabilities"] == {
        k: list(caps.DEFAULT_CAPABILITIES) for k in ("bounding", "effective", "permitted")
    }
    linux = s["linux"]
    assert linux["cgroupsPath"] == f"/dockyard/{CID}"  # dockerd: /docker/<id>; ours is apart
    # cgroup v2 and kernel >= 5.6: the time namespace stays and cgroupns is private
    assert [n["type"] for n in linux["namespaces"]] == [
        "mount",
        "network",
        "time",
        "uts",
        "pid",
        "ipc",
        "cgroup",
    ]
    assert linux["maskedPaths"] == list(masked_paths()) and linux["readonlyPaths"] == list(
        DEFAULT_READONLY_PATHS
    )
    assert linux["sysctl"] == {
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "0",
    }
    assert "devices" not in linux and len(linux["resources"]["devices"]) == 8
    assert linux["resources"]["blockIO"] == {} and "memory" not in linux["resources"]
    assert len(linux["seccomp"]["syscalls"]) == 15
    assert mount(s, "/dev/shm")["options"] == [
        "nosuid",
        "noexec",
        "nodev",
        "mode=1777",
        "size=67108864",
    ]
    assert len(s["mounts"]) == 7


@pytest.mark.unit
def test_env_tty_and_overrides() -> None:
    s = spec(tty=True, hostname="web", env=("PATH=/bin", "A=1", "HOSTNAME", "A=2"))
    assert s["process"]["terminal"] is True
    # ReplaceOrAppendEnvValues: replaces PATH, "HOSTNAME" unsets, appended dups kept
    assert s["process"]["env"] == ["PATH=/bin", "TERM=xterm", "A=1", "A=2"]


@pytest.mark.unit
def test_privileged() -> None:
    s = spec(privileged=True, cap_drop=("ALL",))
    linux = s["linux"]
    assert s["process"]["capabilities"]["bounding"] == list(caps.ALL_CAPABILITIES)
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [d["path"] for d in linux["devices"]] == ["/dev/null", "/dev/fuse", "/dev/snd/controlC0"]
    assert mount(s, "/sys")["options"] == ["nosuid", "noexec", "nodev"]
    assert mount(s, "/sys/fs/cgroup")["options"] == ["nosuid", "noexec", "nodev"]


@pytest.mark.unit
def test_capabilities_feed_seccomp() -> None:
    s = spec(cap_add=("sys_admin",), cap_drop=("NET_RAW",))
    bounding = s["process"]["capabilities"]["bounding"]
    assert bounding[-1] == "CAP_SYS_ADMIN" and "CAP_NET_RAW" not in bounding
    allowed = {n for r in s["linux"]["seccomp"]["syscalls"] for n in r["names"]}
    assert "mount" in allowed
    with pytest.raises(InvalidParameter, match='unknown capability: "CAP_FOO"'):
        spec(cap_add=("foo",))


@pytest.mark.unit
def test_security_opts() -> None:
    assert "seccomp" not in spec(security_opt=("seccomp=unconfined",))["linux"]
    custom = '{"defaultAction": "SCMP_ACT_LOG"}'
    assert spec(security_opt=(f"seccomp={custom}",))["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_LOG"
    }
    assert (
        spec(privileged=True, security_opt=(f"seccomp={custom}",))["linux"]["seccomp"][
            "defaultAction"
        ]
        == "SCMP_ACT_LOG"
    )
    assert spec(security_opt=("no-new-privileges",))["process"]["noNewPrivileges"] is True
    assert "noNewPrivileges" not in spec(security_opt=("no-new-privileges=false",))["process"]
    # no AppArmor / SELinux on the host: dockerd ignores these options
    p = spec(security_opt=("apparmor=foo", "label=type:svirt_t"))["process"]
    assert "apparmorProfile" not in p
    aa = HostFacts(has_apparmor=True)
    assert spec(aa)["process"]["apparmorProfile"] == "docker-default"
    assert spec(aa, privileged=True)["process"]["apparmorProfile"] == "unconfined"
    with pytest.raises(InvalidParameter, match=r'^invalid --security-opt 2: "bogus=1"$'):
        spec(security_opt=("bogus=1",))
    no_seccomp = HostFacts(seccomp_enabled=False)
    assert "seccomp" not in spec(no_seccomp)["linux"]
    with pytest.raises(InvalidParameter, match="cannot run a custom seccomp profile"):
        spec(no_seccomp, security_opt=(f"seccomp={custom}",))


@pytest.mark.unit
def test_resources_mapping() -> None:
    r = spec(
        resources=Resources(
            nano_cpus=1_500_000_000,
            memory=1 << 30,
            pids_limit=0,
            blkio_weight=300,
            cpuset_cpus="0-1",
        )
    )
    res = r["linux"]["resources"]
    assert res["cpu"] == {"quota": 150000, "period": 100000, "cpus": "0-1"}
    # memory-swap unset: dockerd defaults it to twice the memory
    assert res["memory"] == {"limit": 1 << 30, "swap": 2 << 30}
    assert res["pids"] == {"limit": -1} and res["blockIO"] == {"weight": 300}
    unlimited = spec(resources=Resources(memory=1 << 30, memory_swap=-1))["linux"]["resources"]
    assert unlimited["memory"] == {"limit": 1 << 30}
    v1 = spec(
        HostFacts(cgroup_version=1, cpu_count=4),
        oom_kill_disable=True,
        resources=Resources(memory=1 << 30),
    )
    assert v1["linux"]["resources"]["memory"]["disableOOMKiller"] is True
    assert [n["type"] for n in v1["linux"]["namespaces"]][-1] == "ipc"  # cgroupns host on v1


@pytest.mark.unit
@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (Resources(memory=1024), "Minimum memory limit allowed is 6MB"),
        (
            Resources(memory=1 << 30, memory_swap=1 << 20),
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            Resources(memory_swap=1 << 30),
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ),
        (
            Resources(nano_cpus=10**9, cpu_period=100000),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ),
        (
            Resources(nano_cpus=5 * 10**9),
            "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available",
        ),
        (Resources(cpu_quota=500), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        (Resources(blkio_weight=5), "Range of blkio weight is from 10 to 1000"),
    ],
)
def test_resource_validation_messages(resources: Resources, message: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        spec(resources=resources)
    assert str(exc.value) == message


@pytest.mark.unit
def test_ulimits_and_sysctls() -> None:
    s = spec(
        ulimits=(Ulimit("nofile", 1024, 4096),),
        sysctls={"net.core.somaxconn": "1024", "net.ipv4.ping_group_range": "0 0"},
    )
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    assert s["linux"]["sysctl"]["net.core.somaxconn"] == "1024"
    assert s["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 0"  # the user's wins
    with pytest.raises(InvalidParameter, match=r"^sysctl 'kernel\.hostname=x' is not allowed$"):
        spec(sysctls={"kernel.hostname": "x"})
    assert (
        spec(sysctls={"kernel.shmmax": "1", "fs.mqueue.msg_max": "10"})["linux"]["sysctl"][
            "kernel.shmmax"
        ]
        == "1"
    )
    with pytest.raises(InvalidParameter, match="invalid ulimit type: bogus"):
        spec(ulimits=(Ulimit("bogus", 1, 1),))
    assert "net.ipv4.ping_group_range" not in spec(network_mode="host")["linux"].get("sysctl", {})


@pytest.mark.unit
def test_tmpfs_and_read_only() -> None:
    s = spec(read_only=True, tmpfs={"/run": "size=64m,exec", "/tmp": ""})
    assert s["root"] == {"path": "/rootfs", "readonly": True}
    assert mount(s, "/run") == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "rprivate", "size=64m", "exec"],
    }
    assert mount(s, "/tmp")["options"] == ["noexec", "nosuid", "nodev", "rprivate"]
    assert mount(s, "/sys/fs/cgroup")["options"].count("ro") == 1
    assert "ro" not in mount(s, "/dev/shm")["options"] and "ro" not in mount(s, "/proc")["options"]
    with pytest.raises(InvalidParameter, match='invalid tmpfs option "bogus"'):
        spec(tmpfs={"/x": "bogus"})
    with pytest.raises(InvalidParameter, match="destination can't be '/'"):
        spec(tmpfs={"/": ""})


@pytest.mark.unit
def test_namespace_modes_init_and_ipc() -> None:
    s = spec(network_mode="host", pid_mode="host", ipc_mode="host", uts_mode="host", init=True)
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["mount", "time", "cgroup"]
    assert "hostname" not in s and s["process"]["args"] == ["sh"]  # no init with --pid host
    assert mount(s, "/dev/shm") == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/dev/shm",
        "options": ["rbind", "rprivate"],
    }
    i = spec(init=True, ipc_mode="none")
    assert i["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert mount(i, "/sbin/docker-init")["options"] == ["bind", "ro"]
    assert all(m["destination"] != "/dev/shm" for m in i["mounts"])
    old_kernel = spec(HostFacts(kernel=(5, 4)))
    assert "time" not in [n["type"] for n in old_kernel["linux"]["namespaces"]]
    with pytest.raises(InvalidParameter, match="invalid PID mode: private"):
        spec(pid_mode="private")


@pytest.mark.unit
def test_devices_and_user() -> None:
    assert parse_device("/dev/fuse") == parse_device("/dev/fuse:/dev/fuse:rwm")
    assert parse_device("/dev/fuse:r").cgroup_permissions == "r"
    assert parse_device("/dev/fuse:/dev/f:rw").path_in_container == "/dev/f"
    s = spec(
        devices=(parse_device("/dev/fuse:/dev/f:rw"), parse_device("/dev/snd")),
        user="1000:1000",
        group_add=("29",),
    )
    linux = s["linux"]
    assert linux["devices"] == [
        {
            "path": "/dev/f",
            "type": "c",
            "major": 10,
            "minor": 229,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        },
        {
            "path": "/dev/snd/controlC0",
            "type": "c",
            "major": 116,
            "minor": 2,
            "fileMode": 0o660,
            "uid": 0,
            "gid": 29,
        },
    ]
    assert linux["resources"]["devices"][-2:] == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "c", "major": 116, "minor": 2, "access": "rwm"},
    ]
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 29]}
    with pytest.raises(InvalidParameter, match="error gathering device information"):
        spec(devices=(parse_device("/dev/nope"),))
    rule = spec(device_cgroup_rules=("c 42:* rmw",))["linux"]["resources"]["devices"][-1]
    assert rule == {"allow": True, "type": "c", "major": 42, "minor": -1, "access": "rmw"}
