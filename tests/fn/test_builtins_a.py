"""Builtins group A (set-namespace, set-labels, set-annotations, ensure-name-substring,
remove-local-config-resources, gen-pkg-context) against the function catalog's examples and
tests and kpt's fn-render cases, plus focused behaviour tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from porch.fn.registry import builtins
from porch.fn.runtime import BuiltinRuntime
from porch.fn.types import FunctionFailure, FunctionSpec, ResourceList
from porch.krm.yaml import dumps, from_plain, load_object, parse_documents, to_plain
from tests.fn._catalog_harness import (
    CATALOG,
    RENDER,
    expected_files,
    plain_without_status,
    render_case,
    run_example,
)

OURS = {
    "set-namespace",
    "set-labels",
    "set-annotations",
    "ensure-name-substring",
    "remove-local-config-resources",
}
# Examples whose expected tree is laid out by kpt's writer for objects that lost their path
# annotations (ensure-name-substring goes through kustomize, which drops them): compared as sets
# of objects rather than file by file.
RELAID = {"ensure-name-substring"}


def _examples() -> list[Path]:
    if not CATALOG.exists():
        return []
    found: list[Path] = []
    for prefix in sorted(OURS):
        found += sorted(p for p in (CATALOG / "examples").glob(f"{prefix}-*") if p.is_dir())
        tests = CATALOG / "tests" / prefix
        if tests.is_dir():
            found += sorted(p.parent for p in tests.rglob(".expected") if p.is_dir())
    return found


def _id(p: Path) -> str:
    return p.relative_to(CATALOG).as_posix()


EXAMPLES = _examples()


def _plain_objects(files: dict[str, str]) -> list[Any]:
    out = []
    for rel, text in files.items():
        for obj in parse_documents(text, filename=rel).objects():
            plain = to_plain(obj)
            plain.pop("status", None)
            out.append(plain)
    return sorted(out, key=repr)


@pytest.mark.skipif(not EXAMPLES, reason="conformance data under /work/shared is absent")
@pytest.mark.parametrize("example", EXAMPLES, ids=_id)
def test_catalog_example(example: Path, tmp_path: Path) -> None:
    expected = expected_files(example, tmp_path)
    outcome = run_example(example, OURS)
    results_file = example / ".expected" / "results.yaml"
    if results_file.exists():
        want = to_plain(load_object(results_file.read_text()))["items"][0]
        assert outcome.results == want.get("results", [])
        assert (outcome.failure or "") == want.get("stderr", "")
        assert (1 if outcome.failure else 0) == want.get("exitCode", 0)
        if outcome.failure:
            return
    assert outcome.failure is None, outcome.results
    if any(_id(example).startswith((f"examples/{f}", f"tests/{f}")) for f in RELAID):
        assert _plain_objects(outcome.files) == _plain_objects(expected)
        return
    assert set(outcome.files) == set(expected)
    for rel, text in expected.items():
        if rel.endswith("Kptfile"):
            assert plain_without_status(outcome.files[rel]) == plain_without_status(text)
        else:
            assert outcome.files[rel] == text, rel


def _render_cases() -> list[Path]:
    if not RENDER.exists():
        return []
    cases: list[Path] = []
    for kptfile in sorted(RENDER.rglob("Kptfile")):
        case = kptfile.parent
        if ".expected" in case.parts or len(list(case.rglob("Kptfile"))) != 1:
            continue
        config = case / ".expected" / "config.yaml"
        if "out-of-place" in case.name or (config.exists() and "args:" in config.read_text()):
            continue  # out-of-place / stdout variants: about the writer, not the functions
        pipeline = load_object(kptfile.read_text()).get("pipeline") or {}
        fns = [
            str(m.get("image", "")).rsplit("/", 1)[-1].split(":")[0]
            for g in ("mutators", "validators")
            for m in pipeline.get(g) or []
        ]
        if fns and all(f in OURS for f in fns) and (case / ".expected" / "diff.patch").exists():
            cases.append(case)
    return cases


RENDER_CASES = _render_cases()
# porch.krm.yaml re-dumps an explicit ``null`` as an empty value in a changed document.
DUMPER_NULL = {"preserve-order-null-values"}


@pytest.mark.skipif(not RENDER_CASES, reason="kpt fn-render conformance data is absent")
@pytest.mark.parametrize("case", RENDER_CASES, ids=lambda p: p.relative_to(RENDER).as_posix())
def test_kpt_render_case(case: Path, tmp_path: Path) -> None:
    expected = expected_files(case, tmp_path)
    files, steps = render_case(case, OURS)
    status = (load_object(expected["Kptfile"]).get("status") or {}).get("renderStatus") or {}
    want_steps = list(status.get("mutationSteps") or []) + list(status.get("validationSteps") or [])
    assert len(steps) == len(want_steps)
    for got, want in zip(steps, want_steps, strict=True):
        want_plain = to_plain(want)
        assert got.results == want_plain.get("results", []), got.function
        assert (got.failure or "") == want_plain.get("stderr", "")
        assert (1 if got.failure else 0) == want_plain.get("exitCode", 0)
    for rel, text in expected.items():
        if rel.endswith("Kptfile"):
            assert plain_without_status(files[rel]) == plain_without_status(text)
        elif rel in files:
            if case.name in DUMPER_NULL and files[rel] != text:
                pytest.xfail("porch.krm.yaml writes `key: null` back as `key:`")
            assert files[rel] == text, rel
    assert {r for r in files if not r.endswith("Kptfile")} <= set(expected)


# --- focused behaviour -----------------------------------------------------------------------


def _objs(text: str) -> list[Any]:
    return parse_documents(text).objects()


def _run(fn: str, items: list[Any], config: dict[str, Any] | None) -> ResourceList:
    fc = from_plain(config) if config is not None else None
    rl = ResourceList(items=items, function_config=fc)
    builtins()[fn](rl)
    return rl


def _cm(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "function-input"},
        "data": data,
    }


def test_builtin_runtime_finds_catalog_images_and_the_context_generator() -> None:
    runtime = BuiltinRuntime()
    for image in (
        "ghcr.io/kptdev/krm-functions-catalog/set-namespace:v0.4.1",
        "gcr.io/kpt-fn/set-labels:v0.1.5",
        "gcr.io/kpt-fn/set-annotations:unstable",
        "gcr.io/kpt-fn/ensure-name-substring:v0.2",
        "gcr.io/kpt-fn/remove-local-config-resources:v0.1",
    ):
        assert runtime.lookup(image) is builtins()[image.rsplit("/", 1)[1].split(":")[0]]
    assert runtime.lookup("builtins/gen-pkg-context") is builtins()["builtins/gen-pkg-context"]


SET_NS_INPUT = """\
apiVersion: v1
kind: Service
metadata:
  name: a
  namespace: old
  annotations:
    internal.kpt.dev/upstream-identifier: "|Service|old|a"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
  namespace: other
  annotations:
    internal.kpt.dev/upstream-identifier: "|ConfigMap|other|b"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: rb
  namespace: old
subjects:
- kind: ServiceAccount
  name: sa
  namespace: other
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: local
  namespace: old
  annotations:
    config.kubernetes.io/local-config: "true"
"""


def test_set_namespace_needs_a_matcher_for_several_origins() -> None:
    items = _objs(SET_NS_INPUT)
    rl = _run("set-namespace", items, _cm(namespace="new"))
    assert rl.results == [
        {
            "message": "unable to use origin `namespace` to match. expect a single upstream "
            "namespace, found [old other]. please switch to use `namespaceMatcher`to specify "
            "the namespace value you want to change",
            "severity": "error",
        }
    ]
    assert items[0]["metadata"]["namespace"] == "old"


def test_set_namespace_matcher_changes_only_matching_values() -> None:
    items = _objs(SET_NS_INPUT)
    config = {
        "apiVersion": "fn.kpt.dev/v1alpha1",
        "kind": "SetNamespace",
        "metadata": {"name": "x"},
        "namespace": "new",
        "namespaceMatcher": "old",
    }
    rl = _run("set-namespace", items, config)
    assert [o["metadata"].get("namespace") for o in items] == ["new", "other", "new", "old"]
    # a RoleBinding is namespace-scoped: its subjects are left alone
    assert items[2]["subjects"][0]["namespace"] == "other"
    assert rl.results[0] == {
        "message": "[Resource(apiVersion=v1, kind=Service, namespace=old, name=a)] has matching "
        "origin old",
        "severity": "info",
    }
    assert rl.results[-2]["message"] == 'namespace [old] updated to "new", 2 value(s) changed'


def test_set_namespace_config_errors_are_results_not_failures() -> None:
    rl = _run("set-namespace", [], {"apiVersion": "v1", "kind": "Secret", "metadata": {}})
    assert rl.results[0]["message"] == (
        "unknown functionConfig Kind=Secret ApiVersion=v1, expect `ConfigMap.v1` or "
        "`SetNamespace.v1alpha1.fn.kpt.dev`"
    )
    assert rl.results[0]["resourceRef"] == {"apiVersion": "v1", "kind": "Secret"}
    rl = _run("set-namespace", [], _cm(namespaceMatcher="x"))
    assert rl.results[0]["message"] == "`data.namespace` should not be empty"


def test_set_namespace_reads_the_package_context() -> None:
    items = _objs("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n")
    ctx = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kptfile.kpt.dev"},
        "data": {"name": "pkg"},
    }
    rl = _run("set-namespace", items, ctx)
    assert items[0]["metadata"]["namespace"] == "pkg"
    assert rl.results[0]["message"] == 'namespace [default] updated to "pkg", 1 value(s) changed'


def test_set_labels_counts_every_visit_and_rejects_unknown_configs() -> None:
    items = _objs(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n"
        "    metadata: {}\n"
    )
    rl = _run("set-labels", items, _cm(a="1", b="2"))
    # metadata + selector (not created) + template metadata, two labels each
    assert rl.results == [{"message": "set 6 labels in total", "severity": "info"}]
    assert "selector" not in items[0]["spec"]
    assert dict(items[0]["spec"]["template"]["metadata"]["labels"]) == {"a": "1", "b": "2"}
    with pytest.raises(FunctionFailure) as err:
        _run("set-labels", items, {"apiVersion": "x.io/v1", "kind": "Other", "metadata": {}})
    assert err.value.message == "failed to evaluate function: error: function failure"


def test_set_annotations_fails_without_a_usable_config() -> None:
    rl = ResourceList(items=[], function_config=None)
    with pytest.raises(FunctionFailure) as err:
        builtins()["set-annotations"](rl)
    assert err.value.message == (
        "[error]: failed to configure function: `functionConfig` must be a `ConfigMap` or "
        "`SetAnnotations`"
    )
    assert rl.results[0]["severity"] == "error"


def test_set_annotations_reports_each_field_once_per_object() -> None:
    items = _objs(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  annotations:\n"
        "    internal.config.kubernetes.io/path: d.yaml\nspec:\n  template:\n    spec: {}\n"
    )
    rl = _run("set-annotations", items, _cm(b="on", a="x"))
    assert [r["field"]["path"] for r in rl.results] == [
        "metadata.annotations",
        "spec.template.metadata.annotations",
    ]
    assert rl.results[0]["message"] == 'set annotations: {"a":"x","b":"on"}'
    assert rl.results[0]["file"] == {"path": "d.yaml"}
    assert dumps(items[0]["spec"]["template"]["metadata"]).splitlines() == [
        "annotations:",
        "  a: x",
        '  b: "on"',
    ]


def test_ensure_name_substring_fixes_references_and_is_idempotent() -> None:
    items = _objs(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: ns\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-prod\n  namespace: ns\n"
        "spec:\n  template:\n    spec:\n      volumes:\n      - name: v\n        configMap:\n"
        "          name: cm\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n"
    )
    _run("ensure-name-substring", items, _cm(append="-prod"))
    assert [o["metadata"]["name"] for o in items] == ["cm-prod", "app-prod", "ns"]
    volume = items[1]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == "cm-prod"
    with pytest.raises(FunctionFailure) as err:
        _run("ensure-name-substring", items, _cm(prepend="a", append="b"))
    assert "only 1 entry is allowed in the ConfigMap, but got: 2" in err.value.message


def test_remove_local_config_warns_when_nothing_is_pruned() -> None:
    items = _objs("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n")
    rl = _run("remove-local-config-resources", items, None)
    assert len(rl.items) == 1
    assert rl.results == [
        {
            "message": "Found no resources to prune with the local config annotation",
            "severity": "warning",
        }
    ]


def test_gen_pkg_context_replaces_contexts_next_to_each_kptfile() -> None:
    items = _objs(
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: backend\n  annotations:\n"
        "    internal.config.kubernetes.io/path: sub/Kptfile\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kptfile.kpt.dev\ndata:\n"
        "  name: example\n"
    )
    rl = _run("builtins/gen-pkg-context", items, _cm(**{"package-path": "a/backend"}))
    assert len(rl.items) == 2
    ctx = to_plain(rl.items[1])
    assert ctx["data"] == {"name": "backend", "package-path": "a/backend"}
    assert ctx["metadata"]["annotations"] == {
        "config.kubernetes.io/local-config": "true",
        "internal.config.kubernetes.io/path": "sub/package-context.yaml",
    }
    assert rl.results == [
        {
            "message": "generated package context",
            "severity": "info",
            "file": {"path": "sub/package-context.yaml"},
        }
    ]


def test_go_formatting_helpers() -> None:
    from porch.fn.builtins._configmap import go_json, go_quote

    assert go_quote('a"b\n') == '"a\\"b\\n"'
    assert go_json({"b": "<x>", "a": "é"}) == '{"a":"é","b":"\\u003cx\\u003e"}'


def test_set_labels_reports_a_bad_object_and_fails() -> None:
    items = _objs(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    x: 1\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
    )
    with pytest.raises(FunctionFailure):
        _run("set-labels", items, _cm(x="y"))
    assert items[1]["metadata"]["labels"]["x"] == "y"  # the other objects are still labelled
    assert items[0]["metadata"]["labels"]["x"] == 1


def test_missing_config_through_the_builtin_runtime() -> None:
    items = _objs("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    out = BuiltinRuntime().run(
        FunctionSpec(image="ghcr.io/kptdev/krm-functions-catalog/set-labels:latest"),
        ResourceList(items=items),
        timeout=10,
    )
    assert out.exit_code == 1
    assert out.stderr == "failed to evaluate function: error: function failure"
    assert out.resource_list.results == [
        {"message": "`FunctionConfig` is not given", "severity": "info"}
    ]
