"""Repositories, Secrets and PackageVariant(Set)s: the kinds kept by engine.objects."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pygit2

from tests.apiserver.conftest import PR_PATH, REPO_PATH, SECRET_PATH, TABLE, Client

PV_PATH = "/apis/config.porch.kpt.dev/v1alpha1/namespaces/default/packagevariants"
PVS_PATH = "/apis/config.porch.kpt.dev/v1alpha2/namespaces/default/packagevariantsets"


def repository(name: str, url: str, **git: object) -> dict[str, Any]:
    return {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {"type": "git", "git": {"repo": url, "branch": "main", **git}},
    }


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_repository_lifecycle(client: Client, tmp_path: Path) -> None:
    bare = tmp_path / "extra.git"
    pygit2.init_repository(str(bare), bare=True, initial_head="main")
    r = client.post(REPO_PATH, json=repository("extra", str(bare), createBranch=True))
    assert r.status_code == 201, r.text
    assert ready(r.json())["status"] == "True"
    table = client.get(REPO_PATH, headers={"accept": TABLE}).json()
    row = next(r for r in table["rows"] if r["cells"][0] == "extra")
    assert row["cells"][1:6] == ["git", "", False, "True", str(bare)]
    current = client.get(REPO_PATH + "/extra").json()
    current["spec"]["git"]["repo"] = "/elsewhere.git"
    r = client.put(REPO_PATH + "/extra", json=current)
    assert r.status_code == 422
    assert r.json()["message"] == "spec.git.repo is immutable"
    created = client.post(
        PR_PATH,
        json={
            "metadata": {"namespace": "default"},
            "spec": {"packageName": "p", "repository": "extra", "workspaceName": "w"},
        },
    )
    assert created.status_code == 201, created.text
    assert client.delete(REPO_PATH + "/extra").status_code == 200
    assert client.get(PR_PATH + "/extra.p.w").status_code == 404


def test_repository_that_cannot_open_is_not_ready(client: Client, tmp_path: Path) -> None:
    r = client.post(REPO_PATH, json=repository("broken", str(tmp_path / "missing.git")))
    assert r.status_code == 201, r.text
    assert ready(r.json())["status"] == "False"


def test_repository_status_subresource(client: Client) -> None:
    repo = client.get(REPO_PATH + "/demo").json()
    repo["status"]["packageCount"] = 99
    repo["spec"]["description"] = "ignored by status writes"
    r = client.put(REPO_PATH + "/demo/status", json=repo)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["packageCount"] == 99
    assert r.json()["spec"]["description"] != "ignored by status writes"


def test_repository_stale_update_conflicts(client: Client) -> None:
    repo = client.get(REPO_PATH + "/demo").json()
    repo["metadata"]["labels"] = {"a": "b"}
    assert client.put(REPO_PATH + "/demo", json=repo).status_code == 200
    again = client.put(REPO_PATH + "/demo", json=repo)
    assert again.status_code == 409
    assert again.json()["reason"] == "Conflict"


def test_secret_string_data_is_folded(client: Client) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"username": "bob"},
        "data": {"password": base64.b64encode(b"s3cret").decode()},
    }
    r = client.post(SECRET_PATH, json=secret)
    assert r.status_code == 201, r.text
    got = client.get(SECRET_PATH + "/creds").json()
    assert "stringData" not in got
    assert base64.b64decode(got["data"]["username"]) == b"bob"
    assert got["type"] == "Opaque"
    bad = {**secret, "metadata": {"name": "bad"}, "data": {"x": "not base64!"}}
    r = client.post(SECRET_PATH, json=bad)
    assert r.status_code == 422
    r = client.patch(
        SECRET_PATH + "/creds",
        content=b'{"stringData":{"username":"alice"},"$setElementOrder/x":[]}',
        headers={"content-type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["data"]["username"]) == b"alice"
    table = client.get(SECRET_PATH, headers={"accept": TABLE}).json()
    assert table["rows"][0]["cells"][:3] == ["creds", "Opaque", 2]
    assert client.delete(SECRET_PATH + "/creds").status_code == 200
    assert client.get(SECRET_PATH + "/creds").status_code == 404


def test_package_variants_are_stored(client: Client) -> None:
    pv = {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "PackageVariant",
        "metadata": {"name": "pv1"},
        "spec": {
            "upstream": {"repo": "demo", "package": "basens", "revision": "v1"},
            "downstream": {"repo": "demo", "package": "copy"},
        },
    }
    assert client.post(PV_PATH, json=pv).status_code == 201
    table = client.get(PV_PATH, headers={"accept": TABLE}).json()
    assert table["rows"][0]["cells"][:3] == ["pv1", "demo/basens/v1", "demo/copy"]
    pvs = {
        "apiVersion": "config.porch.kpt.dev/v1alpha2",
        "kind": "PackageVariantSet",
        "metadata": {"name": "set1", "labels": {"tier": "x"}},
        "spec": {"upstream": {"repo": "demo", "package": "basens"}},
    }
    assert client.post(PVS_PATH, json=pvs).status_code == 201
    listed = client.get(PVS_PATH, params={"labelSelector": "tier in (x,y)"}).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["set1"]
    wrong_version = {**pvs, "apiVersion": "config.porch.kpt.dev/v1alpha1"}
    assert client.post(PVS_PATH, json=wrong_version).status_code == 400
