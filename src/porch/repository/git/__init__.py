"""Git-backed package repositories (spec §5.1–§5.5)."""

from porch.repository.git.adapter import GitRepository
from porch.repository.git.remote import GitCredentials, set_network_timeouts

__all__ = ["GitCredentials", "GitRepository", "set_network_timeouts"]
