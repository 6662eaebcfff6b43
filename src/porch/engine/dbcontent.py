"""DB content mode (``porch serve --content db``): drafts live in the store, git gets releases.

``DbContentRepository`` wraps a repository adapter (git) and keeps the files of Draft and
Proposed revisions in the store's ``contents`` table instead of on ``drafts/``/``proposed/``
branches. Git is written only when a revision is published, when a published revision (or a
placeholder) is deleted, and by sync's recovery; with ``push_drafts`` every draft write is also
mirrored to its git draft branch (Porch's ``--db-push-drafts-to-git``). Published ↔
DeletionProposed is a marker row in the same table, not a git branch. See docs/store.md,
"Content mode".

The engine does not know the difference: this is a ``PackageRepository`` like any other, and
every mutation returns a ``Change`` whose ``undo`` restores the content row it replaced (by
compare-and-swap on lifecycle and version) and undoes the git changes it made, newest first.

Which revision is whose:

* a content row with lifecycle Draft/Proposed *is* that revision (any git branch of the same
  package and workspace is its mirror or a leftover, and is not listed);
* a git draft branch without a content row (made before the server ran in DB mode) is listed
  from git; writing it moves it into the store (without ``push_drafts`` its branch goes);
* published revisions and placeholders always come from git; a marker row turns one into
  DeletionProposed.

A content version is the git commit when the draft was mirrored, else ``db-<32 hex>``: it is
what the engine shows as the revision's commit and uses for compare-and-swap and caching.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from porch.api.types import Lifecycle, Repository
from porch.errors import AlreadyExists, Conflict, Invalid, NotFound
from porch.repository.git import layout
from porch.repository.types import Author, Change, PackageRepository, RevisionInfo
from porch.store.types import ContentRow, Store

log = logging.getLogger(__name__)

_WORKING = (Lifecycle.DRAFT, Lifecycle.PROPOSED)
_CREATING = ("init", "clone", "edit", "upgrade")
UNPUSHED = "db-"  # prefix of a content version that exists only in the store

Token = tuple[str, str] | None  # (lifecycle, version) of a content row; None: no row


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _token(row: ContentRow | None) -> Token:
    return (row.lifecycle, row.version) if row is not None else None


def _pushed(version: str) -> bool:
    return not version.startswith(UNPUSHED)


class DbContentRepository:
    """A ``PackageRepository`` whose drafts live in the store (thread-safe)."""

    def __init__(
        self,
        inner: PackageRepository,
        store: Store,
        *,
        namespace: str,
        name: str,
        push_drafts: bool = False,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._inner = inner
        self._store = store
        self._ns = namespace
        self._name = name
        self._push = push_drafts
        self._clock = clock
        # fetch() only marks git stale: draft work never waits for (or fails on) the remote.
        self._stale = True
        self._stale_lock = threading.Lock()
        # git's last listing and the refs digest it was taken at (recover() and the list that
        # follows it in every sync would otherwise walk git twice)
        self._listing: tuple[str, list[RevisionInfo]] | None = None

    @property
    def inner(self) -> PackageRepository:
        return self._inner

    @property
    def push_drafts(self) -> bool:
        return self._push

    # --- PackageRepository: properties and reads -------------------------------------------

    @property
    def url(self) -> str:
        return self._inner.url

    @property
    def branch(self) -> str:
        return self._inner.branch

    @property
    def directory(self) -> str:
        return self._inner.directory

    def fetch(self) -> None:
        with self._stale_lock:
            self._stale = True

    def _git(self) -> PackageRepository:
        """The wrapped adapter, fetched first if a fetch was asked for since the last one."""
        with self._stale_lock:
            stale, self._stale = self._stale, False
        if stale:
            try:
                self._inner.fetch()
            except BaseException:
                with self._stale_lock:
                    self._stale = True
                raise
        return self._inner

    def version(self) -> str:
        """The git refs digest: drafts never move it (the index is updated with each write)."""
        return self._git().version()

    def list_revisions(self) -> list[RevisionInfo]:
        # The store first: a publish that lands in between then shows as the stored Proposed
        # revision or as git's Published one, never as neither.
        rows = self._store.list_contents(self._ns, self._name)
        found = self._git_revisions()
        working = {(r.package, r.workspace): r for r in rows if Lifecycle(r.lifecycle) in _WORKING}
        markers = {
            (r.package, r.workspace, r.revision)
            for r in rows
            if r.lifecycle == Lifecycle.DELETION_PROPOSED
        }
        published = {(i.package, i.workspace) for i in found if i.lifecycle.published_like}
        out: list[RevisionInfo] = []
        for info in found:
            key = (info.package, info.workspace)
            if info.lifecycle in _WORKING:
                if key not in working:
                    out.append(info)  # a git draft made outside DB mode
                continue
            if (
                info.lifecycle is Lifecycle.PUBLISHED
                and (info.package, info.workspace, info.revision) in markers
            ):
                info = replace(info, lifecycle=Lifecycle.DELETION_PROPOSED)
            out.append(info)
        for key, row in working.items():
            if key not in published:  # else an interrupted publish: recover() drops the row
                out.append(self._info(row))
        return out

    def read_files(self, info: RevisionInfo) -> dict[str, str]:
        if info.lifecycle in _WORKING:
            row = self._row(info.package, info.workspace)
            if row is not None and Lifecycle(row.lifecycle) in _WORKING:
                if row.version != info.commit:
                    raise NotFound(
                        f"version {info.commit} of package revision {info.package}/"
                        f"{info.workspace} not found (it is now {row.version})"
                    )
                return dict(row.files or {})
        return self._git().read_files(info)

    def read_kptfile(self, info: RevisionInfo) -> str | None:
        """The Kptfile alone (what indexing needs), from the store or git."""
        if info.lifecycle in _WORKING:
            row = self._row(info.package, info.workspace)
            if row is not None and Lifecycle(row.lifecycle) in _WORKING:
                return self.read_files(info).get("Kptfile")
        git = self._git()
        method = getattr(git, "read_kptfile", None)
        if callable(method):
            text = method(info)
            return str(text) if text is not None else None
        return git.read_files(info).get("Kptfile")

    def branch_head(self) -> str:
        """The registered branch's head commit ("" when no package is on it yet)."""
        method = getattr(self._inner, "branch_head", None)
        if callable(method):
            return str(method() or "")
        for info in self._git_revisions():
            if info.placeholder and info.ref == self.branch:
                return info.commit
        return ""

    # --- PackageRepository: writes ---------------------------------------------------------

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
        # The checks git would make at publish time, made now: a draft the store accepted
        # must not turn out unpublishable.
        layout.check_ref_names(package, workspace)
        layout.encode_files(files)
        current = self._row(package, workspace)
        stored = current is not None and Lifecycle(current.lifecycle) in _WORKING
        if base is None:
            if stored:
                raise AlreadyExists(f"package revision {package}/{workspace} already exists")
            expect: Token = None
            tasks: list[dict[str, Any]] = [dict(task)] if task else []
        else:
            expect = (str(base.lifecycle), base.commit) if stored else None
            if stored and _token(current) != expect:
                raise Conflict(f"package revision {package}/{workspace} was modified concurrently")
            if not stored and not _pushed(base.commit):
                raise Conflict(f"package revision {package}/{workspace} was deleted meanwhile")
            tasks = [dict(t) for t in base.tasks]
            if task and task.get("type") in _CREATING:
                tasks = [dict(task)]
        git_changes: list[Change] = []
        try:
            if base is not None and not stored:
                # A git draft (made in git mode) moves into the store with this write: mirrored
                # on top of its branch, or its branch goes. Either fails if the branch moved.
                if self._push:
                    change = self._git().write(
                        package=package,
                        workspace=workspace,
                        files=files,
                        lifecycle=lifecycle,
                        task=task,
                        author=author,
                        base=base,
                    )
                else:
                    change = self._git().delete(base)
                git_changes.append(change)
            elif self._push:
                hint = base if base is not None and _pushed(base.commit) else None
                change = self._mirror(package, workspace, files, lifecycle, task, author, hint)
                git_changes.append(change)
            if self._push:
                assert change.info is not None
                version, ref = change.info.commit, change.info.ref
            else:
                version = UNPUSHED + secrets.token_hex(16)
                fp = layout.full_path(self.directory, package)
                ref = layout.lifecycle_branch(lifecycle, fp, workspace)
            row = ContentRow(
                namespace=self._ns,
                repository=self._name,
                package=package,
                workspace=workspace,
                lifecycle=str(lifecycle),
                version=version,
                ref=ref,
                tasks=tasks,
                author_name=author.name,
                author_email=author.email,
                updated_at=self._clock().isoformat(),
                files=dict(files),
            )
            old = self._swap(package, workspace, expect, row)
        except BaseException:
            _undo_all(git_changes)
            raise
        return Change(self._info(row), self._undo(row, old, git_changes))

    def set_lifecycle(self, info: RevisionInfo, lifecycle: Lifecycle) -> Change:
        if lifecycle == info.lifecycle:
            return Change(info)
        pair = {info.lifecycle, lifecycle}
        current = self._row(info.package, info.workspace)
        if pair == set(_WORKING):
            if current is None or Lifecycle(current.lifecycle) not in _WORKING:
                return self._git().set_lifecycle(info, lifecycle)  # a git draft
            expect: Token = (str(info.lifecycle), info.commit)
            if _token(current) != expect:
                raise Conflict(
                    f"package revision {info.package}/{info.workspace} was modified concurrently"
                )
            git_changes: list[Change] = []
            try:
                if self._push:
                    try:
                        if not _pushed(current.version):
                            raise NotFound("never mirrored")
                        change = self._git().set_lifecycle(info, lifecycle)
                    except (Conflict, AlreadyExists, NotFound):
                        # The mirror branch is missing or moved: write it afresh.
                        change = self._mirror(
                            info.package,
                            info.workspace,
                            current.files or {},
                            lifecycle,
                            None,
                            Author(current.author_name, current.author_email),
                            None,
                        )
                    git_changes.append(change)
                    assert change.info is not None
                    ref = change.info.ref
                else:
                    fp = layout.full_path(self.directory, info.package)
                    ref = layout.lifecycle_branch(lifecycle, fp, info.workspace)
                row = replace(
                    current,
                    lifecycle=str(lifecycle),
                    ref=ref,
                    updated_at=self._clock().isoformat(),
                )
                old = self._swap(info.package, info.workspace, expect, row)
            except BaseException:
                _undo_all(git_changes)
                raise
            return Change(self._info(row), self._undo(row, old, git_changes))
        if pair == {Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED}:
            marked = current is not None and current.lifecycle == Lifecycle.DELETION_PROPOSED
            if lifecycle is Lifecycle.DELETION_PROPOSED:
                marker = ContentRow(
                    namespace=self._ns,
                    repository=self._name,
                    package=info.package,
                    workspace=info.workspace,
                    lifecycle=str(Lifecycle.DELETION_PROPOSED),
                    version=info.commit,
                    ref=info.ref,
                    revision=info.revision,
                    updated_at=self._clock().isoformat(),
                )
                old = self._swap(info.package, info.workspace, _token(current), marker)
                return Change(replace(info, lifecycle=lifecycle), self._undo(marker, old, []))
            if not marked:
                # Proposed for deletion in git itself (a marker branch made in git mode).
                return self._git().set_lifecycle(info, lifecycle)
            old = self._swap(info.package, info.workspace, _token(current), None)
            return Change(replace(info, lifecycle=lifecycle), self._undo(None, old, []))
        raise Invalid(f"cannot change lifecycle from {info.lifecycle.value} to {lifecycle.value}")

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        """Write the stored files to git as one commit (the revision's creating task), then
        publish that as revision ``revision``. If git fails, the stored revision is untouched
        (the engine leaves it Proposed); the git draft made on the way is removed."""
        if info.lifecycle not in _WORKING:
            raise Invalid(f"cannot publish a {info.lifecycle.value} package revision")
        current = self._row(info.package, info.workspace)
        if current is None or Lifecycle(current.lifecycle) not in _WORKING:
            return self._git().publish(info, revision=revision, author=author)  # a git draft
        if _token(current) != (str(info.lifecycle), info.commit):
            raise Conflict(
                f"package revision {info.package}/{info.workspace} was modified concurrently"
            )
        git = self._git()
        git_changes: list[Change] = []
        try:
            published: Change | None = None
            if _pushed(current.version):
                try:  # its mirror branch, as last written, holds exactly these files
                    published = git.publish(info, revision=revision, author=author)
                except (Conflict, NotFound):
                    published = None  # the branch moved or is gone: write it afresh
            if published is None:
                draft = self._git_draft_for_publish(info, current)
                git_changes.append(draft)
                assert draft.info is not None
                published = git.publish(draft.info, revision=revision, author=author)
            git_changes.append(published)
            # Gone already if sync's recovery saw the tag first; anything else is a conflict.
            self._swap(info.package, info.workspace, _token(current), None, missing_ok=True)
        except BaseException:
            _undo_all(git_changes)
            raise
        return Change(published.info, self._undo(None, current, git_changes))

    def delete(self, info: RevisionInfo) -> Change:
        current = self._row(info.package, info.workspace)
        git_changes: list[Change] = []
        if info.lifecycle in _WORKING:
            if current is None or Lifecycle(current.lifecycle) not in _WORKING:
                return self._git().delete(info)  # a git draft
            if _token(current) != (str(info.lifecycle), info.commit):
                raise Conflict(
                    f"package revision {info.package}/{info.workspace} was modified concurrently"
                )
            try:
                if _pushed(current.version):
                    try:  # its mirror branch, if it is still where it was written
                        git_changes.append(self._git().delete(info))
                    except (Conflict, NotFound):
                        pass
                old = self._swap(info.package, info.workspace, _token(current), None)
            except BaseException:
                _undo_all(git_changes)
                raise
            return Change(None, self._undo(None, old, git_changes))
        # Published, DeletionProposed or a placeholder: git first (already gone is fine).
        git_changes += self._git_delete(info)
        try:
            marked = current is not None and current.lifecycle == Lifecycle.DELETION_PROPOSED
            old = (
                self._swap(info.package, info.workspace, _token(current), None) if marked else None
            )
        except BaseException:
            _undo_all(git_changes)
            raise
        return Change(None, self._undo(None, old, git_changes))

    def recover(self) -> list[str]:
        """Finish what a crash interrupted: git's own recovery, then drop stored drafts whose
        workspace git already has published, and deletion markers whose revision is gone."""
        recover = getattr(self._inner, "recover", None)
        notes: list[str] = []
        if callable(recover):
            with self._stale_lock:
                self._stale = False  # recover() fetches
            notes = list(recover())
        rows = self._store.list_contents(self._ns, self._name)
        if not rows:
            return notes
        found = self._git_revisions()
        published = {(i.package, i.workspace) for i in found if i.lifecycle.published_like}
        numbered = {(i.package, i.workspace, i.revision) for i in found}
        for row in rows:
            key = (row.package, row.workspace)
            if Lifecycle(row.lifecycle) in _WORKING and key in published:
                why = "already published"
            elif row.lifecycle == Lifecycle.DELETION_PROPOSED and (
                (*key, row.revision) not in numbered
            ):
                why = "its revision is gone"
            else:
                continue
            try:
                self._swap(row.package, row.workspace, _token(row), None, missing_ok=True)
            except Conflict:
                continue  # it changed meanwhile: look again at the next sync
            notes.append(f"dropped stored {row.lifecycle} {row.package}/{row.workspace}: {why}")
        return notes

    # --- helpers -----------------------------------------------------------------------------

    def _row(self, package: str, workspace: str) -> ContentRow | None:
        return self._store.get_content(self._ns, self._name, package, workspace)

    def _info(self, row: ContentRow) -> RevisionInfo:
        try:
            when: datetime | None = datetime.fromisoformat(row.updated_at)
        except ValueError:
            when = None
        return RevisionInfo(
            package=row.package,
            workspace=row.workspace,
            revision=0,
            lifecycle=Lifecycle(row.lifecycle),
            commit=row.version,
            ref=row.ref,
            tasks=tuple(row.tasks),
            published_by=row.author_email,
            published_at=when,
        )

    def _git_working(self, package: str, workspace: str) -> RevisionInfo | None:
        """A git draft/proposed branch of this package and workspace (a mirror or leftover)."""
        for info in self._git_revisions():
            if (info.package, info.workspace) == (package, workspace) and info.lifecycle in (
                _WORKING
            ):
                return info
        return None

    def _mirror(
        self,
        package: str,
        workspace: str,
        files: Mapping[str, str],
        lifecycle: Lifecycle,
        task: Mapping[str, Any] | None,
        author: Author,
        hint: RevisionInfo | None,
    ) -> Change:
        """Write a draft's files to its git branch (``push_drafts``): on top of ``hint`` (the
        branch as last mirrored), or, when that moved or is missing, of whatever git has."""
        git = self._git()
        if hint is not None:
            try:
                return git.write(
                    package=package,
                    workspace=workspace,
                    files=files,
                    lifecycle=lifecycle,
                    task=task,
                    author=author,
                    base=hint,
                )
            except (Conflict, AlreadyExists, NotFound):
                pass
        return git.write(
            package=package,
            workspace=workspace,
            files=files,
            lifecycle=lifecycle,
            task=task,
            author=author,
            base=self._git_working(package, workspace),
        )

    def _git_draft_for_publish(self, info: RevisionInfo, current: ContentRow) -> Change:
        """One git commit with the stored files (message and trailer of the creating task) on
        a proposed branch, ready to publish. Usually the branch is new; a leftover of an
        interrupted publish (or an old mirror) is looked up only when it is in the way."""
        tasks = list(info.tasks) or current.tasks
        git = self._git()

        def write(base: RevisionInfo | None) -> Change:
            return git.write(
                package=info.package,
                workspace=info.workspace,
                files=current.files or {},
                lifecycle=Lifecycle.PROPOSED,
                task=tasks[0] if tasks else None,
                author=Author(current.author_name, current.author_email),
                base=base,
            )

        try:
            return write(None)
        except AlreadyExists:
            return write(self._git_working(info.package, info.workspace))

    def _git_revisions(self) -> list[RevisionInfo]:
        """git's revisions; reused while the refs digest is the one they were listed at (a
        listing is a function of the refs: commits never change)."""
        git = self._git()
        before = git.version()
        listing = self._listing
        if listing is not None and listing[0] == before:
            return list(listing[1])
        found = git.list_revisions()
        if git.version() == before:  # nothing moved while listing
            self._listing = (before, list(found))
        return found

    def _git_delete(self, info: RevisionInfo) -> list[Change]:
        try:
            return [self._git().delete(info)]
        except NotFound:
            return []

    def _swap(
        self,
        package: str,
        workspace: str,
        expect: Token,
        new: ContentRow | None,
        *,
        missing_ok: bool = False,
    ) -> ContentRow | None:
        """Replace the content row if it is still ``expect``; returns the row it replaced.

        The store runs one write transaction at a time (across replicas on PostgreSQL), and
        the read inside it sees every committed write, so this is a compare-and-swap.
        """
        with self._store.transaction() as txn:
            current = self._row(package, workspace)
            found = _token(current)
            if found != expect and not (missing_ok and found is None):
                if expect is None:
                    raise AlreadyExists(f"package revision {package}/{workspace} already exists")
                if found is None:
                    raise Conflict(f"package revision {package}/{workspace} was deleted meanwhile")
                raise Conflict(f"package revision {package}/{workspace} was modified concurrently")
            if new is not None:
                txn.put_content(new)
            elif current is not None:
                txn.delete_content(self._ns, self._name, package, workspace)
        return current

    def _undo(
        self, wrote: ContentRow | None, old: ContentRow | None, git_changes: list[Change]
    ) -> Callable[[], None]:
        either = wrote or old
        package = either.package if either is not None else ""
        workspace = either.workspace if either is not None else ""
        changes = tuple(git_changes)

        def undo() -> None:
            if wrote is not None or old is not None:
                try:
                    self._swap(package, workspace, _token(wrote), old, missing_ok=wrote is None)
                except (Conflict, AlreadyExists) as exc:  # moved on meanwhile: leave it
                    log.warning("not restoring %s/%s: %s", package, workspace, exc)
            _undo_all(list(changes))

        return undo


def _undo_all(changes: list[Change]) -> None:
    for change in reversed(changes):
        change.undo()


def store_only_drafts(store: Store) -> list[str]:
    """``namespace/repository/package/workspace`` of every Draft or Proposed revision that
    exists only in the store (a git-mode server would not see them, and its sync would drop
    them from the index)."""
    out = []
    for repo in store.list_objects("Repository"):
        for row in store.list_contents(repo.namespace, repo.name):
            if Lifecycle(row.lifecycle) in _WORKING and not _pushed(row.version):
                out.append(f"{row.namespace}/{row.repository}/{row.package}/{row.workspace}")
    return out


def wrap_opener(
    opener: Callable[[Repository], PackageRepository],
    store: Store,
    *,
    push_drafts: bool = False,
) -> Callable[[Repository], PackageRepository]:
    """An opener whose git repositories keep their drafts in ``store`` (OCI ones are as is:
    an OCI repository's drafts are tags of its own)."""

    def open_repository(repo: Repository) -> PackageRepository:
        inner = opener(repo)
        if repo.spec.type == "oci":
            return inner
        return DbContentRepository(
            inner,
            store,
            namespace=repo.metadata.namespace,
            name=repo.metadata.name,
            push_drafts=push_drafts,
        )

    return open_repository
