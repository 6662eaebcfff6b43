"""The shared throw-away PostgreSQL for tests, or a skip (a failure where it is required)."""

from __future__ import annotations

import os

import pytest

from porch.testing.postgres import PostgresServer, PostgresUnavailable, shared_server


def shared_server_or_skip() -> PostgresServer:
    """``shared_server()``; without the PostgreSQL binaries the test is skipped, unless CI
    asked for PostgreSQL (``PORCH_REQUIRE_POSTGRES=1``), where it fails instead."""
    try:
        return shared_server()
    except PostgresUnavailable as exc:
        if os.environ.get("PORCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
