"""A real ``porch serve`` per module; each test works in a namespace of its own.

Repositories are local bare git repositories registered through the API; the upstream package
is made with an ``init`` task and published through ``/approval``, as a user would.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from porch.api.types import (
    Lifecycle,
    ObjectMeta,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Repository,
    Task,
)
from porch.client import CONFIG, PorchClient
from tests.apiserver.served import Served, start

DEADLINE = 60.0
_counter = itertools.count()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start(
        tmp_path_factory.mktemp("porch"), "--insecure-http", "--allow-anonymous", "--no-sync"
    )
    yield server
    server.stop()


class Env:
    """One namespace on the shared server, with helpers that act like a user."""

    def __init__(self, served: Served, root: Path, namespace: str) -> None:
        self.served = served
        self.root = root
        self.ns = namespace
        self.client = PorchClient(served.url, namespace=namespace)

    def repo(self, name: str, labels: dict[str, str] | None = None) -> None:
        path = self.root / f"{self.ns}-{name}.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        repo = Repository.from_dict(
            {
                "metadata": {"name": name, "namespace": self.ns, "labels": labels or {}},
                "spec": {"type": "git", "git": {"repo": str(path), "branch": "main"}},
            }
        )
        self.client.create_repository(repo)

    def publish(self, name: str) -> PackageRevision:
        pr = self.client.get_package_revision(name)
        pr.spec.lifecycle = Lifecycle.PROPOSED
        pr = self.client.update_package_revision(pr)
        pr.spec.lifecycle = Lifecycle.PUBLISHED
        return self.client.update_approval(pr)

    def upstream(self, repo: str = "up", package: str = "base") -> PackageRevision:
        """A published package with a package context and one ConfigMap."""
        self.repo(repo)
        pr = self.client.create_package_revision(
            PackageRevision(
                metadata=ObjectMeta(namespace=self.ns),
                spec=PackageRevisionSpec(
                    package_name=package, repository=repo, workspace_name="v1"
                ),
            )
        )
        prr = self.client.get_resources(pr.metadata.name)
        prr.spec.resources["cm.yaml"] = (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  size: small\n"
        )
        self.client.update_resources(prr)
        return self.publish(pr.metadata.name)

    def new_upstream_revision(
        self, source: str, workspace: str, size: str, extra: dict[str, str] | None = None
    ) -> PackageRevision:
        """Copy a published upstream, change it, publish: what an upstream author does."""
        src = self.client.get_package_revision(source)
        pr = self.client.create_package_revision(
            PackageRevision(
                metadata=ObjectMeta(namespace=self.ns),
                spec=PackageRevisionSpec(
                    package_name=src.spec.package_name,
                    repository=src.spec.repository,
                    workspace_name=workspace,
                    tasks=[Task(type="edit", edit=PackageEditTaskSpec(PackageRevisionRef(source)))],
                ),
            )
        )
        prr = self.client.get_resources(pr.metadata.name)
        prr.spec.resources["cm.yaml"] = prr.spec.resources["cm.yaml"].replace(
            "size: small", f"size: {size}"
        )
        prr.spec.resources.update(extra or {})
        self.client.update_resources(prr)
        return self.publish(pr.metadata.name)

    def revisions(self, repo: str, package: str | None = None) -> list[PackageRevision]:
        fields = {"spec.repository": repo}
        if package:
            fields["spec.packageName"] = package
        return [
            pr for pr in self.client.list_package_revisions(fields=fields) if pr.spec.revision != -1
        ]

    def drafts(self, repo: str) -> list[PackageRevision]:
        return [pr for pr in self.revisions(repo) if pr.spec.lifecycle == Lifecycle.DRAFT]

    def variant(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "config.porch.kpt.dev/v1alpha1",
            "kind": "PackageVariant",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }
        return self.client.create_object(CONFIG, "packagevariants", body)

    def get_variant(self, name: str) -> dict[str, Any]:
        return self.client.get_object(CONFIG, "packagevariants", name)

    def files(self, name: str) -> dict[str, str]:
        return dict(self.client.get_resources(name).spec.resources)


@pytest.fixture
def env(served: Served, tmp_path: Path) -> Iterator[Env]:
    e = Env(served, tmp_path, f"ctl-{next(_counter)}")
    yield e
    e.client.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == kind), {})
