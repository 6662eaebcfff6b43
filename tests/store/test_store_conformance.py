"""The Store protocol, run identically on SQLite and PostgreSQL (see conftest.backend)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from porch.errors import Conflict, Invalid
from porch.store import SqliteStore
from porch.store.types import Event, ObjectRow, RevisionRow, Store, Transaction

from .conftest import Backend

# SQLite raises sqlite3.IntegrityError; PostgreSQL maps unique violations to Conflict and
# check violations to Invalid.
INTEGRITY = (sqlite3.IntegrityError, Conflict, Invalid)


def rev(
    name: str,
    *,
    ns: str = "default",
    repo: str = "blue",
    package: str = "app",
    workspace: str = "ws",
    revision: int = 0,
    lifecycle: str = "Draft",
    **extra: Any,
) -> RevisionRow:
    return RevisionRow(
        namespace=ns,
        name=name,
        repository=repo,
        package=package,
        workspace=workspace,
        revision=revision,
        lifecycle=lifecycle,
        commit="c0ffee",
        ref=f"drafts/{package}/{workspace}",
        **extra,
    )


def put(store: Store, *rows: RevisionRow, body: dict[str, Any] | None = None) -> None:
    with store.transaction() as txn:
        for row in rows:
            row.resource_version = txn.next_resource_version()
            txn.put_revision(row, body)


def stamp(txn: Transaction, name: str, *, kind: str = "Thing", type_: str = "ADDED") -> Event:
    rv = txn.next_resource_version()
    event = Event(rv, type_, kind, "default", name, {"metadata": {"name": name}, "rv": rv})
    txn.add_event(event)
    return event


def names(rows: list[RevisionRow]) -> list[str]:
    return [r.name for r in rows]


# --- empty store, counter, transactions -------------------------------------------------------


def test_empty_store(store: Store) -> None:
    assert store.current_resource_version() == 0
    assert store.oldest_event() == 0
    assert store.events_after(0) == []
    assert store.list_revisions() == []
    assert store.list_bodies() == []
    assert store.list_objects("Repository") == []
    assert store.get_revision("default", "x") is None
    assert store.get_object("Repository", "default", "x") is None
    assert store.max_published_revision("default", "blue", "app") == 0
    assert store.nested_package("default", "blue", "app") is None
    assert store.mentioning("default", "x") == []


def test_counter_is_gap_free_and_monotonic(store: Store) -> None:
    seen = []
    for _ in range(3):
        with store.transaction() as txn:
            seen += [txn.next_resource_version(), txn.next_resource_version()]
    assert seen == [1, 2, 3, 4, 5, 6]
    assert store.current_resource_version() == 6


def test_empty_transaction_commits_nothing(store: Store) -> None:
    with store.transaction():
        pass
    assert store.current_resource_version() == 0


def test_rollback_on_exception(store: Store) -> None:
    put(store, rev("kept"))
    with store.transaction() as txn:
        txn.put_object(ObjectRow("Repository", "default", "blue", {"v": 1}, 1))
    before = store.current_resource_version()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with store.transaction() as txn:
            stamp(txn, "lost")
            txn.put_revision(rev("lost", resource_version=txn.next_resource_version()))
            txn.delete_revision("default", "kept")
            txn.put_object(ObjectRow("Repository", "default", "blue", {"v": 2}, 2))
            txn.put_object(ObjectRow("Repository", "default", "green", {}, 2))
            raise Boom()
    assert store.current_resource_version() == before
    assert names(store.list_revisions()) == ["kept"]
    assert store.events_after(0) == []
    obj = store.get_object("Repository", "default", "blue")
    assert obj is not None and obj.body == {"v": 1}
    assert store.get_object("Repository", "default", "green") is None
    # The numbers given back are handed out again.
    with store.transaction() as txn:
        assert txn.next_resource_version() == before + 1


def test_rollback_on_base_exception(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        with store.transaction() as txn:
            stamp(txn, "x")
            raise KeyboardInterrupt
    assert store.current_resource_version() == 0
    assert store.events_after(0) == []
    put(store, rev("after"))  # the store is still usable
    assert store.current_resource_version() == 1


def test_reads_inside_a_transaction_see_its_writes(store: Store) -> None:
    put(store, rev("v1", revision=1, lifecycle="Published"))
    other_thread: list[int] = []
    with store.transaction() as txn:
        txn.put_revision(
            rev(
                "v2",
                revision=2,
                lifecycle="Published",
                resource_version=txn.next_resource_version(),
            )
        )
        assert store.max_published_revision("default", "blue", "app") == 2
        assert store.get_revision("default", "v2") is not None
        assert store.current_resource_version() == 2
        # Another thread reads what was committed, without waiting for this writer.
        t = threading.Thread(
            target=lambda: other_thread.append(
                store.max_published_revision("default", "blue", "app")
            )
        )
        t.start()
        t.join()
    assert other_thread == [1]
    assert store.max_published_revision("default", "blue", "app") == 2


def test_concurrent_transactions_in_threads(store: Store) -> None:
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(4):
                with store.transaction() as txn:
                    event = stamp(txn, f"t{i}")
                with lock:
                    got.append(event.resource_version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(1, 33))
    assert [e.resource_version for e in store.events_after(0)] == list(range(1, 33))


def test_data_survives_reopen(backend: Backend) -> None:
    first = backend.open()
    put(first, rev("a", revision=1, lifecycle="Published"), body={"kind": "PackageRevision"})
    with first.transaction() as txn:
        stamp(txn, "a")
        txn.put_object(ObjectRow("Repository", "default", "blue", {"spec": {}}, 2))
    first.close()
    again = backend.open()
    assert names(again.list_revisions()) == ["a"]
    assert again.current_resource_version() == 2
    assert [e.name for e in again.events_after(0)] == ["a"]
    assert again.get_object("Repository", "default", "blue") is not None
    assert again.list_bodies() == [("default", "a", '{"kind":"PackageRevision"}')]


# --- revisions --------------------------------------------------------------------------------


def test_revision_round_trip(store: Store) -> None:
    row = rev(
        "blue.app.ws",
        revision=3,
        lifecycle="Published",
        tasks=[{"type": "init", "init": {"description": "ünïcødé ✓"}}],
        published_by="alice",
        published_at="2026-01-02T03:04:05Z",
        kptfile={"labels": {"a": "b"}, "readinessGates": [{"conditionType": "x"}]},
        meta={"labels": {"k": "v"}, "finalizers": ["f"], "creationTimestamp": "t"},
    )
    put(store, row)
    got = store.get_revision("default", "blue.app.ws")
    assert got == row
    assert got is not row


def test_put_revision_replaces(store: Store) -> None:
    put(store, rev("a", workspace="one", meta={"labels": {"x": "1"}}))
    put(store, rev("a", workspace="two", revision=1, lifecycle="Published", published_at=None))
    got = store.get_revision("default", "a")
    assert got is not None
    assert (got.workspace, got.revision, got.lifecycle, got.meta) == ("two", 1, "Published", {})
    assert got.resource_version == 2
    assert len(store.list_revisions()) == 1


def test_delete_revision(store: Store) -> None:
    put(store, rev("a"), rev("b", workspace="w2"))
    with store.transaction() as txn:
        txn.delete_revision("default", "a")
        txn.delete_revision("default", "missing")  # no error
        txn.delete_revision("other", "b")  # other namespace: nothing
    assert names(store.list_revisions()) == ["b"]


def test_list_revisions_filters(store: Store) -> None:
    put(
        store,
        rev("a1", repo="blue", package="app"),
        rev("a2", repo="blue", package="db"),
        rev("a3", repo="red", package="app"),
        rev("a4", ns="other", repo="blue", package="app"),
    )
    assert names(store.list_revisions("default")) == ["a1", "a2", "a3"]
    assert names(store.list_revisions("default", repository="blue")) == ["a1", "a2"]
    assert names(store.list_revisions("default", repository="blue", package="app")) == ["a1"]
    assert names(store.list_revisions(package="app")) == ["a1", "a3", "a4"]
    assert names(store.list_revisions(repository="blue")) == ["a1", "a2", "a4"]
    assert names(store.list_revisions("nowhere")) == []


def test_list_order_is_bytewise(store: Store) -> None:
    # namespace, repository, package, revision, lifecycle, name — compared as bytes (SQLite's
    # BINARY collation), so upper case sorts before lower case and "-" < "." < "/" < "0".
    rows = [
        rev("n1", package="a/b"),
        rev("n2", package="a-b"),
        rev("n3", package="a.b"),
        rev("n4", package="B"),
        rev("n5", package="a"),
        rev("n6", package="a0"),
        rev("n7", package="a", workspace="w2", revision=2, lifecycle="Published"),
        rev("n8", package="a", workspace="w3", revision=1, lifecycle="DeletionProposed"),
        rev("n9", package="a", workspace="w4", revision=-1, lifecycle="Published"),
        rev("nA", package="a", workspace="w5", revision=0, lifecycle="Proposed"),
        rev("Z", ns="Default"),
    ]
    put(store, *rows)
    expected = ["Z", "n4", "n9", "n5", "nA", "n8", "n7", "n2", "n3", "n1", "n6"]
    assert names(store.list_revisions()) == expected
    assert [n for _, n, _ in store.list_bodies()] == expected


def test_unique_published_number_replaces_the_older_row(store: Store) -> None:
    # SQLite's INSERT OR REPLACE drops a row holding the same published number of the same
    # package under another name; PostgreSQL does the same.
    put(store, rev("old", revision=1, lifecycle="Published"))
    put(store, rev("new", workspace="w2", revision=1, lifecycle="Published"))
    assert names(store.list_revisions()) == ["new"]
    # Drafts (0) and placeholders (-1) are not unique.
    put(store, rev("d1", workspace="d1"), rev("d2", workspace="d2"))
    put(store, rev("p1", workspace="main", revision=-1, lifecycle="Published"))
    put(store, rev("p2", workspace="main2", revision=-1, lifecycle="Published"))
    assert sorted(names(store.list_revisions())) == ["d1", "d2", "new", "p1", "p2"]


@pytest.mark.parametrize(
    "bad",
    [rev("x", lifecycle="Bogus"), rev("x", revision=-2, lifecycle="Published")],
    ids=["lifecycle", "revision"],
)
def test_checks_reject_bad_rows_and_roll_back(store: Store, bad: RevisionRow) -> None:
    with pytest.raises(INTEGRITY):
        with store.transaction() as txn:
            stamp(txn, "e")
            txn.put_revision(bad)
    assert store.current_resource_version() == 0
    assert store.list_revisions() == []
    assert store.events_after(0) == []


def test_max_published_revision(store: Store) -> None:
    put(
        store,
        rev("p1", workspace="w1", revision=1, lifecycle="Published"),
        rev("p2", workspace="w2", revision=2, lifecycle="DeletionProposed"),
        rev("p3", workspace="w3", revision=5, lifecycle="Proposed"),  # not published-like
        rev("p4", workspace="w4", revision=-1, lifecycle="Published"),
        rev("o1", workspace="w1", revision=9, lifecycle="Published", package="other"),
        rev("o2", workspace="w1", revision=8, lifecycle="Published", repo="red"),
        rev("o3", workspace="w1", revision=7, lifecycle="Published", ns="elsewhere"),
    )
    assert store.max_published_revision("default", "blue", "app") == 2
    assert store.max_published_revision("default", "blue", "app", excluding="p2") == 1
    assert store.max_published_revision("default", "blue", "app", excluding="p1") == 2
    assert store.max_published_revision("default", "blue", "nope") == 0
    assert store.max_published_revision("default", "red", "app") == 8


def test_revision_and_rival_in_one_read(store: Store) -> None:
    put(
        store,
        rev("p1", workspace="w1", revision=1, lifecycle="Published"),
        rev("p2", workspace="w2", revision=2, lifecycle="DeletionProposed"),
        rev("p3", workspace="w3", revision=5, lifecycle="Proposed"),  # not published-like
        rev("o1", workspace="w1", revision=9, lifecycle="Published", package="other"),
        rev("o2", workspace="w1", revision=8, lifecycle="Published", repo="red"),
    )
    row, rival = store.get_revision_and_rival("default", "p1")
    assert row is not None and (row.name, row.revision) == ("p1", 1)
    assert rival == 2  # p2, not itself, not the Proposed p3, not other packages/repositories
    row, rival = store.get_revision_and_rival("default", "p2")
    assert row is not None and row.lifecycle == "DeletionProposed" and rival == 1
    assert store.get_revision_and_rival("default", "o2")[1] == 0
    assert store.get_revision_and_rival("default", "nope") == (None, 0)
    assert store.get_revision_and_rival("elsewhere", "p1") == (None, 0)


def test_list_bodies(store: Store) -> None:
    body = {"kind": "PackageRevision", "metadata": {"name": "a", "z": 1, "b": [1, "ü"]}}
    put(store, rev("a"), body=body)
    put(store, rev("b", workspace="w2", package="db", repo="red"))  # no body yet
    put(store, rev("c", ns="other"), body={"kind": "X"})
    got = store.list_bodies()
    assert got == [
        ("default", "a", orjson.dumps(body).decode()),
        ("default", "b", ""),
        ("other", "c", '{"kind":"X"}'),
    ]
    # The text keeps key order exactly as written.
    assert list(orjson.loads(got[0][2])["metadata"]) == ["name", "z", "b"]
    assert store.list_bodies("default", repository="red") == [("default", "b", "")]
    assert store.list_bodies(package="app") == [got[0], got[2]]
    assert store.list_bodies(name="c") == [got[2]]
    assert store.list_bodies("default", name="c") == []


def test_nested_package(store: Store) -> None:
    put(
        store,
        rev("a", package="apps/web"),
        rev("b", package="apps-other", workspace="w2"),
        rev("c", package="tools/lint/deep", workspace="w3"),
        rev("d", package="x", repo="red", workspace="w4"),
        rev("e", package="y/z", ns="other", workspace="w5"),
    )
    assert store.nested_package("default", "blue", "apps") == "apps/web"  # one inside
    assert store.nested_package("default", "blue", "apps/web/api") == "apps/web"  # contains it
    assert store.nested_package("default", "blue", "apps/web") is None  # itself does not count
    assert store.nested_package("default", "blue", "app") is None  # prefix, not a directory
    assert store.nested_package("default", "blue", "apps-other/x") == "apps-other"
    assert store.nested_package("default", "blue", "tools") == "tools/lint/deep"
    assert store.nested_package("default", "blue", "tools/lint") == "tools/lint/deep"
    assert store.nested_package("default", "blue", "tools/lint/deep/er") == "tools/lint/deep"
    assert store.nested_package("default", "blue", "x/y") is None  # other repository
    assert store.nested_package("default", "red", "x/y") == "x"
    assert store.nested_package("default", "blue", "y") is None  # other namespace


def test_mentioning(store: Store) -> None:
    clone = {"type": "clone", "clone": {"upstreamRef": {"upstreamRef": {"name": "up.v1"}}}}
    upgrade = {"type": "upgrade", "upgrade": {"newUpstreamRef": {"name": "up.v2"}}}
    put(
        store,
        rev("down1", tasks=[clone]),
        rev("down2", workspace="w2", tasks=[{"type": "init"}, upgrade]),
        rev("down3", workspace="w3", ns="other", tasks=[clone]),
        rev("plain", workspace="w4", tasks=[{"type": "init"}]),
    )
    assert names(store.mentioning("default", "up.v1")) == ["down1"]
    assert names(store.mentioning("default", "up.v2")) == ["down2"]
    assert names(store.mentioning("other", "up.v1")) == ["down3"]
    assert store.mentioning("default", "plain") == []
    assert store.mentioning("default", "") != []  # rows with no upstream have ""
    put(store, rev("down1", tasks=[{"type": "init"}]))
    assert store.mentioning("default", "up.v1") == []
    with store.transaction() as txn:
        txn.delete_revision("default", "down2")
    assert store.mentioning("default", "up.v2") == []


# --- objects ----------------------------------------------------------------------------------


def test_objects(store: Store) -> None:
    with store.transaction() as txn:
        for ns, name in (("default", "b"), ("default", "a"), ("Zed", "c"), ("other", "a")):
            rv = txn.next_resource_version()
            txn.put_object(ObjectRow("Repository", ns, name, {"metadata": {"name": name}}, rv))
        txn.put_object(ObjectRow("Secret", "default", "a", {"data": {"k": "dg=="}}, 9))
        txn.put_object(ObjectRow("Secret", "", "cluster-wide", {}, 10))
    got = store.get_object("Repository", "default", "a")
    assert got == ObjectRow("Repository", "default", "a", {"metadata": {"name": "a"}}, 2)
    listed = store.list_objects("Repository")
    assert [(o.namespace, o.name) for o in listed] == [
        ("Zed", "c"),
        ("default", "a"),
        ("default", "b"),
        ("other", "a"),
    ]
    assert [o.name for o in store.list_objects("Repository", "default")] == ["a", "b"]
    assert [o.name for o in store.list_objects("Secret")] == ["cluster-wide", "a"]
    assert store.get_object("Secret", "", "cluster-wide") is not None
    assert store.list_objects("Nothing") == []
    with store.transaction() as txn:
        txn.put_object(ObjectRow("Repository", "default", "a", {"v": 2}, 11))
        txn.delete_object("Repository", "default", "b")
        txn.delete_object("Repository", "default", "missing")
    assert store.get_object("Repository", "default", "a") == ObjectRow(
        "Repository", "default", "a", {"v": 2}, 11
    )
    assert store.get_object("Repository", "default", "b") is None
    assert store.get_object("Secret", "default", "a") is not None  # kinds are separate


# --- events -----------------------------------------------------------------------------------


def test_events_replay_after_n(store: Store) -> None:
    written = []
    for i in range(10):
        with store.transaction() as txn:
            written.append(stamp(txn, f"o{i}", type_=("ADDED", "MODIFIED", "DELETED")[i % 3]))
    assert store.events_after(0) == written
    assert store.events_after(4) == written[4:]
    assert store.events_after(10) == []
    assert store.events_after(99) == []
    assert store.events_after(2, limit=3) == written[2:5]
    # A resumable replay in batches sees every event once, in order.
    seen: list[Event] = []
    since = 0
    while batch := store.events_after(since, limit=4):
        seen += batch
        since = batch[-1].resource_version
    assert seen == written


def test_event_body_round_trip(store: Store) -> None:
    body = {"metadata": {"name": "x", "labels": {"ü": "✓"}}, "n": [1, 2.5, None, True]}
    with store.transaction() as txn:
        txn.add_event(Event(txn.next_resource_version(), "ADDED", "Secret", "", "x", body))
    (event,) = store.events_after(0)
    assert event == Event(1, "ADDED", "Secret", "", "x", body)


def test_duplicate_event_resource_version_fails_and_rolls_back(store: Store) -> None:
    with pytest.raises(INTEGRITY):
        with store.transaction() as txn:
            rv = txn.next_resource_version()
            txn.add_event(Event(rv, "ADDED", "K", "default", "a", {}))
            txn.add_event(Event(rv, "ADDED", "K", "default", "b", {}))
    assert store.events_after(0) == []
    assert store.current_resource_version() == 0


def test_oldest_event_and_compaction(store: Store) -> None:
    for i in range(10):
        with store.transaction() as txn:
            stamp(txn, f"o{i}")
    assert store.oldest_event() == 1
    store.compact(keep=4)
    assert [e.resource_version for e in store.events_after(0)] == [7, 8, 9, 10]
    assert store.oldest_event() == 7
    assert store.current_resource_version() == 10  # compaction never moves the counter
    store.compact(keep=100)
    assert store.oldest_event() == 7
    with store.transaction() as txn:
        stamp(txn, "new")
    assert store.events_after(10)[0].resource_version == 11
    store.compact(keep=0)
    assert store.events_after(0) == []
    assert store.oldest_event() == 0
    assert store.current_resource_version() == 11


def test_compaction_counts_resource_versions_not_rows(store: Store) -> None:
    # resourceVersions spent on rows without an event leave holes in the log: compaction keeps
    # the events within ``keep`` numbers of the newest one.
    with store.transaction() as txn:
        stamp(txn, "a")  # 1
        txn.next_resource_version()  # 2, no event
        txn.next_resource_version()  # 3, no event
        stamp(txn, "b")  # 4
        stamp(txn, "c")  # 5
    store.compact(keep=3)
    assert [e.resource_version for e in store.events_after(0)] == [4, 5]


def test_compact_on_empty_log(store: Store) -> None:
    store.compact(keep=10)
    store.compact(keep=0)
    assert store.oldest_event() == 0
    assert store.current_resource_version() == 0


# --- migrations -------------------------------------------------------------------------------


def test_sqlite_store_from_before_upstream_and_body(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
        INSERT INTO counter (id, value) VALUES (1, 7);
        CREATE TABLE revisions (
            namespace TEXT NOT NULL, name TEXT NOT NULL, repository TEXT NOT NULL,
            package TEXT NOT NULL, workspace TEXT NOT NULL, revision INTEGER NOT NULL,
            lifecycle TEXT NOT NULL, commit_id TEXT NOT NULL, ref TEXT NOT NULL,
            tasks TEXT NOT NULL, published_by TEXT NOT NULL, published_at TEXT,
            kptfile TEXT NOT NULL, meta TEXT NOT NULL, resource_version INTEGER NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        INSERT INTO revisions VALUES ('default', 'old', 'blue', 'app', 'ws', 1, 'Published',
            'c', 'main', '[]', '', NULL, '{}', '{}', 7);
        """
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.current_resource_version() == 7
        assert names(store.list_revisions()) == ["old"]
        assert store.list_bodies() == [("default", "old", "")]  # filled on the next write
        put(store, rev("old", revision=1, lifecycle="Published"), body={"k": 1})
        assert store.list_bodies() == [("default", "old", '{"k":1}')]
        assert store.mentioning("default", "x") == []
    finally:
        store.close()
