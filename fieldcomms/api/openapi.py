"""GET /api/v1/openapi.json: the OpenAPI 3.1 document, assembled from every api module's OPENAPI."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import Settings
from ..keys import SETTINGS
from .common import json_response
from .schemas import SCHEMAS
from .spec import op, resolve_limits

routes = web.RouteTableDef()

DESCRIPTION = """\
The fieldcomms HTTP contract (shared/API.md), as served. Extensions beyond that contract are listed here;
each operation's description states the rules API.md left open.

Extensions:
- Every list answers `{"items", "last_seq"}`; with `since`, `last_seq` is where to continue when a page was full.
- A request that sends an unknown or revoked token gets 401 even on public routes, so a handset learns at once.
- Failed token checks are rate-limited per client address (`auth_failures_per_minute`): 429 with `Retry-After`.
- `Idempotency-Key` answers are kept for `idempotency_ttl_hours` (default 48, never less than 24).
  `POST /api/v1/users` replays the first body with `"token": null` (only a hash of a token is kept).
- The stream tells whoever could see an item that it went: `update-retracted` and `zone-deleted` carry a tombstone
  (`id`, `event`, `seq`), and a rumour that leaves the public board is sent to the public as a `rumour` event
  with `{"id", "event", "seq", "withdrawn": true}`.
- Every position reported is kept in the officer's `track` (its own collection); `GET /officers` shows it to
  control (`track=N`: the newest N points only). A stream `position` frame is the latest point only.
- `POST /alerts` answers with the whole alert (a superset of `{id, recipients}`); control lists acks at
  `GET /api/v1/alerts/{id}`.
- The map's FeatureCollection carries `last_seq`; naming the `officers` layer without the control role is 401/403.
- `GET /metrics` (Prometheus) for admins, or for the addresses in `metrics_allow`.
- A query parameter given with an empty value (`?since=`) counts as absent, as HTML forms send them.
- Every `201` carries `Location`, the URL of what was made (a sighting or a rebuttal: the rumour it changed).
- Answers that may be compressed carry `Vary: Accept-Encoding` (with or without compression, and on 304s);
  `Accept-Encoding` q-values are honoured: `gzip;q=0` gets no gzip.
- Every operation has a unique `operationId` and `tags`, so generated clients have stable names; the limits in
  the schemas are this server's settings.
"""


# Every operation's operationId (unique: generated clients name their functions after it), kept in one table
# so that a client author sees the whole API's vocabulary at a glance. An `op(..., operation_id=...)` wins;
# an operation in neither gets one made from its method and path (`_derived_id`), so none is ever without.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("get", "/api/v1/me"): "getMe",
    ("post", "/api/v1/users"): "createUser",
    ("delete", "/api/v1/users/{callsign}"): "revokeUser",
    ("get", "/api/v1/events"): "listEvents",
    ("post", "/api/v1/events"): "createEvent",
    ("get", "/api/v1/events/{tag}"): "getEvent",
    ("patch", "/api/v1/events/{tag}"): "updateEvent",
    ("get", "/api/v1/events/{tag}/updates"): "listUpdates",
    ("post", "/api/v1/events/{tag}/updates"): "createUpdate",
    ("get", "/api/v1/updates/{id}"): "getUpdate",
    ("delete", "/api/v1/updates/{id}"): "retractUpdate",
    ("post", "/api/v1/updates/{id}/amplify"): "amplifyUpdate",
    ("get", "/api/v1/updates/{id}/cap"): "getUpdateCap",
    ("post", "/api/v1/photos"): "uploadPhoto",
    ("get", "/media/{id}"): "getPhotoFile",
    ("get", "/media/{id}/thumb"): "getPhotoThumbnail",
    ("get", "/api/v1/events/{tag}/rumours"): "listRumours",
    ("post", "/api/v1/events/{tag}/rumours"): "createRumour",
    ("get", "/api/v1/rumours/{id}"): "getRumour",
    ("patch", "/api/v1/rumours/{id}"): "setRumourStatus",
    ("post", "/api/v1/rumours/{id}/sightings"): "addSighting",
    ("post", "/api/v1/rumours/{id}/rebuttals"): "addRebuttal",
    ("get", "/api/v1/events/{tag}/reports"): "listReports",
    ("post", "/api/v1/reports/{id}/dismiss"): "dismissReport",
    ("post", "/api/v1/events/{tag}/reports"): "createReport",
    ("get", "/api/v1/events/{tag}/zones"): "listZones",
    ("post", "/api/v1/events/{tag}/zones"): "createZone",
    ("delete", "/api/v1/zones/{id}"): "deleteZone",
    ("post", "/api/v1/events/{tag}/positions"): "reportPosition",
    ("get", "/api/v1/events/{tag}/officers"): "listOfficers",
    ("get", "/api/v1/events/{tag}/officers/nearby"): "listOfficersNearby",
    ("get", "/api/v1/events/{tag}/alerts"): "listAlerts",
    ("post", "/api/v1/events/{tag}/alerts"): "createAlert",
    ("get", "/api/v1/alerts/{id}"): "getAlert",
    ("post", "/api/v1/alerts/{id}/ack"): "acknowledgeAlert",
    ("get", "/api/v1/push/key"): "getPushKey",
    ("post", "/api/v1/push/subscriptions"): "createPushSubscription",
    ("delete", "/api/v1/push/subscriptions/{id}"): "deletePushSubscription",
    ("get", "/api/v1/events/{tag}/map"): "getMap",
    ("get", "/api/v1/events/{tag}/stream"): "streamEvent",
    ("get", "/events/{tag}"): "eventPage",
    ("get", "/events/{tag}/rumours"): "rumourBoardPage",
    ("get", "/control/{tag}"): "controlPage",
    ("get", "/app"): "handsetApp",
    ("get", "/app/manifest.webmanifest"): "handsetAppManifest",
    ("get", "/app/sw.js"): "handsetAppServiceWorker",
    ("get", "/app/{name}"): "handsetAppFile",
    ("get", "/events/{tag}/feed.atom"): "eventAtomFeed",
    ("get", "/events/{tag}/alerts.atom"): "alertsAtomFeed",
    ("get", "/healthz"): "health",
    ("get", "/metrics"): "metrics",
    ("get", "/api/v1/openapi.json"): "getOpenApiDocument",
}

# Tags group operations in documentation and generated clients: by the module that serves them, named here
# where the module's own name would not say it (any other module is tagged with its last name).
MODULE_TAGS = {"fieldcomms.ops": "operations", "fieldcomms.api.health": "operations",
               "fieldcomms.api.media_files": "photos", "fieldcomms.api.openapi": "operations", "fieldcomms.web": "pages", "fieldcomms.abuse": "operations",
               "fieldcomms.api.positions": "officers", "fieldcomms.api.stream": "map"}
TAG_DESCRIPTIONS = {
    "users": "Who may use the API, and their tokens.",
    "events": "Operations, each named by its hashtag.",
    "updates": "What officers post from handsets.",
    "photos": "Photos: intake, and the stripped copies served to whoever may see them.",
    "rumours": "Rumours, their sightings and their public answers.",
    "reports": "Reports from the public.",
    "feeds": "Atom feeds and OASIS CAP 1.2 alerts for the public.",
    "zones": "Areas and routes agreed for the event.",
    "officers": "Officers' positions (never public).",
    "alerts": "Alerts from control to the officers near a place.",
    "push": "Web Push of alerts to officers' handsets: the VAPID key and push subscriptions.",
    "map": "The live map and the live stream.",
    "pages": "HTML pages for the public and the control room.",
    "operations": "Health, metrics and this document.",
}


def _derived_id(method: str, path_: str) -> str:
    """An operationId from method and path (`post_api_v1_push_subscriptions`) for an operation not named yet."""
    words = [w.strip("{}") for w in path_.replace(".", "_").replace("-", "_").split("/") if w]
    return "_".join([method, *words])


def _limits_text(settings: Settings) -> str:
    return (
        "\nLimits of this server (its settings; the schemas below state the same numbers): a JSON body of at most "
        f"{settings.max_body_bytes} bytes (`max_body_bytes`, 413 beyond); texts of at most "
        f"{settings.max_text_chars} characters (`max_text_chars`); {settings.max_photos_per_update} photos an "
        f"update (`max_photos_per_update`); a photo of at most {settings.max_photo_bytes} bytes "
        f"(`max_photo_bytes`, 413 beyond) and {settings.max_photo_pixels} pixels (`max_photo_pixels`, 422 beyond).\n"
    )


def build_document(app: web.Application) -> dict[str, Any]:
    """The document for this server, built from its Settings: limits in the schemas are its own."""
    from ..app import load_modules

    settings = app[SETTINGS]
    paths: dict[str, Any] = {}
    for module in load_modules():
        tag = MODULE_TAGS.get(module.__name__, module.__name__.rsplit(".", 1)[-1])
        for path_, ops in getattr(module, "OPENAPI", {}).items():
            for method, operation in ops.items():
                operation = {**operation}
                operation.setdefault("tags", [tag])
                operation.setdefault("operationId",
                                     OPERATION_IDS.get((method, path_)) or _derived_id(method, path_))
                paths.setdefault(path_, {})[method] = operation
    for item in paths.values():
        _conditional(item.get("get"))
    used = sorted({t for item in paths.values() for operation in item.values() for t in operation["tags"]})
    extra = app.get(EXTRA_DESCRIPTION, [])
    document = {
        "openapi": "3.1.0",
        "info": {"title": "fieldcomms", "version": "1",
                 "description": DESCRIPTION + _limits_text(settings) + "".join(extra),
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "servers": [{"url": "/"}],
        "tags": [{"name": t, **({"description": TAG_DESCRIPTIONS[t]} if t in TAG_DESCRIPTIONS else {})}
                 for t in used],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "RFC 9457 problem details.", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
    }
    resolved: dict[str, Any] = resolve_limits(document, settings)
    return resolved


EXTRA_DESCRIPTION = web.AppKey("openapi_extra_description", list)

IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An `ETag` from an earlier answer (or `*`): 304 without a body if it still matches.",
}
NOT_MODIFIED = {"description": "Not modified: the `If-None-Match` ETag still matches; no body."}


def _conditional(operation: dict[str, Any] | None) -> None:
    """Every GET answered with a body gets an ETag and honours If-None-Match (app.http_cache_middleware, and
    the media handler): say so on each, as the answer a client will see. A stream has no ETag."""
    if operation is None:
        return
    ok = operation.get("responses", {}).get("200", {})
    if "text/event-stream" in ok.get("content", {}):
        return
    operation["responses"].setdefault("304", NOT_MODIFIED)
    params = operation.setdefault("parameters", [])
    if not any(p.get("in") == "header" and p.get("name", "").lower() == "if-none-match" for p in params):
        params.append(IF_NONE_MATCH)


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document(request.app))


OPENAPI = {"/api/v1/openapi.json": {"get": op("This document.", schema={"type": "object"})}}
