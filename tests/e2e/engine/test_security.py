"""Security and resources of `docker run` against `dockyard daemon`, checked from inside.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, with its teardown leak checks). Isolation is read where the kernel shows it: the
capability masks, Seccomp mode and NoNewPrivs in /proc/self/status, the mount table,
namespace links, `ulimit`, and the cgroup files of the container (inside, and on the host
under `/sys/fs/cgroup/<controller>/dockyard/<id>` on cgroup v1 or
`/sys/fs/cgroup/dockyard/<id>` on v2). Every container a test creates is force-removed by
the `names` fixture, also when the test fails. Waiting is for conditions (a log line, a
state) with a deadline, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import COMMAND_TIMEOUT_S, DaemonProcess

pytestmark = pytest.mark.e2e

names = test_daemon_cli.names  # container names force-removed after each test
daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)

DEFAULT_CAPS_MASK = "00000000a80425fb"  # Docker's 14 default capabilities
CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
POLL_S = 0.05


def status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def run_output(daemon: DaemonProcess, *args: str) -> str:
    return daemon.docker("run", "--rm", *args).stdout


def inspect(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(daemon.docker("inspect", name).stdout)[0]
    return record


def cgroup_file(cid: str, v1_controller: str, v1_name: str, v2_name: str) -> str:
    if CGROUP_V2:
        path = Path("/sys/fs/cgroup/dockyard") / cid / v2_name
    else:
        path = Path("/sys/fs/cgroup") / v1_controller / "dockyard" / cid / v1_name
    return path.read_text().strip()


def await_log(daemon: DaemonProcess, name: str, text: str) -> None:
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while text not in daemon.docker("logs", name).stdout:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never logged {text!r}:\n{daemon.log()}")
        time.sleep(POLL_S)  # the log file is the only signal of the container's progress


def await_exit(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    result = daemon.docker("wait", name)
    assert result.stdout.strip().lstrip("-").isdigit(), result
    state: dict[str, Any] = inspect(daemon, name)["State"]
    return state


# --- capabilities, seccomp, no-new-privileges -------------------------------------------


def test_the_default_capabilities_seccomp_and_no_new_privileges(daemon: DaemonProcess) -> None:
    status = status_fields(run_output(daemon, "busybox", "cat", "/proc/self/status"))
    assert status["CapEff"] == DEFAULT_CAPS_MASK
    assert status["CapBnd"] == DEFAULT_CAPS_MASK
    assert status["CapPrm"] == DEFAULT_CAPS_MASK
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "0"


def test_no_new_privileges_and_seccomp_unconfined(daemon: DaemonProcess) -> None:
    status = status_fields(
        run_output(
            daemon,
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "cat",
            "/proc/self/status",
        )
    )
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "0")


def test_a_seccomp_profile_file_is_sent_inline_and_enforced(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    result = daemon.docker(
        "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/x",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "Operation not permitted" in result.stderr
    assert daemon.docker("run", "--rm", "busybox", "mkdir", "/x").returncode == 0


def test_cap_add_net_admin_as_dockers_documentation(daemon: DaemonProcess) -> None:
    allowed = daemon.docker(
        "run", "--rm", "--cap-add=NET_ADMIN", "busybox", "sh", "-c", "ip link set lo down"
    )
    assert allowed.returncode == 0
    denied = daemon.docker("run", "--rm", "busybox", "sh", "-c", "ip link set lo down", check=False)
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr


def test_cap_add_all_with_cap_drop_chown(daemon: DaemonProcess) -> None:
    result = daemon.docker(
        "run", "--rm", "--cap-add=ALL", "--cap-drop=CHOWN", "busybox",
        "sh", "-c", "touch /f && chown 1 /f",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "Operation not permitted" in result.stderr
    # Names with or without CAP_, any case; dropping ALL then adding one.
    args = ("--cap-drop", "all", "--cap-add", "cap_chown", "busybox", "cat", "/proc/self/status")
    status = status_fields(run_output(daemon, *args))
    assert status["CapEff"] == "0000000000000001"


def test_privileged_gets_the_daemons_capabilities_devices_and_no_seccomp(
    daemon: DaemonProcess,
) -> None:
    own = status_fields(Path("/proc/self/status").read_text())["CapBnd"]
    out = run_output(
        daemon, "--privileged", "busybox", "sh", "-c", "cat /proc/self/status; ls /dev"
    )
    status = status_fields(out)
    assert status["CapEff"] == status["CapBnd"] == own
    assert status["Seccomp"] == "0"
    host_nodes = {p.name for p in Path("/dev").iterdir() if p.is_char_device()}
    assert "null" in out.split()
    assert len(host_nodes & set(out.split())) > 6, "the host's device nodes are visible"


# --- devices, mounts, users --------------------------------------------------------------


def test_device_mapping_with_permissions(daemon: DaemonProcess) -> None:
    # /dev/kmsg (1:11) is in neither Docker's nor runc's default device rules, so "r" is all
    # the devices cgroup allows: opening it for writing is refused.
    script = (
        "ls -l /dev/mykmsg; grep 1:11 /sys/fs/cgroup/devices/devices.list; echo x > /dev/mykmsg"
    )
    result = daemon.docker(
        "run", "--rm", "--device", "/dev/kmsg:/dev/mykmsg:r", "busybox", "sh", "-c", script,
        check=False,
    )  # fmt: skip
    assert result.stdout.startswith("crw")
    assert " 1,  11 " in result.stdout
    if not CGROUP_V2:  # v2 enforces devices with eBPF: no devices.list to read
        assert "c 1:11 r\n" in result.stdout
    assert "can't create /dev/mykmsg: Operation not permitted" in result.stderr


def test_missing_device_fails_at_start_in_dockers_words(daemon: DaemonProcess) -> None:
    result = daemon.docker(
        "run", "--rm", "--device", "/dev/nonexist", "busybox", "true", check=False
    )
    assert result.returncode == 127, result  # the CLI's "no such file or directory" code
    assert (
        'error gathering device information while adding custom device "/dev/nonexist": '
        "no such file or directory"
    ) in result.stderr


def test_read_only_root_with_a_tmpfs(daemon: DaemonProcess) -> None:
    out = run_output(
        daemon, "--read-only", "--tmpfs", "/run:size=1m", "busybox", "sh", "-c",
        "touch /x 2>&1; touch /run/ok && echo run-writable; grep ' /run ' /proc/mounts",
    )  # fmt: skip
    assert "Read-only file system" in out
    assert "run-writable" in out
    mount = next(line for line in out.splitlines() if line.startswith("tmpfs /run "))
    assert "size=1024k" in mount and "noexec" in mount and "nosuid" in mount


def test_user_and_group_add_resolve_in_the_image(daemon: DaemonProcess) -> None:
    out = run_output(
        daemon, "-u", "nobody", "--group-add", "1234", "--group-add", "nobody", "busybox", "id"
    )
    assert out.strip() == "uid=65534(nobody) gid=65534(nobody) groups=1234,65534(nobody)"
    missing = daemon.docker(
        "run", "--rm", "--group-add", "nosuchgroup", "busybox", "id", check=False
    )
    assert missing.returncode == 125
    assert "Unable to find group nosuchgroup: no matching entries in group file" in missing.stderr


def test_sysctls_and_ulimits(daemon: DaemonProcess) -> None:
    out = run_output(
        daemon, "--sysctl", "net.ipv4.ip_forward=1", "--ulimit", "nofile=100:200",
        "--ulimit", "nproc=50", "busybox", "sh", "-c",
        "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; ulimit -u",
    )  # fmt: skip
    assert out.split() == ["1", "100", "200", "50"]


def _namespaces(daemon: DaemonProcess, *args: str) -> dict[str, str]:
    out = run_output(
        daemon, *args, "busybox", "sh", "-c",
        "for n in cgroup ipc uts pid mnt net; do echo $n=$(readlink /proc/self/ns/$n); done",
    )  # fmt: skip
    return dict(line.split("=", 1) for line in out.split())


def test_host_namespaces_and_cgroupns(daemon: DaemonProcess) -> None:
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("cgroup", "ipc", "uts", "pid", "mnt")}
    private = _namespaces(daemon)
    for n in ("ipc", "uts", "pid", "mnt"):
        assert private[n] != host[n], n
    shared = _namespaces(daemon, "--pid=host", "--ipc=host", "--uts=host", "--userns=host")
    for n in ("ipc", "uts", "pid"):
        assert shared[n] == host[n], n
    assert shared["mnt"] != host["mnt"]
    # dockerd's default cgroupns: host on cgroup v1, private on v2.
    assert (private["cgroup"] == host["cgroup"]) is not CGROUP_V2
    assert _namespaces(daemon, "--cgroupns=private")["cgroup"] != host["cgroup"]


def test_pid_host_sees_the_hosts_processes(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    out = run_output(daemon, "--pid=host", "busybox", "cat", f"/proc/{daemon.proc.pid}/cmdline")
    assert "dockyard" in out
    isolated = daemon.docker("run", "--rm", "busybox", "ls", "/proc")
    assert str(daemon.proc.pid) not in isolated.stdout.split() or daemon.proc.pid < 10


def test_init_runs_docker_init_as_pid_1(daemon: DaemonProcess, names: list[str]) -> None:
    names.append("init1")
    out = daemon.docker(
        "run", "--name", "init1", "--init", "busybox", "ps", "-o", "pid,args"
    ).stdout
    first = out.splitlines()[1].split(None, 1)
    assert first == ["1", "/sbin/docker-init -- ps -o pid,args"]
    assert inspect(daemon, "init1")["HostConfig"]["Init"] is True


def test_security_opts_for_absent_lsms_are_accepted_as_dockerd_does(
    daemon: DaemonProcess,
) -> None:
    # No AppArmor or SELinux on this host: dockerd 20.10 records and ignores them.
    out = run_output(
        daemon, "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
        "busybox", "echo", "ok",
    )  # fmt: skip
    assert out == "ok\n"


# --- errors at create ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--cap-add", "foo"), 'invalid CapAdd: unknown capability: "CAP_FOO"'),
        (("--cap-drop", "bar"), 'invalid CapDrop: unknown capability: "CAP_BAR"'),
        (("-m", "4m"), "Minimum memory limit allowed is 6MB"),
        (("--memory-reservation", "1m"), "Minimum memory reservation allowed is 6MB"),
        (("--cpuset-cpus", "64"), "Requested CPUs are not available - requested 64, available: "),
        (("--cpus", "512"), "Range of CPUs is from 0.01 to "),
        (("-m", "10m", "--memory-swap", "5m"), "Minimum memoryswap limit should be larger"),
        (("--stop-signal", "FOO"), "Invalid signal: FOO"),
    ],
)
def test_invalid_settings_fail_at_create_in_dockers_words(
    daemon: DaemonProcess, flags: tuple[str, ...], message: str
) -> None:
    result = daemon.docker("create", *flags, "busybox", "true", check=False)
    assert result.returncode == 1, result
    assert f"Error response from daemon: {message}" in result.stderr
    assert daemon.docker("ps", "-aq").stdout == ""


def test_an_invalid_device_mode_is_a_400(daemon: DaemonProcess) -> None:
    # The CLI refuses "rwx" itself; a raw API client gets the daemon's answer.
    status, body = daemon.api(
        "POST",
        "/containers/create",
        {
            "Image": "busybox",
            "Cmd": ["true"],
            "HostConfig": {
                "Devices": [
                    {"PathOnHost": "/dev/null", "PathInContainer": "/x", "CgroupPermissions": "rwx"}
                ]
            },
        },
    )
    assert (status, body) == (400, {"message": "invalid device mode: rwx"})


# --- resources -----------------------------------------------------------------------------


def test_resource_limits_are_in_the_containers_cgroup(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("res1")
    result = daemon.docker(
        "run", "-d", "--name", "res1", "-m", "64m", "--memory-reservation", "32m",
        "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "100",
        "--blkio-weight", "300", "busybox", "sleep", "300",
    )  # fmt: skip
    cid = result.stdout.strip()
    blkio_supported = Path("/sys/fs/cgroup/blkio/blkio.weight").exists() or CGROUP_V2
    if not blkio_supported:
        assert "Your kernel does not support Block I/O weight" in result.stderr
    if CGROUP_V2:
        assert cgroup_file(cid, "", "", "memory.max") == str(64 << 20)
        assert cgroup_file(cid, "", "", "cpu.max") == "50000 100000"
        assert cgroup_file(cid, "", "", "pids.max") == "100"
        assert cgroup_file(cid, "", "", "cpuset.cpus") == "0"
    else:
        assert cgroup_file(cid, "memory", "memory.limit_in_bytes", "") == str(64 << 20)
        assert cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes", "") == str(128 << 20)
        assert cgroup_file(cid, "memory", "memory.soft_limit_in_bytes", "") == str(32 << 20)
        assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us", "") == "50000"
        assert cgroup_file(cid, "cpu", "cpu.cfs_period_us", "") == "100000"
        assert cgroup_file(cid, "cpu", "cpu.shares", "") == "512"
        assert cgroup_file(cid, "cpuset", "cpuset.cpus", "") == "0"
        assert cgroup_file(cid, "pids", "pids.max", "") == "100"
        if blkio_supported:
            assert cgroup_file(cid, "blkio", "blkio.weight", "") == "300"
        # The container reads its own limits (its cgroup is its /sys/fs/cgroup).
        inside = daemon.docker(
            "exec", "res1", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
        )  # fmt: skip
        assert inside.stdout.split() == [str(64 << 20), "100"]
    assert (
        daemon.docker(
            "exec", "res1", "grep", "Cpus_allowed_list", "/proc/self/status"
        ).stdout.split()[-1]
        == "0"
    )
    hc = inspect(daemon, "res1")["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (
        64 << 20,
        128 << 20,
        32 << 20,
    )
    assert (hc["NanoCpus"], hc["CpuShares"], hc["CpusetCpus"], hc["PidsLimit"]) == (
        500_000_000,
        512,
        "0",
        100,
    )


def test_an_out_of_memory_kill_shows_in_inspect(daemon: DaemonProcess, names: list[str]) -> None:
    names.extend(["oom1", "oom2", "notoom"])
    result = daemon.docker(
        "run", "--name", "oom1", "-m", "8m", "busybox", "sh", "-c",
        "x=a; while true; do x=$x$x; done",
        check=False,
    )  # fmt: skip
    assert result.returncode == 137, result
    state = inspect(daemon, "oom1")["State"]
    assert (state["OOMKilled"], state["ExitCode"], state["Status"]) == (True, 137, "exited")
    result = daemon.docker(
        "run", "--name", "oom2", "-m", "8m", "busybox", "tail", "/dev/zero", check=False
    )
    assert result.returncode == 137, result
    assert inspect(daemon, "oom2")["State"]["OOMKilled"] is True
    # A plain SIGKILL is not an OOM kill; and the daemon is still fine.
    daemon.docker("run", "-d", "--name", "notoom", "-m", "8m", "busybox", "sleep", "300")
    daemon.docker("kill", "notoom")
    state = await_exit(daemon, "notoom")
    assert (state["OOMKilled"], state["ExitCode"]) == (False, 137)
    assert daemon.ping()
    assert daemon.docker("run", "--rm", "busybox", "echo", "alive").stdout == "alive\n"


def test_a_thousand_processes_do_not_harm_the_daemon(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.extend(["fork1", "fork2"])
    spawn = "i=0; while [ $i -lt 1000 ]; do sleep 300 & i=$((i+1)); done; echo started; wait"
    cid = daemon.docker("run", "-d", "--name", "fork1", "busybox", "sh", "-c", spawn).stdout.strip()
    await_log(daemon, "fork1", "started")
    if not CGROUP_V2:
        assert int(cgroup_file(cid, "pids", "pids.current", "")) > 1000
    assert "fork1" in daemon.docker("ps", "--format", "{{.Names}}").stdout
    daemon.docker("rm", "-f", "fork1")
    # With --pids-limit the shell cannot fork beyond the limit, and exits on that error.
    limited = daemon.docker(
        "run", "--name", "fork2", "--pids-limit", "50", "busybox", "sh", "-c", spawn,
        check=False,
    )  # fmt: skip
    assert limited.returncode != 0
    assert "can't fork" in limited.stderr
    assert daemon.ping()
    assert daemon.docker("run", "--rm", "busybox", "echo", "alive").stdout == "alive\n"


# --- stop signal and timeout -------------------------------------------------------------


def test_stop_uses_the_containers_stop_signal_and_timeout(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.extend(["sig1", "tmo1"])
    daemon.docker(
        "run", "-d", "--name", "sig1", "--stop-signal", "SIGUSR1", "busybox", "sh", "-c",
        'trap "echo got-usr1; exit 7" USR1; echo ready; while true; do sleep 0.1; done',
    )  # fmt: skip
    await_log(daemon, "sig1", "ready")
    daemon.docker("stop", "sig1")
    assert inspect(daemon, "sig1")["State"]["ExitCode"] == 7
    assert "got-usr1" in daemon.docker("logs", "sig1").stdout
    assert inspect(daemon, "sig1")["Config"]["StopSignal"] == "SIGUSR1"
    # PID 1 ignores SIGTERM without a handler: the stop timeout (1s) then kills it.
    daemon.docker("run", "-d", "--name", "tmo1", "--stop-timeout", "1", "busybox", "sleep", "300")
    started = time.monotonic()
    daemon.docker("stop", "tmo1")
    assert time.monotonic() - started < 8  # the default would be 10s
    record = inspect(daemon, "tmo1")
    assert (record["State"]["ExitCode"], record["Config"]["StopTimeout"]) == (137, 1)


# --- docker update -----------------------------------------------------------------------


def test_update_a_running_container(daemon: DaemonProcess, names: list[str]) -> None:
    names.append("upd1")
    cid = daemon.docker("run", "-d", "--name", "upd1", "busybox", "sleep", "300").stdout.strip()
    daemon.docker(
        "update", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "20",
        "--restart", "on-failure:3", "upd1",
    )  # fmt: skip
    if not CGROUP_V2:
        assert cgroup_file(cid, "memory", "memory.limit_in_bytes", "") == str(32 << 20)
        assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us", "") == "50000"
        assert cgroup_file(cid, "pids", "pids.max", "") == "20"
    else:
        assert cgroup_file(cid, "", "", "memory.max") == str(32 << 20)
    hc = inspect(daemon, "upd1")["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"]) == (32 << 20, 500_000_000, 20)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    status, body = daemon.api("POST", "/containers/upd1/update", {"CpuShares": 512})
    assert (status, body) == (200, {"Warnings": []})
    # Zero and null fields of an update body keep what was set (the CLI sends them all).
    hc = inspect(daemon, "upd1")["HostConfig"]
    assert (hc["Memory"], hc["PidsLimit"], hc["CpuShares"]) == (32 << 20, 20, 512)
    daemon.docker("update", "--pids-limit", "-1", "upd1")
    if not CGROUP_V2:
        assert cgroup_file(cid, "pids", "pids.max", "") == "max"
        assert cgroup_file(cid, "cpu", "cpu.shares", "") == "512"


def test_update_errors_in_dockers_words(daemon: DaemonProcess, names: list[str]) -> None:
    names.append("upd2")
    daemon.docker(
        "run", "-d", "--name", "upd2", "-m", "20m", "--memory-swap", "20m", "busybox",
        "sleep", "300",
    )  # fmt: skip
    cid = inspect(daemon, "upd2")["Id"]
    conflict = daemon.docker("update", "--memory", "64m", "upd2", check=False)
    assert conflict.returncode == 1
    assert (
        f"Error response from daemon: Cannot update container {cid}: Memory limit should be "
        "smaller than already set memoryswap limit, update the memoryswap at the same time"
    ) in conflict.stderr
    too_small = daemon.docker("update", "--memory", "4m", "upd2", check=False)
    assert "Error response from daemon: Minimum memory limit allowed is 6MB" in too_small.stderr
    missing = daemon.docker("update", "--memory", "64m", "nosuchcontainer", check=False)
    assert missing.returncode == 1
    assert "No such container: nosuchcontainer" in missing.stderr
    assert inspect(daemon, "upd2")["HostConfig"]["Memory"] == 20 << 20


def test_update_a_stopped_container_applies_at_its_next_start(
    daemon: DaemonProcess, names: list[str]
) -> None:
    names.append("upd3")
    daemon.docker("create", "--name", "upd3", "busybox", "sleep", "300")
    daemon.docker("update", "--memory", "48m", "--memory-swap", "96m", "upd3")
    daemon.docker("start", "upd3")
    cid = inspect(daemon, "upd3")["Id"]
    if not CGROUP_V2:
        assert cgroup_file(cid, "memory", "memory.limit_in_bytes", "") == str(48 << 20)
        assert cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes", "") == str(96 << 20)
    else:
        assert cgroup_file(cid, "", "", "memory.max") == str(48 << 20)
