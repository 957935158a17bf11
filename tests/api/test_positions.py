"""Officer positions, `nearby` (distances checked against geopy, independently), and alerts with their
recipients and acknowledgements."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth
from geopy.distance import geodesic

from fieldcomms.keys import SERVICES
from fieldcomms.visibility import Viewer, view

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


async def test_the_track_keeps_every_point_in_time_order(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    for i in range(25):
        await report(client, officer_token, (53.38 + i / 10000, -1.47), at=ago(25 - i))
    [me] = await officers(client, control_token)
    assert [t["lat"] for t in me["track"]] == [53.38 + i / 10000 for i in range(25)]
    assert 3 <= client.app[SERVICES].store.count("tracks") <= 4  # 25 minutes: in ten-minute documents
    assert me["track"][-1]["lat"] == me["location"]["lat"] == 53.38 + 24 / 10000
    newest = await (await client.get(OFFICERS, params={"track": "3"}, headers=auth(control_token))).json()
    assert newest["items"][0]["track"] == me["track"][-3:]
    none = await (await client.get(OFFICERS, params={"track": "0"}, headers=auth(control_token))).json()
    assert none["items"][0]["track"] == [] and none["items"][0]["location"] == me["location"]
    assert (await client.get(OFFICERS, params={"track": "-1"}, headers=auth(control_token))).status == 422


async def test_a_repeated_report_stores_nothing_and_tracks_are_their_own_documents(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    store = client.app[SERVICES].store
    when = ago(2)
    await report(client, officer_token, (53.3801, -1.4711), at=when, accuracy_m=5)
    seq = store.last_seq
    await report(client, officer_token, (53.3801, -1.4711), at=when, accuracy_m=5)  # a handset's retry
    assert store.last_seq == seq
    [pos] = [d for d in store.all("positions")]
    assert "track" not in pos  # the position is the latest point only: a small row
    [bucket] = [d for d in store.all("tracks")]  # ten minutes of the officer's points, compact
    when_ms = round(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() * 1000)
    assert (bucket["event"], bucket["officer"]["callsign"], bucket["points"]) == \
        (TAG, "officer1", [[when_ms, 53.3801, -1.4711, 5]])
    assert bucket["id"] == f"trk_{TAG}_{pos['officer']['id']}_{when_ms // 600_000 * 600_000}"
    # Nobody but control sees a track, and never the public (visibility decides, as for everything).
    assert view("tracks", bucket, None) is None
    officer = Viewer(id=pos["officer"]["id"], callsign="officer1", role="officer", name="o")
    assert view("tracks", bucket, officer) is None
    control = Viewer(id="c", callsign="c", role="control", name="c")
    assert view("tracks", bucket, control) is not None


async def test_a_stream_position_frame_is_the_latest_point_only_after_1000_positions(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    """API: a `position`'s data is `{"officer", "location", "at", "stale"}`, a few hundred bytes, however long
    the track: the track is at GET /officers. Target: a whole frame (id, event, data lines) <= 400 bytes."""
    stream = await client.get(f"/api/v1/events/{TAG}/stream", headers=auth(control_token))
    assert stream.status == 200
    assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
    public = await client.get(f"/api/v1/events/{TAG}/stream")
    assert await public.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
    start = datetime.now(UTC) - timedelta(seconds=1100)  # the newest point 100 s old: fresh

    def point(i: int) -> tuple[tuple[float, float], str]:
        return ((53.38 + i / 100000, -1.47 - i / 100000),
                (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"))

    frames: list[bytes] = []

    async def read() -> None:
        while True:
            frame = await stream.content.readuntil(b"\n\n")
            if frame.startswith(b":"):
                continue  # a keep-alive
            frames.append(frame)
            if len(frames) == 1000:
                return

    reader = asyncio.create_task(read())
    for i in range(1000):
        where, at = point(i)
        await report(client, officer_token, where, at=at, accuracy_m=12.5)
    late, late_at = (53.3, -1.4), (start - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await report(client, officer_token, late, at=late_at)  # from an offline queue: no frame, joins the track
    await asyncio.wait_for(reader, 30)
    assert all(f.startswith(b"id: ") and b"\nevent: position\ndata: " in f for f in frames)
    sizes = [len(f) for f in frames]
    assert max(sizes) <= 400, max(sizes)
    last = frames[-1].split(b"\ndata: ", 1)[1]
    data = json.loads(last)
    assert set(data) == {"officer", "location", "at", "stale"}
    assert set(data["officer"]) == {"id", "callsign"} and data["officer"]["callsign"] == "officer1"
    assert data["location"] == {"lat": point(999)[0][0], "lon": point(999)[0][1], "accuracy_m": 12.5,
                                "source": "device"}
    assert data["at"] == point(999)[1] and data["stale"] is False
    # The late report sent nothing (it moved no one), and the public got no position at all.
    post = await client.post(f"/api/v1/events/{TAG}/updates", json={"text": "public now", "visibility": "public"},
                             headers=auth(officer_token))
    assert post.status == 201
    frame = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
    while frame.startswith(b":"):
        frame = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
    assert b"event: update\n" in frame
    frame = await asyncio.wait_for(public.content.readuntil(b"\n\n"), 5)
    while frame.startswith(b":"):
        frame = await asyncio.wait_for(public.content.readuntil(b"\n\n"), 5)
    assert b"event: update\n" in frame and b"position" not in frame
    stream.close()
    public.close()
    # The whole track is at GET /officers: 1,001 points in time order, the late one first.
    [me] = await officers(client, control_token)
    assert len(me["track"]) == 1001
    assert (me["track"][0]["lat"], me["track"][0]["at"]) == (late[0], late_at)
    assert [(t["lat"], t["lon"]) for t in me["track"][1:]] == [point(i)[0] for i in range(1000)]
    assert me["location"]["lat"] == point(999)[0][0]


async def test_a_position_stored_with_its_track_inside_moves_the_points_out(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    """A position document written before tracks had their own collection carried the last 20 points: the
    officer's next report moves them into `tracks`, and GET /officers shows them all."""
    store = client.app[SERVICES].store
    me = await (await client.get("/api/v1/me", headers=auth(officer_token))).json()
    old = [{"lat": 53.37, "lon": -1.46, "at": ago(10 - k)} for k in range(3)]
    legacy = {"id": f"pos_{TAG}_{me['id']}", "event": TAG, "officer": {"id": me["id"], "callsign": "officer1"},
              "location": {"lat": 53.37, "lon": -1.46, "source": "device"}, "at": old[-1]["at"],
              "received_at": old[-1]["at"], "track": old,
              "_at": datetime.fromisoformat(old[-1]["at"].replace("Z", "+00:00")).timestamp()}
    await store.append("position", "positions", legacy)
    await report(client, officer_token, (53.371, -1.461))
    [item] = await officers(client, control_token)
    assert [t["at"] for t in item["track"]][:3] == [p["at"] for p in old] and len(item["track"]) == 4
    assert "track" not in store.get("positions", legacy["id"])
    assert sum(len(t["points"]) for t in store.all("tracks")) == 4


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


def test_the_largest_possible_position_frame_is_within_400_bytes() -> None:
    """The frame's size depends only on its fields' lengths: the longest callsign (32), a 12-digit seq, times
    with milliseconds and coordinates and an accuracy at full float precision still fit in 400 bytes."""
    from fieldcomms.domain.positions import position_frame
    from fieldcomms.live_parts import sse_frame

    seen = {"id": "pos_" + "e" * 64 + "_usr_" + "x" * 22, "seq": 10**12, "event": "e" * 64,
            "officer": {"id": "usr_" + "x" * 22, "callsign": "A" * 32},
            "location": {"lat": -89.12345678901234, "lon": -179.12345678901234, "accuracy_m": 12345.678901234567,
                         "source": "device"},
            "at": "2026-12-06T08:33:37.123Z"}
    frame = sse_frame("position", 10**12 - 1, position_frame(seen, 0.0, 300.0))
    assert len(frame) <= 400, len(frame)
    assert frame.count(b"\n") == 4 and frame.endswith(b"\n\n")


async def test_a_stream_replay_does_not_walk_the_track_points(aiohttp_client: Any, tmp_path: Any) -> None:
    """Tracks are documents of the event (`tracks`, ten minutes of an officer's points each), so a long event
    holds far more of them than of anything streamed (10,000 officers for 12 hours: 720,000). A replay
    (`since=0`, a control room reconnecting, or any public client) walks only the collections the stream
    carries: with 300,000 track documents it starts at once, where walking them held the server's loop for
    over a second."""
    from fieldcomms.app import create_app
    from fieldcomms.config import Settings
    from tests.conftest import make_user

    # A ring of one change: the replay comes from the store, as after a restart or a long absence.
    app = create_app(Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, sse_ring_size=1))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "control1")
    resp = await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                             headers=auth(control))
    assert resp.status == 201
    store = app[SERVICES].store
    officer = {"id": "usr_replay", "callsign": "SY-1"}
    for batch in range(30):
        points = [{"id": f"trk_{TAG}_usr_replay_{batch}_{k}", "event": TAG, "officer": officer,
                   "points": [[1767225600000 + (batch * 10_000 + k) * 600_000, 53.38, -1.47, None]]}
                  for k in range(10_000)]
        await store.append("track", "tracks", points[0], aux=lambda _s, rest=points[1:]: [("tracks", t) for t in rest])
    assert store.count("tracks") == 300_000
    for who in ("usr_replay", "usr_other"):
        await store.append("position", "positions", {
            "id": f"pos_{TAG}_{who}", "event": TAG, "officer": {**officer, "id": who}, "at": "2026-01-01T00:00:00Z",
            "location": {"lat": 53.38, "lon": -1.47, "source": "device"}, "_at": 1767225600.0})
    for _ in range(2):  # the second one on a warm view
        started = time.perf_counter()
        stream = await client.get(f"/api/v1/events/{TAG}/stream", params={"since": "0"}, headers=auth(control))
        assert stream.status == 200
        frame = b""
        while not frame.startswith(b"id: "):  # the replay's first frame: a position
            frame = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 30)
        took = time.perf_counter() - started
        stream.close()
        assert b"event: position\n" in frame
    assert took < 0.5, f"the replay took {took:.2f} s"


async def test_concurrent_reports_of_one_officer_all_join_the_track(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    """Reports sent at once (a handset emptying its offline queue) touch the same ten-minute track document:
    on PostgreSQL each new version is compare-and-set on the one it was built from, and a lost race runs
    again, so no point is lost; the officer is where the newest report says."""
    start = datetime.now(UTC) - timedelta(minutes=4)
    whens = [(start + timedelta(seconds=5 * k)).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(30)]
    await asyncio.gather(*(report(client, officer_token, (53.38 + k / 10000, -1.47), at=when)
                           for k, when in enumerate(whens)))
    [me] = await officers(client, control_token)
    assert [t["at"] for t in me["track"]] == whens
    assert [t["lat"] for t in me["track"]] == [53.38 + k / 10000 for k in range(30)]
    assert me["at"] == whens[-1] and me["location"]["lat"] == 53.38 + 29 / 10000
