"""Web Push for handsets: the VAPID key, and officers' push subscriptions."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain.subscriptions import MAX_PER_OFFICER, SUBSCRIPTIONS, validate_subscription
from ..errors import ServiceUnavailable
from .common import ctx_of, json_response, location, read_json
from .spec import op, path, ref

routes = web.RouteTableDef()


@routes.get("/api/v1/push/key")
async def key(request: web.Request) -> web.Response:
    require(request, "officer")
    push = ctx_of(request).push
    if not push.public_key:
        raise ServiceUnavailable("Push is not running yet; try again in a moment.")
    return json_response({"public_key": push.public_key})


@routes.post("/api/v1/push/subscriptions")
async def subscribe(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    allow_insecure = ctx.settings.push_allow_insecure_endpoints
    inp = validate_subscription(await read_json(request), allow_insecure)
    stored = await ctx.subscriptions.subscribe(viewer, inp, allow_insecure)
    seen = ctx.view(SUBSCRIPTIONS, stored, viewer) or {}
    return json_response({"id": seen["id"], "endpoint": seen["endpoint"]}, status=201,
                         headers=location(201, "/api/v1/push/subscriptions/{id}", seen))


@routes.delete("/api/v1/push/subscriptions/{id}")
async def unsubscribe(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    await ctx_of(request).subscriptions.unsubscribe(viewer, request.match_info["id"])
    return web.Response(status=204)


ENDPOINT_RULE = ("The endpoint must be an `https://` URL whose host resolves only to public addresses (not "
                 "loopback, private, link-local, multicast, shared or reserved ones), so that the server cannot be "
                 "used to reach hosts inside its own network; the check is made again at every send, on the "
                 "addresses connected to, since DNS can change. `push_allow_insecure_endpoints` lifts it (tests).")

OPENAPI = {
    "/api/v1/push/key": {
        "get": op("The VAPID public key handsets subscribe with.", role="officer", schema=ref("PushKey"),
                  description="The uncompressed P-256 point, base64url without padding, as "
                              "`PushManager.subscribe({applicationServerKey})` takes it. Made once, at the "
                              "first start, and kept in the data directory (`vapid_private.pem`, mode 0600): "
                              "a new key would silently end every subscription."),
    },
    "/api/v1/push/subscriptions": {
        "post": op("Subscribe the caller's handset to pushes.", role="officer", ok="201",
                   body=ref("PushSubscriptionIn"), schema=ref("PushSubscription"),
                   description="The body is the browser's `PushSubscription.toJSON()`. The same endpoint "
                               "posted again is the same subscription (the same `id`; its keys are updated, "
                               "and its owner is whoever posted it last). An officer has at most "
                               f"{MAX_PER_OFFICER} live subscriptions: a new one beyond that ends their oldest. "
                               "Each new recipient of an alert gets "
                               "one push on each of their subscriptions: `TTL: 600`, `Urgency: high`, the "
                               "payload encrypted as RFC 8291 `aes128gcm`, VAPID (RFC 8292) with `aud` the "
                               "endpoint's origin and `sub` the setting `push_contact`; the decrypted payload "
                               "is `{type: \"alert\", id, event, text, location, radius_m, sent_at}`. A "
                               "`404` or `410` from the push service ends the subscription. " + ENDPOINT_RULE
                               + " 422 names the field: `endpoint`, `keys`, `keys.p256dh` (a P-256 point, 65 "
                               "bytes), `keys.auth` (16 bytes)."),
    },
    "/api/v1/push/subscriptions/{id}": {
        "delete": op("End one of the caller's subscriptions.", role="officer", ok="204", params=[path("id")],
                     description="Its owner only: 404 for anyone else, and for one already ended."),
    },
}
