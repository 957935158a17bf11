"""`fieldcomms demo`: the Sheffield 2011 event, so that a new user sees every page working at once.

Saturday 12 March 2011, the Liberal Democrat Spring Conference at Sheffield City Hall: the march from
Devonshire Green along Division Street to Barkers Pool, a morning of public and internal updates, two
photos, officers' positions, the sniper rumour answered with a photo from the roof, the kettle rumour, and
a report from the public. Every item keeps its 2011 time, so the officers' positions show as stale: this
is a record of that morning, not a live feed.

Everything goes through the same store, domain rules and photo intake as the API. The event is written
last and every other item has an id fixed by the demo, so a load that is interrupted can simply be run
again (it rewrites the same items), and one that finished is never loaded twice.
"""

from __future__ import annotations

import hashlib
import io
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .auth import hash_token, make_user, new_token
from .config import Settings
from .domain.positions import TRACKS as TRACK_POINTS
from .domain.positions import next_position
from .domain.rumours import rebuttal_url
from .domain.updates import build_update
from .domain.zones import build_zone
from .errors import DataDirLocked
from .media import MediaStore, process_photo
from .model import validate_event_create, validate_update, validate_user
from .rumours import lifecycle
from .services import Services
from .store import Store, StoreProtocol
from .visibility import Viewer

Doc = dict[str, Any]

TAG = "libdempolicing"
DAY = "2011-03-12"  # GMT: British Summer Time began on 27 March that year, so local time is UTC
EVENT = {
    "tag": TAG, "title": "Liberal Democrat Spring Conference, Sheffield", "status": "live",
    "description": "South Yorkshire Police at the Liberal Democrat Spring Conference, Sheffield City Hall, "
                   "and the march from Devonshire Green to Barkers Pool on Saturday 12 March 2011.",
    "starts_at": "2011-03-11T08:00:00Z", "ends_at": "2011-03-13T18:00:00Z",
}

# (callsign, name, role); the control user comes last so that its token is the last line printed.
USERS = [
    ("SY-1234", "PC Sarah Holt", "officer"),
    ("SY-2871", "PC Imran Qureshi", "officer"),
    ("SY-3310", "Sgt Dave Marsh", "officer"),
    ("SY-4102", "PC Helen Booth", "officer"),
    ("SY-SILVER", "Silver Control, Snig Hill", "control"),
]

DEVONSHIRE_GREEN = (53.3775, -1.4790)
DIVISION_ST = (53.3790, -1.4762)
HOLLY_ST = (53.3798, -1.4728)
BARKERS_POOL = (53.3800, -1.4710)
CITY_HALL = (53.3809, -1.4715)
WEST_ST = (53.3808, -1.4790)
FARGATE = (53.3816, -1.4690)
WELLINGTON_ST = (53.3768, -1.4755)

# name, kind, visibility, buffer_m, geometry ([lon, lat] as GeoJSON has it)
ZONES = [
    ("March route", "march-route", "public", 15, {"type": "LineString", "coordinates": [
        [-1.4790, 53.3775], [-1.4783, 53.3781], [-1.4776, 53.3786], [-1.4762, 53.3790], [-1.4745, 53.3794],
        [-1.4728, 53.3798], [-1.4718, 53.3800], [-1.4710, 53.3800]]}),
    ("Barkers Pool demonstration area", "demonstration-area", "public", 0, {"type": "Polygon", "coordinates": [[
        [-1.4724, 53.3794], [-1.4700, 53.3794], [-1.4700, 53.3805], [-1.4724, 53.3805], [-1.4724, 53.3794]]]}),
    ("City Hall cordon", "cordon", "internal", 0, {"type": "Polygon", "coordinates": [[
        [-1.4728, 53.3805], [-1.4702, 53.3805], [-1.4702, 53.3814], [-1.4728, 53.3814], [-1.4728, 53.3805]]]}),
    ("RVP Wellington Street", "rendezvous", "internal", 25, {"type": "Point", "coordinates": [-1.4755, 53.3768]}),
]

# key, time, callsign, visibility, kind, place, photo key or None, text
UPDATES = [
    ("hello", "08:05", "SY-SILVER", "public", "info", None, None,
     "Good morning from South Yorkshire Police. Officers are on duty across the city centre today for the "
     "conference and the march. Updates here through the day. #libdempolicing"),
    ("briefing", "08:30", "SY-3310", "internal", "info", WELLINGTON_ST, None,
     "Briefing done. Serials 1 to 6 deployed; carriers staged at the Wellington Street RVP."),
    ("route", "09:10", "SY-SILVER", "public", "info", DEVONSHIRE_GREEN, None,
     "The agreed march route: Devonshire Green, Division Street, Barkers Pool. Assembly on Devonshire Green "
     "from 11:00. #libdempolicing"),
    ("cordon", "09:40", "SY-1234", "internal", "info", CITY_HALL, None,
     "Cordon round City Hall in place. Delegates in through the Holly Street entrance only."),
    ("assembly", "10:15", "SY-2871", "public", "info", DEVONSHIRE_GREEN, "green",
     "Crowd building on Devonshire Green, good-natured so far. Stewards in orange at the front."),
    ("west_st", "10:40", "SY-2871", "internal", "alert", WEST_ST, None,
     "Group of about 30, faces covered, moving from West Street towards Devonshire Green. Spotters to confirm."),
    ("set_off", "11:05", "SY-SILVER", "public", "info", DIVISION_ST, None,
     "The march has set off along Division Street. Expect delays on Division Street and Rockingham Street "
     "until about 13:00."),
    ("crowding", "11:20", "SY-3310", "public", "warning", HOLLY_ST, None,
     "Crowd pressure where Division Street meets Holly Street. Keep left and follow the stewards; Cambridge "
     "Street is open as a way out. #libdempolicing"),
    ("kettle_check", "11:25", "SY-3310", "internal", "info", BARKERS_POOL, None,
     "Kettle rumour going round. Exits onto Pinstone Street and Division Street checked: both open."),
    ("roof", "11:42", "SY-4102", "public", "info", BARKERS_POOL, "roof",
     "The officers on the roof above Barkers Pool are our evidence-gathering team, with cameras. There are no "
     "snipers and no firearms officers on duty today. #libdempolicing"),
    ("exits", "11:50", "SY-1234", "public", "info", BARKERS_POOL, None,
     "Nobody is being held in Barkers Pool. The barriers are for safety; the ways out onto Pinstone Street "
     "and Division Street are open and you can leave at any time."),
    ("bottles", "12:05", "SY-1234", "internal", "warning", CITY_HALL, None,
     "Bottles thrown at the cordon line by the City Hall steps. No injuries. Serial 4 forward."),
    ("speeches", "12:20", "SY-SILVER", "public", "info", BARKERS_POOL, None,
     "Speeches under way at Barkers Pool. Thank you for keeping it peaceful. #libdempolicing"),
    ("fargate", "12:40", "SY-2871", "public", "info", FARGATE, None,
     "Fargate is closed to pedestrians."),
    ("arrest", "12:50", "SY-3310", "internal", "info", DIVISION_ST, None,
     "One arrest on Division Street, public order offence. Prisoner conveyed to Shepcote Lane."),
]
RETRACTED = {"fargate": ("12:44", "SY-SILVER")}  # posted in error: Fargate stayed open
AMPLIFIED = {"crowding": ["SY-1234", "SY-2871", "SY-SILVER"], "roof": ["SY-1234", "SY-SILVER"]}

# Where each officer was over the morning, oldest first; the last point is the latest position.
TRACKS = {
    "SY-1234": [("09:40", CITY_HALL), ("11:10", HOLLY_ST), ("11:50", BARKERS_POOL), ("12:30", (53.3806, -1.4722))],
    "SY-2871": [("10:15", DEVONSHIRE_GREEN), ("11:05", DIVISION_ST), ("12:40", (53.3812, -1.4698))],
    "SY-3310": [("08:30", WELLINGTON_ST), ("11:20", HOLLY_ST), ("12:50", (53.3793, -1.4752))],
    "SY-4102": [("10:50", (53.3803, -1.4706)), ("12:45", (53.3803, -1.4707))],
}


def at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00Z"


def moment(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{hhmm}:00+00:00").astimezone(UTC)


def demo_id(prefix: str, key: str) -> str:
    """Fixed ids, shaped like the server's own, so that a re-run rewrites rather than duplicates."""
    return f"{prefix}_{hashlib.sha256(f'fieldcomms-demo:{TAG}:{prefix}:{key}'.encode()).hexdigest()[:16]}"


def loc(place: tuple[float, float], accuracy_m: float = 10) -> Doc:
    return {"lat": place[0], "lon": place[1], "accuracy_m": accuracy_m}


# --- photos, drawn here so the demo needs no files ---------------------------------------------------------


def _caption(draw: ImageDraw.ImageDraw, size: tuple[int, int], text: str) -> None:
    font = ImageFont.load_default(size=38)
    draw.rectangle((0, size[1] - 70, size[0], size[1]), fill=(20, 24, 32))
    draw.text((24, size[1] - 58), text, fill=(255, 255, 255), font=font)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def roof_photo() -> bytes:
    """Two officers in yellow jackets with cameras on a parapet, City Hall's columns below."""
    size = (1200, 800)
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(size[1]):  # a grey March sky
        shade = 150 + y * 60 // size[1]
        draw.line((0, y, size[0], y), fill=(shade - 20, shade - 8, shade + 10))
    draw.rectangle((0, 470, size[0], 800), fill=(196, 188, 170))  # City Hall's portland stone
    for x in range(120, 1100, 120):
        draw.rectangle((x, 500, x + 40, 730), fill=(226, 220, 204))
    draw.rectangle((0, 430, size[0], 480), fill=(120, 112, 104))  # the parapet
    for x, colour in ((380, (236, 226, 40)), (640, (230, 220, 36))):
        draw.ellipse((x + 20, 200, x + 90, 270), fill=(224, 188, 160))  # head
        draw.rectangle((x + 18, 186, x + 92, 214), fill=(20, 20, 28))  # cap
        draw.rectangle((x, 270, x + 110, 440), fill=colour)  # hi-vis jacket
        draw.rectangle((x, 330, x + 110, 345), fill=(200, 200, 200))  # reflective band
        draw.rectangle((x + 70, 250, x + 130, 290), fill=(30, 30, 30))  # camera
        draw.ellipse((x + 118, 258, x + 140, 282), fill=(60, 60, 70))  # lens
        draw.text((x + 10, 380), "POLICE", fill=(20, 20, 60), font=ImageFont.load_default(size=24))
    _caption(draw, size, "Barkers Pool roof, 11:42")
    return _jpeg(image)


def green_photo() -> bytes:
    """A crowd with banners on the grass of Devonshire Green."""
    size = (1200, 800)
    image = Image.new("RGB", size, (170, 190, 210))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 330, size[0], 800), fill=(86, 140, 70))
    palette = [(200, 40, 40), (40, 60, 160), (230, 160, 30), (60, 60, 60), (150, 30, 120), (30, 130, 120)]
    font = ImageFont.load_default(size=40)
    for x, text in ((120, "NO TO CUTS"), (700, "SHEFFIELD SAYS NO")):
        for pole in (x + 20, x + 400):
            draw.rectangle((pole, 250, pole + 8, 420), fill=(110, 80, 50))
        draw.rectangle((x, 240, x + 430, 320), fill=(250, 250, 245), outline=(180, 20, 20), width=6)
        draw.text((x + 24, 256), text, fill=(180, 20, 20), font=font)
    rng = random.Random(2011)  # seeded: the same bytes every run, so the same photo id
    people = [(rng.randrange(-20, 1180), rng.randrange(340, 700)) for _ in range(220)]
    for x, y in sorted(people, key=lambda p: p[1]):  # back rows first
        scale = 0.6 + 0.6 * (y - 340) / 360  # nearer is bigger
        w, h = int(34 * scale), int(26 * scale)
        draw.rectangle((x, y + h, x + w, y + 3 * h), fill=rng.choice(palette))
        draw.ellipse((x + w // 6, y, x + w - w // 6, y + h + 2), fill=rng.choice([(222, 184, 150), (150, 104, 72)]))
    _caption(draw, size, "Devonshire Green, 10:15")
    return _jpeg(image)


PHOTOS = {"roof": (roof_photo, "11:41", "SY-4102"), "green": (green_photo, "10:14", "SY-2871")}


# --- loading -----------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    tokens: list[tuple[str, str, str, str]]  # role, callsign, name, token
    counts: dict[str, int]


class DemoRefused(Exception):
    """The directory holds something the demo must not overwrite."""


def _check_users(store: StoreProtocol) -> None:
    for callsign, _name, _role in USERS:
        existing = store.get_by("users", "callsign", callsign.lower())
        if existing is not None and not existing.get("_demo"):
            raise DemoRefused(f"the callsign {callsign} belongs to a user the demo did not make; "
                              "load the demo into another --data-dir")


async def _users(store: StoreProtocol) -> tuple[dict[str, Viewer], list[tuple[str, str, str, str]]]:
    viewers: dict[str, Viewer] = {}
    tokens = []
    for callsign, name, role in USERS:
        data = validate_user({"name": name, "callsign": callsign, "role": role})
        existing = store.get_by("users", "callsign", callsign.lower())
        if existing is not None:  # left by an interrupted load: same user, a new token
            token = new_token()
            doc = {**existing, "token_hash": hash_token(token)}
        else:
            doc, token = make_user(data["name"], data["callsign"], data["role"])
            doc = {**doc, "created_at": at("07:30"), "_demo": True}
        stored = await store.append("user", "users", doc)
        viewers[callsign] = Viewer(stored["id"], callsign, role, name)
        tokens.append((role, callsign, name, token))
    return viewers, tokens


async def _zones(store: StoreProtocol, event: Doc) -> list[Doc]:
    zones = []
    for name, kind, visibility, buffer_m, geometry in ZONES:
        feature = {"type": "Feature", "geometry": geometry,
                   "properties": {"name": name, "kind": kind, "visibility": visibility, "buffer_m": buffer_m}}
        doc = {**build_zone(event, feature), "id": demo_id("zone", name), "created_at": at("07:45")}
        zones.append(await store.append("zone", "zones", doc))
    return zones


async def _photos(store: StoreProtocol, media: MediaStore, users: dict[str, Viewer]) -> dict[str, Doc]:
    from .api.photos import photo_record

    photos = {}
    for key, (draw, hhmm, callsign) in PHOTOS.items():
        processed = process_photo(draw())
        media.save(processed)
        record = {**photo_record(processed, users[callsign]), "taken_at": at(hhmm), "uploaded_at": at(hhmm)}
        photos[key] = await store.append("photo", "photos", record)
    return photos


async def _updates(ctx: Services, event: Doc, users: dict[str, Viewer], photos: dict[str, Doc]) -> dict[str, Doc]:
    updates: dict[str, Doc] = {}
    for key, hhmm, callsign, visibility, kind, place, photo, text in UPDATES:
        body: Doc = {"text": text, "visibility": visibility, "kind": kind, "captured_at": at(hhmm),
                     "photos": [photos[photo]["id"]] if photo else []}
        if place is not None:
            body["location"] = loc(place)
        inp = validate_update(body, max_text_chars=ctx.settings.max_text_chars)
        doc = build_update(ctx, event, users[callsign], inp)
        doc.update(id=demo_id("upd", key), received_at=at(hhmm),
                   amplified_by=[{"id": users[c].id, "callsign": c} for c in AMPLIFIED.get(key, [])])
        updates[key] = await ctx.store.append("update", "updates", doc)
    for key, (hhmm, callsign) in RETRACTED.items():
        by = users[callsign]
        retracted = {**updates[key], "status": "retracted", "retracted_at": at(hhmm),
                     "retracted_by": {"id": by.id, "callsign": by.callsign}}
        updates[key] = await ctx.store.append("update-retracted", "updates", retracted)
    return updates


async def _positions(store: StoreProtocol, users: dict[str, Viewer]) -> int:
    """Each officer's track, reported point by point as a handset would: one position document per officer,
    stored with its track documents in one change."""
    for callsign, track in TRACKS.items():
        doc: dict[str, Any] | None = None
        buckets: dict[str, dict[str, Any]] = {}
        for hhmm, place in track:
            new, more = next_position(doc, TAG, users[callsign], {**loc(place, 8), "at": at(hhmm)}, moment(hhmm),
                                      buckets.get)
            doc = new or doc
            buckets.update((t["id"], t) for t in more)
        if doc is not None:
            track_docs = [(TRACK_POINTS, t) for t in buckets.values()]
            await store.append("position", "positions", doc, aux=lambda _s: track_docs)  # noqa: B023 (awaited here)
    return len(TRACKS)


async def _rumours(ctx: Services, users: dict[str, Viewer], updates: dict[str, Doc]) -> int:
    def by(callsign: str) -> Doc:
        return {"id": users[callsign].id, "callsign": callsign}

    pool = {**loc(BARKERS_POOL, 30), "source": "device"}
    snipers = lifecycle.new_rumour(
        demo_id("rum", "snipers"), TAG, "Police snipers on the roofs around Barkers Pool", pool,
        {"text": "Tweet: 'snipers on the roof above Barkers Pool!! #libdem'", "seen_at": at("11:31")},
        by("SY-1234"), moment("11:32"))
    for hhmm, text in (("11:34", "Shouted in the crowd by the fountain"), ("11:37", "Retweeted, about 40 times")):
        snipers = lifecycle.add_sighting(snipers, {"text": text, "seen_at": at(hhmm)}, moment(hhmm))
    snipers = lifecycle.set_status(snipers, lifecycle.INVESTIGATING, by("SY-SILVER"), moment("11:38"))
    snipers = lifecycle.add_rebuttal(snipers, "false", updates["roof"], by("SY-4102"), moment("11:43"),
                                     rebuttal_url(ctx, TAG, updates["roof"]["id"]))

    kettle = lifecycle.new_rumour(
        demo_id("rum", "kettle"), TAG, "Police are going to kettle everyone inside Barkers Pool", pool,
        {"text": "Leaflet handed out on Division Street", "seen_at": at("11:15")}, by("SY-3310"), moment("11:22"))
    kettle = lifecycle.add_sighting(kettle, {"text": "Two people asking stewards", "seen_at": at("11:40")},
                                    moment("11:41"))
    kettle = lifecycle.add_rebuttal(kettle, "misleading", updates["exits"], by("SY-1234"), moment("11:51"),
                                    rebuttal_url(ctx, TAG, updates["exits"]["id"]))
    for rumour in (snipers, kettle):
        await ctx.store.append("rumour", "rumours", rumour)
    return 2


async def _report(store: StoreProtocol) -> None:
    await store.append("report", "reports", {
        "id": demo_id("rep", "flares"), "event": TAG, "text": "heard they'll let off flares on Fargate later??",
        "location": {**loc(FARGATE, 50), "source": "device"}, "contact": None, "received_at": at("12:25"),
        "counted_for": []})


async def load(ctx: Services) -> Loaded:
    """Load the demo into an open store that does not have the event yet."""
    store = ctx.store
    _check_users(store)
    event = {"id": TAG, **validate_event_create(EVENT), "created_at": "2011-03-01T09:00:00Z"}
    users, tokens = await _users(store)
    zones = await _zones(store, event)  # indexed as they are stored: updates get their zones from ctx.zones_for
    photos = await _photos(store, MediaStore(ctx.settings.media_path), users)
    updates = await _updates(ctx, event, users, photos)
    positions = await _positions(store, users)
    rumours = await _rumours(ctx, users, updates)
    await _report(store)
    await store.append("event", "events", event)  # last: its presence means the load finished
    counts = {"updates": len(updates), "zones": len(zones), "photos": len(photos), "positions": positions,
              "rumours": rumours, "reports": 1}
    return Loaded(tokens, counts)


def _urls(settings: Settings) -> str:
    """Where to look once the server runs: on the host and port of these settings (--port, FIELDCOMMS_PORT or
    the config file, as `serve` takes them), or `base_url` when one is set."""
    base = settings.public_base_url
    default = Settings()
    serve = ("fieldcomms serve" + (f" --host {settings.host}" if settings.host != default.host else "")
             + (f" --port {settings.port}" if settings.port != default.port else ""))
    return (f"Start the server (`{serve} --data-dir {settings.data_path}`), then open:\n"
            f"  public page:  {base}/events/{TAG}\n  rumour board: {base}/events/{TAG}/rumours\n"
            f"  control room: {base}/control/{TAG}\n  Atom feed:    {base}/events/{TAG}/feed.atom\n"
            f"  API document: {base}/api/v1/openapi.json")


async def run(settings: Settings) -> int:
    """The `fieldcomms demo` command; returns the exit status."""
    store = Store(settings.data_path, fsync=settings.fsync, snapshot_every=settings.snapshot_every)
    ctx = Services(settings, store)
    try:
        await store.open()
    except DataDirLocked as exc:
        print(f"fieldcomms: cannot load the demo: {exc}. Stop the server, run `fieldcomms demo`, then start "
              "it again.", file=sys.stderr)
        return 1
    try:
        if store.get("events", TAG) is not None:
            print(f"The demo event #{TAG} is already in {settings.data_path}; nothing changed. Its tokens were "
                  "printed when it was loaded; make new users with `fieldcomms user add`.")
            print(_urls(settings))
            return 0
        try:
            loaded = await load(ctx)
        except DemoRefused as exc:
            print(f"fieldcomms: cannot load the demo: {exc}", file=sys.stderr)
            return 1
    finally:
        await store.close()
    summary = ", ".join(f"{n} {what if n != 1 else what[:-1]}" for what, n in loaded.counts.items())
    print(f"Loaded the demo event #{TAG} ({EVENT['title']}) into {settings.data_path}: {summary}.")
    print(_urls(settings))
    print("Tokens, shown once (the control room's last):")
    for role, callsign, name, token in loaded.tokens[:-1]:
        print(f"  {role:8} {callsign:10} {name:28} {token}")
    role, callsign, name, token = loaded.tokens[-1]
    print(f"  {role:8} {callsign:10} {name}:")
    print(token)
    return 0
