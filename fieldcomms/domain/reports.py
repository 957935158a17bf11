"""Reports from the public: validation (an e-mail contact or none), creation (with the photos sent with it and
the photos they resemble), and the officers' list (with the rumours each resembles). Over the services; the
rules of rumours live in `fieldcomms.domain.rumours`.

A report keeps no client address: the address is only the rate limiter's key, held in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..idempotency import Slot
from ..model import Problems, check_unknown, location_value, new_id, now_str, require_object, text_value
from ..visibility import Viewer
from . import replies
from .events import get_event, open_event
from .rumours import REPORTS, RUMOURS, _device, _docs
from .similar import similar_to_report
from .updates import photo_summary

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
CONTACT_MAX_CHARS = 200

def validate_report(body: Any, max_text: int) -> Doc:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("text", "location", "contact"), p)
    text = text_value(data.get("text"), p, "text", max_chars=max_text)
    location = _device(location_value(data.get("location"), p))
    contact = text_value(data.get("contact"), p, "contact", max_chars=CONTACT_MAX_CHARS, required=False,
                         min_chars=0)
    if contact and not replies.is_email(contact):
        # Checked now, while the reporter can still fix it: the answer can only be mailed to an address.
        p.add("contact", "must be an e-mail address (name@example.org), or empty")
    p.raise_if_any()
    return {"text": text, "location": location, "contact": contact or None}



async def create_report(ctx: Services, tag: str, inp: Doc, slot: Slot | None, photos: Iterable[Doc] = ()) -> Doc:
    """`photos`: the stored records of the photos sent with it (never public: see visibility._photo)."""
    event = open_event(ctx, tag)
    doc = {"id": new_id("rep"), "event": event["tag"], **inp, "received_at": now_str(), "counted_for": [],
           "photos": [photo_summary(p) for p in photos]}
    # Only photos stored before it count, and they are all indexed now: computed once, kept with the report.
    doc["similar_photos"] = similar_to_report(ctx, doc) if doc["photos"] else []

    def answer(stored: Doc) -> Doc:
        return {"id": stored["id"]}

    stored = await ctx.store.append("report", REPORTS, doc, aux=slot.aux(answer, 202) if slot else None)
    return answer(stored)


async def list_reports(
    ctx: Services, tag: str, viewer: Viewer | None, *, since: int | None = None, before: int | None = None,
    limit: int = 50,
) -> Doc:
    """Reports as `viewer` may see them (paged like every list), each with the event's rumours it resembles.
    The page is gathered on the loop (cheap); the scoring, a pure function of the texts and claims, runs on a
    thread, so a page of reports against hundreds of rumours never holds the loop."""
    event = get_event(ctx, tag)
    last_seq = ctx.store.last_seq
    rumours = [{"id": r["id"], "claim": r["claim"]} for r in ctx.store.newest_first(RUMOURS, event["tag"])
               if r is not None]
    items: list[Doc] = []
    texts: list[str] = []
    for doc in _docs(ctx, REPORTS, event["tag"], since, before):
        shown = ctx.view(REPORTS, doc, viewer)
        if shown is None:
            continue
        items.append({"photos": [], "similar_photos": [], **shown})
        texts.append(doc["text"])
        if len(items) >= limit:
            if since is not None:
                last_seq = doc["seq"]
            break
    found = await asyncio.to_thread(ctx.matcher.match_all, texts, rumours) if texts else []
    return {"items": [{**item, "matches": matches} for item, matches in zip(items, found, strict=True)],
            "last_seq": last_seq}
