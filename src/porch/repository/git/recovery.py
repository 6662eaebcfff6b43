"""Finishing a publish that was interrupted between its two ref updates (spec §5.1).

Publishing moves the branch and creates the tag together, then deletes the working branch.
A crash in between leaves a draft/proposed branch whose package and workspace already appear
in a tag's ``kpt:`` trailer; such a branch is deleted (after moving the branch forward to the
approval commit, should the branch update itself have been lost).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import layout
from .discovery import Discovery
from .layout import DRAFTS, HEADS, PROPOSED, TAGS, head
from .refs import RefStore, RefUpdate

# A live ref update holds its lock file for the milliseconds of writing one line; an older
# lock was left by a writer that was killed between locking and renaming (docs/reliability.md).
STALE_LOCK_S = 1.0

# Besides ref locks, a fetch into a mirror takes ``shallow.lock`` (and ``FETCH_HEAD.lock``), and
# pointing the mirror's origin at a new URL takes ``config.lock``: a killed writer's copy of any
# of them blocks every later fetch. Only mirrors (which Porch alone writes) are cleaned of these.
_FILE_LOCKS = ("shallow.lock", "FETCH_HEAD.lock", "config.lock")
MIRROR_LOCKS = ("HEAD.lock", *_FILE_LOCKS)


def remove_stale_ref_locks(
    git_dir: str, older_than: float = STALE_LOCK_S, *, mirror: bool = False
) -> list[str]:
    """Delete ref lock files a killed writer left; without this the ref stays unwritable.

    ``refs/**.lock`` (``refs/remotes/origin/**`` of a mirror included) and ``packed-refs.lock``;
    with ``mirror`` also the other locks a fetch takes (``MIRROR_LOCKS``). A lock younger than
    ``older_than`` is left alone: it may belong to a live writer.
    """
    root = Path(git_dir)
    limit = time.time() - older_than
    lines: list[str] = []
    extra = [root / name for name in MIRROR_LOCKS] if mirror else []
    for lock in [root / "packed-refs.lock", *extra, *_ref_locks(root / "refs")]:
        try:
            if lock.stat().st_mtime >= limit:
                continue
            lock.unlink()
        except FileNotFoundError:
            continue
        what = "write" if lock.name in _FILE_LOCKS else "ref update"
        lines.append(f"removed {lock.relative_to(root)} left by an interrupted {what}")
    return lines


def finish_interrupted_publishes(
    repo: Any, store: RefStore, discovery: Discovery, branch: str
) -> list[str]:
    refs = store.snapshot()
    working = (HEADS + DRAFTS, HEADS + PROPOSED)
    if not any(name.startswith(working) for name in refs):
        return []  # nothing in flight: no tag needs reading (the usual case at start-up)
    published: dict[tuple[str, str], tuple[str, str]] = {}
    for name, target in refs.items():
        if not name.startswith(TAGS):
            continue
        fp, sep, _ = name[len(TAGS) :].rpartition("/")
        commit = discovery.peel(target) if sep and fp else None
        workspace = discovery.tag_workspace(commit, fp) if commit else ""
        if commit and workspace:
            published[(fp, workspace)] = (name[len(TAGS) :], commit)
    lines: list[str] = []
    for name, target in sorted(refs.items()):
        short = name[len(HEADS) :]
        if not name.startswith(HEADS) or not short.startswith((DRAFTS, PROPOSED)):
            continue
        prefix = DRAFTS if short.startswith(DRAFTS) else PROPOSED
        split = layout.split_workspace(short[len(prefix) :])
        if split is None or split not in published:
            continue
        tag_short, approval = published[split]
        lines.extend(_finish(repo, store, branch, short, target, tag_short, approval))
    return lines


def _finish(
    repo: Any,
    store: RefStore,
    branch: str,
    working: str,
    target: str,
    tag_short: str,
    approval: str,
) -> list[str]:
    lines: list[str] = []
    main = head(branch)
    current = store.get(main)
    parents = [str(p) for p in repo[approval].parent_ids]
    on_branch = current is not None and (
        current == approval or bool(repo.descendant_of(current, approval))
    )
    # Only a branch still sitting where the approval commit was built can be moved forward;
    # if it moved on meanwhile, the tag alone records the publish.
    if not on_branch and parents and parents[0] == current:
        store.apply([RefUpdate(main, current, approval)])
        lines.append(f"moved branch {branch} to the approval commit of {tag_short}")
    store.apply([RefUpdate(head(working), target, None)])
    lines.append(f"deleted branch {working}: already published as {tag_short}")
    return lines


def _ref_locks(refs: Path) -> list[Path]:
    """``refs.rglob("*.lock")`` at a fifth of its cost (every start scans every repository):
    one ``scandir`` per directory, whose entries already say which are directories."""
    found: list[Path] = []
    todo = [str(refs)]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                elif entry.name.endswith(".lock"):
                    found.append(Path(entry.path))
    return found
