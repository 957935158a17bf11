"""AlertBook: which alerts are still live on their area, and when the next acknowledgement falls due.

Both are derived from the stored alerts (an apply hook, run while the store loads too), never from timers
alone: after a restart the book is rebuilt from the journal, and a deadline that passed while the server was
down is simply due at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import parse_time_str
from ..store import StoreProtocol

Doc = dict[str, Any]
ALERTS = "alerts"


def _ts(value: str) -> float:
    return parse_time_str(value).timestamp()


def became_recipient(alert: Doc, recipient: Doc) -> str:
    """When the officer became a recipient: `added_at` for those who walked into a live alert later."""
    added: str = recipient.get("added_at") or alert["created_at"]
    return added


def ack_deadlines(alert: Doc) -> list[tuple[float, Doc]]:
    """(deadline, recipient) of each recipient still to be reported overdue: not acknowledged, not yet
    reported. Empty for an alert without `ack_within_s`."""
    within = alert.get("ack_within_s")
    if not within:
        return []
    return [(_ts(became_recipient(alert, r)) + within, r) for r in alert["recipients"]
            if not r.get("acked_at") and not r.get("overdue")]


class AlertBook:
    def __init__(self, store: StoreProtocol) -> None:
        self._active: dict[str, dict[str, float]] = {}  # event -> {alert id: live until (epoch seconds)}
        self._due: dict[str, float] = {}  # alert id -> its earliest deadline not yet reported
        self.on_sooner: Callable[[], None] | None = None  # the escalation scheduler's wake-up
        store.on_apply(self._on_apply, {ALERTS})

    def _on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        until = new.get("active_until")
        if until:
            self._active.setdefault(new["event"], {})[new["id"]] = _ts(until)
        deadlines = ack_deadlines(new)
        if not deadlines:
            self._due.pop(new["id"], None)
            return
        earliest = min(d for d, _ in deadlines)
        sooner = earliest < self._due.get(new["id"], float("inf"))
        self._due[new["id"]] = earliest
        if sooner and self.on_sooner is not None:
            self.on_sooner()

    def active(self, event: str, now: float) -> list[str]:
        """The ids of the event's alerts that are live now; those that have ended are forgotten."""
        alerts = self._active.get(event)
        if not alerts:
            return []
        ended = [alert_id for alert_id, until in alerts.items() if until <= now]
        for alert_id in ended:
            del alerts[alert_id]
        return list(alerts)

    def due(self, now: float) -> list[str]:
        return [alert_id for alert_id, deadline in self._due.items() if deadline <= now]

    def forget(self, alert_id: str) -> None:
        self._due.pop(alert_id, None)

    def next_deadline(self) -> float | None:
        return min(self._due.values(), default=None)
