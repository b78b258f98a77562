"""Networking and volumes end to end: the real docker CLI and SDK against `dockyard daemon`.

One daemon for the module on the real host network stack: the default bridge, user networks,
published ports, links, the embedded DNS, internal networks, named volumes and bind mounts,
a daemon restart in the middle. A "remote host" is a network namespace the test creates
(tests/support/registry.py remote_host), so published ports are tried from an address that
is not the host's own and egress is tried to a host that is not the engine's.

The host is snapshotted before the daemon starts (`ip -o link`, `iptables-save` without
counters, `/proc/mounts`) and compared after `docker system prune -a --volumes` and the
daemon's stop: everything the engine made (bridges, veths, rules, namespaces, mounts) must be
gone, and a restart must not have duplicated anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.engine.test_daemon_cli import COMMAND_TIMEOUT_S, DaemonProcess, running_daemon
from tests.support.registry import RemoteHost, remote_host
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

IP = shutil.which("ip") or "/usr/sbin/ip"
IPTABLES_SAVE = shutil.which("iptables-save") or "/usr/sbin/iptables-save"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
READY_TIMEOUT_S = 20.0
# Inside a container: the server it polls may still be starting (the retry is the condition).
NAP = "sleep 0.1"
# busybox-static 1.35's wget segfaults with -T; `timeout` bounds it instead, under sh: busybox
# timeout execs the command in its own process, and PID 1 ignores the SIGTERM it sends (`||`
# keeps sh from exec'ing the last command, which would make timeout PID 1 again).
RETRY_S = 0.05
WEB_SCRIPT = (
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
)


def host_snapshot() -> dict[str, list[str]]:
    """What the engine may change on the host, normalised for comparison."""
    links = subprocess.run([IP, "-o", "link"], capture_output=True, text=True, check=True)
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines())
    rules = subprocess.run([IPTABLES_SAVE], capture_output=True, text=True, check=True)
    kept = [
        re.sub(r"\[\d+:\d+\]", "", line)
        for line in rules.stdout.splitlines()
        if line and not line.startswith("#")
    ]
    with open("/proc/mounts") as f:
        mounts = sorted(line.split()[1] for line in f)
    netns = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=True)
    return {
        "links": names,
        "iptables": sorted(kept),
        "mounts": mounts,
        "netns": sorted(netns.stdout.split()),
    }


def http_get(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        return str(reply.read().decode())


def await_http(url: str) -> str:
    """The body at `url` once the server answers (it starts asynchronously)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            return http_get(url, timeout_s=2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(RETRY_S)  # polling the port is the readiness condition


def in_netns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IP, "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=check,
    )


@pytest.fixture(scope="module")
def snapshot_before(remote: RemoteHost) -> dict[str, list[str]]:
    # After the remote host exists (it lives as long as the module), before the daemon runs.
    return host_snapshot()


@pytest.fixture(scope="module")
def daemon(snapshot_before: dict[str, list[str]]) -> Iterator[DaemonProcess]:
    with running_daemon("dy-net-", DaemonProcess, prune=True) as d:
        yield d


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteHost]:
    with remote_host() as host:
        yield host


@pytest.fixture(scope="module")
def remote_web(remote: RemoteHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server on the remote host; its URL."""
    root = tmp_path_factory.mktemp("remote-www")
    (root / "index.html").write_text("remote\n")
    port = 8000
    proc = subprocess.Popen(
        [IP, "netns", "exec", remote.netns, "busybox", "httpd", "-f", "-p", str(port), "-h", root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{remote.address}:{port}/"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while in_netns(remote.netns, "busybox", "wget", "-qO-", url, check=False).returncode:
            assert time.monotonic() < deadline, "the remote web server did not start"
            time.sleep(RETRY_S)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def address_facing(remote: RemoteHost) -> str:
    """The host's own address on the link to the remote host (not loopback)."""
    shown = subprocess.run(
        [IP, "-o", "-4", "addr", "show", "dev", remote.host_link],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.split()[3].split("/")[0]


def run_d(daemon: DaemonProcess, *args: str) -> str:
    return daemon.docker("run", "-d", *args).stdout.strip()


def inspect(daemon: DaemonProcess, name: str) -> dict[str, object]:
    return dict(json.loads(daemon.docker("inspect", name).stdout)[0])


def test_published_port_from_loopback_host_address_and_remote_host(
    daemon: DaemonProcess, remote: RemoteHost
) -> None:
    port = free_port("0.0.0.0")
    run_d(daemon, "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c", WEB_SCRIPT)
    cid = inspect(daemon, "web")["Id"]
    body = await_http(f"http://127.0.0.1:{port}/")
    assert body == f"hello-from-{str(cid)[:12]}\n"
    # The host's own non-loopback address (the link to the remote host).
    host_address = address_facing(remote)
    assert http_get(f"http://{host_address}:{port}/") == body
    # Another host.
    got = in_netns(remote.netns, "busybox", "wget", "-qO-", f"http://{host_address}:{port}/")
    assert got.stdout == body
    assert daemon.docker("port", "web").stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{port}"]
    settings = inspect(daemon, "web")["NetworkSettings"]
    assert isinstance(settings, dict)
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert settings["IPAddress"] and settings["Networks"]["bridge"]["IPAddress"]


def test_port_conflicts_are_refused_clearly(daemon: DaemonProcess) -> None:
    port = free_port("0.0.0.0")
    run_d(daemon, "--name", "holder", "-p", f"{port}:80", "busybox", "sleep", "600")
    again = daemon.docker(
        "run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep", "600", check=False
    )
    assert again.returncode == 125
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in again.stderr
    daemon.docker("rm", "-f", "second", "holder")
    # A host process holds the port: the start fails, the daemon carries on.
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        busy = held.getsockname()[1]
        taken = daemon.docker(
            "run", "-d", "--name", "third", "-p", f"{busy}:80", "busybox", "true", check=False
        )
        assert taken.returncode == 125
        assert "address already in use" in taken.stderr
    daemon.docker("rm", "-f", "third")


def test_ephemeral_and_publish_all_ports(daemon: DaemonProcess) -> None:
    run_d(daemon, "--name", "eph", "-p", "80", "--expose", "90", "-P", "busybox", "sleep", "600")
    run_d(daemon, "--name", "eph2", "-p", "80", "busybox", "sh", "-c", WEB_SCRIPT)
    lines = daemon.docker("port", "eph2").stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("80/tcp -> 0.0.0.0:")
    port = int(lines[0].rsplit(":", 1)[1])
    assert await_http(f"http://127.0.0.1:{port}/").startswith("hello-from-")
    eph = daemon.docker("port", "eph").stdout.splitlines()
    assert sorted(line.split(" -> ")[0] for line in eph) == ["80/tcp", "90/tcp"]
    daemon.docker("rm", "-f", "eph", "eph2")


def test_user_network_resolves_names_aliases_and_ids(daemon: DaemonProcess) -> None:
    daemon.docker("network", "create", "--subnet", "10.251.7.0/24", "--label", "a=b", "appnet")
    run_d(
        daemon,
        "--name",
        "srv",
        "--network",
        "appnet",
        "--network-alias",
        "db",
        "--ip",
        "10.251.7.50",
        "busybox",
        "sh",
        "-c",
        WEB_SCRIPT,
    )
    sid = str(inspect(daemon, "srv")["Id"])[:12]
    for name in ("srv", "db", sid, "SRV"):
        got = daemon.docker(
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "sh",
            "-c",
            f"for i in $(seq 100); do timeout 2 wget -qO- http://{name}/ && exit 0; {NAP}; done;"
            " exit 1",
        )
        assert got.stdout == f"hello-from-{sid}\n", name
    lookup = daemon.docker("run", "--rm", "--network", "appnet", "busybox", "nslookup", "db")
    assert "10.251.7.50" in lookup.stdout
    resolv = daemon.docker(
        "run", "--rm", "--network", "appnet", "busybox", "cat", "/etc/resolv.conf"
    )
    assert "nameserver 127.0.0.11" in resolv.stdout
    net = json.loads(daemon.docker("network", "inspect", "appnet").stdout)[0]
    assert (
        net["IPAM"]["Config"] == [{"Subnet": "10.251.7.0/24"}]
        or net["IPAM"]["Config"][0]["Subnet"] == "10.251.7.0/24"
    )
    assert net["Labels"] == {"a": "b"}
    assert [c["IPv4Address"] for c in net["Containers"].values()] == ["10.251.7.50/24"]
    # Isolation: another user network cannot reach srv, by name or address.
    daemon.docker("network", "create", "othernet")
    blocked = daemon.docker(
        "run",
        "--rm",
        "--network",
        "othernet",
        "busybox",
        "sh",
        "-c",
        "timeout 2 wget -qO- http://10.251.7.50/ || exit 1",
        check=False,
    )
    assert blocked.returncode != 0
    unknown = daemon.docker(
        "run", "--rm", "--network", "othernet", "busybox", "nslookup", "srv", check=False
    )
    assert "10.251.7.50" not in unknown.stdout
    # connect/disconnect: once connected, othernet's container reaches srv by name.
    run_d(daemon, "--name", "roamer", "--network", "othernet", "busybox", "sleep", "600")
    daemon.docker("network", "connect", "--alias", "walker", "appnet", "roamer")
    reach = daemon.docker("exec", "roamer", "timeout", "5", "wget", "-qO-", "http://srv/")
    assert reach.stdout == f"hello-from-{sid}\n"
    daemon.docker("network", "disconnect", "appnet", "roamer")
    gone = daemon.docker(
        "exec", "roamer", "timeout", "2", "wget", "-qO-", "http://srv/", check=False
    )
    assert gone.returncode != 0
    rm_busy = daemon.docker("network", "rm", "appnet", check=False)
    assert rm_busy.returncode != 0 and "active endpoints" in rm_busy.stderr
    daemon.docker("rm", "-f", "roamer", "srv")
    daemon.docker("network", "rm", "appnet", "othernet")


def test_legacy_links_set_environment_and_hosts(daemon: DaemonProcess) -> None:
    run_d(
        daemon, "--name", "redis", "--expose", "6379", "-e", "SECRET=s1", "busybox", "sleep", "600"
    )
    ip = inspect(daemon, "redis")["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    env = daemon.docker("run", "--rm", "--name", "app", "--link", "redis:cache", "busybox", "env")
    lines = set(env.stdout.splitlines())
    assert {
        f"CACHE_PORT=tcp://{ip}:6379",
        f"CACHE_PORT_6379_TCP=tcp://{ip}:6379",
        f"CACHE_PORT_6379_TCP_ADDR={ip}",
        "CACHE_PORT_6379_TCP_PORT=6379",
        "CACHE_PORT_6379_TCP_PROTO=tcp",
        "CACHE_NAME=/app/cache",
        "CACHE_ENV_SECRET=s1",
    } <= lines, env.stdout
    hosts = daemon.docker("run", "--rm", "--link", "redis:cache", "busybox", "cat", "/etc/hosts")
    assert re.search(rf"^{re.escape(str(ip))}\tcache\b", hosts.stdout, re.M), hosts.stdout
    ping = daemon.docker("run", "--rm", "--link", "redis:cache", "busybox", "ping", "-c1", "cache")
    assert "1 packets received" in ping.stdout
    stopped = daemon.docker("stop", "-t", "0", "redis")
    assert stopped.returncode == 0
    refused = daemon.docker("run", "--rm", "--link", "redis:cache", "busybox", "true", check=False)
    assert refused.returncode == 125 and "Cannot link to a non running container" in refused.stderr
    daemon.docker("rm", "-f", "redis")


@contextlib.contextmanager
def forward_policy_drop() -> Iterator[None]:
    """FORWARD's policy set to DROP, as a dockerd on the same host sets it; put back after."""
    first = subprocess.run([IPTABLES, "-S", "FORWARD"], capture_output=True, text=True, check=True)
    policy = first.stdout.splitlines()[0].split()[-1]  # "-P FORWARD ACCEPT"
    subprocess.run([IPTABLES, "-P", "FORWARD", "DROP"], check=True)
    try:
        yield
    finally:
        subprocess.run([IPTABLES, "-P", "FORWARD", policy], check=True)


def test_egress_and_published_ports_survive_a_forward_policy_of_drop(
    daemon: DaemonProcess, remote: RemoteHost, remote_web: str
) -> None:
    port = free_port("0.0.0.0")
    run_d(daemon, "--name", "dropweb", "-p", f"{port}:80", "busybox", "sh", "-c", WEB_SCRIPT)
    body = await_http(f"http://127.0.0.1:{port}/")
    with forward_policy_drop():
        out = daemon.docker(
            "run", "--rm", "busybox", "sh", "-c", f"timeout 5 wget -qO- {remote_web} || exit 1"
        )
        assert out.stdout == "remote\n"
        host_address = address_facing(remote)
        got = in_netns(remote.netns, "busybox", "wget", "-qO-", f"http://{host_address}:{port}/")
        assert got.stdout == body
    daemon.docker("rm", "-f", "dropweb")


def test_internal_network_has_no_egress(daemon: DaemonProcess, remote_web: str) -> None:
    daemon.docker("network", "create", "--internal", "sealed")
    sealed = daemon.docker(
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "sh",
        "-c",
        f"timeout 2 wget -qO- {remote_web} || exit 1",
        check=False,
    )
    assert sealed.returncode != 0
    routes = daemon.docker("run", "--rm", "--network", "sealed", "busybox", "ip", "route")
    assert "default" not in routes.stdout
    daemon.docker("network", "rm", "sealed")


def test_named_volume_outlives_its_container_and_binds_read_only(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    daemon.docker("run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    out = daemon.docker("run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f")
    assert out.stdout == "kept\n"
    run_d(daemon, "--name", "user", "-v", "keep:/data", "busybox", "sleep", "600")
    busy = daemon.docker("volume", "rm", "keep", check=False)
    assert busy.returncode != 0 and "volume is in use" in busy.stderr
    daemon.docker("rm", "-f", "user")
    daemon.docker("volume", "rm", "keep")
    # A read-only bind mount: readable, not writable.
    (tmp_path / "cfg").write_text("setting\n")
    ro = daemon.docker(
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/cfg:ro",
        "busybox",
        "sh",
        "-c",
        "cat /cfg/cfg; echo x > /cfg/new",
        check=False,
    )
    assert ro.stdout == "setting\n" and "Read-only file system" in ro.stderr
    assert not (tmp_path / "new").exists()


def test_sdk_network_volume_and_published_port(daemon: DaemonProcess) -> None:
    client = docker.DockerClient(base_url=f"unix://{daemon.sock}", timeout=COMMAND_TIMEOUT_S)
    try:
        net = client.networks.create("sdknet", labels={"by": "sdk"})
        vol = client.volumes.create("sdkvol", labels={"by": "sdk"})
        port = free_port("0.0.0.0")
        ctr = client.containers.run(
            "busybox",
            ["sh", "-c", WEB_SCRIPT],
            name="sdkweb",
            detach=True,
            network="sdknet",
            ports={"80/tcp": port},
            volumes={"sdkvol": {"bind": "/www-data", "mode": "rw"}},
        )
        assert await_http(f"http://127.0.0.1:{port}/").startswith("hello-from-")
        ctr.reload()
        assert ctr.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        assert "sdknet" in ctr.attrs["NetworkSettings"]["Networks"]
        mounts = ctr.attrs["Mounts"]
        assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [
            ("volume", "sdkvol", "/www-data")
        ]
        ctr.remove(force=True)
        net.remove()
        vol.remove()
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.containers.get("sdkweb").remove(force=True)
        client.close()


def test_daemon_restart_keeps_ports_names_and_adds_no_duplicates(daemon: DaemonProcess) -> None:
    port = free_port("0.0.0.0")
    daemon.docker("network", "create", "stay")
    run_d(
        daemon,
        "--name",
        "keepweb",
        "--network",
        "stay",
        "-p",
        f"{port}:80",
        "busybox",
        "sh",
        "-c",
        WEB_SCRIPT,
    )
    body = await_http(f"http://127.0.0.1:{port}/")
    before = host_snapshot()
    daemon.stop()
    # Containers outlive the daemon, and so does their published port (kernel NAT).
    assert http_get(f"http://127.0.0.1:{port}/") == body
    daemon.start()
    assert http_get(f"http://127.0.0.1:{port}/") == body
    assert host_snapshot() == before
    got = daemon.docker(
        "run",
        "--rm",
        "--network",
        "stay",
        "busybox",
        "sh",
        "-c",
        "timeout 5 wget -qO- http://keepweb/ || exit 1",
    )
    assert got.stdout == body
    names = daemon.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(names) == ["bridge", "host", "none", "stay"]
    daemon.docker("rm", "-f", "keepweb")
    daemon.docker("network", "rm", "stay")


def test_a_container_that_dies_while_the_daemon_is_killed_is_cleaned_up_at_restart(
    daemon: DaemonProcess,
) -> None:
    port = free_port("0.0.0.0")
    veths = {n for n in host_snapshot()["links"] if n.startswith("veth")}
    run_d(daemon, "--name", "doomed", "-p", f"{port}:80", "busybox", "sh", "-c", WEB_SCRIPT)
    await_http(f"http://127.0.0.1:{port}/")
    (veth,) = {n for n in host_snapshot()["links"] if n.startswith("veth")} - veths
    pid = inspect(daemon, "doomed")["State"]["Pid"]  # type: ignore[index]
    assert daemon.proc is not None
    daemon.proc.kill()  # kill -9: no orderly stop
    daemon.proc.wait()
    daemon.proc = None
    os.kill(int(pid), signal.SIGKILL)  # the container dies while nobody watches
    daemon.start()
    # The restarted daemon records the exit, then removes the namespace, the veth, the NAT
    # rules and the port reservation (asynchronously: awaited, not assumed).
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (
        veth in host_snapshot()["links"]
        or "exited" not in daemon.docker("inspect", "-f", "{{.State.Status}}", "doomed").stdout
    ):
        assert time.monotonic() < deadline, "the dead container's veth or state stayed"
        time.sleep(RETRY_S)
    rules = subprocess.run([IPTABLES_SAVE, "-t", "nat"], capture_output=True, text=True).stdout
    assert f"--dport {port} " not in rules
    run_d(daemon, "--name", "reborn", "-p", f"{port}:80", "busybox", "sh", "-c", WEB_SCRIPT)
    assert await_http(f"http://127.0.0.1:{port}/").startswith("hello-from-")
    daemon.docker("rm", "-f", "doomed", "reborn")


def test_bridge_none_runs_default_containers_without_a_network() -> None:
    """dockerd -b none: no default bridge; a container in the default mode has only `lo`,
    one that names `bridge` is refused, user networks still work."""

    def without_bridge(base: Path) -> DaemonProcess:
        d = DaemonProcess(base)
        d.bridge = "none"
        return d

    with running_daemon("dy-nobr-", without_bridge, prune=True) as d:
        links = d.docker("run", "--rm", "busybox", "ip", "-o", "link").stdout.splitlines()
        assert [line.split(":")[1].strip() for line in links] == ["lo"]
        refused = d.docker("run", "--rm", "--network", "bridge", "busybox", "true", check=False)
        assert "network bridge not found" in refused.stderr
        names = d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert sorted(names) == ["host", "none"]


def test_prune_and_stop_leave_the_host_as_it_was(
    daemon: DaemonProcess, snapshot_before: dict[str, list[str]]
) -> None:
    # Runs last in the module: everything created above is gone; stop the daemon and compare.
    daemon.remove_all_containers()
    daemon.docker("system", "prune", "-a", "--volumes", "-f")
    assert daemon.docker("volume", "ls", "-q").stdout == ""
    daemon.stop()
    after = host_snapshot()
    base_prefix = str(daemon.base.resolve())
    after["mounts"] = [m for m in after["mounts"] if not m.startswith(base_prefix)]
    assert after == snapshot_before
    daemon.start()  # the fixture's teardown expects a running daemon
