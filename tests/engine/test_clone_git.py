"""clone from a git URL (spec §4.2): file:// and smart HTTP with credentials from a Secret."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml

from porch.api.types import (
    GitPackage,
    ObjectMeta,
    PackageCloneTaskSpec,
    PackageRevision,
    PackageRevisionSpec,
    SecretRef,
    Task,
    UpstreamPackage,
)
from porch.engine import Engine
from porch.errors import NotFound, Unavailable
from porch.repository.memory import MemoryRepository
from porch.server import make_upstream_fetcher
from porch.store import SqliteStore
from porch.testing.git_server import GitHttpServer

NS = "default"
KPTFILE = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: base # upstream name\n"


def _git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def _upstream(root: Path) -> Path:
    work = root / "work"
    (work / "blueprints" / "base").mkdir(parents=True)
    (work / "blueprints" / "base" / "Kptfile").write_text(KPTFILE)
    (work / "blueprints" / "base" / "cm.yaml").write_text("kind: ConfigMap\n")
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "base")
    _git(work, "tag", "blueprints/base/v1")
    bare = root / "up.git"
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def _engine(tmp: Path) -> Engine:
    engine = Engine(
        store=SqliteStore(tmp / "s.db"),
        opener=lambda repo: MemoryRepository(url="memory://red"),
        fetch_upstream=make_upstream_fetcher(tmp),
    )
    engine.objects.create(
        "Repository",
        {
            "metadata": {"name": "red", "namespace": NS},
            "spec": {"type": "git", "deployment": True, "git": {"repo": "memory://red"}},
        },
    )
    return engine


def _clone(engine: Engine, package: str, git: GitPackage) -> PackageRevision:
    task = Task(type="clone", clone=PackageCloneTaskSpec(upstream_ref=UpstreamPackage(git=git)))
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package, repository="red", workspace_name="ws1", tasks=[task]
            ),
        )
    )


def test_clone_from_file_url(tmp_path: Path) -> None:
    bare = _upstream(tmp_path)
    engine = _engine(tmp_path)
    url = f"file://{bare}"
    pr = _clone(engine, "site", GitPackage(repo=url, ref="v1", directory="/blueprints/base"))
    files = engine.get_resources(NS, pr.metadata.name).spec.resources
    kptfile = yaml.safe_load(files["Kptfile"])
    commit = _git(tmp_path, "--git-dir", str(bare), "rev-parse", "blueprints/base/v1^{commit}")
    assert kptfile["metadata"]["name"] == "site"
    assert kptfile["upstream"]["git"] == {
        "repo": url,  # already ends in .git, so nothing is appended
        "directory": "blueprints/base",
        "ref": "v1",
    }
    assert kptfile["upstreamLock"]["git"]["commit"] == commit
    assert "name: site # upstream name" in files["Kptfile"]  # the comment stays with the key
    assert files["cm.yaml"] == "kind: ConfigMap\n"
    assert yaml.safe_load(files["package-context.yaml"])["data"]["package-path"] == "site"
    with pytest.raises(NotFound, match="cannot find package blueprints/nope@v1"):
        _clone(engine, "other", GitPackage(repo=url, ref="v1", directory="blueprints/nope"))
    with pytest.raises(Unavailable):
        _clone(engine, "other", GitPackage(repo=f"file://{tmp_path}/missing.git", ref="v1"))
    with pytest.raises(NotFound, match="no-such-ref") as unknown:
        _clone(
            engine, "other", GitPackage(repo=url, ref="no-such-ref", directory="blueprints/base")
        )
    assert unknown.value.code == 404
    assert [pr.spec.package_name for pr in engine.list(NS)[0]] == ["site"]  # nothing else made
    engine.store.close()


def test_clone_over_http_with_basic_auth_secret(tmp_path: Path) -> None:
    bare = _upstream(tmp_path)
    engine = _engine(tmp_path)
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    engine.objects.create(
        "Secret",
        {
            "metadata": {"name": "up-auth", "namespace": NS},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": b64("alice"), "password": b64("s3cret")},
        },
    )
    with GitHttpServer(bare.parent, basic=("alice", "s3cret")) as server:
        url = server.repo_url(bare.name)
        pr = _clone(
            engine,
            "site",
            GitPackage(
                repo=url, ref="main", directory="blueprints/base", secret_ref=SecretRef("up-auth")
            ),
        )
        assert "Kptfile" in engine.get_resources(NS, pr.metadata.name).spec.resources
        with pytest.raises(Unavailable) as err:
            _clone(engine, "other", GitPackage(repo=url, ref="main", directory="blueprints/base"))
        assert "s3cret" not in str(err.value)
    engine.store.close()
