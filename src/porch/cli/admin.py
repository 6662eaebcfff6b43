"""The ``porch`` admin command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from porch import __version__
from porch.cli.conformance import conformance
from porch.cli.controllers import controllers
from porch.cli.fnrunner import fn, fn_runner
from porch.cli.serve import serve
from porch.errors import PorchError


@click.group()
@click.version_option(__version__, prog_name="porch")
def main() -> None:
    """porch: a Porch-compatible Configuration-as-Data server."""


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".porch"),
    show_default=True,
    help="Where the store and the local git repositories live.",
)
def demo(data_dir: Path) -> None:
    """Create the demo repository (once) and list its package revisions."""
    from porch.server import DEMO_NAMESPACE, Settings, build_engine, ensure_demo

    try:
        engine = build_engine(Settings(data_dir=data_dir))
        created = ensure_demo(engine, data_dir)
        items, _rv = engine.list(DEMO_NAMESPACE)
    except PorchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if created:
        click.echo(f"created demo repository under {data_dir / 'repos'}")
    rows = [("NAME", "PACKAGE", "WORKSPACENAME", "REVISION", "LATEST", "LIFECYCLE", "REPOSITORY")]
    for pr in items:
        rows.append(
            (
                pr.metadata.name,
                pr.spec.package_name,
                pr.spec.workspace_name,
                str(pr.spec.revision),
                str(pr.metadata.labels.get("kpt.dev/latest-revision") == "true").lower(),
                pr.spec.lifecycle,
                pr.spec.repository,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    engine.store.close()


main.add_command(serve)
main.add_command(conformance)
main.add_command(controllers)
main.add_command(fn)
main.add_command(fn_runner)
