"""Package I/O for rendering: kyaml's LocalPackageReader/Writer over an in-memory file map.

A package is ``Mapping[str, str]`` (relative ``/``-separated path → text). :class:`PackageFiles`
reads the KRM documents of one package directory (kpt's MatchAllKRM: ``Kptfile``, ``*.yaml``,
``*.yml``, ``*.json``; files in subpackages — directories with their own ``Kptfile`` — and
files matched by the package's ``.krmignore`` are skipped), in kyaml's walk order, into ruamel
trees annotated the way kpt annotates them (keys added in sorted order):

* ``config.kubernetes.io/path`` / ``internal.config.kubernetes.io/path``: file path relative to
  the package directory;
* ``config.kubernetes.io/index`` / ``internal.config.kubernetes.io/index``: the document's index
  among the file's non-empty documents;
* ``internal.config.kubernetes.io/package-path``: the package directory (``.`` for the root);
* ``internal.config.kubernetes.io/seqindent``: ``compact`` or ``wide`` (kyaml's textual
  DeriveSeqIndentStyle, per document).

Every file is parsed once. :func:`write_items` groups items by path, orders them by index,
strips the reader annotations and dumps each file: a file whose objects are all unchanged comes
back as it was, and so does each unchanged document (content, key order, styles and comments
compared by :func:`signature`) in a rebuilt file; a changed or new document is dumped in kyaml's
layout (two-space maps, sequences per its seqindent, nulls as ``null``, libyaml quoting). One
yaml.v3 normalisation is applied to every written file: blank lines between a document's head
comment and its first node disappear. Pruning files whose resources are gone is the caller's.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.emitter import Emitter
from ruamel.yaml.representer import RoundTripRepresenter

from porch.errors import Invalid
from porch.krm import _ruamel
from porch.krm.yaml import Document, Documents, Indent, parse_documents, to_plain_value

KPTFILE = "Kptfile"

PATH = "internal.config.kubernetes.io/path"
INDEX = "internal.config.kubernetes.io/index"
LEGACY_PATH = "config.kubernetes.io/path"
LEGACY_INDEX = "config.kubernetes.io/index"
SEQINDENT = "internal.config.kubernetes.io/seqindent"
PACKAGE_PATH = "internal.config.kubernetes.io/package-path"
LEGACY_ID = "config.k8s.io/id"
INTERNAL_ID = "internal.config.kubernetes.io/id"
RESOURCE_ID = "internal.config.kubernetes.io/kpt-resource-id"
MIGRATION_ID = "internal.config.kubernetes.io/annotations-migration-resource-id"

WRITER_STRIPPED = (
    PATH,
    LEGACY_PATH,
    INDEX,
    LEGACY_INDEX,
    SEQINDENT,
    LEGACY_ID,
    INTERNAL_ID,
    PACKAGE_PATH,
    RESOURCE_ID,
    MIGRATION_ID,
)
"""Annotations the package writer removes before a resource reaches its file."""

COMPACT = Indent(mapping=2, sequence=2, offset=0)
WIDE = Indent(mapping=2, sequence=4, offset=2)


class KioError(Invalid):
    """A package cannot be read or written (bad YAML, a path outside the package, ...)."""


# --------------------------------------------------------------------------------------------
# annotations


def get_annotations(node: Any) -> dict[str, str]:
    """The node's ``metadata.annotations`` as plain strings (empty if absent)."""
    if not isinstance(node, Mapping):
        return {}
    meta = node.get("metadata")
    if not isinstance(meta, Mapping):
        return {}
    ann = meta.get("annotations")
    if not isinstance(ann, Mapping):
        return {}
    return {str(k): _str(v) for k, v in ann.items()}


def annotation(node: Any, key: str) -> str:
    if not isinstance(node, Mapping):
        return ""
    meta = node.get("metadata")
    if not isinstance(meta, Mapping):
        return ""
    ann = meta.get("annotations")
    if not isinstance(ann, Mapping):
        return ""
    value = ann.get(key)
    return "" if value is None else _str(value)


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def set_annotation(node: MutableMapping[Any, Any], key: str, value: str) -> None:
    meta = node.get("metadata")
    if not isinstance(meta, MutableMapping):
        meta = CommentedMap()
        node["metadata"] = meta
    ann = meta.get("annotations")
    if not isinstance(ann, MutableMapping):
        ann = CommentedMap()
        meta["annotations"] = ann
    ann[key] = value


def clear_annotations(node: Any, keys: Iterable[str]) -> None:
    """Remove ``keys``; an annotations map left empty goes too (kyaml's ClearEmptyAnnotations)."""
    if not isinstance(node, Mapping):
        return
    meta = node.get("metadata")
    if not isinstance(meta, MutableMapping):
        return
    ann = meta.get("annotations")
    if not isinstance(ann, MutableMapping):
        return
    for key in keys:
        if key in ann:
            del ann[key]
    if not ann:
        del meta["annotations"]


def file_annotations(node: Any) -> tuple[str, str]:
    """(path, index) as kyaml's GetFileAnnotations reads them: internal first, then legacy."""
    ann = get_annotations(node)
    path = ann.get(PATH) or ann.get(LEGACY_PATH, "")
    index = ann.get(INDEX) or ann.get(LEGACY_INDEX, "")
    return path, index


# --------------------------------------------------------------------------------------------
# content signatures: "is this document unchanged?" without dumping it


def signature(node: Any) -> Any:
    """A comparable value covering everything that decides how ``node`` dumps (values, key
    order, scalar styles, comments, flow style, anchors, tags). Unlike a pickle digest it does
    not depend on ruamel's internal key sets, so a copy of an unchanged tree compares equal."""
    return _sig(node, 0)


def _comment_sig(node: Any) -> Any:
    ca = _ruamel.existing(node, "_yaml_comment")
    if ca is None:
        return None
    items = getattr(ca, "items", None) or {}
    parts = (
        _tokens(ca.comment),
        _tokens(ca.end),
        tuple((k, t) for k, t in ((k, _tokens(v)) for k, v in items.items()) if t),
    )
    return parts if any(parts) else None


def _tokens(value: Any) -> Any:
    """Comment tokens of a slot; empty slots (a copy may create them) read as nothing."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        inner = tuple(_tokens(v) for v in value)
        return inner if any(t is not None and t != () for t in inner) else ()
    text = getattr(value, "value", None)
    if text is not None:
        return (str(text), getattr(value, "column", None))
    return repr(value)


def _extras(node: Any) -> Any:
    fa = _ruamel.existing(node, "_yaml_format")
    flow = fa.flow_style() if fa is not None else None
    anchor = _ruamel.existing(node, "_yaml_anchor")
    anchor_sig = (anchor.value, anchor.always_dump) if anchor is not None else None
    tag = _ruamel.existing(node, "_yaml_tag")
    tag_sig = getattr(tag, "value", None) if tag is not None else None
    return (flow, anchor_sig, tag_sig, _comment_sig(node))


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def _sig(node: Any, depth: int) -> Any:
    if depth > 200:
        return ("deep", id(node))
    if isinstance(node, Mapping):
        return (
            "M",
            _extras(node),
            tuple((_sig(k, depth + 1), _sig(v, depth + 1)) for k, v in node.items()),
        )
    if isinstance(node, list):
        return ("S", _extras(node), tuple(_sig(v, depth + 1) for v in node))
    kind = type(node)
    if kind in _PLAIN_SCALARS:
        return (kind, node)
    slots: Any = None
    try:
        slots = tuple(sorted(vars(node).items()))
    except TypeError:
        slot_names = getattr(type(node), "__slots__", ())
        if slot_names:
            slots = tuple(repr(getattr(node, s, None)) for s in slot_names)
    anchor = getattr(node, "anchor", None)
    anchor_value = getattr(anchor, "value", None) if anchor is not None else None
    return (type(node).__name__, repr(node), repr(slots), anchor_value)


# --------------------------------------------------------------------------------------------
# .krmignore


@dataclass
class _IgnoreRule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    anchored: bool


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class IgnoreMatcher:
    """gitignore-style rules of one ``.krmignore``, relative to its directory."""

    def __init__(self, text: str) -> None:
        self.rules: list[_IgnoreRule] = []
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            self.rules.append(
                _IgnoreRule(
                    regex=re.compile(_glob_to_regex(line) + r"\Z"),
                    negate=negate,
                    dir_only=dir_only,
                    anchored=anchored,
                )
            )

    def _match(self, rel: str, is_dir: bool) -> bool:
        ignored = False
        base = rel.rsplit("/", 1)[-1]
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            target = rel if rule.anchored else base
            if rule.regex.match(target):
                ignored = not rule.negate
        return ignored

    def ignores(self, rel: str) -> bool:
        """Whether the file ``rel`` (or one of its directories) is ignored."""
        if not self.rules:
            return False
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self._match("/".join(parts[:i]), True):
                return True
        return self._match(rel, False)


# --------------------------------------------------------------------------------------------
# reading


def _walk_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def is_krm_name(name: str) -> bool:
    """kpt's MatchAllKRM: ``Kptfile``, ``*.yaml``, ``*.yml`` and ``*.json``."""
    return name == KPTFILE or name.endswith((".yaml", ".yml", ".json"))


def _join(directory: str, rel: str) -> str:
    return f"{directory}/{rel}" if directory else rel


def _rel(path: str, directory: str) -> str:
    return path[len(directory) + 1 :] if directory else path


def _display_dir(directory: str) -> str:
    return directory or "."


@dataclass
class Original:
    """Where a read document came from and what it looked like, for verbatim write-back."""

    path: str  # root-relative file path
    position: int  # position among the file's object documents
    document: Document
    signature: Any


@dataclass
class PackageFiles:
    """The file map of a package tree, parsed lazily and at most once per file."""

    files: Mapping[str, str]
    _docs: dict[str, Documents] = field(default_factory=dict)
    originals: dict[int, Original] = field(default_factory=dict)
    by_signature: dict[Any, list[Original]] = field(default_factory=dict)
    file_originals: dict[str, list[Original]] = field(default_factory=dict)
    _kptfile_dirs: set[str] | None = None

    def kptfile_dirs(self) -> set[str]:
        if self._kptfile_dirs is None:
            dirs = set()
            for path in self.files:
                head, _, name = path.rpartition("/")
                if name == KPTFILE:
                    dirs.add(head)
            self._kptfile_dirs = dirs
        return self._kptfile_dirs

    def root(self) -> str | None:
        """The top-most directory holding a Kptfile ("" for the map's root), None if none."""
        dirs = self.kptfile_dirs()
        if "" in dirs:
            return ""
        if not dirs:
            return None
        tops = [d for d in dirs if not any(d.startswith(o + "/") for o in dirs if o != d)]
        return sorted(tops, key=_walk_key)[0]

    def direct_subpackages(self, pkg: str) -> list[str]:
        """Directories under ``pkg`` with a Kptfile and no package in between, sorted."""
        inner = [
            d for d in self.kptfile_dirs() if d != pkg and (not pkg or d.startswith(pkg + "/"))
        ]
        direct = []
        for d in inner:
            rel = _rel(d, pkg)
            if ".git" in rel.split("/"):
                continue
            if any(o != d and d.startswith(o + "/") for o in inner):
                continue
            direct.append(d)
        return sorted(direct, key=_walk_key)

    def documents(self, path: str) -> Documents:
        docs = self._docs.get(path)
        if docs is None:
            try:
                docs = parse_documents(self.files[path], filename=path)
            except Invalid as exc:
                raise KioError(str(exc)) from exc
            self._docs[path] = docs
        return docs

    def local_files(self, pkg: str) -> list[str]:
        """KRM files of package ``pkg`` (not its subpackages), in kyaml's walk order."""
        ignore_text = self.files.get(_join(pkg, ".krmignore"))
        matcher = IgnoreMatcher(ignore_text) if ignore_text else None
        subpkgs = [
            d for d in self.kptfile_dirs() if d != pkg and (not pkg or d.startswith(pkg + "/"))
        ]
        out = []
        for path in self.files:
            if pkg and not path.startswith(pkg + "/"):
                continue
            rel = _rel(path, pkg)
            if not is_krm_name(rel.rsplit("/", 1)[-1]):
                continue
            if any(path.startswith(s + "/") for s in subpkgs):
                continue
            if matcher is not None and matcher.ignores(rel):
                continue
            out.append(path)
        return sorted(out, key=_walk_key)

    def local_resources(self, pkg: str) -> list[CommentedMap]:
        """The annotated KRM objects of package ``pkg`` (paths relative to ``pkg``)."""
        items: list[CommentedMap] = []
        pkg_anno = _display_dir(pkg)
        for path in self.local_files(pkg):
            docs = self.documents(path)
            rel = _rel(path, pkg)
            position = 0
            originals = self.file_originals.setdefault(path, [])
            fresh = not originals
            for entry in docs.entries:
                node = entry.node
                if node is None:
                    continue
                if not isinstance(node, CommentedMap):
                    raise KioError(
                        f"{path}: document {position} is not a KRM object (a YAML mapping)"
                    )
                if fresh:
                    original = Original(
                        path=path, position=position, document=entry, signature=signature(node)
                    )
                    originals.append(original)
                    self.by_signature.setdefault(original.signature, []).append(original)
                seq = annotation(node, SEQINDENT)
                index = str(position)
                values = {
                    LEGACY_INDEX: index,
                    LEGACY_PATH: rel,
                    INDEX: index,
                    PACKAGE_PATH: pkg_anno,
                    PATH: rel,
                }
                if not seq:
                    values[SEQINDENT] = derive_seq_indent(entry.source or "")
                for key in sorted(values):
                    set_annotation(node, key, values[key])
                items.append(node)
                position += 1
        return items


def derive_seq_indent(text: str) -> str:
    """kyaml's DeriveSeqIndentStyle: the first block sequence whose key line (the previous
    non-comment line, ``key:``) shows it decides, ``compact`` when nothing does."""
    if "- " not in text:
        return "compact"
    lines = text.split("\n")
    for i, line in enumerate(lines):
        at = line.find("- ")
        if at < 0 or line[:at].strip(" "):
            continue
        key = _key_line_before(lines, i)
        if not key:
            continue
        key_indent = len(key) - len(key.lstrip(" "))
        trimmed = key.strip(" ")
        if trimmed.count(":") != 1 or not trimmed.endswith(":"):
            continue
        if at == key_indent:
            return "compact"
        if at - key_indent == 2:
            return "wide"
    return "compact"


def _key_line_before(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.strip(" ").startswith("#"):
            continue
        return line.split("#", 1)[0]
    return ""


# --------------------------------------------------------------------------------------------
# writing


class _KyamlRepresenter(RoundTripRepresenter):
    """yaml.v3 writes a null it did not read as ``null`` (ruamel would leave it empty)."""

    def represent_none(self, data: Any) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:null", "null")


_KyamlRepresenter.add_representer(type(None), _KyamlRepresenter.represent_none)


class _KyamlEmitter(Emitter):
    """libyaml (and so yaml.v3) single-quotes a text it cannot write plain even when it holds
    a ``'``; ruamel switches to double quotes for those."""

    def choose_scalar_style(self) -> Any:
        style = super().choose_scalar_style()
        event = self.event
        analysis = self.analysis
        if (
            style == '"'
            and not event.style
            and event.implicit[0]
            and "\n" not in event.value
            and analysis is not None
            and analysis.allow_single_quoted
            and not (self.simple_key_context and analysis.multiline)
        ):
            return "'"
        return style


_local = threading.local()


def dump_node(node: Any, indent: Indent) -> str:
    """One changed document as kpt writes it: kyaml layout, nulls spelled ``null``."""
    yaml: YAML | None = getattr(_local, "yaml", None)
    if yaml is None:
        yaml = YAML(typ="rt")
        yaml.Resolver = _ruamel._Resolver
        yaml.Representer = _KyamlRepresenter
        yaml.Emitter = _KyamlEmitter
        yaml.preserve_quotes = True
        yaml.width = sys.maxsize
        _local.yaml = yaml
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    out = io.StringIO()
    yaml.dump(node, out)
    return out.getvalue()


def default_path(node: Any, directory: str = "") -> str:
    """kyaml's DefaultPathAnnotation: ``[<dir>/][<namespace>/]<kind>_<name>.yaml``."""
    meta = node.get("metadata") if isinstance(node, Mapping) else None
    name = _str(meta.get("name")) if isinstance(meta, Mapping) else ""
    namespace = _str(meta.get("namespace")) if isinstance(meta, Mapping) else ""
    kind = _str(node.get("kind")).lower() if isinstance(node, Mapping) else ""
    leaf = f"{kind}_{name}.yaml"
    parts = [p for p in (directory if directory not in ("", ".") else "", namespace, leaf) if p]
    return "/".join(parts)


def _clean(path: str) -> str:
    return posixpath.normpath(path) if path else path


def group_by_file(items: list[CommentedMap]) -> dict[str, list[CommentedMap]]:
    """Items by (cleaned) path annotation, each list ordered by index; paths must stay inside
    the package. Items without a path get kyaml's default path; without an index, the next
    free one of their file."""
    grouped: dict[str, list[tuple[int, int, CommentedMap]]] = {}
    next_index: dict[str, int] = {}
    pending: list[tuple[str, int, CommentedMap]] = []
    for order, item in enumerate(items):
        path, index = file_annotations(item)
        if not path:
            path = default_path(item)
        if path.startswith("/"):
            raise KioError("package paths may not be absolute paths")
        clean = _clean(path)
        if clean == ".." or clean.startswith("../"):
            raise KioError(f"resource must be written under package .: {clean}")
        if index == "":
            pending.append((clean, order, item))
            continue
        try:
            number = int(index)
        except ValueError:
            raise KioError(
                f"unable to parse {LEGACY_INDEX} {index!r} of resource at path {clean!r} as int"
            ) from None
        grouped.setdefault(clean, []).append((number, order, item))
        next_index[clean] = max(next_index.get(clean, 0), number + 1)
    for clean, order, item in pending:
        number = next_index.get(clean, 0)
        next_index[clean] = number + 1
        grouped.setdefault(clean, []).append((number, order, item))
    return {
        path: [item for _, _, item in sorted(entries, key=lambda e: (e[0], e[1]))]
        for path, entries in grouped.items()
    }


def write_items(pf: PackageFiles, items: list[CommentedMap]) -> dict[str, str]:
    """Text of every file that holds at least one of ``items`` (paths root-relative).

    The items' reader annotations are stripped in place."""
    out: dict[str, str] = {}
    for path, group in group_by_file(items).items():
        indents = [WIDE if annotation(i, SEQINDENT) == "wide" else COMPACT for i in group]
        for item in group:
            clear_annotations(item, WRITER_STRIPPED)
        if path.endswith(".json") and len(group) == 1:
            out[path] = _dump_json(pf, path, group[0])
        else:
            text = _dump_file(pf, path, group, indents)
            # kyaml writes every file it read, and always ends it with a newline
            out[path] = text if not text or text.endswith("\n") else text + "\n"
    return out


def _dump_file(
    pf: PackageFiles, path: str, group: list[CommentedMap], indents: list[Indent]
) -> str:
    sigs = [signature(item) for item in group]
    originals = pf.file_originals.get(path)
    if (
        originals is not None
        and len(originals) == len(group)
        and all(o.signature == s for o, s in zip(originals, sigs, strict=True))
        and path in pf.files
    ):
        return _normalize_docs(pf.documents(path))
    used: set[int] = set()
    parts: list[str] = []
    for position, (item, sig) in enumerate(zip(group, sigs, strict=True)):
        original = _find_original(pf, path, position, sig, used)
        if original is not None:
            # the original text only stands in if kyaml would lay the object out the same way
            style = WIDE if derive_seq_indent(original.document.source or "") == "wide" else COMPACT
            if style != indents[position]:
                original = None
        if original is None:
            # yaml.v3 starts a document at its first comment or node, never with blank lines
            text = dump_node(item, indents[position]).lstrip("\n")
            prefix = ""
        else:
            used.add(id(original))
            doc = original.document
            text = doc.source or ""
            prefix = doc.prefix if original.path == path and original.position == 0 else ""
            if position > 0:
                prefix = ""
        if position > 0:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append("---\n")
        parts.append(prefix + _drop_header_gap(text))
    return "".join(parts)


_BLANK = re.compile(r"[ \t]*\r?\n?")
_COMMENT = re.compile(r"[ \t]*#.*\r?\n?")


def _drop_header_gap(text: str) -> str:
    """yaml.v3 re-emits a document's head comment right above its first node: blank lines
    between a leading comment block and the content disappear when kpt writes a file."""
    if not text.startswith("#"):
        return text
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (_COMMENT.fullmatch(lines[i]) or _BLANK.fullmatch(lines[i])):
        i += 1
    if i == 0 or i >= len(lines):
        return text
    j = i
    while j > 0 and _BLANK.fullmatch(lines[j - 1]):
        j -= 1
    if j == i:
        return text
    return "".join(lines[:j] + lines[i:])


def normalize_file(text: str) -> str:
    """An untouched file as kpt writes it back (see :func:`_drop_header_gap`)."""
    if "#" not in text:
        return text
    return _normalize_docs(parse_documents(text))


def _normalize_docs(docs: Documents) -> str:
    return "".join(entry.prefix + _drop_header_gap(entry.source or "") for entry in docs.entries)


def _dump_json(pf: PackageFiles, path: str, item: CommentedMap) -> str:
    """kyaml writes a lone object of a ``.json`` file as JSON (Go's encoder: two-space
    indent, keys sorted, ``<``, ``>``, ``&`` escaped); an unchanged file stays as it was."""
    originals = pf.file_originals.get(path)
    if originals and len(originals) == 1 and path in pf.files:
        if originals[0].signature == signature(item):
            return pf.files[path]
    text = json.dumps(to_plain_value(item), indent=2, sort_keys=True, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text + "\n"


def _find_original(
    pf: PackageFiles, path: str, position: int, sig: Any, used: set[int]
) -> Original | None:
    candidates = pf.by_signature.get(sig)
    if not candidates:
        return None
    free = [c for c in candidates if id(c) not in used]
    if not free:
        return None
    for c in free:
        if c.path == path and c.position == position:
            return c
    for c in free:
        if c.path == path:
            return c
    return free[0]
