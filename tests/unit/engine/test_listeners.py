"""`-H` addresses as `dockyard daemon` reads them (`parse_host`): which are served, and how."""

from __future__ import annotations

import pytest

from dockyard.engine.listeners import Listener, ListenerError, parse_host


def test_unix_sockets() -> None:
    assert parse_host("unix:///run/d.sock", tls_verify=False) == Listener("unix", "/run/d.sock")
    assert parse_host("/run/d.sock", tls_verify=True) == Listener("unix", "/run/d.sock")
    with pytest.raises(ListenerError, match="need an absolute path"):
        parse_host("unix://", tls_verify=False)


def test_tcp_on_loopback_may_be_plain() -> None:
    # dockerd allows it (with a warning): only local users can reach it.
    assert parse_host("tcp://127.0.0.1:2375", tls_verify=False) == Listener(
        "tcp", "127.0.0.1", 2375
    )
    assert parse_host("tcp://[::1]:2375", tls_verify=False) == Listener("tcp", "::1", 2375)
    assert parse_host("tcp://localhost:2375", tls_verify=False).tls is False


def test_tls_flags_make_every_tcp_listener_tls() -> None:
    assert parse_host("tcp://127.0.0.1:2376", tls_verify=True).tls is True
    assert parse_host("tcp://127.0.0.1:2376", tls_verify=False, tls=True).tls is True
    # With client certificates required, any address may be served.
    assert parse_host("tcp://0.0.0.0:2376", tls_verify=True) == Listener(
        "tcp", "0.0.0.0", 2376, tls=True
    )


@pytest.mark.parametrize("tls", [False, True])
def test_off_loopback_needs_tlsverify(tls: bool) -> None:
    with pytest.raises(ListenerError, match=r"refusing to listen on tcp://0\.0\.0\.0:2375 without"):
        parse_host("tcp://0.0.0.0:2375", tls_verify=False, tls=tls)
    with pytest.raises(ListenerError, match="without --tlsverify"):
        parse_host("tcp://192.0.2.1:2375", tls_verify=False, tls=tls)


def test_malformed_addresses() -> None:
    with pytest.raises(ListenerError, match="need tcp://host:port"):
        parse_host("tcp://127.0.0.1", tls_verify=True)
    with pytest.raises(ListenerError, match="unsupported -H address"):
        parse_host("fd://", tls_verify=False)
