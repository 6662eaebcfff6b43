"""The offline ``kubeconform``/``kubeval`` builtins against kpt's and the catalog's cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins.kubeval import bundle, kubeconform, kubeval
from porch.fn.registry import builtins
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import from_plain, load_object, parse_documents, to_plain

SHARED = Path(__file__).resolve().parents[3] / "shared"
RENDER = SHARED / "conformance" / "kpt-fn-render"
EXAMPLES = SHARED / "conformance" / "krm-functions-catalog" / "examples"

needs_shared = pytest.mark.skipif(
    not RENDER.is_dir(), reason=f"conformance data not found at {RENDER}"
)


def _items(root: Path) -> list[CommentedMap]:
    """Every object of a package, annotated with its file and index as kpt does."""
    out: list[CommentedMap] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".expected") or not path.is_file():
            continue
        if path.suffix not in (".yaml", ".yml") and path.name != "Kptfile":
            continue
        for index, obj in enumerate(parse_documents(path.read_text(), filename=rel).objects()):
            meta = obj.setdefault("metadata", CommentedMap())
            annotations = meta.setdefault("annotations", CommentedMap())
            annotations["internal.config.kubernetes.io/path"] = rel
            annotations["internal.config.kubernetes.io/index"] = str(index)
            out.append(obj)
    return out


def _config_map(data: dict[str, str]) -> CommentedMap:
    node = from_plain(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data}
    )
    assert isinstance(node, CommentedMap)
    return node


def _expected(case: Path, image_name: str) -> dict[str, Any]:
    results = to_plain(load_object((case / ".expected" / "results.yaml").read_text()))
    (entry,) = [i for i in results["items"] if image_name in i["image"]]
    return dict(entry)


def _step_config(case: Path, image_name: str) -> dict[str, str]:
    kptfile = to_plain(load_object((case / "Kptfile").read_text()))
    steps = kptfile["pipeline"].get("mutators", []) + kptfile["pipeline"].get("validators", [])
    (step,) = [s for s in steps if image_name in s["image"]]
    return {k: str(v) for k, v in step.get("configMap", {}).items()}


@needs_shared
@pytest.mark.parametrize(
    "name", ["kubeval-failure", "fnresult-fn-failure", "structured-results-from-muiltiple-fns"]
)
def test_kpt_render_kubeconform_cases(name: str) -> None:
    case = RENDER / name
    rl = ResourceList(
        items=_items(case), function_config=_config_map(_step_config(case, "kubeconform"))
    )
    with pytest.raises(FunctionFailure) as info:
        kubeconform(rl)
    want = _expected(case, "kubeconform")
    assert info.value.message == want["stderr"]
    assert rl.results == want["results"]


@needs_shared
def test_kpt_render_output_no_truncate_case() -> None:
    case = RENDER / "fn-failure-output-no-truncate"
    rl = ResourceList(
        items=_items(case), function_config=_config_map(_step_config(case, "kubeconform"))
    )
    with pytest.raises(FunctionFailure):
        kubeconform(rl)
    messages = [(r["field"]["path"], r["message"]) for r in rl.results]
    assert ("spec.replicas", "got string, want null or integer") in messages


@needs_shared
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("kubeval-simple", None),
        ("kubeval-imperative", {"strict": "true", "skip_kinds": "MyCustom,MyOtherCustom"}),
    ],
)
def test_catalog_kubeval_examples(name: str, config: dict[str, str] | None) -> None:
    case = EXAMPLES / name
    rl = ResourceList(
        items=_items(case), function_config=_config_map(config or _step_config(case, "kubeval"))
    )
    with pytest.raises(FunctionFailure) as info:
        kubeval(rl)
    assert info.value.message == ""
    assert rl.results == _expected(case, "kubeval")["results"]


@needs_shared
def test_catalog_mounted_schema_location(tmp_path: Path) -> None:
    case = EXAMPLES / "kubeval-mount-schema"
    (tmp_path / "master-standalone").symlink_to(case / "jsonschema")
    items = _items(case)
    rl = ResourceList(
        items=items, function_config=_config_map({"schema_location": f"file://{tmp_path}"})
    )
    with pytest.raises(FunctionFailure) as info:
        kubeval(rl)
    assert info.value.message == ""
    assert rl.results == _expected(case, "kubeval")["results"]


def _deployment(spec: dict[str, Any], **meta: Any) -> CommentedMap:
    node = from_plain(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", **meta},
            "spec": spec,
        }
    )
    assert isinstance(node, CommentedMap)
    return node


VALID_SPEC = {
    "replicas": 2,
    "selector": {"matchLabels": {"app": "x"}},
    "template": {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1", "memory": 128}},
                }
            ]
        },
    },
}


def test_valid_deployment_passes_strict() -> None:
    rl = ResourceList(
        items=[_deployment(VALID_SPEC)], function_config=_config_map({"strict": "true"})
    )
    kubeconform(rl)
    assert rl.results == []


def test_strict_reports_unknown_fields_only_when_asked() -> None:
    spec = {**VALID_SPEC, "replicaz": 1}
    loose = ResourceList(items=[_deployment(spec)], function_config=_config_map({}))
    kubeconform(loose)
    assert loose.results == []
    strict = ResourceList(items=[_deployment(spec)], function_config=_config_map({"strict": "1"}))
    with pytest.raises(FunctionFailure):
        kubeconform(strict)
    assert [(r["field"], r["message"]) for r in strict.results] == [
        ({"path": "spec"}, "additional properties 'replicaz' not allowed")
    ]


def test_nested_list_paths_and_namespace_in_resource_ref() -> None:
    spec = to_plain(from_plain(VALID_SPEC))
    spec["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    rl = ResourceList(items=[_deployment(spec, namespace="ns")], function_config=None)
    with pytest.raises(FunctionFailure):
        kubeconform(rl)
    (result,) = rl.results
    assert result["field"] == {"path": "spec.template.spec.containers.0.ports.0.containerPort"}
    assert result["message"] == "got string, want integer"
    assert result["resourceRef"]["namespace"] == "ns"


def test_unknown_kind_kubeconform_skips_kubeval_reports() -> None:
    custom = from_plain(
        {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    )
    rl = ResourceList(items=[custom], function_config=None)
    kubeconform(rl)
    assert rl.results == []
    rl = ResourceList(items=[custom], function_config=None)
    with pytest.raises(FunctionFailure):
        kubeval(rl)
    assert rl.results[0]["message"].startswith("Validating arbitrary CRDs is not supported yet.")
    rl = ResourceList(
        items=[custom], function_config=_config_map({"ignore_missing_schemas": "true"})
    )
    kubeval(rl)
    assert rl.results == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"schema_location": "https://example.com/schemas"}, "never downloaded"),
        ({"schema_location": "/definitely/not/here"}, "not an existing absolute directory"),
        ({"strict": "maybe"}, "strict must be true or false"),
        ({"kubernetes_version": "latest"}, "kubernetes_version must be"),
    ],
)
def test_bad_options_are_clear_errors(data: dict[str, str], fragment: str) -> None:
    rl = ResourceList(items=[_deployment(VALID_SPEC)], function_config=_config_map(data))
    with pytest.raises(FunctionFailure):
        kubeconform(rl)
    assert fragment in rl.results[0]["message"]


def test_bundle_knows_core_kinds_and_is_registered() -> None:
    kinds = bundle()["kinds"]
    for key in ("v1/ConfigMap", "apps/v1/Deployment", "rbac.authorization.k8s.io/v1/Role"):
        assert key in kinds
    registered = builtins()
    assert registered["kubeval"] is kubeval
    assert registered["kubeconform"] is kubeconform


def test_runs_through_the_builtin_runtime() -> None:
    from porch.fn.runtime import BuiltinRuntime
    from porch.fn.types import FunctionSpec

    rl = ResourceList(items=[_deployment({"replicas": "x"})], function_config=None)
    out = BuiltinRuntime().run(
        FunctionSpec(image="ghcr.io/kptdev/krm-functions-catalog/kubeconform:latest"),
        rl,
        timeout=30,
    )
    assert out.exit_code == 1
    assert out.stderr == "failed to evaluate function: error: function failure"
    assert [r["message"] for r in out.resource_list.results] == [
        "missing properties 'selector', 'template'",
        "got string, want null or integer",
    ]
    out = BuiltinRuntime().run(FunctionSpec(image="gcr.io/kpt-fn/kubeval:v0.3"), rl, timeout=30)
    assert out.exit_code == 1
    assert out.stderr == ""
    assert [(r["field"]["path"], r["message"]) for r in out.resource_list.results] == [
        ("selector", "selector is required"),
        ("template", "template is required"),
        ("spec.replicas", "Invalid type. Expected: [integer,null], given: string"),
    ]


def test_numbers_are_named_number_by_kubeconform_and_integer_by_kubeval() -> None:
    cm = from_plain(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": 27}}
    )
    rl = ResourceList(items=[cm], function_config=None)
    with pytest.raises(FunctionFailure):
        kubeconform(rl)
    assert [(r["field"], r["message"]) for r in rl.results] == [
        ({"path": "data.n"}, "got number, want null or string")
    ]
    rl = ResourceList(items=[cm], function_config=None)
    with pytest.raises(FunctionFailure):
        kubeval(rl)
    assert [r["message"] for r in rl.results] == [
        "Invalid type. Expected: [string,null], given: integer"
    ]


def test_int_or_string_and_quantity_fields() -> None:
    svc = from_plain(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {
                "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]
            },
        }
    )
    bad = from_plain(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": [1]}]},
        }
    )
    rl = ResourceList(items=[svc], function_config=_config_map({"strict": "true"}))
    kubeconform(rl)
    assert rl.results == []
    rl = ResourceList(items=[bad], function_config=None)
    with pytest.raises(FunctionFailure):
        kubeconform(rl)
    assert [(r["field"]["path"], r["message"]) for r in rl.results] == [
        ("spec.ports.0.targetPort", "'oneOf' failed, none matched")
    ]


def test_bundle_matches_its_generator() -> None:
    import importlib.util
    import json

    import kubernetes

    tool = Path(__file__).resolve().parents[2] / "tools" / "gen_kube_schemas.py"
    shipped = bundle()
    if shipped["source"] != f"kubernetes python client {kubernetes.__version__}":
        pytest.skip(f"bundle was generated from {shipped['source']}, not the installed client")
    spec = importlib.util.spec_from_file_location("gen_kube_schemas", tool)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    regenerated = json.loads(json.dumps(module.build()))
    assert regenerated == shipped
