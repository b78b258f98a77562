"""`dockyard store serve`: placeholder until the server lands."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    @group.command()
    def serve() -> None:
        """Serve the store."""
        raise click.ClickException("not implemented yet")
