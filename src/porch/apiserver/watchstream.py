"""Watch responses: chunked JSON lines of ``{"type", "object"}``, as kube-apiserver sends.

The stream ends on ``timeoutSeconds``, on client disconnect (we listen for ``http.disconnect``
ourselves so an idle watch does not linger) or when the engine closes it. A watcher that fell
behind ends with an ``ERROR`` event carrying a 410 Status, so clients re-list, exactly as with
kube-apiserver.

Two ways to deliver live events:

* **Queued** (any ASGI server, and Table watches): the engine's watcher queues each event for
  its stream, the event loop is woken once per publish (``LoopWaker``) and each stream's task
  sends its events through ASGI.
* **Direct** (``porch serve``: its HTTP protocol puts the connection's transport into
  ``scope["extensions"]["porch.transport"]``, see ``serving.py``): after the initial part, a
  plain JSON stream detaches its watcher from the engine's hub and joins this loop's
  ``Fanout``. A publish then only hands the event to the loop (the writer does not wait for
  the deliveries); there it is checked once per group of streams with the same selectors,
  encoded and framed as one HTTP chunk once, and written straight to each transport from one
  callback, in slices so that other responses (the write's own) are not held up. A stream
  whose socket is not keeping up (transport buffer over its high-water mark) or whose task is
  mid-write gets the event in its backlog instead, which its task sends through ASGI with
  back-pressure; more than the watcher's capacity in the backlog ends it with the 410 ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from porch.apiserver.kinds import Body, ResourceType
from porch.apiserver.status import status_body
from porch.apiserver.table import table
from porch.engine.watch import Watcher, WatchEvent, WatchHub
from porch.errors import Expired, PorchError

BOOKMARK_EVERY = 60.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
TRANSPORT_EXTENSION = "porch.transport"  # scope["extensions"][...]: the asyncio transport
SLICE = 128  # direct deliveries per loop callback before other callbacks get their turn
DEFAULT_HIGH_WATER = 64 * 1024


@dataclass(frozen=True)
class WatchOptions:
    as_table: bool
    include: str
    bookmarks: bool
    timeout: float
    start_rv: int  # the store's resourceVersion before the watch opened
    # Streams with equal groups match the same events (same resource and selectors): the
    # selector check runs once per group. None: a group of its own.
    group: Hashable | None = None


class LoopWaker:
    """Wakes the streams of one event loop from the writer's thread with one loop call.

    A publish reaches every watcher from the thread that wrote; a ``call_soon_threadsafe`` per
    watcher (a self-pipe write each) would cost more than the event itself with 1,000
    watchers. Here the writer only records which streams have news, and the loop is woken once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[asyncio.Event] = []
        self._scheduled = False

    def notify(self, flag: asyncio.Event) -> None:
        with self._lock:
            self._ready.append(flag)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is gone: the server is shutting down
            pass

    def _wake(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for flag in ready:
            flag.set()


_wakers: dict[asyncio.AbstractEventLoop, LoopWaker] = {}


def _waker(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = LoopWaker(loop)
    return waker


_encoded: dict[tuple[int, str], tuple[dict[str, Any], bytes]] = {}


def _encode_once(event: WatchEvent) -> bytes:
    """The JSON line of a live event, shared by every plain (non-Table) stream.

    Every stream gets the same published object, so the cache checks identity: another engine
    in the same process (tests) may have an event with the same resourceVersion.
    """
    key = (event.resource_version, event.type)
    found = _encoded.get(key)
    if found is not None and found[0] is event.object:
        return found[1]
    line = orjson.dumps({"type": event.type, "object": event.object}) + b"\n"
    if len(_encoded) > 4096:
        _encoded.clear()
    _encoded[key] = (event.object, line)
    return line


def _fell_behind() -> bytes:
    exc = Expired("watch fell too far behind; list again and restart the watch")
    body = status_body(exc.code, exc.reason, exc.message)
    return orjson.dumps({"type": "ERROR", "object": body}) + b"\n"


class _Sink:
    """One direct stream: where the loop's ``Fanout`` writes its live events."""

    __slots__ = (
        "backlog",
        "busy",
        "capacity",
        "cutoff",
        "flag",
        "gone",
        "high",
        "key",
        "last_rv",
        "overflowed",
        "transport",
    )

    def __init__(
        self, transport: asyncio.WriteTransport, capacity: int, cutoff: int, last_rv: int
    ) -> None:
        self.transport = transport
        try:
            self.high = transport.get_write_buffer_limits()[1]
        except (AttributeError, NotImplementedError):
            self.high = DEFAULT_HIGH_WATER
        self.capacity = capacity
        self.cutoff = cutoff  # hub sequence number: the watcher's queue had the events up to it
        self.last_rv = last_rv
        self.backlog: deque[bytes] = deque()  # lines for the stream's task to send, in order
        self.busy = False  # the task is sending through ASGI: append to the backlog instead
        self.overflowed = False
        self.gone = False  # no longer delivered to
        self.flag = asyncio.Event()  # wakes the stream's task
        self.key: Hashable = None


class _Group:
    __slots__ = ("matches", "sinks")

    def __init__(self, matches: Callable[[dict[str, Any]], bool]) -> None:
        self.matches = matches
        self.sinks: dict[_Sink, None] = {}  # insertion-ordered set


@dataclass
class _Job:
    """One event on its way to its sinks (a slice per loop callback)."""

    seq: int
    rv: int
    line: bytes
    chunk: bytes  # the line framed as one HTTP/1.1 chunk
    targets: list[_Sink]
    index: int = 0


class Fanout:
    """Delivers the live events of one hub to the direct streams of one event loop.

    ``post`` runs in the writer's thread (a hub subscriber): it queues the event and wakes the
    loop once. ``_run`` runs on the loop: per event, the selector check once per group, the
    encoding and framing once, then ``transport.write`` per stream, ``SLICE`` at a time.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: WatchHub) -> None:
        self._loop = loop
        self._hub = hub
        self._lock = threading.Lock()
        self._inbox: list[tuple[int, WatchEvent]] = []
        self._scheduled = False
        self._dead = False
        self._subscribed = False
        self._groups: dict[Hashable, _Group] = {}
        self._count = 0
        self._events: deque[tuple[int, WatchEvent]] = deque()
        self._job: _Job | None = None

    @property
    def streams(self) -> int:
        return self._count

    def post(self, seq: int, event: WatchEvent) -> None:
        with self._lock:
            if self._dead:
                return
            self._inbox.append((seq, event))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is gone (shut down with streams open): drop events
            with self._lock:
                self._dead = True
                self._inbox.clear()

    def attach(
        self, watcher: Watcher, transport: asyncio.WriteTransport, group: Hashable, last_rv: int
    ) -> _Sink:
        """Take ``watcher`` over from its queue: what is queued goes to the sink's backlog."""
        if not self._subscribed:
            self._hub.subscribe(self.post)
            self._subscribed = True
        sink = _Sink(transport, watcher.capacity, self._hub.detach(watcher), last_rv)
        try:
            while (event := watcher.pending()) is not None:
                sink.last_rv = max(sink.last_rv, event.resource_version)
                sink.backlog.append(_encode_once(event))
        except PorchError:  # it had fallen behind already
            sink.overflowed = True
            sink.gone = True
            self._unsubscribe_if_idle()
            return sink
        sink.key = group if group is not None else sink
        found = self._groups.get(sink.key)
        if found is None:
            found = self._groups[sink.key] = _Group(watcher.matches)
        found.sinks[sink] = None
        self._count += 1
        return sink

    def remove(self, sink: _Sink) -> None:
        if sink.gone:
            return
        sink.gone = True
        found = self._groups.get(sink.key)
        if found is not None:
            found.sinks.pop(sink, None)
            if not found.sinks:
                del self._groups[sink.key]
        self._count -= 1
        self._unsubscribe_if_idle()

    def _unsubscribe_if_idle(self) -> None:
        if self._count == 0 and self._subscribed:
            self._hub.unsubscribe(self.post)
            self._subscribed = False
            if _fanouts.get((self._loop, self._hub)) is self:
                del _fanouts[(self._loop, self._hub)]

    def _next_job(self) -> _Job | None:
        """The next event that some stream wants, or None when there is none."""
        while True:
            if not self._events:
                with self._lock:
                    if not self._inbox:
                        return None
                    self._events.extend(self._inbox)
                    self._inbox.clear()
            seq, event = self._events.popleft()
            targets: list[_Sink] = []
            for found in list(self._groups.values()):
                if found.matches(event.object):
                    targets += found.sinks
            if targets:
                line = _encode_once(event)
                chunk = b"%x\r\n%b\r\n" % (len(line), line)
                return _Job(seq, event.resource_version, line, chunk, targets)

    def _run(self) -> None:
        try:
            more = self._slice()
        except Exception:  # a bug: log it, drop that event, keep the fan-out going
            logging.getLogger("porch.apiserver").exception("watch fan-out failed")
            self._job = None
            more = True
        if more:
            self._loop.call_soon(self._run)  # let other callbacks (the write's response) go first

    def _slice(self) -> bool:
        """Deliver up to ``SLICE`` events-to-streams; False when there is nothing left."""
        budget = SLICE
        while budget > 0:
            job = self._job
            if job is None:
                job = self._job = self._next_job()
                if job is None:
                    with self._lock:
                        if not self._inbox:
                            self._scheduled = False
                            return False
                    continue
            end = min(len(job.targets), job.index + budget)
            self._deliver(job, end)
            budget -= end - job.index
            job.index = end
            if end == len(job.targets):
                self._job = None
        return True

    def _deliver(self, job: _Job, end: int) -> None:
        seq, rv, chunk = job.seq, job.rv, job.chunk
        for sink in job.targets[job.index : end]:
            if sink.gone or seq <= sink.cutoff or rv <= sink.last_rv:
                continue  # gone, handed over before this event, or already sent
            sink.last_rv = rv
            transport = sink.transport
            if transport.is_closing():
                continue  # the client went away: its task ends on the disconnect
            if sink.busy or sink.backlog or transport.get_write_buffer_size() > sink.high:
                self._queue(sink, job.line)
                continue
            try:
                transport.write(chunk)
            except (OSError, RuntimeError):  # the connection broke: end that stream
                self.remove(sink)
                sink.flag.set()

    def _queue(self, sink: _Sink, line: bytes) -> None:
        sink.backlog.append(line)
        if len(sink.backlog) > sink.capacity:
            sink.overflowed = True
            self.remove(sink)
        sink.flag.set()


_fanouts: dict[tuple[asyncio.AbstractEventLoop, WatchHub], Fanout] = {}


def fanout_of(loop: asyncio.AbstractEventLoop, hub: WatchHub) -> Fanout:
    """The loop's fan-out for ``hub`` (made on first use, dropped when its last stream leaves)."""
    found = _fanouts.get((loop, hub))
    if found is None:
        found = _fanouts[(loop, hub)] = Fanout(loop, hub)
    return found


def direct_streams(hub: WatchHub) -> int:
    """How many streams of ``hub`` take the direct path now, over all event loops."""
    return sum(f.streams for (_, h), f in list(_fanouts.items()) if h is hub)


Write = Callable[[bytes], Awaitable[None]]


class WatchStream:
    def __init__(self, rt: ResourceType, watcher: Watcher, opts: WatchOptions) -> None:
        self._rt = rt
        self._watcher = watcher
        self._opts = opts
        self._first_table = True
        self._last_rv = opts.start_rv
        self._ended = False

    def _line(self, kind: str, obj: Body) -> bytes:
        if self._opts.as_table and kind != "ERROR":
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            items = [] if kind == "BOOKMARK" else [obj]
            obj = table(
                self._rt,
                items,
                resource_version=rv,
                include=self._opts.include,
                with_columns=self._first_table,
            )
            self._first_table = False
        return orjson.dumps({"type": kind, "object": obj}) + b"\n"

    def _event(self, event: WatchEvent) -> bytes:
        self._last_rv = max(self._last_rv, event.resource_version)
        return self._line(event.type, event.object)

    def _bookmark(self, *, initial_end: bool) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self._last_rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return self._line(
            "BOOKMARK",
            {"kind": self._rt.kind, "apiVersion": self._rt.api_version, "metadata": meta},
        )

    async def _initial(self) -> AsyncIterator[bytes]:
        """What is queued right after opening: the initial state (or the replayed log)."""
        try:
            while (event := self._watcher.pending()) is not None:
                yield self._event(event)
        except PorchError as exc:  # fell behind already: tell the client to re-list
            yield self._line("ERROR", status_body(exc.code, exc.reason, exc.message))
            self._ended = True
            return
        if self._opts.bookmarks:
            yield self._bookmark(initial_end=True)

    async def stream(self, write: Write, transport: asyncio.WriteTransport | None) -> None:
        """Send the whole watch with ``write``; with a ``transport``, plain live events are
        written straight to it by the loop's ``Fanout``."""
        if transport is None or self._opts.as_table:
            async for line in self.lines():
                await write(line)
            return
        deadline = time.monotonic() + self._opts.timeout
        async for line in self._initial():
            await write(line)
        if self._ended:
            return
        loop = asyncio.get_running_loop()
        fanout = fanout_of(loop, self._watcher.hub)
        sink = fanout.attach(self._watcher, transport, self._opts.group, self._last_rv)
        flag = sink.flag
        waker = _waker(loop)
        self._watcher.set_notify(lambda: waker.notify(flag))  # close() from any thread
        try:
            while True:
                if sink.backlog:
                    sink.busy = True
                    try:
                        while sink.backlog:
                            await write(sink.backlog.popleft())
                    finally:
                        sink.busy = False
                if sink.overflowed:
                    await write(_fell_behind())
                    return
                if sink.gone or self._watcher.closed:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = min(left, BOOKMARK_EVERY) if self._opts.bookmarks else left
                flag.clear()
                if sink.backlog:
                    continue
                try:
                    async with asyncio.timeout(wait):
                        await flag.wait()
                except TimeoutError:
                    if self._opts.bookmarks and deadline - time.monotonic() > 0:
                        self._last_rv = max(self._last_rv, sink.last_rv)
                        sink.busy = True
                        try:
                            await write(self._bookmark(initial_end=False))
                        finally:
                            sink.busy = False
        finally:
            self._watcher.set_notify(None)
            fanout.remove(sink)

    async def lines(self) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self._opts.timeout
        async for line in self._initial():
            yield line
        if self._ended:
            return
        flag = asyncio.Event()
        waker = _waker(asyncio.get_running_loop())
        self._watcher.set_notify(lambda: waker.notify(flag))
        while True:
            try:
                while (event := self._watcher.pending()) is not None:
                    if self._opts.as_table:
                        yield self._event(event)
                    else:
                        self._last_rv = max(self._last_rv, event.resource_version)
                        yield _encode_once(event)
            except PorchError as exc:
                yield self._line("ERROR", status_body(exc.code, exc.reason, exc.message))
                return
            if self._watcher.closed:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            wait = min(left, BOOKMARK_EVERY) if self._opts.bookmarks else left
            flag.clear()
            if self._watcher.has_pending():
                continue  # arrived between the drain and clear(): no wake-up will follow
            try:
                async with asyncio.timeout(wait):
                    await flag.wait()
            except TimeoutError:
                if self._opts.bookmarks and deadline - time.monotonic() > 0:
                    yield self._bookmark(initial_end=False)


def _direct_transport(scope: Scope) -> asyncio.WriteTransport | None:
    """The connection's transport when chunks may be written to it directly (``serving.py``)."""
    if scope.get("http_version") != "1.1" or scope.get("method") != "GET":
        return None
    transport = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    return transport if isinstance(transport, asyncio.WriteTransport) else None


class WatchResponse(Response):
    """A streaming ASGI response that also stops as soon as the client goes away."""

    def __init__(self, stream: WatchStream, watcher: Watcher, on_close: Callable[[], None]) -> None:
        self._stream = stream
        self._watcher = watcher
        self._on_close = on_close
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-cache, private"),
                ],
            }
        )

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        gone = False
        try:
            async with anyio.create_task_group() as tg:

                async def disconnect() -> None:
                    nonlocal gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    tg.cancel_scope.cancel()

                tg.start_soon(disconnect)
                await self._stream.stream(write, _direct_transport(scope))
                tg.cancel_scope.cancel()
            if not gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            self._watcher.close()
            self._on_close()
