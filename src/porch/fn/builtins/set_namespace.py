"""``set-namespace``: the catalog function (origin-aware version) as a builtin.

Config: a ConfigMap (``data.namespace``, optional ``data.namespaceMatcher``; the package-context
ConfigMap ``kptfile.kpt.dev`` gives ``data.name`` when ``data.namespace`` is empty) or a
``SetNamespace`` (``fn.kpt.dev/v1alpha1``; ``namespace``, ``namespaceMatcher``). A bad config is
an error result but, as in the catalog, not a non-zero exit.

Namespace-scoped objects get ``metadata.namespace``; Namespace objects are renamed; a CRD's
conversion webhook service, an APIService's service and (Cluster)RoleBinding subjects that are
visited as cluster-scoped objects get their namespace; ``config.kubernetes.io/depends-on``
annotations naming a changed object follow. Local-config objects are left alone. With no matcher
every namespace is replaced, which needs a single upstream origin namespace
(``internal.kpt.dev/upstream-identifier``); with a matcher only values equal to it (or whose
origin is it) change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList

FN_KIND = "SetNamespace"
UNKNOWN_NAMESPACE = "~C"
DEFAULT_NAMESPACE = "default"

_NAMESPACED_DEPENDS_ON = re.compile(r"\A([-.\w]*)/namespaces/([-.\w]*)/([-.\w]*)/([-.\w]*)\Z")
_UPSTREAM_ID = re.compile(
    r"(?P<group>[a-z0-9-.]*)\|(?P<kind>[A-Z][a-zA-Z0-9]*)\|(?P<namespace>[a-z0-9-]{1,63}|~C)"
    r"\|(?P<name>[a-z0-9-]{1,63})"
)

# kyaml's precomputed scope table (apiVersion, kind) -> namespaced?
_CLUSTER_SCOPED = {
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io/v1", "APIService"),
    ("apiregistration.k8s.io/v1beta1", "APIService"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    ("certificates.k8s.io/v1beta1", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1beta1", "IngressClass"),
    ("node.k8s.io/v1", "RuntimeClass"),
    ("node.k8s.io/v1beta1", "RuntimeClass"),
    ("policy/v1beta1", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("scheduling.k8s.io/v1beta1", "PriorityClass"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("storage.k8s.io/v1", "CSINode"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("storage.k8s.io/v1", "VolumeAttachment"),
    ("storage.k8s.io/v1beta1", "CSIDriver"),
    ("storage.k8s.io/v1beta1", "CSINode"),
    ("storage.k8s.io/v1beta1", "StorageClass"),
    ("storage.k8s.io/v1beta1", "VolumeAttachment"),
    ("v1", "ComponentStatus"),
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "NodeProxyOptions"),
    ("v1", "PersistentVolume"),
}
_NAMESPACE_SCOPED = {
    ("apps/v1", "ControllerRevision"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("autoscaling/v1", "HorizontalPodAutoscaler"),
    ("autoscaling/v1", "Scale"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("batch/v1beta1", "CronJob"),
    ("coordination.k8s.io/v1", "Lease"),
    ("coordination.k8s.io/v1beta1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"),
    ("events.k8s.io/v1", "Event"),
    ("events.k8s.io/v1beta1", "Event"),
    ("extensions/v1beta1", "Ingress"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1beta1", "Ingress"),
    ("policy/v1", "PodDisruptionBudget"),
    ("policy/v1beta1", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1beta1", "Role"),
    ("rbac.authorization.k8s.io/v1beta1", "RoleBinding"),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"),
    ("v1", "ConfigMap"),
    ("v1", "Endpoints"),
    ("v1", "Event"),
    ("v1", "LimitRange"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("v1", "PodAttachOptions"),
    ("v1", "PodExecOptions"),
    ("v1", "PodPortForwardOptions"),
    ("v1", "PodProxyOptions"),
    ("v1", "PodTemplate"),
    ("v1", "ReplicationController"),
    ("v1", "ResourceQuota"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "ServiceProxyOptions"),
}


def is_namespace_scoped(obj: Mapping[str, Any]) -> bool:
    """kyaml's table for built-in kinds; otherwise "has a ``metadata.namespace``"."""
    key = (c.api_version(obj), c.kind(obj))
    if key in _NAMESPACE_SCOPED:
        return True
    if key in _CLUSTER_SCOPED:
        return False
    return c.has_namespace(obj)


@dataclass(frozen=True)
class ResourceId:
    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.group}|{self.kind}|{self.namespace}|{self.name}"


def resource_id(obj: Mapping[str, Any]) -> ResourceId:
    group, _ = c.parse_group_version(c.api_version(obj))
    if c.has_namespace(obj):
        ns = c.namespace(obj)
    elif is_namespace_scoped(obj):
        ns = DEFAULT_NAMESPACE
    else:
        ns = UNKNOWN_NAMESPACE
    return ResourceId(group, c.kind(obj), ns, c.name(obj))


def origin_id(obj: Mapping[str, Any]) -> ResourceId:
    upstream = c.annotation(obj, c.UPSTREAM_IDENTIFIER)
    if not upstream:
        return resource_id(obj)
    m = _UPSTREAM_ID.search(upstream.strip())
    if m is None:
        raise FunctionFailure(
            f"annotation {c.UPSTREAM_IDENTIFIER}: {upstream.strip()} is in bad format. "
            'expect "<GROUP>|<KIND>|<NAMESPACE>|<NAME>"'
        )
    return ResourceId(m["group"], m["kind"], m["namespace"], m["name"])


def short_string(obj: Mapping[str, Any]) -> str:
    return (
        f"Resource(apiVersion={c.api_version(obj)}, kind={c.kind(obj)}, "
        f"namespace={c.namespace(obj)}, name={c.name(obj)})"
    )


@dataclass
class Config:
    namespace: str
    matcher: str = ""


def parse_config(fc: Mapping[str, Any] | None) -> Config:
    expect = f"`ConfigMap.v1` or `{FN_KIND}.{c.FN_VERSION}.{c.FN_GROUP}`"
    if c.is_empty(fc):
        raise c.ConfigError(f"FunctionConfig is missing. Expect {expect}")
    assert fc is not None
    if c.is_gvk(fc, "", "v1", "ConfigMap"):
        data = _typed_string_map(fc.get("data"), "data")
        matcher = data.get("namespaceMatcher", "")
        if data.get("namespace"):
            return Config(data["namespace"], matcher)
        if data.get("name") and c.name(fc) == c.PACKAGE_CONTEXT_NAME:
            return Config(data["name"], matcher)
        raise c.ConfigError("`data.namespace` should not be empty")
    if c.is_gvk(fc, c.FN_GROUP, c.FN_VERSION, FN_KIND):
        ns = _typed_string(fc.get("namespace"), "namespace")
        matcher = _typed_string(fc.get("namespaceMatcher"), "namespaceMatcher")
        if not ns:
            raise c.ConfigError("`namespace` should not be empty")
        return Config(ns, matcher)
    raise c.ConfigError(
        f"unknown functionConfig Kind={c.kind(fc)} ApiVersion={c.api_version(fc)}, expect {expect}"
    )


def _typed_string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        # The catalog decodes into a typed struct and dies on a non-string.
        raise FunctionFailure(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type string "
            f"(field {field})"
        )
    return value


def _typed_string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FunctionFailure(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field "
            f"ConfigMap.{field} of type map[string]string"
        )
    return {str(k): _typed_string(v, f"{field}.{k}") for k, v in value.items()}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


@register("set-namespace")
def set_namespace(rl: ResourceList) -> None:
    try:
        cfg = parse_config(rl.function_config)
    except c.ConfigError as exc:
        rl.results.append(c.config_object_result(str(exc), rl.function_config))
        return
    rl.results.extend(transform(rl.items, cfg))


def transform(items: list[CommentedMap], cfg: Config) -> list[dict[str, Any]]:
    objects = [o for o in items if not c.is_local_config(o)]
    depends_on = _depends_on_keys(objects)
    origins: set[str] = set()
    for obj in objects:
        if not c.annotation(obj, c.UPSTREAM_IDENTIFIER):
            # The released images say nothing about objects without an upstream origin.
            continue
        origin = origin_id(obj)
        if not is_namespace_scoped(obj):
            continue
        if origin.namespace == UNKNOWN_NAMESPACE:
            return [
                c.result(
                    f"{short_string(obj)} is namespace-scoped, but has cluster-scoped or "
                    f"unknown scoepd origin {origin}",
                    "error",
                )
            ]
        origins.add(origin.namespace)
    matchers = [cfg.matcher] if cfg.matcher else []
    if not matchers and len(origins) > 1:
        return [
            c.result(
                "unable to use origin `namespace` to match. expect a single upstream namespace, "
                f"found {c.go_list(sorted(origins))}. please switch to use `namespaceMatcher`"
                "to specify the namespace value you want to change",
                "error",
            )
        ]
    return _replace(objects, cfg.namespace, depends_on, matchers)


def _depends_on_keys(objects: list[CommentedMap]) -> set[str]:
    keys: set[str] = set()
    for obj in objects:
        rid = resource_id(obj)
        if rid.namespace == UNKNOWN_NAMESPACE:
            continue
        keys.add(f"{rid.group}/namespaces/{rid.namespace}/{rid.kind}/{rid.name}")
    return keys


Visitor = Callable[[str, str, list[str]], str]


def _replace(
    objects: list[CommentedMap], new_ns: str, depends_on: set[str], matchers: list[str]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    count = 0
    old: set[str] = set()

    def visit(origin: str, current: str, ids: list[str]) -> str:
        nonlocal count
        if origin == UNKNOWN_NAMESPACE:
            return current
        if current == "":
            current = DEFAULT_NAMESPACE
        if current == new_ns:
            return current
        change = not matchers
        for matcher in matchers:
            if matcher == origin:
                results.append(c.result(f"{c.go_list(ids)} has matching origin {origin}", "info"))
            if matcher in (current, origin):
                change = True
        if change:
            old.add(current)
            count += 1
            return new_ns
        return current

    _visit_all(objects, visit)
    if count == 0:
        results.append(
            c.result(
                f"all matching namespaces are already {c.go_quote(new_ns)}. no value changed",
                "info",
            )
        )
    else:
        results.append(
            c.result(
                f"namespace {c.go_list(sorted(old))} updated to {c.go_quote(new_ns)}, "
                f"{count} value(s) changed",
                "info",
            )
        )
    anno_count, anno_old = _update_depends_on(objects, depends_on, new_ns, matchers)
    if anno_count == 0:
        results.append(
            c.result("all `depends-on` annotations are up-to-date. no `namespace` changed", "info")
        )
    else:
        results.append(
            c.result(
                f"`depends-on` annotation namespace {c.go_list(sorted(anno_old))} updated to "
                f"{c.go_quote(new_ns)}, {anno_count} value(s) changed",
                "info",
            )
        )
    return results


def _nested_str_or_die(obj: CommentedMap, *path: str) -> str:
    """Go SDK ``NestedStringOrDie``: "" when missing, a crash on a non-map step or non-string."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            raise FunctionFailure(f"wrong type at fields {c.go_list(list(path))}")
        if key not in cur:
            return ""
        cur = cur[key]
    if not isinstance(cur, str):
        raise FunctionFailure(f"node at fields {c.go_list(list(path))} was not a string")
    return cur


_CRD_SERVICE_NS = ("spec", "conversion", "webhook", "clientConfig", "service", "namespace")
_API_SERVICE_NS = ("spec", "service", "namespace")


def _visit_all(objects: list[CommentedMap], visit: Visitor) -> None:
    for obj in objects:
        if is_namespace_scoped(obj):
            continue
        if c.is_gvk(obj, "", "v1", "Namespace"):
            new = visit(origin_id(obj).name, c.name(obj), [short_string(obj)])
            c.set_nested_str(obj, new, "metadata", "name")
        elif c.is_gvk(obj, "apiextensions.k8s.io", "v1", "CustomResourceDefinition"):
            new = visit("", _nested_str_or_die(obj, *_CRD_SERVICE_NS), [])
            c.set_nested_str(obj, new, *_CRD_SERVICE_NS)
        elif c.is_gvk(obj, "apiregistration.k8s.io", "v1", "APIService"):
            new = visit("", _nested_str_or_die(obj, *_API_SERVICE_NS), [])
            c.set_nested_str(obj, new, *_API_SERVICE_NS)
        elif c.kind(obj) in ("ClusterRoleBinding", "RoleBinding"):
            subjects = obj.get("subjects")
            if not isinstance(subjects, list):
                continue
            for subject in subjects:
                if not isinstance(subject, CommentedMap):
                    continue
                value, found = c.nested_str(subject, "namespace")
                if found:
                    c.set_nested_str(subject, visit("", value, []), "namespace")
    for obj in objects:
        if not is_namespace_scoped(obj):
            continue
        new = visit(origin_id(obj).namespace, c.namespace(obj), [short_string(obj)])
        c.set_nested_str(obj, new, "metadata", "namespace")


def _update_depends_on(
    objects: list[CommentedMap], depends_on: set[str], new_ns: str, matchers: list[str]
) -> tuple[int, list[str]]:
    count = 0
    old: set[str] = set()
    for obj in objects:
        value = c.annotation(obj, c.DEPENDS_ON_ANNOTATION)
        if not value or not _NAMESPACED_DEPENDS_ON.match(value):
            continue
        if value not in depends_on:
            continue
        segments = value.split("/")
        if segments[2] == new_ns:
            continue
        if matchers and segments[2] not in matchers:
            continue
        old.add(segments[2])
        segments[2] = new_ns
        count += 1
        c.set_annotation(obj, c.DEPENDS_ON_ANNOTATION, "/".join(segments))
    return count, sorted(old)
