"""TinyDB as the in-memory, queryable view of the journal.

TinyDB's stock tables rebuild the whole table dict on every insert (`Table._update_table`), which makes
an append O(size of the database). Our documents are keyed by their own ids and always replaced whole,
so `ViewTable.put` writes one key into the storage dict directly: O(1), and TinyDB's `Query` searches,
`get(doc_id=...)` and `all()` keep working on the same data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document, Table


class ViewStorage(Storage):
    """Holds every table in memory: {table name: {doc id: document}}. Durability is the journal's job."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        return self.tables

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.tables = data

    def close(self) -> None:
        pass


class ViewTable(Table):
    document_id_class = str  # type: ignore[assignment]  # ids are the items' own opaque string ids

    def _raw(self) -> dict[str, Any]:
        storage: ViewStorage = self.storage  # type: ignore[assignment]
        return storage.tables.setdefault(self.name, {})

    def put(self, doc_id: str, document: Mapping[str, Any]) -> None:
        self._raw()[doc_id] = document
        self.clear_cache()

    def raw_get(self, doc_id: str) -> Any:
        return self._raw().get(doc_id)

    def raw_items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._raw().items())

    def raw_len(self) -> int:
        return len(self._raw())

    def drop_ids(self, doc_ids: list[str]) -> None:
        raw = self._raw()
        for doc_id in doc_ids:
            raw.pop(doc_id, None)
        self.clear_cache()


class View(TinyDB):
    table_class = ViewTable
    default_table_name = "_default"

    def __init__(self) -> None:
        super().__init__(storage=ViewStorage)

    def table(self, name: str, **kwargs: Any) -> ViewTable:  # type: ignore[override]
        return super().table(name, **kwargs)  # type: ignore[return-value]


__all__ = ["View", "ViewTable", "Document"]
