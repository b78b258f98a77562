"""Registry auth values: X-Registry-Auth decoding, challenges, scopes, token requests."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.engine.images.registry.auth import (
    AuthConfig,
    Challenge,
    Scope,
    decode_registry_auth,
    parse_auth_body,
    parse_challenges,
    token_request_url,
)

pytestmark = pytest.mark.unit


def _cli_header(value: dict[str, str]) -> str:
    # docker CLI: base64.URLEncoding (padded) of the JSON.
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_decodes_the_cli_form() -> None:
    header = _cli_header({"username": "u", "password": "p>?~", "serveraddress": "reg:5000"})
    auth = decode_registry_auth(header)
    assert auth == AuthConfig(username="u", password="p>?~", server_address="reg:5000")
    assert not auth.anonymous


def test_decodes_unpadded_and_standard_alphabet_forms() -> None:
    raw = json.dumps({"username": "u", "password": "??>>"}).encode()
    unpadded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    standard = base64.b64encode(raw).decode()
    assert decode_registry_auth(unpadded).password == "??>>"
    assert decode_registry_auth(standard).password == "??>>"


def test_the_auth_field_alone_carries_user_and_password() -> None:
    encoded = base64.b64encode(b"alice:s3:cret").decode()
    auth = decode_registry_auth(_cli_header({"auth": encoded}))
    assert (auth.username, auth.password) == ("alice", "s3:cret")


@pytest.mark.parametrize("header", ["", "   ", "!!!not base64", _cli_header({})[:5], "bnVsbA=="])
def test_undecodable_or_empty_headers_are_anonymous(header: str) -> None:
    # moby: "for a pull it is not an error if no auth was given".
    assert decode_registry_auth(header).anonymous


def test_the_password_never_shows_in_repr() -> None:
    text = repr(AuthConfig(username="u", password="hunter2", identity_token="tok"))
    assert "hunter2" not in text and "tok'" not in text


def test_auth_body() -> None:
    body = json.dumps({"username": "u", "password": "p", "serveraddress": "h:1"}).encode()
    assert parse_auth_body(body).server_address == "h:1"
    with pytest.raises(ValueError):
        parse_auth_body(b"[1]")


def test_bearer_challenge() -> None:
    (challenge,) = parse_challenges(
        ['Bearer realm="https://auth.example/token",service="registry.example",'
         'scope="repository:samalba/my-app:pull,push"']
    )  # fmt: skip
    assert challenge.scheme == "bearer"
    assert challenge.get("realm") == "https://auth.example/token"
    assert challenge.get("service") == "registry.example"
    assert challenge.get("scope") == "repository:samalba/my-app:pull,push"


def test_basic_challenge_and_several_in_one_header() -> None:
    challenges = parse_challenges(['Basic realm="Registry Realm", Bearer realm="x",service=y'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].get("realm") == "Registry Realm"
    assert challenges[1].get("service") == "y"


def test_quoted_escapes_and_garbage() -> None:
    (challenge,) = parse_challenges(['Bearer realm="a\\"b"'])
    assert challenge.get("realm") == 'a"b'
    assert parse_challenges(["", "   "]) == ()
    # A challenge with an unterminated quote is malformed: it is dropped.
    assert parse_challenges(['Basic realm="r", Bearer realm="oops']) == (
        Challenge("basic", (("realm", "r"),)),
    )


def test_scope_text() -> None:
    assert str(Scope("team/app", ("pull", "push"))) == "repository:team/app:pull,push"


def test_token_request_url() -> None:
    challenge = Challenge(
        "bearer", (("realm", "https://auth.example/token?x=1"), ("service", "reg"))
    )
    url = token_request_url(
        challenge, [Scope("a/b", ("pull",)), Scope("c", ("pull", "push"))], AuthConfig("me", "pw")
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example", "/token")
    query = parse_qs(parts.query)
    assert query == {
        "x": ["1"],
        "service": ["reg"],
        "scope": ["repository:a/b:pull", "repository:c:pull,push"],
        "account": ["me"],
    }
    anonymous = parse_qs(urlsplit(token_request_url(challenge, [], AuthConfig())).query)
    assert "account" not in anonymous


@pytest.mark.parametrize("realm", ["", "ftp://x/token", "not a url"])
def test_token_request_needs_an_http_realm(realm: str) -> None:
    with pytest.raises(ValueError):
        token_request_url(Challenge("bearer", (("realm", realm),)), [], AuthConfig())
