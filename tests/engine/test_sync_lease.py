"""Two engines (replicas) on one PostgreSQL database: only one syncs a repository at a time.

The lease is the store's session advisory lock (``PostgresStore.lease``), which both the
background syncer and ``Engine.start`` take before they index a repository (docs/sync.md).
Skipped without the PostgreSQL binaries unless PORCH_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from porch.api.types import (
    GitRepositorySpec,
    Lifecycle,
    ObjectMeta,
    Repository,
    RepositorySpec,
)
from porch.engine import Engine
from porch.engine.sync import RepositorySyncer, SyncOutcome, SyncSettings
from porch.repository.memory import MemoryRepository
from porch.repository.types import Author, PackageRepository, RevisionInfo
from porch.store.postgres import PostgresStore
from porch.testing.git_repos import KPTFILE

NS = "default"
WAIT = 30.0  # an upper bound for something that must happen, never a speed expectation


class _Gated:
    """A shared repository whose listing can be held up (a long sync in progress)."""

    def __init__(self, inner: MemoryRepository) -> None:
        self._inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.listings = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_revisions(self) -> list[RevisionInfo]:
        self.listings += 1
        self.entered.set()
        assert self.release.wait(WAIT)
        return self._inner.list_revisions()


def _repository(name: str) -> Repository:
    return Repository(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=RepositorySpec(type="git", git=GitRepositorySpec(repo=f"memory://{name}")),
    )


def _outside_draft(memory: MemoryRepository, package: str) -> None:
    memory.write(
        package=package,
        workspace="ws",
        files={"Kptfile": KPTFILE},
        lifecycle=Lifecycle.DRAFT,
        task={"type": "init"},
        author=Author("o", "o@example.com"),
        base=None,
    )


@pytest.fixture
def replicas(dsn: str) -> Iterator[tuple[Engine, Engine, MemoryRepository, _Gated]]:
    memory = MemoryRepository(url="memory://shared", branch="main")
    gated = _Gated(memory)

    def opener(repo: Repository) -> PackageRepository:
        return gated  # type: ignore[return-value]

    a = Engine(store=PostgresStore(dsn), opener=opener)
    b = Engine(store=PostgresStore(dsn), opener=opener)
    yield a, b, memory, gated
    gated.release.set()
    a.close()
    b.close()


def test_the_engines_lease_is_the_stores(
    replicas: tuple[Engine, Engine, MemoryRepository, _Gated],
) -> None:
    a, b, _memory, _gated = replicas
    held = a.sync_lease(f"{NS}/shared")
    assert held is not None
    with held:
        assert b.sync_lease(f"{NS}/shared") is None
    with b.sync_lease(f"{NS}/shared") or pytest.fail("the lease was not given back"):
        pass


def test_a_syncer_skips_a_repository_another_replica_syncs(
    replicas: tuple[Engine, Engine, MemoryRepository, _Gated],
) -> None:
    a, b, memory, gated = replicas
    a.register_repository(_repository("shared"))
    _outside_draft(memory, "app")  # the refs moved: a sync has work to do
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(b, SyncSettings(ref_interval=3600), observer=outcomes.append)
    gated.entered.clear()
    gated.release.clear()
    gated.listings = 0
    done: list[list[str]] = []
    worker = threading.Thread(target=lambda: done.append(a.sync_repository(NS, "shared")))
    # replica a syncs under its lease, as its syncer would
    held = a.sync_lease(f"{NS}/shared")
    assert held is not None
    with held:
        worker.start()
        assert gated.entered.wait(WAIT)
        syncer.tick()
        assert syncer.wait_idle(WAIT)
        assert [o.kind for o in outcomes] == ["skipped"]  # b did not sync meanwhile
        assert gated.listings == 1
        gated.release.set()
        worker.join(WAIT)
    assert done == [[]]
    # a's index is b's: the draft is there without b ever listing the repository
    assert [p.spec.package_name for p in b.list(NS)[0]] == ["app"]


def test_start_leaves_a_repository_another_replica_is_indexing(
    replicas: tuple[Engine, Engine, MemoryRepository, _Gated],
) -> None:
    a, b, memory, gated = replicas
    a.register_repository(_repository("shared"))
    _outside_draft(memory, "app")
    gated.listings = 0
    held = a.sync_lease(f"{NS}/shared")
    assert held is not None
    with held:
        assert b.start() == []
        assert gated.listings == 0  # b saw the lease and left the repository to a
    assert b.start() == []
    assert gated.listings == 1  # free again: b indexes it
    assert [p.spec.package_name for p in a.list(NS)[0]] == ["app"]


def test_sqlite_engines_lease_within_the_process(tmp_path: Path) -> None:
    from porch.engine.sync import LocalLease
    from porch.store.factory import open_store

    engine = Engine(
        store=open_store("", tmp_path),
        opener=lambda repo: MemoryRepository(url="memory://x"),
    )
    try:
        assert isinstance(engine.sync_lease, LocalLease)
        held = engine.sync_lease("k")
        assert held is not None and engine.sync_lease("k") is None
        with held:
            pass
        assert engine.sync_lease("k") is not None
    finally:
        engine.store.close()
