"""Repository adapters: the Protocol, an in-memory twin, git on pygit2."""

from porch.repository.types import (
    PORCH_AUTHOR,
    Author,
    Change,
    PackageRepository,
    RevisionInfo,
)

__all__ = ["PORCH_AUTHOR", "Author", "Change", "PackageRepository", "RevisionInfo"]
