"""Service keys that bring the host into a container: ``volumes``, ``volumes_from``,
``devices``.

Role: builders that turn those keys, short or long syntax, into :class:`VolumeMount`,
:class:`VolumesFrom` and :class:`DeviceMapping` values for ``service_from_dict``.

Invariants:
- A short-form volume is :func:`~dockyard.compose.model.scalars.parse_volume`'s; the long
  form takes only its own type's options (``bind`` options on a bind mount, ...).
- No two volumes of a service share a target (moby's "Duplicate mount point").
- Names are not resolved here: ``project`` checks that each named volume is declared; the
  dependency graph checks the services ``volumes_from`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from dockyard.compose.model.checks import _Ctx, _type_error
from dockyard.compose.model.scalars import _PROPAGATIONS, parse_bytes, parse_volume
from dockyard.compose.model.values import DeviceMapping, VolumeMount, VolumesFrom


def _volumes(ctx: _Ctx, value: object) -> tuple[VolumeMount, ...]:
    out: list[VolumeMount] = []
    for item in ctx.check("volumes", value, list):
        if isinstance(item, str):
            out.append(ctx.wrap("volumes", partial(parse_volume, item, ctx.path("volumes"))))
        elif isinstance(item, dict):
            out.append(_volume_long(ctx, item))
        else:
            raise _type_error(ctx.path("volumes"), str, dict)
    targets = [mount.target for mount in out]
    for target in targets:
        if targets.count(target) > 1:
            # docker-compose 1.29.2 validate_config_section / moby "Duplicate mount point"
            raise ctx.fail("volumes", f"{ctx.path('volumes')}: Duplicate mount point: {target}")
    return tuple(out)


def _volume_long(ctx: _Ctx, item: Mapping[str, Any]) -> VolumeMount:
    key = "volumes"
    ctx.unknown(
        ctx.path(key),
        list(item),
        ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs"),
    )
    kind = ctx.check(f"{key}.type", item.get("type"), str)
    if kind not in ("bind", "volume", "tmpfs", "npipe"):
        raise ctx.fail(key, f"{ctx.path(key)}: invalid mount type {kind!r}")
    if "target" not in item:
        raise ctx.fail(key, f"{ctx.path(key)}: a long-form volume needs a target")
    target = ctx.check(f"{key}.target", item["target"], str)
    source = item.get("source")
    if source is not None:
        ctx.check(f"{key}.source", source, str)
    if kind == "bind" and not source:
        raise ctx.fail(key, f"{ctx.path(key)}: a bind mount needs a source")
    if kind == "tmpfs" and source:
        raise ctx.fail(key, f"{ctx.path(key)}: a tmpfs mount takes no source")
    read_only = ctx.check(f"{key}.read_only", item.get("read_only", False), bool)
    consistency = item.get("consistency")
    if consistency is not None:
        ctx.check(f"{key}.consistency", consistency, str)
    for section in ("bind", "volume", "tmpfs"):
        if section in item and section != kind:
            raise ctx.fail(key, f"{ctx.path(key)}: {section} options on a {kind} mount")
    options = ctx.check(f"{key}.{kind}", item.get(kind) or {}, dict)
    if kind == "bind":
        ctx.unknown(
            f"{ctx.path(key)}.bind", list(options), ("propagation", "create_host_path", "selinux")
        )
        propagation = options.get("propagation")
        if propagation is not None and propagation not in _PROPAGATIONS:
            raise ctx.fail(key, f"{ctx.path(key)}: invalid propagation {propagation!r}")
        return VolumeMount(
            type="bind",
            source=source,
            target=target,
            read_only=read_only,
            consistency=consistency,
            propagation=propagation,
            create_host_path=ctx.check(
                f"{key}.bind.create_host_path", options.get("create_host_path", True), bool
            ),
            selinux=options.get("selinux"),
        )
    if kind == "tmpfs":
        ctx.unknown(f"{ctx.path(key)}.tmpfs", list(options), ("size", "mode"))
        size = options.get("size")
        mode = options.get("mode")
        return VolumeMount(
            type="tmpfs",
            target=target,
            read_only=read_only,
            tmpfs_size_bytes=None
            if size is None
            else ctx.wrap(key, lambda: parse_bytes(size, f"{ctx.path(key)}.tmpfs.size")),
            tmpfs_mode=None if mode is None else ctx.check(f"{key}.tmpfs.mode", mode, int),
        )
    ctx.unknown(f"{ctx.path(key)}.{kind}", list(options), ("nocopy", "subpath"))
    return VolumeMount(
        type=kind,
        source=source or None,
        target=target,
        read_only=read_only,
        consistency=consistency,
        nocopy=ctx.check(f"{key}.volume.nocopy", options.get("nocopy", False), bool),
    )


def _volumes_from(ctx: _Ctx, value: object) -> tuple[VolumesFrom, ...]:
    out = []
    for item in ctx.strings("volumes_from", value):
        parts = item.split(":")
        kind = "service"
        if parts[0] == "container" and len(parts) > 1:
            kind = "container"
            parts = parts[1:]
        if len(parts) > 2 or not parts[0] or (len(parts) == 2 and parts[1] not in ("ro", "rw")):
            # docker-compose 1.29.2 VolumeFromSpec.parse
            raise ctx.fail(
                "volumes_from",
                f"{ctx.path('volumes_from')}: volume_from {item} has incorrect format, should "
                "be one of '<service name>[:<mode>]' or 'container:<container name>[:<mode>]'",
            )
        out.append(VolumesFrom(source=parts[0], kind=kind, read_only=parts[1:] == ["ro"]))
    return tuple(out)


def _devices(ctx: _Ctx, value: object) -> tuple[DeviceMapping, ...]:
    out = []
    for item in ctx.check("devices", value, list):
        if isinstance(item, dict):
            ctx.unknown(ctx.path("devices"), list(item), ("source", "target", "permissions"))
            source = ctx.check("devices.source", item.get("source"), str)
            target = ctx.check("devices.target", item.get("target", source), str)
            perms = ctx.check("devices.permissions", item.get("permissions", "rwm"), str)
            out.append(DeviceMapping(source, target, perms))
            continue
        text = ctx.check("devices", item, str, dict)
        parts = text.split(":")
        # moby opts.ParseDevice: host[:container][:permissions]
        if len(parts) == 3:
            mapping = DeviceMapping(parts[0], parts[1], parts[2])
        elif len(parts) == 2 and set(parts[1]) <= set("rwm"):
            mapping = DeviceMapping(parts[0], parts[0], parts[1])
        elif len(parts) == 2:
            mapping = DeviceMapping(parts[0], parts[1])
        elif len(parts) == 1:
            mapping = DeviceMapping(parts[0], parts[0])
        else:
            raise ctx.fail("devices", f"{ctx.path('devices')}: invalid device {text!r}")
        if not mapping.host_path or not set(mapping.permissions) <= set("rwm"):
            raise ctx.fail("devices", f"{ctx.path('devices')}: invalid device {text!r}")
        out.append(mapping)
    return tuple(out)
