"""Listing package revisions from refs alone (spec §5.3)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pygit2.enums import ObjectType

from porch.api.types import Lifecycle
from porch.repository.types import RevisionInfo

from . import layout, trees
from .history import CommitIndex
from .layout import DELETION_PROPOSED, DRAFTS, HEADS, KPTFILE, PROPOSED, TAGS

Repo = Any


def refs_version(refs: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(refs):
        digest.update(f"{name} {refs[name]}\n".encode())
    return digest.hexdigest()


def signature_time(seconds: int, offset_minutes: int) -> datetime:
    tz = timezone(timedelta(minutes=offset_minutes)) if offset_minutes else UTC
    return datetime.fromtimestamp(seconds, tz=tz)


class Discovery:
    """Turns a ref snapshot into RevisionInfos, caching everything keyed by object id."""

    def __init__(self, repo: Repo, *, directory: str, branch: str) -> None:
        self._repo = repo
        self._directory = directory
        self._branch = branch
        self.index = CommitIndex(repo)
        self._peeled: dict[str, str | None] = {}
        self._kptfile: dict[tuple[str, str], bool] = {}
        self._packages: dict[str, list[str]] = {}
        self._last: tuple[str, list[RevisionInfo]] | None = None

    # --- building blocks shared with the adapter -------------------------------------------

    def peel(self, target: str) -> str | None:
        """The commit a ref target ends at (annotated tags peeled), None if not a commit."""
        if target not in self._peeled:
            try:
                obj = self._repo[target]
                while obj.type == ObjectType.TAG:
                    obj = self._repo[obj.target]
                self._peeled[target] = str(obj.id) if obj.type == ObjectType.COMMIT else None
            except (KeyError, ValueError):
                self._peeled[target] = None
        return self._peeled[target]

    def has_kptfile(self, commit: str, fp: str) -> bool:
        key = (self.index.meta(commit).tree, fp)
        if key not in self._kptfile:
            tree = self._repo[key[0]]
            self._kptfile[key] = trees.has_blob(self._repo, tree, f"{fp}/{KPTFILE}")
        return self._kptfile[key]

    def tag_workspace(self, commit: str, fp: str) -> str:
        for ann in self.index.annotations(commit):
            if ann.package == fp and ann.workspace:
                return ann.workspace
        return ""

    def revision_info(
        self,
        *,
        fp: str,
        workspace: str,
        revision: int,
        lifecycle: Lifecycle,
        commit: str,
        ref: str,
        published_from: str | None = None,
    ) -> RevisionInfo:
        package = layout.package_of(self._directory, fp)
        assert package is not None, f"{fp} is outside {self._directory}"
        self.index.add_tips([commit])
        task = self.index.creating_task(commit, fp, workspace)
        source = commit if published_from is None else published_from
        by, at = "", None
        if source:
            meta = self.index.meta(source)
            by, at = meta.author_email, signature_time(meta.author_time, meta.author_offset)
        return RevisionInfo(
            package=package,
            workspace=workspace,
            revision=revision,
            lifecycle=lifecycle,
            commit=commit,
            ref=ref,
            tasks=(dict(task),) if task is not None else (),
            published_by=by,
            published_at=at,
        )

    # --- listing ---------------------------------------------------------------------------

    def list_revisions(self, refs: Mapping[str, str]) -> list[RevisionInfo]:
        version = refs_version(refs)
        if self._last is not None and self._last[0] == version:
            return list(self._last[1])
        commits = {name: self.peel(target) for name, target in refs.items()}
        self.index.add_tips({c for c in commits.values() if c is not None})
        markers = {
            name[len(HEADS) :] for name in refs if name.startswith(HEADS + DELETION_PROPOSED)
        }
        found: list[RevisionInfo] = []
        for name in sorted(commits):
            commit = commits[name]
            if commit is None:
                continue
            if name.startswith(HEADS):
                found.extend(self._from_branch(name[len(HEADS) :], commit, markers))
            elif name.startswith(TAGS):
                info = self._from_tag(name[len(TAGS) :], commit, markers)
                if info is not None:
                    found.append(info)
        self._last = (version, found)
        return list(found)

    def _from_branch(self, branch: str, commit: str, markers: set[str]) -> list[RevisionInfo]:
        for prefix, lifecycle in ((DRAFTS, Lifecycle.DRAFT), (PROPOSED, Lifecycle.PROPOSED)):
            if branch.startswith(prefix):
                info = self._from_working_branch(branch, prefix, lifecycle, commit)
                return [info] if info is not None else []
        if branch == self._branch:
            return self._placeholders(commit, markers)
        return []

    def _from_working_branch(
        self, branch: str, prefix: str, lifecycle: Lifecycle, commit: str
    ) -> RevisionInfo | None:
        split = layout.split_workspace(branch[len(prefix) :])
        if split is None:
            return None
        fp, workspace = split
        if layout.package_of(self._directory, fp) is None or not self.has_kptfile(commit, fp):
            return None
        return self.revision_info(
            fp=fp, workspace=workspace, revision=0, lifecycle=lifecycle, commit=commit, ref=branch
        )

    def _from_tag(self, name: str, commit: str, markers: set[str]) -> RevisionInfo | None:
        fp, sep, version = name.rpartition("/")
        if not sep or not fp or not version:
            return None  # release tags such as "v1.0" are not package revisions
        if layout.package_of(self._directory, fp) is None or not self.has_kptfile(commit, fp):
            return None
        revision = layout.parse_revision(version)
        workspace = self.tag_workspace(commit, fp) or (
            f"v{revision}" if revision != -1 else version
        )
        marker = layout.deletion_marker(fp, revision, workspace)
        lifecycle = Lifecycle.DELETION_PROPOSED if marker in markers else Lifecycle.PUBLISHED
        return self.revision_info(
            fp=fp,
            workspace=workspace,
            revision=revision,
            lifecycle=lifecycle,
            commit=commit,
            ref=name,
        )

    def placeholder_packages(self, commit: str) -> list[str]:
        key = self.index.meta(commit).tree
        if key not in self._packages:
            tree = self._repo[key]
            self._packages[key] = trees.find_packages(self._repo, tree, self._directory)
        return self._packages[key]

    def placeholder(self, fp: str, commit: str, markers: set[str]) -> RevisionInfo:
        # Quirk kept from Porch (§1.4): a branch named like "v4" parses as revision 4.
        revision = layout.parse_revision(self._branch)
        marker = layout.deletion_marker(fp, revision, self._branch)
        return self.revision_info(
            fp=fp,
            workspace=self._branch,
            revision=revision,
            lifecycle=Lifecycle.DELETION_PROPOSED if marker in markers else Lifecycle.PUBLISHED,
            commit=commit,
            ref=self._branch,
            published_from=self.index.latest_touch(commit, fp) or "",
        )

    def _placeholders(self, commit: str, markers: set[str]) -> list[RevisionInfo]:
        return [self.placeholder(fp, commit, markers) for fp in self.placeholder_packages(commit)]
