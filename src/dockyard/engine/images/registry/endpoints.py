"""Where a reference's repository lives: registry host, repository path and the endpoints
to try, in dockerd's order.

Role: moby's registry/config.go and registry/service_v2.go rules, on values: an image
reference maps to a registry host (`docker.io` is served by `registry-1.docker.io`) and a
path inside it; a registry is *insecure* when `--insecure-registry` names it (host[:port])
or one of its addresses falls in an insecure CIDR, loopback (127.0.0.0/8, ::1/128) always
included; a secure registry is tried over verified HTTPS only, an insecure one over HTTPS
without verification first and then plain HTTP.

Invariants:
- Name resolution is the caller's: `is_insecure` takes the addresses the host resolved to.
- The order of `endpoints` is the order dockerd tries them; the last error is the one
  reported (moby distribution/pull.go keeps `lastErr`).

This module is PURE: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dockyard.engine.images.model import DEFAULT_DOMAIN, Reference

__all__ = [
    "DEFAULT_INSECURE_CIDRS",
    "DOCKER_HUB_REGISTRY",
    "Endpoint",
    "RegistryLocation",
    "endpoints",
    "is_insecure",
    "locate",
    "registry_host",
    "split_host_port",
]

DOCKER_HUB_REGISTRY = "registry-1.docker.io"
# moby registry/config.go: loopback registries are insecure by default (IPv6 too since 20.10).
DEFAULT_INSECURE_CIDRS = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class RegistryLocation:
    """A repository on a registry: `host` as in the reference ("localhost:5000"), the
    host actually dialled (`docker.io` → registry-1.docker.io) and the path inside."""

    host: str
    dial_host: str
    repository: str

    @property
    def name(self) -> str:
        """The repository's full name as Docker shows it in push output: host/path."""
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: scheme and whether the TLS chain is verified."""

    scheme: str  # "https" or "http"
    host: str  # host[:port] to dial
    verify_tls: bool

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


def registry_host(domain: str) -> str:
    """The host dialled for a reference's domain (moby IndexServer → registry-1)."""
    return DOCKER_HUB_REGISTRY if domain == DEFAULT_DOMAIN else domain


def locate(ref: Reference) -> RegistryLocation:
    return RegistryLocation(ref.domain, registry_host(ref.domain), ref.path)


def split_host_port(host: str) -> tuple[str, int | None]:
    """`[::1]:5000` → ("::1", 5000); `localhost` → ("localhost", None)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def is_insecure(host: str, insecure_registries: Iterable[str], addresses: Sequence[str]) -> bool:
    """moby isSecureIndex, negated: named in `--insecure-registry`, or an address of the
    host inside an insecure CIDR (the defaults plus the CIDRs given)."""
    cidrs = list(DEFAULT_INSECURE_CIDRS)
    for entry in insecure_registries:
        entry = entry.strip()
        for prefix in ("http://", "https://"):
            entry = entry.removeprefix(prefix)
        entry = entry.rstrip("/")
        if entry == host:
            return True
        if "/" in entry:
            cidrs.append(entry)
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue  # dockerd refused it at start; a name with a slash is no CIDR
    name, _ = split_host_port(host)
    candidates = list(addresses)
    try:
        ipaddress.ip_address(name)
        candidates.append(name)
    except ValueError:
        pass
    for text in candidates:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if any(address.version == net.version and address in net for net in networks):
            return True
    return False


def endpoints(dial_host: str, *, insecure: bool) -> tuple[Endpoint, ...]:
    """moby lookupV2Endpoints: HTTPS; for an insecure registry unverified, then HTTP."""
    if not insecure:
        return (Endpoint("https", dial_host, verify_tls=True),)
    return (Endpoint("https", dial_host, verify_tls=False), Endpoint("http", dial_host, False))
