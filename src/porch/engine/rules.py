"""Business rules of spec §1.4, §2–3 that need no I/O."""

from __future__ import annotations

from porch.api._serde import to_dict
from porch.api.types import (
    LATEST_REVISION_LABEL,
    PackageInitTaskSpec,
    PackageRevision,
    Task,
)
from porch.errors import Invalid

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
