"""Secret data is encrypted at rest when a key is configured, and only there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from porch.engine import Engine
from porch.engine.sealing import Sealer
from porch.errors import InternalError, Invalid
from porch.repository.memory import MemoryRepository
from porch.store import SqliteStore

PASSWORD = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk"  # base64 of the clear text below
CLEAR = "super-secret-password"


def _engine(path: Path, key: bytes | None) -> Engine:
    return Engine(
        store=SqliteStore(path),
        opener=lambda repo: MemoryRepository(),
        sealer=Sealer(key) if key else None,
    )


def _secret() -> dict[str, object]:
    return {
        "metadata": {"name": "creds", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": PASSWORD},
    }


def _raw_store(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT body FROM objects").fetchall()
        rows += conn.execute("SELECT body FROM events").fetchall()
        return "\n".join(r[0] for r in rows)
    finally:
        conn.close()


def test_sealed_at_rest_open_on_read(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    engine = _engine(tmp_path / "s.db", key)
    first = engine.objects.create(
        "Secret", {"metadata": {"name": "first", "namespace": "default"}, "data": {}}
    )
    w = engine.objects.watch(
        "Secret", "default", resource_version=first["metadata"]["resourceVersion"]
    )
    created = engine.objects.create("Secret", _secret())
    assert created["data"] == {"password": PASSWORD}
    live = w.next(timeout=5)
    assert live is not None and live.object["data"] == {"password": PASSWORD}
    w.close()
    assert engine.objects.get("Secret", "default", "creds")["data"] == {"password": PASSWORD}
    replay = engine.objects.watch(
        "Secret", "default", resource_version=first["metadata"]["resourceVersion"]
    )
    ev = replay.next(timeout=5)
    assert ev is not None and ev.object["data"] == {"password": PASSWORD}
    replay.close()
    engine.store.close()
    raw = _raw_store(tmp_path / "s.db")
    assert "sealedData" in raw
    assert PASSWORD not in raw and CLEAR not in raw


def test_without_key_data_is_stored_as_given(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "s.db", None)
    engine.objects.create("Secret", _secret())
    engine.store.close()
    assert PASSWORD in _raw_store(tmp_path / "s.db")


def test_wrong_or_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "s.db", Fernet.generate_key())
    engine.objects.create("Secret", _secret())
    engine.store.close()
    other = _engine(tmp_path / "s.db", Fernet.generate_key())
    with pytest.raises(InternalError, match="cannot be decrypted") as err:
        other.objects.get("Secret", "default", "creds")
    assert PASSWORD not in str(err.value)
    other.store.close()
    none = _engine(tmp_path / "s.db", None)
    with pytest.raises(InternalError, match="no encryption key"):
        none.objects.get("Secret", "default", "creds")
    none.store.close()
    with pytest.raises(Invalid, match="Fernet key"):
        Sealer(b"too-short")
