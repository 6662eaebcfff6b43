"""Package reading and writing for render (porch.fn.kio) and the Kptfile model."""

from __future__ import annotations

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.fn import kio
from porch.fn.kptfile_pipeline import (
    DeprecatedKptfileError,
    KptfileError,
    Pipeline,
    decode_kptfile,
    encode_kptfile,
)

KPTFILE = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
DEPLOY = (
    "# header comment\n"
    "apiVersion: apps/v1\n"
    "kind: Deployment\n"
    "metadata:\n"
    "  name: web # trailing\n"
    "spec:\n"
    "  template:\n"
    "    spec:\n"
    "      containers:\n"
    "        - name: c\n"
    "          image: 'nginx'\n"
)
TWO = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: '1'\n"
    "---\n"
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
)


def _files() -> dict[str, str]:
    return {
        "Kptfile": KPTFILE,
        "deploy.yaml": DEPLOY,
        "two.yaml": TWO,
        "README.md": "not yaml: [",
        "sub/Kptfile": KPTFILE.replace("app", "sub"),
        "sub/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n",
        "ignored/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ign\n",
        ".krmignore": "ignored/\n",
    }


def _names(items: list[CommentedMap]) -> list[str]:
    return [str(i["metadata"]["name"]) for i in items]


def test_reader_annotates_like_kyaml() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    # Kptfile sorts before lower-case names; sub/ is a subpackage; ignored/ is krmignored.
    assert _names(items) == ["app", "web", "a", "b"]
    ann = kio.get_annotations(items[3])
    assert ann[kio.PATH] == ann[kio.LEGACY_PATH] == "two.yaml"
    assert ann[kio.INDEX] == ann[kio.LEGACY_INDEX] == "1"
    assert ann[kio.PACKAGE_PATH] == "."
    keys = list(items[3]["metadata"]["annotations"])
    assert keys == sorted(keys)
    assert kio.get_annotations(items[1])[kio.SEQINDENT] == "wide"
    assert kio.get_annotations(items[2])[kio.SEQINDENT] == "compact"


def test_subpackages_and_their_resources() -> None:
    pf = kio.PackageFiles(_files())
    assert pf.root() == ""
    assert pf.direct_subpackages("") == ["sub"]
    sub = pf.local_resources("sub")
    assert _names(sub) == ["sub", "s"]
    assert kio.get_annotations(sub[1])[kio.PATH] == "cm.yaml"
    assert kio.get_annotations(sub[1])[kio.PACKAGE_PATH] == "sub"


def test_root_is_topmost_kptfile() -> None:
    pf = kio.PackageFiles({"pkg/Kptfile": KPTFILE, "pkg/a/Kptfile": KPTFILE})
    assert pf.root() == "pkg"
    assert kio.PackageFiles({"x.yaml": "a: 1\n"}).root() is None


def test_krmignore_patterns() -> None:
    m = kio.IgnoreMatcher("# comment\n*.tmp.yaml\n/top.yaml\nbuild/\n!keep.tmp.yaml\n")
    assert m.ignores("a/b.tmp.yaml")
    assert not m.ignores("keep.tmp.yaml")
    assert m.ignores("top.yaml")
    assert not m.ignores("d/top.yaml")
    assert m.ignores("build/x.yaml")
    assert not m.ignores("builder.yaml")


def test_unchanged_files_come_back_byte_identical() -> None:
    files = _files()
    files["odd.yaml"] = "apiVersion: v1\nkind: A\nmetadata: {name: odd}   \nx: ~\n"
    pf = kio.PackageFiles(files)
    items = pf.local_resources("")
    out = kio.write_items(pf, items)
    assert out["two.yaml"] == TWO
    assert out["odd.yaml"] == files["odd.yaml"]
    assert out["Kptfile"] == KPTFILE
    # kpt drops nothing but reader annotations
    assert "internal.config" not in "".join(out.values())


def test_changed_document_redumped_others_verbatim() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    items[2]["metadata"]["namespace"] = "ns"
    out = kio.write_items(pf, items)
    assert out["two.yaml"] == (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\ndata:\n"
        "  x: '1'\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
    )
    assert out["deploy.yaml"] == DEPLOY


def test_changed_wide_document_keeps_wide_sequences() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    items[1]["spec"]["replicas"] = 2
    out = kio.write_items(pf, items)["deploy.yaml"]
    assert "        - name: c\n" in out
    assert "  replicas: 2\n" in out
    assert "# trailing" in out


def test_moved_and_new_documents() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    b = items[3]
    kio.set_annotation(b, kio.PATH, "moved.yaml")
    kio.set_annotation(b, kio.INDEX, "0")
    new = CommentedMap(apiVersion="v1", kind="Secret", metadata=CommentedMap(name="s1"))
    out = kio.write_items(pf, [*items, new])
    assert out["moved.yaml"] == "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
    assert out["secret_s1.yaml"].startswith("apiVersion: v1\nkind: Secret\n")
    assert out["two.yaml"].count("---") == 0


def test_documents_ordered_by_index() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    a, b = items[2], items[3]
    for node, index in ((a, "1"), (b, "0")):
        kio.set_annotation(node, kio.INDEX, index)
    out = kio.write_items(pf, items)["two.yaml"]
    assert out.index("name: b") < out.index("name: a")
    assert "\n---\n" in out


def test_path_escaping_package_rejected() -> None:
    pf = kio.PackageFiles(_files())
    items = pf.local_resources("")
    kio.set_annotation(items[2], kio.PATH, "../x.yaml")
    with pytest.raises(kio.KioError, match="resource must be written under package"):
        kio.write_items(pf, items)


def test_header_blank_line_dropped_like_yaml_v3() -> None:
    text = "# licence\n\napiVersion: v1\nkind: A\nmetadata:\n  name: a\n"
    assert kio.normalize_file(text) == "# licence\napiVersion: v1\nkind: A\nmetadata:\n  name: a\n"
    body = "apiVersion: v1\nkind: A\nmetadata:\n  name: a\n\n# tail\n"
    assert kio.normalize_file(body) == body


def test_default_path() -> None:
    node = CommentedMap(kind="Deployment", metadata=CommentedMap(name="x", namespace="ns"))
    assert kio.default_path(node) == "ns/deployment_x.yaml"
    assert kio.default_path(node, "sub") == "sub/ns/deployment_x.yaml"


def test_invalid_yaml_is_a_clear_error() -> None:
    pf = kio.PackageFiles({"Kptfile": KPTFILE, "bad.yaml": "a: [\n"})
    with pytest.raises(kio.KioError, match="bad.yaml"):
        pf.local_resources("")


# ---- Kptfile model


def test_kptfile_unknown_field_error_has_line() -> None:
    text = KPTFILE + "pipeline:\n  mutators:\n    - image: x\n      bogus: 1\n"
    with pytest.raises(KptfileError) as info:
        decode_kptfile(text)
    assert str(info.value) == (
        "yaml: unmarshal errors:\n  line 8: field bogus not found in type v1.Function"
    )


def test_kptfile_type_error() -> None:
    text = KPTFILE + "pipeline:\n  mutators:\n    - image: x\n      configMap:\n        a: [1]\n"
    with pytest.raises(KptfileError, match=r"line 9: cannot unmarshal !!seq into string"):
        decode_kptfile(text)


def test_kptfile_old_version() -> None:
    with pytest.raises(DeprecatedKptfileError) as info:
        decode_kptfile("apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nmetadata:\n  name: a\n")
    assert info.value.version == "v1alpha1"


def test_kptfile_encode_struct_order_and_wide_lists() -> None:
    text = (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  annotations: {b: '1', a: '2'}\n"
        "  name: app # c\npipeline:\n  mutators:\n  - tag: '~0.2'\n    image: img\n"
        "    configMap: {z: '1', a: '2'}\n"
    )
    kf = decode_kptfile(text)
    assert Pipeline.of(kf).mutators[0].tag == "~0.2"
    assert encode_kptfile(kf) == (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n  annotations:\n"
        '    a: "2"\n    b: "1"\npipeline:\n  mutators:\n    - image: img\n      configMap:\n'
        '        a: "2"\n        z: "1"\n      tag: ~0.2\n'
    )


def test_json_files_are_resources_written_back_as_json() -> None:
    doc = (
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, '
        '"data": {"a": "<b>"}}\n'
    )
    files = {"Kptfile": KPTFILE, "x.json": doc}
    pf = kio.PackageFiles(files)
    items = pf.local_resources("")
    assert kio.get_annotations(items[1])[kio.PATH] == "x.json"
    assert kio.write_items(pf, items)["x.json"] == doc
    pf = kio.PackageFiles(files)
    items = pf.local_resources("")
    items[1]["metadata"]["namespace"] = "n"
    out = kio.write_items(pf, items)["x.json"]
    assert out.startswith('{\n  "apiVersion": "v1",\n  "data": {\n    "a": "\\u003cb\\u003e"')
    assert '"namespace": "n"' in out


def test_result_items_take_kpt_shape() -> None:
    from porch.fn.kptfile_pipeline import normalize_result_item

    legacy = {
        "severity": "error",
        "message": "m",
        "resourceRef": {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}},
        "field": {"path": "spec.x", "suggestedValue": 3, "currentValue": {"k": "v"}},
        "unknown": True,
    }
    assert normalize_result_item(legacy) == {
        "message": "m",
        "severity": "error",
        "resourceRef": {"apiVersion": "v1", "kind": "X", "name": "a"},
        "field": {"path": "spec.x", "currentValue": "k: v", "proposedValue": "3"},
    }
    plain = {"file": {"index": 0, "path": "a.yaml"}, "message": "m", "tags": {"b": "1", "a": "2"}}
    assert list(normalize_result_item(plain)) == ["message", "file", "tags"]


def test_seq_indent_derived_per_document_like_kyaml() -> None:
    assert kio.derive_seq_indent("a:\n  - x\n") == "wide"
    assert kio.derive_seq_indent("a:\n- x\n") == "compact"
    assert kio.derive_seq_indent("a:\n  # c\n  - x\n") == "wide"
    assert kio.derive_seq_indent("s: |\n  - not a list\nb:\n    - x\nc:\n  - y\n") == "wide"
    assert kio.derive_seq_indent("a: 1\n") == "compact"
    files = {
        "Kptfile": KPTFILE,
        "m.yaml": _cm_text("flat") + "---\n" + _cm_text("wide") + "  list:\n    - a\n",
    }
    pf = kio.PackageFiles(files)
    items = pf.local_resources("")
    items[2]["data"]["list"].append("b")
    out = kio.write_items(pf, items)["m.yaml"]
    assert out.endswith("  list:\n    - a\n    - b\n")


def _cm_text(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
