"""``porchctl repo``: register, list, sync and unregister repositories."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from typing import Any

import click

from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    OciRepositorySpec,
    Repository,
    RepositorySpec,
    RepositorySync,
    SecretRef,
)
from porch.cli.ctl._common import (
    EXIT_USAGE,
    AliasGroup,
    CtlError,
    connection_options,
    ctl_of,
    for_each,
    handle_errors,
    progress,
)
from porch.cli.ctl._output import OUTPUT_HELP, Column, age, dump_yaml, emit, without_empty
from porch.client import ALL_NAMESPACES, ClientError, NotFound

MIGRATION_ANNOTATION = "porch.kpt.dev/v1alpha2-migration"


def _ready(obj: dict[str, Any]) -> str:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", ""))
    return ""


def _address(obj: dict[str, Any]) -> str:
    spec = obj.get("spec", {})
    return str((spec.get("git") or {}).get("repo") or (spec.get("oci") or {}).get("registry", ""))


COLUMNS: list[Column] = [
    ("NAME", lambda o: str(o["metadata"]["name"])),
    ("TYPE", lambda o: str(o["spec"].get("type", ""))),
    ("CONTENT", lambda o: str(o["spec"].get("content") or "Package")),
    ("SYNC SCHEDULE", lambda o: str((o["spec"].get("sync") or {}).get("schedule", ""))),
    ("DEPLOYMENT", lambda o: "true" if o["spec"].get("deployment") else ""),
    ("READY", _ready),
    ("ADDRESS", _address),
]
WIDE: list[Column] = [("AGE", lambda o: age(o["metadata"].get("creationTimestamp")))]

_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def _check_cron(schedule: str) -> None:
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise CtlError(f"invalid --sync-schedule {schedule!r}: expected 5 cron fields", EXIT_USAGE)


@click.group(
    cls=AliasGroup,
    aliases={
        "register": "reg",
        "ls": "get",
        "list": "get",
        "reconcile": "sync",
        "unregister": "unreg",
    },
)
def repo() -> None:
    """Manage package repositories registered with porch."""


@repo.command("reg")
@click.argument("repository")
@click.option("--name", default="", help="Repository name (default: last URL segment minus .git).")
@click.option("--description", default="", help="Brief description of the repository.")
@click.option("--branch", default="main", show_default=True, help="Branch holding packages.")
@click.option("--create-branch", is_flag=True, help="Create the branch if it does not exist.")
@click.option("--directory", default="/", show_default=True, help="Directory holding packages.")
@click.option("--deployment", is_flag=True, help="Packages here are deployment-ready.")
@click.option("--sync-schedule", default="", help="Cron schedule for periodic sync.")
@click.option("--repo-basic-username", default="", help="Username for basic authentication.")
@click.option("--repo-basic-password", default="", help="Password for basic authentication.")
@click.option("--repo-workload-identity", is_flag=True, help="Use workload identity.")
@click.option("--v1alpha2", "v1alpha2", is_flag=True, help="Manage with the v1alpha2 API.")
@click.option("--dry-run", is_flag=True, help="Print the objects instead of creating them.")
@connection_options
@click.pass_context
@handle_errors
def reg(
    ctx: click.Context,
    repository: str,
    name: str,
    description: str,
    branch: str,
    create_branch: bool,
    directory: str,
    deployment: bool,
    sync_schedule: str,
    repo_basic_username: str,
    repo_basic_password: str,
    repo_workload_identity: bool,
    v1alpha2: bool,
    dry_run: bool,
) -> None:
    """Register REPOSITORY (a git URL or oci://registry) with porch.

    With --repo-basic-username/--repo-basic-password a Secret NAME-auth is created first and
    referenced from the repository.
    """
    if repo_workload_identity and (repo_basic_username or repo_basic_password):
        raise CtlError("--repo-workload-identity and basic auth are mutually exclusive", EXIT_USAGE)
    if sync_schedule:
        _check_cron(sync_schedule)
    name = name or repository.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    secret = f"{name}-auth" if repo_basic_username or repo_basic_password else ""
    spec = RepositorySpec(description=description, deployment=deployment, content="Package")
    if sync_schedule:
        spec.sync = RepositorySync(schedule=sync_schedule)
    ref = SecretRef(name=secret) if secret else None
    if repository.startswith("oci://"):
        spec.type = "oci"
        spec.oci = OciRepositorySpec(registry=repository.removeprefix("oci://"), secret_ref=ref)
    else:
        spec.type = "git"
        spec.git = GitRepositorySpec(
            repo=repository,
            branch=branch,
            create_branch=create_branch,
            directory=directory,
            secret_ref=ref,
        )
    ctl = ctl_of(ctx)
    meta = ObjectMeta(name=name)
    if v1alpha2:
        meta.annotations[MIGRATION_ANNOTATION] = "true"
    obj = Repository(metadata=meta, spec=spec)
    if dry_run:
        if secret:
            click.echo(f"# would create Secret {secret} (basic-auth) first\n---")
        click.echo(dump_yaml(without_empty(obj.to_dict())), nl=False)
        return
    client = ctl.client()
    if secret:
        data = {"username": repo_basic_username, "password": repo_basic_password}
        client.create_secret(secret, data, type="kubernetes.io/basic-auth")
    try:
        client.create_repository(obj)
    except ClientError:
        if secret:
            # Do not leave credentials behind for a repository that was never registered.
            with contextlib.suppress(ClientError):
                client.delete_secret(secret)
        raise
    click.echo(f"{name} created")


@repo.command("get")
@click.argument("name", required=False)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", default="", help=OUTPUT_HELP)
@connection_options
@click.pass_context
@handle_errors
def get(ctx: click.Context, name: str | None, all_namespaces: bool, output: str) -> None:
    """List registered repositories, or show the one called NAME."""
    client = ctl_of(ctx).client()
    if name:
        items = [client.get_repository(name).to_dict()]
    else:
        ns = ALL_NAMESPACES if all_namespaces else None
        items = [r.to_dict() for r in client.list_repositories(namespace=ns)]
    where = "all namespaces" if all_namespaces else f"{client.namespace} namespace"
    emit(
        output,
        items,
        COLUMNS,
        wide=WIDE,
        single=bool(name),
        all_namespaces=all_namespaces,
        resource="repository.config.porch.kpt.dev",
        empty=f"No resources found in {where}.",
    )


def _run_once_at(value: str, now: dt.datetime) -> dt.datetime:
    """A duration (90s, 5m, 1h30m) from now, or an RFC 3339 time; at least one minute ahead."""
    minimum = now + dt.timedelta(minutes=1)
    if not value:
        return minimum
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value)
    if parts and any(parts.groups()):
        h, m, s = (int(g or 0) for g in parts.groups())
        when = now + dt.timedelta(hours=h, minutes=m, seconds=s)
    else:
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CtlError(f"--run-once: {value!r} is neither a duration nor RFC 3339", 2) from None
    if when < minimum:
        click.echo("warning: --run-once is less than a minute away; using one minute", err=True)
        return minimum
    return when


@repo.command("sync")
@click.argument("names", nargs=-1)
@click.option("--all", "all_repos", is_flag=True, help="Sync every repository in the namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all: in every namespace.")
@click.option("--run-once", default="", help="When: a duration (5m) or RFC 3339 [default: 1m].")
@click.option("--dry-run", is_flag=True, help="Say what would be scheduled, change nothing.")
@connection_options
@click.pass_context
@handle_errors
def sync(
    ctx: click.Context,
    names: tuple[str, ...],
    all_repos: bool,
    all_namespaces: bool,
    run_once: str,
    dry_run: bool,
) -> None:
    """Schedule a one-time sync of NAMES (sets spec.sync.runOnceAt)."""
    if not names and not all_repos:
        raise CtlError("name the repositories to sync, or use --all", EXIT_USAGE)
    client = ctl_of(ctx).client()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    when = _run_once_at(run_once, now).strftime("%Y-%m-%dT%H:%M:%SZ")
    if all_repos:
        ns = ALL_NAMESPACES if all_namespaces else None
        repos = client.list_repositories(namespace=ns)
        targets = [(r.metadata.namespace, r.metadata.name) for r in repos]
    else:
        targets = [(client.namespace, n) for n in names]

    def one(target: tuple[str, str]) -> None:
        ns, name = target
        current = client.get_repository(name, namespace=ns)
        if not dry_run:
            current.spec.sync = current.spec.sync or RepositorySync()
            current.spec.sync.run_once_at = when
            client.update_repository(current)
        verb = "would be scheduled" if dry_run else "scheduled"
        click.echo(f"repository {name} sync {verb} at {when}")

    qualify = all_repos and all_namespaces  # names are only ambiguous across namespaces
    by_key = {(f"{ns}/{n}" if qualify else n): (ns, n) for ns, n in targets}
    for_each(progress(list(by_key), "syncing"), lambda key: one(by_key[key]))


@repo.command("unreg")
@click.argument("name")
@click.option("--keep-auth-secret", is_flag=True, help="Keep the repository's auth Secret.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@connection_options
@click.pass_context
@handle_errors
def unreg(ctx: click.Context, name: str, keep_auth_secret: bool, dry_run: bool) -> None:
    """Unregister repository NAME (and delete its auth Secret unless told to keep it)."""
    client = ctl_of(ctx).client()
    current = client.get_repository(name)
    spec = current.spec
    ref = (spec.git.secret_ref if spec.git else None) or (spec.oci.secret_ref if spec.oci else None)
    secret = ref.name if ref and not keep_auth_secret else ""
    if dry_run:
        extra = f" and secret {secret}" if secret else ""
        click.echo(f"repository {name}{extra} would be deleted")
        return
    client.delete_repository(name)
    if secret:
        try:
            client.delete_secret(secret)
        except NotFound:
            pass  # already gone: the goal (no secret left behind) is met
    click.echo(f"{name} unregistered")
