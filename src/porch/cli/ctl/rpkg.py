"""``porchctl rpkg``: list, create (init, clone, copy) and delete package revisions.

The lifecycle verbs live in ``rpkg_lifecycle``, file transfer in ``rpkg_files`` and the
upgrade family in ``rpkg_upgrade``; this module owns the group and the table columns.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from porch.api.types import (
    GitPackage,
    ObjectMeta,
    OciPackage,
    PackageCloneTaskSpec,
    PackageEditTaskSpec,
    PackageInitTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    SecretRef,
    Task,
    UpstreamPackage,
)
from porch.cli.ctl._common import (
    EXIT_USAGE,
    AliasGroup,
    CtlError,
    connection_options,
    ctl_of,
    for_each,
    handle_errors,
)
from porch.cli.ctl._output import OUTPUT_HELP, Column, age, dump_yaml, emit, without_empty
from porch.client import ALL_NAMESPACES, ClientError

ANY_REVISION = -2
RESOURCE = "packagerevision.porch.kpt.dev"

COLUMNS: list[Column] = [
    ("NAME", lambda o: str(o["metadata"]["name"])),
    ("PACKAGE", lambda o: str(o["spec"].get("packageName", ""))),
    ("WORKSPACENAME", lambda o: str(o["spec"].get("workspaceName", ""))),
    ("REVISION", lambda o: str(o["spec"].get("revision", 0))),
    (
        "LATEST",
        lambda o: str(
            (o["metadata"].get("labels") or {}).get("kpt.dev/latest-revision") == "true"
        ).lower(),
    ),
    ("LIFECYCLE", lambda o: str(o["spec"].get("lifecycle", ""))),
    ("REPOSITORY", lambda o: str(o["spec"].get("repository", ""))),
]
WIDE: list[Column] = [
    ("AGE", lambda o: age(o["metadata"].get("creationTimestamp"))),
    ("PUBLISHEDBY", lambda o: str(o.get("status", {}).get("publishedBy", ""))),
]


@click.group(
    cls=AliasGroup,
    aliases={
        "list": "get",
        "edit": "copy",
        "source": "pull",
        "read": "pull",
        "sink": "push",
        "write": "push",
        "propose-del": "propose-delete",
        "delete": "del",
    },
)
def rpkg() -> None:
    """Manage package revisions (init, clone, copy, pull, push, lifecycle, delete)."""


def matches(pr: PackageRevision, package: str, revision: int, workspace: str) -> bool:
    """Upstream's exact-match filters, applied again client-side whatever the server did."""
    return (
        (not package or pr.spec.package_name == package)
        and (revision == ANY_REVISION or pr.spec.revision == revision)
        and (not workspace or pr.spec.workspace_name == workspace)
    )


def as_dict(pr: PackageRevision) -> dict[str, Any]:
    out = pr.to_dict()
    out["spec"].setdefault("revision", pr.spec.revision)
    return out


@rpkg.command("get")
@click.argument("names", nargs=-1)
@click.option("--name", "package", default="", help="Only revisions of this package.")
@click.option("--revision", type=int, default=ANY_REVISION, help="Only this revision number.")
@click.option("--workspace", default="", help="Only revisions in this workspace.")
@click.option("--show-kptfile", is_flag=True, help="Print the Kptfile of the one NAME given.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", default="", help=OUTPUT_HELP)
@connection_options
@click.pass_context
@handle_errors
def get(
    ctx: click.Context,
    names: tuple[str, ...],
    package: str,
    revision: int,
    workspace: str,
    show_kptfile: bool,
    all_namespaces: bool,
    output: str,
) -> None:
    """List package revisions, or show those named NAMES."""
    client = ctl_of(ctx).client()
    if show_kptfile:
        if len(names) != 1 or package or workspace or revision != ANY_REVISION or all_namespaces:
            raise CtlError("--show-kptfile needs exactly one NAME and no filters or -A", EXIT_USAGE)
        prr = client.get_resources(names[0])
        click.echo(prr.spec.resources.get("Kptfile", ""), nl=False)
        return
    failures: list[CtlError] = []
    if names:
        found = []
        for n in names:  # like upstream: show what exists, then report what does not
            try:
                found.append(client.get_package_revision(n))
            except ClientError as exc:
                failures.append(CtlError.from_client(exc, n))
    else:
        # One selector goes to the server (upstream sends the most selective); all are rechecked.
        fields: dict[str, str | int] = {}
        if package:
            fields["spec.packageName"] = package
        elif workspace:
            fields["spec.workspaceName"] = workspace
        elif revision != ANY_REVISION:
            fields["spec.revision"] = revision
        ns = ALL_NAMESPACES if all_namespaces else None
        found = client.list_package_revisions(namespace=ns, fields=fields)
    items = [as_dict(pr) for pr in found if matches(pr, package, revision, workspace)]
    where = "all namespaces" if all_namespaces else f"{client.namespace} namespace"
    emit(
        output,
        items,
        COLUMNS,
        wide=WIDE,
        single=len(names) == 1,
        all_namespaces=all_namespaces,
        resource=RESOURCE,
        empty="" if failures else f"No resources found in {where}.",
    )
    for failure in failures:
        failure.show()
    if failures:
        sys.exit(failures[0].exit_code)


def create(ctx: click.Context, pr: PackageRevision, dry_run: bool) -> None:
    """POST (or with --dry-run print) a new Draft and say its server-assigned name.

    A dry run of init or clone needs no server at all, so the client is made only here.
    """
    if dry_run:
        click.echo(dump_yaml(without_empty(pr.to_dict())), nl=False)
        return
    created = ctl_of(ctx).client().create_package_revision(pr)
    click.echo(f"{created.metadata.name} created")
    print_merge_conflicts(created)


def print_merge_conflicts(pr: PackageRevision) -> None:
    """An upgrade's MergeConflicts condition (beyond Porch), one line per conflicting field."""
    import json

    for condition in pr.status.conditions:
        if condition.type != "MergeConflicts" or condition.status != "True":
            continue
        try:
            entries = json.loads(condition.message)
        except ValueError:
            click.echo(f"merge conflicts: {condition.message}")
            continue
        click.echo(f"{len(entries)} merge conflict(s), resolved as shown; review before proposing:")
        for e in entries:
            click.echo(
                f"  {e.get('file')}: {e.get('resource')}: {e.get('field')}:"
                f" local {json.dumps(e.get('local'))}, upstream {json.dumps(e.get('upstream'))},"
                f" kept {e.get('chosen')}"
            )


def new_draft(package: str, repository: str, workspace: str, task: Task) -> PackageRevision:
    return PackageRevision(
        metadata=ObjectMeta(),
        spec=PackageRevisionSpec(
            package_name=package,
            repository=repository,
            workspace_name=workspace,
            lifecycle="Draft",
            tasks=[task],
        ),
    )


DRY_RUN_HELP = "Print the PackageRevision that would be created; create nothing."


@rpkg.command("init")
@click.argument("package")
@click.option("--repository", required=True, help="Repository to create the package in.")
@click.option("--workspace", required=True, help="Workspace name of the new revision.")
@click.option(
    "--description",
    default="sample description",
    show_default=True,
    help="Description written into the Kptfile.",
)
@click.option("--keywords", default="", help="Comma-separated keywords.")
@click.option("--site", default="", help="Link to the package's documentation.")
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@connection_options
@click.pass_context
@handle_errors
def init(
    ctx: click.Context,
    package: str,
    repository: str,
    workspace: str,
    description: str,
    keywords: str,
    site: str,
    dry_run: bool,
) -> None:
    """Create a new package PACKAGE as a Draft with an init task."""
    spec = PackageInitTaskSpec(
        description=description,
        keywords=[k.strip() for k in keywords.split(",") if k.strip()],
        site=site,
    )
    pr = new_draft(package, repository, workspace, Task(type="init", init=spec))
    create(ctx, pr, dry_run)


def upstream_of(source: str, directory: str, ref: str, secret_ref: str) -> UpstreamPackage:
    """Upstream's reading of SOURCE: oci://…, a git URL (maybe URL.git/dir@ref), or a name."""
    if source.startswith("oci://"):
        return UpstreamPackage(type="oci", oci=OciPackage(image=source.removeprefix("oci://")))
    if "/" not in source:
        return UpstreamPackage(upstream_ref=PackageRevisionRef(name=source))
    repo, url_dir, url_ref = source, "", ""
    if ".git" in source:
        repo, _sep, rest = source.partition(".git")
        repo += ".git"
        rest, _at, url_ref = rest.partition("@")
        url_dir = rest.strip("/")
    if url_dir and directory and url_dir != directory.strip("/"):
        raise CtlError(f"directory {url_dir!r} in the URL conflicts with --directory", EXIT_USAGE)
    if url_ref and ref and url_ref != ref:
        raise CtlError(f"ref {url_ref!r} in the URL conflicts with --ref", EXIT_USAGE)
    git = GitPackage(
        repo=repo,
        ref=url_ref or ref or "main",
        directory=url_dir or directory or "/",
        secret_ref=SecretRef(name=secret_ref) if secret_ref else None,
    )
    return UpstreamPackage(type="git", git=git)


@rpkg.command("clone")
@click.argument("source")
@click.argument("package")
@click.option("--repository", required=True, help="Repository to create the clone in.")
@click.option("--workspace", default="v1", show_default=True, help="Workspace name.")
@click.option("--directory", default="", help="Package directory in a git SOURCE [default: /].")
@click.option("--ref", default="", help="Branch, tag or commit of a git SOURCE [default: main].")
@click.option("--secret-ref", default="", help="Secret with credentials for a git SOURCE.")
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@connection_options
@click.pass_context
@handle_errors
def clone(
    ctx: click.Context,
    source: str,
    package: str,
    repository: str,
    workspace: str,
    directory: str,
    ref: str,
    secret_ref: str,
    dry_run: bool,
) -> None:
    """Create PACKAGE as a clone of SOURCE.

    SOURCE is a package revision name, a git URL (https://host/repo.git/dir@ref) or oci://image.
    """
    upstream = upstream_of(source, directory, ref, secret_ref)
    task = Task(type="clone", clone=PackageCloneTaskSpec(upstream_ref=upstream))
    pr = new_draft(package, repository, workspace, task)
    create(ctx, pr, dry_run)


@rpkg.command("copy")
@click.argument("source")
@click.option("--workspace", required=True, help="Workspace name of the new revision.")
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@connection_options
@click.pass_context
@handle_errors
def copy(ctx: click.Context, source: str, workspace: str, dry_run: bool) -> None:
    """Create a new Draft of the same package from the published revision SOURCE."""
    client = ctl_of(ctx).client()
    src = client.get_package_revision(source)
    edit = PackageEditTaskSpec(source_ref=PackageRevisionRef(name=source))
    pr = new_draft(
        src.spec.package_name, src.spec.repository, workspace, Task(type="edit", edit=edit)
    )
    create(ctx, pr, dry_run)


@rpkg.command("del")
@click.argument("names", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Check the revisions exist; delete nothing.")
@connection_options
@click.pass_context
@handle_errors
def delete(ctx: click.Context, names: tuple[str, ...], dry_run: bool) -> None:
    """Delete the package revisions NAMES (published ones must be proposed for deletion)."""
    client = ctl_of(ctx).client()

    def one(name: str) -> None:
        if dry_run:
            pr = client.get_package_revision(name)
            click.echo(f"{name} ({pr.spec.lifecycle}) would be deleted")
            return
        client.delete_package_revision(name)
        click.echo(f"{name} deleted")

    for_each(names, one)
