"""Composition-root settings: where the store lives, and the at-rest key for Secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from porch.cli.admin import main
from porch.errors import Invalid
from porch.server import Settings, build_engine, store_path


def test_store_locations(tmp_path: Path) -> None:
    assert store_path(Settings(tmp_path)) == tmp_path / "store.db"
    assert store_path(Settings(tmp_path, store=str(tmp_path / "x.db"))) == tmp_path / "x.db"
    assert store_path(Settings(tmp_path, store="sqlite:///var/a.db")) == Path("/var/a.db")
    with pytest.raises(Invalid, match="not a SQLite store"):
        store_path(Settings(tmp_path, store="postgresql://u@localhost/db"))


def test_engine_with_encryption_key(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(Fernet.generate_key() + b"\n")
    engine = build_engine(Settings(tmp_path / "data", encryption_key_file=key))
    assert engine.sealer is not None
    engine.store.close()
    with pytest.raises(Invalid, match="encryption-key-file"):
        build_engine(Settings(tmp_path / "data", encryption_key_file=tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    with pytest.raises(Invalid, match="Fernet key"):
        build_engine(Settings(tmp_path / "data", encryption_key_file=bad))


def test_serve_refuses_unsupported_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--insecure-http",
            "--allow-anonymous",
            "--store",
            "mysql://localhost/porch",
        ],
    )
    assert result.exit_code == 1
    assert '"mysql" stores are not supported' in result.output


def test_serve_reports_an_unreachable_postgres(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--insecure-http",
            "--allow-anonymous",
            "--store",
            f"postgresql://porch:s3cret@127.0.0.1:{port}/porch",
        ],
    )
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.output
    assert "s3cret" not in result.output
