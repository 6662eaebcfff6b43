"""PostgreSQL sync leases: one holder of a repository across every store on one database."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import pytest

from porch.store.postgres import PostgresStore

WAIT = 30.0  # an upper bound for the server to end a session, never a speed expectation


def _eventually(store: PostgresStore, key: str) -> AbstractContextManager[object]:
    """The lease once the server has ended the session that held it (that is asynchronous)."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        held = store.lease(key)
        if held is not None:
            return held
        pause.wait(0.05)
    raise AssertionError(f"lease {key} was never given back")


def test_one_holder_across_replicas(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = replicas
    held = a.lease("default/blue")
    assert held is not None
    with held:
        assert b.lease("default/blue") is None  # the other replica
        assert a.lease("default/blue") is None  # and this one (not re-entrant)
        other = b.lease("default/green")  # another repository is free
        assert other is not None
        with other:
            assert a.lease("default/green") is None
    again = b.lease("default/blue")
    assert again is not None
    with again:
        assert a.lease("default/blue") is None
    with a.lease("default/blue") or pytest.fail("released leases are free again"):
        pass


def test_a_closed_replica_gives_its_leases_back(pg_dsn: str) -> None:
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    try:
        held = a.lease("default/blue")
        assert held is not None
        held.__enter__()
        assert b.lease("default/blue") is None
        a.close()  # a crash closes the session the same way: PostgreSQL drops its locks
        with _eventually(b, "default/blue"):
            pass
    finally:
        b.close()


def test_lease_connection_lost_is_reopened(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    first = a.lease("default/blue")
    assert first is not None
    with first:
        conn = a._lease_conn
        assert conn is not None
        # the server ends the lease session (a restart, a failover): its locks go with it
        b._read("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with _eventually(b, "default/blue"):
            pass
    # this replica reconnects for its next lease
    again = a.lease("default/blue")
    assert again is not None
    with again:
        assert b.lease("default/blue") is None
