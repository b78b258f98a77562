"""Merging a service defined in several files (``-f a -f b``, override files, ``extends``).

The rules are docker-compose 1.29.2's ``merge_service_dicts`` (compose-go's override rules
agree on all of them), written as a table: service key → how a base and an override value
combine. A key not in the table is a scalar: the override replaces the base (``image``,
``command``, ``entrypoint``, ``restart``, ``healthcheck.test`` …). Inputs are services in
canonical shape (``normalize.py``), so mapping-valued keys are already mappings.

List merges keep first-seen order (base, then override) instead of 1.29.2's sorting, so the
output reads as the user wrote it; the set of items is the same.

Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Merge = Callable[[Any, Any], Any]


def _replace(base: Any, override: Any) -> Any:
    return override


def _mapping(base: Any, override: Any) -> Any:
    return {**(base or {}), **(override or {})}


def _unique(base: Any, override: Any) -> Any:
    merged: list[Any] = []
    for item in [*(base or []), *(override or [])]:
        if item not in merged:
            merged.append(item)
    return merged


def _keyed(key_of: Callable[[Any], Any]) -> Merge:
    """Items with the same key: the override's wins, in the base's position."""

    def merge(base: Any, override: Any) -> Any:
        merged: dict[Any, Any] = {}
        for item in [*(base or []), *(override or [])]:
            merged[key_of(item)] = item
        return list(merged.values())

    return merge


def _link_alias(link: Any) -> Any:
    # 1.29.2 ServiceLink.merge_field: the alias ("db:database" → "database", "db" → "db").
    name, _, alias = str(link).partition(":")
    return alias or name


def _source(item: Any) -> Any:
    # 1.29.2 ServiceSecret/ServiceConfig.merge_field: the source name.
    return item.get("source") if isinstance(item, dict) else item


def mount_target(item: Any) -> Any:
    """Container path of a ``volumes``/``devices`` entry (1.29.2 ``split_path_mapping``)."""
    if isinstance(item, dict):
        return item.get("target")
    parts = str(item).split(":")
    if len(parts) == 1:
        return parts[0]
    return parts[1]


def _networks(base: Any, override: Any) -> Any:
    # 1.29.2 merge_networks: per network, aliases and link_local_ips unique, the rest scalars.
    merged: dict[str, Any] = {}
    for name in [*(base or {}), *(override or {})]:
        if name in merged:
            continue
        base_spec = (base or {}).get(name) or {}
        override_spec = (override or {}).get(name) or {}
        spec = merge_mapping_by_rules(base_spec, override_spec, _NETWORK_RULES)
        merged[name] = spec or None
    return merged


def _logging(base: Any, override: Any) -> Any:
    # 1.29.2 merge_logging: options merge only when the driver stays the same (or the base
    # named none); a new driver brings only its own options.
    base = base or {}
    override = override or {}
    merged = {**base, **override}
    if override.get("driver") in (None, base.get("driver")) or base.get("driver") is None:
        options = {**(base.get("options") or {}), **(override.get("options") or {})}
    else:
        options = override.get("options") or {}
    if options or "options" in base or "options" in override:
        merged["options"] = options
    return merged


def _healthcheck(base: Any, override: Any) -> Any:
    # 1.29.2 merge_healthchecks: "disable: true" in the override drops the base's settings.
    if (override or {}).get("disable") is True:
        return override
    return {**(base or {}), **(override or {})}


def _build(base: Any, override: Any) -> Any:
    return merge_mapping_by_rules(base or {}, override or {}, _BUILD_RULES)


def _deploy(base: Any, override: Any) -> Any:
    return merge_mapping_by_rules(base or {}, override or {}, _DEPLOY_RULES)


def _resources(base: Any, override: Any) -> Any:
    return merge_mapping_by_rules(base or {}, override or {}, _RESOURCES_RULES)


def _placement(base: Any, override: Any) -> Any:
    return merge_mapping_by_rules(base or {}, override or {}, _PLACEMENT_RULES)


def _blkio(base: Any, override: Any) -> Any:
    return merge_mapping_by_rules(base or {}, override or {}, _BLKIO_RULES)


def _by_path(base: Any, override: Any) -> Any:
    return _keyed(lambda item: item.get("path") if isinstance(item, dict) else item)(base, override)


def merge_mapping_by_rules(
    base: Mapping[str, Any], override: Mapping[str, Any], rules: Mapping[str, Merge]
) -> dict[str, Any]:
    """Merge two mappings key by key: ``rules[key]`` when both have it, else the one present."""
    merged = dict(base)
    for key, value in override.items():
        if key in merged:
            merged[key] = rules.get(key, _replace)(merged[key], value)
        else:
            merged[key] = value
    return merged


SERVICE_MERGE_RULES: Mapping[str, Merge] = {
    # Mappings merge by key, the override's value winning (1.29.2 merge_mapping).
    "environment": _mapping,
    "labels": _mapping,
    "annotations": _mapping,
    "ulimits": _mapping,
    "sysctls": _mapping,
    "depends_on": _mapping,
    "storage_opt": _mapping,
    "extra_hosts": _mapping,
    # Sequences of parsed items, one per key (1.29.2 merge_sequence with merge_field).
    "links": _keyed(_link_alias),
    "secrets": _keyed(_source),
    "configs": _keyed(_source),
    "security_opt": _unique,
    # Per network: aliases unioned, addresses replaced (1.29.2 merge_networks).
    "networks": _networks,
    # Mounts replace by container path (1.29.2 merge_path_mappings).
    "volumes": _keyed(mount_target),
    "devices": _keyed(mount_target),
    # Sets of strings (1.29.2 merge_unique_items_lists).
    "cap_add": _unique,
    "cap_drop": _unique,
    "expose": _unique,
    "external_links": _unique,
    "volumes_from": _unique,
    "device_cgroup_rules": _unique,
    "profiles": _unique,
    "group_add": _unique,
    # String-or-list keys concatenate (1.29.2 merge_list_or_string); duplicates dropped as
    # compose-go does, since a repeated DNS server or env file adds nothing.
    "dns": _unique,
    "dns_search": _unique,
    "dns_opt": _unique,
    "env_file": _unique,
    "tmpfs": _unique,
    # Ports accumulate; an identical mapping is kept once (1.29.2 merge_ports keys by the
    # parsed port spec).
    "ports": _unique,
    # Nested sections with their own rules.
    "logging": _logging,
    "healthcheck": _healthcheck,
    "build": _build,
    "deploy": _deploy,
    "blkio_config": _blkio,
    # "command" and "entrypoint" replace (the default): merging argv lists is meaningless.
}

_BUILD_RULES: Mapping[str, Merge] = {
    # 1.29.2 merge_build: args/labels/extra_hosts by key, cache_from unique, rest scalars.
    "args": _mapping,
    "labels": _mapping,
    "extra_hosts": _mapping,
    "cache_from": _unique,
}

_DEPLOY_RULES: Mapping[str, Merge] = {
    # 1.29.2 merge_deploy.
    "labels": _mapping,
    "update_config": _mapping,
    "rollback_config": _mapping,
    "restart_policy": _mapping,
    "resources": _resources,
    "placement": _placement,
}

_RESOURCES_RULES: Mapping[str, Merge] = {
    "limits": _mapping,
    "reservations": _mapping,
}

_PLACEMENT_RULES: Mapping[str, Merge] = {
    "constraints": _unique,
    "preferences": _unique,
}

_NETWORK_RULES: Mapping[str, Merge] = {
    "aliases": _unique,
    "link_local_ips": _unique,
}

_BLKIO_RULES: Mapping[str, Merge] = {
    # 1.29.2 merge_blkio_config: device limits replace by device path.
    "device_read_bps": _by_path,
    "device_read_iops": _by_path,
    "device_write_bps": _by_path,
    "device_write_iops": _by_path,
    "weight_device": _by_path,
}


def merge_services(
    base: Mapping[str, Any], override: Mapping[str, Any], *, legacy_v1: bool = False
) -> dict[str, Any]:
    """One service from a base and an override definition.

    ``legacy_v1``: Compose file format 1 had ``image`` and ``build`` as alternatives, so the
    override's one replaces both (1.29.2 ``legacy_v1_merge_image_or_build``).
    """
    merged = merge_mapping_by_rules(base, override, SERVICE_MERGE_RULES)
    if legacy_v1:
        for key, other in (("image", "build"), ("build", "image")):
            if key in override and other not in override:
                merged.pop(other, None)
    return merged


def merge_section(
    base: Mapping[str, Any], override: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Top-level ``networks``/``volumes``/``configs``/``secrets``: per name, keys replace."""
    merged = {name: dict(entry) for name, entry in base.items()}
    for name, entry in override.items():
        merged[name] = {**merged.get(name, {}), **entry}
    return merged
