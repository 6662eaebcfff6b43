"""Real kubectl (1.32 via the gcloud dispatcher) against ``porch serve``."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apiserver.served import Kubectl, Served, have_kubectl, start

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_kubectl(), reason="kubectl is not installed"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    srv = start(tmp_path_factory.mktemp("serve"), "--insecure-http", "--allow-anonymous")
    yield srv
    srv.stop()


@pytest.fixture
def kubectl(served: Served, tmp_path: Path) -> Kubectl:
    return Kubectl(served.kubeconfig, tmp_path / "kube-cache")


def manifest(tmp_path: Path, package: str, workspace: str = "v1", **extra: str) -> Path:
    lines = [
        "apiVersion: porch.kpt.dev/v1alpha1",
        "kind: PackageRevision",
        "metadata:",
        f"  name: demo.{package}.{workspace}",
        "  namespace: default",
        "spec:",
        f"  packageName: {package}",
        "  repository: demo",
        f"  workspaceName: {workspace}",
        *(f"  {k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / f"{package}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_get_plain_and_wide(kubectl: Kubectl) -> None:
    out = kubectl("get", "packagerevisions")
    header = out.splitlines()[0].split()
    assert header == [
        "NAME",
        "PACKAGE",
        "WORKSPACENAME",
        "REVISION",
        "LATEST",
        "LIFECYCLE",
        "REPOSITORY",
        "AGE",
    ]
    assert any(
        line.split()[:7] == ["demo.basens.v1", "basens", "v1", "1", "true", "Published", "demo"]
        for line in out.splitlines()
    )
    wide = kubectl("get", "packagerevisions", "-o", "wide", "--show-labels")
    assert "kpt.dev/latest-revision=true" in wide


def test_get_yaml_custom_columns_all_namespaces(kubectl: Kubectl) -> None:
    yaml_out = kubectl("get", "packagerevision", "demo.basens.v1", "-o", "yaml")
    assert "kind: PackageRevision" in yaml_out
    assert "packageName: basens" in yaml_out
    cols = kubectl(
        "get", "packagerevisions", "-o", "custom-columns=N:.metadata.name,L:.spec.lifecycle"
    )
    assert ["demo.hello-world.v1", "Published"] in [line.split() for line in cols.splitlines()]
    every = kubectl("get", "packagerevisions", "-A")
    assert every.splitlines()[0].split()[0] == "NAMESPACE"
    assert "default" in every.splitlines()[1]


def test_get_selectors_and_sort(kubectl: Kubectl) -> None:
    latest = kubectl("get", "packagerevisions", "-l", "kpt.dev/latest-revision=true", "-o", "name")
    assert sorted(latest.split()) == [
        "packagerevision.porch.kpt.dev/demo.basens.v1",
        "packagerevision.porch.kpt.dev/demo.hello-world.v1",
    ]
    selected = kubectl(
        "get", "packagerevisions", "--field-selector", "spec.packageName=basens", "-o", "name"
    )
    assert "demo.hello-world" not in selected and "demo.basens.v1" in selected
    by_package = kubectl(
        "get", "packagerevisions", "--sort-by=.spec.packageName", "--no-headers"
    ).splitlines()
    packages = [line.split()[1] for line in by_package]
    assert packages == sorted(packages)


def test_get_other_kinds(kubectl: Kubectl) -> None:
    assert "True" in kubectl("get", "repo").splitlines()[1]
    assert "demo.basens" in kubectl("get", "packages")
    assert "Kptfile" in kubectl("get", "packagerevisionresources", "demo.basens.v1", "-o", "yaml")


def test_get_watch_prints_later_event(kubectl: Kubectl, tmp_path: Path) -> None:
    with contextlib.contextmanager(kubectl.stream)("get", "packagerevisions", "-w") as (_, lines):
        lines.wait_for(r"demo\.basens\.v1")
        kubectl("create", "-f", str(manifest(tmp_path, "watched")))
        line = lines.wait_for(r"demo\.watched\.v1")
    assert "Draft" in line


def test_apply_create_then_change(kubectl: Kubectl, tmp_path: Path) -> None:
    path = manifest(tmp_path, "applied")
    assert "created" in kubectl("apply", "-f", str(path))
    path.write_text(path.read_text() + "  lifecycle: Proposed\n")
    assert "configured" in kubectl("apply", "-f", str(path))
    assert (
        kubectl("get", "packagerevision", "demo.applied.v1", "-o", "jsonpath={.spec.lifecycle}")
        == "Proposed"
    )


def test_apply_server_side(kubectl: Kubectl, tmp_path: Path) -> None:
    path = manifest(tmp_path, "ssa")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(path))
    path.write_text(path.read_text() + "  lifecycle: Proposed\n")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(path))
    assert (
        kubectl("get", "packagerevision", "demo.ssa.v1", "-o", "jsonpath={.spec.lifecycle}")
        == "Proposed"
    )


def test_replace_with_stale_resource_version_conflicts(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("create", "-f", str(manifest(tmp_path, "stale")))
    stale = tmp_path / "stale-copy.yaml"
    stale.write_text(kubectl("get", "packagerevision", "demo.stale.v1", "-o", "yaml"))
    kubectl("label", "packagerevision", "demo.stale.v1", "touched=yes")
    result = kubectl.run("replace", "-f", str(stale), check=False)
    assert result.returncode == 1
    assert "Error from server (Conflict)" in result.stderr
    assert "the object has been modified" in result.stderr


def test_edit_with_editor_script(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("create", "-f", str(manifest(tmp_path, "edited")))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/lifecycle: Draft/lifecycle: Proposed/' \"$1\"\n")
    editor.chmod(0o755)
    result = kubectl.run(
        "edit", "packagerevision", "demo.edited.v1", env={"KUBE_EDITOR": str(editor)}
    )
    assert "edited" in result.stdout
    assert (
        kubectl("get", "packagerevision", "demo.edited.v1", "-o", "jsonpath={.spec.lifecycle}")
        == "Proposed"
    )


def test_patch_merge_and_delete_held_by_finalizer(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("create", "-f", str(manifest(tmp_path, "held")))
    kubectl(
        "patch",
        "packagerevision",
        "demo.held.v1",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold"],"labels":{"x":"y"}}}',
    )
    assert "deleted" in kubectl("delete", "packagerevision", "demo.held.v1", "--wait=false")
    stamp = kubectl(
        "get", "packagerevision", "demo.held.v1", "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert stamp
    kubectl(
        "patch",
        "packagerevision",
        "demo.held.v1",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    gone = kubectl.run("get", "packagerevision", "demo.held.v1", check=False)
    assert "NotFound" in gone.stderr


def test_apply_secret_manifest(kubectl: Kubectl, tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Secret
        metadata:
          name: git-creds
          namespace: default
        type: kubernetes.io/basic-auth
        stringData:
          username: bob
        """
    )
    path.write_text(text)
    assert "created" in kubectl("apply", "-f", str(path))
    path.write_text(text.replace("bob", "alice"))
    assert "configured" in kubectl("apply", "-f", str(path))
    data = kubectl("get", "secret", "git-creds", "-o", "jsonpath={.data.username}")
    assert data == "YWxpY2U="
    typed = kubectl.run("create", "secret", "generic", "typed", "--from-literal=a=b", check=False)
    assert typed.returncode != 0
    assert "protobuf is not supported" in typed.stderr


def test_full_lifecycle(kubectl: Kubectl, tmp_path: Path) -> None:
    name = "demo.cycle.v1"
    kubectl("create", "-f", str(manifest(tmp_path, "cycle", lifecycle="Draft")))

    def lifecycle() -> str:
        return kubectl("get", "packagerevision", name, "-o", "jsonpath={.spec.lifecycle}")

    kubectl(
        "patch",
        "packagerevision",
        name,
        "--type",
        "merge",
        "-p",
        '{"spec":{"lifecycle":"Proposed"}}',
    )
    assert lifecycle() == "Proposed"
    kubectl(
        "patch",
        "packagerevision",
        name,
        "--subresource=approval",
        "--type",
        "merge",
        "-p",
        '{"spec":{"lifecycle":"Published"}}',
    )
    assert lifecycle() == "Published"
    assert kubectl("get", "packagerevision", name, "-o", "jsonpath={.spec.revision}") == "1"
    refused = kubectl.run("delete", "packagerevision", name, check=False)
    assert "Error from server (Forbidden)" in refused.stderr
    kubectl(
        "patch",
        "packagerevision",
        name,
        "--type",
        "merge",
        "-p",
        '{"spec":{"lifecycle":"DeletionProposed"}}',
    )
    assert lifecycle() == "DeletionProposed"
    assert "deleted" in kubectl("delete", "packagerevision", name)
    assert "NotFound" in kubectl.run("get", "packagerevision", name, check=False).stderr


def test_approval_through_raw_replace(kubectl: Kubectl, tmp_path: Path) -> None:
    name = "demo.raw.v1"
    kubectl("create", "-f", str(manifest(tmp_path, "raw", lifecycle="Draft")))
    kubectl(
        "patch",
        "packagerevision",
        name,
        "--type",
        "merge",
        "-p",
        '{"spec":{"lifecycle":"Proposed"}}',
    )
    import json

    obj = json.loads(kubectl("get", "packagerevision", name, "-o", "json"))
    obj["spec"]["lifecycle"] = "Published"
    path = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions/demo.raw.v1/approval"
    out = kubectl("replace", "--raw", path, "-f", "-", stdin=json.dumps(obj))
    assert json.loads(out)["spec"]["lifecycle"] == "Published"
