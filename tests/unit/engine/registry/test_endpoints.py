"""Reference → registry, and dockerd's secure/insecure endpoint rules."""

from __future__ import annotations

import pytest

from dockyard.engine.images.model import parse_reference
from dockyard.engine.images.registry.endpoints import (
    Endpoint,
    endpoints,
    is_insecure,
    locate,
    split_host_port,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "host", "dial", "path"),
    [
        ("busybox", "docker.io", "registry-1.docker.io", "library/busybox"),
        ("user/app:1", "docker.io", "registry-1.docker.io", "user/app"),
        ("localhost:5000/x", "localhost:5000", "localhost:5000", "x"),
        (
            "127.0.0.1:5000/team/app@sha256:" + "a" * 64,
            "127.0.0.1:5000",
            "127.0.0.1:5000",
            "team/app",
        ),
        ("[::1]:5000/x", "[::1]:5000", "[::1]:5000", "x"),
    ],
)
def test_locate(text: str, host: str, dial: str, path: str) -> None:
    location = locate(parse_reference(text))
    assert (location.host, location.dial_host, location.repository) == (host, dial, path)
    assert location.name == f"{host}/{path}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h:5000", ("h", 5000)),
        ("h", ("h", None)),
        ("[::1]:80", ("::1", 80)),
        ("[::1]", ("::1", None)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


def test_loopback_is_insecure_by_default() -> None:
    assert is_insecure("127.0.0.1:5000", (), [])
    assert is_insecure("127.9.9.9:5000", (), [])
    assert is_insecure("localhost:5000", (), ["::1", "127.0.0.1"])
    assert is_insecure("[::1]:5000", (), [])
    assert not is_insecure("registry.example:5000", (), ["192.0.2.7"])
    assert not is_insecure("192.0.2.7:5000", (), [])


def test_insecure_registry_by_name_or_cidr() -> None:
    assert is_insecure("192.0.2.7:5000", ("192.0.2.7:5000",), [])
    assert not is_insecure("192.0.2.7:5001", ("192.0.2.7:5000",), [])
    assert is_insecure("reg.example:5000", ("http://reg.example:5000/",), [])
    assert is_insecure("reg.example:443", ("192.0.2.0/24",), ["192.0.2.9"])
    assert not is_insecure("reg.example:443", ("198.51.100.0/24",), ["192.0.2.9"])
    assert not is_insecure("reg.example:443", ("not/a-cidr",), ["192.0.2.9"])


def test_endpoint_order() -> None:
    assert endpoints("reg:5000", insecure=False) == (Endpoint("https", "reg:5000", True),)
    assert endpoints("reg:5000", insecure=True) == (
        Endpoint("https", "reg:5000", False),
        Endpoint("http", "reg:5000", False),
    )
    assert endpoints("reg:5000", insecure=True)[1].base_url == "http://reg:5000"
