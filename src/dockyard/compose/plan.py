"""Convergence planning for ``up`` and ``down``: what to create, recreate, start, keep and
remove, in which order — decided from values, executed by the runner.

Role: :func:`plan_up` compares the project (the file) with the containers the engine
reports (:class:`ObservedContainer`, read from ``GET /containers/json?all=1`` filtered by
the project label) and returns an :class:`UpPlan`; :func:`plan_down` returns a
:class:`DownPlan`. The runner executes a plan level by level: everything in one level
may run in parallel, a level starts only when the one before is done (and, for
``depends_on`` conditions, healthy or completed: the plan carries each service's
conditions so the runner knows what to await).

Rules (docker-compose 1.29.2 project.py ``_get_convergence_plans`` and service.py
``convergence_plan``/``_execute_convergence_*``; the differences are named):
- The services planned are the selected ones plus, unless ``no_deps``, everything they
  need (graph.with_dependencies). Profiles: with no selection, a service with profiles
  is planned only when one of its profiles is active (compose-spec); a selected service
  is always planned.
- A project's containers are those labelled with its name and ``oneoff`` not ``True``.
  Per service, containers are ordered by container number; a number seen twice keeps its
  first container and the others are removed (1.29.2 ``remove_duplicate_containers``).
- Each container is kept (running, up to date), started (stopped, up to date) or
  recreated, decided per container as Compose v2 does (convergence.go ``mustRecreate``;
  1.29.2 recreates all of a service's containers when one diverged). It is recreated
  with ``force_recreate`` ("forced"); when the image behind the service changed ("image
  changed": the container's image id against the one the caller will run, when both are
  known); when its config-hash label differs from the file's ("config hash changed"); or
  when a service it depends on is updated ("dependency recreated"). A service is updated
  when it had no container and gets one, or when one of its containers is to be
  recreated, decided before scaling as 1.29.2 ``_get_convergence_plans`` does (so a
  changed service scaled to 0 still recreates its dependents). 1.29.2 then recreates a
  dependent only when its links or stopped containers need it (older releases always);
  we always do, so links and shared namespaces never point at removed containers.
  ``no_recreate`` keeps (or starts) whatever exists.
- A recreated container carries over the anonymous volumes of the one it replaces
  (1.29.2 ``recreate_container``: the old container is renamed to
  ``{short_id}_{name}``, the new one is created with ``previous_container`` so its data
  volumes are reused, then the old one is removed). A service's config hash is computed
  with the id of the image it will run; pass None only when there is no such image (1.29.2
  then counts the service as diverged; here the hash simply differs from one made with an
  id).
- Scale: the wanted count is ``--scale`` else ``scale``/``deploy.replicas``. Extra
  containers are removed highest number first; new ones take the numbers after the
  highest present (1.29.2 ``_next_container_number``).
- Orphans (containers of services no longer in the file) are removed first with
  ``remove_orphans``, else reported in a warning with 1.29.2's text.
- ``down``: containers (one-off ones too) are stopped and removed in reverse start order,
  then the project's non-external networks, then (``-v``) its non-external volumes.

Invariants: pure; deterministic (the order of every list follows the project's service
order, container numbers, then the observation order); a plan never names a container,
new or old, twice (checked on every plan by :func:`_check_unique`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dockyard.compose import labels as lb
from dockyard.compose.graph import DependencyGraph, build_graph
from dockyard.compose.model import ComposeModelError, NetworkConfig, Project, Service, VolumeConfig

__all__ = [
    "CreateContainer",
    "DownPlan",
    "KeepContainer",
    "ObservedContainer",
    "RecreateContainer",
    "RemoveContainer",
    "ServicePlan",
    "StartContainer",
    "UpOptions",
    "UpPlan",
    "plan_down",
    "plan_up",
]

REASON_FORCED = "forced"
REASON_IMAGE = "image changed"
REASON_CONFIG = "config hash changed"
REASON_DEPENDENCY = "dependency recreated"
REASON_SCALE = "scale down"
REASON_ORPHAN = "orphan"
REASON_DUPLICATE = "duplicate container number"

# docker-compose 1.29.2 project.py _find_orphan_containers
ORPHAN_WARNING = (
    "Found orphan containers ({names}) for this project. If you removed or renamed this "
    "service in your compose file, you can run this command with the --remove-orphans "
    "flag to clean it up."
)


@dataclass(frozen=True)
class ObservedContainer:
    """A container as the engine lists it (``Names[0]`` without ``/``, ``Id``, ``Labels``,
    ``State == "running"``, ``ImageID``). Pass them oldest first: of two containers with
    the same number, the first is kept (1.29.2 sorts by ``Created``)."""

    name: str
    id: str
    labels: Mapping[str, str]
    running: bool
    image_id: str | None = None

    @property
    def service(self) -> str | None:
        return self.labels.get(lb.LABEL_SERVICE)

    @property
    def number(self) -> int | None:
        text = self.labels.get(lb.LABEL_CONTAINER_NUMBER, "")
        return int(text) if text.isdigit() else None

    @property
    def oneoff(self) -> bool:
        return self.labels.get(lb.LABEL_ONEOFF) == "True"


@dataclass(frozen=True)
class UpOptions:
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    scale: Mapping[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    profiles: tuple[str, ...] = ()
    separator: str = "_"  # container names: "_" as docker-compose 1.29.2, "-" as v2


# --- actions (imperative nouns: what the runner does) ---------------------------------


@dataclass(frozen=True)
class CreateContainer:
    """Create and start container ``number`` of ``service``."""

    service: str
    number: int
    name: str
    config_hash: str


@dataclass(frozen=True)
class RecreateContainer:
    """Stop ``old``, rename it to ``temporary_name``, create ``name`` with the anonymous
    volumes of ``carry_volumes_from`` (the old container's id), start it, remove the old
    one (1.29.2 ``Service.recreate_container``, in that order: the name is free before
    the create, and the old volumes are still there to reuse)."""

    service: str
    number: int
    name: str
    config_hash: str
    old: ObservedContainer
    reason: str

    @property
    def carry_volumes_from(self) -> str:
        return self.old.id

    @property
    def temporary_name(self) -> str:
        # docker-compose 1.29.2 Container.rename_to_tmp_name
        return f"{self.old.id[:12]}_{self.old.name}"


@dataclass(frozen=True)
class StartContainer:
    service: str
    number: int
    name: str
    container_id: str


@dataclass(frozen=True)
class KeepContainer:
    service: str
    number: int
    name: str
    container_id: str


@dataclass(frozen=True)
class RemoveContainer:
    """Stop (if running) and remove, with its anonymous volumes when ``volumes``."""

    service: str | None
    name: str
    container_id: str
    running: bool
    reason: str
    volumes: bool = False


ContainerAction = (
    CreateContainer | RecreateContainer | StartContainer | KeepContainer | RemoveContainer
)


@dataclass(frozen=True)
class ServicePlan:
    """One service's actions, and the conditions to await on its dependencies first."""

    service: str
    actions: tuple[ContainerAction, ...]
    wait_for: tuple[tuple[str, str], ...] = ()  # (dependency, depends_on condition)

    @property
    def recreated(self) -> bool:
        return any(isinstance(action, RecreateContainer) for action in self.actions)

    @property
    def changed(self) -> bool:
        """True if any container of the service is new (created or recreated)."""
        return any(isinstance(a, CreateContainer | RecreateContainer) for a in self.actions)


@dataclass(frozen=True)
class UpPlan:
    remove_orphans: tuple[RemoveContainer, ...]
    networks: tuple[NetworkConfig, ...]  # to ensure (create if missing), before level 0
    volumes: tuple[VolumeConfig, ...]
    levels: tuple[tuple[ServicePlan, ...], ...]
    warnings: tuple[str, ...] = ()

    def service(self, name: str) -> ServicePlan:
        for level in self.levels:
            for plan in level:
                if plan.service == name:
                    return plan
        raise KeyError(name)

    @property
    def actions(self) -> tuple[ContainerAction, ...]:
        """Every action in execution order (orphans first)."""
        out: list[ContainerAction] = list(self.remove_orphans)
        for level in self.levels:
            for plan in level:
                out.extend(plan.actions)
        return tuple(out)


@dataclass(frozen=True)
class DownPlan:
    levels: tuple[tuple[RemoveContainer, ...], ...]  # stop/remove, dependents first
    orphans: tuple[RemoveContainer, ...]
    networks: tuple[str, ...]  # engine names to remove
    volumes: tuple[str, ...]
    warnings: tuple[str, ...] = ()


class PlanError(ComposeModelError):
    """Options that cannot be planned (an unknown service, a negative scale)."""


# --- up --------------------------------------------------------------------------------


def _project_containers(
    project: Project, observed: Sequence[ObservedContainer]
) -> list[ObservedContainer]:
    return [c for c in observed if c.labels.get(lb.LABEL_PROJECT) == project.name]


def _active(service: Service, profiles: Sequence[str]) -> bool:
    return not service.profiles or any(p in profiles for p in service.profiles)


def _planned_services(
    project: Project, graph: DependencyGraph, selected: Sequence[str] | None, options: UpOptions
) -> tuple[str, ...]:
    for name in selected or ():
        if name not in project.services:
            raise PlanError(f"No such service: {name}", name, None)
    if selected:
        roots = list(selected)
    else:
        roots = [s.name for s in project.services.values() if _active(s, options.profiles)]
    if options.no_deps:
        return tuple(name for name in graph.start_order() if name in set(roots))
    return graph.with_dependencies(roots)


def _wanted_count(service: Service, options: UpOptions) -> int:
    count = options.scale.get(service.name, service.replicas)
    if count < 0:
        raise PlanError(f"Invalid scale for {service.name}: {count}", service.name, "scale")
    if count > 1 and service.container_name is not None:
        # docker-compose 1.29.2 Service.scale
        raise PlanError(
            f'The "{service.name}" service is using the custom container name '
            f'"{service.container_name}". Docker requires each container to have a unique '
            "name. Remove the custom name to scale the service.",
            service.name,
            "container_name",
        )
    return count


def _split_duplicates(
    containers: list[ObservedContainer],
) -> tuple[list[tuple[int, ObservedContainer]], list[ObservedContainer]]:
    """(number, container) in number order, and the ones to drop (duplicates, no number)."""
    by_number: dict[int, ObservedContainer] = {}
    extra: list[ObservedContainer] = []
    for container in containers:
        number = container.number
        if number is None or number in by_number:
            extra.append(container)
        else:
            by_number[number] = container
    return [(n, by_number[n]) for n in sorted(by_number)], extra


def _plan_service(
    project: Project,
    service: Service,
    containers: list[ObservedContainer],
    *,
    wanted: int,
    expected_hash: str,
    image_id: str | None,
    dependency_changed: bool,
    options: UpOptions,
) -> tuple[tuple[ContainerAction, ...], bool]:
    """The service's actions, and whether its dependents must be recreated.

    The second is 1.29.2's "plan action is create or recreate" (``_get_convergence_plans``),
    decided before scaling: a service none of whose containers existed and that gets some,
    or one with a container to recreate even if the new scale then removes it.
    """
    current, duplicates = _split_duplicates(containers)
    reasons = [
        _recreate_reason(container, expected_hash, image_id, dependency_changed, options)
        for _, container in current
    ]
    updated = any(reason is not None for reason in reasons) if current else wanted > 0
    actions: list[ContainerAction] = [
        RemoveContainer(service.name, c.name, c.id, c.running, REASON_DUPLICATE) for c in duplicates
    ]

    def name_for(number: int) -> str:
        if service.container_name is not None:
            return service.container_name
        return lb.container_name(project.name, service.name, number, options.separator)

    for (number, container), reason in zip(current[:wanted], reasons, strict=False):
        if reason is not None:
            actions.append(
                RecreateContainer(
                    service.name, number, name_for(number), expected_hash, container, reason
                )
            )
        elif container.running:
            actions.append(KeepContainer(service.name, number, container.name, container.id))
        else:
            actions.append(StartContainer(service.name, number, container.name, container.id))
    next_number = max((n for n, _ in current), default=0) + 1
    for number in range(next_number, next_number + wanted - len(current[:wanted])):
        actions.append(CreateContainer(service.name, number, name_for(number), expected_hash))
    # 1.29.2 _execute_convergence_*: containers sorted by number, [scale:] removed;
    # we remove the highest number first
    actions.extend(
        RemoveContainer(service.name, c.name, c.id, c.running, REASON_SCALE)
        for _, c in reversed(current[wanted:])
    )
    return tuple(actions), updated


def _recreate_reason(
    container: ObservedContainer,
    expected_hash: str,
    image_id: str | None,
    dependency_changed: bool,
    options: UpOptions,
) -> str | None:
    if options.no_recreate:
        return None
    if options.force_recreate:
        return REASON_FORCED
    if image_id is not None and container.image_id is not None and container.image_id != image_id:
        return REASON_IMAGE
    if container.labels.get(lb.LABEL_CONFIG_HASH) != expected_hash:
        return REASON_CONFIG
    if dependency_changed:
        return REASON_DEPENDENCY
    return None


def plan_up(
    project: Project,
    observed: Sequence[ObservedContainer],
    *,
    selected: Sequence[str] | None = None,
    options: UpOptions = UpOptions(),
    image_ids: Mapping[str, str | None] | None = None,
) -> UpPlan:
    """The plan that brings ``selected`` (all active services when None) to the file.

    ``image_ids`` maps a service to the id of the image it will run (after pull/build).
    The runner passes one for every planned service: a missing entry hashes as "no such
    image" (null), as 1.29.2 does, so it differs from a hash made with an id and the
    containers are recreated ("config hash changed").
    """
    image_ids = image_ids or {}
    graph = build_graph(project)
    planned = _planned_services(project, graph, selected, options)
    for name in options.scale:
        if name not in project.services:
            raise PlanError(f"No such service: {name}", name, "scale")
    containers = _project_containers(project, observed)
    live = [c for c in containers if not c.oneoff]

    orphans = [c for c in live if c.service not in project.services]
    warnings: list[str] = []
    if orphans and not options.remove_orphans:
        warnings.append(ORPHAN_WARNING.format(names=", ".join(c.name for c in orphans)))
    removals = tuple(
        RemoveContainer(c.service, c.name, c.id, c.running, REASON_ORPHAN)
        for c in orphans
        if options.remove_orphans
    )

    sub = graph.subgraph(planned)
    changed: set[str] = set()
    levels: list[tuple[ServicePlan, ...]] = []
    for level in sub.levels():
        plans: list[ServicePlan] = []
        for name in level:
            service = project.services[name]
            image_id = image_ids.get(name)
            actions, updated = _plan_service(
                project,
                service,
                [c for c in live if c.service == name],
                wanted=_wanted_count(service, options),
                expected_hash=lb.config_hash(project, service, image_id),
                image_id=image_id,
                dependency_changed=any(dep in changed for dep in sub.dependencies(name)),
                options=options,
            )
            plan = ServicePlan(
                service=name,
                actions=actions,
                wait_for=tuple(
                    (edge.target, edge.condition)
                    for edge in sub.edges[name]
                    if edge.kind == "depends_on"
                ),
            )
            if updated:
                changed.add(name)
            plans.append(plan)
        levels.append(tuple(plans))

    used_networks = {net.name for name in planned for net in project.services[name].networks}
    used_volumes = {
        mount.source
        for name in planned
        for mount in project.services[name].volumes
        if mount.type == "volume" and mount.source is not None
    }
    return _check_unique(
        UpPlan(
            remove_orphans=removals,
            networks=tuple(n for k, n in project.networks.items() if k in used_networks),
            volumes=tuple(v for k, v in project.volumes.items() if k in used_volumes),
            levels=tuple(levels),
            warnings=tuple(warnings),
        )
    )


def _check_unique(plan: UpPlan) -> UpPlan:
    """The plan's invariant: no container (by new name or by id) is acted on twice."""
    names: set[str] = set()
    ids: set[str] = set()
    for action in plan.actions:
        if isinstance(action, CreateContainer | RecreateContainer):
            key, seen = action.name, names
        else:
            key, seen = action.container_id, ids
        if key in seen:
            raise PlanError(f"invalid plan: container {key} is acted on twice")
        seen.add(key)
    return plan


# --- down ------------------------------------------------------------------------------


def plan_down(
    project: Project,
    observed: Sequence[ObservedContainer],
    *,
    remove_orphans: bool = False,
    volumes: bool = False,
) -> DownPlan:
    """Stop and remove the project's containers in reverse start order, then its
    networks and (``volumes``) its named volumes; anonymous volumes go with their
    containers when ``volumes`` (``docker-compose down -v``)."""
    graph = build_graph(project)
    containers = _project_containers(project, observed)

    def removal(c: ObservedContainer, reason: str) -> RemoveContainer:
        return RemoveContainer(c.service, c.name, c.id, c.running, reason, volumes=volumes)

    levels = []
    for level in graph.stop_levels():
        # 1.29.2 down: one-off containers of a service go with it
        members = [c for name in level for c in containers if c.service == name]
        members.sort(key=lambda c: (level.index(c.service or ""), c.oneoff, -(c.number or 0)))
        if members:
            levels.append(tuple(removal(c, "down") for c in members))
    orphans = [c for c in containers if c.service not in project.services]
    warnings = []
    if orphans and not remove_orphans:
        live = [c for c in orphans if not c.oneoff]
        if live:
            warnings.append(ORPHAN_WARNING.format(names=", ".join(c.name for c in live)))
    return DownPlan(
        levels=tuple(levels),
        orphans=tuple(removal(c, REASON_ORPHAN) for c in orphans) if remove_orphans else (),
        networks=tuple(n.name for n in project.networks.values() if not n.external),
        volumes=tuple(v.name for v in project.volumes.values() if not v.external)
        if volumes
        else (),
        warnings=tuple(warnings),
    )
