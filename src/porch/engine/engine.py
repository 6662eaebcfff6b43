"""The orchestration engine: every package operation, its rules, locks and rollback.

Each write follows the same shape: validate, take the per-object lock, compute the new file
set (task, Kptfile sync, render), move refs in the repository, then commit the index row and
its event in one store transaction and fan the event out to watchers. When a later step fails
the repository change is undone by compare-and-swap, so nothing half-written stays behind.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from porch.api.lifecycle import Endpoint, check_create_lifecycle, check_transition
from porch.api.lifecycle import parse_lifecycle as _parse_lifecycle
from porch.api.names import compose_name, validate_package_revision_names
from porch.api.types import (
    LATEST_REVISION_LABEL,
    PUSH_ON_RENDER_FAILURE,
    GitPackage,
    Lifecycle,
    PackageRevision,
    PackageRevisionResources,
    PorchPackage,
    Repository,
    Task,
)
from porch.engine import convert
from porch.engine.locks import KeyedLocks, TryLocks
from porch.engine.objects import ObjectService
from porch.engine.render import NoFunctionRuntime, Renderer, RenderOutcome
from porch.engine.replicas import ReplicaFeed
from porch.engine.repositories import RepositoryRegistry
from porch.engine.rules import (
    APPROVAL_META,
    approvals_required,
    check_approver,
    check_latest_label_create,
    check_latest_label_update,
    check_published_spec_unchanged,
    check_readiness,
    choose_task,
    task_json,
)
from porch.engine.sealing import Sealer
from porch.engine.selectors import RevisionFilter, parse_package_filter, parse_revision_filter
from porch.engine.sync import Lease, LocalLease, StartCheck
from porch.engine.watch import Watcher, WatchEvent, WatchHub
from porch.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    InternalError,
    Invalid,
    NotFound,
    PorchError,
    RenderError,
    StaleResourceVersion,
)
from porch.krm.kptfile import (
    kptfile_set_metadata,
    kptfile_sync_conditions,
    kptfile_sync_readiness_gates,
)
from porch.krm.resources import heal_comments
from porch.repository.paths import check_package_files
from porch.repository.types import PORCH_AUTHOR, Author, Change, PackageRepository, RevisionInfo
from porch.store.types import Event, ObjectRow, RevisionRow, Store, Transaction
from porch.tasks import OciUpstreamLock, UpstreamLock, clone_task, edit_task, init_task
from porch.tasks.clone import Upstream

Fault = Callable[[str], None]

log = logging.getLogger("porch.engine")


_UPGRADE_FIELDS = {
    "old_upstream_ref": "oldUpstreamRef",
    "new_upstream_ref": "newUpstreamRef",
    "local_package_revision_ref": "localPackageRevisionRef",
}


class UpstreamFetcher(Protocol):
    """Fetches one package from a git URL: (files, commit id)."""

    def __call__(
        self, *, url: str, ref: str, directory: str, credentials: dict[str, str] | None
    ) -> tuple[dict[str, str], str]: ...


RESOURCE = "packagerevisions.porch.kpt.dev"
FILES_CACHE_SIZE = 512
START_WORKERS = 4  # repositories Engine.start reconciles at once
# Seconds a sync that met an API write in flight on its repository waits for it before its
# next pass (Engine.write_wait; docs/sync.md).
WRITE_WAIT = 2.0


def _no_fault(point: str) -> None:
    return None


def _remove_stale_locks(adapter: PackageRepository) -> list[str]:
    """A writer killed while holding a ref lock changed no ref, so the sync mark still matches;
    its lock must go all the same, or that ref stays unwritable (docs/reliability.md)."""
    clean = getattr(adapter, "remove_stale_locks", None)
    return list(clean()) if callable(clean) else []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _WritesInFlight:
    """API writes between their first repository change and the end of their index commit
    (or undo), counted per repository; a sync does not commit while its repository has one
    (docs/sync.md). Counted in this process, and through the store for every process sharing
    it (``Store.hold_writes``; PostgreSQL: other replicas). Thread-safe."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._count: dict[tuple[str, str], int] = {}
        self._waiting: dict[tuple[str, str], int] = {}
        self._mine = threading.local()

    def _held(self) -> dict[tuple[str, str], int]:
        held: dict[tuple[str, str], int] | None = getattr(self._mine, "held", None)
        if held is None:
            held = self._mine.held = {}
        return held

    @contextlib.contextmanager
    def hold(self, namespace: str, repository: str) -> Iterator[None]:
        key = (namespace, repository)
        # The store's hold first: it may wait for another replica's sync to commit.
        with self._store.hold_writes(namespace, repository):
            with self._cond:
                self._count[key] = self._count.get(key, 0) + 1
            held = self._held()
            held[key] = held.get(key, 0) + 1
            try:
                yield
            finally:
                held[key] -= 1
                if not held[key]:
                    del held[key]
                with self._cond:
                    left = self._count[key] - 1
                    if left:
                        self._count[key] = left
                    else:
                        del self._count[key]
                        self._cond.notify_all()

    def busy(self, namespace: str, repository: str, txn: Transaction | None = None) -> bool:
        """Whether a write is in flight on the repository. With ``txn`` (a sync's commit
        transaction) also one of another process sharing the store; when there is none, none
        can start there before ``txn`` ends (``Transaction.exclude_writes``)."""
        with self._cond:
            if (namespace, repository) in self._count:
                return True
        return txn is not None and not txn.exclude_writes(namespace, repository)

    def wait_idle(self, namespace: str, repository: str, timeout: float) -> bool:
        """Wait until no write is in flight on the repository, in this process and then in the
        others sharing the store; False on time-out, and at once when this thread's own write
        is one of them (it cannot end while we wait)."""
        key = (namespace, repository)
        if key in self._held():
            return False
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                if not self._cond.wait_for(lambda: key not in self._count, timeout):
                    return False
            finally:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
        left = max(0.0, deadline - time.monotonic())
        return self._store.wait_writes(namespace, repository, left)

    def waiting(self, namespace: str, repository: str) -> int:
        """Syncs now waiting for the repository's writes (tests)."""
        with self._cond:
            return self._waiting.get((namespace, repository), 0)


class Engine:
    """Thread-safe; one per server process."""

    def __init__(
        self,
        *,
        store: Store,
        opener: Callable[[Repository], PackageRepository],
        renderer: Renderer | None = None,
        fault: Fault = _no_fault,
        clock: Callable[[], str] = _now,
        sealer: Sealer | None = None,
        fetch_upstream: UpstreamFetcher | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer  # encrypts Secret data at rest when set
        self._fetch_upstream = fetch_upstream
        self.repositories = RepositoryRegistry(store, opener)
        # Who may sync a repository now: the store's lease when it has one (PostgreSQL: across
        # replicas), else one within this process (docs/sync.md).
        store_lease = getattr(store, "lease", None)
        self.sync_lease: Lease = store_lease if callable(store_lease) else LocalLease()
        self.renderer = renderer or NoFunctionRuntime(convert.has_pipeline)
        self._fault = fault
        self._clock = clock
        self._try_locks = TryLocks()
        self._package_locks = KeyedLocks()
        self._commit_lock = threading.Lock()
        self._writes = _WritesInFlight(store)
        self.write_wait = WRITE_WAIT
        self.hub = WatchHub()
        # What start() verified per repository, for the syncer's first round (take_start_check).
        self._start_checks: dict[tuple[str, str], StartCheck] = {}
        # Other replicas' commits reach self.hub through the feed once start() subscribed it
        # (PostgreSQL); it also keeps the mark of what was published (docs/replicas.md).
        self._feed = ReplicaFeed(
            store,
            lambda: self.hub,
            self._commit_lock,
            shape=self._logged_object,
            seen=self._remote,
        )
        self.objects = ObjectService(self)
        # Package files by (repository URL, package, commit): commits never change, so this is
        # always right, and it spares the git reads of the usual get → edit → update cycle.
        self._files: OrderedDict[tuple[str, str, str], dict[str, str]] = OrderedDict()
        self._files_lock = threading.Lock()
        self._built = threading.local()

    # --- plumbing -----------------------------------------------------------------------------

    def _commit(
        self,
        work: Callable[[Transaction], list[Event]],
        undo: Iterable[Change] = (),
        *,
        point: str = "",
    ) -> None:
        """Run ``work`` in one store transaction, then publish its events in commit order.

        If anything fails before the commit, every repository change in ``undo`` is rolled back
        (newest first) and the error propagates.
        """
        self._built.value = None
        try:
            if point:
                self._fault(point)
            with self._commit_lock:
                with self.store.transaction() as txn:
                    events = work(txn)
                    self._fault("commit")
                self._feed.publish_local(events)
        except BaseException:
            self._built.value = None  # its resourceVersion was rolled back with the rest
            for change in reversed(list(undo)):
                change.undo()
            raise

    def _stamp(
        self,
        txn: Transaction,
        row: RevisionRow,
        event_type: str,
        repo: Repository,
        *,
        latest: bool | None = None,
        expect: int | None = None,
    ) -> Event:
        if expect is not None:
            self._expect(row.namespace, row.name, expect)
        row.resource_version = txn.next_resource_version()
        if latest is None:
            latest = self._is_latest(row)
        built = convert.to_package_revision(row, latest=latest, repo=repo)
        body = built.to_dict()
        if event_type == "DELETED":
            txn.delete_revision(row.namespace, row.name)
        else:
            txn.put_revision(row, body)
        if event_type != "DELETED":
            # The caller usually returns this very object next (see _object): keep it.
            self._built.value = (row.namespace, row.name, row.resource_version, built)
        event = Event(
            row.resource_version, event_type, "PackageRevision", row.namespace, row.name, body
        )
        txn.add_event(event)
        return event

    def _stamp_batch(
        self, txn: Transaction, batch: Sequence[tuple[RevisionRow, str, dict[str, Any]]]
    ) -> list[Event]:
        """``_stamp`` for many rows in one go (a sync), with bodies built beforehand by
        ``_prebuilt``: one block of resourceVersions, one round trip for the rows and one for
        the events, in the order given."""
        if not batch:
            return []
        first = txn.reserve_resource_versions(len(batch))
        events: list[Event] = []
        puts: list[tuple[RevisionRow, dict[str, Any] | None]] = []
        for offset, (row, event_type, body) in enumerate(batch):
            row.resource_version = first + offset
            body["metadata"]["resourceVersion"] = str(row.resource_version)
            if event_type == "DELETED":
                if puts:
                    txn.put_revisions(puts)
                    puts = []
                txn.delete_revision(row.namespace, row.name)
            else:
                puts.append((row, body))
            kind = "PackageRevision"
            events.append(
                Event(row.resource_version, event_type, kind, row.namespace, row.name, body)
            )
        if puts:
            txn.put_revisions(puts)
        txn.add_events(events)
        return events

    def _expect(self, namespace: str, name: str, resource_version: int) -> None:
        """Compare-and-set inside the write transaction: the row must still be at
        ``resource_version`` (0: must not exist yet).

        The store runs one write transaction at a time across every replica (the counter row
        lock), so this read sees every committed write: of two replicas that both passed the
        check made before the git work, only the first to commit wins; the other gets 409 and
        its repository change is undone. Within one process the in-flight locks answer first.
        """
        current = self.store.get_revision(namespace, name)
        found = current.resource_version if current is not None else 0
        if found == resource_version:
            return
        if resource_version == 0:
            raise AlreadyExists(f'{RESOURCE} "{name}" already exists')
        if current is None:
            raise Conflict(
                f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object was deleted'
                " meanwhile"
            )
        raise StaleResourceVersion(
            f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object has been'
            " modified; please apply your changes to the latest version and try again"
        )

    def _is_latest(self, row: RevisionRow) -> bool:
        if not _published(row):
            return False
        others = self.store.max_published_revision(
            row.namespace, row.repository, row.package, excluding=row.name
        )
        return row.revision > others

    def _row_latest(self, namespace: str, name: str) -> tuple[RevisionRow, bool]:
        """``_row`` and whether it is its package's latest, read in one statement.

        Reading the two apart lets an approval commit in between: the row from before it,
        still stamped "latest", and the maximum from after it. An update echoing a GET would
        then be refused with 422 (its label no longer matches) where the right answer is 409
        (the object changed); a GET would serve a label its resourceVersion never had.
        """
        _check_namespace(namespace)
        found, rival = self.store.get_revision_and_rival(namespace, name)
        row = _found(found, name)
        return row, _published(row) and row.revision > rival

    def _row(self, namespace: str, name: str) -> RevisionRow:
        _check_namespace(namespace)
        return _found(self.store.get_revision(namespace, name), name)

    def _render(self, files: Mapping[str, str]) -> RenderOutcome:
        return self.renderer.render(files)

    def _author(self, repo: Repository, user: str | None) -> Author:
        git = repo.spec.git
        if git and (git.author or git.email):
            return Author(git.author or git.email, git.email or git.author)
        if user:
            return Author(user, user)
        return PORCH_AUTHOR

    def _read_files(self, adapter: PackageRepository, info: RevisionInfo) -> dict[str, str]:
        key = (adapter.url, info.package, info.commit)
        with self._files_lock:
            cached = self._files.get(key)
            if cached is not None:
                self._files.move_to_end(key)
                return dict(cached)
        try:
            files = adapter.read_files(info)
        except NotFound:
            # Another replica may have written this commit: a mirror fetches it, then reads.
            adapter.fetch()
            files = adapter.read_files(info)
        self._remember_files(adapter, info, files)
        return dict(files)

    def _write_adapter(self, repo: Repository) -> PackageRepository:
        """The adapter to write through; with other replicas it first fetches, so refs and
        commits another replica moved are known (a no-op for a local repository)."""
        adapter = self.repositories.adapter(repo)
        if self._feed.active:
            adapter.fetch()
        return adapter

    # --- replicas ------------------------------------------------------------------------------

    def _logged_object(self, event: Event) -> dict[str, Any]:
        """The object watchers get for an event read back from the log."""
        if event.kind == "Secret" and self.sealer is not None:
            return self.sealer.open(event.body)
        return event.body

    def _remote(self, event: Event) -> None:
        """Another replica committed ``event``: drop what this process keeps about it."""
        if event.kind != "Repository":
            return
        ns, name = event.namespace, event.name
        try:
            cached = self.repositories.get(ns, name) if event.type != "DELETED" else None
        except NotFound:
            cached = None
        try:
            changed = cached is None or Repository.from_dict(event.body).spec != cached.spec
        except (TypeError, ValueError):
            changed = True
        if changed:
            self.repositories.forget(ns, name)  # reopen with the new coordinates
        else:
            self.repositories.invalidate(ns, name)

    def close(self) -> None:
        """Stop following other replicas and close the store."""
        self._feed.close()
        self.store.close()

    def _remember_files(
        self, adapter: PackageRepository, info: RevisionInfo, files: Mapping[str, str]
    ) -> None:
        with self._files_lock:
            self._files[(adapter.url, info.package, info.commit)] = dict(files)
            while len(self._files) > FILES_CACHE_SIZE:
                self._files.popitem(last=False)

    def _object(
        self, row: RevisionRow, repo: Repository, *, latest: bool | None = None
    ) -> PackageRevision:
        """The object of ``row``; ``latest`` when the caller read it with the row
        (``_row_latest``), else it is computed now."""
        kept = getattr(self._built, "value", None)
        if kept is not None:
            self._built.value = None
            if kept[:3] == (row.namespace, row.name, row.resource_version):
                built: PackageRevision = kept[3]
                return built
        if latest is None:
            latest = self._is_latest(row)
        return convert.to_package_revision(row, latest=latest, repo=repo)

    # --- repositories -------------------------------------------------------------------------

    def register_repository(self, repo: Repository) -> Repository:
        """Create (or update) a Repository object: it is opened and indexed at once."""
        body = repo.to_dict()
        ns, name = repo.metadata.namespace, repo.metadata.name
        existing = self.store.get_object("Repository", ns, name) if ns and name else None
        if existing is None:
            stored = self.objects.create("Repository", body)
        else:
            body["metadata"]["resourceVersion"] = str(existing.resource_version)
            stored = self.objects.update("Repository", body)
        return Repository.from_dict(stored)

    def restamp_repository(self, namespace: str, name: str) -> None:
        """Every revision of a repository changed how it shows (MODIFIED, new resourceVersions)."""
        repo = self.repositories.get(namespace, name)
        rows = self.store.list_revisions(namespace, repository=name)
        self._commit(lambda txn: [self._stamp(txn, row, "MODIFIED", repo) for row in rows])

    def remove_repository_revisions(self, namespace: str, name: str) -> None:
        """Drop a repository's revisions from the index (DELETED events); git is untouched."""
        repo = self.repositories.get(namespace, name)
        rows = self.store.list_revisions(namespace, repository=name)

        def work(txn: Transaction) -> builtins.list[Event]:
            txn.delete_contents(namespace, name)  # drafts kept by --content db go with it
            txn.delete_object(SYNC_MARK, namespace, name)  # a namesake starts from nothing
            return [self._stamp(txn, row, "DELETED", repo) for row in rows]

        self._commit(work)
        self.repositories.forget(namespace, name)

    def sync_repository(
        self,
        namespace: str,
        name: str,
        *,
        adapter: PackageRepository | None = None,
        full: bool = False,
    ) -> list[str]:
        """Reconcile the index with what the repository holds; returns recovery notes.

        Safe to run while API writes go on (the background syncer does): the index is read
        before git is listed and checked again inside the commit, so git is never older than
        the index it is compared with, and a write that lands in between makes it start over
        rather than undo that write.

        Every sync leaves a *sync mark* in the store: the digest of the refs its listing came
        from. When the refs still have that digest the index already says what they hold, and
        (unless ``full``) nothing is read from git at all (docs/sync.md).
        """
        repo = self.repositories.get(namespace, name)
        adapter = adapter or self.repositories.adapter(repo)
        adapter.fetch()
        mark = None if full else self.store.get_object(SYNC_MARK, namespace, name)
        return self._reconcile(repo, adapter, mark.body if mark is not None else None)

    def index_matches(self, namespace: str, name: str, version: str) -> bool:
        """Whether the stored sync mark says the index holds what refs ``version`` hold (a
        sync that gave up to in-flight writes leaves no mark, so this is False after it)."""
        mark = self.store.get_object(SYNC_MARK, namespace, name)
        return mark is not None and mark.body == _mark_body(version)

    def _reconcile(
        self, repo: Repository, adapter: PackageRepository, mark: dict[str, Any] | None
    ) -> list[str]:
        """``sync_repository`` after the fetch; ``mark``: the stored sync mark, if any."""
        namespace, name = repo.metadata.namespace, repo.metadata.name
        if mark is not None and mark == _mark_body(adapter.version()):
            return _remove_stale_locks(adapter)
        notes: list[str] = []
        recover = getattr(adapter, "recover", None)
        if callable(recover):
            notes = list(recover())
        for attempt in range(SYNC_ATTEMPTS):
            if self._sync_once(namespace, name, repo, adapter):
                break
            if attempt + 1 < SYNC_ATTEMPTS:
                # An API write on this repository may be between its git change and its index
                # commit: let it finish before listing again (no wait when none is).
                self._writes.wait_idle(namespace, name, self.write_wait)
        else:
            # No mark was written: the next sync (ref check, schedule) reconciles again.
            log.warning(
                "repository %s/%s: sync left for the next one: the index kept changing or API"
                " writes stayed in flight over %d passes",
                namespace,
                name,
                SYNC_ATTEMPTS,
            )
        return notes

    def _sync_once(
        self, namespace: str, name: str, repo: Repository, adapter: PackageRepository
    ) -> bool:
        """One reconcile pass; False when an index write raced it (the caller retries)."""
        rows = {r.name: r for r in self.store.list_revisions(namespace, repository=name)}
        seen = {key: row.resource_version for key, row in rows.items()}
        version, listed = _listing(adapter)
        found = {compose_name(name, i.package, i.workspace): i for i in listed}
        added, changed, gone = [], [], []
        for key, info in found.items():
            row = rows.get(key)
            if row is None:
                added.append(info)
            elif (row.commit, row.lifecycle, row.revision, row.ref) != (
                info.commit,
                str(info.lifecycle),
                info.revision,
                info.ref,
            ):
                changed.append((row, info))
        gone = [row for key, row in rows.items() if key not in found]
        mark = ObjectRow(SYNC_MARK, namespace, name, _mark_body(version))
        if not (added or changed or gone):
            stored = self.store.get_object(SYNC_MARK, namespace, name)
            if stored is None or stored.body != mark.body:

                def note(txn: Transaction) -> list[Event]:
                    now = self.store.list_revisions(namespace, repository=name)
                    if {r.name: r.resource_version for r in now} != seen:
                        raise _SyncRaced()
                    if self._writes.busy(namespace, name, txn):
                        raise _SyncRaced()  # its git change may be listed: no mark for it
                    txn.put_object(mark)
                    return []

                try:
                    self._commit(note)
                except _SyncRaced:
                    return False
            return True
        before = _latest_by_package(
            (r.package, r.revision, Lifecycle(r.lifecycle)) for r in rows.values()
        )
        after = _latest_by_package((i.package, i.revision, i.lifecycle) for i in found.values())
        prepared: list[tuple[RevisionRow, str]] = []
        touched = {info.package for info in added} | {row.package for row, _info in changed}
        touched |= {row.package for row in gone}
        changed_names = {row.name for row, _info in changed}
        # Rows that did not change themselves but gain or lose the computed latest label.
        for key, row in rows.items():
            if key in found and key not in changed_names and row.package in touched:
                was = before.get(row.package) == row.revision > 0
                now = after.get(row.package) == row.revision > 0
                if was != now:
                    prepared.append((_copy(row), "MODIFIED"))
        for info in added:
            summary = _kptfile_summary(adapter, info)
            new = convert.row_from_info(namespace, name, info, summary)
            new.meta = {"creationTimestamp": new.published_at or self._clock()}
            prepared.append((new, "ADDED"))
        for row, info in changed:
            summary = row.kptfile if row.commit == info.commit else _kptfile_summary(adapter, info)
            new = convert.row_from_info(namespace, name, info, summary)
            new.meta = row.meta
            prepared.append((new, "MODIFIED"))
        # Bodies are built before the commit (outside the writers' lock, so another
        # repository's sync can commit meanwhile); only their resourceVersion is set inside.
        batch: list[tuple[RevisionRow, str, dict[str, Any]]] = []
        for row in gone:
            batch.append((row, "DELETED", self._prebuilt(row, False, repo)))
        for row, kind in prepared:
            latest = row.revision > 0 and after.get(row.package) == row.revision
            batch.append((row, kind, self._prebuilt(row, latest, repo)))

        def work(txn: Transaction) -> list[Event]:
            now = self.store.list_revisions(namespace, repository=name)
            if {r.name: r.resource_version for r in now} != seen:
                raise _SyncRaced()
            if self._writes.busy(namespace, name, txn):
                # An API write (of any replica) moved refs but has not committed its row yet:
                # indexing its change here would make its own commit fail and its undo strand
                # our row.
                raise _SyncRaced()
            events = self._stamp_batch(txn, batch)
            txn.put_object(mark)
            return events

        try:
            self._commit(work)
        except _SyncRaced:
            return False
        return True

    @staticmethod
    def _prebuilt(row: RevisionRow, latest: bool, repo: Repository) -> dict[str, Any]:
        """The body a stamp gives ``row``, built with a stand-in resourceVersion (the key
        stays where a real one goes; ``_stamp_batch`` sets the value)."""
        row.resource_version = 1
        return convert.to_package_revision(row, latest=latest, repo=repo).to_dict()

    def start(self, *, workers: int = START_WORKERS) -> list[str]:
        """Reconcile every registered repository (after a restart); returns recovery notes.

        Repositories whose refs match their sync mark are not read at all (a warm restart);
        the others are synced on ``workers`` threads, so one repository's git reads overlap
        another's store round trips. With a store other replicas share (PostgreSQL), this
        process first subscribes to their commits, which then reach its watchers
        (docs/replicas.md).

        The digest compare of a local repository runs on this thread: it is CPU under the
        GIL, where threads only add switching (1,000 warm repositories: 2.7 s on one thread,
        3.6-4.2 s of CPU on four). Remote ones are compared on the threads (their fetch waits
        on the network), and so is every sync.
        """
        self._feed.start()
        repos = self.repositories.list()
        marks = {(m.namespace, m.name): m.body for m in self.store.list_objects(SYNC_MARK)}

        def compare(repo: Repository) -> builtins.list[str] | None:
            """Notes when the index says what the refs hold; None when a sync is needed."""
            ns, name = repo.metadata.namespace, repo.metadata.name
            adapter = self.repositories.adapter(repo)
            adapter.fetch()
            version = adapter.version()
            mark = marks.get((ns, name))
            if mark is None or mark != _mark_body(version):
                return None
            self._start_checks[(ns, name)] = StartCheck(version)  # the syncer's first round
            return _remove_stale_locks(adapter)

        def one(repo: Repository, compared: bool) -> builtins.list[str]:
            ns, name = repo.metadata.namespace, repo.metadata.name
            try:
                if not compared:
                    notes = compare(repo)
                    if notes is not None:
                        return notes
                held = self.sync_lease(f"{ns}/{name}")
                if held is None:
                    return []  # another replica indexes it now, into the store we share
                with held:
                    return self._reconcile(repo, self.repositories.adapter(repo), None)
            except PorchError as exc:  # one broken repository must not stop the others
                return [f"repository {ns}/{name} could not be synced: {exc}"]

        results: dict[int, builtins.list[str]] = {}
        later: builtins.list[tuple[int, Repository, bool]] = []
        for i, repo in enumerate(repos):
            if not _local_git(repo):
                later.append((i, repo, False))
                continue
            try:
                notes = compare(repo)
            except PorchError:
                later.append((i, repo, False))  # compared again there, its error a note
                continue
            if notes is None:
                later.append((i, repo, True))
            else:
                results[i] = notes
        if workers <= 1 or len(later) <= 1:
            for i, repo, compared in later:
                results[i] = one(repo, compared)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="start") as pool:
                done = pool.map(lambda item: one(item[1], item[2]), later)
                for (i, _repo, _compared), notes in zip(later, done, strict=True):
                    results[i] = notes
        return [note for i in range(len(repos)) for note in results.get(i, [])]

    def take_start_check(self, namespace: str, name: str) -> StartCheck | None:
        """What ``start`` verified for a repository whose refs matched its sync mark (once:
        the syncer's first round takes it instead of comparing the digest again)."""
        return self._start_checks.pop((namespace, name), None)

    # --- reads ---------------------------------------------------------------------------------

    def current_resource_version(self) -> str:
        """The resourceVersion a list taken now would carry."""
        return str(self.store.current_resource_version())

    def get(self, namespace: str, name: str) -> PackageRevision:
        row, latest = self._row_latest(namespace, name)
        return self._object(row, self.repositories.get(namespace, row.repository), latest=latest)

    def list(
        self, namespace: str | None, *, field_selector: str = "", label_selector: str = ""
    ) -> tuple[builtins.list[PackageRevision], str]:
        """Matching revisions and the resourceVersion of the list."""
        flt = parse_revision_filter(namespace, field_selector, label_selector)
        return self._list(flt), str(self.store.current_resource_version())

    def _list(self, flt: RevisionFilter) -> builtins.list[PackageRevision]:
        rows = self.store.list_revisions(
            flt.namespace,
            repository=flt.repository or None if not flt.name else None,
            package=flt.package or None if not flt.name else None,
        )
        latest: dict[tuple[str, str, str], int] = {}
        for r in rows:
            if Lifecycle(r.lifecycle).published_like:
                key = (r.namespace, r.repository, r.package)
                latest[key] = max(latest.get(key, 0), r.revision)
        repos: dict[tuple[str, str], Repository] = {}
        out = []
        for r in rows:
            is_latest = (
                r.revision > 0
                and latest.get((r.namespace, r.repository, r.package)) == (r.revision)
                and Lifecycle(r.lifecycle).published_like
            )
            labels = dict(r.meta.get("labels") or {})
            if is_latest:
                labels[LATEST_REVISION_LABEL] = "true"
            if not flt.matches(
                namespace=r.namespace,
                name=r.name,
                repository=r.repository,
                package=r.package,
                workspace=r.workspace,
                revision=r.revision,
                lifecycle=r.lifecycle,
                kptfile_labels=r.kptfile.get("labels") or {},
                labels=labels,
            ):
                continue
            rkey = (r.namespace, r.repository)
            if rkey not in repos:
                repos[rkey] = self.repositories.get(*rkey)
            out.append(convert.to_package_revision(r, latest=is_latest, repo=repos[rkey]))
        return out

    def get_body(self, namespace: str, name: str) -> dict[str, Any]:
        """``get`` as JSON-shaped data: the body kept at the last write, when there is one."""
        row, latest = self._row_latest(namespace, name)
        repo = self.repositories.get(namespace, row.repository)
        return self._object(row, repo, latest=latest).to_dict()

    def list_bodies(
        self, namespace: str | None, *, field_selector: str = "", label_selector: str = ""
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """``list`` as JSON-shaped data, straight from the bodies stamped at each write.

        Every change that alters what a GET shows (including the computed latest label)
        stamps the row again, so the stored body is the current object; building 10,000
        objects anew per list is what this avoids.
        """
        flt = parse_revision_filter(namespace, field_selector, label_selector)
        if flt.name:
            # A metadata.name selector replaces every other key filter (spec §1.8).
            flt = RevisionFilter(
                namespace=flt.namespace,
                name=flt.name,
                kptfile_labels=flt.kptfile_labels,
                labels=flt.labels,
            )
        # What SQL already selected needs no second look.
        check = bool(
            flt.workspace or flt.revision or flt.lifecycle or flt.kptfile_labels or flt.labels
        )
        out = []
        version, rows = self.store.list_bodies_at(
            flt.namespace,
            repository=flt.repository or None,
            package=flt.package or None,
            name=flt.name or None,
        )
        for ns, name, text in rows:
            if text:
                body = orjson.loads(text)
            else:  # written before bodies were kept
                row = self.store.get_revision(ns, name)
                if row is None:
                    continue
                body = self._object(row, self.repositories.get(ns, row.repository)).to_dict()
            if not check or _revision_matches(flt, body):
                out.append(body)
        return out, str(version)

    def list_raw(
        self, namespace: str | None, *, field_selector: str = "", label_selector: str = ""
    ) -> tuple[builtins.list[bytes] | None, str]:
        """The stored JSON of each matching revision, unparsed, when SQL alone selects them
        (namespace, repository, package, name); None when a body must be looked into."""
        flt = parse_revision_filter(namespace, field_selector, label_selector)
        if flt.workspace or flt.revision or flt.lifecycle or flt.kptfile_labels or flt.labels:
            return None, ""
        if flt.name:
            flt = RevisionFilter(namespace=flt.namespace, name=flt.name)
        keys = {
            "repository": flt.repository or None,
            "package": flt.package or None,
            "name": flt.name or None,
        }
        version, rows = self.store.list_bodies_at(flt.namespace, **keys)
        rv = str(version)
        if any(not text for _ns, _name, text in rows):
            return None, ""  # rows written before bodies were kept: take the parsing path
        return [text.encode() for _ns, _name, text in rows], rv

    def get_resources(self, namespace: str, name: str) -> PackageRevisionResources:
        row, latest = self._row_latest(namespace, name)
        repo = self.repositories.get(namespace, row.repository)
        files = self._read_files(self.repositories.adapter(repo), convert.info_from_row(row))
        return convert.to_resources(row, files, repo=repo, latest=latest)

    def list_resources(
        self, namespace: str | None, *, field_selector: str = "", label_selector: str = ""
    ) -> builtins.list[PackageRevisionResources]:
        out = []
        for pr in self.list(
            namespace, field_selector=field_selector, label_selector=label_selector
        )[0]:
            out.append(self.get_resources(pr.metadata.namespace, pr.metadata.name))
        return out

    def list_packages(
        self, namespace: str | None, *, field_selector: str = ""
    ) -> builtins.list[PorchPackage]:
        flt = parse_package_filter(namespace, field_selector)
        groups: dict[tuple[str, str, str], int] = {}
        for r in self.store.list_revisions(flt.namespace, repository=flt.repository or None):
            key = (r.namespace, r.repository, r.package)
            best = groups.get(key, 0)
            if Lifecycle(r.lifecycle).published_like and r.revision > best:
                best = r.revision
            groups[key] = best
        out = []
        for (ns, repo, pkg), latest in sorted(groups.items()):
            obj = convert.to_porch_package(ns, repo, pkg, latest)
            if flt.name and obj.metadata.name != flt.name:
                continue
            if flt.package and pkg != flt.package:
                continue
            out.append(obj)
        return out

    # --- create --------------------------------------------------------------------------------

    def create(self, pr: PackageRevision, *, user: str | None = None) -> PackageRevision:
        ns, spec = pr.metadata.namespace, pr.spec
        if not ns:
            raise BadRequest("namespace must be specified")
        if not spec.repository:
            raise BadRequest("spec.repositoryName is required")
        repo = self.repositories.get(ns, spec.repository)
        check_latest_label_create(pr)
        validate_package_revision_names(spec.repository, spec.package_name, spec.workspace_name)
        check_create_lifecycle(spec.lifecycle)
        task = choose_task(pr)
        name = compose_name(spec.repository, spec.package_name, spec.workspace_name)
        key = f"{ns}-{spec.repository}-{spec.package_name}-{spec.workspace_name}"
        with self._try_locks.hold(
            "create:" + key,
            lambda: (
                "another request is already in progress to create package revision with"
                f" details namespace={ns}, repository={spec.repository},"
                f" package={spec.package_name}, workspace={spec.workspace_name}"
            ),
        ):
            return self._create_locked(pr, repo, task, name, user)

    def _create_locked(
        self, pr: PackageRevision, repo: Repository, task: Task, name: str, user: str | None
    ) -> PackageRevision:
        from porch.errors import AlreadyExists

        ns, spec = pr.metadata.namespace, pr.spec
        siblings = self.store.list_revisions(
            ns, repository=spec.repository, package=spec.package_name
        )
        if self.store.get_revision(ns, name) is not None or any(
            r.workspace == spec.workspace_name for r in siblings
        ):
            raise AlreadyExists(
                "package revision workspaceNames must be unique; package revision with name"
                f" {spec.package_name} in repo {spec.repository} with workspaceName"
                f" {spec.workspace_name} already exists"
            )
        if task.type in ("init", "clone"):
            if task.type == "clone" and siblings:
                raise AlreadyExists(
                    f'`clone` cannot create a new revision for package "{spec.package_name}"'
                    f' that already exists in repo "{spec.repository}"; make subsequent'
                    " revisions using `copy`"
                )
            if siblings:
                raise AlreadyExists(
                    f'package "{spec.package_name}" already exists in repository'
                    f' "{spec.repository}"'
                )
            other = self.store.nested_package(ns, spec.repository, spec.package_name)
            if other:
                raise Invalid(
                    f'package path "{spec.package_name}" conflicts with existing package'
                    f' "{other}": packages cannot be nested'
                )
        files = self._run_task(task, pr, repo)
        files = self._sync_kptfile_on_create(files, pr)
        outcome = self._render(files)
        if outcome.failed:
            raise RenderError(
                "Error rendering package in kpt function pipeline. Package NOT pushed to"
                " remote. Fix locally (until 'kpt fn render' succeeds) and retry. Details: "
                + outcome.error
            )
        files = outcome.files
        check_package_files(files)
        summary = convert.kptfile_summary(files)
        self._fault("create:before-write")
        with self._writes.hold(ns, spec.repository):
            adapter = self._write_adapter(repo)
            change = adapter.write(
                package=spec.package_name,
                workspace=spec.workspace_name,
                files=files,
                lifecycle=Lifecycle.DRAFT,
                task=task_json(task),
                author=self._author(repo, user),
                base=None,
            )
            assert change.info is not None
            self._remember_files(adapter, change.info, files)
            row = convert.row_from_info(ns, spec.repository, change.info, summary)
            row.meta = convert.metadata_of(pr.metadata, creation=self._clock())
            self._commit(
                lambda txn: [self._stamp(txn, row, "ADDED", repo, expect=0)],
                [change],
                point="create:after-write",
            )
        return self._object(row, repo)

    def _run_task(self, task: Task, pr: PackageRevision, repo: Repository) -> dict[str, str]:
        spec = pr.spec
        if task.type == "init":
            from porch.api.types import PackageInitTaskSpec

            return init_task(task.init or PackageInitTaskSpec(), spec.package_name)
        if task.type == "edit":
            source_name = task.edit.source_ref.name if task.edit and task.edit.source_ref else ""
            source = self.store.get_revision(pr.metadata.namespace, source_name)
            if source is None:
                raise NotFound(f'cannot find package revision "{source_name}"')
            if source.repository != spec.repository or source.package != spec.package_name:
                raise Invalid(
                    f"source revision must be from same package {spec.repository}/"
                    f"{spec.package_name}"
                )
            if source.revision == -1:
                raise Invalid(
                    "source revision may not be the placeholder package revision"
                    f" {source.repository}/{source.name}"
                )
            if not Lifecycle(source.lifecycle).published_like:
                raise Invalid("source revision must be published")
            adapter = self.repositories.adapter(repo)
            files = self._read_files(adapter, convert.info_from_row(source))
            return edit_task(files)
        if task.type == "clone":
            return self._clone(task, pr, repo)
        if task.type == "upgrade":
            return self._upgrade(task, pr, repo)
        raise Invalid(f'task of type "{task.type}" is not supported by this server yet')

    def _upgrade(self, task: Task, pr: PackageRevision, repo: Repository) -> dict[str, str]:
        """Three-way update of a downstream package to a new upstream revision (spec §4.4)."""
        from porch.tasks.upgrade import upgrade_task

        spec = task.upgrade
        ns = pr.metadata.namespace

        def ref(which: str) -> RevisionRow:
            target = getattr(spec, which, None) if spec is not None else None
            name = target.name if target is not None else ""
            if not name:
                raise Invalid(f"upgrade task requires {_UPGRADE_FIELDS[which]}.name")
            row = self.store.get_revision(ns, name)
            if row is None:
                raise NotFound(f'cannot find package revision "{name}"')
            return row

        old, new, local = (
            ref("old_upstream_ref"),
            ref("new_upstream_ref"),
            ref("local_package_revision_ref"),
        )
        if new.revision == -1:
            raise Invalid(
                "target upstream revision may not be the placeholder package revision"
                f" {new.repository}/{new.name}"
            )
        if local.revision == -1:
            raise Invalid(
                "source revision may not be the placeholder package revision"
                f" {local.repository}/{local.name}"
            )
        for row in (old, new, local):
            ours = row.repository == pr.spec.repository and row.package == pr.spec.package_name
            if ours and not Lifecycle(row.lifecycle).published_like:
                raise Invalid(
                    f'all source PackageRevisions of upgrade task must be published, "{row.name}"'
                    " is not"
                )

        def files_of(row: RevisionRow) -> dict[str, str]:
            source_repo = self.repositories.get(ns, row.repository)
            return self._read_files(
                self.repositories.adapter(source_repo), convert.info_from_row(row)
            )

        lock = self._registered_lock(self.repositories.get(ns, new.repository), new)
        files, _conflicts = upgrade_task(
            local=files_of(local),
            old_upstream=files_of(old),
            new_upstream=files_of(new),
            strategy=spec.strategy if spec is not None else "",
            package_path=pr.spec.package_name,
            upstream=lock,
        )
        return files

    def _clone(self, task: Task, pr: PackageRevision, repo: Repository) -> dict[str, str]:
        up = task.clone.upstream_ref if task.clone else None
        if up is not None and up.upstream_ref is not None and up.upstream_ref.name:
            return self._clone_registered(up.upstream_ref.name, pr, repo)
        if up is not None and up.git is not None and up.git.repo:
            return self._clone_git(up.git, pr, repo)
        if up is not None and up.oci is not None and up.oci.image:
            return self._clone_oci(up.oci.image, pr, repo)
        raise Invalid("invalid clone source (neither of git, oci, nor upstream were specified)")

    def _clone_git(self, git: GitPackage, pr: PackageRevision, repo: Repository) -> dict[str, str]:
        if self._fetch_upstream is None:
            raise Invalid("clone from a git URL is not supported by this server")
        credentials = None
        if git.secret_ref is not None and git.secret_ref.name:
            credentials = self._credentials(pr.metadata.namespace, git.secret_ref.name)
        files, commit = self._fetch_upstream(
            url=git.repo, ref=git.ref, directory=git.directory, credentials=credentials
        )
        lock = UpstreamLock(repo=git.repo, directory=git.directory, ref=git.ref, commit=commit)
        return clone_task(
            files,
            package_path=pr.spec.package_name,
            upstream=lock,
            deployment=repo.spec.deployment,
        )

    def _clone_oci(self, image: str, pr: PackageRevision, repo: Repository) -> dict[str, str]:
        """Clone the package an OCI image holds (its last layer), e.g. a porch revision
        ``<registry>/<package>:v3`` or any image ``kpt`` could read (docs/oci.md)."""
        from porch.repository.oci import OciCredentials, fetch_oci_package, split_image

        host, name, _reference = split_image(image)
        secret = self._oci_secret_for(pr.metadata.namespace, host, name)
        credentials = None
        if secret:
            got = self._credentials(pr.metadata.namespace, secret)
            credentials = OciCredentials(
                username=got.get("username", ""),
                password=got.get("password", ""),
                bearer_token=got.get("bearerToken", ""),
            )
        files, digest = fetch_oci_package(image, credentials)
        return clone_task(
            files,
            package_path=pr.spec.package_name,
            upstream=OciUpstreamLock(image=image.strip(), digest=digest),
            deployment=repo.spec.deployment,
        )

    def _oci_secret_for(self, namespace: str, host: str, name: str) -> str:
        """The ``secretRef`` of the registered OCI repository of this namespace whose registry
        (host and prefix) holds the image, the longest prefix winning; "" when none has one.
        ``upstream.oci`` carries no credentials of its own (Porch's API has only ``image``)."""
        from porch.repository.oci.client import split_registry

        bare = host.split("://", 1)[-1]
        best, best_len = "", -1
        for candidate in self.repositories.list(namespace):
            oci = candidate.spec.oci
            if candidate.spec.type != "oci" or oci is None or not oci.registry:
                continue
            try:
                _base, reg_host, prefix = split_registry(oci.registry)
            except PorchError:
                continue
            inside = not prefix or name == prefix or name.startswith(prefix + "/")
            if reg_host == bare and inside and len(prefix) > best_len:
                best = oci.secret_ref.name if oci.secret_ref else ""
                best_len = len(prefix)
        return best

    @staticmethod
    def _registered_lock(source_repo: Repository, row: RevisionRow) -> Upstream:
        """How a Kptfile points at a revision of a registered repository: git repo/directory/
        ref/commit, or for an OCI repository the image ``<registry>/<package>:<tag>`` locked to
        the manifest digest."""
        oci = source_repo.spec.oci
        if source_repo.spec.type == "oci" and oci is not None:
            image = f"{oci.registry.strip().rstrip('/')}/{row.package}:{row.ref}"
            return OciUpstreamLock(image=image, digest=row.commit)
        return UpstreamLock(
            repo=source_repo.spec.git.repo if source_repo.spec.git else "",
            directory=row.package,
            ref=row.ref,
            commit=row.commit,
        )

    def credentials(self, namespace: str, secret_name: str) -> dict[str, str]:
        """The credentials a Secret holds (for repository adapters: OCI auth)."""
        return self._credentials(namespace, secret_name)

    def _credentials(self, namespace: str, secret_name: str) -> dict[str, str]:
        """username/password (basic-auth Secret) or bearerToken (Opaque), spec §5.5."""
        import base64
        import binascii

        secret = self.objects.get("Secret", namespace, secret_name)
        data = secret.get("data") or {}
        try:
            plain = {k: base64.b64decode(v).decode() for k, v in data.items()}
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise Invalid(f'secret "{secret_name}" holds data that is not base64 text') from None
        kind = secret.get("type") or "Opaque"
        if kind == "kubernetes.io/basic-auth":
            return {"username": plain.get("username", ""), "password": plain.get("password", "")}
        if kind == "Opaque" and plain.get("bearerToken"):
            return {"bearerToken": plain["bearerToken"]}
        raise Invalid(
            f'secret "{secret_name}" of type {kind} holds no credentials porch can use'
            " (kubernetes.io/basic-auth, or Opaque with bearerToken)"
        )

    def _clone_registered(
        self, source_name: str, pr: PackageRevision, repo: Repository
    ) -> dict[str, str]:
        ns = pr.metadata.namespace
        source = self.store.get_revision(ns, source_name)
        if source is None:
            raise NotFound(f'cannot find package revision "{source_name}"')
        if source.revision == -1:
            raise Invalid(
                "upstream revision may not be the placeholder package revision"
                f" {source.repository}/{source.name}"
            )
        source_repo = self.repositories.get(ns, source.repository)
        files = self._read_files(
            self.repositories.adapter(source_repo), convert.info_from_row(source)
        )
        return clone_task(
            files,
            package_path=pr.spec.package_name,
            upstream=self._registered_lock(source_repo, source),
            deployment=repo.spec.deployment,
        )

    @staticmethod
    def _sync_kptfile_on_create(files: dict[str, str], pr: PackageRevision) -> dict[str, str]:
        text = files.get("Kptfile")
        if text is None:
            raise Invalid("package must contain Kptfile at root")
        meta = pr.spec.package_metadata
        if meta and (meta.labels or meta.annotations):
            text = kptfile_set_metadata(
                text, labels=meta.labels, annotations=meta.annotations, replace=False
            )
        if pr.spec.readiness_gates:
            gates = [g.condition_type for g in pr.spec.readiness_gates]
            text = kptfile_sync_readiness_gates(text, gates)
        return {**files, "Kptfile": text}

    # --- update --------------------------------------------------------------------------------

    def _check_resource_version(self, given: str, row: RevisionRow) -> None:
        if not given:
            raise StaleResourceVersion("resourceVersion must be specified for an update")
        if given != str(row.resource_version):
            raise StaleResourceVersion(
                f'Operation cannot be fulfilled on {RESOURCE} "{row.name}": the object has been'
                " modified; please apply your changes to the latest version and try again"
            )

    def _object_lock(self, namespace: str, name: str) -> Any:
        return self._try_locks.hold(
            f"{namespace}/{name}",
            lambda: (
                f'another request is already in progress on package revision "{namespace}/{name}"'
            ),
        )

    def update(
        self,
        pr: PackageRevision,
        *,
        endpoint: Endpoint = Endpoint.MAIN,
        user: str | None = None,
        groups: Sequence[str] = (),
    ) -> PackageRevision:
        """PUT of the object (``MAIN``) or of its ``approval`` subresource.

        ``user``/``groups`` are the caller's identity: the approval policy reads them.
        """
        ns, name = pr.metadata.namespace, pr.metadata.name
        with self._object_lock(ns, name):
            row, latest = self._row_latest(ns, name)
            repo = self.repositories.get(ns, row.repository)
            current = self._object(row, repo, latest=latest)
            self._check_resource_version(pr.metadata.resource_version, row)
            old = Lifecycle(row.lifecycle)
            new = _parse_lifecycle(pr.spec.lifecycle)
            check_transition(old, new, endpoint)
            check_latest_label_update(pr, LATEST_REVISION_LABEL in current.metadata.labels)
            if old.published_like:
                check_published_spec_unchanged(current, pr)
            meta = convert.metadata_of(
                pr.metadata, creation=row.meta.get("creationTimestamp") or self._clock()
            )
            if row.meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = row.meta["deletionTimestamp"]
                if not meta["finalizers"]:
                    return self._finish_deletion(row, repo, meta)
            # Who proposed it and the approvals so far live in the row's meta (docs/approval.md):
            # kept across updates, started afresh by a proposal, dropped by a rejection.
            record = row.meta.get(APPROVAL_META)
            if old is Lifecycle.DRAFT and new is Lifecycle.PROPOSED:
                record = {"proposedBy": user, "proposeTimestamp": self._clock()} if user else None
            elif old is Lifecycle.PROPOSED and new is Lifecycle.DRAFT:
                record = None
            if record:
                meta[APPROVAL_META] = record
            adapter = self._write_adapter(repo)
            info = convert.info_from_row(row)
            if old is Lifecycle.DRAFT:
                return self._update_draft(row, repo, adapter, pr, new, meta, user)
            if old is Lifecycle.PROPOSED and new is Lifecycle.PUBLISHED:
                return self._approve(row, repo, adapter, meta, user, groups)
            with self._writes.hold(ns, row.repository):
                changes: builtins.list[Change] = []
                new_row = _copy(row)
                new_row.meta = meta
                if new is not old:
                    change = adapter.set_lifecycle(info, new)
                    assert change.info is not None
                    changes.append(change)
                    new_row.lifecycle = str(change.info.lifecycle)
                    new_row.ref = change.info.ref
                    new_row.commit = change.info.commit
                self._commit(
                    lambda txn: [
                        self._stamp(txn, new_row, "MODIFIED", repo, expect=row.resource_version)
                    ],
                    changes,
                    point="update:after-lifecycle",
                )
            return self._object(new_row, repo)

    def _update_draft(
        self,
        row: RevisionRow,
        repo: Repository,
        adapter: PackageRepository,
        pr: PackageRevision,
        new: Lifecycle,
        meta: dict[str, Any],
        user: str | None,
    ) -> PackageRevision:
        info = convert.info_from_row(row)
        files = self._read_files(adapter, info)
        text = files["Kptfile"]
        spec, known = pr.spec, row.kptfile
        # Each Kptfile edit is a round-trip parse; skip the ones that would change nothing.
        wanted = spec.package_metadata
        if wanted is not None and (
            wanted.labels != known.get("labels") or wanted.annotations != known.get("annotations")
        ):
            text = kptfile_set_metadata(
                text, labels=wanted.labels, annotations=wanted.annotations, replace=True
            )
        gates = [g.condition_type for g in spec.readiness_gates]
        if gates != known.get("readinessGates"):
            text = kptfile_sync_readiness_gates(text, gates)
        if pr.status.conditions:
            from porch.api._serde import to_dict

            conditions = to_dict(pr.status.conditions)
            if conditions != known.get("conditions"):
                text = kptfile_sync_conditions(text, conditions)
        outcome = self._render({**files, "Kptfile": text})
        if outcome.failed:
            raise RenderError(
                "Error rendering package in kpt function pipeline. Package NOT pushed to"
                " remote. Fix locally (until 'kpt fn render' succeeds) and retry. Details: "
                + outcome.error
            )
        if outcome.files == files:
            # Nothing to commit (Porch writes an empty "Rendering package" commit here): a
            # propose only renames the branch, a metadata change only touches the index.
            with self._writes.hold(row.namespace, row.repository):
                changes: builtins.list[Change] = []
                new_row = _copy(row)
                if new is not Lifecycle(row.lifecycle):
                    change = adapter.set_lifecycle(info, new)
                    assert change.info is not None
                    changes.append(change)
                    new_row = convert.row_from_info(
                        row.namespace, row.repository, change.info, row.kptfile
                    )
                new_row.meta = meta
                self._commit(
                    lambda txn: [
                        self._stamp(txn, new_row, "MODIFIED", repo, expect=row.resource_version)
                    ],
                    changes,
                    point="update:after-write",
                )
            return self._object(new_row, repo)
        with self._writes.hold(row.namespace, row.repository):
            change = adapter.write(
                package=row.package,
                workspace=row.workspace,
                files=outcome.files,
                lifecycle=new,
                task={"type": "render"},
                author=self._author(repo, user),
                base=info,
            )
            assert change.info is not None
            self._remember_files(adapter, change.info, outcome.files)
            new_row = convert.row_from_info(
                row.namespace, row.repository, change.info, convert.kptfile_summary(outcome.files)
            )
            new_row.meta = meta
            self._commit(
                lambda txn: [
                    self._stamp(txn, new_row, "MODIFIED", repo, expect=row.resource_version)
                ],
                [change],
                point="update:after-write",
            )
        return self._object(new_row, repo)

    def _approve(
        self,
        row: RevisionRow,
        repo: Repository,
        adapter: PackageRepository,
        meta: dict[str, Any],
        user: str | None,
        groups: Sequence[str] = (),
    ) -> PackageRevision:
        """Record the caller's approval; publish once the repository's policy is met."""
        policy = repo.spec.approval_policy
        record = dict(meta.get(APPROVAL_META) or {})
        approvals = [dict(a) for a in record.get("approvals") or []]
        if policy is not None:
            check_approver(
                name=row.name,
                repository=row.repository,
                policy=policy,
                user=user,
                groups=groups,
                proposed_by=str(record.get("proposedBy") or ""),
                approved_by=[str(a.get("user")) for a in approvals],
            )
        check_readiness(row.name, row.kptfile)
        if user and all(a.get("user") != user for a in approvals):  # one entry per user
            approvals.append({"user": user, "time": self._clock()})
        if approvals:
            meta = {**meta, APPROVAL_META: {**record, "approvals": approvals}}
        if policy is not None and len(approvals) < approvals_required(policy):
            # Not enough approvals yet: only the record changes, the revision stays Proposed.
            waiting = _copy(row)
            waiting.meta = meta
            self._commit(
                lambda txn: [
                    self._stamp(txn, waiting, "MODIFIED", repo, expect=row.resource_version)
                ],
                point="approve:recorded",
            )
            return self._object(waiting, repo)
        with (
            self._package_locks.hold(f"{row.namespace}/{row.repository}/{row.package}"),
            self._writes.hold(row.namespace, row.repository),
        ):
            number = (
                self.store.max_published_revision(row.namespace, row.repository, row.package) + 1
            )
            change = adapter.publish(
                convert.info_from_row(row), revision=number, author=self._author(repo, user)
            )
            assert change.info is not None
            published = convert.row_from_info(
                row.namespace, row.repository, change.info, row.kptfile
            )
            published.meta = meta
            key = (row.namespace, row.repository, row.package)

            def work(txn: Transaction) -> builtins.list[Event]:
                # Read inside the transaction, which runs alone across every replica: another
                # replica may have published this package since ``number`` was chosen.
                taken = self.store.max_published_revision(*key, excluding=published.name)
                if taken != number - 1:
                    raise Conflict(
                        f"revision {number} of package {row.package} in repository"
                        f" {row.repository} was published concurrently (latest is now"
                        f" {taken}); please retry the approval"
                    )
                holder = self.store.get_revision(
                    row.namespace, compose_name(row.repository, row.package, adapter.branch)
                )
                assert change.info is not None
                placeholder = convert.row_from_info(
                    row.namespace,
                    row.repository,
                    RevisionInfo(
                        package=row.package,
                        workspace=adapter.branch,
                        revision=-1,
                        lifecycle=Lifecycle(holder.lifecycle) if holder else Lifecycle.PUBLISHED,
                        commit=change.info.commit,
                        ref=adapter.branch,
                        published_by=change.info.published_by,
                        published_at=change.info.published_at,
                    ),
                    row.kptfile,
                )
                placeholder.meta = holder.meta if holder else {"creationTimestamp": self._clock()}
                previous = [
                    r
                    for r in self.store.list_revisions(
                        row.namespace, repository=row.repository, package=row.package
                    )
                    if _published(r) and r.revision == number - 1
                ]
                events = [
                    self._stamp(txn, published, "MODIFIED", repo, expect=row.resource_version)
                ]
                events.append(
                    self._stamp(txn, placeholder, "MODIFIED" if holder else "ADDED", repo)
                )
                # The former latest loses its computed label: it changed, so it gets a new RV.
                events += [self._stamp(txn, r, "MODIFIED", repo, latest=False) for r in previous]
                return events

            self._commit(work, [change], point="approve:after-publish")
            return self._object(published, repo)

    # --- resources -----------------------------------------------------------------------------

    def update_resources(
        self, prr: PackageRevisionResources, *, user: str | None = None
    ) -> PackageRevisionResources:
        """Replace the whole file set of a Draft and re-render it (spec §3.3)."""
        ns, name = prr.metadata.namespace, prr.metadata.name
        with self._object_lock(ns, name):
            row = self._row(ns, name)
            repo = self.repositories.get(ns, row.repository)
            self._check_resource_version(prr.metadata.resource_version, row)
            if row.lifecycle != Lifecycle.DRAFT:
                raise Invalid(
                    f'cannot update a package revision with lifecycle value "{row.lifecycle}";'
                    " package must be Draft"
                )
            submitted = dict(prr.spec.resources)
            check_package_files(submitted)
            adapter = self._write_adapter(repo)
            info = convert.info_from_row(row)
            old_files = self._read_files(adapter, info)
            files = heal_comments(old_files, submitted)
            if "Kptfile" not in files:
                raise Invalid("package must contain Kptfile at root")
            outcome = self._render(files)
            push_anyway = row.meta.get("annotations", {}).get(PUSH_ON_RENDER_FAILURE) == "true"
            if outcome.failed and not push_anyway:
                raise RenderError(
                    "error rendering package in kpt function pipeline. Package NOT pushed to"
                    " remote. Fix locally (until 'kpt fn render' succeeds) and retry. Details: "
                    + outcome.error
                )
            with self._writes.hold(ns, row.repository):
                try:
                    change = adapter.write(
                        package=row.package,
                        workspace=row.workspace,
                        files=outcome.files,
                        lifecycle=Lifecycle.DRAFT,
                        task={"type": "render"},
                        author=self._author(repo, user),
                        base=info,
                    )
                except PorchError as exc:
                    if not outcome.failed:
                        raise
                    raise InternalError(
                        f"failed to persist resources after render failure: {exc}"
                    ) from exc
                assert change.info is not None
                self._remember_files(adapter, change.info, outcome.files)
                new_row = convert.row_from_info(
                    ns, row.repository, change.info, convert.kptfile_summary(outcome.files)
                )
                new_row.meta = row.meta
                self._commit(
                    lambda txn: [
                        self._stamp(txn, new_row, "MODIFIED", repo, expect=row.resource_version)
                    ],
                    [change],
                    point="resources:after-write",
                )
            if outcome.failed:
                raise RenderError(
                    "error rendering package in kpt function pipeline. Package pushed to remote"
                    " despite render failure. Details: " + outcome.error,
                    pushed=True,
                )
            result = convert.to_resources(new_row, outcome.files, repo=repo, latest=False)
            # Porch keeps the render result for the response when it says anything (§3.3.5).
            if outcome.result is not None and (outcome.result.get("items") or outcome.error):
                from porch.api._serde import from_dict
                from porch.api.types import RenderStatus

                result.status.render_status = from_dict(
                    RenderStatus, {"result": outcome.result, "error": outcome.error}
                )
            return result

    # --- delete --------------------------------------------------------------------------------

    def delete(self, namespace: str, name: str, *, user: str | None = None) -> PackageRevision:
        row = self._row(namespace, name)
        if row.lifecycle == Lifecycle.PUBLISHED:
            raise Forbidden(
                "published PackageRevisions must be proposed for deletion by setting"
                " spec.lifecycle to 'DeletionProposed' prior to deletion"
            )
        referrers = [
            r.name
            for r in self.store.mentioning(namespace, name)
            if r.revision != -1 and r.name != name
        ]
        if referrers:
            raise Forbidden(
                "cannot delete package revision, it is referenced as upstream by: "
                + ", ".join(referrers)
            )
        repo = self.repositories.get(namespace, row.repository)
        with self._object_lock(namespace, name):
            row = self._row(namespace, name)
            if row.meta.get("finalizers"):
                new_row = _copy(row)
                new_row.meta = {**row.meta, "deletionTimestamp": self._clock()}
                self._commit(
                    lambda txn: [
                        self._stamp(txn, new_row, "MODIFIED", repo, expect=row.resource_version)
                    ]
                )
                return self._object(new_row, repo)
            return self._finish_deletion(row, repo, row.meta)

    def _finish_deletion(
        self, row: RevisionRow, repo: Repository, meta: dict[str, Any]
    ) -> PackageRevision:
        with self._writes.hold(row.namespace, row.repository):
            adapter = self._write_adapter(repo)
            before = self._object(row, repo)
            change = adapter.delete(convert.info_from_row(row))
            gone = _copy(row)
            gone.meta = meta

            def work(txn: Transaction) -> builtins.list[Event]:
                events = [self._stamp(txn, gone, "DELETED", repo, expect=row.resource_version)]
                if not _published(row):
                    return events
                # Decided here, where every replica's writes are seen (not from ``before``):
                # if the gone revision was its package's latest, the next one becomes it.
                rest = [
                    r
                    for r in self.store.list_revisions(
                        row.namespace, repository=row.repository, package=row.package
                    )
                    if _published(r) and r.name != row.name
                ]
                newest = max(rest, key=lambda r: r.revision, default=None)
                if newest is not None and newest.revision < row.revision:
                    events.append(self._stamp(txn, newest, "MODIFIED", repo, latest=True))
                return events

            self._commit(work, [change], point="delete:after-delete")
        before.metadata.resource_version = str(gone.resource_version)
        return before

    # --- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        namespace: str | None,
        *,
        field_selector: str = "",
        label_selector: str = "",
        resource_version: str = "",
    ) -> Watcher:
        """ADDED for the current state (or the log after ``resource_version``), then live."""
        flt = parse_revision_filter(namespace, field_selector, label_selector)

        def predicate(obj: dict[str, Any]) -> bool:
            return obj.get("kind") == "PackageRevision" and _revision_matches(flt, obj)

        def initial() -> builtins.list[WatchEvent]:
            bodies, _rv = self.list_bodies(
                namespace, field_selector=field_selector, label_selector=label_selector
            )
            return [
                WatchEvent("ADDED", body, int(body["metadata"]["resourceVersion"]))
                for body in bodies
            ]

        return self.open_watch(predicate, initial, resource_version)

    def open_watch(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        initial: Callable[[], builtins.list[WatchEvent]],
        resource_version: str,
    ) -> Watcher:
        """Register first, then send the current state (or the log after a resourceVersion)."""
        # What other replicas committed before now goes to the hub before this watcher joins
        # it, so the list below does not race their late notifications.
        self._feed.catch_up()
        watcher = self.hub.add(predicate)
        try:
            if resource_version in ("", "0"):
                for event in initial():
                    watcher.push_initial(event)
            else:
                self._replay(watcher, resource_version, predicate)
        except BaseException:
            watcher.close()
            raise
        watcher.go_live()
        return watcher

    def _replay(
        self, watcher: Watcher, resource_version: str, predicate: Callable[[dict[str, Any]], bool]
    ) -> None:
        if not resource_version.isdigit():
            raise BadRequest(f'invalid resourceVersion "{resource_version}"')
        since = int(resource_version)
        oldest = self.store.oldest_event()
        if since > self.store.current_resource_version():
            raise Expired(f"too large resource version: {since}")
        if oldest and since < oldest - 1:
            raise Expired(f"too old resource version: {since} ({oldest - 1})")
        while True:
            batch = self.store.events_after(since)
            if not batch:
                return
            for event in batch:
                body = event.body
                if event.kind == "Secret" and self.sealer is not None:
                    body = self.sealer.open(body)
                if predicate(body):
                    watcher.push_initial(WatchEvent(event.type, body, event.resource_version))
            since = batch[-1].resource_version


def _revision_matches(flt: RevisionFilter, obj: dict[str, Any]) -> bool:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return flt.matches(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        repository=spec.get("repository", ""),
        package=spec.get("packageName", ""),
        workspace=spec.get("workspaceName", ""),
        revision=spec.get("revision", 0),
        lifecycle=spec.get("lifecycle", ""),
        kptfile_labels=(spec.get("packageMetadata") or {}).get("labels") or {},
        labels=meta.get("labels") or {},
    )


SYNC_ATTEMPTS = 5  # reconcile passes before a sync gives up to the next one
# The store keeps one object of this kind per synced repository: the digest of the refs its
# index was last built from. Not an API kind (no event, no resourceVersion): only the sync
# reads it (docs/sync.md).
SYNC_MARK = "porch.internal/SyncMark"
# Bump when what discovery makes of the same refs changes: every mark is then stale.
SYNC_MARK_FORMAT = 1


def _mark_body(version: str) -> dict[str, Any]:
    return {"refs": version, "format": SYNC_MARK_FORMAT}


def _listing(adapter: PackageRepository) -> tuple[str, list[RevisionInfo]]:
    """(refs digest, revisions) of one ref snapshot when the adapter can tell (git); else the
    digest is taken first, so a mark never claims a newer state than the one listed."""
    listing = getattr(adapter, "listing", None)
    if callable(listing):
        version, infos = listing()
        return str(version), list(infos)
    version = adapter.version()
    return version, adapter.list_revisions()


def _local_git(repo: Repository) -> bool:
    """A git repository at a local path: its fetch only opens it (no network to wait on)."""
    git = repo.spec.git
    return repo.spec.type in ("", "git") and git is not None and "://" not in git.repo


class _SyncRaced(Exception):
    """An API write changed the repository's index while a sync was comparing it."""


def _check_namespace(namespace: str) -> None:
    if not namespace:
        raise BadRequest("namespace must be specified")


def _found(row: RevisionRow | None, name: str) -> RevisionRow:
    if row is None:
        # A name that cannot even be parsed names nothing either: 404, as kube-apiserver
        # answers for any absent name (and server-side apply can then create the object).
        raise NotFound(f'{RESOURCE} "{name}" not found')
    return row


def _published(row: RevisionRow) -> bool:
    """A numbered Published/DeletionProposed revision: one that can be its package's latest."""
    return row.revision > 0 and Lifecycle(row.lifecycle).published_like


def _latest_by_package(revisions: Iterable[tuple[str, int, Lifecycle]]) -> dict[str, int]:
    """Highest published revision number per package path (the one labelled latest)."""
    best: dict[str, int] = {}
    for package, revision, lifecycle in revisions:
        if revision > 0 and lifecycle.published_like and revision > best.get(package, 0):
            best[package] = revision
    return best


def _kptfile_summary(adapter: PackageRepository, info: RevisionInfo) -> dict[str, Any]:
    """The index's Kptfile summary of a revision, reading only its Kptfile when the adapter
    can (the git one can); otherwise every file."""
    read_kptfile = getattr(adapter, "read_kptfile", None)
    if callable(read_kptfile):
        text = read_kptfile(info)
    else:
        text = adapter.read_files(info).get("Kptfile")
    if not isinstance(text, str):
        return convert.kptfile_summary({})  # raises: a package must hold a Kptfile
    summary: dict[str, Any] = orjson.loads(_summary_json(text))  # a copy of its own
    return summary


@functools.lru_cache(maxsize=4096)
def _summary_json(text: str) -> bytes:
    # Revisions of a package mostly share one Kptfile text: summarise each text once.
    return orjson.dumps(convert.kptfile_summary({"Kptfile": text}))


def _copy(row: RevisionRow) -> RevisionRow:
    from dataclasses import replace

    return replace(row, meta=dict(row.meta))
