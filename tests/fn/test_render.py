"""kpt's render algorithm over in-memory packages (porch.fn.render)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.fn import kio
from porch.fn.kptfile_pipeline import decode_kptfile
from porch.fn.render import RenderEvent, render, resolve_tag
from porch.fn.runtime import BuiltinRuntime
from porch.fn.types import Builtin, FunctionFailure, ResourceList

PREFIX = "ghcr.io/kptdev/krm-functions-catalog/"


def _kptfile(name: str, mutators: str = "", validators: str = "", annotations: str = "") -> str:
    text = f"apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: {name}\n"
    if annotations:
        text += "  annotations:\n" + annotations
    if mutators or validators:
        text += "pipeline:\n"
    if mutators:
        text += "  mutators:\n" + mutators
    if validators:
        text += "  validators:\n" + validators
    return text


def _cm(name: str, extra: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}"


class Recorder:
    """Tiny builtins that record what they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], Any]] = []

    def _record(self, fn: str, rl: ResourceList) -> None:
        names = [str(i["metadata"]["name"]) for i in rl.items]
        config = dict(rl.function_config) if rl.function_config is not None else None
        self.calls.append((fn, names, config))

    def functions(self) -> dict[str, Builtin]:
        def set_ns(rl: ResourceList) -> None:
            self._record("set-ns", rl)
            assert rl.function_config is not None
            ns = rl.function_config["data"]["namespace"]
            for item in rl.items:
                if item.get("kind") != "Kptfile":
                    item["metadata"]["namespace"] = ns
            rl.results.append({"message": f"set {ns}", "severity": "info"})

        def noop(rl: ResourceList) -> None:
            self._record("noop", rl)

        def fail(rl: ResourceList) -> None:
            self._record("fail", rl)
            rl.results.append({"message": "bad thing", "severity": "error"})
            raise FunctionFailure("boom")

        def gen(rl: ResourceList) -> None:
            self._record("gen", rl)
            if not any(i["metadata"]["name"] == "generated" for i in rl.items):
                new = CommentedMap(apiVersion="v1", kind="ConfigMap")
                new["metadata"] = CommentedMap(name="generated")
                rl.items.append(new)

        def drop(rl: ResourceList) -> None:
            self._record("drop", rl)
            rl.items[:] = [i for i in rl.items if i.get("kind") == "Kptfile"]

        def mutate_in_validator(rl: ResourceList) -> None:
            self._record("validate", rl)
            for item in rl.items:
                item["metadata"]["name"] = "changed"

        return {
            "set-ns": set_ns,
            "noop": noop,
            "fail": fail,
            "gen": gen,
            "drop": drop,
            "validate": mutate_in_validator,
        }

    def runtime(self) -> BuiltinRuntime:
        return BuiltinRuntime(functions=self.functions())


def _ns_step(ns: str = "prod", extra: str = "") -> str:
    return f"    - image: set-ns\n      configMap:\n        namespace: {ns}\n{extra}"


def test_success_writes_resources_and_status() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("app", _ns_step()),
        "a.yaml": "# keep me\n" + _cm("a", "data:\n  k: v # c\n"),
        "README.md": "hello",
    }
    result = render(files, rec.runtime())
    assert result.error == ""
    assert result.files["README.md"] == "hello"
    assert result.files["a.yaml"] == (
        "# keep me\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: prod\n"
        "data:\n  k: v # c\n"
    )
    kf = decode_kptfile(result.files["Kptfile"])
    assert kf["status"]["conditions"] == [
        {"type": "Rendered", "status": "True", "reason": "RenderSuccess"}
    ]
    steps = kf["status"]["renderStatus"]["mutationSteps"]
    assert steps == [
        {
            "image": PREFIX + "set-ns:latest",
            "exitCode": 0,
            "results": [{"message": "set prod", "severity": "info"}],
        }
    ]
    assert result.results["items"] == [
        {
            "image": PREFIX + "set-ns:latest",
            "exitCode": 0,
            "results": [{"message": "set prod", "severity": "info"}],
        }
    ]
    assert result.results["exitCode"] == 0
    assert (result.executed, result.packages) == (1, 1)
    # the function saw the Kptfile too, with its own config as a generated ConfigMap
    assert rec.calls[0][1] == ["app", "a"]
    assert rec.calls[0][2]["metadata"] == {"name": "function-input"}


def test_failure_keeps_files_and_records_status() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("app", _ns_step() + "    - image: fail\n" + _ns_step("never")),
        "a.yaml": _cm("a"),
    }
    result = render(files, rec.runtime())
    assert result.error == "pkg.render: pkg .:\n\tpipeline.run: already handled error"
    assert result.files["a.yaml"] == files["a.yaml"]
    assert [c[0] for c in rec.calls] == ["set-ns", "fail"]
    kf = decode_kptfile(result.files["Kptfile"])
    cond = kf["status"]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "RenderFailed")
    rs = kf["status"]["renderStatus"]
    assert rs["errorSummary"] == PREFIX + "fail:latest: exit code 1"
    assert rs["mutationSteps"][1]["stderr"] == "boom"
    assert rs["mutationSteps"][1]["errorResults"] == [{"message": "bad thing", "severity": "error"}]
    assert result.results["exitCode"] == 1
    assert result.executed == 1


def test_save_on_render_failure_writes_partial_output() -> None:
    rec = Recorder()
    ann = '    kpt.dev/save-on-render-failure: "true"\n'
    files = {
        "Kptfile": _kptfile("app", _ns_step() + "    - image: fail\n", annotations=ann),
        "a.yaml": _cm("a"),
    }
    result = render(files, rec.runtime())
    assert result.error
    assert "namespace: prod" in result.files["a.yaml"]


def test_depth_first_post_order_and_subpackage_output_visible() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("root", "    - image: noop\n"),
        "r.yaml": _cm("r"),
        "b/Kptfile": _kptfile("b", "    - image: gen\n"),
        "a/Kptfile": _kptfile("a", _ns_step("a-ns")),
        "a/x.yaml": _cm("x"),
        "a/c/Kptfile": _kptfile("c", "    - image: noop\n"),
    }
    events: list[RenderEvent] = []
    result = render(files, rec.runtime(), reporter=events.append, package_name="root")
    assert result.error == ""
    assert [c[0] for c in rec.calls] == ["noop", "set-ns", "gen", "noop"]
    # root sees its own resources then each subpackage's rendered output
    assert rec.calls[-1][1] == ["root", "r", "a", "x", "c", "b", "generated"]
    assert rec.calls[1][1] == ["a", "x", "c"]
    assert "namespace: a-ns" in result.files["a/x.yaml"]
    assert result.files["b/configmap_generated.yaml"].startswith("apiVersion: v1\n")
    packages = [e.package for e in events if e.kind == "package"]
    assert packages == ["root/a/c", "root/a", "root/b", "root"]
    assert result.packages == 4


def test_breadth_first_rendering() -> None:
    rec = Recorder()
    ann = '    kpt.dev/bfs-rendering: "true"\n'
    files = {
        "Kptfile": _kptfile("root", _ns_step("top"), annotations=ann),
        "a/Kptfile": _kptfile("a", "    - image: noop\n"),
        "a/x.yaml": _cm("x"),
    }
    result = render(files, rec.runtime())
    assert result.error == ""
    assert [c[0] for c in rec.calls] == ["set-ns", "noop"]
    # the child ran after its parent and saw the parent's edit
    assert "namespace: top" in result.files["a/x.yaml"]


def test_validators_cannot_mutate() -> None:
    rec = Recorder()
    files = {"Kptfile": _kptfile("app", validators="    - image: validate\n"), "a.yaml": _cm("a")}
    result = render(files, rec.runtime())
    assert result.error == ""
    assert result.files["a.yaml"] == files["a.yaml"]
    kf = decode_kptfile(result.files["Kptfile"])
    assert kf["status"]["renderStatus"]["validationSteps"][0]["exitCode"] == 0


def test_selectors_and_exclusions() -> None:
    rec = Recorder()
    step = _ns_step(
        "sel",
        "      selectors:\n        - kind: ConfigMap\n      exclude:\n        - name: b\n",
    )
    files = {"Kptfile": _kptfile("app", step), "a.yaml": _cm("a") + "---\n" + _cm("b")}
    events: list[RenderEvent] = []
    result = render(files, rec.runtime(), reporter=events.append)
    assert result.error == ""
    assert rec.calls[0][1] == ["a"]
    out = result.files["a.yaml"]
    assert out.count("namespace: sel") == 1
    assert "kpt-resource-id" not in out
    running = [e for e in events if e.kind == "running"]
    assert running[0].resource_count == 1


def test_pruning_deleted_resources() -> None:
    rec = Recorder()
    files = {"Kptfile": _kptfile("app", "    - image: drop\n"), "a.yaml": _cm("a")}
    result = render(files, rec.runtime())
    assert result.error == ""
    assert "a.yaml" not in result.files


def test_config_path_uses_in_memory_resource() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile(
            "app", _ns_step("first") + "    - image: set-ns\n      configPath: cfg.yaml\n"
        ),
        "cfg.yaml": _cm("cfg", "data:\n  namespace: second\n"),
    }
    result = render(files, rec.runtime())
    assert result.error == ""
    config = rec.calls[1][2]
    # the config is the resource as the first mutator left it
    assert config["metadata"]["namespace"] == "first"
    assert "namespace: second" in result.files["cfg.yaml"]


def test_config_path_of_subpackage_is_refused() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("app", "    - image: set-ns\n      configPath: db/cfg.yaml\n"),
        "db/Kptfile": _kptfile("db"),
        "db/cfg.yaml": _cm("cfg"),
    }
    result = render(files, rec.runtime())
    assert 'is missing from path "db/cfg.yaml"' in result.error
    assert result.error.startswith("pkg.render: pkg .: Kptfile is invalid:\n")
    assert rec.calls == []


def test_both_config_map_and_path_refused() -> None:
    files = {
        "Kptfile": _kptfile(
            "app", "    - image: noop\n      configPath: c.yaml\n      configMap:\n        a: b\n"
        ),
        "c.yaml": _cm("c"),
    }
    result = render(files, Recorder().runtime())
    assert "functionConfig must not specify both `configMap` and `configPath`" in result.error
    assert result.files == files


def test_exec_needs_allow_exec() -> None:
    files = {"Kptfile": _kptfile("app", "    - exec: ./fn.sh\n"), "a.yaml": _cm("a")}
    result = render(files, Recorder().runtime())
    assert "must run with `--allow-exec` option" in result.error
    steps = decode_kptfile(result.files["Kptfile"])["status"]["renderStatus"]["mutationSteps"]
    assert steps[0]["exec"] == "./fn.sh"
    assert steps[0]["executionError"].startswith("must run with")


def test_missing_kptfile_and_old_schema() -> None:
    runtime = Recorder().runtime()
    assert "No Kptfile found" in render({"a.yaml": _cm("a")}, runtime).error
    old = {"Kptfile": "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nmetadata:\n  name: a\n"}
    result = render(old, runtime)
    assert 'has an old version ("v1alpha1") of the Kptfile schema' in result.error
    assert result.files == old


def test_non_krm_input_is_refused() -> None:
    files = {"Kptfile": _kptfile("app", "    - image: noop\n"), "a.yaml": "foo: bar\n"}
    result = render(files, Recorder().runtime())
    assert "input resource list must contain only KRM resources: a.yaml" in result.error


def test_reporter_events() -> None:
    events: list[RenderEvent] = []
    files = {"Kptfile": _kptfile("app", _ns_step() + "    - image: fail\n")}
    render(files, Recorder().runtime(), reporter=events.append, package_name="pkg")
    kinds = [(e.kind, e.name.rsplit("/", 1)[-1]) for e in events]
    assert kinds == [
        ("package", ""),
        ("running", "set-ns:latest"),
        ("pass", "set-ns:latest"),
        ("running", "fail:latest"),
        ("fail", "fail:latest"),
    ]
    fail = events[-1]
    assert fail.exec_error and fail.stderr == "boom" and fail.exit_code == 1
    assert fail.result_lines == ["[error]: bad thing"]


def test_tag_constraints() -> None:
    tags = ["v0.4.1", "v0.4.3", "v0.4.5", "v0.5.0", "v0.4.4-rc1"]

    def lister(image: str) -> list[str]:
        assert image == PREFIX + "set-namespace"
        return tags

    img = PREFIX + "set-namespace"
    assert resolve_tag(img, "0.4.1 - 0.4.3", lister) == img + ":v0.4.3"
    assert resolve_tag(img, "~0.4", lister) == img + ":v0.4.5"
    assert resolve_tag(img, "^0.4.2", lister) == img + ":v0.4.5"
    assert resolve_tag(img, ">=0.4, <0.5", lister) == img + ":v0.4.5"
    assert resolve_tag(img, "v0.9.9", lister) == img + ":v0.9.9"
    with pytest.raises(ValueError, match="no tag could be found"):
        resolve_tag(img, "~1.0", lister)


def test_comments_dropped_by_a_function_come_back() -> None:
    def strip(rl: ResourceList) -> None:
        from porch.krm import yaml as krm_yaml

        rl.items[:] = [krm_yaml.from_plain(krm_yaml.to_plain(i)) for i in rl.items]

    files = {
        "Kptfile": _kptfile("app", "    - image: strip\n"),
        "a.yaml": "# head\n" + _cm("a", "data:\n  # about k\n  k: v # eol\n"),
    }
    result = render(files, BuiltinRuntime(functions={"strip": strip}))
    assert result.error == ""
    assert result.files["a.yaml"] == files["a.yaml"]


def test_out_of_place_render_leaves_files_alone() -> None:
    rec = Recorder()
    files = {"Kptfile": _kptfile("app", _ns_step()), "a.yaml": _cm("a")}
    result = render(files, rec.runtime(), in_place=False)
    assert result.error == ""
    assert result.files == files
    assert "namespace: prod" in result.output_files["a.yaml"]
    assert "status:" not in result.output_files["Kptfile"]
    anns = [kio.get_annotations(r)[kio.PATH] for r in result.resources]
    assert anns == ["Kptfile", "a.yaml"]


def test_nested_failure_message_names_each_package() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("root"),
        "a/Kptfile": _kptfile("a"),
        "a/b/Kptfile": _kptfile("b", "    - image: fail\n"),
    }
    result = render(files, rec.runtime())
    assert result.error == (
        "pkg.render: pkg ./a:\n\tpkg ./a/b:\n\tpipeline.run: already handled error"
    )
    kf = decode_kptfile(result.files["Kptfile"])
    assert kf["status"]["conditions"][0]["message"] == result.error
    assert result.files["a/b/Kptfile"] == files["a/b/Kptfile"]


def test_runtime_failure_and_unknown_function() -> None:
    files = {"Kptfile": _kptfile("app", "    - image: example.com/fns/missing:v1\n")}
    result = render(files, Recorder().runtime())
    assert result.error == (
        'pkg.render: pkg .:\n\tpipeline.run: function "example.com/fns/missing:v1" not found'
    )
    step = decode_kptfile(result.files["Kptfile"])["status"]["renderStatus"]["mutationSteps"][0]
    assert step["image"] == "example.com/fns/missing:v1"
    assert step["exitCode"] == 1


def test_default_image_prefix_and_tags() -> None:
    rec = Recorder()
    files = {
        "Kptfile": _kptfile("app", "    - image: noop\n      tag: ~1.2\n"),
    }
    result = render(
        files,
        BuiltinRuntime(functions=rec.functions(), prefixes=["example.com/fns/"]),
        default_image_prefix="example.com/fns",
        tag_lister=lambda image: ["v1.1.0", "v1.2.0", "v1.2.7", "v1.3.0"],
    )
    assert result.error == ""
    step = decode_kptfile(result.files["Kptfile"])["status"]["renderStatus"]["mutationSteps"][0]
    assert step["image"] == "example.com/fns/noop:v1.2.7"


def test_write_status_off_leaves_kptfile() -> None:
    rec = Recorder()
    files = {"Kptfile": _kptfile("app", _ns_step()), "a.yaml": _cm("a")}
    result = render(files, rec.runtime(), write_status=False)
    assert result.error == ""
    assert result.files["Kptfile"] == files["Kptfile"]
    assert "namespace: prod" in result.files["a.yaml"]


def test_plain_dict_outputs_and_bad_outputs() -> None:
    def plain(rl: ResourceList) -> None:
        rl.items.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "labels": {}}}
        )

    def scalar(rl: ResourceList) -> None:
        rl.items.append("oops")  # type: ignore[arg-type]

    runtime = BuiltinRuntime(functions={"plain": plain, "scalar": scalar})
    ok = render({"Kptfile": _kptfile("app", "    - image: plain\n")}, runtime)
    assert ok.error == ""
    assert ok.files["configmap_p.yaml"] == (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p\n  labels: {}\n"
    )
    bad = render({"Kptfile": _kptfile("app", "    - image: scalar\n")}, runtime)
    assert "output resource list must contain only KRM resources" in bad.error


def test_either_annotation_form_moves_a_resource() -> None:
    def move(key: str, other: str | None) -> Builtin:
        def fn(rl: ResourceList) -> None:
            for item in rl.items:
                if item["kind"] == "ConfigMap":
                    item["metadata"]["annotations"][key] = "moved.yaml"
                    if other:
                        item["metadata"]["annotations"][other] = "elsewhere.yaml"

        return fn

    runtime = BuiltinRuntime(
        functions={
            "legacy": move(kio.LEGACY_PATH, None),
            "internal": move(kio.PATH, None),
            "both": move(kio.PATH, kio.LEGACY_PATH),
        }
    )
    for name in ("legacy", "internal"):
        files = {"Kptfile": _kptfile("app", f"    - image: {name}\n"), "a.yaml": _cm("a")}
        result = render(files, runtime)
        assert result.error == ""
        assert "a.yaml" not in result.files
        assert result.files["moved.yaml"] == files["a.yaml"]
    files = {"Kptfile": _kptfile("app", "    - image: both\n"), "a.yaml": _cm("a")}
    result = render(files, runtime)
    assert result.error.endswith(
        "resource input to function has mismatched legacy and internal path annotations"
    )
    assert result.files["a.yaml"] == files["a.yaml"]


# ---- kpt's own fn-render cases

SHARED = Path(__file__).resolve().parents[3] / "shared"
CASES = SHARED / "conformance" / "kpt-fn-render"
NOT_RENDER_IN_PLACE = ("out-of-place", "wasm", "image-pull-policy")
KNOWN_GAPS: dict[str, str] = {}


def _case_dirs() -> list[Path]:
    if not CASES.is_dir():
        return []
    out = []
    for root, dirs, _ in os.walk(CASES):
        if ".expected" in dirs:
            out.append(Path(root))
            dirs[:] = []
    return sorted(out)


def _load(d: Path) -> dict[str, str]:
    files = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and ".expected" not in p.relative_to(d).parts:
            files[p.relative_to(d).as_posix()] = p.read_text()
    return files


def _expected(d: Path) -> dict[str, str]:
    tmp = Path(tempfile.mkdtemp(prefix="render-case-"))
    try:
        work = tmp / "w"
        shutil.copytree(d, work, ignore=shutil.ignore_patterns(".expected"))
        patch = d / ".expected" / "diff.patch"
        if patch.exists() and patch.stat().st_size:
            subprocess.run(["git", "init", "-q"], cwd=work, check=True)
            subprocess.run(["git", "apply", str(patch)], cwd=work, check=True)
            shutil.rmtree(work / ".git")
        return _load(work)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _usable(d: Path, runtime: BuiltinRuntime) -> str:
    if any(part in d.name for part in NOT_RENDER_IN_PLACE):
        return "not an in-place render case"
    for kf in d.rglob("Kptfile"):
        text = kf.read_text()
        if "exec:" in text:
            return "needs exec functions"
        if "tag:" in text:
            return "needs registry tags"
        for line in text.splitlines():
            image = line.strip().removeprefix("- ").removeprefix("image:").strip()
            if line.strip().startswith(("- image:", "image:")) and image:
                full = image if "/" in image else PREFIX + image
                if ":" not in full.rsplit("/", 1)[-1]:
                    full += ":latest"
                if runtime.lookup(full) is None:
                    return f"function {image} not available"
    return ""


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda p: p.relative_to(CASES).as_posix())
def test_kpt_fn_render_case(case: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is needed to apply the expected diff")
    runtime = BuiltinRuntime()
    reason = _usable(case, runtime)
    if reason:
        pytest.skip(reason)
    name = case.relative_to(CASES).as_posix()
    if name in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[name])
    result = render(_load(case), runtime, package_name=case.name)
    expected = _expected(case)
    for path in sorted(set(result.files) | set(expected)):
        assert result.files.get(path) == expected.get(path), path


def test_case_corpus_present_or_skipped() -> None:
    if not CASES.is_dir():
        pytest.skip(f"conformance data not found at {CASES}")
    assert len(_case_dirs()) > 40
