"""The live map, read back with shapely: RFC 7946 order checked in Sydney (lat -33.87, lon 151.21, numbers
that cannot be confused), layers and who may see them, clustering and its counts, bbox and since."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth, make_user
from shapely.geometry import Point, Polygon, shape

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

SYDNEY = "sydneyvigil"
SHEFFIELD = "libdempolicing"
OPERA_HOUSE = (-33.8568, 151.2153)  # (lat, lon)

Json = dict[str, Any]


class Map:
    def __init__(self, client: TestClient, officer: str, control: str) -> None:
        self.client, self.officer, self.control = client, officer, control

    async def event(self, tag: str) -> None:
        resp = await self.client.post("/api/v1/events", json={"tag": tag, "title": tag, "status": "live"},
                                      headers=auth(self.control))
        assert resp.status == 201

    async def post(self, tag: str, lat: float, lon: float, visibility: str = "public", text: str = "here") -> Json:
        resp = await self.client.post(f"/api/v1/events/{tag}/updates", headers=auth(self.officer), json={
            "text": text, "visibility": visibility, "location": {"lat": lat, "lon": lon}})
        assert resp.status == 201, await resp.text()
        body: Json = await resp.json()
        return body

    async def get(self, tag: str, token: str | None = None, status: int = 200, **params: Any) -> Json:
        resp = await self.client.get(f"/api/v1/events/{tag}/map", params=params, headers=auth(token))
        assert resp.status == status, await resp.text()
        body: Json = await resp.json()
        if status == 200:
            assert resp.content_type == "application/geo+json"
            assert body["type"] == "FeatureCollection" and "crs" not in body
        return body


@pytest.fixture
def make_map(aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> Callable[..., Awaitable[Map]]:
    async def make(**overrides: Any) -> Map:
        settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, **overrides)
        client = await aiohttp_client(create_app(settings))
        m = Map(client, await make_user(client.app, "officer", "officer1"),
                await make_user(client.app, "control", "control1"))
        await m.event(SYDNEY)
        await m.event(SHEFFIELD)
        return m

    return make


@pytest.fixture
async def m(make_map: Callable[..., Awaitable[Map]]) -> Map:
    return await make_map()


def layers(body: Json) -> list[str]:
    return [f["properties"]["layer"] for f in body["features"]]


async def test_sydney_comes_back_lon_lat(m: Map) -> None:
    update = await m.post(SYDNEY, -33.87, 151.21)
    body = await m.get(SYDNEY)
    [f] = body["features"]
    assert f["type"] == "Feature" and f["id"] == update["id"]
    point = shape(f["geometry"])
    assert isinstance(point, Point)
    assert (point.x, point.y) == (151.21, -33.87)  # x is longitude
    assert f["properties"]["layer"] == "updates"
    assert f["properties"]["text"] == "here" and f["properties"]["location"]["lat"] == -33.87


async def test_zones_and_officers_read_back_by_shapely(m: Map) -> None:
    ring = [[151.20, -33.88], [151.20, -33.86], [151.22, -33.86], [151.22, -33.88], [151.20, -33.88]]  # clockwise
    zone = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"name": "Vigil area", "kind": "demonstration-area", "visibility": "public"}}
    resp = await m.client.post(f"/api/v1/events/{SYDNEY}/zones", json=zone, headers=auth(m.control))
    assert resp.status == 201
    resp = await m.client.post(f"/api/v1/events/{SYDNEY}/positions", json={"lat": -33.87, "lon": 151.21},
                               headers=auth(m.officer))
    assert resp.status == 204
    body = await m.get(SYDNEY, m.control)
    by_layer = {f["properties"]["layer"]: f for f in body["features"]}
    area = shape(by_layer["zones"]["geometry"])
    assert isinstance(area, Polygon) and area.is_valid and area.exterior.is_ccw
    assert area.contains(Point(151.21, -33.87))
    officer = by_layer["officers"]
    assert shape(officer["geometry"]).equals(Point(151.21, -33.87))
    assert officer["properties"]["officer"]["callsign"] == "officer1" and officer["properties"]["stale"] is False


async def test_the_public_map_never_holds_internal_items_or_positions(m: Map) -> None:
    await m.post(SHEFFIELD, 53.3800, -1.4710, "public", "public one")
    await m.post(SHEFFIELD, 53.3801, -1.4711, "internal", "internal one")
    await m.client.post(f"/api/v1/events/{SHEFFIELD}/positions", json={"lat": 53.38, "lon": -1.47},
                        headers=auth(m.officer))
    public = await m.get(SHEFFIELD)
    assert [f["properties"]["text"] for f in public["features"]] == ["public one"]
    assert "pos_" not in str(public)
    await m.get(SHEFFIELD, None, 401, layers="officers")
    officer = await m.get(SHEFFIELD, m.officer)
    assert layers(officer) == ["updates", "updates"]
    await m.get(SHEFFIELD, m.officer, 403, layers="updates,officers")
    control = await m.get(SHEFFIELD, m.control)
    assert layers(control) == ["updates", "updates", "officers"]


async def test_retracted_updates_leave_the_map(m: Map) -> None:
    update = await m.post(SHEFFIELD, 53.38, -1.47)
    await m.client.delete(f"/api/v1/updates/{update['id']}", headers=auth(m.control))
    for token in (None, m.officer, m.control):
        assert (await m.get(SHEFFIELD, token))["features"] == []


async def test_rumours_layer_for_staff(m: Map) -> None:
    resp = await m.client.post(f"/api/v1/events/{SHEFFIELD}/rumours", headers=auth(m.officer), json={
        "claim": "Police snipers on the roofs", "location": {"lat": 53.3808, "lon": -1.4703}})
    assert resp.status == 201, await resp.text()
    body = await m.get(SHEFFIELD, m.officer, layers="rumours")
    [f] = body["features"]
    assert f["properties"]["claim"] == "Police snipers on the roofs"
    assert shape(f["geometry"]).equals(Point(-1.4703, 53.3808))
    assert (await m.get(SHEFFIELD, layers="rumours"))["features"] == []  # unverified: not public


async def test_bbox_and_since(m: Map) -> None:
    a = await m.post(SHEFFIELD, 53.3800, -1.4710, text="Barkers Pool")
    await m.post(SHEFFIELD, 53.3781, -1.4620, text="station")
    body = await m.get(SHEFFIELD, bbox="-1.475,53.379,-1.468,53.381")
    assert [f["properties"]["text"] for f in body["features"]] == ["Barkers Pool"]
    body = await m.get(SHEFFIELD, since=a["seq"])
    assert [f["properties"]["text"] for f in body["features"]] == ["station"]
    assert body["last_seq"] >= a["seq"] + 1


@pytest.mark.parametrize(("params", "field"), [
    ({"layers": "updates,weather"}, "layers"),
    ({"bbox": "1,2,3"}, "bbox"),
    ({"zoom": "23"}, "zoom"),
    ({"since": "-1"}, "since"),
])
async def test_bad_parameters_are_422(m: Map, params: Json, field: str) -> None:
    body = await m.get(SHEFFIELD, None, 422, **params)
    assert body["errors"][0]["field"] == field


async def test_unknown_event_is_404(m: Map) -> None:
    await m.get("nosuchevent", None, 404)


# ---- clustering --------------------------------------------------------------------------------------------


async def test_clusters_above_the_threshold_and_counts_add_up(make_map: Callable[..., Awaitable[Map]]) -> None:
    m = await make_map(cluster_above=5)
    # Two tight groups 3 km apart and one loner; plus internal updates the public must not count.
    for i in range(8):
        await m.post(SHEFFIELD, 53.3800 + i * 1e-5, -1.4710 + i * 1e-5)
    for i in range(5):
        await m.post(SHEFFIELD, 53.3600 + i * 1e-5, -1.4710)
    await m.post(SHEFFIELD, 53.4000, -1.5200, text="loner")
    for _ in range(6):
        await m.post(SHEFFIELD, 53.3800, -1.4710, visibility="internal")

    # No zoom: clustered at the zoom that shows the box on a screen (the world: zoom 2), not every point.
    implied = await m.get(SHEFFIELD)
    assert [f["properties"]["count"] for f in implied["features"]] == [14]
    unclustered = await m.get(SHEFFIELD, bbox="-1.53,53.35,-1.46,53.41")  # zoom 14 there: two groups, a loner
    assert sorted(f["properties"].get("count", 1) for f in unclustered["features"]) == [1, 5, 8]

    public = await m.get(SHEFFIELD, zoom=14)
    clusters = [f for f in public["features"] if f["properties"]["layer"] == "cluster"]
    singles = [f for f in public["features"] if f["properties"]["layer"] == "updates"]
    assert sorted(c["properties"]["count"] for c in clusters) == [5, 8]
    assert [f["properties"]["text"] for f in singles] == ["loner"]
    assert sum(c["properties"]["count"] for c in clusters) + len(singles) == 14
    for c in clusters:
        props = c["properties"]
        assert props["of"] == "updates"
        minlon, minlat, maxlon, maxlat = props["bbox"]
        centre = shape(c["geometry"])
        assert minlon <= centre.x <= maxlon and minlat <= centre.y <= maxlat  # [lon, lat] again

    staff = await m.get(SHEFFIELD, m.control, zoom=14)
    counted = sum(f["properties"].get("count", 1) for f in staff["features"])
    assert counted == 20

    zoomed_out = await m.get(SHEFFIELD, zoom=5)
    assert [f["properties"]["count"] for f in zoomed_out["features"]] == [14]

    few = await m.get(SHEFFIELD, zoom=14, bbox="-1.53,53.39,-1.51,53.41")  # under the threshold in this box
    assert [f["properties"]["text"] for f in few["features"]] == ["loner"]


async def test_the_index_follows_changes_after_it_is_built(m: Map) -> None:
    await m.get(SHEFFIELD)  # builds the event's index
    first = await m.post(SHEFFIELD, 53.38, -1.47, text="after")
    assert [f["id"] for f in (await m.get(SHEFFIELD))["features"]] == [first["id"]]
    await m.client.delete(f"/api/v1/updates/{first['id']}", headers=auth(m.officer))
    assert (await m.get(SHEFFIELD))["features"] == []


async def test_since_with_clustering(make_map: Callable[..., Awaitable[Map]]) -> None:
    m = await make_map(cluster_above=3)
    first = [await m.post(SHEFFIELD, 53.3800 + i * 1e-5, -1.4710) for i in range(5)]
    for i in range(4):
        await m.post(SHEFFIELD, 53.3600 + i * 1e-5, -1.4710)
    body = await m.get(SHEFFIELD, zoom=14, since=first[-1]["seq"])
    assert [(f["properties"]["layer"], f["properties"].get("count")) for f in body["features"]] == [("cluster", 4)]


async def test_a_restarted_server_fills_its_map_in_the_background(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fieldcomms.domain import map as map_domain

    monkeypatch.setattr(map_domain, "FILL_SLICE", 2)
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False)
    client = await aiohttp_client(create_app(settings))
    m = Map(client, await make_user(client.app, "officer", "officer1"),
            await make_user(client.app, "control", "control1"))
    await m.event(SHEFFIELD)
    posted = [await m.post(SHEFFIELD, 53.38 + i / 1000, -1.47) for i in range(7)]
    await client.close()

    client = await aiohttp_client(create_app(settings))  # the fill starts with the server
    m.client = client
    index = client.app[SERVICES].map
    # Changes made while the fill is under way are kept, and nothing retracted comes back.
    await m.client.delete(f"/api/v1/updates/{posted[0]['id']}", headers=auth(m.officer))
    late = await m.post(SHEFFIELD, 53.39, -1.47, text="late")
    await index.ready(SHEFFIELD)
    ids = [f["id"] for f in (await m.get(SHEFFIELD))["features"]]
    assert ids == [u["id"] for u in posted[1:]] + [late["id"]]



async def test_changes_during_the_background_fill_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from fieldcomms.domain import map as map_domain
    from fieldcomms.services import Services
    from fieldcomms.store import Store

    monkeypatch.setattr(map_domain, "FILL_SLICE", 2)
    store = Store(tmp_path, fsync=False)
    ctx = Services(Settings(data_dir=str(tmp_path)), store)
    index = ctx.map
    await store.open()
    await store.append("event", "events", {"id": SHEFFIELD, "tag": SHEFFIELD, "status": "live"})

    def doc(n: int, **extra: Any) -> Json:
        return {"id": f"upd_{n}", "event": SHEFFIELD, "visibility": "public", "status": "active",
                "location": {"lat": 53.38 + n / 1000, "lon": -1.47}, **extra}

    for n in range(8):
        await store.append("update", "updates", doc(n))
    task = asyncio.create_task(index.fill())
    await asyncio.sleep(0)  # the fill has indexed its first slice (upd_0, upd_1) and yielded
    assert index.index(SHEFFIELD, "updates", "public").count(map_domain.WORLD) == 2
    store.append_nowait("update-retracted", "updates", doc(1, status="retracted"))  # indexed, then retracted
    store.append_nowait("update-retracted", "updates", doc(6, status="retracted"))  # retracted before its turn
    store.append_nowait("update", "updates", doc(5, location={"lat": 53.5, "lon": -1.5}))  # moved
    store.append_nowait("update", "updates", doc(9))  # new
    await index.ready(SHEFFIELD)
    await task
    public = index.index(SHEFFIELD, "updates", "public")
    assert sorted(str(p[0]) for p in public.query(map_domain.WORLD)) == [
        "upd_0", "upd_2", "upd_3", "upd_4", "upd_5", "upd_7", "upd_9"]
    moved = public.get("upd_5")
    assert moved is not None and moved[:2] == (-1.5, 53.5)
    await store.close()


async def test_the_public_whole_event_map_is_kept_until_the_event_changes(m: Map) -> None:
    """The public's map without bbox or since is encoded once per version of the event's map (issue 15 item 7)
    and is, byte for byte in JSON, what the same request made afresh answers; any change to an update, a
    rumour or a zone of the event makes it again, positions do not."""
    answers = m.client.app[SERVICES].map.public_answers
    first = await m.post(SYDNEY, -33.87, 151.21, text="first")
    reply = await m.post(SYDNEY, -33.86, 151.20, text="reply")
    resp = await m.client.post(f"/api/v1/events/{SYDNEY}/updates", headers=auth(m.officer), json={
        "text": "an answer", "visibility": "public", "location": {"lat": -33.85, "lon": 151.19},
        "reply_to": first["id"]})
    answer = await resp.json()
    await m.post(SYDNEY, -33.84, 151.18, visibility="internal", text="internal")

    async def fresh() -> Json:  # the same map, by the path that keeps nothing (a box of the whole world)
        return await m.get(SYDNEY, bbox="-180,-90,180,90", layers="updates,rumours,zones")

    body = await m.get(SYDNEY)
    hits = answers.hits
    again = await m.get(SYDNEY)
    assert answers.hits == hits + 1 and again == body and body["features"] == (await fresh())["features"]
    assert {f["id"] for f in body["features"]} == {first["id"], reply["id"], answer["id"]}
    assert body["last_seq"] == m.client.app[SERVICES].store.last_seq

    # a position changes nothing on the public map: still kept, with the newer last_seq
    resp = await m.client.post(f"/api/v1/events/{SYDNEY}/positions", json={"lat": -33.87, "lon": 151.21},
                               headers=auth(m.officer))
    assert resp.status in (200, 201, 202, 204), await resp.text()
    kept = await m.get(SYDNEY)
    assert answers.hits == hits + 2 and kept["features"] == body["features"]
    assert kept["last_seq"] == m.client.app[SERVICES].store.last_seq > body["last_seq"]

    # the update replied to is retracted: it leaves the map, and the answer no longer names it
    resp = await m.client.delete(f"/api/v1/updates/{first['id']}", headers=auth(m.control))
    assert resp.status == 200, await resp.text()
    after = await m.get(SYDNEY)
    assert {f["id"] for f in after["features"]} == {reply["id"], answer["id"]}
    [shown] = [f for f in after["features"] if f["id"] == answer["id"]]
    assert shown["properties"]["reply_to"] is None
    assert after["features"] == (await fresh())["features"]
    # another event's change leaves this one's kept answer alone; a new zone here does not
    await m.post(SHEFFIELD, 53.38, -1.47)
    hits = answers.hits
    assert (await m.get(SYDNEY))["features"] == after["features"] and answers.hits == hits + 1
    ring = [[151.20, -33.88], [151.22, -33.88], [151.22, -33.86], [151.20, -33.86], [151.20, -33.88]]
    resp = await m.client.post(f"/api/v1/events/{SYDNEY}/zones", headers=auth(m.control), json={
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"name": "Vigil area", "kind": "demonstration-area", "visibility": "public"}})
    assert resp.status == 201, await resp.text()
    with_zone = await m.get(SYDNEY)
    assert "zones" in layers(with_zone) and with_zone["features"] == (await fresh())["features"]
