"""Copy comments from one version of a KRM object to another, as kyaml's ``CopyComments``.

Clients that edit a package through the API usually decode YAML into structs and encode it
again, which loses every comment. Porch heals that on update by carrying comments over from
the stored version of the same object; this module is the tree-level half of that.

ruamel keeps comments in per-node slots rather than on the nodes they describe: a mapping's
``ca.items[key]`` holds the comment after that key's value *and* the full-line comments that
follow it, ``ca.comment`` the comments before the first key, ``ca.end`` the ones after the
last. We fill whichever slots the destination leaves empty and never overwrite one it has, so
healing an object that already carries its comments changes nothing. One consequence of the
slot model: a comment written above key B travels with the key before B.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq, Format

from porch.krm._ruamel import existing

__all__ = ["ASSOCIATIVE_KEYS", "copy_comments"]

ASSOCIATIVE_KEYS = ("mountPath", "devicePath", "ip", "type", "topologyKey", "name", "containerPort")
"""Fields that identify list items across versions, in kyaml's order of preference."""


def copy_comments(src: Any, dst: Any) -> None:
    """Give ``dst`` (in place) every comment ``src`` has where ``dst`` has none."""
    _Copier(_comment_lines_in(dst)).copy(src, dst)


class _Copier:
    """One healing pass. ``present`` holds every comment line ``dst`` already shows anywhere:
    ruamel may read a comment back into another slot than the one it was printed from (a
    comment above a key can come back as the trailer of the previous value), so "this slot is
    empty" alone would copy it again on the next heal. A token whose comment lines all exist
    already is skipped, which makes healing idempotent and never duplicates a comment.
    ``given`` remembers each token handed out: ruamel shares one token between a key's slot
    and the first slot of the mapping under it, and the copies must be shared as well."""

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.given: dict[int, Any] = {}

    def copy(self, src: Any, dst: Any) -> None:
        _copy(src, dst, self)

    def take(self, slot: Any, *, eol: bool = False) -> Any:
        """A copy of ``slot`` (a token or list of tokens) holding only comment lines ``dst``
        does not show yet, or None if there are none. ``eol`` says the slot's first line is
        the rest of a value's line, which must stay a line even when its comment goes."""
        key = id(slot)
        if key not in self.given:
            self.given[key] = self._copy_new_lines(slot, eol=eol)
        return self.given[key]

    def _copy_new_lines(self, slot: Any, *, eol: bool) -> Any:
        if not set(_lines(slot)) - self.present:
            return None
        copied = copy.deepcopy(slot)
        tokens = copied if isinstance(copied, list) else [copied]
        kept = [t for t in tokens if self._trim(t, eol=eol and t is tokens[0])]
        if not kept:
            return None
        return kept if isinstance(copied, list) else kept[0]

    def _trim(self, token: Any, *, eol: bool) -> bool:
        value = getattr(token, "value", None)
        if not isinstance(value, str):
            return False
        lines = value.splitlines(keepends=True)
        out: list[str] = []
        for n, line in enumerate(lines):
            text = line.strip()
            if text.startswith("#") and text in self.present:
                if n == 0 and eol:
                    out.append("\n")
                continue
            out.append(line)
        token.value = "".join(out)
        added = set(_lines(token)) - self.present
        self.present |= added
        return bool(added)


def _lines(slot: Any) -> list[str]:
    tokens = slot if isinstance(slot, list) else [slot]
    out: list[str] = []
    for token in tokens:
        value = getattr(token, "value", None)
        if isinstance(value, str):
            out.extend(line.strip() for line in value.splitlines() if line.strip().startswith("#"))
    return out


def _comment_lines_in(root: Any) -> set[str]:
    found: set[str] = set()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if not isinstance(node, CommentedMap | CommentedSeq) or id(node) in seen:
            continue
        seen.add(id(node))
        holder: Comment | None = existing(node, Comment.attrib)
        if holder is not None:
            for slot in (*(holder.comment or ()), *holder.items.values(), holder.end):
                for part in slot if isinstance(slot, list) else [slot]:
                    if part:
                        found.update(_lines(part))
        stack.extend(node.values() if isinstance(node, CommentedMap) else node)
    return found


def _copy(src: Any, dst: Any, copier: _Copier) -> None:
    if isinstance(src, CommentedMap) and isinstance(dst, CommentedMap):
        pairs: list[tuple[Hashable, Hashable]] = [(k, k) for k in dst if k in src]
        _copy_slots(src, dst, [(k, k) for k, _ in pairs if _same_shape(src[k], dst[k])], copier)
        for key, _ in pairs:
            _copy(src[key], dst[key], copier)
    elif isinstance(src, CommentedSeq) and isinstance(dst, CommentedSeq):
        index_pairs = _pair_items(src, dst)
        shaped = [(i, j) for i, j in index_pairs if _same_shape(src[i], dst[j])]
        _copy_slots(src, dst, list(shaped), copier)
        for i, j in index_pairs:
            _copy(src[i], dst[j], copier)


def _shape(node: Any) -> tuple[str, bool]:
    if isinstance(node, CommentedMap | CommentedSeq):
        fmt = existing(node, Format.attrib)
        flow = bool(fmt is not None and fmt.flow_style())
        return ("map" if isinstance(node, CommentedMap) else "seq", flow and bool(node))
    return ("scalar", False)


def _same_shape(old: Any, new: Any) -> bool:
    """Whether a slot's comments print in the same place for both values. ruamel puts the
    comment after ``key: value`` and the one after ``key:`` (above a block value) in the same
    slot, so carrying it from a scalar to a block mapping would move it, and the next heal
    would find the slot empty and add it again."""
    return _shape(old) == _shape(new)


def _copy_slots(
    src: Any, dst: Any, pairs: list[tuple[Hashable, Hashable]], copier: _Copier
) -> None:
    theirs: Comment | None = existing(src, Comment.attrib)
    if theirs is None:
        return
    ours: Comment | None = existing(dst, Comment.attrib)

    def fill(have: list[Any] | None, offered: list[Any], eol_slot: int) -> list[Any] | None:
        """``have`` with its empty slots taken from ``offered``; None if nothing was added."""
        out = list(have) if have else []
        out.extend([None] * (len(offered) - len(out)))
        added = False
        for n, slot in enumerate(offered):
            if slot and not out[n]:
                out[n] = copier.take(slot, eol=n == eol_slot)
                added = added or out[n] is not None
        return out if added else None

    def target() -> Comment:
        # Create dst's comment holder only when something is really copied into it.
        nonlocal ours
        if ours is None:
            ours = dst.ca
        assert ours is not None
        return ours

    if theirs.comment:
        start = fill(ours.comment if ours is not None else None, list(theirs.comment), 0)
        if start is not None:
            target().comment = start
    for src_key, dst_key in pairs:
        slots = theirs.items.get(src_key)
        if slots and any(slots):
            have = ours.items.get(dst_key) if ours is not None else None
            filled = fill(have, list(slots), 2 if isinstance(src, CommentedMap) else 0)
            if filled is not None:
                target().items[dst_key] = filled
    if theirs.end and not (ours is not None and ours.end):
        end = copier.take(theirs.end)
        if end is not None:
            target().end = end


def _pair_items(src: CommentedSeq, dst: CommentedSeq) -> list[tuple[int, int]]:
    """Match list items across versions: scalars by value, mappings by an associative key.
    Lists of anything else are not paired (kyaml walks them as opaque values too)."""
    containers = (CommentedMap, CommentedSeq)
    if not any(isinstance(v, containers) for v in (*src, *dst)):
        return _pair_by(list(src), list(dst))
    if not all(isinstance(v, CommentedMap) for v in (*src, *dst)):
        return []
    for key in ASSOCIATIVE_KEYS:
        if all(key in v for v in (*src, *dst)):
            return _pair_by([_scalar(v[key]) for v in src], [_scalar(v[key]) for v in dst])
    return []


def _scalar(value: Any) -> Any:
    return value if isinstance(value, Hashable) else repr(value)


def _pair_by(left: list[Any], right: list[Any]) -> list[tuple[int, int]]:
    free: dict[Any, list[int]] = {}
    for i, value in enumerate(left):
        free.setdefault(_scalar(value), []).append(i)
    pairs = []
    for j, value in enumerate(right):
        candidates = free.get(_scalar(value))
        if candidates:
            pairs.append((candidates.pop(0), j))
    return pairs
