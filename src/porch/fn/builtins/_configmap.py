"""Helpers shared by the catalog ports: reading functionConfigs and KRM objects the way the
catalog's Go SDK (``kpt-functions-sdk/go/fn``) and kyaml do, and building results in their shape.

Objects are ruamel ``CommentedMap`` trees; edits go through :func:`set_nested_str` so new maps
are appended after existing keys (where Go's yaml nodes put them) and strings are styled as Go's
encoder would write them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.fn.gotext import go_quote as go_quote  # re-exported for the builtins
from porch.fn.types import FunctionFailure
from porch.krm.yaml import go_scalar

LOCAL_CONFIG_ANNOTATION = "config.kubernetes.io/local-config"
DEPENDS_ON_ANNOTATION = "config.kubernetes.io/depends-on"
UPSTREAM_IDENTIFIER = "internal.kpt.dev/upstream-identifier"
PATH_ANNOTATION = "internal.config.kubernetes.io/path"
INDEX_ANNOTATION = "internal.config.kubernetes.io/index"
LEGACY_PATH_ANNOTATION = "config.kubernetes.io/path"
LEGACY_INDEX_ANNOTATION = "config.kubernetes.io/index"
FN_GROUP = "fn.kpt.dev"
FN_VERSION = "v1alpha1"
FN_API_VERSION = f"{FN_GROUP}/{FN_VERSION}"
PACKAGE_CONTEXT_NAME = "kptfile.kpt.dev"

SDK_FAILURE = "failed to evaluate function: error: function failure"
"""What a Go-SDK (``fn.AsMain``) function prints when it ends without success."""


class ConfigError(ValueError):
    """The functionConfig cannot be used; the text is the catalog's message."""


def sdk_failure() -> FunctionFailure:
    return FunctionFailure(SDK_FAILURE)


# --- reading ---------------------------------------------------------------------------------


def scalar_text(value: Any) -> str | None:
    """The text of a scalar as Go's yaml node ``Value`` holds it; None for maps/lists/null."""
    if value is None or isinstance(value, Mapping | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def nested(obj: Any, *path: str) -> Any:
    """The value at ``path`` or None when a step is missing or not a mapping."""
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def has_path(obj: Any, *path: str) -> bool:
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return False
        cur = cur[key]
    return True


def nested_str(obj: Any, *path: str) -> tuple[str, bool]:
    """Go SDK ``NestedString``: (value, found); a found non-string gives ("", True)."""
    if not has_path(obj, *path):
        return "", False
    value = nested(obj, *path)
    return (value, True) if isinstance(value, str) else ("", True)


def get_str(obj: Any, *path: str) -> str:
    return nested_str(obj, *path)[0]


def string_map(node: Any) -> dict[str, str]:
    """A mapping's entries as text (Go ``GetNestedStringMap``: every value's scalar text)."""
    if not isinstance(node, Mapping):
        return {}
    return {str(k): scalar_text(v) or "" for k, v in node.items()}


def api_version(obj: Mapping[str, Any]) -> str:
    return get_str(obj, "apiVersion")


def kind(obj: Mapping[str, Any]) -> str:
    return get_str(obj, "kind")


def name(obj: Mapping[str, Any]) -> str:
    return get_str(obj, "metadata", "name")


def namespace(obj: Mapping[str, Any]) -> str:
    return get_str(obj, "metadata", "namespace")


def has_namespace(obj: Mapping[str, Any]) -> bool:
    return nested_str(obj, "metadata", "namespace")[1]


def get_annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return string_map(nested(obj, "metadata", "annotations"))


def annotation(obj: Mapping[str, Any], key: str) -> str:
    return get_str(obj, "metadata", "annotations", key)


def parse_group_version(av: str) -> tuple[str, str]:
    group, sep, version = av.partition("/")
    return (group, version) if sep else ("", av)


def is_gvk(obj: Mapping[str, Any], group: str, version: str, kind_: str) -> bool:
    """Go SDK ``IsGVK``: empty parts on either side match anything."""
    o_group, o_version = parse_group_version(api_version(obj))
    o_kind = kind(obj)
    if o_kind and kind_ and o_kind != kind_:
        return False
    if o_group and group and o_group != group:
        return False
    return not (o_version and version and o_version != version)


def is_local_config(obj: Mapping[str, Any]) -> bool:
    value = annotation(obj, LOCAL_CONFIG_ANNOTATION)
    return value not in ("", "false")


def file_path(obj: Mapping[str, Any]) -> str:
    return annotation(obj, PATH_ANNOTATION) or annotation(obj, LEGACY_PATH_ANNOTATION)


def file_index(obj: Mapping[str, Any]) -> str:
    return annotation(obj, INDEX_ANNOTATION) or annotation(obj, LEGACY_INDEX_ANNOTATION)


def is_empty(obj: Mapping[str, Any] | None) -> bool:
    return obj is None or len(obj) == 0


# --- writing ---------------------------------------------------------------------------------


def set_nested(obj: CommentedMap, value: Any, *path: str) -> None:
    """Set ``path`` to ``value``, creating (or replacing non-map) intermediate maps at the end."""
    cur = obj
    for key in path[:-1]:
        nxt = cur.get(key)
        if not isinstance(nxt, CommentedMap):
            nxt = CommentedMap()
            cur[key] = nxt
        cur = nxt
    cur[path[-1]] = value


def set_nested_str(obj: CommentedMap, value: str, *path: str) -> None:
    """Set a string; an equal string already there is kept as is (with its quoting)."""
    if has_path(obj, *path) and nested(obj, *path) == value and isinstance(nested(obj, *path), str):
        return
    set_nested(obj, go_scalar(value), *path)


def set_annotation(obj: CommentedMap, key: str, value: str) -> None:
    set_nested_str(obj, value, "metadata", "annotations", key)


# --- results ---------------------------------------------------------------------------------


def result(message: str, severity: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"message": message}
    if severity:
        out["severity"] = severity
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def config_object_result(message: str, obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """Go SDK ``ErrorConfigObjectResult``: an error pointing at the functionConfig object."""
    obj = obj or {}
    ref = {
        "apiVersion": api_version(obj),
        "kind": kind(obj),
        "name": name(obj),
        "namespace": namespace(obj),
    }
    index_text = annotation(obj, INDEX_ANNOTATION)
    try:
        index = int(index_text) if index_text else -1
    except ValueError:
        index = 0
    file: dict[str, Any] = {}
    if path := annotation(obj, PATH_ANNOTATION):
        file["path"] = path
    if index:
        file["index"] = index
    return {
        "message": message,
        "severity": "error",
        "resourceRef": {k: v for k, v in ref.items() if v},
        "file": file,
    }


def go_list(items: list[str]) -> str:
    """Go's ``%v`` of a ``[]string``."""
    return "[" + " ".join(items) + "]"


_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_JSON_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(value: Any) -> str:
    """``encoding/json.Marshal`` text: sorted map keys, no spaces, HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _JSON_ESCAPE_RE.sub(lambda m: _JSON_ESCAPES.get(m.group(), "\\u2029"), text)
