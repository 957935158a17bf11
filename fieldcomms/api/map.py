"""GET /api/v1/events/{tag}/map: every layer as one GeoJSON FeatureCollection, clustered when dense."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain import map as domain
from ..domain.events import get_event
from ..errors import ValidationFailed
from ..geo import MAX_ZOOM, feature_collection, parse_bbox
from .common import ctx_of, dumps, int_param, json_response, viewer_of
from .spec import op, path, query, ref

routes = web.RouteTableDef()
GEOJSON = "application/geo+json"


def parse_layers(request: web.Request) -> tuple[str, ...]:
    viewer = viewer_of(request)
    raw = request.query.get("layers")
    if raw is None or not raw.strip():
        control = viewer is not None and viewer.at_least("control")
        return tuple(layer for layer in domain.LAYERS if layer != "officers" or control)
    layers = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [layer for layer in layers if layer not in domain.LAYERS]
    if unknown:
        raise ValidationFailed.one("layers", f"unknown layer(s) {', '.join(unknown)}; the layers are "
                                   + ", ".join(domain.LAYERS))
    if "officers" in layers:
        require(request, "control")  # asked for by name: 401 for the public, 403 for an officer
    return layers


@routes.get("/api/v1/events/{tag}/map")
async def live_map(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    layers = parse_layers(request)
    raw_bbox = request.query.get("bbox")
    bbox = parse_bbox(raw_bbox) if raw_bbox else None
    since = int_param(request, "since")
    zoom = int_param(request, "zoom", lo=0, hi=MAX_ZOOM)
    await ctx.map.ready(event["tag"])
    viewer = viewer_of(request)
    if viewer is None and bbox is None and since is None:
        # The public's whole-event map: the same for every visitor until the event's updates, rumours or zones
        # change (domain.map.PublicAnswers). Its features are encoded once per version; `last_seq` is now.
        key, version = (event["tag"], layers, zoom), ctx.map.version(event["tag"])
        encoded = ctx.map.public_answers.get(key, version)
        if encoded is None:
            q = domain.MapQuery(ctx, event["tag"], None, None, None, zoom)
            encoded = dumps(q.features(layers))
            ctx.map.public_answers.put(key, version, encoded)
        whole = b'{"type":"FeatureCollection","features":%b,"last_seq":%d}' % (encoded, ctx.store.last_seq)
        return web.Response(body=whole, content_type=GEOJSON)
    q = domain.MapQuery(ctx, event["tag"], viewer, bbox, since, zoom)
    body = feature_collection(q.features(layers))
    body["last_seq"] = ctx.store.last_seq
    return json_response(body, content_type=GEOJSON)


OPENAPI = {
    "/api/v1/events/{tag}/map": {
        "get": op("The live map: updates, rumours, zones and officers as one GeoJSON FeatureCollection.",
                  params=[
                      path("tag"),
                      query("bbox", {"type": "string"}, "minlon,minlat,maxlon,maxlat (WGS 84); default: the world. "
                            "Boxes across the antimeridian are refused (422)."),
                      query("since", {"type": "integer", "minimum": 0},
                            "Only items changed after this seq (for a map kept current without the stream)."),
                      query("layers", {"type": "string", "default": "updates,rumours,zones"},
                            "Comma-separated: updates, rumours, zones, officers."),
                      query("zoom", {"type": "integer", "minimum": 0, "maximum": MAX_ZOOM},
                            "The map's zoom level; a layer with more than `cluster_above` points in the box "
                            "comes back clustered at it. Without it, such a layer is clustered at the zoom at "
                            "which the box is 1,024 px wide."),
                  ], schema=ref("MapCollection"), content_type=GEOJSON,
                  description=(
                      "RFC 7946: `[lon, lat]`, WGS 84, no `crs`, polygons counter-clockwise. Each Feature has "
                      "`properties.layer` (`updates`, `rumours`, `zones`, `officers`) and the item's JSON as the "
                      "caller may see it; point items carry their `id` on the Feature. Items without a location "
                      "(and rumours for the public, whose copy has no location) are not on the map. Retracted "
                      "updates are not on the map for anyone, and deleted zones are left out; with `since`, "
                      "removals are not listed (the stream announces them as `update-retracted` and "
                      "`zone-deleted`). `officers` is for control only: it is left out of the default layers "
                      "for everyone else, and naming it is 401 for the public and 403 for an officer; each "
                      "officer Feature carries `stale` as in `GET /officers`.\n\n"
                      "Clustering: with more than `cluster_above` (default 500) points of a layer in the box, "
                      "the layer's points are grouped into cells of 60 screen pixels at that zoom "
                      "(anchored to the tile grid, so panning does not reshuffle them); without `zoom`, at the zoom at which the "
                      "box is 1,024 px wide (an answer of every point would make one request cost the whole "
                      "event). A cell holding several "
                      "points is a Point Feature with `properties` `{layer: \"cluster\", of: <layer>, count, "
                      "bbox: [minlon, minlat, maxlon, maxlat]}` at the mean of its points; a cell holding one "
                      "point is that item's own Feature. Zones are never clustered. Counts only ever include "
                      "items the caller may see. Features are in `seq` order within a layer; the collection "
                      "also carries `last_seq` (a foreign member, as RFC 7946 allows).")),
    },
}
