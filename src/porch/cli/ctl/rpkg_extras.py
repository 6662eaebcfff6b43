"""Verbs beyond upstream porchctl: ``rpkg diff`` and ``rpkg restore``.

``diff`` compares two revisions' files client-side. YAML is normalised first (parsed and
re-dumped with sorted keys, comments dropped) so the diff shows changes of meaning, not of
formatting that the server's re-serialisation introduces.
"""

from __future__ import annotations

import difflib
import sys

import click
import yaml

from porch.api.types import PackageEditTaskSpec, PackageRevision, PackageRevisionRef, Task
from porch.cli.ctl._common import connection_options, ctl_of, handle_errors
from porch.cli.ctl.rpkg import create, new_draft, rpkg
from porch.cli.ctl.rpkg_files import is_krm_file
from porch.client import NotFound, PorchClient, PreconditionFailed


def normalise(path: str, text: str) -> str:
    if not is_krm_file(path):
        return text
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return text  # unparsable: compare as written rather than fail the whole diff
    return "---\n".join(yaml.safe_dump(d, sort_keys=True, default_flow_style=False) for d in docs)


def unified(a_name: str, a: dict[str, str], b_name: str, b: dict[str, str]) -> list[str]:
    out: list[str] = []
    for path in sorted(a.keys() | b.keys()):
        old = normalise(path, a[path]).splitlines(keepends=True) if path in a else []
        new = normalise(path, b[path]).splitlines(keepends=True) if path in b else []
        fromfile = f"{a_name}/{path}" if path in a else "/dev/null"
        tofile = f"{b_name}/{path}" if path in b else "/dev/null"
        for line in difflib.unified_diff(old, new, fromfile, tofile):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return out


def base_of(client: PorchClient, pr: PackageRevision) -> str:
    """What NAME is naturally compared with: its copy source or clone upstream, else the latest
    published revision of the same package."""
    task = pr.spec.tasks[0] if pr.spec.tasks else None
    if task and task.type == "edit" and task.edit and task.edit.source_ref:
        return task.edit.source_ref.name
    if task and task.type == "clone" and task.clone and task.clone.upstream_ref:
        ref = task.clone.upstream_ref.upstream_ref
        if ref and ref.name:
            return ref.name
    siblings = client.list_package_revisions(fields={"spec.packageName": pr.spec.package_name})
    published = [
        s
        for s in siblings
        if s.spec.repository == pr.spec.repository
        and s.spec.lifecycle in ("Published", "DeletionProposed")
        and s.spec.revision > 0
        and s.metadata.name != pr.metadata.name
    ]
    if not published:
        raise PreconditionFailed(
            f"nothing to compare {pr.metadata.name} with; name a second revision"
        )
    return max(published, key=lambda s: s.spec.revision).metadata.name


@rpkg.command("diff")
@click.argument("name")
@click.argument("other", required=False)
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
@connection_options
@click.pass_context
@handle_errors
def diff(ctx: click.Context, name: str, other: str | None, exit_code: bool) -> None:
    """Show a unified diff between package revisions NAME and OTHER.

    Without OTHER, NAME is compared with the revision it was copied or cloned from, else with
    the latest published revision of its package (the base is then the "from" side).
    """
    client = ctl_of(ctx).client()
    if other is None:
        base = base_of(client, client.get_package_revision(name))
        a_name, b_name = base, name
    else:
        a_name, b_name = name, other
    a = client.get_resources(a_name).spec.resources
    b = client.get_resources(b_name).spec.resources
    lines = unified(a_name, a, b_name, b)
    click.echo("".join(lines), nl=False)
    if exit_code and lines:
        sys.exit(1)


@rpkg.command("restore")
@click.argument("name")
@click.option("--revision", type=int, required=True, help="Published revision to restore.")
@click.option("--workspace", default="", help="Workspace of the new Draft [default: restore-vN].")
@click.option("--dry-run", is_flag=True, help="Print the Draft that would be created.")
@connection_options
@click.pass_context
@handle_errors
def restore(ctx: click.Context, name: str, revision: int, workspace: str, dry_run: bool) -> None:
    """Create a Draft of NAME's package whose content equals its published revision N.

    NAME is any revision of the package (or its placeholder); the Draft copies revision N.
    """
    client = ctl_of(ctx).client()
    pr = client.get_package_revision(name)
    siblings = client.list_package_revisions(
        fields={"spec.packageName": pr.spec.package_name, "spec.repository": pr.spec.repository}
    )
    source = next(
        (
            s
            for s in siblings
            if s.spec.revision == revision and s.spec.lifecycle in ("Published", "DeletionProposed")
        ),
        None,
    )
    if source is None:
        raise NotFound(
            f"package {pr.spec.repository}/{pr.spec.package_name} has no published revision"
            f" {revision}"
        )
    edit = PackageEditTaskSpec(source_ref=PackageRevisionRef(name=source.metadata.name))
    draft = new_draft(
        pr.spec.package_name,
        pr.spec.repository,
        workspace or f"restore-v{revision}",
        Task(type="edit", edit=edit),
    )
    create(ctx, draft, dry_run)
