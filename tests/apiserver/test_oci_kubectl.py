"""Real kubectl against ``porch serve`` with an OCI repository on Debian's docker-registry.

The whole lifecycle goes through kubectl (create, push resources, propose, approve, list,
clone, propose-delete, delete), then outages: a registry answering 500 and a registry that is
down turn the Repository ``Ready=False`` with a clear message, and once it is back the
repository is Ready again with every published revision still there. Skips without
``docker-registry`` (or kubectl) unless PORCH_REQUIRE_OCI=1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from porch.api.types import Lifecycle
from porch.repository.oci import OciRepository
from porch.repository.types import Author
from porch.testing.oci_registry import FaultProxy, OciRegistry
from tests._oci import registry_or_skip
from tests.apiserver.served import Kubectl, Served, have_kubectl, start

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_kubectl(), reason="kubectl is not installed"),
]

WAIT = 120.0  # generous: a failed sync is retried after a back-off of 5 s, then 10 s, ...


@pytest.fixture(scope="module")
def registry() -> Iterator[OciRegistry]:
    with registry_or_skip() as reg:
        yield reg


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, registry: OciRegistry) -> Iterator[Served]:
    srv = start(tmp_path_factory.mktemp("serve-oci"), "--insecure-http", "--allow-anonymous")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def served_fast(
    tmp_path_factory: pytest.TempPathFactory, registry: OciRegistry
) -> Iterator[Served]:
    """Checks every repository twice a second, so outages show at once. Tests on it write
    to the registry directly (the server discovers it): a background sync that lands between
    a server-side registry write and its index commit makes that write fail (reported)."""
    srv = start(
        tmp_path_factory.mktemp("serve-oci-fast"),
        "--insecure-http",
        "--allow-anonymous",
        "--sync-ref-interval",
        "0.5",
        "--sync-timeout",
        "20",
    )
    yield srv
    srv.stop()


@pytest.fixture
def kubectl(served: Served, tmp_path: Path) -> Kubectl:
    return Kubectl(served.kubeconfig, tmp_path / "kube-cache")


@pytest.fixture
def kubectl_fast(served_fast: Served, tmp_path: Path) -> Kubectl:
    return Kubectl(served_fast.kubeconfig, tmp_path / "kube-cache")


def apply(kubectl: Kubectl, obj: dict[str, object]) -> str:
    return kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def repository(name: str, registry: str) -> dict[str, object]:
    return {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "oci", "oci": {"registry": registry}},
    }


def package_revision(
    repo: str, package: str, workspace: str, tasks: list[dict[str, object]] | None = None
) -> dict[str, object]:
    spec: dict[str, object] = {
        "packageName": package,
        "repository": repo,
        "workspaceName": workspace,
    }
    if tasks:
        spec["tasks"] = tasks
    return {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"name": f"{repo}.{package}.{workspace}", "namespace": "default"},
        "spec": spec,
    }


def ready(kubectl: Kubectl, name: str) -> tuple[str, str]:
    path = '{.status.conditions[?(@.type=="Ready")]}'
    out = kubectl("get", "repository", name, "-o", f"jsonpath={path}")
    if not out:
        return "", ""
    cond = json.loads(out)
    return cond.get("status", ""), cond.get("message", "")


def wait_until(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def wait_ready(kubectl: Kubectl, name: str, status: str, message: str = "") -> str:
    seen: list[tuple[str, str]] = []

    def probe() -> bool:
        seen.append(ready(kubectl, name))
        return seen[-1][0] == status and message in seen[-1][1]

    try:
        wait_until(f"repository {name} Ready={status} ({message!r})", probe)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[-1:]}") from None
    return seen[-1][1]


def lifecycle_of(kubectl: Kubectl, name: str) -> str:
    return kubectl("get", "packagerevision", name, "-o", "jsonpath={.spec.lifecycle}")


def patch(kubectl: Kubectl, name: str, lifecycle: str, *subresource: str) -> None:
    body = json.dumps({"spec": {"lifecycle": lifecycle}})
    kubectl("patch", "packagerevision", name, *subresource, "--type", "merge", "-p", body)


def push(kubectl: Kubectl, name: str, path: str, text: str) -> None:
    """Read the resources, add one file, replace them: what ``porchctl rpkg push`` does."""
    prr = json.loads(kubectl("get", "packagerevisionresources", name, "-o", "json"))
    prr["spec"]["resources"][path] = text
    kubectl("replace", "-f", "-", stdin=json.dumps(prr))


def publish(kubectl: Kubectl, name: str) -> None:
    patch(kubectl, name, "Proposed")
    patch(kubectl, name, "Published", "--subresource=approval")


def tags(registry: OciRegistry, repository_name: str) -> list[str]:
    got = httpx.get(f"{registry.url}/v2/{repository_name}/tags/list").json()
    return sorted(got.get("tags") or [])


JANE = Author("Jane Doe", "jane@example.com")
KPTFILE = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n"


def test_full_lifecycle_over_oci(kubectl: Kubectl, registry: OciRegistry) -> None:
    assert "created" in apply(kubectl, repository("images", registry.registry("kubectl")))
    wait_ready(kubectl, "images", "True")
    name = "images.app.ws1"

    # create (init) and push resources
    kubectl("create", "-f", "-", stdin=json.dumps(package_revision("images", "app", "ws1")))
    assert lifecycle_of(kubectl, name) == "Draft"
    push(kubectl, name, "cm.yaml", CM)
    resources = json.loads(
        kubectl("get", "packagerevisionresources", name, "-o", "jsonpath={.spec.resources}")
    )
    assert resources["cm.yaml"] == CM and "Kptfile" in resources
    assert tags(registry, "kubectl/app") == ["ws.ws1"]

    # propose, approve
    patch(kubectl, name, "Proposed")
    assert lifecycle_of(kubectl, name) == "Proposed"
    patch(kubectl, name, "Published", "--subresource=approval")
    assert lifecycle_of(kubectl, name) == "Published"
    assert kubectl("get", "packagerevision", name, "-o", "jsonpath={.spec.revision}") == "1"
    assert tags(registry, "kubectl/app") == ["main", "v1"]

    # list: the table, selectors, the placeholder
    table = kubectl("get", "packagerevisions", "--no-headers")
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows[name][1:7] == ["app", "ws1", "1", "true", "Published", "images"]
    assert rows["images.app.main"][3] == "-1"
    latest = kubectl("get", "packagerevisions", "-l", "kpt.dev/latest-revision=true", "-o", "name")
    assert f"packagerevision.porch.kpt.dev/{name}" in latest.split()
    assert "images.app" in kubectl("get", "packages")

    # clone by reference and by image, both within the OCI repository
    ref_clone: list[dict[str, object]] = [
        {"type": "clone", "clone": {"upstreamRef": {"upstreamRef": {"name": name}}}}
    ]
    kubectl(
        "create", "-f", "-", stdin=json.dumps(package_revision("images", "copy", "ws1", ref_clone))
    )
    image = f"{registry.host}/kubectl/app:v1"
    image_clone: list[dict[str, object]] = [
        {"type": "clone", "clone": {"upstreamRef": {"oci": {"image": image}}}}
    ]
    kubectl(
        "create",
        "-f",
        "-",
        stdin=json.dumps(package_revision("images", "pulled", "ws1", image_clone)),
    )
    for clone in ("images.copy.ws1", "images.pulled.ws1"):
        path = "jsonpath={.spec.resources.Kptfile}"
        kptfile = yaml.safe_load(kubectl("get", "packagerevisionresources", clone, "-o", path))
        assert kptfile["upstream"]["type"] == "oci"
        assert kptfile["upstreamLock"]["oci"]["image"].startswith(
            f"{registry.host}/kubectl/app@sha256:"
        )
        cm = kubectl(
            "get", "packagerevisionresources", clone, "-o", "jsonpath={.spec.resources.cm\\.yaml}"
        )
        assert yaml.safe_load(cm)["data"] == {"color": "blue"}

    # propose-delete, then delete: only the placeholder stays in the registry
    refused = kubectl.run("delete", "packagerevision", name, check=False)
    assert "Error from server (Forbidden)" in refused.stderr
    patch(kubectl, name, "DeletionProposed")
    referenced = kubectl.run("delete", "packagerevision", name, check=False)
    assert "referenced as upstream by: images.copy.ws1" in referenced.stderr
    for clone in ("images.copy.ws1", "images.pulled.ws1"):
        assert "deleted" in kubectl("delete", "packagerevision", clone)
    assert lifecycle_of(kubectl, name) == "DeletionProposed"
    assert "deleted" in kubectl("delete", "packagerevision", name)
    assert "NotFound" in kubectl.run("get", "packagerevision", name, check=False).stderr
    assert tags(registry, "kubectl/app") == ["main"]
    assert tags(registry, "kubectl/copy") == []


def _published(kubectl: Kubectl, repo: str) -> set[tuple[str, str]]:
    out = kubectl(
        "get",
        "packagerevisions",
        "--field-selector",
        f"spec.repository={repo}",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.revision}{'\\n'}{end}",
    )
    pairs = (line.split() for line in out.splitlines() if line.strip())
    return {(name, revision) for name, revision in pairs}


def _publish_directly(registry: str, package: str, revisions: int) -> None:
    """Published revisions written straight to the registry, as another porch would."""
    repo = OciRepository(registry)
    try:
        for n in range(1, revisions + 1):
            info = repo.write(
                package=package,
                workspace=f"v{n}",
                files={"Kptfile": KPTFILE, "cm.yaml": CM.replace("blue", f"v{n}")},
                lifecycle=Lifecycle.DRAFT,
                task={"type": "init"},
                author=JANE,
                base=None,
            ).info
            assert info is not None
            proposed = repo.set_lifecycle(info, Lifecycle.PROPOSED).info
            assert proposed is not None
            repo.publish(proposed, revision=n, author=JANE)
    finally:
        repo.close()


def test_registry_500_and_down_mark_repository_not_ready(
    kubectl_fast: Kubectl, registry: OciRegistry
) -> None:
    kubectl = kubectl_fast
    _publish_directly(registry.registry("direct"), "app", 1)
    apply(kubectl, repository("direct", registry.registry("direct")))
    wait_ready(kubectl, "direct", "True")
    direct = {("direct.app.v1", "1"), ("direct.app.main", "-1")}
    wait_until("direct listed", lambda: _published(kubectl, "direct") == direct)
    with FaultProxy(registry.url) as proxy:
        _publish_directly(f"{proxy.host}/flaky", "app", 2)
        apply(kubectl, repository("flaky", f"{proxy.host}/flaky"))
        wait_ready(kubectl, "flaky", "True")
        expected = {("flaky.app.v1", "1"), ("flaky.app.v2", "2"), ("flaky.app.main", "-1")}
        wait_until("flaky listed", lambda: _published(kubectl, "flaky") == expected)

        # 500 from every request: not Ready, saying which registry answered what
        proxy.fail = lambda method, path: True
        message = wait_ready(kubectl, "flaky", "False", "answered 500")
        assert f"OCI registry {proxy.host}" in message
        assert _published(kubectl, "flaky") == expected  # reads come from the index
        # a write fails with a clear error and leaves nothing behind
        create = kubectl.run(
            "create",
            "-f",
            "-",
            stdin=json.dumps(package_revision("flaky", "other", "ws1")),
            check=False,
        )
        assert create.returncode != 0 and "answered 500" in create.stderr
        proxy.fail = None
        wait_ready(kubectl, "flaky", "True")
        assert _published(kubectl, "flaky") == expected

        # the registry itself down: not Ready ("unavailable"), then back with everything
        registry.stop()
        try:
            message = wait_ready(kubectl, "direct", "False", "is unavailable")
            assert f"OCI registry {registry.host}" in message
            # seen through the proxy, the dead registry is a 502
            assert proxy.host in wait_ready(kubectl, "flaky", "False", "answered 502")
            assert _published(kubectl, "direct") == direct
            assert _published(kubectl, "flaky") == expected
        finally:
            registry.start()
        wait_ready(kubectl, "direct", "True")
        wait_ready(kubectl, "flaky", "True")
        assert _published(kubectl, "direct") == direct
        assert _published(kubectl, "flaky") == expected
        cm = kubectl(
            "get",
            "packagerevisionresources",
            "flaky.app.v1",
            "-o",
            "jsonpath={.spec.resources.cm\\.yaml}",
        )
        assert cm == CM.replace("blue", "v1")
        assert tags(registry, "flaky/app") == ["main", "v1", "v2"]
        kubectl("delete", "repository", "flaky")
    kubectl("delete", "repository", "direct")
