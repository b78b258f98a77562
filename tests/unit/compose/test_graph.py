"""The dependency graph: every edge kind, missing targets, cycles, levels and closures."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.compose.graph import DependencyError, DependencyGraph, Edge, build_graph
from dockyard.compose.model import project_from_dict

pytestmark = pytest.mark.unit


def graph(**services: dict[str, Any]) -> DependencyGraph:
    specs = {name: {"image": "busybox", **spec} for name, spec in services.items()}
    return build_graph(project_from_dict({"name": "app", "services": specs}))


def failure(**services: dict[str, Any]) -> DependencyError:
    with pytest.raises(DependencyError) as info:
        graph(**services)
    return info.value


def test_example_app_web_links_redis() -> None:
    g = graph(web={"links": ["redis"]}, redis={})
    assert g.levels() == (("redis",), ("web",))
    assert g.stop_levels() == (("web",), ("redis",))
    assert g.edges["web"] == (Edge("web", "redis", "links"),)


def test_every_edge_kind() -> None:
    g = graph(
        web={
            "links": ["db:database"],
            "depends_on": {"cache": {"condition": "service_healthy"}},
            "volumes_from": ["data:ro", "container:outside"],
        },
        sidecar={"network_mode": "service:web", "pid": "service:web", "ipc": "service:db"},
        db={},
        cache={},
        data={},
    )
    assert g.edges["web"] == (
        Edge("web", "db", "links"),
        Edge("web", "cache", "depends_on", "service_healthy"),
        Edge("web", "data", "volumes_from"),  # container: sources are not services
    )
    assert g.edges["sidecar"] == (
        Edge("sidecar", "web", "network_mode"),
        Edge("sidecar", "web", "pid"),
        Edge("sidecar", "db", "ipc"),
    )
    assert g.dependencies("sidecar") == ("web", "db")
    assert g.levels() == (("db", "cache", "data"), ("web",), ("sidecar",))


def test_independent_services_share_a_level_in_file_order() -> None:
    g = graph(c={}, a={}, b={"depends_on": {"a": {"condition": "service_started"}}})
    assert g.levels() == (("c", "a"), ("b",))
    assert g.start_order() == ("c", "a", "b")


def test_level_is_one_past_the_deepest_dependency() -> None:
    g = graph(
        top={"links": ["mid", "base"]},
        mid={"links": ["base"]},
        base={},
        lone={},
    )
    assert g.levels() == (("base", "lone"), ("mid",), ("top",))


def test_conditions_are_kept() -> None:
    g = graph(
        web={
            "depends_on": {
                "migrate": {"condition": "service_completed_successfully"},
                "db": {"condition": "service_healthy"},
            }
        },
        migrate={"depends_on": {"db": {"condition": "service_healthy"}}},
        db={},
    )
    assert [(e.target, e.condition) for e in g.edges["web"]] == [
        ("migrate", "service_completed_successfully"),
        ("db", "service_healthy"),
    ]
    assert g.levels() == (("db",), ("migrate",), ("web",))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"links": ["db"]}, 'Service "web" has a link to service "db" which does not exist.'),
        (
            {"depends_on": {"db": {"condition": "service_started"}}},
            "Service 'web' depends on service 'db' which is undefined.",
        ),
        (
            {"volumes_from": ["db"]},
            'Service "web" mounts volumes from "db", which is not the name of a service or '
            "container.",
        ),
        (
            {"network_mode": "service:db"},
            'Service "web" is trying to use the network of "db", which is not the name of a '
            "service or container.",
        ),
    ],
)
def test_missing_target_names_both(spec: dict[str, Any], message: str) -> None:
    err = failure(web=spec)
    assert err.message == message
    assert err.service == "web"
    assert err.key == next(iter(spec))


def test_optional_depends_on_may_be_absent() -> None:
    g = graph(web={"depends_on": {"db": {"condition": "service_started", "required": False}}})
    assert g.edges["web"] == ()


def test_cycle_named_in_order() -> None:
    assert failure(web={"links": ["db"]}, db={"links": ["web"]}).message == (
        "Circular dependency between web and db"
    )
    err = failure(
        a={"depends_on": {"b": {"condition": "service_started"}}},
        b={"volumes_from": ["c"]},
        c={"network_mode": "service:a"},
        d={"links": ["a"]},
    )
    assert err.message == "Circular dependency between a and b and c"


def test_cycle_reported_from_where_it_is_entered() -> None:
    err = failure(entry={"links": ["x"]}, x={"links": ["y"]}, y={"links": ["x"]})
    assert err.message == "Circular dependency between x and y"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"links": ["web"]}, "A service can not link to itself: web"),
        ({"volumes_from": ["web"]}, "A service can not mount itself as volume: web"),
        (
            {"depends_on": {"web": {"condition": "service_started"}}},
            "A service can not depend on itself: web",
        ),
    ],
)
def test_self_reference(spec: dict[str, Any], message: str) -> None:
    assert failure(web=spec).message == message


def test_with_dependencies_and_dependents() -> None:
    g = graph(
        web={"links": ["api"]},
        api={"depends_on": {"db": {"condition": "service_healthy"}}, "links": ["cache"]},
        db={},
        cache={},
        worker={"links": ["db"]},
        other={},
    )
    assert g.with_dependencies(["web"]) == ("db", "cache", "api", "web")
    assert g.with_dependencies(["worker", "other"]) == ("db", "other", "worker")
    assert g.dependents("db") == ("api", "worker", "web")
    assert g.dependents("web") == ()
    assert g.direct_dependents("db") == ("api", "worker")
    with pytest.raises(DependencyError, match="No such service: nope"):
        g.with_dependencies(["nope"])
    with pytest.raises(DependencyError, match="No such service: nope"):
        g.dependents("nope")


def test_subgraph_for_no_deps() -> None:
    g = graph(web={"links": ["db"]}, db={})
    sub = g.subgraph(["web"])
    assert sub.services == ("web",)
    assert sub.edges == {"web": ()}
    assert sub.levels() == (("web",),)


def test_empty_project() -> None:
    g = graph()
    assert g.levels() == ()
    assert g.stop_levels() == ()


# --- properties over random graphs -----------------------------------------------------

NAMES = [f"s{i}" for i in range(8)]


@st.composite
def edge_sets(draw: st.DrawFn) -> dict[str, list[str]]:
    """Per service, the services it links to (any direction, so cycles happen)."""
    count = draw(st.integers(1, len(NAMES)))
    names = NAMES[:count]
    return {name: draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) for name in names}


def links_graph(edges: dict[str, list[str]]) -> DependencyGraph:
    return graph(**{name: {"links": targets} for name, targets in edges.items()})


@settings(max_examples=30)
@given(edge_sets())
def test_levels_respect_every_edge_or_a_real_cycle_is_named(edges: dict[str, list[str]]) -> None:
    try:
        g = links_graph(edges)
    except DependencyError as err:
        if err.message.startswith("A service can not link to itself: "):
            name = err.message.rsplit(" ", 1)[1]
            assert name in edges[name]
            return
        cycle = err.message.removeprefix("Circular dependency between ").split(" and ")
        assert len(cycle) >= 2
        for source, target in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            assert target in edges[source]
        return
    level_of = {name: i for i, level in enumerate(g.levels()) for name in level}
    assert sorted(level_of) == sorted(edges)
    for name, targets in edges.items():
        assert all(level_of[t] < level_of[name] for t in targets)
        if level_of[name] > 0:  # as early as possible: something holds it back
            assert any(level_of[t] == level_of[name] - 1 for t in targets)
    for name in edges:
        closure = g.with_dependencies([name])
        assert closure[-1] == name
        assert all(name in g.with_dependencies([d]) or d == name for d in g.dependents(name))
