"""The engine conformance suite runs every scenario over each repository backend."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import pytest

from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
)
from porch.engine import Engine
from porch.repository.memory import MemoryRepository
from porch.repository.types import PackageRepository
from porch.store.factory import open_store
from porch.testing.postgres import PostgresServer, store_url_from_env
from tests._pg import shared_server_or_skip

NS = "default"


@pytest.fixture(scope="module")
def pg() -> PostgresServer:
    """The shared throw-away PostgreSQL (skipped without it, unless CI requires it)."""
    return shared_server_or_skip()


@pytest.fixture
def dsn(pg: PostgresServer) -> Iterator[str]:
    """A fresh database of its own for the test."""
    url = pg.create_database()
    yield url
    pg.drop_database(url)


def git_opener(mirrors: Path) -> Callable[[Repository], PackageRepository]:
    """Opens each Repository as a git adapter with its mirrors under ``mirrors`` (a replica)."""

    def opener(repo: Repository) -> PackageRepository:
        from porch.repository.git import GitRepository

        assert repo.spec.git is not None
        return GitRepository(
            repo.spec.git.repo,
            branch=repo.branch,
            directory=repo.directory,
            create_branch=repo.spec.git.create_branch,
            mirror_dir=mirrors,
        )

    return opener


@dataclass
class Backend:
    kind: str
    root: Path
    adapters: dict[str, PackageRepository] = field(default_factory=dict)

    def opener(self, repo: Repository) -> PackageRepository:
        key = repo.metadata.name
        if key not in self.adapters:
            assert repo.spec.git is not None
            if self.kind == "memory":
                self.adapters[key] = MemoryRepository(
                    url=repo.spec.git.repo,
                    branch=repo.branch,
                    directory=repo.directory,
                )
            else:
                from porch.repository.git import GitRepository

                self.adapters[key] = GitRepository(
                    repo.spec.git.repo,
                    branch=repo.branch,
                    directory=repo.directory,
                    create_branch=repo.spec.git.create_branch,
                )
        return self.adapters[key]

    def forget_adapters(self) -> None:
        """Simulate a restart: git adapters are rebuilt from disk, memory ones must persist."""
        if self.kind == "git":
            self.adapters.clear()

    def repo_url(self, name: str) -> str:
        if self.kind == "memory":
            return f"memory://{name}"
        path = self.root / f"{name}.git"
        if not path.exists():
            pygit2.init_repository(str(path), bare=True, initial_head="main")
        return str(path)

    def git(self, name: str, *args: str) -> str:
        assert self.kind == "git"
        return subprocess.run(
            ["git", "--git-dir", str(self.root / f"{name}.git"), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout


@pytest.fixture(params=["memory", "git"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path)
    yield b
    if b.kind == "git":
        for repo in tmp_path.glob("*.git"):
            out = subprocess.run(
                ["git", "--git-dir", str(repo), "fsck", "--strict"],
                capture_output=True,
                text=True,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert "error" not in out.stderr.lower() and "warning" not in out.stderr.lower(), (
                out.stderr
            )


@dataclass
class Harness:
    backend: Backend
    store_path: Path
    engine: Engine
    faults: dict[str, Callable[[], None]] = field(default_factory=dict)
    store_url: str = ""

    def fault(self, point: str) -> None:
        action = self.faults.get(point)
        if action is not None:
            action()

    def restart(self) -> Engine:
        self.engine.store.close()
        self.backend.forget_adapters()
        self.engine = Engine(
            store=open_store(self.store_url, self.store_path.parent),
            opener=self.backend.opener,
            fault=self.fault,
        )
        self.engine.start()
        return self.engine

    def register(
        self, name: str = "blue", *, directory: str = "", deployment: bool = False
    ) -> Repository:
        repo = Repository(
            metadata=ObjectMeta(name=name, namespace=NS),
            spec=RepositorySpec(
                type="git",
                deployment=deployment,
                git=GitRepositorySpec(
                    repo=self.backend.repo_url(name),
                    branch="main",
                    directory=directory,
                    create_branch=True,
                ),
            ),
        )
        return self.engine.register_repository(repo)

    def create(
        self, package: str = "app", workspace: str = "ws1", repo: str = "blue", **spec: object
    ) -> PackageRevision:
        pr = PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package,
                repository=repo,
                workspace_name=workspace,
                **spec,  # type: ignore[arg-type]
            ),
        )
        return self.engine.create(pr)

    def set_lifecycle(
        self, pr: PackageRevision, lifecycle: str, *, approval: bool = False
    ) -> PackageRevision:
        from porch.api.lifecycle import Endpoint

        current = self.engine.get(NS, pr.metadata.name)
        current.spec.lifecycle = lifecycle
        return self.engine.update(
            current, endpoint=Endpoint.APPROVAL if approval else Endpoint.MAIN
        )

    def publish(
        self, package: str = "app", workspace: str = "ws1", repo: str = "blue"
    ) -> PackageRevision:
        pr = self.create(package, workspace, repo)
        self.set_lifecycle(pr, "Proposed")
        return self.set_lifecycle(pr, "Published", approval=True)


@pytest.fixture
def harness(backend: Backend, tmp_path: Path) -> Iterator[Harness]:
    store_path = tmp_path / "store.db"
    # PORCH_TEST_STORE=postgres runs the engine suite on a throwaway PostgreSQL database
    url = store_url_from_env(tmp_path)
    h = Harness(
        backend,
        store_path,
        Engine(store=open_store(url, tmp_path), opener=backend.opener),
        store_url=url,
    )
    h.engine = Engine(store=h.engine.store, opener=backend.opener, fault=h.fault)
    yield h
    h.engine.store.close()
