"""apply-setters: set the fields tagged ``# kpt-set: <pattern>`` from the functionConfig's data.

A scalar tagged ``# kpt-set: nginx:${tag}`` becomes the pattern with every setter named in the
config substituted (setters the config does not name keep the value they have now, recovered
by matching the pattern against the current value). A sequence whose key is tagged with a
single ``${name}`` is replaced by the setter value parsed as a YAML array; an empty value gives
``[]``. The results name every field set, or say that nothing matched.
"""

from __future__ import annotations

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
    replace_items,
    restyle,
    scalar_text,
    set_line_comment,
)
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm import _ruamel

SETTER_COMMENT = "# kpt-set: "
_SETTER_REF = re.compile(r"\$\{([^}]*)\}")


class _SetterError(Exception):
    pass


@dataclass
class _Applier:
    setters: list[tuple[str, str]]
    results: list[tuple[str, str, str]] = field(default_factory=list)
    file: str = ""

    def visit(self, node: Any, path: str) -> None:
        if isinstance(node, CommentedMap):
            self.visit_mapping(node, path)
            for key in list(node.keys()):
                value = node[key]
                sub = f"{path}.{scalar_text(key)}"
                if isinstance(value, CommentedMap | CommentedSeq):
                    self.visit(value, sub)
                else:
                    self.visit_scalar(node, key, sub)
        elif isinstance(node, CommentedSeq):
            for i, value in enumerate(node):
                sub = f"{path}[{i}]"
                if isinstance(value, CommentedMap | CommentedSeq):
                    self.visit(value, sub)
                else:
                    self.visit_scalar(node, i, sub)

    def visit_mapping(self, node: CommentedMap, path: str) -> None:
        for key in list(node.keys()):
            value = node[key]
            if not isinstance(value, CommentedSeq):
                continue
            pattern = _extract(line_comment(node, key))
            if not pattern or not self._should_set(pattern):
                continue
            if not _valid_array_pattern(pattern):
                raise _SetterError(f"invalid setter pattern for array node: {go_quote(pattern)}")
            sv = self._value_of(pattern)
            field_path = f"{path}.{scalar_text(key)}".removeprefix(".")
            if sv == "":
                replace_items(value, [])
                value.fa.set_flow_style()
            else:
                try:
                    parsed, _ = _ruamel.load(sv, filename="<setter>")
                except Exception as exc:  # noqa: BLE001 - reported as Go does
                    raise _SetterError(_array_error(sv)) from exc
                if not isinstance(parsed, CommentedSeq):
                    raise _SetterError(_array_error(sv))
                replace_items(value, list(parsed))
                value.fa.set_block_style()
            set_line_comment(node, key, "# kpt-set: " + pattern)
            self.results.append((self.file, field_path, sv))

    def visit_scalar(self, container: Any, key: Any, path: str) -> None:
        pattern = _extract(line_comment(container, key))
        if not pattern or not self._should_set(pattern):
            return
        current = scalar_text(container[key])
        out = pattern
        for name, value in self.setters:
            out = out.replace("${" + name + "}", value)
        for name, value in _current_setter_values(pattern, current).items():
            out = out.replace("${" + name + "}", value)
        unresolved = _SETTER_REF.findall(out)
        if unresolved:
            refs = " ".join("${" + u + "}" for u in unresolved)
            raise _SetterError(f"values for setters [{refs}] must be provided")
        assign(container, key, restyle(container[key], out))
        self.results.append((self.file, path.removeprefix("."), out))

    def _should_set(self, pattern: str) -> bool:
        return any("${" + name + "}" in pattern for name, _ in self.setters)

    def _value_of(self, pattern: str) -> str:
        name = _clean(pattern)
        for setter, value in self.setters:
            if setter == name:
                return value
        return ""


def _array_error(value: str) -> str:
    return f"input to array setter must be an array of values, but found {go_quote(value)}"


def _extract(comment: str) -> str:
    if not comment.startswith(SETTER_COMMENT):
        return ""
    return comment.removeprefix(SETTER_COMMENT).strip()


def _valid_array_pattern(pattern: str) -> bool:
    return (
        len(_SETTER_REF.findall(pattern)) == 1
        and pattern.startswith("${")
        and pattern.endswith("}")
    )


def _clean(text: str) -> str:
    text = text.strip()
    return text.removeprefix("${").removesuffix("}")


def _current_setter_values(pattern: str, value: str) -> dict[str, str]:
    """Setter values recovered from the current field value by matching the pattern."""
    names = [m.group(0) for m in _SETTER_REF.finditer(pattern)]
    regex = re.escape(pattern)
    for name in names:
        regex = regex.replace(re.escape(name), "(.*)")
    try:
        match = re.search(regex, value)
    except re.error:
        return {}
    if match is None:
        return {}
    groups = match.groups()
    if len(groups) != len(names):
        return {}
    out: dict[str, str] = {}
    for name, found in zip(names, groups, strict=True):
        if found == "":
            return {}
        out[_clean(name)] = found
    return out


@register("apply-setters")
def apply_setters(rl: ResourceList) -> None:
    applier = _Applier(setters=list(config_data(rl).items()))
    try:
        for item in rl.items:
            applier.file = file_path(item)
            applier.visit(item, "")
    except _SetterError as exc:
        message = str(exc)
        rl.results.append({"message": f"failed to apply setters: {message}", "severity": "error"})
        raise FunctionFailure(message) from exc
    if not applier.results:
        rl.results.append({"message": "no matches for input setter(s)"})
        return
    for file, path, value in applier.results:
        result: dict[str, Any] = {"message": f"set field value to {go_quote(value)}"}
        if path:
            result["field"] = {"path": path}
        if file:
            result["file"] = {"path": file}
        rl.results.append(result)
