"""The embedded DNS server in real network namespaces, asked by clients nobody here wrote.

Each test creates its own namespaces (`ip netns add`, a bind-mounted netns file as the daemon
uses) and a real upstream, dnsmasq on a loopback port, and removes all of it at the end; a
leak check fails the test if a namespace or the dnsmasq process survives. Clients: busybox
`nslookup`, glibc `getent hosts` (with a private mount namespace whose /etc/resolv.conf names
127.0.0.11, as a container's does), and dnspython for TCP.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.engine.network.dns.records import DnsEndpoint, DnsTable
from dockyard.engine.network.dns.resolvconf import UpstreamServer
from dockyard.engine.network.dns.server import DnsServerError, EmbeddedDns
from tests.support.processes import wait_pid_gone

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

TOOLS = ("ip", "nsenter", "unshare", "busybox", "getent", "dnsmasq", "iptables-save", "ss")
COMMAND_TIMEOUT_S = 30.0
UPSTREAM_ADDRESS = "10.9.8.7"

WEB = "a1" * 32
CLIENT = "b2" * 32
LONER = "c3" * 32


def _require_tools() -> None:
    # No skips: a host without the tools fails loudly.
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the embedded DNS integration tests need: {', '.join(missing)}")


async def run(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
    """Run a command to completion (the event loop keeps serving DNS meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin), COMMAND_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def cmd(self, *argv: str) -> tuple[str, ...]:
        return ("nsenter", f"--net={self.path}", *argv)


@pytest.fixture
def netns_factory() -> Iterator[list[Netns]]:
    _require_tools()
    created: list[Netns] = []

    yield created

    for ns in created:
        subprocess.run(["ip", "netns", "delete", ns.name], check=False)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    leaked = [ns.name for ns in created if ns.name in listed]
    assert not leaked, f"network namespaces left behind: {leaked}"


def new_netns(created: list[Netns]) -> Netns:
    ns = Netns(f"dydns-{uuid.uuid4().hex[:10]}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    created.append(ns)
    # The lead brings lo up before attach; here the test does.
    subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True)
    return ns


def _free_port() -> int:
    # A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both).
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@pytest.fixture
def dnsmasq() -> Iterator[UpstreamServer]:
    _require_tools()
    port = _free_port()
    big = [f"--txt-record=big.upstream.test,{'t' * 200}{i}" for i in range(8)]
    proc = subprocess.Popen(
        [
            "dnsmasq",
            "--no-daemon",
            "--port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            f"--address=/upstream.test/{UPSTREAM_ADDRESS}",
            "--pid-file=",
            "--log-facility=-",
            *big,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        # dnsmasq logs "started" once its sockets are bound.
        for line in proc.stderr:
            if "started" in line:
                break
            if "failed" in line or "FAILED" in line:
                pytest.fail(f"dnsmasq: {line.strip()}")
        else:
            pytest.fail(f"dnsmasq exited early with {proc.wait()}")
        yield UpstreamServer("127.0.0.1", port)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=COMMAND_TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()
        assert wait_pid_gone(proc.pid, 0), "dnsmasq survived"


@pytest_asyncio.fixture
async def server(dnsmasq: UpstreamServer) -> AsyncIterator[EmbeddedDns]:
    dns_server = EmbeddedDns([dnsmasq], upstream_timeout_s=2.0)
    await dns_server.start()
    try:
        yield dns_server
    finally:
        await dns_server.close()


def endpoints(web: Netns, client: Netns, loner: Netns) -> list[DnsEndpoint]:
    del web, client, loner  # addresses are table data; the namespaces only host clients
    shared = [
        DnsEndpoint(f"{i:02x}" * 32, f"worker{i}", "nid-front", "front", f"10.1.1.{i}", ("pool",))
        for i in range(10, 70)
    ]
    return [
        DnsEndpoint(WEB, "web", "nid-front", "front", "10.1.0.2", ("www",)),
        DnsEndpoint(CLIENT, "client", "nid-front", "front", "10.1.0.3", (), (("db", "web"),)),
        DnsEndpoint(LONER, "loner", "nid-island", "island", "10.3.0.2"),
        *shared,
    ]


@pytest_asyncio.fixture
async def attached(
    netns_factory: list[Netns], server: EmbeddedDns
) -> AsyncIterator[tuple[EmbeddedDns, Netns, Netns]]:
    # netns_factory is set up first so it is torn down last: the server closes its sockets
    # and removes its rules before the namespaces go.
    web, client, loner = (new_netns(netns_factory) for _ in range(3))
    server.update(DnsTable.build(endpoints(web, client, loner)))
    await server.attach(CLIENT, client.path)
    await server.attach(LONER, loner.path)
    yield server, client, loner


async def nslookup(ns: Netns, name: str) -> tuple[int, str]:
    return await run(*ns.cmd("busybox", "nslookup", name, "127.0.0.11"))


def answered(output: str) -> list[str]:
    # busybox prints the server's "Address: 127.0.0.11:53" first, then one line per answer.
    return [
        line.split()[-1]
        for line in output.splitlines()
        if line.startswith("Address") and "127.0.0.11" not in line
    ]


async def getent_hosts(ns: Netns, name: str, resolv_conf: Path) -> tuple[int, str]:
    script = f"mount --bind {resolv_conf} /etc/resolv.conf && exec getent hosts {name}"
    return await run(*ns.cmd("unshare", "-m", "sh", "-c", script))


async def dnspython_in(ns: Netns, code: str) -> str:
    rc, out = await run(*ns.cmd(sys.executable, "-c", code))
    assert rc == 0, out
    return out


@pytest.mark.parametrize(
    ("name", "address"),
    [("web", "10.1.0.2"), ("www", "10.1.0.2"), (WEB[:12], "10.1.0.2"), ("WEB.front", "10.1.0.2")],
)
async def test_nslookup_resolves_names_aliases_and_short_ids(
    attached: tuple[EmbeddedDns, Netns, Netns], name: str, address: str
) -> None:
    _, client, _ = attached
    rc, out = await nslookup(client, name)
    assert rc == 0, out
    assert answered(out) == [address]


async def test_link_alias_is_seen_only_by_its_container(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    _, client, loner = attached
    rc, out = await nslookup(client, "db")
    assert rc == 0 and answered(out) == ["10.1.0.2"], out
    rc, out = await nslookup(loner, "db")
    # A link alias is nobody else's name: forwarded, and the upstream does not know it.
    assert rc != 0 and answered(out) == [], out


async def test_getent_hosts_through_a_containers_resolv_conf(
    attached: tuple[EmbeddedDns, Netns, Netns], tmp_path: Path
) -> None:
    _, client, _ = attached
    resolv_conf = tmp_path / "resolv.conf"
    # What Docker writes into a container on a user network.
    resolv_conf.write_text("nameserver 127.0.0.11\noptions ndots:0\n")
    for name in ("web", "www", WEB[:12]):
        rc, out = await getent_hosts(client, name, resolv_conf)
        assert rc == 0, out
        assert out.split()[0] == "10.1.0.2", out
    rc, out = await getent_hosts(client, "upstream.test", resolv_conf)
    assert rc == 0 and out.split()[0] == UPSTREAM_ADDRESS, out


async def test_unknown_names_are_answered_by_the_upstream(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    _, client, loner = attached
    for ns in (client, loner):
        # busybox also asks AAAA, which dnsmasq (no upstream of its own) REFUSEs: the exit
        # status reflects that, the A answer is what matters.
        _, out = await nslookup(ns, "host.upstream.test")
        assert answered(out) == [UPSTREAM_ADDRESS], out


async def test_names_on_other_networks_are_nxdomain(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    _, _, loner = attached
    for name in ("web", "www", WEB[:12], "web.front"):
        rc, out = await nslookup(loner, name)
        assert rc != 0, out
        assert f"can't find {name}: NXDOMAIN" in out, out
    rc, out = await nslookup(loner, "loner")
    assert rc == 0 and answered(out) == ["10.3.0.2"], out


async def test_ptr_answers_name_dot_network(attached: tuple[EmbeddedDns, Netns, Netns]) -> None:
    _, client, _ = attached
    rc, out = await nslookup(client, "10.1.0.2")
    assert rc == 0, out
    assert "web.front" in out, out


async def test_tcp_several_queries_per_connection_and_udp_truncation(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    _, client, _ = attached
    code = """
import socket, dns.message, dns.query, dns.flags
udp = dns.query.udp(dns.message.make_query("pool.", "A"), "127.0.0.11", timeout=10)
print("udp-tc", bool(udp.flags & dns.flags.TC), len(udp.answer[0]) if udp.answer else 0)
with socket.create_connection(("127.0.0.11", 53), timeout=10) as sock:
    for name, rdtype in (("pool.", "A"), ("web.", "A"), ("big.upstream.test.", "TXT")):
        reply = dns.query.tcp(dns.message.make_query(name, rdtype), "127.0.0.11", sock=sock)
        print("tcp", name, len(reply.answer[0]))
"""
    out = await dnspython_in(client, code)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["udp-tc", "True"]
    assert int(lines[0].split()[2]) < 60
    assert lines[1:] == ["tcp pool. 60", "tcp web. 1", "tcp big.upstream.test. 8"]


async def test_a_container_process_may_bind_port_53(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    _, client, _ = attached
    holder = await asyncio.create_subprocess_exec(
        *client.cmd(
            sys.executable,
            "-c",
            "import socket, sys\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 53))\n"
            "t = socket.socket(); t.bind(('0.0.0.0', 53)); t.listen()\n"
            "print('bound', flush=True); sys.stdin.read()\n",
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), COMMAND_TIMEOUT_S)
        assert line == b"bound\n", line
        rc, out = await nslookup(client, "web")
        assert rc == 0 and answered(out) == ["10.1.0.2"], out
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            await asyncio.wait_for(holder.wait(), COMMAND_TIMEOUT_S)
        finally:
            if holder.returncode is None:
                holder.kill()
                await holder.wait()


async def nat_rules(ns: Netns) -> str:
    rc, out = await run(*ns.cmd("iptables-save", "-t", "nat"))
    assert rc == 0, out
    return out


async def resolver_sockets(ns: Netns) -> str:
    rc, out = await run(*ns.cmd("ss", "-Hlnut", "src", "127.0.0.11"))
    assert rc == 0, out
    return out


async def test_attach_again_replaces_and_detach_removes(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    server, client, _ = attached
    first = server.attached()[CLIENT]
    await server.attach(CLIENT, client.path)  # as after a daemon restart
    second = server.attached()[CLIENT]
    rules = await nat_rules(client)
    assert rules.count("-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT") == 1, rules
    assert rules.count("-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING") == 1, rules
    assert f"127.0.0.11:{second[0]}" in rules and f"127.0.0.11:{first[0]}\n" not in rules
    assert len((await resolver_sockets(client)).splitlines()) == 2
    rc, out = await nslookup(client, "web")
    assert rc == 0 and answered(out) == ["10.1.0.2"], out

    await server.detach(CLIENT)
    assert CLIENT not in server.attached()
    rules = await nat_rules(client)
    assert "DOCKER_OUTPUT" not in rules and "DOCKER_POSTROUTING" not in rules, rules
    assert await resolver_sockets(client) == ""
    await server.detach(CLIENT)  # detaching twice is harmless


async def test_table_updates_apply_to_the_next_query(
    attached: tuple[EmbeddedDns, Netns, Netns],
) -> None:
    server, client, _ = attached
    server.update(
        DnsTable.build([DnsEndpoint(CLIENT, "client", "n", "front", "10.1.0.3", ("fresh",))])
    )
    rc, out = await nslookup(client, "fresh")
    assert rc == 0 and answered(out) == ["10.1.0.3"], out


async def test_no_upstream_answer_is_servfail(netns_factory: list[Netns]) -> None:
    _require_tools()
    dead = UpstreamServer("127.0.0.1", _free_port())  # nothing listens there
    server = EmbeddedDns([dead], upstream_timeout_s=1.0)
    await server.start()
    try:
        ns = new_netns(netns_factory)
        await server.attach(LONER, ns.path)
        rc, out = await nslookup(ns, "example.invalid")
        assert rc != 0 and "SERVFAIL" in out, out
    finally:
        await server.close()


async def test_next_upstream_is_tried_when_one_fails(
    netns_factory: list[Netns], dnsmasq: UpstreamServer
) -> None:
    dead = UpstreamServer("127.0.0.1", _free_port())
    server = EmbeddedDns([dead, dnsmasq], upstream_timeout_s=2.0)
    await server.start()
    try:
        ns = new_netns(netns_factory)
        await server.attach(LONER, ns.path)
        _, out = await nslookup(ns, "next.upstream.test")
        assert answered(out) == [UPSTREAM_ADDRESS], out
    finally:
        await server.close()


async def test_a_containers_own_upstreams_replace_the_hosts(
    netns_factory: list[Netns], dnsmasq: UpstreamServer
) -> None:
    """`--dns`: Docker's resolver forwards a container's unknown names to its own servers;
    another container keeps the host's (here a dead one)."""
    dead = UpstreamServer("127.0.0.1", _free_port())
    server = EmbeddedDns([dead], upstream_timeout_s=1.0)
    await server.start()
    try:
        own, hosts = new_netns(netns_factory), new_netns(netns_factory)
        await server.attach(LONER, own.path, [dnsmasq])
        await server.attach(CLIENT, hosts.path)
        _, out = await nslookup(own, "own.upstream.test")
        assert answered(out) == [UPSTREAM_ADDRESS], out
        rc, out = await nslookup(hosts, "own.upstream.test")
        assert rc != 0 and "SERVFAIL" in out, out
    finally:
        await server.close()


async def test_garbage_and_a_silent_upstream_block_nobody(netns_factory: list[Netns]) -> None:
    _require_tools()
    # An upstream that reads queries and never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        upstream = UpstreamServer("127.0.0.1", silent.getsockname()[1])
        server = EmbeddedDns([upstream], upstream_timeout_s=3.0)
        await server.start()
        try:
            ns = new_netns(netns_factory)
            server.update(
                DnsTable.build([DnsEndpoint(LONER, "loner", "nid-i", "island", "10.3.0.2")])
            )
            await server.attach(LONER, ns.path)
            code = """
import random, socket, struct, dns.message, dns.query, dns.rcode
seed = random.SystemRandom().randrange(2**32)
rng = random.Random(seed)
print("seed", seed)
slow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
slow.sendto(dns.message.make_query("slow.example.", "A").to_wire(), ("127.0.0.11", 53))
junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    junk.sendto(rng.randbytes(rng.randrange(0, 80)), ("127.0.0.11", 53))
for _ in range(5):
    with socket.create_connection(("127.0.0.11", 53), timeout=10) as tcp:
        size = rng.randrange(0, 80)
        tcp.sendall(struct.pack("!H", size + rng.randrange(2)) + rng.randbytes(size))
with socket.create_connection(("127.0.0.11", 53), timeout=10) as tcp:
    # A response on the connection is dropped without a reply; the next query is answered.
    tcp.sendall(struct.pack("!H", 12) + struct.pack("!6H", 1, 0x8000, 0, 0, 0, 0))
    reply = dns.query.tcp(dns.message.make_query("loner.", "A"), "127.0.0.11", sock=tcp)
    print("tcp", reply.answer[0][0].address)
reply = dns.query.udp(dns.message.make_query("loner.", "A"), "127.0.0.11", timeout=10)
print("udp", reply.answer[0][0].address)
slow.settimeout(20)
late = dns.message.from_wire(slow.recv(512))
print("slow", dns.rcode.to_text(late.rcode()))
"""
            out = await dnspython_in(ns, code)
            lines = out.splitlines()
            # The local answers come back while the forward still waits on the upstream.
            assert lines[1:] == ["tcp 10.3.0.2", "udp 10.3.0.2", "slow SERVFAIL"], out
        finally:
            await server.close()


async def test_attach_to_something_that_is_not_a_netns_fails_cleanly(
    server: EmbeddedDns, tmp_path: Path
) -> None:
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    for path in (str(plain), str(tmp_path / "missing")):
        with pytest.raises(DnsServerError, match="cannot open the DNS sockets"):
            await server.attach(LONER, path)
    assert server.attached() == {}
