"""fieldcomms.geo and fieldcomms.spatial: zones in, zone membership, distance, bbox index, clustering, GeoJSON.

Distances are checked against independent implementations (geopy's destination, pyproj's Geod) rather
than against numbers computed with the code under test.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import LinearRing, Point, shape

from fieldcomms.errors import ValidationFailed
from fieldcomms.geo import (
    Bbox,
    PointIndex,
    PointSet,
    ZoneIndex,
    cluster,
    feature,
    feature_collection,
    geodesic_m,
    mercator_px,
    parse_bbox,
    parse_zone_feature,
    point_geometry,
    radius_bbox,
    zone_area,
    zone_to_feature,
)

WGS84 = Geod(ellps="WGS84")

# --- the Sheffield seed (Liberal Democrat conference, March 2011) ---------------------------------------

DEVONSHIRE_GREEN = (53.3775, -1.4790)  # (lat, lon)
BARKERS_POOL = (53.3800, -1.4710)
ROUTE = [[-1.4790, 53.3775], [-1.4760, 53.3785], [-1.4730, 53.3795], [-1.4710, 53.3800]]  # [lon, lat]

DEMO_AREA: dict[str, Any] = {  # ~100 m across, counter-clockwise as drawn
    "type": "Feature",
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [
                [-1.47175, 53.37955],
                [-1.47025, 53.37955],
                [-1.47025, 53.38045],
                [-1.47175, 53.38045],
                [-1.47175, 53.37955],
            ]
        ],
    },
    "properties": {
        "name": "Barkers Pool demonstration area",
        "kind": "demonstration-area",
        "visibility": "public",
    },
}
MARCH_ROUTE: dict[str, Any] = {
    "type": "Feature",
    "geometry": {"type": "LineString", "coordinates": ROUTE},
    "properties": {
        "name": "March route: Devonshire Green to Barkers Pool",
        "kind": "march-route",
        "visibility": "public",
        "buffer_m": 20,
    },
}
CORDON: dict[
    str, Any
] = {  # around City Hall, north-west of the demonstration area; drawn clockwise on purpose
    "type": "Feature",
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [
                [-1.4740, 53.3802],
                [-1.4740, 53.3812],
                [-1.4722, 53.3812],
                [-1.4722, 53.3802],
                [-1.4740, 53.3802],
            ]
        ],
    },
    "properties": {"name": "City Hall cordon", "kind": "cordon"},
}


def destination(lat: float, lon: float, metres: float, bearing: float) -> tuple[float, float]:
    p = geodesic(meters=metres).destination((lat, lon), bearing)
    return p.latitude, p.longitude


def with_id(zone: dict[str, Any], zone_id: str) -> dict[str, Any]:
    return {**zone, "id": zone_id}


@pytest.fixture
def seed() -> ZoneIndex:
    return ZoneIndex(
        [
            with_id(parse_zone_feature(DEMO_AREA), "z-demo"),
            with_id(parse_zone_feature(MARCH_ROUTE), "z-route"),
            with_id(parse_zone_feature(CORDON), "z-cordon"),
        ]
    )


# --- parse_zone_feature: the good ---------------------------------------------------------------------


def test_seed_zones_normalise() -> None:
    demo = parse_zone_feature(DEMO_AREA)
    assert demo == {
        "name": "Barkers Pool demonstration area",
        "kind": "demonstration-area",
        "visibility": "public",
        "buffer_m": 0.0,
        "geometry": DEMO_AREA["geometry"],
    }
    route = parse_zone_feature(MARCH_ROUTE)
    assert route["buffer_m"] == 20.0 and isinstance(route["buffer_m"], float)
    assert route["geometry"] == {"type": "LineString", "coordinates": ROUTE}
    assert parse_zone_feature(CORDON)["visibility"] == "internal"  # the default: publishing is deliberate
    json.dumps(route)  # stored as JSON: plain lists and floats only


def test_clockwise_polygon_comes_back_counter_clockwise() -> None:
    ring = CORDON["geometry"]["coordinates"][0]
    assert not LinearRing(ring).is_ccw
    out = parse_zone_feature(CORDON)["geometry"]["coordinates"]
    assert LinearRing(out[0]).is_ccw
    assert shape(parse_zone_feature(CORDON)["geometry"]).equals(shape(CORDON["geometry"]))


def test_holes_are_allowed_and_come_back_clockwise() -> None:
    outer = [[-1.475, 53.375], [-1.465, 53.375], [-1.465, 53.385], [-1.475, 53.385], [-1.475, 53.375]]
    hole = [[-1.471, 53.379], [-1.469, 53.379], [-1.469, 53.381], [-1.471, 53.381], [-1.471, 53.379]]  # ccw
    out = parse_zone_feature(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [outer, hole]},
            "properties": {"name": "Ring road hazard", "kind": "hazard"},
        }
    )["geometry"]["coordinates"]
    assert LinearRing(out[0]).is_ccw and not LinearRing(out[1]).is_ccw


def test_lenient_where_harmless() -> None:
    zone = parse_zone_feature(
        {
            "type": "Feature",
            "id": "client-chosen",
            "geometry": {"type": "Point", "coordinates": [-1, 53, 70.5]},  # integers, and an altitude
            "properties": {
                "name": "  Rendezvous R1 ",
                "kind": "rendezvous",
                "buffer_m": None,
                "colour": "red",
            },
        }
    )
    assert zone == {
        "name": "Rendezvous R1",
        "kind": "rendezvous",
        "visibility": "internal",
        "buffer_m": 0.0,
        "geometry": {"type": "Point", "coordinates": [-1.0, 53.0]},
    }


# --- parse_zone_feature: the bad ----------------------------------------------------------------------


def mutated(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()
NAN, INF = float("nan"), float("inf")
BOWTIE = [[[-1.472, 53.379], [-1.470, 53.381], [-1.470, 53.379], [-1.472, 53.381], [-1.472, 53.379]]]

# fmt: off
INVALID = [
    # (case, base, path, value, field, words in the message)
    ("bowtie", DEMO_AREA, "geometry.coordinates", BOWTIE, "geometry", "self-intersection at lon -1.471"),
    ("3-position ring", DEMO_AREA, "geometry.coordinates", [[[0, 0], [1, 1], [0, 0]]], "geometry.coordinates", "too few points"),
    ("open ring", DEMO_AREA, "geometry.coordinates", [[[0, 0], [1, 0], [1, 1], [0, 1]]], "geometry.coordinates", "not closed"),
    ("no rings", DEMO_AREA, "geometry.coordinates", [], "geometry.coordinates", "linear rings"),
    ("lat 91", MARCH_ROUTE, "geometry.coordinates", [[-1.47, 53.38], [-1.47, 91]], "geometry.coordinates", "latitude 91 is out of range"),
    ("lon -181", MARCH_ROUTE, "geometry.coordinates", [[-181, 53.38], [-1.47, 53.38]], "geometry.coordinates", "longitude -181 is out of range"),
    ("NaN", MARCH_ROUTE, "geometry.coordinates", [[NAN, 53.38], [-1.47, 53.38]], "geometry.coordinates", "finite"),
    ("inf", DEMO_AREA, "geometry.coordinates", [[[0, 0], [1, 0], [1, INF], [0, 0]]], "geometry.coordinates", "finite"),
    ("string coordinate", MARCH_ROUTE, "geometry.coordinates", [["-1.47", 53.38], [-1.46, 53.38]], "geometry.coordinates", "finite numbers"),
    ("boolean coordinate", MARCH_ROUTE, "geometry.coordinates", [[True, 53.38], [-1.46, 53.38]], "geometry.coordinates", "finite numbers"),
    ("1-element position", MARCH_ROUTE, "geometry.coordinates", [[-1.47], [-1.46, 53.38]], "geometry.coordinates", "[lon, lat]"),
    ("line of one point", MARCH_ROUTE, "geometry.coordinates", [[-1.47, 53.38], [-1.47, 53.38]], "geometry.coordinates", "2 distinct"),
    ("point not a position", MARCH_ROUTE, "geometry", {"type": "Point", "coordinates": [[-1.47, 53.38]]}, "geometry.coordinates", "[lon, lat]"),
    ("MultiPolygon", DEMO_AREA, "geometry.type", "MultiPolygon", "geometry.type", "Polygon, LineString or Point"),
    ("no geometry", DEMO_AREA, "geometry", _DELETE, "geometry", "required"),
    ("geometry not an object", DEMO_AREA, "geometry", "POLYGON((0 0))", "geometry", "geometry object"),
    ("not a Feature", DEMO_AREA, "type", "FeatureCollection", "type", "Feature"),
    ("unknown kind", DEMO_AREA, "properties.kind", "kettle", "properties.kind", "'kettle' is not one of"),
    ("missing kind", DEMO_AREA, "properties.kind", _DELETE, "properties.kind", "required"),
    ("missing name", DEMO_AREA, "properties.name", _DELETE, "properties.name", "required"),
    ("blank name", DEMO_AREA, "properties.name", "   ", "properties.name", "empty"),
    ("long name", DEMO_AREA, "properties.name", "x" * 201, "properties.name", "at most 200"),
    ("name not a string", DEMO_AREA, "properties.name", 7, "properties.name", "string"),
    ("bad visibility", DEMO_AREA, "properties.visibility", "everyone", "properties.visibility", "public"),
    ("negative buffer", MARCH_ROUTE, "properties.buffer_m", -1, "properties.buffer_m", "between 0 and 50000"),
    ("huge buffer", MARCH_ROUTE, "properties.buffer_m", 50_001, "properties.buffer_m", "between 0 and 50000"),
    ("NaN buffer", MARCH_ROUTE, "properties.buffer_m", NAN, "properties.buffer_m", "finite"),
    ("string buffer", MARCH_ROUTE, "properties.buffer_m", "20", "properties.buffer_m", "finite number"),
    ("properties not an object", DEMO_AREA, "properties", ["name"], "properties", "object"),
]
# fmt: on


@pytest.mark.parametrize(
    ("base", "path", "value", "field", "words"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_zone_names_field_and_reason(
    base: dict[str, Any], path: str, value: Any, field: str, words: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_zone_feature(mutated(base, path, value))
    err = caught.value
    assert err.status == 422
    assert [e["field"] for e in err.errors] == [field], err.errors
    assert words in err.errors[0]["message"]


def test_every_problem_reported_at_once() -> None:
    bad = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[-1.47, 91], [200, 53.38], [-1.47, NAN]]},
        "properties": {"kind": "kettle", "buffer_m": -5},
    }
    with pytest.raises(ValidationFailed) as caught:
        parse_zone_feature(bad)
    fields = [e["field"] for e in caught.value.errors]
    assert sorted(set(fields)) == [
        "geometry.coordinates",
        "properties.buffer_m",
        "properties.kind",
        "properties.name",
    ]
    assert fields.count("geometry.coordinates") == 3  # one per bad position, each saying which
    assert "position 1" in caught.value.errors[-2]["message"]


def test_a_flood_of_bad_positions_is_capped() -> None:
    bad = mutated(MARCH_ROUTE, "geometry.coordinates", [[0, 95 + i] for i in range(500)])
    with pytest.raises(ValidationFailed) as caught:
        parse_zone_feature(bad)
    assert len(caught.value.errors) == 11
    assert caught.value.errors[-1]["message"] == "and 490 more problems"


@pytest.mark.parametrize("body", [None, [], "Feature", 3])
def test_body_not_an_object(body: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_zone_feature(body)
    assert caught.value.errors == [{"field": "body", "message": "must be a GeoJSON Feature object"}]


# --- zone_area and ZoneIndex ---------------------------------------------------------------------------


@pytest.mark.parametrize("lat,lon", [BARKERS_POOL, (-33.87, 151.21), (69.65, 18.96), (0.0, 0.0)])
def test_point_buffer_is_metres_on_the_ground(lat: float, lon: float) -> None:
    area = zone_area({"buffer_m": 100, "geometry": point_geometry(lat, lon)})
    for bearing in range(0, 360, 15):
        assert area.intersects(Point(*reversed(destination(lat, lon, 99, bearing)))), bearing
        assert not area.intersects(Point(*reversed(destination(lat, lon, 101, bearing)))), bearing


def test_line_buffer_is_metres_on_the_ground() -> None:
    area = zone_area(parse_zone_feature(MARCH_ROUTE))
    (lon1, lat1), (lon2, lat2) = ROUTE[1], ROUTE[2]
    along, _, length = WGS84.inv(lon1, lat1, lon2, lat2)
    mid_lat, mid_lon = destination(lat1, lon1, length / 2, along)
    for side in (-90, 90):
        for metres, inside in ((19, True), (21, False)):
            lat, lon = destination(mid_lat, mid_lon, metres, along + side)
            assert area.intersects(Point(lon, lat)) is inside, (side, metres)


def test_unbuffered_point_holds_only_itself() -> None:
    point = parse_zone_feature(
        {
            "type": "Feature",
            "geometry": point_geometry(*BARKERS_POOL),
            "properties": {"name": "R", "kind": "rendezvous"},
        }
    )
    index = ZoneIndex([with_id(point, "p")])
    assert [z["id"] for z in index.zones_containing(*BARKERS_POOL)] == ["p"]
    assert index.zones_containing(BARKERS_POOL[0] + 1e-6, BARKERS_POOL[1]) == []


DEMO, ROUTE_NAME, CORDON_NAME = (z["properties"]["name"] for z in (DEMO_AREA, MARCH_ROUTE, CORDON))


def _route_offset(metres: float) -> tuple[float, float]:
    (lon1, lat1), (lon2, lat2) = ROUTE[1], ROUTE[2]
    along, _, length = WGS84.inv(lon1, lat1, lon2, lat2)
    mid = destination(lat1, lon1, length / 2, along)
    return destination(*mid, metres, along + 90)


UPDATES = [
    # (case, (lat, lon), zone names, in order)
    ("at Barkers Pool, route's end", (53.3800, -1.4712), [DEMO, ROUTE_NAME]),
    ("in the demo area, off the route", (53.3804, -1.4704), [DEMO]),
    ("on the demo area's edge", (53.38045, -1.4710), [DEMO]),
    ("5 m north of the demo area", destination(53.38045, -1.4710, 5, 0), []),
    ("19 m beside the route", _route_offset(19), [ROUTE_NAME]),
    ("21 m beside the route", _route_offset(21), []),
    ("at Devonshire Green", DEVONSHIRE_GREEN, [ROUTE_NAME]),
    ("inside the cordon", (53.3807, -1.4731), [CORDON_NAME]),
    ("Sheffield station", (53.3781, -1.4620), []),
    ("Sydney", (-33.87, 151.21), []),
]


@pytest.mark.parametrize(("where", "names"), [u[1:] for u in UPDATES], ids=[u[0] for u in UPDATES])
def test_updates_find_their_zones(seed: ZoneIndex, where: tuple[float, float], names: list[str]) -> None:
    assert [z["name"] for z in seed.zones_containing(*where)] == names


def test_zone_index_changes(seed: ZoneIndex) -> None:
    at = (53.3800, -1.4712)
    assert seed.remove("z-route") is True
    assert seed.remove("z-route") is False
    assert [z["id"] for z in seed.zones_containing(*at)] == ["z-demo"]
    # Same name as the demonstration area: ties are broken by id, so the order never depends on insertion.
    twin = with_id(parse_zone_feature(mutated(DEMO_AREA, "properties.kind", "other")), "a-twin")
    seed.add(twin)
    assert [z["id"] for z in seed.zones_containing(*at)] == ["a-twin", "z-demo"]
    # Replacing a zone under its id moves it.
    seed.add(with_id(parse_zone_feature(CORDON), "a-twin"))
    assert [z["id"] for z in seed.zones_containing(*at)] == ["z-demo"]
    assert [z["id"] for z in seed.zones_containing(53.3807, -1.4731)] == ["a-twin", "z-cordon"]
    assert len(seed) == 3 and "a-twin" in seed and "z-route" not in seed
    assert ZoneIndex().zones_containing(*at) == []


def test_zone_index_returns_the_zone_dicts_it_was_given(seed: ZoneIndex) -> None:
    zone = {**parse_zone_feature(CORDON), "id": "z-c2", "event": "libdempolicing", "seq": 41}
    seed.add(zone)
    assert zone in seed.zones_containing(53.3807, -1.4731)


# --- distance ------------------------------------------------------------------------------------------


SHEFFIELD_PAIRS = [
    (DEVONSHIRE_GREEN, BARKERS_POOL),
    ((-33.87, 151.21), BARKERS_POOL),  # Sydney: long, and across hemispheres
    (BARKERS_POOL, (53.3781, -1.4620)),  # to the station
    (BARKERS_POOL, BARKERS_POOL),
    ((53.3811, -1.4701), (51.5007, -0.1246)),  # to Westminster
]


@pytest.mark.parametrize(("a", "b"), SHEFFIELD_PAIRS)
def test_geodesic_m_matches_geopy(a: tuple[float, float], b: tuple[float, float]) -> None:
    # geopy (geographiclib, pure Python) is an independent implementation of the same algorithm.
    assert geodesic_m(*a, *b) == pytest.approx(geodesic(a, b).meters, abs=1e-6)


def test_geodesic_m_is_on_the_ellipsoid_not_a_sphere() -> None:
    # One degree along the equator of WGS 84 (a = 6378137 m): 2 * pi * a / 360.
    assert geodesic_m(0, 0, 0, 1) == pytest.approx(2 * math.pi * 6_378_137 / 360, abs=1e-6)
    # A degree of latitude is longer near the pole than at the equator; a sphere would make them equal.
    assert geodesic_m(89, 0, 90, 0) - geodesic_m(0, 0, 1, 0) == pytest.approx(111_694 - 110_574, abs=2)


def test_devonshire_green_to_barkers_pool_is_about_600_m() -> None:
    assert 590 < geodesic_m(*DEVONSHIRE_GREEN, *BARKERS_POOL) < 610


@pytest.mark.parametrize(
    ("lat", "lon", "radius"),
    [(*BARKERS_POOL, 500), (-33.87, 151.21, 2_000), (0, 0, 50_000), (70, 20, 100_000)],
)
def test_radius_bbox_holds_the_circle_snugly(lat: float, lon: float, radius: float) -> None:
    minlon, minlat, maxlon, maxlat = radius_bbox(lat, lon, radius)
    for bearing in range(0, 360, 5):
        plat, plon = destination(lat, lon, radius, bearing)
        assert minlon <= plon <= maxlon and minlat <= plat <= maxlat, bearing
    # Loose, but not so loose it stops being a useful pre-filter (east-west is widest far north, where
    # the box takes the cosine of its poleward edge).
    assert geodesic_m(lat, lon, maxlat, lon) < radius * 1.03
    assert geodesic_m(lat, lon, lat, maxlon) < radius * 1.10


def test_radius_bbox_clamps_instead_of_wrapping() -> None:
    assert radius_bbox(89.99, 0, 5_000)[0::2] == (-180.0, 180.0)
    assert radius_bbox(0, 179.99, 5_000)[2] == 180.0


# --- GeoJSON out ---------------------------------------------------------------------------------------


def test_sydney_is_lon_lat() -> None:
    geom = point_geometry(-33.87, 151.21)
    assert geom == {"type": "Point", "coordinates": [151.21, -33.87]}
    f = feature(geom, {"layer": "updates"}, id="u1")
    read = shape(json.loads(json.dumps(f))["geometry"])
    assert (read.x, read.y) == (151.21, -33.87)


def test_feature_and_collection_shape() -> None:
    f = feature(point_geometry(*BARKERS_POOL), {"layer": "updates"})
    assert f == {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-1.471, 53.38]},
        "properties": {"layer": "updates"},
    }
    assert feature(None, {})["geometry"] is None  # an unlocated item, still valid GeoJSON
    fc = feature_collection(iter([f]))
    assert fc == {"type": "FeatureCollection", "features": [f]}
    assert "crs" not in fc


def test_zone_to_feature_keeps_stored_geometry_and_id() -> None:
    zone = with_id(parse_zone_feature(CORDON), "z-cordon")
    f = zone_to_feature(zone, {"name": zone["name"], "kind": "cordon"})
    assert f["id"] == "z-cordon" and f["type"] == "Feature"
    assert f["geometry"] == zone["geometry"]
    assert f["properties"] == {"name": "City Hall cordon", "kind": "cordon"}
    assert LinearRing(f["geometry"]["coordinates"][0]).is_ccw


# --- parse_bbox ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("-1.48,53.37,-1.46,53.39", (-1.48, 53.37, -1.46, 53.39)),
        (" -1.48 , 53.37 ,-1.46, 53.39 ", (-1.48, 53.37, -1.46, 53.39)),
        ("-180,-90,180,90", (-180.0, -90.0, 180.0, 90.0)),
        ("1,2,1,2", (1.0, 2.0, 1.0, 2.0)),
        ("+1e-3,.5,2.,3", (0.001, 0.5, 2.0, 3.0)),
    ],
)
def test_parse_bbox_accepts(raw: str, expected: tuple[float, ...]) -> None:
    assert parse_bbox(raw) == expected


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "expected 4"),
        ("1,2,3", "expected 4"),
        ("1,2,3,4,5", "expected 4"),
        ("a,2,3,4", "minlon 'a' is not a number"),
        ("nan,2,3,4", "not a number"),
        ("1,inf,3,4", "not a number"),
        ("1_0,2,30,40", "not a number"),
        ("0x1,2,3,4", "not a number"),
        ("1,2,3,", "maxlat '' is not a number"),
        ("-181,0,1,1", "minlon -181 is out of range [-180, 180]"),
        ("0,0,1,90.5", "maxlat 90.5 is out of range [-90, 90]"),
        ("10,0,-10,1", "antimeridian"),
        ("0,1,1,0", "minlat is greater than maxlat"),
    ],
)
def test_parse_bbox_rejects(raw: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_bbox(raw)
    assert {e["field"] for e in caught.value.errors} == {"bbox"}
    assert any(words in e["message"] for e in caught.value.errors), caught.value.errors


def test_parse_bbox_reports_everything_under_the_given_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_bbox("x,95,2,1", field="area")
    assert [e["field"] for e in caught.value.errors] == ["area", "area"]
    assert "minlon" in caught.value.errors[0]["message"] and "minlat 95" in caught.value.errors[1]["message"]


# --- PointIndex ----------------------------------------------------------------------------------------

CITY: Bbox = (-1.57, 53.31, -1.37, 53.46)  # Sheffield, 0.2 x 0.15 degrees
# Coordinates on a coarse lattice collide with box edges often, which is where an off-by-one would hide.
lons = st.one_of(st.floats(-1.6, -1.3), st.integers(-160, -130).map(lambda k: k / 100))
lats = st.one_of(st.floats(53.28, 53.5), st.integers(5328, 5350).map(lambda k: k / 100))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 30), lons, lats),
        st.tuples(st.just("remove"), st.integers(0, 30), st.none(), st.none()),
    ),
    max_size=120,
)
boxes = st.tuples(lons, lats, lons, lats).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)


def brute(model: dict[Any, tuple[float, float, int]], bbox: Bbox) -> set[tuple[Any, ...]]:
    minlon, minlat, maxlon, maxlat = bbox
    return {
        (k, lon, lat, s)
        for k, (lon, lat, s) in model.items()
        if minlon <= lon <= maxlon and minlat <= lat <= maxlat
    }


@settings(max_examples=300, deadline=None)
@given(ops, st.lists(boxes, min_size=1, max_size=5))
def test_point_index_matches_brute_force(script: list[tuple[Any, ...]], bboxes: list[Bbox]) -> None:
    index = PointIndex()
    model: dict[str, tuple[float, float, int]] = {}
    for seq, (op, n, lon, lat) in enumerate(script):
        item = f"officer-{n}"
        if op == "put":
            index.put(item, lon, lat, seq)
            model[item] = (lon, lat, seq)
        else:
            assert index.remove(item) is (model.pop(item, None) is not None)
    assert len(index) == len(model)
    for item in (f"officer-{n}" for n in range(31)):
        assert index.get(item) == model.get(item)
        assert (item in index) is (item in model)
    for bbox in [*bboxes, CITY]:
        expected = brute(model, bbox)
        assert set(index.query(bbox)) == expected
        assert index.count(bbox) == len(expected)
        assert set(index.query_arrays(bbox)) == expected


def test_point_index_compacts_after_mass_removal_and_stays_correct() -> None:
    rng = random.Random(7)
    index = PointIndex()
    model: dict[Any, tuple[float, float, int]] = {}
    for i in range(10_000):
        model[i] = (rng.uniform(CITY[0], CITY[2]), rng.uniform(CITY[1], CITY[3]), i)
        index.put(i, *model[i])
    for i in range(9_500):  # retract most of them
        index.remove(i)
        del model[i]
    assert index._top < 10_000  # the scan no longer walks the dead slots
    for i in range(10_000, 10_300):
        model[i] = (rng.uniform(CITY[0], CITY[2]), rng.uniform(CITY[1], CITY[3]), i)
        index.put(i, *model[i])
    box = (-1.5, 53.35, -1.42, 53.41)
    assert set(index.query(box)) == brute(model, box)
    assert len(index) == 800


def test_query_arrays_is_a_snapshot() -> None:
    index = PointIndex([("a", -1.47, 53.38, 1)])
    snap = index.query_arrays(CITY)
    index.put("a", -1.0, 53.0, 2)
    index.remove("a")
    assert list(snap) == [("a", -1.47, 53.38, 1)]


@pytest.mark.parametrize(
    ("lon", "lat"), [(NAN, 53.0), (-1.0, NAN), (INF, 53.0), (-181.0, 53.0), (-1.0, 90.5)]
)
def test_point_index_refuses_positions_it_could_never_return(lon: float, lat: float) -> None:
    index = PointIndex()
    with pytest.raises(ValueError):
        index.put("a", lon, lat, 1)
    assert len(index) == 0


# --- cluster -------------------------------------------------------------------------------------------


def tile_cell(lon: float, lat: float, zoom: int, cell_px: int) -> tuple[int, int] | None:
    """The textbook slippy-map formula, written out independently of mercator_px; None for a point so
    close to a cell edge that two correct formulas may round it to different sides."""
    world = 256 * 2**zoom
    col = (lon + 180) / 360 * world / cell_px
    row = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * world / cell_px
    if any(abs(v - round(v)) < 1e-6 for v in (row, col)):
        return None
    return math.floor(row), math.floor(col)


def test_mercator_px_known_values() -> None:
    import numpy as np

    x, y = mercator_px(
        np.array([0.0, -180.0, 180.0, 0.0]), np.array([0.0, 85.0511287798066, -85.0511287798066, 89.9]), 1
    )
    assert x.tolist() == pytest.approx([256, 0, 512, 256])
    assert y.tolist() == pytest.approx([256, 0, 512, 0])  # clamped, not infinite


point_sets = st.lists(st.tuples(lons, lats, st.integers(0, 10**6)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(point_sets, boxes, st.integers(0, 22), st.sampled_from([1, 30, 60, 256]))
def test_cluster_partitions_the_points_in_the_box(
    rows: list[tuple[float, float, int]], bbox: Any, zoom: int, cell_px: int
) -> None:
    points = [(f"u{i}", lon, lat, seq) for i, (lon, lat, seq) in enumerate(rows)]
    clusters = cluster(points, bbox, zoom, cell_px, max_ids=10**6)
    in_box = {p[0]: p for p in points if bbox[0] <= p[1] <= bbox[2] and bbox[1] <= p[2] <= bbox[3]}
    assert sum(c["count"] for c in clusters) == len(in_box)
    cells = []
    for c in clusters:
        assert len(c["ids"]) == c["count"]
        members = [in_box[i] for i in c["ids"]]
        cell = {
            rc for rc in (tile_cell(lon, lat, zoom, cell_px) for _, lon, lat, _ in members) if rc is not None
        }
        assert len(cell) <= 1  # one cell per cluster...
        if cell:
            cells.append(cell.pop())
        x0, y0, x1, y1 = c["bbox"]
        assert (x0, y0, x1, y1) == (
            min(p[1] for p in members),
            min(p[2] for p in members),
            max(p[1] for p in members),
            max(p[2] for p in members),
        )
        assert c["lon"] == pytest.approx(sum(p[1] for p in members) / len(members), abs=1e-7)
        assert c["lat"] == pytest.approx(sum(p[2] for p in members) / len(members), abs=1e-7)
    assert cells == sorted(set(cells))  # ...each cell once, top-left to bottom-right


def test_cluster_is_deterministic_whatever_the_arrival_order() -> None:
    rng = random.Random(3)
    points = [
        (f"u{i}", rng.uniform(CITY[0], CITY[2]), rng.uniform(CITY[1], CITY[3]), i) for i in range(5_000)
    ]
    first = cluster(points, CITY, 13)
    shuffled = points[:]
    rng.shuffle(shuffled)
    assert cluster(shuffled, CITY, 13) == first
    index = PointIndex(reversed(points))
    assert cluster(index.query_arrays(CITY), CITY, 13) == first
    assert index.cluster(CITY, 13) == first
    assert json.loads(json.dumps(first)) == first


def test_cluster_over_a_city() -> None:
    rng = random.Random(5)
    index = PointIndex()
    for i in range(20_000):
        index.put(f"u{i}", rng.uniform(CITY[0], CITY[2]), rng.uniform(CITY[1], CITY[3]), i)
    view = (-1.50, 53.36, -1.44, 53.40)
    expected = index.count(view)
    for zoom in (0, 10, 13, 16, 22):
        clusters = cluster(index.query_arrays(view), view, zoom)
        assert sum(c["count"] for c in clusters) == expected
        assert all("ids" not in c for c in clusters)
        assert index.cluster(view, zoom) == clusters
        assert index.cluster(view, zoom, max_ids=5) == cluster(
            index.query_arrays(view), view, zoom, max_ids=5
        )
    assert len(cluster(index.query_arrays(view), view, 0)) == 1  # the whole city is one cell of a world map
    nothing = index.query_arrays((0, 0, 0, 0))
    assert isinstance(nothing, PointSet) and len(nothing) == 0
    assert cluster(nothing, view, 5) == []


def test_cluster_ids_only_for_small_clusters() -> None:
    points = [("a", -1.47, 53.38, 1), ("b", -1.4701, 53.3801, 2), ("c", -1.40, 53.45, 3)]
    clusters = cluster(points, CITY, 14, max_ids=1)
    assert [(c["count"], c.get("ids")) for c in clusters] == [(1, ["c"]), (2, None)]


@pytest.mark.parametrize(("zoom", "cell_px"), [(-1, 60), (23, 60), (1.5, 60), (10, 0)])
def test_cluster_refuses_nonsense(zoom: Any, cell_px: int) -> None:
    with pytest.raises(ValueError):
        cluster([], CITY, zoom, cell_px)
    with pytest.raises(ValueError):
        PointIndex().cluster(CITY, zoom, cell_px)
