"""Users: /me, admin-made users with a token shown once, revocation, idempotent creation."""

from __future__ import annotations

from fieldcomms.keys import SERVICES
from tests.conftest import auth


async def test_create_user_token_works_once_shown_and_revocation(client, admin_token):
    resp = await client.post("/api/v1/users", json={"name": "PC Holt", "callsign": "SY-1234", "role": "officer"},
                             headers=auth(admin_token))
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"id", "name", "callsign", "role", "token"}
    me = await client.get("/api/v1/me", headers=auth(body["token"]))
    assert await me.json() == {"id": body["id"], "name": "PC Holt", "callsign": "SY-1234", "role": "officer"}
    stored = client.app[SERVICES].store.get("users", body["id"])
    assert body["token"] not in str(stored)  # only the hash
    known = client.app[SERVICES].viewers  # callers remembered between requests: by hash, never by token
    assert [v.callsign for v in known.values()].count("SY-1234") == 1 and body["token"] not in str(known)
    dup = await client.post("/api/v1/users", json={"name": "Other", "callsign": "sy-1234", "role": "officer"},
                            headers=auth(admin_token))
    assert dup.status == 409
    assert (await client.delete("/api/v1/users/SY-1234", headers=auth(admin_token))).status == 204
    assert (await client.get("/api/v1/me", headers=auth(body["token"]))).status == 401  # though it was known
    assert (await client.delete("/api/v1/users/SY-1234", headers=auth(admin_token))).status == 404


async def test_idempotent_user_creation_never_replays_the_token(client, admin_token):
    payload = {"name": "PC Qureshi", "callsign": "SY-2871", "role": "officer"}
    headers = {**auth(admin_token), "Idempotency-Key": "make-2871"}
    first = await client.post("/api/v1/users", json=payload, headers=headers)
    again = await client.post("/api/v1/users", json=payload, headers=headers)
    assert first.status == again.status == 201
    a, b = await first.json(), await again.json()
    assert a["token"] and b["token"] is None
    assert {k: v for k, v in a.items() if k != "token"} == {k: v for k, v in b.items() if k != "token"}
    users = [u for u in client.app[SERVICES].store.all("users") if u["callsign"] == "SY-2871"]
    assert len(users) == 1
    other = await client.post("/api/v1/users", json={**payload, "name": "x"}, headers=headers)
    assert other.status == 422


async def test_user_validation_names_fields(client, admin_token):
    resp = await client.post("/api/v1/users", json={"callsign": "bad callsign!", "role": "chief"},
                             headers=auth(admin_token))
    assert resp.status == 422
    fields = {e["field"] for e in (await resp.json())["errors"]}
    assert fields == {"name", "callsign", "role"}
