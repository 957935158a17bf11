"""Idempotency-Key: a retried POST from a bad mobile link is stored once and answered the same."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import auth, make_user

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

URL = "/api/v1/events/libdempolicing/updates"
BODY = {"text": "Officer needs water at Barkers Pool", "kind": "warning"}


def keyed(token: str, key: str) -> dict[str, str]:
    return {**auth(token), "Idempotency-Key": key}


def stored_texts(app: web.Application) -> list[str]:
    return [u["text"] for u in app[SERVICES].store.all("updates")]


async def test_same_key_twice_stores_one_and_answers_the_same(client: TestClient, officer_token: str,
                                                               event: dict[str, Any]) -> None:
    first = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-1"))
    assert first.status == 201
    first_body = await first.read()
    seq = client.app[SERVICES].store.last_seq
    second = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-1"))
    assert second.status == 201
    assert await second.read() == first_body
    assert stored_texts(client.app) == [BODY["text"]]
    assert client.app[SERVICES].store.last_seq == seq  # the repeat wrote nothing


async def test_without_a_key_each_post_is_new(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    for _ in range(2):
        assert (await client.post(URL, json=BODY, headers=auth(officer_token))).status == 201
    assert len(stored_texts(client.app)) == 2


async def test_another_key_is_another_update(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    a = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-a"))
    b = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-b"))
    assert (await a.json())["id"] != (await b.json())["id"]
    assert len(stored_texts(client.app)) == 2


async def test_same_key_with_another_body_is_422(client: TestClient, officer_token: str,
                                                 event: dict[str, Any]) -> None:
    assert (await client.post(URL, json=BODY, headers=keyed(officer_token, "k-2"))).status == 201
    resp = await client.post(URL, json={**BODY, "text": "something else"}, headers=keyed(officer_token, "k-2"))
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]
    assert "Idempotency-Key" in problem["detail"]
    assert stored_texts(client.app) == [BODY["text"]]


async def test_same_key_by_another_user_is_a_separate_item(client: TestClient, officer_token: str,
                                                           event: dict[str, Any]) -> None:
    other = await make_user(client.app, "officer", "officer2")
    a = await client.post(URL, json=BODY, headers=keyed(officer_token, "shared"))
    b = await client.post(URL, json=BODY, headers=keyed(other, "shared"))
    assert a.status == b.status == 201
    a_body, b_body = await a.json(), await b.json()
    assert a_body["id"] != b_body["id"]
    assert (a_body["author"]["callsign"], b_body["author"]["callsign"]) == ("officer1", "officer2")
    # Neither sees the other's answer by replaying the key, and neither's body locks the other out.
    b_again = await client.post(URL, json=BODY, headers=keyed(other, "shared"))
    assert (await b_again.json())["id"] == b_body["id"]
    assert len(stored_texts(client.app)) == 2


async def test_same_key_on_another_event_is_422(client: TestClient, officer_token: str, control_token: str,
                                                event: dict[str, Any]) -> None:
    await client.post("/api/v1/events", json={"tag": "other", "title": "o", "status": "live"},
                      headers=auth(control_token))
    assert (await client.post(URL, json=BODY, headers=keyed(officer_token, "k-e"))).status == 201
    resp = await client.post("/api/v1/events/other/updates", json=BODY, headers=keyed(officer_token, "k-e"))
    assert resp.status == 422


async def test_concurrent_duplicates_store_one(client: TestClient, officer_token: str,
                                               event: dict[str, Any]) -> None:
    responses = await asyncio.gather(*(client.post(URL, json=BODY, headers=keyed(officer_token, "k-race"))
                                       for _ in range(5)))
    assert [r.status for r in responses] == [201] * 5
    bodies = [await r.read() for r in responses]
    assert len(set(bodies)) == 1
    assert stored_texts(client.app) == [BODY["text"]]


async def test_key_length_and_characters(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    assert (await client.post(URL, json=BODY, headers=keyed(officer_token, "k" * 128))).status == 201
    for bad in ("k" * 129, "", "tab\there"):
        resp = await client.post(URL, json=BODY, headers=keyed(officer_token, bad))
        assert resp.status == 422, repr(bad)
        assert [e["field"] for e in (await resp.json())["errors"]] == ["Idempotency-Key"]
    assert len(stored_texts(client.app)) == 1


async def test_a_refused_request_does_not_use_up_the_key(client: TestClient, officer_token: str,
                                                         event: dict[str, Any]) -> None:
    bad = await client.post(URL, json={"text": ""}, headers=keyed(officer_token, "k-retry"))
    assert bad.status == 422
    good = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-retry"))
    assert good.status == 201


async def test_the_answer_survives_a_restart(aiohttp_client: Callable[..., Awaitable[TestClient]],
                                             settings: Settings) -> None:
    first_app = create_app(settings)
    client = await aiohttp_client(first_app)
    control = await make_user(first_app, "control", "control1")
    officer = await make_user(first_app, "officer", "officer1")
    await client.post("/api/v1/events", json={"tag": "libdempolicing", "title": "t", "status": "live"},
                      headers=auth(control))
    first = await client.post(URL, json=BODY, headers=keyed(officer, "k-restart"))
    assert first.status == 201
    first_body = await first.read()
    await client.close()  # runs the app's cleanup: the store closes and releases the data directory

    second_app = create_app(settings)
    client2 = await aiohttp_client(second_app)
    again = await client2.post(URL, json=BODY, headers=keyed(officer, "k-restart"))
    assert again.status == 201
    assert await again.read() == first_body
    assert stored_texts(second_app) == [BODY["text"]]
    clash = await client2.post(URL, json={"text": "different"}, headers=keyed(officer, "k-restart"))
    assert clash.status == 422


async def test_a_retry_after_the_event_closed_still_gets_its_answer(client: TestClient, officer_token: str,
                                                                    control_token: str,
                                                                    event: dict[str, Any]) -> None:
    """The handset's first try was stored but its 201 was lost; control closes the event; the retry must learn
    that its post was stored, not that the event is closed."""
    first = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-closed"))
    assert first.status == 201
    await client.patch("/api/v1/events/libdempolicing", json={"status": "closed"}, headers=auth(control_token))
    retry = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-closed"))
    assert retry.status == 201
    assert await retry.read() == await first.read()
    fresh = await client.post(URL, json=BODY, headers=keyed(officer_token, "k-new"))
    assert fresh.status == 409
    assert (await client.post(URL, json=BODY, headers=auth(officer_token))).status == 409


async def test_creating_an_event_honours_the_key(client: TestClient, control_token: str) -> None:
    body = {"tag": "#March", "title": "The march", "status": "live"}
    first = await client.post("/api/v1/events", json=body, headers=keyed(control_token, "ev-1"))
    assert first.status == 201
    again = await client.post("/api/v1/events", json=body, headers=keyed(control_token, "ev-1"))
    assert again.status == 201  # not 409: the retry learns that its event was made
    assert await again.read() == await first.read()
    clash = await client.post("/api/v1/events", json={**body, "title": "Other"}, headers=keyed(control_token, "ev-1"))
    assert clash.status == 422
    taken = await client.post("/api/v1/events", json=body, headers=keyed(control_token, "ev-2"))
    assert taken.status == 409
    assert [e["tag"] for e in client.app[SERVICES].store.all("events")] == ["march"]
