"""``porch.kpt.dev/v1alpha1`` PackageRevision and its ``approval`` subresource."""

from __future__ import annotations

import builtins

from porch.api.lifecycle import Endpoint
from porch.api.names import validate_labels_and_annotations
from porch.api.types import GROUP, LATEST_REVISION_LABEL, VERSION, Lifecycle, PackageRevision
from porch.apiserver.codec import to_model
from porch.apiserver.kinds import Body, Caller, Column, ResourceType, name_column, spec_field
from porch.apiserver.writes import add_warning
from porch.engine import Engine
from porch.engine.rules import approval_progress, approvals_required
from porch.engine.watch import Watcher


def _latest(obj: Body) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(LATEST_REVISION_LABEL) == "true")


COLUMNS = (
    name_column(),
    Column("Package", lambda o: spec_field(o, "packageName", "")),
    Column("WorkspaceName", lambda o: spec_field(o, "workspaceName", "")),
    Column("Revision", lambda o: spec_field(o, "revision", 0), type="integer"),
    Column("Latest", _latest, type="boolean"),
    Column("Lifecycle", lambda o: spec_field(o, "lifecycle", "")),
    Column("Repository", lambda o: spec_field(o, "repository", "")),
)


class PackageRevisionBackend:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, caller: Caller, namespace: str, name: str, subresource: str) -> Body:
        # GET of ``approval`` returns the whole object, as Porch's subresource storage does.
        return self._engine.get_body(namespace, name)

    def list(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[list[Body], str]:
        return self._engine.list_bodies(
            namespace, field_selector=field_selector, label_selector=label_selector
        )

    def list_raw(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[builtins.list[bytes] | None, str]:
        return self._engine.list_raw(
            namespace, field_selector=field_selector, label_selector=label_selector
        )

    def create(self, caller: Caller, namespace: str, body: Body) -> Body:
        validate_labels_and_annotations(body.get("metadata") or {})
        pr = to_model(PackageRevision, body)
        return self._engine.create(pr, user=caller.name).to_dict()

    def update(self, caller: Caller, namespace: str, body: Body, subresource: str) -> Body:
        validate_labels_and_annotations(body.get("metadata") or {})
        pr = to_model(PackageRevision, body)
        endpoint = Endpoint.APPROVAL if subresource == "approval" else Endpoint.MAIN
        updated = self._engine.update(pr, endpoint=endpoint, user=caller.name, groups=caller.groups)
        if (
            endpoint is Endpoint.APPROVAL
            and pr.spec.lifecycle == Lifecycle.PUBLISHED
            and updated.spec.lifecycle == Lifecycle.PROPOSED
        ):
            # The approval was recorded but the repository's policy wants more (docs/approval.md).
            repo = self._engine.repositories.get(namespace, updated.spec.repository)
            add_warning(
                approval_progress(
                    updated.metadata.name,
                    caller.name,
                    len(updated.status.approvals),
                    approvals_required(repo.spec.approval_policy),
                )
            )
        return updated.to_dict()

    def delete(self, caller: Caller, namespace: str, name: str) -> Body:
        return self._engine.delete(namespace, name, user=caller.name).to_dict()

    def watch(
        self,
        caller: Caller,
        namespace: str | None,
        *,
        label_selector: str,
        field_selector: str,
        resource_version: str,
    ) -> Watcher:
        return self._engine.watch(
            namespace,
            field_selector=field_selector,
            label_selector=label_selector,
            resource_version=resource_version,
        )


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=GROUP,
        version=VERSION,
        plural="packagerevisions",
        singular="packagerevision",
        kind="PackageRevision",
        backend=PackageRevisionBackend(engine),
        categories=("kpt",),
        subresources=("approval",),
        columns=COLUMNS,
        model=PackageRevision,
    )
