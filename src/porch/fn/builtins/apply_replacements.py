"""apply-replacements: kustomize replacements on the package (kustomize api v0.19 semantics).

The functionConfig is ``fn.kpt.dev/v1alpha1 ApplyReplacements`` with ``replacements``, each a
``source`` (one object picked by group/version/kind/name/namespace, a ``fieldPath`` defaulting
to ``metadata.name``, optional ``options.delimiter``/``index``) and ``targets`` (``select`` and
``reject`` selectors, also by label/annotation selector, ``fieldPaths`` and ``options``:
``delimiter``/``index`` to replace one part of a delimited value, ``create`` to add missing
fields). Field paths are dotted; an element is a field name, an index, ``*`` (every element),
``[field=regex]`` (every element whose field matches) or ``[=regex]`` (scalar elements).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.fn.builtins._paths import (
    assign,
    go_quote,
    plain,
    restyle,
    restyle_string,
    scalar_text,
)
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm import _ruamel
from porch.krm.yaml import go_scalar

FN_CONFIG_KIND = "ApplyReplacements"
FN_CONFIG_API_VERSION = "fn.kpt.dev/v1alpha1"
DEFAULT_FIELD_PATH = "metadata.name"

# Kinds kyaml's openapi data knows to be cluster scoped (apiVersion, kind).
_CLUSTER_SCOPED = {
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "PersistentVolume"),
    ("v1", "ComponentStatus"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("storage.k8s.io/v1", "CSINode"),
    ("storage.k8s.io/v1", "VolumeAttachment"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("apiregistration.k8s.io/v1", "APIService"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("node.k8s.io/v1", "RuntimeClass"),
    ("policy/v1beta1", "PodSecurityPolicy"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
}


class ReplacementError(Exception):
    pass


# --- ids and selectors --------------------------------------------------------------------


@dataclass(frozen=True)
class ResId:
    group: str = ""
    version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""

    @classmethod
    def decode(cls, node: Any) -> ResId:
        if node is None:
            return cls()
        if not isinstance(node, dict):
            raise ReplacementError("selector must be an object")
        return cls(*(_str(node.get(k)) for k in ("group", "version", "kind", "name", "namespace")))

    @classmethod
    def of(cls, obj: CommentedMap) -> ResId:
        api_version = _str(obj.get("apiVersion"))
        group, _, version = (
            api_version.rpartition("/") if "/" in api_version else ("", "", api_version)
        )
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        return cls(
            group,
            version,
            _str(obj.get("kind")),
            _str(meta.get("name")),
            _str(meta.get("namespace")),
        )

    def __str__(self) -> str:
        gvk = ".".join(
            (self.kind or "[noKind]", self.version or "[noVer]", self.group or "[noGrp]")
        )
        return f"{gvk}/{self.name or '[noName]'}.{self.namespace or '[noNs]'}"

    def is_empty(self) -> bool:
        return self == ResId()

    def _effective_namespace(self) -> str:
        api_version = f"{self.group}/{self.version}" if self.group else self.version
        if (api_version, self.kind) in _CLUSTER_SCOPED:
            return "_non_namespaceable_"
        return self.namespace or "default"

    def is_selected_by(self, selector: ResId) -> bool:
        return (
            (not selector.name or selector.name == self.name)
            and (
                not selector.namespace
                or selector._effective_namespace() == self._effective_namespace()
            )
            and (not selector.group or selector.group == self.group)
            and (not selector.version or selector.version == self.version)
            and (not selector.kind or selector.kind == self.kind)
        )


@dataclass
class Selector:
    res_id: ResId
    annotation_selector: str = ""
    label_selector: str = ""

    @classmethod
    def decode(cls, node: Any) -> Selector:
        if not isinstance(node, dict):
            raise ReplacementError("selector must be an object")
        return cls(
            ResId.decode(node),
            _str(node.get("annotationSelector")),
            _str(node.get("labelSelector")),
        )


@dataclass
class Options:
    delimiter: str = ""
    index: int = 0
    create: bool = False

    @classmethod
    def decode(cls, node: Any) -> Options | None:
        if node is None:
            return None
        if not isinstance(node, dict):
            raise ReplacementError("options must be an object")
        index = node.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            raise ReplacementError(f"options.index must be an integer, got {index!r}")
        return cls(_str(node.get("delimiter")), int(index), bool(node.get("create", False)))

    def __str__(self) -> str:
        if not self.delimiter and not self.create:
            return ""
        return f"{self.delimiter}({self.index}), create={'true' if self.create else 'false'}"


@dataclass
class Source:
    res_id: ResId
    field_path: str = ""
    options: Options | None = None

    def __str__(self) -> str:
        parts = [str(self.res_id)]
        if self.field_path:
            parts.append(self.field_path)
        opts = str(self.options) if self.options else ""
        if opts:
            parts.append(opts)
        return ":".join(parts)


@dataclass
class Target:
    select: Selector | None
    reject: list[Selector] = field(default_factory=list)
    field_paths: list[str] = field(default_factory=list)
    options: Options | None = None


@dataclass
class Replacement:
    source: Source | None
    targets: list[Target] | None


def _str(value: Any) -> str:
    return "" if value is None else scalar_text(value)


def decode_config(fc: CommentedMap | None) -> list[Replacement]:
    if fc is None or not fc:
        raise ReplacementError(f"FunctionConfig is missing. Expect `{FN_CONFIG_KIND}`")
    kind, api_version = _str(fc.get("kind")), _str(fc.get("apiVersion"))
    if kind != FN_CONFIG_KIND or api_version != FN_CONFIG_API_VERSION:
        raise ReplacementError(
            f"received functionConfig of kind {kind} and apiVersion {api_version}, "
            f"only functionConfig of kind {FN_CONFIG_KIND} and apiVersion "
            f"{FN_CONFIG_API_VERSION} is supported"
        )
    raw = fc.get("replacements") or []
    if not isinstance(raw, list):
        raise ReplacementError("unable to convert functionConfig to replacements:\nnot a list")
    out: list[Replacement] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ReplacementError("each replacement must be an object")
        source = None
        if entry.get("source") is not None:
            src = entry["source"]
            if not isinstance(src, dict):
                raise ReplacementError("replacement source must be an object")
            source = Source(
                ResId.decode(src), _str(src.get("fieldPath")), Options.decode(src.get("options"))
            )
        targets = None
        if entry.get("targets") is not None:
            targets = []
            for t in entry["targets"] or []:
                if not isinstance(t, dict):
                    raise ReplacementError("each replacement target must be an object")
                select = Selector.decode(t["select"]) if t.get("select") is not None else None
                targets.append(
                    Target(
                        select,
                        [Selector.decode(r) for r in (t.get("reject") or [])],
                        [_str(p) for p in (t.get("fieldPaths") or [])],
                        Options.decode(t.get("options")),
                    )
                )
        out.append(Replacement(source, targets))
    return out


_SELECTOR_TERM = re.compile(
    r"""^\s*(?P<neg>!)?\s*(?P<key>[^\s=!(),]+)\s*
    (?:(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)
      |\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
    )?\s*$""",
    re.X,
)


def _split_selector(selector: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def matches_selector(selector: str, values: dict[str, str]) -> bool:
    """A Kubernetes label selector (``a=b,c!=d,e in (x,y),!f,g``) against a label/annotation map."""
    if not selector.strip():
        return True
    for term in _split_selector(selector):
        m = _SELECTOR_TERM.match(term)
        if m is None or (m.group("neg") and (m.group("op") or m.group("setop"))):
            raise ReplacementError(f"unable to parse requirement: {go_quote(term.strip())}")
        key = m.group("key")
        if m.group("op"):
            ok = values.get(key) == m.group("value")
            if m.group("op") == "!=":
                ok = values.get(key) != m.group("value")
        elif m.group("setop"):
            options = {v.strip() for v in m.group("values").split(",")}
            ok = key in values and values[key] in options
            if m.group("setop") == "notin":
                ok = not ok
        else:
            ok = (key in values) != bool(m.group("neg"))
        if not ok:
            return False
    return True


def _string_map(obj: CommentedMap, name: str) -> dict[str, str]:
    meta = obj.get("metadata")
    values = meta.get(name) if isinstance(meta, dict) else None
    if not isinstance(values, dict):
        return {}
    return {str(k): _str(v) for k, v in values.items()}


def _matches_anno_and_label(obj: CommentedMap, selector: Selector) -> bool:
    return matches_selector(
        selector.annotation_selector, _string_map(obj, "annotations")
    ) and matches_selector(selector.label_selector, _string_map(obj, "labels"))


_PREVIOUS = "internal.config.kubernetes.io/previous"


def res_ids(obj: CommentedMap) -> list[ResId]:
    """The object's id followed by the ids it had before (kustomize's build annotations)."""
    current = ResId.of(obj)
    annos = _string_map(obj, "annotations")
    if _PREVIOUS + "Names" not in annos:
        return [current]
    names = annos[_PREVIOUS + "Names"].split(",")
    namespaces = annos.get(_PREVIOUS + "Namespaces", "").split(",")
    kinds = annos.get(_PREVIOUS + "Kinds", "").split(",")
    if not len(names) == len(namespaces) == len(kinds):
        raise ReplacementError(
            "number of previous names, number of previous namespaces, "
            "number of previous kinds not equal"
        )
    previous = [
        ResId(current.group, current.version, kind, name, namespace)
        for name, namespace, kind in zip(names, namespaces, kinds, strict=True)
    ]
    return [current, *previous]


# --- field paths ----------------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    """kyaml's SmarterPathSplitter: ``.`` separates, ``\\.`` escapes, ``[a.b=c]`` is one part."""
    parts = path.split(".")
    if len(parts) > 1 and parts[0] == "":
        parts = parts[1:]
    joined: list[str] = [parts[0]]
    for part in parts[1:]:
        if joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + "." + part
        else:
            joined.append(part)
    out: list[str] = []
    i = 0
    while i < len(joined):
        elem = joined[i]
        if elem.startswith("[") and not elem.endswith("]"):
            bracketed = [elem]
            while i < len(joined) - 1:
                i += 1
                bracketed.append(joined[i])
                if joined[i].endswith("]"):
                    break
            text = ".".join(bracketed)
            out.append(text if "=" in text else text.strip("[]"))
        else:
            out.append(elem)
        i += 1
    return out


def _is_index(part: str) -> bool:
    return part.isdigit() or (part.startswith("+") and part[1:].isdigit())


def _is_list_index(part: str) -> bool:
    return part.startswith("[") and part.endswith("]")


def _split_index(part: str) -> tuple[str, str]:
    body = part.removeprefix("[").removesuffix("]")
    if "=" not in body:
        raise ReplacementError(
            "list path element must contain fieldName=fieldValue for element to match"
        )
    name, value = body.split("=", 1)
    return name, value


def lookup(node: Any, parts: list[str]) -> Any:
    """kyaml's Lookup (PathGetter without create): the node at ``parts`` or None."""
    current = node
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if current is None:
            return None
        if _is_index(part) or part == "-":
            if not isinstance(current, CommentedSeq):
                raise ReplacementError(f"wrong node kind: expected SequenceNode for {part!r}")
            idx = len(current) - 1 if part == "-" else int(part)
            current = current[idx] if 0 <= idx < len(current) else None
        elif part == "*":
            raise ReplacementError("wildcard is not supported in PathGetter")
        elif _is_list_index(part):
            name, value = _split_index(part)
            if not isinstance(current, CommentedSeq):
                raise ReplacementError(f"wrong node kind: expected SequenceNode for {part!r}")
            found = None
            for elem in current:
                if not name:
                    if not isinstance(elem, CommentedMap | CommentedSeq) and _str(elem) == value:
                        found = elem
                        break
                elif isinstance(elem, CommentedMap) and name in elem and _str(elem[name]) == value:
                    found = elem
                    break
            current = found
        else:
            if not isinstance(current, CommentedMap):
                return None
            current = current.get(part)
    return current


_SCALAR, _MAP, _SEQ = "scalar", "map", "seq"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return _MAP
    if isinstance(value, list):
        return _SEQ
    return _SCALAR


def _new_node(kind: str) -> Any:
    if kind == _MAP:
        return CommentedMap()
    if kind == _SEQ:
        return CommentedSeq()
    return _Created()


class _Created:
    """A scalar field created by a path match, still without a value (an untagged scalar)."""


def _part_kind(next_part: str, default: str) -> str:
    if _is_list_index(next_part) or _is_index(next_part):
        return _SEQ
    if next_part == "":
        return default
    return _MAP


@dataclass
class _Ref:
    container: Any
    key: Any

    @property
    def value(self) -> Any:
        return self.container[self.key]


def match_paths(container: Any, key: Any, parts: list[str], create: str | None) -> list[_Ref]:
    """kyaml's PathMatcher from ``container[key]``: every field the path reaches."""
    node = container[key]
    if not parts:
        return [_Ref(container, key)]
    part, rest = parts[0], parts[1:]
    if _is_index(part):
        if not isinstance(node, CommentedSeq):
            raise ReplacementError(_wrong_kind("SequenceNode", node))
        idx = int(part)
        if len(node) == idx and create:
            node.append(_new_node(_part_kind(rest[0] if rest else "", create)))
        if len(node) < idx + 1:
            raise ReplacementError(f"index {idx} specified but only {len(node)} elements found")
        return match_paths(node, idx, rest, create)
    if _is_list_index(part):
        if not isinstance(node, CommentedSeq):
            raise ReplacementError(_wrong_kind("SequenceNode", node))
        name, pattern = _split_index(part)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ReplacementError(f"error parsing regexp: {exc}: `{pattern}`") from exc
        found: list[_Ref] = []
        for i, elem in enumerate(node):
            if not name:
                if regex.search(_show(elem)):
                    found.append(_Ref(node, i))
                continue
            if not isinstance(elem, CommentedMap) or elem.get(name) is None:
                continue
            if regex.search(_show(elem[name])):
                found.extend(match_paths(node, i, rest, create))
        if found or not create:
            return found
        # Create the element the selector describes; it is matched like the others (kyaml
        # scans again, which never ends when the new element does not match its own regex).
        if name:
            new = CommentedMap()
            new[name] = plain(pattern)
            node.append(new)
            if regex.search(_show(new[name])):
                return match_paths(node, len(node) - 1, rest, create)
        else:
            node.append(plain(pattern))
            if regex.search(_show(node[-1])):
                return [_Ref(node, len(node) - 1)]
        return []
    if part == "*":
        if not isinstance(node, CommentedSeq):
            raise ReplacementError(_wrong_kind("SequenceNode", node))
        found = []
        for i in range(len(node)):
            found.extend(match_paths(node, i, rest, create))
        return found
    if not isinstance(node, CommentedMap):
        if node is None or isinstance(node, _Created):
            return []
        raise ReplacementError(_wrong_kind("MappingNode", node))
    if part not in node or (node[part] is None and rest and create):
        if not create:
            return []
        node[part] = _new_node(_part_kind(rest[0] if rest else "", create))
    return match_paths(node, part, rest, create)


def _wrong_kind(expected: str, node: Any) -> str:
    got = {_MAP: "MappingNode", _SEQ: "SequenceNode", _SCALAR: "ScalarNode"}[_kind(node)]
    return f"wrong node kind: expected {expected} but got {got}"


def _show(value: Any) -> str:
    """A node as kyaml's String() prints it, trimmed (what ``[field=regex]`` is matched to)."""
    if isinstance(value, CommentedMap | CommentedSeq):
        return _ruamel.dump(value, _ruamel.Indent()).strip()
    return _str(value)


# --- the filter ---------------------------------------------------------------------------


def _select_source(items: list[CommentedMap], source: Source) -> CommentedMap:
    matches: list[CommentedMap] = []
    for obj in items:
        if any(rid.is_selected_by(source.res_id) for rid in res_ids(obj)):
            if matches:
                raise ReplacementError(f"multiple matches for selector {source}")
            matches.append(obj)
    if not matches:
        raise ReplacementError(f"nothing selected by {source}")
    return matches[0]


def _replacement_value(items: list[CommentedMap], source: Source, *, legacy: bool) -> Any:
    obj = _select_source(items, source)
    if not source.field_path:
        source.field_path = DEFAULT_FIELD_PATH
    try:
        if legacy:
            ref = legacy_lookup([obj], 0, split_path(source.field_path), None)
            value = ref.value if ref is not None else None
        else:
            value = lookup(obj, split_path(source.field_path))
    except ReplacementError as exc:
        if legacy:
            raise
        raise ReplacementError(f"error looking up replacement source: {exc}") from exc
    if value is None or (isinstance(value, CommentedMap | CommentedSeq) and not value):
        named = source if legacy else source.res_id
        raise ReplacementError(
            f"fieldPath `{source.field_path}` is missing for replacement source {named}"
        )
    options = source.options
    if options is None or not options.delimiter:
        return value
    if isinstance(value, CommentedMap | CommentedSeq):
        raise ReplacementError("delimiter option can only be used with scalar nodes")
    parts = _str(value).split(options.delimiter)
    if options.index >= len(parts) or options.index < 0:
        raise ReplacementError(
            f"options.index {options.index} is out of bounds for value {_str(value)}"
        )
    return restyle(value, parts[options.index], empty_quoted=False)


def _set_field(ref: _Ref, value: Any, options: Options | None) -> None:
    value = copy.deepcopy(value)
    target = ref.value
    target_is_scalar = not isinstance(target, CommentedMap | CommentedSeq)
    if options is not None and options.delimiter:
        if not target_is_scalar:
            raise ReplacementError("delimiter option can only be used with scalar nodes")
        parts = ("" if isinstance(target, _Created) else _str(target)).split(options.delimiter)
        text = _str(value) if _kind(value) == _SCALAR else ""
        if options.index < 0:
            parts = [text, *parts]
        elif options.index >= len(parts):
            parts.append(text)
        else:
            parts[options.index] = text
        value = restyle(value, options.delimiter.join(parts), empty_quoted=False)
    if target_is_scalar:
        text = _str(value) if _kind(value) == _SCALAR else ""
        assign(ref.container, ref.key, _scalar_like(target, text))
    else:
        ref.container[ref.key] = value


def _scalar_like(target: Any, text: str) -> Any:
    """``text`` in ``target``'s place: the target keeps its style and its tag (a string stays
    a string, quoted if it would read as something else)."""
    if isinstance(target, _Created) or target is None:
        return plain(text) if text else ""
    if isinstance(target, str):
        return restyle_string(target, text)
    return restyle(target, text, empty_quoted=False)


def _copy_to_target(obj: CommentedMap, value: Any, target: Target) -> None:
    create = _kind(value) if target.options is not None and target.options.create else None
    holder = [obj]
    for fp in target.field_paths:
        try:
            refs = match_paths(holder, 0, split_path(fp), create)
        except ReplacementError as exc:
            raise ReplacementError(f"{_retrieval_error(fp, create is not None)}: {exc}") from exc
        if not refs:
            raise ReplacementError(_retrieval_error(fp, create is not None))
        for ref in refs:
            _set_field(ref, value, target.options)


def _retrieval_error(field_path: str, create: bool) -> str:
    if create:
        return f"unable to find or create field {go_quote(field_path)} in replacement target"
    return f"unable to find field {go_quote(field_path)} in replacement target"


def _apply(items: list[CommentedMap], value: Any, targets: list[Target], *, legacy: bool) -> None:
    for target in targets:
        if target.select is None:
            raise ReplacementError("target must specify resources to select")
        if not target.field_paths:
            target.field_paths = [DEFAULT_FIELD_PATH]
        for obj in items:
            if not _matches_anno_and_label(obj, target.select):
                continue
            if any(
                (r.annotation_selector or r.label_selector) and _matches_anno_and_label(obj, r)
                for r in target.reject
            ):
                continue
            ids = res_ids(obj)
            if legacy:
                # kustomize api v0.10 checks the rejections against the selected id only.
                if any(
                    rid.is_selected_by(target.select.res_id)
                    and not any(
                        not r.res_id.is_empty() and rid.is_selected_by(r.res_id)
                        for r in target.reject
                    )
                    for rid in ids
                ):
                    _legacy_copy_to_target(obj, value, target)
                continue
            rejected = any(
                not r.res_id.is_empty() and rid.is_selected_by(r.res_id)
                for r in target.reject
                for rid in ids
            )
            if not rejected and any(rid.is_selected_by(target.select.res_id) for rid in ids):
                _copy_to_target(obj, value, target)


def apply(
    items: list[CommentedMap], replacements: list[Replacement], *, legacy: bool = False
) -> None:
    """Run the replacements in order; ``legacy`` selects kustomize api v0.10 semantics."""
    for r in replacements:
        if r.source is None or r.targets is None:
            raise ReplacementError("replacements must specify a source and at least one target")
        value = _replacement_value(items, r.source, legacy=legacy)
        _apply(items, value, r.targets, legacy=legacy)


# --- kustomize api v0.10 (catalog apply-replacements v0.1.0 and v0.1.1) ------------------------
#
# Each field path names one field (no wildcards, ``[field=value]`` matches exactly, the first
# match wins); a target field that does not exist is skipped silently unless ``create`` is
# set; and the source node replaces the target node whole (its style and type included).

_INT = re.compile(r"[+-]?[0-9]+")


def legacy_lookup(container: Any, key: Any, parts: list[str], create: str | None) -> _Ref | None:
    """kyaml v0.13's Lookup / LookupCreate from ``container[key]``."""
    cleaned = [p.strip() for p in parts if p.strip()]
    ref = _Ref(container, key)
    for i, part in enumerate(cleaned):
        next_part = cleaned[i + 1] if i + 1 < len(cleaned) else ""
        node = ref.value
        if node is None or isinstance(node, _Created):
            return None
        if _INT.fullmatch(part) or part == "-":
            idx = -1 if part == "-" else int(part)
            if part != "-" and idx < 0:
                raise ReplacementError(f"array index {idx} cannot be negative")
            if not isinstance(node, CommentedSeq):
                raise ReplacementError(_wrong_kind("SequenceNode", node))
            if idx == -1:
                idx = len(node) - 1
            if not 0 <= idx < len(node):
                return None
            ref = _Ref(node, idx)
        elif _is_list_index(part):
            name, value = _split_index(part)
            if not isinstance(node, CommentedSeq):
                raise ReplacementError(_wrong_kind("SequenceNode", node))
            found = _legacy_element(node, name, value)
            if found is None:
                if not create:
                    return None
                if name:
                    elem = CommentedMap()
                    elem[name] = plain(value)
                    node.append(elem)
                else:
                    node.append(go_scalar(value))
                found = len(node) - 1
            ref = _Ref(node, found)
        else:
            if not isinstance(node, CommentedMap):
                raise ReplacementError(_wrong_kind("MappingNode", node))
            if part not in node:
                if not create:
                    return None
                kind = _SEQ if _is_list_index(next_part) else (create if not next_part else _MAP)
                node[part] = _new_node(kind)
            ref = _Ref(node, part)
    return ref


def _legacy_element(seq: CommentedSeq, name: str, value: str) -> int | None:
    for i, elem in enumerate(seq):
        if not name:
            if not isinstance(elem, CommentedMap | CommentedSeq) and _str(elem) == value:
                return i
        elif isinstance(elem, CommentedMap) and name in elem:
            field_value = elem[name]
            if not isinstance(field_value, CommentedMap | CommentedSeq):
                if _str(field_value) == value:
                    return i
    return None


def _legacy_copy_to_target(obj: CommentedMap, value: Any, target: Target) -> None:
    create = _kind(value) if target.options is not None and target.options.create else None
    holder = [obj]
    for fp in target.field_paths:
        ref = legacy_lookup(holder, 0, split_path(fp), create)
        if ref is None:
            continue
        new = copy.deepcopy(value)
        options = target.options
        if options is not None and options.delimiter:
            current = ref.value
            if isinstance(current, CommentedMap | CommentedSeq):
                raise ReplacementError("delimiter option can only be used with scalar nodes")
            parts = ("" if isinstance(current, _Created) else _str(current)).split(
                options.delimiter
            )
            text = _str(new) if _kind(new) == _SCALAR else ""
            if options.index < 0:
                parts = [text, *parts]
            elif options.index >= len(parts):
                parts.append(text)
            else:
                parts[options.index] = text
            new = restyle(new, options.delimiter.join(parts), empty_quoted=False)
        assign(ref.container, ref.key, new)


def _run(rl: ResourceList, *, legacy: bool) -> None:
    try:
        apply(rl.items, decode_config(rl.function_config), legacy=legacy)
    except ReplacementError as exc:
        rl.results.append({"message": str(exc), "severity": "error"})
        raise FunctionFailure("failed to evaluate function: error: function failure") from exc


@register("apply-replacements")
def apply_replacements(rl: ResourceList) -> None:
    _run(rl, legacy=False)


@register("apply-replacements:v0.1.0")
def apply_replacements_v0_1_0(rl: ResourceList) -> None:
    _run(rl, legacy=True)


@register("apply-replacements:v0.1.1")
def apply_replacements_v0_1_1(rl: ResourceList) -> None:
    _run(rl, legacy=True)
