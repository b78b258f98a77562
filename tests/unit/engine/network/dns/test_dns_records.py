"""The answer rules of the name table (libnetwork sandbox.go / network.go / resolver.go)."""

from __future__ import annotations

from random import Random

import pytest

from dockyard.engine.network.dns.message import TYPE_A, TYPE_AAAA, TYPE_MX, TYPE_PTR, AnswerRecord
from dockyard.engine.network.dns.records import (
    TTL_S,
    Answer,
    AnswerKind,
    DnsEndpoint,
    DnsTable,
)

pytestmark = pytest.mark.unit

WEB = "1" * 64
DB = "2" * 64
CLIENT = "3" * 64
LONER = "4" * 64
DB2 = "5" * 64


def ep(cid: str, name: str, net: str, ip: str, **kw: object) -> DnsEndpoint:
    return DnsEndpoint(cid, name, f"id-{net}", net, ip, **kw)  # type: ignore[arg-type]


ENDPOINTS = [
    ep(WEB, "web", "front", "10.1.0.2", aliases=("www", "site")),
    ep(WEB, "web", "back", "10.2.0.2"),
    ep(DB, "db", "back", "10.2.0.3", aliases=("site",)),
    ep(DB2, "db2", "back", "10.2.0.4", aliases=("site",)),
    ep(CLIENT, "client", "front", "10.1.0.9", links=(("database", "web"),)),
    ep(LONER, "loner", "island", "10.3.0.2", ipv6="fd00::2"),
]
TABLE = DnsTable.build(ENDPOINTS)


def ask(requester: str, qname: str, qtype: int = TYPE_A, seed: int = 0) -> Answer:
    return TABLE.answer(requester, qname, qtype, Random(seed))


def addresses(answer: Answer) -> list[str]:
    assert answer.kind is AnswerKind.RECORDS
    return [record.data for record in answer.records]


@pytest.mark.parametrize("qname", ["web", "web.", "WEB.", "wWw.", "site", "111111111111."])
def test_names_aliases_and_short_id_resolve_on_the_shared_network(qname: str) -> None:
    answer = ask(CLIENT, qname)
    owner = qname if qname.endswith(".") else qname + "."
    assert answer.records == (AnswerRecord(owner, TYPE_A, TTL_S, "10.1.0.2"),)


def test_full_id_is_not_a_name() -> None:
    assert ask(CLIENT, WEB).kind is AnswerKind.FORWARD


def test_first_network_in_order_answers_alone() -> None:
    # web is on back and front; networks are tried by name: "back" before "front".
    assert addresses(ask(WEB, "web")) == ["10.2.0.2"]
    assert addresses(ask(WEB, "web.front")) == ["10.1.0.2"]
    assert addresses(ask(WEB, "WEB.Front.")) == ["10.1.0.2"]


def test_shared_alias_answers_every_endpoint_in_rng_order() -> None:
    seen = set()
    for seed in range(20):
        got = addresses(ask(WEB, "site", seed=seed))  # on "back": db and db2
        assert sorted(got) == ["10.2.0.3", "10.2.0.4"]
        seen.add(tuple(got))
    assert len(seen) == 2  # the order comes from the rng
    assert addresses(ask(WEB, "site", seed=7)) == addresses(ask(WEB, "site", seed=7))


def test_requester_sees_only_its_networks() -> None:
    assert ask(CLIENT, "db").kind is AnswerKind.NXDOMAIN  # db is on back only
    assert ask(LONER, "web").kind is AnswerKind.NXDOMAIN
    assert ask(LONER, "web.front").kind is AnswerKind.NXDOMAIN
    assert ask(LONER, "site").kind is AnswerKind.NXDOMAIN
    assert ask("f" * 64, "web").kind is AnswerKind.NXDOMAIN  # not in the table at all


def test_unknown_names_are_forwarded() -> None:
    assert ask(CLIENT, "example.com").kind is AnswerKind.FORWARD
    assert ask(CLIENT, "nosuch").kind is AnswerKind.FORWARD
    assert ask(CLIENT, "web.nosuchnet").kind is AnswerKind.FORWARD


def test_search_domains_are_not_stripped() -> None:
    # libnetwork strips nothing: web.corp.example is not web.
    assert ask(CLIENT, "web.corp.example.").kind is AnswerKind.FORWARD


def test_link_alias_is_private_to_the_declaring_container() -> None:
    assert addresses(ask(CLIENT, "database")) == ["10.1.0.2"]
    assert addresses(ask(CLIENT, "DATABASE.front.")) == ["10.1.0.2"]
    assert ask(WEB, "database").kind is AnswerKind.FORWARD


def test_link_alias_shadows_a_container_of_the_same_name() -> None:
    table = DnsTable.build(
        [
            ep(WEB, "web", "n", "10.0.0.2"),
            ep(DB, "db", "n", "10.0.0.3"),
            ep(CLIENT, "client", "n", "10.0.0.9", links=(("db", "web"),)),
        ]
    )
    got = table.answer(CLIENT, "db", TYPE_A, Random(0))
    assert [r.data for r in got.records] == ["10.0.0.2"]
    assert [r.data for r in table.answer(WEB, "db", TYPE_A, Random(0)).records] == ["10.0.0.3"]


def test_aaaa_for_a_v4_only_name_is_nodata_not_forwarded() -> None:
    assert ask(CLIENT, "web", TYPE_AAAA) == Answer(AnswerKind.RECORDS, ())
    assert ask(LONER, "loner", TYPE_AAAA).records == (
        AnswerRecord("loner.", TYPE_AAAA, TTL_S, "fd00::2"),
    )
    assert ask(CLIENT, "example.com", TYPE_AAAA).kind is AnswerKind.FORWARD


def test_other_types_for_a_visible_name_are_nodata() -> None:
    assert ask(CLIENT, "web", TYPE_MX) == Answer(AnswerKind.RECORDS, ())
    assert ask(LONER, "web", TYPE_MX).kind is AnswerKind.NXDOMAIN
    assert ask(CLIENT, "example.com", TYPE_MX).kind is AnswerKind.FORWARD


def test_ptr_answers_name_dot_network_for_the_requesters_networks() -> None:
    assert ask(CLIENT, "2.0.1.10.in-addr.arpa.", TYPE_PTR).records == (
        AnswerRecord("2.0.1.10.in-addr.arpa.", TYPE_PTR, TTL_S, "web.front."),
    )
    assert ask(WEB, "3.0.2.10.IN-ADDR.ARPA", TYPE_PTR).records[0].data == "db.back."
    # Not on a shared network, or nobody's: forwarded as Docker does.
    assert ask(CLIENT, "3.0.2.10.in-addr.arpa.", TYPE_PTR).kind is AnswerKind.FORWARD
    assert ask(CLIENT, "1.1.168.192.in-addr.arpa.", TYPE_PTR).kind is AnswerKind.FORWARD
    v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
    assert ask(LONER, v6, TYPE_PTR).records[0].data == "loner.island."


def test_ptr_never_names_an_alias() -> None:
    table = DnsTable.build([ep(WEB, "web", "n", "10.0.0.2", aliases=("a", "b"))])
    got = table.answer(WEB, "2.0.0.10.in-addr.arpa.", TYPE_PTR, Random(0))
    assert [r.data for r in got.records] == ["web.n."]


def test_root_and_empty_names_are_forwarded() -> None:
    assert ask(CLIENT, ".").kind is AnswerKind.FORWARD
    assert ask(CLIENT, "").kind is AnswerKind.FORWARD


def test_duplicates_are_removed() -> None:
    table = DnsTable.build(
        [
            ep(WEB, "web", "n", "10.0.0.2", aliases=("web", "x")),
            ep(DB, "db", "n", "10.0.0.2", aliases=("x",)),
        ]
    )
    assert [r.data for r in table.answer(DB, "x", TYPE_A, Random(0)).records] == ["10.0.0.2"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"container_id": "abc"},
        {"container_name": "/web"},
        {"container_name": ""},
        {"ipv4": "300.1.1.1"},
        {"ipv6": "nope"},
        {"network_name": ""},
    ],
)
def test_endpoint_values_are_checked(kwargs: dict[str, str]) -> None:
    fields = {
        "container_id": WEB,
        "container_name": "web",
        "network_id": "n",
        "network_name": "n",
        "ipv4": "10.0.0.2",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        DnsEndpoint(**fields)  # type: ignore[arg-type]


def test_a_network_has_one_name() -> None:
    with pytest.raises(ValueError):
        DnsTable.build(
            [
                DnsEndpoint(WEB, "web", "nid", "one", "10.0.0.2"),
                DnsEndpoint(DB, "db", "nid", "two", "10.0.0.3"),
            ]
        )
