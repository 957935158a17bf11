"""Officer positions: each officer's latest position, and their track in a collection of its own (alerts are in
alerts.py).

Positions are most of the writes, so each is kept small. One document per (event, officer) in `positions` holds
the latest position only. The track is in `tracks`, one document per officer and ten minutes of handset time
(`trk_<event>_<officer>_<bucket start, ms>`), its points compact `[at (ms), lat, lon, accuracy_m or null]` in
time order: a point is written in the same change as the position it moved, or alone when it moved nothing.
Ten-minute buckets keep what every worker holds in memory near 300 bytes a point (a document per point was
about 1 KB, and 20 times the documents to load at start) while a write stays a few hundred bytes (a bucket
holds 20 points at the handset's 30 s). The stream's `position` frame is the latest point only
(`position_frame`, a few hundred bytes however long the track); `GET /officers` gives the whole track, and the
retention purge erases the track's documents with the positions.

A handset that was offline posts its queue late: a report older than the latest does not move the officer,
but it still joins the track in time order; a point reported twice is stored once. `stale` is decided when
read, from `stale_after_minutes`. A `PointIndex` per event (rebuilt on start through the store's apply hook)
narrows radius searches to a box before the geodesic distance (WGS 84) decides; the track index keeps each
officer's buckets in time order. Position documents written before tracks had their own collection carried
the last 20 points in `track`: the officer's next report moves those points into `tracks` too.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..geo import PointIndex, geodesic_m, radius_bbox
from ..model import (
    Problems,
    check_unknown,
    format_time,
    location_value,
    parse_time_str,
    require_object,
    time_value,
    utc_now,
)
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
POSITIONS = "positions"
TRACKS = "tracks"
RADIUS_MAX_M = 50_000.0
BUCKET_MS = 10 * 60 * 1000  # the handset time one track document covers


class Positions:
    """Per event, where each officer's latest position is, and each officer's track documents in time order,
    kept in step with the store."""

    def __init__(self) -> None:
        self._index: dict[str, PointIndex] = {}
        # (event, officer id) -> [(bucket start in ms, track document id)], sorted
        self._tracks: dict[tuple[str, str], list[tuple[int, str]]] = {}

    def on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if coll == TRACKS:
            if old is None and "points" in new:  # a stub left by a retention purge (Store.redact) has none
                insort(self._tracks.setdefault((new["event"], new["officer"]["id"]), []),
                       (new["points"][0][0] // BUCKET_MS * BUCKET_MS, new["id"]))
            return
        if coll != POSITIONS:
            return
        index = self._index.get(new["event"])
        if index is None:
            index = self._index[new["event"]] = PointIndex()
        loc = new.get("location")
        if loc is None:  # erased by a retention purge (Store.redact): no longer anywhere
            index.remove(new["id"])
            return
        index.put(new["id"], loc["lon"], loc["lat"], new["seq"])

    def index(self, event: str) -> PointIndex:
        index = self._index.get(event)
        if index is None:
            index = self._index[event] = PointIndex()
        return index

    def track_ids(self, event: str, officer_id: str) -> list[str]:
        """The ids of the officer's track documents in the event, oldest first."""
        return [doc_id for _start, doc_id in self._tracks.get((event, officer_id), ())]


# ---- reading -----------------------------------------------------------------------------------------


def is_stale(doc: Doc, now: float, stale_after_s: float) -> bool:
    # A document erased by a retention purge has no time left: never fresh.
    return "_at" not in doc or bool(now - doc["_at"] > stale_after_s)


def position_out(seen: Doc, now: float, stale_after_s: float) -> Doc:
    """A position as the map shows it (`seen` is the output of visibility, so "_at" is gone): `stale` is
    decided now, from the time the handset took the position."""
    at = parse_time_str(seen["at"]).timestamp()
    return {"id": seen["id"], "seq": seen["seq"], "event": seen["event"], "officer": seen["officer"],
            "location": seen["location"], "at": seen["at"], "stale": now - at > stale_after_s}


def position_frame(seen: Doc, now: float, stale_after_s: float) -> Doc:
    """The data of a `position` stream frame (API: the latest point only, `{"officer", "location", "at",
    "stale"}`): a few hundred bytes however long the track is; the track is at GET /officers."""
    at = parse_time_str(seen["at"]).timestamp()
    return {"officer": seen["officer"], "location": seen["location"], "at": seen["at"],
            "stale": now - at > stale_after_s}


def point_out(point: list[Any]) -> Doc:
    """A stored track point `[at ms, lat, lon, accuracy_m or None]` as the API shows it."""
    at_ms, lat, lon, accuracy = point
    out: Doc = {"lat": lat, "lon": lon}
    if accuracy is not None:
        out["accuracy_m"] = accuracy
    out["at"] = format_time(datetime.fromtimestamp(at_ms / 1000, UTC))
    return out


def track(ctx: Services, event: str, officer_id: str, viewer: Viewer, limit: int | None = None) -> list[Doc]:
    """The officer's track points as `viewer` may see them, oldest first: all of them, or the newest `limit`."""
    if limit == 0:
        return []
    stored: list[list[Any]] = []
    for doc_id in reversed(ctx.positions.track_ids(event, officer_id)):  # newest first, to stop at `limit`
        seen = ctx.visible(TRACKS, doc_id, viewer)
        if seen is not None:
            stored[:0] = seen["points"]
            if limit is not None and len(stored) >= limit:
                break
    if limit is not None:
        stored = stored[-limit:]
    return [point_out(point) for point in stored]


def officers(ctx: Services, event: str, viewer: Viewer, track_limit: int | None = None) -> list[Doc]:
    now, stale_s = utc_now().timestamp(), ctx.settings.stale_after_minutes * 60
    items = []
    for pos_id, *_ in ctx.positions.index(event).query((-180.0, -90.0, 180.0, 90.0)):
        seen = ctx.visible(POSITIONS, pos_id, viewer)
        if seen is not None:
            item = position_out(seen, now, stale_s)
            item["track"] = track(ctx, event, seen["officer"]["id"], viewer, track_limit)
            items.append(item)
    items.sort(key=lambda item: (item["officer"]["callsign"].lower(), item["officer"]["id"]))
    return items


def within(ctx: Services, event: str, lat: float, lon: float, radius_m: float) -> Iterator[tuple[float, Doc]]:
    """(distance in metres, stored doc) of each officer whose latest position is fresh and within the radius."""
    now, stale_s = utc_now().timestamp(), ctx.settings.stale_after_minutes * 60
    for pos_id, plon, plat, _seq in ctx.positions.index(event).query(radius_bbox(lat, lon, radius_m)):
        doc = ctx.store.get(POSITIONS, pos_id)
        if doc is None or is_stale(doc, now, stale_s):
            continue
        distance = geodesic_m(lat, lon, plat, plon)
        if distance <= radius_m:
            yield distance, doc


def nearby(ctx: Services, event: str, viewer: Viewer, lat: float, lon: float, radius_m: float) -> list[Doc]:
    """Other officers with a fresh position within the radius, nearest first."""
    found = []
    for distance, doc in within(ctx, event, lat, lon, radius_m):
        if doc["officer"]["id"] == viewer.id:
            continue
        seen = ctx.view(POSITIONS, doc, viewer)
        if seen is not None:
            found.append({"officer": seen["officer"], "location": seen["location"], "at": seen["at"],
                          "distance_m": round(distance, 2)})
    found.sort(key=lambda item: (item["distance_m"], item["officer"]["callsign"]))
    return found


# ---- writing -----------------------------------------------------------------------------------------


def validate_position(body: Any) -> Doc:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("lat", "lon", "accuracy_m", "at"), p)
    loc = location_value({k: data[k] for k in ("lat", "lon", "accuracy_m") if k in data}, p, "position")
    # location_value names fields "position.lat"; this body is flat, so name them as sent.
    for error in p.errors:
        error["field"] = error["field"].removeprefix("position.")
    at = time_value(data.get("at"), p, "at")
    p.raise_if_any()
    assert loc is not None
    out: Doc = {"lat": loc["lat"], "lon": loc["lon"]}
    if loc.get("accuracy_m") is not None:
        out["accuracy_m"] = loc["accuracy_m"]
    if at is not None:
        out["at"] = at
    return out


def _point(inp: Doc, at: datetime) -> list[Any]:
    """A report as stored in a track: [at in ms, lat, lon, accuracy_m or None]."""
    return [round(at.timestamp() * 1000), inp["lat"], inp["lon"], inp.get("accuracy_m")]


def track_id(event: str, officer_id: str, at_ms: int) -> str:
    return f"trk_{event}_{officer_id}_{at_ms // BUCKET_MS * BUCKET_MS}"


def next_position(old: Doc | None, event: str, viewer: Viewer, inp: Doc, now: datetime,
                  get_track: Callable[[str], Doc | None]) -> tuple[Doc | None, list[Doc]]:
    """What a report stores: (the officer's new position document, or None when it does not move them; the new
    versions of the track documents it adds a point to). Both empty when the report changes nothing.
    `get_track(id)`: the stored track document, if any."""
    if old is not None and "_at" not in old:
        old = None  # erased by a retention purge (Store.redact): start afresh
    # A handset clock running fast must not pin the officer in place: no position is later than now.
    at = min(parse_time_str(inp["at"]), now) if "at" in inp else now
    at = parse_time_str(format_time(at))  # to the millisecond, as it is shown
    officer = {"id": viewer.id, "callsign": viewer.callsign}
    legacy_points = old.get("track") or () if old is not None else ()  # a legacy position carried its track
    points = [_point(p, parse_time_str(p["at"])) for p in legacy_points]
    points.append(_point(inp, at))
    changed: dict[str, Doc] = {}
    for point in points:
        doc_id = track_id(event, viewer.id, point[0])
        doc = changed.get(doc_id) or get_track(doc_id)
        if doc is not None and "points" in doc and point in doc["points"]:
            continue  # reported before: stored once
        kept = doc["points"] if doc is not None and "points" in doc else []
        # Stable: of equal times, the one reported last stays last.
        new_points = sorted([*kept, point], key=lambda p: int(p[0]))
        # A new document, or the new version of the stored one (its seq: compare-and-set on PostgreSQL).
        base = {"id": doc_id, "event": event} if doc is None else {k: v for k, v in doc.items() if k != "redacted"}
        changed[doc_id] = {**base, "officer": officer, "points": new_points}
    tracks = list(changed.values())
    location: Doc = {k: inp[k] for k in ("lat", "lon", "accuracy_m") if k in inp}
    location["source"] = "device"
    at_str = format_time(at)
    if old is None:
        return ({"id": f"pos_{event}_{viewer.id}", "event": event, "officer": officer, "location": location,
                 "at": at_str, "received_at": format_time(now), "_at": at.timestamp()}, tracks)
    newest = at.timestamp() >= old["_at"]
    legacy = "track" in old
    if not legacy and (not newest or not tracks):
        return None, tracks  # a late point joins the track only; a repeated report changes nothing
    new = {k: v for k, v in old.items() if k != "track"}
    new.update(officer=officer, received_at=format_time(now))
    if newest:
        new.update(location=location, at=at_str, _at=at.timestamp())
    return new, tracks


async def record_position(ctx: Services, event: Doc, viewer: Viewer, inp: Doc) -> Doc | None:
    """Store the report; returns the stored position if the officer moved (a new latest position), else None."""
    # No await between reading the old document and appending the new one: two reports cannot interleave.
    # Across workers (PostgreSQL) the position and each track document are compare-and-set on their seq (or a
    # new id): a lost race raises WriteConflict and the request runs again.
    old = ctx.store.get(POSITIONS, f"pos_{event['tag']}_{viewer.id}")
    new, tracks = next_position(old, event["tag"], viewer, inp, utc_now(),
                                lambda doc_id: ctx.store.get(TRACKS, doc_id))
    if new is None:
        if tracks:
            first, *rest = tracks
            await ctx.store.append("track", TRACKS, first,
                                   aux=(lambda _s: [(TRACKS, t) for t in rest]) if rest else None)
        return None
    stored = await ctx.store.append("position", POSITIONS, new,
                                    aux=(lambda _s: [(TRACKS, t) for t in tracks]) if tracks else None)
    moved = old is None or new["_at"] != old.get("_at") or new["location"] != old.get("location")
    return stored if moved else None
