"""The network manager: networks, container sandboxes and the host state behind them.

Role: the I/O driver of the engine's networking, in libnetwork's place. It keeps the
networks (`<data-root>/network/networks/<id>.json`) and each running container's sandbox
(`<data-root>/network/sandboxes/<id>.json`: namespace, interfaces, published ports), and
makes the host match them: bridges and veths (bridge.py over rtnetlink), one iptables ruleset
for everything (iptables.py plans it, firewall.py applies it in one iptables-restore), port
reservations (portreserve.py), the embedded DNS for user networks (dns/server.py), and the
containers' /etc/hosts, /etc/resolv.conf and /etc/hostname. Decisions are the pure modules'
(model.py, ipam.py, ports.py, links.py, etcfiles.py, iptables.py, dns/records.py).

Invariants:
- A sandbox file exists exactly while its container may have a namespace, veths, addresses or
  ports: it is written before the first kernel change of a start and removed after the last
  removal of a stop, so a daemon killed in between finds and removes the leftovers at its
  next start (`start`), and pools and port allocations are rebuilt from the sandboxes there.
- The iptables ruleset is regenerated whole from the networks and the sandboxes after every
  change, so rules never drift from the state and a restart never duplicates anything.
- Everything the manager made on the host goes when its network or container goes; at daemon
  stop with no container running the bridges, chains and jumps go too (`close`), so the host
  is left as it was found.
- The state (networks, sandboxes, address pools, port allocations, the ruleset) changes
  only under one asyncio lock, held for bookkeeping, never across a container's kernel work:
  a start's namespace, veths and DNS rules are made, and a stop's removed, outside it, so
  containers start and stop in parallel (one lock across it all made 30 parallel starts
  take 30 times one). Per container, attach, detach, connect and disconnect are serialised
  by that container's own lock, always taken before the shared one.
- Addresses are allocated (under the lock) before the veth that carries them is made, and
  released only after it is gone, so no network is removed, and no address reused, while a
  veth of it still exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dockyard.engine.containers import Conflict, ContainerRecord, NotFound
from dockyard.engine.fsutil import write_atomic
from dockyard.engine.model.container import new_id
from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.network import bridge, firewall, netns
from dockyard.engine.network import etcfiles as etc
from dockyard.engine.network import iptables as ipt
from dockyard.engine.network import links as lk
from dockyard.engine.network import model as nm
from dockyard.engine.network import ports as pt
from dockyard.engine.network.dns.records import DnsEndpoint, DnsTable
from dockyard.engine.network.dns.resolvconf import UpstreamServer, host_upstreams
from dockyard.engine.network.dns.server import EmbeddedDns
from dockyard.engine.network.ipam import NetworkError
from dockyard.engine.network.portreserve import (
    PortInUse,
    PortReservations,
    Reservation,
    local_port_range,
)
from dockyard.engine.network.sandbox import Interface, Sandbox
from dockyard.engine.runtime.logfile import format_rfc3339nano
from dockyard.engine.security.defaults import Mount

logger = logging.getLogger(__name__)

HOSTS_FILE = "hosts"
RESOLV_FILE = "resolv.conf"
HOSTNAME_FILE = "hostname"
# Ephemeral picks that a host process already holds are retried with the port marked busy.
EPHEMERAL_RETRIES = 32


@dataclass(frozen=True)
class NetworkConfig:
    """The daemon's networking flags (dockerd's names)."""

    bridge: str = nm.DEFAULT_BRIDGE_NAME  # -b/--bridge; "none" disables the default bridge
    bip: str = ""  # --bip, e.g. 172.30.0.1/16
    iptables: bool = True  # --iptables


@dataclass(frozen=True)
class StartNetwork:
    """What a container start needs from the network: the namespace to join, the mounts
    (/etc files), the link environment variables, and for `--network container:NAME` the
    hostname and domain name NAME has (moby initializeNetworking: the joiner takes them)."""

    netns_path: str
    mounts: tuple[Mount, ...]
    env: tuple[str, ...]
    hostname: str | None = None
    domainname: str | None = None


def network_mode_name(host_config: Mapping[str, Any]) -> str:
    mode = str(host_config.get("NetworkMode") or "default")
    return "bridge" if mode == "default" else mode


def _now() -> str:
    return format_rfc3339nano(time.time_ns())


class NetworkManager:
    def __init__(
        self,
        *,
        state_dir: Path,
        netns_dir: Path,
        files_dir: Callable[[str], Path],
        config: NetworkConfig,
        emit: Callable[[str, str, Mapping[str, str]], None],
        host_resolv_path: Path = Path("/etc/resolv.conf"),
        host_hosts_path: Path = Path("/etc/hosts"),
        host_name: str = "",
    ) -> None:
        self._networks_dir = state_dir / "networks"
        self._sandboxes_dir = state_dir / "sandboxes"
        self._netns_dir = netns_dir
        self._files_dir = files_dir
        self.config = config
        self._emit = emit
        self._host_resolv_path = host_resolv_path
        self._host_hosts_path = host_hosts_path
        self._host_name = host_name
        self._rng = random.SystemRandom()
        self._lock = asyncio.Lock()
        self._container_locks: dict[str, asyncio.Lock] = {}
        self.networks: dict[str, nm.NetworkRecord] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        self._ports = pt.PortAllocator()
        self._reservations = PortReservations()
        self._last_subnet: ipaddress.IPv4Network | None = None
        self._dns: EmbeddedDns | None = None
        self._jumps_ensured = False
        self._names: dict[str, str] = {}  # container id -> name (for DNS), kept by the engine
        self._dns_update_pending = False
        self._dns_endpoints: dict[
            tuple[int, str, str, str], tuple[nm.EndpointRecord, DnsEndpoint]
        ] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, running: Mapping[str, ContainerRecord]) -> None:
        """Load the state, make the host match it, and drop sandboxes of containers that are
        no longer running (the daemon died while they stopped)."""
        for directory in (self._networks_dir, self._sandboxes_dir, self._netns_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.networks = {}
        for path in sorted(self._networks_dir.glob("*.json")):
            try:
                record = nm.NetworkRecord.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as e:
                logger.error("network state %s unreadable, ignored: %s", path, e)
                continue
            self.networks[record.id] = record
        for path in sorted(self._sandboxes_dir.glob("*.json")):
            try:
                sandbox = Sandbox.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as e:
                logger.error("sandbox state %s unreadable, removed: %s", path, e)
                path.unlink(missing_ok=True)
                continue
            self.sandboxes[sandbox.container_id] = sandbox
        for cid, container in running.items():
            self._names[cid] = container.name.lstrip("/")
        await self._ensure_predefined()
        self._rebuild_allocations()
        for record in self.networks.values():
            if record.driver == "bridge":
                await asyncio.to_thread(self._ensure_bridge, record)
        resolv = self._host_resolv_text()
        self._dns = EmbeddedDns(host_upstreams(resolv))
        await self._dns.start()
        for cid in list(self.sandboxes):
            if cid not in running:
                await self._teardown_sandbox(self.sandboxes[cid])
        for sandbox in self.sandboxes.values():
            for mapping in sandbox.ports:
                try:
                    self._reservations.reserve(_reservation(mapping))
                except (PortInUse, OSError) as e:
                    logger.warning("container %s: %s", sandbox.container_id, e)
        await self._apply_firewall()
        for sandbox in self.sandboxes.values():
            if sandbox.dns and sandbox.netns_path:
                try:
                    owner = running.get(sandbox.container_id)
                    await self._dns.attach(
                        sandbox.container_id,
                        sandbox.netns_path,
                        _dns_upstreams(owner) if owner is not None else None,
                    )
                except Exception as e:  # a container whose namespace vanished
                    logger.warning("container %s: DNS reattach failed: %s", sandbox.container_id, e)
        self._update_dns()

    async def close(self, *, containers_running: bool) -> None:
        """Stop serving DNS and holding ports; with nothing running, remove the bridges,
        rules and jumps as well (the next start recreates them)."""
        if self._dns is not None:
            await self._dns.close()
            self._dns = None
        self._reservations.close()
        if containers_running:
            return
        for record in self.networks.values():
            if record.driver == "bridge":
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(bridge.remove_bridge, record.bridge_name)
        if self.config.iptables:
            await asyncio.to_thread(_firewall_teardown, ipt.chain_prefix_for(self.config.bridge))
            self._jumps_ensured = False

    # -- state -------------------------------------------------------------------------------

    def _save_network(self, record: nm.NetworkRecord) -> None:
        self.networks[record.id] = record
        write_atomic(
            self._networks_dir / f"{record.id}.json", json.dumps(record.to_json()).encode()
        )

    def _set_pool(self, record: nm.NetworkRecord) -> None:
        """An endpoint's address taken or given back: in memory only. The sandboxes are the
        record of who holds which address; the pools are rebuilt from them at every start
        (`_rebuild_allocations`). Writing the whole network (every address) at each
        endpoint change was a quadratic cost on the event loop at parallel starts."""
        self.networks[record.id] = record

    def _delete_network(self, record: nm.NetworkRecord) -> None:
        self.networks.pop(record.id, None)
        (self._networks_dir / f"{record.id}.json").unlink(missing_ok=True)

    def _save_sandbox(self, sandbox: Sandbox) -> None:
        self.sandboxes[sandbox.container_id] = sandbox
        # Not fsynced: it records kernel objects (namespace, veths, ports) that a machine
        # crash removes too; a daemon crash (kill -9) loses no page-cache write.
        write_atomic(
            self._sandboxes_dir / f"{sandbox.container_id}.json",
            json.dumps(sandbox.to_json()).encode(),
            durable=False,
        )

    def _delete_sandbox(self, cid: str) -> None:
        self.sandboxes.pop(cid, None)
        (self._sandboxes_dir / f"{cid}.json").unlink(missing_ok=True)

    def _records(self) -> list[nm.NetworkRecord]:
        return sorted(self.networks.values(), key=lambda r: (r.created, r.id))

    def _rebuild_allocations(self) -> None:
        """Pools and host ports from the sandboxes: what a crash between an allocation and
        its sandbox write left allocated is free again."""
        used: dict[str, list[str]] = {}
        mappings: list[pt.PortMapping] = []
        for sandbox in self.sandboxes.values():
            mappings.extend(sandbox.ports)
            for iface in sandbox.interfaces:
                if iface.endpoint.ipv4 is not None:
                    used.setdefault(iface.endpoint.network_id, []).append(str(iface.endpoint.ipv4))
        for record in list(self.networks.values()):
            if record.pool is None:
                continue
            pool = record.pool
            keep = set(used.get(record.id, ()))
            keep.add(str(pool.gateway))
            for entry in record.ipam_config:
                keep.update((entry.aux_addresses or {}).values())
            for address in sorted({str(a) for a in pool.allocated} - keep):
                pool = pool.release(address)
            for address in used.get(record.id, ()):
                if pool.is_free(ipaddress.IPv4Address(address)):
                    pool, _ = pool.allocate(address)
            if pool != record.pool:
                self._save_network(record.with_pool(pool))
        self._ports = pt.PortAllocator(
            held=frozenset(
                pt.HeldPort(m.proto, m.host_port, m.host_ip or "0.0.0.0") for m in mappings
            )
        )

    async def _ensure_predefined(self) -> None:
        names = {r.name for r in self.networks.values()}
        created = _now()
        if "host" not in names:
            self._save_network(nm.host_network(new_id(self._rng), created))
        if "none" not in names:
            self._save_network(nm.none_network(new_id(self._rng), created))
        if self.config.bridge == "none":
            return
        current = next((r for r in self.networks.values() if r.is_default_bridge), None)
        if current is not None and self._default_bridge_matches(current):
            return
        in_use = await asyncio.to_thread(bridge.host_routes)
        if current is not None:
            in_use = [
                n for n in in_use if current.pool is None or not n.overlaps(current.pool.subnet)
            ]
        in_use += [
            r.pool.subnet
            for r in self.networks.values()
            if r.pool is not None and not r.is_default_bridge
        ]
        pool, explicit = nm.default_bridge_pool(self.config.bip or None, in_use)
        record = nm.default_bridge_network(
            current.id if current is not None else new_id(self._rng),
            current.created if current is not None else created,
            pool,
            gateway_in_config=explicit,
            bridge_name=self.config.bridge,
        )
        if current is not None and current.bridge_name != record.bridge_name:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(bridge.remove_bridge, current.bridge_name)
        self._save_network(record)

    def _default_bridge_matches(self, record: nm.NetworkRecord) -> bool:
        if record.bridge_name != self.config.bridge or record.pool is None:
            return False
        if not self.config.bip:
            return True
        wanted = ipaddress.ip_interface(self.config.bip)
        return record.pool.subnet == wanted.network and str(record.pool.gateway) == str(wanted.ip)

    def _ensure_bridge(self, record: nm.NetworkRecord) -> None:
        assert record.pool is not None and record.pool.gateway is not None
        gateway = f"{record.pool.gateway}/{record.pool.prefix_len}"
        mtu = int((record.options or {}).get("com.docker.network.driver.mtu") or 1500)
        bridge.ensure_bridge(record.bridge_name, gateway, mtu=mtu)

    def _host_resolv_text(self) -> str:
        try:
            return self._host_resolv_path.read_text()
        except OSError:
            return ""

    # -- firewall and DNS --------------------------------------------------------------------

    def _ruleset(self) -> ipt.RuleSet:
        nets: list[ipt.BridgeNetwork] = []
        bridges: dict[str, str] = {}
        for record in self.networks.values():
            if record.driver != "bridge" or record.pool is None:
                continue
            options = record.options or {}
            bridges[record.id] = record.bridge_name
            nets.append(
                ipt.BridgeNetwork(
                    name=record.name,
                    bridge=record.bridge_name,
                    subnet=str(record.pool.subnet),
                    internal=record.internal,
                    masquerade=options.get("com.docker.network.bridge.enable_ip_masquerade", "true")
                    != "false",
                    icc=options.get("com.docker.network.bridge.enable_icc", "true") != "false",
                )
            )
        published: list[ipt.PublishedPort] = []
        for sandbox in self.sandboxes.values():
            primary = sandbox.interfaces[0] if sandbox.interfaces else None
            if primary is None or primary.endpoint.network_id not in bridges:
                continue
            for mapping in sandbox.ports:
                published.append(
                    ipt.PublishedPort.from_mapping(mapping, bridges[primary.endpoint.network_id])
                )
        return ipt.plan(nets, published, prefix=ipt.chain_prefix_for(self.config.bridge))

    async def _apply_firewall(self) -> None:
        if not self.config.iptables:
            return
        rules = self._ruleset()
        await asyncio.to_thread(_firewall_apply, rules, jumps=not self._jumps_ensured)
        # The builtin chains' jumps are checked once per daemon (as dockerd does at start):
        # each check is an iptables process, and nothing of ours removes them meanwhile.
        self._jumps_ensured = True

    def set_container_name(self, cid: str, name: str) -> None:
        """The engine tells of names (create, rename) so DNS answers the current one."""
        self._names[cid] = name.lstrip("/")
        if cid in self.sandboxes:
            self._update_dns()

    def _update_dns(self) -> None:
        """The DNS table follows the sandboxes: rebuilt once per turn of the event loop,
        however many containers started or stopped in it (30 parallel starts rebuilt it 30
        times, a tenth of the daemon's CPU). A container's own start still sees its name
        served long before its process runs (runc takes tens of milliseconds after)."""
        if self._dns is None or self._dns_update_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._rebuild_dns()
            return
        self._dns_update_pending = True
        loop.call_soon(self._rebuild_dns)

    def _rebuild_dns(self) -> None:
        self._dns_update_pending = False
        if self._dns is None:
            return
        endpoints: list[DnsEndpoint] = []
        # One DnsEndpoint per (endpoint, names) is built once and reused (they are values).
        memo: dict[tuple[int, str, str, str], tuple[nm.EndpointRecord, DnsEndpoint]] = {}
        for sandbox in self.sandboxes.values():
            for iface in sandbox.interfaces:
                ep = iface.endpoint
                network = self.networks.get(ep.network_id)
                if network is None or ep.ipv4 is None or not nm.is_user_defined_mode(network.name):
                    continue
                name = self._names.get(sandbox.container_id, ep.container_name)
                key = (id(ep), name, network.id, network.name)
                known = self._dns_endpoints.get(key)
                if known is not None and known[0] is ep:
                    memo[key] = known
                    endpoints.append(known[1])
                    continue
                link_pairs: list[tuple[str, str]] = []
                for text in ep.links or ():
                    with contextlib.suppress(lk.LinkError):
                        spec = lk.parse_link(text)
                        link_pairs.append((spec.alias, spec.name.lstrip("/")))
                entry = DnsEndpoint(
                    container_id=sandbox.container_id,
                    container_name=name,
                    network_id=network.id,
                    network_name=network.name,
                    ipv4=str(ep.ipv4),
                    aliases=tuple(ep.aliases or ()),
                    links=tuple(link_pairs),
                )
                memo[key] = (ep, entry)
                endpoints.append(entry)
        self._dns_endpoints = memo
        self._dns.update(DnsTable.build(endpoints))

    # -- the /networks API -------------------------------------------------------------------

    def resolve(self, term: str, *, style: nm.ResolveStyle = "daemon") -> nm.NetworkRecord:
        return nm.resolve_network(self._records(), term, style=style)

    def _endpoints_of(self, network_id: str) -> list[nm.EndpointRecord]:
        return [
            iface.endpoint
            for sandbox in self.sandboxes.values()
            for iface in sandbox.interfaces
            if iface.endpoint.network_id == network_id
        ]

    def _container_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sandbox in self.sandboxes.values():
            for iface in sandbox.interfaces:
                counts[iface.endpoint.network_id] = counts.get(iface.endpoint.network_id, 0) + 1
        return counts

    def inspect_network(self, ref: str, *, verbose: bool = False) -> dict[str, Any]:
        record = self.resolve(ref, style="inspect")
        return nm.inspect_json(record, self._endpoints_of(record.id), verbose=verbose)

    def list_networks(self, filters: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
        args = FilterArgs({k: frozenset(v) for k, v in filters.items()})
        chosen = nm.select_networks(
            self._records(), args, container_counts=self._container_counts()
        )
        return nm.list_json(chosen)

    async def create_network(
        self, body: Mapping[str, Any], *, api_version: str = "1.44"
    ) -> tuple[str, str]:
        async with self._lock:
            request = nm.validate_create(body, self._records(), api_version=api_version)
            in_use = await asyncio.to_thread(bridge.host_routes)
            record = nm.create_network(
                request,
                self._records(),
                rng=self._rng,
                created=_now(),
                in_use=in_use,
                after=self._last_subnet,
            )
            if record.pool is not None and not record.has_user_subnet:
                self._last_subnet = record.pool.subnet
            self._save_network(record)
            try:
                if record.driver == "bridge":
                    await asyncio.to_thread(self._ensure_bridge, record)
                await self._apply_firewall()
            except BaseException:
                self._delete_network(record)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(bridge.remove_bridge, record.bridge_name)
                raise
        self._emit("create", record.id, {"name": record.name, "type": record.driver})
        return record.id, request.warning

    async def remove_network(self, ref: str) -> None:
        async with self._lock:
            record = self.resolve(ref, style="unique")
            nm.check_removable(record, len(self._endpoints_of(record.id)))
            await self._remove_network(record)

    async def _remove_network(self, record: nm.NetworkRecord) -> None:
        self._delete_network(record)
        if record.driver == "bridge":
            await asyncio.to_thread(bridge.remove_bridge, record.bridge_name)
        await self._apply_firewall()
        self._emit("destroy", record.id, {"name": record.name, "type": record.driver})

    async def prune_networks(self, filters: Mapping[str, Sequence[str]]) -> list[str]:
        args = FilterArgs({k: frozenset(v) for k, v in filters.items()})
        async with self._lock:
            chosen = nm.select_prunable(
                self._records(),
                args,
                container_counts=self._container_counts(),
                now_ns=time.time_ns(),
            )
            for record in chosen:
                await self._remove_network(record)
        return [r.name for r in chosen]

    # -- containers: create-time checks ------------------------------------------------------

    def plan_endpoints(
        self,
        requested: Mapping[str, Any],
        config: Mapping[str, Any],
        host_config: Mapping[str, Any],
        networking_config: Any,
        *,
        api_version: str = "1.44",
    ) -> dict[str, dict[str, Any]]:
        """The create body's network settings, checked as dockerd's create does; the value
        the container record keeps (network name -> EndpointRequest JSON). `requested` is
        the body as the client sent it (the checks are on what the user asked for, not on
        the defaults the engine filled in, such as the hostname); `config` the filled one."""
        nm.validate_net_mode(requested, host_config)
        mode = self._mode(host_config)
        lk.validate_links(
            str(host_config.get("NetworkMode") or "default"), host_config.get("Links")
        )
        for entry in host_config.get("ExtraHosts") or ():
            etc.validate_extra_host(str(entry))
        for server in host_config.get("Dns") or ():
            etc.validate_dns(str(server))
        requests = {
            # The CLI names the default network "default" (moby: NetworkMode.NetworkName).
            ("bridge" if name == "default" else name): request
            for name, request in nm.validate_networking_config(
                networking_config, api_version=api_version
            ).items()
        }
        for name, request in requests.items():
            if not nm.is_user_defined_mode(name) and (request.ipv4_address or request.ipv6_address):
                raise NetworkError(400, nm.ERR_UNSUPPORTED_NETWORK_AND_IP)
            if not nm.is_user_defined_mode(name) and request.aliases:
                raise NetworkError(400, nm.ERR_UNSUPPORTED_NETWORK_AND_ALIAS)
        # pt.port_requests validates PortBindings with dockerd's messages.
        pt.port_requests(
            config.get("ExposedPorts"),
            host_config.get("PortBindings"),
            publish_all=bool(host_config.get("PublishAllPorts")),
        )
        out: dict[str, dict[str, Any]] = {}
        if mode.startswith("container:"):
            return out
        primary = requests.pop(mode, None)
        out[mode] = (primary or nm.EndpointRequest()).to_json()
        for name, request in requests.items():
            out[name] = request.to_json()
        return out

    # -- containers: start and stop ----------------------------------------------------------

    async def attach_container(
        self,
        record: ContainerRecord,
        *,
        lookup: Callable[[str], ContainerRecord | None],
        pid_of: Callable[[str], int],
    ) -> StartNetwork:
        """Everything the container's network needs before runc starts it. On failure
        nothing it made stays."""
        cid = record.id
        self._names[cid] = record.name.lstrip("/")
        async with self._container_lock(cid):
            if cid in self.sandboxes:  # a crashed previous start, or a restart race
                await self._teardown_sandbox(self.sandboxes[cid])
            mode = self._mode(record.host_config)
            files = self._files_dir(cid)
            files.mkdir(parents=True, exist_ok=True)
            if mode.startswith("container:"):
                return self._join_container(record, mode.partition(":")[2], lookup, pid_of)
            if mode in ("host", "none"):
                kind: etc.NetworkKind = "host" if mode == "host" else "none"
                await asyncio.to_thread(self._write_files, record, kind, [], [], None)
                return StartNetwork("", self._file_mounts(record), ())
            return await self._attach_bridged(record, lookup)

    def _join_container(
        self,
        record: ContainerRecord,
        ref: str,
        lookup: Callable[[str], ContainerRecord | None],
        pid_of: Callable[[str], int],
    ) -> StartNetwork:
        target = lookup(ref)
        if target is None:
            raise NotFound(f"No such container: {ref}")
        if not target.state.running:
            raise Conflict(f"cannot join network of a non running container: {ref}")
        sandbox = self.sandboxes.get(target.id)
        netns = sandbox.netns_path if sandbox is not None and sandbox.netns_path else ""
        target_mode = network_mode_name(target.host_config)
        if not netns and target_mode != "host":
            netns = f"/proc/{pid_of(target.id)}/ns/net"
        src = self._files_dir(target.id)
        mounts = tuple(
            Mount(dest, "bind", str(src / name), _file_options(record))
            for dest, name in (
                ("/etc/resolv.conf", RESOLV_FILE),
                ("/etc/hostname", HOSTNAME_FILE),
                ("/etc/hosts", HOSTS_FILE),
            )
            if (src / name).exists()
        )
        # Another container's namespace, or the host's for a container on the host network.
        return StartNetwork(
            netns if target_mode != "host" else "",
            mounts,
            (),
            hostname=str(target.config.get("Hostname") or target.id[:12]),
            domainname=str(target.config.get("Domainname") or ""),
        )

    async def _attach_bridged(
        self, record: ContainerRecord, lookup: Callable[[str], ContainerRecord | None]
    ) -> StartNetwork:
        """Bookkeeping under the shared lock (addresses, ports, ruleset, DNS table), the
        kernel work (namespace, veths, DNS rules, /etc files) outside it."""
        cid = record.id
        requests = _endpoint_requests(record)
        netns_path = self._netns_dir / cid
        sandbox = Sandbox(cid, str(netns_path))
        hostname = str(record.config.get("Hostname") or cid[:12])
        plans: list[bridge.EndpointPlan] = []
        async with self._lock:
            networks: list[tuple[nm.NetworkRecord, nm.EndpointRequest]] = []
            for name, request in requests.items():
                try:
                    networks.append((self.resolve(name), request))
                except NetworkError as e:
                    if e.status == 404:
                        raise NotFound(f"network {name} not found") from None
                    raise
            self._save_sandbox(sandbox)  # before the first kernel change: see the invariants
            try:
                for network, request in networks:
                    sandbox, plan = self._allocate_interface(
                        sandbox, network, request, record, hostname
                    )
                    plans.append(plan)
            except BaseException:
                self._forget_sandbox(self.sandboxes.get(cid, sandbox))
                raise
        try:
            await asyncio.to_thread(_make_sandbox, netns_path, plans)
            primary = sandbox.interfaces[0] if sandbox.interfaces else None
            env: list[str] = []
            link_hosts: list[etc.HostsRecord] = []
            async with self._lock:
                primary_network = (
                    self.networks.get(primary.endpoint.network_id) if primary else None
                )
                if primary_network is not None and primary_network.is_default_bridge:
                    env, link_hosts = self._legacy_links(record, lookup)
                if primary is not None and primary.endpoint.ipv4 is not None:
                    sandbox = await self._publish(sandbox, record, str(primary.endpoint.ipv4))
                uses_dns = any(
                    nm.is_user_defined_mode(self.networks[i.endpoint.network_id].name)
                    for i in sandbox.interfaces
                    if i.endpoint.network_id in self.networks
                )
                sandbox = replace(sandbox, dns=uses_dns)
                self._save_sandbox(sandbox)
                if sandbox.ports:  # the ruleset changes only with published ports
                    await self._apply_firewall()
                self._update_dns()
                gateway = ""
                bridge_net = next((r for r in self.networks.values() if r.is_default_bridge), None)
                if bridge_net is not None and bridge_net.pool is not None:
                    gateway = str(bridge_net.pool.gateway or "")
            if uses_dns and self._dns is not None:
                # The namespace was made just now: no rules of ours to look for first.
                await self._dns.attach(
                    cid, str(netns_path), _dns_upstreams(record), fresh_netns=True
                )
            kind: etc.NetworkKind = "user" if uses_dns else "bridge"
            ips = [str(i.endpoint.ipv4) for i in sandbox.interfaces if i.endpoint.ipv4]
            await asyncio.to_thread(self._write_files, record, kind, ips, link_hosts, gateway)
        except BaseException:
            await self._teardown_sandbox(self.sandboxes.get(cid, sandbox))
            raise
        for network, _ in networks:
            self._emit("connect", network.id, {"name": network.name, "type": network.driver,
                                                "container": cid})  # fmt: skip
        return StartNetwork(str(netns_path), self._file_mounts(record), tuple(env))

    def _allocate_interface(
        self,
        sandbox: Sandbox,
        network: nm.NetworkRecord,
        request: nm.EndpointRequest,
        record: ContainerRecord,
        hostname: str,
    ) -> tuple[Sandbox, bridge.EndpointPlan]:
        """The endpoint's address and names, recorded (network and sandbox), and the plan of
        the veth that will carry it. Under the shared lock; no kernel change."""
        updated, endpoint = nm.new_endpoint(
            network,
            request,
            container_id=record.id,
            container_name=record.name,
            hostname=hostname,
            rng=self._rng,
        )
        self._set_pool(updated)
        # The first interface with a gateway carries the default route (moby: the gateway
        # endpoint); internal networks have none (the bridge driver's Join sets no route).
        routed = any(i.endpoint.gateway and not self._internal(i) for i in sandbox.interfaces)
        gateway = "" if network.internal or routed else endpoint.gateway
        iface = Interface(endpoint, sandbox.next_ifname())
        sandbox = replace(sandbox, interfaces=(*sandbox.interfaces, iface))
        self._save_sandbox(sandbox)
        assert endpoint.ipv4 is not None
        plan = bridge.EndpointPlan(
            host_veth=endpoint.host_veth,
            bridge=network.bridge_name,
            ifname=iface.ifname,
            mac=endpoint.mac,
            address_cidr=endpoint.ipv4_cidr,
            gateway=gateway,
            mtu=int((network.options or {}).get("com.docker.network.driver.mtu") or 1500),
        )
        return sandbox, plan

    async def _add_interface(
        self,
        sandbox: Sandbox,
        network: nm.NetworkRecord,
        request: nm.EndpointRequest,
        record: ContainerRecord,
        hostname: str,
    ) -> Sandbox:
        """One more interface in a running container's namespace (`network connect`)."""
        if sandbox.interface(network.id) is not None:
            return sandbox
        sandbox, plan = self._allocate_interface(sandbox, network, request, record, hostname)
        await asyncio.to_thread(bridge.add_endpoint, Path(sandbox.netns_path), plan)
        return sandbox

    async def _publish(self, sandbox: Sandbox, record: ContainerRecord, ip: str) -> Sandbox:
        requests = pt.port_requests(
            record.config.get("ExposedPorts"),
            record.host_config.get("PortBindings"),
            publish_all=bool(record.host_config.get("PublishAllPorts")),
        )
        if not requests:
            return sandbox
        busy: set[tuple[str, int]] = set()
        span = local_port_range()
        for _ in range(EPHEMERAL_RETRIES):
            allocator, mappings = self._ports.allocate(
                requests, container_ip=ip, ephemeral_range=span, host_busy=busy
            )
            taken = self._reserve_all(requests, mappings)
            if taken is not None:
                busy.add(taken)  # a host process holds a port we picked: pick again
                continue
            self._ports = allocator
            sandbox = replace(sandbox, ports=mappings)
            self._save_sandbox(sandbox)
            return sandbox
        raise pt.AllPortsAllocated("no free host port for the published ports")

    def _reserve_all(
        self, requests: Sequence[pt.PortRequest], mappings: Sequence[pt.PortMapping]
    ) -> tuple[str, int] | None:
        """Reserve every mapping's host port, or none: None when all are held; the (proto,
        port) a host process holds when that port was our pick (ephemeral or from a range);
        PortInUse when the user named exactly that port."""
        held: list[Reservation] = []
        try:
            # allocate answers one mapping per request, in order
            for request, mapping in zip(requests, mappings, strict=True):
                key = _reservation(mapping)
                try:
                    self._reservations.reserve(key)
                except PortInUse:
                    chosen = request.host_port_start == 0 or (
                        request.host_port_end > request.host_port_start
                    )
                    if not chosen:
                        raise
                    for earlier in held:
                        self._reservations.release(earlier)
                    return (mapping.proto, mapping.host_port)
                held.append(key)
        except BaseException:
            for earlier in held:
                self._reservations.release(earlier)
            raise
        return None

    def _mode(self, host_config: Mapping[str, Any]) -> str:
        """The network a container's mode names; with `--bridge none` the default mode means
        no network at all, as dockerd runs such containers with only `lo`."""
        mode = network_mode_name(host_config)
        default = str(host_config.get("NetworkMode") or "default") == "default"
        return "none" if default and self.config.bridge == "none" else mode

    def _internal(self, iface: Interface) -> bool:
        network = self.networks.get(iface.endpoint.network_id)
        return network is not None and network.internal

    def _legacy_links(
        self, record: ContainerRecord, lookup: Callable[[str], ContainerRecord | None]
    ) -> tuple[list[str], list[etc.HostsRecord]]:
        env: list[str] = []
        hosts: list[etc.HostsRecord] = []
        parent = record.name
        for spec in lk.parse_links(record.host_config.get("Links")):
            target = lookup(spec.name)
            if target is None:
                raise NotFound(lk.not_found_message(spec.name))
            info = self._link_target(target)
            lk.validate_start(parent, spec, info)
            env.extend(lk.link_env(parent, spec, info))
            hosts.extend(lk.hosts_records(spec, info))
        return env, hosts

    def _link_target(self, target: ContainerRecord) -> lk.LinkTarget:
        sandbox = self.sandboxes.get(target.id)
        ip = ""
        on_bridge = False
        if sandbox is not None:
            for iface in sandbox.interfaces:
                network = self.networks.get(iface.endpoint.network_id)
                if network is not None and network.is_default_bridge:
                    ip = str(iface.endpoint.ipv4 or "")
                    on_bridge = True
        return lk.LinkTarget(
            name=target.name,
            hostname=str(target.config.get("Hostname") or target.id[:12]),
            ip=ip,
            env=tuple(str(e) for e in target.config.get("Env") or ()),
            exposed=pt.parse_exposed_ports(target.config.get("ExposedPorts")),
            running=target.state.running,
            network_mode=str(target.host_config.get("NetworkMode") or "default"),
            on_default_bridge=on_bridge or network_mode_name(target.host_config) == "bridge",
        )

    def _write_files(
        self,
        record: ContainerRecord,
        kind: etc.NetworkKind,
        ips: Sequence[str],
        link_hosts: Sequence[etc.HostsRecord],
        gateway: str | None,
    ) -> None:
        hc = record.host_config
        files = self._files_dir(record.id)
        hostname = str(record.config.get("Hostname") or record.id[:12])
        if kind == "host":
            hostname = str(record.config.get("Hostname") or self._host_name)
        host_hosts = ""
        if kind == "host":
            with contextlib.suppress(OSError):
                host_hosts = self._host_hosts_path.read_text()
        extra = etc.extra_host_records(
            [str(e) for e in hc.get("ExtraHosts") or ()], host_gateway_ip=gateway or ""
        )
        hosts = etc.hosts_file(
            kind=kind,
            hostname=hostname,
            domainname=str(record.config.get("Domainname") or ""),
            container_ips=list(ips),
            extra=extra,
            links=list(link_hosts),
            host_hosts_text=host_hosts,
        )
        resolv = etc.resolv_conf(
            self._host_resolv_text(),
            kind=kind,
            dns=[str(s) for s in hc.get("Dns") or ()],
            dns_search=[str(s) for s in hc.get("DnsSearch") or ()],
            dns_options=[str(s) for s in hc.get("DnsOptions") or ()],
        )
        # 0644: the container's processes read them whatever user they run as.
        # Regenerated at every start: nothing to keep across a machine crash (no fsync).
        write_atomic(files / HOSTS_FILE, hosts.encode(), 0o644, durable=False)
        write_atomic(files / RESOLV_FILE, resolv.text.encode(), 0o644, durable=False)
        write_atomic(
            files / HOSTNAME_FILE, etc.hostname_file(hostname).encode(), 0o644, durable=False
        )

    def _file_mounts(self, record: ContainerRecord) -> tuple[Mount, ...]:
        files = self._files_dir(record.id)
        options = _file_options(record)
        return tuple(
            Mount(dest, "bind", str(files / name), options)
            for dest, name in (
                ("/etc/resolv.conf", RESOLV_FILE),
                ("/etc/hostname", HOSTNAME_FILE),
                ("/etc/hosts", HOSTS_FILE),
            )
        )

    async def detach_container(self, cid: str) -> None:
        """After the container's exit: its namespace, veths, addresses and ports go."""
        async with self._container_lock(cid):
            sandbox = self.sandboxes.get(cid)
            if sandbox is not None:
                await self._teardown_sandbox(sandbox)
        for iface in sandbox.interfaces if sandbox is not None else ():
            network = self.networks.get(iface.endpoint.network_id)
            if network is not None:
                self._emit("disconnect", network.id, {"name": network.name,
                           "type": network.driver, "container": cid})  # fmt: skip

    async def _teardown_sandbox(self, sandbox: Sandbox) -> None:
        """The kernel objects first, outside the shared lock (the namespace takes its DNS
        rules with it), then the bookkeeping under it. Never called with the lock held."""
        cid = sandbox.container_id
        if sandbox.dns and self._dns is not None:
            with contextlib.suppress(Exception):
                await self._dns.detach(cid, netns_going=bool(sandbox.netns_path))
        for iface in sandbox.interfaces:
            if iface.endpoint.host_veth:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(bridge.remove_endpoint, iface.endpoint.host_veth)
        if sandbox.netns_path:
            await asyncio.to_thread(bridge.delete_sandbox, Path(sandbox.netns_path))
        async with self._lock:
            self._forget_sandbox(sandbox)
            if sandbox.ports:
                await self._apply_firewall()
            if sandbox.dns:
                self._update_dns()

    def _forget_sandbox(self, sandbox: Sandbox) -> None:
        """Release what the sandbox holds (addresses, ports) and drop its record. Under the
        shared lock, after its kernel objects are gone."""
        for iface in sandbox.interfaces:
            network = self.networks.get(iface.endpoint.network_id)
            if network is not None:
                self._set_pool(nm.release_endpoint(network, iface.endpoint))
        for mapping in sandbox.ports:
            self._reservations.release(_reservation(mapping))
        self._ports = self._ports.release(sandbox.ports)
        self._delete_sandbox(sandbox.container_id)

    def _container_lock(self, cid: str) -> asyncio.Lock:
        return self._container_locks.setdefault(cid, asyncio.Lock())

    def forget_container(self, cid: str) -> None:
        """The container is removed: drop what the manager keeps per container id. The
        engine calls it under its own lock of that container, so no attach or detach of it
        runs or waits (a dropped lock with a waiter would let two of them interleave)."""
        self._container_locks.pop(cid, None)
        self._names.pop(cid, None)

    # -- containers: connect and disconnect --------------------------------------------------

    async def connect(
        self, ref: str, record: ContainerRecord, endpoint_config: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """`docker network connect`: the container's new endpoints_config; a running
        container gets the interface at once."""
        async with self._container_lock(record.id), self._lock:
            network = self.resolve(ref)
            request = nm.EndpointRequest.from_wire(network.name, endpoint_config)
            connected = [
                r
                for name in record.endpoints_config
                for r in self._records()
                if r.name == name or r.id == name
            ]
            nm.check_connect(
                network,
                network_mode=str(record.host_config.get("NetworkMode") or "default"),
                connected=connected,
                container_name=record.name,
                endpoint_names=[e.container_name for e in self._endpoints_of(network.id)],
            )
            if network.id in {r.id for r in connected}:
                return dict(record.endpoints_config)  # type: ignore[arg-type]
            nm.check_endpoint_request(network, request)
            configs = {k: dict(v) for k, v in record.endpoints_config.items()}
            configs[network.name] = request.to_json()
            sandbox = self.sandboxes.get(record.id)
            if record.state.running and sandbox is not None and sandbox.netns_path:
                hostname = str(record.config.get("Hostname") or record.id[:12])
                sandbox = await self._add_interface(sandbox, network, request, record, hostname)
                if nm.is_user_defined_mode(network.name) and not sandbox.dns:
                    sandbox = replace(sandbox, dns=True)
                    self._save_sandbox(sandbox)
                    if self._dns is not None:
                        await self._dns.attach(
                            record.id, sandbox.netns_path, _dns_upstreams(record)
                        )
                self._update_dns()
        self._emit("connect", network.id, {"name": network.name, "type": network.driver,
                                            "container": record.id})  # fmt: skip
        return configs

    async def disconnect(
        self, ref: str, record: ContainerRecord, *, force: bool
    ) -> dict[str, dict[str, Any]]:
        async with self._container_lock(record.id), self._lock:
            try:
                network = self.resolve(ref)
            except NetworkError:
                if not force:
                    raise
                configs = {k: dict(v) for k, v in record.endpoints_config.items() if k != ref}
                return configs
            names = [
                name
                for name in record.endpoints_config
                if name == network.name or name == network.id
            ]
            nm.check_disconnect(
                network,
                network_mode=str(record.host_config.get("NetworkMode") or "default"),
                container_id=record.id,
                connected_names=[network.name] if names else [],
                running=record.state.running,
            )
            configs = {k: dict(v) for k, v in record.endpoints_config.items() if k not in names}
            sandbox = self.sandboxes.get(record.id)
            iface = sandbox.interface(network.id) if sandbox is not None else None
            if sandbox is not None and iface is not None:
                if iface.endpoint.host_veth:
                    await asyncio.to_thread(bridge.remove_endpoint, iface.endpoint.host_veth)
                self._set_pool(nm.release_endpoint(network, iface.endpoint))
                sandbox = replace(
                    sandbox, interfaces=tuple(i for i in sandbox.interfaces if i is not iface)
                )
                self._save_sandbox(sandbox)
                self._update_dns()
        self._emit("disconnect", network.id, {"name": network.name, "type": network.driver,
                                               "container": record.id})  # fmt: skip
        return configs

    # -- containers: what inspect and ps show -----------------------------------------------

    def _attachments(self, record: ContainerRecord) -> list[nm.Attachment]:
        sandbox = self.sandboxes.get(record.id)
        out: list[nm.Attachment] = []
        for name, request_json in record.endpoints_config.items():
            request = nm.EndpointRequest.from_json(request_json)
            endpoint = None
            network_id = ""
            try:
                network = self.resolve(name)
                network_id = network.id
                shown = network.name
            except NetworkError:
                shown = name
            if sandbox is not None and network_id:
                iface = sandbox.interface(network_id)
                endpoint = iface.endpoint if iface is not None else None
            out.append(nm.Attachment(shown, request, endpoint, network_id))
        return out

    def network_settings(self, record: ContainerRecord) -> dict[str, Any]:
        sandbox = self.sandboxes.get(record.id)
        exposed = pt.parse_exposed_ports(record.config.get("ExposedPorts"))
        ports = pt.inspect_ports(exposed, sandbox.ports if sandbox is not None else ())
        return nm.container_network_settings(
            self._attachments(record),
            ports=ports if sandbox is not None else {},
            sandbox_id=record.id if sandbox is not None else "",
            sandbox_key=sandbox.netns_path if sandbox is not None else "",
        )

    def summary(self, record: ContainerRecord) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`docker ps`'s Ports and NetworkSettings for one container."""
        sandbox = self.sandboxes.get(record.id)
        exposed = pt.parse_exposed_ports(record.config.get("ExposedPorts"))
        ports = pt.ps_ports(exposed, sandbox.ports if sandbox is not None else ())
        return ports, nm.summary_networks(self._attachments(record))

    def file_paths(self, record: ContainerRecord) -> tuple[str, str, str]:
        """ResolvConfPath, HostnamePath, HostsPath as inspect shows them."""
        files = self._files_dir(record.id)
        return (str(files / RESOLV_FILE), str(files / HOSTNAME_FILE), str(files / HOSTS_FILE))


def _dns_upstreams(record: ContainerRecord) -> list[UpstreamServer] | None:
    """The container's `--dns` servers as its embedded DNS's upstreams (Docker's resolver
    forwards to them; queried from the daemon's namespace, so a loopback address means the
    host's, not the container's); None: the host's resolvers."""
    servers = [str(s) for s in record.host_config.get("Dns") or ()]
    return [UpstreamServer(s) for s in servers] or None


def _reservation(mapping: pt.PortMapping) -> Reservation:
    return Reservation(mapping.proto, mapping.host_ip or "0.0.0.0", mapping.host_port)


def _file_options(record: ContainerRecord) -> tuple[str, ...]:
    # moby container.NetworkMounts: rbind, rprivate; read-only with a read-only rootfs.
    options: tuple[str, ...] = ("rbind", "rprivate")
    if record.host_config.get("ReadonlyRootfs"):
        options = (*options, "ro")
    return options


def _endpoint_requests(record: ContainerRecord) -> dict[str, nm.EndpointRequest]:
    configs = record.endpoints_config
    if not configs:
        return {network_mode_name(record.host_config): nm.EndpointRequest()}
    return {name: nm.EndpointRequest.from_json(value) for name, value in configs.items()}


def _make_sandbox(netns_path: Path, plans: Sequence[bridge.EndpointPlan]) -> None:
    """The namespace and its veths (one thread: a start's kernel work in one hop)."""
    bridge.create_sandbox(netns_path)
    for plan in plans:
        bridge.add_endpoint(netns_path, plan)


def _firewall_apply(rules: ipt.RuleSet, *, jumps: bool) -> None:
    for sysctl in rules.sysctls():
        try:
            netns.set_sysctl(None, sysctl.key, sysctl.value)
        except OSError as e:
            logger.warning("sysctl %s=%s: %s", sysctl.key, sysctl.value, e)
    firewall.restore(rules.restore_text())
    for jump in rules.jumps() if jumps else ():
        firewall.ensure_jump(jump.table, jump.chain, jump.args, first=jump.first)


def _firewall_teardown(prefix: str) -> None:
    plan = ipt.teardown(prefix)
    for jump in plan.jumps:
        firewall.remove_rule(jump.table, jump.chain, jump.args)
    # Per table, every chain flushed before any is deleted: they jump to each other.
    for table in dict.fromkeys(table for table, _ in plan.chains):
        firewall.delete_chains(table, [chain for t, chain in plan.chains if t == table])
