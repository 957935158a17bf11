"""Seq-ordered index of the items in one (collection, event), for feeds, paging and stream replay.

Seqs only grow, so appending keeps the arrays sorted and `bisect` finds any page. An item that changes
gets a new seq; its old entry becomes stale and is skipped on read (the caller says which seq is live),
and the arrays are compacted once stale entries outnumber live ones.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator


class SeqLog:
    __slots__ = ("seqs", "ids", "live")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []
        self.live = 0

    def append(self, seq: int, item_id: str, *, replaced: bool) -> None:
        self.seqs.append(seq)
        self.ids.append(item_id)
        if not replaced:
            self.live += 1

    def remove(self) -> None:
        """An item left this log for good (its seq entry is stale already)."""
        self.live -= 1

    def changed_after_at_least(self, since: int) -> int:
        """A lower bound, in O(log n), of how many items changed after `since`: every live item whose latest
        change is at or before `since` has an entry there, so the rest changed after it."""
        return max(0, self.live - bisect_right(self.seqs, since))

    def needs_compaction(self) -> bool:
        return len(self.seqs) > 1024 and len(self.seqs) > 2 * self.live

    def compact(self, current_seq: Callable[[str], int | None]) -> None:
        keep = [(s, i) for s, i in zip(self.seqs, self.ids, strict=True) if current_seq(i) == s]
        self.seqs = [s for s, _ in keep]
        self.ids = [i for _, i in keep]
        self.live = len(keep)

    def newest_first(self, current_seq: Callable[[str], int | None], before: int | None = None) -> Iterator[str]:
        end = len(self.seqs) if before is None else bisect_left(self.seqs, before)
        seqs, ids = self.seqs, self.ids
        for k in range(end - 1, -1, -1):
            if current_seq(ids[k]) == seqs[k]:
                yield ids[k]

    def changes_since(self, current_seq: Callable[[str], int | None], since: int = 0) -> Iterator[tuple[int, str]]:
        """(seq, id) of the items whose latest change is after `since`, oldest first."""
        start = bisect_right(self.seqs, since)
        seqs, ids = self.seqs, self.ids
        for k in range(start, len(seqs)):
            if current_seq(ids[k]) == seqs[k]:
                yield seqs[k], ids[k]

    def oldest_first(self, current_seq: Callable[[str], int | None], since: int = 0) -> Iterator[str]:
        return (item_id for _seq, item_id in self.changes_since(current_seq, since))
