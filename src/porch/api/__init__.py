"""Typed models, names and lifecycle rules of every kind we serve. Pure data, no I/O."""

from porch.api.lifecycle import Endpoint, check_transition, parse_lifecycle
from porch.api.names import compose_name, parse_name, revision_uid
from porch.api.types import (
    API_VERSION,
    LATEST_REVISION_LABEL,
    Lifecycle,
    PackageRevision,
    PackageRevisionResources,
    PorchPackage,
    Repository,
    Task,
)

__all__ = [
    "API_VERSION",
    "LATEST_REVISION_LABEL",
    "Endpoint",
    "Lifecycle",
    "PackageRevision",
    "PackageRevisionResources",
    "PorchPackage",
    "Repository",
    "Task",
    "check_transition",
    "compose_name",
    "parse_lifecycle",
    "parse_name",
    "revision_uid",
]
