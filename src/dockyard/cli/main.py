"""The `dockyard` command. Thin: parse, call the package, print."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from dockyard import __version__


class _LazyGroup(click.Group):
    """A group whose commands are registered when first asked for: `dockyard compose ps`
    imports Compose only, not the daemon, the store server and their dependencies (the
    whole tree took a quarter of a second before the first line of work)."""

    def __init__(
        self, *args: Any, loaders: Mapping[str, Callable[[click.Group], None]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._loaders = dict(loaders)  # command name ("*": any) -> what registers it

    def _load(self, name: str) -> None:
        loader = self._loaders.get(name) or self._loaders.get("*")
        if loader is None:
            return
        for key in [k for k, v in self._loaders.items() if v is loader]:
            del self._loaders[key]
        loader(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in list(self._loaders):
            self._load(name)
        return super().list_commands(ctx)


def _register_daemon(group: click.Group) -> None:
    from dockyard.cli import daemon

    daemon.register(group)


def _register_image(group: click.Group) -> None:
    from dockyard.cli import daemon

    daemon.register_image(group)


def _register_store(group: click.Group) -> None:
    # The server's modules load only when `serve` runs (store_serve imports them lazily),
    # so that etcdctl-style commands start fast.
    from dockyard.cli import store_ctl, store_serve

    store_serve.register(group)
    store_ctl.register(group)


def _register_compose(group: click.Group) -> None:
    # `dockyard compose ...` and its short form `dockyard up`
    from dockyard.compose import cli as compose_cli

    compose_cli.register(group)


@click.group(
    cls=_LazyGroup,
    loaders={"daemon": _register_daemon, "compose": _register_compose, "up": _register_compose},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="dockyard")
def main() -> None:
    """dockyard: an etcd-compatible store, a Docker-API engine and the orchestration around them."""


@main.group(cls=_LazyGroup, loaders={"*": _register_store})
def store() -> None:
    """The etcd-compatible service-discovery store: serve it, and use it as etcdctl v2 does."""


@main.group(cls=_LazyGroup, loaders={"*": _register_image})
def image() -> None:
    """The engine's images."""
