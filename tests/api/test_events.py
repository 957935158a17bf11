"""Events: create, list, get, patch; tag normalisation; a closed event refuses new updates."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from conftest import auth

EVENT_KEYS = {"tag", "title", "description", "status", "starts_at", "ends_at", "created_at", "seq", "retain_until",
              "answer_approval"}


async def create(client: TestClient, token: str | None, body: Any) -> Any:
    return await client.post("/api/v1/events", json=body, headers=auth(token))


async def test_create_normalises_the_tag_and_answers_the_event(client: TestClient, control_token: str) -> None:
    resp = await create(client, control_token, {
        "tag": "#LibDemPolicing", "title": "  Lib Dem conference  ", "description": "Sheffield City Hall",
        "starts_at": "2011-03-11T09:00:00+00:00", "ends_at": "2011-03-13T18:00:00+01:00",
    })
    assert resp.status == 201, await resp.text()
    assert resp.content_type == "application/json"
    event = await resp.json()
    assert set(event) == EVENT_KEYS
    assert event["tag"] == "libdempolicing"
    assert event["title"] == "Lib Dem conference"
    assert event["status"] == "planned"  # the default
    assert event["starts_at"] == "2011-03-11T09:00:00Z"
    assert event["ends_at"] == "2011-03-13T17:00:00Z"
    assert event["created_at"].endswith("Z")
    assert isinstance(event["seq"], int) and event["seq"] > 0

    for spelling in ("libdempolicing", "LibDemPolicing", "%23libdempolicing"):
        got = await client.get(f"/api/v1/events/{spelling}")
        assert got.status == 200, spelling
        assert await got.json() == event


async def test_a_taken_tag_is_409_whatever_its_spelling(client: TestClient, control_token: str) -> None:
    assert (await create(client, control_token, {"tag": "march", "title": "one"})).status == 201
    resp = await create(client, control_token, {"tag": "#MARCH", "title": "two"})
    assert resp.status == 409
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == 409 and "march" in problem["detail"]
    listed = await (await client.get("/api/v1/events")).json()
    assert [e["title"] for e in listed["items"]] == ["one"]


async def test_create_validation_names_every_field(client: TestClient, control_token: str) -> None:
    resp = await create(client, control_token, {"tag": "a b", "title": "", "status": "over", "x": 1})
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert {e["field"] for e in problem["errors"]} == {"tag", "title", "status", "x"}
    assert problem["status"] == 422 and problem["type"] and problem["title"] and problem["detail"]


async def test_who_may_create_and_patch(client: TestClient, officer_token: str, control_token: str,
                                        admin_token: str) -> None:
    assert (await create(client, None, {"tag": "aa", "title": "t"})).status == 401
    assert (await create(client, officer_token, {"tag": "aa", "title": "t"})).status == 403
    assert (await create(client, admin_token, {"tag": "aa", "title": "t"})).status == 201
    assert (await client.patch("/api/v1/events/aa", json={"title": "u"})).status == 401
    assert (await client.patch("/api/v1/events/aa", json={"title": "u"}, headers=auth(officer_token))).status == 403
    resp = await client.patch("/api/v1/events/aa", json={"title": "u"}, headers=auth(control_token))
    assert resp.status == 200 and (await resp.json())["title"] == "u"


async def test_list_is_newest_first_and_public(client: TestClient, control_token: str) -> None:
    for tag in ("first", "second", "third"):
        assert (await create(client, control_token, {"tag": tag, "title": tag})).status == 201
    resp = await client.get("/api/v1/events")
    assert resp.status == 200
    body = await resp.json()
    assert [e["tag"] for e in body["items"]] == ["third", "second", "first"]
    assert body["last_seq"] >= max(e["seq"] for e in body["items"])
    assert all(set(e) == EVENT_KEYS for e in body["items"])


async def test_patch_changes_fields_and_gets_a_new_seq(client: TestClient, control_token: str,
                                                       event: dict[str, Any]) -> None:
    resp = await client.patch("/api/v1/events/%23LibDemPolicing", json={
        "title": "Conference weekend", "description": "Day two", "ends_at": "2011-03-13T18:00:00+01:00",
    }, headers=auth(control_token))
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["title"] == "Conference weekend" and patched["description"] == "Day two"
    assert patched["ends_at"] == "2011-03-13T17:00:00Z"
    assert patched["seq"] > event["seq"]
    assert patched["created_at"] == event["created_at"] and patched["tag"] == event["tag"]
    assert await (await client.get("/api/v1/events/libdempolicing")).json() == patched

    # A patch that changes nothing stores nothing.
    same = await client.patch("/api/v1/events/libdempolicing", json={"title": "Conference weekend"},
                              headers=auth(control_token))
    assert (await same.json())["seq"] == patched["seq"]


async def test_patch_refusals(client: TestClient, control_token: str, event: dict[str, Any]) -> None:
    headers = auth(control_token)
    resp = await client.patch("/api/v1/events/nosuchevent", json={"title": "x"}, headers=headers)
    assert resp.status == 404
    resp = await client.patch("/api/v1/events/libdempolicing", json={"status": "done", "tag": "x"}, headers=headers)
    assert resp.status == 422
    assert {e["field"] for e in (await resp.json())["errors"]} == {"status", "tag"}


async def test_unknown_event_is_404(client: TestClient) -> None:
    resp = await client.get("/api/v1/events/nosuchevent")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert (await client.get("/api/v1/events/nosuchevent/updates")).status == 404


async def test_a_closed_event_refuses_updates_but_can_be_read(client: TestClient, control_token: str,
                                                              officer_token: str, event: dict[str, Any]) -> None:
    url = "/api/v1/events/libdempolicing/updates"
    posted = await client.post(url, json={"text": "Before closing", "visibility": "public"},
                               headers=auth(officer_token))
    assert posted.status == 201
    resp = await client.patch("/api/v1/events/libdempolicing", json={"status": "closed"},
                              headers=auth(control_token))
    assert resp.status == 200 and (await resp.json())["status"] == "closed"

    refused = await client.post(url, json={"text": "After closing"}, headers=auth(officer_token))
    assert refused.status == 409
    assert refused.content_type == "application/problem+json"
    assert "closed" in (await refused.json())["detail"]

    assert (await (await client.get("/api/v1/events/libdempolicing")).json())["status"] == "closed"
    listed = await (await client.get(url)).json()
    assert [u["text"] for u in listed["items"]] == ["Before closing"]

    # Reopened, it takes updates again.
    await client.patch("/api/v1/events/libdempolicing", json={"status": "live"}, headers=auth(control_token))
    assert (await client.post(url, json={"text": "Reopened"}, headers=auth(officer_token))).status == 201
