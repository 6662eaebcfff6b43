"""Registered repositories: their API objects in the store, their adapters in memory."""

from __future__ import annotations

import threading
from collections.abc import Callable

from porch.api.names import dns_label_errors, is_dns_label
from porch.api.types import Repository
from porch.errors import BadRequest, Invalid, NotFound
from porch.repository.types import PackageRepository
from porch.store.types import Store

KIND = "Repository"
IMMUTABLE = ("type", "git.repo", "git.branch", "git.directory", "oci.registry")


def repo_not_found(name: str) -> NotFound:
    return NotFound(f'repositories.config.porch.kpt.dev "{name}" not found')


def validate_repository(repo: Repository) -> None:
    if not repo.metadata.namespace:
        raise BadRequest("namespace must be specified")
    if not is_dns_label(repo.metadata.name):
        raise Invalid(
            f"metadata.name: Invalid value: {repo.metadata.name!r}: "
            + "; ".join(dns_label_errors(repo.metadata.name))
        )
    kind = repo.spec.type or "git"
    if kind == "oci":
        if repo.spec.oci is None or not repo.spec.oci.registry:
            raise Invalid("spec.oci.registry: Required value")
    elif kind != "git":
        raise Invalid(f'spec.type: Unsupported value: "{kind}": supported values: "git", "oci"')
    elif repo.spec.git is None or not repo.spec.git.repo:
        raise Invalid("spec.git.repo: Required value")
    if repo.spec.content not in ("", "Package"):
        raise Invalid(f'spec.content: Unsupported value: "{repo.spec.content}"')


def immutable_changes(old: Repository, new: Repository) -> list[str]:
    def pick(r: Repository, path: str) -> str:
        head, _, tail = path.partition(".")
        if not tail:
            return str(getattr(r.spec, head) or "")
        sub = getattr(r.spec, head)
        return str(getattr(sub, tail) or "") if sub is not None else ""

    return [p for p in IMMUTABLE if pick(old, p) != pick(new, p)]


class RepositoryRegistry:
    """Opens each registered repository once and hands out its adapter."""

    def __init__(self, store: Store, opener: Callable[[Repository], PackageRepository]) -> None:
        self._store = store
        self._opener = opener
        self._open: dict[tuple[str, str], PackageRepository] = {}
        # Every package operation needs its Repository; decoding it each time costs more than
        # the rest of a read. Writes go through ObjectService, which invalidates.
        self._cache: dict[tuple[str, str], Repository] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str) -> Repository:
        """The stored Repository (shared: callers must not modify it)."""
        key = (namespace, name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        row = self._store.get_object(KIND, namespace, name)
        if row is None:
            raise repo_not_found(name)
        repo = Repository.from_dict(row.body)
        repo.metadata.resource_version = str(row.resource_version)
        self._cache[key] = repo
        return repo

    def invalidate(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)

    def list(self, namespace: str | None = None) -> list[Repository]:
        """Every stored Repository (shared: callers must not modify them). A row whose
        resourceVersion matches the cached object is not decoded again: the syncer lists them
        all on every Repository event, and with 1,000 of them decoding dominated."""
        out = []
        for row in self._store.list_objects(KIND, namespace):
            key = (row.namespace, row.name)
            version = str(row.resource_version)
            repo = self._cache.get(key)
            if repo is None or repo.metadata.resource_version != version:
                repo = Repository.from_dict(row.body)
                repo.metadata.resource_version = version
                self._cache[key] = repo
            out.append(repo)
        return out

    def adapter(self, repo: Repository) -> PackageRepository:
        key = (repo.metadata.namespace, repo.metadata.name)
        with self._lock:
            adapter = self._open.get(key)
            if adapter is None:
                adapter = self._opener(repo)
                self._open[key] = adapter
            return adapter

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._open.pop((namespace, name), None)
        self.invalidate(namespace, name)
