"""Helpers for tests of git-backed repositories: the git CLI as an independent witness."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from porch.api.types import Lifecycle
from porch.repository.git import GitRepository
from porch.repository.types import Author, Change, RevisionInfo

JANE = Author("Jane Doe", "jane@example.com")
KPTFILE = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: pkg\n"


def git(repo: Path, *args: str) -> str:
    """Run the git CLI against a bare repository and return stdout."""
    proc = subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def new_bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


def new_draft(
    repo: GitRepository,
    package: str,
    workspace: str,
    files: dict[str, str] | None = None,
    task: dict[str, Any] | None = None,
) -> Change:
    return repo.write(
        package=package,
        workspace=workspace,
        files=files if files is not None else {"Kptfile": KPTFILE},
        lifecycle=Lifecycle.DRAFT,
        task=task if task is not None else {"type": "init", "init": {"description": "d"}},
        author=JANE,
        base=None,
    )


def publish(repo: GitRepository, info: RevisionInfo, revision: int) -> RevisionInfo:
    proposed = repo.set_lifecycle(info, Lifecycle.PROPOSED).info
    assert proposed is not None
    published = repo.publish(proposed, revision=revision, author=JANE).info
    assert published is not None
    return published


def key(info: RevisionInfo) -> tuple[Any, ...]:
    """What must survive a restart: everything but publish timestamps' identity."""
    return (
        info.package,
        info.workspace,
        info.revision,
        info.lifecycle,
        info.commit,
        info.ref,
        info.tasks,
        info.published_by,
        info.published_at,
    )


def cli_commit(
    repo: Path,
    branch: str,
    files: dict[str, str | bytes],
    message: str,
    *,
    index: Path,
    remove: tuple[str, ...] = (),
) -> str:
    """Commit ``files`` on top of ``branch`` with git plumbing only (no adapter involved)."""
    env = {
        "GIT_INDEX_FILE": str(index),
        "GIT_AUTHOR_NAME": "Cli User",
        "GIT_AUTHOR_EMAIL": "cli@example.com",
        "GIT_COMMITTER_NAME": "Cli User",
        "GIT_COMMITTER_EMAIL": "cli@example.com",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }

    def run(*args: str, stdin: str | bytes | None = None) -> str:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            ["git", "--git-dir", str(repo), *args],
            input=data,
            capture_output=True,
            check=True,
            env=env,
        )
        return proc.stdout.decode().strip()

    parent = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if parent:
        run("read-tree", parent)
    else:
        run("read-tree", "--empty")
    for path in remove:
        run("update-index", "--force-remove", path)
    for path, content in files.items():
        blob = run("hash-object", "-w", "--stdin", stdin=content)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree")
    commit = run("commit-tree", tree, *(["-p", parent] if parent else []), stdin=message)
    run("update-ref", f"refs/heads/{branch}", commit)
    return commit


class FsckRegistry:
    def __init__(self) -> None:
        self.paths: list[Path] = []

    def add(self, path: Path) -> Path:
        self.paths.append(path)
        return path

    def check(self) -> None:
        for path in self.paths:
            if not (path / "HEAD").exists():
                continue
            proc = subprocess.run(
                ["git", "--git-dir", str(path), "fsck", "--strict", "--no-progress"],
                capture_output=True,
                text=True,
                check=False,
            )
            problems = [
                line
                for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and not line.startswith(("dangling ", "Checking ", "notice: "))
            ]
            assert proc.returncode == 0 and not problems, f"fsck of {path}: {problems}"
