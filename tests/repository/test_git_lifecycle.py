"""Every lifecycle step of the git adapter, checked with the git CLI (spec §5.1, §5.2, §2.4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, BadRequest, Forbidden, Invalid, NotFound
from porch.repository.git import GitRepository
from porch.repository.types import PORCH_AUTHOR, RevisionInfo
from porch.testing.git_repos import JANE, KPTFILE, cli_commit, git, new_draft, publish, refs

INIT = {"type": "init", "init": {"description": "d"}}


def trailer(message: str) -> dict[str, object]:
    lines = [line for line in message.splitlines() if line.startswith("kpt:")]
    assert len(lines) == 1, message
    parsed: dict[str, object] = json.loads(lines[0][4:])
    return parsed


def test_create_branch_writes_readme(bare: Path, repo: GitRepository) -> None:
    repo.list_revisions()
    assert git(bare, "log", "--format=%s|%an <%ae>", "main").splitlines() == [
        "Initial commit: Creating main branch|Package Orchestration Service <porch@kpt.dev>"
    ]
    assert git(bare, "show", "main:README.md") == "Created by porch"


def test_missing_branch_without_create_branch(bare: Path, tmp_path: Path) -> None:
    cli_commit(bare, "other", {"x": "y"}, "unrelated", index=tmp_path / "idx")
    repo = GitRepository(str(bare))
    with pytest.raises(NotFound, match='branch "main" doesn\'t exist'):
        new_draft(repo, "p", "ws")


def test_empty_repository_accepts_parentless_draft(bare: Path) -> None:
    info = new_draft(GitRepository(str(bare)), "p", "ws").info
    assert info is not None
    assert git(bare, "rev-list", "--parents", "-n1", info.commit).split() == [info.commit]


def test_draft_commit_layout(bare: Path, repo: GitRepository) -> None:
    files = {"Kptfile": KPTFILE, "deploy/app.yaml": "a: 1\n"}
    info = new_draft(repo, "net/vpc", "ws1", files).info
    assert info is not None
    main = refs(bare)["refs/heads/main"]
    assert refs(bare)["refs/heads/drafts/net/vpc/ws1"] == info.commit
    assert (info.package, info.workspace, info.revision) == ("net/vpc", "ws1", 0)
    assert (info.lifecycle, info.ref, info.tasks) == (
        Lifecycle.DRAFT,
        "drafts/net/vpc/ws1",
        (INIT,),
    )
    assert git(bare, "rev-list", "--parents", "-n1", info.commit).split() == [info.commit, main]
    assert git(bare, "log", "-1", "--format=%B", info.commit) == (
        "Creating new empty revision\n\n"
        'kpt:{"package":"net/vpc","workspaceName":"ws1","revision":"0",'
        '"task":{"type":"init","init":{"description":"d"}}}\n\n'
    )
    assert git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", info.commit).strip() == (
        "Jane Doe <jane@example.com>|Package Orchestration Service <porch@kpt.dev>"
    )
    assert git(bare, "ls-tree", "-r", "--name-only", info.commit).split() == [
        "README.md",
        "net/vpc/Kptfile",
        "net/vpc/deploy/app.yaml",
    ]


def test_write_replaces_the_package_directory_only(bare: Path, repo: GitRepository) -> None:
    other = publish(repo, _draft(repo, "other"), 1)
    first = new_draft(repo, "pkg", "ws", {"Kptfile": KPTFILE, "old.yaml": "o: 1\n"}).info
    assert first is not None
    second = repo.write(
        package="pkg",
        workspace="ws",
        files={"Kptfile": KPTFILE, "new/a.yaml": "n: 1\n"},
        lifecycle=Lifecycle.DRAFT,
        task={"type": "render"},
        author=JANE,
        base=first,
    ).info
    assert second is not None
    assert git(bare, "ls-tree", "-r", "--name-only", second.commit, "pkg").split() == [
        "pkg/Kptfile",
        "pkg/new/a.yaml",
    ]
    # Siblings keep their very tree objects: nothing outside the package was rebuilt.
    assert git(bare, "rev-parse", f"{second.commit}:other") == git(
        bare, "rev-parse", f"{other.commit}:other"
    )
    assert git(bare, "log", "-1", "--format=%s", second.commit).strip() == "Rendering package"
    assert second.tasks == (INIT,)  # the creating task, found in history
    assert repo.read_files(second) == {"Kptfile": KPTFILE, "new/a.yaml": "n: 1\n"}


def test_propose_renames_branch_keeping_commit(bare: Path, repo: GitRepository) -> None:
    draft = _draft(repo, "pkg")
    proposed = repo.set_lifecycle(draft, Lifecycle.PROPOSED).info
    assert proposed is not None and proposed.ref == "proposed/pkg/ws"
    heads = refs(bare)
    assert heads["refs/heads/proposed/pkg/ws"] == draft.commit
    assert "refs/heads/drafts/pkg/ws" not in heads
    back = repo.set_lifecycle(proposed, Lifecycle.DRAFT).info
    assert back is not None and back.ref == "drafts/pkg/ws"
    assert "refs/heads/proposed/pkg/ws" not in refs(bare)


def test_publish_makes_two_parent_commit_and_tag(bare: Path, repo: GitRepository) -> None:
    draft = _draft(repo, "net/vpc")
    main_before = refs(bare)["refs/heads/main"]
    info = publish(repo, draft, 1)
    after = refs(bare)
    assert after["refs/tags/net/vpc/v1"] == after["refs/heads/main"] == info.commit
    assert not any(
        name.startswith(("refs/heads/drafts/", "refs/heads/proposed/")) for name in after
    )
    assert git(bare, "rev-list", "--parents", "-n1", info.commit).split() == [
        info.commit,
        main_before,
        draft.commit,
    ]
    message = git(bare, "log", "-1", "--format=%B", info.commit)
    assert message.splitlines()[0] == "Approving package revision net/vpc/1"
    assert trailer(message) == {"package": "net/vpc", "workspaceName": "ws", "revision": "1"}
    assert git(bare, "rev-parse", f"{info.commit}:net/vpc") == git(
        bare, "rev-parse", f"{draft.commit}:net/vpc"
    )
    assert (info.revision, info.lifecycle, info.ref) == (1, Lifecycle.PUBLISHED, "net/vpc/v1")
    assert info.published_by == JANE.email and info.tasks == (INIT,)
    with pytest.raises(AlreadyExists):
        publish(repo, _draft(repo, "net/vpc", "ws2"), 1)


def test_deletion_proposed_marker(bare: Path, repo: GitRepository) -> None:
    published = publish(repo, _draft(repo, "pkg"), 1)
    marked = repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED).info
    assert marked is not None and marked.lifecycle is Lifecycle.DELETION_PROPOSED
    assert refs(bare)["refs/heads/deletionProposed/pkg/v1"] == published.commit
    listed = {(i.workspace, i.revision): i.lifecycle for i in repo.list_revisions()}
    assert listed[("ws", 1)] is Lifecycle.DELETION_PROPOSED
    assert listed[("main", -1)] is Lifecycle.PUBLISHED
    repo.set_lifecycle(marked, Lifecycle.PUBLISHED)
    assert "refs/heads/deletionProposed/pkg/v1" not in refs(bare)


def test_delete_draft_and_proposed(bare: Path, repo: GitRepository) -> None:
    draft = _draft(repo, "a")
    proposed = repo.set_lifecycle(_draft(repo, "b"), Lifecycle.PROPOSED).info
    assert proposed is not None
    assert repo.delete(draft).info is None
    repo.delete(proposed)
    assert not [n for n in refs(bare) if n.startswith(("refs/heads/drafts", "refs/heads/prop"))]


def test_delete_numbered_revision_keeps_branch_content(bare: Path, repo: GitRepository) -> None:
    published = publish(repo, _draft(repo, "pkg"), 1)
    marked = repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED).info
    assert marked is not None
    main = refs(bare)["refs/heads/main"]
    repo.delete(marked)
    after = refs(bare)
    assert "refs/tags/pkg/v1" not in after and "refs/heads/deletionProposed/pkg/v1" not in after
    assert after["refs/heads/main"] == main
    assert "pkg/Kptfile" in git(bare, "ls-tree", "-r", "--name-only", "main")


def test_delete_placeholder_commits_removal(bare: Path, repo: GitRepository) -> None:
    publish(repo, _draft(repo, "pkg"), 1)
    publish(repo, _draft(repo, "keep"), 1)
    (placeholder,) = [i for i in repo.list_revisions() if i.ref == "main" and i.package == "pkg"]
    marked = repo.set_lifecycle(placeholder, Lifecycle.DELETION_PROPOSED).info
    assert marked is not None
    assert refs(bare)["refs/heads/deletionProposed/pkg/main"] == placeholder.commit
    repo.delete(marked)
    after = refs(bare)
    assert "refs/heads/deletionProposed/pkg/main" not in after
    assert git(bare, "log", "-1", "--format=%s|%an", "main").strip() == (
        f"Delete pkg|{PORCH_AUTHOR.name}"
    )
    names = git(bare, "ls-tree", "-r", "--name-only", "main").split()
    assert "keep/Kptfile" in names and not any(n.startswith("pkg/") for n in names)
    assert "refs/tags/pkg/v1" in after


def test_only_package_specific_tags_can_be_deleted(
    bare: Path, repo: GitRepository, tmp_path: Path
) -> None:
    publish(repo, _draft(repo, "pkg"), 1)
    git(bare, "tag", "pkg/v2.0.0", "main")
    (release,) = [i for i in repo.list_revisions() if i.ref == "pkg/v2.0.0"]
    with pytest.raises(Forbidden, match="not specific to the package"):
        repo.delete(release)
    assert "refs/tags/pkg/v2.0.0" in refs(bare)


def test_rejects_bad_input(repo: GitRepository) -> None:
    with pytest.raises(BadRequest):
        new_draft(repo, "pkg", "ws", {"Kptfile": KPTFILE, "../escape": "x"})
    with pytest.raises(Invalid, match="Kptfile"):
        new_draft(repo, "pkg", "ws", {"README.md": "x"})
    for package, workspace in [("../pkg", "ws"), ("pkg", "a/b"), ("pkg", "x..y"), ("p q", "ws")]:
        with pytest.raises(BadRequest):
            new_draft(repo, package, workspace)
    with pytest.raises(Invalid):
        repo.publish(publish(repo, _draft(repo, "p"), 1), revision=2, author=JANE)


def test_read_files_includes_subpackages_and_rejects_binary(
    bare: Path, repo: GitRepository, tmp_path: Path
) -> None:
    files = {"Kptfile": KPTFILE, "sub/Kptfile": KPTFILE, "sub/x.yaml": "x: 1\n"}
    info = new_draft(repo, "pkg", "ws", files).info
    assert info is not None
    assert repo.read_files(info) == files
    commit = cli_commit(
        bare, "drafts/pkg/ws", {"pkg/bin": b"\xff\xfe"}, "bin", index=tmp_path / "i"
    )
    broken = RevisionInfo("pkg", "ws", 0, Lifecycle.DRAFT, commit, "drafts/pkg/ws")
    with pytest.raises(Invalid, match="pkg/bin"):
        repo.read_files(broken)


def test_recover_finishes_interrupted_publish(bare: Path, repo: GitRepository) -> None:
    draft = _draft(repo, "pkg")
    proposed = repo.set_lifecycle(draft, Lifecycle.PROPOSED).info
    assert proposed is not None
    published = repo.publish(proposed, revision=1, author=JANE).info
    assert published is not None
    # Simulate a crash after the tag was written but before the branches were tidied.
    parent = git(bare, "rev-parse", f"{published.commit}^1").strip()
    git(bare, "update-ref", "refs/heads/main", parent)
    git(bare, "update-ref", "refs/heads/proposed/pkg/ws", draft.commit)
    lines = GitRepository(str(bare)).recover()
    assert lines == [
        "moved branch main to the approval commit of pkg/v1",
        "deleted branch proposed/pkg/ws: already published as pkg/v1",
    ]
    after = refs(bare)
    assert after["refs/heads/main"] == published.commit
    assert "refs/heads/proposed/pkg/ws" not in after
    assert GitRepository(str(bare)).recover() == []


def _draft(repo: GitRepository, package: str, workspace: str = "ws") -> RevisionInfo:
    info = new_draft(repo, package, workspace).info
    assert info is not None
    return info
