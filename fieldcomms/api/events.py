from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import require
from ..domain.events import create_event, get_event, patch_event
from ..idempotency import Slot, fingerprint
from .common import ctx_of, json_response, key_from, location, read_json, viewer_of
from .spec import list_of, op, path, ref

routes = web.RouteTableDef()


@routes.post("/api/v1/events")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    body = await read_json(request)
    key = key_from(request)

    async def create_it(slot: Slot | None) -> tuple[int, dict[str, Any]]:
        event = await create_event(ctx, body, slot)
        return 201, ctx.view("events", event, viewer) or {}

    status, out = await ctx.idempotency.run(viewer.id, key, fingerprint("events", body), create_it)
    return json_response(out, status=status, headers=location(status, "/api/v1/events/{tag}", out))


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    viewer = viewer_of(request)
    events = sorted(ctx.store.all("events"), key=lambda e: e["seq"], reverse=True)
    items = [v for e in events if (v := ctx.view("events", e, viewer)) is not None]
    return json_response({"items": items, "last_seq": ctx.store.last_seq})


@routes.get("/api/v1/events/{tag}")
async def get(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return json_response(ctx.view("events", get_event(ctx, request.match_info["tag"]), viewer_of(request)))


@routes.patch("/api/v1/events/{tag}")
async def patch(request: web.Request) -> web.Response:
    require(request, "control")
    ctx = ctx_of(request)
    event = await patch_event(ctx, request.match_info["tag"], await read_json(request))
    return json_response(ctx.view("events", event, viewer_of(request)))


OPENAPI = {
    "/api/v1/events": {
        "post": op("Create an event (one operation, named by its hashtag).", role="control", ok="201",
                   schema=ref("Event"), body=ref("EventCreate"), description="409 if the tag exists.",
                   idempotent=True),
        "get": op("List events, newest first.", schema=list_of(ref("Event"))),
    },
    "/api/v1/events/{tag}": {
        "get": op("One event.", schema=ref("Event"), params=[path("tag", "The hashtag, with or without #.")]),
        "patch": op("Change an event's title, description, times or status.", role="control", schema=ref("Event"),
                    body=ref("EventPatch"), params=[path("tag")],
                    description="A `closed` event refuses new updates, rumours, reports and positions with 409."),
    },
}
