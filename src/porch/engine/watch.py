"""Watch fan-out: every committed event reaches each matching watcher, in commit order.

A watcher registers before it reads the log or the initial list, so nothing committed in
between is lost; events it has already seen (by resourceVersion) are dropped, so nothing is
sent twice. A watcher that falls more than ``capacity`` events behind is closed with a
410-style error instead of blocking writers (clients re-list and watch again).

Each watcher has its own queue, filled from the writer's thread. A server with many streams
can instead ``subscribe`` once to the hub and ``detach`` its watchers from it: then a publish
costs the writer one call per subscriber, not one filter and queue per watcher, and the
subscriber delivers the events itself (``porch.apiserver.watchstream``). ``detach`` returns
the publish sequence number up to which the watcher's own queue has the events; the
subscriber delivers those after it.
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

    @property
    def hub(self) -> WatchHub:
        return self._hub

    @property
    def capacity(self) -> int:
        """How many undelivered events this watcher may fall behind before it is ended."""
        return self._capacity

    def matches(self, obj: dict[str, Any]) -> bool:
        """Whether a live event's object is one this watch asked for (its selectors)."""
        return self._predicate(obj)

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
            if event.resource_version <= self._high_water:
                # Already part of the initial list: a commit published after the list read it
                # (another replica's, notified late, or a local one racing the list).
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

    def expire(self) -> None:
        """End the stream as if it had fallen behind (``next`` raises Expired)."""
        self._overflowed = True
        self.close()

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


Subscriber = Callable[[int, WatchEvent], None]


class WatchHub:
    def __init__(self, capacity: int = 10_000) -> None:
        self._watchers: set[Watcher] = set()  # fed one by one by publish
        self._detached: set[Watcher] = set()  # fed by a subscriber
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()
        # One publish at a time (writers already publish in commit order); detach waits for it,
        # so every event is either in a watcher's queue or after its sequence number.
        self._publishing = threading.Lock()
        self._seq = 0
        self._capacity = capacity

    def add(self, predicate: Callable[[dict[str, Any]], bool]) -> Watcher:
        watcher = Watcher(self, predicate, self._capacity)
        with self._lock:
            self._watchers.add(watcher)
        return watcher

    def remove(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)
            self._detached.discard(watcher)

    def subscribe(self, subscriber: Subscriber) -> None:
        """``subscriber(seq, event)`` is called for every later event, unfiltered, in order.

        It runs in the writer's thread while the hub holds its publish lock: it must only
        hand the event on (never block, never call back into the hub).
        """
        with self._publishing, self._lock:
            self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._publishing, self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s != subscriber)

    def detach(self, watcher: Watcher) -> int:
        """Stop queueing events for ``watcher``; returns the sequence number of the last event
        its queue got (a subscriber delivers the events after it)."""
        with self._publishing, self._lock:
            if watcher in self._watchers:
                self._watchers.discard(watcher)
                self._detached.add(watcher)
            return self._seq

    def publish(self, event: WatchEvent) -> None:
        with self._publishing:
            self._seq += 1
            seq = self._seq
            with self._lock:
                watchers = list(self._watchers) if self._watchers else []
                subscribers = self._subscribers
            for watcher in watchers:
                watcher._offer(event)
            for subscriber in subscribers:
                subscriber(seq, event)

    def expire_all(self) -> None:
        """End every watch: events were lost before they could be published (a replica's
        feed found them compacted away); clients resume or list again."""
        with self._lock:
            watchers = [*self._watchers, *self._detached]
        for watcher in watchers:
            watcher.expire()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._watchers) + len(self._detached)
