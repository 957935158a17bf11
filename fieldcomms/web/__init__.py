"""Pages: the public event feed, the rumour board and the control room, with their static files.

Registered in app.API_MODULES like an api module: `routes`, `OPENAPI` and `setup(app)`. Static files
(our scripts and styles, and Leaflet from the `xstatic-leaflet` package, never a CDN) are served under
/static/ and are not in the OpenAPI document, like every static route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xstatic.pkg.leaflet
from aiohttp import web

from ..api.spec import op, path
from ..keys import SETTINGS
from . import handset, security
from .pages import control_page, event_page, rumours_page
from .render import STATIC_DIR, setup_templates

__all__ = ["OPENAPI", "routes", "setup"]

LEAFLET_DIR = xstatic.pkg.leaflet.BASE_DIR

routes = web.RouteTableDef()
routes.get("/events/{tag}")(event_page)
routes.get("/events/{tag}/rumours")(rumours_page)
routes.get("/control/{tag}")(control_page)
handset.register(routes)

# (URL prefix under /static/, directory): the more specific prefix first.
STATIC_ROOTS = (("leaflet/", LEAFLET_DIR), ("", STATIC_DIR))
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png",
                ".map": "application/json"}


class StaticFiles:
    """Our scripts and styles, and Leaflet's files: a few hundred kilobytes, read once at start and kept.

    Only the files found at start are served, each under its one name (`leaflet/leaflet.js`): a path variant
    (`./x.js`, `leaflet//x.js`, `a/../x.js`) is simply not a name here, so it is a 404 and adds nothing to
    memory. Served as ordinary responses, so they take the same path as everything else: ETag and 304, gzip,
    the security headers, and problem+json for whatever is not a file here: 404, never a 403 that would tell
    a prober a directory exists. Range requests are answered with the whole file (these files are small)."""

    def __init__(self, roots: tuple[tuple[str, str | Path], ...] = STATIC_ROOTS) -> None:
        self._cache: dict[str, tuple[bytes, str]] = {}
        for prefix, directory in reversed(roots):  # the more specific prefix last, so it wins
            base = Path(directory).resolve()
            for entry in sorted(base.rglob("*")):
                found = _servable(base, str(entry.relative_to(base)))
                if found is not None:
                    name = prefix + found.relative_to(base).as_posix()
                    self._cache[name] = (found.read_bytes(), STATIC_TYPES.get(found.suffix, "application/octet-stream"))

    async def handle(self, request: web.Request) -> web.Response:
        found = self._cache.get(request.match_info["filename"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        # Our files are linked with `?v=<content hash>`, so such a URL never changes: phones keep it for a
        # year. Leaflet's files change only with the package, so an hour without asking is safe.
        cache = "public, max-age=31536000, immutable" if request.query.get("v") else "public, max-age=3600"
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": cache})


def _servable(directory: Path, filename: str) -> Path | None:
    """A regular file inside `directory` (symlinks not followed out of it)."""
    try:
        if not filename or Path(filename).is_absolute():
            return None
        path = (directory / filename).resolve()
        return path if path.is_relative_to(directory.resolve()) and path.is_file() else None
    except (OSError, ValueError, RuntimeError):  # NUL bytes, over-long names, symlink loops
        return None


routes.get("/static/{filename:.*}")(StaticFiles().handle)


def install(app: web.Application) -> None:
    """The page templates and the security headers every response carries."""
    setup_templates(app)
    security.install(app, app[SETTINGS].tile_url)


def _page(summary: str, description: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation = op(summary, description=description, content_type="text/html",
                   schema={"type": "string"}, params=[path("tag", "The event's hashtag."), *(params or [])])
    operation["responses"]["404"] = {"description": "No such event: a short HTML page.",
                                     "content": {"text/html": {"schema": {"type": "string"}}}}
    return operation


MANIFEST_SCHEMA = {
    "type": "object", "required": ["name", "start_url", "display", "icons"],
    "properties": {
        "name": {"type": "string"}, "short_name": {"type": "string"}, "start_url": {"const": "/app"},
        "scope": {"type": "string"}, "display": {"const": "standalone"},
        "icons": {"type": "array", "items": {"type": "object", "required": ["src", "sizes", "type"], "properties": {
            "src": {"type": "string"}, "sizes": {"type": "string"}, "type": {"type": "string"}}}},
    },
}


def _app_file(summary: str, description: str, content_type: str, params: list[dict[str, Any]] | None = None,
              missing: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    operation = op(summary, description=description, content_type=content_type,
                   schema=schema or {"type": "string"}, params=params)
    operation["responses"]["304"] = {"description": "Not modified (If-None-Match)."}
    if not missing:
        operation["responses"].pop("404", None)
    if content_type == "":  # one of the app's file types
        operation["responses"]["200"]["content"] = {t: {"schema": {"type": "string"}} for t in handset.FILE_TYPES}
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
    "/app": {"get": _app_file(
        "The officers' handset app (HTML).",
        "An installable web app (see the manifest), working offline through its service worker: sign-in by "
        "token or by a `/app#token=...` link, posts kept in an on-device outbox and sent in order with their "
        "Idempotency-Key and `captured_at`, the event's updates live, alerts with acknowledgement, and the "
        "officer's position every `position_interval_s` while sharing is on. The page holds no data; everything "
        "goes through this API with the officer's token. Its Permissions-Policy allows geolocation and the "
        "camera, which every other page refuses.", "text/html")},
    "/app/manifest.webmanifest": {"get": _app_file(
        "The handset app's web app manifest.",
        "`name`, `start_url` `/app`, `display: standalone`, icons of 192 and 512 px.",
        "application/manifest+json", schema=MANIFEST_SCHEMA)},
    "/app/sw.js": {"get": _app_file(
        "The handset app's service worker.",
        "Scope `/app` (sent with `Service-Worker-Allowed: /app`). Caches the app shell under a name that carries "
        "a hash of it, so a new version of the app replaces the old one; shows pushed alerts as notifications.",
        "text/javascript")},
    "/app/{name}": {"get": _app_file(
        "The handset app's own scripts, styles and icons.",
        "JavaScript modules, the style sheet, and `icon-192.png` / `icon-512.png`. Served `no-cache` (revalidated "
        "by ETag): the service worker's cache is what keeps them on the phone.",
        "",
        [path("name", "A file name such as `main.js`, `app.css` or `icon-192.png`.")], missing=True)},
}
