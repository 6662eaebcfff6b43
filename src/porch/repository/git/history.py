"""An incremental index of the ``kpt:`` annotations in a repository's history.

Discovery asks two history questions per revision (§5.3 steps 3–4): which task created it,
and which commit last touched a branch package. Walking the log for each of thousands of
revisions is quadratic, so every commit reachable from any ref is read once, its annotations
are indexed by package and workspace, and a question becomes "the newest indexed candidate
that is an ancestor of this commit". Commits never change, so nothing here is invalidated:
new refs only add commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .trailers import CREATING_TASKS, Annotation, parse_annotations

Repo = Any

# A commit is usually found among the first few ancestors (an approval commit's second parent
# is the draft head); looking there first avoids a libgit2 merge-base walk per revision.
_NEAR_ANCESTORS = 32


class CommitMeta(NamedTuple):
    parents: tuple[str, ...]
    tree: str
    author_email: str
    author_time: int
    author_offset: int


class CommitIndex:
    def __init__(self, repo: Repo) -> None:
        self._repo = repo
        self._seen: set[str] = set()
        self._meta: dict[str, CommitMeta] = {}
        self._annotations: dict[str, tuple[Annotation, ...]] = {}
        # (FP, workspace) → [(commit time, commit, task)] for creating tasks
        self._creating: dict[tuple[str, str], list[tuple[int, str, Mapping[str, Any]]]] = {}
        # FP → [(commit time, commit)] for any commit annotated with the package
        self._touching: dict[str, list[tuple[int, str]]] = {}
        self._task_cache: dict[tuple[str, str, str], Mapping[str, Any] | None] = {}
        self._reachable: tuple[str, frozenset[str]] | None = None
        self._touch_cache: dict[tuple[str, str], str | None] = {}

    def annotations(self, commit: str) -> tuple[Annotation, ...]:
        if commit not in self._seen:
            self.add_tips([commit])
        return self._annotations.get(commit, ())

    def meta(self, commit: str) -> CommitMeta:
        if commit not in self._meta:
            self.add_tips([commit])
        return self._meta[commit]

    def add_tips(self, tips: Iterable[str]) -> None:
        """Index every commit reachable from ``tips`` that has not been indexed yet."""
        # Each indexed commit has its whole ancestry indexed too, so the walk stops there.
        stack = [tip for tip in tips if tip not in self._seen]
        while stack:
            oid = stack.pop()
            if oid in self._seen:
                continue
            self._seen.add(oid)
            try:
                commit = self._repo[oid]
            except KeyError:
                continue  # shallow or damaged history: index what exists
            self._index(oid, commit)
            parents = tuple(str(p) for p in commit.parent_ids)
            author = commit.author
            self._meta[oid] = CommitMeta(
                parents, str(commit.tree_id), author.email, author.time, author.offset
            )
            stack.extend(p for p in parents if p not in self._seen)

    def _index(self, oid: str, commit: Any) -> None:
        raw: bytes = commit.raw_message
        if b"kpt:" not in raw:
            return
        found = parse_annotations(raw.decode("utf-8", errors="replace"))
        if not found:
            return
        self._annotations[oid] = found
        when: int = commit.commit_time
        for ann in found:
            self._touching.setdefault(ann.package, []).append((when, oid))
            if ann.task is not None and ann.task_type in CREATING_TASKS:
                # Trailers written before workspaces existed carry the workspace as revision.
                key = (ann.package, ann.workspace or ann.revision)
                self._creating.setdefault(key, []).append((when, oid, ann.task))

    def creating_task(self, start: str, fp: str, workspace: str) -> Mapping[str, Any] | None:
        """The task of the newest creating-task trailer for (FP, ws) in ``start``'s history.

        This is what Porch's newest-first log walk finds (§5.3 step 3), without the walk.
        """
        key = (start, fp, workspace)
        if key in self._task_cache:
            return self._task_cache[key]
        candidates = sorted(self._creating.get((fp, workspace), ()), key=lambda c: -c[0])
        best: tuple[int, str, Mapping[str, Any]] | None = None
        for candidate in candidates:
            when, oid, _ = candidate
            if best is not None and when < best[0]:
                break
            if not self._is_ancestor(oid, start):
                continue
            # Several candidates in the same second: the later one descends from the other.
            if best is None or self._is_ancestor(best[1], oid):
                best = candidate
        result = best[2] if best else None
        self._task_cache[key] = result
        return result

    def latest_touch(self, head: str, fp: str) -> str | None:
        """The newest commit in ``head``'s history carrying an annotation for ``fp``."""
        key = (head, fp)
        if key not in self._touch_cache:
            reachable = self._reachable_from(head)
            hits = [c for c in self._touching.get(fp, ()) if c[1] in reachable]
            self._touch_cache[key] = max(hits)[1] if hits else None
        return self._touch_cache[key]

    def _is_ancestor(self, ancestor: str, commit: str) -> bool:
        if ancestor == commit:
            return True
        queue, seen = [commit], {commit}
        while queue and len(seen) < _NEAR_ANCESTORS:
            meta = self._meta.get(queue.pop(0))
            for parent in meta.parents if meta else ():
                if parent == ancestor:
                    return True
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        if not queue:
            return False  # the whole history was searched
        return bool(self._repo.descendant_of(commit, ancestor))

    def _reachable_from(self, head: str) -> frozenset[str]:
        if self._reachable is not None and self._reachable[0] == head:
            return self._reachable[1]
        # Reuse the previous set when the old head is an ancestor of the new one (the usual
        # case: the branch moved forward); otherwise walk everything again.
        previous = self._reachable
        known: frozenset[str] = frozenset()
        if previous is not None and self._is_ancestor(previous[0], head):
            known = previous[1]
        seen: set[str] = set()
        stack = [head]
        while stack:
            oid = stack.pop()
            if oid in seen or oid in known:
                continue
            seen.add(oid)
            meta = self._meta.get(oid)
            if meta is None:
                continue
            stack.extend(meta.parents)
        result = known | seen
        self._reachable = (head, result)
        return result
