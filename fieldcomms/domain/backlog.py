"""Public reports waiting for an officer, counted per event, so that a flood of reports is bounded.

A report is unreviewed until an officer counts it as a sighting (`counted_for`) or dismisses it
(`dismissed`). The count is kept from the store's applied changes (on start too), so asking costs O(1).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..store.protocol import StoreProtocol

Doc = dict[str, Any]
SIGNAL_EVERY_S = 10.0  # control is told at most this often per event while reports are refused


def unreviewed(report: Doc) -> bool:
    return not report.get("counted_for") and not report.get("dismissed")


class ReportBacklog:
    def __init__(self, store: StoreProtocol) -> None:
        self._count: dict[str, int] = defaultdict(int)
        self._signalled: dict[str, float] = {}
        store.on_apply(self._apply, {"reports"})

    def _apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        before = old is not None and unreviewed(old)
        self._count[new.get("event") or ""] += int(unreviewed(new)) - int(before)

    def unreviewed(self, event: str) -> int:
        return self._count.get(event, 0)

    def should_signal(self, event: str, now: float) -> bool:
        """Whether to tell control (again) that the event's reports are being refused."""
        last = self._signalled.get(event)
        if last is not None and now - last < SIGNAL_EVERY_S:
            return False
        self._signalled[event] = now
        return True
