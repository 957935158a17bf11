"""Web Push end to end: a real push service stand-in on 127.0.0.1 receives what the server sends; the test
decrypts it with keys it made itself and checks the VAPID JWT against GET /push/key. Subscriptions: the same
endpoint once, owners only, bad input 422 naming the field, 410 ends one."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import auth
from pushservice import Handset, PushService, eventually, verify_vapid

from fieldcomms.config import Settings
from fieldcomms.domain.subscriptions import SUBSCRIPTIONS
from fieldcomms.keys import SERVICES
from fieldcomms.push.vapid import KEY_FILE, load_or_create, public_key

TAG = "libdempolicing"
POSITIONS = f"/api/v1/events/{TAG}/positions"
ALERTS = f"/api/v1/events/{TAG}/alerts"
SUBS = "/api/v1/push/subscriptions"
HERE = {"lat": 53.3800, "lon": -1.4710}
Json = dict[str, Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False,
                    push_allow_insecure_endpoints=True, push_contact="mailto:control@example.org")


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    service = await PushService().start()
    yield service
    await service.stop()


async def subscribe(client: TestClient, token: str, handset: Handset, status: int = 201) -> Json:
    resp = await client.post(SUBS, json=handset.subscription(), headers=auth(token))
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def place(client: TestClient, token: str, lat: float = HERE["lat"], lon: float = HERE["lon"], **extra: Any) -> None:
    resp = await client.post(POSITIONS, json={"lat": lat, "lon": lon, **extra}, headers=auth(token))
    assert resp.status == 204, await resp.text()


async def alert(client: TestClient, token: str, **extra: Any) -> Json:
    resp = await client.post(ALERTS, json={"text": "Bottles thrown at Barkers Pool", "location": HERE,
                                           "radius_m": 200, **extra}, headers=auth(token))
    assert resp.status == 201, await resp.text()
    body: Json = await resp.json()
    return body


async def test_the_vapid_key_is_made_once_kept_private_and_published(
        client: TestClient, officer_token: str, settings: Settings) -> None:
    path = settings.data_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    resp = await client.get("/api/v1/push/key", headers=auth(officer_token))
    assert resp.status == 200
    key = (await resp.json())["public_key"]
    assert len(key) == 87 and "=" not in key  # 65 bytes, base64url without padding
    assert public_key(load_or_create(settings.data_path)) == key  # the kept file holds the published key
    assert (await client.get("/api/v1/push/key")).status == 401


async def test_the_key_survives_a_restart(tmp_path: Path) -> None:
    first = public_key(load_or_create(tmp_path))
    assert public_key(load_or_create(tmp_path)) == first
    os.chmod(tmp_path / KEY_FILE, 0o644)  # restored from a backup with looser rights
    assert public_key(load_or_create(tmp_path)) == first
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


async def test_one_subscription_per_endpoint_deleted_by_its_owner_only(
        client: TestClient, user_factory: Any, pushes: PushService) -> None:
    alpha, bravo = await user_factory("officer", "alpha"), await user_factory("officer", "bravo")
    handset = Handset(pushes.endpoint("h1"))
    resp = await client.post(SUBS, json=handset.subscription(), headers=auth(alpha))
    assert resp.status == 201 and resp.headers["Location"] == f"{SUBS}/{(first := await resp.json())['id']}"
    assert first["endpoint"] == handset.endpoint and first["id"]
    again = await subscribe(client, alpha, handset)
    assert again["id"] == first["id"]
    store = client.app[SERVICES].store
    assert store.count(SUBSCRIPTIONS) == 1
    url = f"{SUBS}/{first['id']}"
    assert (await client.delete(url, headers=auth(bravo))).status == 404  # not theirs: not even its existence
    assert (await client.delete(url)).status == 401
    assert (await client.delete(url, headers=auth(alpha))).status == 204
    assert (await client.delete(url, headers=auth(alpha))).status == 404


async def test_an_officer_has_at_most_ten_subscriptions_the_oldest_goes(
        client: TestClient, officer_token: str, pushes: PushService) -> None:
    ids = [(await subscribe(client, officer_token, Handset(pushes.endpoint(f"h{i}"))))["id"] for i in range(12)]
    live = {d["id"] for d in client.app[SERVICES].subscriptions.of(
        client.app[SERVICES].store.get(SUBSCRIPTIONS, ids[0])["officer"]["id"])}
    assert live == set(ids[2:])
    assert (await client.delete(f"{SUBS}/{ids[0]}", headers=auth(officer_token))).status == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"endpoint": "not a url", "keys": None}, "endpoint"),
    ({"endpoint": "ftp://push.example.org/x"}, "endpoint"),
    ({"endpoint": "https://"}, "endpoint"),
    ({"endpoint": "https://user:pw@push.example.org/x"}, "endpoint"),
    ({"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
    ({"keys": {"p256dh": "BAAA" + "A" * 83, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),  # not on the curve
    ({"keys": {"p256dh": None, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
    ({"keys": {"auth": "c2hvcnQ"}}, "keys.auth"),
    ({"keys": {"auth": "!!!!"}}, "keys.auth"),
    ({"keys": "none"}, "keys"),
])
async def test_bad_subscriptions_are_422_naming_the_field_and_store_nothing(
        client: TestClient, officer_token: str, pushes: PushService, body: Json, field: str) -> None:
    good = Handset(pushes.endpoint("h")).subscription()
    sent = {**good, **body}
    if isinstance(body.get("keys"), dict):
        sent["keys"] = {**good["keys"], **body["keys"]}
    sent = {k: v for k, v in sent.items() if v is not None or k != "keys"}
    resp = await client.post(SUBS, json=sent, headers=auth(officer_token))
    assert resp.status == 422, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert field in [e["field"] for e in (await resp.json())["errors"]]
    assert client.app[SERVICES].store.count(SUBSCRIPTIONS) == 0


async def test_an_alert_is_pushed_encrypted_and_signed_to_each_recipient(
        client: TestClient, control_token: str, user_factory: Any, pushes: PushService, event: Json) -> None:
    near, far = await user_factory("officer", "near1"), await user_factory("officer", "far1")
    phone, tablet, far_phone = (Handset(pushes.endpoint(n)) for n in ("phone", "tablet", "far"))
    await subscribe(client, near, phone)
    await subscribe(client, near, tablet)
    await subscribe(client, far, far_phone)
    await place(client, near)
    await place(client, far, lat=53.39)
    key = (await (await client.get("/api/v1/push/key", headers=auth(near))).json())["public_key"]
    sent = await alert(client, control_token)
    got = await pushes.wait_for(2)
    await asyncio.sleep(0.3)
    assert len(pushes.received) == 2, "one push per subscription of each recipient, none to others"
    by_name = {r.name: r for r in got}
    assert set(by_name) == {"phone", "tablet"}
    for name, handset in (("phone", phone), ("tablet", tablet)):
        push = by_name[name]
        assert push.headers["TTL"] == "600"
        assert push.headers["Urgency"] == "high"
        assert push.headers["Content-Encoding"] == "aes128gcm"
        assert handset.decrypt(push.body) == {
            "type": "alert", "id": sent["id"], "event": TAG, "text": "Bottles thrown at Barkers Pool",
            "location": sent["location"], "radius_m": 200, "sent_at": sent["created_at"]}
        claims = verify_vapid(push.headers["Authorization"], key)
        assert claims["aud"] == f"http://127.0.0.1:{pushes.port}"
        assert claims["sub"] == "mailto:control@example.org"
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600


async def test_a_410_ends_the_subscription(
        client: TestClient, control_token: str, user_factory: Any, pushes: PushService, event: Json) -> None:
    officer = await user_factory("officer", "gone1")
    handset = Handset(pushes.endpoint("uninstalled"))
    sub = await subscribe(client, officer, handset)
    pushes.gone.add("uninstalled")
    await place(client, officer)
    await alert(client, control_token)
    await pushes.wait_for(1)
    store = client.app[SERVICES].store
    await eventually(lambda: (store.get(SUBSCRIPTIONS, sub["id"]) or {}).get("ended"))  # reported back by the sender
    assert "410" in store.get(SUBSCRIPTIONS, sub["id"])["ended"]["reason"]
    assert (await client.delete(f"{SUBS}/{sub['id']}", headers=auth(officer))).status == 404
    await alert(client, control_token, text="Second alert")
    await asyncio.sleep(0.5)
    assert len(pushes.received) == 1, "an ended subscription gets no more pushes"


async def test_push_sending_never_waits_on_the_loop(
        client: TestClient, control_token: str, user_factory: Any, event: Json) -> None:
    """A push service that never answers does not delay the alert's answer or other requests."""
    stalled = web.Application()
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=201)

    stalled.router.add_post("/push/{name}", hang)
    runner = web.AppRunner(stalled)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        officer = await user_factory("officer", "slow1")
        await subscribe(client, officer, Handset(f"http://127.0.0.1:{port}/push/x"))
        await place(client, officer)
        started = time.perf_counter()
        await alert(client, control_token)
        assert (await client.get("/healthz")).status == 200
        assert time.perf_counter() - started < 2.0
    finally:
        never.set()
        await runner.cleanup()
