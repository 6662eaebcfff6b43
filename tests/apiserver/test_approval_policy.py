"""Approval policy and readiness gates through a real ``porch serve`` (tokens + RBAC), httpx
and porchctl (docs/approval.md)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest

from tests.apiserver.conftest import PR_PATH, REPO_PATH, draft
from tests.apiserver.served import Kubectl, Served, have_kubectl, start
from tests.cli.conftest import Porchctl

TOKENS = """\
admin-token,admin,admin,"system:masters"
alice-token,alice,alice,"team-a"
bob-token,bob,bob,"release"
carol-token,carol,carol,"release"
dave-token,dave,dave,"team-a"
erin-token,erin,erin,"release"
"""
# Everyone in team-a or release edits packages; release and dave may use the approval
# subresource (so dave's refusals below come from the repository's policy, not from RBAC).
POLICY = """\
rules:
- subjects: [{group: team-a}, {group: release}]
  namespaces: [default]
  apiGroups: [porch.kpt.dev]
  resources: [packagerevisions, packagerevisionresources]
  verbs: ["*"]
- subjects: [{group: release}, {user: dave}]
  namespaces: [default]
  apiGroups: [porch.kpt.dev]
  resources: [packagerevisions/approval]
  verbs: [get, update, patch]
- subjects: [{group: system:authenticated}]
  namespaces: [default]
  apiGroups: [config.porch.kpt.dev]
  resources: [repositories]
  verbs: [get, list, watch]
"""


class Api:
    def __init__(self, served: Served) -> None:
        self.served = served
        self._http = httpx.Client(
            base_url=served.url,
            verify=ssl.create_default_context(cafile=served.data_dir / "pki" / "ca.crt"),
            timeout=60,
        )

    def request(
        self, method: str, path: str, user: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {**(headers or {}), "authorization": f"Bearer {user}-token"}
        return self._http.request(method, path, headers=headers, **kw)

    def ok(self, method: str, path: str, user: str, **kwargs: Any) -> dict[str, Any]:
        r = self.request(method, path, user, **kwargs)
        assert r.status_code in (200, 201), r.text
        body: dict[str, Any] = r.json()
        return body

    def register(self, name: str, root: Path, policy: dict[str, Any] | None) -> httpx.Response:
        bare = root / f"{name}.git"
        if not bare.exists():
            pygit2.init_repository(str(bare), bare=True, initial_head="main")
        spec: dict[str, Any] = {
            "type": "git",
            "git": {"repo": str(bare), "branch": "main", "createBranch": True},
        }
        if policy is not None:
            spec["approvalPolicy"] = policy
        body = {"metadata": {"name": name}, "spec": spec}
        return self.request("POST", REPO_PATH, "admin", json=body)

    def move(
        self, name: str, lifecycle: str, user: str, *, approval: bool = False
    ) -> httpx.Response:
        obj = self.ok("GET", f"{PR_PATH}/{name}", user)
        obj["spec"]["lifecycle"] = lifecycle
        path = f"{PR_PATH}/{name}" + ("/approval" if approval else "")
        return self.request("PUT", path, user, json=obj)

    def approve(self, name: str, user: str) -> httpx.Response:
        return self.move(name, "Published", user, approval=True)

    def close(self) -> None:
        self._http.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("approval")


@pytest.fixture(scope="module")
def served(root: Path) -> Iterator[Served]:
    (root / "tokens.csv").write_text(TOKENS)
    (root / "rbac.yaml").write_text(POLICY)
    srv = start(
        root / "data",
        "--token-file",
        str(root / "tokens.csv"),
        "--rbac-file",
        str(root / "rbac.yaml"),
        "--no-sync",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(served: Served) -> Iterator[Api]:
    client = Api(served)
    yield client
    client.close()


def porchctl(served: Served, root: Path, command: str) -> tuple[int, str, str]:
    work = root / "work"
    work.mkdir(exist_ok=True)
    result = Porchctl(served, work, root / "unused.git")(command)
    return result.exit_code, result.stdout, result.stderr


def users(obj: dict[str, Any]) -> list[str]:
    return [a["user"] for a in obj["status"].get("approvals") or []]


def test_policy_is_validated_and_defaulted(api: Api, root: Path) -> None:
    bad = api.register("bad", root, {"minApprovals": 0})
    assert bad.status_code == 422
    assert bad.json()["reason"] == "Invalid"
    assert (
        "spec.approvalPolicy.minApprovals: Invalid value: 0: must be greater than or equal"
        in (bad.json()["message"])
    )
    made = api.register("defaults", root, {"approverGroups": ["release"]})
    assert made.status_code == 201, made.text
    policy = api.ok("GET", f"{REPO_PATH}/defaults", "alice")["spec"]["approvalPolicy"]
    assert policy == {"minApprovals": 1, "proposerMayApprove": True, "approverGroups": ["release"]}
    typo = api.request(
        "PATCH",
        f"{REPO_PATH}/defaults",
        "admin",
        json={"spec": {"approvalPolicy": {"minApproval": 2}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert typo.status_code == 422
    assert "spec.approvalPolicy.minApproval: Forbidden: unknown field" in typo.json()["message"]
    # The OpenAPI document describes the new fields (kubectl explain, kubectl apply validation).
    doc = api.ok("GET", "/openapi/v3/apis/config.porch.kpt.dev/v1alpha1", "admin")
    schema = doc["components"]["schemas"]["dev.kpt.porch.config.v1alpha1.ApprovalPolicy"]
    assert schema["properties"]["minApprovals"]["minimum"] == 1
    assert schema["properties"]["approverGroups"]["type"] == "array"


def test_policy_refusals_and_the_right_approvals_publish(
    api: Api, served: Served, root: Path
) -> None:
    policy = {"minApprovals": 2, "proposerMayApprove": False, "approverGroups": ["release"]}
    assert api.register("strict", root, policy).status_code == 201
    name = "strict.app.v1"
    api.ok("POST", PR_PATH, "bob", json=draft("app", repository="strict"))
    proposed = api.move(name, "Proposed", "bob")
    assert proposed.json()["status"]["proposedBy"] == "bob"

    own = api.approve(name, "bob")
    assert (own.status_code, own.json()["reason"]) == (403, "Forbidden")
    assert own.json()["message"] == (
        f'packagerevisions.porch.kpt.dev "{name}" is forbidden: User "bob" proposed this'
        ' revision, and the approval policy of repository "strict" does not let the proposer'
        " approve it"
    )
    outsider = api.approve(name, "dave")
    assert outsider.status_code == 403
    assert outsider.json()["message"].endswith(
        'User "dave" is not in an approver group of repository "strict" (release)'
    )

    first = api.approve(name, "carol")
    assert first.status_code == 200, first.text
    assert first.json()["spec"]["lifecycle"] == "Proposed"
    assert users(first.json()) == ["carol"]
    assert first.headers["warning"] == (
        f'299 - "approval by \\"carol\\" recorded for {name} (1 of 2); it stays Proposed until'
        ' 1 more eligible user approves"'
    )
    twice = api.approve(name, "carol")
    assert twice.status_code == 403
    assert (
        'User "carol" has already approved this revision (1 of 2 approvals)'
        in (twice.json()["message"])
    )

    # porchctl prints the server's refusal, and exits non-zero.
    code, out, err = porchctl(served, root, f"rpkg approve {name} --token dave-token")
    assert code != 0 and out == ""
    assert 'User "dave" is not in an approver group of repository "strict"' in err

    code, out, err = porchctl(served, root, f"rpkg approve {name} --token erin-token")
    assert (code, out) == (0, f"{name} approved\n"), err
    published = api.ok("GET", f"{PR_PATH}/{name}", "alice")
    assert (published["spec"]["lifecycle"], published["spec"]["revision"]) == ("Published", 1)
    assert users(published) == ["carol", "erin"]
    assert published["status"]["proposedBy"] == "bob"
    assert published["status"]["publishedBy"] == "erin"
    assert all(a["time"] for a in published["status"]["approvals"])


def test_porchctl_reports_a_recorded_approval_that_does_not_publish(
    api: Api, served: Served, root: Path
) -> None:
    policy = {"minApprovals": 2}
    assert api.register("pair", root, policy).status_code == 201
    name = "pair.app.v1"
    api.ok("POST", PR_PATH, "alice", json=draft("app", repository="pair"))
    assert api.move(name, "Proposed", "alice").status_code == 200
    code, out, err = porchctl(served, root, f"rpkg approve {name} --token bob-token")
    assert (code, out) == (0, f"{name} approval recorded, still Proposed (approved by bob)\n"), err
    code, out, err = porchctl(served, root, f"rpkg approve {name} --token carol-token")
    assert (code, out) == (0, f"{name} approved\n"), err


@pytest.mark.skipif(not have_kubectl(), reason="kubectl is not installed")
def test_kubectl_prints_the_warning_and_explains_the_policy(
    api: Api, served: Served, root: Path
) -> None:
    assert api.register("duo", root, {"minApprovals": 2}).status_code == 201
    name = "duo.app.v1"
    api.ok("POST", PR_PATH, "alice", json=draft("app", repository="duo"))
    assert api.move(name, "Proposed", "alice").status_code == 200
    kubectl = Kubectl(served.kubeconfig, root / "kubectl-cache")
    result = kubectl.run(
        "patch",
        "packagerevision",
        name,
        "--subresource=approval",
        "--type=merge",
        "-p",
        '{"spec": {"lifecycle": "Published"}}',
        "--token",
        "bob-token",
    )
    assert (
        f'Warning: approval by "bob" recorded for {name} (1 of 2); it stays Proposed until 1'
        " more eligible user approves"
    ) in result.stderr
    assert api.ok("GET", f"{PR_PATH}/{name}", "bob")["spec"]["lifecycle"] == "Proposed"
    explained = kubectl("explain", "repositories.spec.approvalPolicy")
    assert "minApprovals" in explained and "Distinct eligible users" in explained


def test_unready_gate_is_refused_by_the_server(api: Api, root: Path) -> None:
    assert api.register("plain", root, None).status_code == 201
    name = "plain.gated.v1"
    body = draft("gated", repository="plain", readinessGates=[{"conditionType": "tested"}])
    api.ok("POST", PR_PATH, "alice", json=body)
    assert api.move(name, "Proposed", "alice").status_code == 200
    refused = api.approve(name, "bob")
    assert refused.status_code == 422
    status = refused.json()
    assert (status["reason"], status["message"]) == (
        "Invalid",
        f'readiness conditions not met for {name}: gate "tested" has no condition',
    )
    assert status["details"]["causes"][0]["field"] == "status.conditions[tested]"
    assert api.ok("GET", f"{PR_PATH}/{name}", "bob")["spec"]["lifecycle"] == "Proposed"

    assert api.move(name, "Draft", "bob", approval=True).status_code == 200
    obj = api.ok("GET", f"{PR_PATH}/{name}", "alice")
    obj["status"]["conditions"] = [{"type": "tested", "status": "True", "reason": "Passed"}]
    api.ok("PUT", f"{PR_PATH}/{name}", "alice", json=obj)
    assert api.move(name, "Proposed", "alice").status_code == 200
    approved = api.approve(name, "bob")
    assert approved.status_code == 200, approved.text
    assert approved.json()["spec"]["lifecycle"] == "Published"
    assert "warning" not in approved.headers
