"""``ensure-name-substring``: the catalog function (a kustomize prefix/suffix transformer) as a
builtin.

Config: a ConfigMap with exactly one entry, ``prepend`` or ``append`` → the substring, or
``EnsureNameSubstring`` (``fn.kpt.dev/v1alpha1``: ``substring``, ``editMode`` (default
prepend), ``additionalNameFields`` or the deprecated ``fieldSpecs``).

Every object except CRDs, APIServices, Namespaces and Kptfiles whose ``metadata.name`` (or an
additional field) lacks the substring gets it prepended/appended; ``depends-on`` annotations
naming a renamed input object follow, and references to renamed objects (kustomize's
name-reference table: config maps, secrets, services, service accounts, roles, claims, storage
and priority classes …) are rewritten. As kustomize does on its way out, the file path/index
annotations are dropped from every object, so the orchestrator lays the objects out anew.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.builtins.set_annotations import FieldSpec, parse_field_specs, split_path
from porch.fn.builtins.set_namespace import is_namespace_scoped
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import dumps, go_scalar

FN_KIND = "EnsureNameSubstring"
PREPEND = "prepend"
APPEND = "append"
NAME_FIELD = FieldSpec("metadata/name")

_NAMESPACED_DEPENDS_ON = re.compile(r"\A([-.\w]*)/namespaces/([-.\w]*)/([-.\w]*)/([-.\w]*)\Z", re.A)
_CLUSTER_DEPENDS_ON = re.compile(r"\A([-.\w]*)/([-.\w]*)/([-.\w]*)\Z", re.A)

_SKIPPED = (
    FieldSpec("", kind="CustomResourceDefinition"),
    FieldSpec("", group="apiregistration.k8s.io", kind="APIService"),
    FieldSpec("", kind="Namespace"),
    FieldSpec("", group="kpt.dev", kind="Kptfile"),
)

BUILD_ANNOTATIONS = (
    c.PATH_ANNOTATION,
    c.INDEX_ANNOTATION,
    "internal.config.kubernetes.io/seqindent",
    c.LEGACY_PATH_ANNOTATION,
    c.LEGACY_INDEX_ANNOTATION,
)


@dataclass
class Config:
    substring: str
    mode: str
    fields: list[FieldSpec]


def _load_error(message: str) -> c.ConfigError:
    return c.ConfigError(f"failed to load the `functionConfig`: {message}")


def parse_config(fc: Mapping[str, Any] | None) -> Config:
    fc = fc or {}
    av, kind = c.api_version(fc), c.kind(fc)
    if not kind:
        raise _load_error("missing Resource metadata")
    if not c.name(fc):
        raise _load_error("missing metadata.name")
    mode = ""
    substring = ""
    specs: list[FieldSpec] | None = None
    additional: list[FieldSpec] | None = None
    if (av, kind) == ("v1", "ConfigMap"):
        data = c.string_map(fc.get("data"))
        if len(data) != 1:
            raise _load_error(f"only 1 entry is allowed in the ConfigMap, but got: {len(data)}")
        ((key, value),) = data.items()
        if key not in (PREPEND, APPEND):
            raise _load_error(f"unknown editMode: {key}, only {PREPEND} and {APPEND} are allowed")
        mode, substring = key, value
    elif (av, kind) == (c.FN_API_VERSION, FN_KIND):
        substring = c.scalar_text(fc.get("substring")) or ""
        mode = c.scalar_text(fc.get("editMode")) or ""
        try:
            if fc.get("fieldSpecs") is not None:
                specs = parse_field_specs(fc.get("fieldSpecs"), "fieldSpecs")
            if fc.get("additionalNameFields") is not None:
                additional = parse_field_specs(
                    fc.get("additionalNameFields"), "additionalNameFields"
                )
        except c.ConfigError as exc:
            raise _load_error(str(exc)) from None
    else:
        group, version = c.parse_group_version(av)
        raise _load_error(
            "function config must be either /v1, Kind=ConfigMap or "
            f"{c.FN_API_VERSION}, Kind={FN_KIND}, but we got: {group}/{version}, Kind={kind}"
        )
    mode = mode or PREPEND
    if additional is None and specs is not None:
        additional, specs = specs, None
    if not substring:
        raise _load_error("substring must not be empty")
    if additional is not None and specs is not None:
        raise _load_error(
            "`fieldSpecs` has been deprecated, please rename it to `additionalNameFields`"
        )
    return Config(substring, mode, [NAME_FIELD, *(additional or [])])


def _selected(obj: Mapping[str, Any], spec: FieldSpec) -> bool:
    return spec.selects(obj)


def _edit(value: str, cfg: Config) -> str:
    if cfg.mode == PREPEND:
        return cfg.substring + value
    if cfg.mode == APPEND:
        return value + cfg.substring
    return value


@register("ensure-name-substring")
def ensure_name_substring(rl: ResourceList) -> None:
    try:
        cfg = parse_config(rl.function_config)
    except c.ConfigError as exc:
        rl.results.append(c.result(str(exc), "error"))
        raise FunctionFailure(str(exc)) from None
    objects = [o for o in rl.items if len(o)]
    original = {id(o): (_gvk(o), c.name(o), _effective_ns(o)) for o in objects}
    lookup = {(g, k, n) for (g, _v, k), n, _ns in original.values()}
    for obj in objects:
        if any(_selected(obj, skip) for skip in _SKIPPED):
            continue
        for spec in cfg.fields:
            if not spec.selects(obj):
                continue
            if _contains(obj, spec, cfg.substring):
                continue
            _apply(obj, split_path(spec.path), cfg)
            _update_depends_on(obj, lookup, cfg)
    _fix_references(objects, original)
    for obj in objects:
        _remove_build_annotations(obj)


def _gvk(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    group, version = c.parse_group_version(c.api_version(obj))
    return group, version, c.kind(obj)


def _effective_ns(obj: Mapping[str, Any]) -> str:
    """The namespace an object lives in; "" for cluster-scoped objects."""
    if not is_namespace_scoped(obj):
        return ""
    return c.namespace(obj) or "default"


def _contains(obj: CommentedMap, spec: FieldSpec, substring: str) -> bool:
    if spec.path == NAME_FIELD.path:
        return substring in c.name(obj)
    value = c.nested(obj, *split_path(spec.path))
    if value is None:
        return False
    text = c.scalar_text(value)
    return substring in (text if text is not None else dumps(value))


def _apply(node: Any, path: list[str], cfg: Config) -> None:
    """kustomize's prefix/suffix filter: edit every scalar found at ``path`` (no creation)."""
    if not path or node is None:
        return
    if isinstance(node, list):
        for element in node:
            _apply(element, path, cfg)
        return
    if not isinstance(node, CommentedMap):
        return
    field = path[0].removesuffix("[]")
    if field not in node:
        return
    if len(path) == 1:
        value = node[field]
        if isinstance(value, list):
            for i, item in enumerate(value):
                if (text := c.scalar_text(item)) is not None:
                    value[i] = go_scalar(_edit(text, cfg))
        elif (text := c.scalar_text(value)) is not None:
            node[field] = go_scalar(_edit(text, cfg))
        return
    _apply(node[field], path[1:], cfg)


def _update_depends_on(obj: CommentedMap, lookup: set[tuple[str, str, str]], cfg: Config) -> None:
    annos = c.nested(obj, "metadata", "annotations")
    if not isinstance(annos, CommentedMap) or c.DEPENDS_ON_ANNOTATION not in annos:
        return
    value = c.scalar_text(annos[c.DEPENDS_ON_ANNOTATION]) or ""
    if _NAMESPACED_DEPENDS_ON.match(value):
        group_i, kind_i, name_i = 0, 3, 4
    elif _CLUSTER_DEPENDS_ON.match(value):
        group_i, kind_i, name_i = 0, 1, 2
    else:
        return
    segments = value.split("/")
    if (segments[group_i], segments[kind_i], segments[name_i]) not in lookup:
        return
    segments[name_i] = _edit(segments[name_i], cfg)
    annos[c.DEPENDS_ON_ANNOTATION] = go_scalar("/".join(segments))


def _remove_build_annotations(obj: CommentedMap) -> None:
    meta = obj.get("metadata")
    annos = meta.get("annotations") if isinstance(meta, CommentedMap) else None
    if not isinstance(annos, CommentedMap) or not annos:
        return
    assert isinstance(meta, CommentedMap)
    kept = {k: v for k, v in annos.items() if k not in BUILD_ANNOTATIONS}
    if not kept:
        del meta["annotations"]
        return
    # kustomize writes the map back with sorted keys
    if list(kept) != sorted(kept) or len(kept) != len(annos):
        rebuilt = CommentedMap()
        for k in sorted(kept):
            rebuilt[k] = kept[k]
        meta["annotations"] = rebuilt


# --- name references ------------------------------------------------------------------------

_POD_SPEC_REFS: dict[str, tuple[str, ...]] = {
    "ConfigMap": (
        "volumes/configMap/name",
        "containers/env/valueFrom/configMapKeyRef/name",
        "initContainers/env/valueFrom/configMapKeyRef/name",
        "containers/envFrom/configMapRef/name",
        "initContainers/envFrom/configMapRef/name",
        "volumes/projected/sources/configMap/name",
    ),
    "Secret": (
        "volumes/secret/secretName",
        "containers/env/valueFrom/secretKeyRef/name",
        "initContainers/env/valueFrom/secretKeyRef/name",
        "containers/envFrom/secretRef/name",
        "initContainers/envFrom/secretRef/name",
        "imagePullSecrets/name",
        "volumes/projected/sources/secret/name",
    ),
    "ServiceAccount": ("serviceAccountName",),
    "PersistentVolumeClaim": ("volumes/persistentVolumeClaim/claimName",),
    "PriorityClass": ("priorityClassName",),
}
_WORKLOADS = {
    "Deployment": "spec/template/spec",
    "ReplicaSet": "spec/template/spec",
    "DaemonSet": "spec/template/spec",
    "StatefulSet": "spec/template/spec",
    "Job": "spec/template/spec",
    "ReplicationController": "spec/template/spec",
    "CronJob": "spec/jobTemplate/spec/template/spec",
    "Pod": "spec",
}


@dataclass(frozen=True)
class _Ref:
    target: FieldSpec  # the referred kind (group/version/kind); path unused
    referrer: FieldSpec  # where the reference sits


def _reference_table() -> list[_Ref]:
    refs: list[_Ref] = []

    def add(target: FieldSpec, path: str, kind: str, group: str = "", version: str = "") -> None:
        refs.append(_Ref(target, FieldSpec(path, group=group, version=version, kind=kind)))

    scale_target = "spec/scaleTargetRef/name"
    for kind in ("Deployment", "ReplicationController", "ReplicaSet", "StatefulSet"):
        add(FieldSpec("", kind=kind), scale_target, "HorizontalPodAutoscaler")
    targets = {
        "ConfigMap": FieldSpec("", version="v1", kind="ConfigMap"),
        "Secret": FieldSpec("", version="v1", kind="Secret"),
        "ServiceAccount": FieldSpec("", version="v1", kind="ServiceAccount"),
        "PersistentVolumeClaim": FieldSpec("", version="v1", kind="PersistentVolumeClaim"),
        "PriorityClass": FieldSpec(
            "", group="scheduling.k8s.io", version="v1", kind="PriorityClass"
        ),
    }
    for target_kind, paths in _POD_SPEC_REFS.items():
        for workload, prefix in _WORKLOADS.items():
            if target_kind in ("ConfigMap", "Secret") and workload == "ReplicationController":
                continue
            if target_kind == "ServiceAccount" and workload in ("ReplicaSet",):
                continue
            for path in paths:
                version = (
                    "v1" if workload == "Pod" and target_kind in ("ConfigMap", "Secret") else ""
                )
                add(targets[target_kind], f"{prefix}/{path}", workload, version=version)
    config_map, secret = targets["ConfigMap"], targets["Secret"]
    add(config_map, "template/spec/volumes/configMap/name", "PodTemplate")
    add(config_map, "spec/configSource/configMap", "Node")
    for kind in ("Role", "ClusterRole"):
        add(config_map, "rules/resourceNames", kind)
        add(secret, "rules/resourceNames", kind)
    add(secret, "spec/tls/secretName", "Ingress")
    add(secret, "imagePullSecrets/name", "ServiceAccount")
    for param in ("secretName", "adminSecretName", "userSecretName", "secretRef"):
        add(secret, f"parameters/{param}", "StorageClass")
    add(secret, "spec/azureFile/secretName", "PersistentVolume")
    service = FieldSpec("", version="v1", kind="Service")
    add(service, "spec/serviceName", "StatefulSet", group="apps")
    add(service, "spec/rules/http/paths/backend/serviceName", "Ingress")
    add(service, "spec/backend/serviceName", "Ingress")
    add(service, "spec/rules/http/paths/backend/service/name", "Ingress")
    add(service, "spec/defaultBackend/service/name", "Ingress")
    add(service, "spec/service/name", "APIService", group="apiregistration.k8s.io")
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        add(service, "webhooks/clientConfig/service", kind, group="admissionregistration.k8s.io")
    rbac = "rbac.authorization.k8s.io"
    add(FieldSpec("", group=rbac, kind="Role"), "roleRef/name", "RoleBinding", group=rbac)
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        add(FieldSpec("", group=rbac, kind="ClusterRole"), "roleRef/name", kind, group=rbac)
        add(targets["ServiceAccount"], "subjects", kind, group=rbac)
    pv = FieldSpec("", version="v1", kind="PersistentVolume")
    add(pv, "spec/volumeName", "PersistentVolumeClaim")
    add(pv, "rules/resourceNames", "ClusterRole")
    storage = FieldSpec("", group="storage.k8s.io", version="v1", kind="StorageClass")
    add(storage, "spec/storageClassName", "PersistentVolume")
    add(storage, "spec/storageClassName", "PersistentVolumeClaim")
    add(storage, "spec/volumeClaimTemplates/spec/storageClassName", "StatefulSet")
    add(
        FieldSpec("", group="networking.k8s.io", version="v1", kind="IngressClass"),
        "spec/ingressClassName",
        "Ingress",
    )
    return refs


_REFERENCES = _reference_table()


def _fix_references(
    objects: list[CommentedMap], original: dict[int, tuple[tuple[str, str, str], str, str]]
) -> None:
    renamed = [o for o in objects if c.name(o) != original[id(o)][1]]
    if not renamed:
        return
    for ref in _REFERENCES:
        candidates = [o for o in renamed if ref.target.selects(o)]
        if not candidates:
            continue
        for referrer in objects:
            if not ref.referrer.selects(referrer):
                continue
            ns = _effective_ns(referrer)
            in_scope = [
                o
                for o in candidates
                if not ns or not original[id(o)][2] or original[id(o)][2] == ns
            ]
            _rewrite(referrer, split_path(ref.referrer.path), ref, in_scope, original, ns)


def _rewrite(
    node: Any,
    path: list[str],
    ref: _Ref,
    candidates: list[CommentedMap],
    original: dict[int, tuple[tuple[str, str, str], str, str]],
    ns: str,
) -> None:
    if node is None or not candidates:
        return
    if isinstance(node, list):
        for element in node:
            _rewrite(element, path, ref, candidates, original, ns)
        return
    if not isinstance(node, CommentedMap):
        return
    field = path[0]
    if field not in node:
        return
    if len(path) > 1:
        _rewrite(node[field], path[1:], ref, candidates, original, ns)
        return
    if ref.referrer.path == "roleRef/name" and node.get("kind") != ref.target.kind:
        return
    value = node[field]
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, CommentedMap):
                _rewrite_map(item, ref, candidates, original, ns)
            elif (new := _match(c.scalar_text(item), candidates, original)) is not None:
                value[i] = go_scalar(new)
    elif isinstance(value, CommentedMap):
        _rewrite_map(value, ref, candidates, original, ns)
    elif (new := _match(c.scalar_text(value), candidates, original)) is not None:
        node[field] = go_scalar(new)


def _rewrite_map(
    entry: CommentedMap,
    ref: _Ref,
    candidates: list[CommentedMap],
    original: dict[int, tuple[tuple[str, str, str], str, str]],
    ns: str,
) -> None:
    """A ``{name, namespace}`` reference (subjects, webhook services)."""
    if "kind" in entry and entry.get("kind") != ref.target.kind:
        return
    entry_ns = c.scalar_text(entry.get("namespace")) or ns or "default"
    scoped = [o for o in candidates if not original[id(o)][2] or original[id(o)][2] == entry_ns]
    new = _match(c.scalar_text(entry.get("name")), scoped, original)
    if new is not None:
        entry["name"] = go_scalar(new)


def _match(
    value: str | None,
    candidates: list[CommentedMap],
    original: dict[int, tuple[tuple[str, str, str], str, str]],
) -> str | None:
    if value is None:
        return None
    hits = [o for o in candidates if original[id(o)][1] == value]
    names = {c.name(o) for o in hits}
    return names.pop() if len(names) == 1 else None
