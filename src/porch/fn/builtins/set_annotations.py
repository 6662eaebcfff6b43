"""``set-annotations``: the catalog function (kustomize annotations transformer) as a builtin.

Config: a ConfigMap (``data`` = the annotations) or ``SetAnnotations`` / legacy
``SetAnnotationConfig`` (``fn.kpt.dev/v1alpha1``: ``annotations``, ``additionalAnnotationFields``
or the deprecated ``fieldSpecs``). Annotations are set on every object (local-config ones too)
at ``metadata/annotations`` and the pod/job template paths of kustomize's ``commonAnnotations``
field specs, plus the additional field specs. One result per (file, index, field path), as the
catalog reports them; a bad config fails the function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList

FN_KIND = "SetAnnotations"
LEGACY_FN_KIND = "SetAnnotationConfig"


@dataclass(frozen=True)
class FieldSpec:
    """A kustomize field spec: where (``path``, ``/``-separated) in which objects (GVK)."""

    path: str
    group: str = ""
    version: str = ""
    kind: str = ""
    create: bool = False

    def selects(self, obj: Mapping[str, Any]) -> bool:
        if self.kind and self.kind != c.kind(obj):
            return False
        group, version = c.parse_group_version(c.api_version(obj))
        if self.group and self.group != group:
            return False
        return not (self.version and self.version != version)


COMMON_ANNOTATIONS: tuple[FieldSpec, ...] = (
    FieldSpec("metadata/annotations", create=True),
    FieldSpec(
        "spec/template/metadata/annotations",
        version="v1",
        kind="ReplicationController",
        create=True,
    ),
    FieldSpec("spec/template/metadata/annotations", kind="Deployment", create=True),
    FieldSpec("spec/template/metadata/annotations", kind="ReplicaSet", create=True),
    FieldSpec("spec/template/metadata/annotations", kind="DaemonSet", create=True),
    FieldSpec("spec/template/metadata/annotations", kind="StatefulSet", create=True),
    FieldSpec("spec/template/metadata/annotations", group="batch", kind="Job", create=True),
    FieldSpec("spec/jobTemplate/metadata/annotations", group="batch", kind="CronJob", create=True),
    FieldSpec(
        "spec/jobTemplate/spec/template/metadata/annotations",
        group="batch",
        kind="CronJob",
        create=True,
    ),
)
"""kustomize's default ``commonAnnotations`` field specs (api v0.10)."""


class FieldSpecError(Exception):
    pass


def parse_field_specs(value: Any, where: str) -> list[FieldSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise c.ConfigError(f"`{where}` must be a list of field specs")
    specs: list[FieldSpec] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise c.ConfigError(f"`{where}` entries must be objects")
        create = item.get("create", False)
        specs.append(
            FieldSpec(
                path=str(item.get("path") or ""),
                group=str(item.get("group") or ""),
                version=str(item.get("version") or ""),
                kind=str(item.get("kind") or ""),
                create=create is True or str(create).lower() == "true",
            )
        )
    return specs


def split_path(path: str) -> list[str]:
    """kustomize's PathSplitter: ``/`` separates fields except inside ``[...]``."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
        if ch == "/" and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def visit_field_spec(
    obj: CommentedMap,
    spec: FieldSpec,
    setter: Any,
) -> None:
    """Walk ``spec.path`` (through sequences), creating maps when ``spec.create``; call
    ``setter(node, field_path)`` on each found/created final map."""
    if not spec.selects(obj):
        return
    _walk(obj, split_path(spec.path), spec.create, setter, [])


def _walk(node: Any, path: list[str], create: bool, setter: Any, trail: list[str]) -> None:
    if not path:
        setter(node, trail)
        return
    if node is None:
        return
    if isinstance(node, list):
        for element in node:
            _walk(element, path, create, setter, trail)
        return
    if not isinstance(node, CommentedMap):
        raise FieldSpecError("expected sequence or mapping node")
    field = path[0]
    is_seq = field.endswith("[]")
    name = field[:-2] if is_seq else field
    if not name:
        raise FieldSpecError("cannot set or create an empty field name")
    if name not in node:
        if not create or is_seq:
            return
        node[name] = CommentedMap()
    elif node[name] is None and create and not is_seq:
        node[name] = CommentedMap()
    _walk(node[name], path[1:], create, setter, [*trail, name])


@dataclass
class Config:
    annotations: dict[str, str]
    field_specs: list[FieldSpec]


def parse_config(fc: Mapping[str, Any] | None) -> Config:
    fc = fc or {}
    av, kind = c.api_version(fc), c.kind(fc)
    extra: list[FieldSpec] = []
    if (av, kind) == ("v1", "ConfigMap"):
        annotations = c.string_map(fc.get("data"))
    elif av == c.FN_API_VERSION and kind in (FN_KIND, LEGACY_FN_KIND):
        raw = fc.get("annotations")
        if raw is not None and not isinstance(raw, Mapping):
            raise c.ConfigError(
                "failed to unmarshal config: json: cannot unmarshal "
                "into Go struct field plugin.annotations of type map[string]string"
            )
        annotations = c.string_map(raw)
        specs = parse_field_specs(fc.get("fieldSpecs"), "fieldSpecs")
        additional = parse_field_specs(
            fc.get("additionalAnnotationFields"), "additionalAnnotationFields"
        )
        if fc.get("fieldSpecs") is not None and fc.get("additionalAnnotationFields") is not None:
            raise c.ConfigError(
                "`fieldSpecs` has been deprecated, please rename it to `additionalAnnotationFields`"
            )
        extra = additional if fc.get("additionalAnnotationFields") is not None else specs
    else:
        raise c.ConfigError(f"`functionConfig` must be a `ConfigMap` or `{FN_KIND}`")
    if not annotations:
        raise c.ConfigError("input annotation list cannot be empty")
    return Config(annotations, [*extra, *COMMON_ANNOTATIONS])


def _fail(rl: ResourceList, message: str) -> FunctionFailure:
    rl.results[:] = [c.result(message, "error")]
    return FunctionFailure(f"[error]: {message}")


@register("set-annotations")
def set_annotations(rl: ResourceList) -> None:
    try:
        cfg = parse_config(rl.function_config)
    except c.ConfigError as exc:
        raise _fail(rl, f"failed to configure function: {exc}") from None
    applied: dict[tuple[str, int, str], dict[str, str]] = {}
    for obj in rl.items:
        path = c.file_path(obj)
        index_text = c.file_index(obj)
        try:
            index = int(index_text) if index_text else 0
        except ValueError:
            raise _fail(
                rl, f"failed to run function: failed to run transformer: bad index {index_text!r}"
            ) from None

        for key in sorted(cfg.annotations):
            value = cfg.annotations[key]

            def setter(
                node: Any,
                trail: list[str],
                key: str = key,
                value: str = value,
                where: tuple[str, int] = (path, index),
            ) -> None:
                if not isinstance(node, CommentedMap):
                    raise FieldSpecError("wrong node kind: expected MappingNode")
                applied.setdefault((*where, ".".join(trail)), {})[key] = value
                c.set_nested_str(node, value, key)

            for spec in cfg.field_specs:
                try:
                    visit_field_spec(obj, spec, setter)
                except FieldSpecError as exc:
                    raise _fail(
                        rl,
                        "failed to run function: failed to run transformer: "
                        f"considering field '{spec.path}' of object: {exc}",
                    ) from None
    if not applied:
        rl.results.append(c.result("no annotations applied"))
        return
    for (path, index, field_path), values in sorted(
        applied.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], c.go_json(kv[1]))
    ):
        file: dict[str, Any] = {}
        if path:
            file["path"] = path
        if index:
            file["index"] = index
        rl.results.append(
            c.result(
                f"set annotations: {c.go_json(values)}",
                field={"path": field_path},
                file=file,
            )
        )
