"""Backend calls with a deadline on *waiting*: no API request waits more than a few seconds on
a remote, however long it computes.

Handlers run the engine in worker threads. A git remote that accepts connections and never
answers (or a repository lock held by an operation stuck on one) would keep a request waiting
until libgit2's network timeout, a minute later. Like kube-apiserver's request timeout, the
request is then answered with **504** ``Timeout``; the worker is abandoned (not killed) and
finishes on its own when the remote or the lock gives way, so the write may still happen,
which is what kube's 504 message says. Other repositories never wait: their requests run in
other threads.

Only waiting counts (``porch.waits``): the worker runs with a ``WaitToken`` bound, and the call
is cut once the token has spent ``REQUEST_DEADLINE_S`` in total waiting on remotes (git
fetch/push, registry HTTP) or blocked on locks whose holders wait on one. A call that is slow
because it computes — a render on a busy machine, a queue of clients — keeps running, up to
``HARD_CAP_S`` of wall time, after which it gets the 504 anyway. Time queued for a worker thread
is not waiting (the token starts with the worker). Each backend call has its own budget.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from porch import waits
from porch.errors import PorchError

T = TypeVar("T")
REQUEST_DEADLINE_S = 4.0  # issue #11: no API request waits more than 5 s on a git remote
HARD_CAP_S = 120.0  # a call that computes this long is cut all the same
_MIN_PAUSE_S = 0.01


class Timeout(PorchError):
    code = 504
    reason = "Timeout"
    retryable = True


async def run_in_threadpool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``starlette.concurrency.run_in_threadpool`` with the request deadline."""
    return await run_with_deadline(functools.partial(fn, *args, **kwargs))


async def run_with_deadline(
    call: Callable[[], T], *, deadline: float | None = None, cap: float | None = None
) -> T:
    """Run ``call`` in a worker thread; 504 once it has waited ``deadline`` seconds in total
    (default ``REQUEST_DEADLINE_S``) or run ``cap`` seconds (default ``HARD_CAP_S``)."""
    limit = REQUEST_DEADLINE_S if deadline is None else deadline
    hard = HARD_CAP_S if cap is None else cap
    token = waits.WaitToken("request")
    outcome: list[tuple[bool, Any]] = []
    done = anyio.Event()

    def work() -> T:
        with waits.bound(token):
            return call()

    async def runner() -> None:
        try:
            outcome.append((True, await anyio.to_thread.run_sync(work, abandon_on_cancel=True)))
        except Exception as exc:  # handed to the caller below, outside the task group
            outcome.append((False, exc))
        finally:
            done.set()

    started = time.monotonic()
    cut = ""
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        while not done.is_set():
            waited = token.waited()
            elapsed = time.monotonic() - started
            if waited >= limit:
                cut = f"it waited {limit:g}s on {token.describe()}"
            elif elapsed >= hard:
                cut = f"it ran {hard:g}s"
            if cut:
                tg.cancel_scope.cancel()
                break
            # Waiting time grows no faster than the clock: nothing can be due before this.
            with anyio.move_on_after(max(min(limit - waited, hard - elapsed), _MIN_PAUSE_S)):
                await done.wait()
    if not outcome:
        raise Timeout(
            "the server was unable to return a response in the time allotted, but may still be"
            f" processing the request ({cut})"
        )
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
