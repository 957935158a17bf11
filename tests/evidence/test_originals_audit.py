"""Originals kept unaltered and served to control only with a reason; the access log (admin only, never on
the stream); user changes recorded from the API and the command line."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from conftest import auth

from fieldcomms.keys import SERVICES

from .helpers import sample, upload

TAG = "libdempolicing"


async def _post_update_with(client: TestClient, token: str, photo_id: str) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/events/{TAG}/updates", json={
        "text": "Crowd at Barkers Pool", "photos": [photo_id], "visibility": "public",
        "location": {"lat": 53.38, "lon": -1.471}}, headers=auth(token))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_original_is_kept_byte_for_byte_outside_media(client: TestClient, officer_token: str,
                                                            control_token: str, event: dict[str, Any]) -> None:
    data = sample()
    photo = await upload(client, officer_token, data)
    assert photo["id"] == hashlib.sha256(data).hexdigest()
    data_dir = Path(client.app[SERVICES].settings.data_dir)
    kept = data_dir / "originals" / photo["id"][:2] / photo["id"]
    assert kept.read_bytes() == data
    # The stripped copy is not the original (the sample carries EXIF), and /media never serves the original.
    media = await client.get(photo["url"], headers=auth(officer_token))
    assert media.status == 200 and await media.read() != data
    # The photo's JSON: control sees the original's hash, size and type; officers do not.
    seen = await (await client.get(f"/api/v1/photos/{photo['id']}", headers=auth(control_token))).json()
    assert seen["original"] == {"sha256": photo["id"], "bytes": len(data), "content_type": "image/jpeg"}
    officer_view = await (await client.get(f"/api/v1/photos/{photo['id']}", headers=auth(officer_token))).json()
    assert "original" not in officer_view
    # In an update, control's photo JSON carries it too, officers' and the public's do not.
    update = await _post_update_with(client, officer_token, photo["id"])
    as_control = await (await client.get(f"/api/v1/updates/{update['id']}", headers=auth(control_token))).json()
    assert as_control["photos"][0]["original"]["sha256"] == photo["id"]
    for token in (officer_token, None):
        other = await (await client.get(f"/api/v1/updates/{update['id']}", headers=auth(token))).json()
        assert "original" not in other["photos"][0]


async def test_reading_an_original_needs_control_and_a_reason(client: TestClient, officer_token: str,
                                                              control_token: str, admin_token: str,
                                                              event: dict[str, Any]) -> None:
    data = sample()
    photo = await upload(client, officer_token, data)
    await _post_update_with(client, officer_token, photo["id"])
    url = f"/api/v1/photos/{photo['id']}/original"
    assert (await client.get(url + "?reason=court+disclosure")).status == 401
    assert (await client.get(url + "?reason=court+disclosure", headers=auth(officer_token))).status == 403
    for query, why in (("", "missing"), ("?reason=ab", "too short"), ("?reason=" + "x" * 501, "too long"),
                       ("?reason=%20%20%20%20", "blank")):
        resp = await client.get(url + query, headers=auth(control_token))
        assert resp.status == 422, why
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["errors"][0]["field"] == "reason"
    missing = "0" * 64
    assert (await client.get(f"/api/v1/photos/{missing}/original?reason=court", headers=auth(control_token))).status == 404
    # Nothing was logged by the refused reads.
    log = await (await client.get("/api/v1/audit?action=photo.original.read", headers=auth(admin_token))).json()
    assert log["items"] == []

    resp = await client.get(url + "?reason=Disclosure+to+CPS+case+123", headers=auth(control_token))
    assert resp.status == 200
    body = await resp.read()
    assert body == data
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.headers["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
    assert "no-store" in resp.headers["Cache-Control"]

    log = await (await client.get("/api/v1/audit?action=photo.original.read", headers=auth(admin_token))).json()
    [entry] = log["items"]
    assert entry["reason"] == "Disclosure to CPS case 123"
    assert entry["actor"]["callsign"] == "control1" and entry["actor"]["role"] == "control"
    assert entry["target"] == {"type": "photo", "id": photo["id"]}
    assert entry["event"] == TAG
    assert isinstance(entry["seq"], int) and entry["at"].endswith("Z")


async def test_access_log_is_admin_only_paged_filtered_and_unchangeable(client: TestClient, admin_token: str,
                                                                        control_token: str,
                                                                        event: dict[str, Any]) -> None:
    for n in range(5):
        resp = await client.post("/api/v1/users", json={"name": f"Officer {n}", "callsign": f"pc{n}",
                                                        "role": "officer"}, headers=auth(admin_token))
        assert resp.status == 201
    assert (await client.delete("/api/v1/users/pc0", headers=auth(admin_token))).status == 204
    assert (await client.get("/api/v1/audit")).status == 401
    assert (await client.get("/api/v1/audit", headers=auth(control_token))).status == 403
    page = await (await client.get("/api/v1/audit?limit=2", headers=auth(admin_token))).json()
    assert [e["action"] for e in page["items"]] == ["user.revoke", "user.create"]
    older = await (await client.get(f"/api/v1/audit?limit=10&before={page['items'][-1]['seq']}",
                                    headers=auth(admin_token))).json()
    assert [e["action"] for e in older["items"]] == ["user.create"] * 4
    synced = await (await client.get("/api/v1/audit?since=0&limit=3", headers=auth(admin_token))).json()
    seqs = [e["seq"] for e in synced["items"]]
    assert seqs == sorted(seqs) and len(seqs) == 3 and synced["last_seq"] == seqs[-1]
    only = await (await client.get("/api/v1/audit?action=user.revoke", headers=auth(admin_token))).json()
    assert len(only["items"]) == 1 and only["items"][0]["actor"]["callsign"] == "admin1"
    assert (await (await client.get(f"/api/v1/audit?event={TAG}", headers=auth(admin_token))).json())["items"] == []
    bad = await client.get("/api/v1/audit?event=%23%21", headers=auth(admin_token))
    assert bad.status == 422
    entry_id = page["items"][0]["id"]
    for method in ("DELETE", "PATCH", "PUT", "POST"):
        for url in ("/api/v1/audit", f"/api/v1/audit/{entry_id}"):
            resp = await client.request(method, url, json={}, headers=auth(admin_token))
            assert resp.status in (404, 405), (method, url)
    after = await (await client.get("/api/v1/audit?limit=500", headers=auth(admin_token))).json()
    assert len(after["items"]) == 6


async def test_access_log_never_reaches_the_stream(client: TestClient, admin_token: str, control_token: str,
                                                   event: dict[str, Any]) -> None:
    from sse import SSEReader

    async with client.get(f"/api/v1/events/{TAG}/stream", headers=auth(admin_token)) as stream:
        reader = SSEReader(stream.content)
        resp = await client.get(f"/api/v1/events/{TAG}/export?reason=stream+check", headers=auth(control_token))
        assert resp.status == 200
        await resp.read()
        # The export's access-log entry was stored (a chained change of this event) but nothing is sent.
        log = await (await client.get("/api/v1/audit?action=event.export", headers=auth(admin_token))).json()
        assert len(log["items"]) == 1
        got = []
        try:
            while True:
                got.append(await reader.next(within=1.0))
        except TimeoutError:
            pass
        assert [e.type for e in got if e is not None] == []


def test_user_commands_are_in_the_access_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env_args = ["--data-dir", str(data)]
    add = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--name", "A", "--callsign", "pc9",
                          "--role", "officer", *env_args], capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    revoke = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "revoke", "pc9", *env_args],
                            capture_output=True, text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    from fieldcomms.store import Store

    store = Store(data)
    store.load_read_only()
    entries = sorted(store.all("audit"), key=lambda e: e["seq"])
    assert [e["action"] for e in entries] == ["user.create", "user.revoke"]
    assert all(e["actor"]["id"] == "cli" and e["actor"]["callsign"].startswith("cli:") for e in entries)
