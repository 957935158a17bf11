"""Officer positions: the latest per officer plus a short track (alerts are in alerts.py).

One document per (event, officer) holds the latest position and the track; each report replaces it. A
handset that was offline posts its queue late: a report older than the latest does not move the officer,
but it still joins the track in time order. `stale` is decided when read, from `stale_after_minutes`.
A `PointIndex` per event (rebuilt on start through the store's apply hook) narrows radius searches to a
box before the geodesic distance (WGS 84) decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
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
TRACK_MAX = 20
RADIUS_MAX_M = 50_000.0


class Positions:
    """Per event, where each officer's latest position is, kept in step with the store."""

    def __init__(self) -> None:
        self._index: dict[str, PointIndex] = {}

    def on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
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


# ---- reading -----------------------------------------------------------------------------------------


def is_stale(doc: Doc, now: float, stale_after_s: float) -> bool:
    # A document erased by a retention purge has no time left: never fresh.
    return "_at" not in doc or bool(now - doc["_at"] > stale_after_s)


def position_out(seen: Doc, now: float, stale_after_s: float) -> Doc:
    """A position as the API shows it (`seen` is the output of visibility, so "_at" is gone): `stale` is
    decided now, from the time the handset took the position."""
    at = parse_time_str(seen["at"]).timestamp()
    return {"id": seen["id"], "seq": seen["seq"], "event": seen["event"], "officer": seen["officer"],
            "location": seen["location"], "at": seen["at"], "stale": now - at > stale_after_s,
            "track": seen.get("track", [])}


def officers(ctx: Services, event: str, viewer: Viewer) -> list[Doc]:
    now, stale_s = utc_now().timestamp(), ctx.settings.stale_after_minutes * 60
    items = []
    for pos_id, *_ in ctx.positions.index(event).query((-180.0, -90.0, 180.0, 90.0)):
        seen = ctx.visible(POSITIONS, pos_id, viewer)
        if seen is not None:
            items.append(position_out(seen, now, stale_s))
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


def _when(point: Doc) -> datetime:
    return parse_time_str(point["at"])


def next_position(old: Doc | None, event: str, viewer: Viewer, inp: Doc, now: datetime) -> Doc | None:
    """The officer's new position document, or None when the report changes nothing."""
    if old is not None and "track" not in old:
        old = None  # erased by a retention purge (Store.redact): start afresh
    # A handset clock running fast must not pin the officer in place: no position is later than now.
    at = min(parse_time_str(inp["at"]), now) if "at" in inp else now
    point: Doc = {k: inp[k] for k in ("lat", "lon", "accuracy_m") if k in inp}
    point["at"] = format_time(at)
    location = {**{k: v for k, v in point.items() if k != "at"}, "source": "device"}
    if old is None:
        return {"id": f"pos_{event}_{viewer.id}", "event": event,
                "officer": {"id": viewer.id, "callsign": viewer.callsign}, "location": location,
                "at": point["at"], "received_at": format_time(now), "track": [point], "_at": at.timestamp()}
    track = [t for t in old["track"] if t != point]
    track.append(point)
    track.sort(key=_when)  # stable: of equal times, the one reported last stays last
    track = track[-TRACK_MAX:]
    newest = at.timestamp() >= old["_at"]
    if not newest and track == old["track"]:
        return None  # older than everything kept: nothing to store
    new = {**old, "officer": {"id": viewer.id, "callsign": viewer.callsign}, "track": track,
           "received_at": format_time(now)}
    if newest:
        new.update(location=location, at=point["at"], _at=at.timestamp())
    return new


async def record_position(ctx: Services, event: Doc, viewer: Viewer, inp: Doc) -> Doc | None:
    """Store the report; returns the stored position if the officer moved (a new latest position), else None."""
    # No await between reading the old document and appending the new one: two reports cannot interleave.
    old = ctx.store.get(POSITIONS, f"pos_{event['tag']}_{viewer.id}")
    new = next_position(old, event["tag"], viewer, inp, utc_now())
    if new is None:
        return None
    stored = await ctx.store.append("position", POSITIONS, new)
    moved = old is None or new["_at"] != old["_at"] or new["location"] != old["location"]
    return stored if moved else None
