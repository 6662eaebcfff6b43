"""Run a builtin over a catalog example package the way ``kpt fn render``/``eval`` would feed it,
and give back the files it would write, so tests can compare them with the example's
``.expected/diff.patch`` applied to a copy of the package.

This is a test-only stand-in for the render engine: path/index annotations, ``configMap`` →
ConfigMap ``function-input``, ``configPath``, ``selectors``/``exclude`` (kind, name, namespace,
apiVersion, labels, annotations).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.registry import builtins
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import Documents, dump_documents, from_plain, load_object, parse_documents

SHARED = Path(__file__).resolve().parents[3] / "shared"
CATALOG = SHARED / "conformance" / "krm-functions-catalog"
RENDER = SHARED / "conformance" / "kpt-fn-render"

PATH = "internal.config.kubernetes.io/path"
INDEX = "internal.config.kubernetes.io/index"


def is_krm_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name == "Kptfile" or name.endswith((".yaml", ".yml"))


def package_files(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".expected") and is_krm_file(rel):
            out[rel] = p.read_text()
    return out


def expected_files(example: Path, tmp: Path) -> dict[str, str]:
    work = tmp / "expected"
    shutil.copytree(example, work)
    patch = example / ".expected" / "diff.patch"
    if patch.exists() and patch.read_text().strip():
        subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch)],
            cwd=work,
            check=True,
            capture_output=True,
        )
    return package_files(work)


def configmap(data: dict[str, Any]) -> CommentedMap:
    obj = from_plain(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "function-input"},
            "data": {str(k): _text(v) for k, v in data.items()},
        }
    )
    assert isinstance(obj, CommentedMap)
    return obj


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@dataclass
class Step:
    function: str
    config: CommentedMap | None
    selectors: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)


def function_name(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].split("@", 1)[0]


def steps_for(example: Path, files: dict[str, str], wanted: set[str]) -> list[Step]:
    """The steps of the example that run one of ``wanted`` (all of them must be wanted)."""
    config_file = example / ".expected" / "config.yaml"
    cfg = load_object(config_file.read_text()) if config_file.exists() else {}
    if cfg.get("testType") == "eval":
        fn = function_name(str(cfg["image"]))
        args = cfg.get("args") or {}
        return [Step(fn, configmap(dict(args)))]
    kptfile = load_object(files["Kptfile"])
    steps: list[Step] = []
    for m in (kptfile.get("pipeline") or {}).get("mutators") or []:
        fn = function_name(str(m["image"]))
        if fn not in wanted:
            raise LookupError(f"pipeline uses {fn}")
        conf: CommentedMap | None = None
        if m.get("configMap"):  # kpt passes no functionConfig for an empty configMap
            conf = configmap(dict(m["configMap"]))
        elif "configPath" in m:
            conf = load_object(files[str(m["configPath"])])
        steps.append(Step(fn, conf, list(m.get("selectors") or []), list(m.get("exclude") or [])))
    return steps


def _matches(obj: CommentedMap, sel: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    checks = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
    }
    for key, actual in checks.items():
        if key in sel and sel[key] != actual:
            return False
    for key in ("labels", "annotations"):
        have = meta.get(key) or {}
        for k, v in (sel.get(key) or {}).items():
            if have.get(k) != v:
                return False
    return True


@dataclass
class Outcome:
    files: dict[str, str]
    items: list[CommentedMap]
    results: list[dict[str, Any]]
    failure: str | None = None


def run_example(example: Path, wanted: set[str]) -> Outcome:
    files = package_files(example)
    exec_sh = example / ".expected" / "exec.sh"
    if exec_sh.exists() and "kpt pkg init" in exec_sh.read_text():
        from porch.fn.builtins.gen_pkg_context import ABSTRACT_PACKAGE_CONTEXT

        files.setdefault("package-context.yaml", ABSTRACT_PACKAGE_CONTEXT)
    docs: dict[str, Documents] = {}
    items: list[CommentedMap] = []
    for rel, text in files.items():
        docs[rel] = parse_documents(text, filename=rel)
        for index, obj in enumerate(docs[rel].objects()):
            meta = obj.setdefault("metadata", CommentedMap())
            annos = meta.setdefault("annotations", CommentedMap())
            annos[PATH] = rel
            annos[INDEX] = str(index)
            items.append(obj)
    fns = builtins()
    results: list[dict[str, Any]] = []
    failure = None
    for step in steps_for(example, files, wanted):
        selected = [
            o
            for o in items
            if (not step.selectors or any(_matches(o, s) for s in step.selectors))
            and not any(_matches(o, s) for s in step.exclude)
        ]
        rl = ResourceList(items=list(selected), function_config=step.config)
        try:
            fns[step.function](rl)
        except FunctionFailure as exc:
            failure = exc.message
        results.extend(rl.results)
        if failure:
            break
        sel_ids = {id(o) for o in selected}
        items = [o for o in items if id(o) not in sel_ids] + rl.items
    return Outcome(write_back(docs, items), items, results, failure)


def _strip(obj: CommentedMap) -> str:
    annos = obj["metadata"]["annotations"]
    path = str(annos.pop(PATH, "") or "")
    annos.pop(INDEX, None)
    if not annos:
        del obj["metadata"]["annotations"]
    if not obj["metadata"]:
        del obj["metadata"]
    return path


def write_back(docs: dict[str, Documents], items: list[CommentedMap]) -> dict[str, str]:
    alive = {id(o) for o in items}
    empty_before = {id(d) for d in docs.values() if not len(d)}
    known: set[int] = set()
    for d in docs.values():
        for obj in d.objects():
            known.add(id(obj))
            if id(obj) not in alive:
                d.remove(obj)
    for obj in items:
        path = _strip(obj) if "annotations" in (obj.get("metadata") or {}) else ""
        if id(obj) in known:
            continue
        path = path or default_path(obj)
        docs.setdefault(path, Documents(filename=path)).append(obj)
    out: dict[str, str] = {}
    for rel, d in docs.items():
        if len(d) or id(d) in empty_before:
            text = dump_documents(d)
            # kpt's writer ends every file it writes with a newline.
            out[rel] = text if not len(d) or text.endswith("\n") else text + "\n"
    return out


def default_path(obj: CommentedMap) -> str:
    meta = obj.get("metadata") or {}
    base = f"{str(obj.get('kind', '')).lower()}_{meta.get('name', '')}.yaml"
    ns = meta.get("namespace")
    return f"{ns}/{base}" if ns else base


def plain_without_status(text: str) -> Any:
    from porch.krm.yaml import to_plain

    obj = to_plain(load_object(text))
    obj.pop("status", None)
    return obj


@dataclass
class RenderStep:
    function: str
    results: list[dict[str, Any]]
    failure: str | None


def render_case(case: Path, wanted: set[str]) -> tuple[dict[str, str], list[RenderStep]]:
    """Render a one-package kpt fn-render case (mutators, then validators whose output is
    dropped); on failure the files stay as they were (no save-on-render-failure)."""
    files = package_files(case)
    ignored = set()
    krmignore = case / ".krmignore"
    if krmignore.exists():
        ignored = {line.strip() for line in krmignore.read_text().splitlines() if line.strip()}
    files = {k: v for k, v in files.items() if k.split("/", 1)[0] not in ignored}
    docs: dict[str, Documents] = {}
    items: list[CommentedMap] = []
    for rel, text in files.items():
        docs[rel] = parse_documents(text, filename=rel)
        for index, obj in enumerate(docs[rel].objects()):
            meta = obj.setdefault("metadata", CommentedMap())
            annos = meta.setdefault("annotations", CommentedMap())
            annos[PATH] = rel
            annos[INDEX] = str(index)
            items.append(obj)
    kptfile = load_object(files["Kptfile"])
    pipeline = kptfile.get("pipeline") or {}
    fns = builtins()
    steps: list[RenderStep] = []
    for group in ("mutators", "validators"):
        for m in pipeline.get(group) or []:
            fn = function_name(str(m["image"]))
            if fn not in wanted:
                raise LookupError(f"pipeline uses {fn}")
            conf: CommentedMap | None = None
            if m.get("configMap"):
                conf = configmap(dict(m["configMap"]))
            elif "configPath" in m:
                conf = load_object(files[str(m["configPath"])])
            sels = list(m.get("selectors") or [])
            excl = list(m.get("exclude") or [])
            selected = [
                o
                for o in items
                if (not sels or any(_matches(o, s) for s in sels))
                and not any(_matches(o, s) for s in excl)
            ]
            if group == "validators":
                import copy

                selected = copy.deepcopy(selected)
            rl = ResourceList(items=list(selected), function_config=conf)
            failure = None
            try:
                fns[fn](rl)
            except FunctionFailure as exc:
                failure = exc.message
            steps.append(RenderStep(fn, list(rl.results), failure))
            if failure:
                return dict(files), steps
            if group == "mutators":
                sel_ids = {id(o) for o in selected}
                items = [o for o in items if id(o) not in sel_ids] + rl.items
    return write_back(docs, items), steps
