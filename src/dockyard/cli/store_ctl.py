"""etcdctl v2-style subcommands of `dockyard store`: placeholder."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    pass
