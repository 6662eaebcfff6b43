"""The request deadline counts waiting on remotes and remote-held locks, never computing.

Real threads and the real clock with a small injected deadline; every assertion holds however
slow the machine is (computing never counts, and a cut comes no earlier than the deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from porch.apiserver import deadline
from porch.apiserver.deadline import Timeout, run_in_threadpool, run_with_deadline
from porch.errors import NotFound
from porch.waits import WaitLock, remote_wait

SMALL = 0.3  # the injected deadline


def _compute(seconds: float) -> int:
    """Burn CPU (no waiting) for ``seconds``."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(range(200))
    return n


def _run(call: Callable[[], Any], **kw: Any) -> Any:
    async def main() -> Any:
        return await run_with_deadline(call, **kw)

    return anyio.run(main)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Released at the end of the test so abandoned workers can finish."""
    event = threading.Event()
    yield event
    event.set()


def test_a_call_that_computes_past_the_deadline_is_not_cut() -> None:
    started = time.monotonic()
    assert _run(lambda: _compute(6 * SMALL) > 0, deadline=SMALL, cap=60) is True
    assert time.monotonic() - started >= 6 * SMALL


def test_a_call_blocked_on_a_remote_is_cut_at_the_deadline(gate: threading.Event) -> None:
    def hang() -> None:
        with remote_wait("a git fetch from http://hung.example/r.git"):
            gate.wait(60)

    started = time.monotonic()
    with pytest.raises(Timeout) as err:
        _run(hang, deadline=SMALL, cap=60)
    took = time.monotonic() - started
    assert SMALL <= took < 30
    assert err.value.code == 504
    assert "waited 0.3s on a git fetch from http://hung.example/r.git" in str(err.value)
    assert "may still be processing the request" in str(err.value)


def test_waiting_is_summed_over_the_waits_of_a_call(gate: threading.Event) -> None:
    def many_short_waits() -> None:
        for _ in range(3):  # each shorter than the deadline, more than it together
            with remote_wait("a git push to r"):
                time.sleep(SMALL / 2)
            _compute(0.05)
        gate.wait(60)  # then computes on (and would, until the cap)

    with pytest.raises(Timeout, match="waited 0.3s on a git push to r"):
        _run(many_short_waits, deadline=SMALL, cap=60)


def test_a_short_remote_wait_after_long_compute_is_not_cut() -> None:
    def slow_then_push() -> str:
        _compute(4 * SMALL)
        with remote_wait("a git push to r"):
            time.sleep(SMALL / 10)
        return "pushed"

    assert _run(slow_then_push, deadline=SMALL, cap=60) == "pushed"


def test_a_lock_held_by_a_hung_remote_operation_counts(gate: threading.Event) -> None:
    lock = WaitLock(threading.RLock(), "the git lock of r.git")
    holding = threading.Event()

    def sync_stuck_in_fetch() -> None:  # a background thread, no request token
        with lock, remote_wait("a git fetch from r"):
            holding.set()
            gate.wait(60)

    threading.Thread(target=sync_stuck_in_fetch, daemon=True).start()
    assert holding.wait(30)

    def read() -> None:
        with lock:
            pass

    with pytest.raises(Timeout, match="the git lock of r.git, held during a git fetch from r"):
        _run(read, deadline=SMALL, cap=60)


def test_a_lock_held_by_a_computing_request_does_not_count(gate: threading.Event) -> None:
    lock = WaitLock(what="the lock of package p")
    holding = threading.Event()

    def render() -> None:
        with lock:
            holding.set()
            _compute(6 * SMALL)

    holder = threading.Thread(target=render, daemon=True)
    holder.start()
    assert holding.wait(30)

    def write() -> str:
        with lock:
            return "written"

    assert _run(write, deadline=SMALL, cap=60) == "written"
    holder.join(30)


def test_the_hard_cap_cuts_even_computing_calls(gate: threading.Event) -> None:
    with pytest.raises(Timeout, match=r"it ran 0.5s"):
        _run(lambda: gate.wait(60), deadline=60, cap=0.5)


def test_errors_and_results_pass_through() -> None:
    def missing() -> None:
        raise NotFound("package revision x not found")

    with pytest.raises(NotFound, match="x not found"):
        _run(missing, deadline=SMALL, cap=60)
    assert _run(lambda: {"a": 1}, deadline=SMALL) == {"a": 1}


def test_run_in_threadpool_uses_the_module_deadline(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    monkeypatch.setattr(deadline, "REQUEST_DEADLINE_S", SMALL)

    def hang(what: str, *, mark: list[str]) -> None:
        mark.append(what)
        with remote_wait(what):
            gate.wait(60)

    mark: list[str] = []

    async def main() -> None:
        await run_in_threadpool(hang, "OCI registry r.example", mark=mark)

    with pytest.raises(Timeout, match="OCI registry r.example"):
        anyio.run(main)
    assert mark == ["OCI registry r.example"]
