"""open_store: which backend a --store value selects, and its errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from porch.errors import Invalid, Unavailable
from porch.store import SqliteStore
from porch.store.factory import open_store, sqlite_path, store_kind
from porch.store.postgres import PostgresStore
from porch.testing.postgres import PostgresServer, store_from_env, store_url_from_env


def test_default_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    store = open_store("", tmp_path / "data")
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "data" / "store.db").exists()
    finally:
        store.close()


@pytest.mark.parametrize("form", ["path", "sqlite"])
def test_sqlite_path_and_url(tmp_path: Path, form: str) -> None:
    target = tmp_path / "sub" / "porch.db"
    url = str(target) if form == "path" else f"sqlite://{target}"
    assert sqlite_path(url, tmp_path / "unused") == target
    store = open_store(url, tmp_path / "unused")
    try:
        assert isinstance(store, SqliteStore)
        assert target.exists()
    finally:
        store.close()


def test_sqlite_url_forms() -> None:
    assert sqlite_path("sqlite:///var/lib/porch.db", Path("/d")) == Path("/var/lib/porch.db")
    assert sqlite_path("sqlite://rel/porch.db", Path("/d")) == Path("rel/porch.db")
    with pytest.raises(Invalid):
        sqlite_path("sqlite://", Path("/d"))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("", "sqlite"),
        ("/x/y.db", "sqlite"),
        ("sqlite:///x", "sqlite"),
        ("postgresql://u@h/db", "postgres"),
        ("postgres://u@h/db", "postgres"),
        ("PostgreSQL://u@h/db", "postgres"),
    ],
)
def test_store_kind(url: str, kind: str) -> None:
    assert store_kind(url) == kind


@pytest.mark.parametrize("url", ["mysql://u@h/db", "etcd://h:2379", "file:///x"])
def test_other_schemes_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(Invalid) as info:
        open_store(url, tmp_path)
    assert url.split("://")[0] in str(info.value)
    assert "postgresql://" in str(info.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls(pg_server: PostgresServer, scheme: str, tmp_path: Path) -> None:
    dsn = pg_server.create_database()
    try:
        store = open_store(dsn.replace("postgresql://", f"{scheme}://", 1), tmp_path)
        try:
            assert isinstance(store, PostgresStore)
            assert store.current_resource_version() == 0
        finally:
            store.close()
    finally:
        pg_server.drop_database(dsn)


def test_unreachable_postgres_names_host_and_port_not_password(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable) as info:
        open_store(f"postgresql://porch:hunter2@127.0.0.1:{port}/porch", tmp_path)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_store_from_env_defaults_to_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORCH_TEST_STORE", raising=False)
    assert store_url_from_env(tmp_path) == f"sqlite://{tmp_path / 'store.db'}"
    store = store_from_env(tmp_path)
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()


def test_store_from_env_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_server: PostgresServer
) -> None:
    monkeypatch.setenv("PORCH_TEST_STORE", "postgres")
    url = store_url_from_env(tmp_path)
    assert url.startswith("postgresql://")
    first = open_store(url, tmp_path)
    try:
        with first.transaction() as txn:
            txn.next_resource_version()
    finally:
        first.close()
    again = open_store(url, tmp_path)  # a "restart" reaches the same data
    try:
        assert again.current_resource_version() == 1
    finally:
        again.close()


def test_store_from_env_rejects_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORCH_TEST_STORE", "mongo")
    with pytest.raises(ValueError, match="PORCH_TEST_STORE"):
        store_url_from_env(tmp_path)
