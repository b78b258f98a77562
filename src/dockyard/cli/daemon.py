"""`dockyard daemon` (dockerd's flags) and `dockyard image bootstrap busybox`.

Thin: parse, call the engine, print. The engine's modules are imported inside the commands
so that other `dockyard` commands start fast.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import click

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_DATA_ROOT = Path("/var/lib/dockyard/engine")
DEFAULT_EXEC_ROOT = Path("/run/dockyard")


def _default_cert_dir() -> Path:
    # dockerd's defaults: $DOCKER_CERT_PATH, else ~/.docker.
    return Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")


def register(group: click.Group) -> None:
    @group.command("daemon")
    @click.option(
        "-H",
        "--host",
        "hosts",
        multiple=True,
        help=f"Daemon socket(s) to listen on, repeatable [default: {DEFAULT_HOST}].",
    )
    @click.option(
        "--data-root",
        type=click.Path(path_type=Path),
        default=DEFAULT_DATA_ROOT,
        show_default=True,
        help="Root directory of persistent state (images, containers).",
    )
    @click.option(
        "--exec-root",
        type=click.Path(path_type=Path),
        default=DEFAULT_EXEC_ROOT,
        show_default=True,
        help="Root directory of execution state (runc state, shim state).",
    )
    @click.option("--label", "labels", multiple=True, help="key=value daemon label, repeatable.")
    @click.option(
        "--tls",
        "use_tls",
        is_flag=True,
        default=False,
        help="Serve TLS on tcp:// listeners (implied by --tlsverify).",
    )
    @click.option(
        "--tlsverify",
        is_flag=True,
        default=False,
        help="Serve TLS on tcp:// listeners and require client certificates signed by --tlscacert.",
    )
    @click.option(
        "--tlscacert",
        type=click.Path(path_type=Path),
        default=None,
        help="Trust client certificates signed by this CA [default: ~/.docker/ca.pem].",
    )
    @click.option(
        "--tlscert",
        type=click.Path(path_type=Path),
        default=None,
        help="The server's TLS certificate [default: ~/.docker/cert.pem].",
    )
    @click.option(
        "--tlskey",
        type=click.Path(path_type=Path),
        default=None,
        help="The server's TLS key [default: ~/.docker/key.pem].",
    )
    @click.option(
        "--insecure-registry",
        "insecure_registries",
        multiple=True,
        help="Registry (host[:port] or CIDR) reached over plain HTTP, repeatable.",
    )
    @click.option(
        "-b",
        "--bridge",
        default="dockyard0",
        show_default=True,
        help="The default bridge network's Linux bridge; 'none' for no default bridge.",
    )
    @click.option(
        "--bip",
        default="",
        help="The default bridge's address and subnet, e.g. 172.30.0.1/16 "
        "[default: the first free private /16 that collides with nothing on the host].",
    )
    @click.option(
        "--iptables",
        type=click.BOOL,
        default=True,
        show_default=True,
        help="Program iptables (NAT, published ports, isolation); false leaves them alone.",
    )
    @click.option(
        "-l",
        "--log-level",
        type=click.Choice(["debug", "info", "warn", "error", "fatal"]),
        default="info",
        show_default=True,
    )
    def daemon_command(
        hosts: tuple[str, ...],
        data_root: Path,
        exec_root: Path,
        labels: tuple[str, ...],
        use_tls: bool,
        tlsverify: bool,
        tlscacert: Path | None,
        tlscert: Path | None,
        tlskey: Path | None,
        insecure_registries: tuple[str, ...],
        bridge: str,
        bip: str,
        iptables: bool,
        log_level: str,
    ) -> None:
        """Serve the Docker Engine API (unix socket; TCP only on loopback or with TLS)."""
        from dockyard.engine.daemon import DaemonConfig, serve_forever
        from dockyard.engine.listeners import ListenerError, parse_host, server_tls_context
        from dockyard.engine.network.manager import NetworkConfig
        from dockyard.tls.errors import TlsConfigError

        level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(log_level, log_level.upper())
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for label in labels:
            if "=" not in label:
                raise click.BadParameter(f"{label!r} is not key=value", param_hint="--label")
        hosts = hosts or (DEFAULT_HOST,)
        cert_dir = _default_cert_dir()
        config = DaemonConfig(
            hosts=hosts,
            data_root=data_root.absolute(),
            exec_root=exec_root.absolute(),
            labels=labels,
            tls_verify=tlsverify,
            tls=use_tls,
            tls_ca_cert=(tlscacert or cert_dir / "ca.pem").absolute(),
            tls_cert=(tlscert or cert_dir / "cert.pem").absolute(),
            tls_key=(tlskey or cert_dir / "key.pem").absolute(),
            runc_binary=shutil.which("runc") or "runc",
            insecure_registries=insecure_registries,
            network=NetworkConfig(bridge=bridge, bip=bip, iptables=iptables),
        )
        try:
            # Refuse before touching anything: bad hosts, then unusable certificates.
            listeners = [parse_host(h, tls_verify=tlsverify, tls=use_tls) for h in hosts]
            if any(listener.tls for listener in listeners):
                server_tls_context(config)
        except (ListenerError, TlsConfigError) as e:
            raise click.ClickException(str(e)) from None
        import uvloop  # a dependency; the loop behind the API, the embedded DNS and shims

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_forever(config))


# The image commands work on a daemon's store, which is safe to share across processes.
ENGINE_DATA_ROOT = click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_ROOT,
    show_default=True,
    help="The engine's data root (the daemon's --data-root).",
)


class _ReferenceGroup(click.Group):
    """Subcommands that also answer to an image reference: `debian:bookworm` runs
    `debian bookworm` (click resolves commands by exact name only)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and ":" in args[0]:
            name, _, rest = args[0].partition(":")
            args = [name, rest, *args[1:]]
        return super().resolve_command(ctx, args)


def register_image(group: click.Group) -> None:
    @group.group("bootstrap", cls=_ReferenceGroup)
    def bootstrap() -> None:
        """Create images without a registry."""

    @bootstrap.command("busybox")
    @ENGINE_DATA_ROOT
    @click.option("--tag", default="busybox:latest", show_default=True)
    def bootstrap_busybox_command(data_root: Path, tag: str) -> None:
        """Import the host's static busybox as an image (`busybox:latest`)."""
        from dockyard.engine.images.bootstrap import bootstrap_busybox
        from dockyard.engine.images.store import ImageStore, ImageStoreError

        try:
            image_id = bootstrap_busybox(ImageStore(data_root / "images"), ref=tag)
        except (ImageStoreError, OSError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(image_id)

    @bootstrap.command("debian")
    @click.argument("suite")
    @click.option(
        "--include",
        "includes",
        multiple=True,
        help="Extra packages, comma-separated, repeatable (mmdebstrap --include).",
    )
    @click.option("--tag", default=None, help="[default: debian:SUITE, and debian:VERSION]")
    @ENGINE_DATA_ROOT
    @click.option(
        "--mirror",
        default=None,
        help="Debian archive URL [default: the one the host's apt sources use].",
    )
    def bootstrap_debian_command(
        suite: str, includes: tuple[str, ...], tag: str | None, data_root: Path, mirror: str | None
    ) -> None:
        """Build a Debian SUITE image (`debian:SUITE`) with mmdebstrap, cached.

        `dockyard image bootstrap debian:bookworm` is the same as `... debian bookworm`."""
        from dockyard.engine.images.bootstrap_debian import (
            bootstrap_debian,
            recipe_for,
            resolve_suite,
        )
        from dockyard.engine.images.store import ImageStore, ImageStoreError

        packages = [name for value in includes for name in value.split(",") if name]
        try:
            recipe = recipe_for(resolve_suite(suite), includes=packages, mirror=mirror)
            done = bootstrap_debian(
                ImageStore(data_root / "images"),
                data_root / "cache" / "bootstrap" / "debian",
                recipe,
                refs=(tag,) if tag else (),
                progress=lambda message: click.echo(message, err=True),
            )
        except (ImageStoreError, OSError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"{', '.join(done.refs)}: {done.outcome.value} ({done.key[:12]})", err=True)
        click.echo(done.image_id)
