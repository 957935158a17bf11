"""Photos from the public: multipart reports with up to two photos, through the same intake and stripping as
officers' photos and the same per-address rate limit, never public; officers see them through the report."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import auth, make_user
from PIL import Image

from fieldcomms.app import create_app
from fieldcomms.config import Settings

Json = dict[str, Any]
TAG = "reportphotos"


def form(report: Json | str | None, *photos: tuple[bytes, str, str]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    if report is not None:
        data.add_field("report", report if isinstance(report, str) else orjson.dumps(report).decode(),
                       content_type="application/json")
    for raw, name, ctype in photos:
        data.add_field("photo", raw, filename=name, content_type=ctype)
    return data


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ReporterPhone"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (53.0, 22.0, 51.0)
    gps[3], gps[4] = "W", (1.0, 28.0, 12.0)
    buf = io.BytesIO()
    image = Image.new("RGB", (640, 480), (200, 30, 30))
    image.paste((20, 20, 220), (100, 100, 300, 300))
    image.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
async def setup(aiohttp_client: Any, tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, report_rate_per_minute=1,
                        report_burst=6)
    client = await aiohttp_client(create_app(settings))
    tokens = {"control": await make_user(client.app, "control", "CTRL"),
              "officer": await make_user(client.app, "officer", "PC1")}
    resp = await client.post("/api/v1/events", json={"tag": TAG, "title": "Photos", "status": "live"},
                             headers=auth(tokens["control"]))
    assert resp.status == 201
    return client, tokens


async def test_a_report_with_two_photos_is_seen_by_officers_only_and_stripped(
        setup: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = setup
    gps_photo = jpeg_with_gps()
    assert b"ReporterPhone" in gps_photo
    resp = await client.post(f"/api/v1/events/{TAG}/reports", data=form(
        {"text": "Is this a sniper on the roof?", "contact": "jo@example.org"},
        (gps_photo, "roof.jpg", "image/jpeg"), (png((10, 120, 200)), "crowd.png", "image/png")))
    assert resp.status == 202, await resp.text()
    report_id = (await resp.json())["id"]

    page = await (await client.get(f"/api/v1/events/{TAG}/reports", headers=auth(tokens["officer"]))).json()
    report = next(r for r in page["items"] if r["id"] == report_id)
    assert len(report["photos"]) == 2 and "contact" not in report
    for photo in report["photos"]:
        assert set(photo) >= {"id", "url", "thumb_url", "width", "height"}
        public = await client.get(photo["url"])
        assert public.status == 404, "a report's photo must never be public"
        assert (await client.get(photo["thumb_url"])).status == 404
        seen = await client.get(photo["url"], headers=auth(tokens["officer"]))
        assert seen.status == 200 and seen.headers["Cache-Control"].startswith("private")
        body = await seen.read()
        image = Image.open(io.BytesIO(body))
        assert not image.getexif() and b"Exif" not in body and b"ReporterPhone" not in body, "metadata kept"
    # The public lists and pages know nothing of them.
    for url in (f"/events/{TAG}", f"/api/v1/events/{TAG}/updates", f"/events/{TAG}/feed.atom"):
        text = await (await client.get(url)).text()
        assert all(p["id"] not in text for p in report["photos"])


@pytest.mark.parametrize("parts,status,field", [
    (({"text": "three photos"}, 3), 422, "photo"),
    ((None, 1), 422, "report"),
    (({"text": "bad contact", "contact": "07700 900123"}, 1), 422, "contact"),
    (('["not", "an", "object"]', 0), 422, "report"),
])
async def test_multipart_reports_are_checked(setup: tuple[TestClient, dict[str, str]], parts: tuple[Any, int],
                                             status: int, field: str) -> None:
    client, _ = setup
    report, count = parts
    photos = [(png((i * 40, 10, 10)), f"p{i}.png", "image/png") for i in range(count)]
    resp = await client.post(f"/api/v1/events/{TAG}/reports", data=form(report, *photos))
    assert resp.status == status, await resp.text()
    assert field in {e["field"] for e in (await resp.json()).get("errors", [])}


async def test_a_file_that_is_not_a_photo_is_415_and_the_rate_limit_is_shared(
        setup: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = setup
    resp = await client.post(f"/api/v1/events/{TAG}/reports", data=form(
        {"text": "look"}, (b"%PDF-1.4 not an image", "doc.pdf", "application/pdf")))
    assert resp.status == 415, await resp.text()
    # The burst is 6: the refused one counted, four more of either form pass, then 429.
    for i in range(5):
        body = form({"text": f"report {i}"}, (png((i, i, i)), "p.png", "image/png")) if i % 2 \
            else None
        resp = await (client.post(f"/api/v1/events/{TAG}/reports", data=body) if body is not None
                      else client.post(f"/api/v1/events/{TAG}/reports", json={"text": f"report {i}"}))
        assert resp.status == 202, (i, await resp.text())
    resp = await client.post(f"/api/v1/events/{TAG}/reports", data=form({"text": "one more"},
                                                                         (png((1, 2, 3)), "p.png", "image/png")))
    assert resp.status == 429 and "Retry-After" in resp.headers
