"""The store's seam: rows it keeps and the operations the engine needs.

The store is the index of what the repositories hold plus everything that does not live in
git: object metadata (labels, annotations, finalizers, ownerReferences, timestamps), the global
resourceVersion counter and the event log watches resume from. Git stays the truth for which
revisions exist; the engine reconciles the index with it on start and on sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class RevisionRow:
    namespace: str
    name: str
    repository: str
    package: str
    workspace: str
    revision: int
    lifecycle: str
    commit: str
    ref: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    published_by: str = ""
    published_at: str | None = None
    # Kptfile-derived fields (labels, annotations, readinessGates, conditions, upstreamLock).
    kptfile: dict[str, Any] = field(default_factory=dict)
    # Object metadata kept outside git (labels, annotations, finalizers, ownerReferences,
    # creationTimestamp, deletionTimestamp).
    meta: dict[str, Any] = field(default_factory=dict)
    resource_version: int = 0


@dataclass
class ObjectRow:
    """Any other stored object (Repository, Secret, …) as its JSON shape."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    resource_version: int = 0


@dataclass
class ContentRow:
    """A revision whose state lives only in the store (``--content db``, docs/store.md).

    Drafts and Proposed revisions keep their files here (``version`` is their content version,
    shown as the commit); a Published revision proposed for deletion keeps only a marker
    (lifecycle DeletionProposed, ``version`` = its commit, no files).
    """

    namespace: str
    repository: str
    package: str
    workspace: str
    lifecycle: str  # Draft, Proposed or DeletionProposed
    version: str
    ref: str
    revision: int = 0
    tasks: list[dict[str, Any]] = field(default_factory=list)
    author_name: str = ""
    author_email: str = ""
    updated_at: str = ""
    files: dict[str, str] | None = None  # None when listed without the files


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    namespace: str
    name: str
    body: dict[str, Any]


class Transaction(Protocol):
    def next_resource_version(self) -> int: ...

    def put_revision(self, row: RevisionRow, body: dict[str, Any] | None = None) -> None:
        """Store the row, and the object as a GET returns it (kept for fast lists)."""
        ...

    def delete_revision(self, namespace: str, name: str) -> None: ...

    def put_object(self, row: ObjectRow) -> None: ...

    def delete_object(self, kind: str, namespace: str, name: str) -> None: ...

    def add_event(self, event: Event) -> None: ...

    # Batches (a repository's index build): one round trip each instead of one per row.

    def reserve_resource_versions(self, count: int) -> int:
        """Allocate ``count`` consecutive resourceVersions; returns the first of them."""
        ...

    def put_revisions(self, items: Sequence[tuple[RevisionRow, dict[str, Any] | None]]) -> None:
        """``put_revision`` for each (row, body), in order."""
        ...

    def add_events(self, events: Sequence[Event]) -> None: ...

    def put_content(self, row: ContentRow) -> None:
        """Insert or replace the content row of (namespace, repository, package, workspace)."""
        ...

    def delete_content(
        self, namespace: str, repository: str, package: str, workspace: str
    ) -> None: ...

    def delete_contents(self, namespace: str, repository: str) -> None:
        """Drop every content row of a repository (it was unregistered)."""
        ...

    def exclude_writes(self, namespace: str, repository: str) -> bool:
        """In a sync's commit transaction: False when an API write of any process sharing the
        store is in flight on the repository (``Store.hold_writes``); True when none is, and
        then none can start until this transaction ends (docs/sync.md)."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def hold_writes(self, namespace: str, repository: str) -> AbstractContextManager[None]:
        """Mark an API write in flight on the repository, for every process sharing the store,
        until the context ends (from a write's first git change to the end of its index commit
        or undo). Nests; waits while a sync commits that repository (docs/sync.md)."""
        ...

    def wait_writes(self, namespace: str, repository: str, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until no process sharing the store has a write in
        flight on the repository; False when one still has."""
        ...

    def get_revision(self, namespace: str, name: str) -> RevisionRow | None: ...

    def get_revision_and_rival(self, namespace: str, name: str) -> tuple[RevisionRow | None, int]:
        """A revision and, read in the same statement (one snapshot), the highest
        Published/DeletionProposed revision of its package other than itself (0 when none):
        what its computed latest label depends on. A row and a separately read maximum can
        straddle a concurrent approval (docs/reliability.md)."""
        ...

    def list_revisions(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
    ) -> list[RevisionRow]: ...

    def max_published_revision(
        self, namespace: str, repository: str, package: str, *, excluding: str = ""
    ) -> int:
        """Highest Published/DeletionProposed revision of a package (0 when none)."""
        ...

    def count_revisions(self, namespace: str, repository: str) -> int:
        """How many revisions of a repository the index holds."""
        ...

    def list_bodies(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
        name: str | None = None,
    ) -> list[tuple[str, str, str]]: ...

    def list_bodies_at(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
        name: str | None = None,
    ) -> tuple[int, list[tuple[str, str, str]]]:
        """``current_resource_version()`` and ``list_bodies(...)`` read in one statement: the
        list holds exactly what that resourceVersion says, in one round trip."""
        ...

    def nested_package(self, namespace: str, repository: str, package: str) -> str | None:
        """Another package path that contains ``package`` or lies inside it, if any."""
        ...

    def mentioning(self, namespace: str, name: str) -> list[RevisionRow]:
        """Rows whose creating task (clone or upgrade) names ``name`` as its upstream."""
        ...

    def get_content(
        self, namespace: str, repository: str, package: str, workspace: str
    ) -> ContentRow | None:
        """One content row with its files (inside a transaction: as that transaction sees it)."""
        ...

    def list_contents(self, namespace: str, repository: str) -> list[ContentRow]:
        """A repository's content rows, without their files (``files`` is None)."""
        ...

    def get_object(self, kind: str, namespace: str, name: str) -> ObjectRow | None: ...

    def list_objects(self, kind: str, namespace: str | None = None) -> list[ObjectRow]: ...

    def current_resource_version(self) -> int: ...

    def events_after(self, resource_version: int, *, limit: int = 1000) -> list[Event]: ...

    def oldest_event(self) -> int:
        """resourceVersion of the oldest retained event (0 when the log is empty)."""
        ...

    def compact(self, *, keep: int) -> None:
        """Drop all but the newest ``keep`` events."""
        ...

    def close(self) -> None: ...
