"""The rtnetlink client and namespace helpers against the real kernel, checked with iproute2.

Nothing here touches the host's own links: the "host side" of an endpoint (bridge, host end
of the veth) lives in a namespace the test creates, the "container side" in another. Every
namespace is tracked and deleted at teardown, which then fails the test if a mount or a file
is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.engine.network.netlink import Link, NetlinkError, Rtnl
from dockyard.engine.network.netns import (
    create_netns,
    delete_netns,
    entered,
    netns_exists,
    run_in,
    set_sysctl,
)

pytestmark = pytest.mark.integration

BUSYBOX = "/usr/bin/busybox"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # no skips: a host without iproute2/util-linux fails loudly
        pytest.fail(f"{name} is required for the netlink integration tests")
    return found


def mounts_under(directory: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line for line in f if line.split()[1].startswith(str(directory))]


class Namespaces:
    """Creates network namespaces under one directory and removes every one of them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.created: list[Path] = []

    def new(self, label: str) -> Path:
        path = self.directory / f"{label}-{uuid.uuid4().hex[:8]}"
        self.created.append(path)
        create_netns(path)
        return path

    def ip(self, ns: Path, *args: str) -> Any:
        """`ip -j <args>` run inside the namespace, parsed."""
        out = subprocess.run(
            [_tool("nsenter"), f"--net={ns}", _tool("ip"), "-j", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out) if out.strip() else []


@pytest.fixture
def namespaces(tmp_path: Path) -> Iterator[Namespaces]:
    _tool("ip")
    _tool("nsenter")
    directory = tmp_path / "netns"  # a plain directory on a private mount
    directory.mkdir()
    spaces = Namespaces(directory)
    try:
        yield spaces
    finally:
        for path in spaces.created:
            delete_netns(path)
        leaked_mounts = mounts_under(directory)
        leaked_files = list(directory.iterdir())
        directory.rmdir()
    assert leaked_mounts == [], f"namespace mounts left: {leaked_mounts}"
    assert leaked_files == [], f"namespace files left: {leaked_files}"


def ns_inode(path: str | Path) -> int:
    return os.stat(path).st_ino


def link_named(links: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [link for link in links if link["ifname"] == name]
    assert len(matches) == 1, f"{name} not in {[link['ifname'] for link in links]}"
    return matches[0]


# --- namespaces -----------------------------------------------------------------------------
def test_create_and_delete_namespace(namespaces: Namespaces) -> None:
    ns = namespaces.new("c")
    assert netns_exists(ns)
    assert ns_inode(ns) != ns_inode("/proc/self/ns/net")
    assert [f"{line.split()[0]} {line.split()[2]}" for line in mounts_under(ns)] == ["nsfs nsfs"]
    # A fresh namespace holds only a loopback, down.
    (lo,) = namespaces.ip(ns, "link", "show")
    assert (lo["ifname"], lo["operstate"]) == ("lo", "DOWN")

    with pytest.raises(FileExistsError):
        create_netns(ns)  # a second mount would hide, and leak, the first
    assert len(mounts_under(ns)) == 1

    delete_netns(ns)
    assert not netns_exists(ns)
    assert not ns.exists()
    assert mounts_under(ns) == []
    delete_netns(ns)  # idempotent


def test_plain_file_is_not_a_namespace(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    assert not netns_exists(plain)
    assert not netns_exists(tmp_path / "missing")
    delete_netns(plain)  # not a mount: just unlinked
    assert not plain.exists()


def test_entered_returns_the_thread_to_its_namespace(namespaces: Namespaces) -> None:
    ns = namespaces.new("c")
    seen: dict[str, int] = {}

    def dedicated() -> None:
        seen["before"] = ns_inode("/proc/thread-self/ns/net")
        with entered(ns):
            seen["inside"] = ns_inode("/proc/thread-self/ns/net")
        seen["after"] = ns_inode("/proc/thread-self/ns/net")

    thread = threading.Thread(target=dedicated)
    thread.start()
    thread.join()
    assert seen == {"before": seen["before"], "inside": ns_inode(ns), "after": seen["before"]}
    assert ns_inode("/proc/thread-self/ns/net") == seen["before"]


def test_run_in_returns_and_raises_from_inside(namespaces: Namespaces) -> None:
    ns = namespaces.new("c")
    assert run_in(ns, lambda: ns_inode("/proc/thread-self/ns/net")) == ns_inode(ns)

    def fail() -> None:
        raise LookupError("from inside")

    with pytest.raises(LookupError, match="from inside"):
        run_in(ns, fail)


def test_sysctl_is_written_in_the_namespace_only(namespaces: Namespaces) -> None:
    ns = namespaces.new("c")
    host_value = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    set_sysctl(ns, "net.ipv4.ip_forward", "1")
    set_sysctl(ns, "net/ipv4/conf/lo/rp_filter", "2")
    read = run_in(ns, lambda: Path("/proc/sys/net/ipv4/ip_forward").read_text())
    assert read.strip() == "1"
    assert run_in(ns, lambda: Path("/proc/sys/net/ipv4/conf/lo/rp_filter").read_text()) == "2\n"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_value
    with pytest.raises(ValueError, match="not a network sysctl"):
        set_sysctl(ns, "kernel.hostname", "x")


# --- links, addresses, routes ---------------------------------------------------------------
def test_bridge_endpoint_as_docker_builds_it(namespaces: Namespaces) -> None:
    host_ns = namespaces.new("host")
    container_ns = namespaces.new("ctr")
    bridge, host_if, peer = "br-0a1b2c3d4e5f", "veth1a2b3c4", "veth9f8e7d6"
    mac = "02:42:ac:12:00:02"

    with Rtnl.open(host_ns) as host, Rtnl.open(container_ns) as container:
        # The network: a bridge with the gateway address (the bridge driver's createNetwork).
        host.add_bridge(bridge, mtu=1500)
        host.add_address(bridge, "172.18.0.1/16")
        host.add_address(bridge, "172.18.0.1/16")  # EEXIST is fine
        host.set_up(bridge)

        # The endpoint: the peer is born in the container namespace, then configured there.
        host.add_veth(host_if, peer, peer_netns=container_ns)
        host.set_master(host_if, bridge)
        host.set_hairpin(host_if, True)
        host.set_up(host_if)
        container.set_name(peer, "eth0")
        container.set_mac("eth0", mac)
        container.add_address("eth0", "172.18.0.2/16")
        container.set_up("eth0")
        container.add_default_route("172.18.0.1")

        # What iproute2 sees on the host side.
        host_links = namespaces.ip(host_ns, "-d", "link", "show")
        br = link_named(host_links, bridge)
        veth = link_named(host_links, host_if)
        assert br["linkinfo"]["info_kind"] == "bridge"
        assert "UP" in br["flags"]
        assert veth["linkinfo"]["info_kind"] == "veth"
        assert veth["master"] == bridge
        assert veth["linkinfo"]["info_slave_kind"] == "bridge"
        assert veth["linkinfo"]["info_slave_data"]["hairpin"] is True
        assert "UP" in veth["flags"]
        assert "link_netnsid" in veth  # its peer lives in another namespace
        assert peer not in [link["ifname"] for link in host_links]
        br_addrs = link_named(namespaces.ip(host_ns, "addr", "show"), bridge)["addr_info"]
        assert [(a["local"], a["prefixlen"]) for a in br_addrs if a["family"] == "inet"] == [
            ("172.18.0.1", 16)
        ]

        # ... and on the container side.
        eth0 = link_named(namespaces.ip(container_ns, "-d", "link", "show"), "eth0")
        assert eth0["address"] == mac
        assert eth0["linkinfo"]["info_kind"] == "veth"
        assert "UP" in eth0["flags"]
        inet = [
            a for a in link_named(namespaces.ip(container_ns, "addr"), "eth0")["addr_info"]
            if a["family"] == "inet"
        ]  # fmt: skip
        assert [(a["local"], a["prefixlen"], a["broadcast"]) for a in inet] == [
            ("172.18.0.2", 16, "172.18.255.255")
        ]
        default_routes = [r for r in namespaces.ip(container_ns, "route") if r["dst"] == "default"]
        assert [(r["gateway"], r["dev"]) for r in default_routes] == [("172.18.0.1", "eth0")]

        # The client's own view agrees with iproute2's.
        ours = {link.name: link for link in host.links()}
        assert ours[bridge].kind == "bridge"
        assert ours[host_if].master_index == ours[bridge].index
        assert ours[host_if].up
        assert ours[host_if].peer_netns_id is not None
        assert host.link(host_if) == ours[host_if]
        eth0_link = container.link("eth0")
        assert isinstance(eth0_link, Link)
        assert (eth0_link.mac, eth0_link.up, eth0_link.kind) == (mac, True, "veth")
        assert eth0_link.index == eth0["ifindex"]
        assert ("eth0", "172.18.0.2/16") in container.addresses()
        assert (bridge, "172.18.0.1/16") in host.addresses()
        assert sorted(container.routes()) == ["0.0.0.0/0", "172.18.0.0/16"]

        # The wire works: the container reaches its gateway through the bridge.
        if not os.access(BUSYBOX, os.X_OK):
            pytest.fail(f"{BUSYBOX} is required to ping through the bridge")
        subprocess.run(
            [_tool("nsenter"), f"--net={container_ns}", BUSYBOX, "ping", "-c", "1", "-W", "5",
             "172.18.0.1"],
            check=True,
            capture_output=True,
        )  # fmt: skip

        # Teardown as the driver does it: deleting the host end takes the peer along.
        host.delete_link(host_if)
        host.delete_link(host_if)  # idempotent
        assert container.link("eth0") is None
        assert [link["ifname"] for link in namespaces.ip(container_ns, "link")] == ["lo"]
        host.delete_link(bridge)
        assert [link["ifname"] for link in namespaces.ip(host_ns, "link")] == ["lo"]
        assert host.routes() == []


def test_mtu_rename_and_peer_in_the_same_namespace(namespaces: Namespaces) -> None:
    ns = namespaces.new("host")
    with Rtnl.open(ns) as rtnl:
        rtnl.add_veth("va", "vb", mtu=1400)
        assert {(link["ifname"], link["mtu"]) for link in namespaces.ip(ns, "link")} >= {
            ("va", 1400),
            ("vb", 1400),
        }
        rtnl.set_mtu("va", 1300)
        rtnl.set_name("vb", "vc")
        names = {link["ifname"]: link for link in namespaces.ip(ns, "link")}
        assert names["va"]["mtu"] == 1300
        assert "vb" not in names
        assert names["vc"]["link"] == "va"
        rtnl.delete_link("va")
        assert rtnl.link("vc") is None


def test_move_a_peer_created_in_the_host_namespace(namespaces: Namespaces) -> None:
    # moby's order: create both ends beside the bridge, then move the peer and rename it.
    host_ns, container_ns = namespaces.new("host"), namespaces.new("ctr")
    with Rtnl.open(host_ns) as host, Rtnl.open(container_ns) as container:
        host.add_veth("veth0a0b0c0", "veth0d0e0f0")
        host.set_netns("veth0d0e0f0", container_ns)
        assert host.link("veth0d0e0f0") is None
        container.set_name("veth0d0e0f0", "eth0")
        moved = link_named(namespaces.ip(container_ns, "link"), "eth0")
        assert moved["link_netnsid"] is not None
        assert container.link("eth0") is not None
        with pytest.raises(NetlinkError) as gone:
            host.set_netns("veth0d0e0f0", container_ns)
        assert str(gone.value) == "move veth0d0e0f0: No such device"
        host.delete_link("veth0a0b0c0")
        assert container.link("eth0") is None


def test_kernel_refusals_name_the_operation(namespaces: Namespaces) -> None:
    ns = namespaces.new("host")
    with Rtnl.open(ns) as rtnl:
        rtnl.add_bridge("br0")
        with pytest.raises(NetlinkError) as exists:
            rtnl.add_bridge("br0")
        assert exists.value.errno == errno.EEXIST
        assert str(exists.value) == "add bridge br0: File exists"

        rtnl.add_veth("veth1a2b3c", "veth1a2b3d")
        with pytest.raises(NetlinkError) as veth_exists:
            rtnl.add_veth("veth1a2b3c", "other")
        assert str(veth_exists.value) == "add veth veth1a2b3c: File exists"

        with pytest.raises(NetlinkError) as taken:
            rtnl.set_name("veth1a2b3c", "br0")
        assert (taken.value.errno, str(taken.value)) == (
            errno.EEXIST,
            "rename veth1a2b3c: File exists",
        )

        assert rtnl.link("missing") is None
        with pytest.raises(NetlinkError) as missing:
            rtnl.set_up("missing")
        assert (missing.value.errno, str(missing.value)) == (
            errno.ENODEV,
            "set up missing: No such device",
        )
        with pytest.raises(NetlinkError) as no_master:
            rtnl.set_master("veth1a2b3c", "missing")
        assert no_master.value.errno == errno.ENODEV

        with pytest.raises(NetlinkError) as unreachable:
            rtnl.add_default_route("172.18.0.1")  # no connected route to the gateway
        assert unreachable.value.errno == errno.ENETUNREACH
        assert str(unreachable.value).startswith("add default route via 172.18.0.1:")

        rtnl.delete_link("veth1a2b3c")
        rtnl.delete_link("br0")


def test_socket_stays_in_its_namespace_whatever_thread_uses_it(namespaces: Namespaces) -> None:
    first, second = namespaces.new("a"), namespaces.new("b")
    with Rtnl.open(first) as a, Rtnl.open(second) as b:
        a.add_bridge("br-a")
        assert b.link("br-a") is None
        # Used from another thread (as asyncio.to_thread does), it still acts in `first`.
        run_in(second, lambda: a.add_bridge("br-a2"))
        assert {link.name for link in a.links()} == {"lo", "br-a", "br-a2"}
        assert {link.name for link in b.links()} == {"lo"}


def test_dumps_span_many_datagrams(namespaces: Namespaces) -> None:
    # 400 links do not fit one datagram: the dump arrives in NLM_F_MULTI parts over many
    # reads. Deleting the namespace at teardown removes them all with it.
    ns = namespaces.new("many")
    with Rtnl.open(ns) as rtnl:
        for i in range(200):
            rtnl.add_veth(f"va{i}", f"vb{i}")
            rtnl.add_address(f"va{i}", f"10.{i}.0.1/24")
        names = {link.name for link in rtnl.links()}
        addresses = rtnl.addresses()
        routes = rtnl.routes()
    expected = {f"va{i}" for i in range(200)} | {f"vb{i}" for i in range(200)} | {"lo"}
    assert names == expected
    assert {link["ifname"] for link in namespaces.ip(ns, "link")} == expected
    assert sorted(addresses) == sorted((f"va{i}", f"10.{i}.0.1/24") for i in range(200))
    # The links are down, so their connected routes are not installed yet.
    assert routes == []


def test_one_client_shared_by_threads(namespaces: Namespaces) -> None:
    # asyncio.to_thread may run two calls on one Rtnl at once: each must get its own answer.
    ns = namespaces.new("shared")
    failures: list[BaseException] = []
    with Rtnl.open(ns) as rtnl:
        rtnl.add_bridge("br0")

        def worker(n: int) -> None:
            try:
                for _ in range(50):
                    assert rtnl.link("br0") is not None
                    assert len(rtnl.links()) == 2
                    assert rtnl.link(f"none{n}") is None
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
