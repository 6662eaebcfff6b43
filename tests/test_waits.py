"""``porch.waits``: waiting time on remotes and remote-held locks, with an injected clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from porch import waits
from porch.waits import WaitLock, WaitToken, bound, remote_wait


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(waits, "clock", fake)
    return fake


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Blocked:
    """A thread with its own bound token that takes ``lock`` and keeps it until released."""

    def __init__(self, lock: WaitLock, name: str) -> None:
        self.token = WaitToken(name)
        self.got = threading.Event()
        self.release = threading.Event()
        self._lock = lock
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with bound(self.token), self._lock:
            self.got.set()
            self.release.wait(30)

    def finish(self) -> None:
        self.release.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.fixture
def cleanup() -> Iterator[list[Blocked]]:
    threads: list[Blocked] = []
    yield threads
    for t in threads:
        t.release.set()


def test_remote_wait_counts_once_when_nested_and_sums_over_waits(clock: FakeClock) -> None:
    token = WaitToken("t")
    with bound(token):
        assert waits.current() is token
        with remote_wait("a git fetch from x"):
            clock.now += 1
            with remote_wait("inner"):
                clock.now += 2
                assert token.waiting()
                assert token.waited() == 3
            assert token.describe() == "a git fetch from x"
            clock.now += 1
        assert not token.waiting()
        clock.now += 50  # computing: not waiting
        with remote_wait("a git push to x"):
            clock.now += 0.5
        assert token.waited() == 4.5
        assert token.describe() == "a git push to x"
    assert waits.current() is not token


def test_blocking_on_a_lock_counts_only_while_the_holder_waits(
    clock: FakeClock, cleanup: list[Blocked]
) -> None:
    lock = WaitLock(what="the git lock of r")
    holder = WaitToken("holder")
    with bound(holder):
        lock.acquire()
        waiter = Blocked(lock, "waiter")
        cleanup.append(waiter)
        _until(lambda: lock.waiters == 1, "the waiter to block")
        clock.now += 5  # the holder computes
        assert waiter.token.waited() == 0
        assert not waiter.token.waiting()
        assert waiter.token.describe() == "the git lock of r"
        with remote_wait("a git fetch from r"):
            clock.now += 3
            assert waiter.token.waited() == 3
            assert waiter.token.waiting()
            assert waiter.token.describe() == "the git lock of r, held during a git fetch from r"
        clock.now += 2  # computing again
        assert waiter.token.waited() == 3
        lock.release()
    assert waiter.got.wait(30)
    clock.now += 10  # now the waiter holds the lock: nothing more counts
    assert waiter.token.waited() == 3
    waiter.finish()
    assert lock.waiters == 0


def test_waiting_passes_along_a_chain_of_locks(clock: FakeClock, cleanup: list[Blocked]) -> None:
    first, second = WaitLock(what="first"), WaitLock(what="second")
    root = WaitToken("root")
    with bound(root):
        first.acquire()
        # middle takes `second`, then blocks on `first`; last blocks on `second`
        middle_token = WaitToken("middle")
        middle_in = threading.Event()
        done = threading.Event()

        def middle() -> None:
            with bound(middle_token), second:
                middle_in.set()
                with first:
                    pass
            done.set()

        thread = threading.Thread(target=middle, daemon=True)
        thread.start()
        assert middle_in.wait(30)
        _until(lambda: first.waiters == 1, "middle to block")
        last = Blocked(second, "last")
        cleanup.append(last)
        _until(lambda: second.waiters == 1, "last to block")
        clock.now += 1
        assert last.token.waited() == 0
        with remote_wait("a git push to r"):
            clock.now += 2
            assert middle_token.waited() == 2
            assert last.token.waited() == 2
            assert "held during first" in last.token.describe()
        first.release()
    assert done.wait(30)
    assert last.got.wait(30)
    assert middle_token.waited() == 2
    assert last.token.waited() == 2
    last.finish()
    thread.join(30)


def test_a_remote_wait_around_a_lock_is_not_counted_twice(
    clock: FakeClock, cleanup: list[Blocked]
) -> None:
    lock = WaitLock(what="mirror")
    holder = Blocked(lock, "holder")
    cleanup.append(holder)
    assert holder.got.wait(30)
    token = WaitToken("t")
    finished = threading.Event()

    def run() -> None:
        with bound(token), remote_wait("an upstream fetch"), lock:
            pass
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    _until(lambda: token.waiting(), "the remote wait to begin")
    clock.now += 4
    assert token.waited() == 4
    holder.finish()
    assert finished.wait(30)
    assert token.waited() == 4


def test_wait_lock_keeps_the_wrapped_lock_semantics(cleanup: list[Blocked]) -> None:
    reentrant = WaitLock(threading.RLock(), "r")
    with reentrant, reentrant:
        assert reentrant.acquire(blocking=False)
        reentrant.release()
    plain = WaitLock(what="p")
    holder = Blocked(plain, "holder")
    cleanup.append(holder)
    assert holder.got.wait(30)
    assert not plain.acquire(blocking=False)
    assert not plain.acquire(timeout=0.01)
    assert plain.waiters == 0
    holder.finish()
    assert plain.acquire(blocking=False)
    plain.release()


def test_threads_without_a_request_have_their_own_token() -> None:
    seen: list[WaitToken] = []

    def run() -> None:
        seen.append(waits.current())
        seen.append(waits.current())

    for _ in range(2):
        t = threading.Thread(target=run)
        t.start()
        t.join(30)
    assert seen[0] is seen[1]
    assert seen[2] is seen[3] and seen[2] is not seen[0]
