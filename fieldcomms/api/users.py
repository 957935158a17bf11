from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import make_user, require
from ..domain.audit import record_access
from ..errors import Conflict, NotFound
from ..idempotency import Slot, fingerprint
from ..model import validate_user
from .common import ctx_of, json_response, key_from, location, read_json
from .spec import op, path, ref

routes = web.RouteTableDef()


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    return json_response({"id": viewer.id, "name": viewer.name, "callsign": viewer.callsign, "role": viewer.role})


@routes.post("/api/v1/users")
async def create(request: web.Request) -> web.Response:
    admin = require(request, "admin")
    ctx = ctx_of(request)
    body = await read_json(request)
    data = validate_user(body)

    async def create_it(slot: Slot | None) -> tuple[int, dict[str, Any]]:
        if ctx.store.get_by("users", "callsign", data["callsign"].lower()) is not None:
            raise Conflict(f"The callsign {data['callsign']} is taken.")
        doc, token = make_user(data["name"], data["callsign"], data["role"])

        def public(stored: dict[str, Any]) -> dict[str, Any]:
            return {k: stored[k] for k in ("id", "name", "callsign", "role")}

        # Only a hash of the token is ever stored, so a replay answers with the same body but "token": null.
        stored = await ctx.store.append("user", "users", doc,
                                        aux=slot.aux(lambda s: public(s) | {"token": None}) if slot else None)
        await record_access(ctx, admin, "user.create", ("user", stored["id"]), None, None)
        return 201, public(stored) | {"token": token}

    status, out = await ctx.idempotency.run(admin.id, key_from(request), fingerprint(body), create_it)
    return json_response(out, status=status, headers=location(status, "/api/v1/users/{callsign}", out))


@routes.delete("/api/v1/users/{callsign}")
async def revoke(request: web.Request) -> web.Response:
    admin = require(request, "admin")
    ctx = ctx_of(request)
    user = ctx.store.get_by("users", "callsign", request.match_info["callsign"].lower())
    if user is None:
        raise NotFound(f"No user with the callsign {request.match_info['callsign']}.")
    await ctx.store.append("user", "users", {**user, "revoked": True})
    await record_access(ctx, admin, "user.revoke", ("user", user["id"]), None, None)
    return web.Response(status=204)


OPENAPI = {
    "/api/v1/me": {"get": op("Who this token belongs to.", role="officer", schema=ref("User"))},
    "/api/v1/users": {
        "post": op("Make a user; the token is shown this once.", role="admin", ok="201", body=ref("UserCreate"),
                   idempotent=True,
                   description="A repeated Idempotency-Key returns the first status and body with `token: null`: "
                               "only a hash of the token is kept, so it cannot be shown again.",
                   schema={"allOf": [ref("User"), {"type": "object", "required": ["token"],
                                                   "properties": {"token": {"type": ["string", "null"]}}}]}),
    },
    "/api/v1/users/{callsign}": {
        "delete": op("End a user's token at once.", role="admin", ok="204", params=[path("callsign")]),
    },
}
