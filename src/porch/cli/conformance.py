"""``porch conformance``: run kpt's and the function catalog's e2e cases against our runtime."""

from __future__ import annotations

import click


@click.group()
def conformance() -> None:
    """Run conformance suites (kpt fn render e2e cases, the function catalog's examples)."""
