"""Zones: POST and GET /api/v1/events/{tag}/zones, DELETE /api/v1/zones/{id}."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain import zones as domain
from ..domain.events import get_event
from ..geo import feature_collection
from ..idempotency import fingerprint
from .common import ctx_of, idempotent_create, json_response, read_json, viewer_of
from .spec import op, path, ref

routes = web.RouteTableDef()
GEOJSON = "application/geo+json"


@routes.post("/api/v1/events/{tag}/zones")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    body = await read_json(request)
    doc = domain.build_zone(event, body)

    return await idempotent_create(request, viewer.id, fingerprint(event["tag"], body),
                                   lambda slot: domain.store_zone(ctx, doc, viewer, slot), content_type=GEOJSON,
                                   location_of="/api/v1/zones/{id}")


@routes.get("/api/v1/events/{tag}/zones")
async def list_zones(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    features = domain.visible_zones(ctx, event["tag"], viewer_of(request))
    return json_response(feature_collection(features), content_type=GEOJSON)


@routes.delete("/api/v1/zones/{id}")
async def delete(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    await domain.delete_zone(ctx_of(request), request.match_info["id"], viewer)
    return web.Response(status=204)


ZONE_RULES = (
    "A Feature with a Polygon, LineString or Point geometry ([lon, lat], WGS 84) and `properties`: `name`, "
    "`kind`, `visibility` (default `internal`), `buffer_m` (0 to 50,000; widens lines and points, measured in "
    "metres on the ground). The `id` and unknown properties of the posted Feature are ignored. Polygons come "
    "back with the RFC 7946 winding (exterior counter-clockwise, holes clockwise) whatever the input, without "
    "altitudes. 422 names the reason: a self-crossing ring (and where), too few points, an unclosed ring, "
    "coordinates out of range. Zones may be added to a closed event (it refuses only new updates, rumours, "
    "reports and positions). New updates are tagged with the zones containing them when they are written; "
    "deleting a zone does not untag earlier updates."
)

OPENAPI = {
    "/api/v1/events/{tag}/zones": {
        "post": op("Add a zone: the demonstration area, the march route, a cordon...", role="control", ok="201",
                   schema=ref("ZoneFeature"), body=ref("ZoneCreate"), params=[path("tag")], idempotent=True,
                   content_type=GEOJSON, description=ZONE_RULES),
        "get": op("The event's zones as a FeatureCollection.", schema=ref("ZoneCollection"), params=[path("tag")],
                  content_type=GEOJSON,
                  description="The public sees public zones only. Deleted zones are left out (the stream "
                              "announces deletions as `zone-deleted`)."),
    },
    "/api/v1/zones/{id}": {
        "delete": op("Delete a zone.", role="control", ok="204", params=[path("id")],
                     description="Stored as a tombstone and announced on the stream as `zone-deleted`. Deleting "
                                 "a deleted zone again answers 204, so that a retry is harmless."),
    },
}
