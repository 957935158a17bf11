"""GET /api/v1/openapi.json: the OpenAPI 3.1 document, assembled from every api module's OPENAPI."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .common import json_response
from .schemas import SCHEMAS
from .spec import op

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
- Positions keep a short `track` (the last 20 points); `GET /officers` shows it to control.
- `POST /alerts` answers with the whole alert (a superset of `{id, recipients}`); control lists acks at
  `GET /api/v1/alerts/{id}`.
- The map's FeatureCollection carries `last_seq`; naming the `officers` layer without the control role is 401/403.
- `GET /metrics` (Prometheus) for admins, or for the addresses in `metrics_allow`.
- A query parameter given with an empty value (`?since=`) counts as absent, as HTML forms send them.
"""


def build_document(app: web.Application) -> dict[str, Any]:
    from ..app import load_modules

    paths: dict[str, Any] = {}
    for module in load_modules():
        for path_, ops in getattr(module, "OPENAPI", {}).items():
            paths.setdefault(path_, {}).update(ops)
    for item in paths.values():
        _conditional(item.get("get"))
    extra = app.get(EXTRA_DESCRIPTION, [])
    return {
        "openapi": "3.1.0",
        "info": {"title": "fieldcomms", "version": "1", "description": DESCRIPTION + "".join(extra)},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "RFC 9457 problem details.", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
    }


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
