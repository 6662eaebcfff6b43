"""Two engines on one PostgreSQL database and one git repository: a sync on one replica while
the other replica's API write is between its git change and its index commit (docs/sync.md,
"API writes in flight during a sync"). The sync must not index that write's revision (the
write's own commit would then fail with "already exists"), the write succeeds, and a crashed
replica's write in flight does not keep syncs out.

Skipped without the PostgreSQL binaries unless PORCH_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import pytest

from porch.api.names import compose_name
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
)
from porch.engine import Engine
from porch.store.postgres import PostgresStore
from tests.engine.conftest import git_opener

NS = "default"
REPO = "blue"
WAIT = 30.0  # an upper bound for something that must happen, never a speed expectation


@dataclass
class Replicas:
    a: Engine
    b: Engine
    faults: dict[str, Callable[[], None]] = field(default_factory=dict)


@pytest.fixture
def replicas(dsn: str, tmp_path: Path) -> Iterator[Replicas]:
    origin = tmp_path / "origin.git"
    pygit2.init_repository(str(origin), bare=True, initial_head="main")
    faults: dict[str, Callable[[], None]] = {}

    def fault(point: str) -> None:
        hook = faults.pop(point, None)
        if hook is not None:
            hook()

    a = Engine(store=PostgresStore(dsn), opener=git_opener(tmp_path / "mirrors-a"), fault=fault)
    b = Engine(store=PostgresStore(dsn), opener=git_opener(tmp_path / "mirrors-b"))
    a.start()
    b.start()
    a.register_repository(
        Repository(
            metadata=ObjectMeta(name=REPO, namespace=NS),
            spec=RepositorySpec(
                type="git",
                git=GitRepositorySpec(repo=f"file://{origin}", branch="main", create_branch=True),
            ),
        )
    )
    # B's syncs that meet a write in flight give up at once instead of waiting for it.
    b.write_wait = 0.0
    yield Replicas(a, b, faults)
    a.close()
    b.close()


def _create(engine: Engine, workspace: str) -> PackageRevision:
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(package_name="app", repository=REPO, workspace_name=workspace),
        )
    )


def _git_view(engine: Engine) -> dict[str, tuple[str, str]]:
    adapter = engine.repositories.adapter(engine.repositories.get(NS, REPO))
    adapter.fetch()
    return {
        compose_name(REPO, i.package, i.workspace): (i.commit, str(i.lifecycle))
        for i in adapter.list_revisions()
    }


def _index_view(engine: Engine) -> dict[str, tuple[str, str]]:
    return {
        r.name: (r.commit, r.lifecycle) for r in engine.store.list_revisions(NS, repository=REPO)
    }


def _version(engine: Engine) -> str:
    adapter = engine.repositories.adapter(engine.repositories.get(NS, REPO))
    adapter.fetch()
    return adapter.version()


@pytest.mark.parametrize("full", [False, True], ids=["mark", "full"])
def test_a_sync_on_one_replica_leaves_the_other_replicas_write_in_flight_alone(
    replicas: Replicas, full: bool
) -> None:
    a, b = replicas.a, replicas.b
    name = compose_name(REPO, "app", "ws1")
    during: dict[str, bool] = {}

    def sync_on_b() -> None:
        # A's draft branch is in git already; its index row is not committed yet.
        b.sync_repository(NS, REPO, full=full)
        during["in git"] = name in _git_view(b)
        during["indexed"] = name in _index_view(b)
        during["marked"] = b.index_matches(NS, REPO, _version(b))

    replicas.faults["create:after-write"] = sync_on_b
    pr = _create(a, "ws1")
    assert during == {"in git": True, "indexed": False, "marked": False}
    assert pr.metadata.name == name
    assert b.get(NS, name).metadata.resource_version == pr.metadata.resource_version
    # B's later syncs find the index right: no new resourceVersion, no event.
    before = b.current_resource_version()
    b.sync_repository(NS, REPO)
    b.sync_repository(NS, REPO, full=True)
    assert b.current_resource_version() == before
    assert b.index_matches(NS, REPO, _version(b))
    assert _index_view(b) == _git_view(b)


def test_a_crashed_replicas_write_in_flight_does_not_keep_syncs_out(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    held = a._writes.hold(NS, REPO)
    held.__enter__()  # never left: A dies in the middle of a write
    _create(a, "ws1")  # (a write nested in it, so the refs moved past the last sync mark)
    b.sync_repository(NS, REPO)
    assert not b.index_matches(NS, REPO, _version(b))  # A's write is in flight: no mark
    a.store.close()  # a crash ends A's sessions the same way: PostgreSQL drops its locks
    pause = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        b.sync_repository(NS, REPO)
        if b.index_matches(NS, REPO, _version(b)):
            break
        pause.wait(0.05)
    else:
        raise AssertionError("the crashed replica's write still keeps B's sync out")
    assert _index_view(b) == _git_view(b)
