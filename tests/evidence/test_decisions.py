"""The decision log: control adds and reads, supersedes (never edits or deletes), and the stream tells control
only."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from conftest import auth
from sse import SSEReader

TAG = "libdempolicing"
URL = f"/api/v1/events/{TAG}/decisions"


async def test_add_list_supersede(client: TestClient, control_token: str, event: dict[str, Any]) -> None:
    first = await client.post(URL, json={"decision": "Hold the cordon at Barkers Pool",
                                         "rationale": "Crowd density rising on Fargate",
                                         "options": "Hold; move north; withdraw"}, headers=auth(control_token))
    assert first.status == 201, await first.text()
    a = await first.json()
    assert a["by"]["callsign"] == "control1" and a["event"] == TAG and a["at"].endswith("Z")
    assert a["supersedes"] is None and a["superseded_by"] is None and a["options"].startswith("Hold")
    second = await client.post(URL, json={"decision": "Open the cordon to the north",
                                          "rationale": "Hold order was given on a wrong crowd count",
                                          "supersedes": a["id"]}, headers=auth(control_token))
    assert second.status == 201
    b = await second.json()
    assert b["supersedes"] == a["id"]
    page = await (await client.get(URL, headers=auth(control_token))).json()
    by_id = {d["id"]: d for d in page["items"]}
    assert by_id[a["id"]]["superseded_by"] == b["id"]
    assert by_id[a["id"]]["decision"] == "Hold the cordon at Barkers Pool"  # ruled through, never erased
    assert page["items"][0]["seq"] >= page["items"][1]["seq"]
    # A superseded entry cannot be superseded again; an unknown one is a 422 naming the field.
    again = await client.post(URL, json={"decision": "x", "rationale": "y", "supersedes": a["id"]},
                              headers=auth(control_token))
    assert again.status == 409
    unknown = await client.post(URL, json={"decision": "x", "rationale": "y", "supersedes": "dec_nope"},
                                headers=auth(control_token))
    assert unknown.status == 422 and (await unknown.json())["errors"][0]["field"] == "supersedes"
    one = await client.get(f"/api/v1/decisions/{b['id']}", headers=auth(control_token))
    assert one.status == 200 and (await one.json())["id"] == b["id"]
    count = len((await (await client.get(URL, headers=auth(control_token))).json())["items"])
    assert count == 2


async def test_bad_input_and_roles(client: TestClient, control_token: str, officer_token: str,
                                   event: dict[str, Any]) -> None:
    assert (await client.post(URL, json={"decision": "x", "rationale": "y"})).status == 401
    assert (await client.post(URL, json={"decision": "x", "rationale": "y"}, headers=auth(officer_token))).status == 403
    assert (await client.get(URL, headers=auth(officer_token))).status == 403
    for body, field in (({"rationale": "why"}, "decision"), ({"decision": "what"}, "rationale"),
                        ({"decision": "what", "rationale": "why", "colour": "red"}, "colour"),
                        ({"decision": " ", "rationale": "why"}, "decision")):
        resp = await client.post(URL, json=body, headers=auth(control_token))
        assert resp.status == 422
        assert field in [e["field"] for e in (await resp.json())["errors"]]
    assert (await client.post("/api/v1/events/nosuch/decisions", json={"decision": "x", "rationale": "y"},
                              headers=auth(control_token))).status == 404
    assert (await (await client.get(URL, headers=auth(control_token))).json())["items"] == []


async def test_entries_are_never_edited_or_deleted(client: TestClient, control_token: str, admin_token: str,
                                                   event: dict[str, Any]) -> None:
    made = await (await client.post(URL, json={"decision": "Deploy PSU 3", "rationale": "Disorder on Division St"},
                                    headers=auth(control_token))).json()
    for method in ("PUT", "PATCH", "DELETE"):
        for url in (f"/api/v1/decisions/{made['id']}", f"{URL}/{made['id']}", URL):
            resp = await client.request(method, url, json={"decision": "changed"}, headers=auth(admin_token))
            assert resp.status == 405, (method, url)
            assert resp.content_type == "application/problem+json"
    page = await (await client.get(URL, headers=auth(control_token))).json()
    assert [d["decision"] for d in page["items"]] == ["Deploy PSU 3"]


async def test_stream_tells_control_only(client: TestClient, control_token: str, officer_token: str,
                                         event: dict[str, Any]) -> None:
    stream_url = f"/api/v1/events/{TAG}/stream"
    async with client.get(stream_url, headers=auth(control_token)) as c_resp, \
            client.get(stream_url, headers=auth(officer_token)) as o_resp, client.get(stream_url) as p_resp:
        control, officer, public = SSEReader(c_resp.content), SSEReader(o_resp.content), SSEReader(p_resp.content)
        made = await (await client.post(URL, json={"decision": "Close Fargate", "rationale": "Crush risk"},
                                        headers=auth(control_token))).json()
        # A public update after it: officers and the public receive that one, so they would have had the
        # decision first had it been sent to them.
        upd = await client.post(f"/api/v1/events/{TAG}/updates", json={"text": "Fargate closed", "visibility": "public"},
                                headers=auth(officer_token))
        assert upd.status == 201
        got = await control.next(within=5)
        assert got is not None and got.type == "decision" and got.json()["id"] == made["id"]
        assert got.id == str(made["seq"])
        for reader in (officer, public):
            first = await reader.next(within=5)
            assert first is not None and first.type == "update"
