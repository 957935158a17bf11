"""Officer positions: POST /positions, GET /officers (control, with each officer's track), GET /officers/nearby
(officers)."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain import alerts
from ..domain import positions as domain
from ..domain.events import get_event, open_event
from .common import ctx_of, float_param, int_param, json_response, read_json
from .spec import op, path, query, ref

routes = web.RouteTableDef()


@routes.post("/api/v1/events/{tag}/positions")
async def report(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    event = open_event(ctx, request.match_info["tag"])
    inp = domain.validate_position(await read_json(request))
    moved = await domain.record_position(ctx, event, viewer, inp)
    await alerts.position_reported(ctx, moved)  # into a live alert's area: the officer becomes a recipient
    return web.Response(status=204)


@routes.get("/api/v1/events/{tag}/officers")
async def officers(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    items = domain.officers(ctx, event["tag"], viewer, int_param(request, "track", lo=0))
    return json_response({"items": items, "last_seq": ctx.store.last_seq})


@routes.get("/api/v1/events/{tag}/officers/nearby")
async def nearby(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    lat = float_param(request, "lat", lo=-90.0, hi=90.0)
    lon = float_param(request, "lon", lo=-180.0, hi=180.0)
    radius = float_param(request, "radius_m", lo=0.0, hi=domain.RADIUS_MAX_M)
    assert lat is not None and lon is not None and radius is not None
    items = domain.nearby(ctx, event["tag"], viewer, lat, lon, radius)
    return json_response({"items": items, "last_seq": ctx.store.last_seq})


OFFICER_ITEM = ref("OfficerPosition")
NEARBY_ITEM = ref("NearbyOfficer")

OPENAPI = {
    "/api/v1/events/{tag}/positions": {
        "post": op("Report the caller's position.", role="officer", ok="204", body=ref("PositionReport"),
                   params=[path("tag")],
                   description="`at` (RFC 3339) is when the handset took the position; it defaults to now, and a "
                               "time in the future is taken as now, so that a handset clock running fast cannot "
                               "pin the officer in place. A report older than the latest one (from a handset's "
                               "offline queue) does not move the officer but joins the track, which keeps "
                               "every position reported, in time order. No `Idempotency-Key` is needed: "
                               "repeating a report changes nothing. 409 if the event is closed. Positions are "
                               "never visible to the public. The stream's `position` event (control) is the "
                               "latest point only, `{officer, location, at, stale}`, sent when the officer "
                               "moves; a late report adds to the track without one."),
    },
    "/api/v1/events/{tag}/officers": {
        "get": op("Where every officer is: the latest position of each, with its track.", role="control",
                  params=[path("tag"), query("track", {"type": "integer", "minimum": 0},
                                             "Only the newest N points of each track (0: none); default all.")],
                  schema={"type": "object", "required": ["items", "last_seq"], "properties": {
                      "items": {"type": "array", "items": OFFICER_ITEM}, "last_seq": {"type": "integer"}}},
                  description="Ordered by callsign. `stale` is true when `at` is older than "
                              "`stale_after_minutes` (default 5), decided at the time of the request. "
                              "`track` (an extension) is every position the officer reported in the event, "
                              "oldest first (kept in a collection of its own; erased by the retention purge)."),
    },
    "/api/v1/events/{tag}/officers/nearby": {
        "get": op("Other officers near a place, nearest first.", role="officer", params=[
            path("tag"),
            query("lat", {"type": "number", "minimum": -90, "maximum": 90}, required=True),
            query("lon", {"type": "number", "minimum": -180, "maximum": 180}, required=True),
            query("radius_m", {"type": "number", "minimum": 0, "maximum": domain.RADIUS_MAX_M},
                  "At most 50 km.", required=True),
        ], schema={"type": "object", "required": ["items", "last_seq"], "properties": {
            "items": {"type": "array", "items": NEARBY_ITEM}, "last_seq": {"type": "integer"}}},
            description="Officers whose latest position is fresh (not stale) and within `radius_m`, measured "
                        "along the WGS 84 ellipsoid (`distance_m`, to the centimetre). Stale positions are left "
                        "out: they say where an officer was, not where help is. The caller is left out too."),
    },
}
