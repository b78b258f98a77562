"""The iptables-restore text for 127.0.0.11 (libnetwork resolver_unix.go setupIPTable)."""

from __future__ import annotations

import pytest

from dockyard.engine.network.dns.server import nat_rules_install, nat_rules_remove

pytestmark = pytest.mark.unit

EMPTY = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""

INSTALLED = """\
*filter
:INPUT ACCEPT [0:0]
-A INPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
COMMIT
*nat
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:1
COMMIT
"""


def test_first_install_adds_chains_rules_and_jumps() -> None:
    text = nat_rules_install(EMPTY, 40000, 40001)
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert ":DOCKER_OUTPUT - [0:0]" in lines and "-F DOCKER_OUTPUT" in lines
    assert (
        "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53"
        " -j DNAT --to-destination 127.0.0.11:40000"
    ) in lines
    assert (
        "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 40001 -j SNAT --to-source :53"
    ) in lines
    assert "-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT" in lines
    assert "-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING" in lines


def test_reinstall_replaces_ports_without_duplicating_jumps() -> None:
    text = nat_rules_install(INSTALLED, 50000, 50001)
    assert "-A OUTPUT" not in text and "-A POSTROUTING" not in text
    assert "127.0.0.11:50000" in text and "127.0.0.11:1\n" not in text


def test_removal_deletes_jumps_and_chains_only_if_present() -> None:
    text = nat_rules_remove(INSTALLED)
    assert text is not None
    assert text.splitlines() == [
        "*nat",
        "-D OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT",
        "-D POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING",
        "-F DOCKER_OUTPUT",
        "-X DOCKER_OUTPUT",
        "-F DOCKER_POSTROUTING",
        "-X DOCKER_POSTROUTING",
        "COMMIT",
    ]
    assert nat_rules_remove(EMPTY) is None
