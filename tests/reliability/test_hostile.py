"""Issue #11 part 3: hand-made hostile input against a real ``porch serve``.

Each request gets the exact status Kubernetes would give (400 malformed, 413 too large, 422
invalid), quickly, and nothing stored is lost or changed by it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import F2Server

NS = "default"
PR = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisions"
PRR = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisionresources"
REPOS = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/repositories"
PV = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/packagevariants"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n"
FAST_S = 5.0  # every hostile request is answered well within this

# Nine levels of nine aliases each: 9**9 (387 million) nodes once expanded, 500 bytes written.
ANCHOR_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture(scope="module")
def srv(f2_module_server: F2Server) -> Iterator[F2Server]:
    with f2_module_server.client() as c:
        created = c.post(
            PR,
            json={
                "apiVersion": "porch.kpt.dev/v1alpha1",
                "kind": "PackageRevision",
                "metadata": {"namespace": NS},
                "spec": {
                    "packageName": "target",
                    "repository": "demo",
                    "workspaceName": "w1",
                    "tasks": [{"type": "init", "init": {"description": "hostile target"}}],
                },
            },
        )
        assert created.status_code == 201, created.text
        prr = c.get(f"{PRR}/demo.target.w1").json()
        prr["spec"]["resources"]["cm.yaml"] = CONFIGMAP
        assert c.put(f"{PRR}/demo.target.w1", json=prr).status_code == 200
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keep"}}
        assert c.post(SECRETS, json={**secret, "stringData": {"k": "v"}}).status_code == 201
        pv = {
            "apiVersion": "config.porch.kpt.dev/v1alpha1",
            "kind": "PackageVariant",
            "metadata": {"name": "pv"},
            "spec": {"upstream": {"repo": "demo", "package": "target"}},
        }
        assert c.post(PV, json=pv).status_code == 201
    yield f2_module_server


@pytest.fixture
def client(srv: F2Server) -> Iterator[httpx.Client]:
    """A client per test; after the test everything stored is exactly as before."""
    with srv.client() as c:
        before = _snapshot(c)
        yield c
        assert srv.alive()
        assert _snapshot(c) == before


def _snapshot(c: httpx.Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in (PR, REPOS, PV, SECRETS):
        body = c.get(path)
        assert body.status_code == 200, body.text
        out[path] = sorted(
            (i["metadata"]["name"], i["metadata"]["resourceVersion"]) for i in body.json()["items"]
        )
    out["files"] = c.get(f"{PRR}/demo.target.w1").json()["spec"]["resources"]
    return out


def _expect(response: httpx.Response, status: int, reason: str, text: str = "") -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["kind"] == "Status" and body["code"] == status and body["reason"] == reason
    assert text in body["message"]


def _timed(call: Any) -> httpx.Response:
    started = time.monotonic()
    response: httpx.Response = call()
    assert time.monotonic() - started < FAST_S
    return response


@pytest.mark.parametrize(
    ("file_name", "why"),
    [
        ("../evil.yaml", "segment '..' is not allowed"),
        ("a/../../evil.yaml", "segment '..' is not allowed"),
        ("/etc/evil.yaml", "must be a relative path"),
        ("//etc/evil.yaml", "must be a relative path"),
        ("a/./b.yaml", "segment '.' is not allowed"),
        ("a//b.yaml", "segment '' is not allowed"),
        ("a\\..\\evil.yaml", "must be a relative path"),
        (".git/config", "segment '.git' is not allowed"),
        ("a\x00b.yaml", "must be a relative path"),
        ("Kptfile/../../x", "segment '..' is not allowed"),
    ],
)
def test_traversal_in_resource_file_names(client: httpx.Client, file_name: str, why: str) -> None:
    prr = client.get(f"{PRR}/demo.target.w1").json()
    hostile = copy.deepcopy(prr)
    hostile["spec"]["resources"][file_name] = CONFIGMAP
    response = _timed(lambda: client.put(f"{PRR}/demo.target.w1", json=hostile))
    _expect(response, 400, "BadRequest", why)
    assert response.json()["message"].startswith("invalid file name ")


def test_anchor_bomb_in_a_package_file(client: httpx.Client) -> None:
    prr = client.get(f"{PRR}/demo.target.w1").json()
    hostile = copy.deepcopy(prr)
    nested = "  " + ANCHOR_BOMB.replace("\n", "\n  ").rstrip() + "\n"
    hostile["spec"]["resources"]["bomb.yaml"] = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n" + nested
    )
    response = _timed(lambda: client.put(f"{PRR}/demo.target.w1", json=hostile))
    _expect(response, 422, "Invalid", "alias expansion too large")


@pytest.mark.parametrize("path", [f"{PV}/pv", f"{PR}/demo.target.w1", f"{SECRETS}/keep"])
def test_anchor_bomb_in_an_apply_patch(client: httpx.Client, path: str) -> None:
    body = ANCHOR_BOMB + "metadata:\n  labels:\n    bomb: *i\nspec:\n  bomb: *i\n"
    response = _timed(
        lambda: client.patch(
            path,
            content=body.encode(),
            params={"fieldManager": "hostile"},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    )
    _expect(response, 400, "BadRequest", "excessive aliasing")


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("path", [PR, SECRETS, f"{PRR}/demo.target.w1"])
def test_ten_mib_bodies(client: httpx.Client, path: str, chunked: bool) -> None:
    piece = b" " * (1024 * 1024)
    parts = [b"{", *([piece] * 10), b"}"]
    content: Any = iter(parts) if chunked else b"".join(parts)
    method = "PUT" if "packagerevisionresources" in path else "POST"
    response = _timed(
        lambda: client.request(
            method, path, content=content, headers={"Content-Type": "application/json"}
        )
    )
    _expect(response, 413, "RequestEntityTooLarge", "larger than the limit")


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("application/json", b"[" * 100_000 + b"]" * 100_000, "depth limit exceeded"),
        ("application/json", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "depth limit exceeded"),
        ("application/yaml", b"[" * 100_000 + b"]" * 100_000, "exceeded maximum nesting depth"),
    ],
)
def test_deeply_nested_bodies(
    client: httpx.Client, content_type: str, body: bytes, text: str
) -> None:
    response = _timed(lambda: client.post(PR, content=body, headers={"Content-Type": content_type}))
    _expect(response, 400, "BadRequest", text)


def test_deeply_nested_merge_patch(client: httpx.Client) -> None:
    body = b'{"spec":' * 5_000 + b"1" + b"}" * 5_000
    response = _timed(
        lambda: client.patch(
            f"{PV}/pv", content=body, headers={"Content-Type": "application/merge-patch+json"}
        )
    )
    _expect(response, 400, "BadRequest", "depth limit exceeded")


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        (
            PR,
            b'{"apiVersion":"porch.kpt.dev/v1alpha1","kind":"PackageRevision",'
            b'"metadata":{"name":"\xff\xfe"}}',
            "application/json",
        ),
        (SECRETS, b'{"kind":"Secret","metadata":{"name":"s"},"stringData":{"k":"\xc3\x28"}}', ""),
        (PV, b"kind: PackageVariant\nmetadata:\n  name: \xed\xa0\x80\n", "application/yaml"),
    ],
)
def test_invalid_utf8_bodies(
    client: httpx.Client, path: str, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = _timed(lambda: client.post(path, content=body, headers=headers))
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "BadRequest"


def test_invalid_utf8_in_paths_and_queries(client: httpx.Client) -> None:
    _expect(client.get(f"{PR}/%ff%fe"), 404, "NotFound")
    _expect(
        client.get(PR, params={"labelSelector": b"\xff=1".decode("latin-1")}), 400, "BadRequest"
    )
    _expect(client.get(PR + "?fieldSelector=%ff%fe"), 400, "BadRequest")


LONG = "n" * 300


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        (
            SECRETS,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": LONG}},
            "metadata.name",
        ),
        (
            PV,
            {
                "apiVersion": "config.porch.kpt.dev/v1alpha1",
                "kind": "PackageVariant",
                "metadata": {"name": LONG},
            },
            "metadata.name",
        ),
        (
            SECRETS,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"generateName": LONG}},
            "metadata.name",
        ),
        (
            REPOS,
            {
                "apiVersion": "config.porch.kpt.dev/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": LONG},
                "spec": {"type": "git", "git": {"repo": "/nonexistent"}},
            },
            "metadata.name",
        ),
        (
            PR,
            {
                "apiVersion": "porch.kpt.dev/v1alpha1",
                "kind": "PackageRevision",
                "metadata": {"namespace": NS},
                "spec": {"packageName": LONG, "repository": "demo", "workspaceName": "w"},
            },
            "invalid packageName",
        ),
        (
            PR,
            {
                "apiVersion": "porch.kpt.dev/v1alpha1",
                "kind": "PackageRevision",
                "metadata": {"namespace": NS},
                "spec": {"packageName": "p", "repository": "demo", "workspaceName": LONG},
            },
            "invalid workspaceName",
        ),
        (
            PR,
            {
                "apiVersion": "porch.kpt.dev/v1alpha1",
                "kind": "PackageRevision",
                "metadata": {"namespace": NS},
                "spec": {
                    "packageName": "/".join(["p" * 60] * 5),
                    "repository": "demo",
                    "workspaceName": "w",
                },
            },
            "invalid package",
        ),
    ],
)
def test_names_of_300_characters(
    client: httpx.Client, path: str, body: dict[str, Any], text: str
) -> None:
    _expect(_timed(lambda: client.post(path, json=body)), 422, "Invalid", text)


def test_namespace_of_300_characters(client: httpx.Client) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    response = client.post(f"/api/v1/namespaces/{LONG}/secrets", json=body)
    _expect(response, 422, "Invalid", "metadata.namespace")


@pytest.mark.parametrize(
    "labels",
    [
        {"a\x01": "b"},
        {"a": "b\x07"},
        {"a": "b\n"},
        {"a\n": "b"},
        {"a\u202e": "b"},
        {"a": "\x1b[31mred"},
        {"a": "b" * 64},
        {"bad_prefix!/a": "b"},
    ],
)
@pytest.mark.parametrize("kind", ["Secret", "PackageVariant", "PackageRevision", "Repository"])
def test_control_characters_in_labels(
    client: httpx.Client, kind: str, labels: dict[str, str]
) -> None:
    meta: dict[str, Any] = {"name": "labelled", "namespace": NS, "labels": labels}
    if kind == "Secret":
        path, body = SECRETS, {"apiVersion": "v1", "kind": kind, "metadata": meta}
    elif kind == "PackageVariant":
        path = PV
        body = {"apiVersion": "config.porch.kpt.dev/v1alpha1", "kind": kind, "metadata": meta}
    elif kind == "Repository":
        path = REPOS
        body = {
            "apiVersion": "config.porch.kpt.dev/v1alpha1",
            "kind": kind,
            "metadata": meta,
            "spec": {"type": "git", "git": {"repo": "/nonexistent"}},
        }
    else:
        path = PR
        del meta["name"]
        body = {
            "apiVersion": "porch.kpt.dev/v1alpha1",
            "kind": kind,
            "metadata": meta,
            "spec": {"packageName": "labelled", "repository": "demo", "workspaceName": "w"},
        }
    response = _timed(lambda: client.post(path, json=body))
    _expect(response, 422, "Invalid", "metadata.labels")
    assert "\x1b" not in response.text and "\n" not in response.json()["message"]


def test_control_characters_in_label_updates(client: httpx.Client) -> None:
    for path in (f"{SECRETS}/keep", f"{PV}/pv", f"{PR}/demo.target.w1"):
        patch = {"metadata": {"labels": {"ok": "fine\r\nInjected: header"}}}
        response = client.patch(
            path, json=patch, headers={"Content-Type": "application/merge-patch+json"}
        )
        _expect(response, 422, "Invalid", "metadata.labels")


def test_control_characters_in_selectors(client: httpx.Client) -> None:
    _expect(client.get(PR, params={"labelSelector": "a\x01=b"}), 400, "BadRequest")
    listed = client.get(SECRETS, params={"fieldSelector": "metadata.name=\x00"})
    assert listed.status_code == 200 and listed.json()["items"] == []
