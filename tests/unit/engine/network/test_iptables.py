"""The engine's iptables plan: exact rules, determinism, jumps, sysctls, teardown.

Unit tests compare the restore text rule by rule with what the module docstring (and moby's
bridge driver with --userland-proxy=false) prescribes. The one integration test feeds the
plans to the real iptables-restore inside a private network namespace (``unshare --net``,
gone when the process exits: no host state changes) and checks that applying, re-applying
and tearing down leaves ``iptables-save`` exactly as before, other rules untouched.
"""

from __future__ import annotations

import random
import shlex
import shutil
import subprocess

import pytest

from dockyard.engine.network.iptables import (
    BridgeNetwork,
    Jump,
    LinkAccept,
    PlanError,
    PublishedPort,
    Sysctl,
    chain_prefix_for,
    plan,
    teardown,
)
from dockyard.engine.network.ports import PortMapping

unit = pytest.mark.unit

BRIDGE = BridgeNetwork("bridge", "dy0", "172.30.0.0/16")
FRONT = BridgeNetwork("front", "dyf1", "172.31.0.0/16", icc=False, masquerade=False)
BACK = BridgeNetwork("back", "dyb1", "172.32.0.0/16", internal=True)
WEB = PublishedPort("dy0", "tcp", "0.0.0.0", 8080, "172.30.0.2", 80)
DNS = PublishedPort("dy0", "udp", "127.0.0.1", 5353, "172.30.0.2", 53)

FILTER_HEAD = (
    "*filter\n"
    ":DOCKYARD - [0:0]\n"
    ":DOCKYARD-FORWARD - [0:0]\n"
    ":DOCKYARD-INPUT - [0:0]\n"
    ":DOCKYARD-ISOLATION-STAGE-1 - [0:0]\n"
    ":DOCKYARD-ISOLATION-STAGE-2 - [0:0]\n"
)
NAT_HEAD = "*nat\n:DOCKYARD - [0:0]\n:DOCKYARD-POSTROUTING - [0:0]\n"


@unit
def test_default_bridge_with_published_ports() -> None:
    rules = plan([BRIDGE], [WEB, DNS])
    assert rules.filter_restore_text() == FILTER_HEAD + (
        "-A DOCKYARD-FORWARD -j DOCKYARD-ISOLATION-STAGE-1\n"
        "-A DOCKYARD-FORWARD -o dy0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A DOCKYARD-FORWARD -o dy0 -j DOCKYARD\n"
        "-A DOCKYARD-FORWARD -i dy0 ! -o dy0 -j ACCEPT\n"
        "-A DOCKYARD-FORWARD -i dy0 -o dy0 -j ACCEPT\n"
        "-A DOCKYARD -d 172.30.0.2/32 ! -i dy0 -o dy0 -p tcp -m tcp --dport 80"
        " -m conntrack --ctstate DNAT -j ACCEPT\n"
        "-A DOCKYARD -d 172.30.0.2/32 ! -i dy0 -o dy0 -p udp -m udp --dport 53"
        " -m conntrack --ctstate DNAT -j ACCEPT\n"
        "-A DOCKYARD-INPUT -i dy0 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED"
        " -j DROP\n"
        "-A DOCKYARD-ISOLATION-STAGE-1 -i dy0 ! -o dy0 -j DOCKYARD-ISOLATION-STAGE-2\n"
        "-A DOCKYARD-ISOLATION-STAGE-2 -o dy0 -j DROP\n"
        "COMMIT\n"
    )
    assert rules.nat_restore_text() == NAT_HEAD + (
        "-A DOCKYARD -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.30.0.2:80\n"
        "-A DOCKYARD -d 127.0.0.1/32 -p udp -m udp --dport 5353"
        " -j DNAT --to-destination 172.30.0.2:53\n"
        "-A DOCKYARD-POSTROUTING -s 172.30.0.0/16 ! -o dy0 -j MASQUERADE\n"
        "-A DOCKYARD-POSTROUTING -o dy0 -m addrtype --src-type LOCAL -j MASQUERADE\n"
        "-A DOCKYARD-POSTROUTING -s 172.30.0.2/32 -d 172.30.0.2/32 -p tcp -m tcp --dport 80"
        " -j MASQUERADE\n"
        "-A DOCKYARD-POSTROUTING -s 172.30.0.2/32 -d 172.30.0.2/32 -p udp -m udp --dport 53"
        " -j MASQUERADE\n"
        "COMMIT\n"
    )
    assert rules.restore_text() == rules.filter_restore_text() + rules.nat_restore_text()


@unit
def test_jumps_into_the_engine_chains() -> None:
    jumps = plan([BRIDGE]).jumps()
    assert jumps == (
        Jump("filter", "FORWARD", ("-j", "DOCKYARD-FORWARD"), first=True),
        Jump("filter", "INPUT", ("-j", "DOCKYARD-INPUT"), first=True),
        Jump(
            "nat", "PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKYARD"), False
        ),
        Jump("nat", "OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKYARD"), False),
        Jump("nat", "POSTROUTING", ("-j", "DOCKYARD-POSTROUTING"), first=True),
    )
    forward, _, prerouting, _, _ = jumps
    assert forward.check_argv() == ("-t", "filter", "-C", "FORWARD", "-j", "DOCKYARD-FORWARD")
    assert forward.add_argv() == ("-t", "filter", "-I", "FORWARD", "1", "-j", "DOCKYARD-FORWARD")
    assert prerouting.add_argv()[:4] == ("-t", "nat", "-A", "PREROUTING")
    assert forward.delete_argv() == ("-t", "filter", "-D", "FORWARD", "-j", "DOCKYARD-FORWARD")


@unit
def test_internal_icc_off_and_no_masquerade_networks() -> None:
    port_on_internal = PublishedPort("dyb1", "tcp", "0.0.0.0", 9000, "172.32.0.2", 9000)
    link = LinkAccept("dyf1", "172.31.0.2", "172.31.0.3", "tcp", 6379)
    link_on_icc_bridge = LinkAccept("dy0", "172.30.0.2", "172.30.0.3", "tcp", 6379)
    rules = plan([FRONT, BACK, BRIDGE], [port_on_internal], [link, link_on_icc_bridge])
    filter_lines = rules.filter_restore_text().splitlines()
    assert filter_lines[6:] == [
        "-A DOCKYARD-FORWARD -j DOCKYARD-ISOLATION-STAGE-1",
        "-A DOCKYARD-FORWARD -i dyb1 -o dyb1 -j ACCEPT",
        "-A DOCKYARD-FORWARD -o dy0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A DOCKYARD-FORWARD -o dy0 -j DOCKYARD",
        "-A DOCKYARD-FORWARD -i dy0 ! -o dy0 -j ACCEPT",
        "-A DOCKYARD-FORWARD -i dy0 -o dy0 -j ACCEPT",
        "-A DOCKYARD-FORWARD -o dyf1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A DOCKYARD-FORWARD -o dyf1 -j DOCKYARD",
        "-A DOCKYARD-FORWARD -i dyf1 ! -o dyf1 -j ACCEPT",
        "-A DOCKYARD-FORWARD -i dyf1 -o dyf1 -j DROP",
        # link.go: only on the icc=false bridge, both directions.
        "-A DOCKYARD -i dyf1 -o dyf1 -p tcp -m tcp -s 172.31.0.2 -d 172.31.0.3 --dport 6379"
        " -j ACCEPT",
        "-A DOCKYARD -i dyf1 -o dyf1 -p tcp -m tcp -s 172.31.0.3 -d 172.31.0.2 --sport 6379"
        " -j ACCEPT",
        "-A DOCKYARD-INPUT -i dy0 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED"
        " -j DROP",
        "-A DOCKYARD-INPUT -i dyf1 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED"
        " -j DROP",
        # Internal: nothing in or out of the bridge except bridge -> same bridge.
        "-A DOCKYARD-ISOLATION-STAGE-1 -i dyb1 ! -o dyb1 -j DROP",
        "-A DOCKYARD-ISOLATION-STAGE-1 ! -i dyb1 -o dyb1 -j DROP",
        "-A DOCKYARD-ISOLATION-STAGE-1 -i dy0 ! -o dy0 -j DOCKYARD-ISOLATION-STAGE-2",
        "-A DOCKYARD-ISOLATION-STAGE-1 -i dyf1 ! -o dyf1 -j DOCKYARD-ISOLATION-STAGE-2",
        "-A DOCKYARD-ISOLATION-STAGE-2 -o dyb1 -j DROP",
        "-A DOCKYARD-ISOLATION-STAGE-2 -o dy0 -j DROP",
        "-A DOCKYARD-ISOLATION-STAGE-2 -o dyf1 -j DROP",
        "COMMIT",
    ]
    # No DNAT for the internal network's port; no subnet MASQUERADE for dyf1 (masquerade
    # off) nor for the internal network, whose traffic never leaves its bridge.
    assert rules.nat_restore_text() == NAT_HEAD + (
        "-A DOCKYARD-POSTROUTING -s 172.30.0.0/16 ! -o dy0 -j MASQUERADE\n"
        "-A DOCKYARD-POSTROUTING -o dy0 -m addrtype --src-type LOCAL -j MASQUERADE\n"
        "-A DOCKYARD-POSTROUTING -o dyf1 -m addrtype --src-type LOCAL -j MASQUERADE\n"
        "COMMIT\n"
    )
    assert rules.sysctls() == (
        Sysctl("net.bridge.bridge-nf-call-iptables", "1"),
        Sysctl("net.ipv4.conf.dy0.route_localnet", "1"),
        Sysctl("net.ipv4.conf.dyf1.route_localnet", "1"),
        Sysctl("net.ipv4.ip_forward", "1"),
    )


@unit
def test_no_networks_means_empty_chains_and_no_sysctls() -> None:
    rules = plan([])
    assert rules.filter_restore_text() == FILTER_HEAD + (
        "-A DOCKYARD-FORWARD -j DOCKYARD-ISOLATION-STAGE-1\nCOMMIT\n"
    )
    assert rules.nat_restore_text() == NAT_HEAD + "COMMIT\n"
    assert rules.sysctls() == ()


@unit
def test_rendering_is_deterministic_and_deduplicated() -> None:
    nets = [BRIDGE, FRONT, BACK]
    extra = PublishedPort("dy0", "tcp", "10.0.0.1", 8080, "172.30.0.2", 80)
    ports = [WEB, DNS, extra, WEB]
    expected = plan(nets, ports).restore_text()
    shuffler = random.Random(5)
    for _ in range(5):
        shuffler.shuffle(nets)
        shuffler.shuffle(ports)
        assert plan(nets, ports).restore_text() == expected
    # Two host ports for one container port: two DNATs, one filter ACCEPT, one hairpin.
    assert expected.count("--to-destination 172.30.0.2:80\n") == 2
    assert expected.count("-p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT") == 1
    assert expected.count("-d 172.30.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE") == 1


@unit
def test_published_port_from_a_port_mapping() -> None:
    mapping = PortMapping("tcp", "", 8080, 80, "172.30.0.2")
    assert PublishedPort.from_mapping(mapping, "dy0") == WEB


@unit
@pytest.mark.parametrize(
    ("networks", "ports", "message"),
    [
        (
            [BRIDGE],
            [PublishedPort("nope0", "tcp", "0.0.0.0", 1, "172.30.0.2", 1)],
            "unknown bridge",
        ),
        ([BridgeNetwork("x", "bad name", "10.0.0.0/8")], [], "invalid bridge name"),
        ([BridgeNetwork("x", "br.0", "10.0.0.0/8")], [], "invalid bridge name"),
        ([BridgeNetwork("x", "averyverylongname", "10.0.0.0/8")], [], "invalid bridge name"),
        ([BridgeNetwork("x", "dy9", "fd00::/64")], [], "invalid IPv4 subnet"),
        ([BRIDGE, BridgeNetwork("other", "dy0", "10.0.0.0/8")], [], "belongs to two networks"),
        ([BRIDGE], [PublishedPort("dy0", "tcp", "::", 1, "172.30.0.2", 1)], "invalid IPv4 host"),
        ([BRIDGE], [PublishedPort("dy0", "icmp", "0.0.0.0", 1, "172.30.0.2", 1)], "protocol"),
        ([BRIDGE], [PublishedPort("dy0", "tcp", "0.0.0.0", 0, "172.30.0.2", 1)], "invalid port"),
    ],
)
def test_plan_refuses_inputs_no_ruleset_can_express(
    networks: list[BridgeNetwork], ports: list[PublishedPort], message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        plan(networks, ports)


@unit
def test_teardown_removes_every_jump_and_chain() -> None:
    down = teardown()
    assert down.jumps == plan([BRIDGE]).jumps()
    assert down.chains == (
        ("filter", "DOCKYARD"),
        ("filter", "DOCKYARD-FORWARD"),
        ("filter", "DOCKYARD-INPUT"),
        ("filter", "DOCKYARD-ISOLATION-STAGE-1"),
        ("filter", "DOCKYARD-ISOLATION-STAGE-2"),
        ("nat", "DOCKYARD"),
        ("nat", "DOCKYARD-POSTROUTING"),
    )
    assert (
        down.restore_text
        == FILTER_HEAD
        + (
            "-X DOCKYARD\n"
            "-X DOCKYARD-FORWARD\n"
            "-X DOCKYARD-INPUT\n"
            "-X DOCKYARD-ISOLATION-STAGE-1\n"
            "-X DOCKYARD-ISOLATION-STAGE-2\n"
            "COMMIT\n"
        )
        + NAT_HEAD
        + "-X DOCKYARD\n-X DOCKYARD-POSTROUTING\nCOMMIT\n"
    )


# -- the real iptables-restore, in a throwaway network namespace -----------------------------


def _save(tag: str) -> str:
    # iptables-save's "# Generated/Completed ... <date>" lines differ run to run.
    return f"echo '=== {tag}'; iptables-save | grep -v '^#'"


def _iptables(argv: tuple[str, ...]) -> str:
    return "iptables -w " + " ".join(shlex.quote(a) for a in argv)


@pytest.mark.integration
def test_real_iptables_restore_accepts_the_plan_and_teardown_restores_the_state() -> None:
    for tool in ("unshare", "iptables", "iptables-restore", "iptables-save"):
        assert shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin"), f"{tool} missing"
    rules = plan(
        [BRIDGE, FRONT, BACK],
        [WEB, DNS, PublishedPort("dyf1", "sctp", "10.0.0.5", 9000, "172.31.0.3", 9000)],
        [LinkAccept("dyf1", "172.31.0.2", "172.31.0.3", "tcp", 6379)],
    )
    down = teardown()
    ensure = [
        f"{_iptables(j.check_argv())} 2>/dev/null || {_iptables(j.add_argv())}"
        for j in rules.jumps()
    ]
    remove = [
        f"while {_iptables(j.check_argv())} 2>/dev/null; do {_iptables(j.delete_argv())}; done"
        for j in down.jumps
    ]
    script = "\n".join(
        [
            "set -eu",
            # Another engine's state that must survive untouched: a DROP policy, its own
            # chain and rules in builtin chains of both tables.
            "iptables -w -P FORWARD DROP",
            "iptables -w -N DOCKER",
            "iptables -w -A DOCKER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT",
            "iptables -w -A FORWARD -j DOCKER",
            "iptables -w -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
            _save("before"),
            "iptables-restore -w --test --noflush <<'EOF'\n" + rules.restore_text() + "EOF",
            "iptables-restore -w --test --noflush <<'EOF'\n" + down.restore_text + "EOF",
            "iptables-restore -w --noflush <<'EOF'\n" + rules.restore_text() + "EOF",
            *ensure,
            _save("applied"),
            # A second apply (daemon restart) changes nothing.
            "iptables-restore -w --noflush <<'EOF'\n" + rules.restore_text() + "EOF",
            *ensure,
            _save("reapplied"),
            *remove,
            "iptables-restore -w --noflush <<'EOF'\n" + down.restore_text + "EOF",
            _save("after"),
        ]
    )
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sections: dict[str, str] = {}
    for chunk in done.stdout.split("=== ")[1:]:
        tag, _, body = chunk.partition("\n")
        sections[tag] = body
    assert sections["after"] == sections["before"]
    assert sections["reapplied"] == sections["applied"]
    applied = sections["applied"].splitlines()
    for line in (
        "-A FORWARD -j DOCKYARD-FORWARD",
        "-A FORWARD -j DOCKER",
        ":FORWARD DROP [0:0]",
        "-A DOCKYARD -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.30.0.2:80",
        "-A POSTROUTING -j DOCKYARD-POSTROUTING",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    ):
        assert line in applied, line
    # Our FORWARD jump comes first even though the other engine's was there before.
    forward = [line for line in applied if line.startswith("-A FORWARD")]
    assert forward == ["-A FORWARD -j DOCKYARD-FORWARD", "-A FORWARD -j DOCKER"]


@unit
def test_a_prefix_renames_every_chain_and_jump_and_nothing_else() -> None:
    default = plan([BRIDGE], [WEB])
    other = plan([BRIDGE], [WEB], prefix="DYABC123")
    text = other.restore_text()
    assert "DOCKYARD" not in text
    assert text == default.restore_text().replace("DOCKYARD", "DYABC123")
    assert [j.args for j in other.jumps()] == [
        tuple(a.replace("DOCKYARD", "DYABC123") for a in j.args) for j in default.jumps()
    ]
    down = teardown("DYABC123")
    assert {chain for _, chain in down.chains} == {
        "DYABC123", "DYABC123-FORWARD", "DYABC123-INPUT", "DYABC123-ISOLATION-STAGE-1",
        "DYABC123-ISOLATION-STAGE-2", "DYABC123-POSTROUTING",
    }  # fmt: skip
    assert all(len(chain) <= 28 for _, chain in down.chains)


@unit
def test_chain_prefixes_per_bridge() -> None:
    assert chain_prefix_for("dockyard0") == "DOCKYARD"
    assert chain_prefix_for("dyt1a2b3c") == chain_prefix_for("dyt1a2b3c")
    assert chain_prefix_for("dyt1a2b3c") != chain_prefix_for("dyt1a2b3d")
    assert len(chain_prefix_for("a-very-long-br0")) <= 10
    with pytest.raises(PlanError):
        plan([BRIDGE], prefix="lower-case")
    with pytest.raises(PlanError):
        plan([BRIDGE], prefix="TOOLONGPREFIX")
