"""Choose and open a store from a ``--store`` value.

* ``""`` — SQLite at ``DATA_DIR/store.db`` (the embedded default);
* a path, or ``sqlite://PATH`` (``sqlite:///abs/path`` for an absolute one) — SQLite there;
* ``postgresql://…`` or ``postgres://…`` — PostgreSQL (any libpq URL: user, password, host,
  port, database, ``?sslmode=…`` …).

Any other scheme is refused with :class:`porch.errors.Invalid`; an unreachable database with
:class:`porch.errors.Unavailable` naming host:port, never the password.
"""

from __future__ import annotations

from pathlib import Path

from porch.errors import Invalid
from porch.store.types import Store

POSTGRES_SCHEMES = ("postgresql", "postgres")


def store_kind(url: str) -> str:
    """ "sqlite" or "postgres" for a ``--store`` value; :class:`Invalid` for anything else."""
    if "://" not in url:
        return "sqlite"
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    raise Invalid(
        f'--store: "{scheme}" stores are not supported; use a SQLite file path, sqlite:///PATH,'
        " or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )


def sqlite_path(url: str, data_dir: Path) -> Path:
    """Where a SQLite ``--store`` value puts the database file."""
    if not url:
        return data_dir / "store.db"
    if url.lower().startswith("sqlite://"):
        url = url[len("sqlite://") :]
        if not url:
            raise Invalid("--store: sqlite:// needs a path, e.g. sqlite:///var/lib/porch/store.db")
    return Path(url)


def open_store(url: str, data_dir: Path) -> Store:
    """Open the store a ``--store`` value names (see the module docstring)."""
    if store_kind(url) == "postgres":
        try:
            from porch.store.postgres import PostgresStore
        except ImportError as exc:  # psycopg missing from this installation
            raise Invalid(
                f"--store: PostgreSQL needs psycopg 3 (pip install 'psycopg[binary]'): {exc}"
            ) from None
        return PostgresStore(url)
    from porch.store.sqlite import SqliteStore

    path = sqlite_path(url, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path)
