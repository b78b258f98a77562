"""The service dependency graph: start order, stop order, and who depends on whom.

Role: from a :class:`~dockyard.compose.model.Project`, the edges Compose starts services
by — ``links``, ``depends_on`` (with its condition), ``volumes_from`` (service form),
``network_mode: service:x``, and ``pid``/``ipc: service:x`` (docker-compose 1.29.2
``Service.get_dependency_names`` counts those two as well) — and the orders derived from
them.

Invariants:
- Pure; deterministic: every listing follows the project's service order, then the order
  the user wrote the dependencies in.
- Every dependency names a service of the project (a missing target is an error naming
  both services, in docker-compose 1.29.2's words), except a ``depends_on`` with
  ``required: false`` (compose-spec), which is dropped when its target is absent.
- The graph is acyclic: a cycle is an error naming it in order ("Circular dependency
  between web and db", docker-compose 1.29.2 sort_services.py); self-references get
  1.29.2's dedicated messages.
- Start levels: a service's level is one more than its deepest dependency's, so each level
  only depends on earlier ones and its services may start in parallel. Stop order is the
  reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dockyard.compose.model import ComposeModelError, Project, Service

__all__ = ["DependencyError", "DependencyGraph", "Edge", "build_graph"]


class DependencyError(ComposeModelError):
    """A dependency on a missing service, or a cycle."""


@dataclass(frozen=True)
class Edge:
    """``source`` needs ``target``; ``kind`` is the key that says so."""

    source: str
    target: str
    kind: str  # links | depends_on | volumes_from | network_mode | pid | ipc
    condition: str = "service_started"  # depends_on's; the others only need the start


# docker-compose 1.29.2 project.py / config.py messages for a dependency that is missing.
_MISSING = {
    "links": 'Service "{source}" has a link to service "{target}" which does not exist.',
    "depends_on": "Service '{source}' depends on service '{target}' which is undefined.",
    "volumes_from": (
        'Service "{source}" mounts volumes from "{target}", which is not the name of a '
        "service or container."
    ),
    "network_mode": (
        'Service "{source}" is trying to use the network of "{target}", which is not the '
        "name of a service or container."
    ),
    "pid": (
        'Service "{source}" is trying to use the pid namespace of "{target}", which is not '
        "the name of a service or container."
    ),
    "ipc": (
        'Service "{source}" is trying to use the ipc namespace of "{target}", which is not '
        "the name of a service or container."
    ),
}
# docker-compose 1.29.2 sort_services.py
_SELF = {
    "links": "A service can not link to itself: {name}",
    "volumes_from": "A service can not mount itself as volume: {name}",
    "depends_on": "A service can not depend on itself: {name}",
    "network_mode": "A service can not use its own network stack: {name}",
    "pid": "A service can not share its own pid namespace: {name}",
    "ipc": "A service can not share its own ipc namespace: {name}",
}


def _service_target(value: str | None) -> str | None:
    if value is not None and value.startswith("service:"):
        return value.removeprefix("service:")
    return None


def service_edges(service: Service) -> tuple[Edge, ...]:
    """A service's dependencies as written, before checking their targets."""
    edges: list[Edge] = [Edge(service.name, link.service, "links") for link in service.links]
    edges += [
        Edge(service.name, dep.service, "depends_on", dep.condition) for dep in service.depends_on
    ]
    edges += [
        Edge(service.name, source.source, "volumes_from")
        for source in service.volumes_from
        if source.kind == "service"
    ]
    if service.network_mode is not None and service.network_mode.service is not None:
        edges.append(Edge(service.name, service.network_mode.service, "network_mode"))
    for kind, value in (("pid", service.pid), ("ipc", service.ipc)):
        target = _service_target(value)
        if target is not None:
            edges.append(Edge(service.name, target, kind))
    return tuple(edges)


@dataclass(frozen=True)
class DependencyGraph:
    """Services in project order and, per service, the edges to what it needs."""

    services: tuple[str, ...]
    edges: Mapping[str, tuple[Edge, ...]]

    def dependencies(self, service: str) -> tuple[str, ...]:
        """Direct dependencies, each once, in the order written."""
        return tuple(dict.fromkeys(edge.target for edge in self.edges[service]))

    def direct_dependents(self, service: str) -> tuple[str, ...]:
        return tuple(name for name in self.services if service in self.dependencies(name))

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Start order: level 0 needs nothing, level n needs only levels before it."""
        depth: dict[str, int] = {}

        def level_of(name: str) -> int:
            # the graph is acyclic (build_graph), so this recursion ends
            if name not in depth:
                deps = self.dependencies(name)
                depth[name] = 1 + max((level_of(dep) for dep in deps), default=-1)
            return depth[name]

        for name in self.services:
            level_of(name)
        count = max(depth.values(), default=-1) + 1
        return tuple(
            tuple(name for name in self.services if depth[name] == level) for level in range(count)
        )

    def stop_levels(self) -> tuple[tuple[str, ...], ...]:
        """Stop order: dependents before what they depend on."""
        return tuple(reversed(self.levels()))

    def start_order(self) -> tuple[str, ...]:
        return tuple(name for level in self.levels() for name in level)

    def with_dependencies(self, services: Iterable[str]) -> tuple[str, ...]:
        """The services and everything they need, transitively, in start order (``up svc``)."""
        wanted: set[str] = set()
        pending = list(services)
        while pending:
            name = pending.pop()
            self._known(name)
            if name not in wanted:
                wanted.add(name)
                pending.extend(self.dependencies(name))
        return tuple(name for name in self.start_order() if name in wanted)

    def dependents(self, service: str) -> tuple[str, ...]:
        """Everything that needs ``service``, transitively, in start order (not itself)."""
        self._known(service)
        found: set[str] = set()
        pending = [service]
        while pending:
            for name in self.direct_dependents(pending.pop()):
                if name not in found:
                    found.add(name)
                    pending.append(name)
        return tuple(name for name in self.start_order() if name in found)

    def subgraph(self, services: Iterable[str]) -> DependencyGraph:
        """The graph restricted to ``services`` (``--no-deps``: edges out of it dropped)."""
        keep = set(services)
        for name in keep:
            self._known(name)
        names = tuple(name for name in self.services if name in keep)
        return DependencyGraph(
            services=names,
            edges={
                name: tuple(edge for edge in self.edges[name] if edge.target in keep)
                for name in names
            },
        )

    def _known(self, service: str) -> None:
        if service not in self.edges:
            # docker-compose 1.29.2 NoSuchService
            raise DependencyError(f"No such service: {service}", service, None)


def build_graph(project: Project) -> DependencyGraph:
    """Check every dependency of the project and return its graph (services in project
    order)."""
    edges: dict[str, tuple[Edge, ...]] = {}
    for service in project.services.values():
        kept: list[Edge] = []
        optional = {dep.service for dep in service.depends_on if not dep.required}
        for edge in service_edges(service):
            if edge.target == service.name:
                raise DependencyError(
                    _SELF[edge.kind].format(name=edge.target), edge.source, edge.kind
                )
            if edge.target not in project.services:
                if edge.kind == "depends_on" and edge.target in optional:
                    continue  # compose-spec: required: false tolerates an absent service
                raise DependencyError(
                    _MISSING[edge.kind].format(source=edge.source, target=edge.target),
                    edge.source,
                    edge.kind,
                )
            kept.append(edge)
        edges[service.name] = tuple(kept)
    _check_acyclic(tuple(project.services), edges)
    return DependencyGraph(services=tuple(project.services), edges=edges)


def _check_acyclic(names: tuple[str, ...], edges: Mapping[str, tuple[Edge, ...]]) -> None:
    """Depth-first search; a node met again while on the current path closes a cycle,
    which is reported from where the path first entered it."""
    finished: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in finished:
            return
        if name in path:
            cycle = [*path[path.index(name) :]]
            source = cycle[0]
            raise DependencyError(
                "Circular dependency between " + " and ".join(cycle), source, None
            )
        path.append(name)
        for edge in edges[name]:
            visit(edge.target)
        path.pop()
        finished.add(name)

    for name in names:
        visit(name)
