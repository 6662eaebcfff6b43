"""PostgreSQL only: several replicas on one database, resourceVersion order, LISTEN/NOTIFY."""

from __future__ import annotations

import queue
import threading

import psycopg
import pytest

from porch.errors import InternalError, Unavailable
from porch.store.postgres import PostgresStore, describe
from porch.store.types import Event, ObjectRow, RevisionRow
from porch.testing.postgres import PostgresServer

WAIT = 30.0  # upper bound for something that must happen; never a speed expectation


def _event(rv: int, name: str) -> Event:
    return Event(rv, "ADDED", "Thing", "default", name, {"name": name})


def _wait_until(predicate: object, what: str) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        if callable(predicate) and predicate():
            return
        done.wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_replicas_see_each_others_writes_at_once(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    with a.transaction() as txn:
        rv = txn.next_resource_version()
        txn.put_revision(
            RevisionRow(
                "default",
                "r1",
                "blue",
                "app",
                "ws",
                1,
                "Published",
                "c",
                "main",
                resource_version=rv,
            ),
            {"kind": "PackageRevision"},
        )
        txn.put_object(ObjectRow("Repository", "default", "blue", {"spec": {}}, rv))
        txn.add_event(_event(rv, "r1"))
    assert b.current_resource_version() == rv
    assert [r.name for r in b.list_revisions()] == ["r1"]
    assert b.get_object("Repository", "default", "blue") is not None
    assert b.events_after(0) == [_event(rv, "r1")]
    assert b.max_published_revision("default", "blue", "app") == 1
    with b.transaction() as txn:
        assert txn.next_resource_version() == rv + 1
        txn.delete_revision("default", "r1")
    assert a.list_revisions() == []
    assert a.current_resource_version() == rv + 1


def test_concurrent_transactions_from_two_replicas_commit_in_rv_order(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """32 transactions, 16 on each replica, all started together; a reader polling the event log
    all along must only ever see a gap-free prefix 1..k (never N+1 before N)."""
    a, b = replicas
    n = 32
    start = threading.Barrier(n + 1)
    stop = threading.Event()
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    snapshots: list[list[int]] = []

    def writer(store: PostgresStore, i: int) -> None:
        try:
            start.wait()
            with store.transaction() as txn:
                rv = txn.next_resource_version()
                txn.put_object(ObjectRow("Thing", "default", f"o{i}", {"i": i}, rv))
                txn.add_event(_event(rv, f"o{i}"))
            with lock:
                got.append(rv)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            snapshots.append([e.resource_version for e in b.events_after(0)])

    threads = [threading.Thread(target=writer, args=((a, b)[i % 2], i)) for i in range(n)]
    observer = threading.Thread(target=reader)
    for t in threads:
        t.start()
    observer.start()
    start.wait()
    for t in threads:
        t.join()
    stop.set()
    observer.join()
    assert not errors
    assert sorted(got) == list(range(1, n + 1))
    assert [e.resource_version for e in a.events_after(0)] == list(range(1, n + 1))
    assert a.current_resource_version() == n
    for seen in snapshots:
        assert seen == list(range(1, len(seen) + 1)), seen


def test_a_later_writer_waits_for_the_earlier_one(
    replicas: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    """While replica A holds an open transaction that allocated N, replica B's transaction cannot
    allocate N+1 and commit ahead of it (the case a plain sequence would get wrong)."""
    a, b = replicas
    allocated = threading.Event()
    release = threading.Event()
    results: dict[str, int] = {}

    def first() -> None:
        with a.transaction() as txn:
            results["a"] = txn.next_resource_version()
            txn.add_event(_event(results["a"], "a"))
            allocated.set()
            release.wait(WAIT)

    def second() -> None:
        with b.transaction() as txn:
            results["b"] = txn.next_resource_version()
            txn.add_event(_event(results["b"], "b"))

    ta = threading.Thread(target=first)
    ta.start()
    assert allocated.wait(WAIT)
    tb = threading.Thread(target=second)
    tb.start()
    # Wait until B's backend is blocked on a lock held by A (deterministic, no timing).
    with psycopg.connect(pg_dsn, autocommit=True) as admin:

        def b_is_waiting() -> bool:
            r = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            return bool(r and r[0] >= 1)

        _wait_until(b_is_waiting, "replica B to wait for replica A's lock")
    assert "b" not in results
    assert b.events_after(0) == []
    release.set()
    ta.join()
    tb.join()
    assert (results["a"], results["b"]) == (1, 2)
    assert [e.name for e in a.events_after(0)] == ["a", "b"]


def test_notify_reaches_the_other_replica(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = replicas
    heard_by_b: queue.Queue[int] = queue.Queue()
    heard_by_a_own: queue.Queue[int] = queue.Queue()
    listener_b = b.listen(heard_by_b.put)
    listener_a = a.listen(heard_by_a_own.put, include_own=True)
    try:
        with a.transaction() as txn:
            rv1 = txn.next_resource_version()
            txn.add_event(_event(rv1, "x"))
            rv2 = txn.next_resource_version()
            txn.add_event(_event(rv2, "y"))
        assert heard_by_b.get(timeout=WAIT) == rv2
        assert [e.resource_version for e in b.events_after(0)] == [rv1, rv2]
        assert heard_by_a_own.get(timeout=WAIT) == rv2
        # B's own commit: A hears it, B's default listener skips it.
        with b.transaction() as txn:
            rv3 = txn.next_resource_version()
            txn.add_event(_event(rv3, "z"))
        assert heard_by_a_own.get(timeout=WAIT) == rv3
        with a.transaction() as txn:
            rv4 = txn.next_resource_version()
        assert heard_by_b.get(timeout=WAIT) == rv4  # not rv3: that was B's own
    finally:
        listener_a.close()
        listener_b.close()
    assert not listener_a.alive and not listener_b.alive


def test_rolled_back_and_empty_transactions_notify_nothing(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    heard: queue.Queue[int] = queue.Queue()
    listener = b.listen(heard.put)
    try:
        with pytest.raises(RuntimeError):
            with a.transaction() as txn:
                txn.next_resource_version()
                txn.next_resource_version()
                raise RuntimeError("no")
        with a.transaction():
            pass
        with a.transaction() as txn:
            rv = txn.next_resource_version()
        assert rv == 1
        assert heard.get(timeout=WAIT) == 1  # the first thing heard: nothing came before it
    finally:
        listener.close()


def test_listener_reconnects_and_catches_up(
    replicas: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    a, b = replicas
    heard: queue.Queue[int] = queue.Queue()
    listener = b.listen(heard.put, poll=0.1)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                " AND pid <> pg_backend_pid()"
            )
        with a.transaction() as txn:
            rv = txn.next_resource_version()
        # Either the NOTIFY (if the listener was back in time) or the catch-up call after the
        # reconnect carries rv; both may arrive.
        values = [heard.get(timeout=WAIT)]
        while values[-1] < rv:
            values.append(heard.get(timeout=WAIT))
        assert values[-1] == rv
        assert listener.alive
    finally:
        listener.close()


def test_reads_survive_dropped_connections(
    replicas: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    a, _ = replicas
    with a.transaction() as txn:
        txn.next_resource_version()
    assert a.current_resource_version() == 1
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert a.current_resource_version() == 1  # retried on a fresh connection
    with a.transaction() as txn:
        assert txn.next_resource_version() == 2


def test_schema_is_versioned_and_migration_is_idempotent(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn) for _ in range(3)]
    try:
        assert {s.schema_version() for s in stores} == {2}
        with stores[0].transaction() as txn:
            txn.next_resource_version()
    finally:
        for s in stores:
            s.close()
    again = PostgresStore(pg_dsn)
    try:
        assert again.current_resource_version() == 1
    finally:
        again.close()


def test_concurrent_first_opens_create_the_schema_once(pg_server: PostgresServer) -> None:
    dsn = pg_server.create_database()
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(dsn))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert [s.schema_version() for s in opened] == [2, 2, 2, 2]
    finally:
        for s in opened:
            s.close()
        pg_server.drop_database(dsn)


def test_newer_schema_is_refused(pg_dsn: str) -> None:
    PostgresStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE porch_schema SET version = 99")
    with pytest.raises(InternalError, match="schema version 99"):
        PostgresStore(pg_dsn)


def test_unreachable_database(pg_server: PostgresServer) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://porch:s3cret-pw@127.0.0.1:{port}/porch"
    with pytest.raises(Unavailable) as info:
        PostgresStore(dsn, connect_timeout=5)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message
    assert info.value.code == 503


def test_transactions_do_not_nest(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, _ = replicas
    with a.transaction():
        with pytest.raises(InternalError):
            with a.transaction():
                pass


def test_closed_store_is_unavailable(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    store.close()
    with pytest.raises(Unavailable):
        store.current_resource_version()


def test_describe_never_shows_the_password() -> None:
    assert describe("postgresql://u:pw@db.example:6543/porch") == "db.example:6543/porch"
    assert describe("postgres://db.example/porch") == "db.example:5432/porch"
    assert describe("host=/run/pg port=5433 dbname=x password=pw") == "/run/pg:5433/x"


def test_integrity_errors_map_to_porch_errors(pg_dsn: str) -> None:
    from porch.errors import Conflict, Invalid

    store = PostgresStore(pg_dsn)
    try:
        with pytest.raises(Conflict):
            with store.transaction() as txn:
                txn.add_event(_event(1, "a"))
                txn.add_event(_event(1, "b"))
        with pytest.raises(Invalid):
            with store.transaction() as txn:
                txn.put_revision(
                    RevisionRow("default", "x", "blue", "app", "ws", 0, "Bogus", "c", "main")
                )
        with pytest.raises(Invalid):
            with store.transaction() as txn:
                txn.put_object(ObjectRow("Thing", "default", "nul\x00name", {}, 1))
        assert store.events_after(0) == [] and store.list_revisions() == []
    finally:
        store.close()
