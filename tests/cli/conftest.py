"""Fixtures for porchctl: a real ``porch serve`` per test, a bare git repository, a runner.

Each test gets a fresh server (plain HTTP, anonymous) so golden outputs never depend on test
order; starting one takes about half a second. porchctl runs as a subprocess, exactly as a
user runs it, with ``KUBECONFIG`` pointing at the kubeconfig the server wrote.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

from tests.apiserver.served import Served, start


@dataclass(frozen=True)
class Result:
    command: str
    exit_code: int
    stdout: str
    stderr: str


def porchctl_command() -> list[str]:
    script = Path(sys.executable).with_name("porchctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from porch.cli.porchctl import main; main()"]


class Porchctl:
    """Runs porchctl against one server; ``{blue}``, ``{tmp}``, ``{data}`` are expanded."""

    def __init__(self, served: Served, tmp: Path, blue: Path) -> None:
        self.served = served
        self.tmp = tmp
        self.blue = blue
        self.env = {
            **os.environ,
            "KUBECONFIG": str(served.kubeconfig),
            "HOME": str(tmp),
            "COLUMNS": "100",
        }

    def expand(self, command: str) -> str:
        return command.format(
            blue=self.blue, tmp=self.tmp, server=self.served.url, data=self.served.data_dir
        )

    def __call__(self, command: str, *, stdin: str | None = None) -> Result:
        command = self.expand(command)
        proc = subprocess.run(
            [*porchctl_command(), *shlex.split(command)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            cwd=self.tmp,
        )
        return Result(command, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, command: str, *, stdin: str | None = None) -> str:
        result = self(command, stdin=stdin)
        assert result.exit_code == 0, f"{command}: {result.stderr}"
        return result.stdout


def bare_repo(path: Path) -> Path:
    pygit2.init_repository(str(path), bare=True, initial_head="main")
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # --no-sync: the background syncer's status writes would make resourceVersions in the
    # transcripts depend on timing (the syncer has its own tests)
    srv = start(tmp_path / "data", "--insecure-http", "--allow-anonymous", "--no-sync")
    yield srv
    srv.stop()


@pytest.fixture
def porchctl(served: Served, tmp_path: Path) -> Porchctl:
    work = tmp_path / "work"
    work.mkdir()
    return Porchctl(served, work, bare_repo(tmp_path / "blue.git"))
