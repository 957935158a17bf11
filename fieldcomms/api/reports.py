"""Reports from the public: anyone may send one (rate-limited per client address); officers read them."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..domain import rumours as domain
from ..domain.events import open_event
from ..errors import TooManyRequests
from ..idempotency import Slot, fingerprint
from ..ratelimit import client_address, rate_key
from .common import Page, ctx_of, json_response, key_from, read_json, viewer_of
from .spec import PAGING, list_of, op, path, ref

routes = web.RouteTableDef()

@routes.post("/api/v1/events/{tag}/reports")
async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = open_event(ctx, request.match_info["tag"])
    # The limit is taken before the body is read: a flood of bad requests costs the sender as much as good ones.
    client = rate_key(client_address(request, ctx.settings.trusted_proxies))
    wait = await ctx.take_report_token(client)
    if wait > 0:
        raise TooManyRequests(f"Too many reports from your address; try again in {wait:.0f} s.", wait)
    body = await read_json(request)
    inp = domain.validate_report(body, ctx.settings.max_text_chars)
    viewer = viewer_of(request)
    caller = viewer.id if viewer is not None else f"public:{client}"

    async def create_it(slot: Slot | None) -> tuple[int, dict[str, str]]:
        return 202, await domain.create_report(ctx, event["tag"], inp, slot)

    status, out = await ctx.idempotency.run(caller, key_from(request),
                                                          fingerprint("report", event["tag"], body), create_it)
    return json_response(out, status=status)


@routes.get("/api/v1/events/{tag}/reports")
async def list_reports(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    page = Page(request)
    return json_response(await domain.list_reports(ctx, request.match_info["tag"], viewer, since=page.since,
                                             before=page.before, limit=page.limit))


CREATE_DESCRIPTION = """\
No token needed. `text` 1 to 2,000 characters, `contact` at most 200 (shown to control only), `location` optional.
Rate-limited per client address with a token bucket (`report_burst` at once, then `report_rate_per_minute`);
beyond it `429` with `Retry-After` (seconds). IPv6 clients are limited per /64. The client address is the
connection's peer; `X-Forwarded-For` is believed only when that peer is listed in `trusted_proxies`, and then the
right-most address in it that is not itself a trusted proxy is the client. Every attempt spends from the bucket,
including invalid ones and idempotent repeats. The public's `Idempotency-Key`s are scoped to the client address.
The address is not stored with the report. `409` if the event is closed."""

LIST_DESCRIPTION = """\
Newest first, paged like every list. Each report carries `matches`: up to three rumours of the same event (any
status) whose claim it repeats, best first, with a score from 0 to 1 at or above the configured `match_threshold`
(0 in the configuration means the tuned default), and `counted_for`: the rumours it was counted as a sighting of.
`contact` is shown to control only."""

REPORT_ACCEPTED = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}

OPENAPI = {
    "/api/v1/events/{tag}/reports": {
        "post": op("Report something from the public, e.g. a rumour you have heard.", ok="202",
                   schema=REPORT_ACCEPTED, body=ref("ReportCreate"), params=[path("tag")], idempotent=True,
                   description=CREATE_DESCRIPTION),
        "get": op("Reports from the public, with the rumours they resemble.", role="officer",
                  schema=list_of(ref("Report")), params=[path("tag"), *PAGING], description=LIST_DESCRIPTION),
    },
}
