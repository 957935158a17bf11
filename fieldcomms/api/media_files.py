"""GET /media/{id} and /media/{id}/thumb: photo files, as the visibility rule allows, to readers of any speed.

A file is sent from disk a piece at a time (never read whole per request), each piece waiting for the client to
take the one before, so a slow reader holds one piece of memory. A reader that takes nothing for
`media_send_timeout_s` is cut off, and one client address (an IPv6 /64) has at most
`media_connections_per_address` downloads in progress at once (429 beyond): a few slow clients cannot hold
every connection and file of the server.

Caching (the changed contract): a photo the public may see is `public, max-age=300` with its `ETag`, never
`immutable`, so once its update is retracted it leaves browser and CDN caches within minutes; any other is
`private, no-store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import IO, Any

from aiohttp import hdrs, web

from ..errors import NotFound, TooManyRequests
from ..media import MediaStore, is_photo_id
from ..ratelimit import client_address, rate_key
from .common import ctx_of, viewer_of
from .photos import IMAGE
from .spec import op, path

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PUBLIC = "public, max-age=300"
PRIVATE = "private, no-store"
PIECE = 256 * 1024


def _open(media: MediaStore, photo_id: str, thumb: bool) -> tuple[IO[bytes], int] | None:
    """The file and its size, or None; in a thread (the loop never waits on a disk)."""
    file = media.open_path(photo_id, thumb=thumb)
    try:
        handle = file.open("rb") if file is not None else None
    except FileNotFoundError:
        return None
    return None if handle is None else (handle, os.fstat(handle.fileno()).st_size)


@routes.get("/media/{id}", name="media")
@routes.get("/media/{id}/thumb", name="media-thumb")
async def get_media(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    thumb = request.match_info.route.name == "media-thumb"
    photo_id = request.match_info["id"]
    # The id is checked before anything else: only 64 hex digits can ever become part of a path.
    seen = ctx.visible("photos", photo_id, viewer_of(request)) if is_photo_id(photo_id) else None
    if seen is None:
        raise NotFound("No such photo.")
    etag = f'"{photo_id}.thumb"' if thumb else f'"{photo_id}"'
    headers = {
        hdrs.ETAG: etag,
        hdrs.CACHE_CONTROL: PUBLIC if ctx.visible("photos", photo_id, None) is not None else PRIVATE,
        hdrs.VARY: "Authorization",
        "X-Content-Type-Options": "nosniff",
    }
    inm = request.headers.get(hdrs.IF_NONE_MATCH)
    if inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return web.Response(status=304, headers=headers)
    opened = await asyncio.to_thread(_open, ctx.media, photo_id, thumb)
    if opened is None:
        log.error("photo %s has a record but no %s file", photo_id, "thumb" if thumb else "image")
        raise NotFound("No such photo.")
    handle, size = opened
    downloads = ctx.media_downloads
    address = rate_key(client_address(request, ctx.settings.trusted_proxies))
    if not downloads.begin(address):
        await asyncio.to_thread(handle.close)
        raise TooManyRequests(f"{downloads.per_key} photo downloads are already in progress from your "
                              "address; wait for one to finish.", 5)
    try:
        resp = web.StreamResponse(headers=headers)
        resp.content_type = seen["content_type"]
        resp.content_length = size
        await resp.prepare(request)
        _bound_send_buffer(request)
        if request.method != hdrs.METH_HEAD:
            await _send(resp, handle, ctx.settings.media_send_timeout_s)
        await resp.write_eof()
        return resp
    except TimeoutError:
        # The client took nothing for the whole timeout: cut it off (what it has is all it gets).
        if request.transport is not None:
            request.transport.abort()
        return resp
    finally:
        downloads.end(address)
        await asyncio.to_thread(handle.close)


def _bound_send_buffer(request: web.Request) -> None:
    """The kernel's share of a stalled client's backlog is bounded too (Linux doubles this figure)."""
    sock = None if request.transport is None else request.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIECE)


async def _send(resp: web.StreamResponse, handle: IO[bytes], stall_s: float) -> None:
    while piece := await asyncio.to_thread(handle.read, PIECE):
        async with asyncio.timeout(stall_s):  # write() waits while the client's socket is full
            await resp.write(piece)


MEDIA_DESCRIPTION = (
    "Anyone who may see an update that carries the photo (officers: any photo); 404 otherwise, and for any id "
    "that is not a photo id. Every metadata block (EXIF, GPS, XMP, ICC, comments, PNG text) is removed and EXIF "
    "orientation applied. `ETag` is the photo id (`<id>.thumb` for the thumbnail); `Cache-Control: " + PUBLIC +
    "` when the public may see it (never `immutable`: a retracted update's photo leaves caches within minutes), "
    "`" + PRIVATE + "` otherwise; `If-None-Match` gives 304. At most `media_connections_per_address` downloads "
    "from one client address at once (`429` with `Retry-After` beyond); a client that takes nothing for "
    "`media_send_timeout_s` is disconnected."
)

IMAGE_CONTENT = {"image/jpeg": {"schema": IMAGE}, "image/png": {"schema": IMAGE}}


def _media_op(summary: str) -> dict[str, Any]:
    operation = op(summary, params=[path("id", "The photo id (64 hex digits).")], description=MEDIA_DESCRIPTION)
    operation["responses"]["200"] = {"description": "The image, re-encoded.", "content": IMAGE_CONTENT}
    operation["responses"]["304"] = {"description": "Not modified (If-None-Match)."}
    return operation


OPENAPI = {
    "/media/{id}": {"get": _media_op("A photo.")},
    "/media/{id}/thumb": {"get": _media_op("A photo's thumbnail, at most 320 px on the long side.")},
}
