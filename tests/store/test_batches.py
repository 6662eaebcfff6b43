"""Batched writes (a repository's index build): same result as one row at a time, both stores.

PostgreSQL takes large batches (``_COPY_AT`` rows and more) through COPY and a staging table,
small ones through pipelined statements; both sizes are covered.
"""

from __future__ import annotations

import pytest

from porch.store.types import Event, Store

from .test_store_conformance import rev


@pytest.mark.parametrize("size", [3, 40])
def test_batch_writes_rows_bodies_and_events(store: Store, size: int) -> None:
    rows = [
        rev(f"blue.app{i}.v1", package=f"app{i}", revision=1, lifecycle="Published")
        for i in range(size)
    ]
    with store.transaction() as txn:
        first = txn.reserve_resource_versions(size)
        for offset, row in enumerate(rows):
            row.resource_version = first + offset
        txn.put_revisions([(row, {"metadata": {"name": row.name}}) for row in rows])
        txn.add_events(
            [
                Event(r.resource_version, "ADDED", "PackageRevision", r.namespace, r.name, {})
                for r in rows
            ]
        )
    assert store.current_resource_version() == first + size - 1
    got = store.list_revisions("default", repository="blue")
    assert sorted(r.name for r in got) == sorted(r.name for r in rows)
    assert {r.name: r.resource_version for r in got} == {r.name: r.resource_version for r in rows}
    bodies = store.list_bodies("default", repository="blue")
    assert all(text == f'{{"metadata":{{"name":"{name}"}}}}' for _ns, name, text in bodies)
    events = store.events_after(first - 1)
    assert [e.resource_version for e in events] == list(range(first, first + size))


@pytest.mark.parametrize("size", [3, 40])
def test_batch_replaces_rows_and_a_published_number_held_under_another_name(
    store: Store, size: int
) -> None:
    with store.transaction() as txn:
        old = rev("blue.app0.old", package="app0", revision=1, lifecycle="Published")
        old.resource_version = txn.next_resource_version()
        txn.put_revision(old)
        kept = rev("blue.app1.v1", package="app1", revision=1, lifecycle="Published")
        kept.resource_version = txn.next_resource_version()
        txn.put_revision(kept)
    # app0 revision 1 now under another name (as SQLite's INSERT OR REPLACE drops the old row);
    # app1's row is updated in place.
    rows = [rev("blue.app0.v1", package="app0", revision=1, lifecycle="Published")]
    rows.append(rev("blue.app1.v1", package="app1", revision=1, lifecycle="DeletionProposed"))
    rows += [rev(f"blue.x{i}.v1", package=f"x{i}", revision=1) for i in range(size - 2)]
    with store.transaction() as txn:
        first = txn.reserve_resource_versions(len(rows))
        for offset, row in enumerate(rows):
            row.resource_version = first + offset
        txn.put_revisions([(row, None) for row in rows])
    got = {r.name: r for r in store.list_revisions("default", repository="blue")}
    assert "blue.app0.old" not in got
    assert got["blue.app1.v1"].lifecycle == "DeletionProposed"
    assert got["blue.app1.v1"].resource_version == first + 1
    assert len(got) == len(rows)


def test_a_failed_batch_rolls_back_with_its_transaction(store: Store) -> None:
    before = store.current_resource_version()
    with pytest.raises(RuntimeError), store.transaction() as txn:
        first = txn.reserve_resource_versions(20)
        rows = [rev(f"blue.p{i}.ws", package=f"p{i}") for i in range(20)]
        for offset, row in enumerate(rows):
            row.resource_version = first + offset
        txn.put_revisions([(row, None) for row in rows])
        raise RuntimeError("boom")
    assert store.current_resource_version() == before
    assert store.list_revisions("default") == []
    # and the next batch on the same (pooled) connection starts clean
    with store.transaction() as txn:
        first = txn.reserve_resource_versions(20)
        rows = [rev(f"blue.q{i}.ws", package=f"q{i}") for i in range(20)]
        for offset, row in enumerate(rows):
            row.resource_version = first + offset
        txn.put_revisions([(row, None) for row in rows])
    assert len(store.list_revisions("default")) == 20
