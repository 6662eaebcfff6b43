from __future__ import annotations

import pytest
from ruamel.yaml.comments import CommentedMap

from porch.errors import Invalid
from porch.krm.yaml import (
    KPT_INDENT,
    Indent,
    YAMLSyntaxError,
    dump_documents,
    dumps,
    from_plain,
    go_scalar,
    load_object,
    parse_documents,
    to_plain,
)

STABLE = [
    "",
    "\n",
    "# only a comment\n",
    "a: 1",  # no trailing newline
    "a: 1   \nb: 2\t\n",  # trailing whitespace
    "a: ~\nb: null\nc:\nd: True\ne: 0o14\nf: 1.50\n",
    "a: {x: 1,  y: 2}\nb: { x: 1 }\nc: [ 1, 2 ]\n",
    "a: |\n  foo\n  bar\nb: >-\n  x\n  y\nc: |+\n  keep\n\n",
    "---\na: 1\n---\nb: 2\n...\n",
    "# licence\n---\na: 1\n--- # second\nb: 2\n---\n",
    "a: 1\n...\nb: 2\n",
    "--- {a: 1}\n--- [x]\n",
    "a: 1\r\nb:\r\n- x\r\n",
    "key:\n- a\n- b\nother:\n  - c\n  - d\n",
    "a: &x {k: v}\nb: *x\nc:\n  <<: *x\n  d: e\n",
    "date: 2024-01-02\nwhen: 2024-01-02T03:04:05Z\n",
    "%YAML 1.2\n---\na: 1\n",
]


@pytest.mark.parametrize("text", STABLE)
def test_untouched_text_round_trips(text: str) -> None:
    assert dump_documents(parse_documents(text)) == text


def test_documents_split_on_markers_and_keep_prefixes() -> None:
    docs = parse_documents("# licence\n---\na: 1\n--- # two\nb: 2\n---\n# empty\n")
    assert [e.prefix for e in docs.entries] == ["# licence\n---\n", "--- # two\n", "---\n"]
    assert [to_plain(o) for o in docs] == [{"a": 1}, {"b": 2}]
    assert docs.entries[2].node is None
    assert len(docs) == 2


def test_edited_document_keeps_its_siblings_bytes() -> None:
    text = "a: 1   \n---\nb:   [1,2]\n---\nc: ~\n"
    docs = parse_documents(text)
    docs.objects()[1]["b"].append(3)
    assert dump_documents(docs) == "a: 1   \n---\nb: [1, 2, 3]\n---\nc: ~\n"


@pytest.mark.parametrize(
    ("text", "indent"),
    [
        ("a:\n  b:\n  - x\n", Indent(mapping=2, sequence=2, offset=0)),
        ("a:\n  b:\n    - x\n", Indent(mapping=2, sequence=4, offset=2)),
        ("a:\n    b:\n    -   x\n", Indent(mapping=4, sequence=4, offset=0)),
    ],
)
def test_edits_keep_the_files_indentation(text: str, indent: Indent) -> None:
    docs = parse_documents(text)
    assert docs.entries[0].indent == indent
    docs.objects()[0]["a"]["b"].append("y")
    out = dump_documents(docs)
    assert out.startswith(text)
    assert to_plain(parse_documents(out).objects()[0]) == {"a": {"b": ["x", "y"]}}


def test_flat_document_takes_its_neighbours_indentation() -> None:
    docs = parse_documents("a: 1\n---\nl:\n  - x\n")
    assert docs.entries[0].indent == docs.entries[1].indent == Indent(2, 4, 2)


def test_comments_survive_an_edit() -> None:
    text = "# head\na: 1 # one\n# about b\nb:\n  - x # ex\n"
    docs = parse_documents(text)
    docs.objects()[0]["a"] = 2
    assert dump_documents(docs) == "# head\na: 2 # one\n# about b\nb:\n  - x # ex\n"


def test_appended_and_removed_documents() -> None:
    docs = parse_documents("a: 1\n")
    docs.append(from_plain({"b": "true"}))
    assert dump_documents(docs) == 'a: 1\n---\nb: "true"\n'
    docs.remove(docs.objects()[0])
    assert dump_documents(docs) == 'b: "true"\n'


def test_append_after_text_without_final_newline() -> None:
    docs = parse_documents("a: 1")
    docs.append(from_plain({"b": 2}))
    assert dump_documents(docs) == "a: 1\n---\nb: 2\n"


def test_to_plain_is_json_shaped() -> None:
    obj = load_object(
        "s: 'x'\ni: 0x10\nf: 1.5\nb: true\nn: ~\nd: 2024-01-02\nl: [1, {k: v}]\n1: one\n"
        "t: !custom tagged\nbin: !!binary aGk=\n"
    )
    plain = to_plain(obj)
    assert plain == {
        "s": "x",
        "i": 16,
        "f": 1.5,
        "b": True,
        "n": None,
        "d": "2024-01-02",
        "l": [1, {"k": "v"}],
        "1": "one",
        "t": "tagged",
        "bin": "aGk=",
    }
    assert type(plain["s"]) is str and type(plain["i"]) is int and type(plain["f"]) is float


def test_to_plain_expands_merge_keys() -> None:
    obj = load_object("base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n")
    assert to_plain(obj)["d"] == {"y": 2, "x": 1}


def test_load_object_wants_exactly_one_object() -> None:
    with pytest.raises(Invalid, match="expected exactly one object, found 2"):
        load_object("a: 1\n---\nb: 2\n", filename="f.yaml")
    assert isinstance(load_object("---\na: 1\n---\n"), CommentedMap)


@pytest.mark.parametrize(
    ("value", "dumped"),
    [
        ("plain", "plain"),
        ("true", '"true"'),
        ("True", '"True"'),
        ("yes", '"yes"'),
        ("n", '"n"'),
        ("1", '"1"'),
        ("1.5", '"1.5"'),
        ("1e3", '"1e3"'),
        ("0x1F", '"0x1F"'),
        ("null", '"null"'),
        ("~", '"~"'),
        ("", '""'),
        ("2024-01-02", '"2024-01-02"'),
        ("a: b", "'a: b'"),
        ("x #y", "'x #y'"),
        ("line1\nline2", "|-\n  line1\n  line2"),
    ],
)
def test_go_scalar_quotes_like_yaml_v3(value: str, dumped: str) -> None:
    assert dumps({"k": go_scalar(value)}) == f"k: {dumped}\n"


def test_dumps_defaults_to_kpt_style() -> None:
    assert dumps(from_plain({"a": {"l": ["x"]}})) == "a:\n  l:\n  - x\n"
    assert dumps(from_plain({"l": ["x"]}), indent=Indent(2, 4, 2)) == "l:\n  - x\n"
    assert KPT_INDENT == Indent(2, 2, 0)


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(YAMLSyntaxError) as info:
        parse_documents("a: 1\n---\nb: 2\nc: d: e\n", filename="pkg/x.yaml")
    err = info.value
    assert isinstance(err, Invalid) and err.code == 422
    assert (err.filename, err.line) == ("pkg/x.yaml", 4)
    assert str(err).startswith("pkg/x.yaml: line 4, column 5: mapping values are not allowed")
