from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from porch.api.types import Condition, ReadinessGate
from porch.errors import Invalid
from porch.krm.kptfile import (
    init_package,
    kptfile_set_metadata,
    kptfile_sync_conditions,
    kptfile_sync_readiness_gates,
    read_kptfile,
)

KPTFILE = """\
# Owned by the team.
apiVersion: kpt.dev/v1
kind: Kptfile
metadata: # who we are
  name: pkg # keep short
  labels:
    tier: web # for dashboards
    old: gone
  annotations:
    config.kubernetes.io/local-config: "true"
info:
  description: a package # shown in the catalog
pipeline:
  mutators:
    - image: set-labels:v0.2 # pinned
"""

KPT = shutil.which("kpt") or ("/usr/bin/kpt" if os.access("/usr/bin/kpt", os.X_OK) else None)


def _comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "# " in line]


def test_set_metadata_merges_on_create() -> None:
    out = kptfile_set_metadata(KPTFILE, {"tier": "api", "new": "true"}, {"a": "b"}, replace=False)
    kf = read_kptfile(out)
    assert kf.metadata.labels == {"tier": "api", "old": "gone", "new": "true"}
    assert kf.metadata.annotations == {"config.kubernetes.io/local-config": "true", "a": "b"}
    assert _comments(out) == _comments(KPTFILE)
    assert '    new: "true"\n' in out


def test_set_metadata_replaces_on_update() -> None:
    out = kptfile_set_metadata(KPTFILE, {"tier": "web", "x": "y"}, None, replace=True)
    kf = read_kptfile(out)
    assert kf.metadata.labels == {"tier": "web", "x": "y"}
    assert kf.metadata.annotations == {"config.kubernetes.io/local-config": "true"}
    assert "tier: web # for dashboards\n" in out
    assert "# Owned by the team.\n" in out


def test_set_metadata_empty_replace_removes_the_map() -> None:
    out = kptfile_set_metadata(KPTFILE, {}, {}, replace=True)
    assert "  labels:" not in out and "  annotations:" not in out
    assert "  name: pkg # keep short\ninfo:" in out


def test_set_metadata_creates_maps_in_kpt_order() -> None:
    text = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\ninfo: {}\n"
    out = kptfile_set_metadata(text, {"l": "1"}, {"a": "yes"}, replace=False)
    assert out == (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\n"
        '  labels:\n    l: "1"\n  annotations:\n    a: "yes"\ninfo: {}\n'
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: kptfile_set_metadata(t, {"tier": "web", "old": "gone"}, None, replace=True),
        lambda t: kptfile_set_metadata(t, {"tier": "web"}, {}, replace=False),
        lambda t: kptfile_set_metadata(t, None, None, replace=True),
        lambda t: kptfile_sync_readiness_gates(t, []),
        lambda t: kptfile_sync_conditions(t, []),
    ],
)
def test_no_change_returns_the_same_text(edit: object) -> None:
    assert callable(edit)
    assert edit(KPTFILE) is KPTFILE


def _gates(text: str) -> list[ReadinessGate]:
    info = read_kptfile(text).info
    assert info is not None
    return info.readiness_gates


def _conditions(text: str) -> list[Condition]:
    status = read_kptfile(text).status
    assert status is not None
    return status.conditions


def test_readiness_gates_are_set_synced() -> None:
    out = kptfile_sync_readiness_gates(KPTFILE, ["a", "b", "a"])
    assert _gates(out) == [ReadinessGate("a"), ReadinessGate("b")]
    # The file writes lists indented, so new lists are indented too.
    assert "  readinessGates:\n    - conditionType: a\n    - conditionType: b\n" in out
    commented = out.replace("conditionType: b", "conditionType: b # second")
    again = kptfile_sync_readiness_gates(commented, ["c", "b"])
    assert _gates(again) == [ReadinessGate("b"), ReadinessGate("c")]
    assert "conditionType: b # second" in again
    assert kptfile_sync_readiness_gates(again, ["b", "c"]) is again
    cleared = kptfile_sync_readiness_gates(again, [])
    assert "readinessGates" not in cleared
    assert _comments(cleared) == _comments(KPTFILE)


def test_readiness_gates_create_info_when_missing() -> None:
    text = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\npipeline: {}\n"
    out = kptfile_sync_readiness_gates(text, ["g"])
    assert out == (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\n"
        "info:\n  readinessGates:\n  - conditionType: g\npipeline: {}\n"
    )
    assert kptfile_sync_readiness_gates(out, []) == text


def test_conditions_are_set_synced() -> None:
    out = kptfile_sync_conditions(
        KPTFILE,
        [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False", "reason": "R"}],
    )
    assert _conditions(out) == [
        Condition(type="Ready", status="True"),
        Condition(type="Other", status="False", reason="R"),
    ]
    assert '    - type: Ready\n      status: "True"\n' in out
    commented = out.replace("type: Ready", "type: Ready # gate")
    again = kptfile_sync_conditions(
        commented, [{"type": "Ready", "status": "False", "message": "m: x"}]
    )
    assert _conditions(again) == [Condition(type="Ready", status="False", message="m: x")]
    assert "type: Ready # gate" in again
    assert "Other" not in again
    assert "status:\n  conditions:" in again
    cleared = kptfile_sync_conditions(again, [])
    assert "status:" not in cleared
    assert cleared == KPTFILE


def test_condition_without_type_is_invalid() -> None:
    with pytest.raises(Invalid, match="must have a type"):
        kptfile_sync_conditions(KPTFILE, [{"status": "True"}])


def test_read_kptfile() -> None:
    kf = read_kptfile(KPTFILE)
    assert kf.metadata.name == "pkg"
    assert kf.info is not None and kf.info.description == "a package"
    assert kf.pipeline is not None and kf.pipeline.mutators[0].image == "set-labels:v0.2"


@pytest.mark.parametrize(
    "text", ["", "a: [\n", "kind: Kptfile\n---\nkind: Kptfile\n", "kind: Kptfile\ninfo: 3\n"]
)
def test_read_kptfile_rejects_bad_input(text: str) -> None:
    with pytest.raises(Invalid):
        read_kptfile(text)


def test_init_package_files() -> None:
    files = init_package("my-pkg", "sample description", ["a", "b"], "https://example.com")
    assert sorted(files) == ["Kptfile", "README.md", "package-context.yaml"]
    assert files["Kptfile"] == (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: my-pkg\n  annotations:\n"
        '    config.kubernetes.io/local-config: "true"\ninfo:\n  site: https://example.com\n'
        "  description: sample description\n  keywords:\n  - a\n  - b\n"
    )
    assert files["package-context.yaml"] == (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kptfile.kpt.dev\n  annotations:\n"
        '    config.kubernetes.io/local-config: "true"\ndata:\n  name: example\n'
    )
    readme = files["README.md"]
    assert readme.startswith("# my-pkg\n\n## Description\nsample description\n")
    for heading in ("## Usage", "### Fetch the package", "### View package content"):
        assert f"\n{heading}\n" in readme
    assert "kpt pkg get REPO_URI[.git]/PKG_PATH[@VERSION] my-pkg" in readme
    assert "kpt live apply my-pkg" in readme
    assert init_package("p")["Kptfile"].endswith("info: {}\n")


INIT_CASES = [
    ("sample description", [], ""),
    ("", [], ""),
    ("my desc", ["a", "b"], "https://example.com"),
    ('has: colon "q" #x', ["x y", "true", "1", "yes", "~"], ""),
    ("it's 100% - done", ["2024-01-02", "1.5", "-x", "@at"], "http://s/?a=b&c=d"),
    ("  padded  ", ["null", "on", "0x1F", "key: v"], "ftp://x"),
]


@pytest.mark.skipif(KPT is None, reason="kpt is not installed; cannot compare with kpt pkg init")
@pytest.mark.parametrize(("description", "keywords", "site"), INIT_CASES)
def test_init_matches_kpt_pkg_init(
    tmp_path: Path, description: str, keywords: list[str], site: str
) -> None:
    assert KPT is not None
    pkg = tmp_path / "example-pkg"
    pkg.mkdir()
    args = [KPT, "pkg", "init", str(pkg), "--description", description]
    if keywords:
        args += ["--keywords", ",".join(keywords)]
    if site:
        args += ["--site", site]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    ours = init_package("example-pkg", description, keywords, site)
    for name in ("Kptfile", "package-context.yaml"):
        assert ours[name] == (pkg / name).read_text(), name
    theirs = (pkg / "README.md").read_text()
    headings = [line for line in theirs.splitlines() if line.startswith("#")]
    assert [line for line in ours["README.md"].splitlines() if line.startswith("#")] == headings


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("app", "app description"),
        ("net-vpc", "net/vpc description"),
        ("a1", "v1.2 of the thing"),
        ("true", "yes"),
        ("123", "1e3"),
        ("app", "x" * 70),
        ("app", "has: colon"),
        ("app", "trailing space "),
        ("app", "#hash"),
        ("null", "~"),
    ],
)
def test_fast_init_matches_the_emitter(name: str, description: str) -> None:
    from porch.krm.kptfile import _init_kptfile

    assert init_package(name, description)["Kptfile"] == _init_kptfile(name, description, (), "")
