"""The public feeds: Atom of an event's public updates, and its public warnings as OASIS CAP 1.2.

    GET /events/{tag}/feed.atom      public updates, newest first
    GET /events/{tag}/alerts.atom    Atom index of the CAP alerts (public warnings), newest first
    GET /api/v1/updates/{id}/cap     one public warning as a CAP 1.2 alert

Everything published here is the public view (`ctx.view(..., None)`) whoever asks: a feed or a CAP document
is a publication, fetched by aggregators and re-served by caches, so an officer's token shows no more in it
than the public sees. That is also why an internal warning's CAP answers 404 to an officer: CAP has no
"internal" scope worth publishing, and the JSON update is where an officer reads it.

Rendering a feed costs milliseconds; polled by many readers it is served from a copy kept until the store
changes (`store.last_seq`). Any change that could alter a public view (a new update, a retraction, a zone)
moves `last_seq`, so a cached copy is never staler than the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from shapely.geometry import mapping

from .. import feeds
from ..domain.events import get_event
from ..errors import NotFound
from ..geo import zone_area
from ..services import Services
from ..visibility import cap_cancellation
from .common import ctx_of
from .spec import op, path

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

Doc = dict[str, Any]

ATOM_CONTENT_TYPE = "application/atom+xml"
FEED_LIMIT = 100  # entries in a feed; a reader polls, it does not page back
# CAP polygons are simplified to about a metre: a buffered line's round ends alone are ~70 vertices, and
# alerting systems downstream limit polygon size (the US IPAWS gateway takes at most 100 points).
CAP_SIMPLIFY_DEG = 1e-5


def public_updates(ctx: Services, tag: str, keep: Callable[[Doc], bool] = lambda u: True,
                   limit: int = FEED_LIMIT, kind: str | None = None) -> list[Doc]:
    """The event's updates as the public sees them, newest first (by seq), at most `limit`; walks only the
    updates the public may have seen (of `kind` if given), not the whole event."""
    out: list[Doc] = []
    docs: Iterator[Doc | None] = ctx.public_updates.newest_first(tag, kind)
    for doc in docs:
        seen = ctx.view("updates", doc, None)
        if seen is None or not keep(seen):
            continue
        out.append(seen)
        if len(out) >= limit:
            break
    return out


def cap_messages(ctx: Services, tag: str, limit: int = FEED_LIMIT) -> list[Doc]:
    """The event's CAP messages for the alerts index, newest first (by seq): its public warnings as the
    public sees them, and the public warnings since retracted as `visibility.cap_cancellation` shows them."""
    out: list[Doc] = []
    # The public-updates index keeps retracted ones too: it walks the warnings ever public, not the event.
    for doc in ctx.public_updates.newest_first(tag, "warning"):
        if doc is None or doc.get("kind") != "warning":
            continue
        seen = ctx.view("updates", doc, None) or cap_cancellation(doc)
        if seen is None:
            continue
        out.append(seen)
        if len(out) >= limit:
            break
    return out


def _is_warning(update: Doc) -> bool:
    return update.get("kind") == "warning"


def _atom(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=ATOM_CONTENT_TYPE, charset="utf-8")


@routes.get("/events/{tag}/feed.atom")
async def feed_atom(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    settings = ctx.settings

    def render() -> bytes:
        return feeds.atom_feed(ctx.view("events", event, None) or event, public_updates(ctx, event["tag"]),
                               base_url=settings.public_base_url, organisation=settings.organisation)

    return _atom(ctx.feed_cache.get_or_render(("feed", event["tag"]), _version(ctx, event), render))


@routes.get("/events/{tag}/alerts.atom")
async def alerts_atom(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    settings = ctx.settings

    def render() -> bytes:
        warnings = cap_messages(ctx, event["tag"])
        return feeds.cap_index_atom(ctx.view("events", event, None) or event, warnings,
                                    base_url=settings.public_base_url, organisation=settings.organisation)

    return _atom(ctx.feed_cache.get_or_render(("alerts", event["tag"]), _version(ctx, event), render))


def _version(ctx: Services, event: Doc) -> int:
    """What the event's feeds depend on: its public updates and the event itself. Not `store.last_seq`,
    which every officer's position moves: the cache would be emptied several times a second."""
    return max(ctx.public_updates.version(event["tag"]), event["seq"])


def public_zone_areas(ctx: Services, update: Doc) -> dict[str, Doc]:
    """GeoJSON areas of the update's zones that the public may see, by zone id, for CAP's <polygon>.

    A zone's area is its geometry widened by its `buffer_m`, so a march route (a line) becomes the corridor
    it stands for, simplified to about a metre. Zones since deleted, or no longer public, give no polygon;
    their names stay in the update's own (public) zone list, which is what it said when it was posted.
    """
    areas: dict[str, Doc] = {}
    for summary in update.get("zones") or ():
        zone = ctx.view("zones", ctx.store.get("zones", summary["id"]), None)
        if zone is None or zone.get("deleted") or not zone.get("geometry"):
            continue
        try:
            area = zone_area(zone).simplify(CAP_SIMPLIFY_DEG, preserve_topology=True)
            areas[zone["id"]] = dict(mapping(area))
        except Exception:  # a damaged stored zone must not take the alert down with it
            log.exception("zone %s has an unusable geometry; CAP alert without its polygon", zone["id"])
    return areas


@routes.get("/api/v1/updates/{id}/cap")
async def update_cap(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    update_id = request.match_info["id"]
    update = ctx.visible("updates", update_id, None)
    settings = ctx.settings
    if update is None:
        # A public warning since retracted answers a CAP Cancel, so that aggregators withdraw it too.
        cancellation = cap_cancellation(ctx.store.get("updates", update_id) or {})
        if cancellation is None:
            raise NotFound(f"No public warning {update_id}.")
        event = get_event(ctx, cancellation["event"])
        body = feeds.cap_cancel(cancellation, ctx.view("events", event, None) or event,
                                base_url=settings.public_base_url, sender=settings.cap_sender,
                                organisation=settings.organisation, expires_hours=settings.cap_expires_hours)
        return web.Response(body=body, content_type=feeds.CAP_CONTENT_TYPE, charset="utf-8")
    if not _is_warning(update):
        raise NotFound(f"No public warning {update_id}.")
    event = get_event(ctx, update["event"])
    body = feeds.cap_alert(update, ctx.view("events", event, None) or event, base_url=settings.public_base_url,
                           sender=settings.cap_sender, organisation=settings.organisation,
                           zone_geometries=public_zone_areas(ctx, update),
                           expires_hours=settings.cap_expires_hours)
    return web.Response(body=body, content_type=feeds.CAP_CONTENT_TYPE, charset="utf-8")


XML_STRING = {"type": "string"}

CACHING = (
    "Public, whoever asks: a token shows nothing more. `ETag` with `If-None-Match` (304), "
    "`Cache-Control: public, max-age=5` for anonymous readers, gzip when accepted."
)


def _xml_op(summary: str, content_type: str, description: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    operation = op(summary, schema=XML_STRING, content_type=content_type, params=params,
                   description=description + "\n\n" + CACHING)
    operation["responses"]["304"] = {"description": "Not modified (If-None-Match)."}
    return operation


OPENAPI = {
    "/events/{tag}/feed.atom": {
        "get": _xml_op(
            "Atom 1.0 (RFC 4287) feed of the event's public updates, newest first.",
            ATOM_CONTENT_TYPE,
            f"At most {FEED_LIMIT} entries: public, active updates only (retracted ones leave it at once). "
            "Entries are authored by the organisation, never an officer's callsign; photos are `enclosure` "
            "links, the location a GeoRSS point. 404 for an unknown event.",
            [path("tag", "The event's hashtag.")],
        ),
    },
    "/events/{tag}/alerts.atom": {
        "get": _xml_op(
            "Atom index of the event's public warnings, each linking to its CAP 1.2 alert.",
            ATOM_CONTENT_TYPE,
            f"At most {FEED_LIMIT} entries, newest first: every public, active update of kind `warning`, and "
            "every public warning since retracted as a cancellation (entry id `urn:fieldcomms:cap:{id}:cancel`, "
            "category `Cancel`, updated when it was withdrawn, none of the warning's text); each entry's "
            "`alternate` link (type `application/cap+xml`) is `/api/v1/updates/{id}/cap`.",
            [path("tag", "The event's hashtag.")],
        ),
    },
    "/api/v1/updates/{id}/cap": {
        "get": _xml_op(
            "A public warning as an OASIS CAP 1.2 alert.",
            feeds.CAP_CONTENT_TYPE,
            "Valid against the OASIS CAP 1.2 XSD. 404 unless the update is a public warning, for every "
            "caller: CAP is a publication format, so an officer asking for an internal warning gets 404 too "
            "(the JSON update is where officers read those). A public warning since retracted answers a "
            "`Cancel` message: `<msgType>Cancel</msgType>`, its own identifier (`fieldcomms-{id}-cancel`) "
            "and `sent` (the retraction), `<references>` naming the original's `sender,identifier,sent`, and "
            "none of the warning's text, place or photos. Every alert carries `<expires>`: the event's "
            "`ends_at` when later than `sent`, else `sent` plus the setting `cap_expires_hours` (default 6). "
            "A location taken from a photo's EXIF is never published (no `<circle>`). Times are "
            "CAP's (`2011-03-12T11:42:00-00:00`). The `<area>` names the update's public zones, draws each "
            "as a `<polygon>` (lines and points widened by their `buffer_m`, simplified to about a metre), "
            "and adds a `<circle>` `lat,lon radius_km` round the update's location (at least 0.2 km, or its "
            "accuracy).",
            [path("id", "The update's id.")],
        ),
    },
}
