"""Compare-and-swap reference updates, for a local repository and (in remote.py) a remote.

Ref names here are always the *origin's* names (``refs/heads/…``, ``refs/tags/…``); a mirror
maps them to where it keeps its copy. Every update names the value it expects to replace, so
two writers can never silently overwrite each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pygit2
from pygit2.enums import ReferenceType

from porch.errors import AlreadyExists, Conflict

from .layout import HEADS, TAGS


@dataclass(frozen=True)
class RefUpdate:
    name: str  # full origin-side name
    old: str | None  # expected current target (None: must not exist)
    new: str | None  # target to set (None: delete)

    def inverse(self) -> RefUpdate:
        return RefUpdate(self.name, self.new, self.old)


class RefStore(Protocol):
    """Where refs are read and moved. Callers hold the repository lock."""

    def get(self, name: str) -> str | None: ...

    def snapshot(self) -> dict[str, str]:
        """Every branch and tag (origin names) → the hex id it points at (not peeled)."""
        ...

    def apply(self, updates: Sequence[RefUpdate]) -> None:
        """Move all refs or none; ``AlreadyExists``/``Conflict`` when an expectation fails."""
        ...

    def fetch(self) -> None: ...


def short(name: str) -> str:
    for prefix in (HEADS, TAGS):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def expectation_error(update: RefUpdate, current: str | None) -> Exception:
    if update.old is None:
        return AlreadyExists(f"{short(update.name)} already exists")
    if current is None:
        return Conflict(f"{short(update.name)} was deleted concurrently")
    return Conflict(
        f"{short(update.name)} was moved concurrently (expected {update.old[:12]}, "
        f"found {current[:12]})"
    )


def pending(store: RefStore, updates: Sequence[RefUpdate]) -> list[RefUpdate]:
    """The subset of ``updates`` still to do, so that re-applying (or undoing) is idempotent.

    A ref already at its target is skipped; any other unexpected value is a conflict.
    """
    todo: list[RefUpdate] = []
    for update in updates:
        current = store.get(update.name)
        if current == update.new:
            continue
        if current != update.old:
            raise expectation_error(update, current)
        todo.append(update)
    return todo


def revert(store: RefStore, updates: Sequence[RefUpdate]) -> None:
    """Undo ``updates``: put each ref back where it was, if it still is where we left it."""
    store.fetch()
    todo = pending(store, [u.inverse() for u in reversed(updates)])
    if todo:
        store.apply(todo)


class LocalRefStore:
    """Refs of a repository on this filesystem, moved with a libgit2 transaction."""

    def __init__(self, repo: Any) -> None:
        self._repo = repo

    def get(self, name: str) -> str | None:
        ref = self._repo.references.get(name)
        if ref is None:
            return None
        if ref.type == ReferenceType.SYMBOLIC:
            ref = ref.resolve()
        return str(ref.target)

    def snapshot(self) -> dict[str, str]:
        refs: dict[str, str] = {}
        for ref in self._repo.references.iterator():
            name = ref.name
            if ref.type != ReferenceType.DIRECT or not name.startswith((HEADS, TAGS)):
                continue
            refs[name] = str(ref.target)
        return refs

    def apply(self, updates: Sequence[RefUpdate]) -> None:
        if not updates:
            return
        try:
            # Locks first, then checks: while we hold the lock files nobody else (another
            # process, the git CLI) can move the refs between our check and our write.
            with self._repo.transaction() as txn:
                for update in updates:
                    txn.lock_ref(update.name)
                for update in updates:
                    current = self.get(update.name)
                    if current != update.old:
                        raise expectation_error(update, current)
                for update in updates:
                    if update.new is None:
                        txn.remove(update.name)
                    else:
                        txn.set_target(update.name, update.new, message="porch")
        except pygit2.GitError as err:
            names = ", ".join(short(u.name) for u in updates)
            raise Conflict(f"could not update {names}: {err}") from None

    def fetch(self) -> None:
        return None
