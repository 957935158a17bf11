"""Purging an event's personal data once it is no longer needed (retention), and the server's daily check.

What goes: officers' positions and tracks (the whole documents, every track point), reports' `contact`, and the original photos
of the event's updates and reports (the files). What stays: updates, rumours, decisions, alerts, the access log,
and the stripped photos the updates show. `Store.redact` erases the documents' bytes from every file on disk,
leaving their digests, so the chain still verifies. Every purge is in the access log (`event.purge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from ..evidence.retention import is_due
from ..model import now_str, utc_now
from ..visibility import Viewer
from .audit import record_access
from .events import get_event

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

Doc = dict[str, Any]


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


async def purge_event(ctx: Services, tag: str, actor: Viewer | Doc, reason: str) -> Doc:
    """Erase the event's personal data; 409 unless the event is closed, or when it was purged already."""
    event = get_event(ctx, tag)
    tag = event["tag"]
    if event.get("status") != "closed":
        raise Conflict(f"Event #{tag} is {event.get('status')}; only a closed event can be purged.")
    if event.get("purged_at"):
        raise Conflict(f"Event #{tag} was purged at {event['purged_at']}.")
    store = ctx.store
    items: list[tuple[str, str, list[str] | None]] = []
    positions = [d for d in store.oldest_first("positions", tag) if d is not None and not d.get("_redacted")]
    items += [("positions", d["id"], None) for d in positions]
    # Every track document (ten minutes of an officer's points each, positions.py).
    items += [("tracks", d["id"], None) for d in store.oldest_first("tracks", tag) if d is not None and "points" in d]
    reports = [d for d in store.oldest_first("reports", tag) if d is not None and d.get("contact")]
    items += [("reports", d["id"], ["contact"]) for d in reports]
    photos = [p for p in _photo_ids(ctx, tag) if not _used_elsewhere(ctx, p, tag)]
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
    log.info("purged #%s: %d position documents, %d report contacts, %d original photos",
             tag, len(positions), len(reports), erased)
    return {"event": tag, "purged_at": purged_at, "positions": len(positions), "report_contacts": len(reports),
            "original_photos": erased}


async def purge_due(ctx: Services, actor: Viewer | Doc, reason: str = "retention period ended") -> list[Doc]:
    """Purge every closed event whose retain_until has passed (`fieldcomms purge --due`, and daily)."""
    now = utc_now()
    due = sorted(e["tag"] for e in ctx.store.all("events") if is_due(e, now))
    done = []
    for tag in due:
        try:
            done.append(await purge_event(ctx, tag, actor, reason))
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
                    done = await purge_due(self.ctx, {**cli_actor(), "id": "server", "callsign": "server"})
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
