"""Zones: the areas and routes agreed for an event, and which of them contain a position.

A zone is stored as one document per zone; deleting it stores a tombstone (`"deleted": true`), so the
stream and `since` syncs can announce the deletion and the journal keeps what was agreed. Each event has a
`ZoneIndex` (shapely STRtree over the buffered areas), rebuilt from the store on start through its apply
hook, and `Services.zones_for` answers from it when an update is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..geo import ZoneIndex, parse_zone_feature, zone_to_feature
from ..idempotency import Slot
from ..model import new_id, now_str
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

Doc = dict[str, Any]
ZONES = "zones"
ZONE_REF = ("id", "name", "kind", "visibility")


class Zones:
    """Every event's live (not deleted) zones, kept in step with the store by its apply hook."""

    def __init__(self) -> None:
        self._index: dict[str, ZoneIndex] = {}
        self._docs: dict[str, dict[str, Doc]] = {}

    def on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if coll != ZONES:
            return
        event = new["event"]
        index = self._index.get(event)
        if index is None:
            index = self._index[event] = ZoneIndex()
        docs = self._docs.setdefault(event, {})
        if new.get("deleted"):
            index.remove(new["id"])
            docs.pop(new["id"], None)
            return
        try:
            index.add(new)
        except Exception:  # a zone stored by an older version that no longer parses must not stop a start
            log.exception("zone %s of #%s could not be indexed; it tags no update", new["id"], event)
            return
        docs[new["id"]] = new

    def zones_for(self, event: str, lat: float, lon: float) -> list[Doc]:
        """Refs of the event's zones containing the position, for `update.zones` (visibility trims them)."""
        index = self._index.get(event)
        if index is None:
            return []
        return [{k: z[k] for k in ZONE_REF} for z in index.zones_containing(lat, lon)]

    def of_event(self, event: str) -> Iterator[Doc]:
        """The event's live zones, oldest first."""
        return iter(sorted(self._docs.get(event, {}).values(), key=lambda z: z["seq"]))

    def area(self, event: str, zone_id: str) -> Any:
        index = self._index.get(event)
        return None if index is None else index.area(zone_id)


def zone_feature(zone: Mapping[str, Any]) -> Doc:
    """A zone as viewed (the output of visibility) as a GeoJSON Feature with its id."""
    return zone_to_feature(zone, {k: v for k, v in zone.items() if k not in ("id", "geometry", "deleted")})


def build_zone(event: Doc, body: Any) -> Doc:
    zone = parse_zone_feature(body)
    return {"id": new_id("zone"), "event": event["tag"], **zone, "deleted": False, "created_at": now_str()}


async def store_zone(ctx: Services, doc: Doc, viewer: Viewer, slot: Slot | None) -> Doc:
    def render(stored: Doc) -> Doc:
        return zone_feature(ctx.view(ZONES, stored, viewer) or {})

    stored = await ctx.store.append("zone", ZONES, doc, aux=slot.aux(render) if slot else None)
    return render(stored)


def visible_zones(ctx: Services, event: str, viewer: Viewer | None) -> list[Doc]:
    out = []
    for zone in ctx.zones.of_event(event):
        seen = ctx.view(ZONES, zone, viewer)
        if seen is not None:
            out.append(zone_feature(seen))
    return out


async def delete_zone(ctx: Services, zone_id: str, viewer: Viewer) -> None:
    """Tombstone the zone (control only). Deleting a deleted zone again succeeds: a retry over a bad link."""
    doc = ctx.store.get(ZONES, zone_id)
    if doc is None:
        raise NotFound(f"No zone {zone_id}.")
    if doc.get("deleted"):
        return
    await ctx.store.append("zone-deleted", ZONES, {**doc, "deleted": True, "deleted_at": now_str(),
                                                    "deleted_by": {"id": viewer.id, "callsign": viewer.callsign}})
