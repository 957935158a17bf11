"""Photos seen before: the fingerprint (PDQ, whole, trimmed and cropped frames) recognises a resized,
re-compressed, cropped, screenshotted and brightened copy and tells different photos apart; the index searches
by distance; and through the API a report's photo finds an officer's earlier upload in another event."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import auth, make_user
from PIL import Image, ImageDraw, ImageEnhance

from fieldcomms import fingerprints
from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.fingerprints import MATCH_DISTANCE, Fingerprint, FingerprintIndex
from fieldcomms.keys import SERVICES

Json = dict[str, Any]


def scene(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A photo-like picture: a smooth random light field with a horizon and a few shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    field = sum(np.asarray(Image.fromarray((rng.random((c, c, 3)) * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC), dtype=np.float64) * wt for c, wt in ((3, 1.0), (9, 0.5), (23, 0.25)))
    im = Image.fromarray((field / field.max() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.polygon([(0, int(h * 0.6)), (w, int(h * 0.5)), (w, h), (0, h)], fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    for _ in range(6):
        x, y = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 100))
        draw.rectangle((x, y, x + int(rng.integers(40, 200)), y + int(rng.integers(40, 200))),
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def jpeg(im: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def screenshot(im: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (1080, 2340), (0, 0, 0))
    shown = im.resize((1080, int(im.height * 1080 / im.width)))
    canvas.paste(shown, (0, 700))
    draw = ImageDraw.Draw(canvas)
    draw.text((40, 30), "10:02", fill=(255, 255, 255))
    for i in range(3):
        draw.rectangle((1000 - i * 50, 30, 1030 - i * 50, 60), fill=(230, 230, 230))
    return canvas


def copies(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    dx, dy = round(w * 0.04), round(h * 0.04)
    return {"third": im.resize((w // 3, h // 3)), "jpeg35": reopen(jpeg(im, 35)),
            "crop4": im.crop((dx, dy, w - dx, h - dy)), "screenshot": screenshot(im),
            "bright15": ImageEnhance.Brightness(im).enhance(1.15)}


def distance(a: Fingerprint, b: Fingerprint) -> int:
    index = FingerprintIndex()
    index.add("a", a)
    index.add("b", b)
    found = dict(index.search("a", max_distance=256))
    return found["b"]


def test_copies_are_recognised_and_different_photos_are_not() -> None:
    originals = [reopen(jpeg(scene(seed))) for seed in range(6)]
    prints = [fingerprints.compute(im) for im in originals]
    assert all(p is not None and p.quality >= fingerprints.QUALITY_MIN for p in prints)
    for im, fp in zip(originals, prints, strict=True):
        assert fp is not None and len(fp.primary[0]) == 64 and len(fp.crops) == 3
        for name, copy in copies(im).items():
            other = fingerprints.compute(reopen(jpeg(copy)))
            assert other is not None
            assert distance(fp, other) <= MATCH_DISTANCE, name
    for i in range(len(prints)):
        for j in range(i + 1, len(prints)):
            a, b = prints[i], prints[j]
            assert a is not None and b is not None
            assert distance(a, b) > MATCH_DISTANCE + 20


def test_the_screenshot_margins_are_trimmed() -> None:
    shot = screenshot(scene(1))
    small = shot.copy()
    small.thumbnail((512, 512))
    top, bottom, left, right = fingerprints.content_box(np.asarray(small.convert("L")))
    inner_top = round(700 * small.height / 2340)
    assert abs(top - inner_top) <= 2 and left == 0 and right == small.width
    fp = fingerprints.compute(shot)
    assert fp is not None and len(fp.primary) == 2  # the whole screen, and the picture in it


def test_the_index_ranks_by_distance_and_ignores_flat_pictures() -> None:
    index = FingerprintIndex()
    base = fingerprints.compute(scene(3))
    assert base is not None
    index.add("original", base)
    rng = random.Random(1)
    for i in range(500):
        index.add(f"noise{i}", Fingerprint((f"{rng.getrandbits(256):064x}",), (), 100))
    copy = fingerprints.compute(ImageEnhance.Brightness(scene(3)).enhance(1.15))
    assert copy is not None
    index.add("copy", copy)
    index.add("third", fingerprints.compute(scene(3).resize((266, 200))) or base)
    found = index.search("original")
    assert [photo for photo, _ in found] == sorted(["copy", "third"], key=lambda p: dict(found)[p])
    assert all(d <= MATCH_DISTANCE for _, d in found)
    flat = fingerprints.compute(Image.new("RGB", (400, 300), (128, 128, 128)))
    assert flat is not None and flat.quality < fingerprints.QUALITY_MIN
    index.add("flat", flat)
    index.add("flat2", fingerprints.compute(Image.new("RGB", (300, 400), (120, 128, 128))) or flat)
    assert index.search("flat") == [] and "flat" not in dict(index.search("flat2", max_distance=256))


# ---- through the API --------------------------------------------------------------------------------------


async def upload(client: TestClient, token: str, data: bytes) -> Json:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="p.jpg", content_type="image/jpeg")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(token))
    assert resp.status == 201, await resp.text()
    out: Json = await resp.json()
    return out


async def test_a_reported_screenshot_finds_the_photo_posted_earlier_in_another_event(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False)
    original = scene(7, (1200, 900))
    async with TestClient(TestServer(create_app(settings))) as client:
        control = await make_user(client.app, "control", "CTRL")
        officer = await make_user(client.app, "officer", "PC1")
        for tag in ("march2025", "march2026"):
            assert (await client.post("/api/v1/events", json={"tag": tag, "title": tag, "status": "live"},
                                      headers=auth(control))).status == 201
        posted = await upload(client, officer, jpeg(original, 92))
        unrelated = await upload(client, officer, jpeg(scene(8), 92))
        update = await client.post("/api/v1/events/march2025/updates", headers=auth(officer), json={
            "text": "The crowd at the gate last year", "visibility": "public", "photos": [posted["id"]]})
        assert update.status == 201
        update_id = (await update.json())["id"]

        form = aiohttp.FormData()
        form.add_field("report", orjson.dumps({"text": "Is this happening now at the gate?"}).decode(),
                       content_type="application/json")
        form.add_field("photo", jpeg(screenshot(original), 70), filename="shot.jpg", content_type="image/jpeg")
        resp = await client.post("/api/v1/events/march2026/reports", data=form)
        assert resp.status == 202, await resp.text()
        report_id = (await resp.json())["id"]

        page = await (await client.get("/api/v1/events/march2026/reports", headers=auth(officer))).json()
        report = next(r for r in page["items"] if r["id"] == report_id)
        shot_id = report["photos"][0]["id"]
        assert [s["photo_id"] for s in report["similar_photos"]] == [posted["id"]]
        assert report["similar_photos"][0]["of"] == shot_id
        assert report["similar_photos"][0]["distance"] <= MATCH_DISTANCE

        resp = await client.get(f"/api/v1/photos/{shot_id}/similar", headers=auth(officer))
        assert resp.status == 200
        items = (await resp.json())["items"]
        assert [i["photo"]["id"] for i in items] == [posted["id"]]
        assert items[0]["seen_in"] == [{"type": "update", "id": update_id, "event": "march2025"}]
        assert items[0]["first_seen_at"] and set(items[0]["photo"]) == {"id", "url", "thumb_url", "width", "height"}
        # And the other way round: the report is where the copy was seen.
        back = (await (await client.get(f"/api/v1/photos/{posted['id']}/similar", headers=auth(officer))).json())
        assert [(i["photo"]["id"], i["seen_in"]) for i in back["items"]] == [
            (shot_id, [{"type": "report", "id": report_id, "event": "march2026"}])]
        assert (await (await client.get(f"/api/v1/photos/{unrelated['id']}/similar",
                                        headers=auth(officer))).json())["items"] == []
        assert (await client.get(f"/api/v1/photos/{shot_id}/similar")).status == 401
        assert (await client.get(f"/api/v1/photos/{'0' * 64}/similar", headers=auth(officer))).status == 404
        assert (await client.get(f"/api/v1/photos/{shot_id}/similar?limit=0", headers=auth(officer))).status == 422
        # The very same file sent again is the same photo: seen before, at distance 0.
        form = aiohttp.FormData()
        form.add_field("report", '{"text": "Same picture again"}', content_type="application/json")
        form.add_field("photo", jpeg(original, 92), filename="same.jpg", content_type="image/jpeg")
        resp = await client.post("/api/v1/events/march2026/reports", data=form)
        again_id = (await resp.json())["id"]
        page = await (await client.get("/api/v1/events/march2026/reports", headers=auth(officer))).json()
        again = next(r for r in page["items"] if r["id"] == again_id)
        assert again["photos"][0]["id"] == posted["id"]
        assert {(s["photo_id"], s["distance"]) for s in again["similar_photos"]} >= {(posted["id"], 0)}
        # The fingerprint itself is internal: no view of the photo carries it.
        photo_view = await (await client.get(f"/api/v1/photos/{shot_id}/similar", headers=auth(control))).text()
        assert "fingerprint" not in photo_view and "primary" not in photo_view

    # After a restart the index is rebuilt from the store.
    async with TestClient(TestServer(create_app(settings))) as client:
        officer = await make_user(client.app, "officer", "PC2")
        items = (await (await client.get(f"/api/v1/photos/{shot_id}/similar", headers=auth(officer))).json())["items"]
        assert [i["photo"]["id"] for i in items] == [posted["id"]]


@pytest.mark.parametrize("limit", ["abc", "101", "-1"])
async def test_the_limit_is_checked(client: TestClient, officer_token: str, limit: str) -> None:
    resp = await client.get(f"/api/v1/photos/{'a' * 64}/similar?limit={limit}", headers=auth(officer_token))
    assert resp.status == 422


# ---- photos stored before fingerprints existed ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedded", "pg"])
async def test_photos_stored_without_a_fingerprint_get_one_at_start_in_the_background(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    """Photos whose records have no fingerprint (stored before fingerprints existed: here the fingerprints are
    removed through the store) get one when the server starts, in the photo workers, while it already answers;
    the result is stored, so the next start does nothing; a stored file that cannot be decoded is recorded as
    such and not tried again."""
    database_url = request.getfixturevalue("pg_url") if kind == "pg" else ""
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, database_url=database_url)
    original = scene(21, (1200, 900))
    async with TestClient(TestServer(create_app(settings))) as client:
        officer = await make_user(client.app, "officer", "PC1")
        posted = (await upload(client, officer, jpeg(original, 92)))["id"]
        copy = (await upload(client, officer, jpeg(original.resize((400, 300)), 40)))["id"]
        other = (await upload(client, officer, jpeg(scene(22), 92)))["id"]
        damaged = (await upload(client, officer, jpeg(scene(23), 92)))["id"]
        assert [i["photo"]["id"] for i in (await (await client.get(
            f"/api/v1/photos/{posted}/similar", headers=auth(officer))).json())["items"]] == [copy]
        store = client.app[SERVICES].store
        for photo_id in (posted, copy, other, damaged):
            doc = store.get("photos", photo_id)
            assert doc is not None and doc["_fingerprint"]
            await store.append("photo", "photos", {k: v for k, v in doc.items() if k != "_fingerprint"})
    (settings.media_path / damaged[:2] / damaged).write_bytes(b"not a picture any more")

    async with TestClient(TestServer(create_app(settings))) as client:
        services = client.app[SERVICES]
        # Ready at once: the backfill runs in the background (it has not finished when the server answers).
        assert (await client.get("/healthz")).status == 200
        officer = await make_user(client.app, "officer", "PC2")
        task = services._backfill
        assert task is not None and not task.done()
        assert await task == 3
        items = (await (await client.get(f"/api/v1/photos/{posted}/similar", headers=auth(officer))).json())["items"]
        assert [i["photo"]["id"] for i in items] == [copy]
        items = (await (await client.get(f"/api/v1/photos/{copy}/similar", headers=auth(officer))).json())["items"]
        assert [i["photo"]["id"] for i in items] == [posted]
        for photo_id in (posted, copy, other):
            assert services.store.get("photos", photo_id)["_fingerprint"]["primary"]
        broken = services.store.get("photos", damaged)
        assert broken["_fingerprint"] is None and broken["_fingerprint_error"]
        seq = services.store.last_seq

    async with TestClient(TestServer(create_app(settings))) as client:
        services = client.app[SERVICES]
        assert services._backfill is not None and await services._backfill == 0  # done once
        assert services.store.last_seq == seq
        officer = await make_user(client.app, "officer", "PC3")
        items = (await (await client.get(f"/api/v1/photos/{posted}/similar", headers=auth(officer))).json())["items"]
        assert [i["photo"]["id"] for i in items] == [copy]


async def test_two_workers_on_postgresql_fingerprint_each_stored_photo_once(tmp_path: Path, pg_url: str) -> None:
    """Two servers on one PostgreSQL database (and one media directory) start together with six photos lacking
    fingerprints: each photo's record gets exactly one new version between them (compare-and-set), and both
    servers' indexes know every fingerprint."""
    def settings_for(name: str) -> Settings:
        return Settings(data_dir=str(tmp_path / name), media_dir=str(tmp_path / "media"), fsync=False,
                        demo_admin=False, database_url=pg_url)

    async with TestClient(TestServer(create_app(settings_for("a")))) as client:
        officer = await make_user(client.app, "officer", "PC1")
        ids = [(await upload(client, officer, jpeg(scene(40 + n), 90)))["id"] for n in range(6)]
        store = client.app[SERVICES].store
        for photo_id in ids:
            doc = store.get("photos", photo_id)
            assert doc is not None
            await store.append("photo", "photos", {k: v for k, v in doc.items() if k != "_fingerprint"})
        stripped_at = store.last_seq

    async with TestClient(TestServer(create_app(settings_for("a")))) as one, \
            TestClient(TestServer(create_app(settings_for("b")))) as two:
        tasks = [c.app[SERVICES]._backfill for c in (one, two)]
        assert all(t is not None for t in tasks)
        counts = [await t for t in tasks if t is not None]
        assert sum(counts) == len(ids), counts
        for c in (one, two):
            await c.app[SERVICES].store.catch_up()  # type: ignore[attr-defined]
            assert all(c.app[SERVICES].fingerprints.get(photo_id) is not None for photo_id in ids)
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT id, count(*) FROM fc_changes WHERE coll = 'photos' AND seq > %s GROUP BY id",
                                (stripped_at,)).fetchall()
        assert sorted(rows) == sorted((photo_id, 1) for photo_id in ids), rows
