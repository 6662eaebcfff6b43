"""``bench/api.py`` runs end to end at tiny sizes and ends with its one-line JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api.py"
KEYS = ["list_10000_p50_ms", "list_selected_p50_ms", "watch_1000_p99_ms"]


def test_bench_api_tiny() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--revisions",
            "20",
            "--watchers",
            "5",
            "--changes",
            "2",
            "--list-runs",
            "2",
            "--selected-runs",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures)[:3] == KEYS
    for key in KEYS:
        assert isinstance(figures[key], int | float) and figures[key] >= 0, (key, figures)
    assert figures["watch_missing"] == 0
    assert figures["revisions_listed"] >= 20
