"""The seam between the engine and a package store (git, OCI, memory).

A repository adapter knows refs, commits and files. It never sees an HTTP request, a
resourceVersion or object metadata (labels, finalizers): those live in the store.

Every mutating call returns a ``Change``: the new state plus an ``undo`` that restores the
refs it moved, by compare-and-swap, so the engine can roll a whole operation back when a later
step (the store, a render, an injected fault) fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from porch.api.types import Lifecycle

PORCH_NAME = "Package Orchestration Service"
PORCH_EMAIL = "porch@kpt.dev"


@dataclass(frozen=True)
class Author:
    name: str
    email: str


PORCH_AUTHOR = Author(PORCH_NAME, PORCH_EMAIL)


@dataclass(frozen=True)
class RevisionInfo:
    """What storage alone says about one package revision (spec §5.3)."""

    package: str  # package path relative to the repository directory, "/"-separated
    workspace: str
    revision: int  # 0 Draft/Proposed, N>0 published, -1 placeholder / non-numeric tag
    lifecycle: Lifecycle
    commit: str  # content version: the commit SHA for git
    ref: str  # short self-lock ref: drafts/FP/ws, proposed/FP/ws, FP/vN or the branch
    tasks: tuple[dict[str, Any], ...] = ()  # the creating task (Task JSON), 0 or 1 element
    published_by: str = ""
    published_at: datetime | None = None

    @property
    def placeholder(self) -> bool:
        """The package as it sits on the registered branch (ref and workspace are the branch)."""
        return self.revision == -1 and self.ref == self.workspace


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Change:
    """Result of a mutation: the revision as it now is (None after delete) and its undo."""

    info: RevisionInfo | None
    undo: Callable[[], None] = field(default=_nothing)


class PackageRepository(Protocol):
    """One registered repository. Implementations are thread-safe."""

    @property
    def url(self) -> str:
        """Where the packages live, as shown in self locks (``status.selfLock.git.repo``)."""
        ...

    @property
    def branch(self) -> str: ...

    @property
    def directory(self) -> str:
        """Sub-directory holding the packages, without leading/trailing ``/`` ("" = root)."""
        ...

    def fetch(self) -> None:
        """Bring the local view up to date with the remote (no-op for local repositories)."""
        ...

    def version(self) -> str:
        """A digest of all refs; changes whenever any revision changes."""
        ...

    def list_revisions(self) -> list[RevisionInfo]:
        """Discover every revision from storage alone (drafts, proposed, tags, placeholders)."""
        ...

    def read_files(self, info: RevisionInfo) -> dict[str, str]:
        """The package's files, relative to the package root."""
        ...

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
        """Commit ``files`` as the whole package directory of a Draft or Proposed revision.

        ``base`` None opens a new draft on the current head of the branch (the ref must not exist
        yet: ``AlreadyExists``); otherwise the commit goes on top of ``base.commit`` and the ref
        for ``lifecycle`` moves there by compare-and-swap (``Conflict`` when it moved meanwhile).
        When the lifecycle changes the ref name, the old ref is deleted. The commit message is
        the subject for ``task["type"]`` plus the ``kpt:`` trailer (spec §5.2).
        """
        ...

    def set_lifecycle(self, info: RevisionInfo, lifecycle: Lifecycle) -> Change:
        """Draft↔Proposed (rename the branch) or Published↔DeletionProposed (marker branch)."""
        ...

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        """Proposed → Published as revision ``revision`` (tag + two-parent commit on branch)."""
        ...

    def delete(self, info: RevisionInfo) -> Change:
        """Remove a revision: drafts/proposed branches, tags and markers, placeholder contents."""
        ...
