"""A synchronous httpx transport that runs an ASGI app in this process.

httpx ships ``ASGITransport`` only for the async client; porchctl and controllers use the sync
one. This bridge runs the async transport on an anyio blocking portal (its own event-loop
thread), so tests drive the real API server without sockets. The app's whole answer is read
before returning, which is why watches need a real server.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, app: Any, *, portal: BlockingPortal | None = None) -> None:
        self._stack = ExitStack()
        self._portal = portal or self._stack.enter_context(start_blocking_portal())
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(forwarded)
            content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._stack.close()
