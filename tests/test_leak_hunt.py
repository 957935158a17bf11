"""The leak hunt: play a whole event through the HTTP API, every internal thing carrying a unique marker, then
crawl every surface the public can reach (and, as an officer, everything an officer can reach) and look for
any marker, officer position, internal location, contact, token, idempotency key or photo metadata.

What is legitimately public, and so not a marker:
- the text, location, photos, zones (public ones), hashtags and `amplified_by` of public, active updates, and
  the callsign and id of their author (API.md: `author: {id, callsign}`); so the officer who posts publicly
  (PUB) has a public callsign, and every other account (control, an officer who only posts internally, one
  whose only public post was retracted, admin) must appear nowhere;
- a published rumour's claim, status, times and counts (never its sources, location or who changed it);
- the ids of items the public could see before they were retracted or deleted, in stream tombstones.

Coordinates are chosen so that no public coordinate (or a mean of them, for map clusters) shares its first
four decimals with a secret one; each secret coordinate is searched for by those four decimals, which any
rendering with at least four (JSON, GeoJSON, Atom, CAP, the page's five) contains.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from conftest import auth, make_user
from PIL import Image, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo
from sse import SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings

Json = dict[str, Any]
R = TiffImagePlugin.IFDRational

# ---- secrets ------------------------------------------------------------------------------------------------

# Public coordinates: lat 53.3800..53.3880, lon -1.4870..-1.4700. Secret ones keep well away from that box.
PUBLIC_ZONE = [[-1.4840, 53.3840], [-1.4780, 53.3840], [-1.4780, 53.3870], [-1.4840, 53.3870], [-1.4840, 53.3840]]
L_U1 = {"lat": 53.3805, "lon": -1.4705}
L_U2 = {"lat": 53.3855, "lon": -1.4810}  # inside the public zone and the internal zone
L_U6 = {"lat": 53.3815, "lon": -1.4715}
L_U9 = {"lat": 53.3835, "lon": -1.4735}
L_REBUT = {"lat": 53.3825, "lon": -1.4725}
L_RETRACTED = {"lat": 53.3845, "lon": -1.4745}

SECRET_POINTS = {
    "position-int": (53.3571234, -1.4571234),
    "position-int-2": (53.3582222, -1.4582222),
    "position-pub": (53.3562345, -1.4562345),
    "position-far": (53.2001234, -1.3001234),
    "update-internal": (53.3453456, -1.4453456),
    "update-internal-2": (53.3464567, -1.4464567),
    "rumour-location": (53.3344567, -1.4344567),
    "rumour2-location": (53.3299876, -1.4299876),
    "rumour-source-location": (53.3235678, -1.4235678),
    "sighting-location": (53.3126789, -1.4126789),
    "report-location": (53.3017890, -1.4017890),
    "exif-jpeg": (53.3908901, -1.5008901),
    "exif-png": (53.3977777, -1.5077777),
    # A photo's EXIF GPS inside the public zone: the public update it places must not say so, not even by the
    # zone's name (API.md *changed*: an EXIF location is for officers and control only).
    "exif-in-public-zone": (53.3862345, -1.4832345),
    "alert-location": (53.3579999, -1.4579999),
}
# The internal zone: a box round the public zone, with distinctive corners.
INTERNAL_ZONE_LAT = (53.3791111, 53.3891111)
INTERNAL_ZONE_LON = (-1.4891111, -1.4691111)


def coord_needles(lat: float, lon: float) -> list[str]:
    def four(v: float) -> str:
        return f"{abs(v):.7f}"[: f"{abs(v):.7f}".index(".") + 5]  # the first four decimals, unrounded

    return [four(lat), four(lon)]


def hexid(n: int = 5) -> str:
    return secrets.token_hex(n)


def mark(kind: str) -> str:
    return f"LEAK-{kind}-{hexid()}"


def dms(value: float) -> tuple[R, R, R]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 100000)
    return R(d, 1), R(m, 1), R(s, 100000)


# ---- photos -------------------------------------------------------------------------------------------------


def jpeg_with_metadata(colour: tuple[int, int, int], gps: tuple[float, float], make: str, artist: str,
                       xmp: str, comment: str, taken: str) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make  # Make
    exif[0x0110] = make + "-model"  # Model
    exif[0x013B] = artist  # Artist
    exif[0x010E] = artist + "-description"  # ImageDescription
    gps_ifd = exif.get_ifd(0x8825)
    gps_ifd[1], gps_ifd[2] = ("N" if gps[0] >= 0 else "S"), dms(gps[0])
    gps_ifd[3], gps_ifd[4] = ("E" if gps[1] >= 0 else "W"), dms(gps[1])
    exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
    im = Image.new("RGB", (640, 480), colour)
    for x in range(0, 640, 40):  # some structure, so thumbnails and re-encoding have work to do
        im.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (x, 0, x + 20, 480))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif, comment=comment.encode(),
            xmp=f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>{xmp}</rdf:RDF></x:xmpmeta>'.encode())
    return buf.getvalue()


def png_with_metadata(gps: tuple[float, float], make: str, text: str) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    gps_ifd = exif.get_ifd(0x8825)
    gps_ifd[1], gps_ifd[2] = ("N" if gps[0] >= 0 else "S"), dms(gps[0])
    gps_ifd[3], gps_ifd[4] = ("E" if gps[1] >= 0 else "W"), dms(gps[1])
    info = PngInfo()
    info.add_text("Comment", text)
    info.add_itxt("Description", text + "-itxt")
    info.add_text("Software", text + "-ztxt", zip=True)
    im = Image.new("RGB", (300, 200), (10, 200, 90))
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info, exif=exif)
    return buf.getvalue()


METADATA_SIGNS = [b"Exif\x00\x00", b"<x:xmpmeta", b"http://ns.adobe.com/xap", b"adobe:ns:meta"]
PNG_TEXT_CHUNKS = [b"tEXt", b"iTXt", b"zTXt", b"eXIf"]


def metadata_problems(data: bytes) -> list[str]:
    """What metadata a served photo still carries (empty when clean)."""
    problems = [f"contains {sign!r}" for sign in METADATA_SIGNS if sign in data]
    im = Image.open(io.BytesIO(data))
    im.load()
    if len(im.getexif()):
        problems.append(f"EXIF tags {list(im.getexif())}")
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile", "Comment", "Description", "Software"):
        if im.info.get(key):
            problems.append(f"info[{key!r}]")
    if data.startswith(b"\x89PNG"):
        problems += [f"PNG chunk {c!r}" for c in PNG_TEXT_CHUNKS if c in data]
    elif data.startswith(b"\xff\xd8"):
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if marker == 0xDA:
                break
            if marker == 0xFE or 0xE1 <= marker <= 0xEF:
                problems.append(f"JPEG segment 0xFF{marker:02X}")
            i += 2 + length
    return problems


# ---- the world ----------------------------------------------------------------------------------------------


@dataclass
class Needles:
    """What must not appear. `ids` are only findings when the request did not name them itself (a 404 for a
    guessed id may repeat the id it was asked for)."""

    text: dict[str, str] = field(default_factory=dict)  # needle -> what it is
    ids: dict[str, str] = field(default_factory=dict)
    once_public: set[str] = field(default_factory=set)  # public for a while, then taken down

    def live(self) -> tuple[dict[str, str], dict[str, str]]:
        """The needles for what a live subscriber received as it happened: less what was public then."""
        return ({n: w for n, w in self.text.items() if n not in self.once_public},
                {n: w for n, w in self.ids.items() if n not in self.once_public})

    def add(self, what: str, needle: str, once_public: bool = False) -> str:
        assert len(needle) >= 6, needle
        self.text[needle] = what
        if once_public:
            self.once_public.add(needle)
        return needle

    def add_id(self, what: str, item_id: str, once_public: bool = False) -> str:
        self.ids[item_id] = what
        if once_public:
            self.once_public.add(item_id)
        return item_id

    def add_point(self, what: str, lat: float, lon: float) -> None:
        for needle in coord_needles(lat, lon):
            self.add(f"{what} coordinate", needle)


@dataclass
class World:
    client: TestClient
    tag: str
    tokens: dict[str, str]
    users: dict[str, Json]
    needles: Needles
    updates: dict[str, Json] = field(default_factory=dict)
    rumours: dict[str, Json] = field(default_factory=dict)
    photos: dict[str, Json] = field(default_factory=dict)
    zones: dict[str, Json] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, Json] = field(default_factory=dict)
    public_ids: set[str] = field(default_factory=set)  # items the public may see in the end
    withdrawn: set[str] = field(default_factory=set)  # rumours answered in public, then taken off the board
    retracted: dict[str, str] = field(default_factory=dict)  # update id -> its author's role name
    exif_update: str = ""  # a public warning placed only by its photo's EXIF GPS
    officer_hidden: dict[str, str] = field(default_factory=dict)  # needle -> what, for the officer crawl
    requests: int = 0

    def idem(self) -> dict[str, str]:
        return {"Idempotency-Key": self.needles.add("idempotency key", mark("idem"))}

    async def call(self, method: str, path: str, who: str | None, expect: int, **kw: Any) -> Any:
        headers = {**auth(self.tokens[who] if who else None), **kw.pop("headers", {})}
        if method == "POST" and "Idempotency-Key" not in headers:
            headers.update(self.idem())
        resp = await self.client.request(method, path, headers=headers, **kw)
        self.requests += 1
        body = await resp.read()
        assert resp.status == expect, f"{method} {path} as {who}: {resp.status} {body[:500]!r}"
        return None if not body or resp.content_type != "application/json" and "json" not in resp.content_type \
            else await resp.json(content_type=None)

    async def post_update(self, who: str, text: str, **body: Any) -> Json:
        out: Json = await self.call("POST", f"/api/v1/events/{self.tag}/updates", who, 201, json={"text": text, **body})
        self.updates[out["id"]] = out
        return out

    async def upload(self, who: str, data: bytes, filename: str, content_type: str) -> Json:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type=content_type)
        out: Json = await self.call("POST", "/api/v1/photos", who, 201, data=form)
        self.photos[out["id"]] = out
        return out


async def build_world(client: TestClient, on_event: Callable[[World], Awaitable[None]] | None = None) -> World:
    needles = Needles()
    app = client.app
    admin_callsign = "ADM" + hexid(4)
    admin_token = await make_user(app, "admin", admin_callsign, name=mark("name-admin"))
    world = World(client, "leakhunt_" + hexid(3), {"admin": admin_token}, {}, needles)
    needles.add("admin callsign", admin_callsign)
    needles.add("token", admin_token)

    # Accounts, through the API: names and callsigns carry markers; PUB's callsign is public by design.
    for who, role in (("control", "control"), ("int", "officer"), ("pub", "officer"), ("far", "officer"),
                      ("gone", "officer")):
        callsign = f"{who.upper()}{hexid(4)}"
        name = needles.add(f"user name of {who}", mark(f"name-{who}"))
        out = await world.call("POST", "/api/v1/users", "admin", 201,
                               json={"name": name, "callsign": callsign, "role": role})
        world.tokens[who] = needles.add(f"token of {who}", out["token"])
        world.users[who] = out
        if who != "pub":
            needles.add(f"callsign of {who}", callsign)
            needles.add_id(f"user id of {who}", out["id"])
    needles.add_id("admin id", (await world.call("GET", "/api/v1/me", "admin", 200))["id"])

    tag = world.tag
    await world.call("POST", "/api/v1/events", "control", 201, json={
        "tag": "#" + tag.upper(), "title": "Leak hunt: conference march", "status": "live",
        "description": "A public description of the march.", "starts_at": "2011-03-12T09:00:00Z"})
    if on_event is not None:
        await on_event(world)

    # Zones: a public one, an internal one round it (so a public update lies in both), an internal route, and a
    # public one deleted later.
    zone = await world.call("POST", f"/api/v1/events/{tag}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [PUBLIC_ZONE]},
        "properties": {"name": "Devonshire Green demonstration area", "kind": "demonstration-area",
                       "visibility": "public"}})
    world.zones[zone["id"]] = zone
    world.public_ids.add(zone["id"])
    (la, lb), (oa, ob) = INTERNAL_ZONE_LAT, INTERNAL_ZONE_LON
    internal_zone_name = needles.add("internal zone name", mark("zone-internal"))
    zone = await world.call("POST", f"/api/v1/events/{tag}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[oa, la], [ob, la], [ob, lb], [oa, lb], [oa, la]]]},
        "properties": {"name": internal_zone_name, "kind": "cordon", "visibility": "internal", "buffer_m": 25}})
    world.zones[zone["id"]] = zone
    needles.add_id("internal zone id", zone["id"])
    needles.add_point("internal zone corner", la, oa)
    needles.add_point("internal zone corner", lb, ob)
    route = await world.call("POST", f"/api/v1/events/{tag}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "LineString", "coordinates": [
            [SECRET_POINTS["update-internal"][1], SECRET_POINTS["update-internal"][0]],
            [SECRET_POINTS["update-internal-2"][1], SECRET_POINTS["update-internal-2"][0]]]},
        "properties": {"name": needles.add("internal route name", mark("route")), "kind": "march-route",
                       "buffer_m": 40}})
    needles.add_id("internal route id", route["id"])
    doomed = await world.call("POST", f"/api/v1/events/{tag}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.4750, 53.3850]},
        "properties": {"name": needles.add("deleted zone name", mark("zone-deleted"), once_public=True), "kind": "rendezvous",
                       "visibility": "public", "buffer_m": 30}})

    # Positions: every officer's is secret, forever.
    async def position(who: str, point: str, **extra: Any) -> None:
        lat, lon = SECRET_POINTS[point]
        needles.add_point(point, lat, lon)
        await world.call("POST", f"/api/v1/events/{tag}/positions", who, 204,
                         json={"lat": lat, "lon": lon, "accuracy_m": 7, **extra})

    await position("int", "position-int")
    await position("pub", "position-pub")
    await position("far", "position-far")
    for name in ("update-internal", "update-internal-2", "rumour-location", "rumour2-location",
                 "rumour-source-location", "sighting-location", "report-location", "exif-jpeg", "exif-png",
                 "alert-location", "exif-in-public-zone"):
        needles.add_point(name, *SECRET_POINTS[name])

    # Photos: metadata markers in every block; the DateTimeOriginal is distinctive too.
    def jpeg(colour: tuple[int, int, int], who: str, point: str = "exif-jpeg") -> bytes:
        return jpeg_with_metadata(
            colour, SECRET_POINTS[point], make=needles.add("EXIF Make", mark(f"make-{who}")),
            artist=needles.add("EXIF Artist", mark(f"artist-{who}")), xmp=needles.add("XMP", mark(f"xmp-{who}")),
            comment=needles.add("JPEG comment", mark(f"comment-{who}")), taken="2011:03:12 09:58:17")

    needles.add("EXIF DateTimeOriginal", "09:58:17")
    p_public = await world.upload("pub", jpeg((200, 30, 30), "public"), "roof.jpg", "image/jpeg")
    p_internal = await world.upload("int", jpeg((30, 200, 30), "internal"), "kettle.jpg", "image/jpeg")
    p_retracted = await world.upload("pub", jpeg((30, 30, 200), "retracted"), "gone.jpg", "image/jpeg")
    p_unused = await world.upload("int", jpeg((200, 200, 30), "unused"), "unused.jpg", "image/jpeg")
    p_exif = await world.upload("pub", jpeg((90, 90, 200), "exif", "exif-in-public-zone"), "placed.jpg", "image/jpeg")
    for photo in (p_internal, p_unused):
        needles.add_id("photo the public may not see", photo["id"])
    needles.add_id("photo of a retracted update", p_retracted["id"], once_public=True)
    world.public_ids.add(p_public["id"])
    assert p_public["location"] is not None and p_public["taken_at"] == "2011-03-12T09:58:17Z"

    # Updates.
    u1 = await world.post_update("pub", "Public: the march has left Devonshire Green #leakhunt",
                                 visibility="public", location=L_U1, photos=[p_public["id"]])
    u2 = await world.post_update("pub", "Public warning: crush risk at the gate, keep left", visibility="public",
                                 kind="warning", location=L_U2)
    assert {z["name"] for z in u2["zones"]} == {"Devonshire Green demonstration area", internal_zone_name}
    u3 = await world.post_update("int", needles.add("internal update text", mark("update-internal")) + " #"
                                 + needles.add("internal hashtag", "leaktag" + hexid(4)),
                                 location={"lat": SECRET_POINTS["update-internal"][0],
                                           "lon": SECRET_POINTS["update-internal"][1], "accuracy_m": 3},
                                 photos=[p_internal["id"], p_public["id"]], captured_at="2011-03-12T10:01:02+01:00")
    u4 = await world.post_update("int", needles.add("internal warning", mark("warning-internal")), kind="warning",
                                 location={"lat": SECRET_POINTS["update-internal-2"][0],
                                           "lon": SECRET_POINTS["update-internal-2"][1]})
    u5 = await world.post_update("int", needles.add("internal alert update", mark("alert-update")), kind="alert",
                                 visibility="internal", reply_to=u3["id"])
    u6 = await world.post_update("pub", "Public: all calm at Barkers Pool", visibility="public", location=L_U6,
                                 reply_to=u3["id"])
    u7 = await world.post_update("pub", needles.add("retracted public update", mark("retracted"), once_public=True),
                                 visibility="public", location=L_RETRACTED, photos=[p_retracted["id"]])
    u8 = await world.post_update("pub", needles.add("retracted public warning", mark("retracted-warning"), once_public=True),
                                 visibility="public", kind="warning", location=L_RETRACTED)
    u10 = await world.post_update("control", needles.add("control's internal update", mark("update-control")))
    u11 = await world.post_update("pub", "Public: no location on this one", visibility="public", reply_to=u7["id"])
    # No location sent: the photo's EXIF GPS places it, for officers only. A warning, so CAP is tried too.
    u12 = await world.post_update("pub", "Public warning: loose railings, see the photo", visibility="public",
                                  kind="warning", photos=[p_exif["id"]])
    assert u12["location"] is not None and u12["location"]["source"] == "exif"  # the author sees it
    assert "Devonshire Green demonstration area" in [z["name"] for z in u12["zones"]]
    world.exif_update = u12["id"]
    world.public_ids.update({u12["id"], p_exif["id"]})
    for u in (u3, u4, u5, u10):
        needles.add_id("internal update id", u["id"])
    world.public_ids.update({u1["id"], u2["id"], u6["id"], u11["id"]})

    # The multipart form, with a PNG full of text chunks.
    form = aiohttp.FormData()
    form.add_field("update", '{"text": "Public: photo of the crowd", "visibility": "public", "location": '
                   f'{{"lat": {L_U9["lat"]}, "lon": {L_U9["lon"]}}}}}', content_type="application/json")
    form.add_field("photo", png_with_metadata(SECRET_POINTS["exif-png"], needles.add("PNG EXIF Make", mark("pngmake")),
                                              needles.add("PNG text", mark("pngtext"))),
                   filename="crowd.png", content_type="image/png")
    u9 = await world.call("POST", f"/api/v1/events/{tag}/updates", "pub", 201, data=form)
    world.updates[u9["id"]] = u9
    world.public_ids.update({u9["id"], u9["photos"][0]["id"]})

    # Amplifications: of internal updates by everyone; of a public one by PUB only (its callsign is public).
    for who, u in (("int", u3), ("pub", u4), ("far", u5), ("control", u3), ("pub", u1)):
        await world.call("POST", f"/api/v1/updates/{u['id']}/amplify", who, 200)

    # Reports from the public, with contacts.
    async def report(text_kind: str, where: str | None) -> str:
        body: Json = {"text": needles.add("report text", mark(text_kind)),
                      "contact": needles.add("report contact", f"leak.{hexid()}@example.invalid")}
        if where:
            body["location"] = {"lat": SECRET_POINTS[where][0], "lon": SECRET_POINTS[where][1]}
        out = await world.call("POST", f"/api/v1/events/{tag}/reports", None, 202, json=body)
        assert set(out) == {"id"}
        world.reports[out["id"]] = body["contact"]
        needles.add_id("report id", out["id"])
        world.officer_hidden[body["contact"]] = "report contact"
        return str(out["id"])

    rep1 = await report("report-1", "report-location")
    rep2 = await report("report-2", None)
    # A report with a photo (full of metadata): the photo is never public.
    report_form = aiohttp.FormData()
    pic_contact = needles.add("report contact", f"pic.{hexid()}@example.invalid")
    world.officer_hidden[pic_contact] = "report contact"
    report_form.add_field("report", orjson.dumps({"text": needles.add("photo report text", mark("photo-report")),
                                                  "contact": pic_contact}).decode(), content_type="application/json")
    report_form.add_field("photo", jpeg((90, 60, 200), "report"), filename="report.jpg", content_type="image/jpeg")
    photo_report = await world.call("POST", f"/api/v1/events/{tag}/reports", None, 202, data=report_form)
    needles.add_id("report id", photo_report["id"])
    officer_reports = await world.call("GET", f"/api/v1/events/{tag}/reports", "int", 200)
    report_photo = next(r for r in officer_reports["items"] if r["id"] == photo_report["id"])["photos"][0]
    world.photos[report_photo["id"]] = report_photo
    needles.add_id("photo sent with a report", report_photo["id"])

    # Rumours.
    async def rumour(claim: str, who: str = "int", location: str | None = "rumour-location", **body: Any) -> Json:
        if location:
            body["location"] = {"lat": SECRET_POINTS[location][0], "lon": SECRET_POINTS[location][1]}
        out: Json = await world.call("POST", f"/api/v1/events/{tag}/rumours", who, 201, json={"claim": claim, **body})
        world.rumours[out["id"]] = out
        return out

    source = {"text": needles.add("rumour source text", mark("source")),
              "url": "https://leak.example/" + needles.add("rumour source url", mark("source-url")),
              "seen_at": "2011-03-12T10:30:00Z",
              "location": {"lat": SECRET_POINTS["rumour-source-location"][0],
                           "lon": SECRET_POINTS["rumour-source-location"][1]}}
    r1 = await rumour(needles.add("unanswered rumour", mark("rumour-unanswered")), source=source)
    await world.call("POST", f"/api/v1/rumours/{r1['id']}/sightings", "int", 201, json={
        "text": needles.add("sighting text", mark("sighting")),
        "url": "http://leak.example/" + needles.add("sighting url", mark("sighting-url")),
        "location": {"lat": SECRET_POINTS["sighting-location"][0], "lon": SECRET_POINTS["sighting-location"][1]}})
    await world.call("POST", f"/api/v1/rumours/{r1['id']}/sightings", "int", 201, json={"report_id": rep1})

    # R2: answered in public; its claim is public, nothing else of it.
    r2 = await rumour("Public claim: police snipers on the roofs", location="rumour2-location",
                      source={"text": needles.add("answered rumour's source", mark("source-2"))})
    await world.call("POST", f"/api/v1/rumours/{r2['id']}/sightings", "far", 201, json={"report_id": rep2})
    await world.call("POST", f"/api/v1/rumours/{r2['id']}/sightings", "far", 201,
                     json={"text": needles.add("answered rumour's sighting", mark("sighting-2"))})
    await world.call("POST", f"/api/v1/rumours/{r2['id']}/rebuttals", "pub", 201, json={
        "verdict": "false", "text": "Public: no snipers; this is the roof, photographed just now",
        "location": L_REBUT, "photos": [p_public["id"]]})
    await world.call("PATCH", f"/api/v1/rumours/{r2['id']}", "control", 200, json={"status": "false"})
    world.public_ids.add(r2["id"])

    # R7: answered in public with a photo and no location sent: the answer is placed by EXIF, for officers only.
    r7 = await rumour("Public claim: the railings have been removed", location=None)
    r7_out = await world.call("POST", f"/api/v1/rumours/{r7['id']}/rebuttals", "pub", 201, json={
        "verdict": "misleading", "text": "Public: one railing is loose, the rest stand", "photos": [p_exif["id"]]})
    r7_answer = await world.call("GET", f"/api/v1/updates/{r7_out['rebuttals'][-1]['update_id']}", "pub", 200)
    assert r7_answer["location"]["source"] == "exif", r7_answer["location"]
    world.public_ids.update({r7["id"], r7_answer["id"]})

    # R3: rebutted by INT in public, then INT retracts the rebuttal: the rumour leaves the board.
    r3 = await rumour(needles.add("rumour whose rebuttal was retracted", mark("rumour-unrebutted"), once_public=True))
    r3_out = await world.call("POST", f"/api/v1/rumours/{r3['id']}/rebuttals", "int", 201, json={
        "verdict": "false", "text": needles.add("retracted rebuttal text", mark("rebuttal-retracted"), once_public=True),
        "location": L_REBUT})
    r3_update = r3_out["rebuttals"][-1]["update_id"]
    await world.call("DELETE", f"/api/v1/updates/{r3_update}", "int", 200)
    # INT's only public post, now retracted: its callsign and id were public while it stood.
    needles.once_public.update({world.users["int"]["callsign"], world.users["int"]["id"]})
    world.retracted[r3_update] = "int"

    # R4: a verdict set by control without a rebuttal publishes nothing.
    r4 = await rumour(needles.add("verdict without rebuttal", mark("rumour-verdict-only")))
    await world.call("PATCH", f"/api/v1/rumours/{r4['id']}", "control", 200, json={"status": "investigating"})
    await world.call("PATCH", f"/api/v1/rumours/{r4['id']}", "control", 200, json={"status": "misleading"})

    # R5: answered (with the public U6), then withdrawn by control.
    r5 = await rumour(needles.add("withdrawn rumour", mark("rumour-withdrawn"), once_public=True), location=None)
    await world.call("POST", f"/api/v1/rumours/{r5['id']}/rebuttals", "pub", 201,
                     json={"verdict": "misleading", "update_id": u6["id"]})
    await world.call("PATCH", f"/api/v1/rumours/{r5['id']}", "control", 200, json={"status": "investigating"})

    # R6: answered with U7, which is then retracted (by control) along with U8 (by its author).
    r6 = await rumour(needles.add("rumour answered by a retracted update", mark("rumour-r6"), once_public=True))
    await world.call("POST", f"/api/v1/rumours/{r6['id']}/rebuttals", "pub", 201,
                     json={"verdict": "true", "update_id": u7["id"]})
    await world.call("DELETE", f"/api/v1/updates/{u7['id']}", "control", 200)
    await world.call("DELETE", f"/api/v1/updates/{u8['id']}", "pub", 200)
    world.retracted.update({u7["id"]: "pub", u8["id"]: "pub"})
    for r in (r1, r4):
        needles.add_id("rumour the public never saw", r["id"])
    world.withdrawn = {r3["id"], r5["id"], r6["id"]}  # once public: their ids may come back as tombstones

    # Alerts: one to INT and PUB, one to FAR only; INT acknowledges its own.
    lat, lon = SECRET_POINTS["alert-location"]
    a1 = await world.call("POST", f"/api/v1/events/{tag}/alerts", "control", 201, json={
        "text": needles.add("alert text", mark("alert-1")), "location": {"lat": lat, "lon": lon}, "radius_m": 1000})
    assert {r["callsign"] for r in a1["recipients"]} == {world.users["int"]["callsign"], world.users["pub"]["callsign"]}
    flat, flon = SECRET_POINTS["position-far"]
    far_text = needles.add("alert to FAR only", mark("alert-far"))
    a2 = await world.call("POST", f"/api/v1/events/{tag}/alerts", "control", 201, json={
        "text": far_text, "location": {"lat": flat, "lon": flon}, "radius_m": 200})
    assert [r["callsign"] for r in a2["recipients"]] == [world.users["far"]["callsign"]]
    world.officer_hidden[far_text] = "an alert not sent to INT"
    await world.call("POST", f"/api/v1/alerts/{a1['id']}/ack", "int", 204)
    await world.call("POST", f"/api/v1/alerts/{a2['id']}/ack", "far", 204)
    world.alerts = {a1["id"]: a1, a2["id"]: a2}
    for a in (a1, a2):
        needles.add_id("alert id", a["id"])

    # Answers awaiting a second pair of eyes (the event now asks for approval): none of it may be public.
    await world.call("PATCH", f"/api/v1/events/{tag}", "control", 200, json={"answer_approval": "second-control"})
    # On R2, already on the board: a second-form answer with a new verdict, waiting; its update is internal.
    waiting = await world.call("POST", f"/api/v1/rumours/{r2['id']}/rebuttals", "pub", 201, json={
        "verdict": "true", "text": needles.add("pending answer text", mark("pending-answer")),
        "location": {"lat": SECRET_POINTS["update-internal"][0], "lon": SECRET_POINTS["update-internal"][1]},
        "photos": [p_internal["id"]], "checks": {"names_person": True}})
    needles.add_id("pending answer's update", waiting["pending_answer"]["update_id"])
    # On R1 (never public): an answer proposed, then rejected with a reason.
    rejected = await world.call("POST", f"/api/v1/rumours/{r1['id']}/rebuttals", "int", 201, json={
        "verdict": "false", "text": needles.add("rejected answer text", mark("rejected-answer"))})
    needles.add_id("rejected answer's update", rejected["pending_answer"]["update_id"])
    await world.call("POST", f"/api/v1/rumours/{r1['id']}/answer/reject", "control", 200,
                     json={"reason": needles.add("rejection reason", mark("reject-reason"))})
    # On R5 (withdrawn earlier): a first-form answer with the public U1, waiting; the rumour must stay down.
    await world.call("POST", f"/api/v1/rumours/{r5['id']}/rebuttals", "int", 201,
                     json={"verdict": "unproven", "update_id": u1["id"], "checks": {"mentions_minor": True}})

    # Late changes: INT moves, the doomed public zone goes, a revoked account.
    await position("int", "position-int-2", at="2099-01-01T00:00:00Z")
    await world.call("DELETE", f"/api/v1/zones/{doomed['id']}", "control", 204)
    await world.call("DELETE", f"/api/v1/users/{world.users['gone']['callsign']}", "admin", 204)
    await world.call("PATCH", f"/api/v1/events/{tag}", "control", 200, json={"title": "Leak hunt: conference march"})
    for who in ("int", "pub", "far"):
        needles.add_id("position id", f"pos_{tag}_{world.users[who]['id']}")
    return world


# ---- the crawl ----------------------------------------------------------------------------------------------


@dataclass
class Finding:
    url: str
    what: str
    needle: str
    where: str

    def __str__(self) -> str:
        return f"{self.url}: {self.what} ({self.needle!r}) in {self.where}"


class _Tap:
    """A byte source for SSEReader that keeps every byte it passes on."""

    def __init__(self, source: aiohttp.StreamReader) -> None:
        self.source = source
        self.raw = bytearray()

    async def readany(self) -> bytes:
        data = await self.source.readany()
        self.raw += data
        return data


@dataclass
class Crawler:
    base: Callable[[str], Any]
    session: aiohttp.ClientSession
    needles: dict[str, str]
    ids: dict[str, str]
    token: str | None = None
    findings: list[Finding] = field(default_factory=list)
    urls: set[str] = field(default_factory=set)
    fetched: int = 0
    bodies: dict[str, bytes] = field(default_factory=dict)

    def search(self, url: str, where: str, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        lowered = text.lower()
        raw_lower = data.lower()
        for needle, what in self.needles.items():
            n = needle.lower()
            if n in lowered or n.encode() in raw_lower:
                self.findings.append(Finding(url, what, needle, where))
        for item_id, what in self.ids.items():
            if item_id in url:
                continue
            if item_id in text:
                self.findings.append(Finding(url, what, item_id, where))

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**auth(self.token), **(extra or {})}

    async def get(self, url: str, *, expect: Iterable[int] = (200,), headers: dict[str, str] | None = None) -> bytes:
        """GET it plain and gzip-encoded; search headers and bodies; return the plain body."""
        self.urls.add(url)
        plain = b""
        for encoding in ("identity", "gzip"):
            async with self.session.get(self.base(url), headers=self.headers(
                    {"Accept-Encoding": encoding, **(headers or {})})) as resp:
                raw = await resp.read()
                self.fetched += 1
                assert resp.status in tuple(expect), f"GET {url} ({encoding}): {resp.status} {raw[:300]!r}"
                header_text = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()).encode()
                self.search(url, f"headers ({encoding})", header_text)
                body = gzip.decompress(raw) if resp.headers.get("Content-Encoding") == "gzip" else raw
                self.search(url, f"body ({encoding}{', gzip' if body is not raw else ''})", body)
                if body is not raw:
                    self.search(url, "gzip bytes", raw)
                if encoding == "identity":
                    plain = body
                    self.bodies[url] = body
        return plain

    async def post(self, url: str, json: Json, expect: int) -> bytes:
        self.urls.add("POST " + url)
        async with self.session.post(self.base(url), json=json, headers=self.headers()) as resp:
            raw = await resp.read()
            self.fetched += 1
            assert resp.status == expect, f"POST {url}: {resp.status} {raw[:300]!r}"
            self.search("POST " + url, "body", raw)
            self.search("POST " + url, "headers", "\n".join(f"{k}: {v}" for k, v in resp.headers.items()).encode())
            return raw

    async def stream(self, url: str, headers: dict[str, str] | None = None, quiet_s: float = 0.6) -> list[Json]:
        """Read a stream's replay until it has been quiet for `quiet_s`; search every byte of it."""
        self.urls.add(url + (f" {headers}" if headers else ""))
        events: list[Json] = []
        async with self.session.get(self.base(url), headers=self.headers(headers)) as resp:
            self.fetched += 1
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "text/event-stream"
            tap = _Tap(resp.content)
            reader = SSEReader(tap)
            while True:
                try:
                    event = await reader.next(within=quiet_s)
                except TimeoutError:
                    break
                if event is None:
                    break
                events.append({"type": event.type, "id": event.id, "data": event.json()})
        self.search(url + (f" {headers}" if headers else ""), "stream", bytes(tap.raw))
        return events


def bbox_param(lat: tuple[float, float], lon: tuple[float, float]) -> str:
    return f"{lon[0]},{lat[0]},{lon[1]},{lat[1]}"


WORLD_BOX = "-180,-90,180,90"
SECRET_BOX = bbox_param((53.19, 53.40), (-1.52, -1.29))  # every secret point, and the public ones
PUBLIC_BOX = bbox_param((53.3800, 53.3880), (-1.4870, -1.4700))


async def crawl(world: World, crawler: Crawler, *, as_officer: bool = False) -> dict[str, Any]:
    """Every surface: lists with every filter, items by id, the map, the stream, pages, feeds, CAP, media."""
    tag = world.tag
    public = crawler.token is None
    not_found = (404,)
    seen: dict[str, Any] = {}

    await crawler.get("/healthz")
    await crawler.get("/api/v1/openapi.json")
    await crawler.get("/metrics", expect=(401,) if public else (403,))
    await crawler.get("/api/v1/chain/head", expect=(401,) if public else (403,))
    await crawler.get("/api/v1/me", expect=(401,) if public else (200,))
    await crawler.get("/api/v1/push/key", expect=(401,) if public else (200,))  # the VAPID public key only
    events = await crawler.get("/api/v1/events")
    assert tag.encode() in events
    await crawler.get(f"/api/v1/events/{tag}")
    await crawler.get(f"/api/v1/events/%23{tag.upper()}")

    # Updates, with every filter combination.
    last_seq = int(orjson.loads(await crawler.get("/healthz"))["seq"])
    pagings: list[dict[str, Any]] = [{}, {"since": 0}, {"since": 1}, {"before": last_seq + 1}, {"before": last_seq // 2}]
    listed: set[str] = set()
    for paging, kind, vis, bbox, limit in itertools.product(
            pagings, (None, "info", "warning", "alert"), (None, "public", "internal"),
            (None, WORLD_BOX, SECRET_BOX, PUBLIC_BOX), (None, 1, 500)):
        if limit == 1 and (kind or vis or bbox):
            continue  # limit=1 with every filter adds requests, not coverage
        params = {**paging, **{k: v for k, v in (("kind", kind), ("visibility", vis), ("bbox", bbox),
                                                 ("limit", limit)) if v is not None}}
        url = f"/api/v1/events/{tag}/updates" + ("?" + urlencode(params) if params else "")
        body = await crawler.get(url)
        for item in orjson.loads(body)["items"]:
            listed.add(item["id"])
    seen["listed_updates"] = listed

    # Every id we know, and the retracted rebuttal's: JSON, CAP, amplify/retract attempts.
    known_updates = set(world.updates) | {r["update_id"] for rum in world.rumours.values()
                                          for r in rum.get("rebuttals", [])}
    for update_id in sorted(known_updates):
        visible = update_id in world.public_ids
        if not public:  # an officer sees every update but others' retracted ones
            visible = world.retracted.get(update_id, "int") == "int"
        await crawler.get(f"/api/v1/updates/{update_id}", expect=(200,) if visible else not_found)
        visible = update_id in world.public_ids  # CAP is a publication: the public view for everyone
        is_warning = world.updates.get(update_id, {}).get("kind") == "warning"
        # A public warning since retracted answers a CAP Cancel (which must carry nothing of it).
        cancelled = update_id in world.retracted and world.updates.get(update_id, {}).get("visibility") == "public"
        await crawler.get(f"/api/v1/updates/{update_id}/cap",
                          expect=(200,) if (visible or cancelled) and is_warning else not_found)
    await crawler.get(f"/api/v1/updates/upd_{'0' * 16}", expect=not_found)

    # Rumours.
    for status in (None, "unverified", "investigating", "false", "misleading", "true", "unproven"):
        for paging in ({}, {"since": 0}, {"before": last_seq + 1}, {"limit": 1}):
            params = {**paging, **({"status": status} if status else {})}
            await crawler.get(f"/api/v1/events/{tag}/rumours" + ("?" + urlencode(params) if params else ""))
    for rumour_id in world.rumours:
        visible = rumour_id in world.public_ids
        await crawler.get(f"/api/v1/rumours/{rumour_id}", expect=(200,) if visible or not public else not_found)

    # Reports, alerts, officers: staff only.
    staff = (401,) if public else (200,)
    await crawler.get(f"/api/v1/events/{tag}/reports", expect=staff)
    await crawler.get(f"/api/v1/events/{tag}/reports?since=0", expect=staff)
    await crawler.get(f"/api/v1/events/{tag}/officers", expect=(401,) if public else (403,))
    lat, lon = SECRET_POINTS["position-int"]
    await crawler.get(f"/api/v1/events/{tag}/officers/nearby?lat={lat}&lon={lon}&radius_m=50000", expect=staff)
    await crawler.get(f"/api/v1/events/{tag}/alerts", expect=staff)
    await crawler.get(f"/api/v1/events/{tag}/alerts?since=0", expect=staff)
    for alert_id, alert in world.alerts.items():
        recipient = not public and any(r["id"] == world.users["int"]["id"] for r in alert["recipients"])
        await crawler.get(f"/api/v1/alerts/{alert_id}", expect=(401,) if public else (200,) if recipient else (404,))

    # Evidence: the access log (admin), originals, exports and the decision log (control), the signing key (anyone).
    await crawler.get("/api/v1/audit", expect=(401,) if public else (403,))
    await crawler.get("/api/v1/audit?since=0", expect=(401,) if public else (403,))
    await crawler.get("/api/v1/chain/key")
    control_only = (401,) if public else (403,)
    await crawler.get(f"/api/v1/events/{tag}/export?reason=leak+hunt", expect=control_only)
    await crawler.get(f"/api/v1/events/{tag}/decisions", expect=control_only)
    await crawler.get(f"/api/v1/events/{tag}/decisions/dec_{'0' * 16}", expect=control_only)
    await crawler.get(f"/api/v1/decisions/dec_{'0' * 16}", expect=control_only)
    for photo_id in sorted(world.photos):
        body = await crawler.get(f"/api/v1/photos/{photo_id}", expect=staff)
        if not public:
            assert "original" not in orjson.loads(body), "an officer sees a photo's original"
        await crawler.get(f"/api/v1/photos/{photo_id}/original?reason=leak+hunt", expect=control_only)

    # Zones and the map, for every layer combination, box and zoom.
    await crawler.get(f"/api/v1/events/{tag}/zones")
    layer_sets = [",".join(c) for n in range(0, 5) for c in itertools.combinations(
        ("updates", "rumours", "zones", "officers"), n)]
    clusters = 0
    for layers, zoom, bbox, since in itertools.product(layer_sets, (None, 0, 12, 18), (None, WORLD_BOX, SECRET_BOX),
                                                       (None, 0)):
        params = {k: v for k, v in (("layers", layers or None), ("zoom", zoom), ("bbox", bbox), ("since", since))
                  if v is not None}
        url = f"/api/v1/events/{tag}/map" + ("?" + urlencode(params) if params else "")
        wants_officers = "officers" in layers
        body = await crawler.get(url, expect=((401,) if public else (403,)) if wants_officers else (200,))
        if not wants_officers:
            for feature in orjson.loads(body)["features"]:
                props = feature["properties"]
                assert props["layer"] != "officers", url
                if props["layer"] == "cluster":
                    clusters += 1
                    if public:
                        assert props["count"] <= 5, f"{url}: a cluster counts items the public may not see"
    seen["clusters"] = clusters

    # The stream, replayed from 0 both ways, and from the middle.
    streamed = await crawler.stream(f"/api/v1/events/{tag}/stream?since=0")
    await crawler.stream(f"/api/v1/events/{tag}/stream", headers={"Last-Event-ID": "0"})
    await crawler.stream(f"/api/v1/events/{tag}/stream?since={last_seq // 2}")
    await crawler.stream(f"/api/v1/events/{tag}/stream", headers={"Last-Event-ID": "not-a-number"})
    seen["streamed"] = streamed

    # Pages and feeds.
    await crawler.get(f"/events/{tag}")
    await crawler.get(f"/events/{tag}?before={last_seq + 1}")
    await crawler.get(f"/events/{tag}?before={last_seq // 2}")
    await crawler.get(f"/events/{tag}/rumours")
    await crawler.get(f"/control/{tag}")
    await crawler.get(f"/events/{tag}/feed.atom")
    await crawler.get(f"/events/{tag}/alerts.atom")
    await crawler.get(f"/events/{tag}-nope", expect=not_found)
    # The handset app: the same bytes for everyone, holding no data (it reads the API with the token).
    for url in ("/app", "/app/manifest.webmanifest", "/app/sw.js", "/app/main.js", "/app/app.css",
                "/app/icon-192.png"):
        await crawler.get(url)
    await crawler.get("/app/nope.js", expect=not_found)

    # Photos: every id we know, full size and thumbnail.
    photo_ids = set(world.photos) | {p["id"] for u in world.updates.values() for p in u.get("photos", [])}
    for photo_id in sorted(photo_ids):
        visible = photo_id in world.public_ids or not public
        for suffix in ("", "/thumb"):
            data = await crawler.get(f"/media/{photo_id}{suffix}", expect=(200,) if visible else not_found)
            if visible:
                problems = metadata_problems(data)
                assert not problems, f"/media/{photo_id}{suffix} still carries metadata: {problems}"
    await crawler.get("/media/../../journal-0.log", expect=not_found)
    for photo_id in sorted(photo_ids):  # photos seen before: officers only
        await crawler.get(f"/api/v1/photos/{photo_id}/similar", expect=(401,) if public else (200,))

    # Every GET the document lists was crawled (a new endpoint must join the hunt).
    document = orjson.loads(crawler.bodies["/api/v1/openapi.json"])
    crawled = {url.split("?")[0].split(" ")[0] for url in crawler.urls}
    for template, item in document["paths"].items():
        if "get" in item:
            pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")
            assert any(pattern.match(url) for url in crawled), f"GET {template} was not crawled"

    # Writing as the public: a report's answer is its id, nothing more.
    if public and not as_officer:
        await crawler.post(f"/api/v1/events/{tag}/reports", {"text": "I heard there is a kettle at the gate"}, 202)
    return seen


@pytest.fixture
async def world(aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> World:
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, cluster_above=2,
                        report_rate_per_minute=6000, report_burst=100, auth_failures_per_minute=6000)
    client = await aiohttp_client(create_app(settings))
    return await build_world(client)


async def run_crawl(world: World, token: str | None, needles: dict[str, str], ids: dict[str, str],
                    **kw: Any) -> tuple[Crawler, dict[str, Any]]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        crawler = Crawler(lambda path: world.client.make_url(path), session, needles, ids, token=token)
        seen = await crawl(world, crawler, **kw)
    return crawler, seen


def summarise(crawler: Crawler, who: str) -> str:
    lines = [f"{who}: {crawler.fetched} requests over {len(crawler.urls)} URLs, {len(crawler.findings)} findings"]
    unique = {(f.url, f.what, f.needle): f for f in crawler.findings}
    lines += [f"  {f}" for f in list(unique.values())[:80]]
    return "\n".join(lines)


async def test_the_public_sees_no_internal_data(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    crawler, seen = await run_crawl(world, None, world.needles.text, world.needles.ids)
    summary = summarise(crawler, "public crawl")
    with capsys.disabled():
        print("\n" + summary)
    assert not crawler.findings, summary

    # And it did see what is public: the crawl would find nothing if it reached nothing.
    assert world.public_ids & seen["listed_updates"] == {u for u in world.public_ids if u.startswith("upd_")}
    assert seen["clusters"] > 0, "the map never clustered: the cluster counts were not checked"
    types = {e["type"] for e in seen["streamed"]}
    assert {"update", "update-retracted", "rumour", "zone", "zone-deleted"} <= types, types
    assert not types & {"position", "alert"}
    taken_down = {e["data"]["id"] for e in seen["streamed"] if e["type"] == "rumour" and e["data"].get("withdrawn")}
    assert taken_down == world.withdrawn, "a rumour taken off the board must be taken off the pages too"
    page = crawler.bodies[f"/events/{world.tag}"].decode()
    assert world.users["pub"]["callsign"] in page and "Public: all calm at Barkers Pool" in page
    # The update placed by EXIF is public, without its place: no location, no zone named by it.
    assert "loose railings" in page
    exif = orjson.loads(crawler.bodies[f"/api/v1/updates/{world.exif_update}"])
    assert exif["location"] is None and exif["zones"] == [], exif
    assert world.exif_update in seen["listed_updates"]
    board = crawler.bodies[f"/events/{world.tag}/rumours"].decode()
    assert "Public claim: police snipers on the roofs" in board
    assert len(crawler.urls) > 500


async def test_an_officer_sees_no_contact_and_no_alert_sent_to_others(world: World,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    needles = {**world.officer_hidden, world.tokens["control"]: "control's token",
               world.tokens["admin"]: "admin's token", world.tokens["far"]: "another officer's token"}
    ids = {a: "alert not sent to INT" for a, alert in world.alerts.items()
           if not any(r["id"] == world.users["int"]["id"] for r in alert["recipients"])}
    crawler, seen = await run_crawl(world, world.tokens["int"], needles, ids, as_officer=True)
    summary = summarise(crawler, "officer crawl")
    with capsys.disabled():
        print("\n" + summary)
    assert not crawler.findings, summary
    types = {e["type"] for e in seen["streamed"]}
    assert "alert" in types and "position" not in types, types


async def test_an_exif_location_answers_no_public_question_about_place(world: World) -> None:
    """Filters must not be an oracle for a location the public is not shown: a box round the EXIF point, or
    the map's box, finds the update for an officer and never for the public."""
    lat, lon = SECRET_POINTS["exif-in-public-zone"]
    box = bbox_param((lat - 0.0001, lat + 0.0001), (lon - 0.0001, lon + 0.0001))
    for who in (None, "int"):
        listed = await world.call("GET", f"/api/v1/events/{world.tag}/updates?{urlencode({'bbox': box})}", who, 200)
        fc = await world.call("GET", f"/api/v1/events/{world.tag}/map?{urlencode({'bbox': box})}", who, 200)
        on_map = [f["properties"]["id"] for f in fc["features"] if f["properties"]["layer"] == "updates"]
        for found in ([u["id"] for u in listed["items"]], on_map):
            if who is None:
                assert found == [], found  # neither the update nor the rebuttal placed by the same photo
            else:
                assert world.exif_update in found, found
    zones = await world.call("GET", f"/api/v1/updates/{world.exif_update}", None, 200)
    assert zones["location"] is None and zones["zones"] == []


@dataclass
class Listener:
    """A stream subscriber reading in the background, keeping every byte."""

    name: str
    task: asyncio.Task[None] | None = None
    raw: bytearray = field(default_factory=bytearray)

    async def start(self, session: aiohttp.ClientSession, url: Any, token: str | None) -> None:
        resp = await session.get(url, headers=auth(token))
        assert resp.status == 200

        async def read() -> None:
            try:
                async for data in resp.content.iter_any():
                    self.raw += data
            finally:
                resp.close()

        self.task = asyncio.create_task(read())
        await asyncio.sleep(0.05)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_replay_after_live_delivery_shows_nothing_taken_down(
        aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same event played with a public and an officer subscriber connected throughout: each receives only
    what it may see at the time, and a replay from 0 afterwards shows nothing that has been taken down since,
    whatever the broker kept from the live fan-out."""
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False,
                        report_rate_per_minute=6000, report_burst=100)
    client = await aiohttp_client(create_app(settings))
    listeners = {"public": Listener("public"), "int": Listener("int")}
    async with aiohttp.ClientSession() as session:

        async def subscribe(world: World) -> None:
            url = world.client.make_url(f"/api/v1/events/{world.tag}/stream")
            for who, listener in listeners.items():
                await listener.start(session, url, world.tokens.get(who))

        world = await build_world(client, on_event=subscribe)
        await asyncio.sleep(0.5)
        for listener in listeners.values():
            await listener.stop()

    async with aiohttp.ClientSession(auto_decompress=False) as session:
        live_text, live_ids = world.needles.live()
        live = Crawler(lambda path: client.make_url(path), session, live_text, live_ids)
        live.search("live public stream", "stream", bytes(listeners["public"].raw))
        officer_needles = {**world.officer_hidden, world.tokens["control"]: "control's token"}
        live.needles, live.ids = officer_needles, {}
        live.search("live officer stream", "stream", bytes(listeners["int"].raw))

        replay = Crawler(lambda path: client.make_url(path), session, world.needles.text, world.needles.ids)
        await replay.stream(f"/api/v1/events/{world.tag}/stream?since=0")
        await replay.stream(f"/api/v1/events/{world.tag}/stream", headers={"Last-Event-ID": "0"})
        findings = live.findings + replay.findings
    summary = "\n".join(str(f) for f in {(f.url, f.needle): f for f in findings}.values())
    with capsys.disabled():
        print(f"\nlive delivery then replay: {len(listeners['public'].raw)} + {len(listeners['int'].raw)} live bytes, "
              f"{len(findings)} findings\n{summary}")
    assert b"LEAK-" in listeners["int"].raw, "the officer's stream received nothing"
    assert not findings, summary
