"""Evidence routes: original photos (with a reason), the access log, the signing key, the evidence bundle and
the purge. The work is in fieldcomms/evidence/ and domain/{audit,purge}.py; these handlers stay thin."""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiohttp import hdrs, web

from ..auth import require
from ..domain.audit import REASON_MAX, REASON_MIN, actor_of, record_access
from ..domain.events import get_event
from ..domain.purge import purge_event
from ..errors import Gone, NotFound, ValidationFailed
from ..evidence.auditlog import AUDIT
from ..evidence.exporter import ExportFailed, stream_export
from ..evidence.originals import extension
from ..media import is_photo_id
from ..model import Problems, check_unknown, normalise_tag, require_object, text_value
from ..visibility import Viewer
from .common import ctx_of, int_param, json_response, read_json, viewer_of
from .spec import list_of, op, path, query, ref

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def reason_from(value: Any, field: str = "reason") -> str:
    """A stated reason: 3 to 500 characters after trimming (422 otherwise)."""
    p = Problems()
    text = text_value(value, p, field, max_chars=REASON_MAX, min_chars=REASON_MIN)
    if value is None:
        p.errors = [{"field": field, "message": f"is required: say why, in {REASON_MIN} to {REASON_MAX} characters"}]
    p.raise_if_any()
    assert text is not None
    return text


def _photo(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    ctx = ctx_of(request)
    photo_id = request.match_info["id"]
    seen = ctx.visible("photos", photo_id, viewer) if is_photo_id(photo_id) else None
    if seen is None:
        raise NotFound("No such photo.")
    return seen


@routes.get("/api/v1/photos/{id}")
async def get_photo(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    return json_response(_photo(request, viewer))


@routes.get("/api/v1/photos/{id}/original")
async def get_original(request: web.Request) -> web.StreamResponse:
    viewer = require(request, "control")
    reason = reason_from(request.query.get("reason"))
    ctx = ctx_of(request)
    seen = _photo(request, viewer)
    original = seen.get("original")
    if not original:
        raise NotFound("This photo's original was not kept (it was uploaded before originals were kept).")
    found = ctx.originals.open_path(seen["id"])
    if found is None or original.get("purged_at"):
        raise Gone(f"This photo's original was erased at {original.get('purged_at') or 'an unknown time'} "
                   "under the retention policy.")
    events = sorted({u["event"] for u in ctx.photo_updates(seen["id"]) if u.get("event")})
    if request.method != "HEAD":  # a HEAD discloses nothing but the headers
        await record_access(ctx, viewer, "photo.original.read", ("photo", seen["id"]),
                            events[0] if len(events) == 1 else None, reason)
    digest = base64.b64encode(bytes.fromhex(original["sha256"])).decode()
    name = f"{seen['id']}.{extension(original.get('content_type', ''))}"
    # Streamed from disk (sendfile where it can); never cached anywhere on the way.
    return web.FileResponse(found, headers={
        hdrs.CONTENT_TYPE: original.get("content_type") or "application/octet-stream",
        hdrs.CONTENT_DISPOSITION: f'attachment; filename="{name}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        hdrs.CACHE_CONTROL: "private, no-store",
        "X-Content-Type-Options": "nosniff",
    })


@routes.get("/api/v1/audit")
async def list_audit(request: web.Request) -> web.Response:
    require(request, "admin")
    ctx = ctx_of(request)
    viewer = viewer_of(request)
    since = int_param(request, "since")
    before = int_param(request, "before", lo=1)
    limit = int_param(request, "limit", default=50, lo=1, hi=500) or 50
    if since is not None and before is not None:
        raise ValidationFailed.one("before", "cannot be combined with since")
    action = request.query.get("action") or None
    if action is not None and not 1 <= len(action) <= 64:
        raise ValidationFailed.one("action", "must be 1 to 64 characters, e.g. photo.original.read")
    event = None
    if request.query.get("event"):
        p = Problems()
        event = normalise_tag(request.query["event"], p, "event")
        p.raise_if_any()
    ids = ctx.audit.oldest_first(since) if since is not None else ctx.audit.newest_first(before)
    items: list[dict[str, Any]] = []
    last_seq = ctx.store.last_seq
    for entry_id in ids:
        doc = ctx.store.get(AUDIT, entry_id)
        if doc is None or (action is not None and doc["action"] != action) or \
                (event is not None and doc.get("event") != event):
            continue
        seen = ctx.view(AUDIT, doc, viewer)
        if seen is not None:
            items.append(seen)
        if len(items) >= limit:
            if since is not None:
                last_seq = doc["seq"]
            break
    return json_response({"items": items, "last_seq": last_seq})


@routes.get("/api/v1/chain/key")
async def chain_key(request: web.Request) -> web.Response:
    key = ctx_of(request).signing_key
    if key is None:
        raise NotFound("The signing key is not loaded yet.")
    return json_response(key.describe(), headers={hdrs.CACHE_CONTROL: "public, max-age=300"})


@routes.get("/api/v1/events/{tag}/export")
async def export(request: web.Request) -> web.StreamResponse:
    viewer = require(request, "control")
    reason = reason_from(request.query.get("reason"))
    ctx = ctx_of(request)
    event = get_event(ctx, request.match_info["tag"])
    tag = event["tag"]
    if request.method == "HEAD":  # the headers an export would start with; nothing is built or logged
        return web.Response(content_type="application/zip", headers={hdrs.CACHE_CONTROL: "private, no-store"})
    entry = await record_access(ctx, viewer, "event.export", ("event", tag), tag, reason)
    chunks = stream_export(ctx.settings.data_path, tag, reason, actor_of(viewer), entry["seq"],
                           database_url=ctx.settings.database_url)
    # The first bytes come before the status is sent, so an export that cannot start is a proper 500.
    try:
        first = await chunks.__anext__()
    except (ExportFailed, StopAsyncIteration) as exc:
        log.error("export of #%s failed before it started: %s", tag, exc)
        raise
    stamp = entry["at"].replace(":", "").replace("-", "")
    resp = web.StreamResponse(headers={
        hdrs.CONTENT_TYPE: "application/zip",
        hdrs.CONTENT_DISPOSITION: f'attachment; filename="{tag}-evidence-{stamp}.zip"',
        hdrs.CACHE_CONTROL: "private, no-store",
    })
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        await resp.write(first)
        async for data in chunks:
            await resp.write(data)
    except ExportFailed as exc:
        # Too late for a status: the zip ends short, which any reader (and `fieldcomms verify`) detects.
        log.error("export of #%s failed while streaming: %s", tag, exc)
        if request.transport is not None:
            request.transport.abort()
        return resp
    finally:
        await chunks.aclose()
    await resp.write_eof()
    return resp


@routes.post("/api/v1/events/{tag}/purge")
async def purge(request: web.Request) -> web.Response:
    viewer = require(request, "admin")
    ctx = ctx_of(request)
    body = require_object(await read_json(request))
    p = Problems()
    check_unknown(body, ("reason",), p)
    p.raise_if_any()
    reason = reason_from(body.get("reason"))
    return json_response(await purge_event(ctx, request.match_info["tag"], viewer, reason))


REASON = query("reason", {"type": "string", "minLength": REASON_MIN, "maxLength": REASON_MAX},
               "Why: recorded in the access log.", required=True)
AUDIT_ENTRY = {"type": "object", "required": ["id", "seq", "at", "actor", "action", "target", "event", "reason"],
               "properties": {
                   "id": {"type": "string"}, "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                   "actor": {"type": "object", "properties": {"id": {"type": "string"}, "callsign": {"type": "string"},
                                                              "role": {"type": "string"}}},
                   "action": {"type": "string", "examples": ["photo.original.read", "event.export", "event.purge",
                                                             "user.create", "user.revoke", "answer.approve",
                                                             "answer.reject"]},
                   "target": {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}}},
                   "event": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}}}
BINARY = {"type": "string", "format": "binary"}

ORIGINAL_OP = op(
    "The photo exactly as uploaded (evidence).", role="control", operation_id="getPhotoOriginal", params=[path("id"), REASON],
    description="`Content-Disposition: attachment`, `Repr-Digest: sha-256=:<base64>:` (RFC 9530), "
                "`Cache-Control: private, no-store`; `Content-Type` is the type of the uploaded file. Every read is "
                "recorded in the access log (`photo.original.read`, with the reason) before the bytes are sent. "
                "422 without a reason (3 to 500 characters); 403 for officers; 404 for an unknown photo or one whose "
                "original was never kept; 410 once the retention policy erased it.")
ORIGINAL_OP["responses"]["200"]["content"] = {
    ctype: {"schema": BINARY} for ctype in ("image/jpeg", "image/png", "image/webp", "image/heic",
                                            "application/octet-stream")}
ORIGINAL_OP["responses"]["304"] = {"description": "Not modified (If-None-Match)."}
ORIGINAL_OP["responses"]["410"] = {"$ref": "#/components/responses/Problem"}

EXPORT_DESCRIPTION = """\
The event's evidence bundle, streamed as it is built (by a separate process that reads the data directory, so
the server keeps answering). Contents: `manifest.json` (`{"format": "fieldcomms-export/1", "event",
"generated_at", "generated_by", "reason", "chain_head": {"seq", "hash"}, "files": [{"path", "sha256", "bytes"}]}`,
plus `originals_not_included` listing photos whose originals were purged or never kept), `manifest.sig` (Ed25519
signature of manifest.json's bytes by the deployment key, see `GET /chain/key`), `signing-key.pub` (PEM),
`updates.geojson` (every update, internal and retracted ones included; updates without a location have a null
geometry), `updates.csv`, `zones.geojson` (deleted zones included, marked `deleted`), `event.kml` (KML 2.2:
updates, rumours and zones as placemarks), `rumours.json`, `reports.json`, `alerts.json`, `positions.csv` (every
recorded position the data directory holds), `decisions.json`, `audit.json` (this event's access log, this export
included) and `photos/<id>.<ext>` (the originals). Recorded in the access log (`event.export`) before it starts.
`fieldcomms verify FILE.zip --key KEY` checks a bundle offline. 422 without a reason (3 to 500 characters)."""

OPENAPI = {
    "/api/v1/photos/{id}": {
        "get": op("A photo's record (an extension).", role="officer", operation_id="getPhoto", schema=ref("Photo"), params=[path("id")],
                  description="Control also sees `original`: `{sha256, bytes, content_type}` of the uploaded bytes "
                              "as kept (and `purged_at` once the retention policy erased them)."),
    },
    "/api/v1/photos/{id}/original": {"get": ORIGINAL_OP},
    "/api/v1/audit": {
        "get": op("The access log: who consulted or disclosed what, and why.", role="admin", operation_id="listAccessLog",
                  schema=list_of(AUDIT_ENTRY),
                  params=[query("since", {"type": "integer", "minimum": 0}, "Entries after this seq, oldest first."),
                          query("before", {"type": "integer", "minimum": 1}, "Entries before this seq, newest first."),
                          query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                          query("action", {"type": "string"}, "Only this action, e.g. `event.export`."),
                          query("event", {"type": "string"}, "Only entries about this event (its tag).")],
                  description="Paged like every list. Entries are ordinary chained changes; no route changes or "
                              "removes one, and they never reach the public or the live stream. Actions: "
                              "`photo.original.read`, `event.export`, `event.purge`, `user.create`, `user.revoke`, "
                              "`answer.approve`, `answer.reject`. `actor` of a command-line action is "
                              "`{id: \"cli\", callsign: \"cli:<os user>\", role: \"admin\"}`; of the server's own "
                              "daily purge `{id: \"server\"}`."),
    },
    "/api/v1/chain/key": {
        "get": op("The deployment's public signing key (Ed25519), for checking evidence bundles.", operation_id="getSigningKey",
                  schema={"type": "object", "required": ["algorithm", "public_key", "pem", "fingerprint"],
                          "properties": {"algorithm": {"const": "Ed25519"},
                                         "public_key": {"type": "string", "description": "raw 32 bytes, base64url"},
                                         "pem": {"type": "string"}, "fingerprint": {"type": "string"}}},
                  description="Made at the deployment's first start and kept in the data directory "
                              "(`signing-key.pem`, mode 0600)."),
    },
    "/api/v1/events/{tag}/export": {
        "get": op("The event's evidence bundle (zip).", role="control", operation_id="exportEvent", params=[path("tag"), REASON],
                  content_type="application/zip", schema=BINARY, description=EXPORT_DESCRIPTION),
    },
    "/api/v1/events/{tag}/purge": {
        "post": op("Erase a closed event's personal data (retention).", role="admin", operation_id="purgeEvent", params=[path("tag")],
                   body={"type": "object", "required": ["reason"], "additionalProperties": False,
                         "properties": {"reason": {"type": "string", "minLength": REASON_MIN,
                                                   "maxLength": REASON_MAX}}},
                   schema={"type": "object", "properties": {
                       "event": {"type": "string"}, "purged_at": {"type": "string", "format": "date-time"},
                       "positions": {"type": "integer"}, "tracks": {"type": "integer"},
                       "report_contacts": {"type": "integer"},
                       "original_photos": {"type": "integer"}}},
                   description="Erases officers' positions and tracks, reports' contacts (and the address a reply "
                               "was mailed to) and the original photos of the event's updates and reports (unless "
                               "an update of another event not yet purged carries the same photo), from every file "
                               "of the data directory (on PostgreSQL: from every row of the current state and of "
                               "the changes table, and from every worker's memory); what was "
                               "erased leaves its digest, so `fieldcomms check` still passes. Updates, rumours, "
                               "decisions, alerts and the access log stay. The event gets `purged_at`. Recorded in "
                               "the access log (`event.purge`). 409 unless the event is closed, and once it was "
                               "purged. `fieldcomms purge --due` and the server itself (every "
                               "`purge_check_hours`) purge every closed event whose `retain_until` has passed."),
    },
}
