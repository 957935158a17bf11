"""Security headers on every response: a Content-Security-Policy with no inline script, nosniff, no referrer,
no framing.

The policy is strict because the pages show text typed by officers and claims copied from the crowd: if an
escaping mistake ever let markup through, the policy still stops it from running. Every script is a file under
/static/; styles too; images come from us (photos, Leaflet's sprites), `data:` URLs and the tile server.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

# A host source as CSP accepts it; a tile URL's `{s}` subdomain placeholder becomes `*`.
_HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?$")


def tile_source(tile_url: str) -> str | None:
    """The CSP source for a tile URL template: `https://*.tile.example.org`, or None when the tiles come
    from this server (a relative URL), there are none (empty), or the URL cannot be expressed safely."""
    url = tile_url.strip()
    if not url or url.startswith("/") and not url.startswith("//"):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    host = re.sub(r"\{[a-z]\}", "*", parts.netloc.rsplit("@", 1)[-1])
    if not _HOST_RE.fullmatch(host):  # `$` alone would let a trailing newline into the header
        return None  # never let a setting add directives to the header
    return f"{parts.scheme}://{host}"


def content_security_policy(tile_url: str, extra_img: str = "") -> str:
    tiles = tile_source(tile_url)
    img = "'self' data:" + (f" {extra_img}" if extra_img else "") + (f" {tiles}" if tiles else "")
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {img}",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ])


def security_headers(tile_url: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(tile_url),
        "X-Content-Type-Options": "nosniff",
        # The map's tile requests carry the origin only (set per tile layer in the page's script).
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


def install(app: web.Application, tile_url: str) -> None:
    """Add the headers to every response, pages, static files and errors alike; a handler that set one of
    them on purpose keeps its own."""
    headers = security_headers(tile_url)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in headers.items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(add_headers)
