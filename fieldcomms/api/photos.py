"""Photos: intake (POST /photos and the multipart form of POST /updates); media_files.py serves them.

Uploads are streamed part by part, each read to at most its limit + 1 bytes, so "too large" is known
without reading the rest. Media ids are content hashes checked by `is_photo_id` before they go near the file
system, and who may fetch a photo is decided by the visibility rule alone (`ctx.visible("photos", ...)`).

Image work runs in worker processes, not threads: Pillow keeps the GIL while it encodes into memory (only
encoding to a file descriptor releases it), and with `optimize=True` a JPEG is one such call. Measured: a
12-megapixel encode stalled every other thread for 300-440 ms, `Image.paste` for ~90 ms, and /healthz p99 under
two uploads was 240-330 ms with threads, 10-16 ms with processes (bench/bench_photos.py). Hashing and file I/O
release the GIL and stay in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..auth import require
from ..errors import (
    BadRequest,
    PayloadTooLarge,
    StorageError,
    UnsupportedMediaType,
    ValidationFailed,
    WriteConflict,
)
from ..evidence.originals import original_info
from ..idempotency import COLL as IDEMPOTENCY
from ..idempotency import Slot, fingerprint
from ..media import MediaStore, ProcessedPhoto
from ..model import now_str
from ..services import Services
from ..visibility import Viewer
from .common import ctx_of, json_response, key_from, location, parse_json
from .spec import op, ref

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

Doc = dict[str, Any]

PHOTO_FIELDS = ("id", "url", "thumb_url", "width", "height", "content_type", "taken_at", "location")
PART_OVERHEAD = 64 * 1024  # a part's headers and boundary, on top of its bytes, for the Content-Length check
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Upload:
    """One uploaded photo. `photo` is None when the same bytes are already stored (nothing to redo)."""

    id: str
    photo: ProcessedPhoto | None
    original: dict[str, Any] | None = None  # {"sha256", "bytes", "content_type"} of the bytes kept unaltered


# --- reading uploads --------------------------------------------------------------------------------------


async def open_multipart(request: web.Request, limit: int) -> MultipartReader:
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(f"Send multipart/form-data, not {request.content_type}.")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    try:
        return await request.multipart()
    except (ValueError, AssertionError, KeyError, HttpProcessingError) as exc:
        raise BadRequest(f"The multipart body cannot be read: {exc}") from None


async def parts(reader: MultipartReader) -> AsyncIterator[tuple[str, BodyPartReader]]:
    """Yields (name, part) for each part; malformed framing is a 400, a nested multipart a 422."""
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            # HttpProcessingError: a part's headers that do not parse (a control character, say).
            raise BadRequest(f"The multipart body is malformed: {exc}") from None
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise ValidationFailed.one("body", "nested multipart parts are not accepted")
        name = part.name
        if not name:
            raise ValidationFailed.one("body", "every part needs a name in its Content-Disposition")
        yield name, part


async def read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    """At most limit + 1 bytes of the part, so a part over the limit is refused without reading the rest."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = await part.read_chunk(min(CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (ValueError, HttpProcessingError) as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}") from None
    if size > limit:
        raise PayloadTooLarge(f"The {what} is larger than {limit} bytes.")
    return b"".join(chunks)


def _hash_and_check(media: MediaStore, data: bytes) -> tuple[str, bool]:
    photo_id = hashlib.sha256(data).hexdigest()
    return photo_id, media.verify(photo_id)


async def intake(ctx: Services, data: bytes) -> Upload:
    """Process one photo in a worker; bytes already stored (same hash, record and files) are not redone.
    The uploaded bytes themselves are kept unaltered (evidence), once the worker has found them to be a
    photo: nothing that is refused is kept."""
    photo_id, on_disk = await asyncio.to_thread(_hash_and_check, ctx.media, data)
    if on_disk and ctx.store.get("photos", photo_id) is not None:
        photo = None
    else:
        settings = ctx.settings
        photo = await ctx.photo_workers.process(data, max_pixels=settings.max_photo_pixels,
                                                max_bytes=settings.max_photo_bytes)
    await asyncio.to_thread(ctx.originals.save, data)
    return Upload(photo_id, photo, original_info(data))


async def read_update_multipart(request: web.Request) -> tuple[Any, list[Upload]]:
    """The multipart form of POST /updates: one part `update` (the JSON) and up to N parts `photo`."""
    ctx = ctx_of(request)
    settings = ctx.settings
    max_photos = settings.max_photos_per_update
    reader = await open_multipart(
        request, max_photos * (settings.max_photo_bytes + PART_OVERHEAD) + settings.max_body_bytes
    )
    body: Any = None
    seen_update = False
    uploads: list[Upload] = []
    photo_parts = 0
    async for name, part in parts(reader):
        if name == "update":
            if seen_update:
                raise ValidationFailed.one("update", "send one part named update")
            seen_update = True
            body = parse_json(await read_part(part, settings.max_body_bytes, "update part"), field="update")
            if not isinstance(body, dict):
                raise ValidationFailed.one("update", "must be a JSON object")
        elif name == "photo":
            photo_parts += 1
            if photo_parts > max_photos:
                raise ValidationFailed.one("photo", f"at most {max_photos} photos an update")
            data = await read_part(part, settings.max_photo_bytes, "photo")
            uploads.append(await intake(ctx, data))
        else:
            raise ValidationFailed.one(name, "unknown part; send update and photo parts only")
    if not seen_update:
        raise ValidationFailed.one("update", "a part named update with the update's JSON is required")
    listed = body.get("photos")
    if isinstance(listed, list) and len(listed) + len(uploads) > max_photos:
        raise ValidationFailed.one("photos", f"at most {max_photos} photos an update, listed and attached")
    return body, uploads


async def read_photo_multipart(request: web.Request) -> Upload:
    """The body of POST /photos: exactly one part `file`."""
    ctx = ctx_of(request)
    limit = ctx.settings.max_photo_bytes
    reader = await open_multipart(request, limit + PART_OVERHEAD)
    upload: Upload | None = None
    async for name, part in parts(reader):
        if name != "file":
            raise ValidationFailed.one(name, "unknown part; send one part named file")
        if upload is not None:
            raise ValidationFailed.one("file", "send one photo per request")
        upload = await intake(ctx, await read_part(part, limit, "photo"))
    if upload is None:
        raise ValidationFailed.one("file", "a part named file holding the photo is required")
    return upload


# --- storing ----------------------------------------------------------------------------------------------


def photo_record(photo: ProcessedPhoto, uploader: Viewer | None, original: Doc | None = None) -> Doc:
    """`uploader` None: a photo sent with a report from the public (`uploaded_by` null)."""
    location = None
    if photo.location is not None:
        location = {"lat": photo.location["lat"], "lon": photo.location["lon"], "source": "exif"}
    return {
        "id": photo.id,
        "url": f"/media/{photo.id}",
        "thumb_url": f"/media/{photo.id}/thumb",
        "width": photo.width,
        "height": photo.height,
        "content_type": photo.content_type,
        "taken_at": photo.taken_at,
        "location": location,
        "uploaded_by": None if uploader is None else {"id": uploader.id, "callsign": uploader.callsign},
        "uploaded_at": now_str(),
        "original": original,
        "_fingerprint": photo.fingerprint,  # internal (visibility strips "_" keys): fieldcomms.fingerprints
    }


def render_photo(doc: Doc) -> Doc:
    return {k: doc.get(k) for k in PHOTO_FIELDS}


PHOTO_ATTEMPTS = 10


async def store_photo(ctx: Services, uploader: Viewer | None, upload: Upload, slot: Slot | None = None) -> Doc:
    """Files first, then the record: a stored record always has its files. The same bytes give one record."""
    if upload.photo is not None:
        await asyncio.to_thread(ctx.media.save, upload.photo)
    # On PostgreSQL the same bytes may arrive at two workers at once: the one that loses the race to create the
    # record (WriteConflict, after catching up) finds it made and goes on from there. A multipart body cannot
    # be read twice, so this retries here rather than in the middleware.
    for _attempt in range(PHOTO_ATTEMPTS - 1):
        try:
            return await _store_photo_once(ctx, uploader, upload, slot)
        except WriteConflict:
            if slot is not None and ctx.store.get(IDEMPOTENCY, slot.record_id) is not None:
                raise  # the same Idempotency-Key won elsewhere: Idempotency.run answers with its response
    return await _store_photo_once(ctx, uploader, upload, slot)


async def _store_photo_once(ctx: Services, uploader: Viewer | None, upload: Upload, slot: Slot | None) -> Doc:
    # No await between this check and the append, which applies to the view at once (embedded store): two
    # concurrent uploads of the same bytes cannot both create the record.
    existing = ctx.store.get("photos", upload.id)
    aux = slot.aux(render_photo) if slot is not None else None
    if existing is None:
        if upload.photo is None:
            raise StorageError(f"photo {upload.id} has neither a record nor new pixels")
        return await ctx.store.append("photo", "photos", photo_record(upload.photo, uploader, upload.original),
                                      aux=aux)
    if upload.original is not None and existing.get("original") != upload.original:
        # A photo stored before originals were kept, or whose original was purged and is uploaded again.
        return await ctx.store.append("photo", "photos", {**existing, "original": upload.original}, aux=aux)
    if aux is not None:
        # The idempotency answer must be written with a change; an unchanged copy of the record serves.
        return await ctx.store.append("photo", "photos", existing, aux=aux)
    return existing


async def store_uploads(ctx: Services, uploader: Viewer, uploads: list[Upload]) -> list[str]:
    return [(await store_photo(ctx, uploader, upload))["id"] for upload in uploads]


# --- routes -----------------------------------------------------------------------------------------------


@routes.post("/api/v1/photos")
async def upload_photo(request: web.Request) -> web.Response:
    viewer = require(request, "officer")
    ctx = ctx_of(request)
    key = key_from(request)
    upload = await read_photo_multipart(request)

    async def create_it(slot: Slot | None) -> tuple[int, Doc]:
        return 201, render_photo(await store_photo(ctx, viewer, upload, slot))

    status, out = await ctx.idempotency.run(viewer.id, key, fingerprint("photo", upload.id), create_it)
    return json_response(out, status=status, headers=location(status, "/media/{id}", out))


IMAGE = {"type": "string", "format": "binary"}

OPENAPI = {
    "/api/v1/photos": {
        "post": op(
            "Upload a photo from a handset.", role="officer", ok="201", schema=ref("Photo"), idempotent=True,
            request_content={"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": {**IMAGE, "description": "JPEG, PNG or WebP (HEIC where supported)."}}},
                "encoding": {"file": {"contentType": "image/jpeg, image/png, image/webp, image/heic"}}}},
            description="The id is the SHA-256 of the uploaded bytes: the same file uploaded twice gives the same "
                        "id, is stored once, and answers 201 with the same record both times. `location` comes "
                        "from EXIF GPS (`source: exif`), `taken_at` from EXIF DateTimeOriginal. 413 over the byte "
                        "limit; 415 for anything but an accepted image type, judged by content; 422 for a damaged "
                        "file or one over the pixel limit.",
        ),
    },
}
