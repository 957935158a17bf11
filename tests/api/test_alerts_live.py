"""Alerts that stay live on their area (`active_minutes`) and escalation (`ack_within_s`): an officer who walks
into a live alert becomes a recipient (stream, push, `added_at`); a recipient who has not acknowledged in time
is reported to control once (`alert-overdue`, `overdue: true`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth
from pushservice import Handset, PushService
from sse import Event, SSEReader

from fieldcomms.config import Settings
from fieldcomms.domain.escalation import Escalation
from fieldcomms.keys import SERVICES

TAG = "libdempolicing"
POSITIONS = f"/api/v1/events/{TAG}/positions"
ALERTS = f"/api/v1/events/{TAG}/alerts"
STREAM = f"/api/v1/events/{TAG}/stream"
HERE = {"lat": 53.3800, "lon": -1.4710}
INSIDE = (53.3805, -1.4712)  # about 60 m away
OUTSIDE = (53.3900, -1.4710)  # about 1.1 km away
Json = dict[str, Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False, push_allow_insecure_endpoints=True)


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    service = await PushService().start()
    yield service
    await service.stop()


async def place(client: TestClient, token: str, where: tuple[float, float], **extra: Any) -> None:
    resp = await client.post(POSITIONS, json={"lat": where[0], "lon": where[1], **extra}, headers=auth(token))
    assert resp.status == 204, await resp.text()


async def send(client: TestClient, token: str, status: int = 201, **extra: Any) -> Json:
    resp = await client.post(ALERTS, json={"text": "Crush risk at the gate", "location": HERE, "radius_m": 200,
                                           **extra}, headers=auth(token))
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def get_alert(client: TestClient, token: str, alert_id: str) -> Json:
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=auth(token))
    assert resp.status == 200, await resp.text()
    body: Json = await resp.json()
    return body


async def next_of(reader: SSEReader, kind: str, within: float = 5.0) -> Event:
    while True:
        event = await reader.next(within=within)
        assert event is not None, "the stream ended"
        if event.type == kind:
            return event


@pytest.mark.parametrize(("field", "value"), [
    ("active_minutes", -1), ("active_minutes", 1441), ("active_minutes", 1.5), ("active_minutes", "10"),
    ("active_minutes", True), ("ack_within_s", 29), ("ack_within_s", 3601), ("ack_within_s", "60"),
])
async def test_out_of_range_is_422_naming_the_field(
        client: TestClient, control_token: str, event: Json, field: str, value: Any) -> None:
    resp = await client.post(ALERTS, json={"text": "x", "location": HERE, "radius_m": 100, field: value},
                             headers=auth(control_token))
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]
    assert client.app[SERVICES].store.count("alerts") == 0


async def test_an_officer_walking_into_a_live_alert_becomes_a_recipient(
        client: TestClient, control_token: str, user_factory: Any, event: Json, pushes: PushService) -> None:
    first, walker, stale = [await user_factory("officer", n) for n in ("first", "walker", "stale1")]
    await place(client, first, INSIDE)
    await place(client, walker, OUTSIDE)
    handset = Handset(pushes.endpoint("walker"))
    assert (await client.post("/api/v1/push/subscriptions", json=handset.subscription(),
                              headers=auth(walker))).status == 201
    live = await send(client, control_token, active_minutes=30)
    fixed = await send(client, control_token, text="Fixed list")  # active_minutes 0: recipients fixed at sending
    assert [r["callsign"] for r in live["recipients"]] == ["first"]
    assert live["active_minutes"] == 30 and live["active_until"] > live["created_at"]
    assert "active_until" not in fixed
    async with client.get(STREAM, headers=auth(walker)) as resp:
        reader = SSEReader(resp.content)
        await place(client, walker, OUTSIDE)  # still outside: nothing
        await place(client, stale, INSIDE, at="2011-03-12T10:00:00Z")  # an old position says nothing of now
        await place(client, walker, INSIDE)
        got = await next_of(reader, "alert")
        assert got.json()["id"] == live["id"]
        assert [r["callsign"] for r in got.json()["recipients"]] == ["first", "walker"]
    push = (await pushes.wait_for(1))[0]
    assert handset.decrypt(push.body)["id"] == live["id"]
    stored = await get_alert(client, control_token, live["id"])
    assert [r["callsign"] for r in stored["recipients"]] == ["first", "walker"]
    assert "added_at" not in stored["recipients"][0] and stored["recipients"][1]["added_at"] >= live["created_at"]
    assert [r["callsign"] for r in (await get_alert(client, control_token, fixed["id"]))["recipients"]] == ["first"]
    await place(client, walker, (INSIDE[0] + 0.0001, INSIDE[1]))  # moving inside again adds nobody twice
    assert len((await get_alert(client, control_token, live["id"]))["recipients"]) == 2
    assert (await client.post(f"/api/v1/alerts/{live['id']}/ack", headers=auth(walker))).status == 204


async def test_acknowledging_is_for_recipients_only(
        client: TestClient, control_token: str, user_factory: Any, event: Json) -> None:
    near, far = await user_factory("officer", "near2"), await user_factory("officer", "far2")
    await place(client, near, INSIDE)
    await place(client, far, OUTSIDE)
    sent = await send(client, control_token)
    url = f"/api/v1/alerts/{sent['id']}/ack"
    assert (await client.post(url, headers=auth(far))).status == 404
    assert (await client.post(url, headers=auth(control_token))).status == 403
    assert (await client.post(url, headers=auth(near))).status == 204
    stored = await get_alert(client, control_token, sent["id"])
    assert stored["recipients"][0]["acked_at"] == stored["acks"][0]["at"]
    mine = await get_alert(client, near, sent["id"])
    assert mine["recipients"][0]["acked_at"] and "acks" not in mine


async def test_an_overdue_recipient_is_reported_to_control_once(
        client: TestClient, control_token: str, user_factory: Any, event: Json) -> None:
    quick, slow = await user_factory("officer", "quick"), await user_factory("officer", "slow")
    await place(client, quick, INSIDE)
    await place(client, slow, INSIDE)
    sent = await send(client, control_token, ack_within_s=30)
    assert (await client.post(f"/api/v1/alerts/{sent['id']}/ack", headers=auth(quick))).status == 204
    ctx = client.app[SERVICES]
    escalation = Escalation(ctx)  # the running one sleeps for 30 s; this one is asked about a later moment
    async with client.get(STREAM, headers=auth(control_token)) as control_resp, \
            client.get(STREAM, headers=auth(slow)) as officer_resp:
        control, officer = SSEReader(control_resp.content), SSEReader(officer_resp.content)
        await escalation.report_due(time.time() + 10)
        assert escalation.reports == 0, "not due yet"
        await escalation.report_due(time.time() + 31)
        got = await next_of(control, "alert-overdue")
        slow_id = next(r["id"] for r in sent["recipients"] if r["callsign"] == "slow")
        assert got.json() == {"id": sent["id"], "event": TAG, "seq": int(got.id),
                              "overdue": [{"id": slow_id, "callsign": "slow"}]}
        await escalation.report_due(time.time() + 300)
        assert escalation.reports == 1, "reported once"
        with pytest.raises(TimeoutError):
            await next_of(officer, "alert-overdue", within=0.5)  # control only
    stored = await get_alert(client, control_token, sent["id"])
    by_callsign = {r["callsign"]: r for r in stored["recipients"]}
    assert by_callsign["slow"]["overdue"] is True and "acked_at" not in by_callsign["slow"]
    assert by_callsign["quick"]["acked_at"] and "overdue" not in by_callsign["quick"]
    assert "overdue" not in (await get_alert(client, slow, sent["id"]))["recipients"][1]
