"""``porch.kpt.dev/v1alpha1`` PorchPackage (``packages``): read-only, derived from revisions."""

from __future__ import annotations

from typing import Any

from porch.api.types import GROUP, VERSION, PorchPackage
from porch.apiserver.kinds import (
    Body,
    Caller,
    Column,
    ReadOnly,
    ResourceType,
    name_column,
    spec_field,
)
from porch.engine import Engine
from porch.engine.selectors import LabelSelector
from porch.errors import NotFound


def _latest_revision(obj: Body) -> Any:
    return (obj.get("status") or {}).get("latestRevision", 0)


COLUMNS = (
    name_column(),
    Column("Package", lambda o: spec_field(o, "packageName", "")),
    Column("Repository", lambda o: spec_field(o, "repository", "")),
    Column("Latest Revision", _latest_revision, type="integer"),
)


class PackageBackend(ReadOnly):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, caller: Caller, namespace: str, name: str, subresource: str) -> Body:
        found = self._engine.list_packages(namespace, field_selector=f"metadata.name={name}")
        if not found:
            raise NotFound(f'packages.{GROUP} "{name}" not found')
        return found[0].to_dict()

    def list(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[list[Body], str]:
        rv = str(self._engine.store.current_resource_version())
        items = [
            i.to_dict()
            for i in self._engine.list_packages(namespace, field_selector=field_selector)
        ]
        if label_selector:
            wanted = LabelSelector.parse(label_selector)
            items = [i for i in items if wanted.matches(i["metadata"].get("labels") or {})]
        return items, rv


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=GROUP,
        version=VERSION,
        plural="packages",
        singular="package",
        kind="PorchPackage",
        list_kind="PackageList",
        backend=PackageBackend(engine),
        verbs=("get", "list"),
        categories=("kpt",),
        columns=COLUMNS,
        model=PorchPackage,
    )
