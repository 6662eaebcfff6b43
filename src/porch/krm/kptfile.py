"""Edit a Kptfile's text in place, and write the files of a fresh package (``kpt pkg init``).

The Kptfile is where Porch keeps a revision's labels, annotations, readiness gates and
conditions, and people comment it by hand; so edits go through the round-trip tree, touch only
the fields they own, and return the text unchanged when there is nothing to change. Fields we
create are placed where kpt's Go struct would put them and quoted the way yaml.v3 quotes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.api.kptfile import KPTFILE, KPTFILE_API_VERSION, LOCAL_CONFIG, Kptfile
from porch.errors import Invalid
from porch.krm.plain import load_plain_all
from porch.krm.yaml import dump_documents, dumps, go_needs_quotes, go_scalar, parse_documents

__all__ = [
    "PACKAGE_CONTEXT",
    "init_package",
    "kptfile_set_metadata",
    "kptfile_set_upstream",
    "package_context",
    "drop_package_context",
    "kptfile_sync_conditions",
    "kptfile_sync_readiness_gates",
    "read_kptfile",
]

PACKAGE_CONTEXT = "package-context.yaml"

# Field order of kpt's Go types, used when a field has to be created.
_TOP = ("apiVersion", "kind", "metadata", "upstream", "upstreamLock", "info", "pipeline")
_TOP_ORDER = (*_TOP, "inventory", "status")
_META_ORDER = ("name", "namespace", "labels", "annotations")
_INFO_ORDER = (
    "site",
    "emails",
    "license",
    "licenseFile",
    "description",
    "keywords",
    "man",
    "readinessGates",
)
_STATUS_ORDER = ("conditions", "renderStatus")
_CONDITION_FIELDS = ("type", "status", "reason", "message")


def read_kptfile(text: str) -> Kptfile:
    """The Kptfile as typed data (read-only: edits go through the round-trip functions)."""
    objects = [d for d in load_plain_all(text, filename=KPTFILE) if isinstance(d, dict)]
    if len(objects) != 1:
        raise Invalid(f"invalid Kptfile: expected exactly one object, found {len(objects)}")
    try:
        return Kptfile.from_dict(objects[0])
    except (TypeError, ValueError) as exc:
        raise Invalid(f"invalid Kptfile: {exc}") from exc


def kptfile_set_metadata(
    text: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    *,
    replace: bool,
) -> str:
    """Put labels/annotations into ``metadata``: merged (add or overwrite) on create, or, with
    ``replace``, made equal to the given maps (Draft update). None leaves a map alone; an
    empty map with ``replace`` removes it."""
    docs = parse_documents(text, filename=KPTFILE)
    obj = _kptfile_object(docs.objects())
    changed = False
    for field, wanted in (("labels", labels), ("annotations", annotations)):
        if wanted is None:
            continue
        meta = obj.get("metadata")
        current = meta.get(field) if isinstance(meta, CommentedMap) else None
        have = {str(k): str(v) for k, v in current.items()} if isinstance(current, Mapping) else {}
        target = {str(k): str(v) for k, v in wanted.items()}
        if not replace:
            target = {**have, **target}
        if target == have:
            continue
        changed = True
        meta = _child_map(obj, "metadata", _TOP_ORDER)
        if not target:
            del meta[field]
        elif isinstance(current, CommentedMap):
            # Edit in place so surviving entries keep their comments and quoting.
            for key in [k for k in current if str(k) not in target]:
                del current[key]
            for key, value in target.items():
                if have.get(key) != value:
                    current[key] = go_scalar(value)
        elif field in meta:
            meta[field] = _new_map(target)
        else:
            _insert(meta, field, _new_map(target), _META_ORDER)
    return dump_documents(docs) if changed else text


def kptfile_set_upstream(
    text: str,
    *,
    name: str,
    upstream: Mapping[str, str],
    lock: Mapping[str, str],
) -> str:
    """Point a cloned package at its upstream, as ``kpt pkg get`` records it: ``metadata.name``,
    ``upstream`` (``type: git`` + repo/directory/ref, ``updateStrategy`` kept when present)
    and ``upstreamLock`` (the same plus ``commit``). Other fields and comments stay."""
    docs = parse_documents(text, filename=KPTFILE)
    obj = _kptfile_object(docs.objects())
    meta = _child_map(obj, "metadata", _TOP_ORDER)
    if meta.get("name") != name:
        if "name" in meta:
            meta["name"] = go_scalar(name)
        else:
            _insert(meta, "name", go_scalar(name), _META_ORDER)
    for field, git in (("upstream", upstream), ("upstreamLock", lock)):
        section = _child_map(obj, field, _TOP_ORDER)
        if section.get("type") != "git":
            if "type" in section:
                section["type"] = "git"
            else:
                section.insert(0, "type", "git")
        fields = _LOCK_FIELDS if field == "upstreamLock" else _LOCK_FIELDS[:3]
        section["git"] = _new_map({k: git[k] for k in fields if git.get(k)})
    return dump_documents(docs)


_LOCK_FIELDS = ("repo", "directory", "ref", "commit")


def kptfile_sync_readiness_gates(text: str, gates: Sequence[str]) -> str:
    """Make ``info.readinessGates`` hold exactly ``gates`` (set semantics): gates already
    there keep their place and comments, missing ones are appended in the given order."""
    docs = parse_documents(text, filename=KPTFILE)
    obj = _kptfile_object(docs.objects())
    info = obj.get("info")
    existing = info.get("readinessGates") if isinstance(info, CommentedMap) else None
    items = list(existing) if isinstance(existing, CommentedSeq) else []
    wanted = list(dict.fromkeys(gates))
    kept = [g for g in items if isinstance(g, Mapping) and g.get("conditionType") in wanted]
    have = [g.get("conditionType") for g in kept]
    added = [_new_map({"conditionType": gate}) for gate in wanted if gate not in have]
    if len(kept) == len(items) and not added:
        return text
    _store_list(obj, "info", "readinessGates", items, kept + added, _INFO_ORDER)
    return dump_documents(docs)


def kptfile_sync_conditions(text: str, conditions: Sequence[Mapping[str, Any]]) -> str:
    """Make ``status.conditions`` hold exactly ``conditions``, matched by ``type``: listed
    ones are updated in place (keeping comments), new ones appended, unlisted ones removed."""
    wanted: dict[str, dict[str, str]] = {}
    for condition in conditions:
        condition_type = str(condition.get("type") or "")
        if not condition_type:
            raise Invalid("a condition must have a type")
        wanted[condition_type] = {f: str(condition.get(f) or "") for f in _CONDITION_FIELDS}
    docs = parse_documents(text, filename=KPTFILE)
    obj = _kptfile_object(docs.objects())
    status = obj.get("status")
    existing = status.get("conditions") if isinstance(status, CommentedMap) else None
    items = list(existing) if isinstance(existing, CommentedSeq) else []
    final: list[Any] = []
    changed = False
    for item in items:
        kind = item.get("type") if isinstance(item, CommentedMap) else None
        if kind not in wanted or any(kind == f.get("type") for f in final):
            changed = True
            continue
        for field in _CONDITION_FIELDS[1:]:
            value = wanted[kind][field]
            if value and item.get(field) != value:
                if field in item:
                    item[field] = go_scalar(value)
                else:
                    _insert(item, field, go_scalar(value), _CONDITION_FIELDS)
                changed = True
            elif not value and field in item:
                del item[field]
                changed = True
        final.append(item)
    present = {item.get("type") for item in final}
    for kind, fields in wanted.items():
        if kind not in present:
            final.append(_new_map({f: v for f, v in fields.items() if v}))
            changed = True
    if not changed:
        return text
    _store_list(obj, "status", "conditions", items, final, _STATUS_ORDER)
    return dump_documents(docs)


def _kptfile_object(objects: list[CommentedMap]) -> CommentedMap:
    if len(objects) != 1:
        raise Invalid(f"invalid Kptfile: expected exactly one object, found {len(objects)}")
    return objects[0]


def _child_map(parent: CommentedMap, key: str, order: Sequence[str]) -> CommentedMap:
    child = parent.get(key)
    if not isinstance(child, CommentedMap):
        child = CommentedMap()
        if key in parent:
            parent[key] = child
        else:
            _insert(parent, key, child, order)
    return child


def _insert(parent: CommentedMap, key: str, value: Any, order: Sequence[str]) -> None:
    """Add ``key`` after the last existing key that precedes it in ``order``."""
    rank = order.index(key) if key in order else len(order)
    position = 0
    for i, existing in enumerate(parent):
        if existing in order and order.index(existing) < rank:
            position = i + 1
    parent.insert(position, key, value)


def _new_map(fields: Mapping[str, str]) -> CommentedMap:
    out = CommentedMap()
    for key, value in fields.items():
        out[key] = go_scalar(value)
    return out


def _store_list(
    obj: CommentedMap,
    container: str,
    field: str,
    before: list[Any],
    after: list[Any],
    order: Sequence[str],
) -> None:
    """Write ``after`` as ``obj[container][field]``; an empty list removes the field, and the
    container too when nothing else is left in it."""
    if not after:
        holder = obj.get(container)
        if isinstance(holder, CommentedMap) and field in holder:
            del holder[field]
            if not holder:
                del obj[container]
        return
    holder = _child_map(obj, container, _TOP_ORDER)
    current = holder.get(field)
    if isinstance(current, CommentedSeq):
        # Edit the existing sequence so its comments and flow/block style survive.
        kept_ids = {id(item) for item in after}
        for index in reversed(range(len(before))):
            if id(before[index]) not in kept_ids:
                del current[index]
        current.extend(item for item in after if not any(item is old for old in before))
    elif field in holder:
        holder[field] = CommentedSeq(after)
    else:
        _insert(holder, field, CommentedSeq(after), order)


def init_package(
    name: str, description: str = "", keywords: Sequence[str] = (), site: str = ""
) -> dict[str, str]:
    """The files ``kpt pkg init`` writes: Kptfile, README.md and package-context.yaml."""
    fast = _fast_init_kptfile(name, description, keywords, site)
    return {
        KPTFILE: fast if fast is not None else _init_kptfile(name, description, keywords, site),
        "README.md": _readme(name, description),
        PACKAGE_CONTEXT: _init_context(),
    }


# Text the emitter writes plain, on one line, whatever its settings: the common case of a
# DNS-label name and a short description. Anything else goes through ruamel.
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*(?: [A-Za-z0-9._/-]+)*")


def _fast_init_kptfile(
    name: str, description: str, keywords: Sequence[str], site: str
) -> str | None:
    values = (name, description)
    if keywords or site or not description:
        return None
    if not all(len(v) <= 60 and _PLAIN_SAFE.fullmatch(v) for v in values):
        return None
    if any(go_needs_quotes(v) for v in values):
        return None
    return (
        f"apiVersion: {KPTFILE_API_VERSION}\nkind: {KPTFILE}\nmetadata:\n  name: {name}\n"
        f'  annotations:\n    {LOCAL_CONFIG}: "true"\ninfo:\n  description: {description}\n'
    )


def package_context(name: str, package_path: str = "") -> str:
    """``package-context.yaml``: the ``kptfile.kpt.dev`` ConfigMap with the package's name
    (and, in a deployment repository, its ``package-path``)."""
    context = CommentedMap()
    context["apiVersion"] = "v1"
    context["kind"] = "ConfigMap"
    context["metadata"] = _metadata("kptfile.kpt.dev")
    data = CommentedMap(name=go_scalar(name))
    if package_path:
        data["package-path"] = go_scalar(package_path)
    context["data"] = data
    return dumps(context)


def drop_package_context(files: Mapping[str, str]) -> dict[str, str]:
    """The files without any ``kptfile.kpt.dev`` ConfigMap (a file left empty goes too)."""
    out: dict[str, str] = {}
    for path, text in files.items():
        if not (path.endswith((".yaml", ".yml")) and "kptfile.kpt.dev" in text):
            out[path] = text
            continue
        docs = parse_documents(text, filename=path)
        doomed = [
            node
            for node in docs.objects()
            if node.get("kind") == "ConfigMap"
            and isinstance(node.get("metadata"), Mapping)
            and node["metadata"].get("name") == "kptfile.kpt.dev"
        ]
        for node in doomed:
            docs.remove(node)
        if not doomed:
            out[path] = text
        elif docs.objects():
            out[path] = dump_documents(docs)
    return out


@cache
def _init_context() -> str:
    context = CommentedMap()
    context["apiVersion"] = "v1"
    context["kind"] = "ConfigMap"
    context["metadata"] = _metadata("kptfile.kpt.dev")
    # kpt writes the abstract placeholder here; Porch fills in the real name on render.
    context["data"] = CommentedMap(name="example")
    return dumps(context)


def _init_kptfile(name: str, description: str, keywords: Sequence[str], site: str) -> str:
    info: dict[str, Any] = {}
    if site:
        info["site"] = site
    if description:
        info["description"] = description
    if keywords:
        info["keywords"] = list(keywords)
    kptfile = CommentedMap()
    kptfile["apiVersion"] = KPTFILE_API_VERSION
    kptfile["kind"] = KPTFILE
    kptfile["metadata"] = _metadata(name)
    kptfile["info"] = CommentedMap(
        (k, CommentedSeq(go_scalar(w) for w in v) if isinstance(v, list) else go_scalar(v))
        for k, v in info.items()
    )
    return dumps(kptfile)


def _metadata(name: str) -> CommentedMap:
    meta = CommentedMap()
    meta["name"] = go_scalar(name)
    meta["annotations"] = CommentedMap({LOCAL_CONFIG: go_scalar("true")})
    return meta


def _readme(name: str, description: str) -> str:
    return f"""# {name}

## Description
{description}

## Usage

### Fetch the package
`kpt pkg get REPO_URI[.git]/PKG_PATH[@VERSION] {name}`
See https://kpt.dev/reference/cli/pkg/get/ for the options.

### View package content
`kpt pkg tree {name}`
See https://kpt.dev/reference/cli/pkg/tree/ for the options.

### Apply the package
```
kpt live init {name}
kpt live apply {name} --reconcile-timeout=2m --output=table
```
See https://kpt.dev/reference/cli/live/ for the options.
"""
