"""`dockyard store serve`: run a store member, with etcd's flags."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dockyard.store.server import ServeConfig

from dockyard.store.defaults import DEFAULT_CLIENT_URLS, DEFAULT_PEER_URL, default_data_dir


def _urls(value: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in value.split(",") if u.strip())


def register(group: click.Group) -> None:
    @group.command()
    @click.option("--name", default="default", show_default=True, help="Human-readable name.")
    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Data directory [default: /var/lib/dockyard/store as root, else "
        "~/.local/share/dockyard/store].",
    )
    @click.option(
        "--listen-client-urls",
        default=",".join(DEFAULT_CLIENT_URLS),
        show_default=True,
        help="URLs to listen on for client traffic.",
    )
    @click.option(
        "--advertise-client-urls",
        default=None,
        help="Client URLs to advertise (default: the listen URLs).",
    )
    @click.option(
        "--listen-peer-urls",
        default=DEFAULT_PEER_URL,
        show_default=True,
        help="URLs to listen on for peer traffic (used by the clustered store).",
    )
    @click.option(
        "--initial-advertise-peer-urls",
        default=None,
        help="Peer URLs to advertise (default: the listen peer URLs).",
    )
    @click.option(
        "--initial-cluster", default=None, help="name=peerURL,... (one member: this one)."
    )
    @click.option(
        "--initial-cluster-state",
        type=click.Choice(["new", "existing"]),
        default="new",
        show_default=True,
    )
    @click.option("--initial-cluster-token", default="etcd-cluster", show_default=True)
    @click.option("--cert-file", default=None, help="Server TLS certificate.")
    @click.option("--key-file", default=None, help="Server TLS key.")
    @click.option(
        "--client-cert-auth",
        is_flag=True,
        default=False,
        help="Require client certificates signed by --trusted-ca-file.",
    )
    @click.option(
        "--trusted-ca-file",
        default=None,
        help="CA for client certificates (as etcd: given alone, it already requires them).",
    )
    @click.option("--peer-cert-file", default=None, help="Peer TLS certificate (https peers).")
    @click.option("--peer-key-file", default=None, help="Peer TLS key.")
    @click.option(
        "--peer-client-cert-auth",
        is_flag=True,
        default=False,
        help="Require peer certificates signed by --peer-trusted-ca-file.",
    )
    @click.option(
        "--peer-trusted-ca-file",
        default=None,
        help="CA for peer certificates (given alone, it already requires them, as etcd).",
    )
    @click.option(
        "--snapshot-count",
        type=int,
        default=100_000,
        show_default=True,
        help="Committed entries between snapshots.",
    )
    @click.option(
        "--heartbeat-interval",
        type=click.IntRange(1),
        default=100,
        show_default=True,
        help="Time (in milliseconds) of a heartbeat interval (clustered store).",
    )
    @click.option(
        "--election-timeout",
        type=click.IntRange(1),
        default=1000,
        show_default=True,
        help="Time (in milliseconds) for an election to timeout (clustered store).",
    )
    @click.option(
        "--enable-v2",
        default="true",
        hidden=True,
        help="Accepted for etcd compatibility; v2 is always on.",
    )
    @click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warn", "error"]),
        default="info",
        show_default=True,
    )
    def serve_command(
        name: str,
        data_dir: Path | None,
        listen_client_urls: str,
        advertise_client_urls: str | None,
        listen_peer_urls: str,
        initial_advertise_peer_urls: str | None,
        initial_cluster: str | None,
        initial_cluster_state: str,
        initial_cluster_token: str,
        cert_file: str | None,
        key_file: str | None,
        client_cert_auth: bool,
        trusted_ca_file: str | None,
        peer_cert_file: str | None,
        peer_key_file: str | None,
        peer_client_cert_auth: bool,
        peer_trusted_ca_file: str | None,
        snapshot_count: int,
        heartbeat_interval: int,
        election_timeout: int,
        enable_v2: str,
        log_level: str,
    ) -> None:
        """Serve the etcd v2 keys API: one member, or a Raft-replicated cluster when
        --initial-cluster names several (writes are fsynced before they are acknowledged)."""
        logging.basicConfig(
            level=log_level.upper().replace("WARN", "WARNING"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        peer_urls = _urls(initial_advertise_peer_urls or listen_peer_urls)
        cluster: dict[str, tuple[str, ...]] = {}
        if initial_cluster:
            # etcd's form: name=url,name=url; a name given twice has several peer URLs.
            for item in _urls(initial_cluster):
                member_name, sep, url = item.partition("=")
                if not sep or not url:
                    raise click.ClickException(f"--initial-cluster: {item!r} is not name=URL")
                cluster[member_name] = (*cluster.get(member_name, ()), url)
            if name not in cluster:
                raise click.ClickException(
                    f"couldn't find local name {name!r} in the initial cluster configuration"
                )
            if len(cluster) > 1:
                if set(cluster[name]) != set(peer_urls):
                    raise click.ClickException(
                        f"--initial-cluster has {name}={','.join(cluster[name])} but "
                        f"--initial-advertise-peer-urls is {','.join(peer_urls)}"
                    )
                if election_timeout < 2 * heartbeat_interval:
                    raise click.ClickException(
                        "--election-timeout must be at least twice --heartbeat-interval"
                    )
        # The server's modules load here, not at import, so other commands start fast.
        from dockyard.store.node import StoreDataError
        from dockyard.store.server import ConfigError, ServeConfig
        from dockyard.store.wal import WalError
        from dockyard.tls.errors import TlsError

        client_urls = _urls(listen_client_urls)
        config = ServeConfig(
            name=name,
            data_dir=data_dir or default_data_dir(),
            listen_client_urls=client_urls,
            advertise_client_urls=_urls(advertise_client_urls)
            if advertise_client_urls
            else client_urls,
            listen_peer_urls=_urls(listen_peer_urls),
            initial_advertise_peer_urls=peer_urls,
            initial_cluster_token=initial_cluster_token,
            cert_file=cert_file,
            key_file=key_file,
            client_cert_auth=client_cert_auth,
            trusted_ca_file=trusted_ca_file,
            snapshot_count=snapshot_count,
            initial_cluster=tuple(cluster.items()) if len(cluster) > 1 else (),
            heartbeat_interval_ms=heartbeat_interval,
            election_timeout_ms=election_timeout,
            initial_cluster_state=initial_cluster_state,
            peer_cert_file=peer_cert_file,
            peer_key_file=peer_key_file,
            peer_trusted_ca_file=peer_trusted_ca_file,
            peer_client_cert_auth=peer_client_cert_auth,
        )
        try:
            run(config)
        except (ConfigError, TlsError, OSError, WalError, StoreDataError) as error:
            raise click.ClickException(str(error)) from None

    serve_command.name = "serve"


def run(config: ServeConfig) -> None:
    from dockyard.store.server import serve

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(config))
    sys.stdout.flush()
