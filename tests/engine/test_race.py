"""32 threads race one update with the same resourceVersion: exactly one wins."""

from __future__ import annotations

import threading

from porch.errors import Conflict
from tests.engine.conftest import NS, Harness


def test_same_resource_version_race(harness: Harness) -> None:
    harness.register()
    pr = harness.create()
    base = harness.engine.get(NS, pr.metadata.name)
    barrier = threading.Barrier(32)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        mine = harness.engine.get(NS, pr.metadata.name)
        mine.metadata.resource_version = base.metadata.resource_version
        mine.metadata.labels = {"winner": str(i)}
        barrier.wait()
        try:
            harness.engine.update(mine)
            outcome = "ok"
        except Conflict as exc:
            outcome = f"409 {type(exc).__name__}"
        with lock:
            results.append((i, outcome))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, outcome in results if outcome == "ok"]
    assert len(results) == 32
    assert len(winners) == 1, results
    assert all(o.startswith("409") for _i, o in results if _i != winners[0])
    final = harness.engine.get(NS, pr.metadata.name)
    assert final.metadata.labels == {"winner": str(winners[0])}
    assert int(final.metadata.resource_version) > int(base.metadata.resource_version)


def test_concurrent_approvals_get_distinct_revisions(harness: Harness) -> None:
    harness.register()
    from porch.api.types import PackageEditTaskSpec, PackageRevisionRef, Task

    harness.publish("app", "ws0")
    edit = Task(
        type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef("blue.app.ws0"))
    )
    drafts = [harness.create("app", f"ws{i}", tasks=[edit]) for i in range(1, 7)]
    for d in drafts:
        harness.set_lifecycle(d, "Proposed")
    barrier = threading.Barrier(len(drafts))

    def approve(name: str) -> None:
        barrier.wait()
        harness.set_lifecycle(harness.engine.get(NS, name), "Published", approval=True)

    threads = [threading.Thread(target=approve, args=(d.metadata.name,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    revisions = sorted(
        p.spec.revision
        for p in harness.engine.list(NS, field_selector="spec.packageName=app")[0]
        if p.spec.revision > 0
    )
    assert revisions == list(range(1, 8))
