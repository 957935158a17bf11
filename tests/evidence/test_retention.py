"""Retention: retain_until, the purge (admin, closed events only) erasing personal data from every file while
the chain still verifies, and the server's own periodic purge."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import auth, make_user

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

from .helpers import files_containing
from .world import CONTACT, TAG, build

EVENTS = "/api/v1/events"


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_retain_until_is_derived_and_only_set_forward(client: TestClient, control_token: str) -> None:
    made = await client.post(EVENTS, json={"tag": "ends", "title": "Ends known", "ends_at": "2030-05-01T18:00:00Z"},
                             headers=auth(control_token))
    assert (await made.json())["retain_until"] == "2030-07-30T18:00:00Z"  # + retention_days (90)
    open_ended = await (await client.post(EVENTS, json={"tag": "open", "title": "No end"},
                                          headers=auth(control_token))).json()
    assert open_ended["retain_until"] is None
    closed = await (await client.patch(f"{EVENTS}/open", json={"status": "closed"}, headers=auth(control_token))).json()
    expected = datetime.now(UTC) + timedelta(days=90)
    got = datetime.fromisoformat(closed["retain_until"].replace("Z", "+00:00"))
    assert abs((got - expected).total_seconds()) < 60 and closed["closed_at"].endswith("Z")
    for value in ("2001-01-01T00:00:00Z", None, "soon"):
        resp = await client.patch(f"{EVENTS}/open", json={"retain_until": value}, headers=auth(control_token))
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "retain_until"
    assert (await (await client.get(f"{EVENTS}/open")).json())["retain_until"] == closed["retain_until"]
    later = _in(400)
    kept = await (await client.patch(f"{EVENTS}/open", json={"retain_until": later}, headers=auth(control_token))).json()
    assert kept["retain_until"] == later
    # Set explicitly, it is no longer derived from ends_at.
    moved = await (await client.patch(f"{EVENTS}/open", json={"ends_at": "2031-01-01T00:00:00Z"},
                                      headers=auth(control_token))).json()
    assert moved["retain_until"] == later
    at_creation = await client.post(EVENTS, json={"tag": "past", "title": "x", "retain_until": "2001-01-01T00:00:00Z"},
                                    headers=auth(control_token))
    assert at_creation.status == 422


async def test_purge_refusals_change_nothing(client: TestClient, admin_token: str, control_token: str,
                                             officer_token: str, event: dict[str, Any]) -> None:
    await build(client, officer_token, control_token)
    url = f"{EVENTS}/{TAG}/purge"
    assert (await client.post(url, json={"reason": "retention"})).status == 401
    assert (await client.post(url, json={"reason": "retention"}, headers=auth(control_token))).status == 403
    live = await client.post(url, json={"reason": "retention"}, headers=auth(admin_token))
    assert live.status == 409 and live.content_type == "application/problem+json"
    assert (await client.patch(f"{EVENTS}/{TAG}", json={"status": "closed"}, headers=auth(control_token))).status == 200
    for body, field in (({}, "reason"), ({"reason": "no"}, "reason"), ({"reason": "z" * 501}, "reason"),
                        ({"reason": "retention", "all": True}, "all")):
        resp = await client.post(url, json=body, headers=auth(admin_token))
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == field, body
    assert (await client.post(f"{EVENTS}/nosuch/purge", json={"reason": "retention"},
                              headers=auth(admin_token))).status == 404
    officers = await (await client.get(f"{EVENTS}/{TAG}/officers", headers=auth(control_token))).json()
    assert len(officers["items"]) == 1
    reports = await (await client.get(f"{EVENTS}/{TAG}/reports", headers=auth(control_token))).json()
    assert reports["items"][0]["contact"] == CONTACT
    log = await (await client.get("/api/v1/audit?action=event.purge", headers=auth(admin_token))).json()
    assert log["items"] == []


async def test_purge_erases_personal_data_from_every_file(client: TestClient, admin_token: str,
                                                          control_token: str, officer_token: str,
                                                          event: dict[str, Any], tmp_path: Path) -> None:
    world = await build(client, officer_token, control_token)
    app = client.app
    data_dir = Path(app[SERVICES].settings.data_dir)
    store = app[SERVICES].store
    await store.snapshot()  # some of it in a snapshot, some only in the journal
    resp = await client.post(f"{EVENTS}/{TAG}/reports", json={"text": "later report", "contact": "late.7731@example.org"})
    assert resp.status == 202
    assert files_containing(data_dir, CONTACT.encode()) and files_containing(data_dir, world.photo_bytes)
    assert files_containing(data_dir, b"53.37912")
    assert (await client.patch(f"{EVENTS}/{TAG}", json={"status": "closed"}, headers=auth(control_token))).status == 200

    resp = await client.post(f"{EVENTS}/{TAG}/purge", json={"reason": "Retention period ended (MoPI)"},
                             headers=auth(admin_token))
    assert resp.status == 200, await resp.text()
    summary = await resp.json()
    assert summary["positions"] == 1 and summary["report_contacts"] == 2 and summary["original_photos"] == 1
    assert (await client.post(f"{EVENTS}/{TAG}/purge", json={"reason": "again please"},
                              headers=auth(admin_token))).status == 409

    # Through the API: no positions, no contacts, the original gone; updates, rumours, decisions stay.
    officers = await (await client.get(f"{EVENTS}/{TAG}/officers", headers=auth(control_token))).json()
    assert officers["items"] == []
    reports = await (await client.get(f"{EVENTS}/{TAG}/reports", headers=auth(control_token))).json()
    assert len(reports["items"]) == 2 and all(not r.get("contact") for r in reports["items"])
    original = await client.get(f"/api/v1/photos/{world.photo['id']}/original?reason=court", headers=auth(control_token))
    assert original.status == 410
    media = await client.get(world.photo["url"], headers=auth(control_token))
    assert media.status == 200  # the stripped copy the update shows stays
    for url in (f"/api/v1/updates/{world.updates[0]['id']}", f"/api/v1/rumours/{world.rumour['id']}",
                f"/api/v1/decisions/{world.decision['id']}"):
        assert (await client.get(url, headers=auth(control_token))).status == 200, url
    ev = await (await client.get(f"{EVENTS}/{TAG}")).json()
    assert ev["purged_at"].endswith("Z")
    log = await (await client.get("/api/v1/audit?action=event.purge", headers=auth(admin_token))).json()
    assert [e["reason"] for e in log["items"]] == ["Retention period ended (MoPI)"]

    # On disk: the erased bytes are in no file of the data directory, after a snapshot and a restart too.
    await store.snapshot()
    for needle in (CONTACT.encode(), b"late.7731@example.org", b"53.37912", b"-1.47123", world.photo_bytes):
        assert files_containing(data_dir, needle) == [], needle[:40]
    check = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "fieldcomms", "check", "--data-dir",
                                                     str(data_dir)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_a_running_server_purges_due_events_itself(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), demo_admin=False, purge_check_hours=0.0003)
    app: web.Application = create_app(settings)
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "ctl")
    officer = await make_user(app, "officer", "pc1")
    resp = await client.post(EVENTS, json={"tag": "old", "title": "Long ago", "status": "live",
                                           "ends_at": "2011-03-13T18:00:00Z"}, headers=auth(control))
    assert (await resp.json())["retain_until"] == "2011-06-11T18:00:00Z"
    assert (await client.post(f"{EVENTS}/old/positions", json={"lat": 53.1, "lon": -1.1},
                              headers=auth(officer))).status == 204
    await asyncio.sleep(2.5)
    assert not (await (await client.get(f"{EVENTS}/old")).json()).get("purged_at")  # live events are never due
    assert (await client.patch(f"{EVENTS}/old", json={"status": "closed"}, headers=auth(control))).status == 200
    for _ in range(100):
        if (await (await client.get(f"{EVENTS}/old")).json()).get("purged_at"):
            break
        await asyncio.sleep(0.1)  # polling for the worker's next pass
    else:
        pytest.fail("the server did not purge the due event")
    officers = await (await client.get(f"{EVENTS}/old/officers", headers=auth(control))).json()
    assert officers["items"] == []
    entries = [e for e in app[SERVICES].store.all("audit") if e["action"] == "event.purge"]
    assert len(entries) == 1 and entries[0]["actor"]["id"] == "server"


async def test_purge_erases_every_track_point_even_one_stored_alone(client: TestClient, admin_token: str,
                                                                    control_token: str, officer_token: str,
                                                                    event: dict[str, Any]) -> None:
    """Tracks are documents of their own: written with the position they moved, or alone (a late report from
    an offline queue moves no one, here 30 minutes old: another ten-minute document). The purge erases them
    all, from the view and from every file."""
    data_dir = Path(client.app[SERVICES].settings.data_dir)
    store = client.app[SERVICES].store
    for lat, minutes in ((53.3777123401, 2), (53.3777123402, 1), (53.3777123409, 30)):  # the last one is late
        resp = await client.post(f"{EVENTS}/{TAG}/positions", json={"lat": lat, "lon": -1.4666123401,
                                                                    "at": _in(-minutes / 1440)},
                                 headers=auth(officer_token))
        assert resp.status == 204
    assert sum(len(t["points"]) for t in store.all("tracks")) == 3 and files_containing(data_dir, b"53.3777123409")
    officers = await (await client.get(f"{EVENTS}/{TAG}/officers", headers=auth(control_token))).json()
    assert len(officers["items"][0]["track"]) == 3
    assert (await client.patch(f"{EVENTS}/{TAG}", json={"status": "closed"}, headers=auth(control_token))).status == 200
    resp = await client.post(f"{EVENTS}/{TAG}/purge", json={"reason": "Retention period ended"},
                             headers=auth(admin_token))
    assert resp.status == 200, await resp.text()
    assert all("points" not in t for t in store.all("tracks"))
    await store.snapshot()
    for needle in (b"53.37771234", b"-1.46661234"):
        assert files_containing(data_dir, needle) == [], needle
