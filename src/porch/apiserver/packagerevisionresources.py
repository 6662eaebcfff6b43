"""``porch.kpt.dev/v1alpha1`` PackageRevisionResources: the files of a revision.

No create, delete or watch (spec §1.1); an update replaces the whole file set of a Draft.
"""

from __future__ import annotations

from porch.api.types import GROUP, VERSION, PackageRevisionResources
from porch.apiserver.codec import to_model
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

COLUMNS = (
    name_column(),
    Column("Package", lambda o: spec_field(o, "packageName", "")),
    Column("WorkspaceName", lambda o: spec_field(o, "workspaceName", "")),
    Column("Revision", lambda o: spec_field(o, "revision", 0), type="integer"),
    Column("Repository", lambda o: spec_field(o, "repository", "")),
    Column("Files", lambda o: len(spec_field(o, "resources", {}) or {}), type="integer"),
)


class PackageRevisionResourcesBackend(ReadOnly):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, caller: Caller, namespace: str, name: str, subresource: str) -> Body:
        return self._engine.get_resources(namespace, name).to_dict()

    def list(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[list[Body], str]:
        rv = str(self._engine.store.current_resource_version())
        items = self._engine.list_resources(
            namespace, field_selector=field_selector, label_selector=label_selector
        )
        return [i.to_dict() for i in items], rv

    def update(self, caller: Caller, namespace: str, body: Body, subresource: str) -> Body:
        prr = to_model(PackageRevisionResources, body)
        return self._engine.update_resources(prr, user=caller.name).to_dict()


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=GROUP,
        version=VERSION,
        plural="packagerevisionresources",
        singular="packagerevisionresources",
        kind="PackageRevisionResources",
        backend=PackageRevisionResourcesBackend(engine),
        verbs=("get", "list", "patch", "update"),
        columns=COLUMNS,
        model=PackageRevisionResources,
    )
