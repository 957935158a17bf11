"""Reports from the public: anyone may send one (rate-limited per client address); officers read them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from ..auth import require
from ..domain import reports as domain
from ..domain.events import open_event
from ..errors import NotFound, TooManyRequests, ValidationFailed
from ..idempotency import Slot, fingerprint
from ..model import now_str
from ..ratelimit import client_address, rate_key, wide_rate_key
from ..services import Services
from .common import Page, ctx_of, json_response, key_from, parse_json, read_json, viewer_of
from .photos import PART_OVERHEAD, Upload, intake, open_multipart, parts, read_part, store_photo
from .spec import PAGING, list_of, op, path, ref

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
BACKLOG_RETRY_S = 300


async def _take(ctx: Services, address: str) -> float:
    """Seconds to wait before this address may report again (0: go ahead): its own bucket (an IPv4 address or
    an IPv6 /64; shared by every worker on PostgreSQL), then, for IPv6, its /48's (`report_wide_limiter`: a site
    spreading a flood over its /64s)."""
    wait: float = await ctx.take_report_token(rate_key(address))
    wide_key = wide_rate_key(address)
    if wait == 0 and wide_key is not None:
        wait = ctx.report_wide_limiter.take(wide_key)
    return wait


MAX_REPORT_PHOTOS = 2  # API.md: a report from the public carries at most two photos

@routes.post("/api/v1/events/{tag}/reports")
async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    event = open_event(ctx, request.match_info["tag"])
    # The limit is taken before the body is read: a flood of bad requests costs the sender as much as good ones.
    address = client_address(request, ctx.settings.trusted_proxies)
    client = rate_key(address)
    wait = await _take(ctx, address)
    if wait > 0:
        raise TooManyRequests(f"Too many reports from your address; try again in {wait:.0f} s.", wait)
    cap = ctx.settings.max_unreviewed_reports
    waiting = ctx.report_backlog.unreviewed(event["tag"])
    if waiting >= cap:
        if ctx.report_backlog.should_signal(event["tag"], time.monotonic()):
            log.warning("event %s: %d unreviewed reports; refusing more", event["tag"], waiting)
            ctx.broker.signal(event["tag"], "reports-backlog", {
                "event": event["tag"], "unreviewed": waiting, "max_unreviewed_reports": cap, "refusing": True})
        raise TooManyRequests(f"This event has {waiting} unreviewed reports waiting for an officer; no more are "
                              "taken until they are read. Try again later.", BACKLOG_RETRY_S)
    if request.content_type.startswith("multipart/"):
        body, uploads = await read_report_multipart(request)
    else:
        body, uploads = await read_json(request), []
    inp = domain.validate_report(body, ctx.settings.max_text_chars)
    viewer = viewer_of(request)
    caller = viewer.id if viewer is not None else f"public:{client}"

    async def create_it(slot: Slot | None) -> tuple[int, dict[str, str]]:
        open_event(ctx, event["tag"])
        # Files and records first (as for officers' photos), then the report that refers to them.
        photos = [await store_photo(ctx, None, upload) for upload in uploads]
        return 202, await domain.create_report(ctx, event["tag"], inp, slot, photos)

    fp = fingerprint("report", event["tag"], body, [u.id for u in uploads])
    status, out = await ctx.idempotency.run(caller, key_from(request), fp, create_it)
    return json_response(out, status=status)


async def read_report_multipart(request: web.Request) -> tuple[Any, list[Upload]]:
    """The multipart form: one part `report` (the JSON) and up to MAX_REPORT_PHOTOS parts `photo`, each taken
    through the same intake as officers' photos (type check, pixel limit, orientation, metadata stripped)."""
    ctx = ctx_of(request)
    settings = ctx.settings
    reader = await open_multipart(
        request, MAX_REPORT_PHOTOS * (settings.max_photo_bytes + PART_OVERHEAD) + settings.max_body_bytes)
    body: Any = None
    uploads: list[Upload] = []
    photo_parts = 0
    async for name, part in parts(reader):
        if name == "report":
            if body is not None:
                raise ValidationFailed.one("report", "send one part named report")
            body = parse_json(await read_part(part, settings.max_body_bytes, "report part"), field="report")
            if not isinstance(body, dict):
                raise ValidationFailed.one("report", "must be a JSON object")
        elif name == "photo":
            photo_parts += 1
            if photo_parts > MAX_REPORT_PHOTOS:
                raise ValidationFailed.one("photo", f"at most {MAX_REPORT_PHOTOS} photos a report")
            uploads.append(await intake(ctx, await read_part(part, settings.max_photo_bytes, "photo")))
        else:
            raise ValidationFailed.one(name, "unknown part; send report and photo parts only")
    if body is None:
        raise ValidationFailed.one("report", "a part named report with the report's JSON is required")
    return body, uploads
@routes.post("/api/v1/reports/{id}/dismiss")
async def dismiss(request: web.Request) -> web.Response:
    """An officer has read the report and it needs nothing more: it no longer counts as unreviewed."""
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    report = ctx.store.get("reports", request.match_info["id"])
    if ctx.view("reports", report, viewer) is None or report is None:
        raise NotFound("No such report.")
    if not report.get("dismissed"):
        report = await ctx.store.append("report", "reports", {
            **report, "dismissed": True, "dismissed_by": {"id": viewer.id, "callsign": viewer.callsign},
            "dismissed_at": now_str()})
    rumours = [r for r in ctx.store.newest_first("rumours", report["event"]) if r is not None]
    shown = ctx.view("reports", report, viewer) or {}
    matches = await asyncio.to_thread(ctx.matcher.matches, report["text"], rumours)  # as the list does
    return json_response({**shown, "matches": matches})


@routes.get("/api/v1/events/{tag}/reports")
async def list_reports(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    page = Page(request)
    return json_response(await domain.list_reports(ctx, request.match_info["tag"], viewer, since=page.since,
                                             before=page.before, limit=page.limit))


CREATE_DESCRIPTION = """\
No token needed. `text` 1 to 2,000 characters, `contact` at most 200 (shown to control only): an e-mail address
(the verdict is mailed to it once a rumour this report is counted for is answered) or empty, `422` naming
`contact` otherwise. `location` optional. Also `multipart/form-data`: a part `report` with the JSON and up to two
parts `photo` (JPEG, PNG, WebP; the same checks and metadata stripping as officers' photos, `415`/`422`/`413`
alike); such photos are never public: officers see them in the report's `photos`.
Rate-limited per client address with a token bucket (`report_burst` at once, then `report_rate_per_minute`);
beyond it `429` with `Retry-After` (seconds). IPv6 clients are limited per /64. The client address is the
connection's peer; `X-Forwarded-For` is believed only when that peer is listed in `trusted_proxies`, and then the
right-most address in it that is not itself a trusted proxy is the client. Every attempt spends from the bucket,
including invalid ones and idempotent repeats. The public's `Idempotency-Key`s are scoped to the client address.
The address is not stored with the report. `409` if the event is closed.

Only `application/json` bodies are taken (`415` otherwise): a page on another site cannot make its visitors'
browsers file reports (`text/plain` and form bodies need no CORS preflight). An IPv6 /48 as a whole may send
8 times what one /64 may. An event holds at most `max_unreviewed_reports` reports that no officer has counted as
a sighting or dismissed (`POST /api/v1/reports/{id}/dismiss`); beyond that `429` (`Retry-After: 300`), and the
control room's stream gets `event: reports-backlog` (`{"event", "unreviewed", "max_unreviewed_reports",
"refusing": true}`, no `id:`), at most every 10 s."""

LIST_DESCRIPTION = """\
Newest first, paged like every list. Each report carries `matches`: up to three rumours of the same event (any
status) whose claim it repeats, best first, with a score from 0 to 1 at or above the configured `match_threshold`
(0 in the configuration means the tuned default), and `counted_for`: the rumours it was counted as a sighting of.
`contact` is shown to control only."""

REPORT_ACCEPTED = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}

OPENAPI = {
    "/api/v1/events/{tag}/reports": {
        "post": op("Report something from the public, e.g. a rumour you have heard.", ok="202",
                   schema=REPORT_ACCEPTED, params=[path("tag")], idempotent=True, description=CREATE_DESCRIPTION,
                   request_content={
                       "application/json": {"schema": ref("ReportCreate")},
                       "multipart/form-data": {"schema": {
                           "type": "object", "required": ["report"], "additionalProperties": False,
                           "properties": {"report": {"type": "string", "contentMediaType": "application/json",
                                                     "description": "the ReportCreate JSON"},
                                          "photo": {"type": "array", "maxItems": MAX_REPORT_PHOTOS,
                                                    "items": {"type": "string", "format": "binary"}}}},
                           "encoding": {"report": {"contentType": "application/json"}}}}),
        "get": op("Reports from the public, with the rumours they resemble.", role="officer",
                  schema=list_of(ref("Report")), params=[path("tag"), *PAGING], description=LIST_DESCRIPTION),
    },
    "/api/v1/reports/{id}/dismiss": {
        "post": op("Mark a report as read and needing nothing more.", role="officer", schema=ref("Report"),
                   params=[path("id")],
                   description="The report gets `dismissed: true`, `dismissed_by` and `dismissed_at`, and no longer "
                               "counts towards the event's `max_unreviewed_reports`. Dismissing twice changes "
                               "nothing. 404 for an unknown report."),
    },
}
