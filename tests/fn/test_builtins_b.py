"""Builtins of group B: apply-setters, apply-replacements, search-replace, set-image,
upsert-resource. Most cases come from the function catalog's own examples and tests (and the
kpt fn-render cases that use these functions): the package is run through the Python port and
its files are compared with the catalog's expected files (the example after ``diff.patch``)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.fn.registry import builtins
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import Documents, dump_documents, from_plain, load_object, parse_documents

SHARED = Path(__file__).resolve().parents[3] / "shared" / "conformance"
CATALOG = SHARED / "krm-functions-catalog"
RENDER = SHARED / "kpt-fn-render"
FUNCTIONS = (
    "apply-setters",
    "apply-replacements",
    "search-replace",
    "set-image",
    "upsert-resource",
)
PATH = "config.kubernetes.io/path"
INTERNAL_PATH = "internal.config.kubernetes.io/path"
INDEX = "config.kubernetes.io/index"
INTERNAL_INDEX = "internal.config.kubernetes.io/index"


def _need_shared() -> None:
    if not CATALOG.is_dir() or not RENDER.is_dir():
        pytest.skip(f"conformance data not found under {SHARED}")


def _fn_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def _cases() -> list[Path]:
    if not CATALOG.is_dir():
        return []
    found: list[Path] = []
    for fn in FUNCTIONS:
        found.extend(sorted(CATALOG.glob(f"examples/{fn}-*")))
        found.extend(sorted(CATALOG.glob(f"tests/{fn}/*")))
    found.append(RENDER / "fnresult-fn-success")
    return [p for p in found if (p / ".expected").is_dir()]


@dataclass
class Package:
    """A package loaded the way kpt hands it to a function: every KRM file's objects, each
    annotated with its path relative to the package root."""

    root: Path
    files: dict[str, Documents] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, skip: set[str]) -> Package:
        pkg = cls(root)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or rel.startswith(".expected") or rel in skip:
                continue
            if path.suffix not in (".yaml", ".yml") and path.name != "Kptfile":
                continue
            pkg.files[rel] = parse_documents(path.read_text(), filename=rel)
        return pkg

    def items(self) -> list[CommentedMap]:
        out: list[CommentedMap] = []
        for rel, docs in self.files.items():
            for index, obj in enumerate(docs.objects()):
                meta = obj.setdefault("metadata", CommentedMap())
                annos = meta.setdefault("annotations", CommentedMap())
                annos[PATH] = rel
                annos[INTERNAL_PATH] = rel
                annos[INDEX] = str(index)
                annos[INTERNAL_INDEX] = str(index)
                out.append(obj)
        return out

    def write_back(self, items: list[CommentedMap]) -> dict[str, str]:
        """File texts after the run: objects grouped by their path annotation (new objects
        without one go to ``<namespace>/<kind>_<name>.yaml`` as kpt names them)."""
        by_file: dict[str, list[tuple[int, CommentedMap]]] = {}
        for obj in items:
            annos = obj["metadata"].setdefault("annotations", CommentedMap())
            rel = annos.get(INTERNAL_PATH) or annos.get(PATH)
            index = int(annos.get(INTERNAL_INDEX) or annos.get(INDEX) or 1 << 30)
            if not rel:
                meta = obj["metadata"]
                name = f"{str(obj['kind']).lower()}_{meta['name']}.yaml"
                rel = f"{meta['namespace']}/{name}" if meta.get("namespace") else name
            for key in (PATH, INTERNAL_PATH, INDEX, INTERNAL_INDEX):
                annos.pop(key, None)
            if not annos:
                del obj["metadata"]["annotations"]
            by_file.setdefault(str(rel), []).append((index, obj))
        out: dict[str, str] = {}
        for rel, pairs in by_file.items():
            old = self.files.get(rel) or Documents(filename=rel)
            entries = {id(e.node): e for e in old.entries}
            docs = Documents(filename=rel)
            for _, obj in sorted(pairs, key=lambda p: p[0]):
                if id(obj) in entries:
                    docs.entries.append(entries[id(obj)])
                else:
                    docs.append(obj)
                    if old.entries:
                        docs.entries[-1].indent = old.entries[0].indent
            out[rel] = dump_documents(docs)
        return out


@dataclass
class Case:
    path: Path
    function: str
    config: CommentedMap | None
    skip: set[str]


def _configmap(data: dict[str, Any]) -> CommentedMap:
    cm = from_plain(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "function-input"}}
    )
    cm["data"] = from_plain({str(k): str(v) for k, v in data.items()})
    assert isinstance(cm, CommentedMap)
    return cm


def _exec_args(script: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(script.replace("\\\n", " "), comments=True)
    image = next(w.split("=", 1)[1] for w in words if w.startswith("--image="))
    if "--image" in words:
        image = words[words.index("--image") + 1]
    args = words[words.index("--") + 1 :]
    return image, dict(a.split("=", 1) for a in args)


def _case(path: Path) -> Case:
    expected = path / ".expected"
    exec_sh = expected / "exec.sh"
    config_yaml = expected / "config.yaml"
    if exec_sh.is_file():
        image, args = _exec_args(exec_sh.read_text().replace("--image ", "--image="))
        return Case(path, _fn_name(image), _configmap(args), set())
    spec = CommentedMap()
    if config_yaml.is_file() and config_yaml.read_text().strip():
        spec = load_object(config_yaml.read_text())
    if spec and spec.get("testType") == "eval":
        if "fnConfig" in spec:
            cfg = (expected / str(spec["fnConfig"])).resolve()
            rel = cfg.relative_to(path.resolve()).as_posix()
            return Case(path, _fn_name(str(spec["image"])), load_object(cfg.read_text()), {rel})
        return Case(path, _fn_name(str(spec["image"])), _configmap(dict(spec["args"])), set())
    kptfile = load_object((path / "Kptfile").read_text())
    step = kptfile["pipeline"]["mutators"][0]
    if "configPath" in step:
        config = load_object((path / str(step["configPath"])).read_text())
    elif "configMap" in step:
        config = _configmap(dict(step["configMap"]))
    else:
        config = None
    return Case(path, _fn_name(str(step["image"])), config, set())


def _expected_files(case: Case, tmp: Path) -> dict[str, str]:
    work = tmp / "expected"
    shutil.copytree(case.path, work, ignore=shutil.ignore_patterns(".expected"))
    patch = case.path / ".expected" / "diff.patch"
    if patch.is_file() and patch.stat().st_size:
        subprocess.run(["git", "apply", str(patch)], cwd=work, check=True, capture_output=True)
    return {
        p.relative_to(work).as_posix(): p.read_text()
        for p in work.rglob("*")
        if p.is_file() and (p.suffix in (".yaml", ".yml") or p.name == "Kptfile")
    }


def _expected_results(case: Case) -> tuple[int, list[dict[str, Any]]] | None:
    path = case.path / ".expected" / "results.yaml"
    if not path.is_file():
        return None
    data = load_object(path.read_text())
    items = data.get("items") or []
    results = [dict(r) for r in (items[0].get("results") or [])] if items else []
    plain = [{k: _plain(v) for k, v in r.items()} for r in results]
    return int(data.get("exitCode", 0)), plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if isinstance(value, int) else str(value)


def run_case(case: Case, tmp: Path) -> tuple[dict[str, str], dict[str, str], ResourceList, int]:
    pkg = Package.load(case.path, case.skip)
    rl = ResourceList(items=pkg.items(), function_config=case.config)
    exit_code = 0
    try:
        builtins()[case.function](rl)
    except FunctionFailure:
        exit_code = 1
    produced = pkg.write_back(rl.items)
    return produced, _expected_files(case, tmp), rl, exit_code


@pytest.mark.parametrize("path", _cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_catalog_case(path: Path, tmp_path: Path) -> None:
    _need_shared()
    case = _case(path)
    produced, expected, rl, exit_code = run_case(case, tmp_path)
    want_results = _expected_results(case)
    if want_results is not None:
        want_exit, want = want_results
        assert exit_code == want_exit
        got = [{k: _plain(v) for k, v in r.items()} for r in rl.results]
        assert got == want
    if exit_code:
        return
    for rel, text in expected.items():
        if rel.endswith("Kptfile") or rel in case.skip:
            continue  # render status is the engine's business; the eval config is no input
        assert produced.get(rel) == text, rel
    assert not set(produced) - set(expected), "unexpected new files"


def test_catalog_cases_present() -> None:
    _need_shared()
    assert len(_cases()) >= 15


# --- focused behaviour ------------------------------------------------------------------------


def _run(
    fn: str, config: Any, text: str, path: str = "f.yaml", *, strip: bool = True
) -> tuple[str, ResourceList, bool]:
    """Run builtin ``fn`` on the objects of ``text`` (annotated as coming from ``path``);
    ``config`` is a functionConfig object or a dict of ConfigMap data."""
    docs = parse_documents(text)
    items = docs.objects()
    for obj in items:
        meta = obj.setdefault("metadata", CommentedMap())
        meta.setdefault("annotations", CommentedMap())[PATH] = path
    if isinstance(config, str):
        fc: CommentedMap | None = load_object(config)
    elif isinstance(config, dict):
        fc = _configmap(config)
    else:
        fc = config
    rl = ResourceList(items=items, function_config=fc)
    failed = False
    try:
        builtins()[fn](rl)
    except FunctionFailure:
        failed = True
    for obj in rl.items if strip else []:
        annos = obj["metadata"].get("annotations")
        if annos is not None:
            annos.pop(PATH, None)
            if not annos:
                del obj["metadata"]["annotations"]
    out = Documents(filename=path, entries=[e for e in docs.entries if e.node in rl.items])
    for obj in rl.items:
        if all(obj is not e.node for e in out.entries):
            out.append(obj)
    return dump_documents(out), rl, failed


def _messages(rl: ResourceList) -> list[str]:
    return [str(r["message"]) for r in rl.results]


def test_apply_setters_partial_pattern_and_comment_spacing() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n"
        "  host: my-app.dev.example.com # kpt-set: my-app.${stage}.${domain}.${tld}\n"
    )
    out, rl, failed = _run("apply-setters", {"domain": "demo", "tld": "io"}, text)
    assert not failed
    assert "  host: my-app.dev.demo.io # kpt-set: my-app.${stage}.${domain}.${tld}\n" in out
    assert rl.results == [
        {
            "message": 'set field value to "my-app.dev.demo.io"',
            "field": {"path": "data.host"},
            "file": {"path": "f.yaml"},
        }
    ]


def test_apply_setters_arrays_and_styles() -> None:
    text = (
        "apiVersion: v1\nkind: X\nmetadata:\n  name: x\n"
        "flow: [a, b] # kpt-set: ${list}\n"
        "gone: # kpt-set: ${empty}\n  - a\n"
        'quoted: "1" # kpt-set: ${n}\n'
        "number: 1 # kpt-set: ${n}\n"
    )
    config = {"list": "- c\n- d", "empty": "", "n": "2"}
    out, _, failed = _run("apply-setters", config, text)
    assert not failed
    assert "flow: # kpt-set: ${list}\n  - c\n  - d\n" in out
    assert "gone: [] # kpt-set: ${empty}\n" in out
    assert 'quoted: "2" # kpt-set: ${n}\n' in out
    assert "number: 2 # kpt-set: ${n}\n" in out


@pytest.mark.parametrize(
    ("config", "comment", "message"),
    [
        ({"image": "u"}, "${image}:${tag}", "values for setters [${tag}] must be provided"),
        ({"l": "x"}, None, 'input to array setter must be an array of values, but found "x"'),
    ],
)
def test_apply_setters_errors(config: dict[str, str], comment: str | None, message: str) -> None:
    if comment is not None:
        text = f"apiVersion: v1\nkind: X\nmetadata:\n  name: x\nimage: bad # kpt-set: {comment}\n"
    else:
        text = "apiVersion: v1\nkind: X\nmetadata:\n  name: x\nl: # kpt-set: ${l}\n  - a\n"
    _, rl, failed = _run("apply-setters", config, text)
    assert failed
    assert rl.results == [{"message": f"failed to apply setters: {message}", "severity": "error"}]


def test_search_replace_put_comment_on_array_and_capture_groups() -> None:
    text = (
        "apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  images: [nginx, ubuntu]\n"
        "  other: [a]\n"
    )
    out, rl, _ = _run(
        "search-replace", {"by-path": "spec.images", "put-comment": "kpt-set: ${image}"}, text
    )
    assert "  images: # kpt-set: ${image}\n  - nginx\n  - ubuntu\n  other: [a]\n" in out
    assert _messages(rl) == ['Mutated field value to "[nginx, ubuntu]"']
    assert rl.results[0]["field"] == {"path": "spec.images # kpt-set: ${image}"}

    text = "apiVersion: v1\nkind: X\nmetadata:\n  name: a-dev-b\n  namespace: c-dev-d\n"
    config = {"by-value-regex": r"(\w+)-dev-(\w+)", "put-value": "${2}-prod-${1}"}
    out, rl, _ = _run("search-replace", config, text)
    assert "  name: b-prod-a\n  namespace: d-prod-c\n" in out
    assert _messages(rl) == [
        'Mutated field value to "b-prod-a"',
        'Mutated field value to "d-prod-c"',
    ]

    config["put-comment"] = "kpt-set: ${3}"
    _, rl, failed = _run("search-replace", config, text)
    assert failed
    assert _messages(rl) == [
        'failed to perform search-replace operation: "unable to resolve capture groups"'
    ]


def test_search_replace_matching_rules() -> None:
    text = (
        "apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  replicas: 3\n  foo: '3'\n"
        "  list:\n  - 3\n  - 4\n"
    )
    _, rl, _ = _run("search-replace", {"by-value": "3"}, text)
    assert [r["field"]["path"] for r in rl.results] == ["spec.replicas", "spec.foo", "spec.list[0]"]
    assert _messages(rl)[1] == "Matched field value \"'3'\""
    _, rl, _ = _run("search-replace", {"by-path": "spec.list[*]"}, text)
    assert [r["field"]["path"] for r in rl.results] == ["spec.list[0]", "spec.list[1]"]
    _, rl, _ = _run("search-replace", {"by-path": "**.replicas", "by-value": "4"}, text)
    assert _messages(rl) == ["no matches"]
    out, rl, _ = _run("search-replace", {"by-path": "metadata.namespace", "put-value": "ns"}, text)
    assert "  name: x\n  namespace: ns\n" in out
    _, rl, _ = _run("search-replace", {"by-value": "x", "by-file-path": "**/other.yaml"}, text)
    assert _messages(rl) == ["no matches"]
    _, rl, _ = _run("search-replace", {"by-value": "x", "by-file-path": "**/f.yaml"}, text)
    assert _messages(rl) == ['Matched field value "x"']
    _, rl, failed = _run("search-replace", {"by-value": "x", "put-values": "y"}, text)
    assert failed and 'invalid matcher \\"put-values\\"' in _messages(rl)[0]


def test_set_image_digest_tags_and_additional_fields() -> None:
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: a\n        image: nginx:1.0 # pinned\n"
        "      - name: b\n        image: nginx@sha256:abc\n      - name: c\n        image: other\n"
        "---\napiVersion: ex.com/v1\nkind: K\nmetadata:\n  name: k\nimages:\n- img: nginx:2\n"
    )
    config = (
        "apiVersion: fn.kpt.dev/v1alpha1\nkind: SetImage\nmetadata:\n  name: c\n"
        "image:\n  name: nginx\n  newTag: '1.5'\n"
        "additionalImageFields:\n- group: ex.com\n  kind: K\n  path: images[]/img\n"
    )
    out, rl, failed = _run("set-image", config, text)
    assert not failed
    assert "image: nginx:1.5 # pinned\n" in out
    assert "image: nginx:1.5\n" in out
    assert "image: other\n" in out
    assert "- img: nginx:1.5\n" in out
    assert _messages(rl) == ["summary: updated a total of 3 image(s)"]


def test_set_image_config_errors() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
    _, rl, failed = _run("set-image", {"name": "x", "tag": "y"}, text)
    assert failed
    assert _messages(rl) == [
        "ConfigMap has wrong field name tag",
        "function is terminated: ConfigMap has wrong field name tag",
    ]
    config = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
    _, rl, failed = _run("set-image", config, text)
    assert failed
    assert rl.results[0]["resourceRef"] == {"apiVersion": "v1", "kind": "Secret", "name": "s"}
    assert _messages(rl)[1].startswith("function is terminated by Resource(apiVersion=v1")


_REPLACEMENT_INPUT = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    role: source\n"
    "data:\n  image: registry/app:1.2\n  port: '8080'\n"
    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n"
    "    tier: front\nspec:\n  template:\n    spec:\n      containers:\n"
    "      - name: app\n        image: old:0 # keep me\n        ports:\n"
    "        - containerPort: 80\n      - name: side\n        image: side:1\n"
    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: other\n"
)


def _replacements(body: str) -> str:
    return (
        "apiVersion: fn.kpt.dev/v1alpha1\nkind: ApplyReplacements\nmetadata:\n  name: r\n"
        "replacements:\n" + body
    )


def test_apply_replacements_selectors_and_options() -> None:
    config = _replacements(
        "- source: {kind: ConfigMap, name: src, fieldPath: data.image}\n"
        "  targets:\n"
        "  - select: {kind: Deployment}\n"
        "    reject: [{name: other}]\n"
        "    fieldPaths: ['spec.template.spec.containers.[name=app].image']\n"
        "- source: {kind: ConfigMap, fieldPath: data.image, options: {delimiter: ':', index: 1}}\n"
        "  targets:\n"
        "  - select: {labelSelector: tier=front}\n"
        "    fieldPaths: ['spec.template.spec.containers.*.image']\n"
        "    options: {delimiter: ':', index: 1}\n"
        "- source: {kind: ConfigMap, fieldPath: data.port}\n"
        "  targets:\n"
        "  - select: {name: web}\n"
        "    fieldPaths: ['spec.template.spec.containers.0.ports.0.containerPort',\n"
        "                 'metadata.annotations.port']\n"
        "    options: {create: true}\n"
    )
    out, rl, failed = _run("apply-replacements", config, _REPLACEMENT_INPUT)
    assert not failed, rl.results
    assert "        image: registry/app:1.2 # keep me\n" in out
    assert "        image: side:1.2\n" in out
    assert "        - containerPort: 8080\n" in out
    assert "  annotations:\n    port: 8080\n" in out  # a created scalar is untagged
    assert "name: other\n" in out and out.endswith("  name: other\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "- source: {kind: Secret}\n  targets: [{select: {kind: X}}]\n",
            "nothing selected by Secret.[noVer].[noGrp]/[noName].[noNs]",
        ),
        (
            "- source: {kind: Deployment}\n  targets: [{select: {kind: X}}]\n",
            "multiple matches for selector Deployment.[noVer].[noGrp]/[noName].[noNs]",
        ),
        (
            "- source: {name: src, fieldPath: data.nope}\n  targets: [{select: {kind: X}}]\n",
            "fieldPath `data.nope` is missing for replacement source "
            "[noKind].[noVer].[noGrp]/src.[noNs]",
        ),
        (
            "- source: {name: src}\n  targets: [{select: {name: web}, fieldPaths: [spec.x]}]\n",
            'unable to find field "spec.x" in replacement target',
        ),
        ("- source: {name: src}\n", "replacements must specify a source and at least one target"),
    ],
)
def test_apply_replacements_errors(body: str, message: str) -> None:
    _, rl, failed = _run("apply-replacements", _replacements(body), _REPLACEMENT_INPUT)
    assert failed
    assert rl.results == [{"message": message, "severity": "error"}]


def test_apply_replacements_rejects_other_configs() -> None:
    _, rl, failed = _run("apply-replacements", {"a": "b"}, _REPLACEMENT_INPUT)
    assert failed
    assert _messages(rl) == [
        "received functionConfig of kind ConfigMap and apiVersion v1, only functionConfig of "
        "kind ApplyReplacements and apiVersion fn.kpt.dev/v1alpha1 is supported"
    ]


def test_upsert_resource_replace_add_and_target_path() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: n\nspec:\n  a: 1\n"
    config = (
        "apiVersion: v1\nkind: List\nmetadata:\n  name: l\nitems:\n"
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s\n    namespace: n\n"
        "  spec:\n    a: 2 # new\n"
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s\n    namespace: n\n"
        "    annotations:\n      config.kubernetes.io/target-path: sub/s.yaml\n"
        "  spec:\n    a: 3\n"
    )
    _, rl, failed = _run("upsert-resource", config, text, strip=False)
    assert not failed
    assert len(rl.items) == 2
    replaced, added = rl.items
    assert replaced["spec"]["a"] == 2
    assert replaced["metadata"]["annotations"][PATH] == "f.yaml"
    assert dict(added["metadata"]["annotations"]) == {
        PATH: "sub/s.yaml",
        INTERNAL_PATH: "sub/s.yaml",
    }
    _, rl, failed = _run("upsert-resource", None, text)
    assert failed


def test_legacy_apply_replacements_skips_missing_targets_and_copies_node() -> None:
    config = _replacements(
        "- source: {kind: ConfigMap, name: src, fieldPath: data.port}\n"
        "  targets:\n"
        "  - select: {kind: Deployment}\n"
        "    fieldPaths:\n"
        "    - spec.template.spec.containers.[name=app].ports.0.containerPort\n"
        "    - spec.template.spec.containers.[name=missing].image\n"
        "    - spec.nothing.here\n"
    )
    out, rl, failed = _run("apply-replacements:v0.1.1", config, _REPLACEMENT_INPUT)
    assert not failed, rl.results
    # the source node replaces the target whole: the quoted string stays a quoted string
    assert "        - containerPort: '8080'\n" in out
    assert "missing" not in out and "nothing" not in out
    # the current semantics report the missing field instead
    _, rl, failed = _run("apply-replacements", config, _REPLACEMENT_INPUT)
    assert failed
    assert _messages(rl) == [
        'unable to find field "spec.template.spec.containers.[name=missing].image" '
        "in replacement target"
    ]


def test_untouched_documents_keep_their_bytes() -> None:
    """Looking for setter comments must not alter documents it does not change (ruamel
    creates comment holders on read, which would force a re-dump)."""
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n"
        "    x: y\n  \ndata:\n  long: 'one two three four five six seven eight nine ten "
        "eleven twelve thirteen fourteen fifteen sixteen'\n  empty: ~\n"
        "  list: [a,   b]\n"
    )
    for fn, config in (
        ("apply-setters", {"x": "1"}),
        ("search-replace", {"by-value": "nope", "put-value": "z"}),
        ("set-image", {"name": "nginx", "newTag": "2"}),
    ):
        out, _, failed = _run(fn, config, text)
        assert not failed
        assert out == text, fn
