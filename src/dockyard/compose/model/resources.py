"""Service keys that limit a container: memory, CPU and pids knobs, ``deploy``, ``ulimits``.

Role: ``_deploy`` reads ``deploy`` (the replica count, and the resources the engine can
apply; the Swarm-only keys are type-checked and left to the raw config); ``_resources``
folds the service-level knobs (``mem_limit``, ``cpus``, ``pids_limit``, ...) and
``deploy.resources`` into one :class:`Resources`; ``_ulimits`` reads ``ulimits``.

Invariants:
- A service-level knob and its ``deploy.resources`` twin are one setting: both may be
  given only with the same value (compose-go: "can't set distinct values on ...").
- Sizes are :func:`~dockyard.compose.model.scalars.parse_bytes`'s; CPUs become NanoCPUs
  exactly (``Fraction``), never through a float.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import partial
from typing import Any

from dockyard.compose.model.checks import _Ctx, _is, _words
from dockyard.compose.model.scalars import parse_bytes
from dockyard.compose.model.values import Resources, Ulimit


def _nano_cpus(ctx: _Ctx, key: str, value: object) -> int:
    ctx.check(key, value, int, float, str)
    try:
        cpus = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ctx.fail(key, f"{ctx.path(key)}: invalid cpus value {value!r}") from None
    if cpus < 0:
        raise ctx.fail(key, f"{ctx.path(key)}: cpus must not be negative")
    return int(cpus * 1_000_000_000)


def _size(ctx: _Ctx, key: str, value: object) -> int:
    return ctx.wrap(key, partial(parse_bytes, value, ctx.path(key)))


_SWARM_DEPLOY_KEYS: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "endpoint_mode": (str,),
    "restart_policy": (dict,),
    "placement": (dict,),
    "update_config": (dict,),
    "rollback_config": (dict,),
}


def _deploy(ctx: _Ctx, value: object) -> tuple[int | None, dict[str, Any]]:
    """``deploy``: the replicas and the resources the engine can apply (the rest is Swarm's
    and only type-checked)."""
    deploy = ctx.check("deploy", value, dict)
    ctx.unknown(
        ctx.path("deploy"),
        list(deploy),
        _words(
            "mode replicas labels resources restart_policy placement update_config "
            "rollback_config endpoint_mode"
        ),
    )
    # Swarm-only settings: type-checked, otherwise left to the raw config
    for key, types in _SWARM_DEPLOY_KEYS.items():
        if deploy.get(key) is not None:
            ctx.check(f"deploy.{key}", deploy[key], *types)
    if deploy.get("labels") is not None:
        ctx.mapping("deploy.labels", deploy["labels"])
    replicas = deploy.get("replicas")
    if replicas is not None:
        ctx.check("deploy.replicas", replicas, int)
    found: dict[str, Any] = {}
    resources = ctx.check("deploy.resources", deploy.get("resources") or {}, dict)
    ctx.unknown(f"{ctx.path('deploy')}.resources", list(resources), ("limits", "reservations"))
    limits = ctx.check("deploy.resources.limits", resources.get("limits") or {}, dict)
    ctx.unknown(f"{ctx.path('deploy')}.resources.limits", list(limits), ("cpus", "memory", "pids"))
    reservations = ctx.check(
        "deploy.resources.reservations", resources.get("reservations") or {}, dict
    )
    ctx.unknown(
        f"{ctx.path('deploy')}.resources.reservations",
        list(reservations),
        ("cpus", "memory", "devices", "generic_resources"),
    )
    if "cpus" in limits:
        found["cpus"] = _nano_cpus(ctx, "deploy.resources.limits.cpus", limits["cpus"])
    if "memory" in limits:
        found["memory"] = _size(ctx, "deploy.resources.limits.memory", limits["memory"])
    if "pids" in limits:
        found["pids"] = ctx.check("deploy.resources.limits.pids", limits["pids"], int)
    if "memory" in reservations:
        found["reservation"] = _size(
            ctx, "deploy.resources.reservations.memory", reservations["memory"]
        )
    return replicas, found


def _one_knob(
    ctx: _Ctx, key: str, deploy_key: str, legacy: int | None, new: int | None
) -> int | None:
    # compose-go: "can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"
    if legacy is not None and new is not None and legacy != new:
        raise ctx.fail(
            key, f"services.{ctx.service}: can't set distinct values on '{key}' and '{deploy_key}'"
        )
    return new if new is not None else legacy


def _resources(ctx: _Ctx, spec: Mapping[str, Any], deploy: Mapping[str, Any]) -> Resources:
    def size(key: str) -> int | None:
        return _size(ctx, key, spec[key]) if key in spec else None

    def integer(key: str) -> int | None:
        return ctx.check(key, spec[key], int) if key in spec else None

    cpus = _nano_cpus(ctx, "cpus", spec["cpus"]) if "cpus" in spec else None
    memswap = spec.get("memswap_limit")
    return Resources(
        memory_bytes=_one_knob(
            ctx,
            "mem_limit",
            "deploy.resources.limits.memory",
            size("mem_limit"),
            deploy.get("memory"),
        ),
        # memswap_limit: -1 is "unlimited swap" (moby), not a size
        memory_swap_bytes=-1 if memswap == -1 else size("memswap_limit"),
        memory_reservation_bytes=_one_knob(
            ctx,
            "mem_reservation",
            "deploy.resources.reservations.memory",
            size("mem_reservation"),
            deploy.get("reservation"),
        ),
        nano_cpus=_one_knob(ctx, "cpus", "deploy.resources.limits.cpus", cpus, deploy.get("cpus")),
        cpu_shares=integer("cpu_shares"),
        cpu_quota=integer("cpu_quota"),
        cpu_period=integer("cpu_period"),
        cpuset=spec.get("cpuset"),
        pids_limit=_one_knob(
            ctx,
            "pids_limit",
            "deploy.resources.limits.pids",
            integer("pids_limit"),
            deploy.get("pids"),
        ),
        shm_size_bytes=size("shm_size"),
    )


def _ulimits(ctx: _Ctx, value: object) -> tuple[Ulimit, ...]:
    out: list[Ulimit] = []
    for name, limit in ctx.check("ulimits", value, dict).items():
        key = f"ulimits.{name}"
        if _is(limit, int):
            out.append(Ulimit(name=name, soft=limit, hard=limit))
            continue
        spec = ctx.check(key, limit, int, dict)
        ctx.unknown(ctx.path(key), list(spec), ("soft", "hard"))
        if "soft" not in spec or "hard" not in spec:
            raise ctx.fail(key, f"{ctx.path(key)}: soft and hard are both required")
        soft = ctx.check(f"{key}.soft", spec["soft"], int)
        hard = ctx.check(f"{key}.hard", spec["hard"], int)
        if soft > hard:
            # moby pkg/ulimit: "ulimit soft limit must be less than or equal to hard limit"
            raise ctx.fail(
                key, f"{ctx.path(key)}: soft limit must be less than or equal to hard limit"
            )
        out.append(Ulimit(name=name, soft=soft, hard=hard))
    return tuple(out)
