"""Zones (shapely), geodesic distance (geopy) and GeoJSON in and out.

Pure and synchronous: no aiohttp, no TinyDB. Positions are (lat, lon) in argument lists, because that is
how people say them, and [lon, lat] inside GeoJSON, because RFC 7946 says so; nothing else mixes them.
The bbox parser, the point index and clustering live in `spatial.py` and are re-exported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from pyproj.enums import TransformDirection
from shapely.geometry import LineString, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from fieldcomms.errors import ValidationFailed
from fieldcomms.spatial import (
    MAX_ZOOM,
    Bbox,
    PointIndex,
    PointSet,
    cluster,
    mercator_px,
    parse_bbox,
    radius_bbox,
)

__all__ = [
    "BUFFER_MAX_M",
    "MAX_ZOOM",
    "NAME_MAX",
    "ZONE_KINDS",
    "ZONE_VISIBILITIES",
    "Bbox",
    "PointIndex",
    "PointSet",
    "ZoneIndex",
    "cluster",
    "feature",
    "feature_collection",
    "geodesic_m",
    "mercator_px",
    "parse_bbox",
    "parse_zone_feature",
    "point_geometry",
    "radius_bbox",
    "zone_area",
    "zone_to_feature",
]

ZONE_KINDS = ("demonstration-area", "march-route", "cordon", "rendezvous", "hazard", "other")
ZONE_VISIBILITIES = ("public", "internal")
NAME_MAX = 200
BUFFER_MAX_M = 50_000.0
_GEOMETRY_TYPES = ("Polygon", "LineString", "Point")
# A body of bad coordinates should not come back as a body of errors.
_MAX_POSITION_ERRORS = 10
# 16 segments per quarter circle: a chord's midpoint then sits within 0.12% of the radius, so a 100 m
# buffer is right to about 12 cm at worst (the default of 8 would be 50 cm).
_QUAD_SEGS = 16


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --- zones in -------------------------------------------------------------------------------------------


def parse_zone_feature(obj: Any) -> dict[str, Any]:
    """Validate a zone posted as a GeoJSON Feature and return it normalised, or raise ValidationFailed.

    Returns `{"name", "kind", "visibility", "buffer_m", "geometry"}`: the name trimmed, `buffer_m` a float
    (0 when absent), the geometry 2-D with polygon exteriors counter-clockwise and holes clockwise
    (RFC 7946 section 3.1.6). Other members of the Feature, `id` and unknown properties included, are
    dropped: the server assigns ids and stores only what it understands.
    """
    if not isinstance(obj, Mapping):
        raise ValidationFailed.one("body", "must be a GeoJSON Feature object")
    errors: list[dict[str, str]] = []
    if obj.get("type") != "Feature":
        errors.append({"field": "type", "message": f"must be 'Feature', got {obj.get('type')!r}"})
    props = _parse_properties(obj.get("properties"), errors)
    geometry = _parse_geometry(obj.get("geometry"), errors)
    if errors or geometry is None:  # a None geometry has always added its error
        raise ValidationFailed(errors)
    return {**props, "geometry": geometry}


def _parse_properties(props: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        errors.append({"field": "properties", "message": "must be an object"})
        return {}
    out: dict[str, Any] = {}

    name = props.get("name")
    if name is None:
        errors.append({"field": "properties.name", "message": "is required"})
    elif not isinstance(name, str):
        errors.append({"field": "properties.name", "message": "must be a string"})
    elif not name.strip():
        errors.append({"field": "properties.name", "message": "must not be empty"})
    elif len(name.strip()) > NAME_MAX:
        errors.append({"field": "properties.name", "message": f"must be at most {NAME_MAX} characters"})
    else:
        out["name"] = name.strip()

    kind = props.get("kind")
    if kind is None:
        errors.append({"field": "properties.kind", "message": "is required: one of " + ", ".join(ZONE_KINDS)})
    elif kind not in ZONE_KINDS:
        errors.append(
            {"field": "properties.kind", "message": f"{kind!r} is not one of " + ", ".join(ZONE_KINDS)}
        )
    else:
        out["kind"] = kind

    visibility = props.get("visibility", "internal")
    if visibility not in ZONE_VISIBILITIES:
        errors.append({"field": "properties.visibility", "message": "must be 'public' or 'internal'"})
    else:
        out["visibility"] = visibility

    buffer_m = props.get("buffer_m")
    if buffer_m is None:
        out["buffer_m"] = 0.0
    elif not _is_number(buffer_m) or not math.isfinite(buffer_m):
        errors.append({"field": "properties.buffer_m", "message": "must be a finite number of metres"})
    elif not 0 <= buffer_m <= BUFFER_MAX_M:
        errors.append(
            {"field": "properties.buffer_m", "message": f"must be between 0 and {BUFFER_MAX_M:g} metres"}
        )
    else:
        out["buffer_m"] = float(buffer_m)
    return out


def _parse_geometry(geom: Any, errors: list[dict[str, str]]) -> dict[str, Any] | None:
    if geom is None:
        errors.append({"field": "geometry", "message": "is required: a Polygon, LineString or Point"})
        return None
    if not isinstance(geom, Mapping):
        errors.append({"field": "geometry", "message": "must be a GeoJSON geometry object"})
        return None
    gtype = geom.get("type")
    if gtype not in _GEOMETRY_TYPES:
        errors.append(
            {"field": "geometry.type", "message": f"must be Polygon, LineString or Point, got {gtype!r}"}
        )
        return None

    problems: list[str] = []
    coords = geom.get("coordinates")
    parsed: Any
    if gtype == "Point":
        parsed = _position(coords, "the point", problems)
    elif gtype == "LineString":
        parsed = _positions(coords, "the line", problems)
        if parsed is not None and len(set(parsed)) < 2:
            problems.append("a LineString needs at least 2 distinct positions")
    else:
        parsed = _rings(coords, problems)
    if problems:
        if len(problems) > _MAX_POSITION_ERRORS:
            extra = len(problems) - _MAX_POSITION_ERRORS
            problems = problems[:_MAX_POSITION_ERRORS] + [f"and {extra} more problems"]
        errors.extend({"field": "geometry.coordinates", "message": p} for p in problems)
        return None

    g: BaseGeometry
    if gtype == "Point":
        g = Point(parsed)
    elif gtype == "LineString":
        g = LineString(parsed)
    else:
        g = Polygon(parsed[0], parsed[1:])
    if not g.is_valid:
        errors.append({"field": "geometry", "message": _validity_reason(g)})
        return None
    if isinstance(g, Polygon):
        g = orient(g, sign=1.0)
    return _geometry_dict(g)


def _position(p: Any, where: str, problems: list[str]) -> tuple[float, float] | None:
    # Positions may carry an altitude (RFC 7946 3.1.1); zones are flat, so it is accepted and dropped.
    if not isinstance(p, Sequence) or isinstance(p, str) or len(p) not in (2, 3):
        problems.append(f"{where}: a position must be an array [lon, lat]")
        return None
    if not all(_is_number(v) and math.isfinite(v) for v in p):
        problems.append(f"{where}: coordinates must be finite numbers, got {list(p)!r}")
        return None
    lon, lat = float(p[0]), float(p[1])
    ok = True
    if not -180.0 <= lon <= 180.0:
        problems.append(f"{where}: longitude {lon:g} is out of range [-180, 180]")
        ok = False
    if not -90.0 <= lat <= 90.0:
        problems.append(f"{where}: latitude {lat:g} is out of range [-90, 90]")
        ok = False
    return (lon, lat) if ok else None


def _positions(ps: Any, where: str, problems: list[str]) -> list[tuple[float, float]] | None:
    if not isinstance(ps, Sequence) or isinstance(ps, str):
        problems.append(f"{where}: must be an array of positions")
        return None
    out = [_position(p, f"{where}, position {i}", problems) for i, p in enumerate(ps)]
    if any(p is None for p in out):
        return None
    return [p for p in out if p is not None]


def _rings(rings: Any, problems: list[str]) -> list[list[tuple[float, float]]] | None:
    if not isinstance(rings, Sequence) or isinstance(rings, str) or not rings:
        problems.append("a Polygon needs an array of linear rings, the exterior first")
        return None
    out = []
    for r, ring in enumerate(rings):
        where = "exterior ring" if r == 0 else f"hole {r}"
        positions = _positions(ring, where, problems)
        if positions is None:
            continue
        if len(positions) < 4:
            problems.append(
                f"{where}: too few points ({len(positions)}); a closed ring needs at least 4 positions"
            )
        elif positions[0] != positions[-1]:
            problems.append(f"{where}: not closed; the last position must repeat the first")
        out.append(positions)
    return None if len(out) != len(rings) else out


_REASON = re.compile(r"(?P<why>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]")


def _validity_reason(g: BaseGeometry) -> str:
    # GEOS says "Self-intersection[-1.47 53.38]"; a person reading a 422 wants "self-intersection at ...".
    reason = explain_validity(g)
    m = _REASON.fullmatch(reason.strip())
    if not m:
        return f"invalid geometry: {reason}"
    return f"{m['why'].strip().lower()} at lon {m['x']}, lat {m['y']}"


def _geometry_dict(g: BaseGeometry) -> dict[str, Any]:
    if isinstance(g, Point):
        return point_geometry(g.y, g.x)
    if isinstance(g, LineString):
        return {"type": "LineString", "coordinates": [[x, y] for x, y in g.coords]}
    if isinstance(g, Polygon):
        rings = [g.exterior, *g.interiors]
        return {"type": "Polygon", "coordinates": [[[x, y] for x, y in r.coords] for r in rings]}
    raise TypeError(f"unsupported geometry {g.geom_type}")


# --- zones as areas -------------------------------------------------------------------------------------


def zone_area(zone: Mapping[str, Any]) -> BaseGeometry:
    """The area in which a position counts as inside `zone`: its geometry widened by `buffer_m` metres.

    Buffering happens in an azimuthal equidistant projection centred on the zone, where metres are metres
    in every direction out to tens of kilometres; a buffer in degrees would make a circle in Sheffield
    an ellipse two-thirds taller than it is wide. With no buffer a Point or LineString holds
    only the positions exactly on it.
    """
    g = shape(zone["geometry"])
    buffer_m = float(zone.get("buffer_m") or 0.0)
    if buffer_m <= 0:
        return g
    c = g.centroid
    # A bare PROJ pipeline, not Transformer.from_crs: the CRS-to-CRS search costs ~13 ms a zone, this 0.3 ms.
    local = pyproj.Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=aeqd +lat_0={c.y!r} +lon_0={c.x!r} +ellps=WGS84"
    )
    projected = shapely.transform(g, lambda xy: _apply(local, xy, TransformDirection.FORWARD))
    area = projected.buffer(buffer_m, quad_segs=_QUAD_SEGS)
    return shapely.transform(area, lambda xy: _apply(local, xy, TransformDirection.INVERSE))


def _apply(
    t: pyproj.Transformer, xy: npt.NDArray[np.float64], direction: TransformDirection
) -> npt.NDArray[np.float64]:
    x, y = t.transform(xy[:, 0], xy[:, 1], direction=direction)
    return np.column_stack([x, y])


class ZoneIndex:
    """One event's zones, answering "which zones is this position in?".

    Zone dicts are those `parse_zone_feature` returns plus an "id" (other keys are carried through). The
    buffered areas are computed once per zone on `add`, so a bad zone fails there and not in a later
    lookup; the STRtree is rebuilt on the first lookup after a change, as zones change rarely and
    positions arrive constantly.
    """

    def __init__(self, zones: Iterable[Mapping[str, Any]] = ()) -> None:
        self._zones: dict[str, Mapping[str, Any]] = {}
        self._areas: dict[str, BaseGeometry] = {}
        self._tree: shapely.STRtree | None = None
        self._tree_ids: list[str] = []
        self._tree_areas: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        for z in zones:
            self.add(z)

    def __len__(self) -> int:
        return len(self._zones)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._zones

    def add(self, zone: Mapping[str, Any]) -> None:
        """Add a zone, or replace the one with the same id."""
        area = zone_area(zone)
        # Prepared areas answer point-in-polygon in O(log n) edges instead of O(n): a march route can be long.
        shapely.prepare(area)
        self._zones[zone["id"]] = zone
        self._areas[zone["id"]] = area
        self._tree = None

    def remove(self, zone_id: str) -> bool:
        """Drop a zone; False if it was not there."""
        if self._zones.pop(zone_id, None) is None:
            return False
        del self._areas[zone_id]
        self._tree = None
        return True

    def area(self, zone_id: str) -> BaseGeometry | None:
        return self._areas.get(zone_id)

    def zones_containing(self, lat: float, lon: float) -> list[Mapping[str, Any]]:
        """Zones whose area holds the position (edges included), ordered by name, then id."""
        if not self._zones:
            return []
        if self._tree is None:
            self._tree_ids = list(self._areas)
            self._tree_areas = np.array([self._areas[i] for i in self._tree_ids], dtype=object)
            self._tree = shapely.STRtree(self._tree_areas)
        pt = Point(lon, lat)
        candidates = self._tree.query(pt)
        if candidates.size == 0:
            return []
        hits = candidates[shapely.intersects(self._tree_areas[candidates], pt)]
        found = [self._zones[self._tree_ids[i]] for i in hits.tolist()]
        return sorted(found, key=lambda z: (z["name"], z["id"]))


# --- distance -------------------------------------------------------------------------------------------


_GEOD = pyproj.Geod(ellps="WGS84")


def geodesic_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in metres along the WGS 84 ellipsoid (Karney's algorithm).

    PROJ's C implementation rather than geopy's: they agree to the last bit (tests hold them together), but
    geopy's pure-Python geographiclib costs ~190 us a call to this ~2 us, and "officers near" and alert
    recipients measure every officer of an event on the event loop.
    """
    return float(_GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --- GeoJSON out ----------------------------------------------------------------------------------------


def point_geometry(lat: float, lon: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def feature(
    geometry: Mapping[str, Any] | None, properties: Mapping[str, Any], id: str | None = None
) -> dict[str, Any]:
    """A GeoJSON Feature; `id` is left out when None (RFC 7946 section 3.2)."""
    f: dict[str, Any] = {"type": "Feature"}
    if id is not None:
        f["id"] = id
    f["geometry"] = dict(geometry) if geometry is not None else None
    f["properties"] = dict(properties)
    return f


def feature_collection(features: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection; no `crs` member, since RFC 7946 fixes WGS 84."""
    return {"type": "FeatureCollection", "features": list(features)}


def zone_to_feature(zone: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """A stored zone as a Feature: its geometry as stored, its id on the Feature, and the properties the
    caller chose for this viewer (the caller, through visibility, decides what they may see)."""
    return feature(zone["geometry"], properties, id=zone["id"])
