"""Issue #11 part 4: namespace isolation and secrets, against a real ``porch serve``.

Two namespaces, ``team-a`` and ``team-b``; alice may do anything in ``team-a`` and nothing
else. Whatever she asks (get, list, watch, field selectors, references in her own objects),
answers never carry the names or existence of ``team-b``'s objects. Secret data never reaches
the server log, a status, an event or an error message.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest

from porch.testing.git_server import GitHttpServer
from tests.reliability.conftest import F2Server, f2_start

ADMIN, ALICE = "f2-admin-token-0123456789", "f2-alice-token-0123456789"
TOKENS = f'{ADMIN},admin,1,"system:masters"\n{ALICE},alice,2,"team-a"\n'
POLICY = """\
rules:
- subjects: [{group: team-a}]
  namespaces: [team-a]
  apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
"""
PASSWORD = "pa55-Zq9-very-secret"  # the Secret's data; must never show up anywhere else
HIDDEN = ("repo-b", "secretpkg", "b-creds", "b-variant")  # team-b names alice must never see


def _pr(ns: str, repo: str, package: str, ws: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"namespace": ns},
        "spec": {"packageName": package, "repository": repo, "workspaceName": ws, **spec},
    }


def _repo(ns: str, name: str, url: str, secret: str = "") -> dict[str, Any]:
    git: dict[str, Any] = {"repo": url, "branch": "main", "createBranch": True}
    if secret:
        git["secretRef"] = {"name": secret}
    return {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "git", "git": git},
    }


def _apis(ns: str | None, plural: str) -> str:
    group = {
        "packagerevisions": "apis/porch.kpt.dev/v1alpha1",
        "packagerevisionresources": "apis/porch.kpt.dev/v1alpha1",
        "packages": "apis/porch.kpt.dev/v1alpha1",
        "repositories": "apis/config.porch.kpt.dev/v1alpha1",
        "packagevariants": "apis/config.porch.kpt.dev/v1alpha1",
        "secrets": "api/v1",
    }[plural]
    return f"/{group}/namespaces/{ns}/{plural}" if ns else f"/{group}/{plural}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[F2Server]:
    work = tmp_path_factory.mktemp("f2iso")
    (work / "tokens.csv").write_text(TOKENS)
    (work / "rbac.yaml").write_text(POLICY)
    server = f2_start(
        work,
        "--allow-anonymous",
        "--token-file",
        str(work / "tokens.csv"),
        "--rbac-file",
        str(work / "rbac.yaml"),
    )
    try:
        with server.client(ADMIN) as admin:
            for ns, name in (("team-a", "repo-a"), ("team-b", "repo-b")):
                bare = work / f"{name}.git"
                pygit2.init_repository(str(bare), bare=True, initial_head="main")
                made = admin.post(_apis(ns, "repositories"), json=_repo(ns, name, str(bare)))
                assert made.status_code == 201, made.text
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "b-creds", "namespace": "team-b"},
                "type": "kubernetes.io/basic-auth",
                "stringData": {"username": "bob", "password": PASSWORD},
            }
            assert admin.post(_apis("team-b", "secrets"), json=secret).status_code == 201
            made = admin.post(
                _apis("team-b", "packagerevisions"), json=_pr("team-b", "repo-b", "secretpkg")
            )
            assert made.status_code == 201, made.text
            variant = {
                "apiVersion": "config.porch.kpt.dev/v1alpha1",
                "kind": "PackageVariant",
                "metadata": {"name": "b-variant", "namespace": "team-b"},
                "spec": {"upstream": {"repo": "repo-b", "package": "secretpkg"}},
            }
            assert admin.post(_apis("team-b", "packagevariants"), json=variant).status_code == 201
            made = admin.post(
                _apis("team-a", "packagerevisions"), json=_pr("team-a", "repo-a", "mine")
            )
            assert made.status_code == 201, made.text
        yield server
    finally:
        server.stop()


@pytest.fixture
def alice(srv: F2Server) -> Iterator[httpx.Client]:
    with srv.client(ALICE) as c:
        yield c


def _no_leak(response: httpx.Response) -> None:
    for name in HIDDEN:
        assert name not in response.text, f"{name!r} leaked: {response.text[:400]}"
    assert PASSWORD not in response.text


PLURALS = [
    "packagerevisions",
    "packagerevisionresources",
    "packages",
    "repositories",
    "packagevariants",
    "secrets",
]


@pytest.mark.parametrize("plural", PLURALS)
def test_get_and_list_in_the_other_namespace_are_forbidden(
    alice: httpx.Client, plural: str
) -> None:
    listed = alice.get(_apis("team-b", plural))
    assert listed.status_code == 403, listed.text
    _no_leak(listed)
    assert alice.get(_apis("team-a", plural)).status_code == 200


@pytest.mark.parametrize(
    ("plural", "existing"),
    [
        ("packagerevisions", "repo-b.secretpkg.v1"),
        ("packagerevisionresources", "repo-b.secretpkg.v1"),
        ("packages", "repo-b.secretpkg"),
        ("repositories", "repo-b"),
        ("packagevariants", "b-variant"),
        ("secrets", "b-creds"),
    ],
)
def test_existence_cannot_be_guessed(alice: httpx.Client, plural: str, existing: str) -> None:
    """A guess that exists and one that does not get the same answer, up to the name."""
    answers = []
    for name in (existing, "repo-b.nothing-here.v1"):
        for method in ("GET", "DELETE", "PUT"):
            body = {"metadata": {"name": name, "namespace": "team-b"}} if method == "PUT" else None
            r = alice.request(method, f"{_apis('team-b', plural)}/{name}", json=body)
            assert r.status_code in (403, 405), r.text
            message = r.json()["message"].replace(name, "NAME")
            answers.append((method, r.status_code, message))
    half = len(answers) // 2
    assert answers[:half] == answers[half:]


@pytest.mark.parametrize("plural", PLURALS)
def test_all_namespace_lists_show_only_her_namespace(alice: httpx.Client, plural: str) -> None:
    everywhere = alice.get(_apis(None, plural))
    _no_leak(everywhere)
    if everywhere.status_code == 200:
        assert {i["metadata"]["namespace"] for i in everywhere.json()["items"]} <= {"team-a"}
    else:
        assert everywhere.status_code == 403


@pytest.mark.parametrize(
    "selector",
    [
        "metadata.namespace=team-b",
        "spec.repository=repo-b",
        "metadata.name=repo-b.secretpkg.v1",
        "spec.packageName=secretpkg",
    ],
)
def test_field_selectors_do_not_cross_namespaces(alice: httpx.Client, selector: str) -> None:
    for ns in ("team-a", None):
        r = alice.get(_apis(ns, "packagerevisions"), params={"fieldSelector": selector})
        _no_leak(r)
        if r.status_code == 200:
            assert r.json()["items"] == []
        elif r.status_code == 400:  # a namespace that contradicts the path's
            assert r.json()["message"] == "conflicting namespaces specified"
        else:
            assert r.status_code == 403
    guessed = alice.get(
        _apis("team-a", "secrets"), params={"fieldSelector": "metadata.namespace=team-b"}
    )
    assert guessed.status_code == 400
    _no_leak(guessed)


def test_references_to_other_namespaces_look_missing(alice: httpx.Client) -> None:
    """Naming team-b's objects from team-a answers as for names that do not exist."""
    probes = [
        ("repo-b", "repo-zz"),  # repository of a new draft
    ]
    for existing, missing in probes:
        real = alice.post(_apis("team-a", "packagerevisions"), json=_pr("team-a", existing, "x"))
        fake = alice.post(_apis("team-a", "packagerevisions"), json=_pr("team-a", missing, "x"))
        assert (real.status_code, fake.status_code) != (201, 201)
        assert real.status_code == fake.status_code
        assert real.json()["message"].replace(existing, "N") == fake.json()["message"].replace(
            missing, "N"
        )
    clone = {
        "type": "clone",
        "clone": {"upstreamRef": {"upstreamRef": {"name": "repo-b.secretpkg.v1"}}},
    }
    nothing = {
        "type": "clone",
        "clone": {"upstreamRef": {"upstreamRef": {"name": "repo-b.nothing.v1"}}},
    }
    real = alice.post(
        _apis("team-a", "packagerevisions"), json=_pr("team-a", "repo-a", "c1", tasks=[clone])
    )
    fake = alice.post(
        _apis("team-a", "packagerevisions"), json=_pr("team-a", "repo-a", "c2", tasks=[nothing])
    )
    assert real.status_code == fake.status_code and real.status_code >= 400, real.text
    assert real.json()["message"].replace("secretpkg", "N") == fake.json()["message"].replace(
        "nothing", "N"
    )
    # Repositories of hers that name team-b's Secret and a missing one: refs resolve in her
    # own namespace, so both fare the same and nothing of team-b's Secret shows.
    conditions = []
    for name, ref in (("steal", "b-creds"), ("steal-nothing", "no-such-secret")):
        made = alice.post(
            _apis("team-a", "repositories"),
            json=_repo("team-a", name, "http://127.0.0.1:9/x.git", ref),
        )
        assert made.status_code == 201, made.text
        assert PASSWORD not in made.text and "bob" not in made.text
        conditions.append(made.json()["status"]["conditions"][0]["message"].replace(ref, "REF"))
        assert alice.delete(f"{_apis('team-a', 'repositories')}/{name}").status_code == 200
    assert conditions[0] == conditions[1]


def test_watch_never_delivers_other_namespaces(srv: F2Server, alice: httpx.Client) -> None:
    forbidden = alice.get(_apis("team-b", "packagerevisions"), params={"watch": "true"})
    assert forbidden.status_code == 403
    _no_leak(forbidden)
    seen: list[str] = []
    done = threading.Event()

    def watch(path: str, params: dict[str, str]) -> None:
        try:
            with (
                srv.client(ALICE, timeout=60) as c,
                c.stream(
                    "GET", path, params={"watch": "true", "timeoutSeconds": "8", **params}
                ) as r,
            ):
                seen.append(f"status {r.status_code}")
                for line in r.iter_lines():
                    seen.append(line)
                    if "sentinel" in line:
                        return
        except httpx.HTTPError as exc:
            seen.append(f"ended: {exc}")
        finally:
            done.set()

    streams = [
        (_apis("team-a", "packagerevisions"), {}),
        (_apis("team-a", "packagerevisions"), {"fieldSelector": "metadata.namespace=team-b"}),
        (_apis(None, "packagerevisions"), {}),
        (_apis("team-a", "secrets"), {}),
    ]
    threads = [threading.Thread(target=watch, args=s, daemon=True) for s in streams]
    for t in threads:
        t.start()
    time.sleep(0)  # the streams register before the writes below or replay them: both are fine
    with srv.client(ADMIN) as admin:
        made = admin.post(
            _apis("team-b", "packagerevisions"), json=_pr("team-b", "repo-b", "secretpkg-two")
        )
        assert made.status_code == 201
        secret = {"metadata": {"name": "b-creds-2"}, "stringData": {"password": PASSWORD}}
        assert admin.post(_apis("team-b", "secrets"), json=secret).status_code == 201
        # The sentinel ends the team-a streams; the others end by timeoutSeconds.
        made = admin.post(
            _apis("team-a", "packagerevisions"), json=_pr("team-a", "repo-a", "sentinel")
        )
        assert made.status_code == 201
    for t in threads:
        t.join(60)
    text = "\n".join(seen)
    assert "sentinel" in text, text[:1000]  # the streams did deliver her own events
    for name in HIDDEN:
        assert name not in text
    assert PASSWORD not in text and base64.b64encode(PASSWORD.encode()).decode() not in text


def test_secret_data_stays_out_of_logs_status_and_errors(srv: F2Server) -> None:
    b64 = base64.b64encode(PASSWORD.encode()).decode()
    with srv.client(ADMIN) as admin:
        # A Secret whose data is not base64: the 400 must not echo it.
        bad = {"metadata": {"name": "bad"}, "data": {"password": PASSWORD + "!*"}}
        r = admin.post(_apis("team-b", "secrets"), json=bad)
        assert r.status_code in (400, 422), r.text
        assert PASSWORD not in r.text
        # A broken body carrying the secret.
        r = admin.post(
            _apis("team-b", "secrets"), content=b'{"stringData": {"p": "' + PASSWORD.encode()
        )
        assert r.status_code == 400 and PASSWORD not in r.text
        # A repository using the Secret against a remote that refuses the credentials.
        made = admin.post(
            _apis("team-b", "repositories"),
            json=_repo("team-b", "uses-creds", "http://127.0.0.1:9/nowhere.git", "b-creds"),
        )
        assert made.status_code in (201, 422, 503), made.text
        assert PASSWORD not in made.text and b64 not in made.text
        status = admin.get(f"{_apis('team-b', 'repositories')}/uses-creds")
        assert PASSWORD not in status.text and b64 not in status.text
        events = admin.get(
            _apis("team-b", "repositories"), params={"watch": "true", "timeoutSeconds": "1"}
        )
        assert PASSWORD not in events.text and b64 not in events.text
        # Reading the Secret itself is fine for the admin; it must not reach the log.
        assert (
            PASSWORD
            in base64.b64decode(
                admin.get(f"{_apis('team-b', 'secrets')}/b-creds").json()["data"]["password"]
            ).decode()
        )
    log = srv.log()
    assert log, "the server logged nothing"
    assert PASSWORD not in log and b64 not in log
    assert ADMIN not in log and ALICE not in log
    json_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("resource") == "secrets" for line in json_lines)


@pytest.mark.parametrize("code", [301, 302])
def test_credentials_are_not_sent_to_another_host_on_redirect(
    srv: F2Server, tmp_path: Path, code: int
) -> None:
    root = tmp_path / "remotes"
    pygit2.init_repository(str(root / "r.git"), bare=True, initial_head="main")
    with (
        GitHttpServer(root, basic=("bob", PASSWORD)) as direct,
        GitHttpServer(root, basic=("bob", PASSWORD)) as elsewhere,
    ):
        # Another host: same machine, other name and port, so only the origin differs.
        target = elsewhere.url.replace("127.0.0.1", "localhost")
        with GitHttpServer(root, basic=("bob", PASSWORD), redirect_to=target) as redirector:
            redirector.redirect_code = code
            with srv.client(ADMIN, timeout=60) as admin:
                # The credentials work where they belong ...
                made = admin.post(
                    _apis("team-b", "repositories"),
                    json=_repo("team-b", f"direct-{code}", direct.repo_url("r.git"), "b-creds"),
                )
                assert made.status_code == 201, made.text
                assert made.json()["status"]["conditions"][0]["status"] == "True", made.text
                assert any(r.authorization.startswith("Basic ") for r in direct.requests)
                # ... and are not handed to the host a redirect points at.
                made = admin.post(
                    _apis("team-b", "repositories"),
                    json=_repo("team-b", f"moved-{code}", redirector.repo_url("r.git"), "b-creds"),
                )
                assert made.status_code == 201, made.text
                condition = made.json()["status"]["conditions"][0]
                assert condition["status"] == "False"
                assert "redirected to another host" in condition["message"]
                assert PASSWORD not in made.text
    assert redirector.requests, "porch never reached the redirecting server"
    assert elsewhere.requests, "libgit2 did not follow the redirect: the test proves nothing"
    assert [r.authorization for r in elsewhere.requests] == [""] * len(elsewhere.requests)
    assert PASSWORD not in srv.log()
