"""Porch's own e2e fixture over smart HTTP: register it, clone from it, upgrade with every
strategy, and let real ``kpt pkg get``/``kpt pkg update`` consume what we published."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
import yaml

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageCloneTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    PackageUpgradeTaskSpec,
    Repository,
    RepositorySpec,
    Task,
    UpstreamPackage,
)
from porch.engine import Engine
from porch.server import make_opener, make_upstream_fetcher
from porch.store import SqliteStore
from porch.testing.git_server import GitHttpServer

NS = "default"
BUNDLE = (
    Path(__file__).resolve().parents[3] / "shared/conformance/porch-fixtures/test-blueprints.bundle"
)
STRATEGIES = ("resource-merge", "fast-forward", "force-delete-replace", "copy-merge")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Engine, GitHttpServer]]:
    if not BUNDLE.exists():
        pytest.skip(f"fixture bundle {BUNDLE} is not present (../shared is missing)")
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(BUNDLE), str(root / "test-blueprints.git")],
        check=True,
    )
    pygit2.init_repository(str(root / "deploy.git"), bare=True, initial_head="main")
    with GitHttpServer(root) as server:
        data = tmp_path / "data"
        engine = Engine(
            store=SqliteStore(tmp_path / "store.db"),
            opener=make_opener(data),
            fetch_upstream=make_upstream_fetcher(data),
        )
        for name, create in (("test-blueprints", False), ("deploy", True)):
            engine.register_repository(
                Repository(
                    metadata=ObjectMeta(name=name, namespace=NS),
                    spec=RepositorySpec(
                        type="git",
                        git=GitRepositorySpec(
                            repo=server.repo_url(f"{name}.git"), branch="main", create_branch=create
                        ),
                    ),
                )
            )
        yield engine, server
        engine.store.close()


def _by_ref(engine: Engine, ref: str) -> PackageRevision:
    package, _, version = ref.partition("/")
    for pr in engine.list(NS)[0]:
        if (
            pr.spec.repository == "test-blueprints"
            and pr.spec.package_name == package
            and pr.spec.revision == int(version.lstrip("v"))
        ):
            return pr
    raise AssertionError(f"{ref} not found")


def _create(engine: Engine, package: str, workspace: str, task: Task) -> PackageRevision:
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package, repository="deploy", workspace_name=workspace, tasks=[task]
            ),
        )
    )


def _publish(engine: Engine, pr: PackageRevision) -> PackageRevision:
    current = engine.get(NS, pr.metadata.name)
    current.spec.lifecycle = "Proposed"
    current = engine.update(current)
    current.spec.lifecycle = "Published"
    return engine.update(current, endpoint=Endpoint.APPROVAL)


def _resources(engine: Engine, pr: PackageRevision) -> dict[str, object]:
    files = engine.get_resources(NS, pr.metadata.name).spec.resources
    out: dict[str, object] = {}
    for path, text in files.items():
        if path.endswith((".yaml", ".yml")):
            docs = [d for d in yaml.safe_load_all(text) if d]
            for d in docs:
                d.get("metadata", {}).get("annotations", {}).pop(
                    "internal.kpt.dev/upstream-identifier", None
                )
                if not d.get("metadata", {}).get("annotations", True):
                    del d["metadata"]["annotations"]
            out[path] = docs
    return out


def test_registering_the_fixture_yields_sixteen_revisions(
    served: tuple[Engine, GitHttpServer],
) -> None:
    engine, _ = served
    revisions = [pr for pr in engine.list(NS)[0] if pr.spec.repository == "test-blueprints"]
    assert len(revisions) == 16
    assert sum(1 for pr in revisions if pr.spec.revision == -1) == 6


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_clone_basens_v1_then_upgrade_to_v3(
    served: tuple[Engine, GitHttpServer], strategy: str
) -> None:
    engine, _ = served
    v1, v3 = _by_ref(engine, "basens/v1"), _by_ref(engine, "basens/v3")
    clone = Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(v1.metadata.name))
        ),
    )
    local = _publish(engine, _create(engine, "site", "v1", clone))
    upgrade = Task(
        type="upgrade",
        upgrade=PackageUpgradeTaskSpec(
            old_upstream_ref=PackageRevisionRef(v1.metadata.name),
            new_upstream_ref=PackageRevisionRef(v3.metadata.name),
            local_package_revision_ref=PackageRevisionRef(local.metadata.name),
            strategy=strategy,
        ),
    )
    upgraded = _create(engine, "site", "v2", upgrade)
    files = engine.get_resources(NS, upgraded.metadata.name).spec.resources
    kptfile = yaml.safe_load(files["Kptfile"])
    assert kptfile["metadata"]["name"] == "site"
    assert kptfile["upstream"]["git"]["ref"] == "basens/v3"
    assert kptfile["upstreamLock"]["git"]["commit"] == v3.status.self_lock.git.commit  # type: ignore[union-attr]
    # no local edits: every strategy lands on v3's resources
    ours, theirs = _resources(engine, upgraded), _resources(engine, v3)
    assert ours == theirs


@pytest.mark.skipif(shutil.which("kpt") is None, reason="kpt is not installed")
def test_kpt_consumes_what_we_published(
    served: tuple[Engine, GitHttpServer], tmp_path: Path
) -> None:
    engine, server = served
    v1, v3 = _by_ref(engine, "basens/v1"), _by_ref(engine, "basens/v3")
    clone = Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(v1.metadata.name))
        ),
    )
    first = _publish(engine, _create(engine, "site", "v1", clone))
    upgrade = Task(
        type="upgrade",
        upgrade=PackageUpgradeTaskSpec(
            old_upstream_ref=PackageRevisionRef(v1.metadata.name),
            new_upstream_ref=PackageRevisionRef(v3.metadata.name),
            local_package_revision_ref=PackageRevisionRef(first.metadata.name),
        ),
    )
    _publish(engine, _create(engine, "site", "v2", upgrade))
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }

    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=ws, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        return result.stdout

    run("git", "init", "-q", "-b", "main")
    url = server.repo_url("deploy.git")
    run("kpt", "pkg", "get", f"{url}/site@site/v1", "mysite")
    got = yaml.safe_load((ws / "mysite" / "Kptfile").read_text())
    assert got["upstreamLock"]["git"]["ref"] == "site/v1"
    assert (ws / "mysite" / "namespace.yaml").exists() or any((ws / "mysite").glob("*.yaml"))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "fetched")
    run("kpt", "pkg", "update", "mysite@site/v2")
    updated = yaml.safe_load((ws / "mysite" / "Kptfile").read_text())
    assert updated["upstream"]["git"]["ref"] == "site/v2"
    # the update brought our v2's resources: compare every resource file we published
    v2_files = engine.get_resources(NS, "deploy.site.v2").spec.resources
    for path, text in v2_files.items():
        if path.endswith(".yaml"):
            mine = [d for d in yaml.safe_load_all(text) if d]
            theirs = [d for d in yaml.safe_load_all((ws / "mysite" / path).read_text()) if d]
            assert mine == theirs, path
