"""API version prefixes and negotiation bounds, with dockerd's messages."""

from __future__ import annotations

import pytest

from dockyard.engine.api.versions import (
    API_VERSION,
    MIN_API_VERSION,
    ApiVersion,
    ApiVersionError,
    VersionedPath,
    ping_headers,
    split_version,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "version", "rest", "explicit"),
    [
        ("/_ping", API_VERSION, "/_ping", False),
        ("/version", API_VERSION, "/version", False),
        ("/v1.41/containers/json", ApiVersion(1, 41), "/containers/json", True),
        ("/v1.24/info", ApiVersion(1, 24), "/info", True),
        ("/v1.44/_ping", ApiVersion(1, 44), "/_ping", True),
        ("/vfoo/info", API_VERSION, "/vfoo/info", False),  # not a version: an unknown path
    ],
)
def test_the_version_comes_from_the_path_prefix(
    path: str, version: ApiVersion, rest: str, explicit: bool
) -> None:
    assert split_version(path) == VersionedPath(version, rest, explicit)


def test_a_newer_client_gets_dockerds_message() -> None:
    with pytest.raises(ApiVersionError) as error:
        split_version("/v1.99/info")
    assert str(error.value) == (
        f"client version 1.99 is too new. Maximum supported API version is {API_VERSION}"
    )


def test_an_older_client_gets_dockerds_message() -> None:
    with pytest.raises(ApiVersionError) as error:
        split_version("/v1.12/info")
    assert str(error.value) == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, please "
        "upgrade your client to a newer version"
    )


def test_versions_compare_numerically_not_as_text() -> None:
    assert ApiVersion(1, 9) < ApiVersion(1, 10) < ApiVersion(2, 0)
    assert ApiVersion.parse("1.44") == API_VERSION and str(MIN_API_VERSION) == "1.24"
    with pytest.raises(ValueError):
        ApiVersion.parse("1")


def test_current_clients_can_negotiate() -> None:
    # docker SDK 7.x and CLI 29 refuse servers below 1.44; the ping advertises the version.
    assert ApiVersion(1, 44) <= API_VERSION
    assert dict(ping_headers())["Api-Version"] == str(API_VERSION)
