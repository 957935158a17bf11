"""Alerts from the control room to the officers near a place: POST /alerts, POST /alerts/{id}/ack, GET."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain import alerts as domain
from ..domain.events import get_event, open_event
from ..idempotency import Slot, fingerprint
from .common import Page, ctx_of, idempotent_create, json_response, read_json
from .spec import PAGING, list_of, op, path, ref

routes = web.RouteTableDef()


@routes.post("/api/v1/events/{tag}/alerts")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    body = await read_json(request)
    inp = domain.validate_alert(body, ctx.settings.max_text_chars)

    async def create_it(slot: Slot | None) -> dict[str, object]:
        open_event(ctx, event["tag"])  # inside: a retry of an alert sent before the event closed gets its answer
        return await domain.store_alert(ctx, domain.build_alert(ctx, event, viewer, inp), viewer, slot)

    return await idempotent_create(request, viewer.id, fingerprint(event["tag"], body), create_it,
                                   location_of="/api/v1/alerts/{id}")


@routes.get("/api/v1/events/{tag}/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    # Officers get the alerts sent to them, control every alert: the visibility rule decides.
    return json_response(Page(request).collect(ctx, "alerts", event["tag"], viewer))


@routes.post("/api/v1/alerts/{id}/ack")
async def ack(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    await domain.acknowledge(ctx_of(request), request.match_info["id"], viewer)
    return web.Response(status=204)


@routes.get("/api/v1/alerts/{id}")
async def get(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    return json_response(domain.visible_alert(ctx_of(request), request.match_info["id"], viewer))


OPENAPI = {
    "/api/v1/events/{tag}/alerts": {
        "post": op("Alert the officers near a place.", role="control", ok="201", schema=ref("Alert"),
                   body=ref("AlertCreate"), params=[path("tag")], idempotent=True,
                   description="Recipients are the officers whose latest position is fresh (reported within "
                               "`stale_after_minutes`) and within `radius_m` (at most 50 km) of `location`, "
                               "measured along the WGS 84 ellipsoid, nearest first. With `active_minutes` (0 to "
                               "1440, default 0: the list is fixed when the alert is sent) the alert stays live "
                               "on its area until `active_until`: an officer whose newly reported fresh position "
                               "lies inside the circle, and who is not a recipient yet, becomes one at once, "
                               "with `added_at` on their entry. With `ack_within_s` (30 to 3600) a recipient who "
                               "has not acknowledged that long after becoming one is reported to control once: "
                               "the stream's `alert-overdue`, and `overdue: true` on their entry. What is due is "
                               "computed from the stored alert, so a restart loses no deadline (one that passed "
                               "while the server was down is reported as soon as it is up). Out of range: 422 "
                               "naming the field. The answer is the whole alert (a superset of `{id, "
                               "recipients}`). The alert goes out on the stream as an `alert` event to its "
                               "recipients and to control, again each time a recipient joins or acknowledges, "
                               "and as a Web Push to each new recipient's subscriptions (see "
                               "`/api/v1/push/subscriptions`). 409 if the event is closed."),
        "get": op("Alerts of the event (an extension): control sees every alert with its acks, an officer "
                  "the alerts sent to them.", role="officer", schema=list_of(ref("Alert")),
                  params=[path("tag"), *PAGING],
                  description="So that a control room opened later, or a handset that was offline, can show "
                              "the alerts already sent. Paged like every list."),
    },
    "/api/v1/alerts/{id}/ack": {
        "post": op("Acknowledge an alert.", role="officer", ok="204", params=[path("id")],
                   description="Recipients only: 404 for an officer the alert was not sent to (it cannot see "
                               "it), 403 for control staff who can see it but were not sent it. Acknowledging "
                               "twice counts once. The recipient's entry gets `acked_at` (a late "
                               "acknowledgement keeps `overdue: true` beside it)."),
    },
    "/api/v1/alerts/{id}": {
        "get": op("One alert; control sees who acknowledged it (`acks`) and who is overdue.", role="officer",
                  schema=ref("Alert"), params=[path("id")],
                  description="Control sees the whole alert: `acks`, and on each recipient `acked_at` or "
                              "`overdue: true` (with `overdue_at`), and `added_at` for those who walked into a "
                              "live alert. A recipient sees it without `acks`, and of the others' entries only "
                              "`id`, `callsign` and `added_at`; anyone else gets 404."),
    },
}
