"""PorchClient against the real API server app, in-process."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageInitTaskSpec,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    Task,
)
from porch.client import (
    Conflict,
    Forbidden,
    Invalid,
    LifecycleVerbs,
    NotFound,
    Outcome,
    PorchClient,
)


def draft(package: str, repository: str = "demo", workspace: str = "v9") -> PackageRevision:
    return PackageRevision(
        metadata=ObjectMeta(),
        spec=PackageRevisionSpec(
            package_name=package,
            repository=repository,
            workspace_name=workspace,
            tasks=[Task(type="init", init=PackageInitTaskSpec(description="d"))],
        ),
    )


def test_list_with_field_and_label_selectors(client: PorchClient) -> None:
    names = [pr.metadata.name for pr in client.list_package_revisions()]
    assert names == [
        "demo.basens.main",
        "demo.basens.v1",
        "demo.hello-world.main",
        "demo.hello-world.v1",
    ]
    basens = client.list_package_revisions(fields={"spec.packageName": "basens"})
    assert {pr.metadata.name for pr in basens} == {"demo.basens.main", "demo.basens.v1"}
    latest = client.list_package_revisions(labels="kpt.dev/latest-revision=true")
    assert {pr.spec.revision for pr in latest} == {1}
    assert client.list_package_revisions(namespace="") == client.list_package_revisions()


def test_get_and_not_found(client: PorchClient) -> None:
    pr = client.get_package_revision("demo.basens.v1")
    assert (pr.spec.lifecycle, pr.spec.revision) == ("Published", 1)
    with pytest.raises(NotFound) as info:
        client.get_package_revision("demo.nosuch.v1")
    assert info.value.code == 404 and info.value.reason == "NotFound"
    assert '"demo.nosuch.v1" not found' in str(info.value)


def test_full_lifecycle_through_the_helpers(client: PorchClient) -> None:
    created = client.create_package_revision(draft("net"))
    assert created.metadata.name == "demo.net.v9"
    lc = LifecycleVerbs(client, sleep=lambda _s: None)
    assert lc.propose("demo.net.v9")[0] is Outcome.CHANGED
    assert lc.propose("demo.net.v9")[0] is Outcome.UNCHANGED
    outcome, pr = lc.approve("demo.net.v9")
    assert outcome is Outcome.CHANGED and pr.spec.revision == 1
    with pytest.raises(Forbidden):
        client.delete_package_revision("demo.net.v9")
    assert lc.propose_delete("demo.net.v9")[1].spec.lifecycle == "DeletionProposed"
    assert lc.reject("demo.net.v9")[1].spec.lifecycle == "Published"
    lc.propose_delete("demo.net.v9")
    client.delete_package_revision("demo.net.v9")
    with pytest.raises(NotFound):
        client.get_package_revision("demo.net.v9")


def test_update_patch_and_approval_endpoints(client: PorchClient) -> None:
    client.create_package_revision(draft("app"))
    patched = client.patch_package_revision("demo.app.v9", {"metadata": {"labels": {"a": "b"}}})
    assert patched.metadata.labels == {"a": "b"}
    assert [p.metadata.name for p in client.list_package_revisions(labels="a=b")] == ["demo.app.v9"]
    pr = client.get_package_revision("demo.app.v9")
    pr.spec.lifecycle = "Published"
    with pytest.raises(Invalid):
        client.update_approval(pr)  # a Draft cannot be approved
    pr.spec.lifecycle = "Proposed"
    proposed = client.update_package_revision(pr)
    pr.spec.lifecycle = "Draft"
    with pytest.raises(Conflict):
        client.update_package_revision(pr)  # stale resourceVersion
    proposed.spec.lifecycle = "Published"
    assert client.update_approval(proposed).spec.lifecycle == "Published"


def test_resources_get_update_and_conflict(client: PorchClient) -> None:
    client.create_package_revision(draft("app"))
    prr = client.get_resources("demo.app.v9")
    assert "Kptfile" in prr.spec.resources
    prr.spec.resources["cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    updated = client.update_resources(prr)
    assert updated.spec.resources["cm.yaml"] == prr.spec.resources["cm.yaml"]
    assert updated.metadata.resource_version != prr.metadata.resource_version
    with pytest.raises(Conflict):
        client.update_resources(prr)


def test_unsupported_task_is_invalid(client: PorchClient) -> None:
    pr = draft("copy-of-basens")
    pr.spec.tasks = [Task(type="clone")]
    with pytest.raises(Invalid) as info:
        client.create_package_revision(pr)
    assert info.value.code == 422


def test_repositories_and_secrets(client: PorchClient, tmp_path: Path) -> None:
    pygit2.init_repository(str(tmp_path / "blue.git"), bare=True, initial_head="main")
    repo = Repository(
        metadata=ObjectMeta(name="blue"),
        spec=RepositorySpec(type="git", git=GitRepositorySpec(repo=str(tmp_path / "blue.git"))),
    )
    secret = client.create_secret("blue-auth", {"username": "u", "password": "p"})
    assert secret["metadata"]["name"] == "blue-auth" and "stringData" not in secret
    created = client.create_repository(repo)
    assert created.metadata.namespace == "default"
    assert {r.metadata.name for r in client.list_repositories()} == {"blue", "demo"}
    got = client.get_repository("blue")
    got.spec.description = "changed"
    assert client.update_repository(got).spec.description == "changed"
    client.delete_repository("blue")
    client.delete_secret("blue-auth")
    with pytest.raises(NotFound):
        client.get_repository("blue")
    with pytest.raises(Conflict):
        client.create_repository(Repository(metadata=ObjectMeta(name="demo"), spec=repo.spec))
