"""Compare-and-swap ref updates, publish retries and exact undo (spec §5.1, §3.7)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, Conflict
from porch.repository.git import GitRepository
from porch.repository.git.refs import RefUpdate
from porch.repository.types import Change, RevisionInfo
from porch.testing.git_repos import JANE, KPTFILE, git, new_draft, publish, refs


def _draft(repo: GitRepository, package: str = "pkg", workspace: str = "ws") -> RevisionInfo:
    info = new_draft(repo, package, workspace).info
    assert info is not None
    return info


def test_racing_creates_of_one_draft(bare: Path) -> None:
    first = GitRepository(str(bare), create_branch=True)
    second = GitRepository(str(bare))
    first.list_revisions()
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def create(repo: GitRepository) -> None:
        barrier.wait()
        try:
            outcomes.append(new_draft(repo, "pkg", "ws").info)
        except AlreadyExists as err:
            outcomes.append(err)

    threads = [threading.Thread(target=create, args=(r,)) for r in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyExists", "RevisionInfo"]
    (winner,) = [o for o in outcomes if isinstance(o, RevisionInfo)]
    assert refs(bare)["refs/heads/drafts/pkg/ws"] == winner.commit


def test_stale_base_is_a_conflict(bare: Path) -> None:
    mine = GitRepository(str(bare), create_branch=True)
    theirs = GitRepository(str(bare))
    base = _draft(mine)
    theirs.write(
        package="pkg",
        workspace="ws",
        files={"Kptfile": KPTFILE, "theirs.yaml": "t: 1\n"},
        lifecycle=Lifecycle.DRAFT,
        task=None,
        author=JANE,
        base=base,
    )
    moved = refs(bare)
    with pytest.raises(Conflict, match="moved concurrently"):
        mine.write(
            package="pkg",
            workspace="ws",
            files={"Kptfile": KPTFILE},
            lifecycle=Lifecycle.DRAFT,
            task=None,
            author=JANE,
            base=base,
        )
    with pytest.raises(Conflict):
        mine.delete(base)
    with pytest.raises(Conflict):
        mine.set_lifecycle(base, Lifecycle.PROPOSED)
    assert refs(bare) == moved


def test_publish_rebuilds_on_a_branch_that_moved(
    bare: Path, repo: GitRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposed = repo.set_lifecycle(_draft(repo), Lifecycle.PROPOSED).info
    other = GitRepository(str(bare))
    intruder = _draft(other, "other")
    store = repo._store
    original = store.apply
    moved: list[str] = []

    def apply_after_someone_else(updates: Sequence[RefUpdate]) -> None:
        if not moved and any(u.name == "refs/heads/main" for u in updates):
            # Another writer publishes between our read of main and our update.
            moved.append(publish(other, intruder, 1).commit)
        original(updates)

    monkeypatch.setattr(store, "apply", apply_after_someone_else)
    assert proposed is not None
    info = repo.publish(proposed, revision=1, author=JANE).info
    assert info is not None
    parents = git(bare, "rev-list", "--parents", "-n1", info.commit).split()
    assert parents == [info.commit, moved[0], proposed.commit]
    names = git(bare, "ls-tree", "-r", "--name-only", "main").split()
    assert {"pkg/Kptfile", "other/Kptfile"} <= set(names)


def test_publish_gives_up_after_three_attempts(
    repo: GitRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposed = repo.set_lifecycle(_draft(repo), Lifecycle.PROPOSED).info
    assert proposed is not None
    attempts: list[int] = []

    def always_conflict(updates: Sequence[RefUpdate]) -> None:
        attempts.append(len(updates))
        raise Conflict("main was moved concurrently")

    monkeypatch.setattr(repo._store, "apply", always_conflict)
    monkeypatch.setattr(repo, "_retry_delay", 0.0)
    with pytest.raises(Conflict):
        repo.publish(proposed, revision=1, author=JANE)
    assert len(attempts) == 3


MUTATIONS = [
    "create",
    "rewrite-and-propose",
    "propose",
    "publish",
    "deletion-proposed",
    "delete-draft",
    "delete-tag",
    "delete-placeholder",
]


def _find(repo: GitRepository, ref: str) -> RevisionInfo:
    return next(i for i in repo.list_revisions() if i.ref == ref)


def _mutate(repo: GitRepository, name: str) -> Change:
    if name == "create":
        return new_draft(repo, "fresh", "ws")
    if name == "rewrite-and-propose":
        return repo.write(
            package="pkg",
            workspace="ws",
            files={"Kptfile": KPTFILE, "b.yaml": "b\n"},
            lifecycle=Lifecycle.PROPOSED,
            task=None,
            author=JANE,
            base=_find(repo, "drafts/pkg/ws"),
        )
    if name == "propose":
        return repo.set_lifecycle(_find(repo, "drafts/pkg/ws"), Lifecycle.PROPOSED)
    if name == "publish":
        return repo.publish(_find(repo, "drafts/pkg/ws"), revision=1, author=JANE)
    if name == "deletion-proposed":
        return repo.set_lifecycle(_find(repo, "done/v1"), Lifecycle.DELETION_PROPOSED)
    if name == "delete-draft":
        return repo.delete(_find(repo, "drafts/pkg/ws"))
    if name == "delete-tag":
        return repo.delete(_find(repo, "gone/v1"))
    placeholder = next(i for i in repo.list_revisions() if i.ref == "main" and i.package == "done")
    return repo.delete(placeholder)


@pytest.mark.parametrize("name", MUTATIONS)
def test_undo_restores_refs_exactly(name: str, bare: Path, repo: GitRepository) -> None:
    publish(repo, _draft(repo, "done"), 1)
    gone = publish(repo, _draft(repo, "gone"), 1)
    repo.set_lifecycle(gone, Lifecycle.DELETION_PROPOSED)
    _draft(repo, "pkg")
    before = refs(bare)
    change = _mutate(repo, name)
    assert refs(bare) != before
    change.undo()
    assert refs(bare) == before
    change.undo()  # nothing left to do: must neither fail nor move anything
    assert refs(bare) == before


def test_undo_refuses_to_clobber_a_later_change(bare: Path, repo: GitRepository) -> None:
    draft = _draft(repo)
    change = repo.set_lifecycle(draft, Lifecycle.PROPOSED)
    proposed = change.info
    assert proposed is not None
    repo.write(
        package="pkg",
        workspace="ws",
        files={"Kptfile": KPTFILE, "later.yaml": "l\n"},
        lifecycle=Lifecycle.PROPOSED,
        task=None,
        author=JANE,
        base=proposed,
    )
    after = refs(bare)
    with pytest.raises(Conflict):
        change.undo()
    assert refs(bare) == after
