"""Differential tests: our ``upgrade`` against the real ``kpt pkg update`` (and ``clone`` against
``kpt pkg get``) on the same upstream/local/new-upstream triples.

Each triple is an upstream package v1, local edits made after ``kpt pkg get``, and an upstream
v2. kpt fetches v1, we apply the local edits, kpt updates to v2; our merge gets the same three
file maps. Files must come out byte-identical, except the Kptfile's ``upstream``/``upstreamLock``
(set afterwards by the task from Porch's own locator; see docs/compatibility.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from porch.krm import yaml as krm_yaml
from porch.krm.update import add_merge_comments, upgrade

KPT = shutil.which("kpt")
pytestmark = pytest.mark.skipif(KPT is None, reason="kpt is not installed on this machine")

Files = dict[str, str]


def _kptfile(name: str = "pkg", extra: str = "") -> str:
    return (
        f"apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: {name}\n"
        f"info:\n  description: sample\n{extra}"
    )


DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ns1
  labels:
    app: web
spec:
  replicas: 1 # how many
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.20
        args:
        - --port=80
        env:
        - name: MODE
          value: prod
        ports:
        - containerPort: 80
        volumeMounts:
        - name: data
          mountPath: /data
      volumes:
      - name: data
        emptyDir: {}
"""

CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: ns1
data:
  color: blue
  size: "3"
"""

SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ns1
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
"""

CUSTOM = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  items:
  - name: a
    size: 1
  - name: b
    size: 2
  mode: fast
"""


def base() -> Files:
    return {
        "Kptfile": _kptfile(),
        "deploy.yaml": DEPLOY,
        "config.yaml": CM + "---\n" + SVC,
        "custom.yaml": CUSTOM,
        "README.md": "# pkg\n\nA package.\n",
    }


Edit = Callable[[Files], None]


def rep(path: str, old: str, new: str, count: int = 1) -> Edit:
    def apply(files: Files) -> None:
        assert old in files[path], f"{old!r} not in {path}"
        files[path] = files[path].replace(old, new, count)

    return apply


def put(path: str, text: str) -> Edit:
    def apply(files: Files) -> None:
        files[path] = text

    return apply


def drop(path: str) -> Edit:
    def apply(files: Files) -> None:
        del files[path]

    return apply


def add_mutator(image: str, config: dict[str, str]) -> Edit:
    def apply(files: Files) -> None:
        kf = krm_yaml.load_object(files["Kptfile"], filename="Kptfile")
        kf["pipeline"]["mutators"].append(
            krm_yaml.from_plain({"image": image, "configMap": config})
        )
        files["Kptfile"] = krm_yaml.dumps(kf)

    return apply


@dataclass
class Triple:
    name: str
    upstream: list[Edit] = field(default_factory=list)  # v1 -> v2
    local: list[Edit] = field(default_factory=list)  # after kpt pkg get
    v1: Callable[[], Files] = base


SUB_KF = _kptfile("sub")
SUB_CM = CM.replace("settings", "sub-settings")


def with_sub() -> Files:
    files = base()
    files["sub/Kptfile"] = SUB_KF
    files["sub/cm.yaml"] = SUB_CM
    return files


TRIPLES = [
    Triple(
        "image-up-replicas-local",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("deploy.yaml", "replicas: 1", "replicas: 3")],
    ),
    Triple(
        "same-scalar-both-differ",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.19")],
    ),
    Triple(
        "same-scalar-both-same",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.22")],
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.22")],
    ),
    Triple(
        "upstream-adds-resource-same-file",
        [rep("config.yaml", "---\n", "---\n" + CM.replace("settings", "extra") + "---\n")],
    ),
    Triple("upstream-adds-file", [put("extra.yaml", CM.replace("settings", "extra"))]),
    Triple("upstream-removes-resource-untouched", [put("config.yaml", CM)]),
    Triple(
        "upstream-removes-resource-modified-locally",
        [put("config.yaml", CM)],
        [rep("config.yaml", "port: 80", "port: 8080")],
    ),
    Triple(
        "local-removes-resource-upstream-modifies",
        [rep("config.yaml", "port: 80", "port: 81")],
        [lambda f: f.__setitem__("config.yaml", f["config.yaml"].split("---\n")[0])],
    ),
    Triple(
        "local-adds-resource",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("config.yaml", "data:\n", "data:\n  local: x\n")],
    ),
    Triple(
        "local-adds-file",
        [rep("custom.yaml", "mode: fast", "mode: slow")],
        [put("mine.yaml", CM.replace("settings", "mine"))],
    ),
    Triple("upstream-deletes-file", [drop("custom.yaml")]),
    Triple(
        "upstream-deletes-file-local-modified",
        [drop("custom.yaml")],
        [rep("custom.yaml", "mode: fast", "mode: local")],
    ),
    Triple(
        "container-added-up-env-local",
        [
            rep(
                "deploy.yaml",
                "      volumes:",
                "      - name: sidecar\n        image: busybox\n      volumes:",
            )
        ],
        [
            rep(
                "deploy.yaml",
                "          value: prod\n",
                "          value: prod\n        - name: EXTRA\n          value: yes-please\n",
            )
        ],
    ),
    Triple(
        "ports-merge-by-containerPort",
        [
            rep(
                "deploy.yaml",
                "        - containerPort: 80\n",
                "        - containerPort: 80\n        - containerPort: 9090\n",
            )
        ],
        [
            rep(
                "deploy.yaml",
                "        - containerPort: 80\n",
                "        - containerPort: 80\n        - containerPort: 443\n",
            )
        ],
    ),
    Triple("atomic-args-up", [rep("deploy.yaml", "--port=80", "--port=81")]),
    Triple(
        "atomic-args-local",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("deploy.yaml", "--port=80", "--port=82")],
    ),
    Triple(
        "atomic-args-both",
        [rep("deploy.yaml", "--port=80", "--port=81")],
        [rep("deploy.yaml", "--port=80", "--port=82")],
    ),
    Triple(
        "labels-both-add",
        [
            rep(
                "deploy.yaml",
                "  labels:\n    app: web\n",
                "  labels:\n    app: web\n    tier: front\n",
            )
        ],
        [
            rep(
                "deploy.yaml",
                "  labels:\n    app: web\n",
                "  labels:\n    app: web\n    owner: me\n",
            )
        ],
    ),
    Triple("field-removed-upstream", [rep("config.yaml", '  size: "3"\n', "")]),
    Triple(
        "field-removed-locally-unchanged-upstream",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("config.yaml", '  size: "3"\n', "")],
    ),
    Triple(
        "field-removed-locally-changed-upstream",
        [rep("config.yaml", 'size: "3"', 'size: "4"')],
        [rep("config.yaml", '  size: "3"\n', "")],
    ),
    Triple(
        "local-comment-upstream-value",
        [rep("config.yaml", "color: blue", "color: red")],
        [rep("config.yaml", "color: blue", "color: blue # my favourite")],
    ),
    Triple("upstream-comment", [rep("config.yaml", "color: blue", "color: blue # from upstream")]),
    Triple(
        "local-rename-upstream-change",
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21")],
        [rep("config.yaml", "name: settings", "name: my-settings")],
    ),
    Triple(
        "local-namespace-change",
        [rep("config.yaml", "color: blue", "color: green")],
        [rep("config.yaml", "namespace: ns1", "namespace: prod", 2)],
    ),
    Triple("readme-upstream-only", [put("README.md", "# pkg\n\nBetter text.\n")]),
    Triple(
        "readme-both",
        [put("README.md", "# pkg\n\nUpstream text.\n")],
        [put("README.md", "# pkg\n\nLocal text.\n")],
    ),
    Triple("non-krm-deleted-upstream", [drop("README.md")]),
    Triple("non-krm-added-upstream", [put("NOTES.txt", "notes\n")]),
    Triple(
        "kptfile-description-up", [rep("Kptfile", "description: sample", "description: better")]
    ),
    Triple(
        "kptfile-mutator-added-up",
        [
            put(
                "Kptfile",
                _kptfile(
                    extra="pipeline:\n  mutators:\n  - image: set-labels:v0.1\n"
                    "    configMap:\n      app: web\n"
                ),
            )
        ],
    ),
    Triple(
        "kptfile-mutators-both",
        [rep("Kptfile", "app: web", "app: web2")],
        [add_mutator("set-annotations:v0.1", {"a": "b"})],
        v1=lambda: {
            **base(),
            "Kptfile": _kptfile(
                extra="pipeline:\n  mutators:\n  - image: set-labels:v0.1\n    configMap:\n"
                "      app: web\n"
            ),
        },
    ),
    Triple(
        "subpackage-added-upstream",
        [put("newsub/Kptfile", _kptfile("newsub")), put("newsub/cm.yaml", SUB_CM)],
    ),
    Triple("subpackage-removed-upstream", [drop("sub/Kptfile"), drop("sub/cm.yaml")], v1=with_sub),
    Triple(
        "subpackage-modified-both",
        [rep("sub/cm.yaml", "color: blue", "color: red")],
        [rep("sub/cm.yaml", 'size: "3"', 'size: "5"')],
        v1=with_sub,
    ),
    Triple(
        "custom-resource-list-atomic",
        [rep("custom.yaml", "size: 2", "size: 20")],
        [rep("custom.yaml", "size: 1", "size: 10")],
    ),
    Triple(
        "custom-resource-list-up-only",
        [rep("custom.yaml", "size: 2", "size: 20")],
        [rep("custom.yaml", "mode: fast", "mode: quick")],
    ),
    Triple(
        "configmap-keys-both",
        [rep("config.yaml", "  color: blue\n", "  color: blue\n  new: x\n")],
        [rep("config.yaml", "color: blue", "color: pink")],
    ),
    Triple(
        "literal-block",
        [rep("config.yaml", "  color: blue\n", "  script: |\n    echo one\n    echo two\n")],
    ),
    Triple("quoted-bool-string", [rep("config.yaml", 'size: "3"', 'enabled: "true"')]),
    Triple(
        "service-ports-by-port",
        [
            rep(
                "config.yaml",
                "    targetPort: 80\n",
                "    targetPort: 80\n  - name: https\n    port: 443\n    targetPort: 443\n",
            )
        ],
        [rep("config.yaml", "targetPort: 80", "targetPort: 8080")],
    ),
    Triple(
        "volumes-both",
        [
            rep(
                "deploy.yaml",
                "        emptyDir: {}\n",
                "        emptyDir: {}\n      - name: cache\n        emptyDir: {}\n",
            )
        ],
        [
            rep(
                "deploy.yaml",
                "        emptyDir: {}\n",
                "        emptyDir: {}\n      - name: logs\n        emptyDir: {}\n",
            )
        ],
    ),
    Triple(
        "env-value-changed-both-different-entries",
        [rep("deploy.yaml", "value: prod", "value: production")],
        [
            rep(
                "deploy.yaml",
                "          value: prod\n",
                '          value: prod\n        - name: DEBUG\n          value: "1"\n',
            )
        ],
    ),
    Triple(
        "map-fields-added-both",
        [rep("custom.yaml", "  mode: fast\n", "  mode: fast\n  zone: a\n")],
        [rep("custom.yaml", "  mode: fast\n", "  mode: fast\n  owner: team\n")],
    ),
    Triple(
        "wide-sequence-file",
        [rep("svc.yaml", "port: 80", "port: 81")],
        v1=lambda: {
            **base(),
            "svc.yaml": SVC.replace("name: web\n  namespace", "name: other\n  namespace").replace(
                "  - name: http\n    port: 80\n    targetPort: 80\n",
                "    - name: http\n      port: 80\n      targetPort: 80\n",
            ),
        },
    ),
    Triple("upstream-null-clears", [rep("custom.yaml", "mode: fast", "mode: null")]),
]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _write(root: Path, files: Files) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _read(root: Path) -> Files:
    out: Files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = full.read_text()
    return out


def _kpt(cwd: Path, *args: str) -> None:
    assert KPT is not None
    result = subprocess.run([KPT, *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"kpt {' '.join(args)} failed: {result.stderr}"


def _without_upstream(text: str) -> object:
    data = krm_yaml.to_plain(krm_yaml.load_object(text, filename="Kptfile"))
    data.pop("upstream", None)
    data.pop("upstreamLock", None)
    return data


def _run(triple: Triple, tmp: Path, strategy: str) -> tuple[Files, Files, Files, Files]:
    v1 = triple.v1()
    v2 = dict(v1)
    for e in triple.upstream:
        e(v2)
    work = tmp / "up"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    _git(work, "config", "user.email", "t@example.com")
    _git(work, "config", "user.name", "t")
    _write(work / "pkg", v1)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "v1")
    _git(work, "tag", "v1")
    shutil.rmtree(work / "pkg")
    _write(work / "pkg", v2)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "v2", "--allow-empty")
    _git(work, "tag", "v2")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp / "up.git")], check=True)
    ws = tmp / "ws"
    ws.mkdir()
    _git(ws, "init", "-q", "-b", "main")
    _git(ws, "config", "user.email", "t@example.com")
    _git(ws, "config", "user.name", "t")
    _kpt(ws, "pkg", "get", f"file://{tmp}/up.git/pkg@v1", "local")
    fetched = _read(ws / "local")
    local = dict(fetched)
    for e in triple.local:
        e(local)
    shutil.rmtree(ws / "local")
    _write(ws / "local", local)
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "local")
    _kpt(ws, "pkg", "update", "local@v2", "--strategy", strategy)
    return v1, v2, local, _read(ws / "local")


def _compare(ours: Files, theirs: Files) -> None:
    assert sorted(ours) == sorted(theirs)
    for path in theirs:
        if path.endswith("Kptfile"):
            assert _without_upstream(ours[path]) == _without_upstream(theirs[path]), path
            continue
        assert ours[path] == theirs[path], (
            f"{path} differs:\n--- ours\n{ours[path]}\n--- kpt\n{theirs[path]}"
        )


@pytest.mark.parametrize("triple", TRIPLES, ids=[t.name for t in TRIPLES])
def test_resource_merge_matches_kpt_pkg_update(triple: Triple, tmp_path: Path) -> None:
    v1, v2, local, theirs = _run(triple, tmp_path, "resource-merge")
    ours, _report = upgrade("resource-merge", local, v1, v2)
    _compare(ours, theirs)


def test_there_are_at_least_forty_triples() -> None:
    assert len(TRIPLES) >= 40


def test_merge_comments_match_kpt_pkg_get(tmp_path: Path) -> None:
    """Our clone's resource files equal what ``kpt pkg get`` writes (comments, annotations)."""
    triple = Triple("get")
    v1, _v2, local, _theirs = _run(triple, tmp_path, "resource-merge")
    ours = add_merge_comments(v1)
    for path in v1:
        if path.endswith("Kptfile"):
            continue
        assert ours[path] == local[path], path


def test_conflicts_are_reported() -> None:
    v1 = base()
    local = dict(v1)
    rep("deploy.yaml", "nginx:1.20", "nginx:1.19")(local)
    v2 = dict(v1)
    rep("deploy.yaml", "nginx:1.20", "nginx:1.21")(v2)
    files, report = upgrade("resource-merge", local, v1, v2)
    assert "nginx:1.21" in files["deploy.yaml"]
    [conflict] = report.conflicts
    assert conflict.local == "nginx:1.19" and conflict.upstream == "nginx:1.21"
    assert conflict.chosen == "upstream"
    assert "deploy.yaml" in conflict.path and "image" in conflict.path


@pytest.mark.parametrize("strategy", ["force-delete-replace", "fast-forward"])
def test_other_strategies_match_kpt(strategy: str, tmp_path: Path) -> None:
    triple = Triple(
        strategy,
        [rep("deploy.yaml", "nginx:1.20", "nginx:1.21"), drop("custom.yaml")],
        [] if strategy == "fast-forward" else [put("mine.yaml", CM.replace("settings", "mine"))],
    )
    v1, v2, local, theirs = _run(triple, tmp_path, strategy)
    ours, _ = upgrade(strategy, local, v1, v2)
    _compare(ours, theirs)


def test_copy_merge_keeps_local_only_files_and_drops_upstream_deletions() -> None:
    """kpt 1.0.0-beta.56 has no copy-merge; Porch's semantics (spec §4.4) are checked directly."""
    v1 = base()
    local = {**v1, "mine.yaml": CM.replace("settings", "mine")}
    rep("config.yaml", "color: blue", "color: local")(local)
    v2 = dict(v1)
    rep("deploy.yaml", "nginx:1.20", "nginx:1.21")(v2)
    del v2["custom.yaml"]
    files, _ = upgrade("copy-merge", local, v1, v2)
    assert "mine.yaml" in files and "custom.yaml" not in files
    assert "nginx:1.21" in files["deploy.yaml"]
    assert "color: blue" in files["config.yaml"]  # upstream's copy wins over the local edit
    assert "name: pkg" in files["Kptfile"]


def test_fast_forward_refuses_local_changes() -> None:
    v1 = base()
    local = dict(v1)
    rep("config.yaml", "color: blue", "color: red")(local)
    with pytest.raises(Exception, match="fast-forward"):
        upgrade("fast-forward", local, v1, dict(v1))


def test_subpackage_added_in_both_is_an_error() -> None:
    v1 = base()
    local = {**v1, "sub/Kptfile": SUB_KF}
    v2 = {**v1, "sub/Kptfile": SUB_KF}
    with pytest.raises(Exception, match='subpackage "sub" added in both upstream and local'):
        upgrade("resource-merge", local, v1, v2)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(Exception, match="unrecognized update strategy"):
        upgrade("sideways", base(), base(), base())
