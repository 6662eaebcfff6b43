"""The official kubernetes Python client (DynamicClient) drives the whole lifecycle."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

from tests.apiserver.conftest import LiveServer


@pytest.fixture
def dc(live: LiveServer, tmp_path: Path) -> DynamicClient:
    config = k8s.Configuration(host=live.url)
    # A fresh discovery cache per test: the default one is keyed by host and outlives servers.
    return DynamicClient(  # type: ignore[no-untyped-call]
        k8s.ApiClient(config), cache_file=str(tmp_path / "discovery.json")
    )


def test_lifecycle_and_watch(dc: DynamicClient) -> None:
    prs = dc.resources.get(api_version="porch.kpt.dev/v1alpha1", kind="PackageRevision")
    start_rv = prs.get(namespace="default").metadata.resourceVersion
    body = {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"namespace": "default"},
        "spec": {"packageName": "py", "repository": "demo", "workspaceName": "v1"},
    }
    created = prs.create(body=body, namespace="default")
    name = created.metadata.name
    assert name == "demo.py.v1"
    assert [i.metadata.name for i in prs.get(namespace="default").items].count(name) == 1

    stale = created.to_dict()
    proposed = copy.deepcopy(stale)
    proposed["spec"]["lifecycle"] = "Proposed"
    prs.replace(body=proposed, namespace="default")
    with pytest.raises(ConflictError):
        prs.replace(body=stale, namespace="default")

    prs.patch(
        body=[{"op": "add", "path": "/metadata/labels", "value": {"via": "json-patch"}}],
        name=name,
        namespace="default",
        content_type="application/json-patch+json",
    )
    current = prs.get(name=name, namespace="default").to_dict()
    current["spec"]["lifecycle"] = "Published"
    approved = dc.request(
        "put",
        f"/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions/{name}/approval",
        body=current,
    )
    assert approved.spec.lifecycle == "Published"
    assert approved.spec.revision == 1

    prs.patch(
        body={"spec": {"lifecycle": "DeletionProposed"}},
        name=name,
        namespace="default",
        content_type="application/merge-patch+json",
    )
    deleted = prs.delete(name=name, namespace="default")
    assert deleted.metadata.name == name
    with pytest.raises(NotFoundError):
        prs.get(name=name, namespace="default")

    seen = []
    events = dc.watch(  # type: ignore[no-untyped-call]
        prs, namespace="default", resource_version=start_rv, timeout=2
    )
    for event in events:
        if event["object"].metadata.name == name:
            seen.append((event["type"], event["object"].spec.lifecycle))
    assert seen[0] == ("ADDED", "Draft")
    assert ("MODIFIED", "Proposed") in seen
    assert ("MODIFIED", "Published") in seen
    assert seen[-1][0] == "DELETED"


def test_server_side_apply_and_approval_subresource(dc: DynamicClient) -> None:
    prs = dc.resources.get(api_version="porch.kpt.dev/v1alpha1", kind="PackageRevision")
    assert "approval" in prs.subresources
    applied = prs.server_side_apply(
        body={
            "apiVersion": "porch.kpt.dev/v1alpha1",
            "kind": "PackageRevision",
            "metadata": {"name": "demo.ssa.v1", "namespace": "default"},
            "spec": {"packageName": "ssa", "repository": "demo", "workspaceName": "v1"},
        },
        name="demo.ssa.v1",
        namespace="default",
        field_manager="test",
    )
    assert applied.spec.lifecycle == "Draft"
    repos = dc.resources.get(api_version="config.porch.kpt.dev/v1alpha1", kind="Repository")
    demo = repos.get(name="demo", namespace="default")
    ready = [c for c in demo.status.conditions if c.type == "Ready"]
    assert ready[0].status == "True"
    secrets = dc.resources.get(api_version="v1", kind="Secret")
    secrets.create(body={"metadata": {"name": "s"}, "stringData": {"k": "v"}}, namespace="default")
    assert secrets.get(name="s", namespace="default").data.k == "dg=="
