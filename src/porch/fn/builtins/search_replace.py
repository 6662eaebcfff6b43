"""search-replace: find fields by path, value, value regex and file, and optionally give them a
new value (``put-value``) or a line comment (``put-comment``); ``${1}``… in either is filled
from the capture groups of ``by-value-regex``.

Paths are dotted (``spec.containers[0].image``) with ``*`` for one element, ``**`` for any number
and ``[*]`` for every index. ``by-path`` naming one concrete field together with only
``put-value`` creates the field where it is missing.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.fn.builtins._paths import (
    assign,
    config_data,
    file_path,
    go_quote,
    line_comment,
    plain,
    restyle,
    scalar_text,
    set_line_comment,
)
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm import _ruamel

BY_VALUE = "by-value"
BY_VALUE_REGEX = "by-value-regex"
BY_PATH = "by-path"
BY_FILE_PATH = "by-file-path"
PUT_VALUE = "put-value"
PUT_COMMENT = "put-comment"
MATCHERS = (BY_VALUE, BY_FILE_PATH, BY_VALUE_REGEX, BY_PATH, PUT_VALUE, PUT_COMMENT)
_CAPTURE_REF = re.compile(r"\$\{([0-9]+)\}")


class SearchReplaceError(Exception):
    pass


@dataclass
class _Result:
    file: str
    path: str
    value: str


@dataclass
class SearchReplace:
    by_value: str = ""
    by_value_regex: str = ""
    by_path: str = ""
    by_file_path: str = ""
    put_value: str = ""
    put_comment: str = ""
    results: list[_Result] = field(default_factory=list)
    count: int = 0
    _regex: re.Pattern[str] | None = None
    _file: str = ""

    @classmethod
    def decode(cls, data: dict[str, str]) -> SearchReplace:
        for key in data:
            if key not in MATCHERS:
                names = " ".join(go_quote(m) for m in MATCHERS)
                raise SearchReplaceError(
                    f"invalid matcher {go_quote(key)}, must be one of [{names}]"
                )
        return cls(
            by_value=data.get(BY_VALUE, ""),
            by_value_regex=data.get(BY_VALUE_REGEX, ""),
            by_path=data.get(BY_PATH, ""),
            by_file_path=data.get(BY_FILE_PATH, ""),
            put_value=data.get(PUT_VALUE, ""),
            put_comment=data.get(PUT_COMMENT, ""),
        )

    @property
    def mutating(self) -> bool:
        return bool(self.put_comment or self.put_value)

    def run(self, items: list[CommentedMap]) -> None:
        if self.by_value and self.by_value_regex:
            raise SearchReplaceError(
                f"only one of [{go_quote(BY_VALUE)}, {go_quote(BY_VALUE_REGEX)}] can be provided"
            )
        if self.by_value_regex:
            self._regex = _compile(self.by_value_regex)
        file_glob = _glob_regex(self.by_file_path) if self.by_file_path else None
        for obj in items:
            path = file_path(obj)
            if file_glob is not None and not file_glob.fullmatch(path):
                continue
            self._file = path
            if self._put_value_by_path():
                self._put_by_path(obj)
            else:
                self._visit(obj, "")

    # --- walking --------------------------------------------------------------------------

    def _visit(self, node: Any, path: str) -> None:
        if isinstance(node, CommentedMap):
            self._visit_mapping(node, path)
            for key in list(node.keys()):
                sub = f"{path}.{scalar_text(key)}"
                value = node[key]
                if isinstance(value, CommentedMap | CommentedSeq):
                    self._visit(value, sub)
                else:
                    self._match_and_replace(node, key, sub)
        elif isinstance(node, CommentedSeq):
            for i in range(len(node)):
                sub = f"{path}[{i}]"
                value = node[i]
                if isinstance(value, CommentedMap | CommentedSeq):
                    self._visit(value, sub)
                else:
                    self._match_and_replace(node, i, sub)

    def _visit_mapping(self, node: CommentedMap, path: str) -> None:
        if not self.put_comment:
            return
        for key in list(node.keys()):
            value = node[key]
            if not isinstance(value, CommentedSeq) or not value:
                continue
            to_key = f"{path}.{scalar_text(key).strip()}"
            if not self._path_match(to_key.removeprefix(".")):
                continue
            flow = copy.deepcopy(value)
            flow.fa.set_flow_style()
            shown = _ruamel.dump(flow, _ruamel.Indent()).strip()
            value.fa.set_block_style()
            set_line_comment(node, key, self.put_comment)
            self.results.append(_Result(self._file, f"{self.by_path} # {self.put_comment}", shown))
            self.count += 1

    def _match_and_replace(self, container: Any, key: Any, path: str) -> None:
        current = scalar_text(container[key])
        if not self._criteria_match(current, path):
            return
        self.count += 1
        if self.put_comment:
            set_line_comment(container, key, self._resolve(current, self.put_comment))
        if self.put_value:
            new = restyle(
                container[key], self._resolve(current, self.put_value), empty_quoted=False
            )
            assign(container, key, new)
        if self._file:
            shown = _show_scalar(container[key], line_comment(container, key))
            self.results.append(_Result(self._file, path.removeprefix("."), shown))

    def _criteria_match(self, value: str, path: str) -> bool:
        path_match = self._path_match(path)
        value_match = (bool(self.by_value) and self.by_value == value) or (
            self._regex is not None and self._regex.search(value) is not None
        )
        return (
            (value_match and path_match)
            or (value_match and not self.by_path)
            or (path_match and not self.by_value and not self.by_value_regex)
        )

    def _path_match(self, yaml_path: str) -> bool:
        if not self.by_path:
            return False
        pattern = self.by_path.split(".")
        elems = yaml_path.removeprefix(".").split(".")
        return _backtrack_match(elems, pattern)

    def _resolve(self, value: str, pattern: str) -> str:
        if not self.by_value_regex:
            return pattern
        regex = _compile(self.by_value_regex)
        match = regex.search(value)
        out = pattern
        if match is not None:
            for i, group in enumerate(match.groups(), start=1):
                out = out.replace("${" + str(i) + "}", group or "")
        if _CAPTURE_REF.search(out):
            raise SearchReplaceError("unable to resolve capture groups")
        return out

    # --- put value by path ----------------------------------------------------------------

    def _put_value_by_path(self) -> bool:
        return (
            _is_abs_path(self.by_path)
            and "[" not in self.by_path
            and not self.by_value
            and not self.by_value_regex
            and bool(self.put_value)
        )

    def _put_by_path(self, obj: CommentedMap) -> None:
        parts = self.by_path.split(".")
        node: Any = obj
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = CommentedMap()
                node[part] = nxt
            elif not isinstance(nxt, CommentedMap):
                raise SearchReplaceError(
                    f"wrong node kind: expected MappingNode but got {_kind(nxt)}"
                )
            node = nxt
        last = parts[-1]
        if last in node:
            if line_comment(node, last):
                set_line_comment(node, last, "")
        node[last] = plain(self.put_value)
        self.results.append(_Result(self._file, self.by_path, self.put_value))
        self.count += 1


def _kind(value: Any) -> str:
    return "SequenceNode" if isinstance(value, CommentedSeq) else "ScalarNode"


def _show_scalar(value: Any, comment: str) -> str:
    """What yaml.v3 prints for the scalar node alone (trimmed), its line comment included."""
    text = _ruamel.dump(value, _ruamel.Indent())
    lines = [ln for ln in text.splitlines() if ln not in ("...", "---")]
    shown = "\n".join(lines).strip()
    return f"{shown} {comment}" if comment else shown


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SearchReplaceError(f"error parsing regexp: {exc}: `{pattern}`") from exc


def _is_abs_path(path: str) -> bool:
    return all(elem and "*" not in elem for elem in path.split("."))


def _backtrack_match(elems: list[str], pattern: list[str]) -> bool:
    n, m = len(elems), len(pattern)
    dp = [[False] * (m + 1) for _ in range(n + 1)]
    dp[0][0] = True
    for j in range(1, m + 1):
        if pattern[j - 1] == "**":
            dp[0][j] = dp[0][j - 1]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if pattern[j - 1] == "**":
                dp[i][j] = dp[i][j - 1] or dp[i - 1][j]
            elif pattern[j - 1] == "*" or _element_match(elems[i - 1], pattern[j - 1]):
                dp[i][j] = dp[i - 1][j - 1]
    return dp[n][m]


def _element_match(elem: str, pattern: str) -> bool:
    if elem == pattern:
        return True
    if "[" in elem:
        elem_parts = elem.split("[")
        pattern_parts = pattern.split("[")
        if pattern_parts[0] != "*" and elem_parts[0] != pattern_parts[0]:
            return False
        return len(pattern_parts) > 1 and (
            pattern_parts[1] == "*]" or elem_parts[1] == pattern_parts[1]
        )
    return False


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A doublestar glob (``**`` spans directories, ``*``/``?`` do not, ``[..]``, ``{a,b}``)."""
    return re.compile(_glob_part(pattern))


def _glob_part(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        at_segment_start = i == 0 or pattern[i - 1] == "/"
        if pattern.startswith("**", i) and at_segment_start:
            if i + 2 == n:
                out.append(".*")
                i += 2
                continue
            if pattern[i + 2] == "/":
                out.append("(?:[^/]*/)*")
                i += 3
                continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "{":
            end, alternatives = _braces(pattern, i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("(?:" + "|".join(_glob_part(a) for a in alternatives) + ")")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _braces(pattern: str, start: int) -> tuple[int, list[str]]:
    depth, parts, begin = 0, [], start + 1
    for j in range(start, len(pattern)):
        ch = pattern[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append(pattern[begin:j])
                return j, parts
        elif ch == "," and depth == 1:
            parts.append(pattern[begin:j])
            begin = j + 1
    return -1, []


@register("search-replace")
def search_replace(rl: ResourceList) -> None:
    try:
        sr = SearchReplace.decode(config_data(rl))
        sr.run(rl.items)
    except SearchReplaceError as exc:
        message = str(exc)
        rl.results.append(
            {
                "message": f"failed to perform search-replace operation: {go_quote(message)}",
                "severity": "error",
            }
        )
        raise FunctionFailure(message) from exc
    if not sr.results:
        rl.results.append({"message": "no matches"})
        return
    for res in sr.results:
        verb = "Mutated field value to" if sr.mutating else "Matched field value"
        result: dict[str, Any] = {"message": f"{verb} {go_quote(res.value)}"}
        if res.path:
            result["field"] = {"path": res.path}
        if res.file:
            result["file"] = {"path": res.file}
        rl.results.append(result)
