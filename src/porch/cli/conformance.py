"""``porch conformance``: run kpt's and the function catalog's e2e cases against our runtime."""

from __future__ import annotations

import sys

import click

from porch.errors import PorchError


@click.group()
def conformance() -> None:
    """Run conformance suites (kpt fn render e2e cases, the function catalog's examples)."""


def _run(dirs: tuple[str, ...], suite: str) -> None:
    from porch.fn import conformance as harness

    def report(outcome: harness.Outcome) -> None:
        click.echo(outcome.line())

    try:
        summary = harness.run_suite(list(dirs), suite, report=report)
    except PorchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(summary.line())
    sys.exit(1 if summary.failed else 0)


_DIRS = click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False))


@conformance.command("kpt-fn-render")
@_DIRS
def kpt_fn_render(dirs: tuple[str, ...]) -> None:
    """Run kpt's fn-render e2e cases (each DIR one case or a folder of cases)."""
    _run(dirs, "kpt-fn-render")


@conformance.command("krm-catalog")
@_DIRS
def krm_catalog(dirs: tuple[str, ...]) -> None:
    """Run the KRM function catalog's e2e cases (examples/, tests/)."""
    _run(dirs, "krm-catalog")
