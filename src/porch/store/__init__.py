"""The store: revision index, object metadata, resourceVersion counter, event log."""

from porch.store.sqlite import SqliteStore
from porch.store.types import Event, ObjectRow, RevisionRow, Store, Transaction

__all__ = ["Event", "ObjectRow", "RevisionRow", "SqliteStore", "Store", "Transaction"]
