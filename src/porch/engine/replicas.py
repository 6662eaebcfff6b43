"""Several replicas on one store: what other replicas commit reaches this process's watchers.

A store that can tell other processes about its commits (PostgreSQL's LISTEN/NOTIFY, see
``PostgresStore.listen``) calls back with the highest resourceVersion of a transaction another
replica committed. The feed keeps a high-water mark: the last resourceVersion published to the
watch hub. Everything above it is read back from the event log (``events_after``) and published
in order, and the mark moves; local commits publish their own events and move the mark too,
first publishing whatever other replicas committed below them. The mark is only read and moved
under the engine's commit lock, the lock local publishing already holds, so every event reaches
the hub once and in resourceVersion order, whichever replica wrote it (docs/replicas.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from porch.engine.watch import WatchEvent, WatchHub
from porch.store.types import Event, Store

log = logging.getLogger(__name__)

BATCH = 1000


class _Closable(Protocol):
    def close(self) -> None: ...


class ReplicaFeed:
    """Publishes other replicas' committed events to ``hub``, once each and in order.

    ``hub`` gives the hub to publish to (looked up each time: tests swap it). ``lock`` is the
    lock local publishing holds (the engine's commit lock). ``shape`` turns a
    logged event into the object watchers get (opening sealed Secrets); ``seen`` is told of
    every event from another replica before it is published (cache invalidation).
    """

    def __init__(
        self,
        store: Store,
        hub: Callable[[], WatchHub],
        lock: threading.Lock,
        *,
        shape: Callable[[Event], dict[str, Any]],
        seen: Callable[[Event], None],
    ) -> None:
        self._store = store
        self._hub = hub
        self._lock = lock
        self._shape = shape
        self._seen = seen
        self._hwm = 0
        self._listener: _Closable | None = None

    @property
    def active(self) -> bool:
        return self._listener is not None

    @property
    def high_water(self) -> int:
        """The last resourceVersion published to the hub."""
        return self._hwm

    def start(self) -> bool:
        """Subscribe to the store's notifications; False when it has none (one process)."""
        if self._listener is not None:
            return True
        listen = getattr(self._store, "listen", None)
        if not callable(listen):
            return False
        with self._lock:
            # LISTEN is active when listen() returns, so nothing committed after the mark is
            # read can be missed; a notification for something at or below it is ignored.
            self._listener = listen(self._notified)
            self._hwm = self._store.current_resource_version()
        return True

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _notified(self, resource_version: int) -> None:
        with self._lock:
            if self._listener is None or resource_version <= self._hwm:
                return
            self._drain(resource_version)

    def catch_up(self) -> None:
        """Publish everything committed so far (a watch about to start lists after this)."""
        if self._listener is None:
            return
        with self._lock:
            self._drain(None)

    def publish_local(self, events: Sequence[Event]) -> None:
        """Publish a local commit's events; the caller holds the lock. Other replicas' events
        below them (committed earlier, not yet notified) go out first."""
        if not events:
            return
        first = events[0].resource_version
        if self._listener is not None and first > self._hwm + 1:
            self._drain(first - 1)
        for event in events:
            self._hub().publish(WatchEvent(event.type, event.body, event.resource_version))
        self._hwm = max(self._hwm, events[-1].resource_version)

    def _drain(self, upto: int | None) -> None:
        """Publish the logged events after the mark (up to ``upto``, or all); lock held."""
        while upto is None or self._hwm < upto:
            batch = self._store.events_after(self._hwm, limit=BATCH)
            if upto is not None:
                batch = [e for e in batch if e.resource_version <= upto]
            if not batch:
                break
            if batch[0].resource_version > self._hwm + 1:
                # Compacted away before this replica read them: its watchers cannot be told
                # what they missed, so they end (clients resume or list again, as on 410).
                log.warning(
                    "events %d..%d were compacted before this replica published them;"
                    " ending its watches",
                    self._hwm + 1,
                    batch[0].resource_version - 1,
                )
                self._hub().expire_all()
            for event in batch:
                try:
                    self._seen(event)
                except Exception:  # an invalidation bug must not stop the feed
                    log.exception("replica event hook failed")
                self._hub().publish(
                    WatchEvent(event.type, self._shape(event), event.resource_version)
                )
            self._hwm = batch[-1].resource_version
        if upto is not None:
            self._hwm = max(self._hwm, upto)
