"""The live map: every layer of an event as GeoJSON Features, answered from point indexes.

Updates and rumours are indexed per event and per audience: what the public may see (the rule is
`visibility.public_map_location`) and what staff see (every active item with a location; a retracted
update leaves the map for everyone). So a public map, and its cluster counts, can never include an item
the public may not see. The index only narrows the candidates: every item returned still goes through
visibility. An event's indexes are built on its first map request and then kept in step by the store's
apply hook, so a server start does not pay for maps nobody opens.

Officers come from the positions index (control only); zones are few and are filtered directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import shapely

from ..context import Context
from ..geo import Bbox, PointIndex, PointSet, cluster, feature, point_geometry
from ..model import utc_now
from ..visibility import Viewer, public_map_location
from .positions import POSITIONS, position_out, positions_of
from .zones import zone_feature, zones_of

Doc = dict[str, Any]
LAYERS = ("updates", "rumours", "zones", "officers")
POINT_COLLS = ("updates", "rumours")
WORLD: Bbox = (-180.0, -90.0, 180.0, 90.0)
CELL_PX = 60  # a cluster is a square of this many screen pixels at the requested zoom


def _staff_location(coll: str, doc: Doc) -> Doc | None:
    if coll == "updates" and doc.get("status") != "active":
        return None
    loc: Doc | None = doc.get("location")
    return loc


class MapIndex:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._points: dict[tuple[str, str, str], PointIndex] = {}  # (event, coll, "public" | "staff")
        self._built: set[tuple[str, str]] = set()

    def on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if coll in POINT_COLLS and (new.get("event"), coll) in self._built:
            self._place(new["event"], coll, new)

    def _place(self, event: str, coll: str, doc: Doc) -> None:
        for audience, loc in (("public", public_map_location(coll, doc, self.ctx)),
                              ("staff", _staff_location(coll, doc))):
            index = self._points[(event, coll, audience)]
            if loc is None:
                index.remove(doc["id"])
            else:
                index.put(doc["id"], loc["lon"], loc["lat"], doc["seq"])

    def index(self, event: str, coll: str, audience: str) -> PointIndex:
        if (event, coll) not in self._built:
            # Synchronous: no change can be applied while the index is filled.
            for aud in ("public", "staff"):
                self._points[(event, coll, aud)] = PointIndex()
            for doc in self.ctx.store.oldest_first(coll, event):
                if doc is not None:
                    self._place(event, coll, doc)
            self._built.add((event, coll))
        return self._points[(event, coll, audience)]


def install(ctx: Context) -> MapIndex:
    index = MapIndex(ctx)
    ctx.extensions["map"] = index
    ctx.store.on_apply(index.on_apply)
    return index


def map_index(ctx: Context) -> MapIndex:
    index: MapIndex = ctx.extensions["map"]
    return index


def _cluster_feature(layer: str, c: Doc) -> Doc:
    return feature(point_geometry(c["lat"], c["lon"]),
                   {"layer": "cluster", "of": layer, "count": c["count"], "bbox": c["bbox"]})


def _item_feature(layer: str, seen: Doc) -> Doc | None:
    loc = seen.get("location")
    if not loc:
        return None
    return feature(point_geometry(loc["lat"], loc["lon"]), {"layer": layer, **seen}, id=seen["id"])


class MapQuery:
    """One map request: who asks, the box, `since` and `zoom`."""

    def __init__(self, ctx: Context, event: str, viewer: Viewer | None, bbox: Bbox | None, since: int | None,
                 zoom: int | None) -> None:
        self.ctx, self.event, self.viewer = ctx, event, viewer
        self.bbox = bbox or WORLD
        self.since, self.zoom = since, zoom
        self.now = utc_now().timestamp()

    def features(self, layers: tuple[str, ...]) -> list[Doc]:
        out: list[Doc] = []
        for layer in layers:
            if layer == "zones":
                out.extend(self._zones())
            elif layer == "officers":
                index = positions_of(self.ctx).index(self.event)
                out.extend(self._points(layer, POSITIONS, index))
            else:
                audience = "public" if self.viewer is None else "staff"
                out.extend(self._points(layer, layer, map_index(self.ctx).index(self.event, layer, audience)))
        return out

    def _points(self, layer: str, coll: str, index: PointIndex) -> Iterator[Doc]:
        pts = index.query_arrays(self.bbox)
        if self.since is not None:
            pts = pts.take(pts.seq > self.since)
        if self.zoom is not None and len(pts) > self.ctx.settings.cluster_above:
            for c in cluster(pts, self.bbox, self.zoom, CELL_PX, max_ids=1):
                if c["count"] == 1:
                    f = self._item(layer, coll, c["ids"][0])
                    if f is not None:
                        yield f
                else:
                    yield _cluster_feature(layer, c)
            return
        yield from self._items(layer, coll, pts)

    def _items(self, layer: str, coll: str, pts: PointSet) -> Iterator[Doc]:
        for item_id in pts.ids[np.argsort(pts.seq, kind="stable")].tolist():
            f = self._item(layer, coll, item_id)
            if f is not None:
                yield f

    def _item(self, layer: str, coll: str, item_id: str) -> Doc | None:
        seen = self.ctx.visible(coll, item_id, self.viewer)
        if seen is None:
            return None
        if coll == POSITIONS:
            seen = position_out(seen, self.now, self.ctx.settings.stale_after_minutes * 60)
        return _item_feature(layer, seen)

    def _zones(self) -> Iterator[Doc]:
        zones = zones_of(self.ctx)
        view_box = shapely.box(*self.bbox)
        for zone in zones.of_event(self.event):
            if self.since is not None and zone["seq"] <= self.since:
                continue
            area = zones.area(self.event, zone["id"])  # with its buffer: a route's margin counts
            if area is not None and not area.intersects(view_box):
                continue
            seen = self.ctx.view("zones", zone, self.viewer)
            if seen is not None:
                f = zone_feature(seen)
                f["properties"] = {"layer": "zones", **f["properties"]}
                yield f
