"""The ResourceList wire format (``config.kubernetes.io/v1``), as exec functions and the
function runner exchange it: YAML text in, YAML text out.

``loads`` refuses what is not a ResourceList with a clear :class:`ResourceListError`; items must
be mappings (KRM objects). ``dumps`` writes kpt's layout (compact sequences, two-space maps).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.errors import Invalid
from porch.fn.types import RESOURCE_LIST_API_VERSION, RESOURCE_LIST_KIND, ResourceList
from porch.krm import yaml as krm_yaml

LEGACY_API_VERSIONS = ("config.kubernetes.io/v1", "config.kubernetes.io/v1alpha1")


class ResourceListError(Invalid):
    """The text is not a well-formed ResourceList."""


def loads(data: bytes | str, *, source: str = "function output") -> ResourceList:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        docs = krm_yaml.parse_documents(text, filename=source)
    except Invalid as exc:
        raise ResourceListError(f"{source} is not valid YAML: {exc}") from exc
    objects = docs.objects()
    if len(objects) != 1:
        raise ResourceListError(
            f"{source} must be exactly one ResourceList object, found {len(objects)} documents"
        )
    root = objects[0]
    kind = root.get("kind")
    if kind != RESOURCE_LIST_KIND:
        raise ResourceListError(f"{source} has kind {kind!r}, want {RESOURCE_LIST_KIND!r}")
    items_node = root.get("items")
    if items_node is None:
        items_node = CommentedSeq()
    if not isinstance(items_node, list):
        raise ResourceListError(f"{source}: items must be a list")
    items: list[CommentedMap] = []
    for index, item in enumerate(items_node):
        if not isinstance(item, CommentedMap):
            raise ResourceListError(f"{source}: items[{index}] is not a KRM object (a mapping)")
        items.append(item)
    fc = root.get("functionConfig")
    if fc is not None and not isinstance(fc, CommentedMap):
        raise ResourceListError(f"{source}: functionConfig must be an object")
    results_node = root.get("results") or []
    if not isinstance(results_node, list):
        raise ResourceListError(f"{source}: results must be a list")
    results: list[dict[str, Any]] = []
    for index, res in enumerate(results_node):
        if not isinstance(res, dict):
            raise ResourceListError(f"{source}: results[{index}] is not an object")
        results.append(krm_yaml.to_plain(res))
    return ResourceList(items=items, function_config=fc, results=results)


def to_tree(rl: ResourceList) -> CommentedMap:
    root = CommentedMap()
    root["apiVersion"] = RESOURCE_LIST_API_VERSION
    root["kind"] = RESOURCE_LIST_KIND
    root["items"] = CommentedSeq(rl.items)
    if rl.function_config is not None:
        root["functionConfig"] = rl.function_config
    if rl.results:
        root["results"] = krm_yaml.from_plain(rl.results)
    return root


def dumps(rl: ResourceList) -> str:
    return krm_yaml.dumps(to_tree(rl))
