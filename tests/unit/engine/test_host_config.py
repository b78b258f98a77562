"""HostConfig/Config → spec input, dockerd's defaults and checks, and `docker update` merging.

Expected values are dockerd 20.10's on this host (checked with the docker CLI against it)
unless a comment names newer moby.
"""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.engine.model import host_config as hcfg
from dockyard.engine.model.oci_spec import (
    ContainerConfig,
    DeviceMapping,
    HostFacts,
    InvalidParameter,
    ResolvedUser,
    Resources,
    Ulimit,
    build_spec,
)
from dockyard.engine.security import capabilities as caps
from dockyard.engine.security import seccomp
from dockyard.engine.security.defaults import DEFAULT_READONLY_PATHS, DeviceNode, masked_paths

V1 = HostFacts(cgroup_version=1, cpu_count=2, cpus_online="0-1", mems_online="0")
V2 = HostFacts(cgroup_version=2, cpu_count=2, cpus_online="0-1", mems_online="0")
CID = "0123456789abcdef" * 4


def defaults(hc: dict[str, Any], host: HostFacts = V1) -> tuple[dict[str, Any], list[str]]:
    return hcfg.fill_defaults(hc, host=host)


def translate(hc: dict[str, Any], config: dict[str, Any] | None = None) -> ContainerConfig:
    return hcfg.container_config(path="sh", args=("-c", "true"), config=config or {}, hc=hc)


# --- defaults -------------------------------------------------------------------------


def test_defaults_fill_what_inspect_shows() -> None:
    out, warnings = defaults({})
    assert warnings == []
    assert out["NetworkMode"] == "default"
    assert out["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert out["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert (out["IpcMode"], out["CgroupnsMode"], out["ShmSize"]) == ("private", "host", 67108864)
    assert (out["Runtime"], out["OomKillDisable"], out["PidsLimit"]) == ("runc", False, None)
    assert out["MaskedPaths"] == list(masked_paths())
    assert out["ReadonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert out["SecurityOpt"] is None
    v2, _ = defaults({}, V2)
    assert v2["CgroupnsMode"] == "private"
    assert "OomKillDisable" not in v2


def test_defaults_keep_what_the_client_sent_and_normalise_as_dockerd() -> None:
    # What the docker CLI 28 sends for `-m 64m --pids-limit 0` (MemorySwappiness -1).
    out, _ = defaults(
        {"Memory": 64 << 20, "PidsLimit": 0, "MemorySwappiness": -1, "CgroupnsMode": "private"}
    )
    assert out["MemorySwap"] == 128 << 20  # 2x memory
    assert out["PidsLimit"] is None
    assert out["MemorySwappiness"] is None
    assert out["CgroupnsMode"] == "private"
    assert defaults({"PidsLimit": -1})[0]["PidsLimit"] is None
    assert defaults({"PidsLimit": 100})[0]["PidsLimit"] == 100
    assert defaults({"Memory": 64 << 20, "MemorySwap": -1})[0]["MemorySwap"] == -1


def test_sharing_host_namespaces_or_privileged_records_label_disable() -> None:
    for hc in ({"PidMode": "host"}, {"IpcMode": "host"}, {"Privileged": True}):
        assert defaults(hc)[0]["SecurityOpt"] == ["label=disable"]
    out, _ = defaults(
        {"PidMode": "host", "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}
    )
    assert out["SecurityOpt"] == ["no-new-privileges", "seccomp=unconfined", "label=disable"]
    assert defaults({"PidMode": "host", "SecurityOpt": ["label=user:u"]})[0]["SecurityOpt"] == [
        "label=user:u"
    ]
    privileged, _ = defaults({"Privileged": True})
    assert "MaskedPaths" not in privileged and "ReadonlyPaths" not in privileged


def test_unsupported_blkio_weight_and_oom_kill_disable_warn() -> None:
    no_blkio = HostFacts(cgroup_version=1, blkio_weight=False)
    out, warnings = defaults({"BlkioWeight": 300}, no_blkio)
    assert (out["BlkioWeight"], warnings) == (0, [hcfg.BLKIO_WEIGHT_WARNING])
    assert defaults({"BlkioWeight": 300})[0]["BlkioWeight"] == 300
    assert defaults({"OomKillDisable": True})[1] == [hcfg.OOM_KILL_DISABLE_WARNING]
    assert defaults({"OomKillDisable": True, "Memory": 10 << 20})[1] == []


# --- translation ----------------------------------------------------------------------


def test_every_flag_reaches_the_spec_input() -> None:
    hc = {
        "CapAdd": ["CAP_NET_ADMIN"],
        "CapDrop": ["CAP_CHOWN"],
        "Privileged": False,
        "Devices": [
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r"},
            {"PathOnHost": "/dev/zero", "PathInContainer": "", "CgroupPermissions": ""},
        ],
        "DeviceCgroupRules": ["c 1:3 r"],
        "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
        "ReadonlyRootfs": True,
        "Tmpfs": {"/run": "size=1m", "/x": ""},
        "GroupAdd": ["10", "audio"],
        "Sysctls": {"net.ipv4.ip_forward": "1"},
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
        "PidMode": "host",
        "IpcMode": "host",
        "UTSMode": "host",
        "UsernsMode": "host",
        "CgroupnsMode": "private",
        "NetworkMode": "bridge",
        "CgroupParent": "/mine",
        "Memory": 64 << 20,
        "MemorySwap": 128 << 20,
        "MemoryReservation": 32 << 20,
        "NanoCpus": 1_500_000_000,
        "CpuShares": 512,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpusetCpus": "0",
        "CpusetMems": "0",
        "PidsLimit": 100,
        "BlkioWeight": 300,
        "Init": True,
        "OomKillDisable": False,
        "OomScoreAdj": 10,
        "ShmSize": 1 << 20,
    }
    config = {
        "Env": ["A=B"],
        "WorkingDir": "/w",
        "User": "nobody",
        "Hostname": "h",
        "Domainname": "d",
        "Tty": True,
        "OpenStdin": True,
        "StopSignal": "SIGUSR1",
    }
    got = translate(hc, config)
    assert got == ContainerConfig(
        cmd=("sh", "-c", "true"),
        env=("A=B",),
        working_dir="/w",
        user="nobody",
        hostname="h",
        domainname="d",
        tty=True,
        open_stdin=True,
        cap_add=("CAP_NET_ADMIN",),
        cap_drop=("CAP_CHOWN",),
        devices=(
            DeviceMapping("/dev/null", "/dev/mynull", "r"),
            DeviceMapping("/dev/zero", "/dev/zero", "rwm"),
        ),
        device_cgroup_rules=("c 1:3 r",),
        security_opt=("no-new-privileges", "seccomp=unconfined"),
        read_only=True,
        tmpfs={"/run": "size=1m", "/x": ""},
        group_add=("10", "audio"),
        sysctls={"net.ipv4.ip_forward": "1"},
        ulimits=(Ulimit("nofile", 100, 200),),
        pid_mode="host",
        ipc_mode="host",
        uts_mode="host",
        userns_mode="host",
        cgroupns_mode="private",
        network_mode="bridge",
        cgroup_parent="/mine",
        resources=Resources(
            memory=64 << 20,
            memory_swap=128 << 20,
            memory_reservation=32 << 20,
            nano_cpus=1_500_000_000,
            cpu_shares=512,
            cpuset_cpus="0",
            cpuset_mems="0",
            pids_limit=100,
            blkio_weight=300,
        ),
        init=True,
        oom_kill_disable=False,
        oom_score_adj=10,
        shm_size=1 << 20,
        stop_signal="SIGUSR1",
    )
    assert hcfg.device_paths(hc) == ("/dev/null", "/dev/zero")


def test_unset_fields_stay_daemon_defaults() -> None:
    got = translate({"NetworkMode": "host", "PidsLimit": 0})
    assert got.network_mode == "host"
    assert got.init is None and got.oom_kill_disable is None
    assert got.resources == Resources()  # PidsLimit 0 (an update to unlimited) is unset


def test_the_translation_builds_dockers_spec() -> None:
    hc, _ = defaults(
        {
            "CapAdd": ["CAP_NET_ADMIN"],
            "Memory": 64 << 20,
            "NanoCpus": 500_000_000,
            "PidsLimit": 50,
            "Init": True,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/run": ""},
            "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
            "SecurityOpt": ["no-new-privileges"],
        }
    )
    config = hcfg.container_config(
        path="sh", args=(), config={}, hc=hc, resolved_user=ResolvedUser(0, 0)
    )
    host = HostFacts(cgroup_version=1, cpu_count=2, init_path="/usr/bin/docker-init")
    spec = build_spec(
        config, rootfs="/r", host=host, container_id=CID, seccomp_profile=seccomp.default_profile()
    )
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert "CAP_NET_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20, "soft": 10}]
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "disableOOMKiller": False}
    assert resources["cpu"] == {"quota": 50000, "period": 100000}
    assert resources["pids"] == {"limit": 50}
    assert spec["root"]["readonly"] is True
    init_mount = {"destination": "/sbin/docker-init", "type": "bind",
                  "source": "/usr/bin/docker-init", "options": ["bind", "ro"]}  # fmt: skip
    assert init_mount in spec["mounts"]
    assert any(m["destination"] == "/run" and m["type"] == "tmpfs" for m in spec["mounts"])


def test_privileged_and_cap_add_all_grant_only_the_daemons_capabilities() -> None:
    # This host's root lacks CAP_SYS_RESOURCE; 20.10 asked runc for it anyway and failed.
    own = tuple(c for c in caps.ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")
    host = HostFacts(cgroup_version=1, capabilities=own)
    for hc in ({"Privileged": True}, {"CapAdd": ["ALL"], "CapDrop": ["CHOWN"]}):
        config = hcfg.container_config(
            path="sh", args=(), config={}, hc=hc, resolved_user=ResolvedUser(0, 0)
        )
        spec = build_spec(
            config,
            rootfs="/r",
            host=host,
            container_id=CID,
            seccomp_profile=seccomp.default_profile(),
        )
        bounding = spec["process"]["capabilities"]["bounding"]
        assert "CAP_SYS_RESOURCE" not in bounding
        assert ("CAP_CHOWN" in bounding) == bool(hc.get("Privileged"))
        assert "CAP_SYS_ADMIN" in bounding


# --- users and groups -----------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nwheel:x:10:root\naudio:x:29:\nnobody:x:65534:\n"


def test_users_and_added_groups_resolve_against_the_containers_files() -> None:
    assert hcfg.resolve_user("", [], passwd=PASSWD, group=GROUP) == ResolvedUser(0, 0, (10,))
    assert hcfg.resolve_user("nobody", ["audio", "1234", "0"], passwd=PASSWD, group=GROUP) == (
        ResolvedUser(65534, 65534, (29, 1234, 0))
    )
    assert hcfg.resolve_user("1000:audio", [], passwd=PASSWD, group=GROUP) == ResolvedUser(1000, 29)
    assert hcfg.resolve_user("", ["5"], passwd="", group="") == ResolvedUser(0, 0, (5,))


def test_unknown_users_and_groups_fail_in_dockerds_words() -> None:
    with pytest.raises(InvalidParameter) as exc:
        hcfg.resolve_user("", ["nosuchgroup"], passwd=PASSWD, group=GROUP)
    assert str(exc.value) == "Unable to find group nosuchgroup: no matching entries in group file"
    with pytest.raises(InvalidParameter) as exc:
        hcfg.resolve_user("ghost", [], passwd=PASSWD, group=GROUP)
    assert str(exc.value) == "unable to find user ghost: no matching entries in passwd file"


# --- create checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "hc", "message"),
    [
        ({"StopSignal": "FOO"}, {}, "Invalid signal: FOO"),
        ({"StopSignal": "SIGFOO"}, {}, "Invalid signal: SIGFOO"),
        ({}, {"CapAdd": ["foo"]}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
        ({}, {"CapDrop": ["CAP_BAR"]}, 'invalid CapDrop: unknown capability: "CAP_BAR"'),
        (
            {},
            {"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]},
            "invalid device mode: rwx",
        ),
        (
            {},
            {"CpusetCpus": "0-7"},
            "Requested CPUs are not available - requested 0-7, available: 0-1",
        ),
        (
            {},
            {"CpusetMems": "3"},
            "Requested memory nodes are not available - requested 3, available: 0",
        ),
        ({}, {"CpusetCpus": "0-x"}, "Invalid value 0-x for cpuset cpus: invalid format: 0-x"),
        (
            {},
            {"RestartPolicy": {"Name": "always"}, "AutoRemove": True},
            "can't create 'AutoRemove' container with restart policy",
        ),
    ],
)
def test_create_checks_answer_dockerds_messages(
    config: dict[str, Any], hc: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameter) as exc:
        hcfg.validate_create(config, hc, host=V1)
    assert message in str(exc.value)


def test_valid_create_settings_pass() -> None:
    hcfg.validate_create(
        {"StopSignal": "SIGUSR1", "StopTimeout": 3},
        {
            "CapAdd": ["net_admin", "CAP_SYS_ADMIN", "ALL"],
            "CapDrop": ["all"],
            "Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rw"}],
            "CpusetCpus": "0,1",
            "CpusetMems": "0",
        },
        host=V1,
    )
    hcfg.validate_create({"StopSignal": "9"}, {"CpusetCpus": "7"}, host=HostFacts())


def test_cpuset_lists_parse_as_dockers() -> None:
    assert hcfg.parse_cpuset("0-2,4") == frozenset({0, 1, 2, 4})
    for bad in ("", "a", "2-1", "1-", "-1", "1,,2"):
        with pytest.raises(ValueError):
            hcfg.parse_cpuset(bad)


@pytest.mark.parametrize(
    ("hc", "message"),
    [
        ({"Memory": 4 << 20}, "Minimum memory limit allowed is 6MB"),
        ({"MemoryReservation": 1 << 20}, "Minimum memory reservation allowed is 6MB"),
        (
            {"Memory": 10 << 20, "MemorySwap": 5 << 20},
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            {"MemorySwap": 100 << 20},
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ),
        (
            {"NanoCpus": 5 * 10**9},
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
        ),
        ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ],
)
def test_resource_limits_are_checked_by_the_spec_builder(hc: dict[str, Any], message: str) -> None:
    config = translate(hc)
    with pytest.raises(InvalidParameter) as exc:
        build_spec(
            ContainerConfig(cmd=config.cmd, resources=config.resources),
            rootfs="/r",
            host=V1,
            container_id=CID,
            seccomp_profile=seccomp.default_profile(),
        )
    assert str(exc.value) == message


# --- docker update --------------------------------------------------------------------


def test_update_merges_resources_and_names_the_runc_changes() -> None:
    current, _ = defaults({})
    result = hcfg.apply_update(
        current,
        {"Memory": 32 << 20, "NanoCpus": 500_000_000, "CpuShares": 0, "PidsLimit": 10},
        host=V1,
    )
    hc = result.host_config
    assert (hc["Memory"], hc.get("MemorySwap", 0), hc["NanoCpus"], hc["PidsLimit"]) == (
        32 << 20,
        0,  # dockerd leaves the swap as it was
        500_000_000,
        10,
    )
    assert result.resources == {
        "memory": {"limit": 32 << 20},
        "cpu": {"quota": 50000, "period": 100000},
        "pids": {"limit": 10},
    }
    assert result.warnings == ()


def test_update_pids_limit_zero_or_negative_is_unlimited() -> None:
    current, _ = defaults({"PidsLimit": 10})
    result = hcfg.apply_update(current, {"PidsLimit": -1}, host=V1)
    assert result.host_config["PidsLimit"] == 0
    assert result.resources == {"pids": {"limit": -1}}


def test_update_the_restart_policy() -> None:
    current, _ = defaults({})
    result = hcfg.apply_update(current, {"RestartPolicy": {"Name": "always"}}, host=V1)
    assert result.host_config["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert result.resources == {}
    auto_remove, _ = defaults({"AutoRemove": True})
    with pytest.raises(hcfg.UpdateConflict) as exc:
        hcfg.apply_update(auto_remove, {"RestartPolicy": {"Name": "always"}}, host=V1)
    assert str(exc.value) == (
        "Restart policy cannot be updated because AutoRemove is enabled for the container"
    )


def test_update_refuses_a_memory_limit_above_the_swap_limit() -> None:
    current, _ = defaults({"Memory": 20 << 20, "MemorySwap": 20 << 20})
    with pytest.raises(hcfg.UpdateConflict) as exc:
        hcfg.apply_update(current, {"Memory": 64 << 20}, host=V1)
    assert str(exc.value) == (
        "Memory limit should be smaller than already set memoryswap limit, "
        "update the memoryswap at the same time"
    )
    ok = hcfg.apply_update(current, {"Memory": 64 << 20, "MemorySwap": -1}, host=V1)
    assert ok.resources == {"memory": {"limit": 64 << 20, "swap": -1}}
    assert (ok.host_config["Memory"], ok.host_config["MemorySwap"]) == (64 << 20, -1)


@pytest.mark.parametrize(
    ("current", "update", "message"),
    [
        ({}, {"Memory": 4 << 20}, "Minimum memory limit allowed is 6MB"),
        ({}, {"NanoCpus": 5 * 10**9}, "Range of CPUs is from 0.01 to 2.00"),
        ({}, {"CpusetCpus": "7"}, "Requested CPUs are not available - requested 7, available: 0-1"),
        (
            {"Memory": 64 << 20},
            {"MemoryReservation": 128 << 20},
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (
            {"NanoCpus": 10**9},
            {"CpuQuota": 50000},
            "CPU Quota cannot be updated as NanoCPUs has already been set",
        ),
    ],
)
def test_bad_updates_answer_dockerds_messages(
    current: dict[str, Any], update: dict[str, Any], message: str
) -> None:
    hc, _ = defaults(current)
    with pytest.raises((InvalidParameter, hcfg.UpdateConflict)) as exc:
        hcfg.apply_update(hc, update, host=V1)
    assert message in str(exc.value)


def test_update_discards_an_unsupported_blkio_weight_with_a_warning() -> None:
    host = HostFacts(cgroup_version=1, cpu_count=2, blkio_weight=False)
    result = hcfg.apply_update(defaults({})[0], {"BlkioWeight": 300}, host=host)
    assert result.warnings == (hcfg.BLKIO_WEIGHT_WARNING,)
    assert result.resources == {}
    assert not result.host_config.get("BlkioWeight")
    supported = hcfg.apply_update(defaults({})[0], {"BlkioWeight": 300}, host=V1)
    assert supported.resources == {"blockIO": {"weight": 300}}


def test_device_node_fixture_is_used_by_the_builder() -> None:
    # A --device mapping finds its node by the host path the driver stat'ed.
    hc = {
        "Devices": [
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "r"}
        ]
    }
    config = hcfg.container_config(
        path="sh", args=(), config={}, hc=hc, resolved_user=ResolvedUser(0, 0)
    )
    host = HostFacts(cgroup_version=1, devices=(DeviceNode("/dev/null", "c", 1, 3),))
    spec = build_spec(
        config, rootfs="/r", host=host, container_id=CID, seccomp_profile=seccomp.default_profile()
    )
    assert spec["linux"]["devices"][0]["path"] == "/dev/x"
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"} in spec["linux"][
        "resources"
    ]["devices"]


# --- the shim's OOM accounting (runtime/shim_main.py) ----------------------------------


def test_the_shim_finds_the_containers_memory_cgroup() -> None:
    from dockyard.engine.runtime.shim_main import memory_cgroup_dir

    hybrid = "12:pids:/dockyard/c1\n4:memory:/dockyard/c1\n1:name=systemd:/x\n0::/dockyard/c1\n"
    roots = {"v1_root": "/sys/fs/cgroup/memory", "v2_root": "/sys/fs/cgroup/unified"}
    assert memory_cgroup_dir(hybrid, **roots) == "/sys/fs/cgroup/memory/dockyard/c1"
    unified = "0::/dockyard/c1\n"
    assert (
        memory_cgroup_dir(unified, v1_root="/m", v2_root="/sys/fs/cgroup")
        == "/sys/fs/cgroup/dockyard/c1"
    )
    assert memory_cgroup_dir(unified, v1_root="/m", v2_root=None) is None


def test_the_shim_reads_the_oom_kill_counter() -> None:
    from dockyard.engine.runtime.shim_main import exit_record_from_wait, parse_oom_kill

    assert parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3  # v1
    assert parse_oom_kill("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n") == 1
    assert parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n") is None  # kernel < 4.13
    killed = exit_record_from_wait(9, "t", oom_killed=True)  # waitpid status: SIGKILL
    assert (killed["exit_code"], killed["signal"], killed["oom_killed"]) == (137, 9, True)
