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

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_plain_all(text: str, *, filename: str) -> list[Any]:
    """Every document of ``text`` as JSON-shaped data (empty documents dropped)."""
    if "&" not in text and "*" not in text:
        try:
            docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
        except (yaml.YAMLError, RecursionError, ValueError):
            pass
        else:
            if all(_plain_keys(d) for d in docs):
                return docs
    return [to_plain_value(node) for node in parse_documents(text, filename=filename).objects()]


def _plain_keys(value: Any, depth: int = 0) -> bool:
    """True when the data is JSON-shaped (string keys; dates etc. would differ from to_plain)."""
    if depth > 100:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_keys(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_keys(v, depth + 1) for v in value)
    return value is None or isinstance(value, str | int | float | bool)
