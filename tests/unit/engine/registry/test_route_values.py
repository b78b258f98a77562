"""What the registry routes read from a request: the pull reference and the login server."""

from __future__ import annotations

import pytest

from dockyard.engine.api.registry_routes import _login_location, pull_reference
from dockyard.engine.images.model import InvalidReference

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("from_image", "tag", "expected", "all_tags"),
    [
        ("localhost:5000/x", "v1", "localhost:5000/x:v1", False),
        ("localhost:5000/x", DIGEST, f"localhost:5000/x@{DIGEST}", False),
        ("localhost:5000/x:old", "new", "localhost:5000/x:new", False),
        ("localhost:5000/x:v2", "", "localhost:5000/x:v2", False),
        (f"localhost:5000/x@{DIGEST}", "", f"localhost:5000/x@{DIGEST}", False),
        ("localhost:5000/x", "", "localhost:5000/x", True),  # docker pull -a
        ("busybox", "latest", "docker.io/library/busybox:latest", False),
    ],
)
def test_pull_reference(from_image: str, tag: str, expected: str, all_tags: bool) -> None:
    ref, every = pull_reference(from_image, tag)
    assert (str(ref), every) == (expected, all_tags)


@pytest.mark.parametrize(("from_image", "tag"), [("x", "bad tag"), ("x", "sha256:12"), ("UP", "")])
def test_bad_pull_references(from_image: str, tag: str) -> None:
    with pytest.raises(InvalidReference):
        pull_reference(from_image, tag)


@pytest.mark.parametrize(
    ("server", "host", "dial"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://reg.example:443/v2/", "reg.example:443", "reg.example:443"),
        ("", "docker.io", "registry-1.docker.io"),
        ("https://index.docker.io/v1/", "docker.io", "registry-1.docker.io"),
    ],
)
def test_login_location(server: str, host: str, dial: str) -> None:
    location = _login_location(server)
    assert (location.host, location.dial_host) == (host, dial)
