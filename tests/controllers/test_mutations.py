"""The variant's edits as plain functions over package files."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from porch.controllers.mutations import (
    apply_injection,
    apply_package_context,
    apply_pipeline,
    same_package,
)
from porch.controllers.types import ReconcileError, ValidationError
from porch.controllers.variantspec import validate

KPTFILE = """\
apiVersion: kpt.dev/v1
kind: Kptfile
metadata:
  name: app # the app
pipeline:
  mutators:
    - image: set-namespace:v1 # keep me
      configMap:
        namespace: prod
"""
CONTEXT = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: kptfile.kpt.dev
data:
  name: app
"""
FN = {"name": "lbl", "image": "set-labels:v1", "configMap": {"a": "b"}}


def test_pipeline_prepends_ours_keeps_theirs_and_is_idempotent() -> None:
    files = {"Kptfile": KPTFILE}
    once = apply_pipeline(files, "pv", {"mutators": [FN], "validators": [FN]})
    kptfile = yaml.safe_load(once["Kptfile"])
    assert [f.get("name") for f in kptfile["pipeline"]["mutators"]] == [
        "PackageVariant.pv.lbl.0",
        None,
    ]
    assert [f["name"] for f in kptfile["pipeline"]["validators"]] == ["PackageVariant.pv.lbl.0"]
    assert "# keep me" in once["Kptfile"] and "# the app" in once["Kptfile"]
    assert apply_pipeline(once, "pv", {"mutators": [FN], "validators": [FN]}) == once
    # another variant's functions are not ours to remove
    both = apply_pipeline(once, "other", {"mutators": [FN]})
    names = [f.get("name") for f in yaml.safe_load(both["Kptfile"])["pipeline"]["mutators"]]
    assert names == ["PackageVariant.other.lbl.0", "PackageVariant.pv.lbl.0", None]
    cleared = apply_pipeline(apply_pipeline(both, "other", None), "pv", None)
    assert yaml.safe_load(cleared["Kptfile"]) == yaml.safe_load(KPTFILE)


def test_empty_pipeline_is_dropped() -> None:
    bare = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
    added = apply_pipeline({"Kptfile": bare}, "pv", {"mutators": [FN]})
    assert "pipeline" in yaml.safe_load(added["Kptfile"])
    assert "pipeline" not in yaml.safe_load(apply_pipeline(added, "pv", None)["Kptfile"])


def test_package_context_merges_and_removes() -> None:
    files = {"package-context.yaml": CONTEXT}
    out = apply_package_context(files, {"region": "eu", "zone": "a"}, ["zone"])
    assert yaml.safe_load(out["package-context.yaml"])["data"] == {"name": "app", "region": "eu"}
    assert apply_package_context(out, {"region": "eu"}, []) == out
    with pytest.raises(ReconcileError, match="no package-context.yaml"):
        apply_package_context({}, {"a": "b"}, [])


def test_same_package_ignores_respelling() -> None:
    a = {"x.yaml": "a: 'b'\nc: [1, 2]\n"}
    assert same_package(a, {"x.yaml": 'a: "b"\nc:\n  - 1\n  - 2\n'})
    assert not same_package(a, {"x.yaml": "a: c\n"})
    assert not same_package({"README.md": "a"}, {"README.md": "a "})
    assert not same_package(a, {})


def test_injection_without_a_match_sets_a_false_condition() -> None:
    point = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  annotations:\n"
        "    kpt.dev/config-injection: optional\ndata: {}\n"
    )
    bare = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
    seen: list[tuple[str, ...]] = []

    def lookup(*key: str) -> dict[str, Any] | None:
        seen.append(key)
        return None

    out = apply_injection({"Kptfile": bare, "cm.yaml": point}, [{"name": "cfg"}], lookup)
    assert seen == [("", "v1", "ConfigMap", "cfg")]
    kptfile = yaml.safe_load(out["Kptfile"])
    [cond] = kptfile["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "config.injection.ConfigMap.cfg",
        "False",
        "NoResourceSelected",
    )
    assert "info" not in kptfile  # optional points add no readiness gate
    assert out["cm.yaml"] == point


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "missing required field spec.upstream"),
        (
            {"upstream": {"repo": "a", "package": "b", "revision": "vX"}},
            'spec.upstream.revision "vX" is not a number',
        ),
        (
            {"deletionPolicy": "keep"},
            'spec.deletionPolicy "keep" must be one of delete, orphan',
        ),
        ({"packageContext": {"removeKeys": ["package-path"]}}, 'contain the key "package-path"'),
        ({"pipeline": {"mutators": [{"name": "x"}]}}, "spec.pipeline.mutators[0] needs an image"),
        ({"injectors": [{"kind": "Repository"}]}, "spec.injectors[0].name is required"),
        ({"injectors": [{"group": "apps", "name": "x"}]}, 'injector kind "apps" is not served'),
    ],
)
def test_validation_messages(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(spec)
    assert message in str(info.value)


def test_valid_spec_reads_revision_forms() -> None:
    base = {"downstream": {"repo": "d", "package": "p"}}
    for value in (3, "3", "v3"):
        spec = validate({**base, "upstream": {"repo": "u", "package": "p", "revision": value}})
        assert spec.upstream.revision == 3
