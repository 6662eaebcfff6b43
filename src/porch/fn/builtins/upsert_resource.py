"""upsert-resource: the functionConfig is a resource (or a ``List`` of them) to put into the
package: every item with the same group, kind, name and namespace is replaced by it (keeping
the item's file path and index), otherwise it is added. A
``config.kubernetes.io/target-path`` annotation on the input restricts the replacement to the
item in that file and names the file of an added resource."""

from __future__ import annotations

import copy
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins._paths import (
    INDEX_ANNOTATION,
    INTERNAL_INDEX_ANNOTATION,
    INTERNAL_PATH_ANNOTATION,
    PATH_ANNOTATION,
    annotation_map,
    scalar_text,
)
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList

TARGET_PATH_ANNOTATION = "config.kubernetes.io/target-path"
_FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")
_PATH_INDEX = (
    PATH_ANNOTATION,
    INTERNAL_PATH_ANNOTATION,
    INDEX_ANNOTATION,
    INTERNAL_INDEX_ANNOTATION,
)


class _UpsertError(Exception):
    pass


def _meta(obj: Any) -> tuple[str, str, str, str]:
    """(group, kind, name, namespace) of an object."""
    if not isinstance(obj, CommentedMap):
        raise _UpsertError("resource must be a mapping")
    api_version = scalar_text(obj.get("apiVersion") or "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return (
        group,
        scalar_text(obj.get("kind") or ""),
        scalar_text(meta.get("name") or ""),
        scalar_text(meta.get("namespace") or ""),
    )


def _set_annotations(obj: CommentedMap, values: dict[str, str]) -> None:
    """Make the object's annotations exactly ``values`` (editing the existing map in place so
    its comments stay); an empty map removes the field."""
    meta = obj.get("metadata")
    if not isinstance(meta, CommentedMap):
        if not values:
            return
        meta = CommentedMap()
        obj["metadata"] = meta
    annos = meta.get("annotations")
    if not values:
        if "annotations" in meta:
            del meta["annotations"]
        return
    if not isinstance(annos, CommentedMap):
        annos = CommentedMap()
        meta["annotations"] = annos
    for key in [k for k in annos if str(k) not in values]:
        del annos[key]
    for key, value in values.items():
        if scalar_text(annos.get(key)) != value or key not in annos:
            annos[key] = value


def _unwrap(config: CommentedMap) -> list[Any]:
    if scalar_text(config.get("kind") or "") == "List":
        items = config.get("items")
        return list(items) if isinstance(items, list) else []
    return [config]


def _upsert(items: list[CommentedMap], resource: Any) -> None:
    wanted = _meta(resource)
    input_annos = annotation_map(resource)
    target_path = input_annos.get(TARGET_PATH_ANNOTATION, "")
    found = False
    for i, item in enumerate(items):
        item_annos = annotation_map(item)
        if any(item_annos.get(a) for a in _FUNCTION_ANNOTATIONS):
            continue
        if _meta(item) != wanted:
            continue
        item_path = item_annos.get(INTERNAL_PATH_ANNOTATION) or item_annos.get(PATH_ANNOTATION, "")
        if target_path and target_path != item_path:
            continue
        replacement = copy.deepcopy(resource)
        combined = dict(input_annos)
        for key in _PATH_INDEX:
            combined.pop(key, None)
        for key in _PATH_INDEX:
            if key in item_annos:
                combined[key] = item_annos[key]
        for key in (*_FUNCTION_ANNOTATIONS, TARGET_PATH_ANNOTATION):
            combined.pop(key, None)
        _set_annotations(replacement, combined)
        items[i] = replacement
        found = True
    if found:
        return
    added = copy.deepcopy(resource)
    values = dict(input_annos)
    for key in (*_FUNCTION_ANNOTATIONS, *_PATH_INDEX, TARGET_PATH_ANNOTATION):
        values.pop(key, None)
    if target_path:
        values[PATH_ANNOTATION] = target_path
        values[INTERNAL_PATH_ANNOTATION] = target_path
    _set_annotations(added, values)
    items.append(added)


@register("upsert-resource")
def upsert_resource(rl: ResourceList) -> None:
    try:
        if not isinstance(rl.function_config, CommentedMap) or not rl.function_config:
            raise _UpsertError("functionConfig is missing: expected the resource to upsert")
        for resource in _unwrap(rl.function_config):
            _upsert(rl.items, resource)
    except _UpsertError as exc:
        raise FunctionFailure(f"failed to upsert resource: {exc}") from exc
