"""Points on the map: the `bbox` parameter, a moving-point index and server-side clustering.

Pure and synchronous. `geo.py` re-exports everything here, so callers import from `fieldcomms.geo`.

Why columns of numpy arrays and not a grid of cells in dicts: the map's hard case is a whole-city box
holding most of an event's points, where a grid visits every point in Python anyway (measured here: ~80 ms
to gather 100k points from 0.01-degree cells, before any clustering). A vectorised scan of every point
costs ~0.3 ms per 100k whatever the box, and leaves the matches as arrays that clustering consumes
without a Python loop (~15 ms for 100k points, query included). numpy comes with shapely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fieldcomms.errors import ValidationFailed

Bbox = tuple[float, float, float, float]
"""(minlon, minlat, maxlon, maxlat) in degrees, WGS 84, min <= max on both axes."""

# Web Mercator stops here: beyond it y runs to infinity. Leaflet and every tile server clamp the same way.
MERCATOR_MAX_LAT = 85.0511287798066
TILE_PX = 256
MAX_ZOOM = 22

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BBOX_PARTS = ("minlon", "minlat", "maxlon", "maxlat")
_LIMITS = {"minlon": 180.0, "minlat": 90.0, "maxlon": 180.0, "maxlat": 90.0}


def parse_bbox(s: str, field: str = "bbox") -> Bbox:
    """Parse `minlon,minlat,maxlon,maxlat`. Every problem is reported, all under `field`.

    A box crossing the antimeridian (minlon > maxlon) is refused rather than guessed at: no event this
    serves spans it, and silently querying the complement would show the wrong half of the world.
    """
    parts = [p.strip() for p in str(s).split(",")]
    if len(parts) != 4:
        raise ValidationFailed.one(
            field, f"expected 4 comma-separated numbers minlon,minlat,maxlon,maxlat, got {len(parts)}"
        )
    errors: list[dict[str, str]] = []
    values: dict[str, float] = {}
    for name, text in zip(_BBOX_PARTS, parts, strict=True):
        # float() alone would accept "nan", "inf" and "1_000"; none of them is a coordinate.
        if not _NUMBER.fullmatch(text):
            errors.append({"field": field, "message": f"{name} {text!r} is not a number"})
            continue
        value = float(text)
        if not -_LIMITS[name] <= value <= _LIMITS[name]:
            lim = _LIMITS[name]
            errors.append({"field": field, "message": f"{name} {text} is out of range [{-lim:g}, {lim:g}]"})
            continue
        values[name] = value
    if "minlon" in values and "maxlon" in values and values["minlon"] > values["maxlon"]:
        errors.append(
            {
                "field": field,
                "message": "minlon is greater than maxlon (boxes across the antimeridian are not supported)",
            }
        )
    if "minlat" in values and "maxlat" in values and values["minlat"] > values["maxlat"]:
        errors.append({"field": field, "message": "minlat is greater than maxlat"})
    if errors:
        raise ValidationFailed(errors)
    return (values["minlon"], values["minlat"], values["maxlon"], values["maxlat"])


def radius_bbox(lat: float, lon: float, radius_m: float) -> Bbox:
    """A box sure to hold every position within `radius_m` of (lat, lon): the pre-filter for a radius
    search over a `PointIndex`, to be followed by `geodesic_m` on the candidates.

    Deliberately loose (about 1% and never less than the true extent); clamped to the world rather than
    wrapped across the antimeridian or a pole, since `parse_bbox` boxes never wrap either.
    """
    dlat = radius_m / 110_574.0 * 1.01  # 110,574 m: the shortest degree of latitude (at the equator)
    minlat, maxlat = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    widest = max(abs(minlat), abs(maxlat))
    if widest >= 89.9:
        return (-180.0, minlat, 180.0, maxlat)
    # A degree of longitude on the ellipsoid is never shorter than 111,320 m * cos(lat).
    dlon = radius_m / (111_320.0 * math.cos(math.radians(widest))) * 1.01
    if dlon >= 180.0:
        return (-180.0, minlat, 180.0, maxlat)
    return (max(-180.0, lon - dlon), minlat, min(180.0, lon + dlon), maxlat)


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class PointSet:
    """Points as parallel arrays: the form `PointIndex.query_arrays` returns and `cluster` eats fastest."""

    ids: ObjArray
    lon: FloatArray
    lat: FloatArray
    seq: IntArray

    def __len__(self) -> int:
        return int(self.lon.shape[0])

    def __iter__(self) -> Iterator[tuple[Any, float, float, int]]:
        """(item_id, lon, lat, seq) tuples, as `PointIndex.query` yields them."""
        return zip(self.ids.tolist(), self.lon.tolist(), self.lat.tolist(), self.seq.tolist(), strict=True)

    def take(self, mask: npt.NDArray[np.bool_]) -> PointSet:
        return PointSet(self.ids[mask], self.lon[mask], self.lat[mask], self.seq[mask])

    @classmethod
    def from_tuples(cls, points: Iterable[tuple[Any, float, float, int]]) -> PointSet:
        rows = list(points)
        ids = np.empty(len(rows), dtype=object)
        ids[:] = [r[0] for r in rows]
        return cls(
            ids,
            np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)),
            np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
            np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
        )


class PointIndex:
    """Points that move and leave (officer positions, updates that get retracted), queried by box.

    One index holds one audience's points: the caller keeps, say, an index of public updates and one of all
    updates, so a public map or its cluster counts can never include an internal item. The last `put` for
    an id wins; deciding which position is newest (handsets post late from offline queues) is the caller's.
    """

    _MIN_CAPACITY = 1024

    def __init__(self, points: Iterable[tuple[Hashable, float, float, int]] = ()) -> None:
        self._slot: dict[Hashable, int] = {}
        self._free: list[int] = []
        self._top = 0  # slots [0, _top) have been used; everything at or past it is NaN
        self._alloc(self._MIN_CAPACITY)
        for item_id, lon, lat, seq in points:
            self.put(item_id, lon, lat, seq)

    def _alloc(self, capacity: int) -> None:
        self._lon: FloatArray = np.full(capacity, np.nan)
        self._lat: FloatArray = np.full(capacity, np.nan)
        self._seq: IntArray = np.zeros(capacity, dtype=np.int64)
        self._ids: ObjArray = np.full(capacity, None, dtype=object)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot

    def get(self, item_id: Hashable) -> tuple[float, float, int] | None:
        """(lon, lat, seq) of one point, or None."""
        slot = self._slot.get(item_id)
        if slot is None:
            return None
        return float(self._lon[slot]), float(self._lat[slot]), int(self._seq[slot])

    def put(self, item_id: Hashable, lon: float, lat: float, seq: int) -> None:
        """Add a point or move it. O(1) amortised."""
        # A NaN would vanish from every query without a trace, so refuse it here rather than lose a point.
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"position out of range or not finite: lon={lon!r}, lat={lat!r}")
        slot = self._slot.get(item_id)
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                if self._top == self._lon.shape[0]:
                    self._resize(2 * self._top)
                slot = self._top
                self._top += 1
            self._slot[item_id] = slot
            self._ids[slot] = item_id
        self._lon[slot] = lon
        self._lat[slot] = lat
        self._seq[slot] = seq

    def remove(self, item_id: Hashable) -> bool:
        """Drop a point; False if it was not there."""
        slot = self._slot.pop(item_id, None)
        if slot is None:
            return False
        # NaN fails every comparison, so a free slot drops out of the scan with no separate "alive" mask.
        self._lon[slot] = np.nan
        self._lat[slot] = np.nan
        self._ids[slot] = None
        self._free.append(slot)
        # Scans cost the high-water mark, not the live count: compact once the index has mostly emptied.
        if self._top > 4 * self._MIN_CAPACITY and len(self._slot) < self._top // 4:
            self._compact()
        return True

    def _resize(self, capacity: int) -> None:
        old = (self._lon, self._lat, self._seq, self._ids)
        self._alloc(max(capacity, self._MIN_CAPACITY))
        n = self._top
        for new, prev in zip((self._lon, self._lat, self._seq, self._ids), old, strict=True):
            new[:n] = prev[:n]

    def _compact(self) -> None:
        live = np.fromiter(self._slot.values(), dtype=np.int64, count=len(self._slot))
        live.sort()  # keeps the surviving points in their old relative order
        lon, lat, seq, ids = self._lon[live], self._lat[live], self._seq[live], self._ids[live]
        self._alloc(max(2 * len(live), self._MIN_CAPACITY))
        n = len(live)
        self._lon[:n], self._lat[:n], self._seq[:n], self._ids[:n] = lon, lat, seq, ids
        self._top = n
        self._free = []
        self._slot = {item_id: i for i, item_id in enumerate(ids.tolist())}

    def _slots_in(self, bbox: Bbox) -> IntArray:
        minlon, minlat, maxlon, maxlat = bbox
        lon = self._lon[: self._top]
        lat = self._lat[: self._top]
        mask = (lon >= minlon) & (lon <= maxlon) & (lat >= minlat) & (lat <= maxlat)
        return np.flatnonzero(mask)

    def query_arrays(self, bbox: Bbox) -> PointSet:
        """The points in `bbox` (edges included) as arrays: a snapshot, safe to keep after later puts."""
        idx = self._slots_in(bbox)
        return PointSet(self._ids[idx], self._lon[idx], self._lat[idx], self._seq[idx])

    def query(self, bbox: Bbox) -> Iterator[tuple[Any, float, float, int]]:
        """(item_id, lon, lat, seq) for every point in `bbox`, edges included, in no particular order."""
        return iter(self.query_arrays(bbox))

    def count(self, bbox: Bbox) -> int:
        return int(self._slots_in(bbox).shape[0])

    def cluster(self, bbox: Bbox, zoom: int, cell_px: int = 60, max_ids: int = 0) -> list[dict[str, Any]]:
        """`cluster(self.query_arrays(bbox), bbox, ...)` without copying ids nobody will read."""
        _check_grid(zoom, cell_px)
        idx = self._slots_in(bbox)
        ids = self._ids[idx] if max_ids > 0 else None
        return _cluster(self._lon[idx], self._lat[idx], ids, zoom, cell_px, max_ids)


def mercator_px(lon: FloatArray, lat: FloatArray, zoom: int) -> tuple[FloatArray, FloatArray]:
    """World pixel coordinates at `zoom` (origin top-left, as in slippy-map tiles)."""
    world = TILE_PX * float(2**zoom)
    x = (lon + 180.0) / 360.0 * world
    phi = np.radians(np.clip(lat, -MERCATOR_MAX_LAT, MERCATOR_MAX_LAT))
    y = (0.5 - np.log(np.tan(math.pi / 4 + phi / 2)) / (2 * math.pi)) * world
    return x, y


# Means are summed as whole multiples of 1e-7 degrees (about 1 cm). Integers below 2**53 add exactly in
# float64, so a cluster's centre does not depend on the order its points arrived in: same set, same answer.
_FIXED = 1e7


def _cells(row: IntArray, col: IntArray) -> tuple[IntArray, IntArray]:
    """Number the occupied cells in row-major order: (each point's cell number, points per cell)."""
    r0, c0 = int(row.min()), int(col.min())
    ncols = int(col.max()) - c0 + 1
    ncells = (int(row.max()) - r0 + 1) * ncols
    local = (row - r0) * ncols + (col - c0)
    if ncells > max(4 * local.shape[0], 1 << 16):
        # A box many cells wide (a city at street zoom): a sort, where a table would be mostly empty.
        _, inverse, counts = np.unique(local, return_inverse=True, return_counts=True)
        return inverse.astype(np.int64), counts.astype(np.int64)
    # Few cells, many points (the usual map view): a counting table, no sort. Same numbering as above.
    per_cell = np.bincount(local, minlength=ncells)
    occupied = np.flatnonzero(per_cell)
    number = np.zeros(ncells, dtype=np.int64)
    number[occupied] = np.arange(occupied.shape[0])
    return number[local], per_cell[occupied].astype(np.int64)


def cluster(
    points: PointSet | Iterable[tuple[Any, float, float, int]],
    bbox: Bbox,
    zoom: int,
    cell_px: int = 60,
    max_ids: int = 0,
) -> list[dict[str, Any]]:
    """Group the points inside `bbox` into square cells of `cell_px` screen pixels at `zoom`.

    Cells are anchored to the world's pixel grid, not the box, so panning the map does not reshuffle
    clusters. Each cluster is `{"lon", "lat", "count", "bbox": [minlon, minlat, maxlon, maxlat]}`, its
    position the mean of its points; clusters of at most `max_ids` points also carry their sorted "ids".
    Every cell with a point yields a cluster, singletons included, ordered top-left to bottom-right.
    """
    _check_grid(zoom, cell_px)
    ps = points if isinstance(points, PointSet) else PointSet.from_tuples(points)
    minlon, minlat, maxlon, maxlat = bbox
    inside = (ps.lon >= minlon) & (ps.lon <= maxlon) & (ps.lat >= minlat) & (ps.lat <= maxlat)
    if not inside.all():
        ps = ps.take(inside)
    return _cluster(ps.lon, ps.lat, ps.ids, zoom, cell_px, max_ids)


def _check_grid(zoom: int, cell_px: int) -> None:
    if not (isinstance(zoom, int) and 0 <= zoom <= MAX_ZOOM):
        raise ValueError(f"zoom must be an integer in [0, {MAX_ZOOM}], got {zoom!r}")
    if cell_px < 1:
        raise ValueError(f"cell_px must be >= 1, got {cell_px!r}")


def _cluster(
    lon: FloatArray, lat: FloatArray, ids: ObjArray | None, zoom: int, cell_px: int, max_ids: int
) -> list[dict[str, Any]]:
    if lon.shape[0] == 0:
        return []
    x, y = mercator_px(lon, lat, zoom)
    inverse, counts = _cells(np.floor(y / cell_px).astype(np.int64), np.floor(x / cell_px).astype(np.int64))
    n = counts.shape[0]
    lon_sum = np.bincount(inverse, weights=np.round(lon * _FIXED), minlength=n)
    lat_sum = np.bincount(inverse, weights=np.round(lat * _FIXED), minlength=n)
    lo_lon = np.full(n, np.inf)
    lo_lat = np.full(n, np.inf)
    hi_lon = np.full(n, -np.inf)
    hi_lat = np.full(n, -np.inf)
    np.minimum.at(lo_lon, inverse, lon)
    np.minimum.at(lo_lat, inverse, lat)
    np.maximum.at(hi_lon, inverse, lon)
    np.maximum.at(hi_lat, inverse, lat)

    members: dict[int, list[Any]] = {}
    if max_ids > 0 and ids is not None:
        listed = np.flatnonzero(counts[inverse] <= max_ids)
        for i, item_id in zip(inverse[listed].tolist(), ids[listed].tolist(), strict=True):
            members.setdefault(i, []).append(item_id)

    out: list[dict[str, Any]] = []
    rows = zip(
        counts.tolist(),
        (lon_sum / counts / _FIXED).tolist(),
        (lat_sum / counts / _FIXED).tolist(),
        lo_lon.tolist(),
        lo_lat.tolist(),
        hi_lon.tolist(),
        hi_lat.tolist(),
        strict=True,
    )
    for i, (count, mean_lon, mean_lat, x0, y0, x1, y1) in enumerate(rows):
        c: dict[str, Any] = {
            "lon": round(mean_lon, 7),
            "lat": round(mean_lat, 7),
            "count": count,
            "bbox": [x0, y0, x1, y1],
        }
        if i in members:
            c["ids"] = sorted(members[i], key=str)
        out.append(c)
    return out
