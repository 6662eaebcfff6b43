"""Business rules of spec §1.4, §2–3 that need no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from porch.api._serde import to_dict
from porch.api.types import (
    LATEST_REVISION_LABEL,
    ApprovalPolicy,
    PackageInitTaskSpec,
    PackageRevision,
    Task,
)
from porch.errors import Cause, Details, Forbidden, Invalid

CREATE_TASKS = ("init", "clone", "edit", "upgrade")
MANAGED_LABEL = "label is managed by porch and cannot be set by users"


def check_latest_label_create(pr: PackageRevision) -> None:
    if LATEST_REVISION_LABEL in pr.metadata.labels:
        raise Invalid(f"metadata.labels[{LATEST_REVISION_LABEL}]: Forbidden: {MANAGED_LABEL}")


def check_latest_label_update(new: PackageRevision, is_latest: bool) -> None:
    value = new.metadata.labels.get(LATEST_REVISION_LABEL)
    expected = "true" if is_latest else None
    if value != expected:
        raise Invalid(f"metadata.labels[{LATEST_REVISION_LABEL}]: Forbidden: {MANAGED_LABEL}")


def choose_task(pr: PackageRevision) -> Task:
    tasks = pr.spec.tasks
    if len(tasks) > 1:
        raise Invalid("task list must not contain more than one task")
    if not tasks:
        desc = f"{pr.spec.package_name} description"
        return Task(type="init", init=PackageInitTaskSpec(description=desc))
    task = tasks[0]
    if task.type not in CREATE_TASKS:
        raise Invalid(f'task of type "{task.type}" not supported')
    return task


def check_published_spec_unchanged(current: PackageRevision, new: PackageRevision) -> None:
    """From Published-like only the lifecycle flip may change in the spec (§2.2)."""
    a, b = current.spec, new.spec
    changed = (
        (b.package_name and b.package_name != a.package_name)
        or (b.repository and b.repository != a.repository)
        or (b.workspace_name and b.workspace_name != a.workspace_name)
        or (b.revision and b.revision != a.revision)
        or (b.tasks and to_dict(b.tasks) != to_dict(a.tasks))
        or (b.readiness_gates and to_dict(b.readiness_gates) != to_dict(a.readiness_gates))
        or (
            b.package_metadata is not None
            and to_dict(b.package_metadata) != to_dict(a.package_metadata)
        )
    )
    if changed:
        raise Invalid("spec can only update package with lifecycle value one of Draft,Proposed")


def task_json(task: Task) -> dict[str, object]:
    out: dict[str, object] = to_dict(task)
    return out


# --- readiness gates and approval policy (docs/approval.md) ----------------------------------

PR_RESOURCE = "packagerevisions.porch.kpt.dev"
ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
POLICY_FIELDS = ("minApprovals", "proposerMayApprove", "approverGroups")
# The key of a revision's stored meta that holds proposedBy, proposeTimestamp and approvals.
APPROVAL_META = "approval"


def unmet_readiness_gates(kptfile: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(gate, why) for every Kptfile readiness gate whose condition is not ``True``."""
    conditions = {c.get("type"): c for c in kptfile.get("conditions") or []}
    unmet = []
    for gate in dict.fromkeys(kptfile.get("readinessGates") or []):
        cond = conditions.get(gate)
        if cond is None:
            unmet.append((gate, f'gate "{gate}" has no condition'))
        elif cond.get("status") != "True":
            why = f'gate "{gate}" has status "{cond.get("status", "")}"'
            if cond.get("reason"):
                why += f" ({cond['reason']})"
            unmet.append((gate, why))
    return unmet


def check_readiness(name: str, kptfile: Mapping[str, Any]) -> None:
    """422 naming each readiness gate whose condition is not ``True`` (porchctl's wording)."""
    unmet = unmet_readiness_gates(kptfile)
    if not unmet:
        return
    causes = tuple(
        Cause(message=why, field=f"status.conditions[{gate}]", reason="FieldValueInvalid")
        for gate, why in unmet
    )
    raise Invalid(
        f"readiness conditions not met for {name}: " + "; ".join(why for _g, why in unmet),
        details=Details(name=name, group="porch.kpt.dev", kind="packagerevisions", causes=causes),
    )


def approvals_required(policy: ApprovalPolicy | None) -> int:
    return max(1, policy.min_approvals) if policy is not None else 1


def check_approver(
    *,
    name: str,
    repository: str,
    policy: ApprovalPolicy,
    user: str | None,
    groups: Sequence[str],
    proposed_by: str,
    approved_by: Sequence[str],
) -> None:
    """403 when ``user`` may not add an approval to ``name`` under ``policy``."""
    prefix = f'{PR_RESOURCE} "{name}" is forbidden: '
    if not user or user == ANONYMOUS_USER or UNAUTHENTICATED_GROUP in groups:
        raise Forbidden(
            prefix + f'the approval policy of repository "{repository}" requires an'
            " authenticated approver"
        )
    if policy.approver_groups and not set(groups) & set(policy.approver_groups):
        raise Forbidden(
            prefix + f'User "{user}" is not in an approver group of repository "{repository}"'
            f" ({', '.join(policy.approver_groups)})"
        )
    if not policy.proposer_may_approve and proposed_by and user == proposed_by:
        raise Forbidden(
            prefix + f'User "{user}" proposed this revision, and the approval policy of'
            f' repository "{repository}" does not let the proposer approve it'
        )
    if user in approved_by:
        need = approvals_required(policy)
        raise Forbidden(
            prefix + f'User "{user}" has already approved this revision ({len(approved_by)}'
            f" of {need} approvals); another eligible user must approve it"
        )


def approval_progress(name: str, user: str, have: int, need: int) -> str:
    """The warning a recorded approval that does not publish yet comes back with."""
    more = need - have
    who = "1 more eligible user approves" if more == 1 else f"{more} more eligible users approve"
    return (
        f'approval by "{user}" recorded for {name} ({have} of {need}); it stays Proposed'
        f" until {who}"
    )


def validate_approval_policy(raw: Any) -> dict[str, Any] | None:
    """Check ``spec.approvalPolicy`` as sent and return it with its defaults filled in.

    Unknown keys are refused: a misspelt key would silently weaken the policy.
    """
    path = "spec.approvalPolicy"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Invalid(f"{path}: Invalid value: {raw!r}: must be an object")
    for key in raw:
        if key not in POLICY_FIELDS:
            raise Invalid(
                f"{path}.{key}: Forbidden: unknown field; the fields are "
                + ", ".join(POLICY_FIELDS)
            )
    out = dict(raw)
    count = out.setdefault("minApprovals", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise Invalid(f"{path}.minApprovals: Invalid value: {count!r}: must be an integer")
    if count < 1:
        raise Invalid(
            f"{path}.minApprovals: Invalid value: {count}: must be greater than or equal to 1"
        )
    may = out.setdefault("proposerMayApprove", True)
    if not isinstance(may, bool):
        raise Invalid(f"{path}.proposerMayApprove: Invalid value: {may!r}: must be a boolean")
    groups = out.get("approverGroups")
    if groups is not None:
        if not isinstance(groups, list):
            raise Invalid(f"{path}.approverGroups: Invalid value: {groups!r}: must be a list")
        seen: set[str] = set()
        for i, group in enumerate(groups):
            where = f"{path}.approverGroups[{i}]"
            if not isinstance(group, str) or not group.strip():
                raise Invalid(f"{where}: Invalid value: {group!r}: must be a non-empty string")
            if group in seen:
                raise Invalid(f'{where}: Duplicate value: "{group}"')
            seen.add(group)
    return out
