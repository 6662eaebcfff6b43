from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from porch.errors import Invalid
from porch.krm.resources import ObjectId, heal_comments, is_krm_file, iter_objects
from porch.krm.yaml import parse_documents, to_plain

OLD_DEPLOY = """\
# The web tier.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # do not rename
  namespace: prod
spec:
  replicas: 3 # tuned for peak
  template:
    spec:
      containers:
      - name: main
        image: nginx:1.25 # pinned
        ports:
        - containerPort: 80 # http
"""

NEW_DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
spec:
  replicas: 5
  template:
    spec:
      containers:
      - name: main
        image: nginx:1.26
        ports:
        - containerPort: 80
"""


def test_comments_are_copied_from_the_same_object() -> None:
    healed = heal_comments({"deploy.yaml": OLD_DEPLOY}, {"deploy.yaml": NEW_DEPLOY})
    assert healed["deploy.yaml"] == OLD_DEPLOY.replace("3 #", "5 #").replace("1.25", "1.26")


def test_objects_are_matched_by_identity_not_by_file() -> None:
    healed = heal_comments({"a.yaml": OLD_DEPLOY}, {"moved/b.yml": NEW_DEPLOY})
    assert "# do not rename" in healed["moved/b.yml"]


@pytest.mark.parametrize(
    "change",
    [("namespace: prod", "namespace: dev"), ("name: web", "name: api"), ("apps/v1", "apps/v2")],
)
def test_different_identity_gets_no_comments(change: tuple[str, str]) -> None:
    new = NEW_DEPLOY.replace(*change)
    assert heal_comments({"d.yaml": OLD_DEPLOY}, {"d.yaml": new}) == {"d.yaml": new}


def test_existing_comments_win() -> None:
    new = NEW_DEPLOY.replace("replicas: 5", "replicas: 5 # mine")
    healed = heal_comments({"d.yaml": OLD_DEPLOY}, {"d.yaml": new})["d.yaml"]
    assert "replicas: 5 # mine\n" in healed
    assert "# pinned" in healed


@pytest.mark.parametrize("mark", ["#@", "#!"])
def test_ytt_templates_are_left_alone(mark: str) -> None:
    old_ytt = OLD_DEPLOY.replace("# do not rename", f"{mark} data.values.name")
    assert heal_comments({"d.yaml": old_ytt}, {"d.yaml": NEW_DEPLOY}) == {"d.yaml": NEW_DEPLOY}
    new_ytt = NEW_DEPLOY.replace("replicas: 5", f"replicas: 5 {mark} data.values.n")
    assert heal_comments({"d.yaml": OLD_DEPLOY}, {"d.yaml": new_ytt}) == {"d.yaml": new_ytt}


def test_ytt_check_is_per_object() -> None:
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c #@ templated\n"
    healed = heal_comments(
        {"d.yaml": OLD_DEPLOY + "---\n" + other}, {"d.yaml": NEW_DEPLOY + "---\n" + other}
    )
    assert "# do not rename" in healed["d.yaml"]


def test_files_without_objects_disappear_and_others_pass_through() -> None:
    new = {
        "empty.yaml": "",
        "comments.yml": "# nothing here\n---\n# nor here\n",
        "README.md": "# title\n",
        "script.sh": "a: [\n",
        "Kptfile": "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\n",
    }
    healed = heal_comments({}, new)
    assert healed == {k: new[k] for k in ("README.md", "script.sh", "Kptfile")}
    assert list(healed) == ["README.md", "script.sh", "Kptfile"]


def test_parse_error_in_new_files() -> None:
    with pytest.raises(Invalid, match=r"^failed to heal resources: bad.yaml: line 2"):
        heal_comments({}, {"bad.yaml": "a: 1\nb: c: d\n"})


def test_parse_error_in_old_files() -> None:
    with pytest.raises(Invalid, match="^failed to heal resources: failed to read old package"):
        heal_comments({"bad.yaml": "a: [\n"}, {"ok.yaml": "a: 1\n"})


def test_unchanged_package_is_a_byte_for_byte_no_op() -> None:
    files = {
        "deploy.yaml": OLD_DEPLOY.replace("prod\n", "prod   \n") + "...\n",
        "Kptfile": "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: p\ninfo: {}",
        "notes.txt": "anything\n",
    }
    assert heal_comments(files, dict(files)) == files


def test_iter_objects_and_ids() -> None:
    files = {"b.yaml": OLD_DEPLOY + "---\nkind: X\n", "a.txt": "x", "Kptfile": "kind: Kptfile\n"}
    found = [(o.path, o.index, o.id) for o in iter_objects(files)]
    assert found == [
        ("Kptfile", 0, ObjectId("", "Kptfile", "", "")),
        ("b.yaml", 0, ObjectId("apps/v1", "Deployment", "prod", "web")),
        ("b.yaml", 1, ObjectId("", "X", "", "")),
    ]
    assert found[1][2].group == "apps" and found[1][2].version == "v1"
    assert ObjectId("v1", "ConfigMap", "", "c").group == ""


@pytest.mark.parametrize(
    ("path", "krm"),
    [
        ("Kptfile", True),
        ("sub/Kptfile", True),
        ("a.yaml", True),
        ("a/b.yml", True),
        ("a.YAML", False),
        ("Kptfile.bak", False),
        ("README.md", False),
        ("yaml", False),
    ],
)
def test_is_krm_file(path: str, krm: bool) -> None:
    assert is_krm_file(path) is krm


# --- properties ------------------------------------------------------------------------------

_items = st.sampled_from(["a", "b", "c"])
_values = st.sampled_from(["x", "y", "1", "true", "'q'", '"d"', "~", "[1, 2]", "{k: v}"])


@st.composite
def _object(draw: st.DrawFn, name: str) -> str:
    keys = draw(st.lists(st.sampled_from(["k1", "k2", "k3", "k4"]), unique=True, max_size=4))
    indent = draw(st.sampled_from(["", "  "]))
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}", "data:"]
    for key in keys:
        lines.append(f"  {key}: {draw(_values)}")
    lines.append("list:")
    for item in draw(st.lists(_items, max_size=3)):
        lines.append(f"{indent}- {item}")
    out = []
    for n, line in enumerate(lines):
        if draw(st.booleans()) and not line.endswith(":"):
            line += f" # eol {n}"
        if draw(st.integers(0, 4)) == 0:
            out.append(" " * (len(line) - len(line.lstrip())) + f"# head {n}")
        out.append(line)
    return "\n".join(out) + "\n"


@st.composite
def _package(draw: st.DrawFn) -> dict[str, str]:
    # Names are unique within a package (kpt rejects duplicates); the same names recur across
    # generated packages, so old and new versions of an object meet.
    names = iter(range(100))
    files = {}
    for path in draw(st.lists(st.sampled_from(["a.yaml", "b.yml", "c/d.yaml"]), unique=True)):
        count = draw(st.integers(0, 3))
        files[path] = "---\n".join(draw(_object(f"o{next(names)}")) for _ in range(count))
    return files


def _strip_comments(files: dict[str, str]) -> dict[str, str]:
    return {
        path: "\n".join(line.split(" #")[0] for line in text.split("\n") if "# head" not in line)
        for path, text in files.items()
    }


def _plain(files: dict[str, str]) -> dict[str, list[object]]:
    return {p: [to_plain(o) for o in parse_documents(t).objects()] for p, t in files.items()}


_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_package(), _package())
def test_heal_is_idempotent(old: dict[str, str], new: dict[str, str]) -> None:
    once = heal_comments(old, new)
    assert heal_comments(old, once) == once


@_settings
@given(_package(), _package())
def test_heal_never_changes_data(old: dict[str, str], new: dict[str, str]) -> None:
    healed = heal_comments(old, new)
    expected = {p: objs for p, objs in _plain(new).items() if objs}
    assert _plain(healed) == expected


@_settings
@given(_package())
def test_heal_of_a_package_with_itself_is_identity(files: dict[str, str]) -> None:
    kept = {p: t for p, t in files.items() if parse_documents(t).objects()}
    assert heal_comments(files, files) == kept


@_settings
@given(_package())
def test_heal_restores_stripped_comments(files: dict[str, str]) -> None:
    stripped = _strip_comments(files)
    healed = heal_comments(files, stripped)
    for path, text in healed.items():
        for line in files[path].split("\n"):
            if " # eol" in line:
                comment = line[line.index(" # eol") + 1 :]
                assert comment in text
