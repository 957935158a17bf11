"""GET /api/v1/photos/{id}/similar: photos seen before, for officers."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain.similar import similar
from ..errors import ValidationFailed
from ..fingerprints import MATCH_DISTANCE
from .common import ctx_of, json_response
from .spec import op, path, query

routes = web.RouteTableDef()

LIMIT_MAX = 100


@routes.get("/api/v1/photos/{id}/similar")
async def get_similar(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    raw = request.query.get("limit") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= LIMIT_MAX:
        raise ValidationFailed.one("limit", f"must be an integer from 1 to {LIMIT_MAX}")
    return json_response(similar(ctx_of(request), request.match_info["id"], viewer, int(raw)))


SIMILAR = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
    "type": "object", "required": ["photo", "distance", "first_seen_at", "seen_in"], "properties": {
        "photo": {"$ref": "#/components/schemas/PhotoRef"},
        "distance": {"type": "integer", "minimum": 0, "maximum": 256},
        "first_seen_at": {"type": ["string", "null"], "format": "date-time"},
        "seen_in": {"type": "array", "items": {"type": "object", "required": ["type", "id", "event"], "properties": {
            "type": {"enum": ["update", "report"]}, "id": {"type": "string"}, "event": {"type": "string"}}}}}}}}}

DESCRIPTION = f"""\
Photos stored anywhere in the deployment (every event) that look like this one: the same picture resized,
re-compressed, lightly cropped, screenshotted on a phone (bars, status bar) or brightened. Each photo's
perceptual fingerprint is PDQ (256 bits) of the whole frame, of the frame with near-uniform margins trimmed,
and of the frame cropped by 2.5, 5 and 7.5% on each side; `distance` is the smallest Hamming distance between
the two photos' fingerprints (0 = identical), and photos within {MATCH_DISTANCE} are listed, most similar first,
at most `limit` (default 20, at most {LIMIT_MAX}). A photo with too little structure to fingerprint reliably
(PDQ quality under 50: flat or nearly flat pictures) matches nothing. `first_seen_at` is when that photo was
first uploaded; `seen_in` lists the updates and reports carrying it that the caller may see. A photo stored
without a fingerprint (before fingerprints existed) matches nothing until the server, at its next start,
fingerprints it in the background. `404` for an unknown photo."""

OPENAPI = {
    "/api/v1/photos/{id}/similar": {
        "get": op("Photos seen before: stored photos that look like this one.", role="officer", schema=SIMILAR,
                  params=[path("id", "The photo id (64 hex digits)."),
                          query("limit", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX})],
                  description=DESCRIPTION),
    },
}
