"""An OCI repository registered through the API, then create → propose → approve → delete.

Runs the real server code path (``build_engine`` → ``make_opener``) in-process over the HTTP
API (httpx on the ASGI app) against a real registry (docker-registry). Skips without the binary
unless PORCH_REQUIRE_OCI=1. The same lifecycle through real kubectl, plus registry outages, is
in ``test_oci_kubectl.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from porch.testing.oci_registry import OciRegistry
from tests._oci import registry_or_skip
from tests.apiserver.conftest import PR_PATH, PRR_PATH, REPO_PATH, Client, draft


@pytest.fixture(scope="module")
def registry() -> Iterator[OciRegistry]:
    with registry_or_skip() as reg:
        yield reg


def register(client: Client, registry: OciRegistry, prefix: str) -> None:
    body = {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "images", "namespace": "default"},
        "spec": {"type": "oci", "oci": {"registry": registry.registry(prefix)}},
    }
    r = client.post(REPO_PATH, json=body)
    assert r.status_code == 201, r.text


def test_lifecycle_over_oci(client: Client, registry: OciRegistry) -> None:
    register(client, registry, "served")
    body = draft("app", "ws1")
    body["spec"]["repository"] = "images"
    created = client.post(PR_PATH, json=body)
    assert created.status_code == 201, created.text
    obj = created.json()
    name = obj["metadata"]["name"]
    assert name == "images.app.ws1"
    resources = client.get(f"{PRR_PATH}/{name}").json()["spec"]["resources"]
    assert "Kptfile" in resources

    obj["spec"]["lifecycle"] = "Proposed"
    proposed = client.put(f"{PR_PATH}/{name}", json=obj)
    assert proposed.status_code == 200, proposed.text
    obj = proposed.json()
    obj["spec"]["lifecycle"] = "Published"
    approved = client.put(f"{PR_PATH}/{name}/approval", json=obj)
    assert approved.status_code == 200, approved.text
    assert approved.json()["spec"]["revision"] == 1
    assert approved.json()["metadata"]["labels"].get("kpt.dev/latest-revision") == "true"

    listed = client.get(PR_PATH).json()["items"]
    ours = {
        (i["metadata"]["name"], i["spec"]["lifecycle"], i["spec"].get("revision", 0))
        for i in listed
        if i["spec"]["repository"] == "images"
    }
    assert ours == {("images.app.ws1", "Published", 1), ("images.app.main", "Published", -1)}

    # What the server wrote is in the registry, where any OCI client can see it.
    tags = httpx.get(f"{registry.url}/v2/served/app/tags/list").json()["tags"]
    assert sorted(tags) == ["main", "v1"]

    r = client.patch(
        f"{PR_PATH}/{name}/approval",
        json={"spec": {"lifecycle": "DeletionProposed"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert client.delete(f"{PR_PATH}/{name}").status_code == 200
    tags = httpx.get(f"{registry.url}/v2/served/app/tags/list").json()["tags"]
    assert tags == ["main"]
