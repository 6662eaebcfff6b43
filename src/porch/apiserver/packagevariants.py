"""``config.porch.kpt.dev/v1alpha1`` PackageVariant: stored now, reconciled later."""

from __future__ import annotations

from typing import Any

from porch.api.types import CONFIG_GROUP
from porch.apiserver.kinds import Body, Column, ResourceType, name_column, spec_field
from porch.apiserver.stored import StoredBackend
from porch.engine import Engine


def _ref(obj: Body, key: str) -> Any:
    ref = spec_field(obj, key) or {}
    return "/".join(p for p in (ref.get("repo"), ref.get("package"), ref.get("revision")) if p)


COLUMNS = (
    name_column(),
    Column("Upstream", lambda o: _ref(o, "upstream")),
    Column("Downstream", lambda o: _ref(o, "downstream")),
)


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=CONFIG_GROUP,
        version="v1alpha1",
        plural="packagevariants",
        singular="packagevariant",
        kind="PackageVariant",
        backend=StoredBackend(engine, "PackageVariant"),
        subresources=("status",),
        columns=COLUMNS,
    )
