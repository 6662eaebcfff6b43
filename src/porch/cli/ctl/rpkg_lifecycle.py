"""``rpkg propose|approve|reject|propose-delete``: lifecycle moves, one by one or in bulk.

The read-check-write and its retry on 409 live in ``porch.client.LifecycleVerbs`` so controllers
behave the same way; this module picks the targets, prints and aggregates failures.
With ``--selector`` the targets come from a label selector and a summary table is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from porch.api.types import PackageRevision
from porch.cli.ctl._common import (
    EXIT_USAGE,
    CtlError,
    connection_options,
    ctl_of,
    exit_code_for,
    handle_errors,
    progress,
)
from porch.cli.ctl._output import table
from porch.cli.ctl.rpkg import rpkg
from porch.client import ClientError, LifecycleVerbs, Outcome, PorchClient, PreconditionFailed

Verb = Callable[[LifecycleVerbs, str], tuple[Outcome, PackageRevision]]


def _targets(
    client: PorchClient, names: tuple[str, ...], selector: str, field_selector: str
) -> list[str]:
    if names and (selector or field_selector):
        raise CtlError("give NAMES or --selector/--field-selector, not both", EXIT_USAGE)
    if names:
        return list(names)
    if not selector and not field_selector:
        raise CtlError("name at least one package revision, or use --selector", EXIT_USAGE)
    found = client.list_package_revisions(fields=field_selector or None, labels=selector)
    return [pr.metadata.name for pr in found]


def _dry_check(lifecycle: LifecycleVerbs, name: str, allowed: tuple[str, ...], target: str) -> str:
    pr = lifecycle.client.get_package_revision(name)
    if target and pr.spec.lifecycle == target:
        return f"is already {target}"
    if pr.spec.lifecycle not in allowed:
        raise PreconditionFailed(f"{name} is {pr.spec.lifecycle}")
    return f"would change from {pr.spec.lifecycle}"


def run_verb(
    ctx: click.Context,
    names: tuple[str, ...],
    selector: str,
    field_selector: str,
    dry_run: bool,
    verb: Verb,
    done: str,
    target: str,
    allowed: tuple[str, ...],
) -> None:
    """Apply ``verb`` to each target; ``target`` is the lifecycle that means "nothing to do"
    ("" for reject, whose result depends on where it starts) and ``allowed`` the start states.
    """
    ctl = ctl_of(ctx)
    lifecycle = ctl.lifecycle()
    targets = _targets(lifecycle.client, names, selector, field_selector)
    bulk = not names
    summary: list[tuple[str, str]] = []
    first_error: int | None = None
    for name in progress(targets, done):
        try:
            if dry_run:
                result = _dry_check(lifecycle, name, allowed, target)
            else:
                outcome, pr = verb(lifecycle, name)
                result = done if outcome is Outcome.CHANGED else f"is already {target}"
                if outcome is Outcome.CHANGED and target and pr.spec.lifecycle != target:
                    # Taken but not moved: the approval policy wants more approvals.
                    who = ", ".join(a.user for a in pr.status.approvals)
                    result = f"approval recorded, still {pr.spec.lifecycle} (approved by {who})"
        except ClientError as exc:
            err = CtlError.from_client(exc, name)
            first_error = first_error or exit_code_for(exc)
            summary.append((name, "failed: " + " ".join(str(exc).split())))
            if not bulk:
                err.show()
            continue
        summary.append((name, result))
        if not bulk:
            click.echo(f"{name} {result}")
    if bulk:
        if summary:
            click.echo(table(("NAME", "RESULT"), summary), nl=False)
        failed = sum(1 for _n, r in summary if r.startswith("failed"))
        click.echo(f"{len(summary) - failed} succeeded, {failed} failed", err=True)
    if first_error is not None:
        sys.exit(first_error)


def bulk_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--dry-run", is_flag=True, help="Check the state only; change nothing.")(
        func
    )
    func = click.option(
        "--field-selector", default="", help="Bulk: revisions matching this field selector."
    )(func)
    func = click.option(
        "-l", "--selector", default="", help="Bulk: revisions matching this label selector."
    )(func)
    return click.argument("names", nargs=-1)(func)


@rpkg.command("propose")
@bulk_options
@connection_options
@click.pass_context
@handle_errors
def propose(
    ctx: click.Context, names: tuple[str, ...], selector: str, field_selector: str, dry_run: bool
) -> None:
    """Propose the Draft package revisions NAMES for approval (readiness gates must be met)."""
    run_verb(
        ctx,
        names,
        selector,
        field_selector,
        dry_run,
        lambda lc, n: lc.propose(n),
        "proposed",
        "Proposed",
        ("Draft",),
    )


@rpkg.command("approve")
@bulk_options
@connection_options
@click.pass_context
@handle_errors
def approve(
    ctx: click.Context, names: tuple[str, ...], selector: str, field_selector: str, dry_run: bool
) -> None:
    """Approve (publish) the Proposed package revisions NAMES."""
    run_verb(
        ctx,
        names,
        selector,
        field_selector,
        dry_run,
        lambda lc, n: lc.approve(n),
        "approved",
        "Published",
        ("Proposed", "DeletionProposed"),
    )


@rpkg.command("reject")
@bulk_options
@connection_options
@click.pass_context
@handle_errors
def reject(
    ctx: click.Context, names: tuple[str, ...], selector: str, field_selector: str, dry_run: bool
) -> None:
    """Reject a proposal: Proposed goes back to Draft, DeletionProposed back to Published."""
    run_verb(
        ctx,
        names,
        selector,
        field_selector,
        dry_run,
        lambda lc, n: lc.reject(n),
        "rejected",
        "",
        ("Proposed", "DeletionProposed"),
    )


@rpkg.command("propose-delete")
@bulk_options
@connection_options
@click.pass_context
@handle_errors
def propose_delete(
    ctx: click.Context, names: tuple[str, ...], selector: str, field_selector: str, dry_run: bool
) -> None:
    """Propose the Published package revisions NAMES for deletion."""
    run_verb(
        ctx,
        names,
        selector,
        field_selector,
        dry_run,
        lambda lc, n: lc.propose_delete(n),
        "proposed for deletion",
        "DeletionProposed",
        ("Published",),
    )
