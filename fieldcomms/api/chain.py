"""The head of the tamper-evident chain (store/chain.py): a value to write down outside the data directory,
so that a later `fieldcomms check`, or a bundle's manifest, can be held against it."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from .common import ctx_of, json_response
from .spec import op

routes = web.RouteTableDef()


@routes.get("/api/v1/chain/head")
async def head(request: web.Request) -> web.Response:
    require(request, "admin")
    seq, chain = ctx_of(request).store.chain_head()
    return json_response({"seq": seq, "hash": chain}, headers={"Cache-Control": "no-store"})


OPENAPI = {
    "/api/v1/chain/head": {"get": op(
        "The newest durable change's seq and chain hash.", role="admin", operation_id="getChainHead",
        tags=["evidence"],
        description="Each change's chain hash is SHA-256(previous hash || SHA-256(canonical record)), where the "
                    "canonical record is its JSON with sorted keys and no spaces (UTF-8) and the hash before "
                    "seq 1 is 32 zero bytes. `fieldcomms check` verifies the whole chain; a head written down "
                    "elsewhere shows whether history was rewritten since. Before the first change: seq 0 and "
                    "64 zeros.",
        schema={"type": "object", "required": ["seq", "hash"],
                "properties": {"seq": {"type": "integer", "minimum": 0},
                               "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}})},
}
