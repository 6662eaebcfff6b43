"""Store fixtures: every conformance test runs on SQLite and on PostgreSQL.

PostgreSQL runs as one throw-away server per test session (porch.testing.postgres), each test
getting a database of its own. Without the server binaries the PostgreSQL cases are skipped
with the reason, unless PORCH_REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porch.store.factory import open_store
from porch.store.postgres import PostgresStore
from porch.store.types import Store
from porch.testing.postgres import PostgresServer
from tests._pg import shared_server_or_skip


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = shared_server_or_skip()  # the one store_url_from_env uses too
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> Iterator[str]:
    dsn = pg_server.create_database()
    yield dsn
    pg_server.drop_database(dsn)


@pytest.fixture
def replicas(pg_dsn: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two replicas' view of it."""
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    yield a, b
    a.close()
    b.close()


class Backend:
    """Opens stores on one location; every store it opened is closed at teardown."""

    def __init__(self, kind: str, url: str, data_dir: Path) -> None:
        self.kind = kind
        self.url = url
        self.data_dir = data_dir
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = open_store(self.url, self.data_dir)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        b = Backend("postgres", dsn, tmp_path)
    else:
        b = Backend("sqlite", f"sqlite://{tmp_path / 'store.db'}", tmp_path)
    yield b
    b.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()
