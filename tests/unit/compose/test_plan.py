"""Convergence plans for up and down.

``apply`` below is a tiny model of an engine: it executes a plan on a list of observed
containers the way the runner will (create with Compose's labels, recreate in place with
a new id, start, remove), so tests can run ``up`` twice and look at the second plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.compose import labels as lb
from dockyard.compose.graph import DependencyError, build_graph
from dockyard.compose.model import ComposeModelError, Project, project_from_dict
from dockyard.compose.plan import (
    REASON_CONFIG,
    REASON_DEPENDENCY,
    REASON_FORCED,
    REASON_IMAGE,
    CreateContainer,
    KeepContainer,
    ObservedContainer,
    RecreateContainer,
    RemoveContainer,
    StartContainer,
    UpOptions,
    UpPlan,
    plan_down,
    plan_up,
)

pytestmark = pytest.mark.unit

EXAMPLE: dict[str, dict[str, Any]] = {
    "web": {
        "build": {"context": "/src"},
        "command": "python app.py",
        "ports": ["5000:5000"],
        "volumes": ["/src:/code"],
        "links": ["redis"],
        "environment": {"PYTHONUNBUFFERED": "1"},
    },
    "redis": {"image": "redis:latest", "command": "redis-server --appendonly yes"},
}
IMAGES = {"web": "sha256:web1", "redis": "sha256:redis1"}


def make(services: Mapping[str, Any], **top: Any) -> Project:
    return project_from_dict({"name": "app", "services": dict(services), **top})


class Engine:
    """The containers an engine holds, changed the way the runner executes a plan."""

    def __init__(self) -> None:
        self.containers: list[ObservedContainer] = []
        self.serial = 0

    def new_id(self) -> str:
        self.serial += 1
        return f"{self.serial:064x}"

    def apply(self, project: Project, plan: UpPlan, images: Mapping[str, str | None]) -> None:
        for action in plan.actions:
            if isinstance(action, CreateContainer | RecreateContainer):
                if isinstance(action, RecreateContainer):
                    self.containers.remove(action.old)
                service = project.services[action.service]
                labels = lb.container_labels(
                    project.name, service, number=action.number, config_hash=action.config_hash
                )
                self.containers.append(
                    ObservedContainer(
                        action.name, self.new_id(), labels, True, images.get(action.service)
                    )
                )
            elif isinstance(action, StartContainer):
                old = self.by_id(action.container_id)
                self.containers[self.containers.index(old)] = ObservedContainer(
                    old.name, old.id, old.labels, True, old.image_id
                )
            elif isinstance(action, RemoveContainer):
                self.containers.remove(self.by_id(action.container_id))

    def by_id(self, container_id: str) -> ObservedContainer:
        return next(c for c in self.containers if c.id == container_id)

    def stop(self, name: str) -> None:
        old = next(c for c in self.containers if c.name == name)
        self.containers[self.containers.index(old)] = ObservedContainer(
            old.name, old.id, old.labels, False, old.image_id
        )

    def up(
        self,
        project: Project,
        images: Mapping[str, str | None] = IMAGES,
        selected: Sequence[str] | None = None,
        **options: Any,
    ) -> UpPlan:
        plan = plan_up(
            project,
            self.containers,
            selected=selected,
            options=UpOptions(**options),
            image_ids=images,
        )
        self.apply(project, plan, images)
        return plan


def kinds(plan: UpPlan) -> list[tuple[str, str, str]]:
    """(action, container name, reason) in execution order."""
    out = []
    for action in plan.actions:
        reason = getattr(action, "reason", "")
        out.append((type(action).__name__, action.name, reason))
    return out


def test_example_app_first_up() -> None:
    plan = plan_up(make(EXAMPLE), [], image_ids=IMAGES)
    assert [[s.service for s in level] for level in plan.levels] == [["redis"], ["web"]]
    assert kinds(plan) == [
        ("CreateContainer", "app_redis_1", ""),
        ("CreateContainer", "app_web_1", ""),
    ]
    assert [n.name for n in plan.networks] == ["app_default"]
    assert plan.remove_orphans == () and plan.warnings == ()


def test_second_up_keeps_everything() -> None:
    engine = Engine()
    project = make(EXAMPLE)
    engine.up(project)
    plan = engine.up(project)
    assert kinds(plan) == [
        ("KeepContainer", "app_redis_1", ""),
        ("KeepContainer", "app_web_1", ""),
    ]
    assert all(isinstance(a, KeepContainer) for a in plan.actions)
    assert not any(s.changed for level in plan.levels for s in level)


def test_stopped_containers_are_started() -> None:
    engine = Engine()
    project = make(EXAMPLE)
    engine.up(project)
    engine.stop("app_web_1")
    assert kinds(engine.up(project)) == [
        ("KeepContainer", "app_redis_1", ""),
        ("StartContainer", "app_web_1", ""),
    ]


def test_changed_service_recreates_it_and_its_dependents_only() -> None:
    services: dict[str, dict[str, Any]] = {
        "db": {"image": "postgres"},
        "api": {"image": "api", "depends_on": {"db": {"condition": "service_healthy"}}},
        "web": {"image": "web", "links": ["api"]},
        "cache": {"image": "redis"},
        "worker": {"image": "worker", "links": ["cache"]},
    }
    engine = Engine()
    engine.up(make(services), images={})
    changed = {**services, "api": {**services["api"], "environment": {"DEBUG": "1"}}}
    plan = engine.up(make(changed), images={})
    assert kinds(plan) == [
        ("KeepContainer", "app_db_1", ""),
        ("KeepContainer", "app_cache_1", ""),
        ("RecreateContainer", "app_api_1", REASON_CONFIG),
        ("KeepContainer", "app_worker_1", ""),
        ("RecreateContainer", "app_web_1", REASON_DEPENDENCY),
    ]
    recreate = plan.service("api").actions[0]
    assert isinstance(recreate, RecreateContainer)
    # the new container reuses the old one's anonymous volumes; the old one is renamed
    assert recreate.carry_volumes_from == recreate.old.id
    assert recreate.temporary_name == f"{recreate.old.id[:12]}_app_api_1"
    assert plan.service("web").wait_for == ()
    assert plan.service("api").wait_for == (("db", "service_healthy"),)
    # and the third up is a no-op again
    assert {k[0] for k in kinds(engine.up(make(changed), images={}))} == {"KeepContainer"}


def test_image_change_recreates_with_its_reason() -> None:
    engine = Engine()
    project = make(EXAMPLE)
    engine.up(project)
    plan = engine.up(project, images={**IMAGES, "redis": "sha256:redis2"})
    assert kinds(plan) == [
        ("RecreateContainer", "app_redis_1", REASON_IMAGE),
        ("RecreateContainer", "app_web_1", REASON_DEPENDENCY),
    ]


def test_force_and_no_recreate() -> None:
    engine = Engine()
    project = make(EXAMPLE)
    engine.up(project)
    assert {k[2] for k in kinds(engine.up(project, force_recreate=True))} == {REASON_FORCED}
    changed = make({**EXAMPLE, "redis": {"image": "redis:7"}})
    engine.stop("app_redis_1")
    assert kinds(engine.up(changed, no_recreate=True)) == [
        ("StartContainer", "app_redis_1", ""),
        ("KeepContainer", "app_web_1", ""),
    ]


def test_scale_up_and_down() -> None:
    engine = Engine()
    project = make({"web": {"image": "x"}})
    engine.up(project, images={})
    up = engine.up(project, images={}, scale={"web": 3})
    assert kinds(up) == [
        ("KeepContainer", "app_web_1", ""),
        ("CreateContainer", "app_web_2", ""),
        ("CreateContainer", "app_web_3", ""),
    ]
    down = engine.up(project, images={}, scale={"web": 1})
    assert kinds(down) == [
        ("KeepContainer", "app_web_1", ""),
        ("RemoveContainer", "app_web_3", "scale down"),
        ("RemoveContainer", "app_web_2", "scale down"),
    ]
    # scaling alone never recreates, and scale 0 removes everything
    zero = engine.up(project, images={}, scale={"web": 0})
    assert kinds(zero) == [("RemoveContainer", "app_web_1", "scale down")]


def test_scale_from_the_file_and_numbers_after_the_highest() -> None:
    project = make({"web": {"image": "x", "deploy": {"replicas": 3}}})
    engine = Engine()
    engine.up(project, images={})
    assert sorted(c.name for c in engine.containers) == ["app_web_1", "app_web_2", "app_web_3"]
    engine.containers = [c for c in engine.containers if c.name != "app_web_2"]
    plan = engine.up(project, images={})
    assert kinds(plan) == [
        ("KeepContainer", "app_web_1", ""),
        ("KeepContainer", "app_web_3", ""),
        ("CreateContainer", "app_web_4", ""),
    ]


def test_scale_with_container_name_is_refused() -> None:
    project = make({"web": {"image": "x", "container_name": "fixed"}})
    assert kinds(plan_up(project, [])) == [("CreateContainer", "fixed", "")]
    with pytest.raises(ComposeModelError, match="Remove the custom name to scale"):
        plan_up(project, [], options=UpOptions(scale={"web": 2}))
    with pytest.raises(ComposeModelError, match="No such service: nope"):
        plan_up(project, [], options=UpOptions(scale={"nope": 2}))


def test_v2_separator() -> None:
    plan = plan_up(make(EXAMPLE), [], options=UpOptions(separator="-"))
    assert [a.name for a in plan.actions] == ["app-redis-1", "app-web-1"]


def test_selected_services_bring_their_dependencies() -> None:
    services = {
        "web": {"image": "x", "links": ["db"]},
        "db": {"image": "x"},
        "other": {"image": "x"},
    }
    plan = plan_up(make(services), [], selected=["web"])
    assert [a.name for a in plan.actions] == ["app_db_1", "app_web_1"]
    no_deps = plan_up(make(services), [], selected=["web"], options=UpOptions(no_deps=True))
    assert [a.name for a in no_deps.actions] == ["app_web_1"]
    assert no_deps.service("web").wait_for == ()
    with pytest.raises(ComposeModelError, match="No such service: nope"):
        plan_up(make(services), [], selected=["nope"])


def test_no_deps_does_not_recreate_for_unplanned_dependencies() -> None:
    engine = Engine()
    engine.up(make(EXAMPLE))
    changed = make({**EXAMPLE, "redis": {"image": "redis:7"}})
    plan = engine.up(changed, selected=["web"], no_deps=True)
    assert kinds(plan) == [("KeepContainer", "app_web_1", "")]


def test_profiles() -> None:
    services = {"web": {"image": "x"}, "debug": {"image": "x", "profiles": ["dev"]}}
    assert [a.name for a in plan_up(make(services), []).actions] == ["app_web_1"]
    with_dev = plan_up(make(services), [], options=UpOptions(profiles=("dev",)))
    assert [a.name for a in with_dev.actions] == ["app_web_1", "app_debug_1"]
    assert [a.name for a in plan_up(make(services), [], selected=["debug"]).actions] == [
        "app_debug_1"
    ]


def test_orphans_warned_or_removed_first() -> None:
    engine = Engine()
    engine.up(make(EXAMPLE))
    smaller = make({"redis": EXAMPLE["redis"]})
    plan = plan_up(smaller, engine.containers, image_ids=IMAGES)
    assert plan.remove_orphans == ()
    assert plan.warnings == (
        "Found orphan containers (app_web_1) for this project. If you removed or renamed "
        "this service in your compose file, you can run this command with the "
        "--remove-orphans flag to clean it up.",
    )
    plan = plan_up(
        smaller, engine.containers, options=UpOptions(remove_orphans=True), image_ids=IMAGES
    )
    assert kinds(plan) == [
        ("RemoveContainer", "app_web_1", "orphan"),
        ("KeepContainer", "app_redis_1", ""),
    ]


def test_other_projects_and_oneoffs_are_ignored() -> None:
    foreign = ObservedContainer(
        "other_web_1",
        "f" * 64,
        {lb.LABEL_PROJECT: "other", lb.LABEL_SERVICE: "web", lb.LABEL_CONTAINER_NUMBER: "1"},
        True,
    )
    oneoff = ObservedContainer(
        "app_web_run_abc",
        "e" * 64,
        {lb.LABEL_PROJECT: "app", lb.LABEL_SERVICE: "web", lb.LABEL_ONEOFF: "True"},
        True,
    )
    plan = plan_up(make(EXAMPLE), [foreign, oneoff], image_ids=IMAGES)
    assert [k[0] for k in kinds(plan)] == ["CreateContainer", "CreateContainer"]


def test_duplicate_numbers_and_unlabelled_hash() -> None:
    labels = {lb.LABEL_PROJECT: "app", lb.LABEL_SERVICE: "redis", lb.LABEL_CONTAINER_NUMBER: "1"}
    first = ObservedContainer("app_redis_1", "a" * 64, labels, True)
    second = ObservedContainer("x", "b" * 64, labels, False)
    plan = plan_up(make({"redis": {"image": "x"}}), [first, second])
    assert kinds(plan) == [
        ("RemoveContainer", "x", "duplicate container number"),
        ("RecreateContainer", "app_redis_1", REASON_CONFIG),  # no config-hash label
    ]


def test_created_dependency_recreates_existing_dependents() -> None:
    engine = Engine()
    engine.up(make(EXAMPLE))
    engine.containers = [c for c in engine.containers if c.name != "app_redis_1"]
    assert kinds(engine.up(make(EXAMPLE))) == [
        ("CreateContainer", "app_redis_1", ""),
        ("RecreateContainer", "app_web_1", REASON_DEPENDENCY),
    ]


def test_dependents_follow_a_changed_service_scaled_to_zero() -> None:
    engine = Engine()
    engine.up(make(EXAMPLE))
    changed = make({**EXAMPLE, "redis": {"image": "redis:7"}})
    assert kinds(engine.up(changed, scale={"redis": 0})) == [
        ("RemoveContainer", "app_redis_1", "scale down"),
        ("RecreateContainer", "app_web_1", REASON_DEPENDENCY),
    ]


def test_graph_errors_surface() -> None:
    with pytest.raises(DependencyError, match="Circular dependency between web and db"):
        plan_up(
            make({"web": {"image": "x", "links": ["db"]}, "db": {"image": "x", "links": ["web"]}}),
            [],
        )


def test_networks_and_volumes_to_ensure() -> None:
    project = make(
        {
            "web": {"image": "x", "networks": {"front": None}, "volumes": ["data:/d", "/anon"]},
            "db": {"image": "x", "networks": {"back": None}, "volumes": ["dbdata:/var/lib"]},
        },
        networks={"front": {}, "back": {}, "unused": {}},
        volumes={"data": {}, "dbdata": {}, "unused": {}},
    )
    plan = plan_up(project, [], selected=["web"])
    assert [n.name for n in plan.networks] == ["app_front"]
    assert [v.name for v in plan.volumes] == ["app_data"]


# --- down ------------------------------------------------------------------------------


def test_down_in_reverse_order() -> None:
    engine = Engine()
    project = make(EXAMPLE, volumes={"data": {}, "ext": {"external": True}})
    engine.up(project)
    engine.stop("app_redis_1")
    down = plan_down(project, engine.containers)
    assert [[(r.name, r.running) for r in level] for level in down.levels] == [
        [("app_web_1", True)],
        [("app_redis_1", False)],
    ]
    assert down.networks == ("app_default",)
    assert down.volumes == ()
    assert not any(r.volumes for level in down.levels for r in level)
    with_volumes = plan_down(project, engine.containers, volumes=True)
    assert with_volumes.volumes == ("app_data",)
    assert all(r.volumes for level in with_volumes.levels for r in level)


def test_down_orphans_and_oneoffs() -> None:
    engine = Engine()
    engine.up(make(EXAMPLE))
    oneoff = ObservedContainer(
        "app_redis_run_abc",
        "e" * 64,
        {lb.LABEL_PROJECT: "app", lb.LABEL_SERVICE: "redis", lb.LABEL_ONEOFF: "True"},
        True,
    )
    containers = [*engine.containers, oneoff]
    smaller = make({"redis": EXAMPLE["redis"]})
    down = plan_down(smaller, containers)
    assert [[r.name for r in level] for level in down.levels] == [
        ["app_redis_1", "app_redis_run_abc"]
    ]
    assert down.orphans == ()
    assert "app_web_1" in down.warnings[0]
    down = plan_down(smaller, containers, remove_orphans=True)
    assert [r.name for r in down.orphans] == ["app_web_1"]
    assert down.warnings == ()


def test_down_keeps_external_networks() -> None:
    project = make(
        {"web": {"image": "x", "networks": {"ext": None, "own": None}}},
        networks={"ext": {"external": True}, "own": {}},
    )
    assert plan_down(project, []).networks == ("app_own",)
    assert plan_down(project, []).levels == ()


# --- properties over random projects and histories -------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, int], set[str]]:
    """An acyclic project, the same project with some services changed, a scale for the
    second up, and the changed services."""
    count = draw(st.integers(1, 5))
    names = [f"s{i}" for i in range(count)]
    first: dict[str, Any] = {}
    for i, name in enumerate(names):
        links = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        first[name] = {"image": "busybox", "links": links, "environment": {"V": "1"}}
    changed = set(draw(st.lists(st.sampled_from(names), unique=True)))
    second = {
        name: {**spec, "environment": {"V": "2"}} if name in changed else spec
        for name, spec in first.items()
    }
    scale = draw(st.dictionaries(st.sampled_from(names), st.integers(0, 3)))
    return first, second, scale, changed


@settings(max_examples=30)
@given(histories())
def test_up_converges_and_recreates_exactly_the_changed_and_their_dependents(
    history: tuple[dict[str, Any], dict[str, Any], dict[str, int], set[str]],
) -> None:
    first, second, scale, changed = history
    engine = Engine()
    engine.up(make(first), images={})
    project = make(second)
    plan = engine.up(project, images={}, scale=scale)

    # a changed service is recreated, and so is everything that depends on it, even
    # through a service scaled to 0 (1.29.2 decides recreation before scaling); nothing
    # else is
    graph = build_graph(project)
    affected = set(changed)
    for name in changed:
        affected.update(graph.dependents(name))
    for action in plan.actions:
        if isinstance(action, RecreateContainer):
            assert action.service in affected
        if isinstance(action, KeepContainer):
            assert action.service not in affected
    for name, service in project.services.items():
        wanted = scale.get(name, service.replicas)
        mine = [c for c in engine.containers if c.service == name]
        assert len(mine) == wanted
        assert len({c.number for c in mine}) == wanted
        assert all(c.running for c in mine)
    again = plan_up(project, engine.containers, options=UpOptions(scale=scale), image_ids={})
    assert all(isinstance(a, KeepContainer) for a in again.actions)
