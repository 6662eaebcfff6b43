"""Client behaviour that needs no server: retries, readiness gates, errors, kubeconfigs."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from porch.client import (
    ConfigError,
    Conflict,
    LifecycleVerbs,
    Outcome,
    PorchClient,
    PreconditionFailed,
    ServerError,
    TransportError,
    load_kubeconfig,
)
from porch.client._errors import error_from_response

NAME = "demo.app.v1"


def pr_body(
    lifecycle: str, *, gates: list[str] | None = None, conditions: dict[str, str] | None = None
) -> Any:
    return {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"name": NAME, "namespace": "default", "resourceVersion": "7"},
        "spec": {
            "packageName": "app",
            "repository": "demo",
            "workspaceName": "v1",
            "lifecycle": lifecycle,
            "readinessGates": [{"conditionType": g} for g in gates or []],
        },
        "status": {"conditions": [{"type": t, "status": s} for t, s in (conditions or {}).items()]},
    }


def status(code: int, reason: str, message: str) -> httpx.Response:
    body = {"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason}
    return httpx.Response(code, json={**body, "message": message})


class Server:
    """A scripted server: GET returns the current object, PUTs are answered from a queue."""

    def __init__(self, current: Any, puts: list[httpx.Response]) -> None:
        self.current = current
        self.puts = puts
        self.seen: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.seen.append((request.method, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(200, json=self.current)
        return self.puts.pop(0)


def client_for(server: Server) -> PorchClient:
    return PorchClient("http://porch.test", transport=httpx.MockTransport(server))


def test_propose_retries_on_conflict_then_succeeds() -> None:
    conflict = status(409, "Conflict", "the object has been modified")
    server = Server(
        pr_body("Draft"), [conflict, conflict, httpx.Response(200, json=pr_body("Proposed"))]
    )
    sleeps: list[float] = []
    outcome, pr = LifecycleVerbs(client_for(server), sleep=sleeps.append).propose(NAME)
    assert outcome is Outcome.CHANGED and pr.spec.lifecycle == "Proposed"
    assert [m for m, _p, _b in server.seen] == ["GET", "PUT", "GET", "PUT", "GET", "PUT"]
    assert len(sleeps) == 2
    assert server.seen[1][2]["spec"]["lifecycle"] == "Proposed"


def test_approve_gives_up_after_five_conflicts() -> None:
    server = Server(pr_body("Proposed"), [status(409, "Conflict", "busy") for _ in range(5)])
    with pytest.raises(Conflict):
        LifecycleVerbs(client_for(server), sleep=lambda _s: None).approve(NAME)
    puts = [p for m, p, _b in server.seen if m == "PUT"]
    assert len(puts) == 5 and all(p.endswith("/approval") for p in puts)


def test_readiness_gates_block_propose_and_approve_without_a_write() -> None:
    body = pr_body("Draft", gates=["ready", "tested"], conditions={"ready": "True"})
    server = Server(body, [])
    with pytest.raises(PreconditionFailed, match="readiness conditions not met.*tested"):
        LifecycleVerbs(client_for(server)).propose(NAME)
    server.current = pr_body("Proposed", gates=["ready"], conditions={"ready": "False"})
    with pytest.raises(PreconditionFailed):
        LifecycleVerbs(client_for(server)).approve(NAME)
    assert all(m == "GET" for m, _p, _b in server.seen)


def test_reject_uses_approval_for_proposed_and_main_for_deletion_proposed() -> None:
    server = Server(pr_body("Proposed"), [httpx.Response(200, json=pr_body("Draft"))])
    LifecycleVerbs(client_for(server)).reject(NAME)
    server.current = pr_body("DeletionProposed")
    server.puts.append(httpx.Response(200, json=pr_body("Published")))
    LifecycleVerbs(client_for(server)).reject(NAME)
    puts = [(p, b["spec"]["lifecycle"]) for m, p, b in server.seen if m == "PUT"]
    assert puts[0][0].endswith(f"/{NAME}/approval") and puts[0][1] == "Draft"
    assert puts[1][0].endswith(f"/{NAME}") and puts[1][1] == "Published"


def test_wrong_lifecycle_is_a_precondition_failure() -> None:
    server = Server(pr_body("Published"), [])
    lc = LifecycleVerbs(client_for(server))
    with pytest.raises(PreconditionFailed, match="cannot propose Published package"):
        lc.propose(NAME)
    with pytest.raises(PreconditionFailed, match="cannot reject .* 'Published'"):
        lc.reject(NAME)
    server.current = pr_body("Draft")
    with pytest.raises(PreconditionFailed, match="is not published"):
        lc.propose_delete(NAME)


def test_errors_without_a_status_body_and_unknown_codes() -> None:
    err = error_from_response(httpx.Response(502, text="bad gateway\nmore"))
    assert isinstance(err, ServerError) and err.status == 502 and str(err) == "bad gateway"
    err = error_from_response(httpx.Response(418, content=b""))
    assert isinstance(err, ServerError) and str(err) == "HTTP 418"


def test_connection_failure_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = PorchClient("http://porch.test", transport=httpx.MockTransport(refuse))
    with pytest.raises(TransportError, match="cannot reach http://porch.test: Connection refused"):
        client.list_package_revisions()


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
            {"name": "y", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_token_namespace_and_contexts(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    cfg = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://h:6443/", "insecure-skip-tls-verify": True},
        {"tokenFile": "tok"},
    )
    conn = load_kubeconfig(cfg)
    assert (conn.server, conn.namespace, conn.token) == ("https://h:6443", "team", "from-file")
    assert conn.headers() == {"Authorization": "Bearer from-file"}
    ctx = conn.ssl_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_NONE
    assert load_kubeconfig(cfg, context="y").namespace == "default"
    with pytest.raises(ConfigError, match='no context named "z"'):
        load_kubeconfig(cfg, context="z")


def test_kubeconfig_ca_data_basic_auth_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_kubeconfig(
        tmp_path / "config",
        {"server": "http://h", "certificate-authority-data": base64.b64encode(b"PEM").decode()},
        {"username": "alice", "password": "pw"},
    )
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    conn = load_kubeconfig()
    assert conn.ca_pem == b"PEM" and conn.ssl_context() is True  # plain http: no TLS at all
    assert conn.headers()["Authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()


def test_kubeconfig_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        load_kubeconfig(tmp_path / "missing")
    cfg = write_kubeconfig(tmp_path / "exec", {"server": "https://h"}, {"exec": {"command": "x"}})
    with pytest.raises(ConfigError, match="exec/auth-provider"):
        load_kubeconfig(cfg)
    cfg = write_kubeconfig(tmp_path / "noserver", {}, {})
    with pytest.raises(ConfigError, match="has no server"):
        load_kubeconfig(cfg)
    (tmp_path / "bad").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not a YAML mapping"):
        load_kubeconfig(tmp_path / "bad")
