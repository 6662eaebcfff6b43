"""Watch responses: chunked JSON lines of ``{"type", "object"}``, as kube-apiserver sends.

The engine's ``Watcher`` is a blocking queue, so one daemon thread per stream moves its events
onto the event loop; the stream ends on ``timeoutSeconds``, on client disconnect (we listen for
``http.disconnect`` ourselves so an idle watch does not linger) or when the engine closes it.
A watcher that fell behind ends with an ``ERROR`` event carrying a 410 Status, so clients
re-list, exactly as with kube-apiserver.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from porch.apiserver.kinds import Body, ResourceType
from porch.apiserver.status import status_body
from porch.apiserver.table import table
from porch.engine.watch import Watcher, WatchEvent
from porch.errors import PorchError

BOOKMARK_EVERY = 60.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class WatchOptions:
    as_table: bool
    include: str
    bookmarks: bool
    timeout: float
    start_rv: int  # the store's resourceVersion before the watch opened


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


_encoded: dict[tuple[int, str], bytes] = {}


def _encode_once(event: WatchEvent) -> bytes:
    """The JSON line of a live event, shared by every plain (non-Table) stream."""
    key = (event.resource_version, event.type)
    line = _encoded.get(key)
    if line is None:
        line = orjson.dumps({"type": event.type, "object": event.object}) + b"\n"
        if len(_encoded) > 4096:
            _encoded.clear()
        _encoded[key] = line
    return line


class WatchStream:
    def __init__(self, rt: ResourceType, watcher: Watcher, opts: WatchOptions) -> None:
        self._rt = rt
        self._watcher = watcher
        self._opts = opts
        self._first_table = True
        self._last_rv = opts.start_rv

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

    async def lines(self) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self._opts.timeout
        # What is queued right after opening is the initial state (or the replayed log).
        try:
            while (event := self._watcher.pending()) is not None:
                yield self._event(event)
        except PorchError as exc:  # fell behind already: tell the client to re-list
            yield self._line("ERROR", status_body(exc.code, exc.reason, exc.message))
            return
        if self._opts.bookmarks:
            yield self._bookmark(initial_end=True)
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
                async for chunk in self._stream.lines():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                tg.cancel_scope.cancel()
            if not gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            self._watcher.close()
            self._on_close()
