"""The one place that configures ruamel.yaml, so its loosely typed surface stays behind us.

Everything here works on a single YAML document; ``krm.yaml`` splits files into documents.
Three decisions are made here and nowhere else:

* **Timestamps are strings.** kyaml (yaml.v3) and Kubernetes hand unquoted dates back as
  strings, and a ``datetime`` would neither round-trip its spelling nor be JSON-shaped, so the
  resolver never produces the timestamp tag.
* **Hostile input is bounded after composing.** ruamel composes an alias as a shared reference,
  so a "billion laughs" document is small in memory until someone walks it. We walk the graph
  once with memoisation, before any caller can, and reject documents whose alias-expanded size
  or depth is unreasonable. Nesting deep enough to exhaust the stack inside ruamel's recursive
  composer surfaces as ``RecursionError`` and is reported the same way.
* **Instances are per thread.** A ``YAML`` object keeps parser and emitter state between calls.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, Format, LineCol
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scanner import RoundTripScanner, ScannerError

from porch.errors import Cause, Details, Invalid

MAX_DEPTH = 100
"""Deepest nesting accepted; real KRM (CRD schemas included) stays far below it."""

ALIAS_BUDGET = 100_000
"""How many nodes alias expansion may add on top of what the text itself spells out."""

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_DASHES = re.compile(r"[ \t]*(?:-[ \t]*)+")


@dataclass(frozen=True)
class Indent:
    """Block indentation of one document, in ruamel's terms.

    ``offset`` is where a sequence dash sits relative to its parent key (0 for kpt/kubectl's
    ``- `` under the key, 2 for the indented style); ``sequence`` is where item content starts.
    """

    mapping: int = 2
    sequence: int = 2
    offset: int = 0


KPT_INDENT = Indent()


class YAMLSyntaxError(Invalid):
    """Malformed or hostile YAML; ``filename`` and 1-based ``line`` say where (0 if unknown)."""

    def __init__(self, problem: str, *, filename: str, line: int = 0, column: int = 0) -> None:
        where = f"{filename}: line {line}" if line else filename
        if line and column:
            where += f", column {column}"
        super().__init__(
            f"{where}: {problem}",
            details=Details(causes=(Cause(message=problem, field=filename, reason="YAMLSyntax"),)),
        )
        self.filename = filename
        self.line = line
        self.column = column


class _Scanner(RoundTripScanner):
    """Refuses nesting past ``MAX_DEPTH`` while scanning: ruamel's scanner is quadratic in
    flow nesting (10 kB of ``[`` costs seconds) and its composer recursive in all nesting."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        self._check_depth(len(self.flow_context))
        super().fetch_flow_collection_start(TokenClass, to_push)

    def add_indent(self, column: int) -> bool:
        self._check_depth(len(self.indents))
        added: bool = super().add_indent(column)
        return added

    def _check_depth(self, depth: int) -> None:
        if depth >= MAX_DEPTH:
            mark = self.reader.get_mark()
            raise ScannerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)


class _Resolver(VersionedResolver):
    def add_version_implicit_resolver(
        self, version: Any, tag: Any, regexp: Any, first: Any
    ) -> None:
        if tag != _TIMESTAMP_TAG:
            super().add_version_implicit_resolver(version, tag, regexp, first)


_local = threading.local()

CACHE_BYTES = 64 << 20
"""Upper bound on the memory the parse cache holds (pickled trees plus their source text)."""

_cache: OrderedDict[str, bytes] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _represent_null(representer: Any, _data: Any) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _instance() -> YAML:
    yaml: YAML | None = getattr(_local, "yaml", None)
    if yaml is None:
        yaml = YAML(typ="rt")
        yaml.Resolver = _Resolver
        yaml.Scanner = _Scanner
        yaml.preserve_quotes = True
        yaml.allow_duplicate_keys = False
        # Never fold long scalars: a re-dump must not rewrap a line the author kept whole.
        yaml.width = sys.maxsize
        # A null is spelled ``null`` in a re-dumped document, as kyaml (yaml.v3) writes it.
        yaml.representer.add_representer(type(None), _represent_null)
        _local.yaml = yaml
    return yaml


def load(text: str, *, filename: str, first_line: int = 1) -> tuple[Any, bytes | None]:
    """Parse one document; returns the tree and its fingerprint (see ``fingerprint``).

    ``first_line`` is where the document starts in its file, for error messages. Parsing is
    the slow part of ruamel, and the same package text is parsed again and again (render,
    heal, every GET), so pristine trees are kept pickled: unpickling is a faithful deep copy
    more than ten times cheaper than parsing.
    """
    global _cache_bytes
    with _cache_lock:
        blob = _cache.get(text)
        if blob is not None:
            _cache.move_to_end(text)
    if blob is not None:
        # Re-pickle rather than reuse the blob's digest: an unpickled set (ruamel keeps one of
        # a map's own keys) may iterate in another order than the one that was pickled.
        node = pickle.loads(blob)
        return node, fingerprint(node)
    node = _parse(text, filename=filename, first_line=first_line)
    blob = pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL)
    if len(blob) <= CACHE_BYTES // 8:
        with _cache_lock:
            if text not in _cache:
                _cache[text] = blob
                _cache_bytes += len(blob) + len(text)
            while _cache_bytes > CACHE_BYTES:
                old_text, old_blob = _cache.popitem(last=False)
                _cache_bytes -= len(old_blob) + len(old_text)
    return node, _digest(blob)


def fingerprint(node: Any) -> bytes | None:
    """A digest of everything that decides how ``node`` dumps: values, key order, scalar
    styles, comments, flow style, anchors, tags. Pickle already captures all of them, far
    faster than dumping; None if the tree holds something pickle cannot take."""
    try:
        return _digest(pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return None


def _digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


def _parse(text: str, *, filename: str, first_line: int) -> Any:
    attempt = text
    while True:
        try:
            node = _instance().load(attempt)
            break
        except RecursionError:
            raise YAMLSyntaxError(
                f"nesting deeper than {MAX_DEPTH} levels", filename=filename, line=first_line
            ) from None
        except ReaderError as exc:
            line = first_line + text.count("\n", 0, max(exc.position, 0))
            problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
            raise YAMLSyntaxError(problem, filename=filename, line=line) from None
        except MarkedYAMLError as exc:
            untabbed = _untab(attempt, exc)
            if untabbed is not None:
                attempt = untabbed
                continue
            mark = exc.problem_mark or exc.context_mark
            line = first_line + mark.line if mark is not None else 0
            column = mark.column + 1 if mark is not None else 0
            problem = exc.problem or exc.context or type(exc).__name__
            raise YAMLSyntaxError(problem, filename=filename, line=line, column=column) from None
        except (YAMLError, ValueError) as exc:
            raise YAMLSyntaxError(str(exc), filename=filename, line=first_line) from None
    problem = _bounds_problem(node)
    if problem:
        raise YAMLSyntaxError(problem, filename=filename, line=first_line)
    return node


def _untab(text: str, exc: MarkedYAMLError) -> str | None:
    """``text`` with the tab ruamel choked on turned into a space, if that tab only separates
    tokens inside a line (``key:<TAB>value``, a tab before a comment or at the end of a line).
    YAML allows those and so do kyaml and Porch; ruamel's scanner does not. A tab it stops at
    sits between tokens, so it is never part of a value and the tree is the same. Tabs used
    as indentation stay an error, as YAML wants. The document's own bytes are kept verbatim
    elsewhere; only this parse input changes."""
    mark = exc.problem_mark
    if mark is None or "'\\t'" not in (exc.problem or ""):
        return None
    index: int = mark.index
    if not 0 <= index < len(text) or text[index] != "\t":
        return None
    line_start = text.rfind("\n", 0, index) + 1
    before = text[line_start:index].rstrip(" \t")
    end = index
    while end < len(text) and text[end] in " \t":
        end += 1
    after = text[end : end + 1]
    separates = (
        after in ("", "\n", "\r", "#")  # trailing, or before a comment
        or before.endswith(":")  # after a mapping indicator
        or (before and _DASHES.fullmatch(before) is not None)  # after a sequence indicator
    )
    if not before or not separates:
        # Indentation, or a tab inside a plain scalar (where it would be part of the value).
        return None
    return text[:index] + " " * (end - index) + text[end:]


def dump(node: Any, indent: Indent) -> str:
    yaml = _instance()
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    out = io.StringIO()
    yaml.dump(node, out)
    return out.getvalue()


class _Rejected(Exception):
    pass


def _bounds_problem(root: Any) -> str:
    """Why ``root`` is unsafe to walk (too deep, recursive, alias bomb), or "" if it is fine."""
    memo: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
    active: set[int] = set()
    distinct = 0

    def walk(node: Any, depth: int) -> tuple[int, int]:
        nonlocal distinct
        if not isinstance(node, dict | list):
            return 1, 0
        key = id(node)
        seen = memo.get(key)
        if seen is not None:
            if depth + seen[1] > MAX_DEPTH:
                raise _Rejected(f"nesting deeper than {MAX_DEPTH} levels")
            return seen
        if depth >= MAX_DEPTH:
            raise _Rejected(f"nesting deeper than {MAX_DEPTH} levels")
        if key in active:
            raise _Rejected("recursive alias")
        active.add(key)
        size, height = 1, 0
        for child in node.values() if isinstance(node, dict) else node:
            child_size, child_height = walk(child, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
        active.discard(key)
        distinct += 1 + len(node)
        memo[key] = (size, height)
        return size, height

    try:
        size, _ = walk(root, 0)
    except _Rejected as exc:
        return str(exc)
    if size - distinct > ALIAS_BUDGET:
        return f"alias expansion too large ({size} nodes from {distinct} written)"
    return ""


def existing(node: Any, attrib: str) -> Any:
    """``node.ca``/``.fa``/``.lc`` without ruamel's create-on-read, which would change the
    tree's fingerprint (and so force a re-dump) just by looking."""
    return getattr(node, attrib, None)


def _is_flow(node: Any) -> bool:
    fmt = existing(node, Format.attrib)
    return bool(fmt is not None and fmt.flow_style())


def detect_indent(root: Any) -> Indent | None:
    """The indentation the author used, read from node positions; None if nothing shows it."""
    mapping: int | None = None
    offset: int | None = None
    sequence: int | None = None
    stack: list[Any] = [root]
    seen: set[int] = set()
    while stack and (mapping is None or offset is None):
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, CommentedSeq):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, CommentedMap) or _is_flow(node):
            continue
        children = [v for v in node.values() if isinstance(v, CommentedMap | CommentedSeq)]
        stack.extend(reversed(children))
        positions = existing(node, LineCol.attrib)
        for key, value in node.items():
            if not isinstance(value, CommentedMap | CommentedSeq) or not value or _is_flow(value):
                continue
            where = existing(value, LineCol.attrib)
            if positions is None or where is None or key not in (positions.data or {}):
                continue
            key_line, key_col = positions.key(key)
            if where.line == key_line:
                continue
            if isinstance(value, CommentedMap) and mapping is None:
                mapping = where.col - key_col
            elif isinstance(value, CommentedSeq) and offset is None:
                offset = where.col - key_col
                first = (where.data or {}).get(0)
                sequence = first[1] - key_col if first else offset + 2
    if mapping is None and offset is None:
        return None
    offset = max(offset or 0, 0)
    sequence = sequence if sequence is not None and sequence >= offset + 2 else offset + 2
    return Indent(
        mapping=mapping if mapping and mapping > 0 else 2, sequence=sequence, offset=offset
    )
