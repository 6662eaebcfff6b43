"""YAML files as ruamel round-trip trees that re-dump byte for byte when left alone.

A package file is split into documents on ``---`` lines before anything is parsed, and each
document remembers the exact text it came from. Dumping a document whose tree still dumps the
way its pristine text does gives back that text, so trailing spaces, ``null`` spelled ``~``,
flow-map padding and the other spellings ruamel normalises survive every untouched document.
Only a document that really changed is re-serialised, in the indentation style detected from
its own text; that keeps git diffs as small as the edit.

Text before a ``---`` marker (licence headers, directives) is kept verbatim as the document's
prefix: ruamel drops comments that precede an explicit document start.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from porch.krm import _ruamel
from porch.krm._ruamel import KPT_INDENT, Indent, YAMLSyntaxError

__all__ = [
    "KPT_INDENT",
    "Document",
    "Documents",
    "Indent",
    "YAMLSyntaxError",
    "dump_documents",
    "dumps",
    "from_plain",
    "go_scalar",
    "load_object",
    "parse_documents",
    "to_plain",
    "to_plain_value",
]

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_MARKER = re.compile(r"---(?:[ \t]+(?:#.*)?)?\r?\n?")
_MARKER_WITH_CONTENT = re.compile(r"---[ \t]+[^#\s]")
_END = re.compile(r"\.\.\.(?:[ \t]+(?:#.*)?)?\r?\n?")
_NOT_CONTENT = re.compile(r"(?:[ \t]*(?:#.*)?|%.*)\r?\n?")


@dataclass(eq=False)
class Document:
    """One YAML document: its tree plus the text needed to give the bytes back unchanged.

    ``node`` is a ``CommentedMap`` for a KRM object, None for an empty (comment-only) document.
    ``source`` is the text the node was parsed from; None for documents built in memory.
    """

    node: Any
    prefix: str = ""
    source: str | None = None
    indent: Indent = KPT_INDENT
    pristine: bytes | None = field(default=None, repr=False)

    def text(self) -> str:
        """This document's text as it would be dumped (without the ``prefix``)."""
        if self.node is None:
            return self.source or ""
        if self.source is not None and self.pristine is not None:
            if _ruamel.fingerprint(self.node) == self.pristine:
                return self.source
        return _ruamel.dump(self.node, self.indent)


@dataclass(eq=False)
class Documents:
    """The documents of one file, in order; iterating yields the KRM objects (mappings)."""

    filename: str
    entries: list[Document] = field(default_factory=list)

    def objects(self) -> list[CommentedMap]:
        return [e.node for e in self.entries if isinstance(e.node, CommentedMap)]

    def append(self, node: Any) -> None:
        indent = next((e.indent for e in self.entries if e.source is not None), KPT_INDENT)
        self.entries.append(Document(node=node, indent=indent))

    def remove(self, node: Any) -> None:
        self.entries = [e for e in self.entries if e.node is not node]

    def __iter__(self) -> Iterator[CommentedMap]:
        return iter(self.objects())

    def __len__(self) -> int:
        return len(self.objects())


def _split(text: str) -> Iterator[tuple[str, str, int]]:
    """Yield (prefix, body, first line of body) per document; see the module docstring."""
    prefix: list[str] = []
    body: list[str] = []
    has_content = False
    line_no = body_line = 1
    for line in _LINE.findall(text):
        pure_marker = _MARKER.fullmatch(line) is not None
        if pure_marker or _MARKER_WITH_CONTENT.match(line):
            if has_content:
                yield "".join(prefix), "".join(body), body_line
                prefix, body = [], []
            prefix.extend(body)
            body = [] if pure_marker else [line]
            if pure_marker:
                prefix.append(line)
            has_content = not pure_marker
            body_line = line_no + 1 if pure_marker else line_no
        elif _END.fullmatch(line):
            # A bare document may follow ``...`` without any ``---``.
            body.append(line)
            yield "".join(prefix), "".join(body), body_line
            prefix, body, has_content = [], [], False
            body_line = line_no + 1
        else:
            body.append(line)
            has_content = has_content or not _NOT_CONTENT.fullmatch(line)
        line_no += 1
    if prefix or body or line_no == 1:
        yield "".join(prefix), "".join(body), body_line


def parse_documents(text: str, *, filename: str = "<input>") -> Documents:
    """Parse every document of ``text``; raises ``YAMLSyntaxError`` (an ``Invalid``)."""
    entries: list[Document] = []
    shown: list[Indent | None] = []
    for prefix, body, first_line in _split(text):
        node, pristine = _ruamel.load(body, filename=filename, first_line=first_line)
        entries.append(Document(node=node, prefix=prefix, source=body, pristine=pristine))
        shown.append(_ruamel.detect_indent(node) if node is not None else None)
    # A document too flat to show its indentation re-dumps like its neighbours.
    default = next((i for i in shown if i is not None), KPT_INDENT)
    for entry, indent in zip(entries, shown, strict=True):
        entry.indent = indent or default
    return Documents(filename=filename, entries=entries)


def dump_documents(docs: Documents) -> str:
    parts: list[str] = []
    previous_verbatim = True
    for entry in docs.entries:
        if entry.node is None and entry.source is None:
            continue
        body = entry.text()
        verbatim = entry.source is not None and body == entry.source
        head = entry.prefix
        needs_marker = entry.node is not None and not (verbatim and previous_verbatim)
        if parts and needs_marker and not _has_marker(head) and not _starts_with_marker(body):
            head += "---\n"
        if parts and not parts[-1].endswith("\n") and (head or body):
            parts.append("\n")
        parts.append(head + body)
        previous_verbatim = verbatim
    return "".join(parts)


def _has_marker(text: str) -> bool:
    return any(_MARKER.fullmatch(line) for line in _LINE.findall(text))


def _starts_with_marker(text: str) -> bool:
    first = _LINE.match(text)
    return first is not None and (
        _MARKER.fullmatch(first.group()) is not None
        or _MARKER_WITH_CONTENT.match(first.group()) is not None
    )


def load_object(text: str, *, filename: str = "<input>") -> CommentedMap:
    """The single mapping of a one-object file (a Kptfile, a function config)."""
    objects = parse_documents(text, filename=filename).objects()
    if len(objects) != 1:
        raise YAMLSyntaxError(
            f"expected exactly one object, found {len(objects)}", filename=filename
        )
    return objects[0]


def dumps(obj: Any, *, indent: Indent = KPT_INDENT) -> str:
    """Serialise one tree (or plain data) as a single document, kpt style by default."""
    return _ruamel.dump(obj, indent)


def to_plain(node: Mapping[Any, Any]) -> dict[str, Any]:
    """A JSON-shaped copy of a mapping: plain dicts, lists, str, int, float, bool, None."""
    out = to_plain_value(node)
    if not isinstance(out, dict):
        raise TypeError(f"expected a mapping, got {type(node).__name__}")
    return out


def to_plain_value(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {_plain_key(k): to_plain_value(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [to_plain_value(v) for v in node]
    if isinstance(node, bool | ScalarBoolean):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, TaggedScalar):
        return str(node.value)
    if isinstance(node, bytes):
        return base64.b64encode(node).decode("ascii")
    if isinstance(node, datetime.date):
        return node.isoformat()
    if node is None:
        return None
    if isinstance(node, set | frozenset):
        return [to_plain_value(v) for v in node]
    return str(node)


def _plain_key(key: Any) -> str:
    # JSON objects only have string keys; spell the others the way YAML would.
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(to_plain_value(key))


def from_plain(data: Any) -> Any:
    """Build a round-trip tree from plain data, quoting strings the way Go's yaml.v3 does."""
    if isinstance(data, Mapping):
        out = CommentedMap()
        for k, v in data.items():
            out[k] = from_plain(v)
        return out
    if isinstance(data, list | tuple):
        return CommentedSeq([from_plain(v) for v in data])
    if isinstance(data, str):
        return go_scalar(data)
    return data


# What yaml.v3 would read back as something other than a string, so its encoder quotes it.
_GO_NON_STRING = re.compile(
    r"""(?x)
    ~|null|Null|NULL
    |true|True|TRUE|false|False|FALSE
    |y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF
    |[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)
    |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
    |[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
      (?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?
    """
)


def go_needs_quotes(value: str) -> bool:
    """Whether Go's yaml.v3 would quote ``value`` because it reads as a non-string."""
    return value == "" or bool(_GO_NON_STRING.fullmatch(value))


def go_scalar(value: str) -> str:
    """``value`` styled as kpt (Go yaml.v3) would write it: ``"true"`` double quoted, text
    with newlines as a literal block, everything else left to the emitter's plain/single
    quote choice, which follows the same libyaml rules as Go's."""
    styled: str = value
    if "\n" in value:
        styled = LiteralScalarString(value)
    elif value == "" or _GO_NON_STRING.fullmatch(value):
        styled = DoubleQuotedScalarString(value)
    return styled
