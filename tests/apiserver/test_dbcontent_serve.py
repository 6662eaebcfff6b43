"""``porch serve --content db`` end to end: drafts only in the store, git written on publish.

The server runs as a subprocess on the store ``PORCH_TEST_STORE`` names; repositories are a
local bare repository and one served by ``GitHttpServer`` (which can answer 500 on demand).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest
from click.testing import CliRunner

from porch.cli.serve import serve
from porch.testing.git_server import GitHttpServer
from porch.testing.postgres import store_url_from_env
from tests.apiserver.served import Served, start

PR_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
PRR_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisionresources"
REPO_PATH = "/apis/config.porch.kpt.dev/v1alpha1/namespaces/default/repositories"
TIMEOUT = 60.0
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as es:
        yield es


def serve_db(stack: ExitStack, data_dir: Path, store: str, *args: str) -> httpx.Client:
    served: Served = start(
        data_dir, "--insecure-http", "--allow-anonymous", "--store", store, *args
    )
    stack.callback(served.stop)
    api = httpx.Client(base_url=served.url, timeout=TIMEOUT)
    stack.callback(api.close)
    return api


def repository_body(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "git", "git": {"repo": url, "branch": "main", "createBranch": True}},
    }


def create(api: httpx.Client, repo: str, package: str, workspace: str = "ws1") -> str:
    r = api.post(
        PR_PATH,
        json={
            "apiVersion": "porch.kpt.dev/v1alpha1",
            "kind": "PackageRevision",
            "metadata": {"namespace": "default"},
            "spec": {
                "packageName": package,
                "repository": repo,
                "workspaceName": workspace,
                "tasks": [{"type": "init", "init": {"description": "a package"}}],
            },
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["metadata"]["name"])


def add_file(api: httpx.Client, name: str) -> None:
    prr = api.get(f"{PRR_PATH}/{name}").json()
    prr["spec"]["resources"]["cm.yaml"] = CM
    r = api.put(f"{PRR_PATH}/{name}", json=prr)
    assert r.status_code == 200, r.text


def set_lifecycle(api: httpx.Client, name: str, lifecycle: str) -> httpx.Response:
    body = api.get(f"{PR_PATH}/{name}").json()
    body["spec"]["lifecycle"] = lifecycle
    suffix = "/approval" if lifecycle == "Published" else ""
    return api.put(f"{PR_PATH}/{name}{suffix}", json=body)


def refs(path: Path) -> dict[str, str]:
    repo = pygit2.Repository(str(path))
    return {r.name: str(r.target) for r in repo.references.iterator()}


def objects(path: Path) -> set[str]:
    return {str(oid) for oid in pygit2.Repository(str(path)).odb}


def test_serve_keeps_drafts_in_the_store_and_publishes_to_git(
    tmp_path: Path, stack: ExitStack
) -> None:
    store = store_url_from_env(tmp_path)
    bare = tmp_path / "blue.git"
    pygit2.init_repository(str(bare), bare=True, initial_head="main")
    api = serve_db(stack, tmp_path / "data", store, "--content", "db")
    r = api.post(REPO_PATH, json=repository_body("blue", str(bare)))
    assert r.status_code == 201, r.text
    before_refs, before_objects = refs(bare), objects(bare)

    name = create(api, "blue", "app")
    add_file(api, name)
    proposed = set_lifecycle(api, name, "Proposed")
    assert proposed.status_code == 200, proposed.text
    kept = create(api, "blue", "kept")
    add_file(api, kept)
    assert refs(bare) == before_refs and objects(bare) == before_objects  # no git at all
    lock = api.get(f"{PR_PATH}/{name}").json()["status"]["selfLock"]["git"]
    assert lock["ref"] == "proposed/app/ws1" and lock["commit"].startswith("db-")

    published = set_lifecycle(api, name, "Published")
    assert published.status_code == 200, published.text
    assert published.json()["spec"]["revision"] == 1
    names = refs(bare)
    assert "refs/tags/app/v1" in names
    assert not [n for n in names if n.startswith(("refs/heads/drafts/", "refs/heads/proposed/"))]
    tree = pygit2.Repository(str(bare)).revparse_single("app/v1").peel(pygit2.Commit).tree
    assert tree["app/cm.yaml"].data.decode() == CM  # type: ignore[union-attr]

    # A restart keeps the draft (it is in the store) and the published revision.
    stack.close()
    with ExitStack() as again:
        api = serve_db(again, tmp_path / "data", store, "--content", "db")
        body = api.get(f"{PR_PATH}/{kept}").json()
        assert body["spec"]["lifecycle"] == "Draft"
        assert api.get(f"{PRR_PATH}/{kept}").json()["spec"]["resources"]["cm.yaml"] == CM
        assert api.get(f"{PR_PATH}/{name}").json()["spec"]["lifecycle"] == "Published"
        assert not [n for n in refs(bare) if n.startswith("refs/heads/drafts/")]


def test_serve_publish_to_a_failing_remote_stays_proposed(tmp_path: Path, stack: ExitStack) -> None:
    root = tmp_path / "remotes"
    root.mkdir()
    pygit2.init_repository(str(root / "far.git"), bare=True, initial_head="main")
    server = stack.enter_context(GitHttpServer(root))
    api = serve_db(
        stack, tmp_path / "data", store_url_from_env(tmp_path), "--content", "db", "--no-sync"
    )
    r = api.post(REPO_PATH, json=repository_body("far", server.repo_url("far.git")))
    assert r.status_code == 201, r.text
    server.set_fault("500")  # the remote fails every request from now on
    name = create(api, "far", "app")
    add_file(api, name)
    assert set_lifecycle(api, name, "Proposed").status_code == 200
    rv = api.get(f"{PR_PATH}/{name}").json()["metadata"]["resourceVersion"]
    failed = set_lifecycle(api, name, "Published")
    assert failed.status_code >= 500, failed.text
    body = api.get(f"{PR_PATH}/{name}").json()
    assert body["spec"]["lifecycle"] == "Proposed" and body["metadata"]["resourceVersion"] == rv
    server.set_fault(None)
    done = set_lifecycle(api, name, "Published")
    assert done.status_code == 200, done.text
    assert "refs/tags/app/v1" in refs(root / "far.git")


def test_serve_push_drafts_mirrors_to_git(tmp_path: Path, stack: ExitStack) -> None:
    bare = tmp_path / "blue.git"
    pygit2.init_repository(str(bare), bare=True, initial_head="main")
    api = serve_db(
        stack,
        tmp_path / "data",
        store_url_from_env(tmp_path),
        "--content",
        "db",
        "--db-push-drafts-to-git",
        "--no-sync",
    )
    assert api.post(REPO_PATH, json=repository_body("blue", str(bare))).status_code == 201
    name = create(api, "blue", "app")
    add_file(api, name)
    commit = api.get(f"{PR_PATH}/{name}").json()["status"]["selfLock"]["git"]["commit"]
    assert refs(bare)["refs/heads/drafts/app/ws1"] == commit


def test_content_flags_are_checked_and_documented() -> None:
    runner = CliRunner()
    help_text = runner.invoke(serve, ["--help"]).output
    assert "--content [git|db]" in help_text and "--db-push-drafts-to-git" in help_text
    alone = runner.invoke(serve, ["--db-push-drafts-to-git"])
    assert alone.exit_code == 2 and "needs --content db" in alone.output
    wrong = runner.invoke(serve, ["--content", "cr"])
    assert wrong.exit_code == 2 and "'cr' is not one of" in wrong.output
