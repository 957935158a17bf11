"""Zones over HTTP with the Sheffield seed: the demonstration area at Barkers Pool, the march route from
Devonshire Green (with a buffer), and a cordon kept internal; updates inside, near and outside them."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth, make_user
from geopy.distance import geodesic
from pyproj import Geod
from shapely.geometry import shape

from fieldcomms.app import create_app
from fieldcomms.config import Settings

TAG = "libdempolicing"
ZONES = f"/api/v1/events/{TAG}/zones"
UPDATES = f"/api/v1/events/{TAG}/updates"
ROUTE = [[-1.4790, 53.3775], [-1.4760, 53.3785], [-1.4730, 53.3795], [-1.4710, 53.3800]]  # [lon, lat]
DEMO_AREA: dict[str, Any] = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[
        [-1.47175, 53.37955], [-1.47025, 53.37955], [-1.47025, 53.38045], [-1.47175, 53.38045], [-1.47175, 53.37955]]]},
    "properties": {"name": "Barkers Pool demonstration area", "kind": "demonstration-area", "visibility": "public"},
}
MARCH_ROUTE: dict[str, Any] = {
    "type": "Feature", "geometry": {"type": "LineString", "coordinates": ROUTE},
    "properties": {"name": "March route: Devonshire Green to Barkers Pool", "kind": "march-route",
                   "visibility": "public", "buffer_m": 20},
}
CORDON: dict[str, Any] = {  # around City Hall; drawn clockwise on purpose; internal by default
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[
        [-1.4740, 53.3802], [-1.4740, 53.3812], [-1.4722, 53.3812], [-1.4722, 53.3802], [-1.4740, 53.3802]]]},
    "properties": {"name": "City Hall cordon", "kind": "cordon"},
}
DEMO, ROUTE_NAME, CORDON_NAME = (z["properties"]["name"] for z in (DEMO_AREA, MARCH_ROUTE, CORDON))
WGS84 = Geod(ellps="WGS84")

Json = dict[str, Any]


def destination(lat: float, lon: float, metres: float, bearing: float) -> tuple[float, float]:
    p = geodesic(meters=metres).destination((lat, lon), bearing)
    return p.latitude, p.longitude


def beside_route(metres: float) -> tuple[float, float]:
    (lon1, lat1), (lon2, lat2) = ROUTE[1], ROUTE[2]
    along, _, length = WGS84.inv(lon1, lat1, lon2, lat2)
    mid = destination(lat1, lon1, length / 2, along)
    return destination(*mid, metres, along + 90)


async def create(client: TestClient, token: str, zone: Json, status: int = 201, key: str | None = None) -> Json:
    headers = auth(token) if key is None else {**auth(token), "Idempotency-Key": key}
    resp = await client.post(ZONES, json=zone, headers=headers)
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


@pytest.fixture
async def seed(client: TestClient, control_token: str, event: Json) -> dict[str, Json]:
    return {name: await create(client, control_token, zone)
            for name, zone in (("demo", DEMO_AREA), ("route", MARCH_ROUTE), ("cordon", CORDON))}


async def post_at(client: TestClient, token: str, where: tuple[float, float], visibility: str = "public") -> Json:
    resp = await client.post(UPDATES, headers=auth(token), json={
        "text": "here", "visibility": visibility, "location": {"lat": where[0], "lon": where[1]}})
    assert resp.status == 201, await resp.text()
    body: Json = await resp.json()
    return body


# ---- create and list ---------------------------------------------------------------------------------------


async def test_create_answers_the_feature(client: TestClient, control_token: str, event: Json) -> None:
    resp = await client.post(ZONES, json=MARCH_ROUTE, headers=auth(control_token))
    assert resp.status == 201
    assert resp.content_type == "application/geo+json"
    body = await resp.json()
    assert body["type"] == "Feature" and body["id"]
    assert body["geometry"] == MARCH_ROUTE["geometry"]
    props = body["properties"]
    assert {k: props[k] for k in ("name", "kind", "visibility", "buffer_m")} == {
        "name": ROUTE_NAME, "kind": "march-route", "visibility": "public", "buffer_m": 20.0}
    assert props["event"] == TAG and isinstance(props["seq"], int)
    assert "crs" not in body


async def test_clockwise_polygon_comes_back_counter_clockwise(seed: dict[str, Json]) -> None:
    sent = shape(CORDON["geometry"])
    assert not sent.exterior.is_ccw
    back = shape(seed["cordon"]["geometry"])
    assert back.exterior.is_ccw and back.is_valid
    assert back.equals(sent)  # the same area, wound the other way
    assert seed["cordon"]["properties"]["visibility"] == "internal"


async def test_lists_are_feature_collections_and_the_public_sees_public_zones_only(
    client: TestClient, officer_token: str, seed: dict[str, Json]
) -> None:
    lists = {}
    for who, token in (("public", None), ("officer", officer_token)):
        resp = await client.get(ZONES, headers=auth(token))
        assert resp.status == 200 and resp.content_type == "application/geo+json"
        body = await resp.json()
        assert body["type"] == "FeatureCollection" and "crs" not in body
        lists[who] = [f["properties"]["name"] for f in body["features"]]
        for f in body["features"]:
            assert shape(f["geometry"]).is_valid
    assert lists["public"] == [DEMO, ROUTE_NAME]
    assert lists["officer"] == [DEMO, ROUTE_NAME, CORDON_NAME]


async def test_only_control_creates(client: TestClient, officer_token: str, event: Json) -> None:
    assert (await client.post(ZONES, json=DEMO_AREA)).status == 401
    assert (await client.post(ZONES, json=DEMO_AREA, headers=auth(officer_token))).status == 403


async def test_unknown_event_is_404(client: TestClient, control_token: str) -> None:
    assert (await client.get("/api/v1/events/nosuch/zones")).status == 404
    assert (await client.post("/api/v1/events/nosuch/zones", json=DEMO_AREA, headers=auth(control_token))).status == 404


BOWTIE = [[[-1.472, 53.379], [-1.470, 53.381], [-1.470, 53.379], [-1.472, 53.381], [-1.472, 53.379]]]


@pytest.mark.parametrize(("geometry", "field", "words"), [
    ({"type": "Polygon", "coordinates": BOWTIE}, "geometry", "self-intersection"),
    ({"type": "Polygon", "coordinates": [[[-1.47, 53.38], [-1.46, 53.38], [-1.47, 53.38]]]},
     "geometry.coordinates", "too few points"),
    ({"type": "LineString", "coordinates": [[-1.47, 53.38]]}, "geometry.coordinates", "at least 2"),
    ({"type": "Point", "coordinates": [-1.47, 93.0]}, "geometry.coordinates", "latitude 93 is out of range"),
    ({"type": "Point", "coordinates": [181.0, 53.38]}, "geometry.coordinates", "longitude 181 is out of range"),
    ({"type": "MultiPoint", "coordinates": [[-1.47, 53.38]]}, "geometry.type", "Polygon, LineString or Point"),
])
async def test_invalid_geometry_is_422_with_the_reason(
    client: TestClient, control_token: str, event: Json, geometry: Json, field: str, words: str
) -> None:
    zone = {**copy.deepcopy(DEMO_AREA), "geometry": geometry}
    resp = await client.post(ZONES, json=zone, headers=auth(control_token))
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert any(e["field"] == field and words in e["message"] for e in problem["errors"]), problem


async def test_bad_properties_are_422_all_at_once(client: TestClient, control_token: str, event: Json) -> None:
    zone = {**DEMO_AREA, "properties": {"name": "", "kind": "kettle", "visibility": "secret", "buffer_m": -1}}
    resp = await client.post(ZONES, json=zone, headers=auth(control_token))
    assert resp.status == 422
    fields = {e["field"] for e in (await resp.json())["errors"]}
    assert fields == {"properties.name", "properties.kind", "properties.visibility", "properties.buffer_m"}


async def test_idempotency_key(client: TestClient, control_token: str, event: Json) -> None:
    first = await create(client, control_token, DEMO_AREA, key="zone-1")
    again = await create(client, control_token, DEMO_AREA, key="zone-1")
    assert again == first
    assert len((await (await client.get(ZONES, headers=auth(control_token))).json())["features"]) == 1
    await create(client, control_token, MARCH_ROUTE, 422, key="zone-1")


# ---- updates tagged with zones at write time ---------------------------------------------------------------


PLACES = [
    ("at Barkers Pool, the route's end", (53.3800, -1.4712), [DEMO, ROUTE_NAME]),
    ("in the demonstration area, off the route", (53.3804, -1.4704), [DEMO]),
    ("5 m north of the demonstration area", destination(53.38045, -1.4710, 5, 0), []),
    ("19 m beside the route (buffer 20 m)", beside_route(19), [ROUTE_NAME]),
    ("21 m beside the route", beside_route(21), []),
    ("at Devonshire Green", (53.3775, -1.4790), [ROUTE_NAME]),
    ("inside the cordon", (53.3807, -1.4731), [CORDON_NAME]),
    ("Sheffield station", (53.3781, -1.4620), []),
]


@pytest.mark.parametrize(("where", "names"), [p[1:] for p in PLACES], ids=[p[0] for p in PLACES])
async def test_updates_are_tagged_with_their_zones(
    client: TestClient, officer_token: str, control_token: str, seed: dict[str, Json],
    where: tuple[float, float], names: list[str]
) -> None:
    update = await post_at(client, officer_token, where)
    by_name = {z["properties"]["name"]: z["id"] for z in seed.values()}
    # The author (an officer) sees every zone, internal ones too, as {id, name, kind}.
    assert update["zones"] == [{"id": by_name[n], "name": n, "kind": k}
                               for n, k in ((n, _kind(n)) for n in names)]
    control_view = await (await client.get(f"/api/v1/updates/{update['id']}", headers=auth(control_token))).json()
    assert [z["name"] for z in control_view["zones"]] == names
    public_view = await (await client.get(f"/api/v1/updates/{update['id']}")).json()
    assert [z["name"] for z in public_view["zones"]] == [n for n in names if n != CORDON_NAME]
    assert "cordon" not in str(public_view).lower()


def _kind(name: str) -> str:
    return {DEMO: "demonstration-area", ROUTE_NAME: "march-route", CORDON_NAME: "cordon"}[name]


async def test_the_public_never_sees_the_internal_cordon(
    client: TestClient, officer_token: str, seed: dict[str, Json]
) -> None:
    await post_at(client, officer_token, (53.3807, -1.4731))
    await post_at(client, officer_token, (53.3800, -1.4712))
    for path in (UPDATES, ZONES, f"/api/v1/events/{TAG}/map"):
        text = await (await client.get(path)).text()
        assert "cordon" not in text.lower() and seed["cordon"]["id"] not in text, path


async def test_a_deleted_zone_leaves_lists_and_tags_no_new_update(
    client: TestClient, officer_token: str, control_token: str, seed: dict[str, Json]
) -> None:
    demo_id = seed["demo"]["id"]
    assert (await client.delete(f"/api/v1/zones/{demo_id}")).status == 401
    assert (await client.delete(f"/api/v1/zones/{demo_id}", headers=auth(officer_token))).status == 403
    assert (await client.delete("/api/v1/zones/zone_nosuch", headers=auth(control_token))).status == 404
    assert (await client.delete(f"/api/v1/zones/{demo_id}", headers=auth(control_token))).status == 204
    assert (await client.delete(f"/api/v1/zones/{demo_id}", headers=auth(control_token))).status == 204  # a retry
    names = [f["properties"]["name"] for f in (await (await client.get(ZONES)).json())["features"]]
    assert names == [ROUTE_NAME]
    update = await post_at(client, officer_token, (53.3804, -1.4704))
    assert update["zones"] == []


async def test_the_zone_index_is_rebuilt_on_start(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False)
    client = await aiohttp_client(create_app(settings))
    control = await make_user(client.app, "control", "control1")
    officer = await make_user(client.app, "officer", "officer1")
    await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"}, headers=auth(control))
    route = await create(client, control, MARCH_ROUTE)
    cordon = await create(client, control, CORDON)
    assert (await client.delete(f"/api/v1/zones/{cordon['id']}", headers=auth(control))).status == 204
    await client.close()

    client = await aiohttp_client(create_app(settings))
    update = await post_at(client, officer, (53.3775, -1.4790))
    assert [z["id"] for z in update["zones"]] == [route["id"]]
    inside_old_cordon = await post_at(client, officer, (53.3807, -1.4731))
    assert inside_old_cordon["zones"] == []
