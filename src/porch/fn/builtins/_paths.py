"""Shared helpers of the builtin functions of group B (setters, replacements, images).

They work on ruamel round-trip trees and mimic what the catalog's Go functions observe through
yaml.v3 nodes: a scalar's ``Value`` text, its line comment, its quoting style, and Go's ``%q``.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tokens import CommentToken

from porch.fn.types import ResourceList
from porch.krm import _ruamel
from porch.krm.yaml import go_scalar

PATH_ANNOTATION = "config.kubernetes.io/path"
INTERNAL_PATH_ANNOTATION = "internal.config.kubernetes.io/path"
INDEX_ANNOTATION = "config.kubernetes.io/index"
INTERNAL_INDEX_ANNOTATION = "internal.config.kubernetes.io/index"

_QUOTED_STYLES = (
    DoubleQuotedScalarString,
    SingleQuotedScalarString,
    LiteralScalarString,
    FoldedScalarString,
)


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` (strconv.Quote) prints it."""
    out = ['"']
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    named["\v"] = "\\v"
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in named:
            out.append(named[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def annotation_map(obj: Any) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, CommentedMap) else None
    annos = meta.get("annotations") if isinstance(meta, CommentedMap) else None
    if not isinstance(annos, dict):
        return {}
    return {
        str(k): scalar_text(v)
        for k, v in annos.items()
        if not isinstance(v, CommentedMap | CommentedSeq)
    }


def file_path(obj: Any) -> str:
    """The file an item came from, as kyaml's GetFileAnnotations reads it."""
    annos = annotation_map(obj)
    return annos.get(INTERNAL_PATH_ANNOTATION) or annos.get(PATH_ANNOTATION, "")


def file_index(obj: Any) -> int:
    annos = annotation_map(obj)
    raw = annos.get(INTERNAL_INDEX_ANNOTATION) or annos.get(INDEX_ANNOTATION, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def config_data(rl: ResourceList) -> dict[str, str]:
    """``data`` of a ConfigMap-like functionConfig as strings (kyaml's GetDataMap)."""
    fc = rl.function_config
    if not isinstance(fc, CommentedMap):
        return {}
    data = fc.get("data")
    if not isinstance(data, dict):
        return {}
    return {
        str(k): scalar_text(v)
        for k, v in data.items()
        if not isinstance(v, CommentedMap | CommentedSeq)
    }


def scalar_text(value: Any) -> str:
    """The text yaml.v3 would hold as the node's ``Value``."""
    if value is None:
        return ""
    if isinstance(value, bool | ScalarBoolean):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, ScalarFloat):
        return _ruamel.dump(value, _ruamel.Indent()).split("\n", 1)[0]
    if isinstance(value, float):
        return repr(value)
    return str(value)


def restyle(old: Any, text: str, *, empty_quoted: bool = True) -> Any:
    """A scalar holding ``text`` written the way yaml.v3 writes a node that kept ``old``'s
    style and lost its tag: quoted styles stay, plain text is resolved again."""
    for style in _QUOTED_STYLES:
        if isinstance(old, style):
            return style(text)
    if text == "":
        return DoubleQuotedScalarString("") if empty_quoted else ""
    return plain(text)


def restyle_string(old: Any, text: str) -> Any:
    """A string scalar holding ``text`` in ``old``'s place: quoted styles stay, a plain one is
    quoted only where it would read as something else (kyaml sets strings this way)."""
    for style in _QUOTED_STYLES:
        if isinstance(old, style):
            return style(text)
    return go_scalar(text)


def plain(text: str) -> Any:
    """``text`` as an untagged plain scalar: ``3`` stays a number, ``a: b`` gets quoted."""
    if "\n" in text:
        return LiteralScalarString(text)
    try:
        node, _ = _ruamel.load(text, filename="<value>")
    except Exception:  # noqa: BLE001 - anything unparsable is plainly a string
        return text
    if node is None or isinstance(node, CommentedMap | CommentedSeq | str):
        return text
    return node


# --- comments --------------------------------------------------------------------------------


def _comments(node: Any) -> Any:
    """``node.ca`` if the node has comments, else None (reading ``.ca`` would create it, and
    so change the tree's fingerprint and force a re-dump of an untouched document)."""
    return _ruamel.existing(node, Comment.attrib)


def _slot(container: Any, key: Any) -> Any:
    """The comment token after ``container[key]`` (shared, for a block collection, with that
    collection's own first comment slot), or None."""
    holder = _comments(container)
    items = holder.items.get(key) if holder is not None else None
    index = 0 if isinstance(container, CommentedSeq) else 2
    token = items[index] if items and len(items) > index else None
    if token is None and isinstance(container, CommentedMap):
        value = container.get(key)
        inner = _comments(value) if isinstance(value, CommentedMap | CommentedSeq) else None
        if inner is not None and inner.comment:
            token = inner.comment[0]
    return token


def line_comment(container: Any, key: Any) -> str:
    """The comment on the line of ``container[key]`` (for a block collection: after the key),
    ``# ...`` like yaml.v3's LineComment, or ``""``."""
    text = getattr(_slot(container, key), "value", None)
    if not isinstance(text, str):
        return ""
    first = text.split("\n", 1)[0].strip()
    return first if first.startswith("#") else ""


def set_line_comment(container: Any, key: Any, comment: str) -> None:
    """Put ``comment`` (with or without ``#``) at the end of ``container[key]``'s line,
    keeping the comment lines that follow it."""
    if comment and not comment.startswith("#"):
        comment = "# " + comment
    value = container[key]
    inner = _comments(value) if isinstance(value, CommentedMap | CommentedSeq) else None
    shared = inner.comment if inner is not None else None
    old = _slot(container, key)
    old_text = getattr(old, "value", None)
    rest = old_text.partition("\n")[2] if isinstance(old_text, str) else ""
    if shared and shared[0] is old:
        shared[0] = None
    text = (comment + "\n" if comment else "\n") + rest
    if not comment and not rest.strip():
        new: Any = None
    else:
        new = CommentToken(text, CommentMark(0), None)
    if new is None and _comments(container) is None:
        return
    items = container.ca.items.setdefault(key, [None, None, None, None])
    index = 0 if isinstance(container, CommentedSeq) else 2
    while len(items) <= index:
        items.append(None)
    items[index] = new


def replace_items(seq: CommentedSeq, values: list[Any]) -> None:
    """Replace a sequence's content in place (its own comments stay)."""
    del seq[:]
    holder = _comments(seq)
    if holder is not None:
        holder.items.clear()
    seq.extend(values)


def assign(container: Any, key: Any, value: Any) -> None:
    """Set ``container[key]`` and put its line comment right after the new value (one space),
    as yaml.v3 prints it, instead of at the column the old value's comment had."""
    container[key] = value
    token = _slot(container, key)
    text = getattr(token, "value", None)
    if token is None or not isinstance(text, str) or not text.lstrip(" ").startswith("#"):
        return
    fresh = CommentToken(text, CommentMark(0), None)
    holder = _comments(container)
    items = holder.items.get(key) if holder is not None else None
    index = 0 if isinstance(container, CommentedSeq) else 2
    if items and len(items) > index and items[index] is token:
        items[index] = fresh
    sub = container[key]
    inner = _comments(sub) if isinstance(sub, CommentedMap | CommentedSeq) else None
    if inner is not None and inner.comment and inner.comment[0] is token:
        inner.comment[0] = fresh
