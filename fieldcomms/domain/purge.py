"""Purging an event's personal data once it is no longer needed (retention), and the server's daily check.

What goes: officers' positions and tracks (the whole documents of the collections in `WHOLE`), reports'
`contact` and the address a reply was mailed to (`FIELDS`), and the original photos of the event's updates and
reports (the files). What stays: updates, rumours, decisions, alerts, the access log, and the stripped photos
the updates show. `Store.redact` erases the documents' bytes from every file on disk (on PostgreSQL: every row
of the current state and of the changes table), leaving their digests, so the chain still verifies. Every
purge is in the access log (`event.purge`).

On PostgreSQL, purges hold the deployment's purge lock (an advisory lock): the server's daily purge runs on
whichever worker takes it first, the others skip that round, and an admin's purge waits for one in progress.
Inside the lock the view catches up first, so a purge another worker just finished is seen as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from ..evidence.retention import is_due
from ..model import now_str, utc_now
from ..visibility import Viewer
from .audit import record_access
from .events import get_event
from .replies import MAIL

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

Doc = dict[str, Any]

# Erased whole: every document of the event in these collections (officers' positions and their tracks).
WHOLE = ("positions", "tracks")
# Erased field by field: (collection, field) of the event's documents that carry a reporter's address.
FIELDS = (("reports", "contact"), ("mail", "to"))


def _photo_ids(ctx: Services, tag: str) -> list[str]:
    found: dict[str, None] = {}
    for coll in ("updates", "reports"):
        for doc in ctx.store.oldest_first(coll, tag):
            for photo in (doc or {}).get("photos") or ():
                found[photo["id"] if isinstance(photo, dict) else str(photo)] = None
    return list(found)


def _used_elsewhere(ctx: Services, photo_id: str, tag: str) -> bool:
    """The same bytes (photos are stored by content) carried by an update of another event not yet purged."""
    for update in ctx.photo_updates(photo_id):
        other = update.get("event")
        if other != tag:
            event = ctx.store.get("events", other) if other else None
            if event is None or not event.get("purged_at"):
                return True
    return False


@contextlib.asynccontextmanager
async def _purging(ctx: Services, *, wait: bool) -> AsyncIterator[bool]:
    """Hold the right to purge: on PostgreSQL the deployment's advisory lock (False: `wait` is false and
    another worker purges now), then the view caught up with everything committed. One process embedded."""
    if not ctx.settings.database_url:
        yield True
        return
    from ..store.pg.redact import purge_lock

    async with purge_lock(ctx.settings.database_url, wait=wait) as held:
        if held:
            catch_up = getattr(ctx.store, "catch_up", None)
            if catch_up is not None:
                await catch_up()
        yield held


async def purge_event(ctx: Services, tag: str, actor: Viewer | Doc, reason: str) -> Doc:
    """Erase the event's personal data; 409 unless the event is closed, or when it was purged already."""
    get_event(ctx, tag)  # 404 before waiting for anything
    async with _purging(ctx, wait=True) as held:
        if not held:
            raise Conflict("Another purge is in progress; try again in a minute.")
        return await _purge_held(ctx, tag, actor, reason)


async def _purge_held(ctx: Services, tag: str, actor: Viewer | Doc, reason: str) -> Doc:
    event = get_event(ctx, tag)
    tag = event["tag"]
    if event.get("status") != "closed":
        raise Conflict(f"Event #{tag} is {event.get('status')}; only a closed event can be purged.")
    if event.get("purged_at"):
        raise Conflict(f"Event #{tag} was purged at {event['purged_at']}.")
    store = ctx.store
    items: list[tuple[str, str, list[str] | None]] = []
    positions = [(coll, d) for coll in WHOLE for d in store.oldest_first(coll, tag)
                 if d is not None and not d.get("redacted")]
    items += [(coll, d["id"], None) for coll, d in positions]
    counted: dict[str, int] = {}
    for coll, name in FIELDS:
        docs = [d for d in store.oldest_first(coll, tag) if d is not None and d.get(name)]
        counted[coll] = len(docs)
        items += [(coll, d["id"], [name]) for d in docs]
    photos = [p for p in _photo_ids(ctx, tag) if not _used_elsewhere(ctx, p, tag)]
    # A reply still waiting for the mail server is not sent once its address is erased: it fails, said so,
    # as a change the outbox hears of (else it would keep retrying a message with no recipient). One being
    # handed over to the SMTP server right now is left to the outbox (it may be delivered already).
    for mail in list(store.oldest_first(MAIL, tag)):
        if mail is not None and mail.get("status") == "pending" and not mail.get("handing"):
            await store.append("mail", MAIL, {**mail, "status": "failed", "in_flight": False, "handing": False,
                                              "claimed_by": None, "lease_until": None, "at": now_str(),
                                              "error": "not sent: the event's personal data was purged"})
    if items:
        await store.redact(items)
    erased = 0
    for photo_id in photos:
        if await asyncio.to_thread(ctx.originals.delete, photo_id):
            erased += 1
        doc = store.get("photos", photo_id)
        if doc is not None and doc.get("original") and not doc["original"].get("purged_at"):
            await store.append("photo", "photos", {**doc, "original": {**doc["original"], "purged_at": now_str()}})
    purged_at = now_str()
    await store.append("event", "events", {**get_event(ctx, tag), "purged_at": purged_at})
    await record_access(ctx, actor, "event.purge", ("event", tag), tag, reason)
    whole = {coll: sum(1 for c, _ in positions if c == coll) for coll in WHOLE}
    log.info("purged #%s: %d position documents, %d track documents, %d report contacts (%d mailed replies), "
             "%d original photos", tag, whole["positions"], whole["tracks"], counted.get("reports", 0),
             counted.get("mail", 0), erased)
    return {"event": tag, "purged_at": purged_at, "positions": whole["positions"], "tracks": whole["tracks"],
            "report_contacts": counted.get("reports", 0), "original_photos": erased}


async def purge_due(ctx: Services, actor: Viewer | Doc, reason: str = "retention period ended", *,
                    wait: bool = True) -> list[Doc]:
    """Purge every closed event whose retain_until has passed (`fieldcomms purge --due`, and daily). With
    `wait` false (the daily purge), nothing is done while another worker purges."""
    async with _purging(ctx, wait=wait) as held:
        if not held and wait:
            raise Conflict("Another purge has been in progress for a minute; try again later.")
        if not held:
            return []
        now = utc_now()
        due = sorted(e["tag"] for e in ctx.store.all("events") if is_due(e, now))
        done = []
        for tag in due:
            try:
                done.append(await _purge_held(ctx, tag, actor, reason))
            except Conflict:
                continue  # changed meanwhile (reopened, or purged by another caller)
        return done


class RetentionWorker:
    """On a running server: purges due events every `purge_check_hours`, and serves the command line's
    requests left in the data directory's inbox (see evidence/inbox.py)."""

    def __init__(self, ctx: Services, poll_s: float = 0.5) -> None:
        from ..evidence.inbox import Inbox

        self.ctx = ctx
        self.inbox = Inbox(ctx.settings.data_path)
        self.poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        from .audit import cli_actor

        loop = asyncio.get_running_loop()
        interval = max(1.0, self.ctx.settings.purge_check_hours * 3600)
        next_check = loop.time() + min(300.0, interval)  # not at once: a start must not be slowed by it
        while True:
            try:
                await self.serve_inbox()
                if loop.time() >= next_check:
                    next_check = loop.time() + interval
                    done = await purge_due(self.ctx, {**cli_actor(), "id": "server", "callsign": "server"},
                                           wait=False)
                    if done:
                        log.info("retention: purged %s", ", ".join("#" + d["event"] for d in done))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention worker")
            await asyncio.sleep(self.poll_s)

    async def serve_inbox(self) -> None:
        for request_id, request in await asyncio.to_thread(self.inbox.pending):
            await self.inbox.answer(request_id, await self._handle(request))

    async def _handle(self, request: Doc) -> Doc:
        from .audit import audit_entry

        try:
            if request.get("kind") == "audit":
                e = request["entry"]
                entry = audit_entry(e["actor"], e["action"], e["target"], e.get("event"), e.get("reason"),
                                    at=e.get("at"))
                stored = await self.ctx.store.append("audit", "audit", entry)
                return {"ok": True, "seq": stored["seq"]}
            if request.get("kind") == "purge-due":
                return {"ok": True, "purged": await purge_due(self.ctx, request["actor"],
                                                              request.get("reason") or "retention period ended")}
            return {"ok": False, "error": f"unknown request {request.get('kind')!r}"}
        except Exception as exc:
            log.exception("inbox request failed")
            return {"ok": False, "error": str(exc)}
