"""``config.porch.kpt.dev/v1alpha1`` Repository (short name ``repo``, ``status`` subresource).

Creating one opens and indexes it; the engine's object hooks do that and set the ``Ready``
condition. The columns follow Porch's CRD printer columns.
"""

from __future__ import annotations

from typing import Any

from porch.api.types import CONFIG_GROUP, Repository
from porch.apiserver.kinds import Body, Column, ResourceType, name_column, spec_field
from porch.apiserver.stored import StoredBackend
from porch.engine import Engine
from porch.engine.rules import validate_approval_policy


class RepositoryBackend(StoredBackend):
    """Checks ``spec.approvalPolicy`` and fills in its defaults (docs/approval.md)."""

    def prepare(self, body: Body) -> Body:
        spec = body.get("spec")
        if isinstance(spec, dict) and "approvalPolicy" in spec:
            policy = validate_approval_policy(spec["approvalPolicy"])
            if policy is None:
                del spec["approvalPolicy"]
            else:
                spec["approvalPolicy"] = policy
        return body


def _ready(obj: Body) -> Any:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status", "")
    return None


def _address(obj: Body) -> Any:
    spec = obj.get("spec") or {}
    return (spec.get("git") or {}).get("repo") or (spec.get("oci") or {}).get("registry")


COLUMNS = (
    name_column(),
    Column("Type", lambda o: spec_field(o, "type", "")),
    Column("Content", lambda o: spec_field(o, "content", "")),
    Column("Deployment", lambda o: spec_field(o, "deployment", False), type="boolean"),
    Column("Ready", _ready),
    Column("Address", _address),
)


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=CONFIG_GROUP,
        version="v1alpha1",
        plural="repositories",
        singular="repository",
        kind="Repository",
        backend=RepositoryBackend(engine, "Repository"),
        short_names=("repo",),
        categories=("kpt",),
        subresources=("status",),
        columns=COLUMNS,
        model=Repository,
    )
