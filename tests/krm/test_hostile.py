"""Input an attacker controls must fail fast with a clear ``Invalid``, never exhaust memory."""

from __future__ import annotations

import time

import pytest

from porch.errors import Invalid
from porch.krm.yaml import YAMLSyntaxError, dump_documents, parse_documents, to_plain


def _billion_laughs(levels: int = 9, fanout: int = 9) -> str:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (fanout - 1) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * fanout)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(YAMLSyntaxError, match="alias expansion too large"):
        parse_documents(_billion_laughs(), filename="bomb.yaml")
    assert time.monotonic() - started < 5


def test_wide_alias_reuse_is_rejected() -> None:
    big = "[" + ", ".join(str(i) for i in range(2000)) + "]"
    text = f"base: &b {big}\nrefs: [" + ", ".join(["*b"] * 100) + "]\n"
    with pytest.raises(YAMLSyntaxError, match="alias expansion"):
        parse_documents(text)


def test_modest_aliases_are_fine() -> None:
    docs = parse_documents("base: &b {x: 1}\nuse: [*b, *b]\n")
    assert to_plain(docs.objects()[0])["use"] == [{"x": 1}, {"x": 1}]
    assert dump_documents(docs) == "base: &b {x: 1}\nuse: [*b, *b]\n"


@pytest.mark.parametrize("depth", [150, 5000, 200_000])
def test_deep_nesting_is_rejected_quickly(depth: int) -> None:
    started = time.monotonic()
    with pytest.raises(YAMLSyntaxError, match="nesting deeper than") as info:
        parse_documents("x: 1\na: " + "[" * depth + "]" * depth + "\n", filename="deep.yaml")
    assert info.value.line == 2
    assert time.monotonic() - started < 2


def test_deep_block_nesting_is_rejected() -> None:
    text = "".join(" " * i + "k:\n" for i in range(400)) + " " * 400 + "k: 1\n"
    with pytest.raises(YAMLSyntaxError, match="nesting deeper than"):
        parse_documents(text)


def test_reasonable_nesting_is_fine() -> None:
    docs = parse_documents("a: " + "[" * 60 + "]" * 60 + "\n")
    assert len(docs) == 1


def test_recursive_alias_does_not_recurse_forever() -> None:
    for text in ("a: &x [*x]\n", "a: &x {b: *x}\n"):
        try:
            docs = parse_documents(text)
        except Invalid:
            continue
        to_plain(docs.objects()[0])  # must terminate


def test_duplicate_keys_are_an_error() -> None:
    with pytest.raises(YAMLSyntaxError) as info:
        parse_documents("metadata:\n  name: a\n  name: b\n", filename="dup.yaml")
    assert info.value.line == 3
    assert 'duplicate key "name"' in str(info.value)
    assert str(info.value).startswith("dup.yaml: line 3")


def test_lone_surrogates_are_an_error() -> None:
    text = b"a: \xff\xfe\n".decode("utf-8", errors="surrogateescape")
    with pytest.raises(YAMLSyntaxError, match="unacceptable character #xdcff") as info:
        parse_documents("ok: 1\n---\n" + text, filename="bad.yaml")
    assert info.value.line == 3


def test_control_characters_are_an_error() -> None:
    with pytest.raises(Invalid, match="unacceptable character #x0007"):
        parse_documents("a: b\x07\n")


def test_tab_indentation_is_an_error() -> None:
    with pytest.raises(YAMLSyntaxError) as info:
        parse_documents("a:\n\t- b\n", filename="tabs.yaml")
    assert info.value.line == 2
    assert "cannot start any token" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "a:\tb\n",
        "a: b\t\n",
        "a: b\t# note\n",
        "l:\n- x\t\n",
        "l:\n-\tx\n",
        "a: 'q'\t\n",
        "a: |\n  x\t\n",
    ],
)
def test_tabs_between_tokens_are_accepted_and_kept(text: str) -> None:
    docs = parse_documents(text)
    assert dump_documents(docs) == text


def test_tabs_inside_values_are_values() -> None:
    docs = parse_documents('b: "p\tq"\nc: |\n  r\ts\n')
    assert to_plain(docs.objects()[0]) == {"b": "p\tq", "c": "r\ts\n"}


def test_tab_inside_plain_scalar_is_refused_rather_than_altered() -> None:
    # ruamel cannot scan it, and turning it into a space would change the value.
    with pytest.raises(YAMLSyntaxError):
        parse_documents("a: x\ty\n")


@pytest.mark.parametrize("text", ["a: [\n", "a: b: c\n", "- a\nb: c\n", "a: 'x\n", "? [a\n"])
def test_malformed_yaml_is_invalid(text: str) -> None:
    with pytest.raises(Invalid):
        parse_documents(text, filename="m.yaml")
