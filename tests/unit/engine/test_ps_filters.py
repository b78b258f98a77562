"""`docker ps` filters and Docker's filter/time arguments (model/filters.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from dockyard.engine import containers as ct
from dockyard.engine.model import health as hm
from dockyard.engine.model.filters import (
    FilterArgs,
    PsQuery,
    labels_match,
    parse_go_duration,
    parse_timestamp,
    parse_unix_timestamp,
    select_containers,
    validate_ps_filters,
)

S = 1_000_000_000
T0 = ct.parse_time_ns("2026-01-01T00:00:00Z")
IMG_A = "sha256:" + "a" * 64
IMG_B = "sha256:" + "b" * 64


def record(
    n: int,
    name: str,
    *,
    status: str = "running",
    exit_code: int = 0,
    image_id: str = IMG_A,
    labels: dict[str, str] | None = None,
    health: str | None = None,
    ever_started: bool = True,
) -> ct.ContainerRecord:
    state = ct.ContainerState(
        status=status,  # type: ignore[arg-type]
        exit_code=exit_code,
        started_at="2026-01-01T00:00:00Z" if ever_started else ct.ZERO_TIME,
        health=None if health is None else hm.HealthState(status=health),
    )
    return ct.ContainerRecord(
        id=f"{n:x}" * 64 if n < 16 else f"{n:064x}",
        name="/" + name,
        created=f"2026-01-01T00:00:{n:02d}Z",
        image="busybox",
        image_id=image_id,
        path="sh",
        args=(),
        config={"Labels": labels or {}},
        host_config={},
        state=state,
    )


# Newest first, as the store lists them.
RECORDS = [
    record(5, "web", labels={"tier": "front", "env": "prod"}, health="healthy"),
    record(4, "db", status="exited", exit_code=3, labels={"tier": "back"}),
    record(3, "cache", image_id=IMG_B, health="starting"),
    record(2, "job", status="exited", exit_code=0),
    record(1, "fresh", status="created", ever_started=False),
]


def names(query: PsQuery) -> list[str]:
    return [r.name.lstrip("/") for r in select_containers(RECORDS, query)]


def q(all_: bool = False, **filters: list[str]) -> PsQuery:
    args = FilterArgs.of(**filters)
    return PsQuery(filters=args, all=all_, exited=validate_ps_filters(args))


def test_both_wire_forms_parse_alike() -> None:
    cli = FilterArgs.parse(json.dumps({"name": {"web": True, "off": False}}))
    sdk = FilterArgs.parse(json.dumps({"name": ["web"]}))
    assert cli == sdk == FilterArgs.of(name=["web"])
    assert FilterArgs.parse("") == FilterArgs.parse("null") == FilterArgs()
    with pytest.raises(ct.EngineError):
        FilterArgs.parse("{bogus")


def test_unknown_filters_and_values_get_dockerds_errors() -> None:
    with pytest.raises(ct.InvalidArgument, match=r"^Invalid filter 'bogus'$"):
        validate_ps_filters(FilterArgs.of(bogus=["x"]))
    with pytest.raises(ct.InvalidArgument, match=r"^Unrecognised filter value for status: up$"):
        validate_ps_filters(FilterArgs.of(status=["up"]))
    with pytest.raises(ct.InvalidArgument, match=r"^Unrecognised filter value for health: ok$"):
        validate_ps_filters(FilterArgs.of(health=["ok"]))
    with pytest.raises(ct.InvalidArgument, match='parsing "x": invalid syntax'):
        validate_ps_filters(FilterArgs.of(exited=["x"]))


def test_running_only_unless_all_status_or_a_limit() -> None:
    assert names(q()) == ["web", "cache"]
    assert names(q(True)) == ["web", "db", "cache", "job", "fresh"]
    assert names(q(status=["exited"])) == ["db", "job"]
    assert names(q(status=["created", "running"])) == ["web", "cache", "fresh"]
    assert names(PsQuery(limit=2)) == ["web", "db"]


def test_name_id_and_label() -> None:
    assert names(q(True, name=["^c"])) == ["cache"]
    assert names(q(True, name=["/db"])) == ["db"]
    assert names(q(True, id=["4444"])) == ["db"]
    assert names(q(True, label=["tier"])) == ["web", "db"]
    assert names(q(True, label=["tier=front"])) == ["web"]
    assert names(q(True, label=["tier", "env=prod"])) == ["web"]
    assert names(q(True, label=["nope"])) == []


def test_exited_needs_a_container_that_ran_and_stopped() -> None:
    assert names(q(True, exited=["3"])) == ["db"]
    assert names(q(True, exited=["0"])) == ["job"]
    assert names(q(True, exited=["0", "3"])) == ["db", "job"]
    assert names(q(exited=["3"])) == [], "without -a stopped containers are not listed"


def test_health() -> None:
    assert names(q(True, health=["healthy"])) == ["web"]
    assert names(q(True, health=["starting", "healthy"])) == ["web", "cache"]
    assert names(q(True, health=["none"])) == ["db", "job", "fresh"]
    assert names(q(True, health=["unhealthy"])) == []


def test_before_and_since_are_exclusive_and_ancestor_matches_image_ids() -> None:
    db = RECORDS[1].id
    assert names(replace(q(True), before_id=db)) == ["cache", "job", "fresh"]
    assert names(replace(q(True), since_id=db)) == ["web"]
    assert names(replace(q(True), ancestor_ids=frozenset({IMG_B}))) == ["cache"]
    assert names(replace(q(True), ancestor_ids=frozenset())) == []
    assert names(q(True, volume=["v"])) == []
    assert names(q(True, network=["n"])) == []


def test_match_helpers_follow_moby_filters_args() -> None:
    args = FilterArgs.of(container=["ab"], image=["busybox"])
    assert args.fuzzy_match("container", "abcdef")
    assert not args.fuzzy_match("container", "xabc")
    assert args.fuzzy_match("other", "anything")
    assert args.exact_match("image", "busybox") and not args.exact_match("image", "busybox:1")
    assert FilterArgs.of(name=["(["]).match("name", "x") is False  # bad regexps match nothing
    labels = {"a": "1", "b": "2"}
    assert labels_match(FilterArgs.of(label=["a=1"]), labels)
    assert not labels_match(FilterArgs.of(**{"label!": ["b"]}), labels)
    assert labels_match(FilterArgs.of(**{"label!": ["c"]}), labels)


def test_times() -> None:
    assert parse_go_duration("1h30m") == 5400 * S
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("250ms") == 250_000_000
    assert parse_go_duration("10") is None
    assert parse_go_duration("abc") is None
    assert parse_unix_timestamp("1795917754") == 1795917754 * S
    assert parse_unix_timestamp("1795917754.5") == 1795917754 * S + 500_000_000
    with pytest.raises(ct.EngineError, match="invalid syntax"):
        parse_unix_timestamp("yesterday")
    now = T0 + 3600 * S
    assert parse_timestamp("10m", now) == now - 600 * S
    assert parse_timestamp("2026-01-01T00:00:00Z", now) == T0
    assert parse_timestamp("2026-01-01T01:00:00+01:00", now) == T0
    assert parse_timestamp("2026-01-01", now) == T0
    assert parse_timestamp("2026-01-01T00:00:00.25Z", now) == T0 + S // 4
    assert parse_timestamp(str(T0 // S), now) == T0
    with pytest.raises(ct.InvalidArgument, match="failed to parse value as time or duration"):
        parse_timestamp("soon", now)
