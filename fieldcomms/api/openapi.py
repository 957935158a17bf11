"""GET /api/v1/openapi.json: the OpenAPI 3.1 document, assembled from every api module's OPENAPI."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .common import json_response
from .schemas import SCHEMAS
from .spec import op

routes = web.RouteTableDef()

DESCRIPTION = """\
The fieldcomms HTTP contract (shared/API.md), as served. Extensions beyond that contract are listed here.

Extensions:
- Every list answers `{"items", "last_seq"}`; with `since`, `last_seq` is where to continue when a page was full.
- A request that sends an unknown or revoked token gets 401 even on public routes, so a handset learns at once.
- `Idempotency-Key` answers are kept for `idempotency_ttl_hours` (default 48, never less than 24).
"""


def build_document(app: web.Application) -> dict[str, Any]:
    from ..app import load_modules

    paths: dict[str, Any] = {}
    for module in load_modules():
        for path_, ops in getattr(module, "OPENAPI", {}).items():
            paths.setdefault(path_, {}).update(ops)
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


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document(request.app))


OPENAPI = {"/api/v1/openapi.json": {"get": op("This document.", schema={"type": "object"})}}
