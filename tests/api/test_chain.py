"""`GET /api/v1/chain/head`: admin only; the newest durable change's seq and chain hash, which moves with
every change and matches the chain computed over the journal."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from fieldcomms.check import check_data_dir
from fieldcomms.keys import SERVICES
from tests.conftest import auth


async def test_chain_head_moves_with_each_change(client: TestClient, admin_token, control_token, officer_token,
                                                 event):
    resp = await client.get("/api/v1/chain/head", headers=auth(admin_token))
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    first = await resp.json()
    assert set(first) == {"seq", "hash"} and first["seq"] == event["seq"] and len(first["hash"]) == 64
    posted = await client.post(f"/api/v1/events/{event['tag']}/updates", json={"text": "chain me"},
                               headers=auth(officer_token))
    assert posted.status == 201
    second = await (await client.get("/api/v1/chain/head", headers=auth(admin_token))).json()
    assert second["seq"] == (await posted.json())["seq"] > first["seq"] and second["hash"] != first["hash"]
    store = client.app[SERVICES].store
    assert store.chain_head() == (second["seq"], second["hash"])
    report = check_data_dir(store.data_dir)  # check reads beside a running server
    assert report.ok and report.chain_head == second["hash"], report.lines()


async def test_chain_head_is_for_admins_only(client: TestClient, control_token, officer_token):
    assert (await client.get("/api/v1/chain/head")).status == 401
    assert (await client.get("/api/v1/chain/head", headers=auth(officer_token))).status == 403
    assert (await client.get("/api/v1/chain/head", headers=auth(control_token))).status == 403


async def test_chain_head_is_in_the_api_document(client: TestClient):
    document = await (await client.get("/api/v1/openapi.json")).json()
    operation = document["paths"]["/api/v1/chain/head"]["get"]
    assert operation["operationId"] == "getChainHead" and operation["tags"] == ["evidence"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["required"] == ["seq", "hash"]
