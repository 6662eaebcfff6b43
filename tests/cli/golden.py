"""Golden transcripts: each command's exit code, stdout and stderr, normalised and compared.

Run with ``PORCH_UPDATE_GOLDEN=1`` to rewrite the files after a deliberate output change, then
review the diff. Normalised: the server URL, temporary paths, timestamps, commit SHAs and AGE
cells (the only parts that differ between runs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.cli.conftest import Porchctl, Result

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PORCH_UPDATE_GOLDEN") == "1"

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_SHA = re.compile(r"\b[0-9a-f]{40}\b")
_AGE = re.compile(r"^AGE *(?=\S)")
# The cell and its padding: the column's width depends on the ages themselves.
_AGE_CELL = re.compile(r"^(\d+[smhd])+ *")


def _tables(text: str) -> str:
    """Replace the AGE cell of each table row (found at the AGE header's offset).

    Tables with an AGE column are compared with their padding collapsed to three spaces.
    """
    out: list[str] = []
    age_at: int | None = None
    for line in text.split("\n"):
        header = re.search(r"(^|   )AGE( {3,}|$)", line)
        if header:
            age_at = header.start() + len(header.group(1))
            line = line[:age_at] + _AGE.sub("AGE   ", line[age_at:], count=1)
        elif not line.strip():
            age_at = None
        elif age_at is not None:
            rest = _AGE_CELL.sub("", line[age_at:], count=1)
            line = line[:age_at] + ("<age>   " + rest if rest else "<age>")
        if age_at is not None:
            # Column widths in such tables also depend on temporary paths: keep only the order.
            line = re.sub(r" {3,}", "   ", line)
        out.append(line)
    return "\n".join(out)


def normalise(text: str, porchctl: Porchctl) -> str:
    text = _tables(text)  # before paths are shortened, so the column offsets still hold
    text = text.replace(porchctl.served.url, "<server>")
    text = text.replace(str(porchctl.tmp.parent), "<tmp>")
    text = _TIMESTAMP.sub("<timestamp>", text)
    return _SHA.sub("<sha>", text)


def transcript(results: list[Result], porchctl: Porchctl) -> str:
    parts = []
    for r in results:
        parts.append(f"$ porchctl {normalise(r.command, porchctl)}\n[exit {r.exit_code}]\n")
        if r.stdout:
            parts.append("--- stdout\n" + normalise(r.stdout, porchctl))
        if r.stderr:
            parts.append("--- stderr\n" + normalise(r.stderr, porchctl))
        parts.append("\n")
    return "".join(parts)


def check(name: str, results: list[Result], porchctl: Porchctl) -> None:
    path = GOLDEN_DIR / f"{name}.txt"
    actual = transcript(results, porchctl)
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        if not UPDATE:
            raise AssertionError(f"{path.name} did not exist; written, review and commit it")
        return
    expected = path.read_text()
    assert actual == expected, f"{path.name} differs (PORCH_UPDATE_GOLDEN=1 rewrites it)"
