"""Authentication and RBAC through the REST layer, and what reaches the access log."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from porch.apiserver import create_app
from porch.apiserver.access import security_from_files
from porch.engine import Engine
from tests.apiserver.conftest import PR_PATH, SECRET_PATH, Client, draft, make_client

TOKENS = """\
admin-token,admin,admin,"system:masters"
alice-token,alice,alice
bob-token,bob,bob
"""
POLICY = """\
rules:
- subjects: [{user: alice}]
  namespaces: [a]
  apiGroups: [porch.kpt.dev]
  resources: [packagerevisions, packagerevisions/approval]
  verbs: ["*"]
- subjects: [{user: bob}]
  namespaces: ["*"]
  apiGroups: [porch.kpt.dev]
  resources: [packagerevisions]
  verbs: [get, list, watch, create, update, patch]
"""


@pytest.fixture
def secured(engine: Engine, tmp_path: Path) -> Iterator[Client]:
    (tmp_path / "tokens.csv").write_text(TOKENS)
    (tmp_path / "rbac.yaml").write_text(POLICY)
    security = security_from_files(
        token_file=tmp_path / "tokens.csv",
        rbac_file=tmp_path / "rbac.yaml",
        allow_anonymous=False,
    )
    yield from make_client(create_app(engine, security=security))


def as_user(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_no_or_bad_token_is_401(secured: Client) -> None:
    for headers in ({}, as_user("wrong")):
        r = secured.get(PR_PATH, headers=headers)
        assert r.status_code == 401
        assert r.json()["reason"] == "Unauthorized"
    assert secured.get("/apis", headers={}).status_code == 401
    assert secured.get("/version").status_code == 200
    assert secured.get("/healthz").status_code == 200


def test_namespace_bound_user_is_forbidden_elsewhere(secured: Client) -> None:
    ok = secured.get(
        "/apis/porch.kpt.dev/v1alpha1/namespaces/a/packagerevisions", headers=as_user("alice-token")
    )
    assert ok.status_code == 200
    r = secured.get(
        "/apis/porch.kpt.dev/v1alpha1/namespaces/b/packagerevisions",
        headers=as_user("alice-token"),
    )
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert r.json()["message"] == (
        'packagerevisions.porch.kpt.dev is forbidden: User "alice" cannot list resource'
        ' "packagerevisions" in API group "porch.kpt.dev" in the namespace "b"'
    )
    everywhere = secured.get(
        "/apis/porch.kpt.dev/v1alpha1/packagerevisions", headers=as_user("alice-token")
    )
    assert everywhere.status_code == 403
    assert everywhere.json()["message"].endswith("at the cluster scope")


def test_user_without_approval_cannot_approve(secured: Client) -> None:
    bob = as_user("bob-token")
    obj = secured.post(PR_PATH, json=draft("gated"), headers=bob).json()
    obj["spec"]["lifecycle"] = "Proposed"
    obj = secured.put(PR_PATH + "/demo.gated.v1", json=obj, headers=bob).json()
    obj["spec"]["lifecycle"] = "Published"
    r = secured.put(PR_PATH + "/demo.gated.v1/approval", json=obj, headers=bob)
    assert r.status_code == 403
    assert r.json()["message"] == (
        'packagerevisions.porch.kpt.dev "demo.gated.v1" is forbidden: User "bob" cannot update'
        ' resource "packagerevisions/approval" in API group "porch.kpt.dev" in the namespace'
        ' "default"'
    )
    assert secured.delete(PR_PATH + "/demo.gated.v1", headers=bob).status_code == 403
    approved = secured.put(
        PR_PATH + "/demo.gated.v1/approval", json=obj, headers=as_user("admin-token")
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"]["publishedBy"] == "admin"


def test_secret_data_never_reaches_the_log(
    secured: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="porch.apiserver.access")
    value = "hunter2-very-secret"
    secret = {
        "metadata": {"name": "creds"},
        "stringData": {"password": value},
        "data": {"token": base64.b64encode(value.encode()).decode()},
    }
    admin = as_user("admin-token")
    assert secured.post(SECRET_PATH, json=secret, headers=admin).status_code == 201
    assert secured.get(SECRET_PATH + "/creds", headers=admin).status_code == 200
    secured.post(SECRET_PATH, content=b"{broken " + value.encode(), headers=admin)
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert any(
        (line["user"], line["verb"], line["resource"], line["code"])
        == ("admin", "create", "secrets", 201)
        for line in lines
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert value not in text
    assert base64.b64encode(value.encode()).decode() not in text
    assert "admin-token" not in text


def test_access_log_line_fields(secured: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="porch.apiserver.access")
    r = secured.get(
        PR_PATH + "/demo.basens.v1", headers={**as_user("bob-token"), "x-request-id": "rid-1"}
    )
    assert r.headers["x-request-id"] == "rid-1"
    line = orjson.loads(caplog.records[-1].getMessage())
    assert line["requestID"] == "rid-1"
    assert (line["user"], line["verb"], line["resource"], line["name"], line["code"]) == (
        "bob",
        "get",
        "packagerevisions",
        "demo.basens.v1",
        200,
    )
    assert isinstance(line["ms"], float)
