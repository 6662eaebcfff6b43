"""PackageRevisionResources updates (§3.3) and watches (§8) over every backend."""

from __future__ import annotations

import threading

import pytest

from porch.api.types import PUSH_ON_RENDER_FAILURE
from porch.engine.render import RenderOutcome
from porch.errors import BadRequest, Expired, Invalid, RenderError, StaleResourceVersion
from tests.engine.conftest import NS, Harness

CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg # the config map
data:
  key: value
"""


def test_replace_resources_replaces_whole_set(harness: Harness) -> None:
    harness.register()
    pr = harness.create()
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    prr.spec.resources = {"Kptfile": prr.spec.resources["Kptfile"], "cm.yaml": CM}
    out = harness.engine.update_resources(prr)
    assert set(out.spec.resources) == {"Kptfile", "cm.yaml"}
    again = harness.engine.get_resources(NS, pr.metadata.name)
    assert again.spec.resources["cm.yaml"] == CM
    assert "README.md" not in again.spec.resources
    assert int(again.metadata.resource_version) > int(prr.metadata.resource_version)
    tasks = harness.engine.get(NS, pr.metadata.name).spec.tasks
    assert [t.type for t in tasks] == ["init"]  # the render commit does not replace the task


def test_replace_resources_rules(harness: Harness) -> None:
    harness.register()
    pr = harness.create()
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    good = dict(prr.spec.resources)
    prr.spec.resources = {"cm.yaml": CM}
    with pytest.raises(Invalid, match="package must contain Kptfile at root"):
        harness.engine.update_resources(prr)
    for bad in ("../escape.yaml", "/abs.yaml", "a/../../b", ".git/config", "a//b"):
        prr.spec.resources = {**good, bad: CM}
        with pytest.raises(BadRequest):
            harness.engine.update_resources(prr)
    prr.spec.resources = {**good, "broken.yaml": "a: [unclosed\n"}
    with pytest.raises(Invalid, match="failed to heal resources"):
        harness.engine.update_resources(prr)
    prr.spec.resources = good
    prr.metadata.resource_version = "1"
    with pytest.raises(StaleResourceVersion):
        harness.engine.update_resources(prr)
    harness.set_lifecycle(pr, "Proposed")
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    with pytest.raises(Invalid, match='lifecycle value "Proposed"; package must be Draft'):
        harness.engine.update_resources(prr)
    # nothing of the refused writes is visible
    assert harness.engine.get_resources(NS, pr.metadata.name).spec.resources == good


class FailingRenderer:
    def render(self, files: dict[str, str]) -> RenderOutcome:  # type: ignore[override]
        return RenderOutcome(dict(files), error="function failed: boom")


def test_render_failure_blocks_unless_push_on_failure(harness: Harness) -> None:
    harness.register()
    pr = harness.create()
    harness.engine.renderer = FailingRenderer()
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    before = dict(prr.spec.resources)
    prr.spec.resources = {**before, "cm.yaml": CM}
    with pytest.raises(RenderError, match="Package NOT pushed to remote") as err:
        harness.engine.update_resources(prr)
    assert not err.value.pushed
    assert harness.engine.get_resources(NS, pr.metadata.name).spec.resources == before
    current = harness.engine.get(NS, pr.metadata.name)
    current.metadata.annotations[PUSH_ON_RENDER_FAILURE] = "true"
    with pytest.raises(RenderError):  # Draft updates always re-render; no escape hatch there
        harness.engine.update(current)
    from porch.engine.render import NoFunctionRuntime

    harness.engine.renderer = NoFunctionRuntime(lambda files: False)
    harness.engine.update(current)
    harness.engine.renderer = FailingRenderer()
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    prr.spec.resources = {**before, "cm.yaml": CM}
    with pytest.raises(RenderError, match="pushed to remote despite render failure") as err:
        harness.engine.update_resources(prr)
    assert err.value.pushed
    assert "cm.yaml" in harness.engine.get_resources(NS, pr.metadata.name).spec.resources


def test_pipeline_without_runtime_is_refused(harness: Harness) -> None:
    harness.register()
    pr = harness.create()
    prr = harness.engine.get_resources(NS, pr.metadata.name)
    kptfile = prr.spec.resources["Kptfile"] + (
        "pipeline:\n  mutators:\n    - image: set-namespace:v0.4.1\n"
        "      configMap:\n        namespace: x\n"
    )
    prr.spec.resources = {**prr.spec.resources, "Kptfile": kptfile}
    with pytest.raises(RenderError, match="no KRM function runtime"):
        harness.engine.update_resources(prr)


def test_watch_initial_then_live(harness: Harness) -> None:
    harness.register()
    harness.create("a", "ws1")
    w = harness.engine.watch(NS)
    first = w.next(timeout=5)
    assert first is not None and first.type == "ADDED"
    assert first.object["metadata"]["name"] == "blue.a.ws1"
    pr = harness.create("b", "ws1")
    ev = w.next(timeout=5)
    assert ev is not None and (ev.type, ev.object["metadata"]["name"]) == ("ADDED", "blue.b.ws1")
    harness.set_lifecycle(pr, "Proposed")
    ev = w.next(timeout=5)
    assert ev is not None and ev.type == "MODIFIED"
    assert ev.object["spec"]["lifecycle"] == "Proposed"
    harness.engine.delete(NS, pr.metadata.name)
    ev = w.next(timeout=5)
    assert ev is not None and ev.type == "DELETED"
    assert w.next(timeout=0.05) is None  # nothing doubled
    w.close()


def test_watch_selectors_apply_to_live_events(harness: Harness) -> None:
    harness.register()
    w = harness.engine.watch(NS, field_selector="spec.packageName=b")
    harness.create("a", "ws1")
    harness.create("b", "ws1")
    ev = w.next(timeout=5)
    assert ev is not None and ev.object["spec"]["packageName"] == "b"
    assert w.next(timeout=0.05) is None
    w.close()


def test_watch_resume_and_expired(harness: Harness) -> None:
    harness.register()
    pr = harness.create("a", "ws1")
    rv = pr.metadata.resource_version
    harness.set_lifecycle(pr, "Proposed")
    harness.create("b", "ws1")
    w = harness.engine.watch(NS, resource_version=rv)
    seen = [w.next(timeout=5) for _ in range(2)]
    assert [(e.type, e.object["metadata"]["name"]) for e in seen if e] == [
        ("MODIFIED", "blue.a.ws1"),
        ("ADDED", "blue.b.ws1"),
    ]
    w.close()
    harness.engine.store.compact(keep=1)
    with pytest.raises(Expired):
        harness.engine.watch(NS, resource_version=rv)
    with pytest.raises(BadRequest):
        harness.engine.watch(NS, resource_version="abc")


def test_watch_order_equals_commit_order(harness: Harness) -> None:
    harness.register()
    w = harness.engine.watch(NS)
    threads = [threading.Thread(target=harness.create, args=(f"p{i}", "ws1")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rvs = []
    for _ in range(8):
        ev = w.next(timeout=5)
        assert ev is not None
        rvs.append(ev.resource_version)
    assert rvs == sorted(rvs)
    w.close()


def test_watch_notify_and_initial_count(harness: Harness) -> None:
    harness.register()
    harness.create("a", "ws1")
    w = harness.engine.watch(NS)
    assert w.initial_count == 1
    woken: list[int] = []
    w.set_notify(lambda: woken.append(1))
    assert woken  # something was already queued
    first = w.pending()
    assert first is not None and first.type == "ADDED"
    assert w.pending() is None
    woken.clear()
    harness.create("b", "ws1")
    assert woken
    ev = w.pending()
    assert ev is not None and ev.object["metadata"]["name"] == "blue.b.ws1"
    woken.clear()
    w.close()
    assert woken and w.pending() is None


def test_object_field_selectors_are_checked(harness: Harness) -> None:
    harness.register()
    with pytest.raises(BadRequest, match="unknown fieldSelector"):
        harness.engine.objects.list("Repository", NS, field_selector="spec.repository=x")
    items, _ = harness.engine.objects.list("Repository", NS, field_selector="metadata.name=blue")
    assert [i["metadata"]["name"] for i in items] == ["blue"]
