"""Composition root: builds the store, the repository opener and the engine from settings."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageInitTaskSpec,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    Task,
)
from porch.engine import Engine
from porch.engine.dbcontent import store_only_drafts, wrap_opener
from porch.engine.engine import UpstreamFetcher
from porch.engine.render import (
    DEFAULT_FUNCTION_TIMEOUT,
    FunctionRenderer,
    RuntimeOptions,
)
from porch.engine.sealing import Sealer
from porch.engine.sync import RepositorySyncer, SyncSettings
from porch.errors import AlreadyExists, Invalid, NotFound
from porch.fn.types import DEFAULT_IMAGE_PREFIX
from porch.repository.types import PackageRepository
from porch.store.factory import open_store

DEMO_NAMESPACE = "default"
DEMO_REPOSITORY = "demo"
DEMO_PACKAGES = (
    (
        "hello-world",
        "A first package: a config map",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello-world # shown by the demo\n"
        "data:\n  greeting: hello\n",
    ),
    (
        "basens",
        "A base namespace blueprint",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: example\n",
    ),
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store: str = ""  # "" = SQLite under the data dir; a path or sqlite:///path otherwise
    encryption_key_file: Path | None = None
    # The KRM function runtime (docs/functions.md): builtins always run in-process; an exec
    # allow-list and a remote function runner are added only when configured.
    function_runner: str = ""  # HOST:PORT of a `porch fn-runner`
    default_image_prefix: str = DEFAULT_IMAGE_PREFIX
    function_timeout: float = DEFAULT_FUNCTION_TIMEOUT  # seconds per function call
    exec_config: Path | None = None  # allow-listed binaries; the exec runtime is off without it
    # Repository sync inside the server (docs/sync.md); off with sync=False.
    sync: bool = True
    sync_ref_interval: float = 60.0  # seconds between ref checks of each repository
    sync_full_interval: float = 3600.0  # seconds between full syncs (no spec.sync.schedule)
    max_concurrent_syncs: int = 4
    sync_timeout: float = 60.0  # seconds one repository's sync may take
    # Where drafts live (docs/store.md "Content mode"): "git" branches, or "db" (the store;
    # git is written on publish, delete of a published revision and sync).
    content: str = "git"
    db_push_drafts_to_git: bool = False  # with content "db": mirror drafts to git branches

    def sync_settings(self) -> SyncSettings:
        return SyncSettings(
            ref_interval=self.sync_ref_interval,
            full_interval=self.sync_full_interval,
            max_concurrent=self.max_concurrent_syncs,
            timeout=self.sync_timeout,
        )

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            function_runner=self.function_runner,
            default_image_prefix=self.default_image_prefix,
            function_timeout=self.function_timeout,
            exec_config=self.exec_config,
        )


def store_path(settings: Settings) -> Path:
    """Where a SQLite store lives (``--store`` empty, a path or ``sqlite://PATH``)."""
    from porch.store.factory import sqlite_path, store_kind

    if store_kind(settings.store) != "sqlite":
        raise Invalid(f"--store {settings.store.split('://', 1)[0]}:// is not a SQLite store")
    return sqlite_path(settings.store, settings.data_dir)


def make_opener(
    data_dir: Path, secrets: Callable[[str, str], dict[str, str]] | None = None
) -> Callable[[Repository], PackageRepository]:
    """``secrets(namespace, name)`` resolves ``spec.oci.secretRef`` (None: anonymous)."""
    mirrors = data_dir / "git"

    def opener(repo: Repository) -> PackageRepository:
        from porch.repository.git import GitRepository

        if repo.spec.type == "oci":
            from porch.repository.oci import OciRepository, secret_credentials

            oci = repo.spec.oci
            assert oci is not None
            ref = oci.secret_ref.name if oci.secret_ref else ""
            return OciRepository(
                oci.registry,
                credentials=secret_credentials(repo.metadata.namespace, ref, secrets),
            )
        assert repo.spec.git is not None
        git_ref = repo.spec.git.secret_ref
        credentials = None
        if git_ref is not None and git_ref.name and secrets is not None:
            from porch.repository.git import GitCredentials

            held = secrets(repo.metadata.namespace, git_ref.name)
            credentials = GitCredentials(
                username=held.get("username", ""),
                password=held.get("password", ""),
                bearer_token=held.get("bearerToken", ""),
            )
        return GitRepository(
            repo.spec.git.repo,
            branch=repo.branch,
            directory=repo.directory,
            create_branch=repo.spec.git.create_branch,
            mirror_dir=mirrors,
            credentials=credentials,
        )

    return opener


def make_upstream_fetcher(data_dir: Path) -> UpstreamFetcher:
    mirrors = data_dir / "git" / "upstreams"

    def fetch(
        *, url: str, ref: str, directory: str, credentials: dict[str, str] | None
    ) -> tuple[dict[str, str], str]:
        from porch.repository.git import GitCredentials
        from porch.repository.git.upstream import fetch_package

        creds = None
        if credentials:
            creds = GitCredentials(
                username=credentials.get("username", ""),
                password=credentials.get("password", ""),
                bearer_token=credentials.get("bearerToken", ""),
            )
        got = fetch_package(
            url, ref=ref, directory=directory, mirror_dir=mirrors, credentials=creds
        )
        return got.files, got.commit

    return fetch


def build_engine(settings: Settings) -> Engine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sealer = None
    if settings.encryption_key_file is not None:
        try:
            sealer = Sealer.from_file(settings.encryption_key_file)
        except OSError as exc:
            raise Invalid(f"--encryption-key-file: {exc.strerror}: {exc.filename}") from None
    renderer = FunctionRenderer.from_options(settings.runtime_options())
    holder: list[Engine] = []  # OCI credentials come from Secrets the engine keeps

    def secrets(namespace: str, name: str) -> dict[str, str]:
        return holder[0].credentials(namespace, name)

    if settings.content not in ("git", "db"):
        raise Invalid(f'--content must be "git" or "db", not "{settings.content}"')
    store = open_store(settings.store, settings.data_dir)
    opener = make_opener(settings.data_dir, secrets=secrets)
    if settings.content == "db":
        opener = wrap_opener(opener, store, push_drafts=settings.db_push_drafts_to_git)
    elif drafts := store_only_drafts(store):
        store.close()
        raise Invalid(
            f"the store holds {len(drafts)} draft(s) kept only in the store by --content db"
            f" (e.g. {drafts[0]}); start with --content db, or publish or delete them first"
        )
    engine = Engine(
        store=store,
        opener=opener,
        renderer=renderer,
        sealer=sealer,
        fetch_upstream=make_upstream_fetcher(settings.data_dir),
    )
    holder.append(engine)
    for note in engine.start():  # crash leftovers it found and cleaned up (docs/reliability.md)
        print(f"porch: recovered: {note}", file=sys.stderr, flush=True)
    return engine


def build_syncer(engine: Engine, settings: Settings) -> RepositorySyncer | None:
    """The background repository syncer (not started), or None when sync is off."""
    if not settings.sync:
        return None
    return RepositorySyncer(engine, settings.sync_settings())


def ensure_demo(engine: Engine, data_dir: Path) -> bool:
    """Create (once) a demo repository with published packages; True when it was created."""
    try:
        engine.repositories.get(DEMO_NAMESPACE, DEMO_REPOSITORY)
        return False
    except NotFound:
        pass
    path = data_dir / "repos" / f"{DEMO_REPOSITORY}.git"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pygit2.init_repository(str(path), bare=True, initial_head="main")
    try:
        engine.register_repository(
            Repository(
                metadata=ObjectMeta(name=DEMO_REPOSITORY, namespace=DEMO_NAMESPACE),
                spec=RepositorySpec(
                    type="git",
                    description="Demo packages created by porch on first start",
                    git=GitRepositorySpec(repo=str(path), branch="main", create_branch=True),
                ),
            )
        )
    except AlreadyExists:
        return False  # another replica on the same store registered it first
    existing = {p.spec.package_name for p in engine.list(DEMO_NAMESPACE)[0]}
    for package, description, resource in DEMO_PACKAGES:
        if package in existing:
            continue
        pr = engine.create(
            PackageRevision(
                metadata=ObjectMeta(namespace=DEMO_NAMESPACE),
                spec=PackageRevisionSpec(
                    package_name=package,
                    repository=DEMO_REPOSITORY,
                    workspace_name="v1",
                    tasks=[Task(type="init", init=PackageInitTaskSpec(description=description))],
                ),
            )
        )
        prr = engine.get_resources(DEMO_NAMESPACE, pr.metadata.name)
        prr.spec.resources = {**prr.spec.resources, f"{package}.yaml": resource}
        engine.update_resources(prr)
        pr = engine.get(DEMO_NAMESPACE, pr.metadata.name)
        pr.spec.lifecycle = "Proposed"
        pr = engine.update(pr)
        pr.spec.lifecycle = "Published"
        engine.update(pr, endpoint=Endpoint.APPROVAL)
    return True
