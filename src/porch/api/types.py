"""Typed models of the kinds we serve (``porch.kpt.dev/v1alpha1``, ``config.porch.kpt.dev``).

Field names and JSON shapes follow Porch's Go types; see spec §1. Models are plain mutable
dataclasses (the API layer patches them); conversion lives in ``_serde``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from porch.api._serde import from_dict, to_dict

GROUP = "porch.kpt.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CONFIG_GROUP = "config.porch.kpt.dev"
CONFIG_API_VERSION = f"{CONFIG_GROUP}/v1alpha1"

LATEST_REVISION_LABEL = "kpt.dev/latest-revision"
PUSH_ON_RENDER_FAILURE = "porch.kpt.dev/push-on-render-failure"


class Lifecycle(StrEnum):
    DRAFT = "Draft"
    PROPOSED = "Proposed"
    PUBLISHED = "Published"
    DELETION_PROPOSED = "DeletionProposed"

    @property
    def published_like(self) -> bool:
        return self in (Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED)


class TaskType(StrEnum):
    INIT = "init"
    CLONE = "clone"
    EDIT = "edit"
    UPGRADE = "upgrade"
    RENDER = "render"
    PUSH = "push"


# --- metadata ---------------------------------------------------------------------------


@dataclass
class OwnerReference:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None
    block_owner_deletion: bool | None = None


@dataclass
class ObjectMeta:
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    finalizers: list[str] = field(default_factory=list)
    owner_references: list[OwnerReference] = field(default_factory=list)


@dataclass
class Condition:
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""


# --- tasks --------------------------------------------------------------------------------


@dataclass
class PackageRevisionRef:
    name: str = ""


@dataclass
class SecretRef:
    name: str = ""


@dataclass
class GitPackage:
    repo: str = ""
    ref: str = ""
    directory: str = ""
    secret_ref: SecretRef | None = None


@dataclass
class OciPackage:
    image: str = ""


@dataclass
class UpstreamPackage:
    type: str = ""
    git: GitPackage | None = None
    oci: OciPackage | None = None
    upstream_ref: PackageRevisionRef | None = None


@dataclass
class PackageInitTaskSpec:
    subpackage: str = ""
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    site: str = ""


@dataclass
class PackageCloneTaskSpec:
    upstream_ref: UpstreamPackage | None = field(default=None, metadata={"json": "upstreamRef"})


@dataclass
class PackageEditTaskSpec:
    source_ref: PackageRevisionRef | None = None


@dataclass
class PackageUpgradeTaskSpec:
    old_upstream_ref: PackageRevisionRef | None = field(
        default=None, metadata={"json": "oldUpstreamRef"}
    )
    new_upstream_ref: PackageRevisionRef | None = field(
        default=None, metadata={"json": "newUpstreamRef"}
    )
    local_package_revision_ref: PackageRevisionRef | None = None
    strategy: str = ""


@dataclass
class Task:
    type: str = ""
    init: PackageInitTaskSpec | None = None
    clone: PackageCloneTaskSpec | None = None
    edit: PackageEditTaskSpec | None = None
    upgrade: PackageUpgradeTaskSpec | None = None


# --- PackageRevision -----------------------------------------------------------------------


@dataclass
class ReadinessGate:
    condition_type: str = ""


@dataclass
class PackageMetadata:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ParentReference:
    name: str = ""


@dataclass
class PackageRevisionSpec:
    package_name: str = ""
    repository: str = ""
    workspace_name: str = ""
    revision: int = 0
    parent: ParentReference | None = None
    lifecycle: str = ""
    tasks: list[Task] = field(default_factory=list)
    readiness_gates: list[ReadinessGate] = field(default_factory=list)
    package_metadata: PackageMetadata | None = None


@dataclass
class GitLock:
    repo: str = ""
    directory: str = ""
    ref: str = ""
    commit: str = ""


@dataclass
class Locator:
    type: str = ""
    git: GitLock | None = None


@dataclass
class Approval:
    """One recorded approval of a Proposed revision (docs/approval.md)."""

    user: str = ""
    time: str | None = None


@dataclass
class PackageRevisionStatus:
    upstream_lock: Locator | None = None
    self_lock: Locator | None = None
    published_by: str = ""
    publish_timestamp: str | None = None
    deployment: bool = False
    conditions: list[Condition] = field(default_factory=list)
    # Beyond upstream Porch (docs/approval.md): who proposed it, and the approvals recorded.
    proposed_by: str = ""
    propose_timestamp: str | None = None
    approvals: list[Approval] = field(default_factory=list)


@dataclass
class PackageRevision:
    api_version: str = API_VERSION
    kind: str = "PackageRevision"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: PackageRevisionSpec = field(default_factory=PackageRevisionSpec)
    status: PackageRevisionStatus = field(default_factory=PackageRevisionStatus)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        out.setdefault("spec", {})
        out.setdefault("status", {})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackageRevision:
        return from_dict(cls, data)


# --- PackageRevisionResources ----------------------------------------------------------------


@dataclass
class ResultItem:
    message: str = ""
    severity: str = ""
    resource_ref: dict[str, str] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)
    field_: dict[str, Any] = field(default_factory=dict, metadata={"json": "field"})
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    image: str = ""
    exec_path: str = field(default="", metadata={"json": "exec"})  # Porch's json tag
    stderr: str = ""
    exit_code: int = 0
    results: list[ResultItem] = field(default_factory=list)


@dataclass
class ResultList:
    api_version: str = "kpt.dev/v1"
    kind: str = "FunctionResultList"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    exit_code: int = 0
    items: list[Result] = field(default_factory=list)


@dataclass
class RenderStatus:
    result: ResultList | None = None
    error: str = ""


@dataclass
class PackageRevisionResourcesSpec:
    package_name: str = ""
    workspace_name: str = ""
    revision: int = 0
    repository: str = ""
    resources: dict[str, str] = field(default_factory=dict)


@dataclass
class PackageRevisionResourcesStatus:
    render_status: RenderStatus | None = None


@dataclass
class PackageRevisionResources:
    api_version: str = API_VERSION
    kind: str = "PackageRevisionResources"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: PackageRevisionResourcesSpec = field(default_factory=PackageRevisionResourcesSpec)
    status: PackageRevisionResourcesStatus = field(default_factory=PackageRevisionResourcesStatus)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        out.setdefault("spec", {})
        out.setdefault("status", {})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackageRevisionResources:
        return from_dict(cls, data)


# --- PorchPackage ---------------------------------------------------------------------------


@dataclass
class PorchPackageSpec:
    package_name: str = ""
    repository: str = ""


@dataclass
class PorchPackageStatus:
    latest_revision: int = 0


@dataclass
class PorchPackage:
    api_version: str = API_VERSION
    kind: str = "PorchPackage"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: PorchPackageSpec = field(default_factory=PorchPackageSpec)
    status: PorchPackageStatus = field(default_factory=PorchPackageStatus)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        out.setdefault("spec", {})
        out.setdefault("status", {})
        return out


# --- Repository -----------------------------------------------------------------------------


@dataclass
class RepositorySync:
    schedule: str = ""
    run_once_at: str | None = None


@dataclass
class GitRepositorySpec:
    repo: str = ""
    branch: str = ""
    create_branch: bool = False
    directory: str = ""
    secret_ref: SecretRef | None = None
    author: str = ""
    email: str = ""


@dataclass
class OciRepositorySpec:
    registry: str = ""
    secret_ref: SecretRef | None = None


@dataclass
class ApprovalPolicy:
    """Who must approve a Proposed revision before it is published (docs/approval.md).

    ``proposerMayApprove`` is always written out: ``false`` must survive the omit-empty rule.
    """

    min_approvals: int = field(
        default=1,
        metadata={
            "schema": {
                "minimum": 1,
                "default": 1,
                "description": "Distinct eligible users who must approve before publishing.",
            }
        },
    )
    proposer_may_approve: bool = field(
        default=True,
        metadata={
            "keep": True,
            "schema": {
                "default": True,
                "description": "Whether the user who proposed a revision may approve it.",
            },
        },
    )
    approver_groups: list[str] = field(
        default_factory=list,
        metadata={
            "schema": {"description": "When set, only members of one of these groups may approve."}
        },
    )


@dataclass
class RepositorySpec:
    description: str = ""
    deployment: bool = False
    type: str = ""
    content: str = ""
    sync: RepositorySync | None = None
    git: GitRepositorySpec | None = None
    oci: OciRepositorySpec | None = None
    approval_policy: ApprovalPolicy | None = None


@dataclass
class RepositoryStatus:
    conditions: list[Condition] = field(default_factory=list)
    last_full_sync_time: str | None = None
    next_full_sync_time: str | None = None
    observed_generation: int = 0
    observed_run_once_at: str | None = None
    package_count: int = 0
    git_commit_hash: str = ""


@dataclass
class Repository:
    api_version: str = CONFIG_API_VERSION
    kind: str = "Repository"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: RepositorySpec = field(default_factory=RepositorySpec)
    status: RepositoryStatus = field(default_factory=RepositoryStatus)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        out.setdefault("spec", {})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Repository:
        return from_dict(cls, data)

    @property
    def branch(self) -> str:
        return (self.spec.git.branch if self.spec.git else "") or "main"

    @property
    def directory(self) -> str:
        return (self.spec.git.directory if self.spec.git else "").strip("/")
