"""``list_bodies_at`` on both stores: the list of stored bodies and the resourceVersion of the
same snapshot in one statement (what ``Engine.list_raw`` and ``Engine.list_bodies`` serve a
list from)."""

from __future__ import annotations

from porch.store.types import RevisionRow, Store


def _row(repository: str, package: str, revision: int) -> RevisionRow:
    name = f"{repository}.{package}.v{revision}"
    return RevisionRow(
        "default", name, repository, package, f"v{revision}", revision, "Published", "c", "r"
    )


def _put(store: Store, *rows: RevisionRow) -> None:
    with store.transaction() as txn:
        for row in rows:
            row.resource_version = txn.next_resource_version()
            txn.put_revision(row, {"metadata": {"name": row.name}})


def test_same_rows_and_version_as_the_two_separate_reads(store: Store) -> None:
    _put(store, _row("a", "p", 2), _row("a", "p", 1), _row("b", "p", 1), _row("a", "q", 1))
    for keys in (
        {},
        {"repository": "a"},
        {"repository": "a", "package": "p"},
        {"name": "b.p.v1"},
        {"repository": "none"},
    ):
        version, rows = store.list_bodies_at("default", **keys)
        assert rows == store.list_bodies("default", **keys), keys
        assert version == store.current_resource_version() == 4
    assert [name for _ns, name, _body in store.list_bodies_at(None, repository="a")[1]] == [
        "a.p.v1",
        "a.p.v2",
        "a.q.v1",
    ]
    assert store.list_bodies_at("elsewhere") == (4, [])
    _put(store, _row("a", "p", 3))
    version, rows = store.list_bodies_at("default", repository="a", package="p")
    assert version == 5 and [n for _ns, n, _b in rows] == ["a.p.v1", "a.p.v2", "a.p.v3"]
