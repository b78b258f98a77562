"""Legacy container links (``--link name:alias``): parsing, checks, environment and hosts lines.

Role: everything dockerd derives from ``HostConfig.Links`` on the default bridge: the
``<ALIAS>_PORT...``/``<ALIAS>_NAME``/``<ALIAS>_ENV_...`` variables injected into the linking
container, the ``/etc/hosts`` line naming each target, and the create/start checks with
dockerd's messages. On a user-defined network a link is only a DNS alias of the target:
:func:`dns_aliases` says which, the embedded DNS serves them.

Pure: values in, values out. The caller looks the targets up and passes :class:`LinkTarget`
values; iptables rules for ``--icc=false`` links are planned in ``iptables.py``.

Sources, moby v20.10 (the reference dockerd of the differential tests): ``opts/opts.go``
ParseLink, ``daemon/daemon_unix.go`` registerLinks, ``runconfig/hostconfig*.go`` (conflicts),
``daemon/container_operations_unix.go`` setupLinkedContainers, ``daemon/links/links.go``
(ToEnv), ``daemon/container_operations.go`` buildSandboxOptions (hosts lines).

20.10 versus newer moby (deliberately 20.10 here, the version the tests compare against):
- ``<ALIAS>_PORT`` names the lowest exposed port number (tcp first on a tie); moby >= 25
  prefers the lowest *tcp* port.
- ``_START``/``_END`` range variables need three or more consecutive ports (20.10's
  nextContiguous, which also ignores the protocol); moby >= 25 needs two of one protocol.
- Variables are emitted in 20.10's order: ``_PORT``, range variables, per-port variables,
  ``_NAME``, ``_ENV_*``; duplicates (a range's ``_ADDR``/``_PROTO`` repeat the per-port
  ones) are kept, as dockerd passes them to the runtime.
- Only ``-`` in the alias becomes ``_`` (``strings.Replace(..., "-", "_")``); a ``.`` stays.
- ``HOME`` and ``PATH`` of the target's environment are skipped (not ``HOSTNAME``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dockyard.engine.model.container import EngineError, InvalidArgument
from dockyard.engine.network.etcfiles import HostsRecord
from dockyard.engine.network.ports import ContainerPort

__all__ = [
    "InvalidLink",
    "LinkError",
    "LinkSpec",
    "LinkTarget",
    "applies_legacy",
    "dns_aliases",
    "hosts_record",
    "hosts_records",
    "link_env",
    "not_found_message",
    "parse_link",
    "parse_links",
    "validate_links",
    "validate_start",
    "validate_target_at_create",
]

DEFAULT_BRIDGE = "bridge"


class LinkError(EngineError):
    """A link that cannot be set up when the container starts: HTTP 500, as dockerd."""


class InvalidLink(LinkError, InvalidArgument):
    """A bad link at create (format, missing target, network mode): HTTP 400."""


@dataclass(frozen=True)
class LinkSpec:
    """``--link name:alias``: the target's name or id, and the alias it is known by."""

    name: str
    alias: str

    def full_name(self, parent_name: str) -> str:
        """The link's name in the name index, ``/web/db`` (daemon.registerLink)."""
        return posixpath.join("/" + parent_name.lstrip("/"), self.alias)


@dataclass(frozen=True)
class LinkTarget:
    """What dockerd reads of the linked (child) container."""

    name: str  # "/db"
    hostname: str  # Config.Hostname (the short id by default)
    ip: str  # its address on the default bridge ("" when not attached)
    env: tuple[str, ...] = ()  # Config.Env
    exposed: tuple[ContainerPort, ...] = ()  # Config.ExposedPorts
    running: bool = True
    network_mode: str = "default"  # HostConfig.NetworkMode
    on_default_bridge: bool = True  # NetworkSettings.Networks has "bridge"
    ipv6: str = ""  # GlobalIPv6Address on the default bridge, if any


def parse_link(text: str) -> LinkSpec:
    """opts.ParseLink: ``db``, ``db:alias``, and ``/db:/web/alias`` (how dockerd stores links)."""
    if text == "":
        raise InvalidLink("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2:
        raise InvalidLink(f"bad format for links: {text}")
    if len(parts) == 1:
        return LinkSpec(text, text)
    if parts[0].startswith("/"):
        return LinkSpec(parts[0][1:], posixpath.basename(parts[1]))
    return LinkSpec(parts[0], parts[1])


def parse_links(links: Iterable[str] | None) -> tuple[LinkSpec, ...]:
    return tuple(parse_link(str(link)) for link in links or ())


def _is_user_defined(network_mode: str) -> bool:
    return network_mode not in ("", "default", "bridge", "host", "none") and not (
        network_mode.startswith("container:")
    )


def validate_links(network_mode: str, links: Sequence[str] | None) -> tuple[LinkSpec, ...]:
    """The create-time checks of runconfig (network mode conflicts) and ParseLink."""
    if not links:
        return ()
    if network_mode == "host":
        raise InvalidLink(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )
    if network_mode.startswith("container:"):
        raise InvalidLink(
            "conflicting options: container type network can't be used with links. "
            "This would result in undefined behavior"
        )
    return parse_links(links)


def not_found_message(name: str) -> str:
    """registerLinks: a missing target is an invalid parameter (HTTP 400), not a 404."""
    return f"could not get container for {name}: No such container: {name}"


def validate_target_at_create(spec: LinkSpec, target: LinkTarget) -> None:
    """registerLinks: a target sharing the host's network stack cannot be linked to."""
    if target.network_mode == "host":
        raise InvalidLink(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )


def validate_start(parent_name: str, spec: LinkSpec, target: LinkTarget) -> None:
    """setupLinkedContainers / buildSandboxOptions checks when the parent starts."""
    if not target.running:
        raise LinkError(
            f"Cannot link to a non running container: {target.name} AS "
            f"{spec.full_name(parent_name)}"
        )
    if not target.on_default_bridge:
        raise LinkError(
            f"Cannot link to {target.name}, as it does not belong to the default network"
        )


def _sort_ports(ports: Iterable[ContainerPort]) -> list[ContainerPort]:
    # links.go: by number, tcp first on a tie (Go's sort is not stable for other ties; any
    # fixed order of e.g. udp/sctp is one dockerd could produce).
    return sorted(ports, key=lambda p: (p.port, p.proto != "tcp", p.proto))


def _last_contiguous(ports: Sequence[ContainerPort], index: int) -> int:
    """links.go nextContiguous: index of the last port of the run starting at ``index``
    (numbers only; the protocol is ignored, a 20.10 quirk kept on purpose)."""
    value = ports[index].port
    for i in range(index + 1, len(ports)):
        if ports[i].port > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def link_env(parent_name: str, spec: LinkSpec, target: LinkTarget) -> tuple[str, ...]:
    """The variables one link adds to the parent's environment (links.Link.ToEnv)."""
    full_name = spec.full_name(parent_name)
    alias = posixpath.basename(full_name).upper().replace("-", "_")
    ip = target.ip
    ports = _sort_ports(target.exposed)
    env: list[str] = []
    if ports:
        first = ports[0]
        env.append(f"{alias}_PORT={first.proto}://{ip}:{first.port}")
    i = 0
    while i < len(ports):
        j = _last_contiguous(ports, i)
        if j > i + 1:
            p, q = ports[i], ports[j]
            prefix = f"{alias}_PORT_{p.port}_{p.proto.upper()}"
            env += [
                f"{prefix}_START={p.proto}://{ip}:{p.port}",
                f"{prefix}_ADDR={ip}",
                f"{prefix}_PROTO={p.proto}",
                f"{prefix}_PORT_START={p.port}",
                # 20.10 builds the END names from the start port and the end's protocol.
                f"{alias}_PORT_{p.port}_{q.proto.upper()}_END={q.proto}://{ip}:{q.port}",
                f"{alias}_PORT_{p.port}_{q.proto.upper()}_PORT_END={q.port}",
            ]
            i = j + 1
        else:
            i += 1
    for p in ports:
        prefix = f"{alias}_PORT_{p.port}_{p.proto.upper()}"
        env += [
            f"{prefix}={p.proto}://{ip}:{p.port}",
            f"{prefix}_ADDR={ip}",
            f"{prefix}_PORT={p.port}",
            f"{prefix}_PROTO={p.proto}",
        ]
    env.append(f"{alias}_NAME={full_name}")
    for entry in target.env:
        name, sep, value = entry.partition("=")
        if not sep or name in ("HOME", "PATH"):
            continue
        env.append(f"{alias}_ENV_{name}={value}")
    return tuple(env)


def hosts_records(spec: LinkSpec, target: LinkTarget) -> tuple[HostsRecord, ...]:
    """The parent's hosts lines for one link: ``ip<TAB>alias hostname [name]``.

    buildSandboxOptions: the alias, the target's hostname, and its name when it differs from
    the alias; one line for its IPv4 address and one for its global IPv6 address.
    """
    names = f"{spec.alias} {target.hostname}"
    if spec.alias != target.name.lstrip("/"):
        names += " " + target.name.lstrip("/")
    return tuple(HostsRecord(ip, names) for ip in (target.ip, target.ipv6) if ip)


def hosts_record(spec: LinkSpec, target: LinkTarget) -> HostsRecord | None:
    """The IPv4 line of :func:`hosts_records` (IPv6 is off in this engine)."""
    records = [r for r in hosts_records(spec, target) if r.ip == target.ip]
    return records[0] if records else None


def dns_aliases(network_mode: str, links: Sequence[LinkSpec]) -> tuple[LinkSpec, ...]:
    """The links that are DNS aliases instead of legacy links.

    On a user-defined network dockerd registers no legacy link (registerLinks returns early)
    and the embedded DNS resolves ``alias`` to the target for the linking container only.
    On the default bridge, host and none, links are legacy (none at all for host).
    """
    return tuple(links) if _is_user_defined(network_mode) else ()


def applies_legacy(network_mode: str) -> bool:
    """Whether HostConfig.Links are legacy links (default bridge) for this network mode."""
    return network_mode in ("", "default", DEFAULT_BRIDGE)
