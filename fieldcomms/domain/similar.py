"""Photos seen before (API.md "Photos from the public, and photos seen before"): which stored photos resemble a
photo, across every event of the deployment, and where each was seen. The fingerprints and their index are in
`fieldcomms.fingerprints`; this module asks it and applies visibility to what it returns, and fills in the
fingerprints that photos stored earlier lack (`backfill`)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

from .. import fingerprints
from ..errors import DatabaseUnavailable, NotFound, StorageError, WriteConflict
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

Doc = dict[str, Any]
PHOTO_REF = ("id", "url", "thumb_url", "width", "height")
SCAN_CHUNK = 2000  # photos looked at between two yields to the event loop while listing what lacks a fingerprint


def seen_in(ctx: Services, photo_id: str, viewer: Viewer | None) -> list[Doc]:
    """The updates and reports that carry the photo and that `viewer` may see, earliest first."""
    places: list[tuple[str, Doc]] = []
    for update in ctx.photo_updates(photo_id):
        if ctx.view("updates", update, viewer) is not None:
            places.append((update.get("received_at") or "", {"type": "update", "id": update["id"],
                                                               "event": update["event"]}))
    for report in ctx.photo_reports(photo_id):
        if ctx.view("reports", report, viewer) is not None:
            places.append((report.get("received_at") or "", {"type": "report", "id": report["id"],
                                                               "event": report["event"]}))
    return [place for _, place in sorted(places, key=lambda p: (p[0], p[1]["id"]))]


def similar(ctx: Services, photo_id: str, viewer: Viewer, limit: int = 20) -> Doc:
    """`GET /photos/{id}/similar`: the most similar first (then the earliest seen)."""
    if ctx.visible("photos", photo_id, viewer) is None:
        raise NotFound("No such photo.")
    items = []
    for other_id, distance in ctx.fingerprints.search(photo_id, limit=limit):
        other = ctx.visible("photos", other_id, viewer)
        if other is None:
            continue
        items.append({"photo": {k: other.get(k) for k in PHOTO_REF}, "distance": distance,
                      "first_seen_at": other.get("uploaded_at"), "seen_in": seen_in(ctx, other_id, viewer)})
    return {"items": items}


def similar_to_report(ctx: Services, report: Doc, limit: int = 5) -> list[Doc]:
    """For officers reading a report: earlier photos (uploaded no later than the report arrived, in any event)
    that its photos resemble, closest first; `of` names the report's photo."""
    own = {p["id"] for p in report.get("photos", ())}
    received = report.get("received_at") or ""
    found: dict[str, Doc] = {}
    for photo_id in own:
        # The very same file sent again is the same photo (photos are stored by content hash): seen before
        # when an update or another report carries it, or an officer uploaded it (this report's own new
        # photos have no uploader and, until it is stored, no carrier).
        record = ctx.store.get("photos", photo_id)
        carried = any(r["id"] != report["id"] for r in ctx.photo_reports(photo_id)) or any(
            True for _ in ctx.photo_updates(photo_id))
        if record is not None and (carried or record.get("uploaded_by") is not None):
            found[photo_id] = {"photo_id": photo_id, "of": photo_id, "distance": 0,
                               "first_seen_at": record.get("uploaded_at")}
        for other_id, distance in ctx.fingerprints.search(photo_id, limit=limit * 2):
            other = ctx.store.get("photos", other_id)
            if other_id in own or other is None or (other.get("uploaded_at") or "") > received:  # later ones
                continue
            if other_id not in found or distance < found[other_id]["distance"]:
                found[other_id] = {"photo_id": other_id, "of": photo_id, "distance": distance,
                                   "first_seen_at": other.get("uploaded_at")}
    return sorted(found.values(), key=lambda f: (f["distance"], f["first_seen_at"] or ""))[:limit]


def lacks_fingerprint(doc: Doc) -> bool:
    """Stored before fingerprints existed (no `_fingerprint`), or without one (pdqhash was missing, or the
    fingerprint failed at intake): and not already tried by the backfill (`_fingerprint_error`)."""
    return not doc.get("_fingerprint") and "_fingerprint_error" not in doc


async def backfill(ctx: Services) -> int:
    """See `_backfill`; a failure is logged, never raised (it runs as a task nobody awaits until shutdown)."""
    try:
        return await _backfill(ctx)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the fingerprint backfill failed; it runs again at the next start")
        return 0


async def _backfill(ctx: Services) -> int:
    """Fingerprint the stored photos that have none, in the background: run as a task once the store is open,
    so the server is ready at once. The photos are found in chunks (the event loop is never held for long),
    each file is fingerprinted in the photo worker pool (niced processes, one photo at a time, so uploads
    still find a free worker), and the result is written as an ordinary change of the photo's record: durable,
    in the journal (or PostgreSQL), so it is done once; the index learns it through the store's apply hook. A
    file that cannot be fingerprinted is recorded as such (`_fingerprint_error`, internal) and not tried again.
    With several workers on PostgreSQL each takes the photos in its own random order, and the record is
    written with a compare-and-set: a photo another worker did meanwhile is skipped. Returns how many photos
    it fingerprinted."""
    if fingerprints.pdqhash is None:
        return 0
    docs = list(ctx.store.all("photos"))
    todo: list[str] = []
    for start in range(0, len(docs), SCAN_CHUNK):
        todo += [d["id"] for d in docs[start:start + SCAN_CHUNK] if lacks_fingerprint(d)]
        await asyncio.sleep(0)
    del docs
    if not todo:
        return 0
    if ctx.settings.database_url:
        random.shuffle(todo)
    log.info("fingerprinting %d stored photos that have no fingerprint", len(todo))
    done = missing = failed = 0
    for photo_id in todo:
        doc = ctx.store.get("photos", photo_id)
        if doc is None or not lacks_fingerprint(doc):
            continue  # done meanwhile (another worker)
        path = ctx.media.open_path(photo_id)
        if path is None:
            missing += 1  # its file is not here (not yet copied?): tried again at the next start
            continue
        outcome = await ctx.photo_workers.fingerprint(str(path), max_pixels=ctx.settings.max_photo_pixels)
        if outcome.doc is None and outcome.error is None:
            return done  # the workers have no pdqhash
        doc = ctx.store.get("photos", photo_id)
        if doc is None or not lacks_fingerprint(doc):
            continue
        change: Doc = {"_fingerprint": outcome.doc} if outcome.doc is not None else {
            "_fingerprint": None, "_fingerprint_error": outcome.error}
        try:
            await ctx.store.append("photo", "photos", {**doc, **change})
        except WriteConflict:
            continue  # changed meanwhile (on PostgreSQL, possibly fingerprinted by another worker)
        except (StorageError, DatabaseUnavailable) as exc:  # the store refuses writes now: the rest waits for the next start
            log.warning("fingerprint backfill stopped after %d photos: %s", done, exc)
            return done
        if outcome.doc is not None:
            done += 1
        else:
            failed += 1
            log.warning("photo %s cannot be fingerprinted: %s", photo_id, outcome.error)
    log.info("fingerprinted %d stored photos (%d could not be, %d files not found)", done, failed, missing)
    return done
