"""The ``porchctl`` client command (its verbs arrive with the API server and client)."""

from __future__ import annotations

import click

from porch import __version__


@click.group()
@click.version_option(__version__, prog_name="porchctl")
def main() -> None:
    """porchctl: manage package revisions on a porch server."""
