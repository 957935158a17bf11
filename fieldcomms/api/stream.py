"""GET /api/v1/events/{tag}/stream: the live feed as Server-Sent Events (the work is in live.py)."""

from __future__ import annotations

import logging

from aiohttp import web

from ..domain.events import get_event
from ..live import STORE_REPLAY_MAX
from ..ratelimit import client_address, rate_key
from .common import ctx_of, int_param, viewer_of
from .spec import op, path, query

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def resume_point(request: web.Request) -> tuple[int | None, bool]:
    """(N, unreadable): the seq to resume after, from `Last-Event-ID` (as EventSource sends it) or `?since`.
    An unreadable Last-Event-ID is answered with `reset` rather than an error: EventSource would retry it
    forever. An unreadable `since` is the caller's mistake (422)."""
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        value = header.strip()
        # A seq has at most 19 digits; a longer number would be refused by int() itself past 4,300 digits.
        if value.isascii() and value.isdigit() and len(value) <= 19:
            return int(value), False
        return None, True
    return int_param(request, "since"), False


@routes.get("/api/v1/events/{tag}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    since, unreadable = resume_point(request)
    if request.method == "HEAD":  # the headers a stream would start with, and no stream
        return web.Response(headers={"Cache-Control": "no-cache, no-transform"}, content_type="text/event-stream")
    address = rate_key(client_address(request, ctx.settings.trusted_proxies))
    return await ctx.broker.serve(request, event["tag"], viewer_of(request), since, unreadable, address)


DESCRIPTION = f"""\
Server-Sent Events. The stream opens with `retry: 3000`. Each event's `event:` is what happened (`update`,
`update-retracted`, `rumour`, `zone`, `zone-deleted`, `position`, `alert`, `alert-overdue`, `decision`, or `reset`), `id:` is the change's
`seq`, and `data:` is one line of JSON: the item as the caller may see it (as its own GET returns it: a zone is a
GeoJSON Feature; a position is the latest point only, `{{officer, location, at, stale}}`, a few hundred bytes:
the track is at `GET /officers`).

Who receives what: the public, public data only (no token needed); officers, what they may see, alerts sent to
them, but no positions and no decisions; control, everything (a `decision` is a new decision log entry). The
access log never goes out on the stream. A retraction or deletion reaches everyone who could see the item,
as a tombstone (`{{id, event, seq, status: "retracted"}}`, `{{id, event, seq, deleted: true}}`, or, for a rumour
that leaves the public board, `{{id, event, seq, withdrawn: true}}`); whoever could not see it hears nothing.
A replay never shows an item's older version to a viewer who may no longer see the item. An alert is sent again, with its new state, each time a recipient acknowledges it
(control sees `acks`) or an officer walks into a live alert (`active_minutes`). `alert-overdue` (control only)
reports recipients who did not acknowledge within the alert's `ack_within_s`: `{{"id": <the alert>, "event",
"seq", "overdue": [{{"id", "callsign"}}]}}`, once per recipient; a replay from the store (an old gap) brings the
alert's newest state as `alert` instead, with `overdue: true` on those recipients.

Resuming: with `Last-Event-ID: N` (or `?since=N`; the header wins) the stream first replays every change after N
that the caller may see, in order, exactly once, then continues live with no gap. Recent changes are replayed
one by one (a ring of `sse_ring_size` changes per event); an older gap is replayed from the store, where each
changed item comes once, in its newest state. Event `reset` (`data: {{"reason", "last_seq"}}`, `id:` the seq the
stream continues from) means: reload the lists, then carry on. It is sent when N is ahead of this server
(another deployment, or data lost), when the Last-Event-ID is not a number, or when an old gap holds more than
{STORE_REPLAY_MAX:,} items. Without N the stream starts with live changes.

At most `sse_streams_per_user` streams are open at once for one user, and `sse_streams_per_address` for the
public from one client address (an IPv6 /64): beyond that `429` with `Retry-After`. Revoking a user, or changing
their role, ends their open streams at once. A replay is framed in slices, a piece ahead of what the client has
read; a replay not taken within 120 s ends the stream, and the client resumes from its Last-Event-ID. Replays take
turns, and a storm of reconnections is set up a few streams at a time, so other requests are answered meanwhile.

A comment `: keep-alive` is sent whenever the stream has been quiet for `sse_keepalive_s` (default 15 s). A
client that reads too slowly (more than `sse_buffer_bytes` unsent) is disconnected and resumes with its
Last-Event-ID; a slow client never delays the others. Streams end when the server shuts down; clients reconnect.
404 if the event does not exist. Browsers' EventSource cannot send an Authorization header: staff pages read
the stream with `fetch` and a bearer token."""

OPENAPI = {
    "/api/v1/events/{tag}/stream": {
        "get": {**op("The event's live feed (Server-Sent Events).", params=[
            path("tag"),
            query("since", {"type": "integer", "minimum": 0}, "Resume after this seq (as Last-Event-ID)."),
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "Resume after this seq; sent by EventSource when it reconnects."},
        ], content_type="text/event-stream", schema={"type": "string"}, description=DESCRIPTION)},
    },
}
