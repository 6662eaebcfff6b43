"""Tree surgery that touches only the trees on the path to a package directory.

A repository may hold thousands of packages; rewriting one must cost O(depth), never
O(repository), so nothing here walks sibling directories.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pygit2
from pygit2.enums import FileMode, ObjectType

from porch.errors import Invalid

from .layout import KPTFILE

# pygit2 ships no usable stubs for mypy's strict mode here; these aliases document intent.
Repo = Any
Tree = Any


def child(repo: Repo, tree: Tree | None, name: str) -> Any | None:
    """The object called ``name`` directly inside ``tree``, or None (loaded lazily by pygit2)."""
    if tree is None:
        return None
    try:
        return tree[name]
    except KeyError:
        return None


def subtree(repo: Repo, tree: Tree | None, path: str) -> Tree | None:
    """The tree at ``path`` (``""`` = ``tree`` itself); None when absent or not a directory."""
    current = tree
    for name in (p for p in path.split("/") if p):
        current = child(repo, current, name)
        if current is None or current.type != ObjectType.TREE:
            return None
    return current


def has_blob(repo: Repo, tree: Tree | None, path: str) -> bool:
    # One libgit2 path lookup; the blob itself is never read.
    if tree is None:
        return False
    try:
        entry = tree[path]
    except KeyError:
        return False
    return bool(entry.type == ObjectType.BLOB)


def replace(repo: Repo, root: Tree | None, path: str, new: pygit2.Oid | None) -> pygit2.Oid:
    """A copy of ``root`` whose directory ``path`` is ``new`` (a tree id) or removed (None)."""
    result = _replace(repo, root, [p for p in path.split("/") if p], new)
    if result is None:
        return repo.TreeBuilder().write()
    return result


def _replace(
    repo: Repo, tree: Tree | None, parts: list[str], new: pygit2.Oid | None
) -> pygit2.Oid | None:
    if not parts:
        return new
    name, rest = parts[0], parts[1:]
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    existing = child(repo, tree, name)
    if rest:
        inner = existing if existing is not None and existing.type == ObjectType.TREE else None
        replacement = _replace(repo, inner, rest, new)
    else:
        replacement = new
    if replacement is None:
        if existing is not None:
            builder.remove(name)
    else:
        builder.insert(name, replacement, FileMode.TREE)
    # Git cannot represent an empty directory usefully; drop it like `git rm` would.
    if len(builder) == 0:
        return None
    oid: pygit2.Oid = builder.write()
    return oid


def build(repo: Repo, files: Mapping[str, bytes]) -> pygit2.Oid:
    """A tree holding ``files`` (relative ``/``-separated paths, already validated)."""
    nested: dict[str, Any] = {}
    for path, content in files.items():
        *dirs, name = path.split("/")
        node = nested
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = content
    return _build(repo, nested)


def _build(repo: Repo, node: Mapping[str, Any]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, value in node.items():
        if isinstance(value, bytes):
            builder.insert(name, repo.create_blob(value), FileMode.BLOB)
        else:
            builder.insert(name, _build(repo, value), FileMode.TREE)
    oid: pygit2.Oid = builder.write()
    return oid


def read_text_files(repo: Repo, tree: Tree, where: str) -> dict[str, str]:
    """Every file below ``tree`` (sub-packages included) decoded as UTF-8."""
    out: dict[str, str] = {}
    for path, blob in _walk_blobs(repo, tree, ""):
        try:
            out[path] = blob.data.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(f"file {where}/{path} is not valid UTF-8 text") from None
    return out


def _walk_blobs(repo: Repo, tree: Tree, prefix: str) -> Iterator[tuple[str, Any]]:
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.type == ObjectType.TREE:
            yield from _walk_blobs(repo, entry, path + "/")
        elif entry.type == ObjectType.BLOB:
            yield path, entry
        # Submodule entries (commits) have no content in this repository; skip them.


def find_packages(repo: Repo, root: Tree | None, directory: str) -> list[str]:
    """FPs of every directory under ``directory`` holding a Kptfile, not looking below one."""
    start = subtree(repo, root, directory)
    found: list[str] = []
    if start is not None:
        _find(repo, start, directory, found)
    return found


def _find(repo: Repo, tree: Tree, path: str, found: list[str]) -> None:
    names = {entry.name: entry for entry in tree}
    kptfile = names.get(KPTFILE)
    if path and kptfile is not None and kptfile.type == ObjectType.BLOB:
        found.append(path)
        return
    for name, entry in sorted(names.items()):
        if entry.type == ObjectType.TREE:
            _find(repo, entry, f"{path}/{name}" if path else name, found)
