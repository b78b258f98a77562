"""The project: the loader's canonical dict, type-checked into a :class:`Project`.

Role: :func:`project_from_dict` checks the top-level keys and the project name, builds
every service (``service_from_dict``), the top-level networks and volumes with their
engine-side names, and checks that every network and named volume a service uses is
declared.

Invariants:
- Engine-side names are ``{project}_{key}`` unless ``name`` or ``external`` says
  otherwise (docker-compose 1.29.2 ``Network.full_name``/``Volume.full_name``).
- When a service joins ``default`` and the file declares no ``default`` network, the
  project gets one, ``{project}_default`` (docker-compose 1.29.2 ``get_networks``).
- Services are checked in the order the file lists them, so the first bad one is the one
  reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dockyard.compose.model.checks import _Ctx, _words
from dockyard.compose.model.service import service_from_dict
from dockyard.compose.model.values import (
    ComposeModelError,
    NetworkConfig,
    Project,
    Service,
    VolumeConfig,
)

_PROJECT_KEYS = ("name", "services", "networks", "volumes", "configs", "secrets")
_NETWORK_KEYS = _words(
    "name driver driver_opts external internal attachable enable_ipv6 ipam labels"
)
_VOLUME_KEYS = ("name", "driver", "driver_opts", "external", "labels")
# compose-go / docker-compose 1.29.2 normalize the project name to this alphabet
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _resource_name(
    ctx: _Ctx, where: str, project: str, key: str, spec: Mapping[str, Any]
) -> tuple[str, bool]:
    external = spec.get("external", False)
    if isinstance(external, dict):
        # compose file v2/v3: external: {name: x}
        ctx.unknown(f"{where}.external", list(external), ("name",))
        name = ctx.check(f"{where}.external.name", external.get("name", key), str)
        return name, True
    ctx.check(f"{where}.external", external, bool)
    explicit = spec.get("name")
    if explicit is not None:
        ctx.check(f"{where}.name", explicit, str)
        return explicit, external
    # docker-compose 1.29.2 Network.full_name / Volume.full_name: "{project}_{key}"
    return (key if external else f"{project}_{key}"), external


def _resource_fields(
    top: _Ctx, where: str, project: str, key: str, raw: Any, known: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A top-level network's or volume's checked spec, and the fields both kinds share."""
    spec: dict[str, Any] = top.check(where, raw if raw is not None else {}, dict)
    top.unknown(where, list(spec), known)
    full, external = _resource_name(top, where, project, key, spec)
    driver = spec.get("driver")
    return spec, {
        "key": key,
        "name": full,
        "driver": None if driver is None else top.check(f"{where}.driver", driver, str),
        "driver_opts": top.options(f"{where}.driver_opts", spec.get("driver_opts") or {}),
        "external": external,
        "labels": top.mapping(f"{where}.labels", spec.get("labels") or {}),
    }


def project_from_dict(data: Mapping[str, Any]) -> Project:
    """The loader's canonical project dict as a :class:`Project`."""
    top = _Ctx(None)
    top.unknown("the project", list(data), _PROJECT_KEYS)
    name = top.check("name", data.get("name"), str)
    if not _PROJECT_NAME.match(name):
        # compose-go: "project name must contain only lowercase letters, decimal digits,
        # dashes, and underscores, and must begin with a lowercase letter or decimal digit"
        raise ComposeModelError(
            f'"{name}" is not a valid project name: it must contain only lowercase letters, '
            "decimal digits, dashes, and underscores, and must begin with a lowercase letter "
            "or decimal digit",
            None,
            "name",
        )
    raw_services = top.check("services", data.get("services") or {}, dict)
    services = {key: service_from_dict(key, spec) for key, spec in raw_services.items()}

    networks: dict[str, NetworkConfig] = {}
    for key, spec in top.check("networks", data.get("networks") or {}, dict).items():
        where = f"networks.{key}"
        spec, common = _resource_fields(top, where, name, key, spec, _NETWORK_KEYS)
        networks[key] = NetworkConfig(
            **common,
            internal=top.check(f"{where}.internal", spec.get("internal", False), bool),
            attachable=top.check(f"{where}.attachable", spec.get("attachable", False), bool),
            enable_ipv6=top.check(f"{where}.enable_ipv6", spec.get("enable_ipv6", False), bool),
            ipam=top.check(f"{where}.ipam", spec.get("ipam") or {}, dict),
        )
    volumes: dict[str, VolumeConfig] = {}
    for key, spec in top.check("volumes", data.get("volumes") or {}, dict).items():
        where = f"volumes.{key}"
        _spec, common = _resource_fields(top, where, name, key, spec, _VOLUME_KEYS)
        volumes[key] = VolumeConfig(**common)

    for service in services.values():
        _check_references(service, networks, volumes)
    if "default" not in networks and any(
        net.name == "default" for service in services.values() for net in service.networks
    ):
        networks["default"] = NetworkConfig(key="default", name=f"{name}_default")
    return Project(
        name=name,
        services=services,
        networks=networks,
        volumes=volumes,
        configs=top.check("configs", data.get("configs") or {}, dict),
        secrets=top.check("secrets", data.get("secrets") or {}, dict),
    )


def _check_references(
    service: Service, networks: Mapping[str, NetworkConfig], volumes: Mapping[str, VolumeConfig]
) -> None:
    for net in service.networks:
        if net.name != "default" and net.name not in networks:
            # docker-compose 1.29.2 validate_networks
            raise ComposeModelError(
                f'Service "{service.name}" uses an undefined network "{net.name}"',
                service.name,
                "networks",
            )
    for mount in service.volumes:
        if mount.type == "volume" and mount.source is not None and mount.source not in volumes:
            # docker-compose 1.29.2 validate_named_volumes (compose-go: "service "web" refers
            # to undefined volume data: invalid compose project")
            raise ComposeModelError(
                f'Named volume "{mount.source}:{mount.target}" is used in service '
                f'"{service.name}" but no declaration was found in the volumes section.',
                service.name,
                "volumes",
            )
