"""Rumours and rebuttals: thin handlers over `fieldcomms.domain.rumours`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import require
from ..domain import answers
from ..domain import rumours as domain
from ..domain.events import open_event
from ..idempotency import fingerprint
from ..rumours import STATUSES, URGENCY_DESCRIPTION, VERDICTS
from .common import (
    Page,
    choice_param,
    ctx_of,
    idempotent_create,
    json_response,
    parse_json,
    read_body,
    read_json,
    viewer_of,
)
from .spec import PAGING, list_of, op, path, query, ref

routes = web.RouteTableDef()

RUMOUR_URL = "/api/v1/rumours/{id}"  # Location of a rumour made or changed by a 201 (sightings, rebuttals)

Doc = dict[str, Any]


@routes.post("/api/v1/events/{tag}/rumours")
async def create(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    event = open_event(ctx, request.match_info["tag"])
    body = await read_json(request)
    inp = domain.validate_rumour_create(body, ctx.settings.max_text_chars)
    return await idempotent_create(request, viewer.id, fingerprint("rumour", event["tag"], body),
                                   lambda slot: domain.create_rumour(ctx, event["tag"], viewer, inp, slot),
                                   location_of=RUMOUR_URL)


@routes.get("/api/v1/events/{tag}/rumours")
async def list_rumours(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    page = Page(request)
    status = choice_param(request, "status", STATUSES)
    return json_response(domain.list_rumours(ctx, request.match_info["tag"], viewer_of(request), status=status,
                                             since=page.since, before=page.before, limit=page.limit))


@routes.get("/api/v1/rumours/{id}")
async def get(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    viewer = viewer_of(request)
    return json_response(domain.render(ctx, domain.visible_rumour(ctx, request.match_info["id"], viewer), viewer))


@routes.post("/api/v1/rumours/{id}/sightings")
async def add_sighting(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    rumour_id = request.match_info["id"]
    body = await read_json(request)
    inp = domain.validate_sighting(body, ctx.settings.max_text_chars)
    return await idempotent_create(request, viewer.id, fingerprint("sighting", rumour_id, body),
                                   lambda slot: domain.add_sighting(ctx, rumour_id, viewer, inp, slot),
                                   location_of=RUMOUR_URL)


@routes.post("/api/v1/rumours/{id}/rebuttals")
async def add_rebuttal(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    rumour_id = request.match_info["id"]
    body = await read_json(request)
    settings = ctx.settings
    inp = domain.validate_rebuttal(body, settings.max_text_chars, settings.max_photos_per_update)
    return await idempotent_create(request, viewer.id, fingerprint("rebuttal", rumour_id, body),
                                   lambda slot: domain.add_rebuttal(ctx, rumour_id, viewer, inp, slot),
                                   location_of=RUMOUR_URL)


@routes.post("/api/v1/rumours/{id}/answer/approve")
async def approve_answer(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    rumour_id = request.match_info["id"]
    domain.visible_rumour(ctx, rumour_id, viewer)
    raw = await read_body(request, ctx.settings.max_body_bytes)
    # The body is optional: `{}` or nothing approves an answer with no flagged check.
    confirm = answers.validate_approve(parse_json(raw) if raw.strip() else None)
    return json_response(await answers.approve(ctx, rumour_id, viewer, confirm))


@routes.post("/api/v1/rumours/{id}/answer/reject")
async def reject_answer(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    rumour_id = request.match_info["id"]
    domain.visible_rumour(ctx, rumour_id, viewer)
    reason = answers.validate_reject(await read_json(request))
    return json_response(await answers.reject(ctx, rumour_id, viewer, reason))


@routes.patch("/api/v1/rumours/{id}")
async def patch(request: web.Request) -> web.Response:
    viewer = require(request, "control")
    ctx = ctx_of(request)
    rumour_id = request.match_info["id"]
    domain.visible_rumour(ctx, rumour_id, viewer)  # 404 before 422, like every call on a missing item
    status = domain.validate_status_patch(await read_json(request))
    return json_response(await domain.set_status(ctx, rumour_id, viewer, status))


VISIBILITY = ("Officers see every rumour. The public sees only rumours with a published verdict (a verdict status "
              "and at least one rebuttal whose update is still public and active), without `sources`, `location`, "
              "`history[].by` and `rebuttals[].by`; any other rumour is 404 to the public.")

LIST_DESCRIPTION = f"""\
Without `since`: the most urgent first (`limit` applies after sorting; `before=<seq>` keeps only rumours last
changed before that seq). With `since`: rumours changed after that seq, oldest first, like every list.
`status` filters by status. {VISIBILITY}

{URGENCY_DESCRIPTION}"""

SIGHTING_DESCRIPTION = """\
Either the details of where it was seen (`text`, `url` (http or https), `location`, `seen_at`; all optional: a bare
`{}` counts one sighting seen now), or `{"report_id"}` alone: a report from the public of this rumour's event
becomes the sighting (its text, location and received time), and the report's `counted_for` lists this rumour.
A report counts once per rumour: `409` the second time. `seen_at` in the future counts as now. `409` if the event
is closed."""

REBUTTAL_DESCRIPTION = f"""\
`{{"verdict", "update_id"}}` links an existing update, which must be a **public, active** update of the rumour's
event (`422` naming `update_id` otherwise); `{{"verdict", "text", "location"?, "photos"?}}` first posts a new
public update of kind `info` (photos uploaded with `POST /api/v1/photos`), then links it. The two forms cannot be
mixed. `verdict` is one of {", ".join(VERDICTS)}; the rumour's status becomes it. Linking the same update twice is
`409`. The rebuttal's `url` is the update's place on the public event page
(`{{base_url}}/events/{{tag}}#update-{{update_id}}`). Retracting the update later unlinks the rebuttal: the rumour
falls back to the previous rebuttal's verdict, or to `investigating` when none is left, which takes it off the
public board. `409` if the event is closed.

**Approval.** In an event with `answer_approval: "second-control"` the answer is proposed, not published: the
`201` rumour carries `pending_answer` `{{verdict, update_id, proposed_by, proposed_at, checks}}` while its status,
rebuttals and public copy stay as they were (nothing of it reaches a public list, page, feed, CAP document,
ClaimReview, ETag or the public stream; staff streams get the rumour as a `rumour` event). The second form's
update is posted `internal` and made public only on approval. The body may carry `checks`
`{{names_person, mentions_minor, active_proceedings}}` (booleans, absent = false); any true check makes approval
ask for `confirm_legal`. One answer waits per rumour: `409` while one does. In events without approval `checks`
is accepted and not kept."""

APPROVE_DESCRIPTION = """A control user other than the proposer (`403` for the proposer) publishes the pending answer exactly as a rebuttal
without approval is published: the second form's update becomes public, the status becomes the verdict, the
rumour joins the public board and the stream. When the proposer flagged any check, the body must carry
`"confirm_legal": true` (`422` naming `confirm_legal`). `409` when no answer is pending, or when its update was
retracted meanwhile (reject it instead). The body may be empty. Recorded in the rumour's `history` (`action:
"answer-approved"`, with `by`, seen by staff only) and in the access log. Replies to reporters are queued as for
any published verdict. Allowed on a closed event."""

REJECT_DESCRIPTION = """Control (the proposer included: a proposal can be withdrawn) drops the pending answer with a `reason` (1 to 500
characters); a second-form update stays internal. Nothing public changes. Recorded in the rumour's `history`
(`action: "answer-rejected"`, with `by` and `reason`, seen by staff only) and in the access log. `409` when no
answer is pending."""

PATCH_DESCRIPTION = """\
Status rules: nothing returns to `unverified` (`409`); `investigating` may be set from any status (from a
published verdict it withdraws the answer from the public board, keeping the rebuttals); a verdict may be set
from any status, but where rebuttals exist it must be the latest rebuttal's verdict (`409` otherwise: a published
answer changes only through a new rebuttal); a verdict without a rebuttal publishes nothing. Setting the current
status changes nothing. Every change appends to `history`. Allowed on a closed event."""

RUMOUR = ref("Rumour")
PATCH_BODY = {"type": "object", "required": ["status"], "additionalProperties": False,
              "properties": {"status": {"enum": list(STATUSES)}}}

OPENAPI = {
    "/api/v1/events/{tag}/rumours": {
        "post": op("Log a rumour.", role="officer", ok="201", schema=RUMOUR, body=ref("RumourCreate"),
                   params=[path("tag")], idempotent=True,
                   description="It starts `unverified`, seen once (`source.seen_at`, or now). `source` may also "
                               "carry `location` (an extension). `claim` is 1 to 500 characters. `409` if the "
                               "event is closed."),
        "get": op("List rumours, most urgent first.", schema=list_of(RUMOUR), description=LIST_DESCRIPTION,
                  params=[path("tag"), *PAGING, query("status", {"type": "string", "enum": list(STATUSES)})]),
    },
    "/api/v1/rumours/{id}": {
        "get": op("One rumour.", schema=RUMOUR, params=[path("id")], description=VISIBILITY),
        "patch": op("Change a rumour's status.", role="control", schema=RUMOUR, body=PATCH_BODY,
                    params=[path("id")], description=PATCH_DESCRIPTION),
    },
    "/api/v1/rumours/{id}/sightings": {
        "post": op("Count a sighting of a rumour.", role="officer", ok="201", schema=RUMOUR, body=ref("Sighting"),
                   params=[path("id")], idempotent=True, description=SIGHTING_DESCRIPTION),
    },
    "/api/v1/rumours/{id}/answer/approve": {
        "post": op("Approve a pending answer (a second control user).", role="control", schema=RUMOUR,
                   body={"type": "object", "additionalProperties": False,
                         "properties": {"confirm_legal": {"type": "boolean"}}},
                   params=[path("id")], description=APPROVE_DESCRIPTION),
    },
    "/api/v1/rumours/{id}/answer/reject": {
        "post": op("Reject a pending answer.", role="control", schema=RUMOUR,
                   body={"type": "object", "required": ["reason"], "additionalProperties": False,
                         "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}},
                   params=[path("id")], description=REJECT_DESCRIPTION),
    },
    "/api/v1/rumours/{id}/rebuttals": {
        "post": op("Answer a rumour with a public update.", role="officer", ok="201", schema=RUMOUR,
                   body=ref("Rebuttal"), params=[path("id")], idempotent=True, description=REBUTTAL_DESCRIPTION),
    },
}
