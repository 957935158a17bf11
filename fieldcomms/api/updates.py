from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any

import numpy as np
from aiohttp import web

from ..auth import require
from ..domain.events import get_event, open_event
from ..domain.updates import amplify, build_update, retract, store_update, visible_update
from ..geo import Bbox, parse_bbox
from ..idempotency import fingerprint
from ..model import UPDATE_KINDS, VISIBILITIES, validate_update
from ..services import Services
from ..visibility import location_seen_by
from .common import (
    JSON,
    Page,
    Source,
    choice_param,
    ctx_of,
    json_response,
    key_from,
    location,
    read_json,
    viewer_of,
)
from .spec import PAGING, PHOTOS_LIMIT, list_of, op, path, query, ref

routes = web.RouteTableDef()
Doc = dict[str, Any]


def bbox_filter(request: web.Request):  # type: ignore[no-untyped-def]
    """A test of an update's place against `bbox`, on the location the caller may see (visibility's rule:
    the public never matches a box by a location it is not shown)."""
    raw = request.query.get("bbox")
    if not raw:
        return None
    from ..geo import parse_bbox

    minlon, minlat, maxlon, maxlat = parse_bbox(raw)
    viewer = viewer_of(request)

    def in_box(doc: dict) -> bool:  # type: ignore[type-arg]
        loc = location_seen_by("updates", doc, viewer)
        return loc is not None and minlon <= loc["lon"] <= maxlon and minlat <= loc["lat"] <= maxlat

    return in_box


@routes.post("/api/v1/events/{tag}/updates")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    # Closed is checked inside create_it: a retry of a post stored before the event closed gets its answer.
    event = get_event(ctx, request.match_info["tag"])
    settings = ctx.settings
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        from .photos import read_update_multipart

        body, uploads = await read_update_multipart(request)
    else:
        body, uploads = await read_json(request), []
    inp = validate_update(body, max_text_chars=settings.max_text_chars, max_photos=settings.max_photos_per_update)
    key = key_from(request)
    fp = fingerprint(event["tag"], body, [u.id for u in uploads]) if key is not None else ""

    async def create_it(slot):  # type: ignore[no-untyped-def]
        open_event(ctx, event["tag"])
        if uploads:
            from .photos import store_uploads

            photo_ids = await store_uploads(ctx, viewer, uploads)
            updated = {**body, "photos": [*(body.get("photos") or []), *photo_ids]}
            final = validate_update(updated, max_text_chars=settings.max_text_chars,
                                    max_photos=settings.max_photos_per_update)
        else:
            final = inp
        doc = build_update(ctx, event, viewer, final)
        return 201, await store_update(ctx, doc, viewer, slot)

    status, out = await ctx.idempotency.run(viewer.id, key, fp, create_it)
    return json_response(out, status=status, headers=location(status, "/api/v1/updates/{id}", out))


@routes.get("/api/v1/events/{tag}/updates")
async def list_updates(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    page = Page(request)
    kind = choice_param(request, "kind", UPDATE_KINDS)
    visibility = choice_param(request, "visibility", VISIBILITIES)
    in_box = bbox_filter(request)

    def keep(doc: dict) -> bool:  # type: ignore[type-arg]
        return ((kind is None or doc["kind"] == kind)
                and (visibility is None or doc["visibility"] == visibility)
                and (in_box is None or in_box(doc)))

    viewer = viewer_of(request)
    source = None
    if viewer is None:
        # The public's lists walk only what the public may see (issue 15 item 7), not the whole event.
        if visibility == "internal":
            return json_response({"items": [], "last_seq": ctx.store.last_seq})
        raw_bbox = request.query.get("bbox")
        source = await public_source(ctx, event["tag"], kind, parse_bbox(raw_bbox) if raw_bbox else None)
    return json_response(page.collect(ctx, "updates", event["tag"], viewer, keep, source))


async def public_source(ctx: Services, tag: str, kind: str | None, bbox: Bbox | None) -> Source:
    """The candidates of a public list: the public updates of that kind, or those on the public map in the
    box, whichever are fewer."""
    public = ctx.public_updates
    if bbox is not None:
        index = ctx.map
        await index.ready(tag)
        points = index.index(tag, "updates", "public")
        if points.count(bbox) <= public.size(tag, kind):
            pts = points.query_arrays(bbox)
            order = np.argsort(pts.seq, kind="stable")
            ids, seqs = pts.ids[order].tolist(), pts.seq[order].tolist()

            def in_box(oldest: bool, bound: int | None) -> Iterator[Doc | None]:
                if oldest:
                    picked = ids[bisect_right(seqs, bound or 0):]
                else:
                    picked = ids[:len(seqs) if bound is None else bisect_left(seqs, bound)][::-1]
                return (ctx.store.get("updates", i) for i in picked)

            return in_box

    def of_kind(oldest: bool, bound: int | None) -> Iterator[Doc | None]:
        return public.oldest_first(tag, kind, bound or 0) if oldest else public.newest_first(tag, kind, bound)

    return of_kind


@routes.get("/api/v1/updates/{id}")
async def get(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    viewer = viewer_of(request)
    return json_response(ctx.view("updates", visible_update(ctx, request.match_info["id"], viewer), viewer))


@routes.post("/api/v1/updates/{id}/amplify")
async def amplify_update(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    return json_response(ctx.view("updates", await amplify(ctx, request.match_info["id"], viewer), viewer))


@routes.delete("/api/v1/updates/{id}")
async def retract_update(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    return json_response(ctx.view("updates", await retract(ctx, request.match_info["id"], viewer), viewer))


MULTIPART = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["update"],
    "properties": {"update": ref("UpdateCreate"),
                   "photo": {"type": "array", "maxItems": PHOTOS_LIMIT, "items": {"type": "string", "format": "binary"}}}}}}

OPENAPI = {
    "/api/v1/events/{tag}/updates": {
        "post": op("Post an update from a handset (JSON, or multipart with photos).", role="officer", ok="201",
                   schema=ref("Update"), params=[path("tag")], idempotent=True,
                   request_content={JSON: {"schema": ref("UpdateCreate")}, **MULTIPART},
                   description="`visibility` defaults to `internal`. Without `location`, the first photo with "
                               "EXIF GPS gives it (`source: exif`): that location is shown to officers and "
                               "control only; the public view of the update has `location: null` and no "
                               "`zones`, and it is on no public map, page, feed or stream, and matches no "
                               "public `bbox` (the officer never chose to publish where the camera was). "
                               "409 if the event is closed."),
        "get": op("List updates.", schema=list_of(ref("Update")), params=[
            path("tag"), *PAGING,
            query("bbox", {"type": "string"}, "minlon,minlat,maxlon,maxlat"),
            query("kind", {"type": "string", "enum": list(UPDATE_KINDS)}),
            query("visibility", {"type": "string", "enum": list(VISIBILITIES)}),
        ], description="The public sees `public`, `active` updates only. `bbox` tests the location the caller "
                       "may see: for the public, an update placed by its photo's EXIF matches no box."),
    },
    "/api/v1/updates/{id}": {
        "get": op("One update.", schema=ref("Update"), params=[path("id")]),
        "delete": op("Retract an update: it leaves every public view and stream, and is never erased.",
                     role="officer", schema=ref("Update"), params=[path("id")],
                     description="Its author or the control room."),
    },
    "/api/v1/updates/{id}/amplify": {
        "post": op("Amplify an update (twice counts once).", role="officer", schema=ref("Update"), params=[path("id")]),
    },
}
