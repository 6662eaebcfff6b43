"""The ``starlark`` builtin: catalog examples/tests and its error texts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins.starlark import rewrite_source, starlark_run
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import Documents, dump_documents, from_plain, load_object, parse_documents

SHARED = Path(__file__).resolve().parents[3] / "shared"
CATALOG = SHARED / "conformance" / "krm-functions-catalog"
RENDER = SHARED / "conformance" / "kpt-fn-render"

needs_shared = pytest.mark.skipif(
    not CATALOG.is_dir(), reason=f"conformance data not found at {CATALOG}"
)


def _load_package(root: Path) -> dict[str, Documents]:
    files: dict[str, Documents] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".expected") or not path.is_file():
            continue
        if path.suffix in (".yaml", ".yml") or path.name == "Kptfile":
            files[rel] = parse_documents(path.read_text(), filename=rel)
    return files


def _run(
    files: dict[str, Documents], fc: CommentedMap, timeout: float | None = None
) -> tuple[ResourceList, str | None]:
    items = [obj for docs in files.values() for obj in docs.objects()]
    rl = ResourceList(items=list(items), function_config=fc)
    try:
        starlark_run(rl, timeout=timeout)
    except FunctionFailure as exc:
        return rl, exc.message
    # Write back: kept objects stay in their documents, new ones get kpt's file names.
    kept = {id(obj) for obj in rl.items}
    for docs in files.values():
        for obj in docs.objects():
            if id(obj) not in kept:
                docs.remove(obj)
    known = {id(obj) for docs in files.values() for obj in docs.objects()}
    for obj in rl.items:
        if id(obj) not in known:
            name = f"{str(obj['kind']).lower()}_{obj['metadata']['name']}.yaml"
            files.setdefault(name, Documents(filename=name)).append(obj)
    return rl, None


def _expected_tree(case: Path, tmp: Path) -> Path:
    want = tmp / "want"
    shutil.copytree(case, want, ignore=shutil.ignore_patterns(".expected"))
    patch = case / ".expected" / "diff.patch"
    if patch.is_file() and patch.read_text().strip():
        subprocess.run(["git", "apply", str(patch)], cwd=want, check=True)
    return want


def _fn_config(case: Path) -> CommentedMap:
    kptfile = load_object((case / "Kptfile").read_text())
    pipeline = kptfile["pipeline"]
    step = (pipeline.get("mutators") or pipeline.get("validators"))[0]
    assert "starlark" in step["image"]
    if "configPath" in step:
        return load_object((case / step["configPath"]).read_text())
    data = from_plain(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "function-input"}}
    )
    data["data"] = from_plain({k: str(v) for k, v in step["configMap"].items()})
    assert isinstance(data, CommentedMap)
    return data


def _check_files(case: Path, files: dict[str, Documents], tmp: Path) -> None:
    want = _expected_tree(case, tmp)
    for rel, docs in files.items():
        assert dump_documents(docs) == (want / rel).read_text(), rel
    produced = set(files)
    for path in want.rglob("*"):
        rel = path.relative_to(want).as_posix()
        if path.suffix == ".yaml" or path.name == "Kptfile":
            assert rel in produced, f"missing output file {rel}"


EXAMPLES = [
    "starlark-set-namespace",
    "starlark-inject-sidecar",
    "starlark-poddisruptionbudget",
    "starlark-load-library",
]


@needs_shared
@pytest.mark.parametrize("name", EXAMPLES)
def test_catalog_examples(name: str, tmp_path: Path) -> None:
    case = CATALOG / "examples" / name
    files = _load_package(case)
    rl, err = _run(files, _fn_config(case))
    assert err is None, rl.results
    _check_files(case, files, tmp_path)


TESTS = ["load-library", "map-key-inline-comment", "non-standard-features"]


@needs_shared
@pytest.mark.parametrize("name", TESTS)
def test_catalog_tests(name: str, tmp_path: Path) -> None:
    case = CATALOG / "tests" / "starlark" / name
    files = _load_package(case)
    rl, err = _run(files, _fn_config(case))
    assert err is None, rl.results
    _check_files(case, files, tmp_path)


@needs_shared
def test_eval_fn_config_is_also_an_item(tmp_path: Path) -> None:
    case = CATALOG / "tests" / "starlark" / "eval-fn-config"
    files = _load_package(case)
    _run(files, load_object((case / "fn-config.yaml").read_text()))
    _check_files(case, files, tmp_path)


@needs_shared
def test_configmap_as_function_config(tmp_path: Path) -> None:
    case = CATALOG / "examples" / "starlark-configmap-as-functionconfig"
    files = _load_package(case)
    fc = from_plain(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "function-input"},
            "data": {"source": (case / "set-replicas.star").read_text(), "replicas": "5"},
        }
    )
    rl, err = _run(files, fc)
    assert err is None, rl.results
    _check_files(case, files, tmp_path)


def _expected_results(case: Path) -> list[dict[str, Any]]:
    from porch.krm.yaml import to_plain

    results = to_plain(load_object((case / ".expected" / "results.yaml").read_text()))
    return list(results["items"][0]["results"])


@needs_shared
@pytest.mark.parametrize(
    "case",
    [
        CATALOG / "examples" / "starlark-validation",
        CATALOG / "tests" / "starlark" / "empty-input",
        RENDER / "validate-resource-failure",
    ],
    ids=lambda p: p.name,
)
def test_failures_match_catalog_results(case: Path) -> None:
    files = _load_package(case)
    rl, err = _run(files, _fn_config(case))
    assert err == "failed to evaluate function: error: function failure"
    assert rl.results == _expected_results(case)


@needs_shared
def test_syntax_error_text_matches_kpt_fn_failure_case() -> None:
    case = RENDER / "fn-failure"
    files = _load_package(case)
    rl, err = _run(files, load_object((case / "starlark-failure-fn.yaml").read_text()))
    assert err == "failed to evaluate function: error: function failure"
    assert rl.results == [
        {"message": "httpbin-gen:3:73: got newline, want primary expression", "severity": "error"}
    ]


def _fc(source: str, name: str = "t", **extra: Any) -> CommentedMap:
    fc = {"apiVersion": "fn.kpt.dev/v1alpha1", "kind": "StarlarkRun", "metadata": {"name": name}}
    fc.update(extra)
    fc["source"] = source
    node = from_plain(fc)
    assert isinstance(node, CommentedMap)
    return node


def _items(text: str) -> list[CommentedMap]:
    return parse_documents(text).objects()


def test_comments_survive_and_untouched_items_dump_identically() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a # the name\n"
        "  annotations:\n    keep: 'x'\ndata:\n  # a comment\n  k: \"1\"\n"
    )
    docs = parse_documents(text)
    rl = ResourceList(
        items=docs.objects(),
        function_config=_fc(
            'for r in ctx.resource_list["items"]:\n  r["data"]["n"] = 2\n'
            '  r["metadata"]["labels"] = {"z": "1", "a": "b"}\n'
        ),
    )
    starlark_run(rl)
    assert rl.items[0] is docs.objects()[0]
    assert dump_documents(docs) == (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a # the name\n"
        "  annotations:\n    keep: 'x'\n  labels:\n    a: b\n    z: \"1\"\ndata:\n"
        '  # a comment\n  k: "1"\n  n: 2\n'
    )


def test_delete_and_params() -> None:
    rl = ResourceList(
        items=_items("kind: A\nmetadata:\n  name: a\n---\nkind: B\nmetadata:\n  name: b\n"),
        function_config=_fc(
            "p = ctx.resource_list['functionConfig']['params']\n"
            "ctx.resource_list['items'] = [r for r in ctx.resource_list['items'] "
            "if r['kind'] != p['drop']]\n",
            params={"drop": "A"},
        ),
    )
    starlark_run(rl)
    assert [r["kind"] for r in rl.items] == ["B"]
    assert "annotations" not in rl.items[0]["metadata"]


def test_fail_and_prints_reach_stderr() -> None:
    rl = ResourceList(items=[], function_config=_fc('print("hello")\nfail("no way")\n'))
    with pytest.raises(FunctionFailure) as info:
        starlark_run(rl)
    assert info.value.message == "hello\nfailed to evaluate function: error: function failure"
    assert rl.results == [{"message": "fail: no way", "severity": "error"}]


def test_runtime_error_message_is_the_starlark_message() -> None:
    rl = ResourceList(items=[], function_config=_fc("x = {}\ny = x['missing']\n"))
    with pytest.raises(FunctionFailure):
        starlark_run(rl)
    assert rl.results[0]["message"] == 'key "missing" not in dict'


def test_resolve_error_reports_script_line() -> None:
    rl = ResourceList(items=[], function_config=_fc("a = 1\nb = nope\n", name="prog"))
    with pytest.raises(FunctionFailure):
        starlark_run(rl)
    assert rl.results[0]["message"] == "prog:2:5: undefined: nope"


@pytest.mark.parametrize(
    ("fc", "message"),
    [
        (None, "FunctionConfig is missing. Expect `ConfigMap` or `StarlarkRun`"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
            "`functionConfig` must be either /v1, Kind=ConfigMap or fn.kpt.dev/v1alpha1, "
            "Kind=StarlarkRun, but we got: apps/v1, Kind=Deployment",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}},
            "`source` must not be empty",
        ),
    ],
)
def test_config_errors(fc: dict[str, Any] | None, message: str) -> None:
    rl = ResourceList(items=[], function_config=from_plain(fc) if fc else None)
    with pytest.raises(FunctionFailure):
        starlark_run(rl)
    assert rl.results == [{"message": message, "severity": "error"}]


def test_runaway_script_is_stopped() -> None:
    rl = ResourceList(
        items=[],
        function_config=_fc("def spin():\n  while True:\n    pass\nspin()\n"),
    )
    with pytest.raises(FunctionFailure):
        starlark_run(rl, timeout=1.0)
    assert "did not finish within 1s" in rl.results[0]["message"]


def test_loaded_module_members() -> None:
    rl = ResourceList(
        items=_items("kind: A\nmetadata:\n  name: a\n  annotations:\n    j: '{\"n\": 3}'\n"),
        function_config=_fc(
            "load('encoding/json.star', 'json')\nload('encoding/base64.star', b64='base64')\n"
            "for r in ctx.resource_list['items']:\n"
            "  r['n'] = json.decode(r['metadata']['annotations']['j'])['n'] + 1\n"
            "  r['e'] = b64.encode('hi')\n"
        ),
    )
    starlark_run(rl)
    assert rl.items[0]["n"] == 4
    assert rl.items[0]["e"] == "aGk="


def test_unsupported_module_member_is_a_clear_error() -> None:
    rl = ResourceList(
        items=[],
        function_config=_fc("load('http.star', 'http')\nx = http.get('http://example')\n"),
    )
    with pytest.raises(FunctionFailure):
        starlark_run(rl)
    assert rl.results[0]["message"] == "http.get is not supported by this starlark runtime"


def test_rewrite_keeps_columns_and_ignores_strings() -> None:
    src = (
        "load('krmfn.star', 'krmfn')\nx = ctx.resource_list # ctx.open_api\ns = 'ctx.environment'\n"
    )
    out, members = rewrite_source(src)
    assert out.splitlines() == [
        "pass" + " " * (len("load('krmfn.star', 'krmfn')") - 4),
        "x = ctx_resource_list # ctx.open_api",
        "s = 'ctx.environment'",
    ]
    assert members == {}


def test_open_api_definitions_are_readable() -> None:
    rl = ResourceList(
        items=[],
        function_config=_fc(
            "d = ctx.open_api['definitions']['io.k8s.api.apps.v1.Deployment']\n"
            "fail(d['x-kubernetes-group-version-kind'][0]['kind'])\n"
        ),
    )
    with pytest.raises(FunctionFailure):
        starlark_run(rl)
    assert rl.results[0]["message"] == "fail: Deployment"


def test_runs_through_the_builtin_runtime() -> None:
    from porch.fn.runtime import BuiltinRuntime
    from porch.fn.types import FunctionSpec

    rl = ResourceList(
        items=_items("kind: A\nmetadata:\n  name: a\n"),
        function_config=_fc("fail('stop')\n"),
    )
    out = BuiltinRuntime().run(
        FunctionSpec(image="ghcr.io/kptdev/krm-functions-catalog/starlark:latest"), rl, timeout=30
    )
    assert out.exit_code == 1
    assert out.stderr == "failed to evaluate function: error: function failure"
    assert out.resource_list.results == [{"message": "fail: stop", "severity": "error"}]


def test_items_without_metadata_stay_without_metadata() -> None:
    docs = parse_documents("kind: A\nspec: 1\n")
    rl = ResourceList(
        items=docs.objects(),
        function_config=_fc("for r in ctx.resource_list['items']:\n  r['spec'] = 2\n"),
    )
    starlark_run(rl)
    assert dump_documents(docs) == "kind: A\nspec: 2\n"


@needs_shared
@pytest.mark.parametrize(
    ("name", "stderr"),
    [("openapi", "Deployment"), ("non-standard-features", 'set(["foo", "bar"])\n2')],
)
def test_print_output_reaches_a_stderr_aware_resource_list(name: str, stderr: str) -> None:
    from dataclasses import dataclass

    @dataclass
    class WithStderr(ResourceList):
        stderr: str = ""

    case = CATALOG / "tests" / "starlark" / name
    files = _load_package(case)
    items = [obj for docs in files.values() for obj in docs.objects()]
    rl = WithStderr(items=items, function_config=load_object((case / "fn-config.yaml").read_text()))
    starlark_run(rl)
    assert rl.stderr == stderr
