"""Byte stability over every KRM file of the conformance corpora.

Untouched documents must come back byte for byte; an edited document must come back as valid
YAML with exactly the edit applied, and must not disturb the bytes of its sibling documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from porch.krm.yaml import dump_documents, parse_documents, to_plain

from ._corpus import CONFORMANCE, corpus_files

FILES = corpus_files()

# Files that cannot round-trip, with the reason. Keep this empty: every known one was fixed.
UNSTABLE: dict[str, str] = {}


def _params() -> list[Any]:
    if not FILES:
        reason = f"conformance corpora not found under {CONFORMANCE}"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="missing")]
    params = []
    for path in FILES:
        rel = str(path.relative_to(CONFORMANCE))
        marks = [pytest.mark.xfail(reason=UNSTABLE[rel], strict=True)] if rel in UNSTABLE else []
        params.append(pytest.param(path, marks=marks, id=rel))
    return params


@pytest.mark.parametrize("path", _params())
def test_load_dump_is_byte_identical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    docs = parse_documents(text, filename=str(path))
    assert dump_documents(docs) == text
    # The parse cache hands out copies; a second parse must behave like the first.
    assert dump_documents(parse_documents(text, filename=str(path))) == text


@pytest.mark.parametrize("path", _params())
def test_edit_touches_only_the_edited_document(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    docs = parse_documents(text, filename=str(path))
    objects = docs.objects()
    if not objects:
        pytest.skip("no KRM object in this file")
    target = objects[0]
    expected = [to_plain(o) for o in objects]
    meta = target.setdefault("metadata", {})
    if not isinstance(meta, dict):
        pytest.skip("metadata is not a mapping")
    meta["labels"] = {**(meta.get("labels") or {}), "porch.test/edited": "yes"}
    expected[0].setdefault("metadata", {}).setdefault("labels", {})["porch.test/edited"] = "yes"

    out = dump_documents(docs)

    reparsed = parse_documents(out, filename=str(path))
    assert [to_plain(o) for o in reparsed.objects()] == expected
    before = [e.prefix + (e.source or "") for e in docs.entries if e.node is not target]
    after = [
        e.prefix + (e.source or "")
        for e, old in zip(reparsed.entries, docs.entries, strict=True)
        if old.node is not target
    ]
    assert after == before
