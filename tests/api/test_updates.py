"""Updates over HTTP, and the conventions every route shares: problem+json, caching, compression, times."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import auth, make_user

URL = "/api/v1/events/libdempolicing/updates"
UPDATE_KEYS = {"id", "seq", "event", "author", "text", "hashtags", "location", "visibility", "kind", "status",
               "photos", "zones", "reply_to", "amplified_by", "captured_at", "received_at"}
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


async def post(client: TestClient, token: str | None, body: Any, **kw: Any) -> Any:
    return await client.post(URL, json=body, headers=auth(token), **kw)


async def post_ok(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    resp = await post(client, token, {"text": "an update", **body})
    assert resp.status == 201, await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


async def texts(client: TestClient, token: str | None, query: str = "") -> list[str]:
    resp = await client.get(URL + query, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return [u["text"] for u in (await resp.json())["items"]]


async def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    text = await resp.text()
    assert "<html" not in text.lower() and "traceback" not in text.lower()
    problem: dict[str, Any] = await resp.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail"} <= set(problem)
    return problem


# ---- create -------------------------------------------------------------------------------------------


async def test_create_answers_the_full_shape(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    resp = await post(client, officer_token, {
        "text": "  March route agreed: Devonshire Green to Barkers Pool. #libdempolicing #Sheffield  ",
        "location": {"lat": 53.3789, "lon": -1.4779, "accuracy_m": 15},
        "visibility": "public", "kind": "info", "captured_at": "2011-03-12T11:02:00+01:00",
    })
    assert resp.status == 201
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == UPDATE_KEYS
    me = await (await client.get("/api/v1/me", headers=auth(officer_token))).json()
    assert body["id"] and isinstance(body["id"], str)
    assert isinstance(body["seq"], int) and body["seq"] > event["seq"]
    assert body["event"] == "libdempolicing"
    assert body["author"] == {"id": me["id"], "callsign": "officer1"}
    assert body["text"] == "March route agreed: Devonshire Green to Barkers Pool. #libdempolicing #Sheffield"
    assert body["hashtags"] == ["libdempolicing", "sheffield"]
    assert body["location"] == {"lat": 53.3789, "lon": -1.4779, "accuracy_m": 15, "source": "device"}
    assert (body["visibility"], body["kind"], body["status"]) == ("public", "info", "active")
    assert body["photos"] == [] and body["zones"] == [] and body["amplified_by"] == []
    assert body["reply_to"] is None
    assert body["captured_at"] == "2011-03-12T10:02:00Z"  # kept from the handset, in UTC
    assert RFC3339_Z.match(body["received_at"])

    got = await client.get(f"/api/v1/updates/{body['id']}")
    assert got.status == 200
    assert await got.json() == body


async def test_defaults(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    body = await post_ok(client, officer_token, text="Quiet so far")
    assert body["visibility"] == "internal"  # posting to the public is a deliberate act
    assert body["kind"] == "info"
    assert body["location"] is None
    assert body["hashtags"] == ["libdempolicing"]
    assert body["captured_at"] == body["received_at"]
    assert RFC3339_Z.match(body["captured_at"])


async def test_reply_to(client: TestClient, officer_token: str, control_token: str, event: dict[str, Any]) -> None:
    internal = await post_ok(client, officer_token, text="internal parent")
    public = await post_ok(client, officer_token, text="public parent", visibility="public")
    reply = await post_ok(client, officer_token, text="reply", visibility="public", reply_to=internal["id"])
    assert reply["reply_to"] == internal["id"]
    # The public must not learn that the internal parent exists.
    assert (await (await client.get(f"/api/v1/updates/{reply['id']}")).json())["reply_to"] is None
    reply2 = await post_ok(client, officer_token, text="reply2", visibility="public", reply_to=public["id"])
    assert (await (await client.get(f"/api/v1/updates/{reply2['id']}")).json())["reply_to"] == public["id"]

    problem = await assert_problem(await post(client, officer_token, {"text": "x", "reply_to": "upd_nope"}), 422)
    assert [e["field"] for e in problem["errors"]] == ["reply_to"]
    # A reply to an update of another event is refused too.
    await client.post("/api/v1/events", json={"tag": "other", "title": "o", "status": "live"},
                      headers=auth(control_token))
    elsewhere = await client.post("/api/v1/events/other/updates", json={"text": "x", "reply_to": public["id"]},
                                  headers=auth(officer_token))
    assert elsewhere.status == 422


async def test_unknown_photo_is_422(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    problem = await assert_problem(await post(client, officer_token, {"text": "x", "photos": ["ph_nope"]}), 422)
    assert [e["field"] for e in problem["errors"]] == ["photos[0]"]


async def test_validation_errors_are_all_reported(client: TestClient, officer_token: str,
                                                  event: dict[str, Any]) -> None:
    resp = await post(client, officer_token, {"text": "", "kind": "panic", "visibility": "world",
                                              "location": {"lat": 95, "lon": 0}, "captured_at": "2011-03-12 10:00"})
    problem = await assert_problem(resp, 422)
    assert {e["field"] for e in problem["errors"]} == {"text", "kind", "visibility", "location.lat", "captured_at"}
    assert await texts(client, officer_token) == []


async def test_post_to_unknown_event_is_404(client: TestClient, officer_token: str) -> None:
    resp = await client.post("/api/v1/events/nosuch/updates", json={"text": "x"}, headers=auth(officer_token))
    await assert_problem(resp, 404)


# ---- lists --------------------------------------------------------------------------------------------


@pytest.fixture
async def mixed(client: TestClient, officer_token: str, event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Five updates: public/internal, info/warning/alert, some with locations in and out of Sheffield."""
    made = {}
    made["p1"] = await post_ok(client, officer_token, text="p1", visibility="public",
                               location={"lat": 53.38, "lon": -1.47})
    made["i1"] = await post_ok(client, officer_token, text="i1", kind="warning",
                               location={"lat": 53.37, "lon": -1.48})
    made["p2"] = await post_ok(client, officer_token, text="p2", visibility="public", kind="warning",
                               location={"lat": 51.5, "lon": -0.12})
    made["i2"] = await post_ok(client, officer_token, text="i2", kind="alert")
    made["p3"] = await post_ok(client, officer_token, text="p3", visibility="public", kind="alert")
    return made


async def test_list_newest_first_and_what_each_audience_sees(client: TestClient, officer_token: str,
                                                             mixed: dict[str, Any]) -> None:
    assert await texts(client, officer_token) == ["p3", "i2", "p2", "i1", "p1"]
    assert await texts(client, None) == ["p3", "p2", "p1"]
    body = await (await client.get(URL)).json()
    assert set(body) == {"items", "last_seq"}
    assert body["last_seq"] == mixed["p3"]["seq"]
    assert all(set(u) == UPDATE_KEYS for u in body["items"])


async def test_list_filters(client: TestClient, officer_token: str, mixed: dict[str, Any]) -> None:
    assert await texts(client, officer_token, "?kind=warning") == ["p2", "i1"]
    assert await texts(client, officer_token, "?kind=alert&visibility=internal") == ["i2"]
    assert await texts(client, officer_token, "?visibility=public") == ["p3", "p2", "p1"]
    assert await texts(client, None, "?visibility=internal") == []
    # bbox=minlon,minlat,maxlon,maxlat around Sheffield; updates without a location are not in any box.
    assert await texts(client, officer_token, "?bbox=-1.6,53.3,-1.4,53.45") == ["i1", "p1"]
    assert await texts(client, None, "?bbox=-1.6,53.3,-1.4,53.45") == ["p1"]
    assert await texts(client, officer_token, "?bbox=-180,-90,180,90") == ["p2", "i1", "p1"]
    for bad in ("?kind=panic", "?visibility=secret", "?bbox=1,2,3", "?bbox=a,b,c,d", "?bbox=0,0,200,10",
                "?limit=0", "?limit=501", "?limit=x", "?since=-1", "?before=0", "?since=1&before=5"):
        await assert_problem(await client.get(URL + bad, headers=auth(officer_token)), 422)


async def test_paging_with_limit_before_and_since(client: TestClient, officer_token: str,
                                                  mixed: dict[str, Any]) -> None:
    seq = {name: u["seq"] for name, u in mixed.items()}
    assert await texts(client, officer_token, "?limit=2") == ["p3", "i2"]
    assert await texts(client, officer_token, f"?limit=2&before={seq['i2']}") == ["p2", "i1"]
    assert await texts(client, officer_token, f"?before={seq['i1']}") == ["p1"]
    assert await texts(client, officer_token, "?since=0") == ["p1", "i1", "p2", "i2", "p3"]  # oldest first
    assert await texts(client, officer_token, f"?since={seq['p2']}") == ["i2", "p3"]
    assert await texts(client, None, f"?since={seq['p1']}") == ["p2", "p3"]
    # A full page under since says where to continue.
    page = await (await client.get(URL + "?since=0&limit=2", headers=auth(officer_token))).json()
    assert [u["text"] for u in page["items"]] == ["p1", "i1"]
    assert page["last_seq"] == seq["i1"]
    rest = await texts(client, officer_token, f"?since={page['last_seq']}")
    assert rest == ["p2", "i2", "p3"]


async def test_a_changed_update_moves_to_its_new_seq(client: TestClient, officer_token: str,
                                                     mixed: dict[str, Any]) -> None:
    amplified = await client.post(f"/api/v1/updates/{mixed['p1']['id']}/amplify", headers=auth(officer_token))
    new_seq = (await amplified.json())["seq"]
    assert new_seq > mixed["p3"]["seq"]
    assert await texts(client, officer_token) == ["p1", "p3", "i2", "p2", "i1"]
    assert await texts(client, officer_token, f"?since={mixed['p3']['seq']}") == ["p1"]


# ---- single updates, amplify, retract -----------------------------------------------------------------


async def test_an_internal_update_is_404_to_the_public(client: TestClient, officer_token: str,
                                                       mixed: dict[str, Any]) -> None:
    url = f"/api/v1/updates/{mixed['i1']['id']}"
    public_miss = await assert_problem(await client.get(url), 404)
    unknown = await assert_problem(await client.get("/api/v1/updates/upd_doesnotexist"), 404)
    assert public_miss["title"] == unknown["title"]  # the public cannot tell "internal" from "absent"
    assert (await client.get(url, headers=auth(officer_token))).status == 200


async def test_amplify_twice_counts_once(client: TestClient, officer_token: str, mixed: dict[str, Any]) -> None:
    other = await make_user(client.app, "officer", "officer2")
    url = f"/api/v1/updates/{mixed['p1']['id']}/amplify"
    first = await client.post(url, headers=auth(officer_token))
    assert first.status == 200
    body = await first.json()
    assert set(body) == UPDATE_KEYS
    assert [a["callsign"] for a in body["amplified_by"]] == ["officer1"]
    again = await client.post(url, headers=auth(officer_token))
    assert again.status == 200
    assert (await again.json())["amplified_by"] == body["amplified_by"]
    assert (await again.json())["seq"] == body["seq"]  # nothing stored
    third = await client.post(url, headers=auth(other))
    assert [a["callsign"] for a in (await third.json())["amplified_by"]] == ["officer1", "officer2"]
    public = await (await client.get(f"/api/v1/updates/{mixed['p1']['id']}")).json()
    assert len(public["amplified_by"]) == 2
    await assert_problem(await client.post("/api/v1/updates/upd_nope/amplify", headers=auth(officer_token)), 404)


async def test_retract_by_author(client: TestClient, officer_token: str, control_token: str,
                                 mixed: dict[str, Any]) -> None:
    target = mixed["p1"]
    url = f"/api/v1/updates/{target['id']}"
    resp = await client.delete(url, headers=auth(officer_token))
    assert resp.status == 200
    retracted = await resp.json()
    assert retracted["status"] == "retracted" and retracted["id"] == target["id"]
    assert retracted["seq"] > target["seq"]
    assert UPDATE_KEYS <= set(retracted)

    await assert_problem(await client.get(url), 404)
    assert "p1" not in await texts(client, None)
    assert "p1" not in await texts(client, None, "?since=0")
    control_view = await client.get(url, headers=auth(control_token))
    assert control_view.status == 200 and (await control_view.json())["status"] == "retracted"
    assert "p1" in await texts(client, control_token)  # never erased
    # Retracting again changes nothing; a retracted update cannot be amplified.
    again = await client.delete(url, headers=auth(officer_token))
    assert again.status == 200 and (await again.json())["seq"] == retracted["seq"]
    await assert_problem(await client.post(url + "/amplify", headers=auth(control_token)), 409)


async def test_retract_by_control_and_not_by_another_officer(client: TestClient, officer_token: str,
                                                             control_token: str, mixed: dict[str, Any]) -> None:
    other = await make_user(client.app, "officer", "officer2")
    url = f"/api/v1/updates/{mixed['p2']['id']}"
    await assert_problem(await client.delete(url, headers=auth(other)), 403)
    assert (await (await client.get(url)).json())["status"] == "active"
    resp = await client.delete(url, headers=auth(control_token))
    assert resp.status == 200 and (await resp.json())["status"] == "retracted"
    # Another officer no longer sees it; its author and control do.
    assert (await client.get(url, headers=auth(other))).status == 404
    assert (await client.get(url, headers=auth(officer_token))).status == 200
    assert (await client.get(url, headers=auth(control_token))).status == 200
    await assert_problem(await client.delete("/api/v1/updates/upd_nope", headers=auth(control_token)), 404)


# ---- conventions: problem+json ------------------------------------------------------------------------


async def test_malformed_json_is_400(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    resp = await client.post(URL, data=b'{"text": "unterminated', headers={
        **auth(officer_token), "Content-Type": "application/json"})
    problem = await assert_problem(resp, 400)
    assert problem["errors"][0]["field"] == "body"


async def test_empty_body_and_non_object_are_422(client: TestClient, officer_token: str,
                                                 event: dict[str, Any]) -> None:
    headers = {**auth(officer_token), "Content-Type": "application/json"}
    await assert_problem(await client.post(URL, data=b"", headers=headers), 422)
    await assert_problem(await client.post(URL, data=b"[1, 2]", headers=headers), 422)


async def test_wrong_content_type_is_415(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    resp = await client.post(URL, data=b"text=hello", headers={
        **auth(officer_token), "Content-Type": "application/x-www-form-urlencoded"})
    await assert_problem(resp, 415)


async def test_unknown_route_is_404_problem(client: TestClient) -> None:
    for path in ("/nope", "/api/v1/nope", "/api/v2/events", "/api/v1/updates/x/y/z"):
        await assert_problem(await client.get(path), 404)


async def test_wrong_method_is_405_problem(client: TestClient, control_token: str) -> None:
    resp = await client.put("/api/v1/events", json={}, headers=auth(control_token))
    problem = await assert_problem(resp, 405)
    assert "GET" in resp.headers["Allow"] and "POST" in resp.headers["Allow"]
    assert "PUT" in problem["detail"]
    await assert_problem(await client.delete("/healthz"), 405)


async def test_body_over_256_kib_is_413(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    big = b'{"text": "' + b"x" * (256 * 1024) + b'"}'
    headers = {**auth(officer_token), "Content-Type": "application/json"}
    await assert_problem(await client.post(URL, data=big, headers=headers), 413)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap must still hold
        for i in range(0, len(big), 16 * 1024):
            yield big[i:i + 16 * 1024]

    await assert_problem(await client.post(URL, data=chunked(), headers=headers), 413)
    assert await texts(client, officer_token) == []
    # Just under the limit is fine as far as size goes (the text itself is then too long: 422).
    near = b'{"text": "' + b"x" * (256 * 1024 - 20) + b'"}'
    await assert_problem(await client.post(URL, data=near, headers=headers), 422)


async def test_401_and_403_are_problems(client: TestClient, officer_token: str, event: dict[str, Any]) -> None:
    resp = await post(client, None, {"text": "x"})
    await assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].lower().startswith("bearer")
    await assert_problem(await post(client, "fc_not_a_real_token", {"text": "x"}), 401)
    await assert_problem(await client.post(URL, json={"text": "x"}, headers={"Authorization": "Basic abc"}), 401)
    await assert_problem(await client.post("/api/v1/events", json={}, headers=auth(officer_token)), 403)


async def test_an_unexpected_error_is_a_500_problem_without_traceback(
        aiohttp_client: Any, settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    from fieldcomms.app import create_app

    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    problem = await assert_problem(await client.get("/boom"), 500)
    assert "secret internals" not in str(problem)


# ---- conventions: caching, compression ----------------------------------------------------------------


async def test_public_get_has_etag_and_honours_if_none_match(client: TestClient, mixed: dict[str, Any]) -> None:
    url = f"/api/v1/updates/{mixed['p1']['id']}"
    for path in (url, URL, "/api/v1/events/libdempolicing", "/api/v1/events"):
        resp = await client.get(path)
        assert resp.status == 200
        etag = resp.headers["ETag"]
        assert resp.headers["Cache-Control"] == "public, max-age=5"
        cached = await client.get(path, headers={"If-None-Match": etag})
        assert cached.status == 304, path
        assert await cached.read() == b""
        assert cached.headers["ETag"] == etag
        assert (await client.get(path, headers={"If-None-Match": '"other"'})).status == 200


async def test_etag_changes_with_the_content(client: TestClient, officer_token: str, mixed: dict[str, Any]) -> None:
    before = (await client.get(URL)).headers["ETag"]
    await post_ok(client, officer_token, text="newer", visibility="public")
    after = await client.get(URL, headers={"If-None-Match": before})
    assert after.status == 200 and after.headers["ETag"] != before


async def test_authenticated_gets_are_private(client: TestClient, officer_token: str, mixed: dict[str, Any]) -> None:
    resp = await client.get(URL, headers=auth(officer_token))
    assert "public" not in resp.headers.get("Cache-Control", "")
    assert "Authorization" in resp.headers.get("Vary", "")


async def test_gzip_when_accepted(client: TestClient, mixed: dict[str, Any]) -> None:
    resp = await client.get(URL, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    raw = await resp.read()
    assert raw[:2] == b"\x1f\x8b"
    assert b'"items"' in gzip.decompress(raw)
    plain = await client.get(URL, headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    assert (await plain.read()).startswith(b"{")


async def test_times_are_utc_with_z(client: TestClient, officer_token: str, mixed: dict[str, Any]) -> None:
    body = await (await client.get(URL, headers=auth(officer_token))).json()
    event = await (await client.get("/api/v1/events/libdempolicing")).json()
    stamps = [u[k] for u in body["items"] for k in ("captured_at", "received_at")] + [event["created_at"]]
    assert stamps and all(RFC3339_Z.match(s) for s in stamps)
