"""``kpt fn eval``: run one function imperatively over a package (kpt's ``RunFns``).

The package is read with subpackages included (every ``Kptfile``, ``*.yaml``, ``*.yml`` of the
tree, ``.krmignore`` honoured, paths relative to the package root), the function gets all of
it (meta resources such as the Kptfile included, as kpt does by default) unless ``--match-*`` /
``--exclude-*`` narrow the input, and its output replaces the package's resources: files are
rewritten (untouched documents keep their bytes) and files whose resources are gone are deleted.

The functionConfig is ``--fn-config FILE`` (a single KRM object; when the file belongs to the
package it is taken out of the input and written back unchanged) or the arguments after ``--``:
``k=v`` pairs become the ``data`` of a ConfigMap named ``function-input`` (a first argument
without ``=`` names another kind).
"""

from __future__ import annotations

import copy
import os
import posixpath
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.errors import Invalid
from porch.fn import kio
from porch.fn.kptcli import KptPrinter
from porch.fn.runtime import resolve_image
from porch.fn.types import (
    DEFAULT_IMAGE_PREFIX,
    FunctionFailure,
    FunctionNotFound,
    FunctionSpec,
    ResourceList,
    Runtime,
)
from porch.krm import yaml as krm_yaml

DEFAULT_TIMEOUT = 300.0


class EvalError(Invalid):
    """``kpt fn eval`` cannot run: bad flags, a missing or invalid fn-config, a bad package."""


class AlreadyReported(Exception):
    """The function failed and its failure has been printed (kpt's ErrAlreadyHandled);
    ``outcome`` holds the results to save."""

    def __init__(self, outcome: EvalOutcome) -> None:
        super().__init__("already handled error")
        self.outcome = outcome


@dataclass
class Selector:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.api_version
            or self.kind
            or self.name
            or self.namespace
            or self.labels
            or self.annotations
        )

    def matches(self, node: Mapping[str, Any]) -> bool:
        meta = node.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        if self.api_version and str(node.get("apiVersion", "")) != self.api_version:
            return False
        if self.kind and str(node.get("kind", "")) != self.kind:
            return False
        if self.name and str(meta.get("name", "")) != self.name:
            return False
        if self.namespace and str(meta.get("namespace", "") or "") != self.namespace:
            return False
        for attr, want in (("labels", self.labels), ("annotations", self.annotations)):
            have = meta.get(attr)
            have = have if isinstance(have, Mapping) else {}
            for key, value in want.items():
                if str(have.get(key, "")) != value or key not in have:
                    return False
        return True


@dataclass
class EvalOptions:
    image: str = ""
    exec_command: str = ""
    fn_config_path: str = ""  # absolute
    data_items: list[str] = field(default_factory=list)
    selector: Selector = field(default_factory=Selector)
    exclusion: Selector = field(default_factory=Selector)
    image_prefix: str = DEFAULT_IMAGE_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    exclude_fn_config: bool = True
    """Take an in-package ``--fn-config`` file out of the input (kpt ≥ v1.0.0-beta.5x)."""


@dataclass
class EvalOutcome:
    """What the run produced: the package's resources after the run, the results entries."""

    items: list[CommentedMap]
    fn_results: list[dict[str, Any]]
    exit_code: int
    reader: kio.PackageFiles | None = None
    read_files: list[str] = field(default_factory=list)

    def changes(self) -> tuple[dict[str, str], list[str]]:
        """Files to write and files to delete for an in-place run."""
        if self.reader is None:
            return {}, []
        return write_back(self.reader, self.items, self.read_files)


# --------------------------------------------------------------------------- functionConfig


def function_config_from_args(data_items: Sequence[str]) -> CommentedMap:
    """kpt's CLI functionConfig: ``metadata``, ``data``, then ``kind`` and ``apiVersion`` (kyaml
    appends fields it sets, so they come last)."""
    kind = "ConfigMap"
    data = CommentedMap()
    for index, item in enumerate(data_items):
        key, sep, value = item.partition("=")
        if index == 0 and not sep:
            kind = item
            continue
        if not sep:
            raise EvalError("args must have keys and values separated by =")
        data[key] = krm_yaml.go_scalar(value)
    config = CommentedMap()
    config["metadata"] = CommentedMap(name="function-input")
    config["data"] = data
    config["kind"] = kind
    config["apiVersion"] = "v1"
    return config


def read_fn_config(path: str) -> CommentedMap:
    """The single KRM object of an ``--fn-config`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"missing function config file: {path}") from None
    except OSError as exc:
        raise EvalError(f'failed to open functionConfig from path "{path}": {exc}') from exc
    try:
        objects = krm_yaml.parse_documents(text, filename=path).objects()
    except Invalid as exc:
        raise EvalError(f'failed to read functionConfig "{path}": {exc}') from exc
    if len(objects) > 1:
        raise EvalError(
            f'functionConfig "{path}" must not contain more than one config, got {len(objects)}'
        )
    if not objects:
        raise EvalError(f'functionConfig "{path}": resource must not be empty')
    node = objects[0]
    problem = krm_problem(node)
    if problem:
        raise EvalError(f'functionConfig "{path}": {problem}')
    return node


def krm_problem(node: Any) -> str:
    """Why ``node`` is not a KRM resource (kpt's IsKRM), or ""."""
    if not isinstance(node, Mapping):
        return "resource must be a mapping"
    if node.get("kind") == "Kustomization" and str(node.get("apiVersion", "")).startswith(
        "kustomize.config.k8s.io"
    ):
        return ""
    if not node.get("apiVersion"):
        return "resource must have `apiVersion`"
    if not node.get("kind"):
        return "resource must have `kind`"
    meta = node.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        return "resource must have `metadata.name`"
    return ""


# --------------------------------------------------------------------------- package I/O


def read_package(pf: kio.PackageFiles) -> tuple[list[CommentedMap], list[str]]:
    """Every resource of the tree (subpackages included) with root-relative path annotations,
    in the filesystem walk order; plus every KRM file read."""
    dirs = set(pf.kptfile_dirs()) | {""}
    per_file: dict[str, list[CommentedMap]] = {}
    read: list[str] = []
    for pkg in sorted(dirs):
        if pkg and ".git" in pkg.split("/"):
            continue
        read.extend(pf.local_files(pkg))
        for node in pf.local_resources(pkg):
            path, _ = kio.file_annotations(node)
            rel = posixpath.join(pkg, path) if pkg else path
            if pkg:
                kio.set_annotation(node, kio.PATH, rel)
                kio.set_annotation(node, kio.LEGACY_PATH, rel)
            kio.clear_annotations(node, [kio.PACKAGE_PATH])
            per_file.setdefault(rel, []).append(node)
    order = sorted(per_file, key=lambda p: tuple(p.split("/")))
    items = [node for path in order for node in per_file[path]]
    return items, sorted(set(read), key=lambda p: tuple(p.split("/")))


def _rel_to_package(pkg_dir: Path, path: str) -> str | None:
    try:
        return Path(path).resolve().relative_to(pkg_dir.resolve()).as_posix()
    except ValueError:
        return None


# --------------------------------------------------------------------------- running


def _display_image(image: str, prefix: str) -> str:
    # kpt's ResolveToImage: a bare name gets the prefix; no tag is added for display.
    if "/" in image:
        return image
    return prefix.rstrip("/") + "/" + image


def _check_path_invariants(items: Sequence[Any]) -> None:
    seen: set[tuple[str, str]] = set()
    for node in items:
        path, index = kio.file_annotations(node)
        clean = posixpath.normpath(path) if path else path
        if clean.startswith("../"):
            raise EvalError(
                f"function must not modify resources outside of package: resource has path {path}"
            )
        key = (clean, index)
        if path and key in seen:
            raise EvalError(f'resource at path "{clean}" and index "{index}" already exists')
        seen.add(key)


def _normalize_results(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    try:
        from porch.fn.kptfile_pipeline import normalize_result_item
    except ImportError:  # pragma: no cover - the Kptfile model ships with the runtime
        return [dict(r) for r in results]
    return [normalize_result_item(r) for r in results]


def evaluate(
    files: Mapping[str, str],
    runtime: Runtime,
    options: EvalOptions,
    printer: KptPrinter,
    *,
    package_dir: Path,
    clock: Callable[[], float] = time.monotonic,
) -> EvalOutcome:
    """Run the function over the package held by ``files``; print progress like kpt.

    Raises :class:`EvalError` (printed by the caller as an error) or
    :class:`AlreadyReported` (the function's failure has been printed)."""
    if not options.image and not options.exec_command:
        raise EvalError("must specify --image or --exec")
    if options.data_items and options.fn_config_path:
        raise EvalError("function arguments can only be specified without function config file")
    if options.fn_config_path:
        fn_config = read_fn_config(options.fn_config_path)
    else:
        fn_config = function_config_from_args(options.data_items)

    pf = kio.PackageFiles(files)
    try:
        items, read_files = read_package(pf)
    except Invalid as exc:
        raise EvalError(str(exc)) from exc

    config_node: CommentedMap | None = None
    if options.fn_config_path and options.exclude_fn_config:
        rel = _rel_to_package(package_dir, options.fn_config_path)
        kept = []
        for node in items:
            path, _ = kio.file_annotations(node)
            if rel is not None and path and posixpath.normpath(path) == rel and config_node is None:
                config_node = node
                continue
            kept.append(node)
        items = kept

    selecting = not (options.selector.is_empty() and options.exclusion.is_empty())
    selected = items
    if selecting:
        selected = [
            n
            for n in items
            if (options.selector.is_empty() or options.selector.matches(n))
            and (options.exclusion.is_empty() or not options.exclusion.matches(n))
        ]

    if options.image:
        name = _display_image(options.image, options.image_prefix)
        spec = FunctionSpec(image=resolve_image(name, options.image_prefix))
        entry: dict[str, Any] = {"image": name}
    else:
        try:
            words = shlex.split(options.exec_command)
        except ValueError as exc:
            raise EvalError(f'exec command "{options.exec_command}" must be valid: {exc}') from exc
        name = options.exec_command
        spec = FunctionSpec(exec_path=words[0] if words else "", args=tuple(words[1:]))
        entry = {"exec": name}

    printer.running(name, resource_count=len(selected) if selecting else None)
    started = clock()
    rl = ResourceList(items=list(selected), function_config=copy.deepcopy(fn_config))
    try:
        output = runtime.run(spec, rl, timeout=options.timeout)
    except FunctionNotFound:
        printer.failed(name, clock() - started, [])
        raise EvalError(f"function {name!r} is not available in this runtime") from None
    except FunctionFailure as exc:
        entry.update(exitCode=exc.exit_code or 1, stderr=exc.message)
        printer.failed(
            name, clock() - started, [], stderr=exc.message, exit_code=exc.exit_code or 1
        )
        raise AlreadyReported(EvalOutcome(items, [entry], 1)) from None
    results = _normalize_results(output.resource_list.results)
    if results:
        entry["results"] = results
    if output.stderr:
        entry["stderr"] = output.stderr
    entry["exitCode"] = output.exit_code
    elapsed = clock() - started
    if output.exit_code != 0:
        printer.failed(name, elapsed, results, stderr=output.stderr, exit_code=output.exit_code)
        raise AlreadyReported(EvalOutcome(items, [entry], 1))

    out_items = list(output.resource_list.items)
    for node in out_items:
        kio.clear_annotations(node, [kio.INTERNAL_ID, kio.LEGACY_ID])
    try:
        _check_path_invariants(out_items)
    except EvalError:
        entry["exitCode"] = 1
        printer.failed(name, elapsed, results)
        raise
    printer.passed(name, elapsed, results, output.stderr)

    if selecting:
        selected_ids = {id(n) for n in selected}
        out_items = [n for n in items if id(n) not in selected_ids] + out_items
    if config_node is not None:
        out_items.append(config_node)
    return EvalOutcome(out_items, [entry], 0, pf, read_files)


def write_back(
    pf: kio.PackageFiles, items: Sequence[CommentedMap], read_files: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """The package's changed or created files and the files to delete (read, now empty).

    ``pf`` must be the reader the items came from (it remembers the original documents)."""
    written = kio.write_items(pf, [copy.deepcopy(n) for n in items])
    changed = {p: t for p, t in written.items() if pf.files.get(p) != t}
    deleted = [p for p in read_files if p not in written]
    return changed, deleted


def apply_to_disk(root: Path, changed: Mapping[str, str], deleted: Sequence[str]) -> None:
    for rel in deleted:
        target = root / rel
        if target.exists():
            target.unlink()
    for rel, text in changed.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def load_files(root: Path) -> dict[str, str]:
    """The text files under ``root`` (``.git`` skipped; undecodable files left out)."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink() and not full.exists():
                continue
            try:
                text = full.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            files[full.relative_to(root).as_posix()] = text
    return files
