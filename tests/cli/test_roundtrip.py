"""End-to-end flows against a real ``porch serve``: round trip, TLS kubeconfig, watch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from porch.client import PorchClient, load_kubeconfig
from tests.apiserver.served import Served, start
from tests.cli.conftest import Porchctl, porchctl_command

EDITED_CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings # the comment survives
  annotations:
    owner: team-blue
data:
  color: blue
  size: "3"
"""


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".KptRevisionMetadata"
    }


def test_pull_edit_push_propose_approve_round_trips_byte_for_byte(porchctl: Porchctl) -> None:
    porchctl.ok("repo reg {blue} --name blue")
    porchctl.ok("rpkg init app --repository blue --workspace v1 --description 'round trip'")
    porchctl.ok("rpkg pull blue.app.v1 {tmp}/edit")
    edit = porchctl.tmp / "edit"
    (edit / "settings.yaml").write_text(EDITED_CM)
    (edit / "docs").mkdir()
    (edit / "docs" / "notes.txt").write_bytes("ünïcode notes\nno trailing newline".encode())
    (edit / "README.md").unlink()
    kptfile = (edit / "Kptfile").read_text()
    (edit / "Kptfile").write_text(kptfile.replace("round trip", "round trip, edited"))
    assert porchctl.ok("rpkg push blue.app.v1 {tmp}/edit") == "blue.app.v1 pushed\n"
    porchctl.ok("rpkg propose blue.app.v1")
    porchctl.ok("rpkg approve blue.app.v1")
    porchctl.ok("rpkg pull blue.app.v1 {tmp}/published")
    published = porchctl.tmp / "published"
    assert tree(published) == tree(edit)
    meta = yaml.safe_load((published / ".KptRevisionMetadata").read_text())
    assert meta["kind"] == "KptRevisionMetadata"
    assert meta["metadata"]["name"] == "blue.app.v1"
    listing = porchctl.ok("rpkg get blue.app.v1")
    assert listing.splitlines()[1].split() == [
        "blue.app.v1",
        "app",
        "v1",
        "1",
        "true",
        "Published",
        "blue",
    ]


def test_push_from_stdin_resource_list(porchctl: Porchctl) -> None:
    porchctl.ok("repo reg {blue} --name blue")
    porchctl.ok("rpkg init app --repository blue --workspace v1")
    listing = yaml.safe_load(porchctl.ok("rpkg pull blue.app.v1"))
    listing["items"].append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "extra",
                "annotations": {"config.kubernetes.io/path": "extra.yaml"},
            },
        }
    )
    out = porchctl.ok("rpkg push blue.app.v1 -", stdin=yaml.safe_dump(listing))
    assert out == "blue.app.v1 pushed\n"
    files = PorchClient(porchctl.served.url).get_resources("blue.app.v1").spec.resources
    assert yaml.safe_load(files["extra.yaml"])["metadata"] == {"name": "extra"}
    assert "README.md" not in files  # the ResourceList carries KRM only; push replaces all


def test_tls_kubeconfig_with_token(tmp_path: Path) -> None:
    served: Served = start(tmp_path / "data")
    try:
        assert served.url.startswith("https://")
        porchctl = Porchctl(served, tmp_path, tmp_path / "unused.git")
        out = porchctl.ok("rpkg get --name basens -o name")
        assert out.splitlines() == [
            "packagerevision.porch.kpt.dev/demo.basens.main",
            "packagerevision.porch.kpt.dev/demo.basens.v1",
        ]
        assert porchctl("rpkg get --tls-server-name localhost -o name").exit_code == 0
        mismatch = porchctl("rpkg get --tls-server-name wrong.example")
        assert mismatch.exit_code == 3 and "cannot reach" in mismatch.stderr
        denied = porchctl("rpkg get --token wrong")
        assert (denied.exit_code, denied.stdout) == (6, "")
        assert denied.stderr.startswith("error: ") and len(denied.stderr.splitlines()) == 1
    finally:
        served.stop()


def test_client_certificate_kubeconfig(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("carol-token,carol,carol\n")
    served = start(tmp_path / "data", "--token-file", str(tokens))
    try:
        porchctl = Porchctl(served, tmp_path, tmp_path / "unused.git")
        assert "client-certificate-data" in served.kubeconfig.read_text()
        assert "demo.basens.v1" in porchctl.ok("rpkg get")
        served.stderr.wait_for(r'"user":"admin".*"resource":"packagerevisions"')
    finally:
        served.stop()


def test_watch_sees_a_create_after_the_initial_list(porchctl: Porchctl) -> None:
    conn = load_kubeconfig(porchctl.served.kubeconfig)
    with PorchClient.from_connection(conn) as watcher:
        seen: list[tuple[str, str]] = []
        for event in watcher.watch_package_revisions(fields={"spec.packageName": "fresh"}):
            name = event.object.get("metadata", {}).get("name", "")
            seen.append((event.type, name))
            if event.type == "BOOKMARK":
                porchctl.ok("rpkg init fresh --repository demo --workspace w1")
            elif name == "demo.fresh.w1":
                break
    assert seen[0][0] == "BOOKMARK" and seen[-1] == ("ADDED", "demo.fresh.w1")


def test_unreachable_server_is_one_line_exit_3(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*porchctl_command(), "-s", "http://127.0.0.1:1", "rpkg", "get"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: cannot reach http://127.0.0.1:1")
    assert len(proc.stderr.splitlines()) == 1
