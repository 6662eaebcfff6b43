"""What the controllers share: the markers they put on objects, conditions, and error kinds.

Errors say whether retrying can help (kopf's habit): a ``ValidationError`` waits for the user
to change the spec (``Stalled``), a ``ReconcileError`` is retried on the next event or resync
(``Ready=False``) because the world it depends on may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

CONFIG_API_VERSION = "config.porch.kpt.dev/v1alpha1"
CONFIG_API_VERSION_V1ALPHA2 = "config.porch.kpt.dev/v1alpha2"

PV_KIND = "PackageVariant"
PVS_KIND = "PackageVariantSet"
PV_FINALIZER = "config.porch.kpt.dev/packagevariants"
PVS_LABEL = "config.porch.kpt.dev/packagevariantset"
WORKSPACE_PREFIX = "packagevariant-"

CONDITION_STALLED = "Stalled"
CONDITION_READY = "Ready"


class ValidationError(Exception):
    """The spec is wrong; nothing changes until the user edits it."""


class ReconcileError(Exception):
    """This attempt failed; the next event or resync tries again."""


@dataclass(frozen=True)
class Outcome:
    """What one reconcile of one object did (used by tests and logs)."""

    name: str
    wrote: bool = False
    error: str = ""


class Reconciler(Protocol):
    def reconcile(self, obj: Mapping[str, Any]) -> Outcome: ...


def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


def merge_conditions(
    old: list[dict[str, Any]], new: list[dict[str, str]], now: str
) -> list[dict[str, Any]]:
    """Conditions with ``lastTransitionTime`` kept unless the status really changed."""
    previous = {str(c.get("type")): c for c in old if isinstance(c, dict)}
    out: list[dict[str, Any]] = []
    for cond in new:
        before = previous.get(cond["type"])
        kept = before.get("lastTransitionTime") if before else None
        same = before is not None and before.get("status") == cond["status"]
        out.append({**cond, "lastTransitionTime": kept if same and kept else now})
    return out


def owner_ref(obj: Mapping[str, Any], *, api_version: str, kind: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
    }
