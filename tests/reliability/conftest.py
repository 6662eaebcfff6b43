"""Shared fixtures for the reliability suite (issue #11).

Fixtures and helpers of the fuzzing/hostile-input/isolation/remote-fault tests are prefixed
``f2_``. They start a real ``porch serve`` subprocess on 127.0.0.1 (kernel-chosen port, its
working directory a temporary one so relative paths in fuzzed input land there) and capture its
stderr, so tests can check what the server logged.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.apiserver.served import START_TIMEOUT, Lines, porch_command


@dataclass
class F2Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen[str]
    stderr: Lines

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        return httpx.get(self.url + "/healthz", timeout=30).text == "ok"

    def log(self) -> str:
        """Everything the server wrote to stderr so far (drains the reader's queue)."""
        try:
            self.stderr.wait_for(r"(?!)", timeout=0.2)  # never matches: just drain
        except (AssertionError, queue.Empty):
            pass
        return "\n".join(self.stderr.seen)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def f2_start(work: Path, *args: str) -> F2Server:
    """``porch serve`` over plain HTTP in ``work`` (data dir ``work/data``)."""
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    proc = subprocess.Popen(
        [*porch_command(), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"]
        + ["--insecure-http", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        line = out.wait_for(r"porch serving on ", timeout=START_TIMEOUT)
    except (AssertionError, queue.Empty):
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"porch serve did not start: {err.seen}") from None
    url = re.search(r"(https?://\S+)", line)
    assert url is not None
    return F2Server(url.group(1), data_dir, proc, err)


@pytest.fixture
def f2_anonymous_server(tmp_path: Path) -> Iterator[F2Server]:
    """A server everyone may use (no tokens, no RBAC), with the demo repository."""
    srv = f2_start(tmp_path / "srv", "--allow-anonymous")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def f2_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[F2Server]:
    """Like ``f2_anonymous_server``, shared by the tests of one module."""
    srv = f2_start(tmp_path_factory.mktemp("f2srv"), "--allow-anonymous", "--no-sync")
    yield srv
    srv.stop()
