"""The UI's files ship in the wheel: build one from a copy of the tree and look inside."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from porch.apiserver.ui import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_wheel_contains_the_static_files(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("porch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"porch/apiserver/ui/static/{p.name}" for p in STATIC_DIR.iterdir()}
    assert len(wanted) >= 10
    assert wanted <= names, sorted(wanted - names)
    assert "porch/apiserver/ui/routes.py" in names
