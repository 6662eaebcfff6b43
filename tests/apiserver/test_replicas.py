"""Two real ``porch serve`` replicas on one PostgreSQL database and one shared git repository.

Each replica has its own data directory (so its own git mirror); a write on one is visible on
the other at once, a watch on one sees the other's writes, and optimistic concurrency and
revision numbering hold across them (docs/replicas.md). Skipped without the PostgreSQL binaries
unless PORCH_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pygit2
import pytest

from porch.testing.postgres import PostgresServer
from tests._pg import shared_server_or_skip
from tests.apiserver.served import Served, start

NS = "default"
PR_PATH = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisions"
REPO_PATH = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/repositories"
TIMEOUT = httpx.Timeout(60.0)  # upper bounds, never speed expectations


@pytest.fixture(scope="module")
def pg() -> PostgresServer:
    return shared_server_or_skip()


@dataclass
class Replicas:
    a: httpx.Client
    b: httpx.Client
    origin: Path


@pytest.fixture(scope="module")
def replicas(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    dsn = pg.create_database()
    flags = ("--store", dsn, "--insecure-http", "--allow-anonymous")
    served: list[Served] = []
    clients: list[httpx.Client] = []
    try:
        # One after the other: the first start creates the demo repository in the database.
        for name in ("a", "b"):
            served.append(start(root / name, *flags))
        clients = [httpx.Client(base_url=s.url, timeout=TIMEOUT) for s in served]
        yield Replicas(clients[0], clients[1], root / "origins")
    finally:
        for client in clients:
            client.close()
        for s in served:
            s.stop()
        pg.drop_database(dsn)


def _ok(r: httpx.Response, code: int = 200) -> dict[str, Any]:
    assert r.status_code == code, r.text
    return dict(r.json())


def register(client: httpx.Client, name: str, origins: Path) -> dict[str, Any]:
    """A Repository over a new bare repository of its own (``origins/<name>.git``)."""
    origin = origins / f"{name}.git"
    pygit2.init_repository(str(origin), bare=True, initial_head="main")
    body = {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "git",
            # A URL: each replica reads and writes through the mirror in its own data dir.
            "git": {"repo": f"file://{origin}", "branch": "main", "createBranch": True},
        },
    }
    return _ok(client.post(REPO_PATH, json=body), 201)


def create(
    client: httpx.Client, repo: str, package: str, workspace: str, source: str = ""
) -> dict[str, Any]:
    spec: dict[str, Any] = {"packageName": package, "repository": repo, "workspaceName": workspace}
    if source:
        spec["tasks"] = [{"type": "edit", "edit": {"sourceRef": {"name": source}}}]
    body = {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"namespace": NS},
        "spec": spec,
    }
    return _ok(client.post(PR_PATH, json=body), 201)


def lifecycle(client: httpx.Client, name: str, value: str) -> httpx.Response:
    current = _ok(client.get(f"{PR_PATH}/{name}"))
    current["spec"]["lifecycle"] = value
    path = f"{PR_PATH}/{name}" + ("/approval" if value == "Published" else "")
    return client.put(path, json=current)


@contextmanager
def watch(client: httpx.Client, resource_version: str) -> Iterator[Iterator[dict[str, Any]]]:
    params = {"watch": "true", "resourceVersion": resource_version}
    with client.stream("GET", PR_PATH, params=params) as r:
        assert r.status_code == 200, r.read()
        yield (orjson.loads(line) for line in r.iter_lines() if line)


def test_a_repository_registered_on_one_replica_is_served_by_the_other(
    replicas: Replicas,
) -> None:
    register(replicas.a, "reg", replicas.origin)
    got = _ok(replicas.b.get(f"{REPO_PATH}/reg"))
    assert got["metadata"]["name"] == "reg"
    pr = create(replicas.b, "reg", "made-on-b", "v1")  # B opens its own mirror at once
    on_a = _ok(replicas.a.get(f"{PR_PATH}/{pr['metadata']['name']}"))
    assert on_a["metadata"]["resourceVersion"] == pr["metadata"]["resourceVersion"]


def test_a_write_on_one_replica_is_read_on_the_other_at_once(replicas: Replicas) -> None:
    register(replicas.a, "reads", replicas.origin)
    pr = create(replicas.a, "reads", "app", "v1")
    name = pr["metadata"]["name"]
    got = _ok(replicas.b.get(f"{PR_PATH}/{name}"))
    assert got["metadata"]["resourceVersion"] == pr["metadata"]["resourceVersion"]
    # Files come from git: B's mirror fetches the commit A wrote before reading it.
    prr_path = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisionresources/{name}"
    resources = _ok(replicas.b.get(prr_path))
    assert "Kptfile" in resources["spec"]["resources"]
    resources["spec"]["resources"]["cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\n"
    written = _ok(replicas.b.put(prr_path, json=resources))
    back = _ok(replicas.a.get(prr_path))
    assert back["spec"]["resources"]["cm.yaml"] == "apiVersion: v1\nkind: ConfigMap\n"
    assert back["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_a_watch_on_one_replica_sees_the_others_writes_in_order(replicas: Replicas) -> None:
    register(replicas.a, "watched", replicas.origin)
    since = _ok(replicas.b.get(PR_PATH))["metadata"]["resourceVersion"]
    with watch(replicas.b, since) as events:
        first = create(replicas.a, "watched", "one", "v1")
        second = create(replicas.a, "watched", "two", "v1")
        proposed = _ok(lifecycle(replicas.a, first["metadata"]["name"], "Proposed"))
        labelled = _ok(replicas.a.get(f"{PR_PATH}/{second['metadata']['name']}"))
        labelled["metadata"]["labels"] = {"seen": "yes"}
        labelled = _ok(replicas.a.put(f"{PR_PATH}/{second['metadata']['name']}", json=labelled))
        wanted = [
            ("ADDED", first),
            ("ADDED", second),
            ("MODIFIED", proposed),
            ("MODIFIED", labelled),
        ]
        seen = [next(events) for _ in wanted]
    got = [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert got == [(t, o["metadata"]["resourceVersion"]) for t, o in wanted]
    names = [e["object"]["metadata"]["name"] for e in seen]
    assert names == [o["metadata"]["name"] for _t, o in wanted]
    assert seen[3]["object"]["metadata"]["labels"] == {"seen": "yes"}


def test_racing_updates_across_replicas_have_exactly_one_winner(replicas: Replicas) -> None:
    register(replicas.a, "race", replicas.origin)
    pr = create(replicas.a, "race", "app", "v1")
    path = f"{PR_PATH}/{pr['metadata']['name']}"
    base = _ok(replicas.b.get(path))
    barrier = threading.Barrier(32)
    codes: list[int] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        client = replicas.a if i % 2 else replicas.b
        body = orjson.loads(orjson.dumps(base))
        body["metadata"]["labels"] = {"winner": str(i)}
        barrier.wait()
        code = client.put(path, json=body).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 31, codes
    final = _ok(replicas.a.get(path))
    assert "winner" in final["metadata"]["labels"]
    assert final == _ok(replicas.b.get(path))


def test_concurrent_approvals_on_both_replicas_never_share_a_number(replicas: Replicas) -> None:
    register(replicas.a, "approve", replicas.origin)
    v1 = create(replicas.a, "approve", "app", "v1")["metadata"]["name"]
    _ok(lifecycle(replicas.b, v1, "Proposed"))
    _ok(lifecycle(replicas.a, v1, "Published"))
    names = []
    for i in range(1, 7):
        client = replicas.a if i % 2 else replicas.b
        name = create(client, "approve", "app", f"ws{i}", source=v1)["metadata"]["name"]
        _ok(lifecycle(client, name, "Proposed"))
        names.append(name)
    barrier = threading.Barrier(len(names))
    losers: list[str] = []
    lock = threading.Lock()

    def approve(i: int, name: str) -> None:
        client = replicas.a if i % 2 else replicas.b
        body = _ok(client.get(f"{PR_PATH}/{name}"))
        body["spec"]["lifecycle"] = "Published"
        barrier.wait()
        r = client.put(f"{PR_PATH}/{name}/approval", json=body)
        assert r.status_code in (200, 409), r.text
        if r.status_code == 409:
            with lock:
                losers.append(name)

    threads = [threading.Thread(target=approve, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, name in enumerate(losers):  # each loser retries until it gets a number of its own
        _ok(lifecycle(replicas.b if i % 2 else replicas.a, name, "Published"))
    for client in (replicas.a, replicas.b):
        numbers = sorted(
            _ok(client.get(f"{PR_PATH}/{n}"))["spec"]["revision"] for n in [v1, *names]
        )
        assert numbers == list(range(1, len(names) + 2))
    tags = [
        r
        for r in pygit2.Repository(str(replicas.origin / "approve.git")).references
        if "refs/tags/" in r
    ]
    assert sorted(tags) == sorted(f"refs/tags/app/v{n}" for n in range(1, len(names) + 2))
