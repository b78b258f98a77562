"""The `dockyard` command. Thin: parse, call the package, print."""

from __future__ import annotations

import click

from dockyard import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dockyard")
def main() -> None:
    """dockyard: an etcd-compatible store, a Docker-API engine and the orchestration around them."""


@main.group()
def store() -> None:
    """The etcd-compatible service-discovery store: serve it, and use it as etcdctl v2 does."""


@main.group()
def image() -> None:
    """The engine's images."""


def _register_subcommands() -> None:
    # Imported here so that each module owns its commands and `main` stays an index. The
    # server's modules load only when `serve` runs (store_serve imports them lazily), so
    # that etcdctl-style commands start fast.
    from dockyard.cli import daemon, store_ctl, store_serve

    store_serve.register(store)
    store_ctl.register(store)
    daemon.register(main)
    daemon.register_image(image)
    # `dockyard compose ...` and its short form `dockyard up`
    from dockyard.compose import cli as compose_cli

    compose_cli.register(main)


_register_subcommands()
