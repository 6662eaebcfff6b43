"""DB content mode (``--content db``): drafts live in the store, git is written on publish.

Every test runs the real git adapter on a bare repository and the store ``PORCH_TEST_STORE``
names (SQLite by default, PostgreSQL with ``PORCH_TEST_STORE=postgres``); the replica test runs
two engines on one PostgreSQL database (skipped without the binaries unless
``PORCH_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
import pytest

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
from porch.engine.dbcontent import UNPUSHED, DbContentRepository, wrap_opener
from porch.errors import AlreadyExists, Conflict, PorchError, Unavailable
from porch.repository.git import GitRepository
from porch.repository.types import Author, Change, PackageRepository, RevisionInfo
from porch.server import make_opener
from porch.store.factory import open_store
from porch.store.types import ContentRow, Store
from porch.testing.git_server import GitHttpServer
from porch.testing.postgres import (
    PostgresServer,
    store_url_from_env,
)
from tests._pg import shared_server_or_skip

NS = "default"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"


class Injected(RuntimeError):
    pass


class FaultyGit:
    """The git adapter with a hook that can make ``publish`` fail after it moved refs."""

    def __init__(self, inner: GitRepository) -> None:
        self.inner = inner
        self.fail_publish = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        change = self.inner.publish(info, revision=revision, author=author)
        if self.fail_publish:
            change.undo()  # as a failed push leaves nothing behind
            raise Injected("publish failed")
        return change


@dataclass
class Env:
    root: Path
    store_url: str
    push_drafts: bool = False
    faults: dict[str, Callable[[], None]] = field(default_factory=dict)
    faulty: dict[str, FaultyGit] = field(default_factory=dict)
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = self._engine()

    def fault(self, point: str) -> None:
        action = self.faults.get(point)
        if action is not None:
            action()

    def opener(self) -> Callable[[Repository], PackageRepository]:
        plain = make_opener(self.root / "data")

        def open_git(repo: Repository) -> PackageRepository:
            inner = plain(repo)
            assert isinstance(inner, GitRepository)
            wrapped = FaultyGit(inner)
            self.faulty[repo.metadata.name] = wrapped
            return wrapped  # type: ignore[return-value]

        return open_git

    def _engine(self) -> Engine:
        store = open_store(self.store_url, self.root)
        opener = wrap_opener(self.opener(), store, push_drafts=self.push_drafts)
        engine = Engine(store=store, opener=opener, fault=self.fault)
        engine.start()
        return engine

    def restart(self) -> Engine:
        self.engine.close()
        self.engine = self._engine()
        return self.engine

    @property
    def store(self) -> Store:
        return self.engine.store

    def bare(self, name: str = "blue") -> pygit2.Repository:
        return pygit2.Repository(str(self.root / f"{name}.git"))

    def register(self, name: str = "blue", url: str = "") -> Repository:
        if not url:
            path = self.root / f"{name}.git"
            if not path.exists():
                pygit2.init_repository(str(path), bare=True, initial_head="main")
            url = str(path)
        return self.engine.register_repository(repository(name, url))

    def adapter(self, name: str = "blue") -> DbContentRepository:
        got = self.engine.repositories.adapter(self.engine.repositories.get(NS, name))
        assert isinstance(got, DbContentRepository)
        return got


def repository(name: str, url: str) -> Repository:
    return Repository(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=RepositorySpec(
            type="git", git=GitRepositorySpec(repo=url, branch="main", create_branch=True)
        ),
    )


def create(engine: Engine, package: str = "app", workspace: str = "ws1") -> PackageRevision:
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package,
                repository="blue",
                workspace_name=workspace,
                tasks=[
                    Task(type="init", init=PackageInitTaskSpec(description=f"{package} package"))
                ],
            ),
        )
    )


def add_file(engine: Engine, name: str, path: str = "cm.yaml", text: str = CM) -> None:
    prr = engine.get_resources(NS, name)
    prr.spec.resources = {**prr.spec.resources, path: text}
    engine.update_resources(prr)


def set_lifecycle(engine: Engine, name: str, lifecycle: str) -> PackageRevision:
    pr = engine.get(NS, name)
    pr.spec.lifecycle = lifecycle
    endpoint = Endpoint.APPROVAL if lifecycle == "Published" else Endpoint.MAIN
    return engine.update(pr, endpoint=endpoint)


def refs(repo: pygit2.Repository) -> dict[str, str]:
    return {r.name: str(r.target) for r in repo.references.iterator()}


def objects(repo: pygit2.Repository) -> set[str]:
    return {str(oid) for oid in repo.odb}


def package_tree(repo: pygit2.Repository, ref: str, package: str) -> str:
    commit = repo.revparse_single(ref).peel(pygit2.Commit)
    return str(commit.tree[package].id)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, store_url_from_env(tmp_path))
    yield e
    e.engine.close()


@pytest.fixture
def pushing(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, store_url_from_env(tmp_path), push_drafts=True)
    yield e
    e.engine.close()


# --- drafts stay out of git ------------------------------------------------------------------


def test_a_draft_creates_no_git_ref_or_commit(env: Env) -> None:
    env.register()
    bare = env.bare()
    before_refs, before_objects = refs(bare), objects(bare)
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    set_lifecycle(env.engine, pr.metadata.name, "Draft")  # rejected back
    labelled = env.engine.get(NS, pr.metadata.name)
    labelled.metadata.labels["team"] = "a"
    env.engine.update(labelled)
    other = create(env.engine, "other")
    env.engine.delete(NS, other.metadata.name)
    # Nothing reached the git repository: not a ref, not a single object.
    assert refs(bare) == before_refs
    assert objects(bare) == before_objects
    got = env.engine.get_resources(NS, pr.metadata.name)
    assert got.spec.resources["cm.yaml"] == CM
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None and row.lifecycle == "Draft"
    assert row.version.startswith(UNPUSHED) and row.files == got.spec.resources
    assert env.store.get_content(NS, "blue", "other", "ws1") is None
    current = env.engine.get(NS, pr.metadata.name)
    assert current.status.self_lock is not None and current.status.self_lock.git is not None
    assert current.status.self_lock.git.ref == "drafts/app/ws1"
    assert current.status.self_lock.git.commit == row.version


def test_publish_writes_git_byte_identical_to_git_mode(env: Env, tmp_path: Path) -> None:
    env.register()
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    published = set_lifecycle(env.engine, pr.metadata.name, "Published")
    assert published.spec.revision == 1 and published.spec.lifecycle == "Published"
    assert env.store.get_content(NS, "blue", "app", "ws1") is None  # git holds it now

    # The same steps in git mode, on a repository of its own.
    git_root = tmp_path / "gitmode"
    git_root.mkdir()
    pygit2.init_repository(str(git_root / "blue.git"), bare=True, initial_head="main")
    git_engine = Engine(store=open_store("", git_root), opener=make_opener(git_root / "data"))
    try:
        git_engine.register_repository(repository("blue", str(git_root / "blue.git")))
        twin = create(git_engine)
        add_file(git_engine, twin.metadata.name)
        set_lifecycle(git_engine, twin.metadata.name, "Proposed")
        twin_published = set_lifecycle(git_engine, twin.metadata.name, "Published")
    finally:
        git_engine.close()
    db_repo = env.bare()
    git_repo = pygit2.Repository(str(git_root / "blue.git"))
    # The package tree (every file, byte for byte) is the same object, at the tag and on main.
    assert package_tree(db_repo, "refs/tags/app/v1", "app") == package_tree(
        git_repo, "refs/tags/app/v1", "app"
    )
    assert package_tree(db_repo, "refs/heads/main", "app") == package_tree(
        git_repo, "refs/heads/main", "app"
    )
    # Same refs (no working branch left behind), same discovered task and revision.
    assert sorted(refs(db_repo)) == sorted(refs(git_repo))
    assert [t.type for t in published.spec.tasks] == [t.type for t in twin_published.spec.tasks]
    found = {i.workspace: i for i in env.adapter().inner.list_revisions()}
    assert found["ws1"].revision == 1 and [t["type"] for t in found["ws1"].tasks] == ["init"]
    resources = env.engine.get_resources(NS, pr.metadata.name).spec.resources
    assert resources["cm.yaml"] == CM


def test_drafts_survive_a_restart(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    proposed = set_lifecycle(env.engine, create(env.engine, "two").metadata.name, "Proposed")
    before = {p.metadata.name: p.metadata.resource_version for p in env.engine.list(NS)[0]}
    engine = env.restart()
    after = {p.metadata.name: p.metadata.resource_version for p in engine.list(NS)[0]}
    assert after == before  # the start-up sync found nothing to change
    assert engine.get_resources(NS, pr.metadata.name).spec.resources["cm.yaml"] == CM
    assert engine.get(NS, proposed.metadata.name).spec.lifecycle == "Proposed"
    # And the restarted server goes on with them.
    set_lifecycle(engine, pr.metadata.name, "Proposed")
    assert set_lifecycle(engine, pr.metadata.name, "Published").spec.revision == 1


# --- publish failures ------------------------------------------------------------------------


def test_a_failed_publish_leaves_the_revision_proposed_and_git_untouched(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    proposed = set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    bare = env.bare()
    before_refs = refs(bare)
    env.faulty["blue"].fail_publish = True
    with pytest.raises(Injected):
        set_lifecycle(env.engine, pr.metadata.name, "Published")
    # The git draft made on the way to the tag is gone again; the store is as it was.
    assert refs(bare) == before_refs
    again = env.engine.get(NS, pr.metadata.name)
    assert again.spec.lifecycle == "Proposed" and again.spec.revision == 0
    assert again.metadata.resource_version == proposed.metadata.resource_version
    assert env.engine.get_resources(NS, pr.metadata.name).spec.resources["cm.yaml"] == CM
    env.faulty["blue"].fail_publish = False
    assert set_lifecycle(env.engine, pr.metadata.name, "Published").spec.revision == 1


def test_a_failure_after_publish_rolls_git_and_the_store_back(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    proposed = set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    bare = env.bare()
    before_refs, before_row = refs(bare), env.store.get_content(NS, "blue", "app", "ws1")

    def boom() -> None:
        raise Injected("store down")

    env.faults["approve:after-publish"] = boom
    with pytest.raises(Injected):
        set_lifecycle(env.engine, pr.metadata.name, "Published")
    assert refs(bare) == before_refs
    assert env.store.get_content(NS, "blue", "app", "ws1") == before_row
    assert env.engine.get(NS, pr.metadata.name).metadata.resource_version == (
        proposed.metadata.resource_version
    )
    del env.faults["approve:after-publish"]
    assert set_lifecycle(env.engine, pr.metadata.name, "Published").spec.revision == 1


def test_a_failed_create_leaves_no_stored_draft(env: Env) -> None:
    env.register()

    def boom() -> None:
        raise Injected("store down")

    env.faults["create:after-write"] = boom
    with pytest.raises(Injected):
        create(env.engine)
    assert env.store.list_contents(NS, "blue") == []
    assert env.engine.list(NS)[0] == []


def test_publish_to_an_unreachable_remote_stays_proposed(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    pygit2.init_repository(str(root / "blue.git"), bare=True, initial_head="main")
    with GitHttpServer(root) as server:
        env.register(url=server.repo_url("blue"))
        server.set_fault("500")  # the remote is down from here on
        pr = create(env.engine)  # drafts need no git at all
        add_file(env.engine, pr.metadata.name)
        proposed = set_lifecycle(env.engine, pr.metadata.name, "Proposed")
        with pytest.raises(PorchError) as failed:
            set_lifecycle(env.engine, pr.metadata.name, "Published")
        assert isinstance(failed.value, Unavailable) or failed.value.code >= 500
        again = env.engine.get(NS, pr.metadata.name)
        assert again.spec.lifecycle == "Proposed"
        assert again.metadata.resource_version == proposed.metadata.resource_version
        served = pygit2.Repository(str(root / "blue.git"))
        assert not [r for r in refs(served) if r.startswith(("refs/tags/", "refs/heads/pro"))]
        server.set_fault(None)
        published = set_lifecycle(env.engine, pr.metadata.name, "Published")
        assert published.spec.revision == 1
        assert "refs/tags/app/v1" in refs(served)
        assert not [
            r for r in refs(served) if r.startswith(("refs/heads/drafts/", "refs/heads/proposed/"))
        ]


# --- deletion --------------------------------------------------------------------------------


def test_deletion_proposal_is_kept_in_the_store_and_delete_writes_git(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    set_lifecycle(env.engine, pr.metadata.name, "Published")
    bare = env.bare()
    before = refs(bare)
    marked = set_lifecycle(env.engine, pr.metadata.name, "DeletionProposed")
    assert marked.spec.lifecycle == "DeletionProposed"
    assert refs(bare) == before  # no deletionProposed/ branch
    marker = env.store.get_content(NS, "blue", "app", "ws1")
    assert marker is not None and marker.lifecycle == "DeletionProposed" and marker.revision == 1
    engine = env.restart()  # the marker outlives a restart and its sync
    assert engine.get(NS, pr.metadata.name).spec.lifecycle == "DeletionProposed"
    back = set_lifecycle(engine, pr.metadata.name, "Published")
    assert back.spec.lifecycle == "Published"
    assert env.store.get_content(NS, "blue", "app", "ws1") is None
    set_lifecycle(engine, pr.metadata.name, "DeletionProposed")
    engine.delete(NS, pr.metadata.name)
    assert "refs/tags/app/v1" not in refs(bare)
    assert env.store.list_contents(NS, "blue") == []
    engine.sync_repository(NS, "blue")
    assert pr.metadata.name not in {p.metadata.name for p in engine.list(NS)[0]}


def test_unregistering_a_repository_drops_its_stored_drafts(env: Env) -> None:
    env.register()
    create(env.engine)
    assert env.store.list_contents(NS, "blue")
    env.engine.objects.delete("Repository", NS, "blue")
    assert env.store.list_contents(NS, "blue") == []


# --- sync and recovery -----------------------------------------------------------------------


def test_sync_recovers_a_publish_interrupted_after_git(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    proposed = set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    adapter = env.adapter()
    # A crash right after git published (tag and branch written), before the store changed.
    info = next(i for i in adapter.list_revisions() if i.workspace == "ws1")
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None and info.commit == proposed.status.self_lock.git.commit  # type: ignore[union-attr]
    git = adapter.inner
    draft = git.write(
        package="app",
        workspace="ws1",
        files=row.files or {},
        lifecycle=git_lifecycle("Proposed"),
        task=row.tasks[0],
        author=Author("x", "x@example.com"),
        base=None,
    )
    assert draft.info is not None
    git.publish(draft.info, revision=1, author=Author("x", "x@example.com"))
    notes = env.engine.sync_repository(NS, "blue")
    assert any("already published" in n for n in notes)
    assert env.store.get_content(NS, "blue", "app", "ws1") is None
    got = env.engine.get(NS, pr.metadata.name)
    assert got.spec.lifecycle == "Published" and got.spec.revision == 1


def test_a_git_draft_from_git_mode_is_listed_and_moves_into_the_store(env: Env) -> None:
    path = env.root / "blue.git"
    pygit2.init_repository(str(path), bare=True, initial_head="main")
    git_engine = Engine(store=open_store("", env.root / "gm"), opener=make_opener(env.root / "g"))
    try:
        git_engine.register_repository(repository("blue", str(path)))
        create(git_engine)
    finally:
        git_engine.close()
    env.register()
    listed = env.engine.list(NS)[0]
    draft = next(p for p in listed if p.spec.workspace_name == "ws1")
    assert draft.spec.lifecycle == "Draft"
    assert "refs/heads/drafts/app/ws1" in refs(env.bare())
    add_file(env.engine, draft.metadata.name)
    # Written once in DB mode, it lives in the store and its branch is gone.
    assert "refs/heads/drafts/app/ws1" not in refs(env.bare())
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None and row.files is not None and row.files["cm.yaml"] == CM
    assert [t["type"] for t in row.tasks] == ["init"]


def test_publish_after_a_crash_that_left_a_git_draft(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None
    # A crash after the git draft was written, before it was published: a stale copy.
    env.adapter().inner.write(
        package="app",
        workspace="ws1",
        files={"Kptfile": (row.files or {})["Kptfile"]},
        lifecycle=git_lifecycle("Draft"),
        task=row.tasks[0],
        author=Author("x", "x@example.com"),
        base=None,
    )
    assert "refs/heads/drafts/app/ws1" in refs(env.bare())
    env.engine.sync_repository(NS, "blue")  # the stored revision still wins
    assert env.engine.get(NS, pr.metadata.name).spec.lifecycle == "Proposed"
    published = set_lifecycle(env.engine, pr.metadata.name, "Published")
    assert published.spec.revision == 1
    names = refs(env.bare())
    assert not [n for n in names if n.startswith(("refs/heads/drafts/", "refs/heads/proposed/"))]
    # What was published is the stored content, not the stale git copy.
    assert env.engine.get_resources(NS, pr.metadata.name).spec.resources["cm.yaml"] == CM


def test_a_git_mode_server_refuses_a_store_holding_db_drafts(tmp_path: Path) -> None:
    from porch.errors import Invalid
    from porch.server import Settings, build_engine

    url = store_url_from_env(tmp_path)
    path = tmp_path / "blue.git"
    pygit2.init_repository(str(path), bare=True, initial_head="main")
    settings = Settings(data_dir=tmp_path / "data", store=url, content="db", sync=False)
    engine = build_engine(settings)
    try:
        engine.register_repository(repository("blue", str(path)))
        pr = create(engine)
    finally:
        engine.close()
    with pytest.raises(Invalid, match="start with --content db"):
        build_engine(Settings(data_dir=tmp_path / "data", store=url, sync=False))
    engine = build_engine(settings)  # DB mode again: the draft is all there
    try:
        assert engine.get(NS, pr.metadata.name).spec.lifecycle == "Draft"
        engine.delete(NS, pr.metadata.name)
    finally:
        engine.close()
    build_engine(Settings(data_dir=tmp_path / "data", store=url, sync=False)).close()


# --- --db-push-drafts-to-git -----------------------------------------------------------------


def test_pushed_drafts_are_mirrored_to_git_branches(pushing: Env) -> None:
    env = pushing
    env.register()
    pr = create(env.engine)
    add_file(env.engine, pr.metadata.name)
    bare = env.bare()
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None
    assert refs(bare).get("refs/heads/drafts/app/ws1") == row.version  # the mirror's commit
    assert env.engine.get(NS, pr.metadata.name).status.self_lock.git.commit == row.version  # type: ignore[union-attr]
    tree = bare[row.version].peel(pygit2.Commit).tree
    assert tree["app/cm.yaml"].data.decode() == CM  # type: ignore[union-attr]
    set_lifecycle(env.engine, pr.metadata.name, "Proposed")
    assert "refs/heads/drafts/app/ws1" not in refs(bare)
    assert "refs/heads/proposed/app/ws1" in refs(bare)
    published = set_lifecycle(env.engine, pr.metadata.name, "Published")
    assert published.spec.revision == 1
    names = refs(bare)
    assert "refs/tags/app/v1" in names
    assert not [n for n in names if n.startswith(("refs/heads/drafts/", "refs/heads/proposed/"))]
    assert env.store.list_contents(NS, "blue") == []
    # A deleted draft takes its mirror branch with it.
    doomed = create(env.engine, "other")
    assert "refs/heads/drafts/other/ws1" in refs(bare)
    env.engine.delete(NS, doomed.metadata.name)
    assert "refs/heads/drafts/other/ws1" not in refs(bare)


def test_push_mode_takes_over_a_git_mode_draft_on_its_branch(pushing: Env) -> None:
    env = pushing
    path = env.root / "blue.git"
    pygit2.init_repository(str(path), bare=True, initial_head="main")
    git_engine = Engine(store=open_store("", env.root / "gm"), opener=make_opener(env.root / "g"))
    try:
        git_engine.register_repository(repository("blue", str(path)))
        create(git_engine)
    finally:
        git_engine.close()
    env.register()
    draft = next(p for p in env.engine.list(NS)[0] if p.spec.workspace_name == "ws1")
    old = refs(env.bare())["refs/heads/drafts/app/ws1"]
    add_file(env.engine, draft.metadata.name)
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None and refs(env.bare())["refs/heads/drafts/app/ws1"] == row.version
    commit = env.bare()[row.version].peel(pygit2.Commit)
    assert [str(p) for p in commit.parent_ids] == [old]  # on top of the git-mode draft


def test_turning_push_on_mirrors_a_stored_draft_on_its_next_write(env: Env) -> None:
    env.register()
    pr = create(env.engine)
    env.push_drafts = True
    engine = env.restart()
    add_file(engine, pr.metadata.name)
    row = env.store.get_content(NS, "blue", "app", "ws1")
    assert row is not None and not row.version.startswith(UNPUSHED)
    assert refs(env.bare()).get("refs/heads/drafts/app/ws1") == row.version


# --- the adapter's own compare-and-swap --------------------------------------------------------


def test_stale_writes_are_refused(env: Env) -> None:
    env.register()
    create(env.engine)
    adapter = env.adapter()
    info = next(i for i in adapter.list_revisions() if i.workspace == "ws1")
    files = adapter.read_files(info)
    author = Author("a", "a@example.com")
    with pytest.raises(AlreadyExists):
        adapter.write(
            package="app",
            workspace="ws1",
            files=files,
            lifecycle=info.lifecycle,
            task=None,
            author=author,
            base=None,
        )
    first = adapter.write(
        package="app",
        workspace="ws1",
        files={**files, "x.txt": "x"},
        lifecycle=info.lifecycle,
        task=None,
        author=author,
        base=info,
    )
    with pytest.raises(Conflict):  # ``info`` is no longer the current version
        adapter.write(
            package="app",
            workspace="ws1",
            files=files,
            lifecycle=info.lifecycle,
            task=None,
            author=author,
            base=info,
        )
    first.undo()
    assert adapter.read_files(info) == files
    adapter.delete(info)
    with pytest.raises(Conflict, match="deleted meanwhile"):  # never brought back to life
        adapter.write(
            package="app",
            workspace="ws1",
            files=files,
            lifecycle=info.lifecycle,
            task=None,
            author=author,
            base=info,
        )
    assert env.store.get_content(NS, "blue", "app", "ws1") is None


# --- the store ---------------------------------------------------------------------------------


def test_store_keeps_content_rows(tmp_path: Path) -> None:
    store = open_store(store_url_from_env(tmp_path), tmp_path)
    try:
        row = ContentRow(
            namespace=NS,
            repository="blue",
            package="a/b",
            workspace="ws",
            lifecycle="Draft",
            version="db-1",
            ref="drafts/a/b/ws",
            tasks=[{"type": "init"}],
            author_name="n",
            author_email="e",
            updated_at="2026-01-01T00:00:00+00:00",
            files={"Kptfile": "x: ü\n", "big.yaml": "y" * 100_000},
        )
        with store.transaction() as txn:
            txn.put_content(row)
            assert store.get_content(NS, "blue", "a/b", "ws") == row  # seen inside
        assert store.get_content(NS, "blue", "a/b", "ws") == row
        listed = store.list_contents(NS, "blue")
        assert len(listed) == 1 and listed[0].files is None and listed[0].version == "db-1"
        with store.transaction() as txn:
            txn.put_content(
                ContentRow(NS, "blue", "a/b", "ws", "Proposed", "db-2", "proposed/a/b/ws")
            )
        got = store.get_content(NS, "blue", "a/b", "ws")
        assert got is not None and (got.lifecycle, got.version, got.files) == (
            "Proposed",
            "db-2",
            {},
        )
        with pytest.raises(Exception):  # noqa: B017 - each backend has its own CHECK error
            with store.transaction() as txn:
                txn.put_content(ContentRow(NS, "blue", "c", "ws", "Published", "v", "r"))
        assert store.get_content(NS, "blue", "c", "ws") is None
        with store.transaction() as txn:
            txn.put_content(ContentRow(NS, "green", "c", "ws", "Draft", "v", "r"))
            txn.delete_content(NS, "blue", "a/b", "ws")
        assert store.list_contents(NS, "blue") == []
        with store.transaction() as txn:
            txn.delete_contents(NS, "green")
        assert store.list_contents(NS, "green") == []
    finally:
        store.close()


# --- replicas on one PostgreSQL ----------------------------------------------------------------


@pytest.fixture
def pg() -> PostgresServer:
    return shared_server_or_skip()


def test_replicas_see_each_others_draft_contents(pg: PostgresServer, tmp_path: Path) -> None:
    dsn = pg.create_database()
    origin = tmp_path / "origin.git"
    pygit2.init_repository(str(origin), bare=True, initial_head="main")
    engines: list[Engine] = []
    try:
        for side in ("a", "b"):
            store = open_store(dsn, tmp_path / side)
            opener = wrap_opener(make_opener(tmp_path / side), store)
            engine = Engine(store=store, opener=opener)
            engine.start()
            engines.append(engine)
        a, b = engines
        a.register_repository(repository("blue", f"file://{origin}"))
        before = refs(pygit2.Repository(str(origin)))
        pr = create(a)
        add_file(a, pr.metadata.name)
        # B has no copy of its own: it reads the files A stored.
        assert b.get_resources(NS, pr.metadata.name).spec.resources["cm.yaml"] == CM
        prr = b.get_resources(NS, pr.metadata.name)
        prr.spec.resources = {**prr.spec.resources, "more.yaml": CM}
        b.update_resources(prr)
        assert a.get_resources(NS, pr.metadata.name).spec.resources["more.yaml"] == CM
        assert refs(pygit2.Repository(str(origin))) == before
        set_lifecycle(a, pr.metadata.name, "Proposed")
        assert set_lifecycle(b, pr.metadata.name, "Published").spec.revision == 1
        assert "refs/tags/app/v1" in refs(pygit2.Repository(str(origin)))
        assert a.get_resources(NS, pr.metadata.name).spec.resources["more.yaml"] == CM
    finally:
        for engine in engines:
            engine.close()
        pg.drop_database(dsn)


def git_lifecycle(value: str) -> Any:
    from porch.api.types import Lifecycle

    return Lifecycle(value)
