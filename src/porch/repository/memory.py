"""In-memory twin of the git adapter, for unit tests of the engine.

It keeps the same observable rules as git (one draft ref per package/workspace, a tag per
published revision, a placeholder per package on the branch, compare-and-swap on every ref) but
stores files in dicts. Tests that care about git itself use the real adapter.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, Conflict, Invalid, NotFound
from porch.repository.paths import check_package_files
from porch.repository.types import Author, Change, RevisionInfo

_counter = itertools.count(1)


@dataclass(frozen=True)
class _Entry:
    info: RevisionInfo
    files: dict[str, str]


class MemoryRepository:
    """A repository that lives in a dict; thread-safe, compare-and-swap like the git adapter."""

    def __init__(
        self,
        *,
        url: str = "memory://repo",
        branch: str = "main",
        directory: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._url = url
        self._branch = branch
        self._directory = directory.strip("/")
        self._clock = clock
        self._lock = threading.RLock()
        # ref name -> entry; ref names follow the git layout so tests read alike.
        self._refs: dict[str, _Entry] = {}
        self._markers: set[str] = set()

    @property
    def url(self) -> str:
        return self._url

    @property
    def branch(self) -> str:
        return self._branch

    @property
    def directory(self) -> str:
        return self._directory

    def _fp(self, package: str) -> str:
        return f"{self._directory}/{package}" if self._directory else package

    def _draft_ref(self, package: str, workspace: str, lifecycle: Lifecycle) -> str:
        prefix = "drafts" if lifecycle is Lifecycle.DRAFT else "proposed"
        return f"{prefix}/{self._fp(package)}/{workspace}"

    def _placeholder_ref(self, package: str) -> str:
        return f"{self._branch}:{package}"

    def fetch(self) -> None:
        return None

    def version(self) -> str:
        with self._lock:
            digest = hashlib.sha256()
            for name in sorted(self._refs):
                digest.update(f"{name}={self._refs[name].info.commit}\n".encode())
            for marker in sorted(self._markers):
                digest.update(f"marker {marker}\n".encode())
            return digest.hexdigest()

    def list_revisions(self) -> list[RevisionInfo]:
        with self._lock:
            out = []
            for entry in self._refs.values():
                info = entry.info
                if info.lifecycle.published_like:
                    marked = self._marker(info) in self._markers
                    lifecycle = Lifecycle.DELETION_PROPOSED if marked else Lifecycle.PUBLISHED
                    info = replace(info, lifecycle=lifecycle)
                out.append(info)
            return out

    def _marker(self, info: RevisionInfo) -> str:
        suffix = f"v{info.revision}" if info.revision > 0 else info.workspace
        return f"deletionProposed/{self._fp(info.package)}/{suffix}"

    def _ref_of(self, info: RevisionInfo) -> str:
        if info.revision == -1 and info.workspace == self._branch:
            return self._placeholder_ref(info.package)
        return info.ref

    def read_files(self, info: RevisionInfo) -> dict[str, str]:
        with self._lock:
            entry = self._refs.get(self._ref_of(info))
            if entry is None:
                raise NotFound(f"package revision {info.package}/{info.workspace} not found")
            return dict(entry.files)

    def _restore(self, saved: dict[str, _Entry | None], markers: set[str] | None) -> None:
        with self._lock:
            for ref, entry in saved.items():
                if entry is None:
                    self._refs.pop(ref, None)
                else:
                    self._refs[ref] = entry
            if markers is not None:
                self._markers = set(markers)

    def _undo(self, refs: list[str], markers: bool = False) -> Callable[[], None]:
        saved = {ref: self._refs.get(ref) for ref in refs}
        saved_markers = set(self._markers) if markers else None
        return lambda: self._restore(saved, saved_markers)

    def write(
        self,
        *,
        package: str,
        workspace: str,
        files: Mapping[str, str],
        lifecycle: Lifecycle,
        task: Mapping[str, Any] | None,
        author: Author,
        base: RevisionInfo | None,
    ) -> Change:
        if lifecycle not in (Lifecycle.DRAFT, Lifecycle.PROPOSED):
            raise Invalid(f"cannot write a {lifecycle} revision")
        check_package_files(files)
        with self._lock:
            ref = self._draft_ref(package, workspace, lifecycle)
            old_ref = base.ref if base else None
            undo = self._undo([ref] + ([old_ref] if old_ref else []))
            if base is None:
                if ref in self._refs:
                    raise AlreadyExists(f"reference refs/heads/{ref} already exists")
                tasks: tuple[dict[str, Any], ...] = (dict(task),) if task else ()
            else:
                current = self._refs.get(base.ref)
                if current is None or current.info.commit != base.commit:
                    raise Conflict(f"reference refs/heads/{base.ref} was modified concurrently")
                if ref != base.ref and ref in self._refs:
                    raise AlreadyExists(f"reference refs/heads/{ref} already exists")
                tasks = base.tasks
                if task and task.get("type") in ("init", "clone", "edit", "upgrade"):
                    tasks = (dict(task),)
            info = RevisionInfo(
                package=package,
                workspace=workspace,
                revision=0,
                lifecycle=lifecycle,
                commit=f"{next(_counter):040x}",
                ref=ref,
                tasks=tasks,
                published_by=author.email,
                published_at=self._clock(),
            )
            if old_ref and old_ref != ref:
                del self._refs[old_ref]
            self._refs[ref] = _Entry(info, dict(files))
            return Change(info, undo)

    def set_lifecycle(self, info: RevisionInfo, lifecycle: Lifecycle) -> Change:
        with self._lock:
            ref = self._ref_of(info)
            current = self._refs.get(ref)
            if current is None or current.info.commit != info.commit:
                raise Conflict(f"reference {ref} was modified concurrently")
            if info.lifecycle.published_like and lifecycle.published_like:
                undo = self._undo([], markers=True)
                marker = self._marker(info)
                if lifecycle is Lifecycle.DELETION_PROPOSED:
                    self._markers.add(marker)
                else:
                    self._markers.discard(marker)
                return Change(replace(info, lifecycle=lifecycle), undo)
            if info.lifecycle.published_like or lifecycle.published_like:
                raise Invalid(f"cannot move a revision from {info.lifecycle} to {lifecycle}")
            new_ref = self._draft_ref(info.package, info.workspace, lifecycle)
            undo = self._undo([ref, new_ref])
            if new_ref != ref and new_ref in self._refs:
                raise AlreadyExists(f"reference refs/heads/{new_ref} already exists")
            new_info = replace(info, lifecycle=lifecycle, ref=new_ref)
            del self._refs[ref]
            self._refs[new_ref] = _Entry(new_info, current.files)
            return Change(new_info, undo)

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        with self._lock:
            current = self._refs.get(info.ref)
            if current is None or current.info.commit != info.commit:
                raise Conflict(f"reference {info.ref} was modified concurrently")
            tag = f"{self._fp(info.package)}/v{revision}"
            placeholder = self._placeholder_ref(info.package)
            if tag in self._refs:
                raise AlreadyExists(f"tag {tag} already exists")
            undo = self._undo([info.ref, tag, placeholder])
            now = self._clock()
            commit = f"{next(_counter):040x}"
            published = replace(
                info,
                revision=revision,
                lifecycle=Lifecycle.PUBLISHED,
                commit=commit,
                ref=tag,
                published_by=author.email,
                published_at=now,
            )
            del self._refs[info.ref]
            self._refs[tag] = _Entry(published, current.files)
            self._refs[placeholder] = _Entry(
                replace(published, revision=-1, workspace=self._branch, ref=self._branch, tasks=()),
                current.files,
            )
            return Change(published, undo)

    def delete(self, info: RevisionInfo) -> Change:
        with self._lock:
            ref = self._ref_of(info)
            current = self._refs.get(ref)
            if current is None:
                raise NotFound(f"package revision {info.package}/{info.workspace} not found")
            if current.info.commit != info.commit:
                raise Conflict(f"reference {ref} was modified concurrently")
            undo = self._undo([ref], markers=True)
            del self._refs[ref]
            self._markers.discard(self._marker(info))
            return Change(None, undo)
