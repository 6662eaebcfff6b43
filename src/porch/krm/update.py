"""Package upgrade: kpt's update strategies over in-memory file maps (spec §4.4).

``local`` is the downstream package, ``original`` the upstream revision it was cloned from,
``updated`` the upstream revision to move to. Each strategy returns the new local file map and a
:class:`~porch.krm.merge3.MergeReport` listing conflicting edits.

* ``resource-merge``: subpackages added/removed as kpt decides; per package, the Kptfile is
  merged (info, pipeline, labels … three-way; upstream fields from ``updated``), KRM resources
  are merged object by object and field by field, non-KRM files take the upstream version unless
  edited locally.
* ``fast-forward``: refuses when the local package differs from ``original``; else replace.
* ``force-delete-replace``: the upstream files, with local's Kptfile name kept.
* ``copy-merge``: upstream files copied over local; files upstream deleted are removed; local-only
  files stay.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.errors import Invalid
from porch.krm import yaml as krm_yaml
from porch.krm.merge3 import (
    MISSING,
    MergeReport,
    add_merge_comment,
    identity,
    merge_objects,
    same_resource,
)
from porch.krm.resources import is_krm_file

STRATEGIES = ("resource-merge", "fast-forward", "force-delete-replace", "copy-merge")
KPTFILE = "Kptfile"


def upgrade(
    strategy: str,
    local: Mapping[str, str],
    original: Mapping[str, str],
    updated: Mapping[str, str],
) -> tuple[dict[str, str], MergeReport]:
    strategy = strategy or "resource-merge"
    if strategy == "resource-merge":
        return resource_merge(local, original, updated)
    if strategy == "fast-forward":
        return add_merge_comments(fast_forward(local, original, updated)), MergeReport()
    if strategy == "force-delete-replace":
        return add_merge_comments(force_delete_replace(local, updated)), MergeReport()
    if strategy == "copy-merge":
        return add_merge_comments(copy_merge(local, original, updated)), MergeReport()
    raise Invalid(f"unrecognized update strategy {strategy}")


# --- helpers over file maps ------------------------------------------------------------------


def subpackages(files: Mapping[str, str]) -> list[str]:
    """Directories (relative, no trailing slash) below the root that hold their own Kptfile."""
    out = []
    for path in files:
        if posixpath.basename(path) == KPTFILE and "/" in path:
            out.append(posixpath.dirname(path))
    return sorted(out)


def _owner(path: str, subs: list[str]) -> str:
    """The (sub)package a file belongs to: the deepest package directory containing it."""
    best = ""
    for sub in subs:
        if path.startswith(sub + "/") and len(sub) > len(best):
            best = sub
    return best


def _package_files(files: Mapping[str, str], pkg: str, subs: list[str]) -> dict[str, str]:
    """The files of package ``pkg`` alone (nested packages excluded), paths relative to it."""
    out = {}
    for path, text in files.items():
        if _owner(path, subs) != pkg:
            continue
        rel = path[len(pkg) + 1 :] if pkg else path
        out[rel] = text
    return out


def _prefixed(files: Mapping[str, str], pkg: str) -> dict[str, str]:
    return {(f"{pkg}/{p}" if pkg else p): t for p, t in files.items()}


def _differs(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return dict(a) != dict(b)


# --- resource-merge --------------------------------------------------------------------------


def resource_merge(
    local: Mapping[str, str], original: Mapping[str, str], updated: Mapping[str, str]
) -> tuple[dict[str, str], MergeReport]:
    report = MergeReport()
    subs_l, subs_o, subs_u = subpackages(local), subpackages(original), subpackages(updated)
    all_subs = sorted(set(subs_l) | set(subs_o) | set(subs_u))
    out: dict[str, str] = {}
    for pkg in ["", *all_subs]:
        in_l = pkg == "" or pkg in subs_l
        in_o = pkg == "" or pkg in subs_o
        in_u = pkg == "" or pkg in subs_u
        lf = _package_files(local, pkg, subs_l) if in_l else {}
        of = _package_files(original, pkg, subs_o) if in_o else {}
        uf = _package_files(updated, pkg, subs_u) if in_u else {}
        if not in_o and in_l and in_u:
            raise Invalid(f'subpackage "{pkg}" added in both upstream and local')
        if not in_o and not in_l and in_u:
            out.update(_prefixed(uf, pkg))
            continue
        if not in_u and in_o and in_l:
            if not _differs(_normalised(lf), _normalised(of)):
                continue  # deleted upstream, untouched here: gone
            out.update(_prefixed(lf, pkg))
            continue
        if not in_l:
            continue  # deleted locally stays deleted
        if not in_u and not in_o:
            out.update(_prefixed(lf, pkg))
            continue
        merged = _merge_package(lf, of, uf, is_root=pkg == "", report=report, prefix=pkg)
        out.update(_prefixed(merged, pkg))
    # kpt comments every resource of all three trees before merging; the result carries them
    return add_merge_comments(out), report


def _normalised(files: Mapping[str, str]) -> dict[str, str]:
    return add_merge_comments(files)


def add_merge_comments(files: Mapping[str, str]) -> dict[str, str]:
    """kpt's addmergecomment over every KRM resource file (the Kptfile excluded)."""
    out = dict(files)
    for path, text in files.items():
        if not _is_resource_file(path):
            continue
        try:
            docs = krm_yaml.parse_documents(text, filename=path)
        except Invalid:
            continue
        changed = False
        for obj in docs.objects():
            changed = add_merge_comment(obj) or changed
        if changed:
            out[path] = krm_yaml.dump_documents(docs)
    return out


def _is_resource_file(path: str) -> bool:
    return is_krm_file(path) and posixpath.basename(path) != KPTFILE


@dataclass
class _Node:
    path: str
    index: int
    obj: CommentedMap
    source: str  # "dest" | "original" | "updated"


def _read(files: Mapping[str, str], source: str) -> tuple[list[_Node], dict[str, Any]]:
    nodes: list[_Node] = []
    docs_by_path: dict[str, Any] = {}
    for path in sorted(files):
        if not _is_resource_file(path):
            continue
        docs = krm_yaml.parse_documents(files[path], filename=path)
        for obj in docs.objects():
            add_merge_comment(obj)
        docs_by_path[path] = docs
        for index, obj in enumerate(docs.objects()):
            _annotate(obj, path, index)
            nodes.append(_Node(path, index, obj, source))
    return nodes, docs_by_path


_PATH = "config.kubernetes.io/path"
_INDEX = "config.kubernetes.io/index"


def _annotate(obj: CommentedMap, path: str, index: int) -> None:
    """kio's reader annotations: merged like any other field, then read back and removed."""
    meta = obj.get("metadata")
    if not isinstance(meta, CommentedMap):
        return
    annotations = meta.get("annotations")
    if not isinstance(annotations, CommentedMap):
        return
    annotations[_PATH] = path
    annotations[_INDEX] = str(index)


def _unannotate(obj: CommentedMap, default: int) -> int:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, CommentedMap) else None
    if not isinstance(annotations, CommentedMap):
        return default
    annotations.pop(_PATH, None)
    raw = annotations.pop(_INDEX, None)
    try:
        return int(str(raw)) if raw is not None else default
    except ValueError:
        return default


def _merge_package(
    local: Mapping[str, str],
    original: Mapping[str, str],
    updated: Mapping[str, str],
    *,
    is_root: bool,
    report: MergeReport,
    prefix: str,
) -> dict[str, str]:
    out = dict(local)
    if KPTFILE in local or KPTFILE in updated:
        out[KPTFILE] = update_kptfile(
            local.get(KPTFILE, ""),
            updated.get(KPTFILE, ""),
            original.get(KPTFILE, ""),
            update_upstream=not is_root,
        )
    dest_nodes, dest_docs = _read(local, "dest")
    orig_nodes, _ = _read(original, "original")
    upd_nodes, upd_docs = _read(updated, "updated")

    tuples: list[dict[str, _Node]] = []
    index_of: dict[tuple[str, str, str, str, str], int] = {}
    for node in (*dest_nodes, *orig_nodes, *upd_nodes):
        key = identity(node.obj, node.path)
        slot = index_of.get(key)
        if slot is None:
            index_of[key] = len(tuples)
            tuples.append({node.source: node})
            continue
        if node.source in tuples[slot]:
            who = {"dest": "local", "original": "original upstream", "updated": "updated upstream"}
            raise Invalid(
                f'found duplicate "{who[node.source]}" resources in file "{node.path}",'
                ' please refer to "update" documentation for the fix'
            )
        tuples[slot][node.source] = node

    output: list[_Node] = []
    for t in tuples:
        o, u, d = t.get("original"), t.get("updated"), t.get("dest")
        if o is None and u is None and d is not None:
            output.append(d)
        elif o is None and u is not None and d is None:
            output.append(u)
        elif u is None and d is None:
            continue
        elif o is not None and u is None:
            assert d is not None
            if not same_resource(o.obj, d.obj):
                output.append(d)
        elif o is not None and d is None:
            continue
        else:
            assert d is not None and u is not None
            sub = MergeReport()
            merged = merge_objects(d.obj, o.obj if o is not None else MISSING, u.obj, report=sub)
            where = posixpath.join(prefix, d.path) if prefix else d.path
            for c in sub.conflicts:
                report.conflicts.append(
                    type(c)(f"{where}:{_ref(d.obj)}:{c.path}", c.local, c.upstream, c.chosen)
                )
            if isinstance(merged, CommentedMap):
                output.append(_Node(d.path, d.index, merged, "dest"))

    for node in output:
        node.index = _unannotate(node.obj, node.index)
    for node in (*dest_nodes, *orig_nodes, *upd_nodes):
        _unannotate(node.obj, node.index)
    by_path: dict[str, list[_Node]] = {}
    for node in output:
        by_path.setdefault(node.path, []).append(node)
    for path in list(out):
        if _is_resource_file(path) and path not in by_path and path in dest_docs:
            del out[path]  # every resource of the file is gone
    for path, nodes in by_path.items():
        nodes.sort(key=lambda n: n.index)
        base = dest_docs.get(path) or upd_docs.get(path)
        docs = krm_yaml.Documents(filename=path)
        template = base.entries if base is not None else []
        pool = {id(e.node): e for e in template if e.node is not None}
        for node in nodes:
            entry = pool.get(id(node.obj))
            if entry is None:
                src = upd_docs.get(path) if node.source == "updated" else None
                entry = next((e for e in (src.entries if src else []) if e.node is node.obj), None)
            if entry is None:
                entry = krm_yaml.Document(node=node.obj)
                if docs.entries:
                    entry.indent = docs.entries[-1].indent
            docs.entries.append(entry)
        # comment-only documents of the local file keep their place at the top
        if (
            base is not None
            and template
            and template[0].node is None
            and base is dest_docs.get(path)
        ):
            docs.entries.insert(0, template[0])
        out[path] = krm_yaml.dump_documents(docs)

    _replace_non_krm(updated, original, local, out)
    return out


def _ref(obj: CommentedMap) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    ns = meta.get("namespace") or ""
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name') or ''}"


def _replace_non_krm(
    updated: Mapping[str, str],
    original: Mapping[str, str],
    local: Mapping[str, str],
    out: dict[str, str],
) -> None:
    def non_krm(files: Mapping[str, str]) -> set[str]:
        return {p for p in files if not is_krm_file(p) and ".git" not in p.split("/")}

    u, o, lo = non_krm(updated), non_krm(original), non_krm(local)
    modified = set()
    for path in lo:
        if path not in o or original[path] != local[path]:
            modified.add(path)
            continue
        if path not in u:
            out.pop(path, None)
    for path in u:
        if path not in modified:
            out[path] = updated[path]


# --- the Kptfile ---------------------------------------------------------------------------

_KPT_FIELDS = ("annotations", "labels", "info", "pipeline", "inventory", "status")


def update_kptfile(local: str, updated: str, original: str, *, update_upstream: bool) -> str:
    """kpt's UpdateKptfile: three-way merge of the Kptfile's own fields, Go-struct layout."""

    def load(text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        return krm_yaml.to_plain(krm_yaml.load_object(text, filename=KPTFILE))

    lk, uk, ok = load(local), load(updated), load(original)
    named = _fn_names_needed(lk, uk, ok)
    views = []
    for k in (lk, uk, ok):
        view: dict[str, Any] = {
            "metadata": {
                f: (k.get("metadata") or {}).get(f)
                for f in ("labels", "annotations")
                if (k.get("metadata") or {}).get(f) is not None
            },
            **{f: k[f] for f in ("info", "pipeline", "inventory", "status") if f in k},
        }
        if named:
            _add_fn_names(view)
        views.append(krm_yaml.from_plain(view))
    merged = merge_objects(views[0], views[2], views[1], infer=True)
    merged_plain = krm_yaml.to_plain(merged) if isinstance(merged, dict) else {}
    if named:
        _drop_fn_names(merged_plain)
    result: dict[str, Any] = {
        "apiVersion": lk.get("apiVersion") or uk.get("apiVersion") or "kpt.dev/v1",
        "kind": "Kptfile",
    }
    meta: dict[str, Any] = {}
    lmeta = lk.get("metadata") or {}
    for f in ("name", "namespace"):
        if lmeta.get(f):
            meta[f] = lmeta[f]
    mmeta = merged_plain.get("metadata") or {}
    for f in ("labels", "annotations"):
        if mmeta.get(f):
            meta[f] = mmeta[f]
    result["metadata"] = meta
    upstream, lock = lk.get("upstream"), lk.get("upstreamLock")
    if update_upstream:
        upstream = uk.get("upstream") or upstream
        lock = uk.get("upstreamLock") or lock
    if upstream:
        result["upstream"] = upstream
    if lock:
        result["upstreamLock"] = lock
    for f in ("info", "pipeline", "inventory", "status"):
        if merged_plain.get(f):
            result[f] = merged_plain[f]
    return krm_yaml.dumps(krm_yaml.from_plain(_go_order(result)))


def _fn_names_needed(*kfs: dict[str, Any]) -> bool:
    for kf in kfs:
        pipeline = kf.get("pipeline") or {}
        for group in ("mutators", "validators"):
            seen: set[str] = set()
            for fn in pipeline.get(group) or []:
                if fn.get("name"):
                    return False
                key = fn.get("exec") or str(fn.get("image") or "").split(":")[0]
                if key in seen:
                    return False
                seen.add(key)
    return True


def _add_fn_names(view: dict[str, Any]) -> None:
    pipeline = view.get("pipeline") or {}
    for group in ("mutators", "validators"):
        for fn in pipeline.get(group) or []:
            if not fn.get("name"):
                key = fn.get("exec") or str(fn.get("image") or "").split(":")[0]
                fn["name"] = f"_kpt-merge_{key}"


def _drop_fn_names(view: dict[str, Any]) -> None:
    pipeline = view.get("pipeline") or {}
    for group in ("mutators", "validators"):
        for fn in pipeline.get(group) or []:
            if str(fn.get("name") or "").startswith("_kpt-merge_"):
                del fn["name"]


_ORDER = {
    "": (
        "apiVersion",
        "kind",
        "metadata",
        "upstream",
        "upstreamLock",
        "info",
        "pipeline",
        "inventory",
        "status",
    ),
    "metadata": ("name", "namespace", "labels", "annotations"),
    "upstream": ("type", "git", "updateStrategy"),
    "upstreamLock": ("type", "git"),
    "git": ("repo", "directory", "ref", "commit"),
    "info": (
        "site",
        "emails",
        "license",
        "licenseFile",
        "description",
        "keywords",
        "man",
        "readinessGates",
    ),
    "fn": ("image", "exec", "configPath", "configMap", "name", "selectors", "exclude"),
    "pipeline": ("mutators", "validators"),
}


def _go_order(data: dict[str, Any], where: str = "") -> dict[str, Any]:
    order = _ORDER.get(where)
    keys = list(data)
    if order is not None:
        keys = [k for k in order if k in data] + [k for k in data if k not in order]
    out: dict[str, Any] = {}
    for k in keys:
        v = data[k]
        if isinstance(v, dict) and k in _ORDER and k not in ("configMap",):
            v = _go_order(v, k)
        elif isinstance(v, list) and k in ("mutators", "validators"):
            v = [_go_order(f, "fn") if isinstance(f, dict) else f for f in v]
        out[k] = v
    return out


# --- the other strategies ------------------------------------------------------------------


def force_delete_replace(local: Mapping[str, str], updated: Mapping[str, str]) -> dict[str, str]:
    out = dict(updated)
    if KPTFILE in local and KPTFILE in updated:
        out[KPTFILE] = _keep_name(updated[KPTFILE], local[KPTFILE])
    return out


def fast_forward(
    local: Mapping[str, str], original: Mapping[str, str], updated: Mapping[str, str]
) -> dict[str, str]:
    mine, theirs = add_merge_comments(local), add_merge_comments(original)
    changed = sorted(
        p for p in set(mine) | set(theirs) if p != KPTFILE and mine.get(p) != theirs.get(p)
    )
    if changed or _kptfile_changed(local.get(KPTFILE, ""), original.get(KPTFILE, "")):
        detail = f": {', '.join(changed)}" if changed else ""
        raise Invalid(
            "local package files have been modified and fast-forward update strategy"
            f" cannot be used{detail}"
        )
    out = force_delete_replace(local, updated)
    if KPTFILE in out:
        out[KPTFILE] = _drop_render_status(out[KPTFILE])
    return out


def copy_merge(
    local: Mapping[str, str], original: Mapping[str, str], updated: Mapping[str, str]
) -> dict[str, str]:
    out = dict(local)
    for path, text in updated.items():
        out[path] = text
    for path in original:
        if path not in updated:
            out.pop(path, None)
    if KPTFILE in local and KPTFILE in updated:
        out[KPTFILE] = _keep_name(updated[KPTFILE], local[KPTFILE])
    return out


def _kptfile_changed(local: str, original: str) -> bool:
    def view(text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        data = krm_yaml.to_plain(krm_yaml.load_object(text, filename=KPTFILE))
        for f in ("upstream", "upstreamLock", "status"):
            data.pop(f, None)
        (data.get("metadata") or {}).pop("name", None)
        return data

    return view(local) != view(original)


def _keep_name(updated_kptfile: str, local_kptfile: str) -> str:
    obj = krm_yaml.load_object(updated_kptfile, filename=KPTFILE)
    local_obj = krm_yaml.load_object(local_kptfile, filename=KPTFILE)
    name = (local_obj.get("metadata") or {}).get("name")
    meta = obj.get("metadata")
    if name and isinstance(meta, dict) and meta.get("name") != name:
        meta["name"] = name
        for key in ("upstream", "upstreamLock"):
            if key in local_obj and key not in obj:
                obj[key] = local_obj[key]
        return krm_yaml.dumps(obj)
    return updated_kptfile


def _drop_render_status(text: str) -> str:
    obj = krm_yaml.load_object(text, filename=KPTFILE)
    status = obj.get("status")
    if isinstance(status, dict) and "renderStatus" in status:
        del status["renderStatus"]
        if not status:
            del obj["status"]
        return krm_yaml.dumps(obj)
    return text
