"""The baseline for post_ratio: a bare aiohttp handler that parses the same JSON and answers 201."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def handler(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    return web.Response(status=201, body=orjson.dumps({"id": "x", "text": body["text"]}),
                        content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "seq": 0})


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/v1/events/{tag}/updates", handler)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
