"""``porch fn-runner`` and ``porch fn``: the function-runner gRPC service and exec entry points."""

from __future__ import annotations

import click


@click.group(name="fn")
def fn() -> None:
    """Run builtin KRM functions directly (ResourceList on stdin, as an exec function)."""


@click.command(name="fn-runner")
def fn_runner() -> None:
    """Serve Porch's FunctionEvaluator gRPC service (builtin and exec evaluators)."""
    raise click.ClickException("fn-runner: not built yet")
