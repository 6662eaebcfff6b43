"""History checking (issue #11 part 1): many clients, random operations, one sequential model.

16 clients issue random operations against one ``porch serve`` (SQLite), and against two
replicas on one PostgreSQL database; tests/reliability/history.py records and checks the
history. Full size (10,000 operations) runs with PORCH_RELIABILITY_FULL=1 (CI sets it); the
default is smaller. The seed comes from PORCH_SEED or is random, and is always printed:
``PORCH_SEED=<seed> pytest tests/reliability/test_history.py`` replays the same choices.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pygit2
import pytest

from tests._pg import shared_server_or_skip
from tests.apiserver.served import Served, start
from tests.reliability.history import (
    NS,
    PR_PATH,
    REPO_PATH,
    TIMEOUT,
    Report,
    WatchRecorder,
    Workload,
    check,
)

FULL = os.environ.get("PORCH_RELIABILITY_FULL") == "1"
OPS = 10_000 if FULL else 1_500
CLIENTS = 16
FLAGS = ("--insecure-http", "--allow-anonymous", "--no-sync", "--watch-history", "100000")


def seed() -> int:
    value = int(os.environ.get("PORCH_SEED") or random.randrange(1, 2**31))
    print(f"\nPORCH_SEED={value}", file=sys.stderr)
    return value


def register(url: str, origin: Path, name: str, scheme: str = "file://") -> None:
    pygit2.init_repository(str(origin), bare=True, initial_head="main")
    body = {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "git",
            "git": {"repo": f"{scheme}{origin}", "branch": "main", "createBranch": True},
        },
    }
    r = httpx.post(f"{url}{REPO_PATH}", json=body, timeout=TIMEOUT)
    assert r.status_code == 201, r.text


def run_history(urls: list[str], root: Path, value: int, scheme: str, ops: int = OPS) -> Report:
    register(urls[0], root / "history.git", "history", scheme)
    since = httpx.get(f"{urls[0]}{PR_PATH}", timeout=TIMEOUT).json()["metadata"]["resourceVersion"]
    watchers = [WatchRecorder(url, since, "history") for url in urls]
    try:
        workload = Workload(urls, "history", seed=value, clients=CLIENTS, ops=ops)
        started = time.monotonic()
        workload.run()
        elapsed = time.monotonic() - started
        listed = httpx.get(f"{urls[0]}{PR_PATH}", timeout=TIMEOUT).json()
        final = {
            o["metadata"]["name"]: o
            for o in listed["items"]
            if o["spec"]["repository"] == "history"
        }
        top = int(listed["metadata"]["resourceVersion"])
        for w in watchers:
            w.wait_until(top)
        for w in watchers:
            assert not w.errors, (value, w.errors)
        report = check(workload.history, [w.events for w in watchers], final)
    finally:
        for w in watchers:
            w.close()
    print(
        f"seed={value} replicas={len(urls)} ops={report.ops} ok={report.ok}"
        f" conflicts={report.conflicts} timeouts={report.indeterminate} stale={report.stale}"
        f" events={report.events}"
        f" published={report.published} seconds={elapsed:.1f} by kind {report.by_kind}",
        file=sys.stderr,
    )
    assert not report.failures, f"PORCH_SEED={value}:\n" + "\n".join(report.failures)
    assert report.ops >= ops * 0.8, report  # most choices led to a request
    assert report.published > 0 and report.stale > 0 and report.conflicts > 0, report
    return report


@pytest.fixture
def one_server(tmp_path: Path) -> Iterator[Served]:
    served = start(tmp_path / "data", *FLAGS)
    try:
        yield served
    finally:
        served.stop()


@pytest.mark.timeout(900 if FULL else 300)
def test_history_on_one_server(one_server: Served, tmp_path: Path) -> None:
    # A local path: the engine writes the repository itself (no mirror, see docs/reliability.md).
    run_history([one_server.url], tmp_path, seed(), "")


# Both replicas over one repository: a local path both write directly (full size), and a URL,
# where each replica writes through the mirror in its own data dir and pushes (smaller: every
# write fetches and pushes, see docs/reliability.md).
@pytest.mark.timeout(900 if FULL else 300)
@pytest.mark.parametrize(("scheme", "ops"), [("", OPS), ("file://", 400)], ids=["path", "mirror"])
def test_history_on_two_replicas_on_postgresql(tmp_path: Path, scheme: str, ops: int) -> None:
    pg = shared_server_or_skip()
    dsn = pg.create_database()
    served: list[Served] = []
    try:
        for name in ("a", "b"):  # one after the other: the first creates the demo repository
            served.append(start(tmp_path / name, "--store", dsn, *FLAGS))
        run_history([s.url for s in served], tmp_path, seed(), scheme, ops)
    finally:
        for s in served:
            s.stop()
        pg.drop_database(dsn)
