"""upgrade: a downstream package moves to a new upstream revision (spec §4.4, §3.1i)."""

from __future__ import annotations

import json

import pytest
import yaml

from porch.api.types import (
    PackageCloneTaskSpec,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageUpgradeTaskSpec,
    Task,
    UpstreamPackage,
)
from porch.errors import Invalid, NotFound
from tests.engine.conftest import NS, Harness

CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: "3"
"""


def clone_of(name: str) -> Task:
    return Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(name))
        ),
    )


def upgrade_of(old: str, new: str, local: str, strategy: str = "") -> Task:
    return Task(
        type="upgrade",
        upgrade=PackageUpgradeTaskSpec(
            old_upstream_ref=PackageRevisionRef(old),
            new_upstream_ref=PackageRevisionRef(new),
            local_package_revision_ref=PackageRevisionRef(local),
            strategy=strategy,
        ),
    )


def _set_file(h: Harness, pr: PackageRevision, path: str, text: str) -> None:
    prr = h.engine.get_resources(NS, pr.metadata.name)
    prr.spec.resources = {**prr.spec.resources, path: text}
    h.engine.update_resources(prr)


def _publish(h: Harness, pr: PackageRevision) -> PackageRevision:
    h.set_lifecycle(pr, "Proposed")
    return h.set_lifecycle(pr, "Published", approval=True)


def _setup(h: Harness, local_cm: str) -> tuple[PackageRevision, PackageRevision, PackageRevision]:
    h.register("blue")
    h.register("red")
    base1 = h.create("base", "v1", repo="blue")
    _set_file(h, base1, "cm.yaml", CM)
    base1 = _publish(h, base1)
    base2 = h.create(
        "base",
        "v2",
        repo="blue",
        tasks=[
            Task(
                type="edit",
                edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(base1.metadata.name)),
            )
        ],
    )
    _set_file(h, base2, "cm.yaml", CM.replace("color: blue", "color: green"))
    base2 = _publish(h, base2)
    app = h.create("app", "v1", repo="red", tasks=[clone_of(base1.metadata.name)])
    files = h.engine.get_resources(NS, app.metadata.name).spec.resources
    assert "# kpt-merge: /settings" in files["cm.yaml"]  # clone adds merge keys, as kpt does
    edited = files["cm.yaml"]
    for old, new in local_cm_edits(local_cm):
        edited = edited.replace(old, new)
    _set_file(h, app, "cm.yaml", edited)
    app = _publish(h, app)
    return base1, base2, app


def local_cm_edits(kind: str) -> list[tuple[str, str]]:
    if kind == "size":
        return [('size: "3"', 'size: "5"')]
    return [("color: blue", "color: red")]


def test_resource_merge_keeps_local_edits_and_moves_the_lock(harness: Harness) -> None:
    base1, base2, app = _setup(harness, "size")
    pr = harness.create(
        "app",
        "v2",
        repo="red",
        tasks=[upgrade_of(base1.metadata.name, base2.metadata.name, app.metadata.name)],
    )
    assert [t.type for t in pr.spec.tasks] == ["upgrade"]
    files = harness.engine.get_resources(NS, pr.metadata.name).spec.resources
    data = yaml.safe_load(files["cm.yaml"])["data"]
    assert data == {"color": "green", "size": "5"}  # upstream change + local change
    kptfile = yaml.safe_load(files["Kptfile"])
    assert kptfile["metadata"]["name"] == "app"
    assert kptfile["upstream"]["git"]["ref"] == "base/v2"
    assert kptfile["upstreamLock"]["git"]["commit"] == base2.status.self_lock.git.commit  # type: ignore[union-attr]
    assert pr.status.upstream_lock is not None and pr.status.upstream_lock.git is not None
    assert pr.status.upstream_lock.git.ref == "base/v2"
    assert not [c for c in pr.status.conditions if c.type == "MergeConflicts"]


def test_conflicting_edits_are_recorded(harness: Harness) -> None:
    base1, base2, app = _setup(harness, "color")
    pr = harness.create(
        "app",
        "v2",
        repo="red",
        tasks=[upgrade_of(base1.metadata.name, base2.metadata.name, app.metadata.name)],
    )
    files = harness.engine.get_resources(NS, pr.metadata.name).spec.resources
    assert yaml.safe_load(files["cm.yaml"])["data"]["color"] == "green"  # kpt: upstream wins
    [condition] = [c for c in pr.status.conditions if c.type == "MergeConflicts"]
    assert condition.status == "True"
    [entry] = json.loads(condition.message)
    assert entry["file"] == "cm.yaml"
    assert entry["resource"] == "ConfigMap/settings"
    assert entry["field"] == "data.color"
    assert (entry["local"], entry["upstream"], entry["chosen"]) == ("red", "green", "upstream")


@pytest.mark.parametrize("strategy", ["force-delete-replace", "copy-merge"])
def test_replacing_strategies(harness: Harness, strategy: str) -> None:
    base1, base2, app = _setup(harness, "size")
    pr = harness.create(
        "app",
        "v2",
        repo="red",
        tasks=[upgrade_of(base1.metadata.name, base2.metadata.name, app.metadata.name, strategy)],
    )
    files = harness.engine.get_resources(NS, pr.metadata.name).spec.resources
    assert yaml.safe_load(files["cm.yaml"])["data"] == {"color": "green", "size": "3"}
    assert yaml.safe_load(files["Kptfile"])["upstream"]["git"]["ref"] == "base/v2"


def test_fast_forward_refuses_local_changes(harness: Harness) -> None:
    base1, base2, app = _setup(harness, "size")
    before = len(harness.engine.list(NS)[0])
    with pytest.raises(Invalid, match="fast-forward"):
        harness.create(
            "app",
            "v2",
            repo="red",
            tasks=[
                upgrade_of(
                    base1.metadata.name, base2.metadata.name, app.metadata.name, "fast-forward"
                )
            ],
        )
    assert len(harness.engine.list(NS)[0]) == before  # nothing created


def test_upgrade_rules(harness: Harness) -> None:
    base1, base2, app = _setup(harness, "size")
    with pytest.raises(NotFound, match='cannot find package revision "blue.nope.x"'):
        harness.create(
            "app",
            "v2",
            repo="red",
            tasks=[upgrade_of(base1.metadata.name, "blue.nope.x", app.metadata.name)],
        )
    with pytest.raises(Invalid, match="target upstream revision may not be the placeholder"):
        harness.create(
            "app",
            "v2",
            repo="red",
            tasks=[upgrade_of(base1.metadata.name, "blue.base.main", app.metadata.name)],
        )
    draft = harness.create(
        "app",
        "d1",
        repo="red",
        tasks=[
            Task(
                type="edit",
                edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(app.metadata.name)),
            )
        ],
    )
    with pytest.raises(
        Invalid, match="all source PackageRevisions of upgrade task must be published"
    ):
        harness.create(
            "app",
            "v2",
            repo="red",
            tasks=[upgrade_of(base1.metadata.name, base2.metadata.name, draft.metadata.name)],
        )
    with pytest.raises(Invalid, match="unrecognized update strategy"):
        harness.create(
            "app",
            "v2",
            repo="red",
            tasks=[
                upgrade_of(base1.metadata.name, base2.metadata.name, app.metadata.name, "sideways")
            ],
        )


def test_upgrade_survives_restart(harness: Harness) -> None:
    base1, base2, app = _setup(harness, "size")
    pr = harness.create(
        "app",
        "v2",
        repo="red",
        tasks=[upgrade_of(base1.metadata.name, base2.metadata.name, app.metadata.name)],
    )
    harness.restart()
    again = harness.engine.get(NS, pr.metadata.name)
    assert [t.type for t in again.spec.tasks] == ["upgrade"]
    spec = again.spec.tasks[0].upgrade
    assert spec is not None and spec.new_upstream_ref is not None
    assert spec.new_upstream_ref.name == base2.metadata.name
    assert again.status.upstream_lock is not None and again.status.upstream_lock.git is not None
    assert again.status.upstream_lock.git.ref == "base/v2"
