"""Officer positions, `nearby` (distances checked against geopy, independently), and alerts with their
recipients and acknowledgements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth
from geopy.distance import geodesic

TAG = "libdempolicing"
POSITIONS = f"/api/v1/events/{TAG}/positions"
OFFICERS = f"/api/v1/events/{TAG}/officers"
NEARBY = f"/api/v1/events/{TAG}/officers/nearby"
ALERTS = f"/api/v1/events/{TAG}/alerts"
BARKERS_POOL = (53.3800, -1.4710)

Json = dict[str, Any]


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_pool(metres: float, bearing: float) -> tuple[float, float]:
    p = geodesic(meters=metres).destination(BARKERS_POOL, bearing)
    return p.latitude, p.longitude


async def report(client: TestClient, token: str | None, where: tuple[float, float], status: int = 204, **extra: Any) -> None:
    resp = await client.post(POSITIONS, json={"lat": where[0], "lon": where[1], **extra}, headers=auth(token))
    assert resp.status == status, await resp.text()


async def officers(client: TestClient, token: str) -> list[Json]:
    resp = await client.get(OFFICERS, headers=auth(token))
    assert resp.status == 200, await resp.text()
    items: list[Json] = (await resp.json())["items"]
    return items


@pytest.fixture
async def squad(client: TestClient, user_factory: Any, event: Json) -> dict[str, str]:
    """Five officers placed around Barkers Pool; `stale` reported 10 minutes ago."""
    tokens = {name: await user_factory("officer", name) for name in ("alpha", "bravo", "charlie", "delta", "stale")}
    await report(client, tokens["alpha"], from_pool(40, 10))
    await report(client, tokens["bravo"], from_pool(120, 200))
    await report(client, tokens["charlie"], from_pool(260, 95))
    await report(client, tokens["delta"], from_pool(900, 300))
    await report(client, tokens["stale"], from_pool(50, 0), at=ago(10))
    return tokens


# ---- reporting and listing ---------------------------------------------------------------------------------


async def test_officers_list_latest_position_and_stale(
    client: TestClient, control_token: str, squad: dict[str, str]
) -> None:
    items = await officers(client, control_token)
    assert [i["officer"]["callsign"] for i in items] == ["alpha", "bravo", "charlie", "delta", "stale"]
    by = {i["officer"]["callsign"]: i for i in items}
    assert [name for name, i in by.items() if i["stale"]] == ["stale"]
    lat, lon = from_pool(40, 10)
    alpha = by["alpha"]
    assert alpha["location"] == {"lat": lat, "lon": lon, "source": "device"}
    assert alpha["at"].endswith("Z") and len(alpha["track"]) == 1


async def test_only_control_lists_officers(client: TestClient, officer_token: str, event: Json) -> None:
    assert (await client.get(OFFICERS)).status == 401
    assert (await client.get(OFFICERS, headers=auth(officer_token))).status == 403


async def test_a_late_report_joins_the_track_but_does_not_move_the_officer(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    await report(client, officer_token, (53.3801, -1.4711), at=ago(1))
    await report(client, officer_token, (53.3790, -1.4750), at=ago(3))  # from the offline queue
    await report(client, officer_token, (53.3802, -1.4712), at=ago(0.5), accuracy_m=8)
    [me] = await officers(client, control_token)
    assert (me["location"]["lat"], me["location"]["lon"], me["location"]["accuracy_m"]) == (53.3802, -1.4712, 8)
    assert [(t["lat"], t["lon"]) for t in me["track"]] == [(53.3790, -1.4750), (53.3801, -1.4711),
                                                           (53.3802, -1.4712)]


async def test_the_track_keeps_the_last_twenty(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    for i in range(25):
        await report(client, officer_token, (53.38 + i / 10000, -1.47), at=ago(25 - i))
    [me] = await officers(client, control_token)
    assert len(me["track"]) == 20
    assert me["track"][-1]["lat"] == me["location"]["lat"] == 53.38 + 24 / 10000


async def test_a_time_in_the_future_counts_as_now(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await report(client, officer_token, BARKERS_POOL, at=future)
    [me] = await officers(client, control_token)
    assert me["at"] < future and me["stale"] is False
    await report(client, officer_token, (53.3810, -1.4710))  # a later real report still moves the officer
    [me] = await officers(client, control_token)
    assert me["location"]["lat"] == 53.3810


@pytest.mark.parametrize(("body", "fields"), [
    ({"lat": 91, "lon": 0}, {"lat"}),
    ({"lat": 53.38}, {"lon"}),
    ({"lat": "53.38", "lon": -1.47, "accuracy_m": -1}, {"lat", "accuracy_m"}),
    ({"lat": 53.38, "lon": -1.47, "at": "yesterday"}, {"at"}),
    ({"lat": 53.38, "lon": -1.47, "heading": 90}, {"heading"}),
])
async def test_invalid_reports_are_422(
    client: TestClient, officer_token: str, event: Json, body: Json, fields: set[str]
) -> None:
    resp = await client.post(POSITIONS, json=body, headers=auth(officer_token))
    assert resp.status == 422
    assert {e["field"] for e in (await resp.json())["errors"]} == fields


async def test_closed_event_refuses_positions(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    await client.patch(f"/api/v1/events/{TAG}", json={"status": "closed"}, headers=auth(control_token))
    await report(client, officer_token, BARKERS_POOL, status=409)


async def test_the_public_cannot_report(client: TestClient, event: Json) -> None:
    await report(client, None, BARKERS_POOL, status=401)


# ---- nearby ------------------------------------------------------------------------------------------------


async def test_nearby_nearest_first_with_geodesic_distances(
    client: TestClient, squad: dict[str, str]
) -> None:
    resp = await client.get(NEARBY, params={"lat": BARKERS_POOL[0], "lon": BARKERS_POOL[1], "radius_m": 300},
                            headers=auth(squad["delta"]))
    assert resp.status == 200, await resp.text()
    items = (await resp.json())["items"]
    # delta is the caller (and 900 m away); stale is left out.
    assert [i["officer"]["callsign"] for i in items] == ["alpha", "bravo", "charlie"]
    for item in items:
        expected = geodesic(BARKERS_POOL, (item["location"]["lat"], item["location"]["lon"])).meters
        assert item["distance_m"] == pytest.approx(expected, abs=0.01)
    assert [round(i["distance_m"]) for i in items] == [40, 120, 260]


async def test_nearby_radius_bounds_and_roles(client: TestClient, squad: dict[str, str]) -> None:
    q = {"lat": BARKERS_POOL[0], "lon": BARKERS_POOL[1]}
    resp = await client.get(NEARBY, params={**q, "radius_m": 119}, headers=auth(squad["delta"]))
    assert [i["officer"]["callsign"] for i in (await resp.json())["items"]] == ["alpha"]
    resp = await client.get(NEARBY, params={**q, "radius_m": 50_001}, headers=auth(squad["delta"]))
    assert resp.status == 422
    resp = await client.get(NEARBY, params={"lat": 53.38, "radius_m": 100}, headers=auth(squad["delta"]))
    assert resp.status == 422
    assert (await client.get(NEARBY, params={**q, "radius_m": 100})).status == 401


# ---- alerts ------------------------------------------------------------------------------------------------


async def send_alert(client: TestClient, token: str, radius_m: float, **extra: Any) -> Json:
    resp = await client.post(ALERTS, headers=auth(token), json={
        "text": "Crush risk at the fountain", "location": {"lat": BARKERS_POOL[0], "lon": BARKERS_POOL[1]},
        "radius_m": radius_m, **extra})
    assert resp.status == 201, await resp.text()
    body: Json = await resp.json()
    return body


async def test_alert_recipients_by_radius_fresh_only(
    client: TestClient, control_token: str, squad: dict[str, str]
) -> None:
    alert = await send_alert(client, control_token, 250)
    assert alert["id"]
    # charlie at 260 m is outside; stale (50 m away, 10 minutes old) is not sent it.
    assert [r["callsign"] for r in alert["recipients"]] == ["alpha", "bravo"]
    assert set(alert["recipients"][0]) == {"id", "callsign"}
    wide = await send_alert(client, control_token, 1000)
    assert [r["callsign"] for r in wide["recipients"]] == ["alpha", "bravo", "charlie", "delta"]


async def test_acks_are_recorded_and_shown_to_control_only(
    client: TestClient, control_token: str, squad: dict[str, str]
) -> None:
    alert = await send_alert(client, control_token, 250)
    url = f"/api/v1/alerts/{alert['id']}"
    assert (await client.post(url + "/ack", headers=auth(squad["alpha"]))).status == 204
    assert (await client.post(url + "/ack", headers=auth(squad["alpha"]))).status == 204  # twice counts once
    assert (await client.post(url + "/ack", headers=auth(squad["charlie"]))).status == 404  # not sent it
    assert (await client.post(url + "/ack", headers=auth(control_token))).status == 403  # sees it, not sent it
    assert (await client.post(url + "/ack")).status == 401
    seen = await (await client.get(url, headers=auth(control_token))).json()
    assert [a["callsign"] for a in seen["acks"]] == ["alpha"]
    assert seen["acks"][0]["at"].endswith("Z")
    own = await client.get(url, headers=auth(squad["bravo"]))
    assert own.status == 200 and "acks" not in await own.json()
    assert (await client.get(url, headers=auth(squad["charlie"]))).status == 404
    assert (await client.get(url)).status == 401


async def test_alerts_need_control_and_valid_input(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    body = {"text": "x", "location": {"lat": 53.38, "lon": -1.47}, "radius_m": 100}
    assert (await client.post(ALERTS, json=body, headers=auth(officer_token))).status == 403
    resp = await client.post(ALERTS, json={"text": " ", "radius_m": 0}, headers=auth(control_token))
    assert resp.status == 422
    assert {e["field"] for e in (await resp.json())["errors"]} == {"text", "location", "radius_m"}


async def test_alert_idempotency(client: TestClient, control_token: str, squad: dict[str, str]) -> None:
    key = {"Idempotency-Key": "alert-1"}
    body = {"text": "Move to Fargate", "location": {"lat": BARKERS_POOL[0], "lon": BARKERS_POOL[1]},
            "radius_m": 300}
    first = await client.post(ALERTS, json=body, headers={**auth(control_token), **key})
    again = await client.post(ALERTS, json=body, headers={**auth(control_token), **key})
    assert first.status == again.status == 201
    assert (await first.json()) == (await again.json())


async def test_alert_list_extension_control_sees_all_officers_their_own(client, control_token, event, user_factory):
    """GET /events/{tag}/alerts: control lists every alert with acks; an officer only those sent to them;
    the public gets 401."""
    from tests.conftest import auth

    near = await user_factory("officer", "NEAR1")
    far = await user_factory("officer", "FAR1")
    tag = event["tag"]
    for token, lat in ((near, 53.3800), (far, 53.4500)):
        r = await client.post(f"/api/v1/events/{tag}/positions", json={"lat": lat, "lon": -1.4710},
                              headers=auth(token))
        assert r.status == 204
    r = await client.post(f"/api/v1/events/{tag}/alerts", json={
        "text": "Crush risk at Barkers Pool", "location": {"lat": 53.3801, "lon": -1.4711}, "radius_m": 200},
        headers=auth(control_token))
    assert r.status == 201
    alert = await r.json()
    assert [x["callsign"] for x in alert["recipients"]] == ["NEAR1"]
    assert (await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth(near))).status == 204
    control_list = await (await client.get(f"/api/v1/events/{tag}/alerts", headers=auth(control_token))).json()
    assert [a["id"] for a in control_list["items"]] == [alert["id"]]
    assert [a["callsign"] for a in control_list["items"][0]["acks"]] == ["NEAR1"]
    mine = await (await client.get(f"/api/v1/events/{tag}/alerts", headers=auth(near))).json()
    assert [a["id"] for a in mine["items"]] == [alert["id"]] and "acks" not in mine["items"][0]
    other = await (await client.get(f"/api/v1/events/{tag}/alerts", headers=auth(far))).json()
    assert other["items"] == []
    assert (await client.get(f"/api/v1/events/{tag}/alerts")).status == 401
