"""``remove-local-config-resources``: drop every object annotated
``config.kubernetes.io/local-config: "true"`` (any letter case), reporting what was pruned."""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.registry import register
from porch.fn.types import ResourceList


@register("remove-local-config-resources")
def remove_local_config_resources(rl: ResourceList) -> None:
    kept: list[CommentedMap] = []
    pruned: list[dict[str, Any]] = []
    for obj in rl.items:
        if len(obj) == 0:
            continue  # kyaml drops empty nodes
        if c.annotation(obj, c.LOCAL_CONFIG_ANNOTATION).lower() != "true":
            kept.append(obj)
            continue
        path = c.annotation(obj, c.PATH_ANNOTATION) or c.annotation(obj, c.LEGACY_PATH_ANNOTATION)
        pruned.append(
            c.result(
                f"Resource name: [{c.name(obj)}]",
                "info",
                file={"path": path} if path else None,
            )
        )
    rl.items[:] = kept
    if pruned:
        rl.results.append(c.result(f"Number of resources pruned: {len(pruned)}", "info"))
        rl.results.extend(pruned)
    else:
        rl.results.append(
            c.result("Found no resources to prune with the local config annotation", "warning")
        )
