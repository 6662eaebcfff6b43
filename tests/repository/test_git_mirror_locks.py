"""Lock files in a remote repository's mirror (issue #11): left by a killed process, or held
for a moment by a live one. Either used to surface as a 503 ``failed to lock file``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from porch.errors import Unavailable
from porch.repository.git import GitRepository, remote
from porch.repository.git.adapter import _lock_for
from porch.repository.git.locks import LOCK_RETRY_DELAYS
from porch.repository.git.recovery import STALE_LOCK_S, remove_stale_ref_locks
from porch.repository.git.remote import mirror_path
from porch.repository.git.upstream import _lock as upstream_lock
from porch.repository.git.upstream import fetch_package
from porch.testing.git_repos import FsckRegistry, new_bare, new_draft, publish, refs

MAIN = "refs/remotes/origin/main"


@pytest.fixture
def origin(tmp_path: Path, fsck: FsckRegistry) -> Path:
    return fsck.add(new_bare(tmp_path / "origin.git"))


@pytest.fixture
def url(origin: Path) -> str:
    return f"file://{origin}"


@pytest.fixture
def mirror(tmp_path: Path, url: str, fsck: FsckRegistry) -> Path:
    """The mirror of ``url`` under tmp_path/m, holding a draft; main then moves on the origin
    (through another mirror), so the next fetch into this one must update MAIN."""
    repo = GitRepository(url, mirror_dir=tmp_path / "m", create_branch=True)
    assert new_draft(repo, "pkg", "ws").info is not None
    publish_elsewhere(tmp_path, url, 1)
    path = mirror_path(tmp_path / "m", url)
    assert refs(path)[MAIN] != refs(other_path(tmp_path, url))[MAIN]
    return fsck.add(path)


def other_path(tmp_path: Path, url: str) -> Path:
    return mirror_path(tmp_path / "other", url)


def _lock(path: Path, age: float) -> Path:
    """A lock file as libgit2 leaves it, last written ``age`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _pauses(monkeypatch: pytest.MonkeyPatch, each: Callable[[float], None]) -> list[float]:
    """Replace the pause between lock retries with ``each`` (no real sleeping); returns the
    list of pauses asked for."""
    asked: list[float] = []

    def pause(seconds: float) -> None:
        asked.append(seconds)
        each(seconds)

    monkeypatch.setattr(remote, "lock_pause", pause)
    return asked


def publish_elsewhere(tmp_path: Path, url: str, revision: int) -> None:
    """Another writer publishes pkg ``revision`` through a mirror of its own."""
    other = GitRepository(url, mirror_dir=tmp_path / "other")
    draft = new_draft(other, "pkg", f"w{revision}").info
    assert draft is not None
    publish(other, draft, revision)


def _published(repo: GitRepository) -> list[int]:
    return sorted(i.revision for i in repo.list_revisions() if i.revision > 0)


def test_a_stale_lock_on_a_remote_tracking_ref_is_removed_on_open(
    mirror: Path, tmp_path: Path, url: str
) -> None:
    # As a SIGKILL leaves it: between locking origin/main and renaming the lock over it.
    lock = _lock(mirror / "refs/remotes/origin/main.lock", 30)
    reopened = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(reopened) == [1]  # the opening fetch moved MAIN past the lock
    assert not lock.exists()
    assert refs(mirror)[MAIN] == refs(other_path(tmp_path, url))[MAIN]
    assert reopened.remove_stale_locks() == [
        "removed refs/remotes/origin/main.lock left by an interrupted ref update"
    ]
    assert reopened.remove_stale_locks() == []  # each removal is reported once


def test_stale_fetch_locks_of_a_mirror_are_removed_on_open(
    mirror: Path, tmp_path: Path, url: str
) -> None:
    locks = [
        _lock(mirror / name, 30)
        for name in ("shallow.lock", "packed-refs.lock", "refs/tags/pkg/v1.lock", "config.lock")
    ]
    reopened = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(reopened) == [1]
    assert [p for p in locks if p.exists()] == []
    assert len(reopened.recover()) == len(locks)


def test_a_stale_lock_appearing_in_an_open_mirror_is_removed_by_the_next_fetch(
    mirror: Path, tmp_path: Path, url: str
) -> None:
    repo = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(repo) == [1]
    publish_elsewhere(tmp_path, url, 2)
    lock = _lock(mirror / "refs/remotes/origin/main.lock", 30)
    repo.fetch()
    assert _published(repo) == [1, 2]
    assert not lock.exists()
    assert repo.remove_stale_locks() == [
        "removed refs/remotes/origin/main.lock left by an interrupted ref update"
    ]


def test_a_young_lock_is_left_alone(mirror: Path) -> None:
    young = _lock(mirror / "refs/remotes/origin/elsewhere.lock", 0)
    config = _lock(mirror / "config.lock", 0)
    assert remove_stale_ref_locks(str(mirror), mirror=True) == []
    assert young.exists() and config.exists()
    old = _lock(mirror / "refs/remotes/origin/gone.lock", STALE_LOCK_S + 5)
    assert remove_stale_ref_locks(str(mirror), mirror=True) == [
        "removed refs/remotes/origin/gone.lock left by an interrupted ref update"
    ]
    assert young.exists() and config.exists() and not old.exists()


def test_a_lock_held_briefly_by_another_process_is_waited_for(
    mirror: Path, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = _lock(mirror / "refs/remotes/origin/main.lock", 0)
    # The other writer finishes (and removes its lock) during the first pause.
    asked = _pauses(monkeypatch, lambda _: lock.unlink(missing_ok=True))
    repo = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(repo) == [1]
    assert asked == [LOCK_RETRY_DELAYS[0]]
    assert repo.remove_stale_locks() == []  # a live writer's lock is nobody's leftover


def test_a_young_lock_of_a_killed_process_is_removed_once_it_is_stale(
    mirror: Path, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = _lock(mirror / "refs/remotes/origin/main.lock", 0)

    def age(seconds: float) -> None:  # time passes; nobody touches the lock any more
        then = lock.stat().st_mtime - seconds
        os.utime(lock, (then, then))

    asked = _pauses(monkeypatch, age)
    repo = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(repo) == [1]
    assert not lock.exists()
    assert 1 < len(asked) <= len(LOCK_RETRY_DELAYS)
    assert sum(asked) >= STALE_LOCK_S
    assert len(repo.remove_stale_locks()) == 1


def test_a_lock_that_stays_held_is_a_clear_503(
    mirror: Path, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = _lock(mirror / "refs/remotes/origin/main.lock", 0)
    asked = _pauses(monkeypatch, lambda _: os.utime(lock))  # a live writer keeps it fresh
    with pytest.raises(Unavailable) as caught:
        GitRepository(url, mirror_dir=tmp_path / "m").fetch()
    text = str(caught.value)
    assert "cannot fetch from git repository" in text
    assert "failed to lock file" in text and "refs/remotes/origin/main.lock" in text
    assert "still locked after retries" in text
    assert asked == list(LOCK_RETRY_DELAYS)  # bounded
    assert lock.exists()  # never taken from a live writer


def test_a_push_whose_mirror_ref_is_locked_for_a_moment_lands_once(
    mirror: Path, tmp_path: Path, url: str, origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = GitRepository(url, mirror_dir=tmp_path / "m")
    assert _published(repo) == [1]
    # libgit2 moves the mirror's copy after the remote took the push: the lock fails only
    # that; the push must not be retried (its compare-and-swap would then fail) nor be a 503.
    lock = _lock(mirror / "refs/remotes/origin/drafts/pkg/ws3.lock", 0)
    asked = _pauses(monkeypatch, lambda _: lock.unlink(missing_ok=True))
    draft = new_draft(repo, "pkg", "ws3").info
    assert draft is not None
    assert asked  # the lock was met, and waited for
    assert refs(origin)["refs/heads/drafts/pkg/ws3"] == draft.commit
    assert refs(mirror)["refs/remotes/origin/drafts/pkg/ws3"] == draft.commit


def test_two_threads_fetching_one_mirror_both_succeed(
    mirror: Path, tmp_path: Path, url: str, origin: Path
) -> None:
    # A registered repository and the upstream fetcher (clone) on one mirror path share the
    # lock; two unserialised libgit2 fetches would race for the same ref lock files.
    first = GitRepository(url, mirror_dir=tmp_path / "m")
    second = GitRepository(url, mirror_dir=tmp_path / "m")
    assert upstream_lock(mirror, url) is _lock_for(mirror, url)
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def fetching(fetch: Callable[[], object]) -> None:
        start.wait()
        try:
            for _ in range(8):
                fetch()
        except BaseException as exc:  # noqa: BLE001  # reported by the assertion below
            errors.append(exc)

    def clone() -> object:
        return fetch_package(url, ref="pkg/v1", directory="pkg", mirror_dir=tmp_path / "m")

    threads = [
        threading.Thread(target=fetching, args=(first.fetch,)),
        threading.Thread(target=fetching, args=(clone,)),
    ]
    for t in threads:
        t.start()
    start.wait()
    for n in range(3, 6):  # the origin moves while they fetch
        publish_elsewhere(tmp_path, url, n)
    for t in threads:
        t.join(120)
    assert errors == []
    second.fetch()
    assert _published(second) == [1, 3, 4, 5]
    assert refs(mirror)[MAIN] == refs(origin)["refs/heads/main"]
    assert list(mirror.rglob("*.lock")) == []
