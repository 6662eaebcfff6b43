"""Commit messages and the ``kpt:`` annotation line that makes a history rediscoverable (§5.2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

ANNOTATION_PREFIX = "kpt:"

# Only these may be the task that created a revision; render/push commits come afterwards.
CREATING_TASKS = frozenset({"init", "clone", "edit", "upgrade"})
# Discovery stops walking history at these: they begin a revision from nothing.
ORIGIN_TASKS = frozenset({"init", "clone"})

_SUBJECTS = {
    "init": "Creating new empty revision",
    "clone": "Creating new revision by cloning",
    "edit": "Creating new revision by copying previous revision",
    "upgrade": "Upgrading revision",
    "render": "Rendering package",
    "": "Intermediate commit",
}

INITIAL_BRANCH_MESSAGE = "Initial commit: Creating main branch"
INITIAL_README = "Created by porch"


@dataclass(frozen=True)
class Annotation:
    package: str
    workspace: str
    revision: str
    task: Mapping[str, Any] | None

    @property
    def task_type(self) -> str:
        if self.task is None:
            return ""
        value = self.task.get("type", "")
        return value if isinstance(value, str) else ""

    def matches(self, fp: str, workspace: str) -> bool:
        """Same package and workspace; trailers older than workspaces carry it as revision."""
        if self.package != fp:
            return False
        return self.workspace == workspace or (not self.workspace and self.revision == workspace)


def subject_for(task: Mapping[str, Any] | None) -> str:
    task_type = "" if task is None else str(task.get("type", ""))
    return _SUBJECTS.get(task_type, f"Intermediate commit: {task_type}")


def annotation_line(
    fp: str, workspace: str, revision: str, task: Mapping[str, Any] | None = None
) -> str:
    # Key order and omission of empty values follow the Go struct Porch marshals.
    data: dict[str, Any] = {}
    if fp:
        data["package"] = fp
    if workspace:
        data["workspaceName"] = workspace
    if revision:
        data["revision"] = revision
    if task is not None:
        data["task"] = dict(task)
    return ANNOTATION_PREFIX + orjson.dumps(data).decode("utf-8")


def annotate(subject: str, line: str) -> str:
    return f"{subject}\n\n{line}\n"


def revision_message(fp: str, workspace: str, task: Mapping[str, Any] | None) -> str:
    return annotate(subject_for(task), annotation_line(fp, workspace, "0", task))


def approval_message(fp: str, workspace: str, revision: int) -> str:
    subject = f"Approving package revision {fp}/{revision}"
    return annotate(subject, annotation_line(fp, workspace, str(revision)))


def delete_message(fp: str) -> str:
    return f"Delete {fp}\n"


def parse_annotations(message: str) -> tuple[Annotation, ...]:
    """Every well-formed ``kpt:`` line of a commit message; malformed ones are ignored."""
    found: list[Annotation] = []
    for raw in message.splitlines():
        line = raw.strip()
        if not line.startswith(ANNOTATION_PREFIX):
            continue
        try:
            data = orjson.loads(line[len(ANNOTATION_PREFIX) :])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        task = data.get("task")
        found.append(
            Annotation(
                package=_text(data.get("package")),
                workspace=_text(data.get("workspaceName")),
                revision=_text(data.get("revision")),
                task=task if isinstance(task, dict) else None,
            )
        )
    return tuple(found)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""
