from __future__ import annotations

from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
CORPORA = ("nephio-catalog", "kpt-fn-render")


def corpus_files() -> list[Path]:
    """Every KRM file of the conformance corpora (empty when they are not on this machine)."""
    found: list[Path] = []
    for corpus in CORPORA:
        root = CONFORMANCE / corpus
        if root.is_dir():
            found.extend(
                p
                for p in sorted(root.rglob("*"))
                if p.is_file() and (p.suffix in (".yaml", ".yml") or p.name == "Kptfile")
            )
    return found
