"""Three-way merge of KRM resources, field by field, as ``kpt pkg update`` does it.

``merge_objects(dest, original, updated)`` walks the three trees together (kyaml's merge3
walker): maps merge key by key; a scalar or an atomic list takes the upstream value when
upstream changed it and keeps the local one otherwise; lists that Kubernetes declares
associative (``containers`` by ``name``, ``ports`` by ``containerPort`` …) merge element by
element. ``null`` on either side clears a field, a field deleted locally stays deleted unless
upstream changed it. The merged tree is ``dest`` edited in place, so local comments, key order
and formatting survive.

Where local and upstream both changed a value differently, upstream wins (kpt's rule); each
such case is recorded as a :class:`Conflict` so callers can show it.

Resources are matched across the three sides by group, kind, name and namespace (the ones in a
``# kpt-merge: ns/name`` comment on ``metadata`` win over the live ones, so a local rename keeps
its identity) and by file path.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

MERGE_COMMENT_PREFIX = "kpt-merge:"
UPSTREAM_IDENTIFIER = "internal.kpt.dev/upstream-identifier"


class _Missing:
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""A field that is absent (as opposed to present with a ``null`` value, which is None)."""


@dataclass(frozen=True)
class Conflict:
    """Local and upstream both changed one value, differently."""

    path: str  # dotted field path inside the resource
    local: Any
    upstream: Any
    chosen: str  # "upstream" or "local"


@dataclass
class MergeReport:
    conflicts: list[Conflict] = field(default_factory=list)


# --- schema: which lists Kubernetes merges by key -------------------------------------------

_LIST = "list"
# type name -> field -> ("type", child type) | ("list", merge key or "" for primitives | None
# for an atomic list, element type or None)
_TYPES: dict[str, dict[str, tuple[str, str | None, str | None]]] = {
    "ObjectMeta": {
        "finalizers": (_LIST, "", None),
        "ownerReferences": (_LIST, "uid", None),
    },
    "PodTemplateSpec": {
        "metadata": ("type", "ObjectMeta", None),
        "spec": ("type", "PodSpec", None),
    },
    "PodSpec": {
        "containers": (_LIST, "name", "Container"),
        "initContainers": (_LIST, "name", "Container"),
        "ephemeralContainers": (_LIST, "name", "Container"),
        "volumes": (_LIST, "name", None),
        "imagePullSecrets": (_LIST, "name", None),
        "hostAliases": (_LIST, "ip", None),
        "topologySpreadConstraints": (_LIST, "topologyKey", None),
    },
    "Container": {
        "env": (_LIST, "name", None),
        "ports": (_LIST, "containerPort", None),
        "volumeMounts": (_LIST, "mountPath", None),
        "volumeDevices": (_LIST, "devicePath", None),
    },
    "WorkloadSpec": {"template": ("type", "PodTemplateSpec", None)},
    "JobTemplateSpec": {
        "metadata": ("type", "ObjectMeta", None),
        "spec": ("type", "WorkloadSpec", None),
    },
    "CronJobSpec": {"jobTemplate": ("type", "JobTemplateSpec", None)},
    "ServiceSpec": {"ports": (_LIST, "port", None)},
    "Status": {"conditions": (_LIST, "type", None)},
}
_SPEC_OF_KIND = {
    "Pod": "PodSpec",
    "Deployment": "WorkloadSpec",
    "StatefulSet": "WorkloadSpec",
    "DaemonSet": "WorkloadSpec",
    "ReplicaSet": "WorkloadSpec",
    "ReplicationController": "WorkloadSpec",
    "Job": "WorkloadSpec",
    "CronJob": "CronJobSpec",
    "PodTemplate": None,
    "Service": "ServiceSpec",
}
_BUILTIN_GROUPS = {"", "apps", "batch", "extensions", "core"}


@dataclass(frozen=True)
class _Schema:
    type_name: str | None = None
    list_key: str | None = None  # set when this node is an associative list
    element: str | None = None  # element type of a list

    def field(self, name: str) -> _Schema | None:
        if self.type_name is None:
            return None
        entry = _TYPES.get(self.type_name, {}).get(name)
        if entry is None:
            return None
        what, a, b = entry
        if what == "type":
            return _Schema(type_name=a)
        return _Schema(list_key=a, element=b)

    def elements(self) -> _Schema | None:
        if self.element is None:
            return None
        return _Schema(type_name=self.element)


def _schema_for(obj: Any) -> _Schema | None:
    if not isinstance(obj, dict):
        return None
    kind = obj.get("kind")
    api = str(obj.get("apiVersion") or "")
    group = api.split("/", 1)[0] if "/" in api else ""
    if not isinstance(kind, str) or group not in _BUILTIN_GROUPS:
        return None
    root = f"root:{kind}"
    if root not in _TYPES:
        fields: dict[str, tuple[str, str | None, str | None]] = {
            "metadata": ("type", "ObjectMeta", None),
            "status": ("type", "Status", None),
        }
        spec = _SPEC_OF_KIND.get(kind)
        if kind == "PodTemplate":
            fields["template"] = ("type", "PodTemplateSpec", None)
        elif spec:
            fields["spec"] = ("type", spec, None)
        _TYPES[root] = fields
    return _Schema(type_name=root)


# --- the walker -----------------------------------------------------------------------------


def _absent(node: Any) -> bool:
    return node is MISSING or node is None


def _kind(sources: Sequence[Any]) -> str:
    for s in sources:
        if not _absent(s):
            if isinstance(s, dict):
                return "map"
            if isinstance(s, list):
                return "seq"
            return "scalar"
    return "none"


def _scalar_text(node: Any) -> str:
    """What kyaml compares: the value with its type (an int 1 is not the string "1")."""
    if node is MISSING:
        return ""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return f"!!bool {str(node).lower()}"
    if isinstance(node, int | float):
        return f"!!{type(node).__name__} {node}"
    if isinstance(node, dict | list):
        return repr(_plain(node))
    return f"!!str {node}"


def _raw(node: Any) -> str:
    if _absent(node):
        return ""
    if isinstance(node, bool):
        return str(node).lower()
    if isinstance(node, dict | list):
        return repr(_plain(node))
    return str(node)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


class _Walker:
    def __init__(self, report: MergeReport, infer: bool) -> None:
        self.report = report
        self.infer = infer
        self.comments: list[str] = ["", "", ""]  # line comments of the scalar being merged
        self.choice = -1  # which source a scalar merge took (0 dest, 1 original, 2 updated)

    def walk(self, sources: list[Any], schema: _Schema | None, path: tuple[str, ...]) -> Any:
        """Return the merged value: MISSING to clear the field, else the value."""
        kind = _kind(sources)
        if kind == "seq":
            if self._associative(schema, sources):
                return self._assoc_list(sources, schema, path)
            return self._atomic(sources, path)
        if kind == "scalar":
            return self._scalar(sources, path)
        return self._map(sources, schema, path)

    # kyaml: updated or dest explicitly null clears; so does a map gone from both sides.
    def _map(self, sources: list[Any], schema: _Schema | None, path: tuple[str, ...]) -> Any:
        dest, origin, updated = sources
        if updated is None or dest is None:
            return MISSING
        if dest is MISSING and updated is MISSING:
            return MISSING
        if dest is MISSING:
            dest = CommentedMap()
        names: set[str] = set()
        for s in (dest, origin, updated):
            if isinstance(s, dict):
                names.update(str(k) for k in s)
        for name in sorted(names):
            trio = (dest, origin, updated)
            values = [s.get(name, MISSING) if isinstance(s, dict) else MISSING for s in trio]
            child = schema.field(name) if schema is not None else None
            self.comments = [_eol(s, name) for s in trio]
            self.choice = -1
            merged = self.walk(values, child, (*path, name))
            if merged is MISSING or merged is None:
                if name in dest:
                    del dest[name]
                continue
            had = name in dest
            dest[name] = merged
            if (not had or self.choice == 2) and isinstance(updated, CommentedMap):
                _copy_key_comment(updated, dest, name)
        return dest

    def _scalar(self, sources: list[Any], path: tuple[str, ...]) -> Any:
        dest, origin, updated = sources
        comments, self.comments = self.comments, ["", "", ""]
        if updated is None or dest is None:
            return MISSING
        if _absent(updated) != _absent(origin):
            self.choice = 2
            return updated
        if _absent(updated) and _absent(origin):
            return dest
        # kyaml compares the serialised nodes, line comments included
        d, o, u = (_scalar_text(v) + c for v, c in zip(sources, comments, strict=True))
        if (dest is MISSING or d == o) and o != u:
            self.choice = 2
            return updated
        if _raw(updated) != _raw(origin):
            if dest is not MISSING and _raw(dest) != _raw(updated):
                self._conflict(path, dest, updated)
            self.choice = 2
            return updated
        return dest

    def _atomic(self, sources: list[Any], path: tuple[str, ...]) -> Any:
        dest, origin, updated = sources
        if updated is None or dest is None:
            return MISSING
        if _absent(updated) != _absent(origin):
            return updated
        if _absent(updated) and _absent(origin):
            return dest
        u, o = _scalar_text(updated), _scalar_text(origin)
        if u != o:
            if dest is not MISSING and _scalar_text(dest) not in (o, u):
                self._conflict(path, dest, updated)
            return updated
        return dest

    def _associative(self, schema: _Schema | None, sources: Sequence[Any]) -> bool:
        if schema is not None:
            return schema.list_key is not None
        if not self.infer:
            return False
        return any(isinstance(s, list) and _infer_key(s) for s in sources)

    def _assoc_list(self, sources: list[Any], schema: _Schema | None, path: tuple[str, ...]) -> Any:
        dest, origin, updated = sources
        if _absent(updated) and not _absent(origin):
            return MISSING
        if _absent(dest):
            dest = CommentedSeq()
        key = schema.list_key if schema is not None else None
        if key is None:
            key = ""
            for s in sources:
                if isinstance(s, list) and s:
                    key = _infer_key(s) or ""
                    break
        element_schema = schema.elements() if schema is not None else None
        seen: list[Any] = []
        for s in (dest, origin, updated):
            if not isinstance(s, list):
                continue
            for item in s:
                ident = _ident(item, key)
                if ident is MISSING or ident in seen:
                    continue
                seen.append(ident)
        additions: list[Any] = []
        for ident in seen:
            elems = [_find(s, key, ident) for s in (dest, origin, updated)]
            position = _index(dest, key, ident)
            merged = self.walk(elems, element_schema, (*path, f"[{key or 'value'}={ident}]"))
            if _absent(merged) or (isinstance(merged, dict) and not merged):
                if position is not None:
                    del dest[position]
                continue
            if key and isinstance(merged, dict) and key not in merged:
                merged[key] = ident
            if position is not None:
                dest[position] = merged
            else:
                additions.append(merged)
        dest.extend(additions)
        if not dest:
            return MISSING
        return dest

    def _conflict(self, path: tuple[str, ...], local: Any, upstream: Any) -> None:
        self.report.conflicts.append(
            Conflict(".".join(path), _plain(local), _plain(upstream), "upstream")
        )


def _eol(parent: Any, key: str) -> str:
    """The end-of-line comment after ``key``'s scalar value in ``parent``."""
    if not isinstance(parent, CommentedMap):
        return ""
    entry = parent.ca.items.get(key)
    if not entry or len(entry) < 3 or not isinstance(entry[2], CommentToken):
        return ""
    return " " + entry[2].value.split("\n", 1)[0].strip()


def _infer_key(seq: Sequence[Any]) -> str | None:
    if seq and all(isinstance(e, dict) and "name" in e for e in seq):
        return "name"
    return None


def _ident(item: Any, key: str) -> Any:
    if key == "":
        return item if not isinstance(item, dict | list) else MISSING
    if isinstance(item, dict):
        value = item.get(key, MISSING)
        return value if not isinstance(value, dict | list) else MISSING
    return MISSING


def _find(seq: Any, key: str, ident: Any) -> Any:
    if not isinstance(seq, list):
        return MISSING
    for item in seq:
        if _ident(item, key) == ident and _ident(item, key) is not MISSING:
            return item
    return MISSING


def _index(seq: list[Any], key: str, ident: Any) -> int | None:
    for i, item in enumerate(seq):
        if _ident(item, key) == ident:
            return i
    return None


def _copy_key_comment(src: CommentedMap, dst: CommentedMap, key: str) -> None:
    entry = src.ca.items.get(key)
    if entry is not None:
        dst.ca.items[key] = copy.deepcopy(entry)
    elif key in dst.ca.items:
        old = dst.ca.items[key]
        # keep comment lines that follow the value (they belong to the next key)
        if len(old) > 2 and isinstance(old[2], CommentToken) and "\n" in old[2].value.rstrip("\n"):
            rest = old[2].value.split("\n", 1)[1]
            old[2] = CommentToken("\n" + rest, old[2].start_mark, None)
        else:
            del dst.ca.items[key]


def merge_objects(
    dest: Any,
    original: Any,
    updated: Any,
    *,
    infer: bool = False,
    report: MergeReport | None = None,
) -> Any:
    """Merge ``original``→``updated`` into ``dest`` (edited in place); MISSING when cleared."""
    report = report if report is not None else MergeReport()
    schema = None
    for s in (dest, original, updated):
        schema = _schema_for(s)
        if schema is not None:
            break
    return _Walker(report, infer).walk([dest, original, updated], schema, ())


# --- resource identity and merge-key comments -----------------------------------------------


def _group(api_version: Any) -> str:
    text = str(api_version or "")
    return text.split("/", 1)[0] if "/" in text else ""


def merge_comment(obj: CommentedMap) -> tuple[str, str] | None:
    """(namespace, name) from a ``# kpt-merge: ns/name`` comment on ``metadata``."""
    entry = obj.ca.items.get("metadata")
    text = ""
    if entry is not None:
        for part in entry:
            if isinstance(part, CommentToken):
                text = part.value
                break
    if not text:
        meta = obj.get("metadata")
        if isinstance(meta, CommentedMap) and meta.ca.comment:
            first = meta.ca.comment[0]
            if isinstance(first, CommentToken):
                text = first.value
    text = text.strip().splitlines()[0].lstrip("#").strip() if text.strip() else ""
    if not text.startswith(MERGE_COMMENT_PREFIX):
        return None
    rest = text[len(MERGE_COMMENT_PREFIX) :].strip()
    if "/" not in rest:
        return None
    ns, name = rest.split("/", 1)
    return ns, name


def identity(obj: CommentedMap, path: str) -> tuple[str, str, str, str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    from_comment = merge_comment(obj)
    if from_comment is not None:
        ns, name = from_comment
    else:
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    return (_group(obj.get("apiVersion")), str(obj.get("kind") or ""), ns, name, path)


def add_merge_comment(obj: CommentedMap) -> bool:
    """kpt's addmergecomment for one object; True when something changed."""
    meta = obj.get("metadata")
    if not isinstance(meta, CommentedMap):
        return False
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    if not name and not namespace and not meta.get("labels"):
        return False
    changed = False
    existing = merge_comment(obj)
    if existing is None:
        token = CommentToken(
            f"# {MERGE_COMMENT_PREFIX} {namespace}/{name}\n", CommentMark(len("metadata: ")), None
        )
        obj.ca.items["metadata"] = [None, None, token, None]
        existing = (namespace, name)
        changed = True
    ns_for_id = existing[0] or "default"
    value = f"{_group(obj.get('apiVersion'))}|{obj.get('kind') or ''}|{ns_for_id}|{existing[1]}"
    annotations = meta.get("annotations")
    if not isinstance(annotations, CommentedMap):
        if annotations not in (None, MISSING) and not isinstance(annotations, dict):
            return changed
        annotations = CommentedMap()
        meta["annotations"] = annotations
    if annotations.get(UPSTREAM_IDENTIFIER) != value:
        annotations[UPSTREAM_IDENTIFIER] = SingleQuotedScalarString(value)
        changed = True
    return changed


def same_resource(a: CommentedMap, b: CommentedMap) -> bool:
    return bool(_strip_for_compare(a) == _strip_for_compare(b))


_KIO_ANNOTATIONS = (
    "config.kubernetes.io/merge-source",
    "config.kubernetes.io/path",
    "config.kubernetes.io/index",
    "config.k8s.io/path",
    "config.k8s.io/index",
    "internal.config.kubernetes.io/path",
    "internal.config.kubernetes.io/index",
    "internal.config.kubernetes.io/seqindent",
    "internal.config.kubernetes.io/annotations-migration-resource-id",
    "cnrm.cloud.google.com/blueprint",
)


def _strip_for_compare(obj: CommentedMap) -> Any:
    plain = _plain(obj)
    meta = plain.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for a in _KIO_ANNOTATIONS:
                annotations.pop(a, None)
            if not annotations:
                meta.pop("annotations", None)
    return plain
