"""Public reports cannot be flooded (issue 15, item 4): JSON only (a cross-site form's `text/plain` is 415),
a cap on an event's unreviewed reports with a clear 429 and a signal on control's stream, and the per-address
limit kept, with an IPv6 /48 limited as a whole too."""

from __future__ import annotations

from pathlib import Path

from sse import SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user

TAG = "libdempolicing"
REPORTS = f"/api/v1/events/{TAG}/reports"


async def _world(aiohttp_client, tmp_path: Path, **settings):
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False, **settings))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    return client, control, officer


async def test_only_json_bodies_are_taken(aiohttp_client, tmp_path: Path) -> None:
    client, _, _ = await _world(aiohttp_client, tmp_path, report_burst=100)
    body = b'{"text": "snipers on the roof"}'
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
        headers = {} if ctype is None else {"Content-Type": ctype}
        resp = await client.post(REPORTS, data=body, headers=headers, skip_auto_headers=["Content-Type"])
        assert resp.status == 415, (ctype, resp.status, await resp.text())
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert (await client.post(REPORTS, json={"text": "snipers on the roof"})).status == 202


async def test_unreviewed_reports_are_capped_per_event_and_control_is_told(aiohttp_client, tmp_path: Path) -> None:
    client, control, officer = await _world(aiohttp_client, tmp_path, report_burst=100, max_unreviewed_reports=3)
    stream = await client.get(f"/api/v1/events/{TAG}/stream", headers=auth(control))
    reader = SSEReader(stream.content)
    ids = []
    for i in range(3):
        resp = await client.post(REPORTS, json={"text": f"report {i}"})
        assert resp.status == 202
        ids.append((await resp.json())["id"])
    full = await client.post(REPORTS, json={"text": "one too many"})
    assert full.status == 429 and int(full.headers["Retry-After"]) >= 1
    assert "unreviewed" in (await full.json())["detail"]
    signal = await reader.next()
    assert signal is not None and signal.type == "reports-backlog"
    assert signal.json() == {"event": TAG, "unreviewed": 3, "max_unreviewed_reports": 3, "refusing": True}
    # An officer dismisses one: there is room again.
    resp = await client.post(f"/api/v1/reports/{ids[0]}/dismiss", headers=auth(officer))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["dismissed"] is True
    assert (await client.post(f"/api/v1/reports/{ids[0]}/dismiss")).status == 401
    assert (await client.post(REPORTS, json={"text": "room again"})).status == 202
    stream.close()


async def test_an_ipv6_48_is_limited_as_a_whole(aiohttp_client, tmp_path: Path) -> None:
    client, _, _ = await _world(aiohttp_client, tmp_path, report_burst=2, report_rate_per_minute=1,
                                trusted_proxies=["127.0.0.1"])
    statuses = []
    for i in range(40):  # a new /64 of one /48 for every report
        headers = {"X-Forwarded-For": f"2001:db8:1:{i:x}::1"}
        statuses.append((await client.post(REPORTS, json={"text": f"spread {i}"}, headers=headers)).status)
    assert statuses[0] == 202
    assert statuses.count(202) < 40 and statuses[-1] == 429
    # Another /48 is not affected.
    resp = await client.post(REPORTS, json={"text": "elsewhere"}, headers={"X-Forwarded-For": "2001:db8:2::1"})
    assert resp.status == 202
