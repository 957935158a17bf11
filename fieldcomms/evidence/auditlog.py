"""The access log's index: every entry's seq and id, in seq order, for `GET /audit` across all events.

Entries are never changed or removed (no route does either), so the index only grows and needs no
compaction. Filters by action and event are applied while paging; the log is small beside the updates."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any

AUDIT = "audit"


class AuditIndex:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []

    def on_apply(self, coll: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if coll == AUDIT and old is None:
            self.seqs.append(new["seq"])
            self.ids.append(new["id"])

    def newest_first(self, before: int | None = None) -> Iterator[str]:
        end = len(self.seqs) if before is None else bisect_left(self.seqs, before)
        for k in range(end - 1, -1, -1):
            yield self.ids[k]

    def oldest_first(self, since: int = 0) -> Iterator[str]:
        for k in range(bisect_right(self.seqs, since), len(self.seqs)):
            yield self.ids[k]
