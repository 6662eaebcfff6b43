"""The OCI adapter on a real registry (docker-registry), against the same conformance scenarios
as the memory twin and the git adapter, plus auth, outages and injected 500s (docs/oci.md).

Without the ``docker-registry`` binary the OCI cases skip (PORCH_REQUIRE_OCI=1: they fail).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests._oci import registry_or_skip

from porch.api.types import Lifecycle
from porch.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
)
from porch.repository.memory import MemoryRepository
from porch.repository.oci import (
    OciCredentials,
    OciRepository,
    fetch_oci_package,
    layout,
    secret_credentials,
)
from porch.repository.oci import client as oci_client
from porch.repository.types import Author, Change, PackageRepository, RevisionInfo
from porch.testing.git_repos import new_bare
from porch.testing.oci_registry import (
    FaultProxy,
    OciRegistry,
    TokenServer,
    free_port,
)

JANE = Author("Jane Doe", "jane@example.com")
KPTFILE = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: pkg\n"
INIT = {"type": "init", "init": {"description": "d"}}
_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def registry() -> Iterator[OciRegistry]:
    with registry_or_skip() as reg:
        yield reg


# --- one conformance suite, three adapters ------------------------------------------------


@dataclass
class Subject:
    kind: str
    repo: PackageRepository
    reopen: Callable[[], PackageRepository]


@pytest.fixture(params=["memory", "git", "oci"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    kind = request.param
    if kind == "memory":
        mem = MemoryRepository()
        return Subject(kind, mem, lambda: mem)
    if kind == "git":
        from porch.repository.git import GitRepository

        path = str(new_bare(tmp_path / "repo.git"))
        return Subject(
            kind,
            GitRepository(path, create_branch=True),
            lambda: GitRepository(path, create_branch=True),
        )
    reg: OciRegistry = request.getfixturevalue("registry")
    spec = reg.registry(f"conformance/t{next(_prefixes)}")
    return Subject(kind, OciRepository(spec), lambda: OciRepository(spec))


def draft(
    repo: PackageRepository,
    package: str = "pkg",
    workspace: str = "ws",
    files: dict[str, str] | None = None,
) -> RevisionInfo:
    info = repo.write(
        package=package,
        workspace=workspace,
        files=files if files is not None else {"Kptfile": KPTFILE},
        lifecycle=Lifecycle.DRAFT,
        task=INIT,
        author=JANE,
        base=None,
    ).info
    assert info is not None
    return info


def publish(repo: PackageRepository, info: RevisionInfo, revision: int) -> RevisionInfo:
    proposed = repo.set_lifecycle(info, Lifecycle.PROPOSED).info
    assert proposed is not None
    published = repo.publish(proposed, revision=revision, author=JANE).info
    assert published is not None
    return published


def listing(repo: PackageRepository) -> set[tuple[str, str, int, Lifecycle]]:
    return {(i.package, i.workspace, i.revision, i.lifecycle) for i in repo.list_revisions()}


def find(repo: PackageRepository, package: str, workspace: str) -> RevisionInfo:
    (info,) = [i for i in repo.list_revisions() if (i.package, i.workspace) == (package, workspace)]
    return info


def test_draft_roundtrip(subject: Subject) -> None:
    repo = subject.repo
    files = {"Kptfile": KPTFILE, "deploy/app.yaml": "a: 1\n", "sub/Kptfile": KPTFILE}
    info = draft(repo, "net/vpc", "ws1", files)
    assert (info.package, info.workspace, info.revision, info.lifecycle) == (
        "net/vpc",
        "ws1",
        0,
        Lifecycle.DRAFT,
    )
    assert info.tasks == (INIT,)
    assert repo.read_files(info) == files
    again = subject.reopen()
    (found,) = again.list_revisions()
    assert (found.package, found.workspace, found.commit, found.ref) == (
        "net/vpc",
        "ws1",
        info.commit,
        info.ref,
    )
    assert found.tasks == (INIT,) and found.published_by == JANE.email
    assert again.read_files(found) == files


def test_write_on_base_and_compare_and_swap(subject: Subject) -> None:
    repo = subject.repo
    first = draft(repo)
    with pytest.raises(AlreadyExists):
        draft(repo)
    second = repo.write(
        package="pkg",
        workspace="ws",
        files={"Kptfile": KPTFILE, "x.yaml": "x: 1\n"},
        lifecycle=Lifecycle.DRAFT,
        task={"type": "render"},
        author=JANE,
        base=first,
    ).info
    assert second is not None and second.commit != first.commit
    assert second.tasks == (INIT,)  # the creating task survives a render
    assert repo.read_files(second)["x.yaml"] == "x: 1\n"
    with pytest.raises(Conflict):
        repo.write(
            package="pkg",
            workspace="ws",
            files={"Kptfile": KPTFILE},
            lifecycle=Lifecycle.DRAFT,
            task=None,
            author=JANE,
            base=first,  # stale
        )
    assert find(subject.reopen(), "pkg", "ws").commit == second.commit


def test_propose_and_back(subject: Subject) -> None:
    repo = subject.repo
    info = draft(repo)
    proposed = repo.set_lifecycle(info, Lifecycle.PROPOSED).info
    assert proposed is not None and proposed.lifecycle is Lifecycle.PROPOSED
    assert listing(subject.reopen()) == {("pkg", "ws", 0, Lifecycle.PROPOSED)}
    back = repo.set_lifecycle(proposed, Lifecycle.DRAFT).info
    assert back is not None
    assert listing(subject.reopen()) == {("pkg", "ws", 0, Lifecycle.DRAFT)}
    with pytest.raises(Invalid):
        repo.set_lifecycle(back, Lifecycle.PUBLISHED)


def test_publish_placeholder_and_latest(subject: Subject) -> None:
    repo = subject.repo
    v1 = publish(repo, draft(repo, files={"Kptfile": KPTFILE, "v.yaml": "v: 1\n"}), 1)
    assert (v1.revision, v1.lifecycle, v1.published_by) == (1, Lifecycle.PUBLISHED, JANE.email)
    assert v1.tasks == (INIT,)
    assert listing(subject.reopen()) == {
        ("pkg", "ws", 1, Lifecycle.PUBLISHED),
        ("pkg", "main", -1, Lifecycle.PUBLISHED),
    }
    with pytest.raises(AlreadyExists):
        publish(repo, draft(repo, workspace="ws2"), 1)
    repo.delete(find(repo, "pkg", "ws2"))
    v2 = publish(
        repo, draft(repo, workspace="ws3", files={"Kptfile": KPTFILE, "v.yaml": "v: 2"}), 2
    )
    again = subject.reopen()
    holder = find(again, "pkg", "main")
    assert holder.placeholder and holder.ref == "main"
    assert again.read_files(holder)["v.yaml"] == "v: 2"
    assert again.read_files(find(again, "pkg", "ws"))["v.yaml"] == "v: 1\n"
    assert find(again, "pkg", "ws3").commit == v2.commit
    assert {i.revision for i in again.list_revisions()} == {-1, 1, 2}


def test_deletion_proposed_and_delete(subject: Subject) -> None:
    repo = subject.repo
    published = publish(repo, draft(repo), 1)
    marked = repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED).info
    assert marked is not None
    got = {(i.workspace, i.revision): i.lifecycle for i in subject.reopen().list_revisions()}
    assert got == {("ws", 1): Lifecycle.DELETION_PROPOSED, ("main", -1): Lifecycle.PUBLISHED}
    restored = repo.set_lifecycle(marked, Lifecycle.PUBLISHED).info
    assert restored is not None
    assert repo.delete(restored).info is None
    assert listing(subject.reopen()) == {("pkg", "main", -1, Lifecycle.PUBLISHED)}
    holder = find(repo, "pkg", "main")
    holder_marked = repo.set_lifecycle(holder, Lifecycle.DELETION_PROPOSED).info
    assert holder_marked is not None
    repo.delete(holder_marked)
    assert listing(subject.reopen()) == set()


def test_delete_working_revisions(subject: Subject) -> None:
    repo = subject.repo
    a = draft(repo, "a")
    b = repo.set_lifecycle(draft(repo, "b"), Lifecycle.PROPOSED).info
    assert b is not None
    repo.delete(a)
    repo.delete(b)
    assert listing(subject.reopen()) == set()
    with pytest.raises((NotFound, Conflict)):
        repo.delete(a)


def test_every_mutation_can_be_undone(subject: Subject) -> None:
    repo = subject.repo

    def check_undo(change: Change, before: set[tuple[str, str, int, Lifecycle]]) -> None:
        change.undo()
        assert listing(subject.reopen()) == before

    before = listing(repo)
    check_undo(
        repo.write(
            package="pkg",
            workspace="ws",
            files={"Kptfile": KPTFILE},
            lifecycle=Lifecycle.DRAFT,
            task=INIT,
            author=JANE,
            base=None,
        ),
        before,
    )
    info = draft(repo)
    before = listing(repo)
    check_undo(repo.set_lifecycle(info, Lifecycle.PROPOSED), before)
    proposed = repo.set_lifecycle(find(repo, "pkg", "ws"), Lifecycle.PROPOSED).info
    assert proposed is not None
    before = listing(repo)
    check_undo(repo.publish(proposed, revision=1, author=JANE), before)
    assert subject.reopen().read_files(find(repo, "pkg", "ws")) == {"Kptfile": KPTFILE}
    published = repo.publish(find(repo, "pkg", "ws"), revision=1, author=JANE).info
    assert published is not None
    before = listing(repo)
    check_undo(repo.set_lifecycle(published, Lifecycle.DELETION_PROPOSED), before)
    check_undo(repo.delete(find(repo, "pkg", "ws")), before)
    check_undo(repo.delete(find(repo, "pkg", "main")), before)
    assert repo.read_files(find(repo, "pkg", "main")) == {"Kptfile": KPTFILE}


def test_version_tracks_changes(subject: Subject) -> None:
    repo = subject.repo
    empty = repo.version()
    info = draft(repo)
    one = repo.version()
    assert one != empty and repo.version() == one
    repo.set_lifecycle(info, Lifecycle.PROPOSED)
    assert repo.version() != one


def test_rejects_bad_input(subject: Subject) -> None:
    repo = subject.repo
    with pytest.raises(BadRequest):
        draft(repo, files={"Kptfile": KPTFILE, "../escape": "x"})
    with pytest.raises(Invalid, match="Kptfile"):
        draft(repo, files={"README.md": "x"})
    published = publish(repo, draft(repo), 1)
    if subject.kind != "memory":  # the memory twin does not check this (yet)
        with pytest.raises(Invalid):
            repo.publish(published, revision=2, author=JANE)


# --- OCI specifics --------------------------------------------------------------------------


def raw_client(reg: OciRegistry) -> httpx.Client:
    return httpx.Client(base_url=reg.url, timeout=10)


def test_layout_tags_annotations_and_layer(registry: OciRegistry) -> None:
    spec = registry.registry("layout/a")
    repo = OciRepository(spec)
    files = {"Kptfile": KPTFILE, "b.yaml": "b: 1\n", "a/x.yaml": "x: 1\n"}
    info = draft(repo, "net/vpc", "ws1", files)
    assert info.ref == "ws.ws1" and info.commit.startswith("sha256:")
    published = publish(repo, info, 1)
    assert published.ref == "v1"
    http = raw_client(registry)
    assert "layout/a/net/vpc" in http.get("/v2/_catalog").json()["repositories"]
    assert sorted(http.get("/v2/layout/a/net/vpc/tags/list").json()["tags"]) == ["main", "v1"]
    manifest = http.get(
        "/v2/layout/a/net/vpc/manifests/v1", headers={"Accept": oci_client.MANIFEST_TYPE}
    ).json()
    notes = manifest["annotations"]
    assert notes[layout.LIFECYCLE] == "Published" and notes[layout.REVISION] == "1"
    assert notes[layout.WORKSPACE] == "ws1" and notes[layout.PACKAGE] == "net/vpc"
    assert json.loads(notes[layout.TASKS]) == [INIT]
    assert notes[layout.AUTHOR_EMAIL] == JANE.email
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == layout.LAYER_TYPE
    blob = http.get(f"/v2/layout/a/net/vpc/blobs/{layer['digest']}").content
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=__import__("io").BytesIO(blob))) as tar:
        entries = tar.getmembers()
    assert [e.name for e in entries] == ["Kptfile", "a/x.yaml", "b.yaml"]
    assert {e.mtime for e in entries} == {0}
    # Deterministic: the same files give the same layer, whatever the insertion order.
    again = layout.pack(dict(reversed(list(files.items()))))[0]
    assert "sha256:" + hashlib.sha256(again).hexdigest() == layer["digest"]
    holder = http.get(
        "/v2/layout/a/net/vpc/manifests/main", headers={"Accept": oci_client.MANIFEST_TYPE}
    ).json()["annotations"]
    assert holder[layout.REVISION] == "-1" and holder[layout.SOURCE] == published.commit


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(str(request.url.raw_path.decode()))
        return super().handle_request(request)


def test_catalog_and_tags_pagination(
    registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = OciRepository(registry.registry("paged"))
    for n in range(5):
        draft(repo, f"p{n}", "ws")
    draft(repo, "p0", "other")
    draft(repo, "p0", "third")
    monkeypatch.setattr(oci_client, "PAGE", 2)
    counting = CountingTransport()
    fresh = OciRepository(registry.registry("paged"), transport=counting)
    assert {(i.package, i.workspace) for i in fresh.list_revisions()} == {
        *((f"p{n}", "ws") for n in range(5)),
        ("p0", "other"),
        ("p0", "third"),
    }
    catalog_pages = [p for p in counting.paths if p.startswith("/v2/_catalog")]
    assert catalog_pages[0] == "/v2/_catalog?n=2"
    assert len(catalog_pages) > 3 and all("last=" in p for p in catalog_pages[1:])


def test_foreign_repositories_and_tags_are_ignored(registry: OciRegistry) -> None:
    repo = OciRepository(registry.registry("foreign"))
    info = draft(repo)
    http = raw_client(registry)
    body = http.get(
        f"/v2/foreign/pkg/manifests/{info.commit}", headers={"Accept": oci_client.MANIFEST_TYPE}
    ).content
    notes_stripped = json.loads(body)
    notes_stripped["annotations"] = {"x": "y"}
    put = http.put(
        "/v2/foreign/pkg/manifests/latest",
        content=json.dumps(notes_stripped).encode(),
        headers={"Content-Type": oci_client.MANIFEST_TYPE},
    )
    assert put.status_code == 201
    assert listing(repo) == {("pkg", "ws", 0, Lifecycle.DRAFT)}
    assert OciRepository(registry.registry("foreig")).list_revisions() == []


def test_concurrent_writers_conflict(registry: OciRegistry) -> None:
    spec = registry.registry("cas")
    one, two = OciRepository(spec), OciRepository(spec)
    base = draft(one)
    moved = one.set_lifecycle(base, Lifecycle.PROPOSED)
    with pytest.raises(Conflict, match="modified concurrently"):
        two.set_lifecycle(base, Lifecycle.PROPOSED)
    with pytest.raises(Conflict):
        two.publish(base, revision=1, author=JANE)
    # An undo never clobbers a later write either.
    assert moved.info is not None
    later = two.set_lifecycle(moved.info, Lifecycle.DRAFT)
    with pytest.raises(Conflict):
        moved.undo()
    assert later.info is not None
    assert find(one, "pkg", "ws").commit == later.info.commit


def test_only_version_tags_can_be_deleted(registry: OciRegistry) -> None:
    repo = OciRepository(registry.registry("onlyv"))
    published = publish(repo, draft(repo), 1)
    with pytest.raises(Forbidden):
        repo.delete(RevisionInfo("pkg", "ws", -1, Lifecycle.PUBLISHED, published.commit, "x"))


def test_bad_names_are_rejected(registry: OciRegistry) -> None:
    repo = OciRepository(registry.registry("names"))
    for package, workspace in [("Bad", "ws"), ("a//b", "ws"), ("pkg", "a/b"), ("pkg", "main")]:
        with pytest.raises((BadRequest, AlreadyExists)):
            draft(repo, package, workspace)


def test_fetch_oci_package(registry: OciRegistry) -> None:
    repo = OciRepository(registry.registry("up"))
    files = {"Kptfile": KPTFILE, "a.yaml": "a: 1\n"}
    published = publish(repo, draft(repo, "blue/app", "ws", files), 1)
    got, digest = fetch_oci_package(f"{registry.host}/up/blue/app:v1")
    assert (got, digest) == (files, published.commit)
    assert fetch_oci_package(f"{registry.host}/up/blue/app@{digest}")[0] == files
    with pytest.raises(NotFound):
        fetch_oci_package(f"{registry.host}/up/blue/app:v9")
    with pytest.raises(BadRequest):
        fetch_oci_package("no-slash")


# --- credentials ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured() -> Iterator[OciRegistry]:
    with registry_or_skip(basic=("alice", "s3cret-pw")) as reg:
        yield reg


def test_basic_auth_right_and_wrong(secured: OciRegistry) -> None:
    spec = secured.registry("auth")
    good = OciRepository(spec, credentials=OciCredentials("alice", "s3cret-pw"))
    published = publish(good, draft(good), 1)
    assert {i.revision for i in good.list_revisions()} == {-1, 1}
    for creds in (OciCredentials("alice", "wrong-pw"), None):
        bad = OciRepository(spec, credentials=creds)
        with pytest.raises(Unauthorized) as caught:
            bad.list_revisions()
        assert secured.host in str(caught.value) and "wrong-pw" not in str(caught.value)
        with pytest.raises(Unauthorized):
            draft(bad, "other")
    got, _ = fetch_oci_package(f"{secured.host}/auth/pkg:v1", OciCredentials("alice", "s3cret-pw"))
    assert got == {"Kptfile": KPTFILE}
    assert published.published_by == JANE.email
    assert "s3cret" not in repr(OciCredentials("alice", "s3cret-pw"))


def test_secret_is_read_lazily_and_reread_once(secured: OciRegistry) -> None:
    passwords = ["rotated-away", "s3cret-pw"]
    reads: list[tuple[str, str]] = []

    def reader(namespace: str, name: str) -> dict[str, str]:
        reads.append((namespace, name))
        return {"username": "alice", "password": passwords[min(len(reads), 2) - 1]}

    creds = secret_credentials("default", "registry-auth", reader)
    repo = OciRepository(secured.registry("rotate"), credentials=creds)
    assert reads == []  # nothing read before the registry asks
    assert repo.list_revisions() == []
    assert reads == [("default", "registry-auth")] * 2
    assert secret_credentials("default", "", reader) is None


def test_bearer_token_challenge_flow() -> None:
    """Registry answers 401 Bearer; the client fetches a token from the realm and retries."""
    seen: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        seen.append((request.method, request.url.path, auth))
        if request.url.host == "auth.example":
            assert auth.startswith("Basic ")
            assert request.url.params["service"] == "reg"
            assert request.url.params["scope"] == "registry:catalog:*"
            return httpx.Response(200, json={"token": "tok-1"})
        if auth != "Bearer tok-1":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://auth.example/token",'
                    'service="reg",scope="registry:catalog:*"'
                },
            )
        return httpx.Response(200, json={"repositories": []})

    repo = OciRepository(
        "reg.example/x",
        credentials=OciCredentials("bob", "pw"),
        transport=httpx.MockTransport(handler),
    )
    assert repo.list_revisions() == []
    assert repo.list_revisions() == []  # token cached: no second exchange
    assert [s[1] for s in seen].count("/token") == 1
    static = OciRepository(
        "reg.example/x",
        credentials=OciCredentials(bearer_token="tok-1"),
        transport=httpx.MockTransport(handler),
    )
    assert static.list_revisions() == []


# --- outages ------------------------------------------------------------------------------------


def test_registry_down_is_unavailable() -> None:
    host = f"127.0.0.1:{free_port()}"
    repo = OciRepository(f"{host}/x", credentials=OciCredentials("u", "secret-pw"), timeout=5)
    for call in (repo.list_revisions, repo.fetch, lambda: draft(repo)):
        with pytest.raises(Unavailable) as caught:
            call()
        assert host in str(caught.value) and "secret-pw" not in str(caught.value)


def test_registry_500_and_recovery(registry: OciRegistry) -> None:
    with FaultProxy(registry.url) as proxy:
        repo = OciRepository(f"{proxy.host}/faulty")
        v1 = publish(repo, draft(repo, files={"Kptfile": KPTFILE, "v.yaml": "1"}), 1)
        second = repo.set_lifecycle(draft(repo, workspace="ws2"), Lifecycle.PROPOSED).info
        assert second is not None
        before = listing(repo)

        proxy.fail = lambda method, path: True
        with pytest.raises(Unavailable, match=f"OCI registry {proxy.host} answered 500"):
            repo.list_revisions()
        with pytest.raises(Unavailable):
            repo.publish(second, revision=2, author=JANE)

        # Fail half-way through a publish: the placeholder update is refused, so the new
        # version tag is taken back and the proposed revision stays where it was.
        proxy.fail = lambda method, path: method == "PUT" and path.endswith("/manifests/main")
        with pytest.raises(Unavailable):
            repo.publish(second, revision=2, author=JANE)
        proxy.fail = None
        assert listing(repo) == before
        assert repo.read_files(find(repo, "pkg", "ws")) == {"Kptfile": KPTFILE, "v.yaml": "1"}
        assert repo.read_files(find(repo, "pkg", "main"))["v.yaml"] == "1"
        assert find(repo, "pkg", "ws").commit == v1.commit
        v2 = repo.publish(find(repo, "pkg", "ws2"), revision=2, author=JANE).info
        assert v2 is not None and v2.revision == 2


def test_registry_restart_keeps_published(registry: OciRegistry) -> None:
    repo = OciRepository(registry.registry("restart"), timeout=5)
    v1 = publish(repo, draft(repo), 1)
    registry.stop()
    try:
        with pytest.raises(Unavailable, match=registry.host):
            repo.list_revisions()
        with pytest.raises(Unavailable):
            repo.set_lifecycle(v1, Lifecycle.DELETION_PROPOSED)
    finally:
        registry.start()
    assert listing(repo) == {
        ("pkg", "ws", 1, Lifecycle.PUBLISHED),
        ("pkg", "main", -1, Lifecycle.PUBLISHED),
    }
    assert repo.read_files(v1) == {"Kptfile": KPTFILE}


def test_interrupted_publish_is_recovered(registry: OciRegistry) -> None:
    with FaultProxy(registry.url) as proxy:
        repo = OciRepository(f"{proxy.host}/crash")
        publish(repo, draft(repo, files={"Kptfile": KPTFILE, "v.yaml": "1"}), 1)
        working = draft(repo, workspace="ws2", files={"Kptfile": KPTFILE, "v.yaml": "2"})
        second = repo.set_lifecycle(working, Lifecycle.PROPOSED).info
        assert second is not None
        armed: list[bool] = []

        def crash_after_version_tag(method: str, path: str) -> bool:
            if armed:
                return True  # the registry "dies" right after v2 was written: no cleanup
            if method == "PUT" and path.endswith("/manifests/v2"):
                armed.append(True)
            return False

        proxy.fail = crash_after_version_tag
        with pytest.raises(Unavailable):
            repo.publish(second, revision=2, author=JANE)
        proxy.fail = None
        # v2 is there; the leftover working tag is hidden so names stay unique.
        assert listing(repo) == {
            ("pkg", "ws", 1, Lifecycle.PUBLISHED),
            ("pkg", "ws2", 2, Lifecycle.PUBLISHED),
            ("pkg", "main", -1, Lifecycle.PUBLISHED),
        }
        assert repo.read_files(find(repo, "pkg", "main"))["v.yaml"] == "1"
        notes = repo.recover()
        assert notes == [
            "moved tag crash/pkg:main to v2",
            "deleted tag crash/pkg:ws.ws2: already published as v2",
        ]
        assert repo.read_files(find(repo, "pkg", "main"))["v.yaml"] == "2"
        tags = raw_client(registry).get("/v2/crash/pkg/tags/list").json()["tags"]
        assert sorted(tags) == ["main", "v1", "v2"]
        assert repo.recover() == []


def test_bearer_token_flow_on_a_real_registry(tmp_path: Path) -> None:
    token = TokenServer("carol", "tok-pw", tmp_path)
    try:
        with registry_or_skip(tmp_path / "reg", token=token) as reg:
            challenge = httpx.get(f"{reg.url}/v2/").headers["www-authenticate"]
            assert challenge.startswith("Bearer realm=")
            good = OciRepository(reg.registry("tok"), credentials=OciCredentials("carol", "tok-pw"))
            published = publish(good, draft(good), 1)
            assert listing(good) == {
                ("pkg", "ws", 1, Lifecycle.PUBLISHED),
                ("pkg", "main", -1, Lifecycle.PUBLISHED),
            }
            good.delete(published)
            assert "registry:catalog:*" in token.issued
            assert any(s.startswith("repository:tok/pkg:") for s in token.issued)
            bad = OciRepository(reg.registry("tok"), credentials=OciCredentials("carol", "nope"))
            with pytest.raises(Unauthorized, match=reg.host):
                bad.list_revisions()
    finally:
        token.close()
