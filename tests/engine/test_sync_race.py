"""A repository sync that runs while an API write is between its git change and its index commit.

The sync must neither index that write's git change itself (the write's own commit would then
fail and undo its git change, leaving a row without git behind) nor write a sync mark for it;
it starts over, waits for the write when it runs on another thread, and leaves the repository
to the next sync when the write does not finish in time (docs/sync.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from porch.api.names import compose_name
from porch.engine.engine import SYNC_MARK, _mark_body
from porch.errors import Conflict
from tests.engine.conftest import NS, Harness

REPO = "blue"


def _sync(harness: Harness, full: bool) -> Callable[[], None]:
    def run() -> None:
        harness.engine.sync_repository(NS, REPO, full=full)

    return run


def _git_view(harness: Harness) -> dict[str, tuple[str, str, int]]:
    engine = harness.engine
    adapter = engine.repositories.adapter(engine.repositories.get(NS, REPO))
    return {
        compose_name(REPO, i.package, i.workspace): (i.commit, str(i.lifecycle), i.revision)
        for i in adapter.list_revisions()
    }


def _index_view(harness: Harness) -> dict[str, tuple[str, str, int]]:
    return {
        r.name: (r.commit, r.lifecycle, r.revision)
        for r in harness.engine.store.list_revisions(NS, repository=REPO)
    }


def _assert_settled(harness: Harness) -> None:
    """Index and git agree, no write is counted in flight, and neither a digest-compare sync
    nor a full one changes anything (no new resourceVersion, no event)."""
    assert _index_view(harness) == _git_view(harness)
    assert not harness.engine._writes.busy(NS, REPO)
    before = harness.engine.current_resource_version()
    harness.engine.sync_repository(NS, REPO)
    assert harness.engine.current_resource_version() == before
    harness.engine.sync_repository(NS, REPO, full=True)
    assert harness.engine.current_resource_version() == before
    assert _index_view(harness) == _git_view(harness)


@pytest.mark.parametrize("full", [False, True], ids=["mark", "full"])
def test_sync_during_create(harness: Harness, full: bool) -> None:
    harness.register(REPO)
    harness.faults["create:after-write"] = _sync(harness, full)
    pr = harness.create("app", "ws1")
    assert pr.metadata.name in _index_view(harness)
    _assert_settled(harness)


@pytest.mark.parametrize("full", [False, True], ids=["mark", "full"])
def test_sync_during_delete(harness: Harness, full: bool) -> None:
    harness.register(REPO)
    pr = harness.create("app", "ws1")
    # A mark of the refs with the draft: deleting it moves them away from that mark, so the
    # digest-compare sync reconciles too.
    harness.engine.sync_repository(NS, REPO)
    harness.faults["delete:after-delete"] = _sync(harness, full)
    harness.engine.delete(NS, pr.metadata.name)
    assert pr.metadata.name not in _index_view(harness)
    assert pr.metadata.name not in _git_view(harness)
    _assert_settled(harness)


def _propose(harness: Harness, name: str) -> None:
    current = harness.engine.get(NS, name)
    current.spec.lifecycle = "Proposed"
    harness.engine.update(current)


def _approve(harness: Harness, name: str) -> None:
    from porch.api.lifecycle import Endpoint

    current = harness.engine.get(NS, name)
    current.spec.lifecycle = "Published"
    harness.engine.update(current, endpoint=Endpoint.APPROVAL)


def _propose_deletion(harness: Harness, name: str) -> None:
    current = harness.engine.get(NS, name)
    current.spec.lifecycle = "DeletionProposed"
    harness.engine.update(current)


def _edit_kptfile(harness: Harness, name: str) -> None:
    from porch.api.types import PackageMetadata

    current = harness.engine.get(NS, name)
    current.spec.package_metadata = PackageMetadata(labels={"tier": "web"})
    harness.engine.update(current)


def _replace_resources(harness: Harness, name: str) -> None:
    resources = harness.engine.get_resources(NS, name)
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    resources.spec.resources["extra.yaml"] = extra
    harness.engine.update_resources(resources)


# (step, the fault point inside it, the lifecycle the revision must have before it)
_STEPS: dict[str, tuple[Callable[[Harness, str], None], str, str]] = {
    "propose": (_propose, "update:after-write", "Draft"),
    "approve": (_approve, "approve:after-publish", "Proposed"),
    "propose-deletion": (_propose_deletion, "update:after-lifecycle", "Published"),
    "edit-kptfile": (_edit_kptfile, "update:after-write", "Draft"),
    "resources": (_replace_resources, "resources:after-write", "Draft"),
}


@pytest.mark.parametrize("full", [False, True], ids=["mark", "full"])
@pytest.mark.parametrize("step", sorted(_STEPS))
def test_sync_during_update(harness: Harness, step: str, full: bool) -> None:
    action, point, needs = _STEPS[step]
    harness.register(REPO)
    pr = harness.create("app", "ws1")
    if needs in ("Proposed", "Published"):
        _propose(harness, pr.metadata.name)
    if needs == "Published":
        _approve(harness, pr.metadata.name)
    harness.engine.sync_repository(NS, REPO)  # refs and mark agree before the step
    before = _index_view(harness)[pr.metadata.name]
    harness.faults[point] = _sync(harness, full)
    action(harness, pr.metadata.name)
    assert _index_view(harness)[pr.metadata.name] != before
    _assert_settled(harness)


def test_failed_write_after_a_sync_leaves_nothing_behind(harness: Harness) -> None:
    harness.register(REPO)

    def sync_then_fail() -> None:
        harness.engine.sync_repository(NS, REPO, full=True)
        raise Conflict("injected")

    harness.faults["create:after-write"] = sync_then_fail
    with pytest.raises(Conflict, match="injected"):
        harness.create("app", "ws1")
    assert _index_view(harness) == {}
    # The sync gave up on the write's git change and wrote no mark for it.
    mark = harness.engine.store.get_object(SYNC_MARK, NS, REPO)
    adapter = harness.engine.repositories.adapter(harness.engine.repositories.get(NS, REPO))
    assert mark is not None and mark.body == _mark_body(adapter.version())  # the undone refs
    _assert_settled(harness)
    harness.faults.clear()
    harness.create("app", "ws1")  # the name is free again
    _assert_settled(harness)


def _poll(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("point", ["create:after-write", "delete:after-delete"])
def test_sync_on_another_thread_waits_for_the_write(harness: Harness, point: str) -> None:
    harness.register(REPO)
    if point == "delete:after-delete":
        pr = harness.create("app", "ws1")
    harness.engine.write_wait = 60.0  # generous: the test releases the write itself
    paused, release = threading.Event(), threading.Event()

    def pause() -> None:
        paused.set()
        assert release.wait(60)

    harness.faults[point] = pause
    errors: list[BaseException] = []

    def guarded(action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        return run

    if point == "create:after-write":
        writer = threading.Thread(target=guarded(lambda: harness.create("app", "ws1")))
    else:
        writer = threading.Thread(
            target=guarded(lambda: harness.engine.delete(NS, pr.metadata.name))
        )
    writer.start()
    assert paused.wait(60)
    assert harness.engine._writes.busy(NS, REPO)
    syncer = threading.Thread(
        target=guarded(lambda: harness.engine.sync_repository(NS, REPO, full=True))
    )
    syncer.start()
    # The sync found the write's git change, did not commit it and now waits for the write.
    _poll(lambda: harness.engine._writes.waiting(NS, REPO) == 1)
    release.set()
    writer.join(60)
    syncer.join(60)
    assert not writer.is_alive() and not syncer.is_alive()
    assert errors == []
    # The waiting sync finished after the write: its mark is of the refs as the write left them.
    adapter = harness.engine.repositories.adapter(harness.engine.repositories.get(NS, REPO))
    mark = harness.engine.store.get_object(SYNC_MARK, NS, REPO)
    assert mark is not None and mark.body == _mark_body(adapter.version())
    _assert_settled(harness)


def test_write_counter_is_released_when_a_write_fails(harness: Harness) -> None:
    harness.register(REPO)

    def boom() -> None:
        raise RuntimeError("boom")

    harness.faults["create:after-write"] = boom
    with pytest.raises(RuntimeError):
        harness.create("app", "ws1")
    assert not harness.engine._writes.busy(NS, REPO)
    harness.faults.clear()
    pr = harness.create("app", "ws1")
    harness.faults["delete:after-delete"] = boom
    with pytest.raises(RuntimeError):
        harness.engine.delete(NS, pr.metadata.name)
    assert not harness.engine._writes.busy(NS, REPO)
    _assert_settled(harness)


def test_index_matches_is_false_after_a_sync_gave_up(harness: Harness) -> None:
    """The syncer keeps the refs' version for its next ref check only when the index holds
    them; a sync that gave up to a write in flight must be retried at the next check."""
    harness.register(REPO)
    engine = harness.engine
    adapter = engine.repositories.adapter(engine.repositories.get(NS, REPO))
    engine.sync_repository(NS, REPO, full=True)
    assert engine.index_matches(NS, REPO, adapter.version())
    seen: list[bool] = []

    def sync_inside_the_write() -> None:
        engine.sync_repository(NS, REPO, full=True)  # gives up: this thread's write is in flight
        seen.append(engine.index_matches(NS, REPO, adapter.version()))

    harness.faults["create:after-write"] = sync_inside_the_write
    harness.create("app", "ws1")
    assert seen == [False]
