"""Fixtures for repository adapter tests: bare repositories checked with ``git fsck``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from porch.repository.git import GitRepository
from porch.testing.git_repos import FsckRegistry, new_bare


@pytest.fixture
def fsck() -> Iterator[FsckRegistry]:
    registry = FsckRegistry()
    yield registry
    registry.check()


@pytest.fixture
def bare(tmp_path: Path, fsck: FsckRegistry) -> Path:
    """An empty bare repository (branch main unborn), fsck-checked after the test."""
    return fsck.add(new_bare(tmp_path / "repo.git"))


@pytest.fixture
def make_bare(tmp_path: Path, fsck: FsckRegistry) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        return fsck.add(new_bare(tmp_path / name))

    return make


@pytest.fixture
def repo(bare: Path) -> GitRepository:
    return GitRepository(str(bare), create_branch=True)
