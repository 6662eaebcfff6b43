"""After a restart every revision is rediscovered; a lost index is rebuilt from git alone."""

from __future__ import annotations

from pathlib import Path

from porch.api.types import PackageEditTaskSpec, PackageRevisionRef, Task
from porch.engine import Engine
from porch.store import SqliteStore
from tests.engine.conftest import NS, Harness


def _state(engine: Engine) -> list[tuple[object, ...]]:
    return sorted(
        (
            p.metadata.name,
            p.spec.workspace_name,
            p.spec.revision,
            p.spec.lifecycle,
            tuple(t.type for t in p.spec.tasks),
            tuple(sorted(p.metadata.labels.items())),
        )
        for p in engine.list(NS)[0]
    )


def _populate(h: Harness) -> None:
    h.register()
    h.register("scoped", directory="blueprints")
    h.publish("app", "ws1")
    edit = Task(
        type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef("blue.app.ws1"))
    )
    h.set_lifecycle(h.create("app", "ws2", tasks=[edit]), "Proposed")
    h.create("net/vpc", "draft", repo="scoped")
    h.set_lifecycle(h.publish("db", "ws1", repo="scoped"), "DeletionProposed")


def test_restart_keeps_everything(harness: Harness) -> None:
    _populate(harness)
    before = _state(harness.engine)
    harness.restart()
    assert _state(harness.engine) == before


def test_index_rebuilt_from_git_alone(harness: Harness, tmp_path: Path) -> None:
    if harness.backend.kind != "git":
        return  # only git survives losing the store
    _populate(harness)
    before = _state(harness.engine)
    repos = harness.engine.repositories.list()
    harness.engine.store.close()
    fresh = tmp_path / "fresh.db"
    harness.backend.forget_adapters()
    engine = Engine(store=SqliteStore(fresh), opener=harness.backend.opener)
    for repo in repos:
        engine.register_repository(repo)
    assert _state(engine) == before
    engine.store.close()


def test_sync_sees_a_revision_published_elsewhere(harness: Harness, tmp_path: Path) -> None:
    if harness.backend.kind != "git":
        return  # "elsewhere" is another writer on the same git repository
    harness.register()
    first = harness.publish("app", "ws1")
    assert first.metadata.labels.get("kpt.dev/latest-revision") == "true"
    other = Engine(store=SqliteStore(tmp_path / "other.db"), opener=harness.backend.opener)
    other.register_repository(harness.engine.repositories.get(NS, "blue"))
    edit = Task(
        type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef("blue.app.ws1"))
    )
    from porch.api.lifecycle import Endpoint
    from porch.api.types import ObjectMeta, PackageRevision, PackageRevisionSpec

    pr = other.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name="app", repository="blue", workspace_name="ws2", tasks=[edit]
            ),
        )
    )
    pr.spec.lifecycle = "Proposed"
    pr = other.update(pr)
    pr.spec.lifecycle = "Published"
    other.update(pr, endpoint=Endpoint.APPROVAL)
    other.store.close()

    w = harness.engine.watch(NS, resource_version=harness.engine.current_resource_version())
    harness.engine.sync_repository(NS, "blue")
    seen = {}
    for _ in range(3):
        ev = w.next(timeout=5)
        assert ev is not None
        seen[ev.object["metadata"]["name"]] = (ev.type, ev.object["metadata"].get("labels", {}))
    assert seen["blue.app.ws2"][0] == "ADDED"
    assert seen["blue.app.ws2"][1].get("kpt.dev/latest-revision") == "true"
    assert seen["blue.app.ws1"] == ("MODIFIED", {})
    assert seen["blue.app.main"][0] == "MODIFIED"
    assert w.next(timeout=0.05) is None
    w.close()
