"""Get, list (JSON, Table, paging, selectors), create, update, patch and delete over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from porch.engine import Engine
from tests.apiserver.conftest import PR_PATH, PRR_PATH, TABLE, Client, draft

PKG_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packages"


def names(body: dict[str, Any]) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def test_list_json_shape(client: Client) -> None:
    body = client.get(PR_PATH).json()
    assert body["kind"] == "PackageRevisionList"
    assert body["apiVersion"] == "porch.kpt.dev/v1alpha1"
    assert body["metadata"]["resourceVersion"].isdigit()
    assert "demo.basens.v1" in names(body)


def test_list_all_namespaces(client: Client) -> None:
    body = client.get("/apis/porch.kpt.dev/v1alpha1/packagerevisions").json()
    assert len(body["items"]) == 4


def test_table_columns_and_cells(client: Client) -> None:
    body = client.get(PR_PATH, headers={"accept": TABLE}).json()
    assert body["kind"] == "Table"
    cols = [c["name"] for c in body["columnDefinitions"]]
    assert cols == [
        "Name",
        "Package",
        "WorkspaceName",
        "Revision",
        "Latest",
        "Lifecycle",
        "Repository",
        "Age",
    ]
    row = next(r for r in body["rows"] if r["cells"][0] == "demo.basens.v1")
    assert row["cells"][1:7] == ["basens", "v1", 1, True, "Published", "demo"]
    assert row["cells"][7].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert "spec" not in row["object"]


@pytest.mark.parametrize(("include", "kind"), [("Object", "PackageRevision"), ("None", None)])
def test_table_include_object(client: Client, include: str, kind: str | None) -> None:
    body = client.get(PR_PATH, params={"includeObject": include}, headers={"accept": TABLE}).json()
    got = body["rows"][0].get("object")
    assert (got or {}).get("kind") == kind


def test_table_for_single_object_and_other_kinds(client: Client) -> None:
    one = client.get(PR_PATH + "/demo.basens.v1", headers={"accept": TABLE}).json()
    assert len(one["rows"]) == 1
    pkgs = client.get(PKG_PATH, headers={"accept": TABLE}).json()
    assert [c["name"] for c in pkgs["columnDefinitions"]][:4] == [
        "Name",
        "Package",
        "Repository",
        "Latest Revision",
    ]
    prr = client.get(PRR_PATH, headers={"accept": TABLE}).json()
    assert prr["columnDefinitions"][5]["name"] == "Files"
    assert all(isinstance(r["cells"][5], int) and r["cells"][5] > 0 for r in prr["rows"])


def test_limit_and_continue(client: Client) -> None:
    first = client.get(PR_PATH, params={"limit": "3"}).json()
    assert len(first["items"]) == 3
    assert first["metadata"]["remainingItemCount"] == 1
    token = first["metadata"]["continue"]
    rest = client.get(PR_PATH, params={"limit": "3", "continue": token}).json()
    assert len(rest["items"]) == 1
    assert "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert set(names(first)) | set(names(rest)) == set(names(client.get(PR_PATH).json()))
    bad = client.get(PR_PATH, params={"continue": "!!"})
    assert bad.status_code == 400


def test_field_and_label_selectors(client: Client) -> None:
    by_pkg = client.get(PR_PATH, params={"fieldSelector": "spec.packageName=basens"}).json()
    assert sorted(names(by_pkg)) == ["demo.basens.main", "demo.basens.v1"]
    by_name = client.get(PR_PATH, params={"fieldSelector": "metadata.name=demo.basens.v1"}).json()
    assert names(by_name) == ["demo.basens.v1"]
    latest = client.get(PR_PATH, params={"labelSelector": "kpt.dev/latest-revision=true"}).json()
    assert sorted(names(latest)) == ["demo.basens.v1", "demo.hello-world.v1"]
    not_latest = client.get(PR_PATH, params={"labelSelector": "!kpt.dev/latest-revision"}).json()
    assert len(not_latest["items"]) == 2
    bad = client.get(PR_PATH, params={"fieldSelector": "spec.nope=x"})
    assert bad.status_code == 400
    assert bad.json()["reason"] == "BadRequest"


def test_get_not_found_status(client: Client) -> None:
    r = client.get(PR_PATH + "/demo.nope.v1")
    assert r.status_code == 404
    body = r.json()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'packagerevisions.porch.kpt.dev "demo.nope.v1" not found',
        "reason": "NotFound",
        "details": {"name": "demo.nope.v1", "group": "porch.kpt.dev", "kind": "packagerevisions"},
        "code": 404,
    }


def test_create_computes_name_and_author(client: Client) -> None:
    r = client.post(PR_PATH, json=draft("fresh", "ws"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["metadata"]["name"] == "demo.fresh.ws"
    assert body["spec"]["lifecycle"] == "Draft"
    again = client.post(PR_PATH, json=draft("fresh", "ws"))
    assert again.status_code == 409
    assert again.json()["reason"] == "AlreadyExists"


def test_create_checks_kind_and_namespace(client: Client) -> None:
    wrong_kind = {**draft("k"), "kind": "Repository"}
    assert client.post(PR_PATH, json=wrong_kind).status_code == 400
    other_ns = draft("k")
    other_ns["metadata"]["namespace"] = "elsewhere"
    r = client.post(PR_PATH, json=other_ns)
    assert r.status_code == 400
    assert "does not match the namespace" in r.json()["message"]
    proposed = draft("k", lifecycle="Proposed")
    assert client.post(PR_PATH, json=proposed).status_code == 422


def test_create_accepts_yaml(client: Client) -> None:
    text = (
        "apiVersion: porch.kpt.dev/v1alpha1\nkind: PackageRevision\nmetadata:\n"
        "  namespace: default\nspec:\n  packageName: yam\n  repository: demo\n"
        "  workspaceName: w1\n"
    )
    r = client.post(PR_PATH, content=text, headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text


def test_update_and_stale_conflict(client: Client) -> None:
    obj = client.post(PR_PATH, json=draft("upd")).json()
    stale = dict(obj)
    obj["spec"]["lifecycle"] = "Proposed"
    r = client.put(PR_PATH + "/demo.upd.v1", json=obj)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["lifecycle"] == "Proposed"
    r = client.put(PR_PATH + "/demo.upd.v1", json=stale)
    assert r.status_code == 409
    body = r.json()
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on packagerevisions.porch.kpt.dev "demo.upd.v1": the'
        " object has been modified; please apply your changes to the latest version and try again"
    )
    assert body["details"]["name"] == "demo.upd.v1"


def test_update_name_mismatch_is_400(client: Client) -> None:
    obj = client.get(PR_PATH + "/demo.basens.v1").json()
    r = client.put(PR_PATH + "/demo.hello-world.v1", json=obj)
    assert r.status_code == 400


def test_lifecycle_through_approval_subresource(client: Client) -> None:
    obj = client.post(PR_PATH, json=draft("life")).json()
    obj["spec"]["lifecycle"] = "Proposed"
    obj = client.put(PR_PATH + "/demo.life.v1", json=obj).json()
    obj["spec"]["lifecycle"] = "Published"
    main = client.put(PR_PATH + "/demo.life.v1", json=obj)
    assert main.status_code == 422
    approved = client.put(PR_PATH + "/demo.life.v1/approval", json=obj)
    assert approved.status_code == 200, approved.text
    assert approved.json()["spec"]["revision"] == 1
    assert approved.json()["status"]["publishedBy"] == "system:anonymous"
    got = client.get(PR_PATH + "/demo.life.v1/approval").json()
    assert got["spec"]["lifecycle"] == "Published"
    r = client.patch(
        PR_PATH + "/demo.life.v1/approval",
        json={"spec": {"lifecycle": "DeletionProposed"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    deleted = client.delete(PR_PATH + "/demo.life.v1")
    assert deleted.status_code == 200
    assert deleted.json()["metadata"]["name"] == "demo.life.v1"
    assert client.get(PR_PATH + "/demo.life.v1").status_code == 404


def test_published_delete_is_forbidden(client: Client) -> None:
    r = client.delete(PR_PATH + "/demo.basens.v1")
    assert r.status_code == 403
    assert "proposed for deletion" in r.json()["message"]


def test_unknown_subresource_is_404(client: Client) -> None:
    assert client.get(PR_PATH + "/demo.basens.v1/status").status_code == 404


def merge(
    client: Client, path: str, patch: object, ctype: str = "application/merge-patch+json"
) -> httpx.Response:
    import orjson

    return client.patch(path, content=orjson.dumps(patch), headers={"content-type": ctype})


def test_patch_types(client: Client) -> None:
    client.post(PR_PATH, json=draft("pat"))
    path = PR_PATH + "/demo.pat.v1"
    r = merge(client, path, {"metadata": {"labels": {"team": "a"}}})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"team": "a"}
    r = merge(
        client,
        path,
        [{"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}}],
        "application/json-patch+json",
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["annotations"]["x"] == "y"
    failed = merge(
        client,
        path,
        [{"op": "test", "path": "/spec/lifecycle", "value": "Published"}],
        "application/json-patch+json",
    )
    assert failed.status_code == 422
    applied = merge(
        client, path, {"spec": {"lifecycle": "Proposed"}}, "application/apply-patch+yaml"
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["spec"]["lifecycle"] == "Proposed"
    smp = merge(client, path, {"spec": {}}, "application/strategic-merge-patch+json")
    assert smp.status_code == 415
    assert smp.json()["message"] == (
        "the body of the request was in an unknown format - accepted media types include:"
        " application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


def test_apply_patch_creates_when_absent(client: Client) -> None:
    body = draft("applied", "w1")
    body["metadata"]["name"] = "demo.applied.w1"
    r = client.patch(
        PR_PATH + "/demo.applied.w1",
        params={"fieldManager": "kubectl", "force": "false"},
        content="\n".join(
            [
                "apiVersion: porch.kpt.dev/v1alpha1",
                "kind: PackageRevision",
                "metadata: {name: demo.applied.w1, namespace: default}",
                "spec: {packageName: applied, repository: demo, workspaceName: w1}",
            ]
        ),
        headers={"content-type": "application/apply-patch+yaml"},
    )
    assert r.status_code == 201, r.text
    merge_absent = merge(client, PR_PATH + "/demo.absent.w1", {"spec": {}})
    assert merge_absent.status_code == 404


def test_delete_with_finalizer_sets_deletion_timestamp(client: Client) -> None:
    client.post(PR_PATH, json=draft("held"))
    path = PR_PATH + "/demo.held.v1"
    merge(client, path, {"metadata": {"finalizers": ["example.com/hold"]}})
    r = client.delete(path, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.json()["metadata"]["deletionTimestamp"]
    assert client.get(path).status_code == 200
    merge(client, path, {"metadata": {"finalizers": None}})
    assert client.get(path).status_code == 404


def test_delete_preconditions_and_dry_run(client: Client) -> None:
    client.post(PR_PATH, json=draft("pre"))
    path = PR_PATH + "/demo.pre.v1"
    import orjson

    r = client.request(
        "DELETE", path, content=orjson.dumps({"preconditions": {"resourceVersion": "1"}})
    )
    assert r.status_code == 409
    r = client.request("DELETE", path, content=orjson.dumps({"dryRun": ["All"]}))
    assert r.status_code == 400
    assert client.delete(path, params={"dryRun": "All"}).json()["message"] == (
        "dryRun is not supported"
    )
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("body", "ctype", "code"),
    [
        (b"{not json", "application/json", 400),
        (b"a: [unclosed", "application/yaml", 400),
        (b"\x0a\x0bprotobuf", "application/vnd.kubernetes.protobuf", 415),
        (b"<xml/>", "application/xml", 415),
        (b"[1, 2]", "application/json", 400),
    ],
)
def test_bad_bodies(client: Client, body: bytes, ctype: str, code: int) -> None:
    r = client.post(PR_PATH, content=body, headers={"content-type": ctype})
    assert r.status_code == code, r.text
    assert r.json()["kind"] == "Status"


def test_body_over_limit_is_413(engine: Engine) -> None:
    from porch.apiserver import create_app
    from tests.apiserver.conftest import make_client

    for small in make_client(create_app(engine, max_body=100)):
        r = small.post(PR_PATH, content=b"{" + b" " * 200 + b"}")
        assert r.status_code == 413
        assert r.json()["reason"] == "RequestEntityTooLarge"


def test_packages_are_read_only(client: Client) -> None:
    assert client.get(PKG_PATH + "/demo.basens").json()["status"]["latestRevision"] == 1
    assert client.get(PKG_PATH + "/demo.none").status_code == 404
    r = client.post(PKG_PATH, json={"metadata": {"name": "x"}})
    assert r.status_code == 405
    assert r.json()["reason"] == "MethodNotAllowed"
    assert client.delete(PKG_PATH + "/demo.basens").status_code == 405
    assert client.get(PKG_PATH, params={"watch": "true"}).status_code == 405


def test_wrong_methods_are_405(client: Client) -> None:
    assert client.put(PR_PATH, json={}).status_code == 405
    assert client.post(PR_PATH + "/demo.basens.v1", json={}).status_code == 405
    assert client.delete(PR_PATH).status_code == 405
    cluster = "/apis/porch.kpt.dev/v1alpha1/packagerevisions"
    assert client.post(cluster, json=draft("c")).status_code == 405


def test_resources_get_and_update(client: Client) -> None:
    client.post(PR_PATH, json=draft("files"))
    prr = client.get(PRR_PATH + "/demo.files.v1").json()
    assert "Kptfile" in prr["spec"]["resources"]
    prr["spec"]["resources"]["cm.yaml"] = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"
    )
    r = client.put(PRR_PATH + "/demo.files.v1", json=prr)
    assert r.status_code == 200, r.text
    assert "cm.yaml" in client.get(PRR_PATH + "/demo.files.v1").json()["spec"]["resources"]
    assert client.post(PRR_PATH, json=prr).status_code == 405
    assert client.delete(PRR_PATH + "/demo.files.v1").status_code == 405
    published = client.get(PRR_PATH + "/demo.basens.v1").json()
    assert client.put(PRR_PATH + "/demo.basens.v1", json=published).status_code == 422


def test_plain_json_list_is_spliced_from_stored_bodies(client: Client) -> None:
    """The raw-list path must answer exactly what the parsed path answers."""
    base = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
    spliced = client.get(base)
    assert spliced.status_code == 200
    parsed = client.get(base, params={"fieldSelector": "spec.lifecycle=Published"})
    body = spliced.json()
    assert body["kind"] == "PackageRevisionList"
    published = [i for i in body["items"] if i["spec"]["lifecycle"] == "Published"]
    assert published == parsed.json()["items"]
    paged = client.get(base, params={"limit": "1"}).json()
    assert len(paged["items"]) == 1 and paged["metadata"]["continue"]
    assert paged["metadata"]["remainingItemCount"] == len(body["items"]) - 1
    rest = client.get(base, params={"limit": "100", "continue": paged["metadata"]["continue"]})
    assert paged["items"] + rest.json()["items"] == body["items"]
