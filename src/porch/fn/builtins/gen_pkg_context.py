"""``builtins/gen-pkg-context``: the package-context generator kpt and Porch run for deployment
packages.

Every existing ``kptfile.kpt.dev`` ConfigMap is dropped and, for each Kptfile among the items, a
``package-context.yaml`` ConfigMap is added next to it (path annotation = the Kptfile's directory
+ ``package-context.yaml``) with ``data.name`` = the Kptfile's ``metadata.name`` and, when given,
``data.package-path``.

Porch passes the package path in-process; here it comes from the functionConfig: a ConfigMap
whose ``data.package-path`` is copied (no functionConfig = no package path).
"""

from __future__ import annotations

import posixpath
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.builtins import _configmap as c
from porch.fn.registry import register
from porch.fn.types import ResourceList
from porch.krm.yaml import from_plain, load_object

PACKAGE_CONTEXT_FILE = "package-context.yaml"
PACKAGE_PATH_KEY = "package-path"

ABSTRACT_PACKAGE_CONTEXT = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {c.PACKAGE_CONTEXT_NAME}
  annotations:
    config.kubernetes.io/local-config: "true"
data:
  name: example
"""
"""The placeholder package context ``init`` writes into new (abstract) packages."""


def package_context(name: str, package_path: str = "") -> CommentedMap:
    """The package-context ConfigMap for a package called ``name``."""
    obj = load_object(ABSTRACT_PACKAGE_CONTEXT, filename=PACKAGE_CONTEXT_FILE)
    data: dict[str, str] = {"name": name}
    if package_path:
        data[PACKAGE_PATH_KEY] = package_path
    obj["data"] = from_plain(data)
    return obj


def _is_kptfile(obj: CommentedMap) -> bool:
    return c.api_version(obj) == "kpt.dev/v1" and c.kind(obj) == "Kptfile"


def _is_package_context(obj: CommentedMap) -> bool:
    return (
        c.api_version(obj) == "v1"
        and c.kind(obj) == "ConfigMap"
        and c.name(obj) == c.PACKAGE_CONTEXT_NAME
    )


@register("builtins/gen-pkg-context")
def gen_pkg_context(rl: ResourceList) -> None:
    package_path = ""
    fc = rl.function_config
    if fc is not None and c.kind(fc) == "ConfigMap":
        package_path = c.string_map(fc.get("data")).get(PACKAGE_PATH_KEY, "")
    kept: list[CommentedMap] = []
    generated: list[CommentedMap] = []
    for obj in rl.items:
        if _is_package_context(obj):
            continue
        kept.append(obj)
        if _is_kptfile(obj):
            ctx = package_context(c.name(obj), package_path)
            path = posixpath.join(posixpath.dirname(c.file_path(obj)) or ".", PACKAGE_CONTEXT_FILE)
            path = posixpath.normpath(path)
            c.set_annotation(ctx, c.PATH_ANNOTATION, path)
            generated.append(ctx)
    rl.items[:] = kept + generated
    for ctx in generated:
        res: dict[str, Any] = c.result(
            "generated package context", "info", file={"path": c.file_path(ctx)}
        )
        rl.results.append(res)
