"""``rpkg upgrade``: a new Draft that merges a newer upstream revision into a downstream package.

As in upstream porchctl the client resolves the three revisions the server's upgrade task
needs: the local (published) revision, the upstream revision it was cloned or last upgraded
from, and the new upstream revision (``--revision N`` or the newest published one).
"""

from __future__ import annotations

import click

from porch.api.types import (
    PackageRevision,
    PackageRevisionRef,
    PackageUpgradeTaskSpec,
    Task,
)
from porch.cli.ctl._common import EXIT_USAGE, CtlError, connection_options, ctl_of, handle_errors
from porch.cli.ctl._output import table
from porch.cli.ctl.rpkg import create, new_draft, rpkg
from porch.client import PorchClient, PreconditionFailed

STRATEGIES = ("resource-merge", "fast-forward", "force-delete-replace", "copy-merge")
PUBLISHED_LIKE = ("Published", "DeletionProposed")


def _norm_repo(url: str) -> str:
    return url.rstrip("/").removesuffix(".git")


def old_upstream(
    pr: PackageRevision, by_name: dict[str, PackageRevision]
) -> PackageRevision | None:
    """The upstream revision ``pr`` was cloned or last upgraded from, following copies back."""
    seen: set[str] = set()
    current: PackageRevision | None = pr
    while current is not None and current.metadata.name not in seen:
        seen.add(current.metadata.name)
        task = current.spec.tasks[0] if current.spec.tasks else None
        if task is None:
            break
        if task.type == "clone" and task.clone and task.clone.upstream_ref:
            ref = task.clone.upstream_ref.upstream_ref
            return by_name.get(ref.name) if ref else _by_lock(pr, by_name)
        if task.type == "upgrade" and task.upgrade and task.upgrade.new_upstream_ref:
            return by_name.get(task.upgrade.new_upstream_ref.name)
        if task.type == "edit" and task.edit and task.edit.source_ref:
            current = by_name.get(task.edit.source_ref.name)
            continue
        break
    return _by_lock(pr, by_name)


def _by_lock(pr: PackageRevision, by_name: dict[str, PackageRevision]) -> PackageRevision | None:
    """Match the Kptfile's upstreamLock against the self locators of known revisions."""
    lock = pr.status.upstream_lock.git if pr.status.upstream_lock else None
    if lock is None:
        return None
    for cand in by_name.values():
        own = cand.status.self_lock.git if cand.status.self_lock else None
        if (
            own is not None
            and _norm_repo(own.repo) == _norm_repo(lock.repo)
            and own.directory.strip("/") == lock.directory.strip("/")
            and own.ref == lock.ref
        ):
            return cand
    return None


def newer_upstreams(
    upstream: PackageRevision, by_name: dict[str, PackageRevision]
) -> list[PackageRevision]:
    """Published revisions of the upstream's package newer than ``upstream``, oldest first."""
    found = [
        c
        for c in by_name.values()
        if c.spec.repository == upstream.spec.repository
        and c.spec.package_name == upstream.spec.package_name
        and c.spec.lifecycle in PUBLISHED_LIKE
        and c.spec.revision > upstream.spec.revision
    ]
    return sorted(found, key=lambda c: c.spec.revision)


def upgrade_draft(
    client: PorchClient, name: str, workspace: str, revision: int, strategy: str
) -> PackageRevision:
    everything = {pr.metadata.name: pr for pr in client.list_package_revisions()}
    local = everything.get(name) or client.get_package_revision(name)
    if local.spec.lifecycle not in PUBLISHED_LIKE:
        raise PreconditionFailed(f"to upgrade a package, it must be published; {name} is not")
    old = old_upstream(local, everything)
    if old is None:
        raise PreconditionFailed(
            f'upstream source not found for package rev "{name}";'
            " only cloned packages can be upgraded"
        )
    if old.spec.lifecycle not in PUBLISHED_LIKE:
        raise PreconditionFailed(f"old upstream {old.metadata.name} is not published")
    candidates = newer_upstreams(old, everything)
    if revision:
        chosen = [c for c in candidates if c.spec.revision == revision]
        if not chosen:
            raise PreconditionFailed(
                f"revision {revision} does not exist (or is not newer) for package"
                f" {old.spec.package_name}"
            )
        new = chosen[0]
    elif candidates:
        new = candidates[-1]
    else:
        raise PreconditionFailed(f"{name} is already on the latest upstream revision")
    spec = PackageUpgradeTaskSpec(
        old_upstream_ref=PackageRevisionRef(name=old.metadata.name),
        new_upstream_ref=PackageRevisionRef(name=new.metadata.name),
        local_package_revision_ref=PackageRevisionRef(name=local.metadata.name),
        strategy=strategy,
    )
    return new_draft(
        local.spec.package_name,
        local.spec.repository,
        workspace,
        Task(type="upgrade", upgrade=spec),
    )


def print_upgrades(client: PorchClient, mode: str) -> None:
    everything = {pr.metadata.name: pr for pr in client.list_package_revisions()}
    rows: list[tuple[str, str, str]] = []
    for pr in everything.values():
        # Only the latest published revision of a downstream is a candidate: older ones were
        # superseded, and Drafts are upgraded by editing them.
        latest = pr.metadata.labels.get("kpt.dev/latest-revision") == "true"
        if pr.spec.lifecycle not in PUBLISHED_LIKE or not latest:
            continue
        old = old_upstream(pr, everything)
        if old is None:
            continue
        newer = newer_upstreams(old, everything)
        if newer:
            revs = ", ".join(f"v{c.spec.revision}" for c in newer)
            if mode == "upstream":
                rows.append((pr.metadata.name, old.metadata.name, revs))
            else:
                rows.append((old.metadata.name, pr.metadata.name, revs))
    if not rows:
        click.echo("All downstream packages are up to date.")
        return
    head = (
        ("PACKAGE REVISION", "UPSTREAM", "UPDATES")
        if mode == "upstream"
        else ("UPSTREAM", "DOWNSTREAM", "UPDATES")
    )
    click.echo(table(head, sorted(rows)), nl=False)


@rpkg.command("upgrade")
@click.argument("name", required=False)
@click.option("--workspace", default="", help="Workspace name of the upgrade Draft.")
@click.option("--revision", type=int, default=0, help="Upstream revision to upgrade to.")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="resource-merge",
    show_default=True,
    help="How local changes and the new upstream are merged.",
)
@click.option(
    "--discover",
    type=click.Choice(("upstream", "downstream")),
    default=None,
    help="List available upgrades instead of creating one.",
)
@click.option("--dry-run", is_flag=True, help="Print the upgrade Draft; create nothing.")
@connection_options
@click.pass_context
@handle_errors
def upgrade(
    ctx: click.Context,
    name: str | None,
    workspace: str,
    revision: int,
    strategy: str,
    discover: str | None,
    dry_run: bool,
) -> None:
    """Create a Draft of published NAME upgraded to a newer upstream revision."""
    client = ctl_of(ctx).client()
    if discover:
        print_upgrades(client, discover)
        return
    if not name or not workspace:
        raise CtlError("upgrade needs NAME and --workspace (or --discover)", EXIT_USAGE)
    create(ctx, upgrade_draft(client, name, workspace, revision, strategy), dry_run)
