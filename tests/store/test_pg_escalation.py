"""Two workers' escalation schedulers reach the same deadline at once (two stores on one database stand for two
workers): one report per recipient is stored, the other worker loses the compare-and-set quietly and, having
caught up, finds nothing left to report."""

from __future__ import annotations

import asyncio
import time

from fieldcomms.domain.alertbook import ALERTS
from fieldcomms.model import now_str
from fieldcomms.services import Services
from fieldcomms.store import Change
from fieldcomms.store.pg import PgStore


async def test_two_workers_at_one_deadline_report_each_recipient_once(pair: tuple[Services, Services]) -> None:
    a, b = pair
    heard: dict[str, list[Change]] = {"a": [], "b": []}
    a.store.add_listener(lambda c: heard["a"].append(c) if c.type == "alert-overdue" else None)
    b.store.add_listener(lambda c: heard["b"].append(c) if c.type == "alert-overdue" else None)
    alert = {"id": "alr_1", "event": "ev", "text": "acknowledge", "created_at": now_str(), "ack_within_s": 30,
             "recipients": [{"id": "usr_1", "callsign": "pc1"}, {"id": "usr_2", "callsign": "pc2"}]}
    await a.store.append("alert", ALERTS, alert)
    await b.store.catch_up()
    due = time.time() + 31  # any instant past the deadline
    assert a.alert_book.due(due) == b.alert_book.due(due) == ["alr_1"]
    await asyncio.gather(a.escalation.report_due(due), b.escalation.report_due(due))  # neither raises
    assert a.escalation.reports + b.escalation.reports == 1
    assert a.escalation.lost_to_other_workers + b.escalation.lost_to_other_workers == 1
    # The loser has caught up: the recipients are marked, nothing is due, another pass reports nothing.
    for s in (a, b):
        stored = s.store.get(ALERTS, "alr_1")
        assert stored is not None and [r.get("overdue") for r in stored["recipients"]] == [True, True]
        assert s.alert_book.due(due) == []
    await asyncio.gather(a.escalation.report_due(due + 60), b.escalation.report_due(due + 60))
    assert a.escalation.reports + b.escalation.reports == 1
    await a.store.catch_up()
    await b.store.catch_up()
    # Every worker's stream hears exactly one alert-overdue, naming both recipients.
    assert len(heard["a"]) == len(heard["b"]) == 1
    assert heard["a"][0].seq == heard["b"][0].seq
    assert sorted(heard["a"][0].data["_overdue"]) == ["usr_1", "usr_2"]


async def test_the_scheduler_outlives_an_outage_and_reports_after_it(pair: tuple[Services, Services]) -> None:
    a, _ = pair
    store = a.store
    assert isinstance(store, PgStore)
    # Due at once: the recipient was added long ago. Stored before the scheduler starts.
    await store.append("alert", ALERTS, {
        "id": "alr_2", "event": "ev", "text": "acknowledge", "created_at": now_str(), "ack_within_s": 30,
        "recipients": [{"id": "usr_1", "callsign": "pc1", "added_at": "2020-01-01T00:00:00Z"}]})
    passes = 0
    report_due = a.escalation.report_due

    async def counted(now: float) -> None:
        nonlocal passes
        passes += 1
        await report_due(now)

    a.escalation.report_due = counted  # type: ignore[method-assign]  # counts the passes, changes nothing
    store._set_down(OSError("connection refused"))  # as the store marks itself when PostgreSQL goes away
    a.escalation.start()
    stored = store.get(ALERTS, "alr_2")
    assert stored is not None and not stored["recipients"][0].get("overdue")
    try:
        await asyncio.sleep(0.8)  # the first pass finds the store refusing writes
        assert a.escalation._task is not None and not a.escalation._task.done()  # alive, not crashed
        assert passes == 1, passes  # and not spinning on a deadline that is still past
        store._set_up()  # the database is back (the follower says so at its next pull anyway)
        deadline = time.monotonic() + 10
        while a.escalation.reports < 1:
            assert time.monotonic() < deadline, "no report after the outage"
            await asyncio.sleep(0.05)
    finally:
        await a.escalation.stop()

