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
