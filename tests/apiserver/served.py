"""Run ``porch serve`` as a subprocess and real ``kubectl`` against it.

The server picks its own port (``--listen 127.0.0.1:0``) and announces it on its first stdout
line; tests wait for that line, never for a fixed time.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KUBECTL = "/usr/bin/kubectl"
START_TIMEOUT = 60.0


def have_kubectl() -> bool:
    return Path(KUBECTL).exists() or shutil.which("kubectl") is not None


class Lines:
    """Lines of a pipe, read by a thread so tests can wait for one with a timeout."""

    def __init__(self, pipe: object) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in pipe:  # type: ignore[attr-defined]
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        rx = re.compile(pattern)
        for seen in self.seen:
            if rx.search(seen):
                return seen
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"stream ended before {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            if rx.search(line):
                return line


@dataclass
class Served:
    url: str
    data_dir: Path
    proc: subprocess.Popen[str]
    stderr: Lines
    kubeconfig: Path = field(init=False)

    def __post_init__(self) -> None:
        self.kubeconfig = self.data_dir / "kubeconfig"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def porch_command() -> list[str]:
    script = Path(sys.executable).with_name("porch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from porch.cli.admin import main; main()"]


def start(data_dir: Path, *args: str) -> Served:
    proc = subprocess.Popen(
        [*porch_command(), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        line = out.wait_for(r"porch serving on ", timeout=START_TIMEOUT)
    except (AssertionError, queue.Empty):
        proc.kill()
        raise AssertionError(f"porch serve did not start: {err.seen}") from None
    url = re.search(r"(https?://\S+)", line)
    assert url is not None
    return Served(url.group(1), data_dir, proc, err)


class Kubectl:
    def __init__(self, kubeconfig: Path, cache_dir: Path) -> None:
        self.base = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache_dir)]

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.base, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def stream(self, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
        proc = subprocess.Popen(
            [*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield proc, Lines(proc.stdout)
        finally:
            proc.terminate()
            proc.wait(10)
