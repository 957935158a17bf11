"""The live map: every layer of an event as GeoJSON Features, answered from point indexes.

Updates and rumours are indexed per event and per audience: what the public may see (the rule is
`visibility.public_map_location`) and what staff see (every active item with a location; a retracted
update leaves the map for everyone). So a public map, and its cluster counts, can never include an item
the public may not see. The index only narrows the candidates: every item returned still goes through
visibility. After a start the indexes are filled in the background, a slice at a time, so neither the start
nor the first map request pays for it; from then on the store's apply hook keeps them current.

Officers come from the positions index (control only); zones are few and are filtered directly.

The public's map of a whole event (no `bbox`, no `since`: the page's first view, and what a flood of
visitors asks for) is the same for every visitor until one of the event's updates, rumours or zones changes:
its encoded features are kept (`PublicAnswers`) under the event's map version, which every such change bumps
(positions do not: they are not on the public map), and made again through visibility after any change.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from ..geo import Bbox, PointIndex, PointSet, cluster, feature, point_geometry
from ..model import utc_now
from ..visibility import Viewer, public_map_location
from .positions import POSITIONS, position_out
from .zones import zone_feature

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
LAYERS = ("updates", "rumours", "zones", "officers")
POINT_COLLS = ("updates", "rumours")
WORLD: Bbox = (-180.0, -90.0, 180.0, 90.0)
CELL_PX = 60  # a cluster is a square of this many screen pixels at the requested zoom
FILL_SLICE = 2000  # documents indexed between two turns of the loop while filling after a start
# What a public map answer may consult: items of these collections (an update's view looks up the update it
# replies to, a rumour's its rebuttals' updates, a zone its own area). Any change to one bumps the version.
PUBLIC_MAP_COLLS = ("updates", "rumours", "zones")
ANSWERS_KEPT = 64  # public whole-event answers kept, all events together (layers x zoom: a small set)
ANSWER_MAX_BYTES = 1 << 20  # a larger answer (a whole event at a deep zoom) is made for each request


def _staff_location(coll: str, doc: Doc) -> Doc | None:
    if coll == "updates" and doc.get("status") != "active":
        return None
    loc: Doc | None = doc.get("location")
    return loc


class MapIndex:
    def __init__(self, ctx: Services) -> None:
        self.ctx = ctx
        self._points: dict[tuple[str, str, str], PointIndex] = {}  # (event, coll, "public" | "staff")
        self._built: set[tuple[str, str]] = set()  # from here on, the apply hook keeps the indexes current
        self._filling: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._versions: dict[str, int] = {}
        self.public_answers = PublicAnswers()
        ctx.store.on_apply(self._changed, PUBLIC_MAP_COLLS, loading=False)

    def _changed(self, coll: str, old: Doc | None, new: Doc) -> None:
        event = new.get("event") or ""
        self._versions[event] = self._versions.get(event, 0) + 1

    def version(self, event: str) -> int:
        """Bumped by every change to the event's updates, rumours or zones: what a public map depends on."""
        return self._versions.get(event, 0)

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

    def _begin(self, event: str, coll: str) -> Iterator[Doc]:
        """Empty indexes, kept current by the apply hook from now on, and the stored documents to place in
        them: read as they are placed (a list of a million would hold up the loop for a second at start)."""
        for aud in ("public", "staff"):
            self._points[(event, coll, aud)] = PointIndex()
        self._built.add((event, coll))
        return (doc for doc in self.ctx.store.oldest_first(coll, event) if doc is not None)

    def index(self, event: str, coll: str, audience: str) -> PointIndex:
        """The index, built now if nothing built it yet (`fill` normally has, in the background)."""
        if (event, coll) not in self._built:
            for doc in self._begin(event, coll):  # synchronous: no change can be applied meanwhile
                self._place(event, coll, doc)
        return self._points[(event, coll, audience)]

    async def ready(self, event: str) -> None:
        """Wait until a background fill of this event's indexes is complete."""
        for coll in POINT_COLLS:
            filling = self._filling.get((event, coll))
            if filling is not None:
                await asyncio.shield(filling)

    async def fill(self) -> None:
        """Build every event's indexes after a start, a slice at a time, so the first map request does
        not pay for it and the loop keeps serving meanwhile. Changes applied during the fill are kept
        by the apply hook; the fill places a document only while it is still the current version."""
        for event in [e["tag"] for e in self.ctx.store.all("events")]:
            for coll in POINT_COLLS:
                key = (event, coll)
                if key in self._built:
                    continue
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._filling[key] = done
                try:
                    docs = self._begin(event, coll)
                    while True:
                        seen = 0
                        for doc in itertools.islice(docs, FILL_SLICE):
                            seen += 1
                            current = self.ctx.store.get(coll, doc["id"])
                            if current is not None and current["seq"] == doc["seq"]:
                                self._place(event, coll, doc)
                        if seen < FILL_SLICE:
                            break
                        await asyncio.sleep(0)
                finally:
                    del self._filling[key]
                    done.set_result(None)


class PublicAnswers:
    """The encoded features of the public's whole-event maps: (event, layers, zoom) -> (version, bytes)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, tuple[str, ...], int | None], tuple[int, bytes]] = {}
        self.hits = 0

    def get(self, key: tuple[str, tuple[str, ...], int | None], version: int) -> bytes | None:
        found = self._answers.get(key)
        if found is None or found[0] != version:
            return None
        self.hits += 1
        return found[1]

    def put(self, key: tuple[str, tuple[str, ...], int | None], version: int, encoded: bytes) -> None:
        if len(encoded) > ANSWER_MAX_BYTES:
            return
        self._answers.pop(key, None)
        self._answers[key] = (version, encoded)
        while len(self._answers) > ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]


SCREEN_PX = 1024  # the width of map a box is assumed to fill when a request names no zoom


def implied_zoom(bbox: Bbox) -> int:
    """The zoom at which the box is about SCREEN_PX wide (256 px tiles: the world is 256 * 2**z px)."""
    width = max(bbox[2] - bbox[0], 1e-9)
    return max(0, min(22, math.floor(math.log2(SCREEN_PX * 360 / (256 * width)))))


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

    def __init__(self, ctx: Services, event: str, viewer: Viewer | None, bbox: Bbox | None, since: int | None,
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
                index = self.ctx.positions.index(self.event)
                out.extend(self._points(layer, POSITIONS, index))
            else:
                audience = "public" if self.viewer is None else "staff"
                out.extend(self._points(layer, layer, self.ctx.map.index(self.event, layer, audience)))
        return out

    def _points(self, layer: str, coll: str, index: PointIndex) -> Iterator[Doc]:
        limit = self.ctx.settings.cluster_above
        # Without `zoom`, a dense box is clustered at the zoom that shows it on a screen (`implied_zoom`): an
        # answer of every point would make one short request cost the whole event (issue 15 item 7).
        zoom = self.zoom if self.zoom is not None else implied_zoom(self.bbox)
        if self.since is None:
            # The common map view: count first, and cluster straight from the index without copying its ids.
            if index.count(self.bbox) > limit:
                yield from self._clusters(layer, coll, index.cluster(self.bbox, zoom, CELL_PX, max_ids=1))
                return
            pts = index.query_arrays(self.bbox)
        else:
            pts = index.query_arrays(self.bbox)
            pts = pts.take(pts.seq > self.since)
            if len(pts) > limit:
                yield from self._clusters(layer, coll, cluster(pts, self.bbox, zoom, CELL_PX, max_ids=1))
                return
        yield from self._items(layer, coll, pts)

    def _clusters(self, layer: str, coll: str, cells: list[Doc]) -> Iterator[Doc]:
        for c in cells:
            if c["count"] == 1:  # a cell of one point is that item itself
                f = self._item(layer, coll, c["ids"][0])
                if f is not None:
                    yield f
            else:
                yield _cluster_feature(layer, c)

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
        zones = self.ctx.zones
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
