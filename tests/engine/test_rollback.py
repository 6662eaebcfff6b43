"""Rollback: a failure at any step leaves no ref, commit on the branch, or store row behind."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from porch.api.types import PackageRevision
from tests.engine.conftest import NS, Harness


class Injected(RuntimeError):
    pass


def snapshot(h: Harness) -> tuple[object, ...]:
    if h.backend.kind == "git":
        refs = h.backend.git("blue", "for-each-ref", "--format=%(refname) %(objectname)")
    else:
        refs = h.backend.adapters["blue"].version()
    rows = [
        (r.name, r.lifecycle, r.revision, r.commit, r.resource_version, r.meta)
        for r in h.engine.store.list_revisions(NS)
    ]
    return refs, rows, h.engine.store.current_resource_version()


def _prepare(h: Harness) -> dict[str, PackageRevision]:
    h.register()
    return {
        "draft": h.create("draft", "ws1"),
        "proposed": h.set_lifecycle(h.create("prop", "ws1"), "Proposed"),
        "published": h.publish("pub", "ws1"),
        "doomed": h.set_lifecycle(h.publish("gone", "ws1"), "DeletionProposed"),
    }


def _op_create(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.create("fresh", "ws1")


def _op_propose(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.set_lifecycle(o["draft"], "Proposed")


def _op_draft_update(h: Harness, o: dict[str, PackageRevision]) -> None:
    cur = h.engine.get(NS, o["draft"].metadata.name)
    cur.metadata.labels["x"] = "y"
    h.engine.update(cur)


def _op_approve(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.set_lifecycle(o["proposed"], "Published", approval=True)


def _op_reject(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.set_lifecycle(o["proposed"], "Draft", approval=True)


def _op_propose_delete(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.set_lifecycle(o["published"], "DeletionProposed")


def _op_resources(h: Harness, o: dict[str, PackageRevision]) -> None:
    prr = h.engine.get_resources(NS, o["draft"].metadata.name)
    prr.spec.resources = {"Kptfile": prr.spec.resources["Kptfile"], "a.txt": "hello\n"}
    h.engine.update_resources(prr)


def _op_delete_draft(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.engine.delete(NS, o["draft"].metadata.name)


def _op_delete_published(h: Harness, o: dict[str, PackageRevision]) -> None:
    h.engine.delete(NS, o["doomed"].metadata.name)


OPS: dict[str, tuple[Callable[[Harness, dict[str, PackageRevision]], None], list[str]]] = {
    "create": (_op_create, ["create:before-write", "create:after-write", "commit"]),
    "propose": (_op_propose, ["update:after-write", "commit"]),
    "draft-update": (_op_draft_update, ["update:after-write", "commit"]),
    "approve": (_op_approve, ["approve:after-publish", "commit"]),
    "reject": (_op_reject, ["update:after-lifecycle", "commit"]),
    "propose-delete": (_op_propose_delete, ["update:after-lifecycle", "commit"]),
    "resources": (_op_resources, ["resources:after-write", "commit"]),
    "delete-draft": (_op_delete_draft, ["delete:after-delete", "commit"]),
    "delete-published": (_op_delete_published, ["delete:after-delete", "commit"]),
}
CASES = [(op, point) for op, (_fn, points) in OPS.items() for point in points]


@pytest.mark.parametrize(("op", "point"), CASES, ids=[f"{o}@{p}" for o, p in CASES])
def test_fault_leaves_nothing_behind(harness: Harness, op: str, point: str) -> None:
    objs = _prepare(harness)
    before = snapshot(harness)
    fired: list[str] = []

    def boom() -> None:
        fired.append(point)
        raise Injected(point)

    harness.faults[point] = boom
    fn = OPS[op][0]
    with pytest.raises(Injected):
        fn(harness, objs)
    assert fired == [point]
    assert snapshot(harness) == before
    # and the same operation succeeds once the fault is gone
    harness.faults.clear()
    fn(harness, objs)
    assert snapshot(harness) != before
