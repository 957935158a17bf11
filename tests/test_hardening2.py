"""The second hardening round's smaller holes (issue 15, items 5, 6 and 10): each test failed before its fix."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sse import SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user

TAG = "libdempolicing"
ROOT = Path(__file__).resolve().parents[1]
Json = dict[str, Any]


# ---- 5: the failed-token limiter never refuses a valid token ---------------------------------------------


async def test_a_valid_token_behind_a_blocked_address_is_served(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, auth_failures_per_minute=2))
    client = await aiohttp_client(app)
    good = await make_user(app, "officer", "o1")
    # Venue Wi-Fi: one address, a guesser and an officer behind it. The guesser spends the address's budget.
    statuses = [(await client.get("/api/v1/me", headers=auth(f"fc_guess{i}"))).status for i in range(5)]
    assert statuses[-1] == 429
    resp = await client.get("/api/v1/me", headers=auth(good))
    assert resp.status == 200, await resp.text()
    # Guessing from there is still slowed.
    assert (await client.get("/api/v1/me", headers=auth("fc_guess9"))).status == 429


# ---- 6: sighting sources are capped, newest kept, every sighting counted ---------------------------------


async def test_rumour_sources_are_capped_at_the_newest(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False, max_rumour_sources=3))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    resp = await client.post(f"/api/v1/events/{TAG}/rumours", json={"claim": "snipers on the roof",
                             "source": {"text": "s0"}}, headers=auth(officer))
    rumour = await resp.json()
    for i in range(1, 8):
        resp = await client.post(f"/api/v1/rumours/{rumour['id']}/sightings", json={"text": f"s{i}"},
                                 headers=auth(officer))
        assert resp.status == 201, await resp.text()
    rumour = await (await client.get(f"/api/v1/rumours/{rumour['id']}", headers=auth(officer))).json()
    assert rumour["sightings"] == 8
    assert [s["text"] for s in rumour["sources"]] == ["s5", "s6", "s7"]


# ---- 10: inputs that gave a 500 -----------------------------------------------------------------------------


@pytest.fixture
async def world(aiohttp_client, tmp_path: Path) -> tuple[TestClient, str, str]:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    return client, control, officer


async def test_odd_digits_in_before_are_not_a_500(world: tuple[TestClient, str, str]) -> None:
    client, _, _ = world
    for url in (f"/events/{TAG}?before=%C2%B2", f"/api/v1/events/{TAG}/updates?before=%C2%B2",
                f"/events/{TAG}?before=" + "9" * 5000, f"/api/v1/events/{TAG}/updates?since=" + "9" * 5000):
        resp = await client.get(url)
        assert resp.status < 500, (url[:60], resp.status, await resp.text())


async def test_a_huge_last_event_id_gets_a_reset(world: tuple[TestClient, str, str]) -> None:
    client, _, _ = world
    resp = await client.get(f"/api/v1/events/{TAG}/stream", headers={"Last-Event-ID": "7" * 5000})
    assert resp.status == 200, await resp.text()
    event = await SSEReader(resp.content).next()
    assert event is not None and event.type == "reset"
    resp.close()


async def test_a_deeply_nested_zone_property_is_refused(world: tuple[TestClient, str, str]) -> None:
    client, control, _ = world
    nested: Any = "deep"
    for _ in range(300):
        nested = {"x": nested}
    zone = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.47, 53.38]},
            "properties": {"name": "Rendezvous", "kind": "rendezvous", "note": nested}}
    resp = await client.post(f"/api/v1/events/{TAG}/zones", json=zone, headers=auth(control))
    assert resp.status in (400, 422), (resp.status, await resp.text())
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    # Nothing half-stored: the server still writes.
    zone["properties"]["note"] = {"x": {"y": 1}}
    assert (await client.post(f"/api/v1/events/{TAG}/zones", json=zone, headers=auth(control))).status == 201


async def test_callsigns_cannot_end_in_a_newline(world: tuple[TestClient, str, str], tmp_path: Path) -> None:
    client, _, _ = world
    admin = await make_user(client.app, "admin", "a1")
    resp = await client.post("/api/v1/users", json={"name": "N", "callsign": "ALPHA1\n", "role": "officer"},
                             headers=auth(admin))
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "callsign"


async def test_an_officer_replaying_a_retracted_update_never_gets_its_authors_view(
        world: tuple[TestClient, str, str]) -> None:
    client, control, author = world
    other = await make_user(client.app, "officer", "o2")
    resp = await client.post(f"/api/v1/events/{TAG}/updates", json={"text": "INTERNAL-RETRACTED serial 12"},
                             headers=auth(author))
    update = await resp.json()
    assert (await client.delete(f"/api/v1/updates/{update['id']}", headers=auth(author))).status == 200
    # The author replays first: may still read it, and that frame must not be shared with other officers.
    resp = await client.get(f"/api/v1/events/{TAG}/stream?since=0", headers=auth(author))
    got = await SSEReader(resp.content).next()
    assert got is not None and got.type == "update" and "INTERNAL-RETRACTED" in got.data
    resp.close()
    resp = await client.get(f"/api/v1/events/{TAG}/stream?since=0", headers=auth(other))
    reader = SSEReader(resp.content)
    got = await reader.next()
    assert got is not None and "INTERNAL-RETRACTED" not in got.data, got.data
    resp.close()


# ---- 10: the command line -------------------------------------------------------------------------------------


def _run(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIELDCOMMS_FSYNC": "false"}
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_data_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = os.umask(0o022)  # what a login shell usually has
    try:
        assert _run("user", "add", "--name", "A", "--callsign", "ALPHA1", "--role", "officer",
                    data=data).returncode == 0
    finally:
        os.umask(old)
    paths = [data, *data.rglob("*")]
    assert len(paths) > 1
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


async def test_the_start_up_admin_is_made_once(tmp_path: Path) -> None:
    from fieldcomms.__main__ import _bootstrap_admin
    from fieldcomms.keys import SERVICES

    settings = Settings(data_dir=str(tmp_path / "d"), demo_admin=True, fsync=False)
    app = create_app(settings)
    ctx = app[SERVICES]
    await ctx.store.open()
    try:
        assert await _bootstrap_admin(ctx) is not None
        admin = ctx.store.get_by("users", "callsign", "admin")
        await ctx.store.append("user", "users", {**admin, "revoked": True})
        # No admin is active now, but one was made: no new token on the next start.
        assert await _bootstrap_admin(ctx) is None
    finally:
        await ctx.store.close()
