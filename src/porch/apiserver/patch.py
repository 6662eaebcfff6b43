"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and server-side apply.

Server-side apply is approximated as a merge of the applied object over the live one (no
managedFields bookkeeping): that is what kubectl needs (``serverside-applied``), and conflicts
between field managers are not detected. Strategic merge patch is only understood for core
kinds, whose only merge-keyed lists are in metadata; for our kinds it is a 415 as for CRDs.
"""

from __future__ import annotations

import copy
from typing import Any

from porch.errors import BadRequest, Invalid, UnsupportedMediaType


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_as_merge(patch: Any) -> Any:
    """A strategic merge patch with no list directives is a merge patch; refuse the rest."""
    if isinstance(patch, dict):
        out = {}
        for key, value in patch.items():
            if key.startswith("$setElementOrder/"):
                continue  # ordering hints only; our stored lists keep their order
            if key.startswith("$"):
                raise UnsupportedMediaType(
                    f"strategic merge patch directive {key!r} is not supported; use"
                    " application/merge-patch+json"
                )
            out[key] = strategic_as_merge(value)
        return out
    return patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise BadRequest(f"json patch: invalid path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise Invalid(f"json patch: invalid array index {token!r}")
    index = int(token)
    limit = len(container) if insert else len(container) - 1
    if index > limit:
        raise Invalid(f"json patch: array index {index} out of range")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise Invalid(f"json patch: path /{'/'.join(tokens)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, insert=False)]
        else:
            raise Invalid(f"json patch: path /{'/'.join(tokens)} does not exist")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise Invalid(f"json patch: path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, insert=False)]
    raise Invalid(f"json patch: path /{'/'.join(tokens)} does not exist")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise Invalid("json patch: cannot remove the whole document")
    value = _get(doc, tokens)
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[_index(parent, last, insert=False)]
    return value


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise Invalid(f"json patch: cannot add at /{'/'.join(tokens)}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of ``target``; a failed ``test`` or a missing path is a 422."""
    if not isinstance(ops, list):
        raise BadRequest("json patch: the body must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"json patch: malformed operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise BadRequest(f"json patch: {kind} needs a value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            _get(doc, tokens)
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise BadRequest(f"json patch: {kind} needs from")
            source = _pointer(op["from"])
            if kind == "move" and tokens[: len(source)] == source and tokens != source:
                raise Invalid("json patch: cannot move a value into one of its children")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _get(doc, tokens) != op["value"]:
                raise Invalid(f"json patch: test failed at {op['path']}")
        else:
            raise BadRequest(f"json patch: unknown operation {kind!r}")
    return doc


def apply_patch(current: dict[str, Any] | None, applied: Any) -> dict[str, Any]:
    """The applied configuration merged over the live object (or alone when creating)."""
    if not isinstance(applied, dict):
        raise BadRequest("apply patch: the body must be an object")
    body: dict[str, Any] = copy.deepcopy(applied)
    body.get("metadata", {}).pop("managedFields", None)
    if current is None:
        return body
    result: dict[str, Any] = merge_patch(current, _drop_nulls(body))
    return result


def _drop_nulls(value: Any) -> Any:
    # In an applied configuration ``null`` means "no opinion", not "delete".
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value
