"""Printing objects the way kubectl does: aligned tables, YAML, JSON, names, custom columns."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import click
import yaml

from porch.cli.ctl._common import EXIT_USAGE, CtlError

Row = Sequence[str]
Column = tuple[str, Callable[[dict[str, Any]], str]]

OUTPUT_HELP = "Output format: yaml, json, wide, name or custom-columns=HEADER:.path[,…]."


def table(headers: Row, rows: Sequence[Row]) -> str:
    """Left-aligned columns three spaces apart, like kubectl's tabwriter; no trailing blanks."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for r in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def age(timestamp: str | None, now: dt.datetime | None = None) -> str:
    """kubectl's HumanDuration of the time since ``timestamp`` (``<unknown>`` without one)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


_STEP = re.compile(r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]|\['([^']*)'\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of kubectl's JSONPath custom columns use: ``.a.b[0].c`` and ``.a['k.x']``."""
    path = path.strip().removeprefix("{").removesuffix("}")
    pos, value = 0, obj
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise CtlError(f"unsupported column path {path!r}", EXIT_USAGE)
        pos = m.end()
        key = m.group(1) if m.group(1) is not None else m.group(3)
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            index = int(m.group(2))
            value = value[index] if isinstance(value, list) and index < len(value) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _path_column(path: str) -> Callable[[dict[str, Any]], str]:
    def column(obj: dict[str, Any]) -> str:
        return _cell(jsonpath(obj, path))

    return column


def custom_columns(spec: str) -> list[Column]:
    columns: list[Column] = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            raise CtlError(f"custom-columns: expected HEADER:.path, got {part!r}", EXIT_USAGE)
        columns.append((header, _path_column(path)))
    return columns


def without_empty(obj: dict[str, Any]) -> dict[str, Any]:
    """A new object as a user would write it: no empty ``metadata``/``status`` stanzas."""
    return {k: v for k, v in obj.items() if not (k in ("metadata", "status") and not v)}


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def emit(
    output: str,
    objects: list[dict[str, Any]],
    columns: list[Column],
    *,
    wide: list[Column] = (),  # type: ignore[assignment]
    single: bool = False,
    all_namespaces: bool = False,
    resource: str = "",
    empty: str = "No resources found",
) -> None:
    """Print ``objects`` in the requested format; ``single`` prints one object, not a List."""
    if output in ("yaml", "json"):
        data: Any = objects[0] if single and len(objects) == 1 else as_list(objects)
        if output == "yaml":
            click.echo(dump_yaml(data), nl=False)
        else:
            click.echo(json.dumps(data, indent=4))
        return
    if output == "name":
        for obj in objects:
            click.echo(f"{resource}/{obj.get('metadata', {}).get('name', '')}")
        return
    if output.startswith("custom-columns="):
        columns = custom_columns(output.removeprefix("custom-columns="))
    elif output == "wide":
        columns = [*columns, *wide]
    elif output:
        raise CtlError(f"unsupported output format {output!r}; {OUTPUT_HELP}", EXIT_USAGE)
    if all_namespaces and not output.startswith("custom-columns="):
        columns = [
            ("NAMESPACE", lambda o: str(o.get("metadata", {}).get("namespace", ""))),
            *columns,
        ]
    if not objects:
        if empty:
            click.echo(empty, err=True)
        return
    rows = [[fn(obj) for _h, fn in columns] for obj in objects]
    click.echo(table([h for h, _fn in columns], rows), nl=False)
