"""``GitRepository``: the PackageRepository of spec §5.1–§5.4 on pygit2."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import ObjectType

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, Conflict, Forbidden, Invalid, NotFound
from porch.repository.types import PORCH_AUTHOR, Author, Change, RevisionInfo
from porch.waits import WaitLock

from . import layout, trailers, trees
from .discovery import Discovery, refs_version
from .layout import DELETION_PROPOSED, DRAFTS, HEADS, PROPOSED, head, tag
from .locks import path_lock
from .recovery import finish_interrupted_publishes, remove_stale_ref_locks
from .refs import LocalRefStore, RefStore, RefUpdate, revert
from .remote import GitCredentials, RemoteRefStore, mirror_path, safe_url

Clock = Callable[[], datetime]

_WORKING = (Lifecycle.DRAFT, Lifecycle.PROPOSED)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _lock_for(path: Path, where: str) -> WaitLock:
    # Objects opened on the same on-disk repository (or mirror) share one lock (locks.py).
    return path_lock(path, f"the git lock of {where}")


def _signature(who: Author, when: datetime) -> Any:
    name = "".join(c for c in who.name if c not in "<>\n") or PORCH_AUTHOR.name
    email = "".join(c for c in who.email if c not in "<>\n") or PORCH_AUTHOR.email
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    return pygit2.Signature(name, email, int(when.timestamp()), minutes)


class GitRepository:
    """A Porch repository stored in git: a local bare repository or a remote URL."""

    def __init__(
        self,
        path_or_url: str,
        *,
        branch: str = "main",
        directory: str = "",
        create_branch: bool = False,
        mirror_dir: Path | None = None,
        credentials: GitCredentials | None = None,
        clock: Clock = _utc_now,
        retries: int = 3,
        retry_delay: float = 0.2,
    ) -> None:
        self._branch = branch
        self._directory = layout.clean_directory(directory)
        self._create_branch = create_branch
        self._clock = clock
        self._retries = max(1, retries)
        self._retry_delay = retry_delay
        self._opened = False
        self._store: RefStore
        if "://" in path_or_url:
            self._url = safe_url(path_or_url)
            base = mirror_dir or Path(tempfile.gettempdir()) / "porch-git-mirrors"
            path = mirror_path(base, path_or_url)
            self._lock = _lock_for(path, self._url)
            with self._lock:
                self._repo = RemoteRefStore.open_mirror(path)
                self._store = RemoteRefStore(self._repo, path_or_url, credentials)
        else:
            path = Path(path_or_url).resolve()
            self._url = path_or_url
            self._lock = _lock_for(path, str(path))
            try:
                self._repo = pygit2.Repository(str(path))
            except (pygit2.GitError, KeyError):
                raise NotFound(f"git repository {path_or_url} not found") from None
            self._store = LocalRefStore(self._repo)
        self._discovery = Discovery(self._repo, directory=self._directory, branch=branch)

    # --- PackageRepository: properties and reads --------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def branch(self) -> str:
        return self._branch

    @property
    def directory(self) -> str:
        return self._directory

    def fetch(self) -> None:
        with self._lock:
            if self._opened:
                self._store.fetch()
            else:
                self._open()

    def version(self) -> str:
        with self._lock:
            self._open()
            return refs_version(self._store.snapshot())

    def list_revisions(self) -> list[RevisionInfo]:
        with self._lock:
            self._open()
            return self._discovery.list_revisions(self._store.snapshot())

    def branch_head(self) -> str:
        """The registered branch's head commit ("" when the branch does not exist yet)."""
        with self._lock:
            self._open()
            target = self._store.get(head(self._branch))
            return (self._discovery.peel(target) or "") if target else ""

    def listing(self) -> tuple[str, list[RevisionInfo]]:
        """``version()`` and ``list_revisions()`` of one and the same ref snapshot."""
        with self._lock:
            self._open()
            refs = self._store.snapshot()
            return refs_version(refs), self._discovery.list_revisions(refs)

    def read_files(self, info: RevisionInfo) -> dict[str, str]:
        fp = layout.full_path(self._directory, info.package)
        with self._lock:
            self._open()
            try:
                commit = self._repo[info.commit]
            except (KeyError, ValueError):
                raise NotFound(f"commit {info.commit} not found") from None
            tree = trees.subtree(self._repo, commit.tree, fp)
            if tree is None:
                raise NotFound(f"package {info.package} not found at {info.commit[:12]}")
            return trees.read_text_files(self._repo, tree, fp)

    def read_kptfile(self, info: RevisionInfo) -> str | None:
        """The package's Kptfile text alone (None when it has none): what indexing needs,
        without reading every file of the package."""
        fp = layout.full_path(self._directory, info.package)
        path = f"{fp}/{layout.KPTFILE}" if fp else layout.KPTFILE
        with self._lock:
            self._open()
            try:
                entry = self._repo[info.commit].tree[path]
            except (KeyError, ValueError):
                return None
            if entry.type != ObjectType.BLOB:
                return None
            try:
                return str(entry.data.decode("utf-8"))
            except UnicodeDecodeError:
                raise Invalid(f"file {path} is not valid UTF-8 text") from None

    # --- PackageRepository: writes ----------------------------------------------------------

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
        if lifecycle not in _WORKING:
            raise Invalid(f"cannot write a {lifecycle.value} package revision")
        layout.check_ref_names(package, workspace)
        encoded = layout.encode_files(files)
        fp = layout.full_path(self._directory, package)
        short = layout.lifecycle_branch(lifecycle, fp, workspace)
        target = head(short)
        message = trailers.revision_message(fp, workspace, task)
        with self._lock:
            self._open()
            if base is None:
                for other in _WORKING:
                    if self._store.get(head(layout.lifecycle_branch(other, fp, workspace))):
                        raise AlreadyExists(f"package revision {fp}/{workspace} already exists")
                parent = self._branch_head()
                updates = [RefUpdate(target, None, "")]
            else:
                parent = base.commit
                base_ref = head(base.ref) if base.lifecycle in _WORKING else None
                if base_ref == target:
                    updates = [RefUpdate(target, base.commit, "")]
                else:
                    updates = [RefUpdate(target, None, "")]
                    if base_ref is not None:
                        updates.append(RefUpdate(base_ref, base.commit, None))
            subtree = trees.build(self._repo, encoded)
            commit = self._commit([parent] if parent else [], fp, subtree, message, author)
            updates[0] = replace(updates[0], new=commit)
            self._store.apply(updates)
            info = self._discovery.revision_info(
                fp=fp,
                workspace=workspace,
                revision=0,
                lifecycle=lifecycle,
                commit=commit,
                ref=short,
            )
        return Change(info, self._undo(updates))

    def set_lifecycle(self, info: RevisionInfo, lifecycle: Lifecycle) -> Change:
        if lifecycle == info.lifecycle:
            return Change(info)
        fp = layout.full_path(self._directory, info.package)
        pair = {info.lifecycle, lifecycle}
        with self._lock:
            self._open()
            if pair == set(_WORKING):
                new_short = layout.lifecycle_branch(lifecycle, fp, info.workspace)
                old_ref = head(layout.lifecycle_branch(info.lifecycle, fp, info.workspace))
                updates = [
                    RefUpdate(head(new_short), None, info.commit),
                    RefUpdate(old_ref, info.commit, None),
                ]
                new_info = replace(info, lifecycle=lifecycle, ref=new_short)
            elif pair == {Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED}:
                marker = head(layout.deletion_marker(fp, info.revision, info.workspace))
                if lifecycle is Lifecycle.DELETION_PROPOSED:
                    updates = [RefUpdate(marker, None, info.commit)]
                else:
                    current = self._store.get(marker)
                    updates = [RefUpdate(marker, current, None)] if current else []
                new_info = replace(info, lifecycle=lifecycle)
            else:
                raise Invalid(
                    f"cannot change lifecycle from {info.lifecycle.value} to {lifecycle.value}"
                )
            self._store.apply(updates)
        return Change(new_info, self._undo(updates))

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        if info.lifecycle not in _WORKING:
            raise Invalid(f"cannot publish a {info.lifecycle.value} package revision")
        if revision <= 0:
            raise Invalid(f"revision must be positive, not {revision}")
        fp = layout.full_path(self._directory, info.package)
        tag_short = layout.tag_name(fp, revision)
        working = head(layout.lifecycle_branch(info.lifecycle, fp, info.workspace))
        message = trailers.approval_message(fp, info.workspace, revision)
        with self._lock:
            self._open()
            package_tree = trees.subtree(self._repo, self._repo[info.commit].tree, fp)
            if package_tree is None:
                raise Invalid(f"package {info.package} is missing from {info.commit[:12]}")

            def approve() -> list[RefUpdate]:
                if self._store.get(tag(tag_short)) is not None:
                    raise AlreadyExists(f"package revision {tag_short} already exists")
                base = self._branch_head()
                parents = [base, info.commit] if base else [info.commit]
                approval = self._commit(parents, fp, package_tree.id, message, author)
                # Branch and tag move together; the working branch goes only afterwards, so
                # an interruption leaves a state recover() can finish (see recover()).
                return [
                    RefUpdate(head(self._branch), base, approval),
                    RefUpdate(tag(tag_short), None, approval),
                ]

            published = self._with_retries(approve)
            cleanup = [RefUpdate(working, info.commit, None)]
            try:
                self._store.apply(cleanup)
            except Conflict:
                revert(self._store, published)
                raise
            approval = published[0].new
            assert approval is not None
            new_info = self._discovery.revision_info(
                fp=fp,
                workspace=info.workspace,
                revision=revision,
                lifecycle=Lifecycle.PUBLISHED,
                commit=approval,
                ref=tag_short,
            )
        return Change(new_info, self._undo(published + cleanup))

    def delete(self, info: RevisionInfo) -> Change:
        fp = layout.full_path(self._directory, info.package)
        marker = head(layout.deletion_marker(fp, info.revision, info.workspace))
        with self._lock:
            self._open()
            if info.lifecycle in _WORKING:
                ref = head(layout.lifecycle_branch(info.lifecycle, fp, info.workspace))
                updates = [RefUpdate(ref, info.commit, None)]
                self._store.apply(updates)
            elif info.ref == self._branch:
                updates = self._with_retries(lambda: self._delete_placeholder(fp, marker))
            else:
                updates = self._delete_tag(info, fp, marker)
                self._store.apply(updates)
        return Change(None, self._undo(updates))

    def remove_stale_locks(self) -> list[str]:
        """Remove ref locks left by a killed writer (``recovery.remove_stale_ref_locks``)."""
        with self._lock:
            self._open()
            return self._remove_stale_locks()

    def recover(self) -> list[str]:
        """Remove stale ref locks and finish publishes interrupted after the tag was written.

        Returns one human-readable line per lock removed and ref moved or deleted (``recovery``).
        """
        with self._lock:
            self._open()
            notes = self._remove_stale_locks()
            self._store.fetch()
            return notes + finish_interrupted_publishes(
                self._repo, self._store, self._discovery, self._branch
            )

    # --- helpers ---------------------------------------------------------------------------

    def _remove_stale_locks(self) -> list[str]:
        # A mirror's store also reports the locks it removed itself: before its first fetch
        # (one left in refs/remotes/origin/** would fail it) and while retrying a locked file.
        if isinstance(self._store, RemoteRefStore):
            return self._store.remove_stale_locks()
        return remove_stale_ref_locks(self._repo.path)

    def _delete_placeholder(self, fp: str, marker: str) -> list[RefUpdate]:
        updates: list[RefUpdate] = []
        base = self._store.get(head(self._branch))
        if base is not None and trees.subtree(self._repo, self._repo[base].tree, fp):
            message = trailers.delete_message(fp)
            commit = self._commit([base], fp, None, message, PORCH_AUTHOR)
            updates.append(RefUpdate(head(self._branch), base, commit))
        current = self._store.get(marker)
        if current is not None:
            updates.append(RefUpdate(marker, current, None))
        return updates

    def _delete_tag(self, info: RevisionInfo, fp: str, marker: str) -> list[RefUpdate]:
        expected = layout.tag_name(fp, info.revision)
        if info.ref != expected:
            raise Forbidden(
                "cannot delete package tagged with a tag that is not specific to the "
                f"package: {info.ref}"
            )
        current = self._store.get(tag(expected))
        if current is None:
            raise NotFound(f"package revision {expected} not found")
        if self._discovery.peel(current) != info.commit:
            raise Conflict(f"tag {expected} was moved concurrently")
        updates = [RefUpdate(tag(expected), current, None)]
        marker_target = self._store.get(marker)
        if marker_target is not None:
            updates.append(RefUpdate(marker, marker_target, None))
        return updates

    def _open(self) -> None:
        """First use: fetch a remote and create the branch if asked to (§5.1 createBranch)."""
        if self._opened:
            return
        self._store.fetch()
        main = head(self._branch)
        if self._create_branch and self._store.get(main) is None:
            readme = trees.build(self._repo, {"README.md": trailers.INITIAL_README.encode()})
            message = trailers.INITIAL_BRANCH_MESSAGE
            commit = self._commit([], "", readme, message, PORCH_AUTHOR)
            try:
                self._store.apply([RefUpdate(main, None, commit)])
            except AlreadyExists:
                pass  # someone else created it first: just as good
        self._opened = True

    def _branch_head(self) -> str | None:
        current = self._store.get(head(self._branch))
        if current is not None:
            return current
        # A repository without any content of its own (at most Porch's working branches)
        # may start from nothing; anything else has lost its branch.
        working = (HEADS + DRAFTS, HEADS + PROPOSED, HEADS + DELETION_PROPOSED)
        if all(name.startswith(working) for name in self._store.snapshot()):
            return None
        raise NotFound(f'branch "{self._branch}" doesn\'t exist')

    def _commit(
        self,
        parents: Sequence[str],
        fp: str,
        subtree: pygit2.Oid | None,
        message: str,
        author: Author,
    ) -> str:
        base_tree = self._repo[parents[0]].tree if parents else None
        tree = trees.replace(self._repo, base_tree, fp, subtree) if fp else subtree
        if tree is None:
            tree = self._repo.TreeBuilder().write()
        when = self._clock()
        committer = _signature(PORCH_AUTHOR, when)
        oid = self._repo.create_commit(
            None, _signature(author, when), committer, message, tree, list(parents)
        )
        return str(oid)

    def _with_retries(self, attempt: Callable[[], list[RefUpdate]]) -> list[RefUpdate]:
        """Rebuild and re-apply after a concurrent move of the branch (§5.1 retries)."""
        for number in range(1, self._retries + 1):
            self._store.fetch()
            updates = attempt()
            try:
                self._store.apply(updates)
                return updates
            except Conflict:
                if number == self._retries:
                    raise
                time.sleep(self._retry_delay * number)
        raise AssertionError("unreachable")

    def _undo(self, updates: Sequence[RefUpdate]) -> Callable[[], None]:
        frozen = tuple(updates)

        def undo() -> None:
            with self._lock:
                revert(self._store, frozen)

        return undo
