"""Rows of the store ↔ the API objects a GET returns."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from porch.api._serde import from_dict, to_dict
from porch.api.names import compose_name, package_object_name, revision_uid
from porch.api.types import (
    LATEST_REVISION_LABEL,
    Approval,
    Condition,
    GitLock,
    Lifecycle,
    Locator,
    ObjectMeta,
    OwnerReference,
    PackageMetadata,
    PackageRevision,
    PackageRevisionResources,
    PackageRevisionResourcesSpec,
    PackageRevisionSpec,
    PackageRevisionStatus,
    PorchPackage,
    PorchPackageSpec,
    PorchPackageStatus,
    ReadinessGate,
    Repository,
    Task,
)
from porch.errors import Invalid
from porch.krm.kptfile import read_kptfile
from porch.repository.types import RevisionInfo
from porch.store.types import RevisionRow


def kptfile_summary(files: Mapping[str, str]) -> dict[str, Any]:
    """What a GET shows from the Kptfile, kept in the index so reads never touch git."""
    text = files.get("Kptfile")
    if text is None:
        raise Invalid("package must contain Kptfile at root")
    # Revisions of a package mostly share one Kptfile text: parse each text once.
    return copy.deepcopy(_summary_of(text))


@lru_cache(maxsize=4096)
def _summary_of(text: str) -> dict[str, Any]:
    kf = read_kptfile(text)
    out: dict[str, Any] = {
        "labels": dict(kf.metadata.labels),
        "annotations": dict(kf.metadata.annotations),
        "readinessGates": [g.condition_type for g in (kf.info.readiness_gates if kf.info else [])],
        "conditions": to_dict(kf.status.conditions) if kf.status else [],
        "hasPipeline": bool(kf.pipeline and (kf.pipeline.mutators or kf.pipeline.validators)),
    }
    if kf.upstream and kf.upstream.git and kf.upstream_lock and kf.upstream_lock.git:
        out["upstreamLock"] = to_dict(kf.upstream_lock)
    return out


def has_pipeline(files: Mapping[str, str]) -> bool:
    text = files.get("Kptfile", "")
    # Most Kptfiles have no pipeline at all; only parse the ones that mention it.
    return "pipeline" in text and bool(kptfile_summary(files)["hasPipeline"])


def row_from_info(
    namespace: str, repository: str, info: RevisionInfo, kptfile: dict[str, Any]
) -> RevisionRow:
    return RevisionRow(
        namespace=namespace,
        name=compose_name(repository, info.package, info.workspace),
        repository=repository,
        package=info.package,
        workspace=info.workspace,
        revision=info.revision,
        lifecycle=str(info.lifecycle),
        commit=info.commit,
        ref=info.ref,
        tasks=[dict(t) for t in info.tasks],
        published_by=info.published_by,
        published_at=_timestamp(info.published_at) if info.published_at else None,
        kptfile=kptfile,
    )


def _timestamp(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def info_from_row(row: RevisionRow) -> RevisionInfo:
    return RevisionInfo(
        package=row.package,
        workspace=row.workspace,
        revision=row.revision,
        lifecycle=Lifecycle(row.lifecycle),
        commit=row.commit,
        ref=row.ref,
        tasks=tuple(row.tasks),
        published_by=row.published_by,
    )


def to_package_revision(row: RevisionRow, *, latest: bool, repo: Repository) -> PackageRevision:
    meta = row.meta
    labels = dict(meta.get("labels") or {})
    if latest:
        labels[LATEST_REVISION_LABEL] = "true"
    kf = row.kptfile
    lifecycle = Lifecycle(row.lifecycle)
    status = PackageRevisionStatus(
        self_lock=Locator(
            type="git",
            git=GitLock(
                repo=repo.spec.git.repo if repo.spec.git else "",
                directory=row.package,
                ref=row.ref,
                commit=row.commit,
            ),
        ),
        deployment=repo.spec.deployment,
        conditions=[from_dict(Condition, c) for c in kf.get("conditions") or []],
    )
    if kf.get("upstreamLock"):
        status.upstream_lock = from_dict(Locator, kf["upstreamLock"])
    if lifecycle.published_like:
        status.published_by = row.published_by
        status.publish_timestamp = row.published_at
    record = meta.get("approval")  # proposer and approvals (docs/approval.md)
    if record:
        status.proposed_by = record.get("proposedBy") or ""
        status.propose_timestamp = record.get("proposeTimestamp")
        status.approvals = [from_dict(Approval, a) for a in record.get("approvals") or []]
    return PackageRevision(
        metadata=ObjectMeta(
            name=row.name,
            namespace=row.namespace,
            uid=revision_uid(row.namespace, row.name),
            resource_version=str(row.resource_version),
            creation_timestamp=meta.get("creationTimestamp"),
            deletion_timestamp=meta.get("deletionTimestamp"),
            labels=labels,
            annotations=dict(meta.get("annotations") or {}),
            finalizers=list(meta.get("finalizers") or []),
            owner_references=[
                from_dict(OwnerReference, o) for o in meta.get("ownerReferences") or []
            ],
        ),
        spec=PackageRevisionSpec(
            package_name=row.package,
            repository=row.repository,
            workspace_name=row.workspace,
            revision=row.revision,
            lifecycle=row.lifecycle,
            tasks=[from_dict(Task, t) for t in row.tasks],
            readiness_gates=[ReadinessGate(g) for g in kf.get("readinessGates") or []],
            package_metadata=PackageMetadata(
                labels=dict(kf.get("labels") or {}),
                annotations=dict(kf.get("annotations") or {}),
            )
            if (kf.get("labels") or kf.get("annotations"))
            else None,
        ),
        status=status,
    )


def to_resources(
    row: RevisionRow, files: dict[str, str], *, repo: Repository, latest: bool
) -> PackageRevisionResources:
    pr = to_package_revision(row, latest=latest, repo=repo)
    return PackageRevisionResources(
        metadata=pr.metadata,
        spec=PackageRevisionResourcesSpec(
            package_name=row.package,
            workspace_name=row.workspace,
            revision=row.revision,
            repository=row.repository,
            resources=files,
        ),
    )


def to_porch_package(
    namespace: str, repository: str, package: str, latest_revision: int
) -> PorchPackage:
    name = package_object_name(repository, package)
    return PorchPackage(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            uid=revision_uid(namespace, name),
            resource_version="undefined",
        ),
        spec=PorchPackageSpec(package_name=package, repository=repository),
        status=PorchPackageStatus(latest_revision=latest_revision),
    )


def metadata_of(obj: ObjectMeta, *, creation: str | None) -> dict[str, Any]:
    """The object metadata the store keeps; the computed latest label never persists."""
    labels = {k: v for k, v in obj.labels.items() if k != LATEST_REVISION_LABEL}
    out: dict[str, Any] = {
        "labels": labels,
        "annotations": dict(obj.annotations),
        "finalizers": list(obj.finalizers),
        "ownerReferences": to_dict(obj.owner_references),
        "creationTimestamp": creation,
    }
    if obj.deletion_timestamp:
        out["deletionTimestamp"] = obj.deletion_timestamp
    return out
