"""PostgreSQL store (psycopg 3): the shared store several server replicas use at once.

Same tables, same queries and same semantics as :class:`porch.store.sqlite.SqliteStore`
(docs/store.md). What differs is how writers are ordered:

* Every write transaction first takes the row lock on the single ``counter`` row
  (``SELECT … FOR UPDATE``), the PostgreSQL counterpart of SQLite's ``BEGIN IMMEDIATE``. Writers,
  in this process and in every other replica, therefore run one after the other, and
  resourceVersions are allocated with ``UPDATE counter … RETURNING`` under that lock. A
  transaction that allocated N commits before the next one can allocate N+1, so the set of
  committed events is always a prefix of the resourceVersion order: a watcher resuming from N
  can never later find an event below a resourceVersion it has already seen. A rolled-back
  transaction gives its numbers back, as in SQLite.
* On commit a transaction that allocated resourceVersions sends ``NOTIFY porch_events, '<max>'``
  (delivered only on commit, and in commit order); :meth:`PostgresStore.listen` runs a thread
  that calls back with that number so other replicas' watch hubs can replay ``events_after``.

Reads run on pooled autocommit connections, except reads made by a thread inside its own open
transaction: those use the transaction's connection and see its uncommitted writes, exactly as
SQLite's per-thread connection does.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from porch.errors import Conflict, InternalError, Invalid, Unavailable
from porch.store.sqlite import (
    CONTENT_COLUMNS,
    RIVAL,
    bodies_at_query,
    bodies_at_rows,
    content_from_columns,
    content_params,
    equalities,
    event_params,
    revision_params,
    row_from_columns,
)
from porch.store.types import ContentRow, Event, ObjectRow, RevisionRow

log = logging.getLogger(__name__)

CHANNEL = "porch_events"
SCHEMA_VERSION = 2  # len(MIGRATIONS)
# Any constant: serialises schema creation when several replicas start at once.
_MIGRATION_LOCK = 0x706F726368  # "porch"

# Text columns compared or sorted use the "C" collation: byte order, as SQLite's BINARY, so
# lists come back in the same order on both backends and "0" sorts right after "/".
MIGRATIONS: Sequence[str] = (
    # 1: the schema SqliteStore has (counter, revisions with upstream/body, objects, events).
    """
    CREATE TABLE IF NOT EXISTS counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value BIGINT NOT NULL
    );
    INSERT INTO counter (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
    CREATE TABLE IF NOT EXISTS revisions (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        repository TEXT COLLATE "C" NOT NULL,
        package TEXT COLLATE "C" NOT NULL,
        workspace TEXT COLLATE "C" NOT NULL,
        revision INTEGER NOT NULL CHECK (revision >= -1),
        lifecycle TEXT COLLATE "C" NOT NULL
            CHECK (lifecycle IN ('Draft', 'Proposed', 'Published', 'DeletionProposed')),
        commit_id TEXT NOT NULL,
        ref TEXT NOT NULL,
        tasks TEXT NOT NULL,
        published_by TEXT NOT NULL,
        published_at TEXT,
        kptfile TEXT NOT NULL,
        meta TEXT NOT NULL,
        resource_version BIGINT NOT NULL,
        upstream TEXT COLLATE "C" NOT NULL DEFAULT '',
        body TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (namespace, name)
    );
    CREATE INDEX IF NOT EXISTS revisions_by_upstream ON revisions (namespace, upstream);
    CREATE INDEX IF NOT EXISTS revisions_by_package
        ON revisions (namespace, repository, package);
    CREATE UNIQUE INDEX IF NOT EXISTS revisions_unique_number
        ON revisions (namespace, repository, package, revision) WHERE revision > 0;
    CREATE TABLE IF NOT EXISTS objects (
        kind TEXT COLLATE "C" NOT NULL,
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        body TEXT NOT NULL,
        resource_version BIGINT NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    );
    CREATE TABLE IF NOT EXISTS events (
        resource_version BIGINT PRIMARY KEY,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 2: the DB content mode's table (drafts' files, deletion markers; docs/store.md).
    """
    CREATE TABLE IF NOT EXISTS contents (
        namespace TEXT COLLATE "C" NOT NULL,
        repository TEXT COLLATE "C" NOT NULL,
        package TEXT COLLATE "C" NOT NULL,
        workspace TEXT COLLATE "C" NOT NULL,
        lifecycle TEXT NOT NULL
            CHECK (lifecycle IN ('Draft', 'Proposed', 'DeletionProposed')),
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
    """,
)

_REV_COLUMNS = (
    "namespace, name, repository, package, workspace, revision, lifecycle, commit_id, ref,"
    " tasks, published_by, published_at, kptfile, meta, resource_version"
)
_ORDER = " ORDER BY namespace, repository, package, revision, lifecycle, name"
_DELETE_SAME_NUMBER = (
    "DELETE FROM revisions WHERE namespace = %s AND repository = %s"
    " AND package = %s AND revision = %s AND name <> %s"
)
_UPSERT_REVISION = (
    f"INSERT INTO revisions ({_REV_COLUMNS}, upstream, body)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (namespace, name) DO UPDATE SET"
    " repository = EXCLUDED.repository, package = EXCLUDED.package,"
    " workspace = EXCLUDED.workspace, revision = EXCLUDED.revision,"
    " lifecycle = EXCLUDED.lifecycle, commit_id = EXCLUDED.commit_id,"
    " ref = EXCLUDED.ref, tasks = EXCLUDED.tasks,"
    " published_by = EXCLUDED.published_by, published_at = EXCLUDED.published_at,"
    " kptfile = EXCLUDED.kptfile, meta = EXCLUDED.meta,"
    " resource_version = EXCLUDED.resource_version, upstream = EXCLUDED.upstream,"
    " body = EXCLUDED.body"
)
_INSERT_EVENT = (
    "INSERT INTO events (resource_version, type, kind, namespace, name, body)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def _same_number(row: RevisionRow) -> tuple[Any, ...]:
    return (row.namespace, row.repository, row.package, row.revision, row.name)


def _lease_id(key: str) -> int:
    """The advisory lock number of a lease key: 64 bits of its SHA-256, signed."""
    return int.from_bytes(
        hashlib.sha256(b"porch-sync-lease:" + key.encode()).digest()[:8], "big", signed=True
    )


def _writes_id(namespace: str, repository: str) -> int:
    """The advisory lock number of a repository's API writes in flight (``_WriteHolds``): as
    ``_lease_id``, under a prefix of its own, so it never is a lease's number."""
    key = f"{namespace}/{repository}".encode()
    return int.from_bytes(
        hashlib.sha256(b"porch-writes-in-flight:" + key).digest()[:8], "big", signed=True
    )


# Batches at least this large go through COPY (fewer bytes and no per-row statement).
_COPY_AT = 16


def _distinct(items: Sequence[tuple[RevisionRow, Any]]) -> bool:
    """No two rows share a name or a published number (one upsert can take them all)."""
    names = {(row.namespace, row.name) for row, _ in items}
    numbers = [(row.namespace, row.repository, row.package, row.revision) for row, _ in items]
    numbered = [n for n in numbers if n[3] > 0]
    return len(names) == len(items) and len(set(numbered)) == len(numbered)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, never its password (for messages and logs)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or "5432")
    db = str(info.get("dbname") or info.get("user") or "")
    return f"{host}:{port}/{db}" if db else f"{host}:{port}"


def _scrub(message: str, dsn: str) -> str:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return message
    if password:
        message = message.replace(str(password), "***")
    return message


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()


class _Txn:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.highest = 0

    def next_resource_version(self) -> int:
        r = self._conn.execute(
            "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value"
        ).fetchone()
        assert r is not None
        value = int(r[0])
        self.highest = max(self.highest, value)
        return value

    def put_revision(self, row: RevisionRow, body: dict[str, Any] | None = None) -> None:
        # SQLite's INSERT OR REPLACE also replaces a row holding the same published number of
        # the same package under another name; do the same.
        if row.revision > 0:
            self._conn.execute(_DELETE_SAME_NUMBER, _same_number(row))
        self._conn.execute(_UPSERT_REVISION, revision_params(row, body))

    def put_revisions(self, items: Sequence[tuple[RevisionRow, dict[str, Any] | None]]) -> None:
        if len(items) >= _COPY_AT and _distinct(items):
            self._copy_revisions(items)
            return
        # executemany pipelines the statements: one round trip for the whole batch. Rows are
        # written one statement at a time, in order, so the result is that of put_revision.
        with self._conn.cursor() as cur:
            numbered = [_same_number(row) for row, _body in items if row.revision > 0]
            if numbered:
                cur.executemany(_DELETE_SAME_NUMBER, numbered)
            cur.executemany(_UPSERT_REVISION, [revision_params(row, body) for row, body in items])

    def _copy_revisions(self, items: Sequence[tuple[RevisionRow, dict[str, Any] | None]]) -> None:
        """A large batch: COPY into a session-local staging table, then one DELETE and one
        upsert from it. The rows are distinct by name and by published number, so this is
        what writing them one after the other would give."""
        conn = self._conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS revisions_batch"
            " (LIKE revisions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        conn.execute("DELETE FROM revisions_batch")
        with conn.cursor() as cur:
            with cur.copy(
                f"COPY revisions_batch ({_REV_COLUMNS}, upstream, body) FROM STDIN"
            ) as cp:
                for row, body in items:
                    cp.write_row(revision_params(row, body))
        conn.execute(
            "DELETE FROM revisions r USING revisions_batch b WHERE b.revision > 0"
            " AND r.namespace = b.namespace AND r.repository = b.repository"
            " AND r.package = b.package AND r.revision = b.revision AND r.name <> b.name"
        )
        conn.execute(
            _UPSERT_REVISION.split(" VALUES ", 1)[0]
            + f" SELECT {_REV_COLUMNS}, upstream, body FROM revisions_batch"
            + " ON CONFLICT"
            + _UPSERT_REVISION.split(" ON CONFLICT", 1)[1]
        )
        conn.execute("DELETE FROM revisions_batch")

    def reserve_resource_versions(self, count: int) -> int:
        r = self._conn.execute(
            "UPDATE counter SET value = value + %s WHERE id = 1 RETURNING value", (count,)
        ).fetchone()
        assert r is not None
        last = int(r[0])
        self.highest = max(self.highest, last)
        return last - count + 1

    def add_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._conn.cursor() as cur:
            if len(events) >= _COPY_AT:
                columns = "resource_version, type, kind, namespace, name, body"
                with cur.copy(f"COPY events ({columns}) FROM STDIN") as cp:
                    for event in events:
                        cp.write_row(event_params(event))
            else:
                cur.executemany(_INSERT_EVENT, [event_params(event) for event in events])
        self.highest = max(self.highest, max(e.resource_version for e in events))

    def delete_revision(self, namespace: str, name: str) -> None:
        self._conn.execute(
            "DELETE FROM revisions WHERE namespace = %s AND name = %s", (namespace, name)
        )

    def put_object(self, row: ObjectRow) -> None:
        self._conn.execute(
            "INSERT INTO objects (kind, namespace, name, body, resource_version)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, namespace, name) DO UPDATE"
            " SET body = EXCLUDED.body, resource_version = EXCLUDED.resource_version",
            (row.kind, row.namespace, row.name, _dumps(row.body), row.resource_version),
        )

    def delete_object(self, kind: str, namespace: str, name: str) -> None:
        self._conn.execute(
            "DELETE FROM objects WHERE kind = %s AND namespace = %s AND name = %s",
            (kind, namespace, name),
        )

    def add_event(self, event: Event) -> None:
        self._conn.execute(_INSERT_EVENT, event_params(event))
        self.highest = max(self.highest, event.resource_version)

    def put_content(self, row: ContentRow) -> None:
        self._conn.execute(
            f"INSERT INTO contents ({CONTENT_COLUMNS}, files)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (namespace, repository, package, workspace) DO UPDATE SET"
            " lifecycle = EXCLUDED.lifecycle, version = EXCLUDED.version, ref = EXCLUDED.ref,"
            " revision = EXCLUDED.revision, tasks = EXCLUDED.tasks,"
            " author_name = EXCLUDED.author_name, author_email = EXCLUDED.author_email,"
            " updated_at = EXCLUDED.updated_at, files = EXCLUDED.files",
            content_params(row),
        )

    def delete_content(self, namespace: str, repository: str, package: str, workspace: str) -> None:
        self._conn.execute(
            "DELETE FROM contents WHERE namespace = %s AND repository = %s AND package = %s"
            " AND workspace = %s",
            (namespace, repository, package, workspace),
        )

    def delete_contents(self, namespace: str, repository: str) -> None:
        self._conn.execute(
            "DELETE FROM contents WHERE namespace = %s AND repository = %s",
            (namespace, repository),
        )

    def exclude_writes(self, namespace: str, repository: str) -> bool:
        # Exclusive, until this transaction ends; fails while any replica holds it shared.
        r = self._conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s)", (_writes_id(namespace, repository),)
        ).fetchone()
        return bool(r and r[0])


class _Pool:
    """A small blocking pool of autocommit connections (at most ``size`` open at once)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> psycopg.Connection[Any]:
        self._slots.acquire()
        try:
            with self._lock:
                if self._closed:
                    raise Unavailable("the store is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            return conn
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: psycopg.Connection[Any]) -> None:
        """Give a connection back; one that is broken or mid-transaction is closed instead."""
        try:
            healthy = (
                not conn.closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
            )
            with self._lock:
                if healthy and not self._closed:
                    self._idle.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def discard_idle(self) -> None:
        """Close every idle connection (after one turned out dead, the others likely are)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.discard_idle()


class Listener:
    """A background thread calling ``callback(max_resource_version)`` on every NOTIFY.

    Started by :meth:`PostgresStore.listen`; ``LISTEN`` is active when that call returns. After a
    lost connection it reconnects and calls back once with the current resourceVersion, so what
    was committed while it was away is not missed. The callback runs on the listener's thread.
    """

    def __init__(
        self,
        store: PostgresStore,
        callback: Callable[[int], None],
        *,
        include_own: bool,
        poll: float,
    ) -> None:
        self._store = store
        self._callback = callback
        self._include_own = include_own
        self._poll = poll
        self._stop = threading.Event()
        # A channel of its own, so close() can wake the thread instead of waiting for a poll.
        self._wake = f"porch_wake_{secrets.token_hex(8)}"
        self._conn: psycopg.Connection[Any] | None = self._listen()
        self._thread = threading.Thread(target=self._run, name="porch-pg-listen", daemon=True)
        self._thread.start()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._store._connect()
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            conn.execute(f"LISTEN {self._wake}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _deliver(self, resource_version: int) -> None:
        try:
            self._callback(resource_version)
        except Exception:
            log.exception("store listener callback failed")

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn = self._conn
            try:
                if conn is None:
                    conn = self._conn = self._listen()
                    delay = 0.1
                    self._deliver(self._store.current_resource_version())
                for note in conn.notifies(timeout=self._poll):
                    if self._stop.is_set():
                        break
                    if note.channel != CHANNEL or not note.payload.isdigit():
                        continue
                    if not self._include_own and note.pid in self._store._backend_pids:
                        continue
                    self._deliver(int(note.payload))
            except (psycopg.Error, Unavailable) as exc:
                if self._stop.is_set():
                    break
                log.warning("store listener lost its connection (%s); reconnecting", exc)
                if conn is not None:
                    conn.close()
                self._conn = None
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        try:
            self._store._read("SELECT pg_notify(%s, '')", (self._wake,))
        except Exception:  # the thread still stops at its next poll
            pass
        if self._thread is not threading.current_thread():
            self._thread.join()


class _WriteHolds:
    """API writes in flight per repository, seen by every replica (docs/sync.md).

    While this process has writes in flight on a repository, one connection kept for that holds
    the repository's advisory lock (``_writes_id``) *shared*, at session level: the first write
    takes it (one round trip), nested and concurrent ones of this process only count, and when
    the last one ends, a background thread gives it back, off the write's path. A sync's commit
    transaction tries the same lock *exclusively* (``_Txn.exclude_writes``), which fails while
    any replica holds it; once the sync has it, a write that starts waits for that commit. When
    a process or its connection dies, PostgreSQL drops its locks: a crashed replica never keeps
    syncs out.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._conn: psycopg.Connection[Any] | None = None
        self._count: dict[int, int] = {}  # lock id -> writes in flight in this process
        self._held: set[int] = set()  # lock ids the connection's session holds
        self._release: set[int] = set()  # lock ids for the releaser to give back
        self._releaser: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def hold(self, lock_id: int) -> Iterator[None]:
        self._enter(lock_id)
        try:
            yield
        finally:
            self._leave(lock_id)

    def _enter(self, lock_id: int) -> None:
        while True:
            with self._cond:
                if self._closed:
                    raise Unavailable("the store is closed")
                # Held already (by a write of this process, or not given back yet): just count.
                if lock_id in self._held or self._take(lock_id):
                    self._count[lock_id] = self._count.get(lock_id, 0) + 1
                    return
            # A sync is committing this repository (it holds the lock exclusively until its
            # transaction ends): wait for that without holding up this process's other writes.
            try:
                with self._store._pool.connection() as conn:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (lock_id,))
            except psycopg.Error as exc:
                raise self._store._translate(exc) from exc

    def _take(self, lock_id: int) -> bool:
        """The shared lock on this process's connection; False while a sync holds it."""
        for attempt in (1, 2):
            try:
                conn = self._connection()
                r = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (lock_id,)).fetchone()
            except psycopg.Error as exc:
                self._drop()
                # A connection the server dropped: nothing was taken, reconnect once.
                if attempt == 1 and isinstance(exc, psycopg.OperationalError):
                    continue
                raise self._store._translate(exc) from exc
            if r and r[0]:
                self._held.add(lock_id)
                return True
            return False
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        conn = self._conn = self._store._connect()
        if self._count:
            # Writes still in flight lost their locks with the old session: take them again.
            rows = conn.execute(
                "SELECT id FROM unnest(%s::bigint[]) AS id WHERE pg_try_advisory_lock_shared(id)",
                (list(self._count),),
            ).fetchall()
            self._held.update(int(r[0]) for r in rows)
            if len(self._held) < len(self._count):
                log.warning("store: a sync may have indexed a write in flight (reconnected)")
        return conn

    def _drop(self) -> None:
        """Close the connection: PostgreSQL gives back every lock its session held."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._held.clear()

    def _leave(self, lock_id: int) -> None:
        with self._cond:
            left = self._count[lock_id] - 1
            if left:
                self._count[lock_id] = left
                return
            del self._count[lock_id]
            if lock_id not in self._held:
                return
            self._release.add(lock_id)
            if self._releaser is None:
                self._releaser = threading.Thread(
                    target=self._run, name="porch-pg-writes", daemon=True
                )
                self._releaser.start()
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while True:
                self._cond.wait_for(lambda: bool(self._release) or self._closed)
                if self._closed:
                    return
                # A write that started meanwhile counts again: its lock stays.
                ids = [i for i in self._release if i in self._held and i not in self._count]
                self._release.clear()
                if ids and self._conn is not None:
                    try:
                        self._conn.execute(
                            "SELECT pg_advisory_unlock_shared(id) FROM unnest(%s::bigint[]) AS id",
                            (ids,),
                        )
                        self._held.difference_update(ids)
                    except psycopg.Error as exc:
                        log.warning("store: giving write locks back failed (%s)", exc)
                        self._drop()  # gives them back all the same
                        try:
                            if self._count:
                                self._connection()
                        except Exception as again:  # the next write reconnects
                            log.warning("store: write locks not taken again (%s)", again)
                self._cond.notify_all()

    def wait(self, lock_id: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            # This process's own lock: its writes are over, the releaser gives it back.
            if not self._cond.wait_for(lambda: lock_id not in self._held, timeout):
                return False
        # Another replica's: no notice comes when it ends, so look again now and then. An
        # exclusive try in a statement of its own is taken and given back at once.
        pause = 0.01
        while True:
            r = self._store._read("SELECT pg_try_advisory_xact_lock(%s)", (lock_id,))
            if r and r[0][0]:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.2)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._drop()
            self._cond.notify_all()
            thread = self._releaser
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class PostgresStore:
    """The shared store; ``dsn`` is a libpq URL or key=value string.

    Opening connects once and creates or migrates the schema; an unreachable database raises
    :class:`porch.errors.Unavailable` naming host:port (never the password).
    """

    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: int = 10) -> None:
        self._dsn = dsn
        self._where = describe(dsn)
        self._connect_timeout = connect_timeout
        self._backend_pids: set[int] = set()
        self._pool = _Pool(self._connect, pool_size)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        # Sync leases (``lease``): session advisory locks on one dedicated connection.
        self._lease_conn: psycopg.Connection[Any] | None = None
        self._leased: set[str] = set()
        self._lease_lock = threading.Lock()
        # API writes in flight (``hold_writes``): shared advisory locks on another connection.
        self._holds = _WriteHolds(self)
        self._migrate()

    # --- connections --------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        try:
            if "connect_timeout" not in conninfo_to_dict(self._dsn):
                kwargs["connect_timeout"] = self._connect_timeout
        except psycopg.ProgrammingError as exc:
            raise Invalid(f"invalid PostgreSQL DSN: {_scrub(str(exc), self._dsn)}") from None
        try:
            conn = psycopg.connect(self._dsn, **kwargs)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        self._backend_pids.add(conn.info.backend_pid)
        return conn

    def _unavailable(self, exc: BaseException) -> Unavailable:
        detail = _scrub(str(exc).strip(), self._dsn).splitlines()
        return Unavailable(
            f"cannot reach PostgreSQL at {self._where}: {detail[0] if detail else exc!r}"
        )

    def _translate(self, exc: psycopg.Error) -> Exception:
        message = _scrub(str(exc).strip(), self._dsn).splitlines()[0] if str(exc) else repr(exc)
        if isinstance(exc, pgerrors.UniqueViolation):
            return Conflict(f"store: {message}")
        if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
            # CHECK violations; values PostgreSQL cannot hold (a NUL in a text column)
            return Invalid(f"store: {message}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return self._unavailable(exc)
        return InternalError(f"store: {message}")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:  # inside this thread's transaction: see its own writes
            try:
                return conn.execute(sql, args).fetchall()
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    return conn.execute(sql, args).fetchall()
            except psycopg.Error as exc:
                # A pooled connection the server dropped (restart, failover): reads are
                # idempotent, so try once more on a fresh one.
                if attempt == 1 and isinstance(exc, psycopg.OperationalError):
                    self._pool.discard_idle()
                    continue
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS porch_schema ("
                    " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
                )
                r = conn.execute("SELECT version FROM porch_schema WHERE id = 1").fetchone()
                version = int(r[0]) if r else 0
                if version > len(MIGRATIONS):
                    raise InternalError(
                        f"the store at {self._where} has schema version {version}, newer than"
                        f" this porch understands ({len(MIGRATIONS)}); upgrade porch"
                    )
                for step in MIGRATIONS[version:]:
                    conn.execute(step)
                conn.execute(
                    "INSERT INTO porch_schema (id, version) VALUES (1, %s)"
                    " ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                    (len(MIGRATIONS),),
                )
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    def schema_version(self) -> int:
        r = self._read("SELECT version FROM porch_schema WHERE id = 1")
        return int(r[0][0]) if r else 0

    # --- writes -------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        if getattr(self._local, "conn", None) is not None:
            raise InternalError("store transactions do not nest")
        with self._write_lock:
            conn = self._begin()
            self._local.conn = conn
            try:
                txn = _Txn(conn)
                try:
                    yield txn
                    if txn.highest:
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(txn.highest)))
                except BaseException as exc:
                    _rollback(conn)
                    if isinstance(exc, psycopg.Error):
                        raise self._translate(exc) from exc
                    raise
                try:
                    conn.execute("COMMIT")
                except psycopg.Error as exc:
                    _rollback(conn)
                    raise self._translate(exc) from exc
            finally:
                self._local.conn = None
                self._pool.release(conn)

    def _begin(self) -> psycopg.Connection[Any]:
        """A pooled connection inside a new transaction that holds the writers' lock."""
        for attempt in (1, 2):
            conn = self._pool.acquire()
            try:
                conn.execute("BEGIN")
                # The writers' lock (see the module docstring): held until commit or rollback.
                conn.execute("SELECT value FROM counter WHERE id = 1 FOR UPDATE")
                return conn
            except psycopg.Error as exc:
                _rollback(conn)
                self._pool.release(conn)
                # Nothing was done yet: a connection the server dropped is retried once.
                if attempt == 1 and isinstance(exc, psycopg.OperationalError):
                    self._pool.discard_idle()
                    continue
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")

    # --- reads --------------------------------------------------------------------------------

    def get_revision(self, namespace: str, name: str) -> RevisionRow | None:
        rows = self._read(
            f"SELECT {_REV_COLUMNS} FROM revisions WHERE namespace = %s AND name = %s",
            (namespace, name),
        )
        return row_from_columns(rows[0]) if rows else None

    def get_revision_and_rival(self, namespace: str, name: str) -> tuple[RevisionRow | None, int]:
        rows = self._read(
            f"SELECT {_REV_COLUMNS}, {RIVAL} FROM revisions r WHERE namespace = %s AND name = %s",
            (namespace, name),
        )
        if not rows:
            return None, 0
        return row_from_columns(rows[0][:-1]), int(rows[0][-1] or 0)

    def list_revisions(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
    ) -> list[RevisionRow]:
        where, args = equalities("%s", namespace=namespace, repository=repository, package=package)
        sql = f"SELECT {_REV_COLUMNS} FROM revisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [row_from_columns(r) for r in self._read(sql + _ORDER, args)]

    def max_published_revision(
        self, namespace: str, repository: str, package: str, *, excluding: str = ""
    ) -> int:
        rows = self._read(
            "SELECT MAX(revision) FROM revisions WHERE namespace = %s AND repository = %s"
            " AND package = %s AND name <> %s"
            " AND lifecycle IN ('Published', 'DeletionProposed')",
            (namespace, repository, package, excluding),
        )
        return int(rows[0][0] or 0)

    def count_revisions(self, namespace: str, repository: str) -> int:
        rows = self._read(
            "SELECT COUNT(*) FROM revisions WHERE namespace = %s AND repository = %s",
            (namespace, repository),
        )
        return int(rows[0][0])

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
            "%s", namespace=namespace, repository=repository, package=package, name=name
        )
        sql = "SELECT namespace, name, body FROM revisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [(r[0], r[1], r[2]) for r in self._read(sql + _ORDER, args)]

    def list_bodies_at(
        self,
        namespace: str | None = None,
        *,
        repository: str | None = None,
        package: str | None = None,
        name: str | None = None,
    ) -> tuple[int, list[tuple[str, str, str]]]:
        """``current_resource_version()`` and ``list_bodies(...)`` read in one statement (one
        round trip, one snapshot: the list holds exactly what that resourceVersion says)."""
        sql, args = bodies_at_query(
            "%s", namespace=namespace, repository=repository, package=package, name=name
        )
        return bodies_at_rows(self._read(sql, args))

    def nested_package(self, namespace: str, repository: str, package: str) -> str | None:
        parts = package.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if ancestors:
            rows = self._read(
                "SELECT package FROM revisions WHERE namespace = %s AND repository = %s"
                " AND package = ANY(%s) LIMIT 1",
                (namespace, repository, ancestors),
            )
            if rows:
                return str(rows[0][0])
        # With the "C" collation "0" sorts right after "/": the range is exactly the paths below.
        rows = self._read(
            "SELECT package FROM revisions WHERE namespace = %s AND repository = %s"
            " AND package > %s AND package < %s LIMIT 1",
            (namespace, repository, package + "/", package + "0"),
        )
        return str(rows[0][0]) if rows else None

    def mentioning(self, namespace: str, name: str) -> list[RevisionRow]:
        rows = self._read(
            f"SELECT {_REV_COLUMNS} FROM revisions WHERE namespace = %s AND upstream = %s",
            (namespace, name),
        )
        return [row_from_columns(r) for r in rows]

    def get_content(
        self, namespace: str, repository: str, package: str, workspace: str
    ) -> ContentRow | None:
        rows = self._read(
            f"SELECT {CONTENT_COLUMNS}, files FROM contents WHERE namespace = %s"
            " AND repository = %s AND package = %s AND workspace = %s",
            (namespace, repository, package, workspace),
        )
        return content_from_columns(rows[0]) if rows else None

    def list_contents(self, namespace: str, repository: str) -> list[ContentRow]:
        rows = self._read(
            f"SELECT {CONTENT_COLUMNS} FROM contents WHERE namespace = %s AND repository = %s"
            " ORDER BY package, workspace",
            (namespace, repository),
        )
        return [content_from_columns(r) for r in rows]

    def get_object(self, kind: str, namespace: str, name: str) -> ObjectRow | None:
        rows = self._read(
            "SELECT body, resource_version FROM objects"
            " WHERE kind = %s AND namespace = %s AND name = %s",
            (kind, namespace, name),
        )
        if not rows:
            return None
        return ObjectRow(kind, namespace, name, orjson.loads(rows[0][0]), int(rows[0][1]))

    def list_objects(self, kind: str, namespace: str | None = None) -> list[ObjectRow]:
        sql = "SELECT namespace, name, body, resource_version FROM objects WHERE kind = %s"
        args: list[str] = [kind]
        if namespace is not None:
            sql += " AND namespace = %s"
            args.append(namespace)
        sql += " ORDER BY namespace, name"
        return [
            ObjectRow(kind, r[0], r[1], orjson.loads(r[2]), int(r[3]))
            for r in self._read(sql, args)
        ]

    def current_resource_version(self) -> int:
        return int(self._read("SELECT value FROM counter WHERE id = 1")[0][0])

    def events_after(self, resource_version: int, *, limit: int = 1000) -> list[Event]:
        rows = self._read(
            "SELECT resource_version, type, kind, namespace, name, body FROM events"
            " WHERE resource_version > %s ORDER BY resource_version LIMIT %s",
            (resource_version, limit),
        )
        return [Event(int(r[0]), r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]

    def oldest_event(self) -> int:
        return int(self._read("SELECT MIN(resource_version) FROM events")[0][0] or 0)

    def compact(self, *, keep: int) -> None:
        with self.transaction():
            conn: psycopg.Connection[Any] = self._local.conn
            try:
                conn.execute(
                    "DELETE FROM events WHERE resource_version <="
                    " (SELECT MAX(resource_version) FROM events) - %s",
                    (keep,),
                )
            except psycopg.Error as exc:
                raise self._translate(exc) from exc

    # --- notifications ------------------------------------------------------------------------

    def listen(
        self, callback: Callable[[int], None], *, include_own: bool = False, poll: float = 0.5
    ) -> Listener:
        """Call ``callback(resource_version)`` after every commit that allocated one.

        The number is the highest resourceVersion of the committed transaction; the events up to
        it are readable with :meth:`events_after` when the callback runs. By default this
        store's own commits are skipped (the engine publishes those itself).
        """
        listener = Listener(self, callback, include_own=include_own, poll=poll)
        with self._listeners_lock:
            self._listeners.append(listener)
        return listener

    # --- sync leases -------------------------------------------------------------------------

    def lease(self, key: str) -> AbstractContextManager[object] | None:
        """Hold ``key`` (a repository) against every replica on this database, or None when
        someone holds it: a session advisory lock (``pg_try_advisory_lock``) on a connection
        kept for leases, plus an in-process set (the lock is re-entrant within a session).

        Leaving the context releases it; so does PostgreSQL when this process or its lease
        connection dies, so a crashed replica never keeps a repository (docs/sync.md).
        """
        lock_id = _lease_id(key)
        with self._lease_lock:
            if key in self._leased:
                return None
            conn = self._lease_conn
            if conn is None or conn.closed or conn.broken:
                conn = self._lease_conn = self._connect()
            try:
                r = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()
            except psycopg.Error as exc:
                conn.close()  # its locks go with it; the next lease reconnects
                self._lease_conn = None
                raise self._translate(exc) from exc
            if not (r and r[0]):
                return None
            self._leased.add(key)
        return self._leased_context(key, lock_id, conn)

    @contextmanager
    def _leased_context(
        self, key: str, lock_id: int, conn: psycopg.Connection[Any]
    ) -> Iterator[object]:
        try:
            yield key
        finally:
            with self._lease_lock:
                self._leased.discard(key)
                if conn is self._lease_conn and not conn.closed:
                    try:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
                    except psycopg.Error:
                        conn.close()
                        self._lease_conn = None

    # --- API writes in flight ----------------------------------------------------------------

    def hold_writes(self, namespace: str, repository: str) -> AbstractContextManager[None]:
        """Mark an API write in flight on the repository for every replica (``_WriteHolds``);
        one round trip when this process has none there yet, none otherwise."""
        return self._holds.hold(_writes_id(namespace, repository))

    def wait_writes(self, namespace: str, repository: str, timeout: float) -> bool:
        """Wait until no replica has a write in flight on the repository (not to be called
        inside a transaction of this thread); False after ``timeout`` seconds."""
        return self._holds.wait(_writes_id(namespace, repository), timeout)

    def close(self) -> None:
        with self._listeners_lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        with self._lease_lock:
            if self._lease_conn is not None:
                self._lease_conn.close()
                self._lease_conn = None
        self._holds.close()
        self._pool.close()
