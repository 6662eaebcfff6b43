"""Fast read-only loading of YAML into plain data, for reads on hot paths.

The round-trip parser keeps comments and formatting but is pure Python (about 1.5 ms for a
Kptfile); reading a few fields needs none of that. libyaml through PyYAML's C loader does the
same in a few tens of microseconds. Anything unusual (anchors and aliases, which the guarded
parser bounds; errors, which it reports with file and line) goes through the round-trip path,
so hostile input gets exactly the same treatment as everywhere else.
"""

from __future__ import annotations

from typing import Any

import yaml

from porch.krm.yaml import parse_documents, to_plain_value

_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BASE):  # type: ignore[misc]
    """libyaml's parser with duplicate keys refused, as the round-trip parser refuses them."""


def _mapping(loader: Any, node: Any) -> Any:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=False)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: not JSON-shaped, let the slow path judge
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable key", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_LOADER: Any = _StrictLoader


def load_plain_all(text: str, *, filename: str) -> list[Any]:
    """Every document of ``text`` as JSON-shaped data (empty documents dropped)."""
    fast = load_plain_fast(text)
    if fast is not None:
        return fast
    return [to_plain_value(node) for node in parse_documents(text, filename=filename).objects()]


def load_plain_fast(text: str) -> list[Any] | None:
    """The documents through libyaml, or None when only the guarded parser may judge the text
    (anchors, errors, non-JSON data): callers then take the round-trip path."""
    if "&" in text or "*" in text or "\t" in text:
        return None
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return docs if all(_plain_keys(d) for d in docs) else None


def _plain_keys(value: Any, depth: int = 0) -> bool:
    """True when the data is JSON-shaped (string keys; dates etc. would differ from to_plain)."""
    if depth > 100:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_keys(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_keys(v, depth + 1) for v in value)
    return value is None or isinstance(value, str | int | float | bool)
