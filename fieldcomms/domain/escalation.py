"""Escalation: a recipient who has not acknowledged an alert within its `ack_within_s` is reported to control,
once, as the stream's `alert-overdue`, and marked `overdue: true` on the stored alert.

What is due is computed from the stored alerts (the AlertBook), not kept in timers: one task sleeps until the
earliest deadline (or at most a minute, so a wall clock that jumps is caught up with), reports whatever is due
then, and sleeps again. After a restart the book is rebuilt from the journal, so a deadline that passed while
the server was down is reported as soon as the server is up. Marking the recipients in the stored alert is
what makes the report happen once.

With several workers on PostgreSQL every worker runs this scheduler, and at a deadline they all try to mark the
same recipients. The marked alert carries the seq it was built from, so the store writes it only if the alert is
still at that seq (compare-and-set): one worker's report is stored, the others' raise WriteConflict after their
view has caught up, and their next pass finds the recipients marked already. One `alert-overdue` per recipient
reaches the stream, whichever worker stored it. (A lost race is the expected outcome there: counted, not logged.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from ..errors import DatabaseUnavailable, StorageError, WriteConflict
from ..model import now_str
from .alertbook import ALERTS
from .alerts import mark_overdue, overdue_now

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)
MAX_SLEEP_S = 60.0
RETRY_S = 2.0  # after a failed pass: the deadline is still past, and trying again at once would spin


class Escalation:
    def __init__(self, ctx: Services) -> None:
        self.ctx = ctx
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.reports = 0
        self.lost_to_other_workers = 0

    def start(self) -> None:
        """Once the store is open and the stream's broker listens, so the reports of a restart reach it."""
        self._wake = asyncio.Event()
        self.ctx.alert_book.on_sooner = self._wake.set
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.ctx.alert_book.on_sooner = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            failed = False
            try:
                await self.report_due(time.time())
            except (StorageError, DatabaseUnavailable) as exc:
                # The store is closing or failed, or PostgreSQL is away: the reports wait until it is back
                # (the task must live on: it is the only one that will make them).
                failed = True
                log.warning("escalation: cannot store overdue reports: %s", exc)
            upcoming = self.ctx.alert_book.next_deadline()
            sleep = MAX_SLEEP_S if upcoming is None else min(MAX_SLEEP_S, max(0.0, upcoming - time.time()))
            if failed:
                sleep = max(sleep, RETRY_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep):
                    await self._wake.wait()

    async def report_due(self, now: float) -> None:
        """Mark and report every recipient whose acknowledgement is due by `now`, one change per alert."""
        pending = []
        failure: BaseException | None = None
        for alert_id in self.ctx.alert_book.due(now):
            doc = self.ctx.store.get(ALERTS, alert_id)
            late = [] if doc is None else overdue_now(doc, now)
            if not late:
                self.ctx.alert_book.forget(alert_id)  # nothing due after all: do not wake for it again
            else:
                # Applied at once (no await before it), so the book no longer holds these as due.
                assert doc is not None
                marked = mark_overdue(doc, late, now_str())
                try:
                    pending.append(self.ctx.store.append_nowait("alert-overdue", ALERTS, marked))
                except (StorageError, DatabaseUnavailable) as exc:  # refused at once: the rest would be too
                    failure = exc
                    break
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, WriteConflict):
                self.lost_to_other_workers += 1  # reported by another worker (or the alert moved on): re-read
            elif isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                self.reports += 1
        if failure is not None:
            raise failure
