"""KRM objects inside a package's file map, and Porch's comment healing on update.

A package travels as ``dict[path, text]``. Only ``*.yaml``, ``*.yml`` and ``Kptfile`` hold KRM;
everything else (README.md, scripts, binaries as text) passes through untouched.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from porch.errors import Invalid
from porch.krm.comments import copy_comments
from porch.krm.plain import load_plain_all, load_plain_fast
from porch.krm.yaml import Document, Documents, dump_documents, parse_documents, to_plain_value

__all__ = [
    "ObjectId",
    "PackageObject",
    "heal_comments",
    "is_krm_file",
    "iter_objects",
    "parse_package",
]

_YTT_MARKS = ("#@", "#!")


@dataclass(frozen=True, order=True)
class ObjectId:
    """What makes two documents "the same object": apiVersion, kind, namespace, name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @classmethod
    def of(cls, node: Mapping[Any, Any]) -> ObjectId:
        meta = node.get("metadata")
        if not isinstance(meta, Mapping):
            meta = {}
        return cls(
            api_version=_text(node.get("apiVersion")),
            kind=_text(node.get("kind")),
            namespace=_text(meta.get("namespace")),
            name=_text(meta.get("name")),
        )

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version}, Kind={self.kind} {where}"


def _text(value: Any) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    plain = to_plain_value(value)
    if isinstance(plain, bool):
        return "true" if plain else "false"
    return str(plain)


@dataclass(frozen=True)
class PackageObject:
    """One KRM object of a package: the file it lives in, its position there, its tree."""

    path: str
    index: int
    node: CommentedMap

    @property
    def id(self) -> ObjectId:
        return ObjectId.of(self.node)


def is_krm_file(path: str) -> bool:
    """Whether Porch reads ``path`` as KRM (``.yaml``, ``.yml``, or a file named Kptfile)."""
    base = posixpath.basename(path)
    return base == "Kptfile" or posixpath.splitext(base)[1] in (".yaml", ".yml")


def parse_package(files: Mapping[str, str]) -> dict[str, Documents]:
    """Parse every KRM file of a package, in path order; raises ``Invalid`` on bad YAML."""
    return {
        path: parse_documents(files[path], filename=path)
        for path in sorted(files)
        if is_krm_file(path)
    }


def iter_objects(files: Mapping[str, str]) -> Iterator[PackageObject]:
    for path, docs in parse_package(files).items():
        for index, node in enumerate(docs.objects()):
            yield PackageObject(path=path, index=index, node=node)


def heal_comments(old_files: Mapping[str, str], new_files: Mapping[str, str]) -> dict[str, str]:
    """Porch's step "heal config" of a resources update (spec §3.3 step 4).

    Every YAML file of ``new_files`` is re-serialised, with comments copied from the object of
    the same apiVersion/kind/namespace/name in ``old_files`` wherever the new object lacks
    them, unless either object contains ``#@`` or ``#!`` (ytt templates, whose comments are
    code). A YAML file that holds no object disappears; other files pass through. Documents
    that end up unchanged keep their exact bytes, so ``heal_comments(x, x)`` returns ``x`` for
    every file that holds an object.
    """
    originals = _Originals(old_files)
    healed: dict[str, str] = {}
    for path, text in new_files.items():
        if not is_krm_file(path):
            healed[path] = text
            continue
        if old_files.get(path) == text:
            # Unchanged files already carry their comments; only an empty one still goes.
            if _holds_objects(text, path):
                healed[path] = text
            continue
        fast = load_plain_fast(text)
        if fast is not None and all(isinstance(d, Mapping) for d in fast):
            # Nothing in the old package to take comments from: the file stays as written
            # (a re-serialisation would give back the same bytes), or goes when empty.
            if not fast:
                continue
            if not any(originals.has(ObjectId.of(d)) for d in fast):
                healed[path] = text
                continue
        try:
            docs = parse_documents(text, filename=path)
        except Invalid as exc:
            raise Invalid(f"failed to heal resources: {exc}") from exc
        if not any(entry.node is not None for entry in docs.entries):
            continue
        out = _heal_file(docs, text, originals, old_files)
        # ruamel may read a copied comment back into another slot than it was printed from,
        # leaving the slot looking empty to the next heal. Healing until nothing changes
        # makes the result a fixed point, so healing it again is a no-op. Every pass only
        # adds comment lines the file does not show yet, so this ends quickly.
        for _ in range(_MAX_PASSES):
            if out == text:
                break
            text = out
            out = _heal_file(parse_documents(text, filename=path), text, originals, old_files)
        healed[path] = out
    return healed


def _holds_objects(text: str, path: str) -> bool:
    try:
        return any(isinstance(d, Mapping) for d in load_plain_all(text, filename=path))
    except Invalid as exc:
        raise Invalid(f"failed to heal resources: {exc}") from exc


class _Originals:
    """The old package's objects by identity, parsed (round-trip) only when a new one asks.

    A resources update usually changes one file of many; finding identities with the fast
    loader and round-trip parsing only the old files that hold a wanted object keeps the cost
    proportional to the change.
    """

    def __init__(self, old_files: Mapping[str, str]) -> None:
        self._old = old_files
        self._where: dict[ObjectId, list[str]] | None = None
        self._parsed: dict[str, Documents] = {}

    def _index(self) -> dict[ObjectId, list[str]]:
        if self._where is None:
            where: dict[ObjectId, list[str]] = {}
            for path in sorted(self._old):
                if not is_krm_file(path):
                    continue
                try:
                    docs = load_plain_all(self._old[path], filename=path)
                except Invalid as exc:
                    raise Invalid(
                        f"failed to heal resources: failed to read old package resources: {exc}"
                    ) from exc
                for doc in docs:
                    if isinstance(doc, Mapping):
                        paths = where.setdefault(ObjectId.of(doc), [])
                        if path not in paths:
                            paths.append(path)
            self._where = where
        return self._where

    def has(self, oid: ObjectId) -> bool:
        return oid in self._index()

    def get(self, oid: ObjectId) -> list[tuple[Document, str]]:
        out = []
        for path in self._index().get(oid, ()):
            docs = self._parsed.get(path)
            if docs is None:
                docs = self._parsed[path] = parse_documents(self._old[path], filename=path)
            for entry in docs.entries:
                if isinstance(entry.node, CommentedMap) and ObjectId.of(entry.node) == oid:
                    out.append((entry, path))
        return out


_MAX_PASSES = 4


def _heal_file(
    docs: Documents,
    text: str,
    originals: _Originals,
    old_files: Mapping[str, str],
) -> str:
    ytt_file = _has_ytt(text)
    for entry in docs.entries:
        if not isinstance(entry.node, CommentedMap):
            continue
        if ytt_file and _has_ytt(_entry_text(entry)):
            continue
        for original, original_path in originals.get(ObjectId.of(entry.node)):
            if _has_ytt(old_files[original_path]) and _has_ytt(_entry_text(original)):
                continue
            copy_comments(original.node, entry.node)
    return dump_documents(docs)


def _has_ytt(text: str) -> bool:
    return any(mark in text for mark in _YTT_MARKS)


def _entry_text(entry: Document) -> str:
    return entry.prefix + (entry.source if entry.source is not None else entry.text())
