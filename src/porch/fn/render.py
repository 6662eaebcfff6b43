"""kpt's ``fn render`` over an in-memory package (spec §7.3).

``render(files, runtime)`` hydrates the package tree rooted at the top-most ``Kptfile`` of the
file map and returns a :class:`RenderResult`: the new file map, kpt's ``FunctionResultList``
(plain JSON shape) and an error string ('' on success). The algorithm is kpt's:

* depth-first post-order over subpackages (breadth-first, top-down with scoped visibility when
  the root Kptfile has ``kpt.dev/bfs-rendering: "true"``); a package's pipeline sees its own
  resources plus the rendered output of its subpackages;
* mutators in order, then validators (whose output is discarded); ``configMap`` /
  ``configPath`` function configs; ``selectors`` / ``exclude``; function failures stop the
  pipeline keeping the results so far;
* on success the resources are written back (untouched documents byte for byte), files whose
  resources all disappeared are pruned, and the root Kptfile gets the ``Rendered`` condition and
  ``status.renderStatus``; on failure only that status is written, unless the root Kptfile has
  ``kpt.dev/save-on-render-failure: "true"`` (then partial output is written too).

Progress is reported through an optional ``reporter`` callback receiving :class:`RenderEvent`:

* ``kind="package"``: a package's pipeline starts (``package`` = kpt's display name, e.g.
  ``"root/db"``); kpt prints ``Package "<package>":``;
* ``kind="running"``: a function starts; ``name`` is the resolved image (or exec path),
  ``resource_count`` is set when the step has selectors/exclusions (kpt then prints
  ``on N resource(s)``);
* ``kind="pass"`` / ``kind="fail"``: a function finished; ``duration`` (seconds), ``results``
  (kpt ResultItem dicts) with ``result_lines`` (kpt's ``[severity] ...: message`` texts),
  ``stderr``, ``exit_code``; ``exec_error`` is True when the failure was a non-zero exit (kpt
  then prints ``Stderr:`` and ``Exit code:``);
* ``kind="package-done"``: a package's pipeline succeeded (kpt prints an empty line).

``RenderResult.executed`` and ``.packages`` give kpt's summary line (``Successfully executed N
function(s) in M package(s).`` or the partial/failed variants).
"""

from __future__ import annotations

import copy
import pickle
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq

from porch.fn import kio
from porch.fn.gotext import go_quote
from porch.fn.kptfile_pipeline import (
    BFS_ANNOTATION,
    SAVE_ON_FAILURE_ANNOTATION,
    DeprecatedKptfileError,
    KptfileError,
    Pipeline,
    PipelineFunction,
    Selector,
    annotation_true,
    decode_kptfile,
    encode_kptfile,
    normalize_result_item,
)
from porch.fn.types import (
    DEFAULT_IMAGE_PREFIX,
    FunctionFailure,
    FunctionNotFound,
    FunctionOutput,
    FunctionSpec,
    ResourceList,
    Runtime,
)
from porch.krm import yaml as krm_yaml
from porch.krm._ruamel import existing

__all__ = ["RenderEvent", "RenderResult", "render"]

ALLOW_EXEC_ERROR = "must run with `--allow-exec` option to allow running function binaries"
ALREADY_HANDLED = "already handled error"
DEFAULT_TIMEOUT = 300.0
CNRM_ANNOTATION = "cnrm.cloud.google.com/blueprint"


@dataclass
class RenderEvent:
    """One progress event; see the module docstring for the kinds."""

    kind: str
    package: str
    name: str = ""
    image: str = ""
    exec: str = ""
    resource_count: int | None = None
    duration: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)
    result_lines: list[str] = field(default_factory=list)
    stderr: str = ""
    exit_code: int = 0
    exec_error: bool = False
    error: str = ""


@dataclass
class RenderResult:
    """``files`` is the package after an in-place render. With ``in_place=False`` (kpt's
    ``--output``) the input files come back unchanged (no Kptfile status either) and, on
    success, ``resources`` holds the rendered objects with their reader annotations (for a
    ResourceList on stdout) and ``output_files`` the files kpt would write to an output dir."""

    files: dict[str, str]
    results: dict[str, Any]
    error: str = ""
    executed: int = 0
    packages: int = 0
    resources: list[CommentedMap] = field(default_factory=list)
    output_files: dict[str, str] = field(default_factory=dict)


Reporter = Callable[[RenderEvent], None]
TagLister = Callable[[str], Sequence[str]]


# --------------------------------------------------------------------------------------------
# kpt's error values (pkg/lib/errors): op, package path and a wrapped error, collapsed the
# way ``errors.E`` collapses them.


class KptError(Exception):
    def __init__(self, op: str = "", path: str = "", err: BaseException | str | None = None):
        self.op = op
        self.path = path
        if isinstance(err, KptError):
            inner = KptError(err.op, err.path, err.err)
            if inner.path == path:
                inner.path = ""
            if inner.op == op:
                inner.op = ""
            self.err: BaseException | str | None = inner
        else:
            self.err = err
        super().__init__(self.text())

    def zero(self) -> bool:
        return not self.op and not self.path and self.err is None

    def text(self) -> str:
        parts = ""
        if self.op:
            parts = self.op
        if self.path:
            parts += (": " if parts else "") + "pkg " + self.path
        if self.err is not None:
            if isinstance(self.err, KptError):
                if not self.err.zero():
                    parts += (":\n\t" if parts else "") + self.err.text()
            else:
                parts += (": " if parts else "") + str(self.err)
        return parts or "no error"

    def __str__(self) -> str:
        return self.text()


class _HydrateError(Exception):
    """A failure inside hydration plus the partial output kept for save-on-render-failure."""

    def __init__(self, err: KptError, partial: list[CommentedMap] | None) -> None:
        super().__init__(str(err))
        self.err = err
        self.partial = partial


class ValidateError(Exception):
    def __init__(self, field_name: str, reason: str, value: str = "") -> None:
        self.field_name = field_name
        self.reason = reason
        self.value = value
        text = f"Kptfile is invalid:\nField: `{field_name}`\n"
        if value:
            text += f"Value: {go_quote(value)}\n"
        text += f"Reason: {reason}\n"
        super().__init__(text)


# --------------------------------------------------------------------------------------------
# semver tag constraints (Masterminds/semver subset)

_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$"
)


@dataclass(frozen=True)
class _Version:
    major: int
    minor: int
    patch: int
    pre: str
    original: str

    def key(self) -> tuple[int, int, int, int, tuple[Any, ...]]:
        pre_key: tuple[Any, ...] = tuple(
            (0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre.split(".")
        )
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre_key)


def _parse_version(text: str) -> _Version | None:
    m = _VERSION.match(text.strip())
    if not m:
        return None
    return _Version(
        int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), m.group(4) or "", text
    )


_PART = re.compile(r"^(x|X|\*|\d+)$")


def _constraint_check(constraint: str, version: _Version) -> bool:
    for alternative in constraint.split("||"):
        if _check_all(alternative.strip(), version):
            return True
    return False


def _check_all(text: str, v: _Version) -> bool:
    text = re.sub(r"\s+-\s+", " - ", text)
    hyphen = re.fullmatch(r"(\S+) - (\S+)", text.strip())
    if hyphen:
        return _check_one(">=" + hyphen.group(1), v) and _check_one("<=" + hyphen.group(2), v)
    terms = [t for t in re.split(r"[,\s]+", re.sub(r"([<>=!~^]+)\s+", r"\1", text)) if t]
    return all(_check_one(t, v) for t in terms)


def _check_one(term: str, v: _Version) -> bool:
    m = re.match(r"^(>=|<=|!=|=>|=<|>|<|=|~>|~|\^)?\s*(.*)$", term)
    assert m is not None
    op = m.group(1) or "="
    raw = m.group(2).lstrip("v")
    pieces = raw.split("-", 1)[0].split("+", 1)[0].split(".")
    wild = [p in ("x", "X", "*") for p in pieces] + [True] * (3 - len(pieces))
    nums = [int(p) if p.isdigit() else 0 for p in pieces] + [0] * (3 - len(pieces))
    pre = raw.split("-", 1)[1].split("+", 1)[0] if "-" in raw.split("+", 1)[0] else ""
    if v.pre and not pre:
        return False
    c = _Version(nums[0], nums[1], nums[2], pre, raw)
    vk, ck = v.key(), c.key()
    given = len([p for p in pieces if p])
    if op in ("=",):
        if wild[0]:
            return True
        if wild[1] or given < 2:
            return v.major == c.major
        if wild[2] or given < 3:
            return (v.major, v.minor) == (c.major, c.minor)
        return vk == ck
    if op == "!=":
        return vk != ck
    if op == ">":
        if wild[1] or given < 2:
            return v.major > c.major
        if wild[2] or given < 3:
            return (v.major, v.minor) > (c.major, c.minor)
        return vk > ck
    if op in (">=", "=>"):
        return vk >= ck
    if op == "<":
        return vk < ck
    if op in ("<=", "=<"):
        if wild[1] or given < 2:
            return v.major <= c.major
        if wild[2] or given < 3:
            return (v.major, v.minor) <= (c.major, c.minor)
        return vk <= ck
    if op in ("~", "~>"):
        if vk < ck:
            return False
        if given < 2 or wild[1]:
            return v.major == c.major
        return (v.major, v.minor) == (c.major, c.minor)
    if op == "^":
        if vk < ck:
            return False
        if c.major > 0 or given < 2:
            return v.major == c.major
        if c.minor > 0 or given < 3:
            return v.major == 0 and v.minor == c.minor
        return v.major == 0 and v.minor == 0 and v.patch == c.patch
    return False


def _is_constraint(tag: str) -> bool:
    return bool(re.fullmatch(r"[\sv0-9xX*.,|<>=!~^+A-Za-z-]+", tag)) and any(
        ch.isdigit() or ch in "xX*" for ch in tag
    )


_TAG = re.compile(r"[\w][\w.-]{0,127}")


def resolve_tag(image: str, tag: str, lister: TagLister | None) -> str:
    """kpt's TagResolver: a semver version or plain tag is used literally, a constraint picks
    the highest listed tag satisfying it."""
    base = image
    last = base.rsplit("/", 1)[-1]
    if "@" in base:
        base = base.split("@", 1)[0]
        last = base.rsplit("/", 1)[-1]
    if ":" in last:
        base = base[: len(base) - len(last)] + last.split(":", 1)[0]
    if _parse_version(tag) is None and _is_constraint(tag):
        tags = list(lister(base)) if lister is not None else []
        matching = []
        for candidate in tags:
            if candidate.startswith("sha256-") or "-git-" in candidate:
                continue
            version = _parse_version(candidate)
            if version is not None and _constraint_check(tag, version):
                matching.append(version)
        if not matching:
            raise ValueError(
                f"no tag could be found matching the version constraint {go_quote(tag)}"
            )
        best = max(matching, key=lambda ver: ver.key())
        return f"{base}:{best.original}"
    if _TAG.fullmatch(tag) is None:
        raise ValueError(
            f"`function.tag` {go_quote(tag)} must be a valid image tag: must start with an "
            "alphanumeric character or underscore, followed by at most 127 alphanumeric "
            "characters, underscores, periods, or dashes"
        )
    return f"{base}:{tag}"


# --------------------------------------------------------------------------------------------
# helpers on items


def _meta(node: Any) -> Mapping[str, Any]:
    meta = node.get("metadata") if isinstance(node, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _labels(node: Any) -> dict[str, str]:
    labels = _meta(node).get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): _text(v) for k, v in labels.items()}


def is_krm_error(node: Any) -> str:
    """kpt's IsKRM: '' when valid, else the reason."""
    path, _ = kio.file_annotations(node)
    if path.rsplit("/", 1)[-1] in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        return ""
    if not isinstance(node, Mapping):
        return "resource must have `apiVersion`, `kind`, and `name`"
    api_version = _text(node.get("apiVersion"))
    kind = _text(node.get("kind"))
    if api_version.startswith("kustomize.config.k8s.io") or (
        not api_version and kind == "Kustomization"
    ):
        return ""
    if not api_version:
        return "resource must have `apiVersion`"
    if not kind:
        return "resource must have `kind`"
    if not _text(_meta(node).get("name")):
        return "resource must have `metadata.name`"
    return ""


def _are_krm(items: Sequence[Any]) -> str:
    for item in items:
        problem = is_krm_error(item)
        if problem:
            path, _ = kio.file_annotations(item)
            return f"{path}: {problem}"
    return ""


def _matches(node: Any, sel: Selector) -> bool:
    meta = _meta(node)
    if sel.name and sel.name != _text(meta.get("name")):
        return False
    if sel.namespace and sel.namespace != _text(meta.get("namespace")):
        return False
    if sel.kind and sel.kind != _text(node.get("kind")):
        return False
    if sel.api_version and sel.api_version != _text(node.get("apiVersion")):
        return False
    if sel.labels:
        labels = _labels(node)
        if any(labels.get(k) != v for k, v in sel.labels.items()):
            return False
    if sel.annotations:
        ann = kio.get_annotations(node)
        if any(ann.get(k) != v for k, v in sel.annotations.items()):
            return False
    return True


def select_input(
    items: list[CommentedMap], selectors: Sequence[Selector], exclusions: Sequence[Selector]
) -> list[CommentedMap]:
    """kpt's SelectInput (an item matching several selectors is listed once per match)."""
    if not selectors:
        selected = list(items)
    else:
        selected = [n for n in items for s in selectors if _matches(n, s)]
    if not exclusions:
        return selected
    return [n for n in selected if not any(not e.is_empty() and _matches(n, e) for e in exclusions)]


def result_line(item: Mapping[str, Any]) -> str:
    """kpt's ResultItem.String()."""
    ref = item.get("resourceRef") or {}
    ids = [ref.get(k, "") for k in ("apiVersion", "kind", "namespace", "name") if ref.get(k)]
    text = f"[{item.get('severity') or 'info'}]"
    if ids:
        text += " " + "/".join(ids)
    fld = item.get("field")
    if fld is not None:
        text += " " + _text(fld.get("path"))
    return text + ": " + _text(item.get("message"))


def _config_map(data: Mapping[str, str]) -> CommentedMap:
    node = krm_yaml.from_plain(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "function-input"},
            "data": {k: data[k] for k in sorted(data)},
        }
    )
    assert isinstance(node, CommentedMap)
    return node


# --------------------------------------------------------------------------------------------
# the renderer


@dataclass
class _Package:
    dir: str  # root-relative directory ("" for the map root)
    path: str  # kpt's error path: "." for the root, "./sub" below it
    display: str  # kpt's full display name
    kptfile: dict[str, Any]
    resources: list[CommentedMap] = field(default_factory=list)


@dataclass
class _Runner:
    fn: PipelineFunction
    image: str
    exec_path: str
    args: tuple[str, ...]
    config: CommentedMap | None


class _Renderer:
    def __init__(
        self,
        files: Mapping[str, str],
        runtime: Runtime,
        *,
        default_image_prefix: str,
        allow_exec: bool,
        timeout: float,
        reporter: Reporter | None,
        package_name: str,
        tag_lister: TagLister | None,
        attribution: bool,
        run_unselected: bool = False,
    ) -> None:
        self.run_unselected = run_unselected
        self.files = files
        self.pf = kio.PackageFiles(files)
        self.runtime = runtime
        self.prefix = default_image_prefix
        self.allow_exec = allow_exec
        self.timeout = timeout
        self.reporter = reporter
        self.package_name = package_name
        self.tag_lister = tag_lister or getattr(runtime, "list_tags", None)
        self.attribution = attribution
        self.root_dir = ""
        self.packages: dict[str, _Package] = {}
        self.input_files: set[str] = set()
        self.executed = 0
        self.fn_results: list[dict[str, Any]] = []
        self.results_exit = 0
        self.mutation_steps: list[dict[str, Any]] = []
        self.validation_steps: list[dict[str, Any]] = []
        self.save_on_failure = False
        self.root_resources: list[CommentedMap] = []
        self._last_ids: tuple[list[str], dict[str, tuple[str, str, str, str]]] = ([], {})

    # ---- events

    def _emit(self, event: RenderEvent) -> None:
        if self.reporter is not None:
            self.reporter(event)

    # ---- package nodes

    def _path_of(self, directory: str) -> str:
        rel = directory[len(self.root_dir) + 1 :] if self.root_dir else directory
        if directory == self.root_dir:
            return "."
        return "./" + rel

    def _new_package(self, directory: str, parent: _Package | None) -> _Package:
        path = self._path_of(directory)
        kptfile_path = f"{directory}/Kptfile" if directory else "Kptfile"
        kf = decode_kptfile(self.files[kptfile_path], filename=kptfile_path)
        self._validate_kptfile(directory, kf)
        name = directory.rsplit("/", 1)[-1] if directory else ""
        if parent is None:
            name = self.package_name or name or _text((kf.get("metadata") or {}).get("name"))
            display = name
        else:
            display = f"{parent.display}/{name}"
        return _Package(dir=directory, path=path, display=display, kptfile=kf)

    def _validate_kptfile(self, directory: str, kf: Mapping[str, Any]) -> None:
        pipeline = kf.get("pipeline") or {}
        for kind in ("mutators", "validators"):
            for i, fn in enumerate(pipeline.get(kind) or ()):
                problem = self._validate_function(directory, kind, i, fn)
                if problem is not None:
                    raise ValueError(
                        f"invalid pipeline: function {go_quote(fn.get('image', ''))}: {problem}"
                    )

    def _validate_function(
        self, directory: str, kind: str, i: int, fn: Mapping[str, Any]
    ) -> ValidateError | None:
        where = f"pipeline.{kind}[{i}]"
        image, exec_ = fn.get("image", ""), fn.get("exec", "")
        if not image and not exec_:
            return ValidateError(where, "must specify a functon (`image` or `exec`) to execute")
        if image and exec_:
            return ValidateError(where, "must not specify both `image` and `exec` at the same time")
        if image and not _valid_reference(image):
            return ValidateError(
                where + ".image",
                f"function image reference {go_quote(image)} is invalid: invalid reference format",
                image,
            )
        config_path = fn.get("configPath", "")
        if fn.get("configMap") and config_path:
            return ValidateError(
                where,
                "functionConfig must not specify both `configMap` and `configPath` at the same "
                "time",
            )
        if config_path:
            field_name = where + ".configPath"
            if not config_path.strip():
                return ValidateError(field_name, "path must not be empty", config_path)
            clean = posixpath.normpath(config_path)
            if clean.startswith("/"):
                return ValidateError(field_name, "path must be relative", config_path)
            if ".." in clean:
                return ValidateError(
                    field_name, "path must not be outside the package", config_path
                )
            full = f"{directory}/{clean}" if directory else clean
            text = self.files.get(full)
            if text is None:
                return ValidateError(
                    field_name,
                    f"failed to open functionConfig from path {go_quote(config_path)}: open "
                    f"{full}: no such file or directory",
                    config_path,
                )
            try:
                nodes = [n for n in self.pf.documents(full).objects()]
            except kio.KioError as exc:
                return ValidateError(
                    field_name,
                    f"failed to read functionConfig {go_quote(config_path)}: {exc}",
                    config_path,
                )
            if len(nodes) > 1:
                return ValidateError(
                    field_name,
                    f"functionConfig {go_quote(config_path)} must not contain more than one "
                    f"config, got {len(nodes)}",
                    config_path,
                )
            problem = is_krm_error(nodes[0]) if nodes else "resource must have `apiVersion`"
            if problem:
                return ValidateError(
                    field_name, f"functionConfig {go_quote(config_path)}: {problem}", config_path
                )
        return None

    # ---- hydration

    def _local(self, pkg: _Package) -> list[CommentedMap]:
        try:
            items = self.pf.local_resources(pkg.dir)
        except kio.KioError as exc:
            raise _HydrateError(
                KptError("pkg.render", pkg.path, KptError("pkg.readResources", pkg.path, str(exc))),
                None,
            ) from exc
        rel = pkg.dir[len(self.root_dir) + 1 :] if self.root_dir and pkg.dir else pkg.dir
        if self.root_dir and pkg.dir == self.root_dir:
            rel = ""
        for item in items:
            path, _ = kio.file_annotations(item)
            clean = posixpath.normpath(path)
            self.input_files.add(f"{rel}/{clean}" if rel else clean)
        return items

    def _subpackages(self, pkg: _Package) -> list[_Package]:
        subs = []
        for directory in self.pf.direct_subpackages(pkg.dir):
            try:
                subs.append(self._new_package(directory, pkg))
            except (KptfileError, ValueError) as exc:
                raise _HydrateError(
                    KptError("pkg.render", self._path_of(directory), str(exc)), None
                ) from exc
        return subs

    def hydrate(self, pkg: _Package) -> list[CommentedMap]:
        self.packages[pkg.dir] = pkg
        items = self._local(pkg)
        for sub in self._subpackages(pkg):
            try:
                items = items + self.hydrate(sub)
            except _HydrateError as exc:
                partial = None
                if exc.partial is not None and self.save_on_failure:
                    partial = items + exc.partial
                    pkg.resources = partial
                raise _HydrateError(KptError("pkg.render", sub.path, exc.err), partial) from exc
        try:
            output = self.run_pipeline(pkg, items)
        except _PipelineError as exc:
            partial = exc.output if exc.output is not None else items
            if self.save_on_failure:
                pkg.resources = partial
            raise _HydrateError(KptError("pkg.render", pkg.path, exc.err), partial) from exc
        pkg.resources = output
        return output

    def hydrate_bfs(self, root: _Package) -> list[CommentedMap]:
        order: list[_Package] = []
        children: dict[str, list[_Package]] = {}
        queue = [root]
        while queue:
            current = queue.pop(0)
            order.append(current)
            self.packages[current.dir] = current
            try:
                current.resources = self._local(current)
                subs = self._subpackages(current)
            except _HydrateError as exc:
                raise _HydrateError(KptError("pkg.render", root.path, exc.err), None) from exc
            children[current.dir] = subs
            queue.extend(subs)

        def descendants(node: _Package) -> list[CommentedMap]:
            out: list[CommentedMap] = []
            for child in children[node.dir]:
                out.extend(child.resources)
                out.extend(descendants(child))
            return out

        for node in order:
            pipeline_input = node.resources + descendants(node)
            try:
                output = self.run_pipeline(node, pipeline_input)
            except _PipelineError as exc:
                if self.save_on_failure:
                    node.resources = exc.output if exc.output is not None else pipeline_input
                    self._propagate(node, order)
                    self.root_resources = [r for n in order for r in n.resources]
                err = exc.err
                if isinstance(err, KptError) and err.op == "pipeline.run":
                    err = KptError("pipeline.run", node.path, err.err)
                raise _HydrateError(
                    KptError("pkg.render", root.path, err),
                    self.root_resources if self.save_on_failure else None,
                ) from exc
            node.resources = output
            self._propagate(node, order)
        return [r for n in order for r in n.resources]

    def _propagate(self, current: _Package, order: list[_Package]) -> None:
        by_pkg: dict[str, list[CommentedMap]] = {}
        own = self._pkg_anno(current)
        for item in current.resources:
            target = kio.annotation(item, kio.PACKAGE_PATH) or own
            by_pkg.setdefault(target, []).append(item)
        remaining: list[CommentedMap] = []
        for node in order:
            anno = self._pkg_anno(node)
            if anno in by_pkg:
                if node is current:
                    remaining.extend(by_pkg[anno])
                else:
                    node.resources = by_pkg[anno]
        current.resources = remaining

    @staticmethod
    def _pkg_anno(pkg: _Package) -> str:
        return pkg.dir or "."

    # ---- pipelines

    def run_pipeline(self, pkg: _Package, items: list[CommentedMap]) -> list[CommentedMap]:
        self._emit(RenderEvent(kind="package", package=pkg.display))
        pipeline = Pipeline.of(pkg.kptfile)
        if pipeline.is_empty():
            problem = _are_krm(items)
            if problem:
                raise _PipelineError(
                    f"input resource list must contain only KRM resources: {problem}", None
                )
            return items
        self._validate_pipeline(pkg, pipeline)
        output = self._run_mutators(pkg, pipeline, items)
        try:
            self._run_validators(pkg, pipeline, output)
        except _PipelineError as exc:
            exc.output = output
            raise
        self._emit(RenderEvent(kind="package-done", package=pkg.display))
        return output

    def _validate_pipeline(self, pkg: _Package, pipeline: Pipeline) -> None:
        paths = set()
        for path in self.pf.local_files(pkg.dir):
            if self.pf.documents(path).objects():
                rel = path[len(pkg.dir) + 1 :] if pkg.dir else path
                paths.add(posixpath.normpath(rel))
        errors = []
        for kind, fns in (("mutator", pipeline.mutators), ("validator", pipeline.validators)):
            for i, fn in enumerate(fns):
                if fn.config_path and posixpath.normpath(fn.config_path) not in paths:
                    name = fn.name or _image_base_name(fn.image)
                    errors.append(
                        str(
                            ValidateError(
                                f"pipeline.{kind}s[{i}].configPath",
                                f"functionConfig resource for {kind} {go_quote(name)} is missing "
                                f"from path {go_quote(fn.config_path)}, this also occurs if "
                                f"{go_quote(fn.config_path)} is part of a subpackage",
                                fn.config_path,
                            )
                        )
                    )
        if errors:
            raise _PipelineError("\n".join(errors), None, wrap=False)

    def _new_runner(self, pkg: _Package, fn: PipelineFunction) -> _Runner:
        config: CommentedMap | None = None
        if fn.config_path:
            full = f"{pkg.dir}/{fn.config_path}" if pkg.dir else fn.config_path
            full = posixpath.normpath(full)
            if full not in self.files:
                raise KptError(
                    "fn.readConfig",
                    "",
                    f"missing function config {go_quote(fn.config_path)}",
                )
            objects = kio.PackageFiles({full: self.files[full]}).documents(full).objects()
            config = objects[0] if objects else None
        elif fn.config_map:
            config = _config_map(fn.config_map)
        image = fn.image
        args: tuple[str, ...] = ()
        exec_path = ""
        if image:
            if "/" not in image and self.prefix.strip("/"):
                image = self.prefix.rstrip("/") + "/" + image
            if fn.tag:
                image = resolve_tag(image, fn.tag, self.tag_lister)
            elif not _has_tag_or_digest(image):
                image += ":latest"
        elif fn.exec:
            try:
                parts = shlex.split(fn.exec)
            except ValueError as exc:
                raise ValueError(f"exec command {go_quote(fn.exec)} must be valid: {exc}") from exc
            exec_path = parts[0] if parts else fn.exec
            args = tuple(parts[1:])
        return _Runner(fn=fn, image=image, exec_path=exec_path, args=args, config=config)

    def _runners(
        self, pkg: _Package, fns: Sequence[PipelineFunction], steps: list[dict[str, Any]]
    ) -> list[_Runner]:
        runners = []
        for fn in fns:
            if fn.exec and not self.allow_exec:
                steps.append(_pre_exec_step(fn, fn.image, ALLOW_EXEC_ERROR))
                raise _PipelineError(ALLOW_EXEC_ERROR, None)
            try:
                runners.append(self._new_runner(pkg, fn))
            except (KptError, ValueError, kio.KioError) as exc:
                image = fn.image
                if image and "/" not in image and self.prefix.strip("/"):
                    image = self.prefix.rstrip("/") + "/" + image
                steps.append(_pre_exec_step(fn, image, str(exc)))
                raise _PipelineError(exc if isinstance(exc, KptError) else str(exc), None) from exc
        return runners

    def _refresh_config(self, pkg: _Package, runner: _Runner, items: list[CommentedMap]) -> None:
        if not runner.fn.config_path:
            return
        own = self._pkg_anno(pkg)
        for item in items:
            path, _ = kio.file_annotations(item)
            if kio.annotation(item, kio.PACKAGE_PATH) == own and path == runner.fn.config_path:
                runner.config = item
                return

    def _run_mutators(
        self, pkg: _Package, pipeline: Pipeline, items: list[CommentedMap]
    ) -> list[CommentedMap]:
        if not pipeline.mutators:
            return items
        runners = self._runners(pkg, pipeline.mutators, self.mutation_steps)
        for runner in runners:
            fn = runner.fn
            scoped = bool(fn.selectors or fn.exclusions)
            if scoped:
                for i, item in enumerate(items):
                    kio.set_annotation(item, kio.RESOURCE_ID, str(i))
            self._refresh_config(pkg, runner, items)
            selected = select_input(items, fn.selectors, fn.exclusions)
            before = len(self.fn_results)
            output: list[CommentedMap] = []
            if selected or self.run_unselected:
                try:
                    output = self._filter(pkg, runner, selected, scoped)
                    # kio.Pipeline reconciles the two annotation forms after the filter
                    mismatch = _reconcile_annotations(output, *self._last_ids)
                    if mismatch:
                        raise _StepError(mismatch)
                except _StepError as exc:
                    for item in items:
                        kio.clear_annotations(
                            item,
                            (kio.LEGACY_ID, kio.INTERNAL_ID, kio.MIGRATION_ID, kio.RESOURCE_ID),
                        )
                    self.mutation_steps.append(self._capture(runner, before, exc.message))
                    raise _PipelineError(exc.message, items) from exc
            self.executed += 1
            self.mutation_steps.append(self._capture(runner, before, None))
            if scoped:
                items = _merge_with_input(output, selected, items)
                for item in items:
                    kio.clear_annotations(item, (kio.RESOURCE_ID,))
            else:
                items = output
        return items

    def _run_validators(self, pkg: _Package, pipeline: Pipeline, items: list[CommentedMap]) -> None:
        for fn in pipeline.validators:
            before = len(self.fn_results)
            selected = select_input(items, fn.selectors, fn.exclusions)
            if fn.exec and not self.allow_exec:
                self.validation_steps.append(_pre_exec_step(fn, fn.image, ALLOW_EXEC_ERROR))
                raise _PipelineError(ALLOW_EXEC_ERROR, None)
            try:
                runner = self._new_runner(pkg, fn)
            except (KptError, ValueError, kio.KioError) as exc:
                self.validation_steps.append(_pre_exec_step(fn, fn.image, str(exc)))
                raise _PipelineError(exc if isinstance(exc, KptError) else str(exc), None) from exc
            self._refresh_config(pkg, runner, items)
            # kpt hands validators clones; our runtimes never edit their input (builtins work
            # on a copy, the others on serialized text), so the items themselves can go.
            try:
                self._filter(pkg, runner, selected, bool(fn.selectors or fn.exclusions))
            except _StepError as exc:
                self.validation_steps.append(self._capture(runner, before, exc.message))
                raise _PipelineError(exc.message, None) from exc
            self.executed += 1
            self.validation_steps.append(self._capture(runner, before, None))

    def _capture(self, runner: _Runner, before: int, error: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "name": runner.fn.name,
            "image": runner.image,
            "exec": runner.fn.exec,
        }
        if before < len(self.fn_results):
            last = self.fn_results[-1]
            step["stderr"] = last.get("stderr", "")
            step["exitCode"] = last.get("exitCode", 0)
            step["results"] = last.get("results", [])
            step["errorResults"] = [r for r in step["results"] if r.get("severity") == "error"]
        else:
            step["exitCode"] = 0
            if error is not None:
                step["exitCode"] = 1
                step["executionError"] = error
        return step

    def _filter(
        self, pkg: _Package, runner: _Runner, items: list[CommentedMap], scoped: bool
    ) -> list[CommentedMap]:
        """kpt's FunctionRunner.Filter around kyaml's FunctionFilter."""
        name = runner.image or runner.fn.exec
        self._emit(
            RenderEvent(
                kind="running",
                package=pkg.display,
                name=name,
                image=runner.image,
                exec=runner.fn.exec,
                resource_count=len(items) if scoped else None,
            )
        )
        started = time.monotonic()
        fn_result: dict[str, Any] = {"image": runner.image, "exec": runner.fn.exec}
        try:
            output = self._do(pkg, runner, items, fn_result)
        except _StepError as exc:
            results = fn_result.get("results", [])
            self._emit(
                RenderEvent(
                    kind="fail",
                    package=pkg.display,
                    name=name,
                    image=runner.image,
                    exec=runner.fn.exec,
                    duration=time.monotonic() - started,
                    results=results,
                    result_lines=[result_line(r) for r in results],
                    stderr=fn_result.get("stderr", "") if exc.exec_error else "",
                    exit_code=fn_result.get("exitCode", 1),
                    exec_error=exc.exec_error,
                    error=exc.message,
                )
            )
            raise
        results = fn_result.get("results", [])
        self._emit(
            RenderEvent(
                kind="pass",
                package=pkg.display,
                name=name,
                image=runner.image,
                exec=runner.fn.exec,
                duration=time.monotonic() - started,
                results=results,
                result_lines=[result_line(r) for r in results],
                stderr=fn_result.get("stderr", ""),
                exit_code=0,
            )
        )
        return output

    def _do(
        self,
        pkg: _Package,
        runner: _Runner,
        items: list[CommentedMap],
        fn_result: dict[str, Any],
    ) -> list[CommentedMap]:
        problem = _are_krm(items)
        if problem:
            raise _StepError(f"input resource list must contain only KRM resources: {problem}")
        # kyaml's FunctionFilter: ids to map outputs back to inputs
        before: dict[str, tuple[str, str, str, str]] = {}
        for i, item in enumerate(items, start=1):
            kio.set_annotation(item, kio.LEGACY_ID, str(i))
            ann = kio.get_annotations(item)
            before[str(i)] = (
                ann.get(kio.PATH, ""),
                ann.get(kio.LEGACY_PATH, ""),
                ann.get(kio.INDEX, ""),
                ann.get(kio.LEGACY_INDEX, ""),
            )
        spec = FunctionSpec(image=runner.image, exec_path=runner.exec_path, args=runner.args)
        rl = ResourceList(items=items, function_config=runner.config, results=[])
        exit_code = 0
        stderr = ""
        run_error = ""
        out_items: list[CommentedMap] = []
        try:
            out = self.runtime.run(spec, rl, timeout=self.timeout)
        except FunctionFailure as exc:
            out = FunctionOutput(
                ResourceList(items=[], function_config=None, results=[]),
                stderr=exc.message,
                exit_code=exc.exit_code or 1,
            )
        except FunctionNotFound:
            run_error = f"function {go_quote(runner.image or runner.fn.exec)} not found"
            out = None
        except Exception as exc:  # noqa: BLE001 - a runtime failure is this step's failure
            run_error = str(exc) or type(exc).__name__
            out = None
        if out is not None:
            exit_code = out.exit_code
            stderr = out.stderr
            out_items = list(out.resource_list.items)
            for index, item in enumerate(out_items):
                if not isinstance(item, MutableMapping):
                    raise _StepError(
                        "output resource list must contain only KRM resources: "
                        f"items[{index}] is not an object"
                    )
            fn_result_items = out.resource_list.results
        else:
            fn_result_items = []
        for item in items:
            kio.clear_annotations(item, (kio.LEGACY_ID,))
        out_ids = []
        by_id = {str(i): item for i, item in enumerate(items, start=1)}
        for item in out_items:
            item_id = kio.annotation(item, kio.LEGACY_ID)
            out_ids.append(item_id)
            if item_id:
                kio.clear_annotations(item, (kio.LEGACY_ID,))
                source = by_id.get(item_id)
                if source is not None and source is not item:
                    # kyaml's FunctionFilter gives comments a function dropped back
                    restore_comments(source, item)
        failed = bool(run_error) or exit_code != 0
        if not failed:
            scope = self._function_scope(runner)
            for item in out_items:
                path, _ = kio.file_annotations(item)
                if not path:
                    default = kio.default_path(item, scope)
                    kio.set_annotation(item, kio.PATH, default)
                    kio.set_annotation(item, kio.LEGACY_PATH, default)
        own = self._pkg_anno(pkg)
        for item in out_items:
            if not kio.annotation(item, kio.PACKAGE_PATH):
                kio.set_annotation(item, kio.PACKAGE_PATH, own)
        invariant = _path_invariants(out_items)
        if invariant:
            raise _StepError(invariant)
        problem = _are_krm(out_items)
        if problem:
            raise _StepError(f"output resource list must contain only KRM resources: {problem}")
        results = [normalize_result_item(r) for r in fn_result_items]
        if results:
            fn_result["results"] = results
        self._last_ids = (out_ids, before)
        if failed:
            fn_result["exitCode"] = exit_code if exit_code else 1
            if not run_error:
                fn_result["stderr"] = stderr
            self.results_exit = 1
            self.fn_results.append(_fn_result_entry(fn_result))
            if run_error:
                raise _StepError(run_error)
            raise _StepError(ALREADY_HANDLED, exec_error=True)
        fn_result["exitCode"] = 0
        fn_result["stderr"] = stderr
        self.fn_results.append(_fn_result_entry(fn_result))
        return out_items

    @staticmethod
    def _function_scope(runner: _Runner) -> str:
        if runner.config is None:
            return ""
        path = kio.annotation(runner.config, kio.PATH)
        if not path:
            return ""
        directory = posixpath.dirname(posixpath.normpath(path)) or "."
        if posixpath.basename(directory) == "functions":
            directory = posixpath.dirname(directory) or "."
        return directory


class _PipelineError(Exception):
    def __init__(
        self, err: KptError | str, output: list[CommentedMap] | None, *, wrap: bool = True
    ) -> None:
        super().__init__(str(err))
        self.err: KptError | str = KptError("pipeline.run", "", err) if wrap else err
        self.output = output


class _StepError(Exception):
    def __init__(self, message: str, *, exec_error: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.exec_error = exec_error


def _has_comments(node: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if isinstance(node, CommentedMap | CommentedSeq):
        ca = existing(node, Comment.attrib)
        if ca is not None and (ca.comment or ca.end or ca.items):
            return True
        values = node.values() if isinstance(node, CommentedMap) else node
        return any(_has_comments(v, depth + 1) for v in values)
    return False


def restore_comments(src: Any, dst: Any) -> None:
    """kyaml's CopyComments after a function: when the function's output lost every comment
    (it went through JSON, say), the comments of the input object come back onto the same
    fields. An output that kept comments is left alone."""
    if _has_comments(dst) or not _has_comments(src):
        return
    _restore(src, dst, 0)


def _restore(src: Any, dst: Any, depth: int) -> None:
    if depth > 100:
        return
    if isinstance(src, CommentedMap) and isinstance(dst, CommentedMap):
        keys: list[Any] = [k for k in dst if k in src]
    elif isinstance(src, CommentedSeq) and isinstance(dst, CommentedSeq):
        keys = list(range(min(len(src), len(dst))))
    else:
        return
    ca = existing(src, Comment.attrib)
    if ca is not None:
        target = dst.ca
        if ca.comment:
            target.comment = copy.deepcopy(ca.comment)
        if ca.end:
            target.end = copy.deepcopy(ca.end)
        for key, slot in ca.items.items():
            if key in keys:
                target.items[key] = copy.deepcopy(slot)
    for key in keys:
        _restore(src[key], dst[key], depth + 1)


def _fn_result_entry(fn_result: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("image", "exec", "stderr"):
        if fn_result.get(key):
            out[key] = fn_result[key]
    out["exitCode"] = fn_result.get("exitCode", 0)
    if fn_result.get("results"):
        out["results"] = fn_result["results"]
    return out


def _pre_exec_step(fn: PipelineFunction, image: str, error: str) -> dict[str, Any]:
    return {
        "name": fn.name,
        "image": image,
        "exec": fn.exec,
        "exitCode": 1,
        "executionError": error,
    }


def _merge_with_input(
    output: list[CommentedMap], selected: list[CommentedMap], items: list[CommentedMap]
) -> list[CommentedMap]:
    selected_ids = {kio.annotation(n, kio.RESOURCE_ID) for n in selected}
    out_by_id: dict[str, CommentedMap] = {}
    for node in output:
        rid = kio.annotation(node, kio.RESOURCE_ID)
        if rid and rid not in out_by_id:
            out_by_id[rid] = node
    result: list[CommentedMap] = []
    for item in items:
        rid = kio.annotation(item, kio.RESOURCE_ID)
        if rid not in selected_ids:
            result.append(item)
        elif rid in out_by_id:
            result.append(out_by_id[rid])
    result.extend(n for n in output if not kio.annotation(n, kio.RESOURCE_ID))
    return result


def _path_invariants(items: list[CommentedMap]) -> str:
    seen: set[tuple[str, str, str]] = set()
    for item in items:
        pkg = kio.annotation(item, kio.PACKAGE_PATH)
        path, index = kio.file_annotations(item)
        clean = posixpath.normpath(path) if path else "."
        if clean.startswith("../"):
            return (
                "function must not modify resources outside of package: resource has path " + path
            )
        key = (pkg, clean, index)
        if key in seen:
            return f"resource at path {go_quote(clean)} and index {go_quote(index)} already exists"
        seen.add(key)
    return ""


def _reconcile_annotations(
    items: list[CommentedMap],
    ids: list[str],
    before: Mapping[str, tuple[str, str, str, str]],
) -> str:
    """kyaml keeps the legacy and internal path/index annotations in step: a form that is
    missing is filled from the other; whichever form a function changed wins. Returns kyaml's
    error text when both forms changed differently, else ''."""
    pairs = (("path", kio.PATH, kio.LEGACY_PATH, 0), ("index", kio.INDEX, kio.LEGACY_INDEX, 2))
    for item, item_id in zip(items, ids, strict=True):
        ann = kio.get_annotations(item)
        for _, new_key, legacy_key, _slot in pairs:
            new, legacy = ann.get(new_key, ""), ann.get(legacy_key, "")
            if new and not legacy:
                kio.set_annotation(item, legacy_key, new)
            elif legacy and not new:
                kio.set_annotation(item, new_key, legacy)
        old = before.get(item_id) if item_id else None
        if old is None:
            continue
        ann = kio.get_annotations(item)
        for what, new_key, legacy_key, slot in pairs:
            original = old[slot] or old[slot + 1]
            new, legacy = ann.get(new_key, ""), ann.get(legacy_key, "")
            if not original:
                continue
            if original != new and original != legacy and new != legacy:
                return (
                    "resource input to function has mismatched legacy and internal "
                    f"{what} annotations"
                )
            if original != new:
                kio.set_annotation(item, legacy_key, new)
            elif original != legacy:
                kio.set_annotation(item, new_key, legacy)
    return ""


def _has_tag_or_digest(image: str) -> bool:
    if "@" in image:
        return True
    return ":" in image.rsplit("/", 1)[-1]


_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)"
    r"[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,})?$"
)


def _valid_reference(image: str) -> bool:
    return _REFERENCE.match(image) is not None


def _image_base_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


# --------------------------------------------------------------------------------------------
# entry point


def _result_list(renderer: _Renderer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "kpt.dev/v1",
        "kind": "FunctionResultList",
        "metadata": {"name": "fnresults"},
        "exitCode": renderer.results_exit,
    }
    if renderer.fn_results:
        out["items"] = renderer.fn_results
    return out


def render(
    files: Mapping[str, str],
    runtime: Runtime,
    *,
    default_image_prefix: str = DEFAULT_IMAGE_PREFIX,
    allow_exec: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    reporter: Reporter | None = None,
    package_name: str = "",
    tag_lister: TagLister | None = None,
    attribution: bool = True,
    in_place: bool = True,
    write_status: bool = True,
    run_unselected: bool = False,
) -> RenderResult:
    """Render the package tree in ``files``; see the module docstring.

    ``package_name`` is the root's display name (default: its directory name, else the Kptfile
    name); ``tag_lister(image)`` lists registry tags for ``tag:`` constraints (default: the
    runtime's ``list_tags`` if it has one); ``attribution`` adds kpt's
    ``cnrm.cloud.google.com/blueprint`` annotation to Config Connector resources;
    ``in_place=False`` is kpt's ``--output`` (see :class:`RenderResult`); ``write_status=False``
    leaves the root Kptfile's ``status`` alone (kpt before the Rendered condition);
    ``run_unselected=True`` runs a mutator whose selectors match nothing on an empty input, as
    kpt did before it learned to skip it."""
    r = _Renderer(
        files,
        runtime,
        default_image_prefix=default_image_prefix,
        allow_exec=allow_exec,
        timeout=timeout,
        reporter=reporter,
        package_name=package_name,
        tag_lister=tag_lister,
        attribution=attribution,
        run_unselected=run_unselected,
    )
    unchanged = dict(files)
    root_dir = r.pf.root()
    if root_dir is None:
        return RenderResult(unchanged, _result_list(r), error='No Kptfile found at ".".')
    r.root_dir = root_dir
    shown = root_dir or "."
    try:
        root = r._new_package(root_dir, None)
    except DeprecatedKptfileError as exc:
        message = (
            f"Kptfile at {go_quote(shown)} has an old version ({go_quote(exc.version)}) "
            "of the Kptfile schema.\n"
        )
        if exc.version == "v1alpha1":
            message += (
                "Please update the package to the latest format by following "
                "https://kpt.dev/installation/migration."
            )
        else:
            message += (
                'Please run "kpt fn eval <PKG_PATH> -i ghcr.io/kptdev/krm-functions-catalog/'
                'fix:latest --include-meta-resources" to upgrade the package and retry.'
            )
        return RenderResult(unchanged, _result_list(r), error=message)
    except KptfileError as exc:
        message = f"Kptfile at {go_quote(shown)} can't be read.\n\nDetails:\n{exc}"
        return RenderResult(unchanged, _result_list(r), error=message)
    except ValueError as exc:
        err = KptError("fn.render", ".", KptError("pkg.read", ".", str(exc)))
        return RenderResult(unchanged, _result_list(r), error=str(err))

    r.save_on_failure = annotation_true(root.kptfile, SAVE_ON_FAILURE_ANNOTATION)
    bfs = annotation_true(root.kptfile, BFS_ANNOTATION)
    hyd_error: KptError | str | None = None
    try:
        resources = r.hydrate_bfs(root) if bfs else r.hydrate(root)
    except _HydrateError as exc:
        hyd_error = exc.err
        resources = (exc.partial or []) if r.save_on_failure else []
        if r.save_on_failure and not bfs:
            resources = root.resources
    root_files = f"{root_dir}/" if root_dir else ""

    def status_only(error: KptError | str | None) -> RenderResult:
        out = dict(files)
        if write_status:
            _set_render_status(r, out, root_dir, error)
        return RenderResult(
            out,
            _result_list(r),
            error=str(error) if error is not None else "",
            executed=r.executed,
            packages=len(r.packages),
        )

    if hyd_error is not None and (not r.save_on_failure or not in_place):
        if not in_place:
            return RenderResult(
                unchanged,
                _result_list(r),
                error=str(hyd_error),
                executed=r.executed,
                packages=len(r.packages),
            )
        return status_only(hyd_error)

    # adjustRelPath
    for item in resources:
        pkg_anno = kio.annotation(item, kio.PACKAGE_PATH) or "."
        path, _ = kio.file_annotations(item)
        pkg_dir = "" if pkg_anno == "." else pkg_anno
        rel_pkg = pkg_dir[len(root_dir) + 1 :] if root_dir and pkg_dir else pkg_dir
        if root_dir and pkg_dir == root_dir:
            rel_pkg = ""
        clean = (posixpath.normpath(path) if path else ".").lstrip("/") or "."
        new_path = (
            posixpath.normpath(f"{rel_pkg}/{clean}") if rel_pkg else posixpath.normpath(clean)
        )
        kio.set_annotation(item, kio.PATH, new_path)
        kio.set_annotation(item, kio.LEGACY_PATH, new_path)
        kio.clear_annotations(item, (kio.PACKAGE_PATH,))
    output_files = {posixpath.normpath(kio.file_annotations(i)[0]) for i in resources}
    if r.attribution:
        for item in resources:
            if ".cnrm." in _text(item.get("apiVersion")) and isinstance(
                item.get("metadata"), CommentedMap
            ):
                current = kio.annotation(item, CNRM_ANNOTATION)
                kio.set_annotation(item, CNRM_ANNOTATION, _record_action(current))
    if not in_place:
        kept = pickle.loads(pickle.dumps(resources, protocol=pickle.HIGHEST_PROTOCOL))
        try:
            written = kio.write_items(r.pf, resources)
        except kio.KioError as exc:
            return RenderResult(
                unchanged, _result_list(r), error=f"failed to write resources: {exc}"
            )
        return RenderResult(
            unchanged,
            _result_list(r),
            executed=r.executed,
            packages=len(r.packages),
            resources=kept,
            output_files=written,
        )
    try:
        written = kio.write_items(r.pf, resources)
    except kio.KioError as exc:
        message = f"failed to save resources: {exc}"
        if hyd_error is not None:
            message += f" (original render error: {hyd_error})"
        return RenderResult(unchanged, _result_list(r), error=message)
    out = dict(files)
    for path, text in written.items():
        out[root_files + path] = text
    if hyd_error is None:
        for path in r.input_files - output_files:
            out.pop(root_files + path, None)
    if write_status:
        _set_render_status(r, out, root_dir, hyd_error)
    return RenderResult(
        out,
        _result_list(r),
        error=str(hyd_error) if hyd_error is not None else "",
        executed=r.executed,
        packages=len(r.packages),
    )


def _record_action(current: str) -> str:
    if not current:
        return "krm-fn"
    if "krm-" not in current:
        return f"{current},krm-fn"
    parts = current.split(",")
    for i, part in enumerate(parts):
        if part.startswith("krm-"):
            groups = part[len("krm-") :].split("-")
            if "fn" not in groups:
                parts[i] = part + "-fn"
    return ",".join(parts)


def _set_render_status(
    r: _Renderer, files: dict[str, str], root_dir: str, error: KptError | str | None
) -> None:
    path = f"{root_dir}/Kptfile" if root_dir else "Kptfile"
    try:
        kf = decode_kptfile(files[path], filename=path)
    except (KptfileError, KeyError):
        return
    condition: dict[str, Any] = {"type": "Rendered"}
    if error is None:
        condition.update(status="True", reason="RenderSuccess")
    else:
        condition.update(status="False", reason="RenderFailed", message=str(error))
    status = dict(kf.get("status") or {})
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "Rendered"]
    conditions.append(condition)
    status["conditions"] = conditions
    render_status: dict[str, Any] | None = None
    if r.mutation_steps or r.validation_steps:
        render_status = {
            "mutationSteps": r.mutation_steps,
            "validationSteps": r.validation_steps,
        }
        if error is not None:
            lines = []
            for step in [*r.mutation_steps, *r.validation_steps]:
                name = step.get("name") or step.get("image") or step.get("exec")
                if step.get("executionError"):
                    lines.append(f"{name}: {step['executionError']}")
                elif step.get("exitCode"):
                    lines.append(f"{name}: exit code {step['exitCode']}")
            render_status["errorSummary"] = "\n".join(lines)
    if render_status is None:
        status.pop("renderStatus", None)
    else:
        status["renderStatus"] = render_status
    kf["status"] = status
    files[path] = encode_kptfile(kf)
