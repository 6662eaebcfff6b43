"""In-process locks per on-disk repository, and libgit2's lock-file failures.

Every object opened on one repository or mirror path (a registered repository's adapter, the
upstream fetcher) takes the same lock, so this process never runs two libgit2 writes on one
repository at once. Another process can still hold a lock *file* for the milliseconds of a ref
update: libgit2 then fails at once with ``failed to lock file``, and the caller retries briefly
(``LOCK_RETRY_DELAYS``).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from porch.waits import WaitLock

# Pauses between attempts on a locked file. A live writer holds its lock for milliseconds; the
# total (just over STALE_LOCK_S) lets the stale-lock sweep between attempts remove a lock that a
# writer killed moments before this process started, within the same request.
LOCK_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.3)

_LOCKED = re.compile(r"failed to lock file '([^']+)'")
_PATH_LOCKS: dict[Path, WaitLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def path_lock(path: Path, what: str) -> WaitLock:
    """The (re-entrant) lock of the repository at ``path``; ``what`` names it in messages when
    this call creates it."""
    # pygit2 objects are not thread-safe, and a mirror's fetches must not interleave. Its holder
    # may be fetching or pushing: a WaitLock lets the request deadline see that (porch.waits).
    key = path.resolve()
    with _PATH_LOCKS_GUARD:
        lock = _PATH_LOCKS.get(key)
        if lock is None:
            lock = _PATH_LOCKS[key] = WaitLock(threading.RLock(), what)
        return lock


def locked_file(err: BaseException) -> str | None:
    """The file libgit2 could not lock, when that is what ``err`` reports."""
    found = _LOCKED.search(str(err))
    return found.group(1) if found else None
