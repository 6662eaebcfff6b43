"""SQLite store (WAL): the embedded default.

One connection per thread (sqlite3 objects must not cross threads); writes take
``BEGIN IMMEDIATE`` so the resourceVersion counter and the rows it stamps commit together.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson

from porch.store.types import ContentRow, Event, ObjectRow, RevisionRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (id, value) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS revisions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    repository TEXT NOT NULL,
    package TEXT NOT NULL,
    workspace TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= -1),
    lifecycle TEXT NOT NULL
        CHECK (lifecycle IN ('Draft', 'Proposed', 'Published', 'DeletionProposed')),
    commit_id TEXT NOT NULL,
    ref TEXT NOT NULL,
    tasks TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at TEXT,
    kptfile TEXT NOT NULL,
    meta TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    upstream TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS revisions_by_upstream ON revisions (namespace, upstream);
CREATE INDEX IF NOT EXISTS revisions_by_package ON revisions (namespace, repository, package);
CREATE UNIQUE INDEX IF NOT EXISTS revisions_unique_number
    ON revisions (namespace, repository, package, revision) WHERE revision > 0;
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    resource_version INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (
    namespace TEXT NOT NULL,
    repository TEXT NOT NULL,
    package TEXT NOT NULL,
    workspace TEXT NOT NULL,
    lifecycle TEXT NOT NULL CHECK (lifecycle IN ('Draft', 'Proposed', 'DeletionProposed')),
    version TEXT NOT NULL,
    ref TEXT NOT NULL,
    revision INTEGER NOT NULL,
    tasks TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_email TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    files TEXT NOT NULL,
    PRIMARY KEY (namespace, repository, package, workspace)
);
"""

# The DB content mode's table (docs/store.md "Content mode"); files are one JSON object.
CONTENT_COLUMNS = (
    "namespace, repository, package, workspace, lifecycle, version, ref, revision, tasks,"
    " author_name, author_email, updated_at"
)

_REV_COLUMNS = (
    "namespace, name, repository, package, workspace, revision, lifecycle, commit_id, ref,"
    " tasks, published_by, published_at, kptfile, meta, resource_version"
)

# The highest published revision of the same package other than the outer row ``r`` (both
# stores).
RIVAL = (
    "(SELECT MAX(o.revision) FROM revisions o WHERE o.namespace = r.namespace"
    " AND o.repository = r.repository AND o.package = r.package AND o.name != r.name"
    " AND o.lifecycle IN ('Published', 'DeletionProposed'))"
)


def equalities(
    placeholder: str, *, prefix: str = "", **values: str | None
) -> tuple[list[str], list[str]]:
    """``column = <placeholder>`` conditions (columns prefixed with ``prefix``) and their
    arguments, for the given values that are not None, in the order given (both stores)."""
    conditions, args = [], []
    for column, value in values.items():
        if value is not None:
            conditions.append(f"{prefix}{column} = {placeholder}")
            args.append(value)
    return conditions, args


def bodies_at_query(placeholder: str, **filters: str | None) -> tuple[str, list[str]]:
    """One statement for ``list_bodies_at`` (both stores): the counter's value on every row,
    LEFT JOINed to the matching revisions (one row with NULLs when none match)."""
    on, args = equalities(placeholder, prefix="r.", **filters)
    sql = (
        "SELECT c.value, r.namespace, r.name, r.body FROM counter c"
        f" LEFT JOIN revisions r ON {' AND '.join(['TRUE', *on])} WHERE c.id = 1"
        " ORDER BY r.namespace, r.repository, r.package, r.revision, r.lifecycle, r.name"
    )
    return sql, args


def bodies_at_rows(rows: Sequence[Sequence[Any]]) -> tuple[int, list[tuple[str, str, str]]]:
    return int(rows[0][0]), [(r[1], r[2], r[3]) for r in rows if r[1] is not None]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def revision_params(row: RevisionRow, body: dict[str, Any] | None) -> tuple[Any, ...]:
    """Values of ``_REV_COLUMNS`` plus upstream and body, as both stores insert them."""
    return (
        row.namespace,
        row.name,
        row.repository,
        row.package,
        row.workspace,
        row.revision,
        row.lifecycle,
        row.commit,
        row.ref,
        _dumps(row.tasks),
        row.published_by,
        row.published_at,
        _dumps(row.kptfile),
        _dumps(row.meta),
        row.resource_version,
        upstream_of(row.tasks),
        _dumps(body) if body is not None else "",
    )


def event_params(event: Event) -> tuple[Any, ...]:
    return (
        event.resource_version,
        event.type,
        event.kind,
        event.namespace,
        event.name,
        _dumps(event.body),
    )


def upstream_of(tasks: list[dict[str, Any]]) -> str:
    """The revision a clone or upgrade task names as its upstream ("" when none)."""
    for task in tasks:
        clone = ((task.get("clone") or {}).get("upstreamRef") or {}).get("upstreamRef") or {}
        upgrade = (task.get("upgrade") or {}).get("newUpstreamRef") or {}
        name = clone.get("name") or upgrade.get("name")
        if name:
            return str(name)
    return ""


def content_params(row: ContentRow) -> tuple[Any, ...]:
    """Values of ``CONTENT_COLUMNS`` plus files, as both stores insert them."""
    return (
        row.namespace,
        row.repository,
        row.package,
        row.workspace,
        row.lifecycle,
        row.version,
        row.ref,
        row.revision,
        _dumps(row.tasks),
        row.author_name,
        row.author_email,
        row.updated_at,
        _dumps(row.files or {}),
    )


def content_from_columns(r: Sequence[Any]) -> ContentRow:
    """A ContentRow from ``CONTENT_COLUMNS`` (and files, when selected after them)."""
    return ContentRow(
        namespace=r[0],
        repository=r[1],
        package=r[2],
        workspace=r[3],
        lifecycle=r[4],
        version=r[5],
        ref=r[6],
        revision=int(r[7]),
        tasks=orjson.loads(r[8]),
        author_name=r[9],
        author_email=r[10],
        updated_at=r[11],
        files=orjson.loads(r[12]) if len(r) > 12 else None,
    )


def row_from_columns(r: Sequence[Any]) -> RevisionRow:
    """A RevisionRow from the revision columns in ``_REV_COLUMNS`` order (both stores)."""
    return RevisionRow(
        namespace=r[0],
        name=r[1],
        repository=r[2],
        package=r[3],
        workspace=r[4],
        revision=r[5],
        lifecycle=r[6],
        commit=r[7],
        ref=r[8],
        tasks=orjson.loads(r[9]),
        published_by=r[10],
        published_at=r[11],
        kptfile=orjson.loads(r[12]),
        meta=orjson.loads(r[13]),
        resource_version=r[14],
    )


class _Txn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def next_resource_version(self) -> int:
        cur = self._conn.execute(
            "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value"
        )
        value: int = cur.fetchone()[0]
        return value

    def put_revision(self, row: RevisionRow, body: dict[str, Any] | None = None) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO revisions ({_REV_COLUMNS}, upstream, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            revision_params(row, body),
        )

    def delete_revision(self, namespace: str, name: str) -> None:
        self._conn.execute(
            "DELETE FROM revisions WHERE namespace = ? AND name = ?", (namespace, name)
        )

    def put_object(self, row: ObjectRow) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO objects (kind, namespace, name, body, resource_version)"
            " VALUES (?, ?, ?, ?, ?)",
            (row.kind, row.namespace, row.name, _dumps(row.body), row.resource_version),
        )

    def delete_object(self, kind: str, namespace: str, name: str) -> None:
        self._conn.execute(
            "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        )

    def add_event(self, event: Event) -> None:
        self._conn.execute(
            "INSERT INTO events (resource_version, type, kind, namespace, name, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            event_params(event),
        )

    def reserve_resource_versions(self, count: int) -> int:
        cur = self._conn.execute(
            "UPDATE counter SET value = value + ? WHERE id = 1 RETURNING value", (count,)
        )
        last: int = cur.fetchone()[0]
        return last - count + 1

    def put_revisions(self, items: Sequence[tuple[RevisionRow, dict[str, Any] | None]]) -> None:
        self._conn.executemany(
            f"INSERT OR REPLACE INTO revisions ({_REV_COLUMNS}, upstream, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [revision_params(row, body) for row, body in items],
        )

    def add_events(self, events: Sequence[Event]) -> None:
        self._conn.executemany(
            "INSERT INTO events (resource_version, type, kind, namespace, name, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [event_params(event) for event in events],
        )

    def put_content(self, row: ContentRow) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO contents ({CONTENT_COLUMNS}, files)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            content_params(row),
        )

    def delete_content(self, namespace: str, repository: str, package: str, workspace: str) -> None:
        self._conn.execute(
            "DELETE FROM contents WHERE namespace = ? AND repository = ? AND package = ?"
            " AND workspace = ?",
            (namespace, repository, package, workspace),
        )

    def delete_contents(self, namespace: str, repository: str) -> None:
        self._conn.execute(
            "DELETE FROM contents WHERE namespace = ? AND repository = ?", (namespace, repository)
        )

    def exclude_writes(self, namespace: str, repository: str) -> bool:
        # One process uses a SQLite file: the engine's own count of its writes is all there is.
        return True


class SqliteStore:
    """The embedded store; ``path`` is a file (WAL needs one)."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        conn = self._conn()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(revisions)")}
        # Stores written before a column existed get it (empty: filled on the next write).
        for column in ("upstream", "body"):
            if columns and column not in columns:
                conn.execute(f"ALTER TABLE revisions ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Txn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # API writes in flight (docs/sync.md): one process uses a SQLite file, and the engine
    # counts its own writes, so there is nothing to share.

    def hold_writes(self, namespace: str, repository: str) -> AbstractContextManager[None]:
        return nullcontext()

    def wait_writes(self, namespace: str, repository: str, timeout: float) -> bool:
        return True

    def get_revision(self, namespace: str, name: str) -> RevisionRow | None:
        cur = self._conn().execute(
            f"SELECT {_REV_COLUMNS} FROM revisions WHERE namespace = ? AND name = ?",
            (namespace, name),
        )
        r = cur.fetchone()
        return row_from_columns(r) if r else None

    def get_revision_and_rival(self, namespace: str, name: str) -> tuple[RevisionRow | None, int]:
        cur = self._conn().execute(
            f"SELECT {_REV_COLUMNS}, {RIVAL} FROM revisions r WHERE namespace = ? AND name = ?",
            (namespace, name),
        )
        r = cur.fetchone()
        return (row_from_columns(r[:-1]), int(r[-1] or 0)) if r else (None, 0)

    def list_revisions(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
    ) -> list[RevisionRow]:
        where, args = equalities("?", namespace=namespace, repository=repository, package=package)
        sql = f"SELECT {_REV_COLUMNS} FROM revisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY namespace, repository, package, revision, lifecycle, name"
        return [row_from_columns(r) for r in self._conn().execute(sql, args)]

    def max_published_revision(
        self, namespace: str, repository: str, package: str, *, excluding: str = ""
    ) -> int:
        r = (
            self._conn()
            .execute(
                "SELECT MAX(revision) FROM revisions WHERE namespace = ? AND repository = ?"
                " AND package = ? AND name != ? AND lifecycle IN ('Published', 'DeletionProposed')",
                (namespace, repository, package, excluding),
            )
            .fetchone()
        )
        return int(r[0] or 0)

    def count_revisions(self, namespace: str, repository: str) -> int:
        r = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM revisions WHERE namespace = ? AND repository = ?",
                (namespace, repository),
            )
            .fetchone()
        )
        return int(r[0])

    def list_bodies(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
        name: str | None = None,
    ) -> list[tuple[str, str, str]]:
        """(namespace, name, JSON body) in list order; the body is "" until first stamped."""
        where, args = equalities(
            "?", namespace=namespace, repository=repository, package=package, name=name
        )
        sql = "SELECT namespace, name, body FROM revisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY namespace, repository, package, revision, lifecycle, name"
        return [(r[0], r[1], r[2]) for r in self._conn().execute(sql, args)]

    def list_bodies_at(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
        name: str | None = None,
    ) -> tuple[int, list[tuple[str, str, str]]]:
        sql, args = bodies_at_query(
            "?", namespace=namespace, repository=repository, package=package, name=name
        )
        return bodies_at_rows(self._conn().execute(sql, args).fetchall())

    def nested_package(self, namespace: str, repository: str, package: str) -> str | None:
        conn = self._conn()
        parts = package.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if ancestors:
            marks = ",".join("?" * len(ancestors))
            r = conn.execute(
                "SELECT package FROM revisions WHERE namespace = ? AND repository = ?"
                f" AND package IN ({marks}) LIMIT 1",
                (namespace, repository, *ancestors),
            ).fetchone()
            if r:
                return str(r[0])
        # "0" sorts right after "/", so the range holds exactly the paths below the package;
        # kept as its own query so SQLite walks the index instead of the table.
        r = conn.execute(
            "SELECT package FROM revisions WHERE namespace = ? AND repository = ?"
            " AND package > ? AND package < ? LIMIT 1",
            (namespace, repository, package + "/", package + "0"),
        ).fetchone()
        return str(r[0]) if r else None

    def mentioning(self, namespace: str, name: str) -> list[RevisionRow]:
        cur = self._conn().execute(
            f"SELECT {_REV_COLUMNS} FROM revisions WHERE namespace = ? AND upstream = ?",
            (namespace, name),
        )
        return [row_from_columns(r) for r in cur]

    def get_content(
        self, namespace: str, repository: str, package: str, workspace: str
    ) -> ContentRow | None:
        r = (
            self._conn()
            .execute(
                f"SELECT {CONTENT_COLUMNS}, files FROM contents WHERE namespace = ?"
                " AND repository = ? AND package = ? AND workspace = ?",
                (namespace, repository, package, workspace),
            )
            .fetchone()
        )
        return content_from_columns(r) if r else None

    def list_contents(self, namespace: str, repository: str) -> list[ContentRow]:
        cur = self._conn().execute(
            f"SELECT {CONTENT_COLUMNS} FROM contents WHERE namespace = ? AND repository = ?"
            " ORDER BY package, workspace",
            (namespace, repository),
        )
        return [content_from_columns(r) for r in cur]

    def get_object(self, kind: str, namespace: str, name: str) -> ObjectRow | None:
        r = (
            self._conn()
            .execute(
                "SELECT body, resource_version FROM objects"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            )
            .fetchone()
        )
        return ObjectRow(kind, namespace, name, orjson.loads(r[0]), r[1]) if r else None

    def list_objects(self, kind: str, namespace: str | None = None) -> list[ObjectRow]:
        sql = "SELECT namespace, name, body, resource_version FROM objects WHERE kind = ?"
        args: list[str] = [kind]
        if namespace is not None:
            sql += " AND namespace = ?"
            args.append(namespace)
        sql += " ORDER BY namespace, name"
        return [
            ObjectRow(kind, r[0], r[1], orjson.loads(r[2]), r[3])
            for r in self._conn().execute(sql, args)
        ]

    def current_resource_version(self) -> int:
        value: int = self._conn().execute("SELECT value FROM counter WHERE id = 1").fetchone()[0]
        return value

    def events_after(self, resource_version: int, *, limit: int = 1000) -> list[Event]:
        cur = self._conn().execute(
            "SELECT resource_version, type, kind, namespace, name, body FROM events"
            " WHERE resource_version > ? ORDER BY resource_version LIMIT ?",
            (resource_version, limit),
        )
        return [Event(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in cur]

    def oldest_event(self) -> int:
        r = self._conn().execute("SELECT MIN(resource_version) FROM events").fetchone()
        return int(r[0] or 0)

    def compact(self, *, keep: int) -> None:
        with self.transaction():
            self._conn().execute(
                "DELETE FROM events WHERE resource_version <="
                " (SELECT MAX(resource_version) FROM events) - ?",
                (keep,),
            )

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
