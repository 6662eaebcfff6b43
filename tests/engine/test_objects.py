"""Stored kinds beside package revisions: Repository hooks, Secrets, generic object rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from porch.errors import AlreadyExists, BadRequest, Invalid, NotFound, StaleResourceVersion
from tests.engine.conftest import NS, Harness


def _repo_body(name: str, url: str, **git: object) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "git",
            "git": {"repo": url, "branch": "main", "createBranch": True, **git},
        },
    }


def _ready(obj: dict[str, object]) -> dict[str, str]:
    status = obj["status"]
    assert isinstance(status, dict)
    (cond,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return cond  # type: ignore[no-any-return]


def test_repository_create_opens_and_indexes(harness: Harness) -> None:
    objs = harness.engine.objects
    created = objs.create("Repository", _repo_body("blue", harness.backend.repo_url("blue")))
    assert _ready(created)["status"] == "True"
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"]
    harness.publish("app", "ws1")
    with pytest.raises(AlreadyExists, match='repositories.config.porch.kpt.dev "blue" already'):
        objs.create("Repository", _repo_body("blue", harness.backend.repo_url("blue")))
    listed, _rv = objs.list("Repository", NS)
    assert [o["metadata"]["name"] for o in listed] == ["blue"]


def test_repository_immutable_fields(harness: Harness) -> None:
    objs = harness.engine.objects
    created = objs.create("Repository", _repo_body("blue", harness.backend.repo_url("blue")))
    changed = {
        **created,
        "spec": {**created["spec"], "git": {**created["spec"]["git"], "branch": "x"}},
    }
    with pytest.raises(Invalid, match="spec.git.branch is immutable"):
        objs.update("Repository", changed)
    described = {**created, "spec": {**created["spec"], "description": "hello"}}
    updated = objs.update("Repository", described)
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(StaleResourceVersion):
        objs.update("Repository", described)


def test_unreachable_repository_is_not_ready(harness: Harness, tmp_path: Path) -> None:
    if harness.backend.kind != "git":
        return
    body = _repo_body("gone", "http://127.0.0.1:9/nothing.git", createBranch=False)
    created = harness.engine.objects.create("Repository", body)
    cond = _ready(created)
    assert cond["status"] == "False" and cond["reason"] == "Error" and cond["message"]


def test_repository_delete_removes_revisions(harness: Harness) -> None:
    harness.register()
    harness.publish("app", "ws1")
    w = harness.engine.watch(NS)
    initial = {w.next(timeout=5).object["metadata"]["name"] for _ in range(2)}  # type: ignore[union-attr]
    assert initial == {"blue.app.ws1", "blue.app.main"}
    harness.engine.objects.delete("Repository", NS, "blue")
    gone = [w.next(timeout=5) for _ in range(2)]
    assert {(e.type, e.object["metadata"]["name"]) for e in gone if e} == {
        ("DELETED", "blue.app.ws1"),
        ("DELETED", "blue.app.main"),
    }
    assert harness.engine.list(NS)[0] == []
    with pytest.raises(NotFound):
        harness.engine.objects.get("Repository", NS, "blue")
    w.close()


def test_secret_finalizers_and_status_subresource(harness: Harness) -> None:
    objs = harness.engine.objects
    secret = objs.create(
        "Secret",
        {
            "metadata": {"name": "creds", "namespace": NS, "finalizers": ["x/y"]},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "dQ==", "password": "cA=="},
        },
    )
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    held = objs.delete("Secret", NS, "creds")
    assert held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = []
    objs.update("Secret", held)
    with pytest.raises(NotFound, match='secrets "creds" not found'):
        objs.get("Secret", NS, "creds")
    pv = objs.create(
        "PackageVariant",
        {"metadata": {"name": "pv", "namespace": NS}, "spec": {"upstream": {"repo": "a"}}},
    )
    pv["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    pv["spec"] = {"upstream": {"repo": "changed"}}
    after = objs.update("PackageVariant", pv, subresource="status")
    assert after["status"]["conditions"][0]["status"] == "True"
    assert after["spec"] == {"upstream": {"repo": "a"}}  # status writes never touch the spec
    assert after["metadata"]["generation"] == 1


def test_object_watch_sees_only_its_kind(harness: Harness) -> None:
    objs = harness.engine.objects
    w = objs.watch("Secret", NS)
    harness.register()
    harness.create()
    objs.create("Secret", {"metadata": {"name": "s", "namespace": NS}, "data": {}})
    ev = w.next(timeout=5)
    assert ev is not None and ev.type == "ADDED" and ev.object["kind"] == "Secret"
    assert w.next(timeout=0.05) is None
    w.close()


def test_object_validation(harness: Harness) -> None:
    objs = harness.engine.objects
    with pytest.raises(BadRequest, match="namespace must be specified"):
        objs.create("Secret", {"metadata": {"name": "s"}})
    with pytest.raises(Invalid):
        objs.create("Repository", _repo_body("Bad_Name", "x"))
    with pytest.raises(Invalid, match="spec.git.repo"):
        objs.create(
            "Repository", {"metadata": {"name": "r", "namespace": NS}, "spec": {"type": "git"}}
        )
    with pytest.raises(NotFound):
        objs.get("Nope", NS, "x")


def test_deployment_flag_change_reaches_every_revision(harness: Harness) -> None:
    repo = harness.register()
    harness.publish("app", "ws1")
    before, _ = harness.engine.list_bodies(NS)
    assert all(not b["status"].get("deployment") for b in before)
    body = harness.engine.objects.get("Repository", NS, repo.metadata.name)
    body["spec"]["deployment"] = True
    harness.engine.objects.update("Repository", body)
    after, _ = harness.engine.list_bodies(NS)
    assert [b["status"].get("deployment") for b in after] == [True] * len(before)
    assert after == [p.to_dict() for p in harness.engine.list(NS)[0]]


def test_racing_object_updates_have_one_winner(harness: Harness) -> None:
    """The resourceVersion check runs inside the write transaction (holds across replicas)."""
    import threading

    objects = harness.engine.objects
    secret = objects.create(
        "Secret",
        {"metadata": {"name": "s", "namespace": NS}, "type": "Opaque", "data": {"k": "MQ=="}},
    )
    rv = secret["metadata"]["resourceVersion"]
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def update(i: int) -> None:
        body = {
            "metadata": {"name": "s", "namespace": NS, "resourceVersion": rv},
            "type": "Opaque",
            "data": {"k": f"{i}".encode().hex()},
        }
        barrier.wait()
        try:
            objects.update("Secret", body)
            outcomes.append("ok")
        except StaleResourceVersion:
            outcomes.append("409")

    threads = [threading.Thread(target=update, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409"] * 15 + ["ok"]
