"""Service keys for the network: ``ports``, ``expose``, ``network_mode``, ``networks``,
``links``.

Role: builders that turn those keys, short or long syntax, into :class:`PortSpec`,
:class:`NetworkMode`, :class:`ServiceNetwork` and :class:`Link` values for
``service_from_dict``.

Invariants:
- A short-form port is :func:`~dockyard.compose.model.scalars.parse_port`'s; a long-form
  one is checked key by key against the compose-spec's properties, with the same protocol
  and port-range rules.
- Names are not resolved here: ``project`` checks that each network a service joins is
  declared; the dependency graph (``compose/graph.py``) checks that the services
  ``links`` and ``network_mode: service:x`` name exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from dockyard.compose.model.checks import _Ctx, _words
from dockyard.compose.model.scalars import _PROTOCOLS, _port_range, parse_port
from dockyard.compose.model.values import Link, NetworkMode, PortSpec, ServiceNetwork

_EXPOSE = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")


def _ports(ctx: _Ctx, value: object) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for item in ctx.check("ports", value, list):
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            out.extend(ctx.wrap("ports", partial(parse_port, item, ctx.path("ports"))))
        elif isinstance(item, dict):
            out.append(_port_long(ctx, item))
        else:
            raise ctx.fail(
                "ports",
                f"{ctx.path('ports')} contains an invalid type, it should be a number, "
                "or an object",
            )
    return tuple(out)


def _port_long(ctx: _Ctx, item: Mapping[str, Any]) -> PortSpec:
    key = "ports"
    ctx.unknown(
        ctx.path(key),
        list(item),
        ("target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"),
    )
    if "target" not in item:
        raise ctx.fail(key, f"{ctx.path(key)}: a long-form port needs a target")
    target = ctx.check(f"{key}.target", item["target"], int)
    published = item.get("published")
    if published is not None:
        ctx.check(f"{key}.published", published, int, str)
        if _port_range(str(published)) is None:
            raise ctx.fail(key, f'{ctx.path(key)}: Invalid published port "{published}"')
    protocol = ctx.check(f"{key}.protocol", item.get("protocol", "tcp"), str)
    mode = ctx.check(f"{key}.mode", item.get("mode", "ingress"), str)
    if protocol not in _PROTOCOLS or mode not in ("host", "ingress") or not 0 < target < 65536:
        raise ctx.fail(key, f"{ctx.path(key)}: invalid long-form port {dict(item)!r}")
    return PortSpec(
        target=target,
        published=None if published is None else str(published),
        host_ip=ctx.check(f"{key}.host_ip", item.get("host_ip", ""), str),
        protocol=protocol,
        mode=mode,
    )


def _network_mode(ctx: _Ctx, value: object) -> NetworkMode:
    text = ctx.check("network_mode", value, str)
    kind, sep, target = text.partition(":")
    if sep and kind in ("service", "container"):
        if not target:
            raise ctx.fail("network_mode", f"{ctx.path('network_mode')}: {text!r} names nothing")
        return NetworkMode(mode=kind, target=target)
    if not text:
        raise ctx.fail("network_mode", f"{ctx.path('network_mode')} must not be empty")
    return NetworkMode(mode=text)


def _links(ctx: _Ctx, value: object) -> tuple[Link, ...]:
    out = []
    for item in ctx.strings("links", value):
        service, _, alias = item.partition(":")
        if not service:
            raise ctx.fail("links", f"{ctx.path('links')}: invalid link {item!r}")
        out.append(Link(service=service, alias=alias or service))
    return tuple(out)


def _networks(ctx: _Ctx, value: object) -> tuple[ServiceNetwork, ...]:
    out = []
    for name, spec in ctx.check("networks", value, dict).items():
        key = f"networks.{name}"
        spec = ctx.check(key, spec if spec is not None else {}, dict)
        ctx.unknown(
            ctx.path(key),
            list(spec),
            _words("aliases ipv4_address ipv6_address link_local_ips priority mac_address"),
        )
        ipv4 = spec.get("ipv4_address")
        ipv6 = spec.get("ipv6_address")
        out.append(
            ServiceNetwork(
                name=name,
                aliases=ctx.strings(f"{key}.aliases", spec.get("aliases") or []),
                ipv4_address=None if ipv4 is None else ctx.check(f"{key}.ipv4_address", ipv4, str),
                ipv6_address=None if ipv6 is None else ctx.check(f"{key}.ipv6_address", ipv6, str),
                link_local_ips=ctx.strings(
                    f"{key}.link_local_ips", spec.get("link_local_ips") or []
                ),
                priority=ctx.check(f"{key}.priority", spec.get("priority", 0), int),
            )
        )
    return tuple(out)


def _expose(ctx: _Ctx, value: object) -> tuple[str, ...]:
    out = []
    for item in ctx.check("expose", value, list):
        text = str(ctx.check("expose", item, str, int))
        if not _EXPOSE.match(text):
            raise ctx.fail("expose", f"{ctx.path('expose')}: invalid port {text!r}")
        out.append(text)
    return tuple(out)
