"""Officers' updates: create, amplify, retract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..idempotency import Slot
from ..model import UpdateInput, hashtags, new_id, now_str
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]

PHOTO_SUMMARY = ("id", "url", "thumb_url", "width", "height")


def photo_summary(photo: Doc) -> Doc:
    return {k: photo[k] for k in PHOTO_SUMMARY}


def build_update(ctx: Services, event: Doc, author: Viewer, inp: UpdateInput) -> Doc:
    """The new update's document, after the checks that need the store (photos, reply_to)."""
    problems = []
    photos = []
    for i, photo_id in enumerate(inp.photos):
        photo = ctx.store.get("photos", photo_id)
        if photo is None:
            problems.append({"field": f"photos[{i}]", "message": "no such photo; upload it first"})
        else:
            photos.append(photo)
    if inp.reply_to is not None:
        target = ctx.visible("updates", inp.reply_to, author)
        if target is None or target["event"] != event["tag"]:
            problems.append({"field": "reply_to", "message": "no such update in this event"})
    if problems:
        raise ValidationFailed(problems)
    location = None
    if inp.location is not None:
        location = {**inp.location, "source": "device"}
    else:
        for photo in photos:
            if photo.get("location"):
                location = {"lat": photo["location"]["lat"], "lon": photo["location"]["lon"], "source": "exif"}
                break
    zones = ctx.zones_for(event["tag"], location["lat"], location["lon"]) if location else []
    received_at = now_str()
    return {
        "id": new_id("upd"),
        "event": event["tag"],
        "author": {"id": author.id, "callsign": author.callsign},
        "text": inp.text,
        "hashtags": hashtags(inp.text, event["tag"]),
        "location": location,
        "visibility": inp.visibility,
        "kind": inp.kind,
        "status": "active",
        "photos": [photo_summary(p) for p in photos],
        "zones": zones,
        "reply_to": inp.reply_to,
        "amplified_by": [],
        "captured_at": inp.captured_at or received_at,
        "received_at": received_at,
    }


async def store_update(ctx: Services, doc: Doc, author: Viewer, slot: Slot | None) -> Doc:
    def render(stored: Doc) -> Doc:
        return ctx.view("updates", stored, author) or {}

    stored = await ctx.store.append("update", "updates", doc, aux=slot.aux(render) if slot else None)
    return render(stored)


def visible_update(ctx: Services, update_id: str, viewer: Viewer | None) -> Doc:
    doc = ctx.store.get("updates", update_id)
    if ctx.view("updates", doc, viewer) is None or doc is None:
        raise NotFound(f"No update {update_id}.")
    return doc


async def amplify(ctx: Services, update_id: str, viewer: Viewer) -> Doc:
    doc = visible_update(ctx, update_id, viewer)
    if doc["status"] != "active":
        raise Conflict("A retracted update cannot be amplified.")
    if any(a["id"] == viewer.id for a in doc["amplified_by"]):
        return doc
    new = {**doc, "amplified_by": [*doc["amplified_by"], {"id": viewer.id, "callsign": viewer.callsign}]}
    return await ctx.store.append("update", "updates", new)


async def retract(ctx: Services, update_id: str, viewer: Viewer) -> Doc:
    doc = visible_update(ctx, update_id, viewer)
    if doc["author"]["id"] != viewer.id and not viewer.at_least("control"):
        raise Forbidden("Only its author or the control room may retract an update.")
    if doc["status"] == "retracted":
        return doc
    new = {**doc, "status": "retracted", "retracted_at": now_str(),
           "retracted_by": {"id": viewer.id, "callsign": viewer.callsign}}
    stored = await ctx.store.append("update-retracted", "updates", new)
    for hook in ctx.after_retract:
        await hook(stored, viewer)
    return stored
