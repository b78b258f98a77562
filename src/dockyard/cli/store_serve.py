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
    @click.option(
        "--snapshot-count",
        type=int,
        default=100_000,
        show_default=True,
        help="Committed entries between snapshots.",
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
        snapshot_count: int,
        enable_v2: str,
        log_level: str,
    ) -> None:
        """Serve the etcd v2 keys API (single member; writes are fsynced before they are
        acknowledged)."""
        logging.basicConfig(
            level=log_level.upper().replace("WARN", "WARNING"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        peer_urls = _urls(initial_advertise_peer_urls or listen_peer_urls)
        if initial_cluster:
            members = dict(item.split("=", 1) for item in _urls(initial_cluster) if "=" in item)
            if len(members) > 1:
                raise click.ClickException(
                    "this store serves one member; --initial-cluster with several members "
                    "needs the replicated store"
                )
            if name not in members:
                raise click.ClickException(
                    f"couldn't find local name {name!r} in the initial cluster configuration"
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
