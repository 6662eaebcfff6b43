"""Fetch one package from any git URL, for ``clone`` from a git upstream (spec §4.2).

The URL needs no registration: a bare mirror per URL is fetched (credentials as for a
registered repository), the ref resolved the way Porch tries it — ``<dir>/<ref>`` then
``<ref>``, each as a tag and as a branch, then a commit id — and the directory must hold a
Kptfile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from porch.errors import NotFound
from porch.waits import WaitLock

from .layout import REMOTE_HEADS, TAGS
from .locks import path_lock
from .remote import GitCredentials, RemoteRefStore, mirror_path, safe_url
from .trees import read_text_files, subtree


@dataclass(frozen=True)
class FetchedPackage:
    files: dict[str, str]
    commit: str


def _lock(path: Path, url: str) -> WaitLock:
    # Held across the mirror's fetch: waiting on it is waiting on that remote (porch.waits).
    # The same lock as a registered repository's on that mirror path (locks.py).
    return path_lock(path, f"the upstream mirror lock of {safe_url(url)}")


def _resolve(repo: Any, ref: str, directory: str) -> Any | None:
    names = [f"{directory}/{ref}", ref] if directory else [ref]
    for name in names:
        for full in (f"{TAGS}{name}", f"{REMOTE_HEADS}{name}"):
            found = repo.references.get(full)
            if found is not None:
                return found.peel(pygit2.Commit)
    try:
        return repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def fetch_package(
    url: str,
    *,
    ref: str,
    directory: str,
    mirror_dir: Path,
    credentials: GitCredentials | None = None,
) -> FetchedPackage:
    directory = directory.strip("/")
    path = mirror_path(mirror_dir, url)
    with _lock(path, url):
        repo = RemoteRefStore.open_mirror(path)
        RemoteRefStore(repo, url, credentials).fetch()
        commit = _resolve(repo, ref or "main", directory)
        tree = subtree(repo, commit.tree, directory) if commit is not None else None
        if commit is None or tree is None or "Kptfile" not in tree:
            raise NotFound(f"cannot find package {directory}@{ref}")
        return FetchedPackage(read_text_files(repo, tree, directory), str(commit.id))
