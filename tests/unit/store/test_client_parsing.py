"""The store client's pure layer: request building and response parsing, with no server."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

import pytest

from dockyard.store import client as sc
from dockyard.store.client import (
    Call,
    CompareFailedError,
    ConnectionFailedError,
    EventIndexClearedError,
    KeyExistsError,
    KeyNotFoundError,
    Node,
    NotADirectoryError,
    NotAFileError,
    Result,
    StoreClientError,
)
from dockyard.store.recipes import queue_position

pytestmark = pytest.mark.unit

HEADERS = {
    "X-Etcd-Index": "12",
    "X-Raft-Index": "345",
    "X-Raft-Term": "2",
    "Content-Type": "application/json",
}


EXPIRATION = "2026-11-29T01:31:09.25810808Z"  # Go RFC3339Nano: trailing zeros trimmed


def body(data: object) -> bytes:
    return (json.dumps(data) + "\n").encode()


# -- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("foo", "/v2/keys/foo"),
        ("/foo/bar/", "/v2/keys/foo/bar"),
        ("/", "/v2/keys/"),
        ("", "/v2/keys/"),
        ("/a//b/./c", "/v2/keys/a/b/c"),
        ("/sp ace/ü?#%", "/v2/keys/sp%20ace/%C3%BC%3F%23%25"),
    ],
)
def test_key_path_cleans_and_escapes_like_the_go_client(key: str, path: str) -> None:
    assert sc.key_path(key) == path


def test_get_call_sends_only_the_flags_that_are_on() -> None:
    assert sc.get_call("/d") == Call("GET", "/v2/keys/d")
    call = sc.get_call("/d", recursive=True, sorted=True, quorum=True)
    assert call.query == (("recursive", "true"), ("sorted", "true"), ("quorum", "true"))
    assert call.idempotent and not call.watch


def test_set_call_puts_everything_in_the_form_body() -> None:
    call = sc.set_call("/k", "v", ttl=5, prev_value="old", prev_index=7, prev_exist=True)
    assert call.method == "PUT" and call.query == ()
    assert dict(call.form) == {
        "value": "v",
        "ttl": "5",
        "prevValue": "old",
        "prevIndex": "7",
        "prevExist": "true",
    }
    assert not call.idempotent


def test_set_call_for_a_dir_or_a_refresh_sends_no_value() -> None:
    assert dict(sc.set_call("/d", "ignored", dir=True, prev_exist=False).form) == {
        "dir": "true",
        "prevExist": "false",
    }
    assert dict(sc.set_call("/k", None, ttl=3, prev_exist=True, refresh=True).form) == {
        "ttl": "3",
        "prevExist": "true",
        "refresh": "true",
    }


def test_set_call_refuses_what_etcd_would_reject() -> None:
    with pytest.raises(ValueError, match="ttl"):
        sc.set_call("/k", None, refresh=True)  # etcd 212
    with pytest.raises(ValueError, match="prev_value"):
        sc.set_call("/k", "v", prev_value="")  # etcd 201
    with pytest.raises(ValueError, match="ttl"):
        sc.set_call("/k", "v", ttl=-1)


def test_delete_call_puts_conditions_in_the_query_because_etcd_ignores_a_delete_body() -> None:
    call = sc.delete_call("/k", recursive=True, dir=True, prev_value="v", prev_index=3)
    assert call.method == "DELETE" and call.form == ()
    assert dict(call.query) == {
        "recursive": "true",
        "dir": "true",
        "prevValue": "v",
        "prevIndex": "3",
    }


def test_append_and_watch_calls() -> None:
    call = sc.append_call("/q", "job", ttl=9)
    assert (call.method, call.path, dict(call.form)) == (
        "POST",
        "/v2/keys/q",
        {"value": "job", "ttl": "9"},
    )
    watch = sc.watch_call("/k", index=42, recursive=True)
    assert watch.watch and watch.idempotent
    assert dict(watch.query) == {"wait": "true", "recursive": "true", "waitIndex": "42"}
    assert dict(sc.watch_call("/k").query) == {"wait": "true"}


# -- responses ---------------------------------------------------------------------------------


def test_parse_set_with_prev_node_and_headers() -> None:
    data = {
        "action": "set",
        "node": {"key": "/k", "value": "v2", "expiration": EXPIRATION, "ttl": 5,
                 "modifiedIndex": 12, "createdIndex": 12},
        "prevNode": {"key": "/k", "value": "v1", "modifiedIndex": 11, "createdIndex": 11},
    }  # fmt: skip
    result = sc.parse_keys_response(200, HEADERS, body(data))
    assert result == Result(
        action="set",
        node=Node("/k", "v2", ttl=5, expiration=EXPIRATION,
                  modified_index=12, created_index=12),
        prev_node=Node("/k", "v1", modified_index=11, created_index=11),
        etcd_index=12,
        raft_index=345,
        raft_term=2,
    )  # fmt: skip


def test_parse_root_listing_without_key_or_indexes() -> None:
    data = {
        "action": "get",
        "node": {"dir": True, "nodes": [
            {"key": "/d", "dir": True, "modifiedIndex": 5, "createdIndex": 5,
             "nodes": [{"key": "/d/f", "value": "", "modifiedIndex": 6, "createdIndex": 6}]},
            {"key": "/e", "dir": True, "modifiedIndex": 7, "createdIndex": 7},
        ]},
    }  # fmt: skip
    result = sc.parse_keys_response(200, {"x-etcd-index": "7"}, body(data))
    root = result.node
    assert (root.key, root.dir, root.value, root.modified_index) == ("/", True, None, 0)
    assert [n.key for n in root.walk()] == ["/", "/d", "/d/f", "/e"]
    assert root.nodes[0].nodes[0].value == ""  # an empty file keeps its ""
    assert root.nodes[1].nodes == ()  # an empty dir has no `nodes` key on the wire
    assert result.prev_node is None and result.raft_index is None


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        (100, 404, KeyNotFoundError),
        (101, 412, CompareFailedError),
        (102, 403, NotAFileError),
        (104, 400, NotADirectoryError),
        (105, 412, KeyExistsError),
        (401, 400, EventIndexClearedError),
        (209, 400, StoreClientError),
    ],
)
def test_etcd_errors_map_to_one_exception_tree(
    code: int, status: int, cls: type[StoreClientError]
) -> None:
    data = {"errorCode": code, "message": "M", "cause": "/c", "index": 9}
    with pytest.raises(cls) as info:
        sc.parse_keys_response(status, {"X-Etcd-Index": "9"}, body(data))
    error = info.value
    assert type(error) is cls and isinstance(error, StoreClientError)
    assert (error.code, error.message, error.cause, error.index, error.status) == (
        code,
        "M",
        "/c",
        9,
        status,
    )
    assert str(error) == f"{code}: M (/c) [9]"  # etcdctl's rendering


def test_error_without_cause_and_non_keys_errors() -> None:
    error = sc.parse_error(403, {}, body({"errorCode": 102, "message": "Not a file", "index": 3}))
    assert isinstance(error, NotAFileError) and str(error) == "102: Not a file () [3]"
    members = sc.parse_error(404, {}, body({"message": "No such member: abc"}))
    assert (members.code, members.message) == (0, "No such member: abc")
    plain = sc.parse_error(404, {}, b"404 page not found\n")
    assert "404 page not found" in str(plain) and plain.status == 404


def test_malformed_success_body_is_an_error_not_a_crash() -> None:
    with pytest.raises(StoreClientError, match="malformed"):
        sc.parse_keys_response(200, {}, b"<html>")


def test_cluster_endpoints_parse() -> None:
    member = {"id": "ac7c97ef0ec193b0", "name": "ref1", "peerURLs": ["http://127.0.0.1:2380"],
              "clientURLs": ["http://127.0.0.1:2379"]}  # fmt: skip
    members = sc.parse_members(200, {}, body({"members": [member, {"id": "b", "peerURLs": ["p"]}]}))
    assert members[0] == sc.Member(
        "ac7c97ef0ec193b0", "ref1", ("http://127.0.0.1:2380",), ("http://127.0.0.1:2379",)
    )
    assert members[1] == sc.Member("b", "", ("p",), ())  # unstarted: no name, no client URLs
    assert sc.parse_leader(200, {}, body(member)).name == "ref1"
    with pytest.raises(StoreClientError, match="During election"):
        sc.parse_leader(503, {}, body({"message": "During election"}))
    assert sc.parse_machines(200, {}, b"http://a:1, http://b:2") == ["http://a:1", "http://b:2"]
    assert sc.parse_health(200, {}, b'{"health":"true"}') is True
    assert sc.parse_health(503, {}, b'{"health":"false"}') is False
    assert sc.parse_health(200, {}, b'{"health":true}') is True
    version = sc.parse_version(200, {}, b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}')
    assert version == sc.Version("3.4.23", "3.4.0")


def test_resync_result_for_a_present_and_a_missing_key() -> None:
    got = Result("get", Node("/k", "v", modified_index=5, created_index=5), etcd_index=1500)
    assert sc.resync_result("/k", got, None) is got
    gone = sc.resync_result("k/", None, KeyNotFoundError("Key not found", cause="/k", index=1600))
    assert gone == Result("get", Node("/k"), etcd_index=1600)


def test_connection_failed_error_reads_like_the_go_client() -> None:
    error = ConnectionFailedError(
        [("http://127.0.0.1:1", "dial tcp 127.0.0.1:1: connect: connection refused")]
    )
    assert str(error) == (
        "client: etcd cluster is unavailable or misconfigured; "
        "error #0: dial tcp 127.0.0.1:1: connect: connection refused\n"
    )
    assert error.detail() == "error #0: dial tcp 127.0.0.1:1: connect: connection refused\n"


def test_form_encoding_round_trips_odd_values() -> None:
    call = sc.set_call("/k", "a&b=c d\nü")
    assert parse_qsl(urlencode(call.form)) == [("value", "a&b=c d\nü")]


# -- recipes' pure decision --------------------------------------------------------------------


def _queue(*indexes: int) -> Node:
    return Node(
        "/_locks/x", dir=True, nodes=tuple(Node(f"/_locks/x/{i:020d}", "v") for i in indexes)
    )


def test_queue_position_holder_predecessor_and_absence() -> None:
    listing = _queue(30, 12, 20)  # server order need not be sorted
    first = queue_position(listing, f"/_locks/x/{12:020d}")
    assert first.holds and first.predecessor is None
    third = queue_position(listing, f"/_locks/x/{30:020d}")
    assert not third.holds
    assert third.predecessor is not None and third.predecessor.key.endswith("20")
    assert third.holder is not None and third.holder.key.endswith("12")
    gone = queue_position(listing, "/_locks/x/00000000000000000099")
    assert gone.mine is None and not gone.holds
    assert queue_position(_queue(), None).holder is None
