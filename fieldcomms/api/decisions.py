"""The decision log: POST/GET /api/v1/events/{tag}/decisions (control). Entries are never edited or deleted:
those methods answer 405, and a mistake is ruled through by a later entry (`supersedes`)."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain.decisions import DECISIONS, add_decision, validate_decision
from ..domain.events import get_event
from ..errors import NotFound
from ..idempotency import Slot, fingerprint
from .common import Page, ctx_of, idempotent_create, json_response, read_json
from .spec import PAGING, list_of, op, path

routes = web.RouteTableDef()


@routes.post("/api/v1/events/{tag}/decisions")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    body = await read_json(request)
    inp = validate_decision(body)

    async def create_it(slot: Slot | None) -> dict[str, object]:
        return await add_decision(ctx, event, viewer, inp, slot)

    return await idempotent_create(request, viewer.id, fingerprint("decision", event["tag"], body), create_it,
                                   location_of="/api/v1/decisions/{id}")


@routes.get("/api/v1/events/{tag}/decisions")
async def list_decisions(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    return json_response(Page(request).collect(ctx, DECISIONS, event["tag"], viewer))


@routes.get("/api/v1/decisions/{id}")
@routes.get("/api/v1/events/{tag}/decisions/{id}")
async def get_decision(request: web.Request) -> web.Response:
    """One entry (control). There is no PUT, PATCH or DELETE here: the router answers those with 405, as the
    log is never edited or erased."""
    viewer = require(request, "control")
    ctx = ctx_of(request)
    seen = ctx.visible(DECISIONS, request.match_info["id"], viewer)
    tag = request.match_info.get("tag")
    if seen is None or (tag is not None and seen.get("event") != get_event(ctx, tag)["tag"]):
        raise NotFound("No such decision.")
    return json_response(seen)


DECISION = {"type": "object",
            "required": ["id", "seq", "event", "at", "by", "decision", "rationale", "options", "supersedes",
                         "superseded_by"],
            "properties": {"id": {"type": "string"}, "seq": {"type": "integer"}, "event": {"type": "string"},
                           "at": {"type": "string", "format": "date-time"},
                           "by": {"type": "object", "properties": {"id": {"type": "string"},
                                                                   "callsign": {"type": "string"}}},
                           "decision": {"type": "string"}, "rationale": {"type": "string"},
                           "options": {"type": ["string", "null"]}, "supersedes": {"type": ["string", "null"]},
                           "superseded_by": {"type": ["string", "null"]}}}
DECISION_CREATE = {"type": "object", "required": ["decision", "rationale"], "additionalProperties": False,
                   "properties": {"decision": {"type": "string", "minLength": 1, "maxLength": 2000},
                                  "rationale": {"type": "string", "minLength": 1, "maxLength": 5000},
                                  "options": {"type": ["string", "null"], "maxLength": 5000,
                                              "description": "The options that were considered."},
                                  "supersedes": {"type": ["string", "null"],
                                                 "description": "The id of an earlier entry this one rules "
                                                                "through."}}}
ONE = [path("id")]
REFUSED = {"description": "Entries are never edited or deleted (405)."}

OPENAPI = {
    "/api/v1/events/{tag}/decisions": {
        "post": op("Log a decision (JESIP decision log).", role="control", operation_id="createDecision", ok="201", schema=DECISION,
                   body=DECISION_CREATE, params=[path("tag")], idempotent=True,
                   description="Timed and attributed by the server. With `supersedes`, the earlier entry gets "
                               "`superseded_by` in the same change; an entry already superseded cannot be "
                               "superseded again (409: supersede the newer one). The stream sends control a "
                               "`decision` event. Entries are never edited or deleted (405)."),
        "get": op("The decision log, newest change first.", role="control", operation_id="listDecisions", schema=list_of(DECISION),
                  params=[path("tag"), *PAGING],
                  description="Paged like every list; a superseded entry carries `superseded_by` (and, having "
                              "changed then, is listed by the seq of that change)."),
    },
    "/api/v1/events/{tag}/decisions/{id}": {
        "get": op("One decision log entry.", role="control", operation_id="getEventDecision", schema=DECISION, params=[path("tag"), *ONE],
                  description="PUT, PATCH and DELETE answer 405: entries are never edited or deleted."),
    },
    "/api/v1/decisions/{id}": {
        "get": op("One decision log entry.", role="control", operation_id="getDecision", schema=DECISION, params=ONE,
                  description="PUT, PATCH and DELETE answer 405: entries are never edited or deleted."),
    },
}

