"""How long a request has been *waiting* — on a remote, or on a lock held by one that is.

The API server gives each backend call a deadline (``porch.apiserver.deadline``) so that a git
remote or registry that hangs cannot hold an API request for a minute; but a call that is
merely slow because it computes (a render on a busy machine) must not be cut. So the deadline
counts only waiting time, which the layers that wait declare here:

- ``remote_wait(what)`` around every blocking call to a remote (git fetch/push, registry HTTP);
- ``WaitLock`` instead of a plain lock wherever the holder may be talking to a remote (a git
  repository's lock, a registry adapter's lock, per-package locks). Time blocked on such a lock
  counts only while its holder is itself waiting (on a remote, or on another ``WaitLock`` whose
  holder is...): queueing behind a holder that computes is not waiting on a remote.

Each thread has a current ``WaitToken``: the one a request bound with ``bound(token)``, else a
per-thread token of its own (so a background sync that holds a lock while it fetches is seen
as waiting by the requests queued on that lock). ``token.waited()`` is the total waiting time,
summed over every wait of the call. A token belongs to one thread at a time.

Framework-free on purpose: the repository adapters, the engine and the API server all use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

# Tests replace it to make the accounting deterministic.
clock: Callable[[], float] = time.monotonic

_MAX_HOPS = 16  # lock chains are short; this only guards against a cycle (a deadlock)
_STATE = threading.Lock()  # guards every token's and WaitLock's bookkeeping; never held long
_local = threading.local()


class _Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


class WaitToken:
    """The waiting time of one request (or one thread): remote calls and remote-held locks."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._depth = 0  # nested remote_wait blocks now open
        self._since = 0.0  # when the outermost open remote_wait began
        self._banked = 0.0  # waiting time of waits that have ended
        self._what = ""  # the remote being waited on now, or last
        self._block: _Block | None = None  # the WaitLock this thread is blocked on

    def waited(self) -> float:
        """Seconds spent waiting so far, the wait in progress included."""
        with _STATE:
            return self._waited(clock(), 0)

    def waiting(self) -> bool:
        """Whether the thread is waiting now (on a remote or on a remote-held lock)."""
        with _STATE:
            return self._waiting(0)

    def describe(self) -> str:
        """What the thread waits on now (or waited on last), for messages."""
        with _STATE:
            return self._describe(0)

    def _waited(self, now: float, hops: int) -> float:
        total = self._banked
        if self._depth:
            total += now - self._since
        elif self._block is not None and hops < _MAX_HOPS:
            total += self._block.share(now, hops)
        return total

    def _waiting(self, hops: int) -> bool:
        if self._depth:
            return True
        block = self._block
        if block is None or block.holder is None or hops >= _MAX_HOPS:
            return False
        return block.holder._waiting(hops + 1)

    def _describe(self, hops: int) -> str:
        block = self._block
        if not self._depth and block is not None and hops < _MAX_HOPS:
            holder = block.holder
            if holder is not None and holder._waiting(hops + 1):
                return f"{block.lock.what}, held during {holder._describe(hops + 1)}"
            return block.lock.what
        return self._what or "nothing"


class _Block:
    """A thread blocked on a WaitLock; the wait is cut into segments, one per holder."""

    def __init__(self, lock: WaitLock, now: float) -> None:
        self.lock = lock
        self.holder: WaitToken | None = None
        self._start = now
        self._mark = 0.0  # the holder's waited() when this segment began

    def start(self, holder: WaitToken | None, now: float) -> None:
        self.holder = holder
        self._start = now
        self._mark = holder._waited(now, 1) if holder is not None else 0.0

    def share(self, now: float, hops: int) -> float:
        """Waiting time of the current segment: as much as the holder has waited in it."""
        if self.holder is None:
            return 0.0
        grown = self.holder._waited(now, hops + 1) - self._mark
        return max(0.0, min(grown, now - self._start))


def current() -> WaitToken:
    """The calling thread's token: the bound one, else the thread's own."""
    token: WaitToken | None = getattr(_local, "token", None)
    if token is None:
        token = getattr(_local, "own", None)
        if token is None:
            token = _local.own = WaitToken(threading.current_thread().name)
    return token


@contextmanager
def bound(token: WaitToken) -> Iterator[WaitToken]:
    """Make ``token`` the calling thread's current token inside the block."""
    previous: WaitToken | None = getattr(_local, "token", None)
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous


@contextmanager
def remote_wait(what: str) -> Iterator[None]:
    """Mark the current token as waiting on a remote (``what`` names it) inside the block.

    Nesting is safe: only the outermost block counts, once.
    """
    token = current()
    with _STATE:
        if token._depth == 0:
            token._since = clock()
            token._what = what
        token._depth += 1
    try:
        yield
    finally:
        with _STATE:
            token._depth -= 1
            if token._depth == 0:
                token._banked += clock() - token._since


class WaitLock:
    """A lock (``threading.Lock`` or ``RLock`` inside) whose waiters know whom they wait for.

    Blocking on it counts as waiting for as long as the holder itself waits on a remote; it
    behaves as the wrapped lock otherwise (an ``RLock`` stays re-entrant).
    """

    def __init__(self, lock: _Lock | None = None, what: str = "a lock") -> None:
        self._lock: _Lock = lock if lock is not None else threading.Lock()
        self.what = what
        self._owner: WaitToken | None = None
        self._count = 0
        self._waiters: list[WaitToken] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        token = current()
        if self._lock.acquire(False):
            self._acquired(token)
            return True
        if not blocking:
            return False
        with _STATE:
            # Inside remote_wait the whole time counts already; no second account.
            tracked = token._depth == 0 and token._block is None
            if tracked:
                now = clock()
                block = token._block = _Block(self, now)
                block.start(self._owner, now)
                self._waiters.append(token)
        try:
            got = self._lock.acquire(True, timeout)
        finally:
            if tracked:
                with _STATE:
                    self._unblock(token, clock())
        if got:
            self._acquired(token)
        return got

    def release(self) -> None:
        with _STATE:
            self._count -= 1
            if self._count == 0:
                self._owner = None
                self._resegment(None)
        self._lock.release()

    @property
    def waiters(self) -> int:
        """Threads blocked on the lock now, outside any remote_wait (tests, diagnostics)."""
        with _STATE:
            return len(self._waiters)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _acquired(self, token: WaitToken) -> None:
        with _STATE:
            self._count += 1
            if self._count == 1:
                self._owner = token
                self._resegment(token)

    def _resegment(self, holder: WaitToken | None) -> None:
        # The holder changed: what each waiter waited under the old one is banked.
        now = clock()
        for waiter in self._waiters:
            block = waiter._block
            assert block is not None
            waiter._banked += block.share(now, 0)
            block.start(holder, now)

    def _unblock(self, token: WaitToken, now: float) -> None:
        block = token._block
        assert block is not None
        token._banked += block.share(now, 0)
        token._block = None
        self._waiters.remove(token)
