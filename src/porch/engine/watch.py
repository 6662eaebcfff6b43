"""Watch fan-out: every committed event reaches each matching watcher, in commit order.

A watcher registers before it reads the log or the initial list, so nothing committed in
between is lost; events it has already seen (by resourceVersion) are dropped, so nothing is
sent twice. A watcher that falls more than ``capacity`` events behind is closed with a
410-style error instead of blocking writers (clients re-list and watch again).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from porch.errors import Expired


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]
    resource_version: int


class Watcher:
    """One watch stream. Live events wait in ``pending`` until the initial part is sent."""

    def __init__(
        self,
        hub: WatchHub,
        predicate: Callable[[dict[str, Any]], bool],
        capacity: int,
    ) -> None:
        self._hub = hub
        self._predicate = predicate
        self._queue: queue.Queue[WatchEvent | None] = queue.Queue()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._pending: list[WatchEvent] = []
        self._live = False
        self._closed = threading.Event()
        self._overflowed = False
        self._high_water = 0  # highest resourceVersion already delivered by the initial part
        self._notify: Callable[[], None] | None = None
        self.initial_count = 0  # events of the initial part (state or replayed log)

    def set_notify(self, callback: Callable[[], None] | None) -> None:
        """Called (from the writer's thread) after each event is queued, and on close.

        Lets an async server wake one task instead of parking a thread per watch in next().
        """
        self._notify = callback
        if callback is not None and not self._queue.empty():
            callback()

    def _wake(self) -> None:
        callback = self._notify
        if callback is not None:
            callback()

    def has_pending(self) -> bool:
        return not self._queue.empty()

    def pending(self) -> WatchEvent | None:
        """The next queued event without waiting (None when there is none yet or closed)."""
        return self.next(timeout=None) if not self._queue.empty() else None

    def _offer(self, event: WatchEvent) -> None:
        if self._closed.is_set() or not self._predicate(event.object):
            return
        with self._lock:
            if not self._live:
                self._pending.append(event)
                return
            overflow = self._queue.qsize() >= self._capacity
            if not overflow:
                self._queue.put(event)
        if overflow:
            self._overflowed = True
            self.close()
        else:
            self._wake()

    def push_initial(self, event: WatchEvent) -> None:
        """Deliver an event of the initial part (current state or replayed log)."""
        self._high_water = max(self._high_water, event.resource_version)
        self.initial_count += 1
        self._queue.put(event)

    def go_live(self) -> None:
        """Send what arrived meanwhile (skipping what the initial part covered), then stream."""
        with self._lock:
            for event in self._pending:
                if event.resource_version > self._high_water:
                    self._queue.put(event)
            self._pending.clear()
            self._live = True
        self._wake()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._hub.remove(self)
            self._queue.put(None)
            self._wake()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def next(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None on timeout or after close."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._queue.put(None)  # stay closed for later calls
            if self._overflowed:
                raise Expired("watch fell too far behind; list again and restart the watch")
            return None
        return item

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            item = self.next()
            if item is None:
                return
            yield item


class WatchHub:
    def __init__(self, capacity: int = 10_000) -> None:
        self._watchers: set[Watcher] = set()
        self._lock = threading.Lock()
        self._capacity = capacity

    def add(self, predicate: Callable[[dict[str, Any]], bool]) -> Watcher:
        watcher = Watcher(self, predicate, self._capacity)
        with self._lock:
            self._watchers.add(watcher)
        return watcher

    def remove(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def publish(self, event: WatchEvent) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher._offer(event)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._watchers)
