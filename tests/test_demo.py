"""`porch demo` (what `make run` shows today): a demo repository, created once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner

from porch.cli.admin import main


def test_demo_creates_once_and_lists(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "created demo repository" in first.output
    lines = first.output.splitlines()
    assert any(
        line.split()[:6] == ["demo.hello-world.v1", "hello-world", "v1", "1", "true", "Published"]
        for line in lines
    )
    second = runner.invoke(main, ["demo", "--data-dir", str(tmp_path)])
    assert second.exit_code == 0
    assert "created" not in second.output
    assert [ln for ln in second.output.splitlines() if ln.startswith("demo.")] == [
        ln for ln in lines if ln.startswith("demo.")
    ]
    files = subprocess.run(
        [
            "git",
            "--git-dir",
            str(tmp_path / "repos" / "demo.git"),
            "ls-tree",
            "-r",
            "--name-only",
            "hello-world/v1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "hello-world/hello-world.yaml" in files
