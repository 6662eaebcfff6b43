"""API writes in flight, seen by every store on one database (``hold_writes`` /
``exclude_writes`` / ``wait_writes``; docs/sync.md): while any replica has a write in flight on a
repository, no replica's sync transaction can claim it, and a write that starts while a sync
claims it waits for that sync's commit."""

from __future__ import annotations

import threading
from collections.abc import Callable

from porch.store.postgres import PostgresStore
from porch.store.types import Store

NS = "default"
WAIT = 30.0  # an upper bound for the server to end a session, never a speed expectation


def _free(store: Store, repository: str = "blue") -> bool:
    """What a sync's commit transaction finds: no write in flight on the repository."""
    with store.transaction() as txn:
        return txn.exclude_writes(NS, repository)


def _eventually(predicate: Callable[[], bool], what: str) -> None:
    pause = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        if predicate():
            return
        pause.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_holds_nest_and_leave_the_repository_free(store: Store) -> None:
    """Both backends: nested holds, and nothing held once they end."""
    with store.hold_writes(NS, "blue"):
        with store.hold_writes(NS, "blue"):
            assert _free(store, "green")
    assert store.wait_writes(NS, "blue", WAIT)
    assert _free(store)


def test_a_write_in_flight_keeps_every_replicas_sync_out(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    outer = a.hold_writes(NS, "blue")
    outer.__enter__()
    try:
        assert not _free(b)  # the other replica
        assert not _free(a)  # and this one
        assert _free(b, "green")  # another repository is free
        assert not b.wait_writes(NS, "blue", 0.0)
        # A nested hold and one of another thread of the same process end first: still held.
        with a.hold_writes(NS, "blue"):
            pass

        def another() -> None:
            with a.hold_writes(NS, "blue"):
                pass

        other = threading.Thread(target=another)
        other.start()
        other.join(WAIT)
        assert not other.is_alive()
        assert not _free(b)
    finally:
        outer.__exit__(None, None, None)
    assert b.wait_writes(NS, "blue", WAIT)  # given back off the write's path: wait for it
    assert _free(b)
    assert _free(a)


def test_a_write_waits_for_the_commit_of_a_sync_that_claimed_the_repository(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    order: list[str] = []
    entered = threading.Event()

    def write() -> None:
        with a.hold_writes(NS, "blue"):
            order.append("write")
            entered.set()

    def waiting() -> bool:
        rows = b._read("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(rows[0][0]) == 1

    writer = threading.Thread(target=write)
    with b.transaction() as txn:
        assert txn.exclude_writes(NS, "blue")
        writer.start()
        _eventually(waiting, "the write to wait for the sync's lock")
        assert not entered.is_set()
        order.append("sync")
    writer.join(WAIT)
    assert entered.is_set()
    assert order == ["sync", "write"]
    assert b.wait_writes(NS, "blue", WAIT)


def test_a_crashed_replica_does_not_keep_syncs_out(pg_dsn: str) -> None:
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    try:
        held = a.hold_writes(NS, "blue")
        held.__enter__()  # never left: the replica dies mid-write
        assert not _free(b)
        a.close()  # a crash ends the session the same way: PostgreSQL drops its locks
        _eventually(lambda: _free(b), "the dead replica's lock to go")
        assert b.wait_writes(NS, "blue", WAIT)
    finally:
        b.close()


def test_a_lost_connection_takes_the_locks_of_writes_in_flight_again(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    with a.hold_writes(NS, "blue"):
        conn = a._holds._conn
        assert conn is not None
        b._read("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        _eventually(lambda: _free(b), "the ended session's lock to go")
        # The next write of that replica reconnects and takes the lock of "blue" back too.
        with a.hold_writes(NS, "green"):
            assert not _free(b, "green")
            assert not _free(b)
        assert not _free(b)
    assert b.wait_writes(NS, "blue", WAIT)
    assert _free(b)
