"""Pages: the public event feed, the rumour board and the control room, with their static files.

Registered in app.API_MODULES like an api module: `routes`, `OPENAPI` and `setup(app)`. Static files
(our scripts and styles, and Leaflet from the `xstatic-leaflet` package, never a CDN) are served under
/static/ and are not in the OpenAPI document, like every static route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import xstatic.pkg.leaflet
from aiohttp import web

from ..api.spec import op, path
from ..keys import SETTINGS
from . import security
from .pages import control_page, event_page, rumours_page
from .render import STATIC_DIR, setup_templates

__all__ = ["OPENAPI", "routes", "setup"]

LEAFLET_DIR = xstatic.pkg.leaflet.BASE_DIR

routes = web.RouteTableDef()
routes.get("/events/{tag}")(event_page)
routes.get("/events/{tag}/rumours")(rumours_page)
routes.get("/control/{tag}")(control_page)
# The more specific prefix first; neither follows symlinks out of its directory.
routes.static("/static/leaflet", LEAFLET_DIR)
routes.static("/static", STATIC_DIR)


@web.middleware
async def static_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A directory under /static/ is refused as not found, like anything else that is not a file we serve:
    a 403 would tell a prober that the directory exists. A missing file is refused here too, before
    aiohttp's FileResponse would answer it with an empty application/octet-stream 404 of its own (which no
    middleware sees)."""
    resource = request.match_info.route.resource if request.match_info.route is not None else None
    if isinstance(resource, web.StaticResource):
        directory = Path(resource.get_info()["directory"])
        if not await asyncio.to_thread(_servable, directory, request.match_info.get("filename", "")):
            raise web.HTTPNotFound()
    try:
        return await handler(request)
    except web.HTTPForbidden:
        if request.path.startswith("/static/"):
            raise web.HTTPNotFound() from None
        raise


def _servable(directory: Path, filename: str) -> bool:
    """A regular file inside `directory` (symlinks not followed out of it)."""
    try:
        if Path(filename).is_absolute():
            return False
        path = (directory / filename).resolve()
        return path.is_relative_to(directory.resolve()) and path.is_file()
    except (OSError, ValueError, RuntimeError):  # NUL bytes, over-long names, symlink loops
        return False


async def static_cache(request: web.Request, response: web.StreamResponse) -> None:
    """Our files are linked with `?v=<content hash>`, so such a URL never changes: phones keep it for a year.
    Leaflet's files change only with the package, so an hour without asking is safe."""
    if not request.path.startswith("/static/") or response.status != 200:
        return
    if request.query.get("v"):
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers.setdefault("Cache-Control", "public, max-age=3600")


def setup(app: web.Application) -> None:
    setup_templates(app)
    security.install(app, app[SETTINGS].tile_url)
    app.middlewares.append(static_not_found)
    app.on_response_prepare.append(static_cache)


def _page(summary: str, description: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation = op(summary, description=description, content_type="text/html",
                   schema={"type": "string"}, params=[path("tag", "The event's hashtag."), *(params or [])])
    operation["responses"]["404"] = {"description": "No such event: a short HTML page.",
                                     "content": {"text/html": {"schema": {"type": "string"}}}}
    return operation


OPENAPI = {
    "/events/{tag}": {"get": _page(
        "The public event feed (HTML).",
        "Public updates newest first with their photos, the public zones and updates on a map, and the rumour "
        "verdicts. Readable without JavaScript; with it, the page follows the live stream. Always the public view: "
        "a token changes nothing here.",
        [{"name": "before", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
          "description": "Older updates: those with seq below this."}],
    )},
    "/events/{tag}/rumours": {"get": _page(
        "The public rumour board (HTML).",
        "Each rumour with a published verdict: the claim, the verdict and the rebuttal with its photo, each "
        "carrying a schema.org ClaimReview as JSON-LD.",
    )},
    "/control/{tag}": {"get": _page(
        "The control-room page (HTML).",
        "The page itself holds no data: its script asks for a `control` token, keeps it only in the tab's "
        "sessionStorage, and reads the map, the stream, the rumour queue and the reports through the API with it.",
    )},
}
