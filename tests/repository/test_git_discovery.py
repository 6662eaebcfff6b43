"""Discovery from refs alone (spec §5.3, §1.4): a restart must see what was written."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import porch.repository.git.history as history
from porch.api.types import Lifecycle
from porch.repository.git import GitRepository, trailers
from porch.repository.types import RevisionInfo
from porch.testing.git_repos import JANE, KPTFILE, cli_commit, git, key, new_draft, publish

BUNDLE = (
    Path(__file__).resolve().parents[3] / "shared/conformance/porch-fixtures/test-blueprints.bundle"
)


def summary(infos: list[RevisionInfo]) -> set[tuple[str, str, int, Lifecycle, str]]:
    return {(i.package, i.workspace, i.revision, i.lifecycle, i.ref) for i in infos}


def _build_history(repo: GitRepository) -> None:
    v1 = new_draft(repo, "net/vpc", "v1").info
    assert v1 is not None
    published = publish(repo, v1, 1)
    edit = {"type": "edit", "edit": {"sourceRef": {"name": "repo.net.vpc.v1"}}}
    v2 = new_draft(repo, "net/vpc", "v2", task=edit).info
    assert v2 is not None
    repo.write(
        package="net/vpc",
        workspace="v2",
        files={"Kptfile": KPTFILE, "x.yaml": "x: 1\n"},
        lifecycle=Lifecycle.PROPOSED,
        task={"type": "render"},
        author=JANE,
        base=v2,
    )
    repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED)
    new_draft(repo, "bucket", "first")


def test_rediscovery_matches_what_was_written(bare: Path, repo: GitRepository) -> None:
    _build_history(repo)
    before = repo.list_revisions()
    assert summary(before) == {
        ("net/vpc", "v1", 1, Lifecycle.DELETION_PROPOSED, "net/vpc/v1"),
        ("net/vpc", "v2", 0, Lifecycle.PROPOSED, "proposed/net/vpc/v2"),
        ("net/vpc", "main", -1, Lifecycle.PUBLISHED, "main"),
        ("bucket", "first", 0, Lifecycle.DRAFT, "drafts/bucket/first"),
    }
    tasks = {i.workspace: i.tasks for i in before if i.package == "net/vpc"}
    assert tasks["v1"][0]["type"] == "init"
    assert tasks["v2"][0]["type"] == "edit"
    assert tasks["main"] == ()
    again = GitRepository(str(bare)).list_revisions()
    assert sorted(map(key, again)) == sorted(map(key, before))


def test_directory_scoped_repository(bare: Path) -> None:
    scoped = GitRepository(str(bare), directory="/blueprints/", create_branch=True)
    whole = GitRepository(str(bare))
    info = new_draft(scoped, "net/vpc", "ws").info
    assert info is not None and info.ref == "drafts/blueprints/net/vpc/ws"
    publish(scoped, info, 1)
    outside = new_draft(whole, "elsewhere", "ws").info
    assert outside is not None
    publish(whole, outside, 1)
    assert summary(scoped.list_revisions()) == {
        ("net/vpc", "ws", 1, Lifecycle.PUBLISHED, "blueprints/net/vpc/v1"),
        ("net/vpc", "main", -1, Lifecycle.PUBLISHED, "main"),
    }
    assert git(bare, "ls-tree", "-r", "--name-only", "main").split() == [
        "README.md",
        "blueprints/net/vpc/Kptfile",
        "elsewhere/Kptfile",
    ]


def test_placeholders_do_not_recurse_into_packages(bare: Path, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "a/Kptfile": KPTFILE,
        "a/sub/Kptfile": KPTFILE,
        "group/b/Kptfile": KPTFILE,
        "group/notes.txt": "no package here",
    }
    cli_commit(bare, "main", files, "by hand", index=tmp_path / "idx")
    infos = GitRepository(str(bare)).list_revisions()
    assert summary(infos) == {
        ("a", "main", -1, Lifecycle.PUBLISHED, "main"),
        ("group/b", "main", -1, Lifecycle.PUBLISHED, "main"),
    }
    # No porch trailer anywhere: nothing to report as publisher.
    assert all(i.published_by == "" and i.published_at is None for i in infos)


def test_tags_versions_and_foreign_tags(bare: Path, repo: GitRepository) -> None:
    info = new_draft(repo, "pkg", "ws").info
    assert info is not None
    published = publish(repo, info, 1)
    readme_only = git(bare, "rev-parse", f"{published.commit}^1").strip()
    git(bare, "tag", "v1.0", published.commit)  # release tag: no "/"
    git(bare, "tag", "pkg/v2.0.0", published.commit)
    git(bare, "tag", "-a", "-m", "annotated", "pkg/v3", published.commit)
    git(bare, "tag", "pkg/v9", readme_only)  # no Kptfile for pkg there
    git(bare, "tag", "nothere/v1", published.commit)
    infos = {i.ref: i for i in repo.list_revisions()}
    assert set(infos) == {"pkg/v1", "pkg/v2.0.0", "pkg/v3", "main"}
    assert (infos["pkg/v2.0.0"].revision, infos["pkg/v2.0.0"].workspace) == (-1, "ws")
    assert infos["pkg/v3"].commit == published.commit  # peeled through the tag object
    assert infos["pkg/v3"].revision == 3


def test_workspace_defaults_and_legacy_trailers(bare: Path, tmp_path: Path) -> None:
    legacy = 'Old porch\n\nkpt:{"package":"old","revision":"v1","task":{"type":"init"}}\n'
    commit = cli_commit(bare, "main", {"old/Kptfile": KPTFILE}, legacy, index=tmp_path / "i")
    git(bare, "tag", "old/v1", commit)
    git(bare, "tag", "old/2", commit)
    git(bare, "tag", "old/v2.0.0", commit)
    infos = {i.ref: i for i in GitRepository(str(bare)).list_revisions()}
    assert (infos["old/v1"].workspace, infos["old/v1"].tasks) == ("v1", ({"type": "init"},))
    assert (infos["old/2"].workspace, infos["old/2"].revision) == ("v2", 2)
    assert (infos["old/v2.0.0"].workspace, infos["old/v2.0.0"].revision) == ("v2.0.0", -1)
    assert infos["old/v1"].published_by == "cli@example.com"


def test_second_listing_reuses_caches(repo: GitRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    _build_history(repo)
    calls: list[str] = []
    original: Callable[[str], Any] = trailers.parse_annotations

    def counting(message: str) -> Any:
        calls.append(message)
        return original(message)

    monkeypatch.setattr(history, "parse_annotations", counting)
    fresh = GitRepository(repo.url)
    first = fresh.list_revisions()
    parsed_first = len(calls)
    assert parsed_first > 0
    assert fresh.list_revisions() == first
    assert len(calls) == parsed_first
    new_draft(fresh, "late", "ws")
    fresh.list_revisions()
    assert len(calls) == parsed_first + 1  # only the new commit was read


def test_version_changes_with_refs(bare: Path, repo: GitRepository) -> None:
    v0 = repo.version()
    assert repo.version() == v0
    new_draft(repo, "p", "ws")
    assert repo.version() != v0


def test_fixture_bundle(tmp_path: Path) -> None:
    if not BUNDLE.exists():
        pytest.skip(f"fixture bundle {BUNDLE} is not present")
    if shutil.which("git") is None:
        pytest.skip("git CLI not installed")
    target = tmp_path / "blueprints.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(BUNDLE), str(target)], check=True)
    infos = GitRepository(str(target)).list_revisions()
    tags = {(i.package, i.revision) for i in infos if i.revision > 0}
    assert tags == {
        ("basens", 1),
        ("basens", 2),
        ("basens", 3),
        ("basens", 4),
        ("bucket", 1),
        ("empty", 1),
        ("redis-bucket", 1),
        ("unready", 1),
        ("update", 1),
        ("update", 2),
    }
    placeholders = {i.package for i in infos if i.revision == -1}
    assert placeholders == {"basens", "bucket", "empty", "redis-bucket", "unready", "update"}
    assert all(i.lifecycle is Lifecycle.PUBLISHED for i in infos)
    basens = next(i for i in infos if i.ref == "basens/v4")
    assert basens.workspace == "v4"
    assert "Kptfile" in GitRepository(str(target)).read_files(basens)
