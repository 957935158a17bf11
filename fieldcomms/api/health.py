from __future__ import annotations

from aiohttp import web

from .common import ctx_of, json_response
from .spec import op

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    # The app serves only after the store has loaded (cleanup_ctx), so reaching here means ready.
    store = ctx_of(request).store
    return json_response({"status": "ok", "seq": store.last_seq}, headers={"Cache-Control": "no-store"})


OPENAPI = {
    "/healthz": {"get": op("Liveness and readiness: 200 once the store is loaded.", schema={
        "type": "object", "required": ["status", "seq"],
        "properties": {"status": {"const": "ok"}, "seq": {"type": "integer"}}})},
}
