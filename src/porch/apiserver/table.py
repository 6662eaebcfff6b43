"""Server-side printing: ``meta.k8s.io/v1`` Table with each kind's columns plus Age.

kubectl prints what we compute, so Age is rendered here with Kubernetes' HumanDuration rules,
and each row carries the object (``includeObject=Metadata`` by default) because kubectl builds
the NAMESPACE column and ``--show-labels`` from it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from porch.apiserver.kinds import Body, Column, ResourceType
from porch.errors import BadRequest

AGE = Column(
    "Age",
    lambda o: o.get("metadata", {}).get("creationTimestamp"),
    description="CreationTimestamp is a timestamp representing the server time when this"
    " object was created.",
)
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def check_include_object(value: str) -> str:
    if value and value not in INCLUDE_OBJECT:
        raise BadRequest(f'includeObject must be one of None, Metadata, Object, got "{value}"')
    return value or "Metadata"


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` (what ``kubectl get`` shows as AGE)."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    minutes, hours = s // 60, s // 3600
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years = hours // 24 // 365
        days = hours // 24 % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime) -> str | None:
    if not timestamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _row_object(rt: ResourceType, obj: Body, include: str) -> Any:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def rows(rt: ResourceType, items: list[Body], include: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out = []
    for obj in items:
        cells = [c.cell(obj) for c in rt.columns]
        cells.append(age(obj.get("metadata", {}).get("creationTimestamp"), now))
        row: dict[str, Any] = {"cells": cells}
        embedded = _row_object(rt, obj, include)
        if embedded is not None:
            row["object"] = embedded
        out.append(row)
    return out


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    return [c.definition() for c in (*rt.columns, AGE)]


def table(
    rt: ResourceType,
    items: list[Body],
    *,
    resource_version: str,
    include: str,
    with_columns: bool = True,
    list_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = dict(list_meta or {})
    meta["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(rt) if with_columns else None,
        "rows": rows(rt, items, include),
    }
