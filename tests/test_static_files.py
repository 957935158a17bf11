"""The static files (issue 15, item 2): only the files known at start are served, one cache entry each, so path
variants of one file (`./`, repeated slashes, `..`) cannot grow the cache."""

from __future__ import annotations

from pathlib import Path

from fieldcomms.app import create_app
from fieldcomms.config import Settings


def _static_handler(app):  # the StaticFiles instance behind /static/
    for route in app.router.routes():
        if route.resource is not None and route.resource.canonical.startswith("/static/"):
            return route.handler.__self__
    raise AssertionError("no /static/ route")


async def test_path_variants_do_not_grow_the_static_cache(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False))
    client = await aiohttp_client(app)
    assert (await client.get("/static/common.js")).status == 200
    static = _static_handler(app)
    before = len(static._cache)
    variants = ["/static/" + "./" * i + "common.js" for i in range(1, 300)]
    variants += ["/static/leaflet/" + "/" * i + "leaflet.js" for i in range(1, 300)]
    variants += [f"/static/leaflet/../common.js?x={i}" for i in range(3)]
    for url in variants:
        resp = await client.get(url)
        assert resp.status in (200, 404)
        await resp.read()
    assert len(static._cache) == before
    assert (await client.get("/static/leaflet/leaflet.js")).status == 200
    assert (await client.get("/static/nope.js")).status == 404
