"""Photos through the HTTP API: intake (POST /photos, multipart POST /updates), the bytes served at /media,
refusals, visibility and caching of media, deduplication and idempotency.

Every image is made here with Pillow (or read from ../shared/samples/photos), uploaded through the real app,
and checked on the bytes the server sends back.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from PIL import Image, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo

from fieldcomms import auth as auth_module
from fieldcomms import media, photo_pool
from fieldcomms.api import photos as photos_api
from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.errors import PayloadTooLarge, ValidationFailed
from fieldcomms.keys import SERVICES
from tests.imagebytes import jpeg_segments, png_chunks

SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "samples" / "photos"
TAG = "libdempolicing"
UPDATES = f"/api/v1/events/{TAG}/updates"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>officer 4711 was here</rdf:RDF></x:xmpmeta>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
IMMUTABLE = "public, max-age=300"  # the changed contract: never immutable (a retraction must leave caches)
R = TiffImagePlugin.IFDRational

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"sample photos not found at {SAMPLES}")


# --- making images ---------------------------------------------------------------------------------------


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def dms(d: int, m: int, s_hundredths: int) -> tuple[R, R, R]:
    return (R(d, 1), R(m, 1), R(s_hundredths, 100))


def make_exif(*, lat: tuple[str, tuple[R, ...]] | None = None, lon: tuple[str, tuple[R, ...]] | None = None,
              taken: str | None = None, orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "FieldCam"  # Make
    exif[0x0110] = "Handset 9000"  # Model
    if orientation is not None:
        exif[0x0112] = orientation
    if lat and lon:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = lat
        gps[3], gps[4] = lon
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    return exif


def noise(size: tuple[int, int]) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


def jpeg_north_east(size: tuple[int, int] = (800, 600)) -> bytes:
    """Sheffield, with a date, XMP and a comment: everything a phone leaks."""
    exif = make_exif(lat=("N", dms(53, 22, 4404)), lon=("E", dms(1, 28, 4044)), taken="2011:03:12 10:02:00")
    return encode(noise(size), "JPEG", exif=exif, xmp=XMP, comment=b"officer 4711 comment")


def jpeg_south_west() -> bytes:
    exif = make_exif(lat=("S", dms(33, 52, 1234)), lon=("W", dms(70, 39, 0)), taken="2024:01:01 01:30:00")
    return encode(noise((320, 240)), "JPEG", exif=exif, xmp=XMP, comment=b"officer 4711 comment")


def png_with_text() -> bytes:
    info = PngInfo()
    info.add_text("Author", "officer 4711")
    info.add_text("Comment", "officer 4711 again", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    return encode(Image.new("RGB", (50, 40), (10, 200, 90)), "PNG", pnginfo=info,
                  exif=make_exif(lat=("N", dms(53, 0, 0)), lon=("W", dms(1, 0, 0))))


def webp_with_metadata() -> bytes:
    exif = make_exif(lat=("N", dms(51, 30, 0)), lon=("W", dms(0, 7, 0)), taken="2020:05:05 05:05:05")
    return encode(Image.new("RGB", (120, 90), (200, 200, 20)), "WEBP", exif=exif, xmp=XMP)


def rotated_jpeg() -> bytes:
    """64 x 32 stored, red block top-left and green top-right, EXIF orientation 6 (rotate 90 clockwise)."""
    im = Image.new("RGB", (64, 32), "white")
    im.paste((255, 0, 0), (0, 0, 16, 16))
    im.paste((0, 255, 0), (48, 0, 64, 16))
    return encode(im, "JPEG", quality=95, exif=make_exif(orientation=6))


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def small_jpeg(colour: str = "navy") -> bytes:
    return encode(Image.new("RGB", (40, 30), colour), "JPEG")


# --- reading the served bytes by hand --------------------------------------------------------------------




def assert_metadata_free(blob: bytes, content_type: str) -> Image.Image:
    if content_type == "image/jpeg":
        for marker, payload in jpeg_segments(blob):
            assert marker != 0xFE, "COM segment served"
            assert not (marker == 0xE1 and payload.startswith(b"Exif\x00\x00")), "Exif APP1 served"
            assert not (marker == 0xE1 and payload.startswith(b"http://ns.adobe.com/xap/1.0/")), "XMP served"
            if 0xE0 <= marker <= 0xEF:
                assert marker == 0xE0 and payload.startswith(b"JFIF\x00"), f"APP{marker - 0xE0} served"
    else:
        assert content_type == "image/png"
        assert set(png_chunks(blob)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}, "PNG metadata chunk served"
    assert b"officer 4711" not in blob and b"FieldCam" not in blob and b"xmpmeta" not in blob
    im = Image.open(io.BytesIO(blob))
    im.load()
    assert len(im.getexif()) == 0
    for key in ("exif", "icc_profile", "xmp", "comment", "XML:com.adobe.xmp", "Author", "Comment"):
        assert key not in im.info
    return im


def close(a: Any, b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --- talking to the API ----------------------------------------------------------------------------------


def photo_form(data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg",
               name: str = "file") -> FormData:
    form = FormData()
    form.add_field(name, data, filename=filename, content_type=content_type)
    return form


async def upload(client: TestClient, token: str | None, data: bytes, *, filename: str = "photo.jpg",
                 content_type: str = "image/jpeg", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    resp = await client.post("/api/v1/photos", data=photo_form(data, filename, content_type),
                             headers={**auth(token), **(headers or {})})
    body = await resp.json(content_type=None)
    if resp.status >= 400:
        assert resp.content_type == "application/problem+json", body
    return resp.status, body


def update_form(update: Any, photos: list[bytes], *, raw_update: bytes | None = None) -> FormData:
    form = FormData()
    if raw_update is not None:
        form.add_field("update", raw_update.decode(), content_type="application/json")
    elif update is not None:
        form.add_field("update", json.dumps(update), content_type="application/json")
    for i, data in enumerate(photos):
        form.add_field("photo", data, filename=f"IMG_{i}.jpg", content_type="image/jpeg")
    return form


async def post_update(client: TestClient, token: str, update: Any, photos: list[bytes], *,
                      headers: dict[str, str] | None = None, raw_update: bytes | None = None) -> tuple[int, Any]:
    resp = await client.post(UPDATES, data=update_form(update, photos, raw_update=raw_update),
                             headers={**auth(token), **(headers or {})})
    body = await resp.json(content_type=None)
    if resp.status >= 400:
        assert resp.content_type == "application/problem+json", body
    return resp.status, body


async def fetch(client: TestClient, url: str, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    resp = await client.get(url, headers={**auth(token), **(headers or {})})
    return resp.status, await resp.read(), resp


def fields_of(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


def media_files(app: web.Application) -> list[pathlib.Path]:
    root = app[SERVICES].settings.data_path / "media"
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- metadata stripping, on the bytes served -----------------------------------------------------------------


async def test_jpeg_north_east_upload_is_read_then_served_stripped(client: TestClient, officer_token: str) -> None:
    src = jpeg_north_east()
    assert any(m == 0xFE for m, _ in jpeg_segments(src)) and b"xmpmeta" in src and b"Exif\x00\x00" in src

    status, photo = await upload(client, officer_token, src)

    assert status == 201, photo
    assert set(photo) == {"id", "url", "thumb_url", "width", "height", "content_type", "taken_at", "location"}
    assert photo["id"] == hashlib.sha256(src).hexdigest()
    assert photo["url"] == f"/media/{photo['id']}" and photo["thumb_url"] == f"/media/{photo['id']}/thumb"
    assert (photo["width"], photo["height"], photo["content_type"]) == (800, 600, "image/jpeg")
    assert photo["taken_at"] == "2011-03-12T10:02:00Z"
    assert photo["location"]["lat"] == pytest.approx(53 + 22 / 60 + 44.04 / 3600, abs=1e-6)
    assert photo["location"]["lon"] == pytest.approx(1 + 28 / 60 + 40.44 / 3600, abs=1e-6)
    assert photo["location"]["source"] == "exif"

    status, blob, resp = await fetch(client, photo["url"], officer_token)
    assert status == 200 and resp.content_type == "image/jpeg"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["ETag"] == f'"{photo["id"]}"'
    assert resp.headers["Cache-Control"] == "private, no-store"  # attached to nothing: the public may not see it
    assert assert_metadata_free(blob, "image/jpeg").size == (800, 600)

    status, thumb, resp = await fetch(client, photo["thumb_url"], officer_token)
    assert status == 200 and resp.content_type == "image/jpeg"
    assert assert_metadata_free(thumb, "image/jpeg").size == (320, 240)
    assert resp.headers["ETag"] == f'"{photo["id"]}.thumb"'
    resp = await client.head(photo["thumb_url"], headers=auth(officer_token))
    assert resp.status == 200 and resp.headers["ETag"] == f'"{photo["id"]}.thumb"'


async def test_south_west_gps_becomes_the_update_location(client: TestClient, officer_token: str,
                                                          event: dict[str, Any]) -> None:
    status, update = await post_update(client, officer_token, {"text": "Crowd at the gate"}, [jpeg_south_west()])
    assert status == 201, update
    assert update["location"] == {"lat": pytest.approx(-(33 + 52 / 60 + 12.34 / 3600), abs=1e-6),
                                  "lon": pytest.approx(-(70 + 39 / 60), abs=1e-6), "source": "exif"}
    [ref] = update["photos"]
    assert set(ref) == {"id", "url", "thumb_url", "width", "height"}
    for url in (ref["url"], ref["thumb_url"]):
        status, blob, resp = await fetch(client, url, officer_token)
        assert status == 200
        assert_metadata_free(blob, resp.content_type)


@pytest.mark.parametrize(("make", "served_as", "size"), [
    (png_with_text, "image/png", (50, 40)),
    (webp_with_metadata, "image/jpeg", (120, 90)),
], ids=["png-text-chunks", "webp"])
async def test_png_and_webp_are_served_stripped(client: TestClient, officer_token: str,
                                                make: Callable[[], bytes], served_as: str,
                                                size: tuple[int, int]) -> None:
    src = make()
    status, photo = await upload(client, officer_token, src, filename="x.bin", content_type="application/octet-stream")
    assert status == 201, photo
    assert photo["content_type"] == served_as and photo["location"] is not None
    for url in (photo["url"], photo["thumb_url"]):
        status, blob, resp = await fetch(client, url, officer_token)
        assert status == 200 and resp.content_type == served_as
        assert assert_metadata_free(blob, served_as).size == size


async def test_orientation_6_is_applied_before_serving(client: TestClient, officer_token: str) -> None:
    status, photo = await upload(client, officer_token, rotated_jpeg())
    assert status == 201 and (photo["width"], photo["height"]) == (32, 64)
    status, blob, _ = await fetch(client, photo["url"], officer_token)
    im = assert_metadata_free(blob, "image/jpeg").convert("RGB")
    assert im.size == (32, 64)
    # Rotated 90 degrees clockwise: the stored top-left (red) is now top-right, top-right (green) bottom-right.
    assert close(im.getpixel((26, 5)), (255, 0, 0)) and close(im.getpixel((26, 58)), (0, 255, 0))
    assert close(im.getpixel((5, 5)), (255, 255, 255))


# --- EXIF location and the update --------------------------------------------------------------------------


@needs_samples
async def test_sample_photo_gps_becomes_update_location(client: TestClient, officer_token: str,
                                                        event: dict[str, Any]) -> None:
    src = (SAMPLES / "DSCN0010.jpg").read_bytes()
    status, update = await post_update(client, officer_token, {"text": "Rumour answered"}, [src])
    assert status == 201, update
    assert update["location"]["source"] == "exif"
    assert update["location"]["lat"] == pytest.approx(43.467, abs=0.001)
    assert update["location"]["lon"] == pytest.approx(11.885, abs=0.001)
    status, blob, resp = await fetch(client, update["photos"][0]["url"], officer_token)
    assert status == 200 and assert_metadata_free(blob, resp.content_type).size == (640, 480)
    assert b"NIKON" not in blob


@needs_samples
async def test_device_location_wins_over_exif(client: TestClient, officer_token: str,
                                              event: dict[str, Any]) -> None:
    src = (SAMPLES / "DSCN0010.jpg").read_bytes()
    device = {"lat": 53.3789, "lon": -1.4779, "accuracy_m": 15}
    status, update = await post_update(client, officer_token, {"text": "At the gate", "location": device}, [src])
    assert status == 201, update
    assert update["location"] == {**device, "source": "device"}


async def test_first_photo_with_gps_gives_the_location(client: TestClient, officer_token: str,
                                                       event: dict[str, Any]) -> None:
    status, update = await post_update(client, officer_token, {"text": "Two photos"},
                                       [small_jpeg(), jpeg_south_west(), jpeg_north_east((64, 48))])
    assert status == 201, update
    assert len(update["photos"]) == 3
    assert update["location"]["source"] == "exif" and update["location"]["lat"] < 0


async def test_photo_uploaded_first_then_listed_by_id(client: TestClient, officer_token: str,
                                                      event: dict[str, Any]) -> None:
    _, photo = await upload(client, officer_token, jpeg_north_east((64, 48)))
    resp = await client.post(UPDATES, json={"text": "By id", "photos": [photo["id"]]}, headers=auth(officer_token))
    update = await resp.json()
    assert resp.status == 201, update
    assert update["location"]["source"] == "exif" and update["location"]["lat"] > 53
    assert update["photos"] == [{k: photo[k] for k in ("id", "url", "thumb_url", "width", "height")}]


@needs_samples
async def test_heic_is_accepted_where_pillow_heif_is_installed(client: TestClient, officer_token: str) -> None:
    src = (SAMPLES / "iphone_13_pro_max.HEIC").read_bytes()
    status, photo = await upload(client, officer_token, src, filename="IMG.HEIC", content_type="image/heic")
    if not media.heif_available():
        assert status == 415
        return
    assert status == 201, photo
    assert (photo["width"], photo["height"], photo["content_type"]) == (3024, 4032, "image/jpeg")
    status, thumb, resp = await fetch(client, photo["thumb_url"], officer_token)
    assert status == 200 and max(assert_metadata_free(thumb, resp.content_type).size) == 320


# --- refusals ----------------------------------------------------------------------------------------------


async def test_pdf_named_jpg_is_415(client: TestClient, officer_token: str) -> None:
    status, problem = await upload(client, officer_token, PDF, filename="photo.jpg", content_type="image/jpeg")
    assert status == 415, problem


async def test_truncated_jpeg_is_422(client: TestClient, officer_token: str) -> None:
    src = encode(noise((300, 300)), "JPEG")
    status, problem = await upload(client, officer_token, src[: len(src) // 2])
    assert status == 422 and fields_of(problem) == ["file"]


async def test_png_declaring_30000_squared_is_422(client: TestClient, officer_token: str) -> None:
    bomb = png_declaring(30_000, 30_000)
    assert len(bomb) < 200
    status, problem = await upload(client, officer_token, bomb, filename="tiny.png", content_type="image/png")
    assert status == 422 and fields_of(problem) == ["file"]


async def test_refused_photo_in_an_update_creates_nothing(client: TestClient, officer_token: str,
                                                          event: dict[str, Any]) -> None:
    status, _ = await post_update(client, officer_token, {"text": "x", "visibility": "public"}, [small_jpeg(), PDF])
    assert status == 415
    resp = await client.get(UPDATES, headers=auth(officer_token))
    assert (await resp.json())["items"] == []
    assert media_files(client.app) == []


async def test_upload_needs_an_officer(client: TestClient) -> None:
    status, _ = await upload(client, None, small_jpeg())
    assert status == 401


async def test_upload_must_be_multipart(client: TestClient, officer_token: str) -> None:
    resp = await client.post("/api/v1/photos", data=small_jpeg(),
                             headers={**auth(officer_token), "Content-Type": "image/jpeg"})
    assert resp.status == 415 and resp.content_type == "application/problem+json"


async def test_upload_part_rules(client: TestClient, officer_token: str) -> None:
    status, problem = await upload(client, officer_token, b"")
    assert status == 415, problem  # an empty file is not an image
    form = photo_form(small_jpeg(), name="attachment")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(officer_token))
    assert resp.status == 422 and fields_of(await resp.json()) == ["attachment"]
    form = photo_form(small_jpeg())
    form.add_field("file", small_jpeg("teal"), filename="b.jpg", content_type="image/jpeg")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(officer_token))
    assert resp.status == 422 and fields_of(await resp.json()) == ["file"]
    form = FormData()
    form.add_field("note", "no file here")
    form.add_field("x", b"", filename="x", content_type="text/plain")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(officer_token))
    assert resp.status == 422 and fields_of(await resp.json()) == ["note"]


async def test_fifth_photo_part_is_422(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    photos = [small_jpeg(c) for c in ("red", "green", "blue", "white", "black")]
    status, problem = await post_update(client, officer_token, {"text": "Five"}, photos)
    assert status == 422 and fields_of(problem) == ["photo"]
    status, update = await post_update(client, officer_token, {"text": "Four"}, photos[:4])
    assert status == 201 and len(update["photos"]) == 4


async def test_listed_and_attached_photos_count_together(client: TestClient, officer_token: str,
                                                         event: dict[str, Any]) -> None:
    ids = [(await upload(client, officer_token, small_jpeg(c)))[1]["id"] for c in ("red", "green", "blue")]
    status, problem = await post_update(client, officer_token, {"text": "Too many", "photos": ids},
                                        [small_jpeg("white"), small_jpeg("black")])
    assert status == 422 and fields_of(problem) == ["photos"]


async def test_update_part_rules(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    status, problem = await post_update(client, officer_token, None, [small_jpeg()])
    assert status == 422 and fields_of(problem) == ["update"]
    status, problem = await post_update(client, officer_token, None, [], raw_update=b"{not json")
    assert status == 400 and fields_of(problem) == ["update"]
    status, problem = await post_update(client, officer_token, None, [], raw_update=b"")
    assert status == 422 and fields_of(problem) == ["update"]
    status, problem = await post_update(client, officer_token, ["a", "list"], [])
    assert status == 422 and fields_of(problem) == ["update"]
    status, problem = await post_update(client, officer_token, {"text": ""}, [small_jpeg()])
    assert status == 422 and fields_of(problem) == ["text"]
    form = update_form({"text": "x"}, [small_jpeg()])
    form.add_field("file", small_jpeg(), filename="a.jpg", content_type="image/jpeg")
    resp = await client.post(UPDATES, data=form, headers=auth(officer_token))
    assert resp.status == 422 and fields_of(await resp.json()) == ["file"]
    # The update part may come after its photos.
    form = FormData()
    form.add_field("photo", jpeg_north_east((64, 48)), filename="a.jpg", content_type="image/jpeg")
    form.add_field("update", '{"text": "photo first"}', content_type="application/json")
    resp = await client.post(UPDATES, data=form, headers=auth(officer_token))
    assert resp.status == 201 and (await resp.json())["location"]["source"] == "exif"


# --- the byte limit ------------------------------------------------------------------------------------------

SMALL_LIMIT = 4096


@pytest.fixture
async def small(aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: pathlib.Path) -> tuple[TestClient, str]:
    """An app whose photos may be at most 4 KiB, with an officer and a live event."""
    settings = Settings(data_dir=str(tmp_path / "small"), demo_admin=False, max_photo_bytes=SMALL_LIMIT)
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    officer, token = auth_module.make_user("Officer", "small1", "officer")
    control, control_token = auth_module.make_user("Control", "smallc", "control")
    await store.append("user", "users", officer)
    await store.append("user", "users", control)
    resp = await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                             headers=auth(control_token))
    assert resp.status == 201
    return client, token


def big_jpeg(side: int = 200) -> bytes:
    data = encode(noise((side, side)), "JPEG", quality=95)
    assert len(data) > 2 * SMALL_LIMIT
    return data


def raw_multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "fieldcommsboundary4711"
    out = b""
    for name, data in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"p.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


async def chunked(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_over_the_limit_by_content_length_is_413(small: tuple[TestClient, str]) -> None:
    client, token = small
    huge = big_jpeg(600)
    assert len(huge) > SMALL_LIMIT + photos_api.PART_OVERHEAD  # refused on the header, before any part is read
    status, problem = await upload(client, token, huge)
    assert status == 413, problem
    status, problem = await upload(client, token, big_jpeg())  # refused on the part's bytes
    assert status == 413, problem


async def test_over_the_limit_streamed_without_length_is_413(small: tuple[TestClient, str]) -> None:
    client, token = small
    body, ctype = raw_multipart([("file", big_jpeg())])
    resp = await client.post("/api/v1/photos", data=chunked(body), headers={**auth(token), "Content-Type": ctype})
    assert resp.status == 413 and resp.content_type == "application/problem+json"
    assert media_files(client.app) == []


async def test_one_photo_part_over_the_limit_in_an_update_is_413(small: tuple[TestClient, str]) -> None:
    client, token = small
    # The whole body is within the update's allowance (4 photos + JSON); the one part is not.
    status, problem = await post_update(client, token, {"text": "big"}, [big_jpeg()])
    assert status == 413, problem
    ok = encode(Image.new("RGB", (16, 16), "red"), "JPEG")
    assert len(ok) <= SMALL_LIMIT
    status, update = await post_update(client, token, {"text": "small"}, [ok])
    assert status == 201, update


class CountingPart:
    """A body part that hands out bytes on demand and counts what was taken."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.taken = 0

    async def read_chunk(self, size: int = 8192) -> bytes:
        n = min(size, self.left)
        self.left -= n
        self.taken += n
        return b"x" * n


async def test_a_part_is_read_to_the_limit_plus_one_and_no_further() -> None:
    part = CountingPart(50 * 1024 * 1024)
    with pytest.raises(PayloadTooLarge):
        await photos_api.read_part(part, 1000, "photo")  # type: ignore[arg-type]
    assert part.taken == 1001
    exact = CountingPart(1000)
    assert len(await photos_api.read_part(exact, 1000, "photo")) == 1000  # type: ignore[arg-type]


# --- image work happens in worker processes --------------------------------------------------------------


async def test_image_work_is_not_done_in_the_server_process(client: TestClient, officer_token: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def in_server(*args: object, **kw: object) -> None:
        raise AssertionError("process_photo ran in the server process")

    monkeypatch.setattr(photo_pool, "process_photo", in_server)
    monkeypatch.setattr(media, "process_photo", in_server)
    status, photo = await upload(client, officer_token, jpeg_north_east((64, 48)))
    assert status == 201, photo


async def test_a_dead_worker_is_replaced(client: TestClient, officer_token: str) -> None:
    workers = client.app[SERVICES].photo_workers
    assert (await upload(client, officer_token, small_jpeg()))[0] == 201
    broken = workers._pool
    for process in list(broken._processes.values()):
        process.kill()
    status, photo = await upload(client, officer_token, small_jpeg("teal"))
    assert status == 201, photo
    assert workers._pool is not broken


class BrokenPool(Executor):
    def submit(self, *args: Any, **kw: Any) -> Any:
        raise BrokenProcessPool("a worker died")


async def test_a_photo_that_breaks_the_workers_twice_is_refused() -> None:
    class AlwaysBroken(photo_pool.PhotoWorkers):
        def _new_pool(self) -> Any:
            return BrokenPool()

    with pytest.raises(ValidationFailed) as caught:
        await AlwaysBroken(1).process(small_jpeg(), max_pixels=10**6, max_bytes=10**6)
    assert caught.value.errors == [{"field": "file", "message": "The image could not be processed."}]


# --- who may fetch media ----------------------------------------------------------------------------------


async def assert_hidden_from_public(client: TestClient, photo_id: str) -> None:
    for url in (f"/media/{photo_id}", f"/media/{photo_id}/thumb"):
        status, body, resp = await fetch(client, url)
        assert status == 404 and resp.content_type == "application/problem+json", url
        assert photo_id.encode() not in body


async def test_media_visibility_follows_the_updates_that_carry_it(client: TestClient, officer_token: str,
                                                                  control_token: str, event: dict[str, Any]) -> None:
    status, internal = await post_update(client, officer_token, {"text": "internal only"}, [jpeg_north_east()])
    assert status == 201 and internal["visibility"] == "internal"
    photo_id = internal["photos"][0]["id"]

    await assert_hidden_from_public(client, photo_id)
    for url in (f"/media/{photo_id}", f"/media/{photo_id}/thumb"):
        status, _, resp = await fetch(client, url, officer_token)
        assert status == 200 and resp.headers["Cache-Control"] == "private, no-store"

    resp = await client.post(UPDATES, json={"text": "Nothing on the roofs", "visibility": "public",
                                            "photos": [photo_id]}, headers=auth(officer_token))
    public_update = await resp.json()
    assert resp.status == 201
    assert public_update["location"]["source"] == "exif"
    for url in (f"/media/{photo_id}", f"/media/{photo_id}/thumb"):
        status, blob, resp = await fetch(client, url)
        assert status == 200 and resp.headers["Cache-Control"] == IMMUTABLE
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert_metadata_free(blob, resp.content_type)
        etag = resp.headers["ETag"]
        status, body, resp = await fetch(client, url, headers={"If-None-Match": etag})
        assert status == 304 and body == b"" and resp.headers["Cache-Control"] == IMMUTABLE
        status, _, resp = await fetch(client, url, officer_token)  # the officer sees the public policy too
        assert status == 200 and resp.headers["Cache-Control"] == IMMUTABLE
    # The public copy of the update shows the photo but no location of the photo itself.
    resp = await client.get(f"/api/v1/updates/{public_update['id']}")
    assert (await resp.json())["photos"] == [{k: public_update["photos"][0][k]
                                              for k in ("id", "url", "thumb_url", "width", "height")}]

    resp = await client.delete(f"/api/v1/updates/{public_update['id']}", headers=auth(officer_token))
    assert resp.status == 200
    await assert_hidden_from_public(client, photo_id)
    status, _, resp = await fetch(client, f"/media/{photo_id}", control_token)
    assert status == 200 and resp.headers["Cache-Control"] == "private, no-store"


async def test_unattached_photo_is_hidden_from_the_public(client: TestClient, officer_token: str) -> None:
    _, photo = await upload(client, officer_token, jpeg_north_east((64, 48)))
    await assert_hidden_from_public(client, photo["id"])
    status, _, _ = await fetch(client, photo["url"], officer_token)
    assert status == 200


@pytest.mark.parametrize("url", [
    "/media/..%2F..%2Fetc%2Fpasswd",
    "/media/..%2F..%2Fetc%2Fpasswd/thumb",
    "/media/%2E%2E/%2E%2E/etc/passwd",
    "/media/ABC",
    "/media/" + "a" * 63,
    "/media/" + "a" * 63 + "/thumb",
    "/media/" + "A" * 64,
    "/media/" + "a" * 65,
    "/media/" + "0" * 64,  # well formed, but no such photo
    "/media/" + "0" * 64 + ".thumb",
])
async def test_bad_or_unknown_media_ids_are_404(client: TestClient, officer_token: str, url: str) -> None:
    for token in (None, officer_token):
        resp = await client.get(url, headers=auth(token))
        assert resp.status == 404, (url, token)
        assert resp.content_type == "application/problem+json"
        assert b"root:" not in await resp.read()


# --- dedup and idempotency ---------------------------------------------------------------------------------


async def test_same_file_twice_gives_one_id_and_one_file(client: TestClient, officer_token: str,
                                                         user_factory: Callable[[str, str], Awaitable[str]]) -> None:
    src = jpeg_north_east((200, 150))
    first_status, first = await upload(client, officer_token, src)
    other = await user_factory("officer", "officer2")
    second_status, second = await upload(client, other, src, filename="another-name.jpg")
    assert (first_status, second_status) == (201, 201)
    assert first == second
    files = media_files(client.app)
    assert [p.name for p in files] == [first["id"], first["id"] + ".thumb"]
    assert client.app[SERVICES].store.count("photos") == 1
    record = client.app[SERVICES].store.get("photos", first["id"])
    assert record is not None and record["uploaded_by"]["callsign"] == "officer1"


async def test_photo_upload_idempotency_key(client: TestClient, officer_token: str) -> None:
    key = {"Idempotency-Key": "photo-retry-1"}
    status, first = await upload(client, officer_token, small_jpeg(), headers=key)
    again_status, again = await upload(client, officer_token, small_jpeg(), headers=key)
    assert (status, again_status) == (201, 201) and first == again
    status, problem = await upload(client, officer_token, small_jpeg("teal"), headers=key)
    assert status == 422 and fields_of(problem) == ["Idempotency-Key"]


async def test_multipart_update_retry_with_same_key_creates_one_update(client: TestClient, officer_token: str,
                                                                       event: dict[str, Any]) -> None:
    key = {"Idempotency-Key": "handset-42-post-7"}
    body = {"text": "Kettle rumour is false", "visibility": "public"}
    photos = [jpeg_north_east((120, 90)), png_with_text()]
    status, first = await post_update(client, officer_token, body, photos, headers=key)
    assert status == 201, first
    status, again = await post_update(client, officer_token, body, photos, headers=key)
    assert status == 201 and again == first
    resp = await client.get(UPDATES, headers=auth(officer_token))
    assert [u["id"] for u in (await resp.json())["items"]] == [first["id"]]
    assert len(media_files(client.app)) == 4
    status, problem = await post_update(client, officer_token, body, photos[:1], headers=key)
    assert status == 422 and fields_of(problem) == ["Idempotency-Key"]


# --- the contract document -----------------------------------------------------------------------------------


async def test_openapi_describes_photos(client: TestClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert {"/api/v1/photos", "/media/{id}", "/media/{id}/thumb"} <= set(doc["paths"])
    post = doc["paths"]["/api/v1/photos"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Photo"}
    assert set(doc["components"]["schemas"]["Photo"]["required"]) == {
        "id", "url", "thumb_url", "width", "height", "content_type", "taken_at", "location"}
    for p in ("/media/{id}", "/media/{id}/thumb"):
        assert set(doc["paths"][p]["get"]["responses"]["200"]["content"]) == {"image/jpeg", "image/png"}
