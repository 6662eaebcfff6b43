"""Two engines on one PostgreSQL database (two replicas in one process), each with its own git
mirror of one shared repository: reads, watches, optimistic concurrency and revision numbers
hold across them (docs/replicas.md).

Skipped without the PostgreSQL binaries unless PORCH_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pygit2
import pytest

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    Task,
)
from porch.engine import Engine
from porch.engine.replicas import ReplicaFeed
from porch.engine.watch import Watcher, WatchEvent, WatchHub
from porch.errors import Conflict, Expired, PorchError
from porch.repository.memory import MemoryRepository
from porch.repository.types import PackageRepository
from porch.store.postgres import PostgresStore
from porch.store.types import Event, Store
from tests.engine.conftest import git_opener

NS = "default"
WAIT = 30.0  # an upper bound for something that must happen, never a speed expectation


@dataclass
class Pair:
    a: Engine
    b: Engine
    url: str


def _engine(dsn: str, opener: Callable[[Repository], PackageRepository], **kw: Any) -> Engine:
    engine = Engine(store=PostgresStore(dsn), opener=opener, **kw)
    engine.start()
    return engine


def _repository(url: str, name: str = "blue", **spec: Any) -> Repository:
    return Repository(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=RepositorySpec(
            type="git",
            git=GitRepositorySpec(repo=url, branch="main", create_branch=True),
            **spec,
        ),
    )


@pytest.fixture
def pair(dsn: str, tmp_path: Path) -> Iterator[Pair]:
    origin = tmp_path / "origin.git"
    pygit2.init_repository(str(origin), bare=True, initial_head="main")
    url = f"file://{origin}"  # a URL: each replica works through a mirror of its own
    a = _engine(dsn, git_opener(tmp_path / "mirrors-a"))
    b = _engine(dsn, git_opener(tmp_path / "mirrors-b"))
    a.register_repository(_repository(url))
    yield Pair(a, b, url)
    a.close()
    b.close()


def create(
    engine: Engine, workspace: str = "ws1", package: str = "app", *, source: str = ""
) -> PackageRevision:
    """A new package (init), or with ``source`` a new revision of it (edit task)."""
    tasks = []
    if source:
        tasks = [Task(type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(source)))]
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package, repository="blue", workspace_name=workspace, tasks=tasks
            ),
        )
    )


def set_lifecycle(engine: Engine, name: str, lifecycle: str) -> PackageRevision:
    pr = engine.get(NS, name)
    pr.spec.lifecycle = lifecycle
    endpoint = Endpoint.APPROVAL if lifecycle == "Published" else Endpoint.MAIN
    return engine.update(pr, endpoint=endpoint)


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        if predicate():
            return
        done.wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def live_events(watcher: Watcher, count: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    while len(out) < count:
        event = watcher.next(timeout=WAIT)
        assert event is not None, f"watch ended after {out}"
        out.append(event)
    return out


def test_a_repository_and_a_write_on_one_replica_are_usable_on_the_other_at_once(
    pair: Pair,
) -> None:
    pr = create(pair.a)
    # Registered on A only; B reads the index, then files through its own (stale) mirror.
    got = pair.b.get(NS, pr.metadata.name)
    assert got.metadata.resource_version == pr.metadata.resource_version
    prr = pair.b.get_resources(NS, pr.metadata.name)
    assert "Kptfile" in prr.spec.resources
    prr.spec.resources = {**prr.spec.resources, "cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"}
    written = pair.b.update_resources(prr)
    back = pair.a.get_resources(NS, pr.metadata.name)
    assert back.spec.resources["cm.yaml"] == "apiVersion: v1\nkind: ConfigMap\n"
    assert back.metadata.resource_version == written.metadata.resource_version
    # A lifecycle change on A of a commit B wrote, then approval on B of A's proposal.
    set_lifecycle(pair.a, pr.metadata.name, "Proposed")
    published = set_lifecycle(pair.b, pr.metadata.name, "Published")
    assert published.spec.revision == 1
    assert pair.a.get(NS, pr.metadata.name).spec.revision == 1


def test_a_watch_on_one_replica_sees_the_others_writes_once_and_in_order(pair: Pair) -> None:
    on_a, on_b = pair.a.watch(NS), pair.b.watch(NS)
    try:
        initial_a = [on_a.next(timeout=WAIT) for _ in range(on_a.initial_count)]
        initial_b = [on_b.next(timeout=WAIT) for _ in range(on_b.initial_count)]
        assert [e.resource_version for e in initial_a if e] == [
            e.resource_version for e in initial_b if e
        ]
        first = create(pair.a, "w1", "one")
        second = create(pair.b, "w2", "two")
        third = set_lifecycle(pair.a, first.metadata.name, "Proposed")
        fourth = set_lifecycle(pair.b, second.metadata.name, "Proposed")
        wanted = [
            ("ADDED", first.metadata.name, first.metadata.resource_version),
            ("ADDED", second.metadata.name, second.metadata.resource_version),
            ("MODIFIED", third.metadata.name, third.metadata.resource_version),
            ("MODIFIED", fourth.metadata.name, fourth.metadata.resource_version),
        ]
        for watcher in (on_a, on_b):
            seen = live_events(watcher, 4)
            got = [(e.type, e.object["metadata"]["name"], str(e.resource_version)) for e in seen]
            assert got == wanted
            assert all(
                e.object["metadata"]["resourceVersion"] == str(e.resource_version) for e in seen
            )
            assert watcher.next(timeout=0.2) is None  # nothing twice
    finally:
        on_a.close()
        on_b.close()


def test_racing_updates_with_one_resource_version_have_exactly_one_winner(pair: Pair) -> None:
    pr = create(pair.a)
    base = pair.a.get(NS, pr.metadata.name)
    barrier = threading.Barrier(32)
    results: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        engine = pair.a if i % 2 else pair.b
        mine = engine.get(NS, pr.metadata.name)
        mine.metadata.resource_version = base.metadata.resource_version
        mine.metadata.labels = {"winner": str(i)}
        barrier.wait()
        try:
            engine.update(mine)
            outcome = "ok"
        except Conflict:
            outcome = "409"
        except PorchError as exc:  # anything else is a failure of the test
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409"] * 31 + ["ok"], results
    final = pair.b.get(NS, pr.metadata.name)
    assert int(final.metadata.resource_version) > int(base.metadata.resource_version)
    assert set(final.metadata.labels) >= {"winner"}


def test_a_stale_resource_version_from_the_other_replica_is_409(pair: Pair) -> None:
    pr = create(pair.a)
    stale = pair.b.get(NS, pr.metadata.name)
    fresh = pair.a.get(NS, pr.metadata.name)
    fresh.metadata.labels = {"by": "a"}
    pair.a.update(fresh)
    stale.metadata.labels = {"by": "b"}
    with pytest.raises(Conflict):
        pair.b.update(stale)
    assert pair.b.get(NS, pr.metadata.name).metadata.labels.get("by") == "a"


def test_concurrent_approvals_on_both_replicas_never_share_a_revision_number(pair: Pair) -> None:
    v1 = create(pair.a, "ws0").metadata.name
    set_lifecycle(pair.b, v1, "Proposed")
    set_lifecycle(pair.a, v1, "Published")
    names = [
        create(pair.a if i % 2 else pair.b, f"ws{i}", source=v1).metadata.name for i in range(1, 7)
    ]
    for name in names:
        set_lifecycle(pair.a, name, "Proposed")
    barrier = threading.Barrier(len(names))
    failed: list[str] = []
    lock = threading.Lock()

    def approve(i: int, name: str) -> None:
        engine = pair.a if i % 2 else pair.b
        barrier.wait()
        try:
            set_lifecycle(engine, name, "Published")
        except (Conflict, PorchError) as exc:
            assert exc.code == 409, exc
            with lock:
                failed.append(name)

    threads = [threading.Thread(target=approve, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, name in enumerate(failed):  # the losers retry, one at a time
        set_lifecycle(pair.a if i % 2 else pair.b, name, "Published")
    numbers = sorted(pair.b.get(NS, n).spec.revision for n in [v1, *names])
    assert numbers == list(range(1, len(names) + 2))
    tags = [r for r in pygit2.Repository(pair.url[len("file://") :]).references if "/v" in r]
    assert sorted(tags) == sorted(f"refs/tags/app/v{n}" for n in numbers)


def test_approval_rechecks_the_number_inside_the_transaction(dsn: str) -> None:
    """Two replicas whose repositories do not see each other (so git cannot catch it): the
    store transaction still refuses a revision number another replica took meanwhile."""
    memories: dict[str, MemoryRepository] = {}

    def memory(key: str) -> Callable[[Repository], PackageRepository]:
        def opener(repo: Repository) -> PackageRepository:
            return memories.setdefault(key, MemoryRepository(url="memory://blue"))

        return opener

    def fault(point: str) -> None:
        if point == "approve:after-publish" and not fired.is_set():
            fired.set()  # A publishes v1 between B's choice of the number and B's commit
            set_lifecycle(a, "blue.app.wa", "Published")

    fired = threading.Event()
    a = _engine(dsn, memory("a"))
    b = _engine(dsn, memory("b"), fault=fault)
    try:
        a.register_repository(_repository("memory://blue"))
        v1 = create(a, "v1").metadata.name
        set_lifecycle(a, v1, "Proposed")
        set_lifecycle(a, v1, "Published")
        create(a, "wa", source=v1)
        create(a, "wb", source=v1)
        set_lifecycle(a, "blue.app.wa", "Proposed")
        set_lifecycle(a, "blue.app.wb", "Proposed")
        # From here on B's repository is a copy that no longer sees A's writes.
        split = memories["b"] = MemoryRepository(url="memory://blue")
        split._refs = dict(memories["a"]._refs)
        split._markers = set(memories["a"]._markers)
        with pytest.raises(Conflict, match="published concurrently"):
            set_lifecycle(b, "blue.app.wb", "Published")
        assert a.get(NS, "blue.app.wa").spec.revision == 2
        assert b.get(NS, "blue.app.wb").spec.lifecycle == "Proposed"
        assert set_lifecycle(b, "blue.app.wb", "Published").spec.revision == 3
    finally:
        a.close()
        b.close()


def test_a_repository_changed_on_one_replica_is_reopened_on_the_other(pair: Pair) -> None:
    pr = create(pair.a)
    assert pair.b.get(NS, pr.metadata.name).status.deployment is False
    repo = pair.a.repositories.get(NS, "blue")
    changed = Repository.from_dict(repo.to_dict())
    changed.spec.deployment = True
    pair.a.register_repository(changed)
    wait_for(lambda: pair.b.repositories.get(NS, "blue").spec.deployment, "B to see the change")
    assert pair.b.get(NS, pr.metadata.name).status.deployment is True


class _LogOnly:
    """Just what ReplicaFeed reads of a store: a listener, the counter and the event log."""

    def __init__(self, rvs: list[int], current: int = 0) -> None:
        self.log = [Event(rv, "ADDED", "Thing", NS, f"t{rv}", {"rv": rv}) for rv in rvs]
        self.current = current
        self.callback: Callable[[int], None] | None = None

    def listen(self, callback: Callable[[int], None]) -> _LogOnly:
        self.callback = callback
        return self

    def close(self) -> None:
        self.callback = None

    def current_resource_version(self) -> int:
        return self.current

    def events_after(self, resource_version: int, *, limit: int = 1000) -> list[Event]:
        return [e for e in self.log if e.resource_version > resource_version][:limit]


def _feed(store: _LogOnly) -> tuple[ReplicaFeed, WatchHub, Watcher]:
    hub = WatchHub()
    feed = ReplicaFeed(
        cast(Store, store),
        lambda: hub,
        threading.Lock(),
        shape=lambda e: e.body,
        seen=lambda e: None,
    )
    assert feed.start()
    watcher = hub.add(lambda obj: True)
    watcher.go_live()
    return feed, hub, watcher


def test_a_local_commit_publishes_the_other_replicas_earlier_events_first() -> None:
    store = _LogOnly([1, 2, 3])
    feed, _hub, watcher = _feed(store)
    feed.publish_local(store.log[2:])  # ours is 3; 1 and 2 were committed elsewhere
    assert [watcher.next(timeout=WAIT) for _ in range(3)] == [
        WatchEvent("ADDED", {"rv": rv}, rv) for rv in (1, 2, 3)
    ]
    assert store.callback is not None
    store.callback(2)  # their notification arrives late: already out, nothing is sent twice
    assert watcher.next(timeout=0.1) is None and feed.high_water == 3
    feed.close()
    assert store.callback is None


def test_events_compacted_before_the_feed_read_them_end_the_watches() -> None:
    store = _LogOnly([5, 6])  # 1..4 are gone from the log
    feed, _hub, watcher = _feed(store)
    assert store.callback is not None
    store.callback(6)
    with pytest.raises(Expired):
        while watcher.next(timeout=WAIT) is not None:
            pass
    assert feed.high_water == 6
