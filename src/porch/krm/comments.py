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

from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq

from porch.krm._ruamel import existing

__all__ = ["ASSOCIATIVE_KEYS", "copy_comments"]

ASSOCIATIVE_KEYS = ("mountPath", "devicePath", "ip", "type", "topologyKey", "name", "containerPort")
"""Fields that identify list items across versions, in kyaml's order of preference."""


def copy_comments(src: Any, dst: Any) -> None:
    """Give ``dst`` (in place) every comment ``src`` has where ``dst`` has none."""
    # One memo for the whole walk: ruamel shares a token between a key's slot and the
    # first slot of the mapping under it, and the copy must share it too or it prints twice.
    _copy(src, dst, {})


def _copy(src: Any, dst: Any, memo: dict[int, Any]) -> None:
    if isinstance(src, CommentedMap) and isinstance(dst, CommentedMap):
        pairs: list[tuple[Hashable, Hashable]] = [(k, k) for k in dst if k in src]
        _copy_slots(src, dst, pairs, memo)
        for key, _ in pairs:
            _copy(src[key], dst[key], memo)
    elif isinstance(src, CommentedSeq) and isinstance(dst, CommentedSeq):
        index_pairs = _pair_items(src, dst)
        _copy_slots(src, dst, list(index_pairs), memo)
        for i, j in index_pairs:
            _copy(src[i], dst[j], memo)


def _copy_slots(
    src: Any, dst: Any, pairs: list[tuple[Hashable, Hashable]], memo: dict[int, Any]
) -> None:
    theirs: Comment | None = existing(src, Comment.attrib)
    if theirs is None:
        return
    ours: Comment | None = existing(dst, Comment.attrib)

    def target() -> Comment:
        # Create dst's comment holder only when something is really copied into it.
        nonlocal ours
        if ours is None:
            ours = dst.ca
        assert ours is not None
        return ours

    if theirs.comment:
        have = list(ours.comment) if ours is not None and ours.comment else [None, None]
        have.extend([None] * (len(theirs.comment) - len(have)))
        if any(other and not have[n] for n, other in enumerate(theirs.comment)):
            target().comment = [
                mine if mine else copy.deepcopy(other, memo)
                for mine, other in zip(have, theirs.comment, strict=False)
            ]
    for src_key, dst_key in pairs:
        slots = theirs.items.get(src_key)
        if not slots or not any(slots):
            continue
        current = ours.items.get(dst_key) if ours is not None else None
        filled = list(current) if current else [None] * len(slots)
        filled.extend([None] * (len(slots) - len(filled)))
        changed = False
        for n, slot in enumerate(slots):
            if slot and not filled[n]:
                filled[n] = copy.deepcopy(slot, memo)
                changed = True
        if changed:
            target().items[dst_key] = filled
    if theirs.end and not (ours is not None and ours.end):
        target().end = copy.deepcopy(theirs.end, memo)


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
