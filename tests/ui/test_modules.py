"""The YAML highlighter and the line diff, run as the browser runs them (ES modules)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.conftest import UIServer, new_page

YAML = """\
--- # first
apiVersion: v1
kind: ConfigMap
metadata:
  name: "web # not a comment"
  labels: &common
    tier: backend
data:
  count: 3
  ratio: -1.5e3
  enabled: true
  nothing: ~
  script: |
    echo a: b # part of the string
    exit 0
  list:
    - one
    - key: value
    - *common
  tagged: !!str 12
"""


@pytest.fixture(scope="module")
def page(browser: Any, server: UIServer) -> Iterator[Any]:
    errors: list[str] = []
    p = new_page(browser, server, None, errors)
    yield p
    p.context.close()


def tokens(page: Any, source: str) -> list[list[list[str]]]:
    result = page.evaluate(
        "async (src) => (await import('/ui/static/yaml.js')).tokenize(src)", source
    )
    assert isinstance(result, list)
    return result


def classes(line: list[list[str]]) -> list[tuple[str, str]]:
    return [(cls, text) for cls, text in line if cls]


def test_yaml_tokens(page: Any) -> None:
    lines = tokens(page, YAML)
    assert len(lines) == len(YAML.splitlines())
    assert classes(lines[0]) == [("document", "---"), ("comment", "# first")]
    assert classes(lines[1]) == [("key", "apiVersion"), ("punct", ":"), ("string", "v1")]
    assert classes(lines[4])[-1] == ("string", '"web # not a comment"')
    assert ("anchor", "&common") in classes(lines[5])
    assert classes(lines[8])[-1] == ("number", "3")
    assert classes(lines[9])[-1] == ("number", "-1.5e3")
    assert classes(lines[10])[-1] == ("constant", "true")
    assert classes(lines[11])[-1] == ("constant", "~")
    assert classes(lines[12])[-1] == ("indicator", "|")
    # block scalar content is one string, even when it looks like a key and a comment
    assert classes(lines[13]) == [("string", "    echo a: b # part of the string")]
    assert classes(lines[14]) == [("string", "    exit 0")]
    assert classes(lines[15])[0] == ("key", "list")
    assert classes(lines[16]) == [("indicator", "-"), ("string", "one")]
    assert classes(lines[17]) == [
        ("indicator", "-"),
        ("key", "key"),
        ("punct", ":"),
        ("string", "value"),
    ]
    assert ("anchor", "*common") in classes(lines[18])
    assert ("tag", "!!str") in classes(lines[19])
    # the text is kept exactly: joining the tokens gives the source back
    assert "\n".join("".join(t for _, t in line) for line in lines) + "\n" == YAML


def test_highlight_builds_text_nodes_only(page: Any) -> None:
    html = page.evaluate(
        """async () => {
            const y = await import('/ui/static/yaml.js');
            const code = y.highlight('a: "<img src=x onerror=alert(1)>"\\n');
            return {html: code.innerHTML, imgs: code.querySelectorAll('img').length};
        }"""
    )
    assert html["imgs"] == 0
    assert "&lt;img" in html["html"]


def diff(page: Any, a: list[str], b: list[str]) -> list[dict[str, Any]]:
    result = page.evaluate(
        "async ([a, b]) => (await import('/ui/static/diff.js')).diffLines(a, b)", [a, b]
    )
    assert isinstance(result, list)
    return result


def test_lcs_diff_is_minimal_and_complete(page: Any) -> None:
    ops = diff(page, ["a", "b", "c", "d"], ["a", "x", "c", "d", "e"])
    assert [o["op"] for o in ops] == ["same", "del", "add", "same", "same", "add"]
    assert diff(page, [], []) == []
    assert [o["op"] for o in diff(page, [], ["a"])] == ["add"]
    assert [o["op"] for o in diff(page, ["a"], [])] == ["del"]
    # LCS of "abcabba" and "cbabac" has length 4
    ops = diff(page, list("abcabba"), list("cbabac"))
    assert sum(o["op"] == "same" for o in ops) == 4
    # every line of both sides appears once, in order
    assert [o["a"] for o in ops if "a" in o] == list(range(7))
    assert [o["b"] for o in ops if "b" in o] == list(range(6))


def test_side_by_side_pairs_changes(page: Any) -> None:
    rows = page.evaluate(
        """async () => (await import('/ui/static/diff.js')).sideBySide(
            ['k: 1', 'name: a', 'x: 1', 'end'], ['k: 1', 'name: b', 'end', 'new'])"""
    )
    assert [r["kind"] for r in rows] == ["same", "change", "del", "same", "add"]
    assert rows[1]["left"] == {"n": 2, "text": "name: a"}
    assert rows[1]["right"] == {"n": 2, "text": "name: b"}
    assert rows[4]["left"] is None and rows[4]["right"] == {"n": 4, "text": "new"}


def test_diff_files_statuses_and_huge_inputs(page: Any) -> None:
    files = page.evaluate(
        """async () => (await import('/ui/static/diff.js')).diffFiles(
            {Kptfile: 'a\\nb\\n', 'gone.yaml': 'x\\n', 'same.yaml': 's\\n'},
            {Kptfile: 'a\\nc\\n', 'new.yaml': 'y\\n', 'same.yaml': 's\\n'})
            .map(({path, status, added, removed}) => [path, status, added, removed])"""
    )
    assert files == [
        ["Kptfile", "changed", 1, 1],
        ["gone.yaml", "removed", 0, 1],
        ["new.yaml", "added", 1, 0],
        ["same.yaml", "same", 0, 0],
    ]
    # 5,000 x 5,000 changed lines exceed the table budget: one replaced block, no freeze
    ops = page.evaluate(
        """async () => {
            const d = await import('/ui/static/diff.js');
            const a = Array.from({length: 5000}, (_, i) => `a${i}`);
            const b = Array.from({length: 5000}, (_, i) => `b${i}`);
            const ops = d.diffLines(['head', ...a, 'tail'], ['head', ...b, 'tail']);
            const runs = [];
            for (const o of ops) {
                if (runs.length && runs[runs.length - 1][0] === o.op) runs[runs.length - 1][1]++;
                else runs.push([o.op, 1]);
            }
            return runs;
        }"""
    )
    assert ops == [["same", 1], ["del", 5000], ["add", 5000], ["same", 1]]
