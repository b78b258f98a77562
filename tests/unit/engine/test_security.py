"""Capabilities, seccomp resolution and Docker's default spec pieces, against moby's source."""

from __future__ import annotations

import json

import pytest

from dockyard.engine.security import capabilities as caps
from dockyard.engine.security import defaults, seccomp

PROFILE_TEXT = seccomp.default_profile_text()
PROFILE = seccomp.load_profile(PROFILE_TEXT)


def names(section: dict[str, object]) -> set[str]:
    return {n for rule in section["syscalls"] for n in rule["names"]}  # type: ignore[attr-defined]


# --- capabilities (moby daemon/pkg/oci/caps) -----------------------------------------


@pytest.mark.unit
def test_default_capabilities_are_dockers_fourteen_in_order() -> None:
    # moby daemon/pkg/oci/caps/defaults.go DefaultCapabilities
    assert caps.DEFAULT_CAPABILITIES == (
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    )  # fmt: skip


@pytest.mark.unit
def test_all_capabilities_is_containerds_kernel_59_list() -> None:
    # containerd pkg/cap/cap_linux.go: caps35 (37) + AUDIT_READ + PERFMON, BPF + CHECKPOINT_RESTORE
    assert len(caps.ALL_CAPABILITIES) == 41
    assert caps.ALL_CAPABILITIES[0] == "CAP_CHOWN"
    assert caps.ALL_CAPABILITIES[-1] == "CAP_CHECKPOINT_RESTORE"
    assert set(caps.DEFAULT_CAPABILITIES) < set(caps.ALL_CAPABILITIES)


@pytest.mark.unit
@pytest.mark.parametrize("given", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin"])
def test_normalize_accepts_docker_spellings(given: str) -> None:
    assert caps.normalize(given) == "CAP_NET_ADMIN"


@pytest.mark.unit
def test_normalize_all_and_unknown() -> None:
    assert caps.normalize("all") == "ALL"
    with pytest.raises(caps.CapabilityError) as exc:
        caps.normalize("foo")
    assert str(exc.value) == 'unknown capability: "CAP_FOO"'


@pytest.mark.unit
def test_tweak_drops_then_appends_in_request_order() -> None:
    got = caps.tweak(caps.DEFAULT_CAPABILITIES, ["sys_admin", "NET_ADMIN"], ["chown", "CAP_KILL"])
    expected = [c for c in caps.DEFAULT_CAPABILITIES if c not in ("CAP_CHOWN", "CAP_KILL")]
    assert got == (*expected, "CAP_SYS_ADMIN", "CAP_NET_ADMIN")


@pytest.mark.unit
def test_tweak_all_rules() -> None:
    base = caps.DEFAULT_CAPABILITIES
    # add ALL: everything but the drops, in kernel order
    got = caps.tweak(base, ["ALL"], ["sys_admin"])
    assert "CAP_SYS_ADMIN" not in got and len(got) == 40
    # drop ALL: only the adds
    assert caps.tweak(base, ["chown", "kill"], ["all"]) == ("CAP_CHOWN", "CAP_KILL")
    assert caps.tweak(base, [], ["ALL"]) == ()
    # add ALL wins over drop ALL (moby checks add first)
    assert caps.tweak(base, ["ALL"], ["ALL"]) == caps.ALL_CAPABILITIES
    # privileged ignores add/drop entirely, even bad names
    assert caps.tweak(base, ["bogus"], ["all"], privileged=True) == caps.ALL_CAPABILITIES
    # nothing to tweak: the base unchanged
    assert caps.tweak(base) == base


@pytest.mark.unit
def test_tweak_reports_bad_drop_before_bad_add() -> None:
    with pytest.raises(caps.CapabilityError, match='"CAP_BADDROP"'):
        caps.tweak(caps.DEFAULT_CAPABILITIES, ["badadd"], ["baddrop"])


# --- defaults (moby daemon/pkg/oci/defaults.go) --------------------------------------


@pytest.mark.unit
def test_default_masked_and_readonly_paths() -> None:
    assert defaults.masked_paths() == (
        "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
        "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
        "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
    )  # fmt: skip
    assert defaults.masked_paths([0, 3])[-2:] == (
        "/sys/devices/system/cpu/cpu0/thermal_throttle",
        "/sys/devices/system/cpu/cpu3/thermal_throttle",
    )
    assert defaults.DEFAULT_READONLY_PATHS == (
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    )  # fmt: skip


@pytest.mark.unit
def test_default_mounts() -> None:
    got = [m.to_oci() for m in defaults.DEFAULT_MOUNTS]
    assert [(m["destination"], m["type"], m["source"]) for m in got] == [
        ("/proc", "proc", "proc"),
        ("/dev", "tmpfs", "tmpfs"),
        ("/dev/pts", "devpts", "devpts"),
        ("/sys", "sysfs", "sysfs"),
        ("/sys/fs/cgroup", "cgroup", "cgroup"),
        ("/dev/mqueue", "mqueue", "mqueue"),
        ("/dev/shm", "tmpfs", "shm"),
    ]
    assert got[1]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert got[2]["options"] == [
        "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5",
    ]  # fmt: skip
    assert got[4]["options"] == ["ro", "nosuid", "noexec", "nodev"]
    assert got[6]["options"] == ["nosuid", "noexec", "nodev", "mode=1777"]


@pytest.mark.unit
def test_default_device_cgroup_rules() -> None:
    rules = [r.to_oci() for r in defaults.DEFAULT_DEVICE_RULES]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert [(r["allow"], r["major"], r["minor"]) for r in rules[1:]] == [
        (True, 1, 5), (True, 1, 3), (True, 1, 9), (True, 1, 8),
        (True, 5, 0), (True, 5, 1), (False, 10, 229),
    ]  # fmt: skip
    assert all(r["type"] == "c" and r["access"] == "rwm" for r in rules[1:])


# --- seccomp (moby/profiles seccomp_linux.go setupSeccomp) ---------------------------


@pytest.mark.unit
def test_default_profile_x86_64_default_caps() -> None:
    out = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES)
    assert out is not None
    assert out["defaultAction"] == "SCMP_ACT_ERRNO"
    assert out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    # Of the profile's 33 rule groups these survive for amd64, kernel 6.1, default caps:
    # the unconditional group, ptrace & co (minKernel 4.8), 3 socket + 5 personality
    # argument rules, arch_prctl (amd64/x32), modify_ldt (amd64/x32/x86), clone with
    # the namespace-flags mask and clone3 -> ENOSYS (both excluded by CAP_SYS_ADMIN),
    # and chroot (CAP_SYS_CHROOT is a default cap): 1+1+3+5+1+1+1+1+1 = 15.
    assert len(out["syscalls"]) == 15
    assert {"arch_prctl", "modify_ldt", "chroot", "ptrace"} <= names(out)
    assert not {"mount", "bpf", "reboot", "s390_runtime_instr", "swapcontext"} & names(out)
    clone3 = [r for r in out["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert all(set(r) <= {"names", "action", "errnoRet", "args"} for r in out["syscalls"])
    socket_rule = next(r for r in out["syscalls"] if r["names"] == ["socket"])
    assert socket_rule["args"] == [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]


@pytest.mark.unit
def test_sys_admin_gates_its_syscalls() -> None:
    without = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES)
    with_admin = seccomp.to_oci(PROFILE, capabilities=(*caps.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert without is not None and with_admin is not None
    gated = {"mount", "umount2", "unshare", "setns", "bpf"}
    assert gated <= names(with_admin)
    assert not gated & names(without)
    # with CAP_SYS_ADMIN the masked clone and the clone3 ENOSYS rules go away
    assert not any(r.get("errnoRet") == 38 for r in with_admin["syscalls"])
    assert len(with_admin["syscalls"]) == 15 - 2 + 1


@pytest.mark.unit
def test_arch_includes_and_sub_architectures() -> None:
    arm = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES, arch="aarch64")
    assert arm is not None
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert {"arm_fadvise64_64", "sync_file_range2"} <= names(arm)
    assert not {"arch_prctl", "modify_ldt"} & names(arm)
    s390 = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES, arch="s390x")
    assert s390 is not None
    clones = [r for r in s390["syscalls"] if r["names"] == ["clone"]]
    assert clones == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 1, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    riscv = seccomp.to_oci(PROFILE, capabilities=(), arch="riscv64")
    assert riscv is not None and riscv["architectures"] == ["SCMP_ARCH_RISCV64"]


@pytest.mark.unit
def test_min_kernel_include() -> None:
    old = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES, kernel=(4, 4))
    new = seccomp.to_oci(PROFILE, capabilities=caps.DEFAULT_CAPABILITIES, kernel=(4, 8, 3))
    assert old is not None and new is not None
    assert "process_vm_readv" not in names(old)
    assert "process_vm_readv" in names(new)


@pytest.mark.unit
def test_custom_profile_forms_and_errors() -> None:
    legacy = seccomp.load_profile(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"name": "chmod", "action": "SCMP_ACT_ERRNO"},
                    {
                        "names": ["kill"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                        "excludes": {"minKernel": "5.0"},
                    },
                ],
            }
        )
    )
    out = seccomp.to_oci(legacy, capabilities=(), kernel=(4, 19))
    assert out == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"},
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    assert seccomp.to_oci(seccomp.load_profile("{}"), capabilities=()) is None
    with pytest.raises(seccomp.SeccompError, match=r"^Decoding seccomp profile failed"):
        seccomp.load_profile("{nope")
    with pytest.raises(seccomp.SeccompError, match="both 'name' and 'names'"):
        seccomp.load_profile('{"syscalls": [{"name": "a", "names": ["b"]}]}')
    with pytest.raises(seccomp.SeccompError, match="both 'architectures' and 'archMap'"):
        seccomp.to_oci(
            seccomp.load_profile(
                '{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],'
                ' "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}'
            ),
            capabilities=(),
        )
    with pytest.raises(seccomp.SeccompError, match=r"version cannot be 0\.0"):
        seccomp.load_profile('{"syscalls": [{"names": ["a"], "includes": {"minKernel": "0.0"}}]}')
