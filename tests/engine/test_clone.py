"""clone from a registered upstream revision (spec §4.2, §3.1 g–h)."""

from __future__ import annotations

import pytest
import yaml

from porch.api.types import (
    GitPackage,
    ObjectMeta,
    PackageCloneTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Task,
    UpstreamPackage,
)
from porch.errors import AlreadyExists, Forbidden, Invalid, NotFound
from tests.engine.conftest import NS, Harness


def clone_of(name: str) -> Task:
    return Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(name))
        ),
    )


def test_clone_records_upstream_and_lock(harness: Harness) -> None:
    harness.register("blue")
    harness.register("red", deployment=True)
    up = harness.publish("base", "ws1", repo="blue")
    pr = harness.create("edge/site-a", "ws1", repo="red", tasks=[clone_of(up.metadata.name)])
    assert [t.type for t in pr.spec.tasks] == ["clone"]
    files = harness.engine.get_resources(NS, pr.metadata.name).spec.resources
    kptfile = yaml.safe_load(files["Kptfile"])
    url = harness.engine.repositories.get(NS, "blue").spec.git.repo  # type: ignore[union-attr]
    expected_repo = url if url.endswith(".git") else url + ".git"
    assert kptfile["metadata"]["name"] == "site-a"
    assert kptfile["upstream"] == {
        "type": "git",
        "git": {"repo": expected_repo, "directory": "base", "ref": "base/v1"},
    }
    up_commit = up.status.self_lock.git.commit  # type: ignore[union-attr]
    assert kptfile["upstreamLock"]["git"] == {
        "repo": expected_repo,
        "directory": "base",
        "ref": "base/v1",
        "commit": up_commit,
    }
    assert pr.status.upstream_lock is not None and pr.status.upstream_lock.git is not None
    assert pr.status.upstream_lock.git.ref == "base/v1"
    # a deployment repository gets a package context naming the package and its path
    context = yaml.safe_load(files["package-context.yaml"])
    assert context["data"] == {"name": "site-a", "package-path": "edge/site-a"}
    # the upstream is now referenced: it cannot be deleted while the clone exists
    harness.set_lifecycle(up, "DeletionProposed")
    with pytest.raises(Forbidden, match="referenced as upstream by: red.edge.site-a.ws1"):
        harness.engine.delete(NS, up.metadata.name)


def test_clone_rules(harness: Harness) -> None:
    harness.register("blue")
    up = harness.publish("base", "ws1")
    with pytest.raises(NotFound, match='cannot find package revision "blue.nope.ws1"'):
        harness.create("copy1", "ws1", tasks=[clone_of("blue.nope.ws1")])
    with pytest.raises(Invalid, match="may not be the placeholder package revision"):
        harness.create("copy1", "ws1", tasks=[clone_of("blue.base.main")])
    harness.create("copy1", "ws1", tasks=[clone_of(up.metadata.name)])
    with pytest.raises(AlreadyExists, match="`clone` cannot create a new revision"):
        harness.create("copy1", "ws2", tasks=[clone_of(up.metadata.name)])
    with pytest.raises(Invalid, match="neither of git, oci, nor upstream"):
        harness.create("copy2", "ws1", tasks=[Task(type="clone", clone=PackageCloneTaskSpec())])
    git_source = Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(git=GitPackage(repo="https://example.invalid/x"))
        ),
    )
    with pytest.raises(Invalid, match="git URL is not supported"):
        harness.create("copy2", "ws1", tasks=[git_source])
    assert harness.engine.list(NS, field_selector="spec.packageName=copy2")[0] == []


def test_clone_survives_restart(harness: Harness) -> None:
    harness.register("blue")
    up = harness.publish("base", "ws1")
    harness.create("copy1", "ws1", tasks=[clone_of(up.metadata.name)])
    harness.restart()
    pr = harness.engine.get(NS, "blue.copy1.ws1")
    assert [t.type for t in pr.spec.tasks] == ["clone"]
    clone = pr.spec.tasks[0].clone
    assert clone and clone.upstream_ref and clone.upstream_ref.upstream_ref
    assert clone.upstream_ref.upstream_ref.name == "blue.base.ws1"
    assert pr.status.upstream_lock is not None


def test_upstream_from_another_namespace_is_not_found(harness: Harness) -> None:
    harness.register("blue")
    up = harness.publish("base", "ws1")
    elsewhere = harness.engine.repositories.get(NS, "blue")
    other = type(elsewhere)(
        metadata=type(elsewhere.metadata)(name="green", namespace="other"),
        spec=elsewhere.spec,
    )
    harness.engine.register_repository(other)
    before = len(harness.engine.list("other")[0])
    pr = PackageRevision(
        metadata=ObjectMeta(namespace="other"),
        spec=PackageRevisionSpec(
            package_name="copy1",
            repository="green",
            workspace_name="ws1",
            tasks=[clone_of(up.metadata.name)],
        ),
    )
    with pytest.raises(NotFound, match=f'cannot find package revision "{up.metadata.name}"'):
        harness.engine.create(pr)
    assert len(harness.engine.list("other")[0]) == before  # nothing created
