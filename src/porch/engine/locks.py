"""Non-blocking per-object locks: a second in-flight request gets 409 at once (Porch's TryLock)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from porch.errors import InFlight
from porch.waits import WaitLock


class TryLocks:
    def __init__(self) -> None:
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    @contextmanager
    def hold(self, key: str, message: Callable[[], str]) -> Iterator[None]:
        with self._mutex:
            if key in self._held:
                raise InFlight(message())
            self._held.add(key)
        try:
            yield
        finally:
            with self._mutex:
                self._held.discard(key)


class KeyedLocks:
    """Blocking locks by key, for short critical sections (revision numbering per package)."""

    def __init__(self) -> None:
        self._locks: dict[str, WaitLock] = {}
        self._mutex = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._mutex:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = WaitLock(what=f"the lock of package {key}")
        # A WaitLock: the holder may be pushing to a remote, and waiting on it is waiting on
        # the remote as far as the request deadline goes (porch.waits).
        with lock:
            yield
