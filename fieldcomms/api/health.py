from __future__ import annotations

from aiohttp import web

from .common import ctx_of, json_response
from .spec import op

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    # The app serves only after the store has loaded (cleanup_ctx), so reaching here means loaded; with
    # PostgreSQL it is ready only while the database answers and this worker's view keeps up with it.
    store = ctx_of(request).store
    health = store.health()
    ok = health.pop("ok")
    body = {"status": "ok" if ok else "unavailable", "seq": store.last_seq, **health}
    return json_response(body, status=200 if ok else 503,
                         headers={"Cache-Control": "no-store", **({} if ok else {"Retry-After": "2"})})


OPENAPI = {
    "/healthz": {"get": op(
        "Liveness and readiness: 200 once the store is loaded. With PostgreSQL (`database_url`), 503 while the "
        "database is unreachable or this worker's view lags it by more than `max_lag_s` seconds; `database` "
        "and `lag_s` say which.", schema={
            "type": "object", "required": ["status", "seq"],
            "properties": {"status": {"enum": ["ok", "unavailable"]}, "seq": {"type": "integer"},
                           "database": {"enum": ["ok", "unreachable"]}, "lag_s": {"type": "number"},
                           "error": {"type": "string"}}})},
}
