"""The officers' handset app: GET /app, its manifest, its service worker, its own scripts and styles, its icons.

The app is plain JavaScript modules under `web/app/` (no build step). Everything is read once and kept in
memory. The service worker is generated: it lists the app shell's files and carries a hash of all of them in
its cache name, so any change to the app makes a new worker whose install fetches the new shell and whose
activation drops the old one. The app's own files are therefore served with `no-cache` (revalidated by ETag),
not as immutable versioned URLs: module imports cannot carry a version, and the worker's cache is what keeps
the app on the phone.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from functools import cache
from pathlib import Path

from aiohttp import web

from ..keys import SERVICES
from . import security
from .render import JINJA, TEMPLATES_DIR

APP_DIR = Path(__file__).parent / "app"
APP_TYPES = {".js": "text/javascript", ".css": "text/css"}
ICON_SIZES = (192, 512)
FILE_TYPES = ("text/javascript", "text/css", "image/png")
NO_CACHE = "no-cache"
# The app asks for the device's position and opens the camera through the file picker; every other page
# keeps the site-wide refusal (security.security_headers).
APP_PERMISSIONS = "camera=(self), microphone=(), geolocation=(self), payment=()"


@cache
def app_files() -> dict[str, bytes]:
    """The app's own scripts and styles by file name: `main.js`, `outbox.js`, `app.css`, ..."""
    return {path.name: path.read_bytes() for path in sorted(APP_DIR.iterdir())
            if path.is_file() and path.suffix in APP_TYPES}


@cache
def icon_png(size: int) -> bytes:
    """The home-screen icon, drawn once: a white speech bubble with a location pin's dot on the dark blue of
    the pages' header. Drawn here rather than committed, so that no binary file needs keeping in step."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (15, 35, 75))
    draw = ImageDraw.Draw(image)
    s = size / 192
    # Maskable icons are cropped to a circle of 80% of the size: everything drawn stays inside it.
    draw.rounded_rectangle((44 * s, 50 * s, 148 * s, 122 * s), radius=16 * s, fill=(255, 255, 255))
    draw.polygon([(70 * s, 120 * s), (70 * s, 146 * s), (96 * s, 120 * s)], fill=(255, 255, 255))
    draw.ellipse((82 * s, 70 * s, 110 * s, 98 * s), fill=(200, 30, 30))
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def shell_urls() -> list[str]:
    """Everything the app needs to open with no network: the page, its files, the manifest and the icons."""
    return (["/app", "/app/manifest.webmanifest"] + [f"/app/{name}" for name in app_files()]
            + [f"/app/icon-{size}.png" for size in ICON_SIZES])


@cache
def shell_version() -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, body in app_files().items():
        digest.update(name.encode() + b"\0" + body)
    for template in ("app.html", "sw.js"):
        digest.update((TEMPLATES_DIR / template).read_bytes())
    return digest.hexdigest()


def manifest() -> dict[str, object]:
    return {
        "name": "fieldcomms handset",
        "short_name": "fieldcomms",
        "description": "Post updates and photos, read the event's feed and receive alerts, with or without signal.",
        "start_url": "/app",
        "scope": "/app",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": "#0f234b",
        "icons": [{"src": f"/app/icon-{size}.png", "sizes": f"{size}x{size}", "type": "image/png",
                   "purpose": "any maskable"} for size in ICON_SIZES],
    }


def app_headers(tile_url: str) -> dict[str, str]:
    # Photos chosen for a post are previewed from blob: URLs, and so are the feed's photos, which the app
    # fetches with its token (an <img> cannot send one).
    return {"Content-Security-Policy": security.content_security_policy(tile_url, extra_img="blob:"),
            "Permissions-Policy": APP_PERMISSIONS, "Cache-Control": NO_CACHE}


async def app_page(request: web.Request) -> web.Response:
    ctx = request.app[SERVICES]
    env = request.app[JINJA]
    html = env.get_template("app.html").render(
        organisation=ctx.settings.organisation,
        position_interval_s=ctx.settings.position_interval_s,
        version=shell_version(),
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers=app_headers(ctx.settings.tile_url))


async def app_manifest(request: web.Request) -> web.Response:
    return web.Response(body=json.dumps(manifest()).encode(), content_type="application/manifest+json",
                        headers={"Cache-Control": NO_CACHE})


async def service_worker(request: web.Request) -> web.Response:
    body = request.app[JINJA].get_template("sw.js").render(version=shell_version(), shell=shell_urls())
    # The worker's file lives under /app/ and controls /app itself, which is outside the default scope
    # (/app/): this header allows the wider scope.
    return web.Response(text=body, content_type="text/javascript", charset="utf-8",
                        headers={"Cache-Control": NO_CACHE, "Service-Worker-Allowed": "/app"})


async def app_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name.startswith("icon-") and name.endswith(".png"):
        size = name[len("icon-"):-len(".png")]
        if size.isdigit() and int(size) in ICON_SIZES:
            return web.Response(body=await asyncio.to_thread(icon_png, int(size)), content_type="image/png",
                                headers={"Cache-Control": NO_CACHE})
        raise web.HTTPNotFound()
    body = app_files().get(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=APP_TYPES[Path(name).suffix], charset="utf-8",
                        headers={"Cache-Control": NO_CACHE})


def register(routes: web.RouteTableDef) -> None:
    routes.get("/app")(app_page)
    routes.get("/app/manifest.webmanifest")(app_manifest)
    routes.get("/app/sw.js")(service_worker)
    routes.get(r"/app/{name:[A-Za-z0-9_-]+\.(js|css|png)}")(app_file)
