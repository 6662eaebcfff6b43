"""The Kptfile as kpt's Go types see it: strict decoding, the pipeline model, re-marshalling.

kpt decodes a Kptfile into ``kptfilev1.KptFile`` with yaml.v3 ``KnownFields(true)`` and, after
a render, writes the root Kptfile back by marshalling that struct (struct field order, maps
sorted by key, ``omitempty``, wide sequences, comments gone). :func:`decode_kptfile` reproduces
the decode (including yaml.v3's ``yaml: unmarshal errors:`` texts with line numbers) into a
plain dict in struct order; :func:`encode_kptfile` produces the marshalled text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.errors import Invalid
from porch.fn.kio import dump_node
from porch.krm import yaml as krm_yaml
from porch.krm.yaml import Indent

KPTFILE_API_VERSION = "kpt.dev/v1"
KPTFILE_KIND = "Kptfile"
DEPRECATED_VERSIONS = ("v1alpha1", "v1alpha2")
BFS_ANNOTATION = "kpt.dev/bfs-rendering"
SAVE_ON_FAILURE_ANNOTATION = "kpt.dev/save-on-render-failure"

WIDE = Indent(mapping=2, sequence=4, offset=2)


class KptfileError(Invalid):
    """The Kptfile cannot be decoded; ``message`` is kpt's text for it."""


class DeprecatedKptfileError(KptfileError):
    def __init__(self, version: str) -> None:
        super().__init__(f'old resource version "{version}" found in Kptfile')
        self.version = version


# A type is ("str"|"int"|"map"|"list", elem) or ("struct", name, fields, always) where fields is
# a tuple of (yaml key, type) and ``always`` the keys written even when empty.
_STR: tuple[Any, ...] = ("str",)
_INT: tuple[Any, ...] = ("int",)
_MAP: tuple[Any, ...] = ("map",)
_STRS: tuple[Any, ...] = ("list", _STR)


def _struct(name: str, fields: tuple[tuple[str, Any], ...], always: tuple[str, ...] = ()) -> Any:
    return ("struct", name, fields, always)


_OBJECT_META = _struct(
    "yaml.ObjectMeta",
    (("name", _STR), ("namespace", _STR), ("labels", _MAP), ("annotations", _MAP)),
)
_GIT = _struct("v1.Git", (("repo", _STR), ("directory", _STR), ("ref", _STR)))
_UPSTREAM = _struct("v1.Upstream", (("type", _STR), ("git", _GIT), ("updateStrategy", _STR)))
_GIT_LOCK = _struct(
    "v1.GitLock", (("repo", _STR), ("directory", _STR), ("ref", _STR), ("commit", _STR))
)
_GENERIC_LOCK = _struct(
    "v1.GenericLock", (("storeID", _STR), ("resourceID", _STR), ("resourceVersion", _STR))
)
_LOCATOR = _struct("v1.Locator", (("type", _STR), ("git", _GIT_LOCK), ("generic", _GENERIC_LOCK)))
_READINESS_GATE = _struct("v1.ReadinessGate", (("conditionType", _STR),), ("conditionType",))
_INFO = _struct(
    "v1.PackageInfo",
    (
        ("site", _STR),
        ("emails", _STRS),
        ("license", _STR),
        ("licenseFile", _STR),
        ("description", _STR),
        ("keywords", _STRS),
        ("man", _STR),
        ("readinessGates", ("list", _READINESS_GATE)),
    ),
)
_SELECTOR = _struct(
    "v1.Selector",
    (
        ("apiVersion", _STR),
        ("kind", _STR),
        ("name", _STR),
        ("namespace", _STR),
        ("labels", _MAP),
        ("annotations", _MAP),
    ),
)
_FUNCTION = _struct(
    "v1.Function",
    (
        ("image", _STR),
        ("exec", _STR),
        ("configPath", _STR),
        ("configMap", _MAP),
        ("name", _STR),
        ("tag", _STR),
        ("selectors", ("list", _SELECTOR)),
        ("exclude", ("list", _SELECTOR)),
    ),
)
_PIPELINE = _struct(
    "v1.Pipeline", (("mutators", ("list", _FUNCTION)), ("validators", ("list", _FUNCTION)))
)
_INVENTORY = _struct(
    "v1.Inventory",
    (
        ("namespace", _STR),
        ("name", _STR),
        ("inventoryID", _STR),
        ("labels", _MAP),
        ("annotations", _MAP),
    ),
)
_CONDITION = _struct(
    "v1.Condition",
    (("type", _STR), ("status", _STR), ("reason", _STR), ("message", _STR)),
    ("type", "status"),
)
_RESOURCE_REF = _struct(
    "yaml.ResourceIdentifier",
    (("apiVersion", _STR), ("kind", _STR), ("name", _STR), ("namespace", _STR)),
)
_FIELD = _struct("v1.Field", (("path", _STR), ("currentValue", _STR), ("proposedValue", _STR)))
_FILE = _struct("framework.File", (("path", _STR), ("index", _INT)))
RESULT_ITEM = _struct(
    "v1.ResultItem",
    (
        ("message", _STR),
        ("severity", _STR),
        ("resourceRef", _RESOURCE_REF),
        ("field", _FIELD),
        ("file", _FILE),
        ("tags", _MAP),
    ),
)
_STEP = _struct(
    "v1.PipelineStepResult",
    (
        ("name", _STR),
        ("image", _STR),
        ("exec", _STR),
        ("executionError", _STR),
        ("stderr", _STR),
        ("exitCode", _INT),
        ("results", ("list", RESULT_ITEM)),
        ("errorResults", ("list", RESULT_ITEM)),
    ),
    ("exitCode",),
)
_RENDER_STATUS = _struct(
    "v1.RenderStatus",
    (
        ("mutationSteps", ("list", _STEP)),
        ("validationSteps", ("list", _STEP)),
        ("errorSummary", _STR),
    ),
)
_STATUS = _struct(
    "v1.Status", (("conditions", ("list", _CONDITION)), ("renderStatus", _RENDER_STATUS))
)
KPTFILE = _struct(
    "v1.KptFile",
    (
        ("apiVersion", _STR),
        ("kind", _STR),
        ("metadata", _OBJECT_META),
        ("upstream", _UPSTREAM),
        ("upstreamLock", _LOCATOR),
        ("info", _INFO),
        ("pipeline", _PIPELINE),
        ("inventory", _INVENTORY),
        ("status", _STATUS),
    ),
)
_VALUE_STRUCTS = {"yaml.ObjectMeta"}
"""Embedded by value (not pointer) in Go: omitted by ``omitempty`` when all fields are zero."""


def _yaml_kind(node: Any) -> str:
    if isinstance(node, Mapping):
        return "!!map"
    if isinstance(node, list):
        return "!!seq"
    if isinstance(node, bool):
        return "!!bool"
    if isinstance(node, int):
        return "!!int"
    if isinstance(node, float):
        return "!!float"
    return "!!str"


def _go_type(typ: Any) -> str:
    kind = typ[0]
    if kind == "str":
        return "string"
    if kind == "int":
        return "int"
    if kind == "map":
        return "map[string]string"
    if kind == "list":
        return "[]" + _go_type(typ[1])
    return str(typ[1])


class _Decoder:
    def __init__(self, line_offset: int) -> None:
        self.errors: list[str] = []
        self.offset = line_offset

    def _line(self, parent: Any, key: Any, *, value: bool) -> int:
        lc: Any = getattr(parent, "lc", None)
        if lc is None:
            return self.offset + 1
        try:
            if isinstance(parent, list):
                line, _ = lc.item(key)
            elif value:
                line, _ = lc.value(key)
            else:
                line, _ = lc.key(key)
        except Exception:
            return self.offset + 1
        return int(line) + 1 + self.offset

    def _bad(self, node: Any, typ: Any, line: int) -> None:
        kind = _yaml_kind(node)
        if kind in ("!!map", "!!seq"):
            self.errors.append(f"line {line}: cannot unmarshal {kind} into {_go_type(typ)}")
        else:
            text = krm_yaml.to_plain_value(node)
            if isinstance(text, bool):
                text = "true" if text else "false"
            self.errors.append(
                f"line {line}: cannot unmarshal {kind} `{text}` into {_go_type(typ)}"
            )

    def decode(self, node: Any, typ: Any, line: int) -> Any:
        if node is None:
            return None
        kind = typ[0]
        if kind == "str":
            if isinstance(node, Mapping | list):
                self._bad(node, typ, line)
                return None
            value = krm_yaml.to_plain_value(node)
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, float) and value.is_integer() and "." not in str(node):
                return str(node)
            return str(node) if not isinstance(value, str) else value
        if kind == "int":
            if isinstance(node, bool) or not isinstance(node, int):
                self._bad(node, typ, line)
                return None
            return int(node)
        if kind == "map":
            if not isinstance(node, Mapping):
                self._bad(node, typ, line)
                return None
            out: dict[str, str] = {}
            for k, v in node.items():
                sv = self.decode(v, _STR, self._line(node, k, value=True))
                out[str(k)] = "" if sv is None else sv
            return out
        if kind == "list":
            if not isinstance(node, list):
                self._bad(node, typ, line)
                return None
            items = []
            for i, v in enumerate(node):
                decoded = self.decode(v, typ[1], self._line(node, i, value=True))
                items.append(decoded if decoded is not None else _zero(typ[1]))
            return items
        # struct
        if not isinstance(node, Mapping):
            self._bad(node, typ, line)
            return None
        _, name, fields, _always = typ
        known = dict(fields)
        result: dict[str, Any] = {}
        for k, v in node.items():
            key = str(k)
            if key not in known:
                self.errors.append(
                    f"line {self._line(node, k, value=False)}: field {key} not found in type {name}"
                )
                continue
            decoded = self.decode(v, known[key], self._line(node, k, value=True))
            if decoded is not None:
                result[key] = decoded
        return result


def _zero(typ: Any) -> Any:
    kind = typ[0]
    if kind == "str":
        return ""
    if kind == "int":
        return 0
    if kind == "struct":
        return {}
    return None


def decode_kptfile(text: str, *, filename: str = "Kptfile") -> dict[str, Any]:
    """Decode like ``kptfileutil.DecodeKptfile``: version check, then strict typed decode."""
    try:
        docs = krm_yaml.parse_documents(text, filename=filename)
    except Invalid as exc:
        raise KptfileError(str(exc)) from exc
    offset = 0
    root: Any = None
    for entry in docs.entries:
        offset += entry.prefix.count("\n")
        if entry.node is not None:
            root = entry.node
            break
        offset += (entry.source or "").count("\n")
    if not isinstance(root, CommentedMap):
        raise KptfileError("Kptfile is empty or not a YAML mapping")
    api_version = root.get("apiVersion")
    kind = root.get("kind")
    api_version = "" if api_version is None else str(api_version)
    kind = "" if kind is None else str(kind)
    group, _, version = api_version.rpartition("/")
    if group == "kpt.dev" and kind == KPTFILE_KIND and version != "v1":
        if version in DEPRECATED_VERSIONS:
            raise DeprecatedKptfileError(version)
    if (group, version, kind) != ("kpt.dev", "v1", KPTFILE_KIND):
        gvk = f"{group}/{version}, Kind={kind}" if group else f"/{version}, Kind={kind}"
        raise KptfileError(f'unknown resource type "{gvk}" found in Kptfile')
    decoder = _Decoder(offset)
    decoded = decoder.decode(root, KPTFILE, offset + 1)
    if decoder.errors:
        raise KptfileError("yaml: unmarshal errors:\n  " + "\n  ".join(decoder.errors))
    return dict(decoded or {})


def _encode(value: Any, typ: Any) -> Any:
    kind = typ[0]
    if kind == "map":
        return {k: value[k] for k in sorted(value)}
    if kind == "list":
        return [_encode(v, typ[1]) for v in value]
    if kind == "struct":
        _, _name, fields, always = typ
        out: dict[str, Any] = {}
        for key, ftyp in fields:
            if key not in value or value[key] is None:
                if key in always:
                    out[key] = _zero(ftyp)
                continue
            v = value[key]
            if key not in always and _empty(v, ftyp):
                continue
            out[key] = _encode(v, ftyp)
        return out
    return value


def _empty(value: Any, typ: Any) -> bool:
    kind = typ[0]
    if kind == "str":
        return bool(value == "")
    if kind == "int":
        return bool(value == 0)
    if kind in ("map", "list"):
        return not value
    if kind == "struct" and typ[1] in _VALUE_STRUCTS:
        return all(_empty(value.get(k), t) if k in value else True for k, t in typ[2])
    return False  # a pointer to a struct is written even when empty


def normalize(value: Mapping[str, Any], typ: Any = KPTFILE) -> dict[str, Any]:
    """``value`` in struct order with Go's omitempty applied (plain data)."""
    out = _encode(value, typ)
    assert isinstance(out, dict)
    return out


def encode_kptfile(kptfile: Mapping[str, Any]) -> str:
    """The Kptfile text kpt writes: struct field order, wide sequences, no comments."""
    return dump_node(krm_yaml.from_plain(normalize(kptfile)), WIDE)


def normalize_result_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A function result decoded into kpt's ``ResultItem`` (unknown fields dropped)."""
    decoder = _Decoder(0)
    tree = krm_yaml.from_plain(dict(item))
    decoded = decoder.decode(_lenient(tree, RESULT_ITEM), RESULT_ITEM, 1) or {}
    _migrate_legacy_result(item, decoded)
    return normalize(decoded, RESULT_ITEM)


def _migrate_legacy_result(item: Mapping[str, Any], decoded: dict[str, Any]) -> None:
    """kpt's migrateLegacyResult: ``resourceRef.metadata.{name,namespace}`` and
    ``field.suggestedValue`` from the v1alpha1 result shape."""
    ref = item.get("resourceRef")
    meta = ref.get("metadata") if isinstance(ref, Mapping) else None
    if isinstance(meta, Mapping):
        target = decoded.setdefault("resourceRef", {})
        if meta.get("name") is not None:
            target["name"] = str(meta["name"]).strip()
        namespace = str(meta.get("namespace") or "").strip()
        if namespace and namespace != "''":
            target["namespace"] = namespace
    fld = item.get("field")
    if isinstance(fld, Mapping) and "suggestedValue" in fld:
        value = fld["suggestedValue"]
        text = (
            krm_yaml.dumps(krm_yaml.from_plain(value))
            if isinstance(value, Mapping | list)
            else ("null" if value is None else str(value))
        )
        decoded.setdefault("field", {})["proposedValue"] = text.strip()


def _lenient(node: Any, typ: Any) -> Any:
    """Drop fields a struct does not know (kyaml's non-strict Unmarshal ignores them)."""
    if typ[0] == "struct" and isinstance(node, Mapping):
        known = dict(typ[2])
        out = CommentedMap()
        for k, v in node.items():
            if k in known:
                if typ[1] == "v1.Field" and isinstance(v, Mapping | list):
                    out[k] = krm_yaml.dumps(v).strip()
                else:
                    out[k] = _lenient(v, known[k])
        return out
    if typ[0] == "list" and isinstance(node, list):
        return CommentedSeq([_lenient(v, typ[1]) for v in node])
    return node


# --------------------------------------------------------------------------------------------
# the pipeline model


@dataclass(frozen=True)
class Selector:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Selector:
        return cls(
            api_version=data.get("apiVersion", ""),
            kind=data.get("kind", ""),
            name=data.get("name", ""),
            namespace=data.get("namespace", ""),
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
        )

    def is_empty(self) -> bool:
        return not (
            self.api_version
            or self.kind
            or self.name
            or self.namespace
            or self.labels
            or self.annotations
        )


@dataclass(frozen=True)
class PipelineFunction:
    image: str = ""
    exec: str = ""
    config_path: str = ""
    config_map: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    tag: str = ""
    selectors: tuple[Selector, ...] = ()
    exclusions: tuple[Selector, ...] = ()

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> PipelineFunction:
        return cls(
            image=data.get("image", ""),
            exec=data.get("exec", ""),
            config_path=data.get("configPath", ""),
            config_map=dict(data.get("configMap") or {}),
            name=data.get("name", ""),
            tag=data.get("tag", ""),
            selectors=tuple(Selector.of(s) for s in data.get("selectors") or ()),
            exclusions=tuple(Selector.of(s) for s in data.get("exclude") or ()),
        )


@dataclass(frozen=True)
class Pipeline:
    mutators: tuple[PipelineFunction, ...] = ()
    validators: tuple[PipelineFunction, ...] = ()

    @classmethod
    def of(cls, kptfile: Mapping[str, Any]) -> Pipeline:
        data = kptfile.get("pipeline") or {}
        return cls(
            mutators=tuple(PipelineFunction.of(f) for f in data.get("mutators") or ()),
            validators=tuple(PipelineFunction.of(f) for f in data.get("validators") or ()),
        )

    def is_empty(self) -> bool:
        return not self.mutators and not self.validators


def annotation_true(kptfile: Mapping[str, Any], key: str) -> bool:
    value = ((kptfile.get("metadata") or {}).get("annotations") or {}).get(key)
    return isinstance(value, str) and value.lower() == "true"
