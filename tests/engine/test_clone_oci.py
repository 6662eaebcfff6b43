"""clone from OCI upstreams and upgrade between OCI revisions (spec §4.2, §4.4, §5.6).

Runs the server's own engine wiring (``build_engine`` → ``make_opener``) against Debian's
``docker-registry``: an OCI repository ``images`` holds the blueprints, a git repository
``blue`` the downstream packages. Skips without the binary unless PORCH_REQUIRE_OCI=1.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    ObjectMeta,
    OciPackage,
    PackageCloneTaskSpec,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    PackageUpgradeTaskSpec,
    Task,
    UpstreamPackage,
)
from porch.engine import Engine
from porch.errors import BadRequest, Invalid, NotFound, Unauthorized, Unavailable
from porch.server import Settings, build_engine
from porch.tasks.clone import OciUpstreamLock, UpstreamLock, set_upstream
from porch.testing.git_repos import new_bare
from porch.testing.oci_registry import (
    OciRegistry,
    free_port,
)
from porch.testing.postgres import store_url_from_env
from tests._oci import registry_or_skip

NS = "default"
CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: "3"
"""
_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def registry() -> Iterator[OciRegistry]:
    with registry_or_skip() as reg:
        yield reg


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = build_engine(
        Settings(data_dir=tmp_path / "data", store=store_url_from_env(tmp_path), sync=False)
    )
    yield eng
    eng.close()
    eng.store.close()


def _register_oci(
    engine: Engine, name: str, registry: str, secret: str = "", deployment: bool = False
) -> None:
    spec: dict[str, Any] = {"type": "oci", "deployment": deployment, "oci": {"registry": registry}}
    if secret:
        spec["oci"]["secretRef"] = {"name": secret}
    engine.objects.create("Repository", {"metadata": {"name": name, "namespace": NS}, "spec": spec})


def _register_git(engine: Engine, name: str, root: Path) -> None:
    bare = new_bare(root / f"{name}.git")
    engine.objects.create(
        "Repository",
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "type": "git",
                "git": {"repo": str(bare), "branch": "main", "createBranch": True},
            },
        },
    )


def _create(engine: Engine, repo: str, package: str, workspace: str, task: Task) -> PackageRevision:
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package, repository=repo, workspace_name=workspace, tasks=[task]
            ),
        )
    )


def _init() -> Task:
    return Task(type="init")


def _clone_ref(name: str) -> Task:
    return Task(
        type="clone",
        clone=PackageCloneTaskSpec(
            upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(name))
        ),
    )


def _clone_image(image: str) -> Task:
    return Task(
        type="clone",
        clone=PackageCloneTaskSpec(upstream_ref=UpstreamPackage(oci=OciPackage(image=image))),
    )


def _set_file(engine: Engine, name: str, path: str, text: str) -> None:
    prr = engine.get_resources(NS, name)
    prr.spec.resources = {**prr.spec.resources, path: text}
    engine.update_resources(prr)


def _files(engine: Engine, name: str) -> dict[str, str]:
    return engine.get_resources(NS, name).spec.resources


def _publish(engine: Engine, name: str) -> PackageRevision:
    for lifecycle, endpoint in (("Proposed", Endpoint.MAIN), ("Published", Endpoint.APPROVAL)):
        current = engine.get(NS, name)
        current.spec.lifecycle = lifecycle
        engine.update(current, endpoint=endpoint)
    return engine.get(NS, name)


def _blueprints(
    engine: Engine, registry: OciRegistry
) -> tuple[str, PackageRevision, PackageRevision]:
    """``images``: package ``base`` v1 (color blue) and v2 (color green, a new label)."""
    spec = registry.registry(f"clone/t{next(_prefixes)}")
    _register_oci(engine, "images", spec)
    v1 = _create(engine, "images", "base", "v1", _init())
    _set_file(engine, v1.metadata.name, "cm.yaml", CM)
    v1 = _publish(engine, v1.metadata.name)
    edit = Task(
        type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(v1.metadata.name))
    )
    v2 = _create(engine, "images", "base", "v2", edit)
    _set_file(
        engine,
        v2.metadata.name,
        "cm.yaml",
        CM.replace("color: blue", "color: green").replace(
            "  name: settings\n", "  name: settings\n  labels:\n    tier: web\n"
        ),
    )
    v2 = _publish(engine, v2.metadata.name)
    return spec, v1, v2


def _digest(registry: OciRegistry, spec: str, package: str, tag: str) -> str:
    """The manifest digest the registry itself reports for ``<spec>/<package>:<tag>``."""
    name = f"{spec.split('/', 1)[1]}/{package}"
    answer = httpx.head(
        f"{registry.url}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert answer.status_code == 200, answer
    digest = answer.headers["docker-content-digest"]
    assert digest.startswith("sha256:")
    return digest


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _upstream(files: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    kptfile = yaml.safe_load(files["Kptfile"])
    return kptfile["upstream"], kptfile["upstreamLock"]


def test_clone_and_upgrade_between_oci_revisions(
    engine: Engine, registry: OciRegistry, tmp_path: Path
) -> None:
    spec, v1, v2 = _blueprints(engine, registry)
    assert (v1.spec.revision, v2.spec.revision) == (1, 2)
    _register_git(engine, "blue", tmp_path)

    # clone from a registered OCI revision: kpt's `type: oci` upstream, locked to the digest
    local = _create(engine, "blue", "site", "v1", _clone_ref(v1.metadata.name))
    files = _files(engine, local.metadata.name)
    upstream, lock = _upstream(files)
    v1_digest = _digest(registry, spec, "base", "v1")
    assert upstream == {"type": "oci", "oci": {"image": f"{spec}/base:v1"}}
    assert lock == {"type": "oci", "oci": {"image": f"{spec}/base@{v1_digest}"}}
    assert yaml.safe_load(files["Kptfile"])["metadata"]["name"] == "site"
    assert yaml.safe_load(files["cm.yaml"])["data"] == {"color": "blue", "size": "3"}

    # a local change downstream, then the upgrade v1 → v2 keeps it and takes upstream's
    _set_file(engine, local.metadata.name, "cm.yaml", files["cm.yaml"].replace('"3"', '"5"'))
    local = _publish(engine, local.metadata.name)
    upgrade = Task(
        type="upgrade",
        upgrade=PackageUpgradeTaskSpec(
            old_upstream_ref=PackageRevisionRef(v1.metadata.name),
            new_upstream_ref=PackageRevisionRef(v2.metadata.name),
            local_package_revision_ref=PackageRevisionRef(local.metadata.name),
        ),
    )
    upgraded = _create(engine, "blue", "site", "v2", upgrade)
    files = _files(engine, upgraded.metadata.name)
    cm = yaml.safe_load(files["cm.yaml"])
    assert cm["data"] == {"color": "green", "size": "5"}
    assert cm["metadata"]["labels"] == {"tier": "web"}
    upstream, lock = _upstream(files)
    v2_digest = _digest(registry, spec, "base", "v2")
    assert v2_digest != v1_digest
    assert upstream == {"type": "oci", "oci": {"image": f"{spec}/base:v2"}}
    assert lock == {"type": "oci", "oci": {"image": f"{spec}/base@{v2_digest}"}}
    assert "MergeConflicts" not in files["Kptfile"]
    _publish(engine, upgraded.metadata.name)

    # upgrading within the OCI repository itself (downstream and upstream both OCI)
    copy = _create(engine, "images", "copy", "v1", _clone_ref(v1.metadata.name))
    copy = _publish(engine, copy.metadata.name)
    moved = _create(
        engine,
        "images",
        "copy",
        "v2",
        Task(
            type="upgrade",
            upgrade=PackageUpgradeTaskSpec(
                old_upstream_ref=PackageRevisionRef(v1.metadata.name),
                new_upstream_ref=PackageRevisionRef(v2.metadata.name),
                local_package_revision_ref=PackageRevisionRef(copy.metadata.name),
            ),
        ),
    )
    assert (
        yaml.safe_load(_files(engine, moved.metadata.name)["cm.yaml"])["data"]["color"] == "green"
    )


def test_clone_from_oci_image(engine: Engine, registry: OciRegistry, tmp_path: Path) -> None:
    spec, v1, v2 = _blueprints(engine, registry)
    _register_git(engine, "blue", tmp_path)
    _register_oci(
        engine, "deploy", registry.registry(f"deploy/t{next(_prefixes)}"), deployment=True
    )
    v2_digest = _digest(registry, spec, "base", "v2")
    image = f"{registry.host}/{spec.split('/', 1)[1]}/base:v2"

    by_tag = _create(engine, "blue", "web", "ws1", _clone_image(image))
    files = _files(engine, by_tag.metadata.name)
    upstream, lock = _upstream(files)
    assert upstream == {"type": "oci", "oci": {"image": image}}
    assert lock == {"type": "oci", "oci": {"image": image.replace(":v2", f"@{v2_digest}")}}
    assert yaml.safe_load(files["cm.yaml"])["data"]["color"] == "green"
    assert [t.type for t in engine.get(NS, by_tag.metadata.name).spec.tasks] == ["clone"]
    clone_spec = engine.get(NS, by_tag.metadata.name).spec.tasks[0].clone
    assert clone_spec is not None and clone_spec.upstream_ref is not None
    assert clone_spec.upstream_ref.oci == OciPackage(image=image)

    # by digest, into an OCI deployment repository (which gets its own package context)
    pinned = image.replace(":v2", f"@{v2_digest}")
    by_digest = _create(engine, "deploy", "web", "ws1", _clone_image(pinned))
    files = _files(engine, by_digest.metadata.name)
    assert _upstream(files)[1] == {"type": "oci", "oci": {"image": pinned}}
    assert yaml.safe_load(files["package-context.yaml"])["data"]["name"] == "web"

    with pytest.raises(NotFound, match="not found"):
        _create(engine, "blue", "other", "ws1", _clone_image(image.replace(":v2", ":v9")))
    with pytest.raises(BadRequest, match="invalid OCI image reference"):
        _create(engine, "blue", "other", "ws1", _clone_image("no-slash"))
    with pytest.raises(Unavailable, match="is unavailable"):
        _create(engine, "blue", "other", "ws1", _clone_image(f"127.0.0.1:{free_port()}/x/y:v1"))
    with pytest.raises(Invalid, match="placeholder"):
        _create(engine, "blue", "other", "ws1", _clone_ref("images.base.main"))
    names = {pr.metadata.name for pr in engine.list(NS)[0]}
    assert not any(".other." in n for n in names)  # nothing half-made


def test_clone_from_oci_image_with_registry_credentials(engine: Engine, tmp_path: Path) -> None:
    with registry_or_skip(basic=("alice", "s3cret-pw")) as secured:
        engine.objects.create(
            "Secret",
            {
                "metadata": {"name": "registry-auth", "namespace": NS},
                "type": "kubernetes.io/basic-auth",
                "data": {"username": _b64("alice"), "password": _b64("s3cret-pw")},
            },
        )
        _register_git(engine, "blue", tmp_path)
        image = f"{secured.host}/private/base:v1"
        # Without a registered repository for that registry the clone is anonymous: refused.
        with pytest.raises(Unauthorized, match=secured.host) as refused:
            _create(engine, "blue", "web", "ws1", _clone_image(image))
        assert "s3cret" not in str(refused.value)
        _register_oci(engine, "private", secured.registry("private"), secret="registry-auth")
        v1 = _create(engine, "private", "base", "v1", _init())
        _set_file(engine, v1.metadata.name, "cm.yaml", CM)
        _publish(engine, v1.metadata.name)
        # The registered repository's secretRef covers images under its registry and prefix.
        pr = _create(engine, "blue", "web", "ws1", _clone_image(image))
        assert yaml.safe_load(_files(engine, pr.metadata.name)["cm.yaml"])["data"]["size"] == "3"


def test_kptfile_upstream_switches_between_git_and_oci() -> None:
    """The Kptfile edit alone (no registry): comments, updateStrategy and other fields stay."""
    kptfile = (
        "apiVersion: kpt.dev/v1\n"
        "kind: Kptfile\n"
        "metadata:\n"
        "  name: base # the name\n"
        "upstream:\n"
        "  type: git\n"
        "  git:\n"
        "    repo: https://example.com/b.git\n"
        "    directory: /base\n"
        "    ref: v1\n"
        "  updateStrategy: resource-merge\n"
        "upstreamLock:\n"
        "  type: git\n"
        "  git:\n"
        "    repo: https://example.com/b.git\n"
        "    directory: /base\n"
        "    ref: v1\n"
        "    commit: abc\n"
        "info:\n"
        "  description: social network # a comment\n"
    )
    image = "registry.example.com:5000/team/base:v2"
    text = set_upstream(kptfile, name="site", upstream=OciUpstreamLock(image, "sha256:12ab"))
    doc = yaml.safe_load(text)
    assert doc["upstream"] == {
        "type": "oci",
        "oci": {"image": image},
        "updateStrategy": "resource-merge",
    }
    assert doc["upstreamLock"] == {
        "type": "oci",
        "oci": {"image": "registry.example.com:5000/team/base@sha256:12ab"},
    }
    assert "name: site # the name" in text and "# a comment" in text
    pinned = OciUpstreamLock("localhost:5000/x/base@sha256:old", "sha256:new")
    assert pinned.locked_image == "localhost:5000/x/base@sha256:new"
    assert OciUpstreamLock("http://localhost:5000/base", "sha256:1").locked_image == (
        "http://localhost:5000/base@sha256:1"
    )
    back = set_upstream(
        text, name="site", upstream=UpstreamLock("https://e.com/b", "/d", "v3", "c")
    )
    doc = yaml.safe_load(back)
    assert doc["upstream"]["type"] == "git" and "oci" not in doc["upstream"]
    assert doc["upstreamLock"] == {
        "type": "git",
        "git": {"repo": "https://e.com/b.git", "directory": "d", "ref": "v3", "commit": "c"},
    }
    assert doc["upstream"]["updateStrategy"] == "resource-merge"
    # a git → git change leaves a Kptfile without OCI sections as kptfile_set_upstream wrote it
    git_only = set_upstream(
        kptfile, name="site", upstream=UpstreamLock("https://e.com/b", "", "v3", "c")
    )
    assert "oci" not in yaml.safe_load(git_only)["upstream"]
