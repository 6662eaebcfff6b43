"""Discovery, OpenAPI, health and metrics endpoints."""

from __future__ import annotations

from tests.apiserver.conftest import Client

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_version_reports_minor_32(client: Client) -> None:
    body = client.get("/version").json()
    assert (body["major"], body["minor"]) == ("1", "32")
    assert body["gitVersion"].startswith("v1.32.")


def test_core_api_lists_v1_and_secrets(client: Client) -> None:
    assert client.get("/api").json()["versions"] == ["v1"]
    resources = client.get("/api/v1").json()
    assert resources["kind"] == "APIResourceList"
    assert [r["name"] for r in resources["resources"]] == ["secrets"]


def test_group_list_and_group_versions(client: Client) -> None:
    groups = {g["name"]: g for g in client.get("/apis").json()["groups"]}
    assert set(groups) == {"porch.kpt.dev", "config.porch.kpt.dev"}
    config = [v["version"] for v in groups["config.porch.kpt.dev"]["versions"]]
    assert config == ["v1alpha1", "v1alpha2"]
    assert client.get("/apis/porch.kpt.dev").json()["kind"] == "APIGroup"
    porch = client.get("/apis/porch.kpt.dev/v1alpha1").json()
    by_name = {r["name"]: r for r in porch["resources"]}
    assert by_name["packagerevisions"]["verbs"] == [
        "create",
        "delete",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    assert by_name["packagerevisions/approval"]["verbs"] == ["get", "patch", "update"]
    assert by_name["packages"]["verbs"] == ["get", "list"]
    assert by_name["packages"]["kind"] == "PorchPackage"
    config_v1 = client.get("/apis/config.porch.kpt.dev/v1alpha1").json()
    repo = next(r for r in config_v1["resources"] if r["name"] == "repositories")
    assert repo["shortNames"] == ["repo"]
    v2 = client.get("/apis/config.porch.kpt.dev/v1alpha2").json()
    assert [r["name"] for r in v2["resources"]][0] == "packagevariantsets"


def test_aggregated_discovery_when_asked(client: Client) -> None:
    r = client.get("/apis", headers={"accept": AGGREGATED})
    assert r.headers["content-type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    body = r.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    porch = next(i for i in body["items"] if i["metadata"]["name"] == "porch.kpt.dev")
    resources = {r["resource"]: r for r in porch["versions"][0]["resources"]}
    pr = resources["packagerevisions"]
    assert pr["responseKind"] == {
        "group": "porch.kpt.dev",
        "version": "v1alpha1",
        "kind": "PackageRevision",
    }
    assert pr["subresources"][0]["subresource"] == "approval"
    core = client.get("/api", headers={"accept": AGGREGATED}).json()
    assert core["items"][0]["versions"][0]["resources"][0]["resource"] == "secrets"


def test_unknown_group_version_and_resource_are_404_status(client: Client) -> None:
    for path in (
        "/apis/nope.example.com/v1",
        "/apis/porch.kpt.dev/v9",
        "/apis/porch.kpt.dev/v1alpha1/namespaces/default/widgets",
        "/nothing-here",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["kind"] == "Status"
        assert r.json()["reason"] == "NotFound"


def test_openapi_v3_root_and_documents(client: Client) -> None:
    root = client.get("/openapi/v3").json()["paths"]
    assert set(root) == {
        "apis/porch.kpt.dev/v1alpha1",
        "apis/config.porch.kpt.dev/v1alpha1",
        "apis/config.porch.kpt.dev/v1alpha2",
        "api/v1",
    }
    doc = client.get(root["apis/porch.kpt.dev/v1alpha1"]["serverRelativeURL"]).json()
    item = doc["paths"][
        "/apis/porch.kpt.dev/v1alpha1/namespaces/{namespace}/packagerevisions/{name}"
    ]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "PackageRevision"
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    schemas = doc["components"]["schemas"]
    pr = schemas["dev.kpt.porch.v1alpha1.PackageRevision"]
    assert pr["x-kubernetes-group-version-kind"] == [
        {"group": "porch.kpt.dev", "version": "v1alpha1", "kind": "PackageRevision"}
    ]
    spec = schemas["dev.kpt.porch.v1alpha1.PackageRevisionSpec"]["properties"]
    assert spec["workspaceName"] == {"type": "string"}
    assert spec["revision"]["type"] == "integer"
    assert spec["tasks"]["type"] == "array"
    core = client.get(root["api/v1"]["serverRelativeURL"]).json()
    secret = core["components"]["schemas"]["io.k8s.api.core.v1.Secret"]
    assert secret["properties"]["data"]["additionalProperties"]["format"] == "byte"


def test_openapi_v2_is_404(client: Client) -> None:
    assert client.get("/openapi/v2").status_code == 404


def test_health_and_metrics(client: Client) -> None:
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").text == "ok"
    client.get("/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions")
    text = client.get("/metrics").text
    assert "porch_apiserver_request_duration_seconds_bucket" in text
    assert 'resource="packagerevisions"' in text
    assert "porch_package_revisions 4.0" in text
    assert "porch_apiserver_watchers" in text


def test_discovery_rejects_writes(client: Client) -> None:
    r = client.post("/apis", json={})
    assert r.status_code == 405
    assert r.json()["reason"] == "MethodNotAllowed"
