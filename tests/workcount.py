"""Counting the work a read does where every read must pass: the visibility rule of one collection, and each
item walked through in seq order (kept or not). Tests of issue 15 item 7 bound it by the size of the answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fieldcomms import visibility
from fieldcomms.store.seqlog import SeqLog


def count_work(monkeypatch: pytest.MonkeyPatch, coll: str) -> list[int]:
    """A one-item list whose item grows by one for each `coll` item taken through visibility and each item
    walked in seq order, from now until the test ends."""
    calls = [0]
    rule = visibility.RULES[coll]

    def counting(item: Any, viewer: Any, lookup: Any) -> Any:
        calls[0] += 1
        return rule(item, viewer, lookup)

    monkeypatch.setitem(visibility.RULES, coll, counting)
    for name in ("newest_first", "oldest_first"):
        walk = getattr(SeqLog, name)

        def walking(self: SeqLog, *args: Any, _walk: Any = walk, **kw: Any) -> Iterator[str]:
            for item_id in _walk(self, *args, **kw):
                calls[0] += 1
                yield item_id

        monkeypatch.setattr(SeqLog, name, walking)
    return calls
