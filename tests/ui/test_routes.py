"""``/ui`` over plain HTTP against the real server: the page and its files without a token,
and the access review with tokens, RBAC and bad input (no browser needed)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from porch.apiserver.ui import STATIC_DIR
from tests.ui.conftest import ADMIN_TOKEN, VIEWER_TOKEN, UIServer

G = "porch.kpt.dev"
CHECKS = [
    {"verb": "get", "group": G, "resource": "packagerevisions", "namespace": "default"},
    {"verb": "update", "group": G, "resource": "packagerevisions", "namespace": "default"},
    {
        "verb": "update",
        "group": G,
        "resource": "packagerevisions",
        "subresource": "approval",
        "namespace": "default",
    },
    {"verb": "list", "group": G, "resource": "packagerevisions"},
]


@pytest.fixture(scope="module")
def http(server: UIServer) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(server.ca))
    with httpx.Client(base_url=server.url, verify=context, timeout=30) as client:
        yield client


def review(http: httpx.Client, token: str | None, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post("/ui/api/access", json=body, headers=headers)


def test_page_and_files_are_served_without_a_token(http: httpx.Client) -> None:
    r = http.get("/ui")
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    page = http.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/ui/static/app.js">' in page.text
    for path in sorted(STATIC_DIR.iterdir()):
        r = http.get(f"/ui/static/{path.name}")
        assert r.status_code == 200, path.name
        assert r.content == path.read_bytes()
        assert r.headers["x-content-type-options"] == "nosniff"
    assert http.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")


def test_unknown_and_escaping_paths_are_404(http: httpx.Client) -> None:
    r = http.get("/ui/static/nope.js")
    assert r.status_code == 404
    assert r.json()["kind"] == "Status"
    assert http.get("/ui/static/..%2Froutes.py").status_code == 404
    assert http.get("/ui/static/%2e%2e/routes.py").status_code == 404


def test_access_review_needs_a_valid_token(http: httpx.Client) -> None:
    r = review(http, None, {"checks": CHECKS})
    assert r.status_code == 401
    assert r.json()["reason"] == "Unauthorized"
    assert review(http, "not-a-token", {"checks": CHECKS}).status_code == 401


def test_access_review_answers_from_the_rbac_policy(http: httpx.Client) -> None:
    admin = review(http, ADMIN_TOKEN, {"checks": CHECKS}).json()
    assert admin["user"] == "admin"
    assert admin["allowed"] == [True, True, True, True]
    viewer = review(http, VIEWER_TOKEN, {"checks": CHECKS}).json()
    assert viewer["user"] == "viewer"
    assert "readers" in viewer["groups"]
    assert viewer["allowed"] == [True, False, False, True]
    empty = review(http, VIEWER_TOKEN, {"checks": []}).json()
    assert empty["allowed"] == []


def test_access_review_agrees_with_the_api(http: httpx.Client) -> None:
    # what the review says "no" to, the API refuses with 403
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    path = f"/apis/{G}/v1alpha1/namespaces/default/packagerevisions/demo.basens.v1"
    current = http.get(path, headers=headers)
    assert current.status_code == 200
    r = http.put(path, json=current.json(), headers=headers)
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ([], '{"checks": [...]}'),
        ({"checks": "all"}, '{"checks": [...]}'),
        ({"checks": [1]}, "checks[0] must be an object"),
        ({"checks": [{"verb": "fly", "resource": "x"}]}, "unknown verb 'fly'"),
        ({"checks": [{"verb": "get"}]}, "checks[0].resource is required"),
        ({"checks": [{"verb": "get", "resource": "x", "colour": "red"}]}, "unknown field"),
        ({"checks": [{"verb": "get", "resource": 3}]}, "checks[0].resource must be a string"),
        ({"checks": [{"verb": "get", "resource": "x"}] * 65}, "at most 64 checks"),
    ],
)
def test_access_review_rejects_bad_input(http: httpx.Client, body: Any, message: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if isinstance(body, str):
        r = http.post("/ui/api/access", content=body, headers=headers)
    else:
        r = http.post("/ui/api/access", json=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "BadRequest"
    assert message in r.json()["message"]


def test_access_review_is_post_only(http: httpx.Client) -> None:
    r = http.get("/ui/api/access", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 405
