"""SIGKILL between the steps of create and approve; after restart nothing is half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    Task,
)
from porch.engine import Engine
from porch.store import SqliteStore
from tests.engine.crash_worker import opener

NS = "default"
ROOT = Path(__file__).resolve().parents[2]


def _git(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", str(data / "blue.git"), *args], capture_output=True, text=True
    )


def _pr(package: str, ws: str, tasks: list[Task] | None = None) -> PackageRevision:
    return PackageRevision(
        metadata=ObjectMeta(namespace=NS),
        spec=PackageRevisionSpec(
            package_name=package, repository="blue", workspace_name=ws, tasks=tasks or []
        ),
    )


def _advance(engine: Engine, pr: PackageRevision, lifecycle: str, endpoint: Endpoint) -> None:
    cur = engine.get(NS, pr.metadata.name)
    cur.spec.lifecycle = lifecycle
    engine.update(cur, endpoint=endpoint)


def _setup(data: Path) -> dict[str, dict[str, str]]:
    pygit2.init_repository(str(data / "blue.git"), bare=True, initial_head="main")
    engine = Engine(store=SqliteStore(data / "store.db"), opener=opener)
    engine.register_repository(
        Repository(
            metadata=ObjectMeta(name="blue", namespace=NS),
            spec=RepositorySpec(
                type="git",
                git=GitRepositorySpec(repo=str(data / "blue.git"), create_branch=True),
            ),
        )
    )
    prev = ""
    for ws in ("ws1", "ws2", "ws3"):
        tasks = (
            [Task(type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(prev)))]
            if prev
            else []
        )
        pr = engine.create(_pr("app", ws, tasks))
        _advance(engine, pr, "Proposed", Endpoint.MAIN)
        if ws != "ws3":
            _advance(engine, pr, "Published", Endpoint.APPROVAL)
        prev = pr.metadata.name
    published = {
        p.metadata.name: engine.get_resources(NS, p.metadata.name).spec.resources
        for p in engine.list(NS, field_selector="spec.lifecycle=Published")[0]
    }
    engine.store.close()
    return published


def _run_worker(data: Path, op: str, point: str) -> int:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.engine.crash_worker", str(data), op, point],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def _check_after_restart(data: Path, published: dict[str, dict[str, str]]) -> Engine:
    fsck = _git(data, "fsck", "--strict")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    engine = Engine(store=SqliteStore(data / "store.db"), opener=opener)
    engine.start()
    for name, files in published.items():
        got = engine.get(NS, name)
        assert got.spec.lifecycle == "Published"
        assert engine.get_resources(NS, name).spec.resources == files
    for pr in engine.list(NS)[0]:
        files = engine.get_resources(NS, pr.metadata.name).spec.resources
        assert "Kptfile" in files, pr.metadata.name
    return engine


CREATE_POINTS = ["create:before-write", "create:after-write", "commit"]
APPROVE_POINTS = ["approve:after-publish", "commit"]
RANDOM = [f"random:{seed}:400" for seed in range(6)]


@pytest.mark.parametrize("point", CREATE_POINTS + RANDOM)
def test_kill_during_create(tmp_path: Path, point: str) -> None:
    published = _setup(tmp_path)
    _run_worker(tmp_path, "create", point)
    engine = _check_after_restart(tmp_path, published)
    names = {p.metadata.name: p for p in engine.list(NS)[0]}
    if "blue.new.ws1" in names:
        files = engine.get_resources(NS, "blue.new.ws1").spec.resources
        assert set(files) >= {"Kptfile", "README.md", "package-context.yaml"}
        assert names["blue.new.ws1"].spec.lifecycle == "Draft"
    else:
        engine.create(_pr("new", "ws1"))  # the interrupted create can simply be retried
    engine.store.close()


@pytest.mark.parametrize("point", APPROVE_POINTS + RANDOM)
def test_kill_during_approve(tmp_path: Path, point: str) -> None:
    published = _setup(tmp_path)
    _run_worker(tmp_path, "approve", point)
    engine = _check_after_restart(tmp_path, published)
    pr = engine.get(NS, "blue.app.ws3")
    tags = _git(tmp_path, "tag", "--list").stdout.split()
    branches = _git(tmp_path, "branch", "--list", "--format=%(refname:short)").stdout.split()
    if pr.spec.lifecycle == "Published":
        assert pr.spec.revision == 3
        assert "app/v3" in tags and "proposed/app/ws3" not in branches
    else:
        assert pr.spec.lifecycle == "Proposed" and pr.spec.revision == 0
        assert "app/v3" not in tags and "proposed/app/ws3" in branches
        _advance(engine, pr, "Published", Endpoint.APPROVAL)
        assert engine.get(NS, "blue.app.ws3").spec.revision == 3
    engine.store.close()


def test_a_ref_lock_left_by_a_kill_is_removed_and_reported_at_start(tmp_path: Path) -> None:
    """SIGKILL between locking a ref and renaming the lock leaves ``<ref>.lock``: git (and so
    every later update of that revision) then fails with "failed to lock file" until it goes."""
    _setup(tmp_path)
    engine = Engine(store=SqliteStore(tmp_path / "store.db"), opener=opener)
    engine.start()
    name = engine.create(_pr("locked", "ws1")).metadata.name
    engine.store.close()
    engine = Engine(store=SqliteStore(tmp_path / "store.db"), opener=opener)
    assert engine.start() == []  # this start leaves a sync mark: the refs will not change
    engine.store.close()
    lock = tmp_path / "blue.git" / "refs" / "heads" / "drafts" / "locked" / "ws1.lock"
    lock.write_text("")
    old = time.time() - 60  # the writer died a minute ago
    os.utime(lock, (old, old))
    young = tmp_path / "blue.git" / "refs" / "heads" / "main.lock"
    young.write_text("")  # a lock taken just now may belong to a live writer: left alone
    engine = Engine(store=SqliteStore(tmp_path / "store.db"), opener=opener)
    notes = engine.start()
    assert notes == ["removed refs/heads/drafts/locked/ws1.lock left by an interrupted ref update"]
    assert not lock.exists() and young.exists()
    young.unlink()
    _advance(engine, engine.get(NS, name), "Proposed", Endpoint.MAIN)
    assert engine.get(NS, name).spec.lifecycle == "Proposed"
    engine.store.close()
