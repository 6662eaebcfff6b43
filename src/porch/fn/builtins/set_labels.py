"""``set-labels``: the catalog function as a builtin.

Config: a ConfigMap (its whole ``data`` is the label set) or ``SetLabels``
(``fn.kpt.dev/v1alpha1``, ``labels``). No config (or kpt's empty placeholder) ends the function
unsuccessfully after an info result, as the catalog's SDK does.

Labels go into ``metadata.labels`` of every non-local-config object, and into the selectors and
templates the catalog knows: Service/ReplicationController ``spec.selector``; workload
``spec.selector.matchLabels`` (created for Deployment/ReplicaSet/DaemonSet/StatefulSet, only
updated for Job/PodDisruptionBudget); pod templates (metadata labels, topology spread
constraints); CronJob job templates; StatefulSet volume claim templates; NetworkPolicy pod
selectors and ingress/egress peers. The result counts every label visit, changed or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.registry import register
from porch.fn.types import ResourceList

FN_KIND = "SetLabels"

META_LABELS = ("metadata", "labels")
SELECTOR = ("selector", "matchLabels")
POD_SELECTOR = ("podSelector", "matchLabels")
LABEL_SELECTOR = ("labelSelector", "matchLabels")


class _LabelError(Exception):
    pass


def _group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    group, _ = c.parse_group_version(c.api_version(obj))
    return group, c.kind(obj)


def parse_labels(fc: Mapping[str, Any]) -> dict[str, str]:
    """Labels from a non-empty functionConfig; raises ConfigError with the SDK's text."""
    group, kind = _group_kind(fc)
    if (group, kind) == ("", "ConfigMap"):
        data = fc.get("data")
        if data is None:
            return {}
        return c.string_map(data)
    if (group, kind) == (c.FN_GROUP, FN_KIND):
        labels = fc.get("labels")
        if labels is None:
            return {}
        prefix = f"unable to convert object to *setlabels.{FN_KIND} with error: json: "
        if not isinstance(labels, Mapping):
            raise c.ConfigError(
                f"{prefix}cannot unmarshal {_json_type(labels)} into Go struct field "
                f"{FN_KIND}.labels of type map[string]string"
            )
        out: dict[str, str] = {}
        for k, v in labels.items():
            if not isinstance(v, str):
                raise c.ConfigError(
                    f"{prefix}cannot unmarshal {_json_type(v)} into Go struct field "
                    f"{FN_KIND}.labels of type string"
                )
            out[str(k)] = v
        return out
    shown = f"{kind}.{group}" if group else kind
    raise c.ConfigError(
        f"unknown FunctionConfig `{shown}`, expect `{FN_KIND}.{c.FN_GROUP}` or `ConfigMap.v1`"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def sdk_placeholder(fc: Mapping[str, Any] | None) -> bool:
    """The SDK's "FunctionConfig is not given" test (empty, or kpt's empty ConfigMap)."""
    if c.is_empty(fc):
        return True
    assert fc is not None
    data = fc.get("data") if "data" in fc else None
    return (
        "data" in fc
        and c.kind(fc) == "ConfigMap"
        and c.name(fc) == "function-input"
        and len(c.string_map(data)) == 0
    )


def _empty_fn_config(fc: Mapping[str, Any] | None) -> bool:
    """set-labels' own placeholder test, applied after config parsing."""
    fc = fc or {}
    if c.kind(fc) == "ConfigMap" and c.name(fc) == "function-input":
        return len(c.string_map(fc.get("data"))) == 0
    return c.kind(fc) == "" and c.name(fc) == ""


@register("set-labels")
def set_labels(rl: ResourceList) -> None:
    fc = rl.function_config
    labels: dict[str, str] = {}
    if sdk_placeholder(fc):
        rl.results.append(c.result("`FunctionConfig` is not given", "info"))
    else:
        assert fc is not None
        try:
            labels = parse_labels(fc)
        except c.ConfigError as exc:
            rl.results.append(c.result(str(exc), "error"))
            raise c.sdk_failure() from None
    objects = [o for o in rl.items if not c.is_local_config(o)]
    if not objects:
        rl.results.append(c.result("no input resources", "info"))
        return
    if _empty_fn_config(fc):
        raise c.sdk_failure()
    if not labels:
        rl.results.append(c.result("no `labels` arguments are given in FunctionConfig", "warning"))
        return
    setter = _Setter(labels)
    failed = False
    for obj in objects:
        try:
            setter.apply(obj)
        except _LabelError as exc:
            rl.results.append(c.result(str(exc), "error"))
            failed = True
    rl.results.append(c.result(f"set {setter.count} labels in total", "info"))
    if failed:
        raise c.sdk_failure()


def _map(obj: Any, key: str) -> CommentedMap | None:
    """Go SDK ``GetMap``: the sub-map, or None when missing or not a map."""
    if obj is None:
        return None
    value = obj.get(key)
    return value if isinstance(value, CommentedMap) else None


def _slice(obj: Any, key: str) -> list[Any]:
    if obj is None:
        return []
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _LabelError(f"unable to get slice at fields [{key}]: wrong type")
    return [v for v in value if isinstance(v, CommentedMap)]


class _Setter:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.count = 0

    def update(self, obj: CommentedMap | None, path: tuple[str, ...], create: bool) -> None:
        if obj is None:
            return
        for key in sorted(self.labels):
            value = self.labels[key]
            full = (*path, key)
            old, exists = self._nested_string(obj, full)
            if (exists and old != value) or (not exists and create):
                c.set_nested_str(obj, value, *full)
            self.count += 1

    @staticmethod
    def _nested_string(obj: CommentedMap, path: tuple[str, ...]) -> tuple[str, bool]:
        """Go SDK ``NestedString`` including its error texts."""
        cur: Any = obj
        for i, key in enumerate(path):
            if key not in cur:
                return "", False
            cur = cur[key]
            if i < len(path) - 1 and not isinstance(cur, Mapping):
                raise _LabelError(f"wrong type, got: {_variant(cur)}")
        if isinstance(cur, Mapping | list):
            raise _LabelError(f"incorrect type, was {_variant(cur)}")
        if not isinstance(cur, str):
            raise _LabelError(f"node was not a string, was {_tag(cur)}")
        return cur, True

    def meta(self, obj: CommentedMap | None) -> None:
        self.update(obj, META_LABELS, True)

    def apply(self, obj: CommentedMap) -> None:
        kind = c.kind(obj)
        self.meta(obj)
        # selectors
        if c.is_gvk(obj, "", "v1", "Service") or c.is_gvk(obj, "", "v1", "ReplicationController"):
            self.update(obj, ("spec", "selector"), True)
        if kind in ("Deployment", "ReplicaSet", "DaemonSet") or c.is_gvk(
            obj, "apps", "", "StatefulSet"
        ):
            self.update(obj, ("spec", *SELECTOR), True)
        elif c.is_gvk(obj, "batch", "", "Job") or c.is_gvk(
            obj, "policy", "", "PodDisruptionBudget"
        ):
            self.update(obj, ("spec", *SELECTOR), False)
        network_policy = c.is_gvk(obj, "networking.k8s.io", "", "NetworkPolicy")
        if network_policy:
            self.update(obj, ("spec", *POD_SELECTOR), False)
        spec = _map(obj, "spec")
        if spec is None:
            return
        if _has_pod_template(obj):
            try:
                self.pod(_map(spec, "template"))
            except _LabelError:
                return  # the catalog stops on this object without reporting the error
        if c.is_gvk(obj, "batch", "", "CronJob"):
            self.job(_map(spec, "jobTemplate"))
        if c.is_gvk(obj, "apps", "", "StatefulSet"):
            for volume in _slice(spec, "volumeClaimTemplates"):
                self.meta(volume)
                self.update(volume, SELECTOR, False)
        if network_policy:
            for rule in _slice(spec, "ingress"):
                for peer in _slice(rule, "from"):
                    self.update(peer, POD_SELECTOR, False)
            for rule in _slice(spec, "egress"):
                for peer in _slice(rule, "to"):
                    self.update(peer, POD_SELECTOR, False)

    def job(self, job: CommentedMap | None) -> None:
        if job is None:
            return
        self.meta(job)
        spec = _map(job, "spec")
        self.update(spec, SELECTOR, False)
        self.pod(_map(spec, "template"))

    def pod(self, pod: CommentedMap | None) -> None:
        if pod is None:
            return
        self.meta(pod)
        spec = _map(pod, "spec")
        if spec is None:
            return
        for constraint in _slice(spec, "topologySpreadConstraints"):
            self.update(constraint, LABEL_SELECTOR, False)
        affinity = _map(spec, "affinity")
        if affinity is None:
            return
        for kind in ("podAffinity", "podAntiAffinity"):
            if _map(affinity, kind) is None:
                continue
            # As in the catalog, the terms are looked up on ``affinity`` itself.
            for term in _slice(affinity, "preferredDuringSchedulingIgnoredDuringExecution"):
                self.update(_map(term, "podAffinityTerm"), LABEL_SELECTOR, False)
            for term in _slice(affinity, "requiredDuringSchedulingIgnoredDuringExecution"):
                self.update(term, LABEL_SELECTOR, False)


def _has_pod_template(obj: Mapping[str, Any]) -> bool:
    kind = c.kind(obj)
    return (
        c.is_gvk(obj, "", "v1", "ReplicationController")
        or kind in ("Deployment", "ReplicaSet", "DaemonSet")
        or c.is_gvk(obj, "apps", "", "StatefulSet")
        or c.is_gvk(obj, "batch", "", "Job")
    )


def _variant(value: Any) -> str:
    if isinstance(value, Mapping):
        return "*internal.MapVariant"
    if isinstance(value, list):
        return "*internal.sliceVariant"
    return "*internal.scalarVariant"


def _tag(value: Any) -> str:
    if value is None:
        return "!!null"
    if isinstance(value, bool):
        return "!!bool"
    if isinstance(value, int):
        return "!!int"
    if isinstance(value, float):
        return "!!float"
    if isinstance(value, Mapping):
        return "!!map"
    if isinstance(value, list):
        return "!!seq"
    return "!!str"
