"""deploy/ and the Containerfile: valid manifests that match what the porch CLI accepts.

Every YAML document in deploy/ is parsed; kinds and apiVersions must be real Kubernetes
kinds; every flag the manifests pass to ``porch serve`` / ``porch fn-runner`` must be one of
that command's options; Services must select the pods of a Deployment and name ports the
containers expose; the APIServices must cover every group version the server serves.

kubectl (when on PATH) checks the manifests too: ``kubectl kustomize deploy/`` offline, and
``kubectl apply --dry-run=client --validate=false -o name`` against a stub discovery server on
127.0.0.1 (client dry-run still needs the server's discovery to map kinds to resources; the
stub answers discovery for the kinds used here and 404 for every object).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import click.testing
import pytest
import yaml

from porch.cli.admin import main as porch_cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CONTAINERFILE = ROOT / "Containerfile"

# (apiVersion, kind) -> (plural, namespaced): the Kubernetes kinds deploy/ may use.
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apiregistration.k8s.io/v1", "APIService"): ("apiservices", False),
}
NOT_OBJECTS = {"kustomization.yaml"}


def manifest_files() -> list[Path]:
    return sorted(
        p for p in DEPLOY.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in NOT_OBJECTS
    )


def load_all() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


DOCS = load_all()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def porch_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for dep in of_kind("Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if "porch" in c["image"]:
                yield dep, c


def options_of(command: str) -> dict[str, click.Parameter]:
    cmd = porch_cli.commands[command]
    out: dict[str, click.Parameter] = {}
    for param in cmd.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            out[opt] = param
    return out


def flags_in(args: list[str]) -> list[tuple[str, str | None]]:
    """(flag, value) pairs of an argument list: ``--x=y``, ``--x y`` and bare ``--x``."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            if "=" in arg:
                flag, value = arg.split("=", 1)
                out.append((flag, value))
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                out.append((arg, args[i + 1]))
                i += 1
            else:
                out.append((arg, None))
        i += 1
    return out


# --- parsing and kinds ---------------------------------------------------------------------


def test_every_document_is_a_known_kubernetes_kind() -> None:
    assert manifest_files(), "deploy/ has no manifests"
    for doc in DOCS:
        where = f"{doc['__file__']}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        assert key in KINDS, f"{where}: unknown apiVersion/kind {key}"
        meta = doc.get("metadata") or {}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.:]*[a-z0-9])?", meta.get("name", "")), where
        namespaced = KINDS[key][1]
        assert bool(meta.get("namespace")) == namespaced, f"{where}: namespace {meta}"
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in DOCS]
    assert len(names) == len(set(names)), "an object is defined twice"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]


def test_namespaced_objects_live_in_a_defined_namespace() -> None:
    defined = {d["metadata"]["name"] for d in of_kind("Namespace")} | {"kube-system"}
    for doc in DOCS:
        ns = doc["metadata"].get("namespace")
        assert ns is None or ns in defined, f"{doc['__file__']}: namespace {ns} not defined"


# --- the porch commands ---------------------------------------------------------------------


def test_porch_flags_exist_in_the_cli() -> None:
    seen = set()
    for dep, c in porch_containers():
        args = [*c.get("command", [])[1:], *c.get("args", [])]
        command = args[0]
        assert command in ("serve", "fn-runner"), f"{dep['metadata']['name']}: {command}"
        seen.add(command)
        known = options_of(command)
        for flag, value in flags_in(args[1:]):
            assert flag in known, f"porch {command} has no option {flag}"
            param = known[flag]
            if getattr(param, "is_flag", False):
                assert value is None, f"porch {command} {flag} takes no value"
            else:
                assert value is not None, f"porch {command} {flag} needs a value"
    assert seen == {"serve", "fn-runner"}


def test_porch_flags_appear_in_help_output() -> None:
    """The same check against the ``--help`` text a user reads."""
    runner = click.testing.CliRunner()
    for command in ("serve", "fn-runner"):
        result = runner.invoke(porch_cli, [command, "--help"])
        assert result.exit_code == 0, result.output
        for _dep, c in porch_containers():
            args = c.get("args", [])
            if args and args[0] == command:
                for flag, _ in flags_in(args[1:]):
                    assert re.search(rf"(^|\s|,){re.escape(flag)}\b", result.output), flag


def test_serve_store_comes_from_the_postgres_secret() -> None:
    secrets = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind("Secret")}
    for dep, c in porch_containers():
        if c["args"][0] != "serve":
            continue
        flags = dict(flags_in(c["args"][1:]))
        store = flags["--store"]
        assert store is not None
        var = re.fullmatch(r"\$\((\w+)\)", store)
        assert var, f"--store must come from the environment, not be written out: {store}"
        env = {e["name"]: e for e in c["env"]}
        ref = env[var.group(1)]["valueFrom"]["secretKeyRef"]
        secret = secrets[(dep["metadata"]["namespace"], ref["name"])]
        url = secret["stringData"][ref["key"]]
        assert url.startswith("postgresql://")
        assert flags["--listen"] and flags["--listen"].startswith("0.0.0.0:")
        # TLS files come from a mounted Secret of type kubernetes.io/tls
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        for flag, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
            path = flags[flag]
            assert path is not None and path.endswith("/" + key)
            volume = volumes[mounts[path.rsplit("/", 1)[0]]]
            tls = secrets[(dep["metadata"]["namespace"], volume["secret"]["secretName"])]
            assert tls["type"] == "kubernetes.io/tls" and key in tls["stringData"]
        port = int(flags["--listen"].rsplit(":", 1)[1])
        assert port in [p["containerPort"] for p in c["ports"]]


def test_function_runner_address_is_the_runner_service() -> None:
    services = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind("Service")}
    for dep, c in porch_containers():
        if c["args"][0] != "serve":
            continue
        target = dict(flags_in(c["args"][1:]))["--function-runner"]
        assert target is not None
        host, port = target.rsplit(":", 1)
        service = services[(dep["metadata"]["namespace"], host.split(".")[0])]
        assert int(port) in [p["port"] for p in service["spec"]["ports"]]
        runner = [
            d
            for d in of_kind("Deployment")
            if selects(service, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert runner, f"Service {host} selects no Deployment"
        listen = dict(flags_in(runner[0]["spec"]["template"]["spec"]["containers"][0]["args"]))
        assert listen["--listen"] == "0.0.0.0:9445"


# --- wiring between objects ------------------------------------------------------------------


def selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_deployment_selectors_match_their_pods() -> None:
    for dep in of_kind("Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        for k, v in dep["spec"]["selector"]["matchLabels"].items():
            assert labels.get(k) == v, dep["metadata"]["name"]
        assert dep["spec"]["replicas"] >= 1


def test_services_select_a_deployment_and_its_ports() -> None:
    for svc in of_kind("Service"):
        ns = svc["metadata"]["namespace"]
        matched = [
            d
            for d in of_kind("Deployment")
            if d["metadata"]["namespace"] == ns
            and selects(svc, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)}"
        containers = matched[0]["spec"]["template"]["spec"]["containers"]
        ports = {p.get("name"): p["containerPort"] for c in containers for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"targetPort {target}"


def test_pods_use_existing_service_accounts() -> None:
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind("ServiceAccount")
    }
    for dep in of_kind("Deployment"):
        sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        assert (dep["metadata"]["namespace"], sa) in accounts


def test_aggregated_server_rbac() -> None:
    server = [d for d, c in porch_containers() if c["args"][0] == "serve"][0]
    subject = {
        "kind": "ServiceAccount",
        "name": server["spec"]["template"]["spec"]["serviceAccountName"],
        "namespace": server["metadata"]["namespace"],
    }
    delegator = [
        b
        for b in of_kind("ClusterRoleBinding")
        if b["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
        }
    ]
    assert delegator and subject in delegator[0]["subjects"]
    reader = [
        b
        for b in of_kind("RoleBinding")
        if b["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    ]
    assert reader and reader[0]["metadata"]["namespace"] == "kube-system"
    assert reader[0]["roleRef"]["kind"] == "Role"
    assert subject in reader[0]["subjects"]


def served_group_versions(tmp: Path) -> set[tuple[str, str]]:
    from porch.apiserver.registry import build_registry
    from porch.engine import Engine
    from porch.store import SqliteStore

    engine = Engine(store=SqliteStore(tmp / "store.db"), opener=lambda repo: None)  # type: ignore[arg-type,return-value]
    registry = build_registry(engine)
    return {(g, v) for g, versions in registry.group_versions().items() for v in versions}


def test_apiservices_cover_every_served_group_version(tmp_path: Path) -> None:
    services = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind("Service")}
    registered = set()
    for api in of_kind("APIService"):
        spec = api["spec"]
        assert api["metadata"]["name"] == f"{spec['version']}.{spec['group']}"
        ref = spec["service"]
        svc = services[(ref["namespace"], ref["name"])]
        assert ref["port"] in [p["port"] for p in svc["spec"]["ports"]]
        assert spec.get("caBundle") or api["metadata"].get("annotations", {}).get(
            "cert-manager.io/inject-ca-from"
        ), "an APIService needs a caBundle (or cert-manager's injection)"
        assert not spec.get("insecureSkipTLSVerify")
        assert 0 < spec["groupPriorityMinimum"] <= 20000 and 0 < spec["versionPriority"] <= 1000
        registered.add((spec["group"], spec["version"]))
    assert registered == served_group_versions(tmp_path)


def test_containerfile() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"apt-get install[^\n]*\bgit\b", text)
    assert re.search(r'^ENTRYPOINT \["porch"\]', text, re.M)
    assert re.search(r"pip install[^\n]* \.", text)
    images = {c["image"] for _d, c in porch_containers()}
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert {i["name"] for i in kustomization["images"]} == {i.split(":")[0] for i in images}


# --- kubectl ---------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not on PATH: the kubectl checks of deploy/ were not run")
    return path


def test_kubectl_kustomize_builds_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    key = lambda d: (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, DOCS))


class _Discovery(BaseHTTPRequestHandler):
    """Answers discovery for the kinds in KINDS; every object is 404 (nothing exists)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        groups: dict[str, list[tuple[str, str, bool]]] = {}
        for (api_version, kind), (plural, namespaced) in KINDS.items():
            groups.setdefault(api_version, []).append((kind, plural, namespaced))

        def resource_list(gv: str) -> dict[str, Any]:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for kind, plural, namespaced in groups[gv]
                ],
            }

        if path == "/version":
            self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        elif path == "/api":
            self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif path == "/api/v1":
            self._send(200, resource_list("v1"))
        elif path == "/apis":
            items = []
            for gv in groups:
                if "/" in gv:
                    g, v = gv.split("/")
                    version = {"groupVersion": gv, "version": v}
                    items.append({"name": g, "versions": [version], "preferredVersion": version})
            self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": items})
        elif path.removeprefix("/apis/") in groups:
            self._send(200, resource_list(path.removeprefix("/apis/")))
        else:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 404,
                    "reason": "NotFound",
                    "message": "not found",
                },
            )


def test_kubectl_apply_client_dry_run(tmp_path: Path) -> None:
    binary = kubectl()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "stub", "cluster": {"server": f"http://127.0.0.1:{port}"}}
                    ],
                    "users": [{"name": "stub", "user": {"token": "stub"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                    "current-context": "stub",
                }
            )
        )
        files = [arg for path in manifest_files() for arg in ("-f", str(path))]
        result = subprocess.run(
            [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache")]
            + ["apply", "--dry-run=client", "--validate=false", "-o", "name", *files],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 0, result.stderr
    # kubectl prints <kind>.<group>/<name> (the kind in lower case, no group for core kinds)
    printed = sorted(line for line in result.stdout.splitlines() if line)
    expected = sorted(
        f"{d['kind'].lower()}"
        f"{'.' + d['apiVersion'].split('/')[0] if '/' in d['apiVersion'] else ''}"
        f"/{d['metadata']['name']}"
        for d in DOCS
    )
    assert printed == expected
